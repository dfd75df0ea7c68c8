//! The `X-Request-Id` that ties a client's request to the gateway's and the upstreams' logs.
//!
//! A client's id is kept when it is well-formed (1 to 128 characters of `A-Z a-z 0-9 . _ : -`,
//! enough for UUIDs, ULIDs and trace ids) so a frontend can correlate its own logs; anything
//! else is replaced, so an attacker cannot inject text into logs or headers through it.

use http::HeaderValue;

pub const HEADER: &str = "x-request-id";
const MAX_LEN: usize = 128;

/// The request id chosen for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Keeps the client's id when well-formed, otherwise generates a UUIDv4.
    pub fn from_client(client: Option<&HeaderValue>) -> Self {
        match client {
            Some(value) if is_well_formed(value.as_bytes()) => RequestId(value.clone()),
            _ => Self::generate(),
        }
    }

    pub fn generate() -> Self {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        RequestId(HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-")))
    }

    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id as text; always ASCII by construction.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("-")
    }
}

fn is_well_formed(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_well_formed_client_id() {
        let id = HeaderValue::from_static("01HZX3K9Q2-trace.1:abc_def");
        assert_eq!(RequestId::from_client(Some(&id)).header_value(), &id);
    }

    #[test]
    fn replaces_a_bad_client_id() {
        for bad in [
            HeaderValue::from_static(""),
            HeaderValue::from_static("has space"),
            HeaderValue::from_static("quote\"injection"),
            HeaderValue::from_str(&"a".repeat(129)).expect("ascii"),
            HeaderValue::from_bytes(&[0xff, 0x41]).expect("opaque bytes"),
        ] {
            let chosen = RequestId::from_client(Some(&bad));
            assert_ne!(chosen.header_value(), &bad);
            assert_eq!(chosen.as_str().len(), 36, "a uuid replaces {bad:?}");
        }
    }

    #[test]
    fn generates_distinct_ids() {
        assert_ne!(RequestId::generate(), RequestId::generate());
        assert_eq!(RequestId::from_client(None).as_str().len(), 36);
    }
}
