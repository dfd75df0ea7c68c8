//! A loopback HTTP/1.1 server that can really go down: the listening socket is closed and
//! every open connection dropped, so a client sees connection refused (not an error
//! status), then comes back on the same port. `axum::serve` keeps its connection tasks
//! running when the server future is dropped, so connections are served here with hyper
//! directly, each in a task the server owns.

use std::net::SocketAddr;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// The server of one fake.
#[derive(Debug)]
pub(crate) struct Switchable {
    addr: SocketAddr,
    router: Router,
    running: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // Coming back on the same port right after going down.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Switchable {
    /// Serves `router` on an ephemeral port of 127.0.0.1.
    pub(crate) async fn start(router: Router) -> std::io::Result<Switchable> {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let server = Switchable {
            addr,
            router,
            running: parking_lot::Mutex::new(None),
        };
        server.run(listener);
        Ok(server)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn run(&self, listener: TcpListener) {
        let router = self.router.clone();
        let task = tokio::spawn(async move {
            // Dropping this task drops the set, which aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let service = TowerToHyperService::new(router.clone());
                        connections.spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        *self.running.lock() = Some(task);
    }

    /// Closes the port and every connection; returns once they are closed.
    pub(crate) async fn go_down(&self) {
        let task = self.running.lock().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port (no-op when up).
    pub(crate) async fn come_back(&self) -> std::io::Result<()> {
        if self.running.lock().is_some() {
            return Ok(());
        }
        let listener = listen(self.addr)?;
        self.run(listener);
        Ok(())
    }

    pub(crate) fn is_up(&self) -> bool {
        self.running.lock().is_some()
    }
}

impl Drop for Switchable {
    fn drop(&mut self) {
        if let Some(task) = self.running.lock().take() {
            task.abort();
        }
    }
}
