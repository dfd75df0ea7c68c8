//! The secrets a policy needs, worked out from its text before it compiles, so they can be
//! resolved through the chain first: the identity secret (required outside `dev`), each
//! HMAC issuer's `secret` (always required), and `SENTRY_DSN` (optional).

use gardien_secrets::Requirement;

use crate::edge::identity::DEFAULT_SECRET_NAME;
use crate::policy::{environment_and_jwt, Env, Environment};

/// `SENTRY_DSN`: error reporting, when configured.
pub const SENTRY_DSN: &str = gardien_telemetry::error_reporting::SENTRY_DSN;

/// The policy's environment and the secrets it reads; `None` when the text is not YAML
/// (compiling it will say why).
pub fn policy_requirements(text: &str, env: &dyn Env) -> Option<(Environment, Vec<Requirement>)> {
    let (environment, jwt) = environment_and_jwt(text, env)?;
    let mut requirements = Vec::new();
    let identity = jwt
        .as_ref()
        .and_then(|j| j.identity_secret.as_deref())
        .unwrap_or(DEFAULT_SECRET_NAME);
    let purpose = "jwt.identity_secret: signs X-Gardien-Identity";
    requirements.push(if environment == Environment::Dev {
        Requirement::optional(identity, purpose)
    } else {
        Requirement::required(identity, purpose)
    });
    for (i, issuer) in jwt.iter().flat_map(|j| j.issuers.iter()).enumerate() {
        if let Some(name) = issuer.secret.as_deref() {
            requirements.push(Requirement::required(
                name,
                format!(
                    "jwt.issuers[{i}].secret: HMAC key of {}",
                    issuer.issuer.trim()
                ),
            ));
        }
    }
    if let Some(name) = crate::policy::redis_password_secret(text, env) {
        requirements.push(Requirement::required(
            name,
            "rate_limits.redis.password_secret: AUTH password of the rate-limit Redis",
        ));
    }
    requirements.push(Requirement::optional(SENTRY_DSN, "error reporting"));
    Some((environment, requirements))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn identity_issuer_secrets_and_sentry() {
        let text = r#"
environment: production
jwt:
  identity_secret: ${IDENTITY_NAME:-GATEWAY_KEY}
  issuers:
    - { issuer: a, algorithms: [RS256], jwks_url: "https://a/jwks" }
    - { issuer: svc, algorithms: [HS256], secret: JWT_SECRET }
"#;
        let env: HashMap<String, String> = HashMap::new();
        let (environment, requirements) = policy_requirements(text, &env).expect("yaml");
        assert_eq!(environment, Environment::Production);
        let names: Vec<(&str, bool)> = requirements
            .iter()
            .map(|r| (r.name.as_str(), r.required))
            .collect();
        assert_eq!(
            names,
            vec![
                ("GATEWAY_KEY", true),
                ("JWT_SECRET", true),
                ("SENTRY_DSN", false)
            ]
        );
        assert!(requirements[1].purpose.starts_with("jwt.issuers[1].secret"));

        let redis = "environment: staging\nrate_limits:\n  store: redis\n  redis: { url: \"redis://cache\", password_secret: REDIS_AUTH }\n";
        let (_, requirements) = policy_requirements(redis, &env).expect("yaml");
        assert!(requirements
            .iter()
            .any(|r| r.name == "REDIS_AUTH" && r.required));
        let local = redis.replace("store: redis", "store: local");
        let (_, requirements) = policy_requirements(&local, &env).expect("yaml");
        assert!(requirements.iter().all(|r| r.name != "REDIS_AUTH"));

        let (_, dev) = policy_requirements("environment: dev\n", &env).expect("yaml");
        assert_eq!(dev[0].name, "GARDIEN_INTERNAL_SECRET");
        assert!(!dev[0].required, "optional in dev");
        assert!(policy_requirements("environment: [dev", &env).is_none());
    }
}
