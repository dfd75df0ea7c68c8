//! Assembles the Pingora server: the proxy on `listen`, the admin app on `admin_listen`, and
//! the background tasks that keep upstream addresses resolved, check upstreams' health,
//! keep secrets fresh and reload the policy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions};
use pingora::prelude::*;
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora::services::ServiceReadyNotifier;

use crate::admin::metrics::Metrics;
use crate::admin::policy_record::PolicyRecord;
use crate::admin::AdminApp;
use crate::downstream::{ConnectionLimit, Connections, Downstream};
use crate::policy::Policy;
use crate::proxy::Gateway;
use crate::reload::PolicyReloader;
use crate::secrets::SecretStore;
use crate::warm_up::warm_up;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address} ({what}): {source}")]
    Listen {
        address: std::net::SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot create the metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("--upgrade takes over the sockets of the running gardien by address, and {what} asks for port 0: set it to the address that process bound (its ready file or its `gardien listening` log line)")]
    UpgradeFromPortZero { what: &'static str },
}

/// How `gardien run` gets its listening sockets: bound here, or taken over from the gardien
/// already serving the same addresses (Pingora's graceful upgrade).
#[derive(Debug, Clone, Default)]
pub struct Takeover {
    /// `--upgrade`: receive the listening sockets from the running process, which sends them
    /// on `SIGQUIT` and then drains; bind nothing.
    pub upgrade: bool,
    /// `--upgrade-socket`: where the new process waits for the sockets and where this one
    /// sends its own on `SIGQUIT`. Default [`default_upgrade_socket`].
    pub socket: Option<PathBuf>,
}

/// The upgrade socket when `--upgrade-socket` is not given: one per proxy port, so the
/// old and the new process of the same `listen` find each other without a flag.
pub fn default_upgrade_socket(listen: SocketAddr) -> PathBuf {
    PathBuf::from(format!("/tmp/gardien-upgrade-{}.sock", listen.port()))
}

/// Starts the gateway and serves until SIGTERM (graceful), SIGQUIT (graceful, after handing
/// the listening sockets to a process started with `takeover.upgrade`) or SIGINT (fast).
/// Returns only
/// when the server stops, or with an error before it starts. `policy_path` is read again
/// on SIGHUP, when it changes, and when a secret in `secrets` (already resolved for
/// `policy`) rotates. Once both listeners accept connections, their addresses are logged
/// and, with `ready_file`, written there (see [`write_ready_file`]).
pub fn run(
    policy: Policy,
    policy_path: PathBuf,
    secrets: Arc<SecretStore>,
    ready_file: Option<PathBuf>,
    takeover: Takeover,
) -> Result<(), StartError> {
    let (listen, admin_listen) = if takeover.upgrade {
        (
            Listener::inherit(policy.listen, "listen")?,
            Listener::inherit(policy.admin_listen, "admin_listen")?,
        )
    } else {
        (
            Listener::claim(policy.listen, "listen")?,
            Listener::claim(policy.admin_listen, "admin_listen")?,
        )
    };
    let upgrade_socket = takeover
        .socket
        .clone()
        .unwrap_or_else(|| default_upgrade_socket(listen.address));
    let metrics = Arc::new(Metrics::new()?);
    let text = std::fs::read_to_string(&policy_path).unwrap_or_default();
    let (hash, loaded) = (
        crate::admin::metrics::policy_hash(&text),
        crate::admin::metrics::unix_seconds(),
    );
    metrics.set_policy(&hash, loaded);
    let record = Arc::new(PolicyRecord::new(
        policy_path.display().to_string(),
        hash,
        loaded,
    ));

    // After SIGTERM, or SIGQUIT once the sockets are sent: the listeners stop accepting,
    // requests in flight have the grace period to finish (idle keep-alive connections
    // close at once, busy ones answer with `Connection: close`), then the runtimes stop.
    let grace = policy.server.graceful_shutdown_timeout.as_secs();
    let conf = ServerConf {
        threads: policy.server.threads,
        work_stealing: policy.server.work_stealing,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: upgrade_socket.display().to_string(),
        ..ServerConf::default()
    };
    let options = Opt {
        upgrade: takeover.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(options, conf);
    if takeover.upgrade {
        tracing::info!(socket = %upgrade_socket.display(), "upgrade: waiting for the running gardien's sockets (send it SIGQUIT)");
    }
    // With --upgrade, blocks until the old process sends its sockets (or exits the process
    // after Pingora's retries, about 6 s, with the reason logged).
    server.bootstrap();
    if takeover.upgrade {
        tracing::info!(listen = %listen.address, admin_listen = %admin_listen.address, "upgrade: listening sockets received");
    }

    let shared = Arc::new(ArcSwap::from_pointee(policy));

    let connections = Connections::new(Arc::clone(&shared), Arc::clone(&metrics));
    let mut gateway = pingora::proxy::http_proxy(
        &server.configuration,
        Gateway::new(Arc::clone(&shared), Arc::clone(&metrics)),
    );
    let settings = shared.load().server.clone();
    gateway.server_options = Some(h2c_options(&settings));
    gateway.h2_options = Some(h2_options(&settings));
    let mut proxy = Service::new(
        "gardien proxy".to_owned(),
        Downstream::new(gateway, Arc::clone(&shared), Arc::clone(&connections)),
    );
    proxy.set_connection_filter(Arc::new(ConnectionLimit(connections)));
    listen.add_to(&mut proxy);

    let mut admin = Service::new(
        "gardien admin".to_owned(),
        HttpServer::new_app(AdminApp::new(
            Arc::clone(&shared),
            Arc::clone(&metrics),
            Arc::clone(&record),
        )),
    );
    admin_listen.add_to(&mut admin);
    let ready = background_service(
        "ready",
        Ready {
            listen: listen.address,
            admin_listen: admin_listen.address,
            reservations: parking_lot::Mutex::new(
                [listen.reservation, admin_listen.reservation]
                    .into_iter()
                    .flatten()
                    .collect(),
            ),
            file: ready_file,
        },
    );

    let watch_policy = shared.load().server.watch_policy;
    let reloader = background_service(
        "policy reload",
        PolicyReloader::new(
            policy_path,
            Arc::clone(&shared),
            Arc::clone(&metrics),
            watch_policy,
            Arc::clone(&secrets),
            record,
        ),
    );
    let secret_refresh = background_service(
        "secret refresh",
        SecretRefresher {
            secrets,
            metrics: Arc::clone(&metrics),
        },
    );
    let keys = background_service(
        "jwks refresh",
        JwksRefresher {
            policy: Arc::clone(&shared),
            metrics: Arc::clone(&metrics),
        },
    );
    let control = background_service(
        "control",
        Control {
            policy: Arc::clone(&shared),
            metrics: Arc::clone(&metrics),
        },
    );
    let health = background_service(
        "upstream health",
        crate::upstream_health::HealthChecker {
            policy: Arc::clone(&shared),
            metrics: Arc::clone(&metrics),
        },
    );
    let dns = background_service("upstream dns", DnsRefresher { policy: shared });

    // The proxy listens only once `control` has warmed the policy up (addresses resolved,
    // key sets fetched, Redis connected) in its own long-lived runtime, where the
    // connections it opens keep running.
    let control = server.add_service(control);
    let proxy = server.add_service(proxy);
    proxy.add_dependency(&control);
    server.add_service(admin);
    server.add_service(dns);
    server.add_service(health);
    server.add_service(reloader);
    server.add_service(keys);
    server.add_service(secret_refresh);
    // Once the policy is warmed up, as the proxy: with --upgrade the inherited sockets
    // accept connections before this process serves them (the old one still does).
    let ready = server.add_service(ready);
    ready.add_dependency(&control);
    tracing::info!(listen = %listen.address, admin_listen = %admin_listen.address, upgrade_socket = %upgrade_socket.display(), "gardien started");
    server.run(pingora::server::RunArgs::default());
    Ok(())
}

/// The proxy app's HTTP options. `h2c` is on for the app whatever the policy says:
/// [`Downstream`] decides per new connection from the running policy's `server.h2c`, and
/// hands Pingora only the connections that start with the HTTP/2 preface. An idle HTTP/2
/// connection is closed after `server.keepalive_timeout`, as an idle HTTP/1.1 one is.
fn h2c_options(settings: &crate::policy::ServerSettings) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    options.h2_idle_timeout = settings.keepalive_timeout;
    options
}

/// HTTP/2 settings: Pingora's bounded defaults, with a header list large enough that every
/// head `server.max_header_bytes` refuses reaches the gateway's own `431` (HPACK counts 32
/// bytes more per header than gardien does).
fn h2_options(settings: &crate::policy::ServerSettings) -> H2Options {
    let mut options = default_h2_options();
    let per_header = 32 * crate::downstream::MAX_HEADERS;
    let list = settings.max_header_bytes.saturating_add(per_header + 1);
    options.max_header_list_size(u32::try_from(list).unwrap_or(u32::MAX));
    options
}

/// The read buffer under each client connection. Pingora's default is 64 KiB per
/// connection, zero-filled at accept and kept for the connection's life: 64 KiB of resident
/// memory per idle keep-alive connection (docs/BENCHMARKS.md). gardien reads each request
/// head into a buffer of its own (`downstream.rs`) and Pingora reads bodies into its own, so
/// a buffer under them would only add a copy: reads go straight to the socket.
const CLIENT_READ_BUFFER: usize = 0;

/// One listening address of the gateway, claimed before Pingora binds it.
///
/// Pingora binds its listeners inside its services and does not say which port the system
/// gave for port 0. So for port 0 gardien binds a socket of its own (not listening) with
/// `SO_REUSEPORT` on it, reads the port, and gives Pingora that exact address with
/// `SO_REUSEPORT` too: Pingora's socket joins the reservation on that port, which nothing
/// else can take in between (only a socket of the same user that sets `SO_REUSEPORT`
/// itself could join). Only Pingora's socket listens, so a successful connect
/// means Pingora accepts; [`Ready`] then drops the reservation. A fixed port is bound and
/// released once first, only to turn Pingora's panic on a busy port into a clear error.
struct Listener {
    address: SocketAddr,
    reservation: Option<socket2::Socket>,
}

impl Listener {
    fn claim(requested: SocketAddr, what: &'static str) -> Result<Self, StartError> {
        let error = |source| StartError::Listen {
            address: requested,
            what,
            source,
        };
        if requested.port() != 0 {
            TcpListener::bind(requested).map_err(error)?;
            return Ok(Listener {
                address: requested,
                reservation: None,
            });
        }
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(requested),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(error)?;
        socket.set_reuse_port(true).map_err(error)?;
        socket.bind(&requested.into()).map_err(error)?;
        let address = socket
            .local_addr()
            .map_err(error)?
            .as_socket()
            .ok_or_else(|| error(std::io::Error::other("not an IP socket")))?;
        Ok(Listener {
            address,
            reservation: Some(socket),
        })
    }

    /// With `--upgrade`: the socket the running process listens on at `requested`, which
    /// Pingora receives keyed by that address. Port 0 names no socket to take over.
    fn inherit(requested: SocketAddr, what: &'static str) -> Result<Self, StartError> {
        if requested.port() == 0 {
            return Err(StartError::UpgradeFromPortZero { what });
        }
        Ok(Listener {
            address: requested,
            reservation: None,
        })
    }

    fn add_to<A: pingora::apps::ServerApp + Send + Sync + 'static>(
        &self,
        service: &mut Service<A>,
    ) {
        let mut endpoint = ListenerConfig::tcp(self.address.to_string())
            .l4_buffer(L4BufferSettings::default().read(CLIENT_READ_BUFFER));
        if self.reservation.is_some() {
            let mut options = TcpSocketOptions::default();
            options.so_reuseport = Some(true);
            endpoint = endpoint.tcp_socket_options(options);
        }
        service.add_listener(endpoint);
    }
}

/// Waits until both listeners accept a connection, then drops the port reservations, logs
/// the bound addresses and writes the ready file.
struct Ready {
    listen: SocketAddr,
    admin_listen: SocketAddr,
    reservations: parking_lot::Mutex<Vec<socket2::Socket>>,
    file: Option<PathBuf>,
}

#[async_trait]
impl BackgroundService for Ready {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        for address in [self.listen, self.admin_listen] {
            // The proxy listens once the policy is warmed up, which has no fixed bound.
            while tokio::net::TcpStream::connect(reachable(address))
                .await
                .is_err()
            {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        }
        self.reservations.lock().clear();
        tracing::info!(listen = %self.listen, admin_listen = %self.admin_listen, "gardien listening");
        if let Some(path) = &self.file {
            if let Err(e) = write_ready_file(path, self.listen, self.admin_listen) {
                tracing::error!(path = %path.display(), error = %e, "cannot write the ready file");
            }
        }
    }
}

/// Where to connect to reach a listener: loopback for an unspecified address.
fn reachable(address: SocketAddr) -> SocketAddr {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, address.port())
}

/// Writes `listen=<ip:port>\nadmin_listen=<ip:port>\n` to `path` atomically: to a
/// temporary file next to it, then renamed, so a reader never sees half of it.
pub fn write_ready_file(
    path: &Path,
    listen: SocketAddr,
    admin_listen: SocketAddr,
) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    std::fs::write(
        &temporary,
        format!("listen={listen}\nadmin_listen={admin_listen}\n"),
    )?;
    std::fs::rename(&temporary, path)
}

/// Looks the secrets up again every `SECRETS_REFRESH_INTERVAL`; a changed value makes the
/// reloader recompile the policy with it. A failed lookup keeps the last good value.
struct SecretRefresher {
    secrets: Arc<SecretStore>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl BackgroundService for SecretRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let interval = self.secrets.refresh_interval();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let looked_up = self.secrets.report().entries.len();
            let summary = tokio::select! {
                _ = shutdown.changed() => return,
                summary = self.secrets.refresh() => summary,
            };
            self.metrics.secret_refresh(
                looked_up.saturating_sub(summary.failed.len()),
                summary.failed.len(),
            );
        }
    }
}

/// Re-resolves upstream host names on each upstream's `dns_refresh` interval.
struct DnsRefresher {
    policy: Arc<ArcSwap<Policy>>,
}

#[async_trait]
impl BackgroundService for DnsRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tick = Duration::from_secs(1);
        let mut elapsed = Duration::ZERO;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            elapsed += tick;
            let policy = self.policy.load_full();
            for upstream in policy.upstreams.iter().filter(|u| u.needs_dns) {
                let due = elapsed
                    .as_secs()
                    .is_multiple_of(upstream.dns_refresh.as_secs().max(1));
                if due || upstream.addresses().is_empty() {
                    if let Err(e) = upstream.resolve().await {
                        tracing::warn!(upstream = upstream.name.as_str(), error = %e, "upstream re-resolution failed; keeping the last addresses");
                    }
                }
            }
        }
    }
}

/// Refreshes every issuer's JWKS when its schedule says so, and publishes the key sets'
/// ages. Failures keep the last good keys.
struct JwksRefresher {
    policy: Arc<ArcSwap<Policy>>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let policy = self.policy.load_full();
            for issuer in policy.jwt.iter().flat_map(|j| j.issuers()) {
                let Some(jwks) = issuer.jwks() else { continue };
                if jwks.is_due() {
                    match jwks.fetch().await {
                        Ok(fetched) => {
                            self.metrics.jwks_refresh(&issuer.name, true);
                            if fetched.changed {
                                tracing::info!(
                                    issuer = issuer.name.as_str(),
                                    keys = fetched.keys,
                                    "JWKS changed"
                                );
                            }
                        }
                        Err(e) => {
                            self.metrics.jwks_refresh(&issuer.name, false);
                            tracing::warn!(issuer = issuer.name.as_str(), error = %e, "JWKS refresh failed; keeping the last good keys");
                            crate::error_reports::jwks_fetch_failed(&issuer.name, &e);
                        }
                    }
                }
                if let Some(age) = jwks.age() {
                    self.metrics.set_jwks_age(&issuer.name, age.as_secs_f64());
                }
            }
        }
    }
}

/// Warms the policy up before the proxy starts, then, four times a second: probes Redis
/// (switching between shared and local limiting), runs the adaptive controller of each
/// upstream on its interval, and publishes factors and requests in flight.
struct Control {
    policy: Arc<ArcSwap<Policy>>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl BackgroundService for Control {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        warm_up(&self.policy.load_full(), None, &self.metrics).await;
        ready.notify_ready();
        self.start(shutdown).await;
    }

    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last_probe = std::time::Instant::now();
        let mut last_tick = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            let policy = self.policy.load_full();
            let now = std::time::Instant::now();
            if let Some(redis) = policy.rate_limits.redis() {
                // Back to Redis quickly after an outage; a health check each second otherwise.
                let fallback = redis.state() != crate::edge::rate_limit::StoreState::Redis;
                if fallback || now.duration_since(last_probe) >= Duration::from_secs(1) {
                    redis.probe(&self.metrics).await;
                    last_probe = now;
                }
            }
            let due = policy
                .adaptive
                .as_ref()
                .is_some_and(|s| now.duration_since(last_tick) >= s.interval);
            if due {
                last_tick = now;
            }
            for load in &policy.loads {
                let factor = match (&policy.adaptive, due) {
                    (Some(settings), true) => load.tick(settings, now),
                    _ => load.factor(),
                };
                self.metrics.set_adaptive_factor(&load.name, factor);
                self.metrics.set_in_flight(&load.name, load.in_flight());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_file_names_both_addresses_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gardien.ready");
        let listen: SocketAddr = "127.0.0.1:41873".parse().expect("address");
        let admin: SocketAddr = "127.0.0.1:39017".parse().expect("address");
        write_ready_file(&path, listen, admin).expect("written");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "listen=127.0.0.1:41873\nadmin_listen=127.0.0.1:39017\n"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec!["gardien.ready"]);
    }

    #[test]
    fn an_upgrade_takes_over_named_addresses_through_a_socket_named_after_the_port() {
        let fixed: SocketAddr = "0.0.0.0:8080".parse().expect("address");
        assert_eq!(
            default_upgrade_socket(fixed),
            PathBuf::from("/tmp/gardien-upgrade-8080.sock")
        );
        let inherited = Listener::inherit(fixed, "listen").expect("a fixed address");
        assert_eq!(inherited.address, fixed);
        assert!(inherited.reservation.is_none(), "nothing is bound");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let Err(error) = Listener::inherit(any, "admin_listen") else {
            panic!("port 0 names no socket to take over");
        };
        assert!(error.to_string().contains("admin_listen asks for port 0"));
    }

    #[test]
    fn port_zero_is_reserved_and_a_fixed_busy_port_explained() {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let (a, b) = (
            Listener::claim(any, "listen").expect("port 0"),
            Listener::claim(any, "admin_listen").expect("port 0"),
        );
        assert_ne!(a.address.port(), 0);
        assert_ne!(a.address, b.address, "two reservations, two ports");
        assert!(a.reservation.is_some());
        // The reserved port is held: a plain bind cannot take it.
        assert!(TcpListener::bind(a.address).is_err());

        let busy = TcpListener::bind(any).expect("bind");
        let address = busy.local_addr().expect("address");
        let Err(error) = Listener::claim(address, "listen") else {
            panic!("a busy port is refused");
        };
        assert!(error
            .to_string()
            .starts_with(&format!("cannot listen on {address} (listen): ")));
    }
}
