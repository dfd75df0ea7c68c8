//! `X-Gardien-Identity`: the signature gardien puts on every request it forwards, so the
//! services behind it (gardien-backend, the existing API) can prove a request came through
//! gardien and that its identity headers are gardien's. Shared by the gateway (signing) and
//! the backend (verifying); the format is specified in `docs/IDENTITY.md`:
//!
//! ```text
//! X-Gardien-Identity: v1;<unix-ts>;<hex HMAC-SHA256>
//! message = "v1\n" METHOD "\n" path "\n" ts "\n" ( lower-case-name ":" value "\n" )*
//! ```
//!
//! with one `name:value` line per identity header sent, in ascending name order.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub mod rotation;

/// The header carrying the signature.
pub const HEADER: &str = "x-gardien-identity";
/// Version tag of the format.
pub const VERSION: &str = "v1";

/// A signing key prepared once: HMAC's key schedule is done at construction, so each
/// signature costs only the message's hashing (the gateway signs every request).
#[derive(Clone)]
pub struct Signer {
    prepared: Hmac<Sha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        Signer {
            // HMAC accepts keys of any length: `new_from_slice` cannot fail.
            prepared: Hmac::<Sha256>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
        }
    }

    /// Hex HMAC-SHA256 of the canonical message.
    pub fn mac(
        &self,
        method: &str,
        path: &str,
        unix_ts: u64,
        identity: &[(&str, &[u8])],
    ) -> String {
        let mut hex = [0u8; 64];
        String::from(self.hex_mac(method, path, unix_ts, identity, &mut hex))
    }

    /// The header value for a request signed at `unix_ts`: `v1;<unix_ts>;<hex mac>`, built
    /// in one allocation (the gateway signs every request).
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        unix_ts: u64,
        identity: &[(&str, &[u8])],
    ) -> String {
        let mut hex = [0u8; 64];
        let mac = self.hex_mac(method, path, unix_ts, identity, &mut hex);
        let mut ts = itoa::Buffer::new();
        let ts = ts.format(unix_ts);
        let mut value = String::with_capacity(VERSION.len() + ts.len() + mac.len() + 2);
        value.push_str(VERSION);
        value.push(';');
        value.push_str(ts);
        value.push(';');
        value.push_str(mac);
        value
    }

    /// The MAC as lower-case hex in `out`. `hex::encode_to_slice`, not `hex::encode`: the
    /// latter collects a `String` one `char` at a time, which cost more than the HMAC.
    fn hex_mac<'a>(
        &self,
        method: &str,
        path: &str,
        unix_ts: u64,
        identity: &[(&str, &[u8])],
        out: &'a mut [u8; 64],
    ) -> &'a str {
        let mut hmac = self.prepared.clone();
        let mut line = |part: &[u8]| {
            hmac.update(part);
            hmac.update(b"\n");
        };
        line(VERSION.as_bytes());
        line(method.as_bytes());
        line(path.as_bytes());
        line(itoa::Buffer::new().format(unix_ts).as_bytes());
        let mut feed = |(name, value): &(&str, &[u8])| {
            hmac.update(name.as_bytes());
            hmac.update(b":");
            hmac.update(value);
            hmac.update(b"\n");
        };
        // Gardien passes the headers already in name order; sort only when they are not.
        if identity.is_sorted_by(|a, b| a.0 <= b.0) {
            identity.iter().for_each(&mut feed);
        } else {
            let mut sorted: Vec<&(&str, &[u8])> = identity.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            sorted.into_iter().for_each(&mut feed);
        }
        let digest = hmac.finalize().into_bytes();
        // 32 bytes always fit 64 hex digits, which are ASCII.
        hex::encode_to_slice(digest, out)
            .unwrap_or_else(|_| unreachable!("32 bytes are 64 hex digits"));
        std::str::from_utf8(out).unwrap_or_else(|_| unreachable!("hex digits are ASCII"))
    }
}

/// Hex HMAC-SHA256 of the canonical message. `identity` holds `(lower-case name, value)`
/// pairs in any order; they are signed sorted by name.
pub fn mac(
    key: &[u8],
    method: &str,
    path: &str,
    unix_ts: u64,
    identity: &[(&str, &[u8])],
) -> String {
    Signer::new(key).mac(method, path, unix_ts, identity)
}

/// The header value for a request signed at `unix_ts`.
pub fn sign(
    key: &[u8],
    method: &str,
    path: &str,
    unix_ts: u64,
    identity: &[(&str, &[u8])],
) -> String {
    Signer::new(key).sign(method, path, unix_ts, identity)
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not `v1;<ts>;<hex>`.
    Malformed,
    /// The timestamp is further than the window from now (a replay, or clocks apart).
    Stale,
    /// The MAC does not match: another key, or a tampered method, path or identity.
    BadSignature,
}

/// Checks a header value: the version, a timestamp within `window_secs` of `now`, and the
/// MAC, compared in constant time.
pub fn verify(
    key: &[u8],
    header: &str,
    method: &str,
    path: &str,
    identity: &[(&str, &[u8])],
    now: u64,
    window_secs: u64,
) -> Result<(), Refusal> {
    let mut parts = header.splitn(3, ';');
    let (Some(version), Some(ts), Some(given)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Refusal::Malformed);
    };
    let ts: u64 = ts.parse().map_err(|_| Refusal::Malformed)?;
    if version != VERSION || given.len() != 64 {
        return Err(Refusal::Malformed);
    }
    if ts.abs_diff(now) > window_secs {
        return Err(Refusal::Stale);
    }
    let expected = mac(key, method, path, ts, identity);
    let equal = expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0;
    if equal {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

/// [`verify`] against several keys (the current secret, then the previous one during a
/// rotation): the index in `keys` of the first key the MAC matches. The header's shape and
/// timestamp are checked once; a MAC matching no key is [`Refusal::BadSignature`].
pub fn verify_any(
    keys: &[&[u8]],
    header: &str,
    method: &str,
    path: &str,
    identity: &[(&str, &[u8])],
    now: u64,
    window_secs: u64,
) -> Result<usize, Refusal> {
    let mut refusal = Refusal::BadSignature;
    for (index, key) in keys.iter().enumerate() {
        match verify(key, header, method, path, identity, now, window_secs) {
            Ok(()) => return Ok(index),
            // The shape and the timestamp do not depend on the key.
            Err(shape @ (Refusal::Malformed | Refusal::Stale)) => return Err(shape),
            Err(other) => refusal = other,
        }
    }
    Err(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn the_documented_example() {
        // docs/IDENTITY.md: GET /api/me at 1795632556 for u-1 / a@b.co / admin,ops.
        let identity: [(&str, &[u8]); 3] = [
            ("x-user-roles", b"admin,ops"),
            ("x-user-id", b"u-1"),
            ("x-user-email", b"a@b.co"),
        ];
        let header = sign(KEY, "GET", "/api/me", 1_795_632_556, &identity);
        assert!(header.starts_with("v1;1795632556;"));
        assert_eq!(
            verify(KEY, &header, "GET", "/api/me", &identity, 1_795_632_560, 30),
            Ok(())
        );
    }

    /// The exact bytes `clients/node/test/vectors.test.js` hard-codes: the Node package and
    /// this crate sign and verify the same values (the documented example, the `internal`
    /// identity the existing API sends the backend, and a public route's empty identity).
    #[test]
    fn the_vectors_the_node_client_tests() {
        let documented: [(&str, &[u8]); 3] = [
            ("x-user-email", b"a@b.co"),
            ("x-user-id", b"u-1"),
            ("x-user-roles", b"admin,ops"),
        ];
        assert_eq!(
            sign(KEY, "GET", "/api/me", 1_795_632_556, &documented),
            "v1;1795632556;7f135aa7546b69576c1626a684ef836f5dd5a4a77c528a7c0d9a5c0b064ae8a9"
        );
        let internal: [(&str, &[u8]); 2] =
            [("x-user-id", b"svc-api"), ("x-user-roles", b"internal")];
        let header = sign(KEY, "POST", "/api/notifications", 1_795_632_556, &internal);
        assert_eq!(
            header,
            "v1;1795632556;c5e99cfaaf1c9625874d7bbb79208a43ce3593e7b84e7ee59c172de3f97b06da"
        );
        assert_eq!(
            verify(
                KEY,
                &header,
                "POST",
                "/api/notifications",
                &internal,
                1_795_632_556,
                30
            ),
            Ok(())
        );
        assert_eq!(
            sign(KEY, "GET", "/health", 1_795_632_556, &[]),
            "v1;1795632556;2af4d330713dc7bc99bc1bd18dd0b5a451557f47ede1dcf26289634f6dfb2429"
        );
    }

    #[test]
    fn tampering_staleness_and_shapes_are_refused() {
        let identity: [(&str, &[u8]); 1] = [("x-user-id", b"u-1")];
        let header = sign(KEY, "GET", "/api/me", 1000, &identity);
        let other: [(&str, &[u8]); 1] = [("x-user-id", b"u-2")];
        assert_eq!(
            verify(KEY, &header, "GET", "/api/me", &other, 1000, 30),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(KEY, &header, "PUT", "/api/me", &identity, 1000, 30),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(KEY, &header, "GET", "/api/you", &identity, 1000, 30),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(b"other", &header, "GET", "/api/me", &identity, 1000, 30),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(KEY, &header, "GET", "/api/me", &identity, 1031, 30),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verify(KEY, &header, "GET", "/api/me", &identity, 969, 30),
            Err(Refusal::Stale)
        );
        for bad in ["", "v1", "v1;x;00", "v2;1000;00", "v1;1000;abc"] {
            assert_eq!(
                verify(KEY, bad, "GET", "/api/me", &identity, 1000, 30),
                Err(Refusal::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn verify_any_says_which_key_matched() {
        let identity: [(&str, &[u8]); 1] = [("x-user-id", b"u-1")];
        let previous: &[u8] = b"the-previous-key-0123456789abcdef";
        let header = sign(previous, "GET", "/api/me", 1000, &identity);
        let check = |keys: &[&[u8]], header: &str| {
            verify_any(keys, header, "GET", "/api/me", &identity, 1000, 30)
        };
        assert_eq!(check(&[KEY, previous], &header), Ok(1));
        assert_eq!(check(&[previous, KEY], &header), Ok(0));
        assert_eq!(check(&[KEY], &header), Err(Refusal::BadSignature));
        assert_eq!(check(&[], &header), Err(Refusal::BadSignature));
        assert_eq!(check(&[KEY, previous], "v1;x;00"), Err(Refusal::Malformed));
        let stale = sign(previous, "GET", "/api/me", 900, &identity);
        assert_eq!(check(&[KEY, previous], &stale), Err(Refusal::Stale));
    }
}
