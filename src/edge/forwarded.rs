//! `X-Forwarded-*` headers sent upstream, and which peers may set them.
//!
//! Only a peer in `trusted_proxies` (Cloud Load Balancing, Cloud Run's front end) may pass
//! an `X-Forwarded-For` chain along; anyone else's is replaced by their socket address, so a
//! client cannot tell the upstream (or, later, the rate limiter) who it claims to be.

use std::net::IpAddr;

use http::HeaderValue;
use ipnet::IpNet;

use crate::policy::Diagnostics;

/// Longest incoming `X-Forwarded-For` chain kept from a trusted proxy.
const MAX_CHAIN_LEN: usize = 2048;

/// The `trusted_proxies` CIDRs.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Validates `trusted_proxies:`; a bare address means a /32 (or /128).
    pub fn compile(entries: &[String], diag: &mut Diagnostics) -> TrustedProxies {
        let mut nets = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry.trim();
            let parsed = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => nets.push(net),
                Err(_) => diag.error(
                    format!("trusted_proxies[{i}]"),
                    format!("`{entry}` is not a CIDR (35.191.0.0/16) or an IP address"),
                ),
            }
        }
        TrustedProxies(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) compares as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `X-Forwarded-For` to send upstream for a request from `peer`.
pub fn forwarded_for(
    peer: IpAddr,
    incoming: Option<&HeaderValue>,
    trusted: &TrustedProxies,
) -> HeaderValue {
    let peer = canonical(peer);
    let chain = incoming
        .filter(|_| trusted.contains(peer))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_CHAIN_LEN);
    let value = match chain {
        Some(chain) => format!("{chain}, {peer}"),
        None => peer.to_string(),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The `X-Forwarded-Proto` to send upstream: a trusted proxy's `http`/`https`, else `http`
/// (gardien itself listens in clear; TLS ends at the load balancer).
pub fn forwarded_proto(
    peer: IpAddr,
    incoming: Option<&HeaderValue>,
    trusted: &TrustedProxies,
) -> HeaderValue {
    match incoming {
        Some(v) if trusted.contains(peer) && (v == "https" || v == "http") => v.clone(),
        _ => HeaderValue::from_static("http"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(entries: &[&str]) -> TrustedProxies {
        let mut diag = Diagnostics::default();
        let t = TrustedProxies::compile(
            &entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>(),
            &mut diag,
        );
        assert!(!diag.has_errors());
        t
    }

    #[test]
    fn untrusted_peer_cannot_choose_its_address() {
        let t = trusted(&["35.191.0.0/16"]);
        let spoof = HeaderValue::from_static("1.2.3.4");
        let xff = forwarded_for("203.0.113.9".parse().expect("ip"), Some(&spoof), &t);
        assert_eq!(xff, "203.0.113.9");
    }

    #[test]
    fn trusted_peer_chain_is_extended() {
        let t = trusted(&["35.191.0.0/16", "10.0.0.1"]);
        let chain = HeaderValue::from_static("198.51.100.7");
        let xff = forwarded_for("35.191.3.4".parse().expect("ip"), Some(&chain), &t);
        assert_eq!(xff, "198.51.100.7, 35.191.3.4");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert!(t.contains(mapped));
    }

    #[test]
    fn proto_is_believed_only_from_trusted_peers() {
        let t = trusted(&["10.0.0.0/8"]);
        let https = HeaderValue::from_static("https");
        assert_eq!(
            forwarded_proto("10.1.1.1".parse().expect("ip"), Some(&https), &t),
            "https"
        );
        assert_eq!(
            forwarded_proto("8.8.8.8".parse().expect("ip"), Some(&https), &t),
            "http"
        );
    }

    #[test]
    fn bad_entries_are_reported() {
        let mut diag = Diagnostics::default();
        TrustedProxies::compile(&["10.0.0.0/33".into(), "nope".into()], &mut diag);
        assert_eq!(diag.errors().len(), 2);
        assert_eq!(diag.errors()[1].path, "trusted_proxies[1]");
    }
}
