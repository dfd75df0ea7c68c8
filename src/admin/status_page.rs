//! `/status` for people: the [`Status`] snapshot rendered on the server as one HTML page.
//!
//! No script, no image, no font, nothing fetched: one inline `<style>` allowed by its
//! SHA-256 in the page's `Content-Security-Policy` (`default-src 'none'`), and a
//! `<meta http-equiv="refresh">` so the page follows the process by itself. Every value
//! that comes from the policy, an upstream or a probe is HTML-escaped.

use std::fmt::{self, Display, Write as _};
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::request_window::WindowTotals;
use super::status::{Status, UpstreamStatus};

/// Seconds between the page's reloads of itself.
pub const REFRESH_SECONDS: u32 = 5;

/// The page's only stylesheet, inline; its hash is in [`CONTENT_SECURITY_POLICY`].
pub const STYLE: &str = r#"
:root { color-scheme: light; --ok: #1b7f3b; --bad: #b3261e; --warn: #9a5b00; --idle: #6b6b6b; --line: #d8dde3; }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 24px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2329; background: #f5f7f9; }
header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; }
h1 { font-size: 20px; margin: 0; }
h2 { font-size: 15px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 12px 0 4px; }
.meta { color: #4a5560; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; margin: 12px 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: #4a5560; font-size: 12px; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td.checked, td.state { white-space: nowrap; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
.small { color: #4a5560; font-size: 12px; }
.badge { display: inline-block; min-width: 52px; text-align: center; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; font-weight: 600; background: var(--idle); }
.badge.up, .badge.ok, .badge.closed, .badge.applied, .badge.redis, .badge.local { background: var(--ok); }
.badge.down, .badge.bad, .badge.open, .badge.refused { background: var(--bad); }
.badge.warn, .badge.half_open, .badge.fallback, .badge.stale { background: var(--warn); }
.error { color: var(--bad); overflow-wrap: anywhere; }
.details { border-top: 1px dashed var(--line); margin-top: 8px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 4px 0; }
dt { color: #4a5560; }
dd { margin: 0; }
ul.inline { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 16px; }
footer { color: #4a5560; font-size: 12px; }
"#;

/// `'sha256-…'` of [`STYLE`], as CSP wants it.
pub static STYLE_HASH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()))
    )
});

/// The page's `Content-Security-Policy`: nothing but its own style.
pub static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; style-src {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        *STYLE_HASH
    )
});

/// Text made safe for HTML content and quoted attributes.
struct Escaped<'a>(&'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

fn esc(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// The whole page.
pub fn render(status: &Status) -> String {
    let mut page = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    let _ = write_page(&mut page, status);
    page
}

fn write_page(out: &mut String, s: &Status) -> fmt::Result {
    let down = s.upstreams.iter().filter(|u| u.up != Some(true)).count();
    let (overall, overall_class) = if down == 0 {
        ("all upstreams up".to_owned(), "up")
    } else {
        (
            format!("{down} of {} upstreams not up", s.upstreams.len()),
            "down",
        )
    };
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>gardien status — {env}</title><style>{STYLE}</style></head><body>\n\
         <header><h1>gardien status</h1>\
         <span id=\"overall\" class=\"badge {overall_class}\">{overall}</span>\
         <span class=\"meta\">version <code>{version}</code> · commit <code>{commit}</code> · \
         environment <b id=\"environment\">{env}</b> · up {uptime} · at {at}</span></header>\n",
        env = esc(s.environment),
        version = esc(s.version),
        commit = esc(s.commit),
        uptime = duration(s.uptime_seconds as f64),
        at = esc(&timestamp(s.generated_unix_seconds)),
    )?;
    write_traffic(out, s)?;
    write_upstreams(out, s)?;
    write_jwks(out, s)?;
    write_rate_limits(out, s)?;
    write_policy(out, s)?;
    write_routes(out, s)?;
    write!(
        out,
        "<footer>Refreshes every {REFRESH_SECONDS} s. The same data as JSON: \
         <code>/status.json</code>; history in <code>/metrics</code>.</footer>\n</body></html>\n"
    )
}

fn write_traffic(out: &mut String, s: &Status) -> fmt::Result {
    out.push_str(
        "<section id=\"traffic\"><h2>Traffic</h2><table><thead><tr><th>window</th>\
         <th class=\"num\">requests</th><th class=\"num\">per second</th>\
         <th class=\"num\">5xx</th><th class=\"num\">error ratio</th></tr></thead><tbody>",
    );
    for (label, key, totals) in [
        ("last minute", "1m", &s.traffic.last_minute),
        ("last 15 minutes", "15m", &s.traffic.last_15_minutes),
    ] {
        write_window(out, label, key, totals)?;
    }
    out.push_str("</tbody></table></section>\n");
    Ok(())
}

fn write_window(out: &mut String, label: &str, key: &str, t: &WindowTotals) -> fmt::Result {
    let ratio = t
        .error_ratio
        .map_or_else(|| "—".to_owned(), |r| format!("{:.2} %", r * 100.0));
    write!(
        out,
        "<tr><td>{label}</td><td class=\"num\" id=\"requests-{key}\">{}</td>\
         <td class=\"num\" id=\"rate-{key}\">{:.2}</td><td class=\"num\" id=\"errors-{key}\">{}</td>\
         <td class=\"num\" id=\"ratio-{key}\">{ratio}</td></tr>",
        t.requests, t.requests_per_second, t.errors_5xx
    )
}

fn state_badge(up: Option<bool>) -> (&'static str, &'static str) {
    match up {
        Some(true) => ("up", "up"),
        Some(false) => ("down", "down"),
        None => ("unknown", "unknown"),
    }
}

fn write_upstreams(out: &mut String, s: &Status) -> fmt::Result {
    out.push_str(
        "<section id=\"upstreams\"><h2>Upstreams</h2><table><thead><tr><th>upstream</th>\
         <th>state</th><th>check</th><th class=\"num\">latency</th><th>checked</th>\
         <th class=\"num\">adaptive factor</th><th class=\"num\">in flight</th><th>error</th>\
         </tr></thead><tbody>",
    );
    for u in &s.upstreams {
        write_upstream_row(out, u)?;
    }
    out.push_str("</tbody></table>");
    for u in &s.upstreams {
        if let Some(details) = u.health.as_ref().and_then(|h| h.details.as_ref()) {
            write_details(out, u, details)?;
        }
    }
    out.push_str("</section>\n");
    Ok(())
}

fn write_upstream_row(out: &mut String, u: &UpstreamStatus) -> fmt::Result {
    let (state, class) = state_badge(u.up);
    let health = u.health.as_ref();
    let check = match health {
        Some(h) => match h.status_code {
            Some(code) => format!("GET <code>{}</code> → {code}", esc(&h.path)),
            None => format!("GET <code>{}</code>", esc(&h.path)),
        },
        None => "TCP connect".to_owned(),
    };
    let latency = health
        .and_then(|h| h.latency_ms)
        .map_or_else(|| "—".to_owned(), |ms| format!("{ms:.1} ms"));
    let checked = match health {
        Some(h) => h
            .checked_seconds_ago
            .map_or_else(|| "not yet".to_owned(), |s| format!("{} ago", duration(s))),
        None => "now".to_owned(),
    };
    let factor_class = if u.adaptive_factor < 1.0 { " warn" } else { "" };
    write!(
        out,
        "<tr class=\"upstream\" data-upstream=\"{name}\"><td><b>{name}</b><br>\
         <span class=\"small mono\">{url}</span></td>\
         <td class=\"state\"><span class=\"badge {class}\">{state}</span></td>\
         <td class=\"check\">{check}</td><td class=\"num latency\">{latency}</td>\
         <td class=\"checked\">{checked}</td>\
         <td class=\"num factor{factor_class}\">{factor:.2}</td>\
         <td class=\"num in-flight\">{in_flight}</td>\
         <td class=\"error\">{error}</td></tr>",
        name = esc(&u.name),
        url = esc(&u.url),
        factor = u.adaptive_factor,
        in_flight = u.in_flight,
        error = esc(u.error.as_deref().unwrap_or("")),
    )
}

/// The last health body of `u`: gardien-backend's fields (`database`, `providers`,
/// `outbox`) by name, any other key as key and value.
fn write_details(out: &mut String, u: &UpstreamStatus, details: &serde_json::Value) -> fmt::Result {
    use serde_json::Value;
    let path = u.health.as_ref().map_or("", |h| h.path.as_str());
    write!(
        out,
        "<div class=\"details\" data-upstream=\"{name}\"><h3>{name}: <code>{path}</code> says</h3><dl>",
        name = esc(&u.name),
        path = esc(path),
    )?;
    let Value::Object(fields) = details else {
        write!(
            out,
            "<dt>body</dt><dd class=\"mono\">{}</dd></dl></div>",
            esc(&compact(details))
        )?;
        return Ok(());
    };
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("database", Value::Object(db)) => {
                let ok = db.get("ok").and_then(Value::as_bool);
                let (text, class) = match ok {
                    Some(true) => ("ok", "ok"),
                    Some(false) => ("failing", "bad"),
                    None => ("unknown", "unknown"),
                };
                let mut extra = String::new();
                if let Some(ms) = db.get("latency_ms").and_then(Value::as_f64) {
                    let _ = write!(extra, " {ms} ms");
                }
                if let Some(error) = db.get("error").and_then(Value::as_str) {
                    let _ = write!(extra, " <span class=\"error\">{}</span>", esc(error));
                }
                write!(
                    out,
                    "<dt>database</dt><dd class=\"database\"><span class=\"badge {class}\">{text}</span>{extra}</dd>"
                )?;
            }
            ("providers", Value::Object(providers)) => {
                out.push_str("<dt>provider circuits</dt><dd><ul class=\"inline\">");
                if providers.is_empty() {
                    out.push_str("<li>none configured</li>");
                }
                for (name, provider) in providers {
                    let circuit = provider
                        .get("circuit")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown");
                    write!(
                        out,
                        "<li class=\"circuit\" data-provider=\"{name}\">{name} \
                         <span class=\"badge {state}\">{state_text}</span></li>",
                        name = esc(name),
                        state = esc(&css_class(circuit)),
                        state_text = esc(&circuit.replace('_', " ")),
                    )?;
                }
                out.push_str("</ul></dd>");
            }
            ("outbox", Value::Object(outbox)) => {
                let counted = match outbox.get("counted_seconds_ago").and_then(Value::as_f64) {
                    Some(ago) => format!("counted {} ago", duration(ago)),
                    None => "not counted yet".to_owned(),
                };
                write!(
                    out,
                    "<dt>outbox backlog</dt><dd><span class=\"small\">{counted}</span><ul class=\"inline\">"
                )?;
                let channels = outbox.get("channels").and_then(Value::as_object);
                for (channel, backlog) in channels.into_iter().flatten() {
                    let due = backlog.get("due").and_then(Value::as_u64).unwrap_or(0);
                    let oldest = backlog
                        .get("oldest_due_seconds")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0);
                    let age = if due > 0 {
                        format!(", oldest waiting {}", duration(oldest))
                    } else {
                        String::new()
                    };
                    write!(
                        out,
                        "<li class=\"outbox\" data-channel=\"{channel}\">{channel}: \
                         <span class=\"due\">{due}</span> due{age}</li>",
                        channel = esc(channel),
                    )?;
                }
                out.push_str("</ul></dd>");
            }
            (_, value) => {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => compact(other),
                };
                write!(
                    out,
                    "<dt>{}</dt><dd class=\"mono\">{}</dd>",
                    esc(key),
                    esc(&text)
                )?;
            }
        }
    }
    out.push_str("</dl></div>");
    Ok(())
}

fn write_jwks(out: &mut String, s: &Status) -> fmt::Result {
    out.push_str("<section id=\"jwks\"><h2>JWKS key sets</h2>");
    if s.jwks.is_empty() {
        out.push_str("<p class=\"small\">No issuer with a JWKS in the policy.</p></section>\n");
        return Ok(());
    }
    out.push_str(
        "<table><thead><tr><th>issuer</th><th>keys</th><th>age</th><th>last error</th></tr>\
         </thead><tbody>",
    );
    for k in &s.jwks {
        let (text, class) = match (k.has_keys, k.stale) {
            (false, _) => ("no keys", "bad"),
            (true, true) => ("stale", "stale"),
            (true, false) => ("loaded", "ok"),
        };
        let age = k
            .age_seconds
            .map_or_else(|| "never fetched".to_owned(), |a| duration(a as f64));
        write!(
            out,
            "<tr class=\"jwks\" data-issuer=\"{issuer}\"><td class=\"mono\">{issuer}</td>\
             <td><span class=\"badge {class}\">{text}</span></td><td class=\"age\">{age}</td>\
             <td class=\"error\">{error}</td></tr>",
            issuer = esc(&k.issuer),
            error = esc(k.last_error.as_deref().unwrap_or("")),
        )?;
    }
    out.push_str("</tbody></table></section>\n");
    Ok(())
}

fn write_rate_limits(out: &mut String, s: &Status) -> fmt::Result {
    let r = &s.rate_limits;
    let state_text = match r.state {
        "fallback" => "fallback: Redis unreachable, limiting locally",
        "redis" => "shared in Redis",
        _ => "in this process",
    };
    write!(
        out,
        "<section id=\"rate-limits\"><h2>Rate limits and adaptive control</h2><dl>\
         <dt>store</dt><dd id=\"rate-limit-store\"><span class=\"badge {state}\">{state}</span> {state_text}</dd>\
         <dt>rules</dt><dd>{rules}</dd>",
        state = esc(r.state),
        rules = r.rules,
    )?;
    if let Some(url) = &r.redis_url {
        write!(out, "<dt>Redis</dt><dd class=\"mono\">{}</dd>", esc(url))?;
    }
    match &s.adaptive {
        None => out.push_str("<dt>adaptive</dt><dd id=\"adaptive\">off (factors stay 1)</dd>"),
        Some(a) => {
            write!(
                out,
                "<dt>adaptive</dt><dd id=\"adaptive\">on: p95 target {} ms, error ratio target {:.1} %, \
                 window {}, factor at least {:.2}, at most {} in flight per upstream</dd>",
                a.latency_target_ms,
                a.error_ratio_target * 100.0,
                duration(a.window_seconds as f64),
                a.min_factor,
                a.max_in_flight,
            )?;
        }
    }
    out.push_str("<dt>factors</dt><dd><ul class=\"inline\">");
    for u in &s.upstreams {
        write!(
            out,
            "<li class=\"factor\" data-upstream=\"{}\">{}: {:.2}</li>",
            esc(&u.name),
            esc(&u.name),
            u.adaptive_factor
        )?;
    }
    out.push_str("</ul></dd></dl></section>\n");
    Ok(())
}

fn write_policy(out: &mut String, s: &Status) -> fmt::Result {
    let p = &s.policy;
    write!(
        out,
        "<section id=\"policy\"><h2>Policy</h2><dl>\
         <dt>file</dt><dd class=\"mono\" id=\"policy-file\">{file}</dd>\
         <dt>hash</dt><dd class=\"mono\" id=\"policy-hash\">{hash}</dd>\
         <dt>loaded</dt><dd id=\"policy-loaded\">{loaded} ({ago} ago)</dd>\
         <dt>last reload</dt><dd id=\"policy-last-reload\">",
        file = esc(&p.file),
        hash = esc(&p.state.hash),
        loaded = esc(&timestamp(p.state.loaded_unix_seconds)),
        ago = duration((s.generated_unix_seconds - p.state.loaded_unix_seconds).max(0.0)),
    )?;
    match &p.state.last_reload {
        None => out.push_str("none since start"),
        Some(reload) => {
            write!(
                out,
                "<span class=\"badge {result}\">{result}</span> at {at}",
                result = esc(reload.result),
                at = esc(&timestamp(reload.unix_seconds)),
            )?;
            if let Some(count) = reload.problem_count {
                write!(
                    out,
                    ", {count} problem(s); the policy above keeps serving<ul>"
                )?;
                for problem in &reload.problems {
                    write!(out, "<li class=\"error mono\">{}</li>", esc(problem))?;
                }
                out.push_str("</ul>");
            }
        }
    }
    writeln!(
        out,
        "</dd><dt>summary</dt><dd class=\"small\">{}</dd></dl></section>",
        esc(&s.summary)
    )
}

fn write_routes(out: &mut String, s: &Status) -> fmt::Result {
    out.push_str(
        "<section id=\"routes\"><h2>Routes</h2><table><thead><tr><th>route</th><th>prefix</th>\
         <th>methods</th><th>upstream</th></tr></thead><tbody>",
    );
    for r in &s.routes {
        write!(
            out,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td class=\"small\">{}</td><td>{}</td></tr>",
            esc(&r.name),
            esc(&r.prefix),
            esc(&r
                .methods
                .as_ref()
                .map_or_else(|| "any".to_owned(), |m| m.join(" "))),
            esc(r.upstream.as_deref().unwrap_or("—")),
        )?;
    }
    out.push_str("</tbody></table></section>\n");
    Ok(())
}

/// A badge class from a value some service sent: letters, digits and `_` only.
fn css_class(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(32)
        .collect()
}

fn compact(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `2 h 5 min`, `3 min 4 s`, `12 s`, `0.4 s`.
fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "—".to_owned();
    }
    if seconds < 10.0 && seconds.fract() != 0.0 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds as u64;
    let (h, m, s) = (whole / 3600, whole / 60 % 60, whole % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min"),
    }
}

/// RFC 3339 in UTC, to the second.
fn timestamp(unix_seconds: f64) -> String {
    if !unix_seconds.is_finite() || unix_seconds < 0.0 {
        return "—".to_owned();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(unix_seconds))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_hash_is_the_style_s_own() {
        let digest = Sha256::digest(STYLE.as_bytes());
        let expected = format!(
            "style-src 'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        );
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none'; "));
        assert!(
            CONTENT_SECURITY_POLICY.contains(&expected),
            "{}",
            *CONTENT_SECURITY_POLICY
        );
    }

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#).to_string(),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("plain é").to_string(), "plain é");
        assert_eq!(css_class("half_open\" onclick=x"), "half_openonclickx");
    }

    /// A snapshot whose every policy- or upstream-controlled text tries to open markup.
    fn hostile() -> Status {
        use super::super::policy_record::{PolicyReport, PolicyState};
        use super::super::status::*;
        let evil = "<script>alert(1)</script>\"'&";
        let totals = WindowTotals {
            seconds: 60,
            requests: 12,
            errors_5xx: 3,
            requests_per_second: 0.2,
            error_ratio: Some(0.25),
        };
        Status {
            version: "0.1.0",
            commit: "unknown",
            environment: "dev",
            uptime_seconds: 61,
            generated_unix_seconds: 1_700_000_100.0,
            summary: evil.into(),
            routes: vec![RouteStatus {
                name: evil.into(),
                prefix: evil.into(),
                upstream: Some(evil.into()),
                methods: None,
            }],
            upstreams: vec![UpstreamStatus {
                name: evil.into(),
                url: evil.into(),
                addresses: vec![],
                check: "http",
                up: Some(false),
                error: Some(evil.into()),
                health: Some(crate::upstream_health::HealthReport {
                    path: evil.into(),
                    up: Some(false),
                    status_code: Some(503),
                    error_kind: Some("status"),
                    error: Some(evil.into()),
                    latency_ms: Some(1.5),
                    checked_seconds_ago: Some(0.5),
                    details: Some(serde_json::json!({
                        "database": {"ok": false, "error": evil},
                        "providers": {evil: {"circuit": evil}},
                        "outbox": {"channels": {evil: {"due": 4, "oldest_due_seconds": 75.0}}, "counted_seconds_ago": 2.0},
                        evil: [evil],
                    })),
                }),
                adaptive_factor: 0.5,
                in_flight: 2,
            }],
            jwks: vec![super::super::readiness::KeySetReadiness {
                issuer: evil.into(),
                has_keys: true,
                age_seconds: Some(30),
                stale: false,
                last_error: Some(evil.into()),
            }],
            rate_limits: RateLimitStatus {
                store: "redis",
                state: "fallback",
                redis_url: Some(evil.into()),
                rules: 1,
            },
            adaptive: None,
            policy: PolicyReport {
                file: evil.into(),
                state: PolicyState {
                    hash: "0123456789ab".into(),
                    loaded_unix_seconds: 1_700_000_000.0,
                    last_reload: Some(super::super::policy_record::ReloadOutcome {
                        result: "refused",
                        unix_seconds: 1_700_000_050.0,
                        problems: vec![evil.into()],
                        problem_count: Some(1),
                    }),
                },
            },
            traffic: Traffic {
                last_minute: totals,
                last_15_minutes: totals,
            },
        }
    }

    #[test]
    fn the_page_escapes_what_policies_and_upstreams_say() {
        let page = render(&hostile());
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("\"'&"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        // One style element, exactly the hashed text; a refresh; nothing fetched.
        assert_eq!(page.matches("<style>").count(), 1);
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        for fetched in ["src=", "href=", "url(", "@import"] {
            assert!(!page.contains(fetched), "{fetched} in the page");
        }
        // What the data says is there.
        assert!(page.contains("<span class=\"badge down\">down</span>"));
        assert!(page.contains("id=\"requests-1m\">12</td>"));
        assert!(page.contains("id=\"ratio-1m\">25.00 %</td>"));
        assert!(page.contains("id=\"policy-hash\">0123456789ab</dd>"));
        assert!(page.contains("<span class=\"badge refused\">refused</span>"));
        assert!(page.contains("<span class=\"due\">4</span> due, oldest waiting 1 min 15 s"));
        assert!(page.contains("<span class=\"badge fallback\">fallback</span>"));
        assert!(
            page.contains("class=\"badge scriptalert1script\""),
            "circuit state as a class"
        );
    }

    #[test]
    fn durations_and_times_for_people() {
        assert_eq!(duration(0.42), "0.4 s");
        assert_eq!(duration(2.0), "2 s");
        assert_eq!(duration(42.0), "42 s");
        assert_eq!(duration(184.0), "3 min 4 s");
        assert_eq!(duration(7500.0), "2 h 5 min");
        assert_eq!(timestamp(1_700_000_000.0), "2023-11-14T22:13:20Z");
    }
}
