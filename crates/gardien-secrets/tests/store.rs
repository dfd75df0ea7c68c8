//! The store: rotation picked up by a refresh (and by the background loop), the last good
//! value kept when its source fails, changes published, and no value in any log line.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gardien_fakes::secret_manager::{FakeMetadataServer, FakeSecretManager};
use gardien_secrets::{
    Chain, ChainConfig, Environment, Requirement, SecretLookup, SecretStore, Vars,
};

const PROJECT: &str = "rotation-project";
const TOKEN: &str = "ya29.store-tests-token";
const FIRST: &str = "first-value-of-the-secret-0123456789";
const SECOND: &str = "second-value-of-the-secret-987654321";
const FILE_VALUE: &str = "stale-copy-in-a-file-000000000000";

/// Log lines captured from `tracing`.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (captured, guard)
}

struct Setup {
    sm: FakeSecretManager,
    _metadata: FakeMetadataServer,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let sm = FakeSecretManager::start().await;
    let metadata = FakeMetadataServer::start(TOKEN).await;
    sm.accept_token(TOKEN);
    Setup {
        sm,
        _metadata: metadata,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl Setup {
    fn store(&self, interval: Duration) -> Arc<SecretStore> {
        let vars = HashMap::from([
            ("SECRET_MANAGER_PROJECT".to_owned(), PROJECT.to_owned()),
            ("SECRET_MANAGER_BASE_URL".to_owned(), self.sm.url()),
            ("GCE_METADATA_HOST".to_owned(), self._metadata.host()),
            (
                "SECRETS_DIR".to_owned(),
                self.dir.path().display().to_string(),
            ),
        ]);
        let config = ChainConfig::from_vars(&vars, Environment::Production).expect("config");
        let vars: Arc<dyn Vars> = Arc::new(vars);
        Arc::new(SecretStore::new(
            Chain::from_config(&config, vars).expect("chain"),
            interval,
        ))
    }
}

fn value(store: &SecretStore, name: &str) -> Option<String> {
    store
        .get(name)
        .map(|s| String::from_utf8_lossy(s.expose()).into_owned())
}

#[tokio::test]
async fn a_rotation_is_picked_up_and_published() {
    let (logs, _guard) = capture_logs();
    let s = setup().await;
    s.sm.add_version(PROJECT, "JWT_SECRET", FIRST);
    let store = s.store(Duration::from_secs(60));
    let mut changes = store.subscribe();
    let report = store
        .require([Requirement::required("JWT_SECRET", "HS256 issuer")])
        .await;
    assert!(report.is_complete());
    assert_eq!(value(&store, "JWT_SECRET").as_deref(), Some(FIRST));
    assert!(changes.has_changed().expect("open"));
    changes.borrow_and_update();

    // Nothing changed: a refresh publishes nothing.
    let summary = store.refresh().await;
    assert!(summary.changed.is_empty() && summary.failed.is_empty());
    assert!(!changes.has_changed().expect("open"));

    let v2 = s.sm.add_version(PROJECT, "JWT_SECRET", SECOND);
    let summary = store.refresh().await;
    assert_eq!(summary.changed, vec!["JWT_SECRET".to_owned()]);
    assert!(changes.has_changed().expect("open"));
    assert_eq!(value(&store, "JWT_SECRET").as_deref(), Some(SECOND));
    assert!(store
        .report()
        .lines()
        .iter()
        .any(|l| l.ends_with(&format!("secrets/JWT_SECRET/versions/{v2})"))));

    let logged = logs.text();
    assert!(logged.contains("secret changed"), "{logged}");
    for secret in [FIRST, SECOND, TOKEN] {
        assert!(!logged.contains(secret), "a value was logged:\n{logged}");
    }
}

#[tokio::test]
async fn the_background_refresh_picks_up_a_rotation_without_a_call() {
    let s = setup().await;
    s.sm.add_version(PROJECT, "GARDIEN_INTERNAL_SECRET", FIRST);
    let store = s.store(Duration::from_millis(200));
    store
        .require([Requirement::required("GARDIEN_INTERNAL_SECRET", "")])
        .await;
    let mut changes = store.subscribe();
    changes.borrow_and_update();
    let background = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.keep_fresh().await })
    };
    s.sm.add_version(PROJECT, "GARDIEN_INTERNAL_SECRET", SECOND);
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("a change within 5s")
        .expect("open");
    assert_eq!(
        value(&store, "GARDIEN_INTERNAL_SECRET").as_deref(),
        Some(SECOND)
    );
    assert!(store.refreshes() >= 1);
    background.abort();
}

#[tokio::test]
async fn a_failing_source_keeps_the_last_good_value() {
    let (logs, _guard) = capture_logs();
    let s = setup().await;
    s.sm.add_version(PROJECT, "SENDGRID_API_KEY", FIRST);
    // An older copy in a file: it must not replace the value while Secret Manager is down.
    std::fs::write(s.dir.path().join("SENDGRID_API_KEY"), FILE_VALUE).expect("write");
    let store = s.store(Duration::from_secs(60));
    store
        .require([Requirement::required("SENDGRID_API_KEY", "SendGrid")])
        .await;
    assert_eq!(value(&store, "SENDGRID_API_KEY").as_deref(), Some(FIRST));

    s.sm.set_down(true);
    let summary = store.refresh().await;
    assert_eq!(summary.failed, vec!["SENDGRID_API_KEY".to_owned()]);
    assert_eq!(value(&store, "SENDGRID_API_KEY").as_deref(), Some(FIRST));
    assert_eq!(store.refresh_failures(), 1);
    let line = store.report().lines().join("\n");
    assert!(
        line.contains("(kept from an earlier lookup; the last refresh failed: Google Secret Manager projects/rotation-project/secrets/SENDGRID_API_KEY/versions/latest: 503 UNAVAILABLE"),
        "{line}"
    );

    // A corrupt checksum is a failure too.
    s.sm.set_down(false);
    s.sm.add_version(PROJECT, "SENDGRID_API_KEY", SECOND);
    s.sm.set_corrupt_crc(true);
    store.refresh().await;
    assert_eq!(value(&store, "SENDGRID_API_KEY").as_deref(), Some(FIRST));
    assert_eq!(store.refresh_failures(), 2);

    // Back to normal: the rotated value arrives.
    s.sm.set_corrupt_crc(false);
    let summary = store.refresh().await;
    assert_eq!(summary.changed, vec!["SENDGRID_API_KEY".to_owned()]);
    assert_eq!(value(&store, "SENDGRID_API_KEY").as_deref(), Some(SECOND));

    let logged = logs.text();
    assert!(logged.contains("keeping the last good value"), "{logged}");
    for secret in [FIRST, SECOND, FILE_VALUE, TOKEN] {
        assert!(!logged.contains(secret), "a value was logged:\n{logged}");
    }
}

#[tokio::test]
async fn a_value_moves_up_the_chain_when_secret_manager_gets_it() {
    let s = setup().await;
    std::fs::write(s.dir.path().join("DATABASE_URL"), FILE_VALUE).expect("write");
    let store = s.store(Duration::from_secs(60));
    store
        .require([Requirement::optional("DATABASE_URL", "the database")])
        .await;
    assert_eq!(value(&store, "DATABASE_URL").as_deref(), Some(FILE_VALUE));
    s.sm.add_version(PROJECT, "DATABASE_URL", SECOND);
    let summary = store.refresh().await;
    assert_eq!(summary.changed, vec!["DATABASE_URL".to_owned()]);
    assert_eq!(value(&store, "DATABASE_URL").as_deref(), Some(SECOND));
    // Deleted from Secret Manager (a 404 is an answer, not a failure): the file's value
    // is used again.
    s.sm.delete(PROJECT, "DATABASE_URL");
    let summary = store.refresh().await;
    assert_eq!(summary.changed, vec!["DATABASE_URL".to_owned()]);
    assert!(summary.failed.is_empty());
    assert_eq!(value(&store, "DATABASE_URL").as_deref(), Some(FILE_VALUE));
}

#[tokio::test]
async fn a_secret_gone_everywhere_keeps_its_last_value() {
    let s = setup().await;
    std::fs::write(s.dir.path().join("SMTP_PASSWORD"), FIRST).expect("write");
    let store = s.store(Duration::from_secs(60));
    store
        .require([Requirement::required("SMTP_PASSWORD", "")])
        .await;
    std::fs::remove_file(s.dir.path().join("SMTP_PASSWORD")).expect("rm");
    // Gone everywhere: the last value stays, and that counts as a failed refresh.
    let summary = store.refresh().await;
    assert_eq!(summary.failed, vec!["SMTP_PASSWORD".to_owned()]);
    assert_eq!(value(&store, "SMTP_PASSWORD").as_deref(), Some(FIRST));
    // Present again with a new value: taken.
    std::fs::write(s.dir.path().join("SMTP_PASSWORD"), SECOND).expect("write");
    let summary = store.refresh().await;
    assert_eq!(summary.changed, vec!["SMTP_PASSWORD".to_owned()]);
    assert_eq!(value(&store, "SMTP_PASSWORD").as_deref(), Some(SECOND));
}

/// The value before a rotation is kept, with the time of the change, until the next
/// change replaces it; a refresh that changes nothing (or only where the value comes from)
/// leaves it alone; the first value found has none.
#[tokio::test]
async fn the_value_before_a_rotation_is_kept_with_its_time() {
    const THIRD: &str = "third-value-of-the-secret-abcdefabcdef";
    let s = setup().await;
    s.sm.add_version(PROJECT, "GARDIEN_INTERNAL_SECRET", FIRST);
    let store = s.store(Duration::from_millis(250));
    assert_eq!(
        SecretLookup::refresh_interval(&*store),
        Some(Duration::from_millis(250))
    );
    store
        .require([Requirement::required("GARDIEN_INTERNAL_SECRET", "")])
        .await;
    let previous = |store: &SecretStore| store.previous("GARDIEN_INTERNAL_SECRET");
    assert!(previous(&store).is_none(), "found first: nothing before it");
    store.refresh().await;
    assert!(previous(&store).is_none(), "unchanged: nothing before it");

    s.sm.add_version(PROJECT, "GARDIEN_INTERNAL_SECRET", SECOND);
    let before = std::time::Instant::now();
    store.refresh().await;
    let after = std::time::Instant::now();
    let kept = previous(&store).expect("the value before the rotation");
    assert_eq!(kept.value().expose(), FIRST.as_bytes());
    assert!(before <= kept.replaced_at() && kept.replaced_at() <= after);
    assert!(kept.replaced_within(Duration::from_secs(1), after));
    assert!(!kept.replaced_within(Duration::ZERO, after + Duration::from_millis(1)));
    assert!(
        store
            .values()
            .iter()
            .any(|v| v.expose() == FIRST.as_bytes()),
        "the previous value is scrubbed from error reports too"
    );

    // Refreshes that change nothing keep it, and its time.
    store.refresh().await;
    assert_eq!(previous(&store), Some(kept.clone()));
    // So does a move to another source with the same value (Secret Manager gone, the
    // same value in a file).
    std::fs::write(s.dir.path().join("GARDIEN_INTERNAL_SECRET"), SECOND).expect("write");
    s.sm.delete(PROJECT, "GARDIEN_INTERNAL_SECRET");
    let summary = store.refresh().await;
    assert_eq!(summary.changed, vec!["GARDIEN_INTERNAL_SECRET".to_owned()]);
    assert_eq!(previous(&store), Some(kept));

    // The next rotation replaces it.
    std::fs::write(s.dir.path().join("GARDIEN_INTERNAL_SECRET"), THIRD).expect("write");
    store.refresh().await;
    let kept = previous(&store).expect("the value before the second rotation");
    assert_eq!(kept.value().expose(), SECOND.as_bytes());
    assert_eq!(
        value(&store, "GARDIEN_INTERNAL_SECRET").as_deref(),
        Some(THIRD)
    );
    assert!(!format!("{kept:?}").contains(SECOND), "never printed");
}

/// A requirement marked `forgotten_when_removed` loses its value once every source says
/// it is gone — but not while its source fails; others keep their last value.
#[tokio::test]
async fn a_value_to_forget_is_dropped_when_removed_not_when_failing() {
    let s = setup().await;
    s.sm.add_version(PROJECT, "GARDIEN_INTERNAL_SECRET_PREVIOUS", FIRST);
    s.sm.add_version(PROJECT, "JWT_SECRET", SECOND);
    let store = s.store(Duration::from_secs(60));
    store
        .require([
            Requirement::optional("GARDIEN_INTERNAL_SECRET_PREVIOUS", "").forgotten_when_removed(),
            Requirement::required("JWT_SECRET", ""),
        ])
        .await;
    s.sm.set_down(true);
    store.refresh().await;
    assert_eq!(
        value(&store, "GARDIEN_INTERNAL_SECRET_PREVIOUS").as_deref(),
        Some(FIRST),
        "a failing source keeps it"
    );
    s.sm.set_down(false);
    s.sm.delete(PROJECT, "GARDIEN_INTERNAL_SECRET_PREVIOUS");
    s.sm.delete(PROJECT, "JWT_SECRET");
    let mut changes = store.subscribe();
    changes.borrow_and_update();
    let summary = store.refresh().await;
    assert_eq!(
        summary.changed,
        vec!["GARDIEN_INTERNAL_SECRET_PREVIOUS".to_owned()]
    );
    assert!(changes.has_changed().expect("open"));
    assert_eq!(value(&store, "GARDIEN_INTERNAL_SECRET_PREVIOUS"), None);
    assert_eq!(
        value(&store, "JWT_SECRET").as_deref(),
        Some(SECOND),
        "the others keep their last value"
    );
    s.sm.add_version(PROJECT, "GARDIEN_INTERNAL_SECRET_PREVIOUS", THIRD_VALUE);
    store.refresh().await;
    assert_eq!(
        value(&store, "GARDIEN_INTERNAL_SECRET_PREVIOUS").as_deref(),
        Some(THIRD_VALUE)
    );
}

const THIRD_VALUE: &str = "a-later-value-of-the-secret-0000000000";
