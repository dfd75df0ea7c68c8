//! An upstream the test can stop and start again on the same port: a
//! [`RecordingUpstream`] (answers 200, `/healthz` included) whose port stays held while it
//! is stopped, by a socket bound there that never listens, so connections are refused and
//! nothing else can take the port in between.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::RecordingUpstream;

pub struct StoppableUpstream {
    addr: SocketAddr,
    running: Option<RecordingUpstream>,
    hold: Option<socket2::Socket>,
}

impl StoppableUpstream {
    pub async fn start() -> StoppableUpstream {
        let upstream = RecordingUpstream::start().await;
        StoppableUpstream {
            addr: upstream.addr,
            running: Some(upstream),
            hold: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops answering: the listener is closed (open connections finish their request and
    /// close) and the port refuses connections from then on.
    pub async fn stop(&mut self) {
        if let Some(mut upstream) = self.running.take() {
            upstream.stop().await;
        }
        // The listener may take a moment to be dropped after the shutdown signal.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match hold(self.addr) {
                Ok(socket) => break self.hold = Some(socket),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("hold {} while stopped: {e}", self.addr),
            }
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        assert!(self.running.is_none(), "restart of a running upstream");
        self.hold = None;
        self.running = Some(RecordingUpstream::start_on(&self.addr.to_string()).await);
    }
}

/// A socket bound to `addr` that never listens: the port is taken, and refuses.
fn hold(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    // The listener's accepted connections may linger in TIME_WAIT on this port.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}
