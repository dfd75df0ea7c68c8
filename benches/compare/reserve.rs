//! Ports for processes that cannot bind port 0 and say which port they got (HAProxy,
//! nginx, the minimal Pingora): the harness binds a socket with `SO_REUSEPORT` that never
//! listens, and hands the process that exact address; the process binds it with
//! `SO_REUSEPORT` too (HAProxy does by default on Linux, nginx with `reuseport`, Pingora
//! with `so_reuseport`) and is the only one listening, so nothing else can take the port in
//! between and a successful connect means the process accepts. gardien's own listener does
//! the same (src/server.rs, `Listener`).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// A loopback port held for a process that is about to listen on it.
pub struct Reserved {
    pub addr: SocketAddr,
    _socket: socket2::Socket,
}

pub fn reserve() -> Reserved {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("a TCP socket");
    socket.set_reuse_port(true).expect("SO_REUSEPORT");
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("a loopback port");
    let addr = socket
        .local_addr()
        .expect("the bound address")
        .as_socket()
        .expect("an IP socket");
    Reserved {
        addr,
        _socket: socket,
    }
}

/// Waits (at most 30 s) until `addr` accepts connections, or fails if `child` exits.
pub fn wait_accepting(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on {addr}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening on {addr} in 30s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
