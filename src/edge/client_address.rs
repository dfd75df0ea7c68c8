//! Who the client is: the one address every rate limit, log line and forwarded header uses.
//!
//! The address is never guessed from the shape of `X-Forwarded-For`. The policy says how it
//! is found (`client_ip:`), in the manner of Envoy's `xff_num_trusted_hops` and Traefik's
//! `depth`:
//!
//! - `peer`: the socket peer. For a gateway exposed directly; any `X-Forwarded-For` a client
//!   sends is ignored.
//! - `x_forwarded_for` with `trusted_hops: N`: the platform in front of gardien appends N
//!   addresses to `X-Forwarded-For`, the left-most of them being the client's; everything to
//!   their left is whatever the client chose to write. The client is the N-th entry from the
//!   right. Google's external Application Load Balancer sends
//!   `<client-supplied…>, <client>, <load balancer>` (N = 2); Cloud Run's front end appends
//!   the client alone (N = 1).
//!
//! `trusted_peers` (optional) restricts who may speak for the client: a request whose socket
//! peer is not in it is keyed on the peer, whatever its headers say. Where the platform's
//! peers are known and fixed (Google's front ends, 35.191.0.0/16 and 130.211.0.0/22), name
//! them; on Cloud Run the peer is Google's serving infrastructure, with no published range,
//! and the service is reachable only through that front end.
//!
//! A request with fewer entries than `trusted_hops`, or with something that is not an
//! address at the client's place, did not come the way the policy says: it is keyed on the
//! peer (as Envoy does), and its forwarding headers are not believed.

use std::net::{IpAddr, SocketAddr};

use http::HeaderValue;
use ipnet::IpNet;

use crate::policy::schema::{ClientIpFrom, ClientIpSpec};
use crate::policy::Diagnostics;

/// Google's front ends: the peers of a backend behind an external Application Load
/// Balancer (and of its health checks).
pub const GOOGLE_FRONT_END_RANGES: [&str; 2] = ["35.191.0.0/16", "130.211.0.0/22"];

/// Most hops a policy may trust: far more than any real chain of proxies.
pub const MAX_TRUSTED_HOPS: u8 = 16;

/// The presets `client_ip:` may name instead of a mapping.
pub const PRESETS: [&str; 3] = ["direct", "cloud_run", "google_load_balancer"];

/// How the client address is found, compiled from `client_ip:`.
#[derive(Debug, Clone, Default)]
pub struct ClientAddressPolicy {
    source: Source,
    /// The preset named, or `custom`; for `check` and the start-up log.
    label: &'static str,
}

#[derive(Debug, Clone, Default)]
enum Source {
    #[default]
    Peer,
    ForwardedFor {
        trusted_hops: u8,
        trusted_peers: PeerNets,
    },
}

/// The client's address, and whether the platform's forwarding headers were believed to
/// find it (then its `X-Forwarded-Proto` is believed too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress {
    pub ip: IpAddr,
    pub forwarded: bool,
}

impl ClientAddressPolicy {
    /// `client_ip: peer`-like policy: the socket peer, headers ignored.
    pub fn peer() -> Self {
        ClientAddressPolicy {
            source: Source::Peer,
            label: "direct",
        }
    }

    /// `client_ip: { from: x_forwarded_for, trusted_hops, trusted_peers }`, for tests and
    /// benches that build a policy in code.
    pub fn forwarded_for(trusted_hops: u8, trusted_peers: &[&str]) -> Self {
        let mut diag = Diagnostics::default();
        let nets: Vec<String> = trusted_peers.iter().map(|s| (*s).to_owned()).collect();
        ClientAddressPolicy {
            source: Source::ForwardedFor {
                trusted_hops: trusted_hops.clamp(1, MAX_TRUSTED_HOPS),
                trusted_peers: PeerNets::compile(&nets, "client_ip.trusted_peers", &mut diag),
            },
            label: "custom",
        }
    }

    /// Validates `client_ip:`. Absent means `direct` (the socket peer).
    pub fn compile(spec: Option<&ClientIpSpec>, diag: &mut Diagnostics) -> Self {
        let Some(spec) = spec else {
            return Self::peer();
        };
        match spec {
            ClientIpSpec::Preset(name) => match name.as_str() {
                "direct" => Self::peer(),
                "cloud_run" => ClientAddressPolicy {
                    source: Source::ForwardedFor {
                        trusted_hops: 1,
                        trusted_peers: PeerNets::default(),
                    },
                    label: "cloud_run",
                },
                "google_load_balancer" => {
                    let ranges: Vec<String> = GOOGLE_FRONT_END_RANGES
                        .iter()
                        .map(|r| (*r).to_owned())
                        .collect();
                    ClientAddressPolicy {
                        source: Source::ForwardedFor {
                            trusted_hops: 2,
                            trusted_peers: PeerNets::compile(&ranges, "client_ip", diag),
                        },
                        label: "google_load_balancer",
                    }
                }
                other => {
                    diag.error(
                        "client_ip",
                        format!(
                            "unknown preset `{other}`{}; expected one of: {}, or a mapping {{ from: peer | x_forwarded_for, trusted_hops: N }}",
                            crate::policy::suggest(other, PRESETS),
                            PRESETS.join(", ")
                        ),
                    );
                    Self::peer()
                }
            },
            ClientIpSpec::Custom(custom) => match custom.from {
                ClientIpFrom::Peer => {
                    if custom.trusted_hops.is_some() {
                        diag.error(
                            "client_ip.trusted_hops",
                            "only with `from: x_forwarded_for`: with `from: peer` no header is read",
                        );
                    }
                    if !custom.trusted_peers.is_empty() {
                        diag.error(
                            "client_ip.trusted_peers",
                            "only with `from: x_forwarded_for`: with `from: peer` no header is read",
                        );
                    }
                    Self::peer()
                }
                ClientIpFrom::XForwardedFor => {
                    let hops = match custom.trusted_hops {
                        None => {
                            diag.error(
                                "client_ip.trusted_hops",
                                "missing (required with `from: x_forwarded_for`): how many addresses the platform appends to X-Forwarded-For (2 behind Google's load balancer, 1 on Cloud Run)",
                            );
                            1
                        }
                        Some(n) if n == 0 || n > u64::from(MAX_TRUSTED_HOPS) => {
                            diag.error(
                                "client_ip.trusted_hops",
                                format!("must be between 1 and {MAX_TRUSTED_HOPS} (got {n}); for no proxy at all write `from: peer`"),
                            );
                            1
                        }
                        Some(n) => u8::try_from(n).unwrap_or(1),
                    };
                    ClientAddressPolicy {
                        source: Source::ForwardedFor {
                            trusted_hops: hops,
                            trusted_peers: PeerNets::compile(
                                &custom.trusted_peers,
                                "client_ip.trusted_peers",
                                diag,
                            ),
                        },
                        label: "custom",
                    }
                }
            },
        }
    }

    /// One phrase for `check` and the start-up log.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Peer => format!("client address: socket peer ({})", self.label),
            Source::ForwardedFor {
                trusted_hops,
                trusted_peers,
            } => format!(
                "client address: X-Forwarded-For entry {trusted_hops} from the right ({}), {}",
                self.label,
                if trusted_peers.is_empty() {
                    "from any peer".to_owned()
                } else {
                    format!("from {} trusted peer range(s)", trusted_peers.len())
                }
            ),
        }
    }

    /// Whether the policy reads forwarding headers at all (`from: x_forwarded_for`).
    pub fn reads_forwarded_for(&self) -> bool {
        matches!(self.source, Source::ForwardedFor { .. })
    }

    /// The client's address for a request from `peer` carrying these `X-Forwarded-For`
    /// values (several headers read as one list, in order).
    pub fn resolve<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    ) -> ClientAddress {
        let peer = canonical(peer);
        let not_forwarded = ClientAddress {
            ip: peer,
            forwarded: false,
        };
        let Source::ForwardedFor {
            trusted_hops,
            trusted_peers,
        } = &self.source
        else {
            return not_forwarded;
        };
        if !trusted_peers.is_empty() && !trusted_peers.contains(peer) {
            return not_forwarded;
        }
        // Walk from the right: the platform's entries are the last ones.
        let mut remaining = *trusted_hops;
        for value in forwarded_for.rev() {
            let Ok(text) = value.to_str() else {
                return not_forwarded;
            };
            for entry in text.rsplit(',') {
                remaining -= 1;
                if remaining == 0 {
                    return match parse_entry(entry.trim()) {
                        Some(ip) => ClientAddress {
                            ip,
                            forwarded: true,
                        },
                        None => not_forwarded,
                    };
                }
            }
        }
        not_forwarded
    }
}

/// CIDRs of peers (a bare address is a /32 or /128).
#[derive(Debug, Clone, Default)]
pub struct PeerNets(Vec<IpNet>);

impl PeerNets {
    /// Validates a list of CIDRs found at `path`.
    pub fn compile(entries: &[String], path: &str, diag: &mut Diagnostics) -> PeerNets {
        let mut nets = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry.trim();
            let parsed = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => nets.push(net),
                Err(_) => diag.error(
                    format!("{path}[{i}]"),
                    format!("`{entry}` is not a CIDR (35.191.0.0/16) or an IP address"),
                ),
            }
        }
        PeerNets(nets)
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
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::schema::ClientIpCustomSpec;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn preset(name: &str) -> ClientAddressPolicy {
        let mut diag = Diagnostics::default();
        let policy =
            ClientAddressPolicy::compile(Some(&ClientIpSpec::Preset(name.to_owned())), &mut diag);
        assert!(!diag.has_errors(), "{:?}", diag.errors());
        policy
    }

    fn resolve(policy: &ClientAddressPolicy, peer: &str, xff: &[&'static str]) -> ClientAddress {
        let values: Vec<HeaderValue> = xff.iter().map(|v| HeaderValue::from_static(v)).collect();
        policy.resolve(ip(peer), values.iter())
    }

    #[test]
    fn google_load_balancer_takes_the_second_entry_from_the_right() {
        let lb = preset("google_load_balancer");
        // <client-supplied>, <client>, <load balancer>, from a Google front end.
        let got = resolve(&lb, "35.191.4.5", &["6.6.6.6, 198.51.100.7, 34.117.1.1"]);
        assert_eq!(got.ip, ip("198.51.100.7"));
        assert!(got.forwarded);
        // Without a forged prefix.
        let got = resolve(&lb, "130.211.0.9", &["203.0.113.20, 34.117.1.1"]);
        assert_eq!(got.ip, ip("203.0.113.20"));
        // A long forged prefix changes nothing.
        let got = resolve(
            &lb,
            "35.191.4.5",
            &["1.1.1.1, 2.2.2.2, 3.3.3.3, 198.51.100.7, 34.117.1.1"],
        );
        assert_eq!(got.ip, ip("198.51.100.7"));
    }

    #[test]
    fn a_peer_outside_the_trusted_ranges_is_keyed_on_itself() {
        let lb = preset("google_load_balancer");
        let got = resolve(&lb, "203.0.113.9", &["6.6.6.6, 198.51.100.7"]);
        assert_eq!(
            got,
            ClientAddress {
                ip: ip("203.0.113.9"),
                forwarded: false
            }
        );
    }

    #[test]
    fn cloud_run_takes_the_right_most_entry_from_any_peer() {
        let run = preset("cloud_run");
        let got = resolve(&run, "169.254.8.1", &["6.6.6.6, 198.51.100.7"]);
        assert_eq!(got.ip, ip("198.51.100.7"));
        let got = resolve(&run, "169.254.8.1", &["198.51.100.8"]);
        assert_eq!(got.ip, ip("198.51.100.8"));
    }

    #[test]
    fn direct_ignores_every_header() {
        let direct = preset("direct");
        let got = resolve(&direct, "203.0.113.9", &["1.1.1.1"]);
        assert_eq!(got.ip, ip("203.0.113.9"));
        assert!(!got.forwarded);
        assert!(!ClientAddressPolicy::default().reads_forwarded_for());
    }

    #[test]
    fn several_headers_are_one_list_in_order() {
        let lb = preset("google_load_balancer");
        let got = resolve(&lb, "35.191.4.5", &["6.6.6.6, 198.51.100.7", "34.117.1.1"]);
        assert_eq!(got.ip, ip("198.51.100.7"));
    }

    #[test]
    fn too_few_entries_or_garbage_fall_back_to_the_peer() {
        let lb = preset("google_load_balancer");
        for xff in [&["34.117.1.1"][..], &[][..], &["nonsense, 34.117.1.1"][..]] {
            let got = resolve(&lb, "35.191.4.5", xff);
            assert_eq!(got.ip, ip("35.191.4.5"), "{xff:?}");
            assert!(!got.forwarded);
        }
    }

    #[test]
    fn ports_and_ipv6_forms_are_read() {
        let run = preset("cloud_run");
        assert_eq!(
            resolve(&run, "10.0.0.1", &["[2001:db8::7]:443"]).ip,
            ip("2001:db8::7")
        );
        assert_eq!(
            resolve(&run, "10.0.0.1", &["198.51.100.7:5555"]).ip,
            ip("198.51.100.7")
        );
        assert_eq!(
            resolve(&run, "10.0.0.1", &["::ffff:198.51.100.7"]).ip,
            ip("198.51.100.7")
        );
        // The mapped form of a trusted peer is trusted.
        let lb = preset("google_load_balancer");
        let got = resolve(&lb, "::ffff:35.191.0.1", &["198.51.100.7, 34.117.1.1"]);
        assert_eq!(got.ip, ip("198.51.100.7"));
    }

    #[test]
    fn custom_policies_are_validated_with_their_paths() {
        let check = |spec: ClientIpSpec| {
            let mut diag = Diagnostics::default();
            ClientAddressPolicy::compile(Some(&spec), &mut diag);
            diag.errors()
                .iter()
                .map(|p| p.path.clone())
                .collect::<Vec<_>>()
        };
        let custom = |from, hops, peers: &[&str]| {
            ClientIpSpec::Custom(ClientIpCustomSpec {
                from,
                trusted_hops: hops,
                trusted_peers: peers.iter().map(|s| (*s).to_owned()).collect(),
            })
        };
        assert_eq!(
            check(custom(ClientIpFrom::XForwardedFor, None, &[])),
            ["client_ip.trusted_hops"]
        );
        assert_eq!(
            check(custom(ClientIpFrom::XForwardedFor, Some(0), &[])),
            ["client_ip.trusted_hops"]
        );
        assert_eq!(
            check(custom(ClientIpFrom::XForwardedFor, Some(17), &[])),
            ["client_ip.trusted_hops"]
        );
        assert_eq!(
            check(custom(
                ClientIpFrom::XForwardedFor,
                Some(2),
                &["10.0.0.0/33", "nope"]
            )),
            ["client_ip.trusted_peers[0]", "client_ip.trusted_peers[1]"]
        );
        assert_eq!(
            check(custom(ClientIpFrom::Peer, Some(1), &["10.0.0.0/8"])),
            ["client_ip.trusted_hops", "client_ip.trusted_peers"]
        );
        assert!(check(custom(
            ClientIpFrom::XForwardedFor,
            Some(3),
            &["10.0.0.0/8"]
        ))
        .is_empty());
        assert_eq!(
            check(ClientIpSpec::Preset("cloudrun".into())),
            ["client_ip"]
        );
    }

    #[test]
    fn custom_three_hops() {
        let three = ClientAddressPolicy::forwarded_for(3, &["10.0.0.0/8"]);
        let got = resolve(
            &three,
            "10.1.1.1",
            &["6.6.6.6, 198.51.100.7, 34.1.1.1, 10.2.2.2"],
        );
        assert_eq!(got.ip, ip("198.51.100.7"));
    }
}
