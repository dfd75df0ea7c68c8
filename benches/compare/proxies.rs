//! The processes the comparison runs, each started pinned to its CPUs and stopped on drop:
//! the nginx upstream, HAProxy with a config of `benches/anchors/`, the minimal Pingora
//! (`benches/anchors/pingora-minimal`) and gardien with a policy of `common/policies.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::measure::{pinned, wait_ready_file};
use super::reserve::{reserve, wait_accepting};

/// `benches/anchors/`.
pub fn anchors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/anchors")
}

/// A running process and the address it serves on.
pub struct Running {
    pub addr: SocketAddr,
    child: Child,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` on the reserved address it was built for, waits until it accepts.
fn run(name: &str, mut command: Command, reserved: super::reserve::Reserved) -> Running {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    wait_accepting(reserved.addr, &mut child, name);
    Running {
        addr: reserved.addr,
        child,
    }
}

/// nginx answering `{"ok":true}` (and the JWKS in `dir/jwks.json`), on `cpus`.
pub fn nginx(dir: &Path, cpus: &str) -> Running {
    let reserved = reserve();
    let config = std::fs::read_to_string(anchors().join("nginx-upstream.conf"))
        .expect("benches/anchors/nginx-upstream.conf")
        .replace("@LISTEN@", &reserved.addr.to_string())
        .replace("@DIR@", &dir.display().to_string());
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).expect("write nginx.conf");
    let mut command = pinned(cpus, "/usr/sbin/nginx");
    command
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .args(["-e", "stderr"]);
    run("nginx", command, reserved)
}

/// HAProxy with `benches/anchors/{config}`, `threads` threads, on `cpus`.
pub fn haproxy(
    name: &str,
    config: &str,
    upstream: SocketAddr,
    threads: usize,
    cpus: &str,
    env: &[(&str, String)],
) -> Running {
    let reserved = reserve();
    let mut command = pinned(cpus, "/usr/sbin/haproxy");
    command
        .arg("-f")
        .arg(anchors().join(config))
        .arg("-db")
        .env("LISTEN", reserved.addr.to_string())
        .env("UPSTREAM", upstream.to_string())
        .env("THREADS", threads.to_string())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    run(name, command, reserved)
}

/// The minimal Pingora passthrough (release build, next to gardien's).
pub fn pingora_minimal(
    name: &str,
    upstream: SocketAddr,
    threads: usize,
    work_stealing: bool,
    cpus: &str,
) -> Running {
    let binary = release_dir().join("pingora-minimal");
    assert!(
        binary.exists(),
        "{} is missing: `make bench-load` builds it (cargo build --release -p bench-pingora-minimal)",
        binary.display()
    );
    let reserved = reserve();
    let mut command = pinned(cpus, &binary.display().to_string());
    command
        .arg("--listen")
        .arg(reserved.addr.to_string())
        .arg("--upstream")
        .arg(upstream.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--work-stealing")
        .arg(work_stealing.to_string())
        .stderr(Stdio::null());
    run(name, command, reserved)
}

/// gardien with `policy` (its text), `threads` threads, on `cpus`; it binds port 0 and
/// reports the address in its ready file.
pub fn gardien(
    name: &str,
    policy: &str,
    upstream: SocketAddr,
    (threads, work_stealing): (usize, bool),
    cpus: &str,
    dir: &Path,
) -> Running {
    // Each start its own files: a ready file left by an earlier run must not be read.
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{name}-{start}.yaml"));
    std::fs::write(&path, policy).expect("write the policy");
    let ready = dir.join(format!("{name}-{start}.ready"));
    let mut child = pinned(cpus, env!("CARGO_BIN_EXE_gardien"))
        .args(["run", "--policy"])
        .arg(&path)
        .arg("--ready-file")
        .arg(&ready)
        .env("GARDIEN_LISTEN", "127.0.0.1:0")
        .env("GARDIEN_ADMIN_LISTEN", "127.0.0.1:0")
        .env("GARDIEN_THREADS", threads.to_string())
        .env("GARDIEN_WORK_STEALING", work_stealing.to_string())
        .env("UPSTREAM", format!("http://{upstream}"))
        .env(
            "GARDIEN_INTERNAL_SECRET",
            "compare-harness-internal-secret-0123456789",
        )
        .env("GARDIEN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gardien");
    let text = wait_ready_file(&ready, &mut child, name);
    let addr = text
        .lines()
        .find_map(|line| line.strip_prefix("listen="))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no listen= in the ready file: {text:?}"));
    Running { addr, child }
}

/// `target/release/` (the bench binary runs from `target/release/deps/`).
fn release_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_gardien"))
        .parent()
        .expect("the target directory")
        .to_path_buf()
}

/// The resident set of `pid`, in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}
