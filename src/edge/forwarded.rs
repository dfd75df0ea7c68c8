//! The `X-Forwarded-*` headers sent upstream, from the client address the policy found
//! ([`crate::edge::client_address`]).
//!
//! The upstream gets exactly one address in `X-Forwarded-For`, the one every rate limit and
//! log line of gardien used: whether the existing API reads the left-most or the right-most
//! entry, it sees the same client, and never an address the client wrote itself.

use http::HeaderValue;

use crate::edge::client_address::ClientAddress;

/// The `X-Forwarded-For` to send upstream: the client's address alone.
pub fn forwarded_for(client: &ClientAddress) -> HeaderValue {
    HeaderValue::try_from(client.ip.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The `X-Forwarded-Proto` to send upstream: the platform's `http`/`https` when its
/// forwarding headers were believed for the address, else `http` (gardien itself listens in
/// clear; TLS ends at the load balancer).
pub fn forwarded_proto(client: &ClientAddress, incoming: Option<&HeaderValue>) -> HeaderValue {
    match incoming {
        Some(v) if client.forwarded && (v == "https" || v == "http") => v.clone(),
        _ => HeaderValue::from_static("http"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(ip: &str, forwarded: bool) -> ClientAddress {
        ClientAddress {
            ip: ip.parse().expect("ip"),
            forwarded,
        }
    }

    #[test]
    fn one_address_goes_upstream() {
        assert_eq!(forwarded_for(&client("198.51.100.7", true)), "198.51.100.7");
        assert_eq!(forwarded_for(&client("2001:db8::7", false)), "2001:db8::7");
    }

    #[test]
    fn proto_is_believed_only_through_the_platform() {
        let https = HeaderValue::from_static("https");
        assert_eq!(
            forwarded_proto(&client("198.51.100.7", true), Some(&https)),
            "https"
        );
        assert_eq!(
            forwarded_proto(&client("198.51.100.7", false), Some(&https)),
            "http"
        );
        let odd = HeaderValue::from_static("gopher");
        assert_eq!(
            forwarded_proto(&client("198.51.100.7", true), Some(&odd)),
            "http"
        );
    }
}
