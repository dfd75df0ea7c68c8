//! The docs name what the code does: every metric a binary registers is documented, so an
//! operator reading docs/OBSERVABILITY.md (or the backend's docs) sees every series.

use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `"gardien_…"` metric name registered in `files`.
fn metric_names(files: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    for file in files {
        let text = read(file);
        for piece in text.split('"').skip(1).step_by(2) {
            let is_name = piece.starts_with("gardien_")
                && piece.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && piece != "gardien_identity";
            if is_name && !piece.ends_with("_bucket") && !names.contains(&piece.to_owned()) {
                names.push(piece.to_owned());
            }
        }
    }
    names
}

#[test]
fn every_gateway_metric_is_in_observability_md() {
    let docs = read("docs/OBSERVABILITY.md");
    let names = metric_names(&["src/admin/metrics.rs"]);
    assert!(names.len() > 10, "{names:?}");
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !docs.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "undocumented in docs/OBSERVABILITY.md: {missing:?}"
    );
}

#[test]
fn every_backend_metric_is_documented() {
    let docs = [
        "docs/OBSERVABILITY.md",
        "docs/BACKEND.md",
        "docs/DELIVERY.md",
    ]
    .map(read)
    .join("\n");
    let names = metric_names(&["backend/src/metrics.rs"]);
    assert!(names.len() > 3, "{names:?}");
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !docs.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "undocumented backend metrics: {missing:?}"
    );
}
