//! The shipped monitoring files agree with the code and with each other: every alert of
//! deploy/prometheus/alerts.yaml has its docs/RUNBOOK.md section and `runbook_url`, every
//! metric a rule or a dashboard panel queries is exported by gardien or gardien-backend,
//! deploy/gke/rules.yaml holds the same rules, and every dashboard panel has a query.
//! (`make test-alerts` runs promtool on the rules themselves.)

use std::path::Path;

use serde_yaml::Value;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(relative: &str) -> Value {
    serde_yaml::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The series of the `prometheus` crate's process collector (Linux), which both binaries
/// register.
const PROCESS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

/// Every metric name registered (as a string literal) by either binary.
fn exported() -> Vec<String> {
    let mut names: Vec<String> = PROCESS.iter().map(|s| s.to_string()).collect();
    for file in ["src/admin/metrics.rs", "backend/src/metrics.rs"] {
        let text = read(file);
        for piece in text.split('"').skip(1).step_by(2) {
            if piece.starts_with("gardien_")
                && piece.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                names.push(piece.to_owned());
            }
        }
    }
    names
}

/// The metric names a PromQL expression reads (`gardien_…`, `process_…`), histogram
/// suffixes removed.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !expr.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let starts = (expr[i..].starts_with("gardien_") || expr[i..].starts_with("process_"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |n| i + n);
            let name = &expr[i..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            found.push(base.to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

fn rules(groups: &Value) -> Vec<&Value> {
    groups
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .collect()
}

#[test]
fn every_alert_has_its_runbook_section_labels_and_known_metrics() {
    let alerts = yaml("deploy/prometheus/alerts.yaml");
    let runbook = read("docs/RUNBOOK.md");
    let exported = exported();
    let rules = rules(&alerts["groups"]);
    assert!(rules.len() >= 11, "{}", rules.len());
    for rule in rules {
        let name = rule["alert"].as_str().expect("every rule is an alert");
        assert!(
            runbook.lines().any(|l| l == format!("## {name}")),
            "docs/RUNBOOK.md has no `## {name}` section"
        );
        assert_eq!(
            rule["annotations"]["runbook_url"].as_str(),
            Some(format!("docs/RUNBOOK.md#{}", name.to_lowercase()).as_str()),
            "{name}"
        );
        for key in ["summary", "description"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name} has no {key}"
            );
        }
        assert!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("critical" | "warning")
            ),
            "{name}: severity"
        );
        let expr = rule["expr"].as_str().expect("expr");
        let used = metrics_in(expr);
        assert!(!used.is_empty(), "{name} reads no metric");
        for metric in used {
            assert!(
                exported.contains(&metric),
                "{name} reads `{metric}`, which neither binary exports"
            );
        }
    }
}

#[test]
fn every_runbook_section_is_an_alert() {
    let alerts = yaml("deploy/prometheus/alerts.yaml");
    let names: Vec<&str> = rules(&alerts["groups"])
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    // The alert sections come before `# Procedures` (the everyday changes).
    let runbook = read("docs/RUNBOOK.md");
    let alerts_part = runbook.split("\n# Procedures").next().expect("text");
    assert!(
        runbook.contains("\n# Procedures\n"),
        "RUNBOOK.md has its procedures"
    );
    for line in alerts_part.lines() {
        if let Some(section) = line.strip_prefix("## ") {
            assert!(
                names.contains(&section),
                "RUNBOOK section `{section}` names no alert"
            );
        }
    }
}

#[test]
fn gke_rules_are_the_same_rules() {
    let alerts = yaml("deploy/prometheus/alerts.yaml");
    let gke = yaml("deploy/gke/rules.yaml");
    assert_eq!(
        gke["apiVersion"].as_str(),
        Some("monitoring.googleapis.com/v1")
    );
    assert_eq!(gke["kind"].as_str(), Some("Rules"));
    assert_eq!(
        gke["spec"]["groups"], alerts["groups"],
        "deploy/gke/rules.yaml differs from deploy/prometheus/alerts.yaml"
    );
}

#[test]
fn every_dashboard_panel_queries_exported_metrics() {
    let text = read("deploy/grafana/gardien.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let exported = exported();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 15, "{}", panels.len());
    for panel in panels {
        let title = panel["title"].as_str().expect("title");
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "panel `{title}` has no target");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            let used = metrics_in(expr);
            assert!(
                !used.is_empty(),
                "panel `{title}`: `{expr}` reads no metric"
            );
            for metric in used {
                assert!(
                    exported.contains(&metric),
                    "panel `{title}` reads `{metric}`, which neither binary exports"
                );
            }
        }
    }
}

#[test]
fn monitoring_manifests_scrape_the_metrics_ports() {
    let pod: Vec<Value> =
        serde_yaml::Deserializer::from_str(&read("deploy/gke/podmonitoring.yaml"))
            .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
            .collect();
    let ports: Vec<&str> = pod
        .iter()
        .inspect(|d| assert_eq!(d["kind"].as_str(), Some("PodMonitoring")))
        .flat_map(|d| d["spec"]["endpoints"].as_sequence().expect("endpoints"))
        .filter_map(|e| e["port"].as_str())
        .collect();
    assert_eq!(ports, ["admin", "http"]);
    for (file, port) in [
        ("deploy/cloudrun/gateway.yaml", 9090),
        ("deploy/cloudrun/backend.yaml", 8080),
    ] {
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&read(file))
            .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
            .collect();
        let service = &docs[0];
        let containers = service["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .expect("containers");
        assert!(
            containers.iter().any(|c| c["image"]
                .as_str()
                .is_some_and(|i| i.contains("cloud-run-gmp-sidecar"))),
            "{file}: no GMP sidecar"
        );
        let monitoring = &docs[1];
        assert_eq!(monitoring["kind"].as_str(), Some("RunMonitoring"), "{file}");
        assert_eq!(
            monitoring["spec"]["endpoints"][0]["port"].as_u64(),
            Some(port),
            "{file}"
        );
    }
}

/// The procedures the runbook must carry (issue 12), each a section under `# Procedures`.
const PROCEDURES: [&str; 8] = [
    "Validate a deployment",
    "Rotate the JWT signing keys",
    "Rotate the identity secret",
    "Rotate the provider keys",
    "Change a rate limit",
    "Add a frontend origin",
    "Drain a replica",
    "Restore the database",
];

#[test]
fn the_runbook_has_every_procedure() {
    let runbook = read("docs/RUNBOOK.md");
    let procedures = runbook
        .split("\n# Procedures\n")
        .nth(1)
        .expect("RUNBOOK.md: no `# Procedures`");
    for procedure in PROCEDURES {
        assert!(
            procedures.contains(&format!("\n## {procedure}\n")),
            "RUNBOOK.md: no procedure `{procedure}`"
        );
    }
}

/// A metric the runbook or the deployment guide tells an operator to look at exists.
#[test]
fn every_metric_the_runbook_and_the_guide_name_is_exported() {
    let exported = exported();
    for file in ["docs/RUNBOOK.md", "docs/DEPLOYMENT.md"] {
        for name in metrics_in(&read(file)) {
            // `gardien_backend` alone is the crate's name, not a metric.
            if name == "gardien_backend" {
                continue;
            }
            assert!(
                exported.contains(&name),
                "{file} names {name}, which neither binary exports"
            );
        }
    }
}
