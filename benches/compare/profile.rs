//! Where the instructions go: `cargo bench --bench compare -- --bench --profile` runs
//! gardien (routing only, then the full policy) under valgrind's callgrind, drives it with
//! `wrk` for [`PROFILE_RUN`], and prints the instructions per request and the functions
//! that cost the most. Instruction counts are repeatable whatever else the machine does,
//! so a change's effect shows even on a busy machine; docs/BENCHMARKS.md keeps the top
//! entries. (callgrind counts each byte of `rep movsb` as an instruction, so `memcpy`
//! weighs more there than in time.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::measure::{pinned, spawn_wrk, wait_ready_file, wrk_result};

/// How long each profiled run is loaded (gardien runs ~40× slower under callgrind).
pub const PROFILE_RUN: Duration = Duration::from_secs(15);
/// Connections of the profiled load: enough to keep gardien busy.
const CONNECTIONS: u32 = 10;

/// One profile: requests served while collecting, instructions, and the top functions.
pub struct Profile {
    pub requests: u64,
    pub instructions: u64,
    /// `(instructions, function)` by self cost, most first.
    pub top_self: Vec<(u64, String)>,
    /// `(instructions, function)` of gardien's own functions, inclusive.
    pub top_gardien: Vec<(u64, String)>,
}

impl Profile {
    pub fn per_request(&self) -> f64 {
        self.instructions as f64 / self.requests.max(1) as f64
    }
}

/// Profiles gardien serving `policy` with `headers` on every request.
pub fn gardien(
    name: &str,
    policy: &str,
    upstream: std::net::SocketAddr,
    headers: &[(&str, &str)],
    dir: &Path,
) -> Profile {
    let policy_path = dir.join(format!("profile-{name}.yaml"));
    std::fs::write(&policy_path, policy).expect("write the policy");
    let ready = dir.join(format!("profile-{name}.ready"));
    let out = dir.join(format!("profile-{name}.callgrind"));
    let mut child = pinned("1", "valgrind")
        .args(["--tool=callgrind", "--instr-atstart=no"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(env!("CARGO_BIN_EXE_gardien"))
        .args(["run", "--policy"])
        .arg(&policy_path)
        .arg("--ready-file")
        .arg(&ready)
        .env("GARDIEN_LISTEN", "127.0.0.1:0")
        .env("GARDIEN_ADMIN_LISTEN", "127.0.0.1:0")
        .env("GARDIEN_THREADS", "1")
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
        .expect("valgrind (Debian package valgrind) runs");
    let text = wait_ready_file(&ready, &mut child, &format!("{name} under callgrind"));
    let addr = text
        .lines()
        .find_map(|line| line.strip_prefix("listen="))
        .unwrap_or_else(|| panic!("no listen= in {text:?}"))
        .to_owned();
    let url = format!("http://{addr}/api/x");
    // Warm, uninstrumented (fast): the JWKS fetched, the token cached, pools filled.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(3) {
        let _ = wrk_result(spawn_wrk(
            &url,
            headers,
            2,
            Duration::from_secs(1),
            "0",
            None,
        ));
    }
    let pid = child.id().to_string();
    control(&pid, "--instr=on");
    let load = wrk_result(spawn_wrk(
        &url,
        headers,
        CONNECTIONS,
        PROFILE_RUN,
        "0",
        None,
    ));
    control(&pid, "--instr=off");
    control(&pid, "--dump");
    let _ = child.kill();
    let _ = child.wait();
    let requests = (load.requests_per_sec * PROFILE_RUN.as_secs_f64()).round() as u64;
    read(&out, requests)
}

fn control(pid: &str, what: &str) {
    let _ = Command::new("callgrind_control")
        .args([what, pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Reads the dump(s) `out.N` with `callgrind_annotate`.
fn read(out: &Path, requests: u64) -> Profile {
    let dir = out.parent().expect("a folder");
    let prefix = out
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    let mut dumps: Vec<_> = std::fs::read_dir(dir)
        .expect("the profile folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{prefix}.")))
        })
        .collect();
    dumps.sort();
    let dump = dumps.pop().expect("callgrind wrote a dump");
    let annotate = |inclusive: bool| -> String {
        let output = Command::new("callgrind_annotate")
            .arg(format!(
                "--inclusive={}",
                if inclusive { "yes" } else { "no" }
            ))
            .arg("--threshold=100")
            .arg(&dump)
            .output()
            .expect("callgrind_annotate runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let rows = |text: &str| -> Vec<(u64, String)> {
        text.lines()
            .filter_map(|line| {
                let line = line.trim();
                let (count, rest) = line.split_once(' ')?;
                let count: u64 = count.replace(',', "").parse().ok()?;
                let function = rest.split_once(")  ")?.1;
                let function = function.split(" [").next()?.trim_start_matches("???:");
                // `./string/…/memmove….S:__memcpy_avx_unaligned_erms`: the function alone.
                let function = match function.split_once(".S:").or(function.split_once(".c:")) {
                    Some((_, name)) if function.starts_with('.') || function.starts_with('/') => {
                        name
                    }
                    _ => function,
                };
                Some((count, function.to_owned()))
            })
            .collect()
    };
    let self_text = annotate(false);
    let total = self_text
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or(0);
    let top_self = rows(&self_text)
        .into_iter()
        .filter(|(_, f)| !f.contains("PROGRAM TOTALS"))
        .take(15)
        .collect();
    let top_gardien = rows(&annotate(true))
        .into_iter()
        .filter(|(_, f)| f.contains("gardien"))
        .take(15)
        .collect();
    Profile {
        requests,
        instructions: total,
        top_self,
        top_gardien,
    }
}
