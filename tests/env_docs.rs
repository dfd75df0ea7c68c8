//! docs/ENVIRONMENT.md says what `gardien env-docs` prints, and no variable is read in the
//! gateway's source (or the shared crates') without its catalog entry. `make env-docs`
//! regenerates the file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gardien_secrets::catalog_check::{compare, generated_block, variable_like_literals};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `gardien env-docs ARGS`' standard output; fails on a non-zero exit.
fn env_docs(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gardien"))
        .arg("env-docs")
        .args(args)
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gardien starts");
    // Printing a table takes milliseconds; bounded all the same.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("gardien env-docs did not exit within 30s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    assert!(
        output.status.success(),
        "gardien env-docs {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn environment_md_is_what_gardien_env_docs_prints() {
    let doc = std::fs::read_to_string(root().join("docs/ENVIRONMENT.md")).expect("docs");
    let documented = generated_block(
        &doc,
        gardien::env_docs::BEGIN_MARKER,
        gardien::env_docs::END_MARKER,
    )
    .expect("docs/ENVIRONMENT.md has gardien's generated block (its markers)");
    let generated = env_docs(&["--format", "markdown"]);
    if let Err(drift) = compare(documented, &generated) {
        panic!("docs/ENVIRONMENT.md is not what `gardien env-docs --format markdown` prints: run `make env-docs`.\n{drift}");
    }
}

#[test]
fn the_default_output_is_a_table_for_a_terminal() {
    let table = env_docs(&[]);
    for expected in [
        "Read by the shipped policies\n",
        "GARDIEN_LISTEN (variable)\n  dev: 127.0.0.1:8080 | staging: 0.0.0.0:8080 | production: 0.0.0.0:8080\n",
        "GARDIEN_INTERNAL_SECRET (secret)\n",
        "SECRETS_REFRESH_INTERVAL (variable)\n  default: 60s\n",
        "GARDIEN_READY_FILE (variable)\n",
    ] {
        assert!(table.contains(expected), "{expected:?} not in:\n{table}");
    }
    assert!(!table.contains("| ---"), "no Markdown in the table");
}

/// Literals that look like variables but are not read as such, and why.
const NOT_RUNTIME_VARIABLES: &[(&str, &str)] = &[
    (
        "JWT_SECRET",
        "gardien-secrets' development default for the secret a policy may name in `jwt.issuers[].secret` (no shipped policy does; the prose of docs/ENVIRONMENT.md says so)",
    ),
];

#[test]
fn every_variable_the_gateway_reads_has_a_catalog_entry() {
    let roots: Vec<PathBuf> = [
        "src",
        "crates/gardien-secrets/src",
        "crates/gardien-telemetry/src",
        "crates/gardien-identity/src",
        "crates/gardien-errors/src",
    ]
    .iter()
    .map(|dir| root().join(dir))
    .collect();
    let sections = gardien::env_docs::sections();
    let documented: Vec<&str> = sections
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| r.name.as_str()))
        .collect();
    let literals = variable_like_literals(&roots);
    assert!(
        literals.len() > 10,
        "the scan finds the catalog's own names: {literals:?}"
    );
    let missing: Vec<String> = literals
        .iter()
        .filter(|l| !documented.contains(&l.name.as_str()))
        .filter(|l| {
            !NOT_RUNTIME_VARIABLES
                .iter()
                .any(|(name, _)| *name == l.name)
        })
        .map(|l| format!("{} ({})", l.name, l.at))
        .collect();
    assert!(
        missing.is_empty(),
        "read without an env-docs entry (add an EnvVar next to the code that reads it, list it in src/env_docs/mod.rs, then `make env-docs`):\n{}",
        missing.join("\n")
    );
}
