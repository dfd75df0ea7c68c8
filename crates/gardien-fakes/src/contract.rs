//! The official OpenAPI contracts, read at test time from the copies in
//! `crates/gardien-fakes/contracts/` (taken from the team's `shared/contracts/`, so a clean
//! clone tests on its own; a test checks the copies against `shared/` when it is beside the
//! repository), and a checker of JSON values against their schemas, so tests can show that
//! the fakes answer — and the clients send — what the documents say.
//!
//! The checker is written by hand: the documents are OpenAPI 3.0, whose `nullable` the
//! JSON Schema crates do not know, and they use a small subset of keywords (`$ref`, `type`,
//! `nullable`, `required`, `properties`, `additionalProperties`, `items`, `enum`,
//! `minLength`, `maxLength`, `pattern`, `minItems`, `maxItems`, `uniqueItems`,
//! `maxProperties`), all checked here. `format` is an annotation and is not checked.

use std::path::PathBuf;

use serde_json::Value;

/// The SendGrid Mail Send v3 document.
pub const SENDGRID: &str = "sendgrid_mail_v3.json";
/// The Twilio 2010-04-01 document.
pub const TWILIO: &str = "twilio_api_v2010.json";

/// `$GARDIEN_CONTRACTS_DIR`, else the copies in this crate's `contracts/`.
pub fn contracts_dir() -> PathBuf {
    match std::env::var_os("GARDIEN_CONTRACTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts"),
    }
}

/// The team's `shared/contracts/` beside the repository, where the copies come from.
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/contracts")
}

/// A contract document, or a message saying which file is missing or broken.
pub fn load(file: &str) -> Result<Value, String> {
    let path = contracts_dir().join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "contract {} cannot be read ({e}); copies live in crates/gardien-fakes/contracts (or set GARDIEN_CONTRACTS_DIR)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("contract {} is not JSON: {e}", path.display()))
}

/// What `#/components/schemas/x` (or any local `$ref`) points at.
pub fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    // JSON pointer escapes; OpenAPI names such as `api.v2010.account.message` need none.
    document.pointer(pointer)
}

/// Every way `value` breaks `schema`, each with the JSON path where it does (`$` is the
/// root). Empty when it conforms.
pub fn check(document: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check_at(document, schema, value, "$", &mut problems, 0);
    problems
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_at(
    document: &Value,
    schema: &Value,
    value: &Value,
    path: &str,
    problems: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 {
        problems.push(format!("{path}: schema nests too deep (a $ref cycle?)"));
        return;
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        match resolve(document, reference) {
            Some(target) => check_at(document, target, value, path, problems, depth + 1),
            None => problems.push(format!("{path}: unresolvable $ref {reference}")),
        }
        return;
    }
    if value.is_null() {
        let nullable = schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !nullable && schema.get("type").is_some() {
            problems.push(format!("{path}: null where the schema does not allow it"));
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let fits = actual == expected || (expected == "number" && actual == "integer");
        if !fits {
            problems.push(format!(
                "{path}: {actual} where the schema wants {expected}"
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            problems.push(format!(
                "{path}: {value} is not one of {}",
                Value::Array(allowed.clone())
            ));
        }
    }
    match value {
        Value::String(text) => {
            let length = text.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if length < min {
                    problems.push(format!("{path}: shorter than {min}"));
                }
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if length > max {
                    problems.push(format!("{path}: longer than {max}"));
                }
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(text) => {
                        problems.push(format!("{path}: `{text}` does not match {pattern}"));
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(format!("{path}: bad pattern {pattern}: {e}")),
                }
            }
        }
        Value::Array(items) => {
            let count = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if count < min {
                    problems.push(format!("{path}: fewer than {min} items"));
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if count > max {
                    problems.push(format!("{path}: more than {max} items"));
                }
            }
            if schema.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        problems.push(format!("{path}[{i}]: repeats an earlier item"));
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_at(
                        document,
                        item_schema,
                        item,
                        &format!("{path}[{i}]"),
                        problems,
                        depth + 1,
                    );
                }
            }
        }
        Value::Object(fields) => {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !fields.contains_key(name) {
                    problems.push(format!("{path}: `{name}` is required"));
                }
            }
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
                if fields.len() as u64 > max {
                    problems.push(format!("{path}: more than {max} properties"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, field) in fields {
                let field_path = format!("{path}.{name}");
                match properties.and_then(|p| p.get(name)) {
                    Some(field_schema) => check_at(
                        document,
                        field_schema,
                        field,
                        &field_path,
                        problems,
                        depth + 1,
                    ),
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            problems.push(format!("{field_path}: not a property of the schema"));
                        }
                        Some(extra) if extra.is_object() => {
                            check_at(document, extra, field, &field_path, problems, depth + 1);
                        }
                        _ => {}
                    },
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_checker_finds_each_kind_of_problem() {
        let document = json!({"components": {"schemas": {
            "Item": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string", "pattern": "^SM[0-9a-f]{4}$"},
                "n": {"type": "integer", "nullable": true},
                "kind": {"type": "string", "enum": ["a", "b"]},
                "tags": {"type": "array", "maxItems": 2, "uniqueItems": true, "items": {"type": "string", "minLength": 1}},
            }, "additionalProperties": false}
        }}});
        let schema = json!({"$ref": "#/components/schemas/Item"});
        assert!(check(
            &document,
            &schema,
            &json!({"id": "SM00af", "n": null, "kind": "a"})
        )
        .is_empty());
        let problems = check(
            &document,
            &schema,
            &json!({"id": "XX", "n": "1", "kind": "c", "tags": ["", "x", "x"], "extra": 1}),
        );
        for expected in [
            "$.id:",
            "$.n:",
            "$.kind:",
            "$.tags:",
            "$.tags[0]:",
            "$.tags[2]:",
            "$.extra:",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{expected} in {problems:#?}"
            );
        }
        assert_eq!(
            check(&document, &schema, &json!({})),
            vec!["$: `id` is required".to_owned()]
        );
    }
}
