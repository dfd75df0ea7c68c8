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

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// Every relative link of the README and docs/*.md reaches a file that exists and, with a
/// `#fragment`, a heading of it: a guide whose links break sends an operator nowhere.
#[test]
fn every_relative_link_reaches_its_file_and_heading() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("markdown");
        let dir = file.parent().expect("dir");
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
            let linked = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            if !linked.exists() {
                broken.push(format!("{}: {target}: no such file", file.display()));
                continue;
            }
            if !fragment.is_empty() && linked.extension().is_some_and(|e| e == "md") {
                let headings = anchors(&std::fs::read_to_string(&linked).expect("markdown"));
                if !headings.iter().any(|h| h == fragment) {
                    broken.push(format!("{}: {target}: no such heading", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
