//! The client address behind each platform, through the real gateway: the exact
//! `X-Forwarded-For` shapes Google's front ends send (with a forged prefix written by the
//! client), the key each request is limited under, and the same address in the upstream's
//! `X-Forwarded-For` / `X-Forwarded-Proto` and in the access log.
//!
//! The tests' peer is loopback. Behind the load balancer the peer is a Google front end
//! (35.191.0.0/16, 130.211.0.0/22): the `google_load_balancer` preset is that rule with
//! those ranges, so here the same rule is written out with loopback as the trusted peer,
//! and the preset itself is shown to ignore a peer outside its ranges.

mod support;

use support::{client, header, GatewayProcess, RecordingUpstream};

/// A dev policy with a per-IP rule of burst 1 (a second request of one key is refused),
/// and the given `client_ip:`.
fn policy(client_ip: &str) -> String {
    format!(
        r#"
environment: dev
listen: "${{GARDIEN_LISTEN}}"
admin_listen: "${{GARDIEN_ADMIN_LISTEN}}"
client_ip: {client_ip}
upstreams:
  api: {{ url: "${{API_UPSTREAM_URL}}", connect_timeout: 1s, read_timeout: 5s }}
routes:
  - {{ name: auth, prefix: /api/auth/, upstream: api, auth: public }}
rate_limits:
  rules:
    - {{ name: login, key: ip, rate: 1/min, burst: 1 }}
server: {{ threads: 1, graceful_shutdown_timeout: 1s }}
"#
    )
}

/// The gateway with the access log on.
async fn gateway(client_ip: &str, api: &RecordingUpstream) -> GatewayProcess {
    let url = api.url();
    GatewayProcess::start(
        &policy(client_ip),
        &[
            ("API_UPSTREAM_URL", &url),
            ("GARDIEN_LOG", "info,gardien::access=debug"),
        ],
    )
    .await
}

/// The load balancer's rule, with loopback standing for Google's front ends.
const LOAD_BALANCER: &str =
    r#"{ from: x_forwarded_for, trusted_hops: 2, trusted_peers: ["127.0.0.1/32"] }"#;

/// One login attempt with these forwarding headers: the status, and the request id.
async fn attempt(gateway: &GatewayProcess, forwarded_for: &str, proto: &str) -> (u16, String) {
    let response = client()
        .post(gateway.url("/api/auth/login"))
        .header("X-Forwarded-For", forwarded_for)
        .header("X-Forwarded-Proto", proto)
        .send()
        .await
        .expect("request");
    let id = header(response.headers(), "x-request-id").expect("request id");
    (response.status().as_u16(), id)
}

/// The `remote_ip` of the access-log line of request `id`.
async fn logged_remote_ip(gateway: &GatewayProcess, id: &str) -> String {
    // The access line is written when the request ends; poll the log, bounded.
    for _ in 0..100 {
        let log = gateway.log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("gardien::access") && l.contains(id))
        {
            let value = line
                .split("remote_ip=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_default();
            return value.to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no access line for {id}:\n{}", gateway.log());
}

#[tokio::test]
async fn behind_the_load_balancer_two_clients_have_two_buckets() {
    let api = RecordingUpstream::start().await;
    let gateway = gateway(LOAD_BALANCER, &api).await;
    // `<client-supplied>, <client>, <load balancer>`, as Google's load balancer sends it.
    let alice = "6.6.6.6, 198.51.100.7, 34.117.1.1";
    let bob = "6.6.6.6, 203.0.113.20, 34.117.1.1";

    let (status, id) = attempt(&gateway, alice, "https").await;
    assert_eq!(status, 200);
    let seen = api.last();
    assert_eq!(
        seen.headers.get("x-forwarded-for").map(String::as_str),
        Some("198.51.100.7"),
        "the upstream gets the client alone, never the forged prefix"
    );
    assert_eq!(
        seen.headers.get("x-forwarded-proto").map(String::as_str),
        Some("https")
    );
    assert_eq!(logged_remote_ip(&gateway, &id).await, "198.51.100.7");

    // Bob is another client behind the same load balancer: his own bucket.
    let (status, id) = attempt(&gateway, bob, "https").await;
    assert_eq!(
        status, 200,
        "two clients behind the load balancer share no bucket"
    );
    assert_eq!(logged_remote_ip(&gateway, &id).await, "203.0.113.20");

    // Alice again, with another forged prefix: still Alice, now refused.
    let (status, id) = attempt(&gateway, "1.2.3.4, 198.51.100.7, 34.117.1.1", "https").await;
    assert_eq!(status, 429, "a forged prefix does not buy a new bucket");
    assert_eq!(logged_remote_ip(&gateway, &id).await, "198.51.100.7");

    // The load balancer's own address is never a key: a third client is served.
    let (status, _) = attempt(&gateway, "192.0.2.44, 34.117.1.1", "https").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn on_cloud_run_the_right_most_entry_is_the_client() {
    let api = RecordingUpstream::start().await;
    let gateway = gateway("cloud_run", &api).await;
    // Cloud Run's front end appends the client to whatever the client sent.
    let (status, id) = attempt(&gateway, "6.6.6.6, 198.51.100.7", "https").await;
    assert_eq!(status, 200);
    assert_eq!(logged_remote_ip(&gateway, &id).await, "198.51.100.7");
    let seen = api.last();
    assert_eq!(
        seen.headers.get("x-forwarded-for").map(String::as_str),
        Some("198.51.100.7")
    );
    assert_eq!(
        seen.headers.get("x-forwarded-proto").map(String::as_str),
        Some("https")
    );
    let (status, _) = attempt(&gateway, "7.7.7.7, 198.51.100.7", "https").await;
    assert_eq!(status, 429, "the same client with another forged prefix");
    let (status, _) = attempt(&gateway, "198.51.100.8", "https").await;
    assert_eq!(status, 200, "another client");
}

#[tokio::test]
async fn direct_and_untrusted_peers_are_keyed_on_the_socket() {
    let api = RecordingUpstream::start().await;
    for client_ip in ["direct", "google_load_balancer"] {
        // Loopback is not a Google front end: what it claims is not believed.
        let gateway = gateway(client_ip, &api).await;
        let (status, id) = attempt(&gateway, "6.6.6.6, 198.51.100.7, 34.117.1.1", "https").await;
        assert_eq!(status, 200, "{client_ip}");
        assert_eq!(logged_remote_ip(&gateway, &id).await, "127.0.0.1");
        let seen = api.last();
        assert_eq!(
            seen.headers.get("x-forwarded-for").map(String::as_str),
            Some("127.0.0.1"),
            "{client_ip}"
        );
        assert_eq!(
            seen.headers.get("x-forwarded-proto").map(String::as_str),
            Some("http"),
            "{client_ip}: an untrusted peer's proto is not believed"
        );
        let (status, _) = attempt(&gateway, "9.9.9.9, 203.0.113.20, 34.117.1.1", "https").await;
        assert_eq!(
            status, 429,
            "{client_ip}: another claimed client is the same socket"
        );
    }
}

#[tokio::test]
async fn a_chain_shorter_than_the_platform_adds_is_keyed_on_the_peer() {
    let api = RecordingUpstream::start().await;
    let gateway = gateway(LOAD_BALANCER, &api).await;
    // One entry where the load balancer always sends two: not through the load balancer.
    let (status, id) = attempt(&gateway, "198.51.100.7", "https").await;
    assert_eq!(status, 200);
    assert_eq!(logged_remote_ip(&gateway, &id).await, "127.0.0.1");
    assert_eq!(
        api.last()
            .headers
            .get("x-forwarded-proto")
            .map(String::as_str),
        Some("http")
    );
}
