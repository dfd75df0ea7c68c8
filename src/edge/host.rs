//! The `Host` rule of RFC 9112 §3.2: a server must answer `400` to an HTTP/1.1 request
//! without `Host`, and to any request with more than one `Host` line or an invalid value.
//! HTTP/1.0 requests may leave it out. Checked on the raw head (`crate::downstream`), before
//! Pingora, whose own check answers a bare `400` without the gateway's JSON error.

/// Whether a request of `version` (`1` for HTTP/1.1, `0` for HTTP/1.0, as httparse counts)
/// with these `Host` values follows RFC 9112 §3.2.
pub fn is_acceptable<'a>(version: u8, mut hosts: impl Iterator<Item = &'a [u8]>) -> bool {
    match (hosts.next(), hosts.next()) {
        (None, _) => version == 0,
        (Some(value), None) => is_valid(value),
        (Some(_), Some(_)) => false,
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2); empty is allowed, for targets without an
/// authority. An authority with user information is not a host; the port is digits
/// (`http`'s `Authority` checks it only when asked for it).
fn is_valid(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    let port = match value.iter().rposition(|&b| b == b':') {
        Some(i) if !value[i..].contains(&b']') => &value[i + 1..],
        _ => &[],
    };
    !value.contains(&b'@')
        && port.iter().all(u8::is_ascii_digit)
        && http::uri::Authority::try_from(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(version: u8, hosts: &[&str]) -> bool {
        is_acceptable(version, hosts.iter().map(|h| h.as_bytes()))
    }

    #[test]
    fn http_11_needs_exactly_one_valid_host() {
        assert!(check(1, &["api.example.com"]));
        assert!(check(1, &["127.0.0.1:8080"]));
        assert!(check(1, &["[::1]:8080"]));
        assert!(check(1, &[""]));
        assert!(!check(1, &[]));
        assert!(!check(1, &["a.test", "b.test"]));
        assert!(!check(1, &["user@a.test"]));
        assert!(!check(1, &["a.test/path"]));
        assert!(!check(1, &["a.test:port"]));
        assert!(!check(1, &["a b"]));
    }

    #[test]
    fn http_10_may_leave_host_out_but_not_repeat_it() {
        assert!(check(0, &[]));
        assert!(check(0, &["a.test"]));
        assert!(!check(0, &["a.test", "a.test"]));
    }
}
