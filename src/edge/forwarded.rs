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

/// The client's address, as rate limits key it: the socket peer, unless the peer is a
/// trusted proxy — then the right-most address of `X-Forwarded-For` that is not a trusted
/// proxy (each proxy appends the address it saw, so entries left of the last untrusted one
/// are whatever the client chose to write). Entries that are not addresses end the walk:
/// the nearest trusted hop is used.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let mut nearest = peer;
    for value in forwarded_for.rev() {
        let Ok(text) = value.to_str() else {
            return nearest;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_entry(entry.trim()) else {
                return nearest;
            };
            if !trusted.contains(ip) {
                return ip;
            }
            nearest = ip;
        }
    }
    nearest
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(socket) = entry.parse::<std::net::SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    None
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
    fn client_ip_is_the_right_most_untrusted_hop() {
        let t = trusted(&["35.191.0.0/16", "10.0.0.0/8"]);
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        let xff = |v: &'static str| vec![HeaderValue::from_static(v)];
        // Untrusted peer: its own address, whatever it claims.
        assert_eq!(
            client_ip(ip("203.0.113.9"), xff("1.1.1.1").iter(), &t),
            ip("203.0.113.9")
        );
        // Through the load balancer: the address it appended.
        assert_eq!(
            client_ip(ip("35.191.1.1"), xff("6.6.6.6, 198.51.100.7").iter(), &t),
            ip("198.51.100.7"),
            "the client's own 6.6.6.6 is ignored"
        );
        // Several trusted hops, several headers.
        let two = [
            HeaderValue::from_static("198.51.100.7, 10.1.1.1"),
            HeaderValue::from_static("35.191.2.2"),
        ];
        assert_eq!(
            client_ip(ip("35.191.1.1"), two.iter(), &t),
            ip("198.51.100.7")
        );
        // Garbage where the client address should be: the nearest trusted hop.
        assert_eq!(
            client_ip(ip("35.191.1.1"), xff("nonsense, 10.2.2.2").iter(), &t),
            ip("10.2.2.2")
        );
        // Ports and IPv6 forms.
        assert_eq!(
            client_ip(ip("35.191.1.1"), xff("[2001:db8::7]:443").iter(), &t),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_ip(ip("35.191.1.1"), xff("198.51.100.7:5555").iter(), &t),
            ip("198.51.100.7")
        );
        // No header at all from a trusted peer: the peer.
        assert_eq!(
            client_ip(ip("35.191.1.1"), Vec::<HeaderValue>::new().iter(), &t),
            ip("35.191.1.1")
        );
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
