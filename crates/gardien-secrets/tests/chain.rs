//! The chain against the fake Secret Manager, metadata server and token endpoint (real HTTP
//! on loopback), files in a temp directory and a map of variables.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gardien_fakes::secret_manager::{
    FakeMetadataServer, FakeSecretManager, FakeTokenEndpoint, OTHER_PRIVATE_KEY,
    TEST_SERVICE_ACCOUNT_KEY,
};
use gardien_secrets::{
    AttemptOutcome, Chain, ChainConfig, Environment, Origin, Requirement, SecretStore, Vars,
};

const PROJECT: &str = "test-project";
const TOKEN: &str = "ya29.metadata-token-for-tests";
const SM_VALUE: &str = "value-from-secret-manager-0123456789";
const FILE_VALUE: &str = "value-from-a-mounted-file-0123456789";
const ENV_VALUE: &str = "value-from-the-environment-0123456789";

struct Google {
    sm: FakeSecretManager,
    metadata: FakeMetadataServer,
}

impl Google {
    async fn start() -> Google {
        let sm = FakeSecretManager::start().await;
        let metadata = FakeMetadataServer::start(TOKEN).await;
        sm.accept_token(TOKEN);
        Google { sm, metadata }
    }

    fn vars(&self, dir: &std::path::Path) -> HashMap<String, String> {
        HashMap::from([
            ("SECRET_MANAGER_PROJECT".to_owned(), PROJECT.to_owned()),
            ("SECRET_MANAGER_BASE_URL".to_owned(), self.sm.url()),
            ("GCE_METADATA_HOST".to_owned(), self.metadata.host()),
            ("SECRETS_DIR".to_owned(), dir.display().to_string()),
        ])
    }
}

fn chain(vars: HashMap<String, String>, environment: Environment) -> Chain {
    let config = ChainConfig::from_vars(&vars, environment).expect("valid configuration");
    let vars: Arc<dyn Vars> = Arc::new(vars);
    Chain::from_config(&config, vars).expect("chain")
}

#[tokio::test]
async fn secret_manager_with_a_metadata_token() {
    let google = Google::start().await;
    google.sm.add_version(PROJECT, "JWT_SECRET", "old-value");
    google.sm.add_version(PROJECT, "JWT_SECRET", SM_VALUE);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("JWT_SECRET"), FILE_VALUE).expect("write");
    let mut vars = google.vars(dir.path());
    vars.insert("JWT_SECRET".into(), ENV_VALUE.into());
    let chain = chain(vars, Environment::Production);

    let resolution = chain.resolve("JWT_SECRET").await;
    let (value, origin, index) = resolution.found.clone().expect("found");
    assert_eq!(
        value.expose(),
        SM_VALUE.as_bytes(),
        "the latest version, first source"
    );
    assert_eq!(index, 0);
    assert_eq!(
        origin.to_string(),
        format!("Google Secret Manager (projects/{PROJECT}/secrets/JWT_SECRET/versions/2)")
    );
    // Exactly the contract's request: path, bearer token from the metadata server.
    let requests = google.sm.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].path,
        format!("/v1/projects/{PROJECT}/secrets/JWT_SECRET/versions/latest:access")
    );
    assert_eq!(
        requests[0].headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let metadata = google.metadata.requests();
    assert_eq!(metadata.len(), 1);
    assert_eq!(
        metadata[0]
            .headers
            .get("metadata-flavor")
            .map(String::as_str),
        Some("Google")
    );

    // The token is cached: a second lookup asks the metadata server nothing.
    chain.resolve("JWT_SECRET").await;
    assert_eq!(google.metadata.requests().len(), 1);
    assert_eq!(google.sm.requests().len(), 2);
}

#[tokio::test]
async fn the_metadata_fake_refuses_requests_without_the_flavor_header() {
    let metadata = FakeMetadataServer::start(TOKEN).await;
    let url = format!(
        "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
        metadata.host()
    );
    let client = reqwest::Client::new();
    let refused = client.get(&url).send().await.expect("answer");
    assert_eq!(refused.status(), 403);
    let answered = client
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .expect("answer");
    assert_eq!(answered.status(), 200);
    assert_eq!(
        answered
            .headers()
            .get("metadata-flavor")
            .map(|v| v.as_bytes()),
        Some(&b"Google"[..])
    );
    let body: serde_json::Value = answered.json().await.expect("json");
    assert_eq!(body["access_token"], TOKEN);
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["token_type"], "Bearer");
}

#[tokio::test]
async fn secret_manager_with_a_service_account_key_file() {
    let google = Google::start().await;
    let endpoint = FakeTokenEndpoint::start("ya29.key-file-token").await;
    google.sm.accept_token("ya29.key-file-token");
    google.sm.add_version(PROJECT, "SENDGRID_API_KEY", SM_VALUE);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("sa.json");
    std::fs::write(&key, endpoint.key_file(TEST_SERVICE_ACCOUNT_KEY)).expect("key file");
    let mut vars = google.vars(dir.path());
    vars.insert(
        "GOOGLE_APPLICATION_CREDENTIALS".into(),
        key.display().to_string(),
    );
    let chain = chain(vars, Environment::Production);

    let resolution = chain.resolve("SENDGRID_API_KEY").await;
    let (value, origin, _) = resolution.found.expect("found");
    assert_eq!(value.expose(), SM_VALUE.as_bytes());
    assert!(matches!(origin, Origin::SecretManager { .. }));
    // The key file is preferred: the metadata server was never asked.
    assert!(google.metadata.requests().is_empty());
    let grants = endpoint.requests();
    assert_eq!(grants.len(), 1);
    let form: HashMap<String, String> = url_form(&grants[0].body);
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert_eq!(
        google.sm.requests()[0]
            .headers
            .get("authorization")
            .map(String::as_str),
        Some("Bearer ya29.key-file-token")
    );
}

fn url_form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%3A", ":")))
        .collect()
}

#[tokio::test]
async fn a_forged_key_gets_no_token_and_the_chain_falls_through() {
    let google = Google::start().await;
    let endpoint = FakeTokenEndpoint::start("ya29.key-file-token").await;
    google.sm.accept_token("ya29.key-file-token");
    google.sm.add_version(PROJECT, "JWT_SECRET", SM_VALUE);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("sa.json");
    std::fs::write(&key, endpoint.key_file(OTHER_PRIVATE_KEY)).expect("key file");
    let mut vars = google.vars(dir.path());
    vars.insert(
        "GOOGLE_APPLICATION_CREDENTIALS".into(),
        key.display().to_string(),
    );
    vars.insert("JWT_SECRET".into(), ENV_VALUE.into());
    let chain = chain(vars, Environment::Production);

    let resolution = chain.resolve("JWT_SECRET").await;
    let (value, origin, _) = resolution.found.clone().expect("found");
    assert_eq!(value.expose(), ENV_VALUE.as_bytes());
    assert_eq!(origin, Origin::Environment("JWT_SECRET".into()));
    let AttemptOutcome::Failed(reason) = &resolution.attempts[0].outcome else {
        panic!("{:?}", resolution.attempts)
    };
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert!(reason.contains("Invalid JWT Signature"), "{reason}");
    assert!(google.sm.requests().is_empty(), "no token, no access");
}

#[tokio::test]
async fn secret_manager_down_falls_to_the_file_then_to_the_environment() {
    let google = Google::start().await;
    google.sm.add_version(PROJECT, "JWT_SECRET", SM_VALUE);
    google.sm.set_down(true);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("JWT_SECRET"), format!("{FILE_VALUE}\n")).expect("write");
    let mut vars = google.vars(dir.path());
    vars.insert("JWT_SECRET".into(), ENV_VALUE.into());
    let chain = chain(vars, Environment::Production);

    let resolution = chain.resolve("JWT_SECRET").await;
    let (value, origin, _) = resolution.found.clone().expect("found");
    assert_eq!(
        value.expose(),
        FILE_VALUE.as_bytes(),
        "one trailing newline trimmed"
    );
    assert_eq!(origin, Origin::File(dir.path().join("JWT_SECRET")));
    let AttemptOutcome::Failed(reason) = &resolution.attempts[0].outcome else {
        panic!("{:?}", resolution.attempts)
    };
    assert!(reason.contains("503 UNAVAILABLE"), "{reason}");

    std::fs::remove_file(dir.path().join("JWT_SECRET")).expect("rm");
    let resolution = chain.resolve("JWT_SECRET").await;
    let (value, origin, _) = resolution.found.clone().expect("found");
    assert_eq!(value.expose(), ENV_VALUE.as_bytes());
    assert_eq!(origin, Origin::Environment("JWT_SECRET".into()));
    let outcomes: Vec<_> = resolution.attempts.iter().map(|a| &a.outcome).collect();
    assert!(
        matches!(outcomes[0], AttemptOutcome::Failed(_)),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], &AttemptOutcome::Absent);
    assert_eq!(outcomes[2], &AttemptOutcome::Found);
}

#[tokio::test]
async fn an_unreachable_secret_manager_does_not_hang() {
    // A port nothing listens on, for both Secret Manager and the metadata server.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let vars = HashMap::from([
        ("SECRET_MANAGER_PROJECT".to_owned(), PROJECT.to_owned()),
        (
            "SECRET_MANAGER_BASE_URL".to_owned(),
            format!("http://{closed}"),
        ),
        ("GCE_METADATA_HOST".to_owned(), closed.clone()),
        ("SECRETS_DIR".to_owned(), dir.path().display().to_string()),
        ("DATABASE_URL".to_owned(), "sqlite://x.db".to_owned()),
    ]);
    let chain = chain(vars, Environment::Production);
    let started = Instant::now();
    let resolution = chain.resolve("DATABASE_URL").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(resolution.found.is_some());
    let AttemptOutcome::Failed(reason) = &resolution.attempts[0].outcome else {
        panic!("{:?}", resolution.attempts)
    };
    assert!(reason.contains("metadata server"), "{reason}");
}

#[tokio::test]
async fn a_bad_crc_is_refused_and_reported() {
    let google = Google::start().await;
    google
        .sm
        .add_version(PROJECT, "TWILIO_AUTH_TOKEN", SM_VALUE);
    google.sm.set_corrupt_crc(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut vars = google.vars(dir.path());
    vars.insert("TWILIO_AUTH_TOKEN".into(), ENV_VALUE.into());
    let store = SecretStore::new(
        chain(vars, Environment::Production),
        Duration::from_secs(60),
    );
    let report = store
        .require([Requirement::required("TWILIO_AUTH_TOKEN", "Twilio")])
        .await;
    let value = gardien_secrets::SecretLookup::get(&store, "TWILIO_AUTH_TOKEN").expect("value");
    assert_eq!(
        value.expose(),
        ENV_VALUE.as_bytes(),
        "the corrupt payload is not used"
    );
    let lines = report.lines().join("\n");
    assert!(
        lines.contains("secret TWILIO_AUTH_TOKEN: environment variable TWILIO_AUTH_TOKEN (after Google Secret Manager projects/test-project/secrets/TWILIO_AUTH_TOKEN/versions/latest: failed: projects/test-project/secrets/TWILIO_AUTH_TOKEN/versions/1: payload CRC32C mismatch, value refused)"),
        "{lines}"
    );
    assert!(!lines.contains(SM_VALUE) && !lines.contains(ENV_VALUE));

    // The same payload with its right checksum is accepted.
    google.sm.set_corrupt_crc(false);
    let resolution = store.chain().resolve("TWILIO_AUTH_TOKEN").await;
    assert_eq!(
        resolution.found.expect("found").0.expose(),
        SM_VALUE.as_bytes()
    );
}

#[tokio::test]
async fn disabled_missing_and_denied_secrets_are_reported() {
    let google = Google::start().await;
    let v1 = google.sm.add_version(PROJECT, "SMTP_PASSWORD", SM_VALUE);
    google
        .sm
        .set_version_enabled(PROJECT, "SMTP_PASSWORD", v1, false);
    google.sm.add_version(PROJECT, "SENTRY_DSN", SM_VALUE);
    google.sm.deny(PROJECT, "SENTRY_DSN");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SecretStore::new(
        chain(google.vars(dir.path()), Environment::Production),
        Duration::from_secs(60),
    );
    let report = store
        .require([
            Requirement::required("SMTP_PASSWORD", "SMTP delivery"),
            Requirement::required("DATABASE_URL", "the database"),
            Requirement::optional("SENTRY_DSN", "error reporting"),
        ])
        .await;
    assert_eq!(report.missing(), vec!["SMTP_PASSWORD", "DATABASE_URL"]);
    let errors = report.error_lines();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].starts_with("error: secret SMTP_PASSWORD: missing (required: SMTP delivery); tried Google Secret Manager projects/test-project/secrets/SMTP_PASSWORD/versions/latest: failed: 400 FAILED_PRECONDITION: Secret Version [projects/test-project/secrets/SMTP_PASSWORD/versions/1] is in DISABLED state."),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("secrets/DATABASE_URL/versions/latest: absent; file "),
        "a 404 is an absence: {errors:?}"
    );
    assert!(errors[1].contains("environment variable DATABASE_URL: absent"));
    assert_eq!(
        errors[2],
        "error: 2 required secret(s) missing: SMTP_PASSWORD, DATABASE_URL"
    );
    let lines = report.lines().join("\n");
    assert!(
        lines.contains("secret SENTRY_DSN: not set (optional: error reporting) (after Google Secret Manager projects/test-project/secrets/SENTRY_DSN/versions/latest: failed: 403 PERMISSION_DENIED: Permission 'secretmanager.versions.access' denied"),
        "{lines}"
    );
    assert!(!report.to_string().contains(SM_VALUE));
}

#[tokio::test]
async fn development_defaults_only_in_dev() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vars = HashMap::from([("SECRETS_DIR".to_owned(), dir.path().display().to_string())]);
    let dev = chain(vars.clone(), Environment::Dev);
    let resolution = dev.resolve("GARDIEN_INTERNAL_SECRET").await;
    assert_eq!(
        resolution.found.expect("dev default").1,
        Origin::DevelopmentDefault
    );
    assert!(dev.resolve("SENDGRID_API_KEY").await.found.is_none());
    for environment in [Environment::Staging, Environment::Production] {
        let chain = chain(vars.clone(), environment);
        assert!(chain
            .resolve("GARDIEN_INTERNAL_SECRET")
            .await
            .found
            .is_none());
        assert!(!chain.describe().iter().any(|s| s.contains("development")));
    }
}
