//! `pingora-minimal`: the smallest Pingora 0.9 `ProxyHttp` there is — every request to one
//! upstream over Pingora's kept-alive upstream connections, no filter of any kind. The
//! comparison harness (benches/compare) runs it beside gardien so the table separates what
//! Pingora itself costs from what gardien adds.
//!
//! `--listen` is an address the harness reserved with `SO_REUSEPORT` (a bound socket that
//! does not listen); this process joins it with `SO_REUSEPORT`, so no port is guessed.

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use pingora::listeners::TcpSocketOptions;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

/// The minimal Pingora passthrough.
#[derive(Debug, Parser)]
struct Args {
    /// The reserved address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// The upstream every request goes to (plain HTTP/1.1).
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Tokio's work-stealing runtime (Pingora's default) or one current-thread runtime per
    /// thread (`false`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    work_stealing: bool,
}

struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        work_stealing: args.work_stealing,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = http_proxy_service(
        &server.configuration,
        Passthrough {
            upstream: args.upstream,
        },
    );
    let mut options = TcpSocketOptions::default();
    options.so_reuseport = Some(true);
    service.add_tcp_with_settings(&args.listen.to_string(), options);
    server.add_service(service);
    server.run_forever();
}
