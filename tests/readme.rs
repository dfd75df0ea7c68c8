//! The README's policy sample is a policy: copied as it is, `gardien check` accepts it, and
//! its sign-up route needs no token (the sample once made sign-up need one).

use std::process::Command;

/// The first ```yaml block of the README that follows the "A small complete policy" line.
fn readme_policy() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let after = readme
        .split_once("A small complete policy")
        .expect("the README introduces its policy sample")
        .1;
    let block = after
        .split_once("```yaml\n")
        .expect("a yaml block after the introduction")
        .1;
    block
        .split_once("```")
        .expect("the yaml block ends")
        .0
        .to_owned()
}

#[test]
fn the_readme_policy_sample_passes_check() {
    let text = readme_policy();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("readme.yaml");
    std::fs::write(&path, &text).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_gardien"))
        .args(["check", "--policy"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .env_remove("API_UPSTREAM_URL")
        .env_remove("FRONTEND_URL")
        .env("SECRETS_DIR", dir.path().join("secrets"))
        .output()
        .expect("run gardien check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "gardien check refused the README's sample:\n{stdout}\n{stderr}\n---\n{text}"
    );
    assert!(stdout.contains("ok:"), "{stdout}");
}

#[test]
fn the_readme_sample_lets_sign_up_through_without_a_token() {
    let text = readme_policy();
    let loaded = gardien::policy::parse(&text, &std::collections::HashMap::<String, String>::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let routes = loaded.policy.router.routes();
    let auth = routes
        .iter()
        .find(|r| r.name == "auth")
        .expect("an auth route");
    assert_eq!(auth.auth, gardien::routing::RouteAuth::Public);
}
