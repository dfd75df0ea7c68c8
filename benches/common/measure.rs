//! What both load harnesses (`benches/load.rs`, `benches/compare/`) measure with: CPU
//! pinning, `wrk` runs and their reports, medians, ready files, and the markers of
//! docs/BENCHMARKS.md each harness rewrites its own part between.

#![allow(dead_code)] // each harness uses a different part

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Throughput and latency as `wrk` (or oha) measured them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
}

/// A command pinned to `cpus` with `taskset` (util-linux): on a 2-CPU machine the proxy
/// gets a CPU of its own and the load generator and upstream share the other, so the
/// scenarios compare the proxy's own cost rather than the scheduler's mood.
pub fn pinned(cpus: &str, program: &str) -> Command {
    let mut command = Command::new("taskset");
    command.args(["-c", cpus, program]);
    command
}

/// One `wrk -t1` run: `connections` kept-alive connections for `duration`, pinned to
/// `cpus`, with `headers` on every request or, with `script`, the requests a wrk Lua script
/// makes. Started, not waited for.
pub fn spawn_wrk(
    url: &str,
    headers: &[(&str, &str)],
    connections: u32,
    duration: Duration,
    cpus: &str,
    script: Option<&Path>,
) -> Child {
    let mut command = pinned(cpus, "wrk");
    command.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{}s", duration.as_secs()),
        "--latency",
        "--timeout",
        "5s",
    ]);
    for (name, value) in headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    command
        .arg(url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("wrk (Debian package wrk) runs")
}

/// Waits for a `wrk` run and reads its report.
pub fn wrk_result(child: Child) -> Load {
    let output = child.wait_with_output().expect("wrk finishes");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
    };
    let ms = |v: Option<String>| -> f64 {
        let v = v.unwrap_or_default();
        if let Some(us) = v.strip_suffix("us") {
            us.parse::<f64>().unwrap_or(f64::NAN) / 1000.0
        } else if let Some(ms) = v.strip_suffix("ms") {
            ms.parse().unwrap_or(f64::NAN)
        } else if let Some(s) = v.strip_suffix('s') {
            s.parse::<f64>().unwrap_or(f64::NAN) * 1000.0
        } else {
            f64::NAN
        }
    };
    let socket_errors = field("Socket errors:")
        .map(|v| {
            v.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .unwrap_or(0);
    Load {
        requests_per_sec: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_ms: ms(field("50%")),
        p99_ms: ms(field("99%")),
        non_2xx: field("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
            + socket_errors,
    }
}

/// The median throughput and the median of each latency percentile; failures summed.
pub fn median(runs: &[Load]) -> Load {
    let pick = |f: fn(&Load) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Load {
        requests_per_sec: pick(|l| l.requests_per_sec),
        p50_ms: pick(|l| l.p50_ms),
        p99_ms: pick(|l| l.p99_ms),
        non_2xx: runs.iter().map(|l| l.non_2xx).sum(),
    }
}

/// Waits (at most 30 s) for the ready file a process writes, by rename, once it listens on
/// the port 0 it was given; its text.
pub fn wait_ready_file(path: &Path, child: &mut Child, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            !matches!(child.try_wait(), Ok(Some(_))),
            "{what} exited before it was ready"
        );
        assert!(Instant::now() < deadline, "{what} not ready in 30s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `met` or a bold `missed`, for a target's line.
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// Today's date, for the heading of a results table.
pub fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Replaces what lies between `<!-- {name}:begin -->` and `<!-- {name}:end -->` in
/// docs/BENCHMARKS.md with `table`.
pub fn write_results(name: &str, table: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/BENCHMARKS.md");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let (Some(start), Some(stop)) = (text.find(&begin), text.find(&end)) else {
        println!("(docs/BENCHMARKS.md has no {name} markers; table not written)");
        return;
    };
    let updated = format!("{}{begin}\n{table}{}", &text[..start], &text[stop..]);
    if std::fs::write(&path, updated).is_ok() {
        println!("written to docs/BENCHMARKS.md ({name})");
    }
}
