//! Hot reload: a changed policy file or `SIGHUP` swaps the policy in; an invalid file is
//! refused and the running policy keeps serving.

mod support;

use gardien::admin::metrics::policy_hash;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{client, header, GatewayProcess, RecordingUpstream, TEST_POLICY};

const NEW_ORIGIN: &str = "https://new.example.org";

async fn allowed(gateway: &GatewayProcess, origin: &str) -> bool {
    let response = client()
        .get(gateway.url("/api/x"))
        .header("Origin", origin)
        .send()
        .await
        .expect("request");
    header(response.headers(), "access-control-allow-origin").as_deref() == Some(origin)
}

/// Polls `check` for up to five seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 5s: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn with_new_origin(policy: &str) -> String {
    policy.replace(
        "    - \"http://localhost:5173\"\n",
        &format!("    - \"http://localhost:5173\"\n    - \"{NEW_ORIGIN}\"\n"),
    )
}

#[tokio::test]
async fn a_changed_file_is_applied_and_an_invalid_one_refused() {
    let api = RecordingUpstream::start().await;
    let gateway = GatewayProcess::with_upstream(TEST_POLICY, &api).await;
    assert!(!allowed(&gateway, NEW_ORIGIN).await);

    let started = std::fs::read_to_string(gateway.policy_path()).expect("policy");
    let hash_series =
        |text: &str| format!(r#"gardien_policy_info{{hash="{}"}}"#, policy_hash(text));
    assert_eq!(gateway.metric(&hash_series(&started)).await, 1.0);
    let first_load = gateway
        .metric("gardien_policy_loaded_timestamp_seconds")
        .await;
    assert!(first_load > 1.0e9, "{first_load}");

    std::fs::write(gateway.policy_path(), with_new_origin(TEST_POLICY)).expect("rewrite");
    eventually("the new origin is allowed", || {
        allowed(&gateway, NEW_ORIGIN)
    })
    .await;
    let applied = std::fs::read_to_string(gateway.policy_path()).expect("policy");
    eventually("the new policy's hash is published", || async {
        gateway.metric(&hash_series(&applied)).await == 1.0
    })
    .await;
    let metrics = gateway.metrics().await;
    assert!(
        !metrics.contains(&hash_series(&started)),
        "one policy_info series: {metrics}"
    );
    assert!(
        gateway
            .metric("gardien_policy_loaded_timestamp_seconds")
            .await
            >= first_load
    );
    assert_eq!(
        gateway
            .metric(r#"gardien_policy_reloads_total{result="applied"}"#)
            .await,
        1.0
    );
    // `/status` says the same: the new hash, applied.
    let (_, status) = gateway.admin_json("/status.json").await;
    assert_eq!(
        status["policy"]["hash"],
        policy_hash(&applied).as_str(),
        "{status}"
    );
    assert_eq!(
        status["policy"]["last_reload"]["result"], "applied",
        "{status}"
    );

    let broken = with_new_origin(TEST_POLICY).replace("routes:", "routs:");
    std::fs::write(gateway.policy_path(), broken).expect("break");
    eventually("the refusal is counted", || async {
        gateway
            .metric(r#"gardien_policy_reloads_total{result="refused"}"#)
            .await
            >= 1.0
    })
    .await;
    assert_eq!(
        gateway.metric(&hash_series(&applied)).await,
        1.0,
        "a refused file does not change the hash"
    );
    // `/status` shows the refusal and its problem, and the hash still serving.
    let (_, status) = gateway.admin_json("/status.json").await;
    let policy = &status["policy"];
    assert_eq!(policy["hash"], policy_hash(&applied).as_str(), "{status}");
    assert_eq!(policy["last_reload"]["result"], "refused", "{status}");
    assert!(
        policy["last_reload"]["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("did you mean `routes`")),
        "{status}"
    );
    let log = gateway.log();
    assert!(log.contains("policy reload refused"), "{log}");
    assert!(
        log.contains("did you mean `routes`"),
        "the problem is logged: {log}"
    );
    assert!(
        allowed(&gateway, NEW_ORIGIN).await,
        "the last good policy still serves"
    );
    assert!(allowed(&gateway, "http://localhost:5173").await);
}

#[tokio::test]
async fn sighup_reloads_when_file_watching_is_off() {
    let api = RecordingUpstream::start().await;
    let policy = TEST_POLICY.replace(
        "server: { threads: 1, graceful_shutdown_timeout: 1s }",
        "server: { threads: 1, graceful_shutdown_timeout: 1s, watch_policy: false }",
    );
    assert_ne!(policy, TEST_POLICY);
    let gateway = GatewayProcess::with_upstream(&policy, &api).await;
    std::fs::write(gateway.policy_path(), with_new_origin(&policy)).expect("rewrite");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !allowed(&gateway, NEW_ORIGIN).await,
        "not watched: nothing changes without a signal"
    );

    let status = Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    eventually("SIGHUP applied the new origin", || {
        allowed(&gateway, NEW_ORIGIN)
    })
    .await;
    assert!(
        gateway.log().contains("trigger=Signal"),
        "{}",
        gateway.log()
    );
}
