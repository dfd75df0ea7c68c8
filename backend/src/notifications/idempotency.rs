//! Idempotency of `POST /api/notifications`: a key (the `Idempotency-Key` header or the
//! body's `idempotency_key`) is remembered per caller for [`WINDOW`] with the fingerprint
//! of the request that used it and the answer it got. The same key with the same request
//! gets that answer again (`Idempotency-Replay: true`), nothing new is written; the same
//! key with another request is refused (`422`).
//!
//! The fingerprint is the SHA-256 of the request's canonical JSON (object keys sorted,
//! whitespace and key order of the sender ignored), without the key itself, so sending the
//! key in the header or in the body makes no difference.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::notifications::model::SendRequest;

/// How long a key is remembered.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The header that marks a replayed answer.
pub const REPLAY_HEADER: &str = "idempotency-replay";

/// A key, scoped to the caller that used it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

/// The fingerprint of a request.
pub fn fingerprint(request: &SendRequest) -> String {
    let mut value = serde_json::to_value(request).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("idempotency_key");
        // `null` and absent mean the same.
        map.retain(|_, v| !v.is_null());
    }
    let mut hasher = Sha256::new();
    write_canonical(&value, &mut hasher);
    hex(&hasher.finalize())
}

/// JSON with object keys in sorted order, written straight into the hash.
fn write_canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                hasher.update(Value::String(key.clone()).to_string().as_bytes());
                hasher.update(b":");
                if let Some(v) = map.get(key) {
                    write_canonical(v, hasher);
                }
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                write_canonical(item, hasher);
            }
            hasher.update(b"]");
        }
        other => hasher.update(other.to_string().as_bytes()),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> SendRequest {
        serde_json::from_str(json).expect("request")
    }

    #[test]
    fn order_nulls_and_the_key_do_not_matter() {
        let a = request(
            r#"{"user_id":"u","template_key":"t","variables":{"b":1,"a":[1,{"y":2,"x":1}]},"idempotency_key":"k"}"#,
        );
        let b = request(
            r#"{"variables":{"a":[1,{"x":1,"y":2}],"b":1},"template_key":"t","user_id":"u","to":null}"#,
        );
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn any_change_of_content_does() {
        let a = request(r#"{"user_id":"u","template_key":"t","variables":{"code":"123"}}"#);
        let b = request(r#"{"user_id":"u","template_key":"t","variables":{"code":"124"}}"#);
        let c = request(r#"{"user_id":"v","template_key":"t","variables":{"code":"123"}}"#);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
