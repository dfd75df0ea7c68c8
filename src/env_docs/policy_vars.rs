//! What each variable the shipped policies read means. The defaults come from the policies
//! themselves ([`super::shipped`]); a test fails when a shipped policy reads a variable
//! missing here, or when an entry here is read by no shipped policy.

use gardien_secrets::catalog::Kind;

/// A variable a policy reads: `${NAME}` in a value, or named by a field
/// (`cors.origins_from_env`, `jwt.identity_secret`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyVar {
    pub name: &'static str,
    pub kind: Kind,
    pub meaning: &'static str,
}

const fn plain(name: &'static str, meaning: &'static str) -> PolicyVar {
    PolicyVar {
        name,
        kind: Kind::Plain,
        meaning,
    }
}

/// The identity secret a policy without `jwt.identity_secret` reads.
pub const GARDIEN_INTERNAL_SECRET: PolicyVar = PolicyVar {
    name: "GARDIEN_INTERNAL_SECRET",
    kind: Kind::Secret,
    meaning: "keys the identity signature ([IDENTITY.md](IDENTITY.md)), the same value as gardien-backend's; at least 32 bytes in production; the development default: [SECRETS.md](SECRETS.md#development-defaults)",
};

/// Every variable the shipped policies read, in the order docs/ENVIRONMENT.md lists them.
pub const POLICY_VARS: &[PolicyVar] = &[
    plain("GARDIEN_LISTEN", "proxy address"),
    plain(
        "GARDIEN_ADMIN_LISTEN",
        "admin address (`/healthz`, `/readyz`, `/metrics`, `/status`)",
    ),
    plain(
        "GARDIEN_CLIENT_IP",
        "how the client address is found: `cloud_run`, `google_load_balancer` or `direct`; for every per-IP rate limit, the access log and the `X-Forwarded-For` sent upstream ([POLICY.md](POLICY.md#client_ip))",
    ),
    plain("API_UPSTREAM_URL", "the existing Node/TypeScript API"),
    plain("BACKEND_UPSTREAM_URL", "gardien-backend"),
    plain("FRONTEND_URL", "frontend origin(s), comma-separated"),
    plain(
        "FRONTEND_URL_PROD",
        "production frontend origin(s), comma-separated",
    ),
    plain(
        "JWT_ISSUER",
        "the trusted token issuer (`iss`); dev's default is the demo API",
    ),
    plain("JWT_AUDIENCE", "the audience tokens must name (`aud`)"),
    plain("JWKS_URL", "the issuer's key set; `https://` in production"),
    plain(
        "REDIS_URL",
        "the Redis that replicas share rate limits through: `redis://host:6379`, or `rediss://host:6378` for TLS ([POLICY.md](POLICY.md#rate_limits): AUTH, CA file); dev limits locally",
    ),
    plain(
        "GARDIEN_REPLICAS",
        "replicas sharing the limits (each allows `rate / replicas` while Redis is unreachable)",
    ),
    GARDIEN_INTERNAL_SECRET,
];

/// The entry of `name`, if any.
pub fn policy_var(name: &str) -> Option<&'static PolicyVar> {
    POLICY_VARS.iter().find(|v| v.name == name)
}
