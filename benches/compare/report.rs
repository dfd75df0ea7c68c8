//! The comparison's results: the markdown of docs/BENCHMARKS.md (the side-by-side table,
//! the targets with their verdicts, tokens, threads, idle connections) and the SVG chart of
//! requests/s and p99 per path (`docs/benchmarks/compare.svg`, drawn with plotters).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::idle::Idle;
use super::measure::{today, verdict, Load};
use super::profile::Profile;

/// One measured path: its label and median load.
pub struct Row {
    pub label: &'static str,
    pub load: Load,
}

/// The targets of issue 13, each a ratio of two rows' requests/s (or a memory figure).
pub struct Targets {
    pub full_vs_haproxy_full: f64,
    pub routing_vs_haproxy_passthrough: f64,
    pub full_vs_routing: f64,
    pub idle_per_connection_kib: f64,
    pub idle_returned: f64,
}

/// The same three ratios measured with both paths loaded at once, sharing CPU 1.
pub struct Paired {
    pub full_vs_haproxy_full: f64,
    pub routing_vs_haproxy_passthrough: f64,
    pub full_vs_routing: f64,
}

pub fn markdown(
    rows: &[Row],
    targets: &Targets,
    paired: &Paired,
    tokens: &[Row],
    threads: &[(Row, Row)],
    idle: &[(&str, Idle)],
    seconds: u64,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Measured {} on this machine (2 CPUs): each proxy at one thread pinned to CPU 1, \
         `wrk -t1 -c50` and the nginx upstream on CPU 0, the same RS256 token; 3 alternating \
         rounds of {seconds} s per path, medians. `make bench-load` writes this part.\n",
        today()
    );
    let _ = writeln!(out, "| path | requests/s | p50 | p99 | failed |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {:.1}k | {:.2} ms | {:.2} ms | {} |",
            row.label,
            row.load.requests_per_sec / 1000.0,
            row.load.p50_ms,
            row.load.p99_ms,
            row.load.non_2xx
        );
    }
    let _ = writeln!(
        out,
        "\n![requests/s and p99 per path](benchmarks/compare.svg)\n"
    );
    let _ = writeln!(
        out,
        "The targets. A ratio is measured twice: from the medians above (paths run one after \
         another), and side by side (both paths loaded at once, sharing CPU 1, median of 3 \
         rounds), which the machine's changing speed affects least; the verdict is the side-by-\
         side one.\n"
    );
    let _ = writeln!(out, "| target | from the medians | side by side | |");
    let _ = writeln!(out, "| --- | ---: | ---: | --- |");
    let ratios = [
        (
            "gardien full ≥ 1.5× HAProxy full",
            targets.full_vs_haproxy_full,
            paired.full_vs_haproxy_full,
            1.5,
        ),
        (
            "gardien routing ≥ 0.5× HAProxy passthrough",
            targets.routing_vs_haproxy_passthrough,
            paired.routing_vs_haproxy_passthrough,
            0.5,
        ),
        (
            "gardien full ≥ 0.95× gardien routing",
            targets.full_vs_routing,
            paired.full_vs_routing,
            0.95,
        ),
    ];
    for (target, medians, side, wanted) in ratios {
        let _ = writeln!(
            out,
            "| {target} | {medians:.2}× | {side:.2}× | {} |",
            verdict(side >= wanted)
        );
    }
    let per_connection = targets.idle_per_connection_kib * 1.024;
    let _ = writeln!(
        out,
        "| ≤ 16 KB RSS per idle keep-alive connection (gardien full, 8,000) | {per_connection:.1} KB | | {} |",
        verdict(per_connection <= 16.0)
    );
    let _ = writeln!(
        out,
        "| memory returned after the idle connections close | {:.0}% | | {} |",
        targets.idle_returned * 100.0,
        verdict(targets.idle_returned >= 0.9)
    );
    let _ = writeln!(
        out,
        "\n10,000 distinct valid tokens in turn (gardien's token cache misses on each one's \
         first use; HAProxy verifies every request anyway):\n"
    );
    let _ = writeln!(out, "| path | requests/s | p99 |");
    let _ = writeln!(out, "| --- | ---: | ---: |");
    for row in tokens {
        let _ = writeln!(
            out,
            "| {} | {:.1}k | {:.2} ms |",
            row.label,
            row.load.requests_per_sec / 1000.0,
            row.load.p99_ms
        );
    }
    let _ = writeln!(
        out,
        "\n`threads: 2` (HAProxy `nbthread 2`) on both CPUs, wrk and nginx sharing them:\n"
    );
    let _ = writeln!(out, "| path | 1 thread | 2 threads | scaling |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    for (one, two) in threads {
        let _ = writeln!(
            out,
            "| {} | {:.1}k | {:.1}k | {:.2}× |",
            one.label,
            one.load.requests_per_sec / 1000.0,
            two.load.requests_per_sec / 1000.0,
            two.load.requests_per_sec / one.load.requests_per_sec
        );
    }
    let _ = writeln!(
        out,
        "\nIdle keep-alive connections: each sent one request, read the answer, then stayed \
         open; RSS of the proxy process (1 thread):\n"
    );
    let _ = writeln!(
        out,
        "| process | connections | RSS before | RSS with them open | per connection | RSS 10 s after close | returned |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (label, idle) in idle {
        let _ = writeln!(
            out,
            "| {label} | {} | {:.1} MB | {:.1} MB | {:.1} KB | {:.1} MB | {:.0}% |",
            idle.connections,
            idle.before_kib as f64 / 1024.0,
            idle.open_kib as f64 / 1024.0,
            idle.per_connection_kib() * 1.024,
            idle.after_kib as f64 / 1024.0,
            idle.returned() * 100.0
        );
    }
    out
}

/// Two bar charts side by side: requests/s and p99 per path.
pub fn chart(rows: &[Row], path: &Path) -> Result<(), String> {
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, (1000, 460)).into_drawing_area();
        area.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = area.split_horizontally(560);
        bars(
            &left,
            rows,
            "requests/s (thousands)",
            |l| l.requests_per_sec / 1000.0,
            &BLUE,
        )?;
        bars(&right, rows, "p99 latency (ms)", |l| l.p99_ms, &RED)?;
        area.present().map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(path.parent().expect("a folder")).map_err(|e| e.to_string())?;
    std::fs::write(path, svg).map_err(|e| e.to_string())
}

fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    rows: &[Row],
    caption: &str,
    value: fn(&Load) -> f64,
    color: &RGBColor,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let max = rows
        .iter()
        .map(|r| value(&r.load))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        * 1.15;
    let labels: Vec<&str> = rows.iter().map(|r| r.label).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(240)
        .build_cartesian_2d(
            0.0..max.max(1.0),
            (0..rows.len().saturating_sub(1)).into_segmented(),
        )
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(i) => labels.get(*i).copied().unwrap_or("").to_owned(),
            _ => String::new(),
        })
        .y_labels(rows.len())
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, row)| {
            let v = value(&row.load);
            let v = if v.is_finite() { v } else { 0.0 };
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (v, SegmentValue::Exact(i + 1)),
                ],
                color.mix(0.7).filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The callgrind profiles: instructions per request, then each one's top entries.
pub fn profile(profiles: &[(&str, &Profile)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Measured {} with `cargo bench --bench compare -- --bench --profile`: gardien at one \
         thread under callgrind, {} s of `wrk -c10` after a warm-up, instructions of the \
         whole process divided by the requests served.\n",
        today(),
        super::profile::PROFILE_RUN.as_secs()
    );
    let _ = writeln!(out, "| policy | requests | instructions per request |");
    let _ = writeln!(out, "| --- | ---: | ---: |");
    for (label, p) in profiles {
        let _ = writeln!(
            out,
            "| {label} | {} | {:.1}k |",
            p.requests,
            p.per_request() / 1000.0
        );
    }
    for (label, p) in profiles {
        let per = |n: u64| n as f64 / p.requests.max(1) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "\n{label}, by self cost (k instructions per request):\n"
        );
        let _ = writeln!(out, "| k/request | share | function |");
        let _ = writeln!(out, "| ---: | ---: | --- |");
        for (n, function) in &p.top_self {
            let _ = writeln!(
                out,
                "| {:.2} | {:.1}% | `{}` |",
                per(*n),
                *n as f64 * 100.0 / p.instructions.max(1) as f64,
                short(function)
            );
        }
        let _ = writeln!(out, "\n{label}, gardien's own functions, inclusive:\n");
        let _ = writeln!(out, "| k/request | share | function |");
        let _ = writeln!(out, "| ---: | ---: | --- |");
        for (n, function) in &p.top_gardien {
            let _ = writeln!(
                out,
                "| {:.2} | {:.1}% | `{}` |",
                per(*n),
                *n as f64 * 100.0 / p.instructions.max(1) as f64,
                short(function)
            );
        }
    }
    out
}

/// A function name short enough for a table cell.
fn short(function: &str) -> String {
    let name = function.replace('|', "\\|");
    if name.chars().count() > 110 {
        format!("{}…", name.chars().take(110).collect::<String>())
    } else {
        name
    }
}
