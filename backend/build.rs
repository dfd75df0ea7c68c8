//! Passes the git commit being built to the code as `GARDIEN_GIT_COMMIT` (for
//! `gardien_build_info`): the `GARDIEN_GIT_COMMIT` variable when set (an image build has no
//! `.git`: the Dockerfile's build argument of that name), else git's, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=GARDIEN_GIT_COMMIT");
    let commit = std::env::var("GARDIEN_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GARDIEN_GIT_COMMIT={commit}");
    // Build again when HEAD moves: HEAD itself, the branch it names, and packed refs
    // (only files that exist: a missing one would rerun this on every build).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for path in watched {
        if let Some(file) = git(&["rev-parse", "--git-path", &path]) {
            if std::path::Path::new(&file).exists() {
                println!("cargo:rerun-if-changed={file}");
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    // `sqlx::migrate!` embeds the files: a new or edited migration must rebuild.
    println!("cargo:rerun-if-changed=migrations");
}
