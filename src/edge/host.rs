//! The `Host` rule of RFC 9112 §3.2: a server must answer `400` to an HTTP/1.1 request
//! without `Host`, and to any request with more than one `Host` line or an invalid value.
//! HTTP/1.0 requests may leave it out.

use http::{header, HeaderMap, Version};

/// Whether the request's `Host` lines follow RFC 9112 §3.2.
pub fn is_acceptable(version: Version, headers: &HeaderMap) -> bool {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => version != Version::HTTP_11,
        (Some(value), None) => is_valid(value.as_bytes()),
        (Some(_), Some(_)) => false,
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2); empty is allowed, for targets without an
/// authority. An authority with user information is not a host.
fn is_valid(value: &[u8]) -> bool {
    value.is_empty()
        || (!value.contains(&b'@') && http::uri::Authority::try_from(value).is_ok())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(hosts: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for host in hosts {
            map.append(header::HOST, HeaderValue::from_static(host));
        }
        map
    }

    #[test]
    fn http_11_needs_exactly_one_valid_host() {
        let v11 = Version::HTTP_11;
        assert!(is_acceptable(v11, &headers(&["api.example.com"])));
        assert!(is_acceptable(v11, &headers(&["127.0.0.1:8080"])));
        assert!(is_acceptable(v11, &headers(&["[::1]:8080"])));
        assert!(is_acceptable(v11, &headers(&[""])));
        assert!(!is_acceptable(v11, &headers(&[])));
        assert!(!is_acceptable(v11, &headers(&["a.test", "b.test"])));
        assert!(!is_acceptable(v11, &headers(&["user@a.test"])));
        assert!(!is_acceptable(v11, &headers(&["a.test/path"])));
        assert!(!is_acceptable(v11, &headers(&["a.test:port"])));
        assert!(!is_acceptable(v11, &headers(&["a b"])));
    }

    #[test]
    fn http_10_may_leave_host_out_but_not_repeat_it() {
        let v10 = Version::HTTP_10;
        assert!(is_acceptable(v10, &headers(&[])));
        assert!(is_acceptable(v10, &headers(&["a.test"])));
        assert!(!is_acceptable(v10, &headers(&["a.test", "a.test"])));
    }
}
