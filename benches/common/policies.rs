//! The gardien policies both load harnesses measure: routing only (every edge filter off)
//! and the full policy (CORS, the six security headers, RS256 JWT with its cache, two
//! rate-limit rules counted but never hit, the signed identity). `GARDIEN_THREADS` (default
//! 1) is `server.threads`, `GARDIEN_WORK_STEALING` (default true) `server.work_stealing`.

#![allow(dead_code)] // each harness uses a different part

/// Routing only: one prefix route, no CORS, no JWT, no limits, no security headers.
pub const ROUTING_ONLY: &str = r#"
environment: dev
listen: "${GARDIEN_LISTEN}"
admin_listen: "${GARDIEN_ADMIN_LISTEN}"
upstreams: { api: { url: "${UPSTREAM}" } }
routes:
  - { name: api, prefix: /api/, upstream: api, auth: public }
security_headers:
  content_security_policy: "off"
  frame_options: "off"
  referrer_policy: "off"
  permissions_policy: "off"
  cross_origin_opener_policy: "off"
  content_type_options: "off"
  remove: []
server: { threads: "${GARDIEN_THREADS:-1}", work_stealing: "${GARDIEN_WORK_STEALING:-true}" }
"#;

/// The full policy, trusting tokens of `https://id.bench` (audience `bench`) signed by
/// the key at `jwks_url`.
pub fn full_policy(jwks_url: &str) -> String {
    format!(
        r#"
environment: dev
listen: "${{GARDIEN_LISTEN}}"
admin_listen: "${{GARDIEN_ADMIN_LISTEN}}"
upstreams: {{ api: {{ url: "${{UPSTREAM}}" }} }}
routes:
  - {{ name: api, prefix: /api/, upstream: api }}
cors:
  origins: ["https://app.example.com", "https://*.example.net"]
  credentials: true
  headers: [Authorization, Content-Type]
  expose: [X-Request-Id]
jwt:
  issuers:
    - {{ issuer: "https://id.bench", audiences: [bench], algorithms: [RS256], jwks_url: "{jwks_url}" }}
rate_limits:
  rules:
    - {{ name: ip, key: ip, rate: 1000000/s, burst: 1000000 }}
    - {{ name: user, key: user, rate: 1000000/s, burst: 1000000 }}
server: {{ threads: "${{GARDIEN_THREADS:-1}}", work_stealing: "${{GARDIEN_WORK_STEALING:-true}}" }}
"#
    )
}
