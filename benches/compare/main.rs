//! The comparison harness (`make bench-load`, `cargo bench --bench compare`): gardien side
//! by side with HAProxy 2.6 and a minimal Pingora doing the same work, on this machine.
//!
//! Each proxy runs at one thread pinned to CPU 1; `wrk -t1 -c50` and the nginx upstream
//! share CPU 0; the same RS256 token on every request. Three alternating rounds per path
//! (each path once per round, so a noisy moment of the machine does not fall on one path
//! only), medians. Then 10,000 distinct tokens in turn, `threads: 2` on both CPUs, and the
//! memory of 8,000 idle keep-alive connections. It prints the table with the ratios the
//! targets are about, writes it to docs/BENCHMARKS.md between `<!-- compare:begin -->`
//! and `<!-- compare:end -->`, and draws docs/benchmarks/compare.svg.
//!
//! HAProxy's configs are `benches/anchors/haproxy-*.cfg`, nginx's
//! `benches/anchors/nginx-upstream.conf`, the minimal Pingora
//! `benches/anchors/pingora-minimal`. Every load is bounded in time; everything is on
//! 127.0.0.1.

#[path = "../common/measure.rs"]
mod measure;
#[path = "../common/policies.rs"]
mod policies;

mod idle;
mod profile;
mod proxies;
mod report;
mod reserve;
mod tokens;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use measure::{median, spawn_wrk, write_results, wrk_result, Load};
use proxies::Running;
use report::{Row, Targets};

/// Length of each run.
const RUN: Duration = Duration::from_secs(5);
const ROUNDS: usize = 3;
const CONNECTIONS: u32 = 50;
/// Idle keep-alive connections of the memory measure.
const IDLE_CONNECTIONS: usize = 8_000;
/// Distinct tokens of the cache-miss run.
const DISTINCT_TOKENS: usize = 10_000;

/// A proxy under load and what each of its requests carries.
struct Subject {
    label: &'static str,
    running: Running,
    headers: Vec<(&'static str, String)>,
    script: Option<std::path::PathBuf>,
}

impl Subject {
    fn run(&self, cpus: &str) -> Load {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        wrk_result(spawn_wrk(
            &self.running.url("/api/x"),
            &headers,
            CONNECTIONS,
            RUN,
            cpus,
            self.script.as_deref(),
        ))
    }
}

/// Every subject once per round, alternating; the median of each.
fn rounds(subjects: &[Subject], wrk_cpus: &str, what: &str) -> Vec<Row> {
    let mut runs: Vec<Vec<Load>> = subjects.iter().map(|_| Vec::new()).collect();
    for round in 1..=ROUNDS {
        for (subject, runs) in subjects.iter().zip(&mut runs) {
            println!("compare: {what}, round {round}/{ROUNDS}: {}", subject.label);
            let load = subject.run(wrk_cpus);
            println!(
                "  {:.0} requests/s, p99 {:.2} ms, {} failed",
                load.requests_per_sec, load.p99_ms, load.non_2xx
            );
            runs.push(load);
        }
    }
    subjects
        .iter()
        .zip(&runs)
        .map(|(subject, runs)| Row {
            label: subject.label,
            load: median(runs),
        })
        .collect()
}

/// `a`'s requests/s over `b`'s, both loaded at once and sharing CPU 1 (each gets half of
/// it), over [`ROUNDS`] rounds: the median ratio. The machine's speed changes affect both
/// alike, so this ratio is the ratio of their costs per request, steadier than one of
/// medians taken a minute apart.
fn side_by_side(a: &Subject, b: &Subject) -> f64 {
    let spawn = |subject: &Subject| {
        let headers: Vec<(&str, &str)> = subject
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        spawn_wrk(
            &subject.running.url("/api/x"),
            &headers,
            CONNECTIONS,
            RUN,
            "0",
            subject.script.as_deref(),
        )
    };
    let mut ratios: Vec<f64> = (1..=ROUNDS)
        .map(|round| {
            println!(
                "compare: side by side, round {round}/{ROUNDS}: {} and {}",
                a.label, b.label
            );
            let (left, right) = (spawn(a), spawn(b));
            let (left, right) = (wrk_result(left), wrk_result(right));
            println!(
                "  {:.0} and {:.0} requests/s",
                left.requests_per_sec, right.requests_per_sec
            );
            left.requests_per_sec / right.requests_per_sec
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`: a test run is not the
    // place for minutes of load.
    if !std::env::args().any(|a| a == "--bench") {
        println!("comparison harness: run `make bench-load` (or `cargo bench --bench compare`)");
        return;
    }
    for (tool, package) in [
        ("/usr/bin/wrk", "wrk"),
        ("/usr/sbin/haproxy", "haproxy"),
        ("/usr/sbin/nginx", "nginx-light"),
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: `make bench-load` installs it (Debian package {package})"
        );
    }
    // This process (the idle clients) stays on CPU 0 with wrk and nginx.
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let dir = tempfile::tempdir().expect("a temp folder");
    let signer = tokens::write_keys(dir.path());
    let upstream = proxies::nginx(dir.path(), "0");
    let jwks = upstream.url("/.well-known/jwks.json");
    let token = tokens::mint(1).remove(0);
    let full_headers = vec![
        ("Authorization", format!("Bearer {token}")),
        ("Origin", tokens::ORIGIN.to_owned()),
    ];
    let haproxy_env = vec![
        ("JWT_PUBKEY", signer.display().to_string()),
        ("ISSUER", tokens::ISSUER.to_owned()),
        ("AUDIENCE", tokens::AUDIENCE.to_owned()),
        ("ORIGIN", tokens::ORIGIN.to_owned()),
    ];
    let full_policy = policies::full_policy(&jwks);
    if std::env::args().any(|a| a == "--profile") {
        let headers: Vec<(&str, &str)> =
            full_headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let routing = profile::gardien(
            "routing",
            policies::ROUTING_ONLY,
            upstream.addr,
            &[],
            dir.path(),
        );
        let full = profile::gardien("full", &full_policy, upstream.addr, &headers, dir.path());
        let table = report::profile(&[
            ("gardien routing only", &routing),
            ("gardien full policy", &full),
        ]);
        println!("\n{table}");
        write_results("profile", &table);
        return;
    }
    let start = |label: &'static str, threads: usize, cpus: &str| -> Subject {
        let (running, headers) = match label {
            "HAProxy passthrough" => (
                proxies::haproxy(
                    label,
                    "haproxy-passthrough.cfg",
                    upstream.addr,
                    threads,
                    cpus,
                    &[],
                ),
                vec![],
            ),
            "HAProxy full" => (
                proxies::haproxy(
                    label,
                    "haproxy-full.cfg",
                    upstream.addr,
                    threads,
                    cpus,
                    &haproxy_env,
                ),
                full_headers.clone(),
            ),
            "Pingora minimal" => (
                proxies::pingora_minimal(label, upstream.addr, threads, true, cpus),
                vec![],
            ),
            "Pingora minimal, work_stealing: false" => (
                proxies::pingora_minimal(label, upstream.addr, threads, false, cpus),
                vec![],
            ),
            "gardien routing only" => (
                proxies::gardien(
                    "routing",
                    policies::ROUTING_ONLY,
                    upstream.addr,
                    (threads, true),
                    cpus,
                    dir.path(),
                ),
                vec![],
            ),
            "gardien full policy" => (
                proxies::gardien(
                    "full",
                    &full_policy,
                    upstream.addr,
                    (threads, true),
                    cpus,
                    dir.path(),
                ),
                full_headers.clone(),
            ),
            "gardien full policy, work_stealing: false" => (
                proxies::gardien(
                    "full-no-stealing",
                    &full_policy,
                    upstream.addr,
                    (threads, false),
                    cpus,
                    dir.path(),
                ),
                full_headers.clone(),
            ),
            other => unreachable!("no subject {other}"),
        };
        Subject {
            label,
            running,
            headers,
            script: None,
        }
    };
    let labels = [
        "HAProxy passthrough",
        "HAProxy full",
        "Pingora minimal",
        "Pingora minimal, work_stealing: false",
        "gardien routing only",
        "gardien full policy",
    ];

    // One thread each, on CPU 1.
    let subjects: Vec<Subject> = labels.iter().map(|label| start(label, 1, "1")).collect();
    let rows = rounds(&subjects, "0", "one thread");
    let subject = |label: &str| {
        subjects
            .iter()
            .find(|s| s.label == label)
            .expect("a subject of the one-thread runs")
    };
    let paired = report::Paired {
        full_vs_haproxy_full: side_by_side(subject("gardien full policy"), subject("HAProxy full")),
        routing_vs_haproxy_passthrough: side_by_side(
            subject("gardien routing only"),
            subject("HAProxy passthrough"),
        ),
        full_vs_routing: side_by_side(
            subject("gardien full policy"),
            subject("gardien routing only"),
        ),
    };
    let rps = |label: &str| {
        rows.iter()
            .find(|r| r.label == label)
            .map_or(f64::NAN, |r| r.load.requests_per_sec)
    };

    // 10,000 distinct tokens, through the full paths.
    println!("compare: minting {DISTINCT_TOKENS} tokens");
    let many = tokens::mint(DISTINCT_TOKENS);
    let script = tokens::rotation_script(dir.path(), "/api/x", &many);
    let mut rotating = Vec::new();
    for subject in subjects {
        if subject.label.ends_with("full") || subject.label.ends_with("full policy") {
            rotating.push(Subject {
                script: Some(script.clone()),
                headers: vec![],
                ..subject
            });
        }
    }
    let mut token_rows = rounds(&rotating, "0", "10,000 tokens");
    for row in &mut token_rows {
        row.label = if row.label.starts_with("HAProxy") {
            "HAProxy full, 10,000 tokens"
        } else {
            "gardien full policy, 10,000 tokens"
        };
    }
    drop(rotating);

    // Two threads on both CPUs.
    let two_labels = [
        "HAProxy passthrough",
        "HAProxy full",
        "gardien routing only",
        "gardien full policy",
        "gardien full policy, work_stealing: false",
    ];
    let two: Vec<Subject> = two_labels.iter().map(|l| start(l, 2, "0,1")).collect();
    let two_rows = rounds(&two, "0,1", "two threads");
    drop(two);
    let threads: Vec<(Row, Row)> = two_rows
        .into_iter()
        .map(|two| {
            let one = Row {
                label: two.label,
                // At one thread there is nothing to steal: the one-thread row is the same path.
                load: rows
                    .iter()
                    .find(|r| two.label.starts_with(r.label))
                    .map(|r| r.load)
                    .unwrap_or_default(),
            };
            (one, two)
        })
        .collect();

    // Idle keep-alive connections, each process fresh.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("the idle clients' runtime");
    let mut idle = Vec::new();
    for label in [
        "HAProxy passthrough",
        "Pingora minimal",
        "gardien routing only",
        "gardien full policy",
    ] {
        let subject = start(label, 1, "1");
        println!("compare: {IDLE_CONNECTIONS} idle connections to {label}");
        let headers: Vec<(&str, &str)> = subject
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        let seen = runtime.block_on(idle::measure(&subject.running, &headers, IDLE_CONNECTIONS));
        println!(
            "  {:.1} KB per connection, {:.0}% returned",
            seen.per_connection_kib() * 1.024,
            seen.returned() * 100.0
        );
        idle.push((label, seen));
    }
    let gardien_idle = idle
        .iter()
        .find(|(label, _)| *label == "gardien full policy")
        .map(|(_, seen)| *seen)
        .unwrap_or_default();

    let targets = Targets {
        full_vs_haproxy_full: rps("gardien full policy") / rps("HAProxy full"),
        routing_vs_haproxy_passthrough: rps("gardien routing only") / rps("HAProxy passthrough"),
        full_vs_routing: rps("gardien full policy") / rps("gardien routing only"),
        idle_per_connection_kib: gardien_idle.per_connection_kib(),
        idle_returned: gardien_idle.returned(),
    };
    let table = report::markdown(
        &rows,
        &targets,
        &paired,
        &token_rows,
        &threads,
        &idle,
        RUN.as_secs(),
    );
    println!("\n{table}");
    let svg = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks/compare.svg");
    match report::chart(&rows, &svg) {
        Ok(()) => println!("chart: {}", svg.display()),
        Err(e) => println!("chart not drawn: {e}"),
    }
    write_results("compare", &table);
}
