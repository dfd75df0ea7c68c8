//! Waiting for a `gardien-backend` started with `BACKEND_LISTEN=127.0.0.1:0` and
//! `BACKEND_READY_FILE`: it binds a free port itself and writes the address it bound to the
//! ready file once it listens, so no test guesses a port. Shared by the tests and the
//! delivery benchmark (`#[path]`), which have no other module in common.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// The address in `path`, once the process wrote it, within `limit`. An error says why
/// not: the process exited (with its status) or the time ran out.
pub fn wait_for_address(
    path: &Path,
    child: &mut Child,
    limit: Duration,
) -> Result<SocketAddr, String> {
    let deadline = Instant::now() + limit;
    loop {
        // The file is renamed into place whole: a read sees the full line or nothing.
        if let Ok(text) = std::fs::read_to_string(path) {
            return text
                .trim()
                .parse()
                .map_err(|e| format!("the ready file holds `{text}`: {e}"));
        }
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("it exited ({status}) before listening")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot watch the process: {e}")),
        }
        if Instant::now() >= deadline {
            return Err(format!("no ready file within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
