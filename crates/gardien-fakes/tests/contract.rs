//! The fakes answer what the official contracts in `shared/contracts/` say: the documented
//! paths and statuses, SendGrid's error shape, Twilio's message resource and error fields,
//! and they accept the contracts' own request examples. Called over real HTTP.

use std::time::Duration;

use gardien_fakes::contract;
use gardien_fakes::sendgrid::FakeSendGrid;
use gardien_fakes::twilio::{self as fake_twilio, FakeTwilio};
use serde_json::{json, Value};

fn load(file: &str) -> Value {
    contract::load(file).unwrap_or_else(|e| panic!("{e}"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

const KEY: &str = "SG.contract-test-key";

async fn send(fake: &FakeSendGrid, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v3/mail/send", fake.base_url()))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("request")
}

fn valid_mail() -> Value {
    json!({
        "personalizations": [{"to": [{"email": "alex@example.com"}], "custom_args": {"id": "1"}}],
        "from": {"email": "orders@example.com", "name": "Orders"},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "Hi"}, {"type": "text/html", "value": "<p>Hi</p>"}],
        "categories": ["orders"],
    })
}

#[tokio::test]
async fn sendgrid_answers_follow_the_contract() {
    let document = load(contract::SENDGRID);
    let operation = document
        .pointer("/paths/~1v3~1mail~1send/post")
        .expect("POST /v3/mail/send in the contract");
    let documented = operation["responses"].as_object().expect("responses");
    let error_schema =
        contract::resolve(&document, "#/components/schemas/ErrorResponse").expect("ErrorResponse");
    let fake = FakeSendGrid::start().await;
    fake.accept_key(KEY);

    // The contract's own request examples are accepted.
    let examples = contract::resolve(&document, "#/components/requestBodies/PostMailSend")
        .and_then(|b| b.pointer("/content/application~1json/examples"))
        .and_then(Value::as_object)
        .expect("PostMailSend examples");
    assert!(!examples.is_empty());
    for (name, example) in examples {
        let response = send(&fake, KEY, &example["value"]).await;
        assert_eq!(response.status(), 202, "example {name}");
    }

    // 202: empty body and an X-Message-Id.
    let response = send(&fake, KEY, &valid_mail()).await;
    assert_eq!(response.status(), 202);
    assert!(documented.contains_key("202"));
    let id = response
        .headers()
        .get("x-message-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("X-Message-Id");
    assert!(!id.is_empty());
    assert!(response.bytes().await.expect("body").is_empty());

    // Sandbox: 200, nothing delivered.
    let deliveries = fake.deliveries().len();
    let mut sandbox = valid_mail();
    sandbox["mail_settings"] = json!({"sandbox_mode": {"enable": true}});
    assert_eq!(send(&fake, KEY, &sandbox).await.status(), 200);
    assert_eq!(fake.deliveries().len(), deliveries);

    // Every documented error status answers the contract's error shape.
    let mut bad_address = valid_mail();
    bad_address["personalizations"][0]["to"][0]["email"] = json!("alex.example.com");
    fake.forbid_key("SG.scope-less");
    let http = client();
    let cases: Vec<(u16, reqwest::RequestBuilder)> = vec![
        (
            400,
            http.post(format!("{}/v3/mail/send", fake.base_url()))
                .bearer_auth(KEY)
                .json(&bad_address),
        ),
        (
            401,
            http.post(format!("{}/v3/mail/send", fake.base_url()))
                .json(&valid_mail()),
        ),
        (
            401,
            http.post(format!("{}/v3/mail/send", fake.base_url()))
                .bearer_auth("SG.unknown")
                .json(&valid_mail()),
        ),
        (
            403,
            http.post(format!("{}/v3/mail/send", fake.base_url()))
                .bearer_auth("SG.scope-less")
                .json(&valid_mail()),
        ),
        (
            404,
            http.post(format!("{}/v3/mail/sned", fake.base_url()))
                .bearer_auth(KEY)
                .json(&valid_mail()),
        ),
        (
            405,
            http.get(format!("{}/v3/mail/send", fake.base_url()))
                .bearer_auth(KEY),
        ),
    ];
    for (status, request) in cases {
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), status);
        assert!(
            documented.contains_key(&status.to_string()),
            "{status} is not documented"
        );
        let body: Value = response.json().await.expect("JSON error body");
        let problems = contract::check(&document, error_schema, &body);
        assert!(problems.is_empty(), "{status}: {problems:#?}");
        assert!(!body["errors"].as_array().expect("errors").is_empty());
    }
    let response = send(&fake, KEY, &bad_address).await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["errors"][0]["field"], "personalizations.0.to.0.email");
    assert_eq!(
        body["errors"][0]["message"],
        "Does not contain a valid address."
    );

    fake.max_body(16);
    let response = send(&fake, KEY, &valid_mail()).await;
    assert_eq!(response.status(), 413);
    assert!(documented.contains_key("413"));
    fake.max_body(gardien_fakes::sendgrid::MAX_BODY_BYTES);

    fake.fail_next(1, 500);
    let response = send(&fake, KEY, &valid_mail()).await;
    assert_eq!(response.status(), 500);
    assert!(documented.contains_key("500"));
    let body: Value = response.json().await.expect("json");
    assert!(contract::check(&document, error_schema, &body).is_empty());

    // 429 (from the providers' documentation, not the OpenAPI document): rate-limit headers.
    fake.rate_limit(1, 1_900_000_000);
    let response = send(&fake, KEY, &valid_mail()).await;
    assert_eq!(response.status(), 429);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("x-ratelimit-reset").as_deref(), Some("1900000000"));
    assert_eq!(header("x-ratelimit-remaining").as_deref(), Some("0"));
    assert!(header("x-ratelimit-limit").is_some());
    let body: Value = response.json().await.expect("json");
    assert!(contract::check(&document, error_schema, &body).is_empty());

    // Every request was recorded with its answer.
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&413) && statuses.contains(&429) && statuses.contains(&405));
}

fn form_fields(document: &Value) -> &serde_json::Map<String, Value> {
    document
        .pointer("/paths/~12010-04-01~1Accounts~1{AccountSid}~1Messages.json/post/requestBody/content/application~1x-www-form-urlencoded/schema/properties")
        .and_then(Value::as_object)
        .expect("CreateMessage form fields")
}

async fn create(
    fake: &FakeTwilio,
    sid: &str,
    token: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client()
        .post(format!(
            "{}/2010-04-01/Accounts/{sid}/Messages.json",
            fake.base_url()
        ))
        .basic_auth(sid, Some(token))
        .form(form)
        .send()
        .await
        .expect("request")
}

fn check_error(body: &Value, code: u64, status: u16) {
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}"),
        "{body}"
    );
}

#[tokio::test]
async fn twilio_answers_follow_the_contract() {
    let document = load(contract::TWILIO);
    let fields = form_fields(&document);
    for name in ["To", "From", "MessagingServiceSid", "Body"] {
        assert!(fields.contains_key(name), "{name}");
    }
    let operation = document
        .pointer("/paths/~12010-04-01~1Accounts~1{AccountSid}~1Messages.json/post")
        .expect("CreateMessage");
    assert_eq!(
        operation
            .pointer("/requestBody/content/application~1x-www-form-urlencoded/schema/required"),
        Some(&json!(["To"]))
    );
    let schema = contract::resolve(&document, "#/components/schemas/api.v2010.account.message")
        .expect("message schema");
    let example = operation
        .pointer("/responses/201/content/application~1json/examples/create/value")
        .and_then(Value::as_object)
        .expect("201 example");

    let fake = FakeTwilio::start().await;
    let sid = fake_twilio::random_account_sid();
    let token = fake_twilio::random_auth_token();
    fake.add_account(&sid, &token);

    for form in [
        vec![
            ("To", "+14155552345"),
            ("From", "+14155550000"),
            ("Body", "Hello! 👍"),
        ],
        vec![
            ("To", "+14155552345"),
            ("MessagingServiceSid", "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("Body", "Hi"),
        ],
    ] {
        let response = create(&fake, &sid, &token, &form).await;
        assert_eq!(response.status(), 201);
        assert!(operation["responses"].get("201").is_some());
        let resource: Value = response.json().await.expect("resource");
        let problems = contract::check(&document, schema, &resource);
        assert!(problems.is_empty(), "{problems:#?}");
        let keys: Vec<&String> = resource.as_object().expect("object").keys().collect();
        let mut expected: Vec<&String> = example.keys().collect();
        expected.sort();
        let mut actual = keys.clone();
        actual.sort();
        assert_eq!(actual, expected, "the resource has the example's fields");
        let message_sid = resource["sid"].as_str().expect("sid");
        assert!(message_sid.starts_with("SM") && message_sid.len() == 34);
        assert_eq!(resource["account_sid"], sid.as_str());
        assert_eq!(
            resource["uri"],
            format!("/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json")
        );
    }
    assert_eq!(fake.messages().len(), 2);

    // Errors: {code, message, more_info, status}.
    let response = create(
        &fake,
        &sid,
        "wrong-token",
        &[
            ("To", "+14155552345"),
            ("From", "+14155550000"),
            ("Body", "x"),
        ],
    )
    .await;
    assert_eq!(response.status(), 401);
    check_error(&response.json().await.expect("json"), 20003, 401);
    let response = create(
        &fake,
        &sid,
        &token,
        &[("From", "+14155550000"), ("Body", "x")],
    )
    .await;
    assert_eq!(response.status(), 400);
    check_error(&response.json().await.expect("json"), 21604, 400);
    let response = create(
        &fake,
        &sid,
        &token,
        &[("To", "+14155552345"), ("Body", "x")],
    )
    .await;
    check_error(&response.json().await.expect("json"), 21603, 400);
    let response = create(
        &fake,
        &sid,
        &token,
        &[("To", "+14155552345"), ("From", "+14155550000")],
    )
    .await;
    check_error(&response.json().await.expect("json"), 21602, 400);
    fake.rate_limit(1, None);
    let response = create(
        &fake,
        &sid,
        &token,
        &[
            ("To", "+14155552345"),
            ("From", "+14155550000"),
            ("Body", "x"),
        ],
    )
    .await;
    assert_eq!(response.status(), 429);
    check_error(&response.json().await.expect("json"), 20429, 429);

    // Test credentials: the documented magic numbers, nothing delivered.
    let test_sid = fake_twilio::random_account_sid();
    let test_token = fake_twilio::random_auth_token();
    fake.add_test_account(&test_sid, &test_token);
    let delivered = fake.messages().len();
    let ok = create(
        &fake,
        &test_sid,
        &test_token,
        &[
            ("To", "+14155552345"),
            ("From", "+15005550006"),
            ("Body", "x"),
        ],
    )
    .await;
    assert_eq!(ok.status(), 201);
    let resource: Value = ok.json().await.expect("resource");
    assert!(contract::check(&document, schema, &resource).is_empty());
    for (to, code) in [
        ("+15005550001", 21211),
        ("+15005550002", 21612),
        ("+15005550004", 21610),
    ] {
        let response = create(
            &fake,
            &test_sid,
            &test_token,
            &[("To", to), ("From", "+15005550006"), ("Body", "x")],
        )
        .await;
        assert_eq!(response.status(), 400, "{to}");
        check_error(&response.json().await.expect("json"), code, 400);
    }
    assert_eq!(fake.messages().len(), delivered);
}

#[tokio::test]
async fn down_means_connection_refused_and_back_means_the_same_port() {
    let fake = FakeSendGrid::start().await;
    fake.accept_key(KEY);
    let addr = fake.addr();
    // A kept-alive connection is open when it goes down.
    let http = client();
    let url = format!("{}/v3/mail/send", fake.base_url());
    let first = http
        .post(&url)
        .bearer_auth(KEY)
        .json(&valid_mail())
        .send()
        .await
        .expect("up");
    assert_eq!(first.status(), 202);

    fake.go_down().await;
    assert!(!fake.is_up());
    let refused = tokio::net::TcpStream::connect(addr)
        .await
        .expect_err("refused");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(http
        .post(&url)
        .bearer_auth(KEY)
        .json(&valid_mail())
        .send()
        .await
        .is_err());

    fake.come_back().await;
    assert_eq!(fake.addr(), addr);
    let again = http
        .post(&url)
        .bearer_auth(KEY)
        .json(&valid_mail())
        .send()
        .await
        .expect("back");
    assert_eq!(again.status(), 202);

    // Slow answers are slow.
    fake.delay(Duration::from_millis(300));
    let started = std::time::Instant::now();
    http.post(&url)
        .bearer_auth(KEY)
        .json(&valid_mail())
        .send()
        .await
        .expect("slow");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let requests = fake.requests();
    assert!(requests
        .windows(2)
        .all(|w| w[0].received_at <= w[1].received_at));
}

/// The copies the tests read are the team's contracts: when `shared/contracts/` is beside
/// the repository (the team's checkout; a bare clone has only the copies), every copy must
/// be identical to its original, so an updated contract cannot be missed.
#[test]
fn the_copies_are_the_shared_contracts() {
    let shared = gardien_fakes::contract::shared_dir();
    if !shared.is_dir() {
        println!(
            "{} is not beside this checkout: nothing to compare",
            shared.display()
        );
        return;
    }
    for file in [
        gardien_fakes::contract::SENDGRID,
        gardien_fakes::contract::TWILIO,
        "README.md",
    ] {
        let original = std::fs::read(shared.join(file)).expect("the shared contract");
        let copy =
            std::fs::read(gardien_fakes::contract::contracts_dir().join(file)).expect("the copy");
        assert!(
            original == copy,
            "crates/gardien-fakes/contracts/{file} differs from {}: copy it again",
            shared.join(file).display()
        );
    }
}
