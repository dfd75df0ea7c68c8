//! The shipped alert rules with their durations shortened for a test that lasts seconds:
//! every `for:` divided by 100 (whole seconds, at least 1 s) and every range window of an
//! `expr` divided by 20 (at least 5 s: a few 1 s scrapes), e.g. `for: 5m` → `3s`, `[5m]` →
//! `[15s]`. The rewrite is structural (serde_yaml) and [`assert_only_durations_changed`]
//! proves nothing else moved: same groups, alert names, labels, annotations, and the same
//! expressions once their windows are blanked.

use serde_yaml::Value;

/// `for:` ÷ this.
const FOR_DIVISOR: u64 = 100;
/// Range windows ÷ this.
const RANGE_DIVISOR: u64 = 20;
/// The shortest window written: with 1 s scrapes, enough samples for `rate`.
const MIN_RANGE_SECONDS: u64 = 5;

/// A copy of `alerts` (the parsed alerts.yaml) with `for` and range windows shortened.
pub fn shortened(alerts: &Value) -> Value {
    let mut short = alerts.clone();
    for rule in rules_mut(&mut short) {
        let Some(map) = rule.as_mapping_mut() else {
            panic!("a rule is not a mapping: {rule:?}")
        };
        if let Some(value) = map.get_mut("for") {
            let text = value.as_str().expect("`for` is a duration");
            let seconds = seconds_of(text).unwrap_or_else(|| panic!("`for: {text}`"));
            *value = Value::from(format!("{}s", seconds.div_ceil(FOR_DIVISOR).max(1)));
        }
        let expr = map.get_mut("expr").expect("every rule has an expr");
        let text = expr.as_str().expect("expr is text").to_owned();
        *expr = Value::from(map_ranges(&text, |window| {
            let seconds = seconds_of(window).unwrap_or_else(|| panic!("[{window}] in {text}"));
            format!("{}s", (seconds / RANGE_DIVISOR).max(MIN_RANGE_SECONDS))
        }));
    }
    short
}

/// Panics unless `short` differs from `original` only in `for` values (each shorter or
/// equal) and in the windows inside `[…]` of each `expr`; and unless something did change.
pub fn assert_only_durations_changed(original: &Value, short: &Value) {
    let (a, b) = (rules(original), rules(short));
    assert_eq!(a.len(), b.len(), "the rewrite kept every rule");
    // Each group as it is without its rules (name, interval…): unchanged.
    let groups = |v: &Value| -> Vec<Value> {
        v["groups"]
            .as_sequence()
            .expect("groups")
            .iter()
            .map(|g| {
                let mut g = g.clone();
                g.as_mapping_mut().expect("a group").remove("rules");
                g
            })
            .collect()
    };
    assert_eq!(
        groups(original),
        groups(short),
        "the groups besides their rules"
    );
    let mut changed = 0;
    for (before, after) in a.iter().zip(&b) {
        let name = before["alert"].as_str().unwrap_or("?");
        let (before_map, after_map) = (
            before.as_mapping().expect("a rule"),
            after.as_mapping().expect("a rule"),
        );
        let keys = |m: &serde_yaml::Mapping| -> Vec<Value> { m.keys().cloned().collect() };
        assert_eq!(keys(before_map), keys(after_map), "{name}: the same keys");
        for (key, value) in before_map {
            let other = &after_map[key];
            match key.as_str() {
                Some("for") => {
                    let (x, y) = (
                        seconds_of(value.as_str().expect("for")).expect("for"),
                        seconds_of(other.as_str().expect("for")).expect("for"),
                    );
                    assert!(y <= x, "{name}: `for` {y}s is not shorter than {x}s");
                    changed += usize::from(y != x);
                }
                Some("expr") => {
                    let (x, y) = (value.as_str().expect("expr"), other.as_str().expect("expr"));
                    assert_eq!(
                        map_ranges(x, |_| String::new()),
                        map_ranges(y, |_| String::new()),
                        "{name}: only the windows of its expr changed"
                    );
                    changed += usize::from(x != y);
                }
                _ => assert_eq!(value, other, "{name}: `{key:?}` is unchanged"),
            }
        }
    }
    assert!(changed > 0, "the rewrite shortened nothing");
}

/// Every alert name, in file order.
pub fn alert_names(alerts: &Value) -> Vec<String> {
    rules(alerts)
        .iter()
        .map(|r| r["alert"].as_str().expect("an alert name").to_owned())
        .collect()
}

fn rules(alerts: &Value) -> Vec<Value> {
    alerts["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter().cloned())
        .collect()
}

fn rules_mut(alerts: &mut Value) -> impl Iterator<Item = &mut Value> {
    alerts["groups"]
        .as_sequence_mut()
        .expect("groups")
        .iter_mut()
        .flat_map(|g| g["rules"].as_sequence_mut().expect("rules").iter_mut())
}

/// `expr` with the text of each range `[…]` (both parts of a subquery `[w:step]`) replaced
/// by `f(text)`; brackets inside quoted strings (a regex matcher) are left alone.
fn map_ranges(expr: &str, mut f: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut chars = expr.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (Some(q), '\\') if q != '`' => {
                out.push(c);
                if let Some((_, escaped)) = chars.next() {
                    out.push(escaped);
                }
            }
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '"' | '\'' | '`') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '[') => {
                let end = expr[i..]
                    .find(']')
                    .map(|n| i + n)
                    .unwrap_or_else(|| panic!("an unclosed `[` in {expr}"));
                let parts: Vec<String> = expr[i + 1..end]
                    .split(':')
                    .map(|part| {
                        if part.trim().is_empty() {
                            part.to_owned()
                        } else {
                            f(part.trim())
                        }
                    })
                    .collect();
                out.push('[');
                out.push_str(&parts.join(":"));
                out.push(']');
                while chars.peek().is_some_and(|(j, _)| *j <= end) {
                    chars.next();
                }
            }
            (None, c) => out.push(c),
        }
    }
    out
}

/// Seconds of a Prometheus duration made of whole `s`, `m`, `h`, `d`, `w`, `y` units
/// (`90s`, `1h30m`); `None` for anything else (the test would not know how to shorten it).
fn seconds_of(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            'y' => 31_536_000,
            _ => return None,
        };
        total += number.parse::<u64>().ok()? * unit;
        number.clear();
    }
    (number.is_empty() && total > 0).then_some(total)
}

#[test]
fn windows_and_for_are_shortened_and_nothing_else() {
    assert_eq!(seconds_of("5m"), Some(300));
    assert_eq!(seconds_of("1h30m"), Some(5400));
    assert_eq!(seconds_of("500ms"), None);
    assert_eq!(
        map_ranges(r#"rate(x{a=~"[5m]"}[5m]) / rate(y[1h:1m])"#, |w| format!(
            "<{w}>"
        )),
        r#"rate(x{a=~"[5m]"}[<5m>]) / rate(y[<1h>:<1m>])"#
    );
    let alerts: Value = serde_yaml::from_str(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[10m]) > 0\n        for: 2m\n        labels: {severity: warning}\n",
    )
    .expect("yaml");
    let short = shortened(&alerts);
    assert_eq!(short["groups"][0]["rules"][0]["expr"], "rate(x[30s]) > 0");
    assert_eq!(short["groups"][0]["rules"][0]["for"], "2s");
    assert_only_durations_changed(&alerts, &short);
}

#[test]
#[should_panic(expected = "is unchanged")]
fn a_rewrite_that_touches_a_label_is_caught() {
    let alerts: Value = serde_yaml::from_str(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[10m]) > 0\n        labels: {severity: warning}\n",
    )
    .expect("yaml");
    let mut short = shortened(&alerts);
    short["groups"][0]["rules"][0]["labels"]["severity"] = Value::from("critical");
    assert_only_durations_changed(&alerts, &short);
}
