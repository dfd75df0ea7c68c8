//! The shipped policies, embedded, and the variables each one reads with its default:
//! `${NAME}` / `${NAME:-default}` in any value, and the variables named by
//! `cors.origins_from_env`, `jwt.identity_secret`, `jwt.issuers[].secret` and
//! `rate_limits.redis.password_secret`.

use serde_yaml::Value;

use super::policy_vars::{policy_var, POLICY_VARS};
use crate::edge::identity::DEFAULT_SECRET_NAME;
use crate::policy::{references, Environment};
use gardien_secrets::catalog::{Kind, Row};

/// One policy of `policies/`, as the binary was built with it.
#[derive(Debug, Clone, Copy)]
pub struct ShippedPolicy {
    pub file: &'static str,
    /// The column it fills in docs/ENVIRONMENT.md (a test checks its `environment:`).
    pub environment: Environment,
    pub text: &'static str,
}

pub const SHIPPED_POLICIES: [ShippedPolicy; 3] = [
    ShippedPolicy {
        file: "policies/dev.yaml",
        environment: Environment::Dev,
        text: include_str!("../../policies/dev.yaml"),
    },
    ShippedPolicy {
        file: "policies/staging.yaml",
        environment: Environment::Staging,
        text: include_str!("../../policies/staging.yaml"),
    },
    ShippedPolicy {
        file: "policies/production.yaml",
        environment: Environment::Production,
        text: include_str!("../../policies/production.yaml"),
    },
];

/// How a policy reads a variable, which decides its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadBy {
    /// `${NAME}` (`None`: required) or `${NAME:-default}`.
    Reference(Option<String>),
    /// `cors.origins_from_env`: skipped with a warning in `dev`, required elsewhere.
    Origins,
    /// `jwt.identity_secret`: a development default in `dev`, required elsewhere.
    IdentitySecret,
    /// An HMAC issuer's or the Redis AUTH secret: always required.
    RequiredSecret,
}

/// One variable one policy reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedReference {
    pub name: String,
    pub read_by: ReadBy,
}

impl ShippedReference {
    /// The Markdown of its default in a policy of `environment`.
    fn default_in(&self, environment: Environment) -> String {
        let required = "**required**".to_owned();
        let dev = environment == Environment::Dev;
        match &self.read_by {
            ReadBy::Reference(None) | ReadBy::RequiredSecret => required,
            ReadBy::Reference(Some(d)) if d.is_empty() => "empty".to_owned(),
            ReadBy::Reference(Some(d)) => format!("`{d}`"),
            ReadBy::Origins if dev => "unset: skipped with a warning".to_owned(),
            ReadBy::IdentitySecret if dev => "the development default".to_owned(),
            ReadBy::Origins | ReadBy::IdentitySecret => required,
        }
    }

    fn kind(&self) -> Kind {
        match self.read_by {
            ReadBy::Reference(_) | ReadBy::Origins => Kind::Plain,
            ReadBy::IdentitySecret | ReadBy::RequiredSecret => Kind::Secret,
        }
    }
}

/// Every variable `policy` reads, in the order of the file. `Err`: the text is not YAML.
pub fn shipped_references(policy: &ShippedPolicy) -> Result<Vec<ShippedReference>, String> {
    let root: Value =
        serde_yaml::from_str(policy.text).map_err(|e| format!("{}: {e}", policy.file))?;
    let mut found = Vec::new();
    collect_references(&root, &mut found);
    let names = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(name)) => vec![name.trim().to_owned()],
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(|name| name.trim().to_owned())
                .collect(),
            _ => Vec::new(),
        }
    };
    let at = |path: &[&str]| path.iter().try_fold(&root, |value, key| value.get(key));
    for name in names(at(&["cors", "origins_from_env"])) {
        found.push(ShippedReference {
            name,
            read_by: ReadBy::Origins,
        });
    }
    let identity = names(at(&["jwt", "identity_secret"]));
    let identity = if identity.is_empty() {
        vec![DEFAULT_SECRET_NAME.to_owned()]
    } else {
        identity
    };
    for name in identity {
        found.push(ShippedReference {
            name,
            read_by: ReadBy::IdentitySecret,
        });
    }
    let issuers = at(&["jwt", "issuers"]).and_then(Value::as_sequence);
    let secrets = issuers
        .into_iter()
        .flatten()
        .flat_map(|issuer| names(issuer.get("secret")))
        .chain(names(at(&["rate_limits", "redis", "password_secret"])));
    for name in secrets {
        found.push(ShippedReference {
            name,
            read_by: ReadBy::RequiredSecret,
        });
    }
    Ok(found)
}

fn collect_references(value: &Value, found: &mut Vec<ShippedReference>) {
    match value {
        Value::String(text) => {
            found.extend(references(text).into_iter().map(|r| ShippedReference {
                name: r.name,
                read_by: ReadBy::Reference(r.default),
            }))
        }
        Value::Sequence(items) => items.iter().for_each(|v| collect_references(v, found)),
        Value::Mapping(map) => map.values().for_each(|v| collect_references(v, found)),
        Value::Tagged(tagged) => collect_references(&tagged.value, found),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn column(environment: Environment) -> usize {
    match environment {
        Environment::Dev => 0,
        Environment::Staging => 1,
        Environment::Production => 2,
    }
}

/// One row per variable the shipped policies read: the catalog's order, then any variable
/// the catalog lacks (a test refuses those), with each policy's default.
pub fn policy_rows() -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for policy in &SHIPPED_POLICIES {
        // A shipped policy that is not YAML fails its own tests; here it reads nothing.
        for reference in shipped_references(policy).unwrap_or_default() {
            let index = match rows.iter().position(|r| r.name == reference.name) {
                Some(index) => index,
                None => {
                    rows.push(Row {
                        name: reference.name.clone(),
                        kind: reference.kind(),
                        defaults: ["not read", "not read", "not read"].map(str::to_owned),
                        meaning: policy_var(&reference.name)
                            .map_or("**no catalog entry**", |v| v.meaning)
                            .to_owned(),
                    });
                    rows.len() - 1
                }
            };
            let cell = &mut rows[index].defaults[column(policy.environment)];
            if *cell == "not read" {
                *cell = reference.default_in(policy.environment);
            }
        }
    }
    let rank = |name: &str| {
        POLICY_VARS
            .iter()
            .position(|v| v.name == name)
            .unwrap_or(POLICY_VARS.len())
    };
    rows.sort_by_key(|row| rank(&row.name));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shipped_policy_is_of_its_column() {
        for policy in &SHIPPED_POLICIES {
            let root: Value = serde_yaml::from_str(policy.text).expect("yaml");
            assert_eq!(
                root.get("environment").and_then(Value::as_str),
                Some(policy.environment.as_str()),
                "{}",
                policy.file
            );
        }
    }

    #[test]
    fn every_variable_a_shipped_policy_reads_has_a_catalog_entry() {
        for policy in &SHIPPED_POLICIES {
            let unknown: Vec<String> = shipped_references(policy)
                .expect("yaml")
                .into_iter()
                .filter(|r| policy_var(&r.name).is_none())
                .map(|r| r.name)
                .collect();
            assert!(
                unknown.is_empty(),
                "{} reads {unknown:?}, which have no entry in src/env_docs/policy_vars.rs",
                policy.file
            );
        }
    }

    #[test]
    fn every_catalog_entry_is_read_by_a_shipped_policy() {
        let read: Vec<String> = SHIPPED_POLICIES
            .iter()
            .flat_map(|p| shipped_references(p).expect("yaml"))
            .map(|r| r.name)
            .collect();
        let unread: Vec<&str> = POLICY_VARS
            .iter()
            .map(|v| v.name)
            .filter(|name| !read.iter().any(|r| r == name))
            .collect();
        assert!(
            unread.is_empty(),
            "no shipped policy reads {unread:?}: remove their entries from src/env_docs/policy_vars.rs"
        );
    }

    #[test]
    fn kinds_of_reads_have_their_defaults() {
        let text = "environment: production\nlisten: \"${L:-0.0.0.0:1}\"\nurl: \"${U}\"\ncors: { origins_from_env: [F] }\njwt:\n  issuers: [{ issuer: x, secret: HS }]\nrate_limits: { redis: { password_secret: PW } }\n";
        let policy = ShippedPolicy {
            file: "test.yaml",
            environment: Environment::Production,
            text,
        };
        let found: Vec<(String, String)> = shipped_references(&policy)
            .expect("yaml")
            .iter()
            .map(|r| (r.name.clone(), r.default_in(Environment::Production)))
            .collect();
        let required = "**required**".to_owned();
        assert_eq!(
            found,
            vec![
                ("L".to_owned(), "`0.0.0.0:1`".to_owned()),
                ("U".to_owned(), required.clone()),
                ("F".to_owned(), required.clone()),
                (DEFAULT_SECRET_NAME.to_owned(), required.clone()),
                ("HS".to_owned(), required.clone()),
                ("PW".to_owned(), required),
            ]
        );
        let dev = ShippedReference {
            name: "F".into(),
            read_by: ReadBy::Origins,
        };
        assert_eq!(
            dev.default_in(Environment::Dev),
            "unset: skipped with a warning"
        );
    }

    #[test]
    fn rows_follow_the_policies() {
        let rows = policy_rows();
        let row = |name: &str| rows.iter().find(|r| r.name == name).expect(name).clone();
        assert_eq!(
            row("GARDIEN_LISTEN").defaults,
            ["`127.0.0.1:8080`", "`0.0.0.0:8080`", "`0.0.0.0:8080`"].map(str::to_owned)
        );
        assert_eq!(row("FRONTEND_URL_PROD").defaults[0], "not read");
        assert_eq!(row("GARDIEN_INTERNAL_SECRET").kind, Kind::Secret);
    }
}
