//! The container image (Dockerfile, docs/IMAGE.md): `scripts/image.sh --check --no-build`
//! builds it with Podman from the release binaries `make test` built, on the local base the
//! script makes once with debootstrap, then runs the smoke check (scripts/image/check.sh):
//! the gateway from the image on the production policy in front of real loopback upstreams,
//! Redis and the backend from the same image on PostgreSQL.
//!
//! Needs root, `podman`, `runc`, `debootstrap` (scripts/install-deps.sh test installs them),
//! Redis and PostgreSQL on loopback, and
//! `target/release/{gardien,gardien-backend,gardien-staging-check}`.

mod support;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{release_binary, BACKEND_SOURCES, GATEWAY_SOURCES, STAGING_CHECK_SOURCES};

/// A cold run (debootstrap, the base, the build, the check) took 163 s on a loaded 2-core
/// machine, a warm one 18 s; the bound leaves room for a slow mirror.
const LIMIT: Duration = Duration::from_secs(600);

/// The lines the check prints when everything it checks held: an exit status of 0 alone
/// could come from a script that stopped early.
const EXPECTED: &[&str] = &[
    "ok: entrypoint pins the production policy",
    "ok: user 65532:65532",
    "ok: podman run --entrypoint /bin/sh fails: no such file",
    "ok: gardien-backend migrate up, then migrate status: nothing pending",
    "ok: gardien-backend serves on",
    "ok: gardien serves production.yaml",
    "ok: /healthz 200",
    "ok: /readyz 200 ready",
    "ok: rate limits decided in Redis",
    "ok: /status.json: environment production, policy /etc/gardien/policies/production.yaml",
    "ok: GET /api/health through the proxy: 200",
    "ok: GET /api/me without a token: 401 token_missing",
    "ok: gardien-staging-check from the image: refused_origin ok against the gateway",
    "ok: both processes run as uid 65532",
    "check: passed",
];

/// Fails (never skips) when what the test needs is missing: a skipped image test looks green.
fn require_tools() {
    for tool in ["podman", "runc", "debootstrap", "psql"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is missing: run `make test`, which installs it (scripts/install-deps.sh test)"
        );
    }
}

#[test]
fn the_image_builds_and_serves_the_production_policy_as_nonroot() {
    require_tools();
    let gardien = release_binary("gardien", GATEWAY_SOURCES);
    release_binary("gardien-backend", BACKEND_SOURCES);
    release_binary("gardien-staging-check", STAGING_CHECK_SOURCES);
    let target = gardien
        .parent()
        .and_then(Path::parent)
        .expect("the target directory");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tag = format!("localhost/gardien:test-{}", std::process::id());
    let log = tempfile::NamedTempFile::new().expect("a log file");

    let mut script = Command::new("bash")
        .arg(workspace.join("scripts/image.sh"))
        .args(["--check", "--no-build", "--tag", &tag])
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target)
        .stdin(Stdio::null())
        .stdout(log.reopen().expect("the log"))
        .stderr(log.reopen().expect("the log"))
        .process_group(0)
        .spawn()
        .expect("bash scripts/image.sh");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = script.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // The whole group: the script's trap removes its containers and upstreams.
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", script.id())])
                .status();
            let _ = script.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("podman")
        .args(["rmi", "--force", &tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let mut output = String::new();
    log.reopen()
        .expect("the log")
        .read_to_string(&mut output)
        .expect("read the log");

    let status = status
        .unwrap_or_else(|| panic!("scripts/image.sh did not finish within {LIMIT:?}:\n{output}"));
    assert!(
        status.success(),
        "scripts/image.sh --check failed ({status}):\n{output}"
    );
    for line in EXPECTED {
        assert!(
            output.lines().any(|l| l.starts_with(line)),
            "the check did not print `{line}…`:\n{output}"
        );
    }
}

/// Every policy of `policies/` is in the image, and the entrypoint serves production's: a
/// new policy file needs its line in the Dockerfile (checked here without Podman).
#[test]
fn the_dockerfile_ships_every_policy_and_pins_production() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(workspace.join("Dockerfile")).expect("Dockerfile");
    let copy = dockerfile
        .lines()
        .find(|l| l.starts_with("COPY policies/"))
        .expect("a `COPY policies/…` line in the Dockerfile");
    for entry in std::fs::read_dir(workspace.join("policies")).expect("policies/") {
        let name = entry.expect("a policy").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".yaml") {
            assert!(
                copy.split_whitespace()
                    .any(|w| w == format!("policies/{name}")),
                "policies/{name} is not copied into the image: {copy}"
            );
        }
    }
    assert!(
        copy.ends_with(" /etc/gardien/policies/"),
        "the policies go to /etc/gardien/policies/: {copy}"
    );
    let entrypoint = r#"ENTRYPOINT ["/usr/local/bin/gardien", "run", "--policy", "/etc/gardien/policies/production.yaml"]"#;
    assert!(
        dockerfile.lines().any(|l| l == entrypoint),
        "the Dockerfile's entrypoint is not `{entrypoint}`"
    );
    assert!(
        dockerfile.lines().any(|l| l == "USER 65532:65532"),
        "the Dockerfile does not run as 65532:65532"
    );
}
