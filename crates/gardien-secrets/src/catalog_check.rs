//! What both binaries' `env-docs` tests check: that docs/ENVIRONMENT.md's generated block is
//! what `env-docs` prints now, and that no variable is read in the source without a catalog
//! entry. Here so the two test suites say it the same way.

use std::path::{Path, PathBuf};

/// The text between `begin` and `end` (markers included, up to the end of `end`'s line) in
/// `doc`; `None` when a marker is missing.
pub fn generated_block<'a>(doc: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = doc.find(begin)?;
    let stop = start + doc[start..].find(end)? + end.len();
    let stop = doc[stop..].find('\n').map_or(doc.len(), |n| stop + n + 1);
    Some(&doc[start..stop])
}

/// `Ok` when `documented` is `generated`; else a diff-like message: each line only in one
/// of them, `-` for the doc's, `+` for `env-docs`', and the variables they name.
pub fn compare(documented: &str, generated: &str) -> Result<(), String> {
    if documented == generated {
        return Ok(());
    }
    let doc_lines: Vec<&str> = documented.lines().collect();
    let new_lines: Vec<&str> = generated.lines().collect();
    let mut diff = Vec::new();
    let mut names = Vec::new();
    for line in &doc_lines {
        if !new_lines.contains(line) {
            diff.push(format!("- {line}"));
            names.extend(row_name(line));
        }
    }
    for line in &new_lines {
        if !doc_lines.contains(line) {
            diff.push(format!("+ {line}"));
            names.extend(row_name(line));
        }
    }
    names.dedup();
    if diff.is_empty() {
        diff.push("(the same lines in another order)".to_owned());
    }
    Err(format!(
        "variables that differ: {}\n{}",
        if names.is_empty() {
            "none (headings or notes)".to_owned()
        } else {
            names.join(", ")
        },
        diff.join("\n")
    ))
}

/// The variable of a table row (`` | `NAME` | … ``).
fn row_name(line: &str) -> Option<String> {
    let rest = line.strip_prefix("| `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// A string literal in the source that looks like an environment variable's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    pub name: String,
    /// `path:line`.
    pub at: String,
}

/// Every name-like literal in the code (not the tests) of the `.rs` files under `roots`:
/// each `"UPPER_CASE"` literal with a `_`, and any upper-case literal right after
/// `var(`, `var_os(` or `env = ` (so `std::env::var("HOSTNAME")` counts), but not the
/// compile-time `env!("…")` / `option_env!("…")`. A file's code ends at its first
/// `#[cfg(test)]` line; comment lines are skipped.
pub fn variable_like_literals(roots: &[PathBuf]) -> Vec<Literal> {
    let mut files = Vec::new();
    for root in roots {
        collect_rust_files(root, &mut files);
    }
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("#[cfg(test)]") {
                break;
            }
            if trimmed.starts_with("//") {
                continue;
            }
            for name in literals_in(line) {
                found.push(Literal {
                    name,
                    at: format!("{}:{}", file.display(), number + 1),
                });
            }
        }
    }
    found
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn literals_in(line: &str) -> Vec<String> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' || (i > 0 && bytes[i - 1] == b'\\') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        let closed = end < bytes.len() && bytes[end] == b'"' && end > start;
        if closed && bytes[start].is_ascii_uppercase() {
            let name = &line[start..end];
            let before = line[..i].trim_end();
            let read = before.ends_with("var(")
                || before.ends_with("var_os(")
                || before.ends_with("env =");
            // `env!` / `option_env!`: the compiler reads those, not the running binary.
            let compile_time = before.ends_with("env!(");
            if (name.contains('_') || read) && !compile_time {
                found.push(name.to_owned());
            }
            i = end + 1;
        } else {
            i += 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_is_found_between_its_markers() {
        let doc = "intro\n<!-- b -->\n| `A` | x |\n<!-- e -->\nafter\n";
        assert_eq!(
            generated_block(doc, "<!-- b -->", "<!-- e -->"),
            Some("<!-- b -->\n| `A` | x |\n<!-- e -->\n")
        );
        assert_eq!(generated_block(doc, "<!-- b -->", "<!-- x -->"), None);
    }

    #[test]
    fn a_drift_names_the_variable() {
        let message =
            compare("| `A` | 1 |\n| `B` | 2 |\n", "| `A` | 1 |\n| `B` | 3 |\n").expect_err("drift");
        assert!(
            message.starts_with("variables that differ: B\n"),
            "{message}"
        );
        assert!(
            message.contains("- | `B` | 2 |\n+ | `B` | 3 |"),
            "{message}"
        );
        assert!(compare("x\n", "x\n").is_ok());
    }

    #[test]
    fn name_like_literals_and_reads_are_found() {
        let line = r#"let a = std::env::var("HOSTNAME"); f("SOME_VAR", "Not_This", "GET", "\"ESC_APED\"");"#;
        assert_eq!(literals_in(line), vec!["HOSTNAME", "SOME_VAR"]);
        assert_eq!(literals_in(r#"#[arg(long, env = "PORT")]"#), vec!["PORT"]);
        assert!(
            literals_in(r#"(env!("CARGO_PKG_VERSION"), option_env!("GIT_COMMIT"))"#).is_empty()
        );
    }
}
