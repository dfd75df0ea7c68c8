//! Each delivery provider against its local fake (gardien-fakes), over real loopback
//! sockets: success, every failure classification, sandbox, secrets rotated between two
//! sends, and no credential in any failure detail or `Debug` output. The SendGrid request
//! and the Twilio answer are also checked against the official contracts in
//! `shared/contracts/`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gardien_backend::delivery::provider::{
    EmailMessage, Failure, FailureKind, Message, Provider, SmsMessage,
};
use gardien_backend::delivery::providers::{
    EmailSender, SendGrid, SendGridConfig, Smtp, SmtpConfig, SmtpTls, Twilio, TwilioConfig,
};
use gardien_fakes::contract;
use gardien_fakes::sendgrid::FakeSendGrid;
use gardien_fakes::smtp::FakeSmtp;
use gardien_fakes::twilio::{self as fake_twilio, FakeTwilio};
use gardien_secrets::{Secret, SecretLookup};
use parking_lot::RwLock;
use serde_json::Value;

/// Secrets a test can rotate while providers hold them.
#[derive(Default)]
struct Secrets(RwLock<HashMap<String, Secret>>);

impl Secrets {
    fn with(pairs: &[(&str, &str)]) -> Arc<Secrets> {
        let secrets = Arc::new(Secrets::default());
        for (name, value) in pairs {
            secrets.set(name, value);
        }
        secrets
    }

    fn set(&self, name: &str, value: &str) {
        self.0.write().insert(name.to_owned(), Secret::new(value));
    }

    fn remove(&self, name: &str) {
        self.0.write().remove(name);
    }
}

impl SecretLookup for Secrets {
    fn get(&self, name: &str) -> Option<Secret> {
        self.0.read().get(name).cloned()
    }
}

fn lookup(secrets: &Arc<Secrets>) -> Arc<dyn SecretLookup> {
    Arc::clone(secrets) as Arc<dyn SecretLookup>
}

/// The failure of `result`, checked to hold none of `credentials` in its detail or Debug.
#[track_caller]
fn failed<T: std::fmt::Debug>(result: Result<T, Failure>, credentials: &[&str]) -> Failure {
    let failure = result.expect_err("the send should fail");
    let debug = format!("{failure:?}");
    for credential in credentials {
        assert!(
            !failure.detail.contains(credential) && !debug.contains(credential),
            "credential leaked: {debug}"
        );
    }
    failure
}

fn sender() -> EmailSender {
    EmailSender {
        address: "notify@gardien.example".into(),
        name: Some("Gardien".into()),
    }
}

fn email(to: &str) -> Message {
    Message::Email(EmailMessage {
        to: to.into(),
        subject: "Your weekly report".into(),
        html: Some("<p>Hello <b>Alice</b></p>".into()),
        text: "Hello Alice".into(),
        notification_id: "ntf-0001".into(),
        category: "reports".into(),
    })
}

fn sms(to: &str) -> Message {
    Message::Sms(SmsMessage {
        to: to.into(),
        body: "Your code is 4821".into(),
        notification_id: "ntf-0002".into(),
    })
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------------------
// SendGrid

const SG_KEY: &str = "SG.first-key-0123456789abcdef";
const SG_KEY_2: &str = "SG.second-key-fedcba9876543210";

fn sendgrid(fake: &FakeSendGrid, secrets: &Arc<Secrets>, sandbox: bool) -> SendGrid {
    let config = SendGridConfig {
        base_url: fake.base_url(),
        timeout: Duration::from_secs(5),
        ..SendGridConfig::new(sender())
    };
    SendGrid::new(config, lookup(secrets), sandbox).expect("sendgrid provider")
}

#[tokio::test]
async fn sendgrid_delivers_a_request_that_follows_the_contract() {
    let fake = FakeSendGrid::start().await;
    fake.accept_key(SG_KEY);
    let secrets = Secrets::with(&[("SENDGRID_API_KEY", SG_KEY)]);
    let provider = sendgrid(&fake, &secrets, false);
    assert_eq!(provider.name(), "sendgrid");

    let accepted = provider
        .send(&email("alice@example.com"))
        .await
        .expect("accepted");
    assert!(!accepted.sandbox);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].status, 202);
    assert_eq!(requests[0].api_key.as_deref(), Some(SG_KEY));
    assert_eq!(accepted.message_id, requests[0].message_id);
    assert!(accepted.message_id.is_some());

    let deliveries = fake.deliveries();
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert_eq!(delivery.to, "alice@example.com");
    assert_eq!(delivery.from, "notify@gardien.example");
    assert_eq!(delivery.from_name.as_deref(), Some("Gardien"));
    assert_eq!(delivery.subject, "Your weekly report");
    assert_eq!(delivery.text.as_deref(), Some("Hello Alice"));
    assert_eq!(delivery.html.as_deref(), Some("<p>Hello <b>Alice</b></p>"));
    assert_eq!(delivery.categories, vec!["reports".to_owned()]);
    assert_eq!(
        delivery.custom_args.get("notification_id"),
        Some(&Value::from("ntf-0001"))
    );

    // The body the provider sent, against the contract's request schema.
    let document = contract::load(contract::SENDGRID).unwrap_or_else(|e| panic!("{e}"));
    let schema = contract::resolve(&document, "#/components/requestBodies/PostMailSend")
        .and_then(|body| body.pointer("/content/application~1json/schema"))
        .expect("PostMailSend schema in the contract");
    let body = requests[0].json().expect("JSON body");
    let problems = contract::check(&document, schema, &body);
    assert!(problems.is_empty(), "{problems:#?}");
    let types: Vec<&str> = body["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    assert!(body.get("mail_settings").is_none());
}

#[tokio::test]
async fn sendgrid_sandbox_is_validated_not_delivered() {
    let fake = FakeSendGrid::start().await;
    fake.accept_key(SG_KEY);
    let secrets = Secrets::with(&[("SENDGRID_API_KEY", SG_KEY)]);
    let provider = sendgrid(&fake, &secrets, true);

    let accepted = provider
        .send(&email("alice@example.com"))
        .await
        .expect("accepted");
    assert!(accepted.sandbox);
    assert_eq!(accepted.message_id, None);
    assert!(fake.deliveries().is_empty());
    let request = &fake.requests()[0];
    assert_eq!(request.status, 200);
    assert_eq!(
        request.json().expect("json")["mail_settings"]["sandbox_mode"]["enable"],
        Value::Bool(true)
    );

    // Sandbox still validates: a bad address is still the recipient's problem.
    let failure = failed(provider.send(&email("not-an-address")).await, &[SG_KEY]);
    assert_eq!(failure.kind, FailureKind::Recipient);
}

#[tokio::test]
async fn sendgrid_classifies_every_failure() {
    let fake = FakeSendGrid::start().await;
    fake.accept_key(SG_KEY);
    let secrets = Secrets::with(&[("SENDGRID_API_KEY", SG_KEY)]);
    let provider = sendgrid(&fake, &secrets, false);
    let message = email("alice@example.com");
    let keys = [SG_KEY, SG_KEY_2];

    // A bad recipient address: the contract's 400 with the field.
    let failure = failed(provider.send(&email("alice@@example")).await, &keys);
    assert_eq!(failure.kind, FailureKind::Recipient);
    assert_eq!(failure.status, Some(400));
    assert!(
        failure.detail.contains("personalizations.0.to.0.email"),
        "{}",
        failure.detail
    );

    // Rate limited until a reset 30 s away.
    fake.rate_limit(1, now_epoch() + 30);
    let failure = failed(provider.send(&message).await, &keys);
    assert_eq!(failure.kind, FailureKind::Retryable);
    assert_eq!(failure.status, Some(429));
    let wait = failure
        .retry_after
        .expect("retry_after from X-RateLimit-Reset");
    assert!(
        (Duration::from_secs(28)..=Duration::from_secs(30)).contains(&wait),
        "{wait:?}"
    );

    for status in [500, 503] {
        fake.fail_next(1, status);
        let failure = failed(provider.send(&message).await, &keys);
        assert_eq!(
            (failure.kind, failure.status),
            (FailureKind::Retryable, Some(status))
        );
    }

    // Too large for the service.
    fake.max_body(64);
    let failure = failed(provider.send(&message).await, &keys);
    assert_eq!(
        (failure.kind, failure.status),
        (FailureKind::Rejected, Some(413))
    );
    fake.max_body(gardien_fakes::sendgrid::MAX_BODY_BYTES);

    // A key that lacks the scope, then a revoked one.
    fake.forbid_key(SG_KEY);
    let failure = failed(provider.send(&message).await, &keys);
    assert_eq!(
        (failure.kind, failure.status),
        (FailureKind::Auth, Some(403))
    );
    fake.revoke_key(SG_KEY);
    let failure = failed(provider.send(&message).await, &keys);
    assert_eq!(
        (failure.kind, failure.status),
        (FailureKind::Auth, Some(401))
    );

    // The key is missing altogether: this provider cannot send, nothing reaches SendGrid.
    let before = fake.requests().len();
    secrets.remove("SENDGRID_API_KEY");
    let failure = failed(provider.send(&message).await, &keys);
    assert_eq!(failure.kind, FailureKind::Rejected);
    assert!(
        failure.detail.contains("SENDGRID_API_KEY"),
        "{}",
        failure.detail
    );
    assert_eq!(fake.requests().len(), before);

    // An sms is not for SendGrid.
    let failure = failed(provider.send(&sms("+33612345678")).await, &keys);
    assert_eq!(failure.kind, FailureKind::Rejected);
    assert!(fake.deliveries().is_empty());
    assert!(!format!("{provider:?}").contains("SG."));
}

#[tokio::test]
async fn sendgrid_down_slow_and_back() {
    let fake = FakeSendGrid::start().await;
    fake.accept_key(SG_KEY);
    let secrets = Secrets::with(&[("SENDGRID_API_KEY", SG_KEY)]);
    let provider = sendgrid(&fake, &secrets, false);
    let message = email("alice@example.com");
    provider.send(&message).await.expect("up");

    fake.go_down().await;
    let failure = failed(provider.send(&message).await, &[SG_KEY]);
    assert_eq!(failure.kind, FailureKind::Retryable);
    assert_eq!(failure.status, None);
    assert!(failure.detail.contains("connection"), "{}", failure.detail);
    fake.come_back().await;
    provider.send(&message).await.expect("back up");

    let impatient = SendGrid::new(
        SendGridConfig {
            base_url: fake.base_url(),
            timeout: Duration::from_millis(300),
            ..SendGridConfig::new(sender())
        },
        lookup(&secrets),
        false,
    )
    .expect("provider");
    fake.delay(Duration::from_secs(2));
    let failure = failed(impatient.send(&message).await, &[SG_KEY]);
    assert_eq!(failure.kind, FailureKind::Retryable);
    assert!(
        failure.detail.contains("no answer within 300ms"),
        "{}",
        failure.detail
    );
}

#[tokio::test]
async fn sendgrid_uses_a_rotated_key_on_the_next_send() {
    let fake = FakeSendGrid::start().await;
    fake.accept_key(SG_KEY);
    let secrets = Secrets::with(&[("SENDGRID_API_KEY", SG_KEY)]);
    let provider = sendgrid(&fake, &secrets, false);
    provider
        .send(&email("alice@example.com"))
        .await
        .expect("first key");

    fake.accept_key(SG_KEY_2);
    fake.revoke_key(SG_KEY);
    secrets.set("SENDGRID_API_KEY", SG_KEY_2);
    provider
        .send(&email("alice@example.com"))
        .await
        .expect("second key");
    let keys: Vec<Option<String>> = fake.requests().into_iter().map(|r| r.api_key).collect();
    assert_eq!(keys, [Some(SG_KEY.to_owned()), Some(SG_KEY_2.to_owned())]);
}

// ---------------------------------------------------------------------------------------
// Twilio

struct Account {
    sid: String,
    token: String,
}

fn account() -> Account {
    Account {
        sid: fake_twilio::random_account_sid(),
        token: fake_twilio::random_auth_token(),
    }
}

fn twilio_config(fake: &FakeTwilio, config: TwilioConfig) -> TwilioConfig {
    TwilioConfig {
        base_url: fake.base_url(),
        timeout: Duration::from_secs(5),
        ..config
    }
}

fn primary_secrets(account: &Account) -> Arc<Secrets> {
    Secrets::with(&[
        ("TWILIO_ACCOUNT_SID", &account.sid),
        ("TWILIO_AUTH_TOKEN", &account.token),
    ])
}

#[tokio::test]
async fn twilio_live_message_and_contract_resource() {
    let fake = FakeTwilio::start().await;
    let live = account();
    fake.add_account(&live.sid, &live.token);
    let secrets = primary_secrets(&live);
    let provider = Twilio::new(
        TwilioConfig {
            from: Some("+15551230000".into()),
            ..twilio_config(&fake, TwilioConfig::primary())
        },
        lookup(&secrets),
        false,
    )
    .expect("provider");
    assert_eq!(provider.name(), "twilio");

    let accepted = provider.send(&sms("+33612345678")).await.expect("accepted");
    assert!(!accepted.sandbox);
    let sid = accepted.message_id.expect("sid");
    assert!(sid.starts_with("SM") && sid.len() == 34, "{sid}");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.status, 201);
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{}/Messages.json", live.sid)
    );
    assert_eq!(
        request.basic_auth,
        Some((live.sid.clone(), live.token.clone()))
    );
    assert!(request
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded")));
    assert_eq!(request.field("To"), Some("+33612345678"));
    assert_eq!(request.field("From"), Some("+15551230000"));
    assert_eq!(request.field("Body"), Some("Your code is 4821"));
    assert_eq!(request.field("MessagingServiceSid"), None);

    let messages = fake.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].sid, sid);

    // The form fields are the contract's, and the answer is its message resource.
    let document = contract::load(contract::TWILIO).unwrap_or_else(|e| panic!("{e}"));
    let operation = document
        .pointer("/paths/~12010-04-01~1Accounts~1{AccountSid}~1Messages.json/post")
        .expect("CreateMessage in the contract");
    let fields = operation
        .pointer("/requestBody/content/application~1x-www-form-urlencoded/schema/properties")
        .and_then(Value::as_object)
        .expect("form properties");
    for (name, _) in &request.form {
        assert!(
            fields.contains_key(name),
            "{name} is not a CreateMessage field"
        );
    }
    let schema = contract::resolve(&document, "#/components/schemas/api.v2010.account.message")
        .expect("message schema");
    let problems = contract::check(&document, schema, &messages[0].resource);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test]
async fn twilio_messaging_service_and_secondary_account() {
    let fake = FakeTwilio::start().await;
    let (primary, secondary) = (account(), account());
    fake.add_account(&primary.sid, &primary.token);
    fake.add_account(&secondary.sid, &secondary.token);
    let secrets = Secrets::with(&[
        ("TWILIO_ACCOUNT_SID", &primary.sid),
        ("TWILIO_AUTH_TOKEN", &primary.token),
        ("TWILIO_SECONDARY_ACCOUNT_SID", &secondary.sid),
        ("TWILIO_SECONDARY_AUTH_TOKEN", &secondary.token),
    ]);
    let service = "MG0123456789abcdef0123456789abcdef";
    let first = Twilio::new(
        TwilioConfig {
            messaging_service_sid: Some(service.into()),
            ..twilio_config(&fake, TwilioConfig::primary())
        },
        lookup(&secrets),
        false,
    )
    .expect("primary");
    let second = Twilio::new(
        TwilioConfig {
            from: Some("Gardien".into()),
            ..twilio_config(&fake, TwilioConfig::secondary())
        },
        lookup(&secrets),
        false,
    )
    .expect("secondary");
    assert_eq!(second.name(), "twilio-secondary");
    let names: Vec<&str> = second.secrets().iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "TWILIO_SECONDARY_ACCOUNT_SID",
            "TWILIO_SECONDARY_AUTH_TOKEN"
        ]
    );

    first
        .send(&sms("+33612345678"))
        .await
        .expect("primary sends");
    second
        .send(&sms("+33612345678"))
        .await
        .expect("secondary sends");
    let requests = fake.requests();
    assert_eq!(
        requests[0].path_account_sid.as_deref(),
        Some(primary.sid.as_str())
    );
    assert_eq!(requests[0].field("MessagingServiceSid"), Some(service));
    assert_eq!(requests[0].field("From"), None);
    assert_eq!(
        requests[1].path_account_sid.as_deref(),
        Some(secondary.sid.as_str())
    );
    assert_eq!(requests[1].field("From"), Some("Gardien"));
    let messages = fake.messages();
    assert_eq!(messages[0].resource["status"], "accepted");
    assert_eq!(messages[0].resource["messaging_service_sid"], service);

    // Live without a sender is refused at construction.
    let missing = Twilio::new(
        twilio_config(&fake, TwilioConfig::primary()),
        lookup(&secrets),
        false,
    )
    .expect_err("no sender");
    assert!(
        missing
            .to_string()
            .contains("Messaging Service SID or a From"),
        "{missing}"
    );
}

#[tokio::test]
async fn twilio_sandbox_uses_test_credentials_and_magic_numbers() {
    let fake = FakeTwilio::start().await;
    let test = account();
    fake.add_test_account(&test.sid, &test.token);
    let secrets = primary_secrets(&test);
    let provider = Twilio::new(
        TwilioConfig {
            messaging_service_sid: Some("MG0123456789abcdef0123456789abcdef".into()),
            ..twilio_config(&fake, TwilioConfig::primary())
        },
        lookup(&secrets),
        true,
    )
    .expect("sandbox provider");

    let accepted = provider.send(&sms("+33612345678")).await.expect("accepted");
    assert!(accepted.sandbox);
    assert!(accepted.message_id.is_some_and(|sid| sid.starts_with("SM")));
    let request = &fake.requests()[0];
    assert_eq!(request.field("From"), Some("+15005550006"));
    assert_eq!(request.field("MessagingServiceSid"), None);
    assert!(
        fake.messages().is_empty(),
        "test credentials deliver nothing"
    );

    let credentials = [test.token.as_str()];
    for (to, code, kind) in [
        (
            fake_twilio::TEST_TO_INVALID,
            "21211",
            FailureKind::Recipient,
        ),
        (
            fake_twilio::TEST_TO_UNROUTABLE,
            "21612",
            FailureKind::Recipient,
        ),
        (
            fake_twilio::TEST_TO_BLOCKED,
            "21610",
            FailureKind::Recipient,
        ),
        (
            fake_twilio::TEST_TO_NOT_MOBILE,
            "21614",
            FailureKind::Recipient,
        ),
        (
            fake_twilio::TEST_TO_NO_PERMISSION,
            "21408",
            FailureKind::Rejected,
        ),
    ] {
        let failure = failed(provider.send(&sms(to)).await, &credentials);
        assert_eq!(failure.kind, kind, "{to}: {failure:?}");
        assert_eq!(failure.code.as_deref(), Some(code), "{to}");
        assert_eq!(failure.status, Some(400));
    }
}

#[tokio::test]
async fn twilio_classifies_every_failure() {
    let fake = FakeTwilio::start().await;
    let live = account();
    fake.add_account(&live.sid, &live.token);
    let secrets = primary_secrets(&live);
    let provider = Twilio::new(
        TwilioConfig {
            from: Some("+15551230000".into()),
            ..twilio_config(&fake, TwilioConfig::primary())
        },
        lookup(&secrets),
        false,
    )
    .expect("provider");
    let message = sms("+33612345678");
    let credentials = [live.token.as_str()];

    fake.fail_recipient("+33699999999", 21610);
    let failure = failed(provider.send(&sms("+33699999999")).await, &credentials);
    assert_eq!(
        (failure.kind, failure.code.as_deref()),
        (FailureKind::Recipient, Some("21610"))
    );
    let failure = failed(provider.send(&sms("0612345678")).await, &credentials);
    assert_eq!(
        (failure.kind, failure.code.as_deref()),
        (FailureKind::Recipient, Some("21211"))
    );

    fake.rate_limit(1, Some(4));
    let failure = failed(provider.send(&message).await, &credentials);
    assert_eq!(failure.kind, FailureKind::Retryable);
    assert_eq!(
        (failure.status, failure.code.as_deref()),
        (Some(429), Some("20429"))
    );
    assert_eq!(failure.retry_after, Some(Duration::from_secs(4)));

    for status in [500, 503] {
        fake.fail_next(1, status);
        let failure = failed(provider.send(&message).await, &credentials);
        assert_eq!(
            (failure.kind, failure.status),
            (FailureKind::Retryable, Some(status))
        );
    }

    fake.go_down().await;
    let failure = failed(provider.send(&message).await, &credentials);
    assert_eq!(
        (failure.kind, failure.status),
        (FailureKind::Retryable, None)
    );
    fake.come_back().await;
    provider.send(&message).await.expect("back up");

    // The token was rotated at Twilio but not yet in our secrets: refused; then rotated here.
    let new_token = fake_twilio::random_auth_token();
    fake.set_token(&live.sid, &new_token);
    let failure = failed(provider.send(&message).await, &[&live.token, &new_token]);
    assert_eq!(failure.kind, FailureKind::Auth);
    assert_eq!(
        (failure.status, failure.code.as_deref()),
        (Some(401), Some("20003"))
    );
    secrets.set("TWILIO_AUTH_TOKEN", &new_token);
    provider.send(&message).await.expect("rotated token");
    let last = fake.requests().pop().expect("a request");
    assert_eq!(last.basic_auth, Some((live.sid.clone(), new_token.clone())));

    // A SID that is not one never reaches Twilio, and is not repeated.
    secrets.set("TWILIO_ACCOUNT_SID", "not-a-sid/../../x");
    let before = fake.requests().len();
    let failure = failed(provider.send(&message).await, &[&new_token, "not-a-sid"]);
    assert_eq!(failure.kind, FailureKind::Rejected);
    assert!(
        failure.detail.contains("TWILIO_ACCOUNT_SID"),
        "{}",
        failure.detail
    );
    assert_eq!(fake.requests().len(), before);

    let debug = format!("{provider:?}");
    assert!(
        !debug.contains(&new_token) && !debug.contains(&live.sid),
        "{debug}"
    );
}

#[tokio::test]
async fn twilio_timeout_is_retryable() {
    let fake = FakeTwilio::start().await;
    let live = account();
    fake.add_account(&live.sid, &live.token);
    let secrets = primary_secrets(&live);
    let provider = Twilio::new(
        TwilioConfig {
            from: Some("+15551230000".into()),
            timeout: Duration::from_millis(300),
            base_url: fake.base_url(),
            ..TwilioConfig::primary()
        },
        lookup(&secrets),
        false,
    )
    .expect("provider");
    fake.delay(Duration::from_secs(2));
    let failure = failed(provider.send(&sms("+33612345678")).await, &[&live.token]);
    assert_eq!(failure.kind, FailureKind::Retryable);
    assert!(
        failure.detail.contains("no answer within 300ms"),
        "{}",
        failure.detail
    );
}

// ---------------------------------------------------------------------------------------
// SMTP

fn smtp(sink: &FakeSmtp, secrets: &Arc<Secrets>) -> Smtp {
    let config = SmtpConfig {
        port: sink.port(),
        tls: SmtpTls::None,
        timeout: Duration::from_secs(5),
        hello_name: Some("backend.gardien.test".into()),
        ..SmtpConfig::new(sink.host(), sender())
    };
    Smtp::new(config, lookup(secrets)).expect("smtp provider")
}

#[tokio::test]
async fn smtp_delivers_multipart_with_ids() {
    let sink = FakeSmtp::start().await;
    let secrets = Secrets::with(&[]);
    let provider = smtp(&sink, &secrets);
    assert_eq!(provider.name(), "smtp");

    let accepted = provider
        .send(&email("alice@example.com"))
        .await
        .expect("accepted");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let mail = &messages[0];
    assert_eq!(
        accepted.message_id, mail.queue_id,
        "the relay's queue id is kept"
    );
    assert!(!accepted.sandbox);
    assert_eq!(mail.client_name, "backend.gardien.test");
    assert_eq!(mail.mail_from, "notify@gardien.example");
    assert_eq!(mail.rcpt_to, ["alice@example.com"]);
    assert_eq!(mail.authenticated_as, None);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Your weekly report")
    );
    assert_eq!(
        mail.header("X-Gardien-Notification-Id").as_deref(),
        Some("ntf-0001")
    );
    assert_eq!(mail.header("To").as_deref(), Some("alice@example.com"));
    assert!(mail
        .header("From")
        .is_some_and(|f| f.contains("notify@gardien.example")));
    let message_id = mail.header("Message-ID").expect("Message-ID");
    assert!(
        message_id.starts_with('<') && message_id.ends_with("@gardien.example>"),
        "{message_id}"
    );
    assert!(mail
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("multipart/alternative")));
    let text = mail.text();
    let plain = text.find("Content-Type: text/plain").expect("text part");
    let html = text.find("Content-Type: text/html").expect("html part");
    assert!(plain < html, "text before html");
    assert!(text.contains("Hello Alice"));

    // Without a queue id in the reply, the Message-ID we set is the id.
    sink.queue_ids(false);
    let accepted = provider
        .send(&email("bob@example.com"))
        .await
        .expect("accepted");
    let mail = sink.messages().pop().expect("second message");
    let expected = mail
        .header("Message-ID")
        .map(|id| id.trim_matches(['<', '>']).to_owned());
    assert_eq!(accepted.message_id, expected);
}

#[tokio::test]
async fn smtp_authenticates_with_rotated_credentials() {
    let sink = FakeSmtp::start().await;
    sink.require_auth("mailer", "first-password-123");
    let secrets = Secrets::with(&[
        ("SMTP_USERNAME", "mailer"),
        ("SMTP_PASSWORD", "first-password-123"),
    ]);
    let provider = smtp(&sink, &secrets);
    provider
        .send(&email("alice@example.com"))
        .await
        .expect("first password");
    assert_eq!(
        sink.messages()[0].authenticated_as.as_deref(),
        Some("mailer")
    );

    // The relay's password changes: refused until our secret follows.
    sink.require_auth("mailer", "second-password-456");
    let secrets_seen = ["first-password-123", "second-password-456"];
    let failure = failed(
        provider.send(&email("alice@example.com")).await,
        &secrets_seen,
    );
    assert_eq!(
        (failure.kind, failure.status),
        (FailureKind::Auth, Some(535))
    );
    secrets.set("SMTP_PASSWORD", "second-password-456");
    provider
        .send(&email("alice@example.com"))
        .await
        .expect("second password");

    // LOGIN when the relay offers only that.
    sink.auth_mechanisms(&["LOGIN"]);
    provider
        .send(&email("alice@example.com"))
        .await
        .expect("LOGIN");
    let mechanisms: Vec<String> = sink
        .auth_attempts()
        .into_iter()
        .map(|a| a.mechanism)
        .collect();
    assert_eq!(mechanisms, ["PLAIN", "PLAIN", "PLAIN", "LOGIN"]);

    // No credentials at all: the relay wants them before MAIL FROM.
    secrets.remove("SMTP_USERNAME");
    let failure = failed(
        provider.send(&email("alice@example.com")).await,
        &secrets_seen,
    );
    assert_eq!(
        (failure.kind, failure.status),
        (FailureKind::Auth, Some(530))
    );

    // A user name without its password cannot be used.
    secrets.set("SMTP_USERNAME", "mailer");
    secrets.remove("SMTP_PASSWORD");
    let failure = failed(
        provider.send(&email("alice@example.com")).await,
        &secrets_seen,
    );
    assert_eq!(failure.kind, FailureKind::Rejected);
    assert!(
        failure.detail.contains("SMTP_PASSWORD"),
        "{}",
        failure.detail
    );
    assert!(!format!("{provider:?}").contains("password-"));
}

#[tokio::test]
async fn smtp_classifies_every_failure() {
    let sink = FakeSmtp::start().await;
    let secrets = Secrets::with(&[]);
    let provider = smtp(&sink, &secrets);
    let message = email("alice@example.com");

    sink.reject_recipient("nobody@example.com");
    let failure = failed(provider.send(&email("nobody@example.com")).await, &[]);
    assert_eq!(
        (failure.kind, failure.status),
        (FailureKind::Recipient, Some(550))
    );
    assert!(failure.detail.contains("RCPT TO"), "{}", failure.detail);

    sink.fail_next_mail(1, 451);
    let failure = failed(provider.send(&message).await, &[]);
    assert_eq!(
        (failure.kind, failure.status),
        (FailureKind::Retryable, Some(451))
    );
    sink.fail_next_mail(1, 421);
    let failure = failed(provider.send(&message).await, &[]);
    assert_eq!(
        (failure.kind, failure.status),
        (FailureKind::Retryable, Some(421))
    );
    sink.fail_next_mail(1, 554);
    let failure = failed(provider.send(&message).await, &[]);
    assert_eq!(
        (failure.kind, failure.status),
        (FailureKind::Rejected, Some(554))
    );
    sink.refuse_next_connections(1);
    let failure = failed(provider.send(&message).await, &[]);
    assert_eq!(failure.kind, FailureKind::Retryable);

    sink.go_down().await;
    let failure = failed(provider.send(&message).await, &[]);
    assert_eq!(
        (failure.kind, failure.status),
        (FailureKind::Retryable, None)
    );
    sink.come_back().await;
    provider.send(&message).await.expect("back up");

    let impatient = Smtp::new(
        SmtpConfig {
            port: sink.port(),
            tls: SmtpTls::None,
            timeout: Duration::from_millis(300),
            ..SmtpConfig::new(sink.host(), sender())
        },
        lookup(&secrets),
    )
    .expect("provider");
    sink.delay(Duration::from_secs(2));
    let failure = failed(impatient.send(&message).await, &[]);
    assert_eq!(failure.kind, FailureKind::Retryable);
    assert!(
        failure.detail.contains("no answer within 300ms"),
        "{}",
        failure.detail
    );
    sink.delay(Duration::ZERO);

    // STARTTLS required but not offered: never continue in clear text.
    let strict = Smtp::new(
        SmtpConfig {
            port: sink.port(),
            tls: SmtpTls::StartTls,
            ..SmtpConfig::new(sink.host(), sender())
        },
        lookup(&secrets),
    )
    .expect("provider");
    let before = sink.messages().len();
    let failure = failed(strict.send(&message).await, &[]);
    assert_eq!(failure.kind, FailureKind::Rejected);
    assert!(failure.detail.contains("STARTTLS"), "{}", failure.detail);
    assert_eq!(sink.messages().len(), before);

    // Implicit TLS against a plain-text server: the handshake fails, nothing is sent.
    let tls = Smtp::new(
        SmtpConfig {
            port: sink.port(),
            tls: SmtpTls::Tls,
            timeout: Duration::from_secs(5),
            ..SmtpConfig::new(sink.host(), sender())
        },
        lookup(&secrets),
    )
    .expect("provider");
    let failure = failed(tls.send(&message).await, &[]);
    assert_eq!(failure.kind, FailureKind::Rejected, "{failure:?}");
    assert_eq!(sink.messages().len(), before);

    // Credentials are never sent in clear text to a host that is not loopback.
    let with_credentials = Secrets::with(&[("SMTP_USERNAME", "u"), ("SMTP_PASSWORD", "pw-123456")]);
    let remote = Smtp::new(
        SmtpConfig {
            tls: SmtpTls::None,
            port: 2525,
            ..SmtpConfig::new("relay.gardien.invalid", sender())
        },
        lookup(&with_credentials),
    )
    .expect("provider");
    let failure = failed(remote.send(&message).await, &["pw-123456"]);
    assert_eq!(failure.kind, FailureKind::Rejected);
    assert!(failure.detail.contains("without TLS"), "{}", failure.detail);
}
