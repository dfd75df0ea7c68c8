//! Upstreams: where routes send requests, how long to wait for them, and their addresses.
//!
//! Host names are resolved off the request path (at start and then every `dns_refresh`) so
//! no request ever waits on DNS; the resolved addresses are used in turn. Connections are
//! pooled and kept alive by Pingora's connector, keyed by address, TLS settings and timeouts.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use pingora::upstreams::peer::HttpPeer;
use url::Url;

use crate::policy::schema::UpstreamSpec;
use crate::policy::Diagnostics;
use crate::upstream_health::HealthCheck;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);

/// One validated upstream.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    /// `scheme://host:port`, for logs and `/status` (upstream URLs carry no secrets: no user
    /// info is accepted).
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The `Host` header sent upstream unless `preserve_host`.
    pub host_header: HeaderValue,
    pub preserve_host: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_verify: bool,
    pub dns_refresh: Duration,
    /// Whether `host` is a name to resolve (not an IP literal).
    pub needs_dns: bool,
    /// The HTTP health check, when the policy names one (TCP readiness otherwise).
    pub health: Option<HealthCheck>,
    addresses: ArcSwap<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl Upstream {
    /// Validates one `upstreams.<name>` entry.
    pub fn compile(name: &str, spec: &UpstreamSpec, diag: &mut Diagnostics) -> Option<Upstream> {
        let path = format!("upstreams.{name}.url");
        if !spec.url.contains("://") {
            diag.error(
                path,
                format!(
                    "`{}` has no scheme: write it as http://{0} or https://{0}",
                    spec.url.trim()
                ),
            );
            return None;
        }
        let url = match Url::parse(spec.url.trim()) {
            Ok(url) => url,
            Err(e) => {
                diag.error(path, format!("`{}` is not a URL: {e}", spec.url));
                return None;
            }
        };
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                diag.error(
                    path,
                    format!("scheme `{other}` is not supported: use http:// or https://"),
                );
                return None;
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            diag.error(path, "credentials do not belong in an upstream URL");
            return None;
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            diag.error(
                path,
                "an upstream URL has no path, query or fragment: requests keep their own path",
            );
            return None;
        }
        let Some(host) = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        else {
            diag.error(path, "an upstream URL needs a host");
            return None;
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host_header = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let host_header = HeaderValue::from_str(&host_header).ok()?;
        let ip: Option<IpAddr> = host.parse().ok();
        let tls_verify = spec.tls_verify.unwrap_or(true);
        if spec.tls_verify.is_some() && !tls {
            diag.warn(
                format!("upstreams.{name}.tls_verify"),
                "has no effect on an http:// upstream",
            );
        }
        let health = spec
            .health
            .as_ref()
            .and_then(|h| HealthCheck::compile(name, h, diag));
        let upstream = Upstream {
            name: name.to_owned(),
            url: format!(
                "{}://{}:{port}",
                url.scheme(),
                url.host_str().unwrap_or_default()
            ),
            tls,
            host,
            port,
            host_header,
            preserve_host: spec.preserve_host,
            connect_timeout: spec.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            read_timeout: spec.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT),
            write_timeout: spec.write_timeout.unwrap_or(DEFAULT_WRITE_TIMEOUT),
            idle_timeout: spec.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
            tls_verify,
            dns_refresh: spec.dns_refresh.unwrap_or(DEFAULT_DNS_REFRESH),
            needs_dns: ip.is_none(),
            health,
            addresses: ArcSwap::from_pointee(
                ip.map(|ip| vec![SocketAddr::new(ip, port)])
                    .unwrap_or_default(),
            ),
            next: AtomicUsize::new(0),
        };
        for (field, value) in [
            ("connect_timeout", upstream.connect_timeout),
            ("read_timeout", upstream.read_timeout),
            ("write_timeout", upstream.write_timeout),
        ] {
            if value.is_zero() {
                diag.error(format!("upstreams.{name}.{field}"), "must be more than 0");
            }
        }
        Some(upstream)
    }

    /// The addresses last resolved (empty until a host name resolves).
    pub fn addresses(&self) -> Arc<Vec<SocketAddr>> {
        self.addresses.load_full()
    }

    /// Resolves the host name again; keeps the previous addresses when resolution fails or
    /// finds nothing, so a DNS blip does not take the upstream down.
    pub async fn resolve(&self) -> std::io::Result<usize> {
        if !self.needs_dns {
            return Ok(self.addresses.load().len());
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect();
        if found.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address",
            ));
        }
        let count = found.len();
        self.addresses.store(Arc::new(found));
        Ok(count)
    }

    /// Takes over what the running policy's instance of this upstream knows: the addresses
    /// it resolved (so a reloaded policy does not start empty) and, for the same target,
    /// its health check's last results.
    pub fn adopt(&self, previous: &Upstream) {
        let same_target = previous.host == self.host && previous.port == self.port;
        if self.needs_dns && same_target {
            self.addresses.store(previous.addresses());
        }
        if let (Some(health), Some(old), true) = (&self.health, &previous.health, same_target) {
            if previous.tls == self.tls && previous.host_header == self.host_header {
                health.adopt(old);
            }
        }
    }

    /// The peer for the next request, round-robin over the resolved addresses; `None` while
    /// the host name has not resolved.
    pub fn peer(&self) -> Option<HttpPeer> {
        let addresses = self.addresses.load();
        if addresses.is_empty() {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % addresses.len();
        let mut peer = HttpPeer::new(addresses[index], self.tls, self.host.clone());
        let options = &mut peer.options;
        options.connection_timeout = Some(self.connect_timeout);
        options.read_timeout = Some(self.read_timeout);
        options.write_timeout = Some(self.write_timeout);
        options.idle_timeout = Some(self.idle_timeout);
        options.verify_cert = self.tls_verify;
        options.verify_hostname = self.tls_verify;
        Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> UpstreamSpec {
        UpstreamSpec {
            url: url.into(),
            connect_timeout: None,
            read_timeout: None,
            write_timeout: None,
            idle_timeout: None,
            preserve_host: false,
            tls_verify: None,
            dns_refresh: None,
            health: None,
        }
    }

    fn compile(url: &str) -> (Option<Upstream>, Diagnostics) {
        let mut diag = Diagnostics::default();
        (Upstream::compile("api", &spec(url), &mut diag), diag)
    }

    #[test]
    fn ip_upstream_is_ready_at_once() {
        let (up, diag) = compile("http://127.0.0.1:3000");
        let up = up.expect("valid");
        assert!(!diag.has_errors());
        assert!(!up.needs_dns);
        assert_eq!(up.host_header, "127.0.0.1:3000");
        let peer = up.peer().expect("peer");
        assert_eq!(
            peer.options.connection_timeout,
            Some(DEFAULT_CONNECT_TIMEOUT)
        );
    }

    #[test]
    fn https_name_needs_dns_and_keeps_default_port_out_of_host() {
        let (up, _) = compile("https://api-xyz.a.run.app");
        let up = up.expect("valid");
        assert!(up.needs_dns && up.tls);
        assert_eq!(up.port, 443);
        assert_eq!(up.host_header, "api-xyz.a.run.app");
        assert!(up.peer().is_none(), "no address before resolution");
    }

    #[test]
    fn bad_urls_are_explained() {
        for (url, expected) in [
            ("127.0.0.1:3000", "scheme"),
            ("ftp://a.com", "scheme `ftp`"),
            ("http://a.com/base", "no path"),
            ("http://user:pw@a.com", "credentials"),
            ("http://", "is not a URL"),
        ] {
            let (up, diag) = compile(url);
            assert!(up.is_none(), "{url}");
            assert!(
                diag.errors()[0].message.contains(expected),
                "{url}: {}",
                diag.errors()[0].message
            );
            assert_eq!(diag.errors()[0].path, "upstreams.api.url");
        }
    }

    #[tokio::test]
    async fn localhost_resolves() {
        let (up, _) = compile("http://localhost:3000");
        let up = up.expect("valid");
        assert!(up.resolve().await.expect("resolves") >= 1);
        assert!(up.peer().is_some());
    }
}
