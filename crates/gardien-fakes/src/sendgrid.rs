//! A fake SendGrid Mail Send v3 (`POST /v3/mail/send`) following
//! `shared/contracts/sendgrid_mail_v3.json` and SendGrid's documented behaviour: Bearer API
//! keys, the request body checked against the contract (required fields, non-empty
//! content, valid addresses), `202` with an empty body and `X-Message-Id`, `200` without
//! delivering in sandbox mode, errors as `{"errors":[{"message","field"}]}` (`field` null
//! when no field is at fault; `help` left out, as the contract's `help` is an object and
//! not nullable), `429` with `X-RateLimit-Limit` / `-Remaining` / `-Reset`.
//!
//! ```no_run
//! # async fn demo() {
//! let sendgrid = gardien_fakes::sendgrid::FakeSendGrid::start().await;
//! sendgrid.accept_key("SG.test-key");
//! // point the client at sendgrid.base_url(), send, then:
//! let delivered = sendgrid.deliveries();
//! # }
//! ```

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::switchable::Switchable;

/// SendGrid's limit on a Mail Send request (30 MB).
pub const MAX_BODY_BYTES: usize = 30 * 1024 * 1024;

/// One request the fake received, whatever it answered.
#[derive(Debug, Clone)]
pub struct SendGridRequest {
    /// When the request reached the handler (for latency measurements).
    pub received_at: Instant,
    /// The same moment, on the wall clock.
    pub received_at_system: SystemTime,
    pub method: String,
    pub path: String,
    /// The Bearer token presented, if any.
    pub api_key: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
    /// The status the fake answered.
    pub status: u16,
    /// The `X-Message-Id` it answered, on `202`.
    pub message_id: Option<String>,
}

impl SendGridRequest {
    /// The body as JSON, when it is.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// One message SendGrid would have delivered (a valid request outside sandbox mode), per
/// recipient of each personalization.
#[derive(Debug, Clone, PartialEq)]
pub struct SendGridDelivery {
    pub received_at: Instant,
    /// The `X-Message-Id` of the request that carried it.
    pub message_id: String,
    pub to: String,
    pub from: String,
    pub from_name: Option<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub categories: Vec<String>,
    /// The personalization's `custom_args` over the message's.
    pub custom_args: Map<String, Value>,
}

#[derive(Debug, Default)]
struct Switches {
    keys: HashSet<String>,
    forbidden_keys: HashSet<String>,
    failures: VecDeque<u16>,
    rate_limited: u32,
    rate_limit_reset: u64,
    delay: Duration,
    max_body: Option<usize>,
}

#[derive(Debug, Default)]
struct Shared {
    switches: Mutex<Switches>,
    requests: Mutex<Vec<SendGridRequest>>,
    deliveries: Mutex<Vec<SendGridDelivery>>,
}

/// The fake SendGrid: a real HTTP server on 127.0.0.1.
#[derive(Debug)]
pub struct FakeSendGrid {
    server: Switchable,
    shared: Arc<Shared>,
}

impl FakeSendGrid {
    /// Starts on an ephemeral port; no key is accepted until [`accept_key`](Self::accept_key).
    ///
    /// # Panics
    /// When no loopback port can be bound (a test set-up failure).
    pub async fn start() -> FakeSendGrid {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = Switchable::start(router)
            .await
            .unwrap_or_else(|e| panic!("fake SendGrid: cannot listen on 127.0.0.1: {e}"));
        FakeSendGrid { server, shared }
    }

    /// `http://127.0.0.1:PORT`, for `SENDGRID_API_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// Accepts `key` (with the `mail.send` scope).
    pub fn accept_key(&self, key: &str) {
        let mut switches = self.shared.switches.lock();
        switches.forbidden_keys.remove(key);
        switches.keys.insert(key.to_owned());
    }

    /// Stops accepting `key`: `401` from now on.
    pub fn revoke_key(&self, key: &str) {
        let mut switches = self.shared.switches.lock();
        switches.keys.remove(key);
        switches.forbidden_keys.remove(key);
    }

    /// `key` authenticates but lacks the `mail.send` scope: `403`.
    pub fn forbid_key(&self, key: &str) {
        let mut switches = self.shared.switches.lock();
        switches.keys.remove(key);
        switches.forbidden_keys.insert(key.to_owned());
    }

    /// The next `n` requests answer `status` (`500`, `503`…) with SendGrid's error body.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut switches = self.shared.switches.lock();
        switches.failures.extend(std::iter::repeat_n(status, n));
    }

    /// The next `n` authenticated requests answer `429` with `X-RateLimit-Reset:
    /// reset_epoch` (seconds since the epoch).
    pub fn rate_limit(&self, n: u32, reset_epoch: u64) {
        let mut switches = self.shared.switches.lock();
        switches.rate_limited = n;
        switches.rate_limit_reset = reset_epoch;
    }

    /// Every answer waits `delay` first (zero to stop).
    pub fn delay(&self, delay: Duration) {
        self.shared.switches.lock().delay = delay;
    }

    /// Bodies over `bytes` answer `413` (default [`MAX_BODY_BYTES`]).
    pub fn max_body(&self, bytes: usize) {
        self.shared.switches.lock().max_body = Some(bytes);
    }

    /// Closes the port and every open connection: clients see connection refused.
    pub async fn go_down(&self) {
        self.server.go_down().await;
    }

    /// Listens again on the same port.
    ///
    /// # Panics
    /// When the port cannot be bound again.
    pub async fn come_back(&self) {
        self.server
            .come_back()
            .await
            .unwrap_or_else(|e| panic!("fake SendGrid: cannot listen again: {e}"));
    }

    pub fn is_up(&self) -> bool {
        self.server.is_up()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<SendGridRequest> {
        self.shared.requests.lock().clone()
    }

    /// Every message that would have been delivered, in order.
    pub fn deliveries(&self) -> Vec<SendGridDelivery> {
        self.shared.deliveries.lock().clone()
    }

    /// Forgets recorded requests and deliveries (switches stay).
    pub fn clear(&self) {
        self.shared.requests.lock().clear();
        self.shared.deliveries.lock().clear();
    }
}

/// SendGrid's error body: one `{"message","field"}` per problem.
pub fn error_body(errors: &[(Option<&str>, &str)]) -> Value {
    let errors: Vec<Value> = errors
        .iter()
        .map(|(field, message)| json!({"message": message, "field": field}))
        .collect();
    json!({ "errors": errors })
}

fn error_response(status: StatusCode, errors: &[(Option<&str>, &str)]) -> Response {
    (status, axum::Json(error_body(errors))).into_response()
}

fn status_message(status: u16) -> &'static str {
    match status {
        400 => "invalid request",
        401 => "authorization required",
        403 => "access forbidden",
        404 => "not found",
        405 => "method not allowed",
        413 => "content too large",
        429 => "too many requests",
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "error",
    }
}

/// A 22-character id like SendGrid's (`W86EgYT6SQKk0lRflfLRsA`).
fn new_message_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received_at = Instant::now();
    let received_at_system = SystemTime::now();
    let (delay, max_body) = {
        let switches = shared.switches.lock();
        (switches.delay, switches.max_body.unwrap_or(MAX_BODY_BYTES))
    };
    // A body over the limit (or cut short) is answered 413 without being kept.
    let (bytes, too_large) = match axum::body::to_bytes(body, max_body).await {
        Ok(bytes) => (bytes, false),
        Err(_) => (Bytes::new(), true),
    };
    let api_key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| k.trim().to_owned());
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let request = Incoming {
        method: &method,
        path: uri.path(),
        api_key: api_key.as_deref(),
        content_type: content_type.as_deref(),
        bytes: &bytes,
        too_large,
        received_at,
    };
    let (response, message_id) = answer(&shared, &request);
    shared.requests.lock().push(SendGridRequest {
        received_at,
        received_at_system,
        method: method.to_string(),
        path: uri.path().to_owned(),
        api_key,
        content_type,
        body: bytes,
        status: response.status().as_u16(),
        message_id,
    });
    response
}

/// What [`answer`] looks at.
struct Incoming<'a> {
    method: &'a Method,
    path: &'a str,
    api_key: Option<&'a str>,
    content_type: Option<&'a str>,
    bytes: &'a Bytes,
    too_large: bool,
    received_at: Instant,
}

/// The response to one request, and the message id it gave.
fn answer(shared: &Shared, request: &Incoming<'_>) -> (Response, Option<String>) {
    let Incoming {
        method,
        path,
        api_key,
        content_type,
        bytes,
        too_large,
        received_at,
    } = *request;
    let failure = shared.switches.lock().failures.pop_front();
    if let Some(status) = failure {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            error_response(code, &[(None, status_message(status))]),
            None,
        );
    }
    if path != "/v3/mail/send" {
        return (
            error_response(StatusCode::NOT_FOUND, &[(None, "not found")]),
            None,
        );
    }
    if *method != Method::POST {
        return (
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &[(None, "method not allowed")],
            ),
            None,
        );
    }
    let Some(key) = api_key else {
        return (
            error_response(
                StatusCode::UNAUTHORIZED,
                &[(None, "authorization required")],
            ),
            None,
        );
    };
    {
        let mut switches = shared.switches.lock();
        if switches.forbidden_keys.contains(key) {
            return (
                error_response(StatusCode::FORBIDDEN, &[(None, "access forbidden")]),
                None,
            );
        }
        if !switches.keys.contains(key) {
            return (
                error_response(
                    StatusCode::UNAUTHORIZED,
                    &[(
                        None,
                        "The provided authorization grant is invalid, expired, or revoked",
                    )],
                ),
                None,
            );
        }
        if switches.rate_limited > 0 {
            switches.rate_limited -= 1;
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                &[(None, "too many requests")],
            );
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", HeaderValue::from_static("600"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert(
                "x-ratelimit-reset",
                HeaderValue::from(switches.rate_limit_reset),
            );
            return (response, None);
        }
    }
    if too_large {
        return (
            error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &[(None, "content too large")],
            ),
            None,
        );
    }
    let is_json = content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return (
            error_response(
                StatusCode::BAD_REQUEST,
                &[(None, "Content-Type should be application/json.")],
            ),
            None,
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
        return (
            error_response(StatusCode::BAD_REQUEST, &[(None, "Bad Request")]),
            None,
        );
    };
    let problems = validate(&body);
    if !problems.is_empty() {
        let errors: Vec<(Option<&str>, &str)> = problems
            .iter()
            .map(|(field, message)| (field.as_deref(), message.as_str()))
            .collect();
        return (error_response(StatusCode::BAD_REQUEST, &errors), None);
    }
    let sandbox = body
        .pointer("/mail_settings/sandbox_mode/enable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if sandbox {
        return (StatusCode::OK.into_response(), None);
    }
    let message_id = new_message_id();
    shared
        .deliveries
        .lock()
        .extend(deliveries(&body, &message_id, received_at));
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(value) = HeaderValue::from_str(&message_id) {
        response.headers_mut().insert("x-message-id", value);
    }
    (response, Some(message_id))
}

/// An address SendGrid would take: one `@`, a non-empty local part of at most 64
/// characters, a dotted domain, nothing blank or control.
pub fn is_valid_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && address.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
}

type Problem = (Option<String>, String);

fn problem(field: impl Into<String>, message: &str) -> Problem {
    (Some(field.into()), message.to_owned())
}

fn check_mailbox(
    value: Option<&Value>,
    field: &str,
    problems: &mut Vec<Problem>,
    missing: &str,
    invalid: &str,
) {
    match value {
        Some(Value::Object(mailbox)) => match mailbox.get("email") {
            Some(Value::String(email)) if is_valid_address(email) => {}
            _ => problems.push(problem(format!("{field}.email"), invalid)),
        },
        _ => problems.push(problem(field, missing)),
    }
}

/// Every problem of a Mail Send body, by the rules of the contract's `PostMailSend`
/// schema and SendGrid's documented messages.
pub fn validate(body: &Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(body) = body.as_object() else {
        return vec![(None, "Bad Request".to_owned())];
    };
    let template = body
        .get("template_id")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    let global_subject = body
        .get("subject")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let mut every_personalization_has_subject = true;
    match body.get("personalizations").and_then(Value::as_array) {
        Some(list) if !list.is_empty() && list.len() <= 1000 => {
            for (p, personalization) in list.iter().enumerate() {
                let Some(personalization) = personalization.as_object() else {
                    problems.push(problem(
                        format!("personalizations.{p}"),
                        "Invalid type. Expected: object.",
                    ));
                    continue;
                };
                match personalization.get("to").and_then(Value::as_array) {
                    Some(to) if !to.is_empty() => {
                        for (i, recipient) in to.iter().enumerate() {
                            let email = recipient.get("email").and_then(Value::as_str);
                            if !email.is_some_and(is_valid_address) {
                                problems.push(problem(
                                    format!("personalizations.{p}.to.{i}.email"),
                                    "Does not contain a valid address.",
                                ));
                            }
                        }
                    }
                    _ => problems.push(problem(
                        format!("personalizations.{p}.to"),
                        "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
                    )),
                }
                for list_name in ["cc", "bcc"] {
                    if let Some(list) = personalization.get(list_name) {
                        for (i, recipient) in list.as_array().into_iter().flatten().enumerate() {
                            let email = recipient.get("email").and_then(Value::as_str);
                            if !email.is_some_and(is_valid_address) {
                                problems.push(problem(
                                    format!("personalizations.{p}.{list_name}.{i}.email"),
                                    "Does not contain a valid address.",
                                ));
                            }
                        }
                    }
                }
                if let Some(from) = personalization.get("from") {
                    check_mailbox(
                        Some(from),
                        &format!("personalizations.{p}.from"),
                        &mut problems,
                        "Invalid type. Expected: object.",
                        "The from email does not contain a valid address.",
                    );
                }
                if personalization
                    .get("subject")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    every_personalization_has_subject = false;
                }
                if let Some(args) = personalization.get("custom_args") {
                    match args.as_object() {
                        Some(args) => {
                            for (name, value) in args {
                                if !value.is_string() {
                                    problems.push(problem(
                                        format!("personalizations.{p}.custom_args.{name}"),
                                        "Invalid type. Expected: string.",
                                    ));
                                }
                            }
                        }
                        None => problems.push(problem(
                            format!("personalizations.{p}.custom_args"),
                            "Invalid type. Expected: object.",
                        )),
                    }
                }
            }
        }
        Some(list) if list.len() > 1000 => problems.push(problem(
            "personalizations",
            "The personalizations field can not have more than 1000 personalizations.",
        )),
        _ => problems.push(problem(
            "personalizations",
            "The personalizations field is required and must have at least one personalization.",
        )),
    }
    check_mailbox(
        body.get("from"),
        "from",
        &mut problems,
        "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.",
        "The from email does not contain a valid address.",
    );
    if !template && !global_subject && !every_personalization_has_subject {
        problems.push(problem(
            "subject",
            "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
        ));
    }
    match body.get("content").and_then(Value::as_array) {
        Some(content) if !content.is_empty() => {
            let mut types = Vec::new();
            for (i, block) in content.iter().enumerate() {
                let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
                if kind.is_empty() || kind.contains([';', '\r', '\n']) {
                    problems.push(problem(
                        format!("content.{i}.type"),
                        "The content type cannot contain ';', or CRLF characters, and must be at least 1 character.",
                    ));
                }
                if block.get("value").and_then(Value::as_str).is_none_or(str::is_empty) {
                    problems.push(problem(
                        format!("content.{i}.value"),
                        "The content value must be a string at least one character in length.",
                    ));
                }
                types.push(kind.to_ascii_lowercase());
            }
            let plain = types.iter().position(|t| t == "text/plain");
            let html = types.iter().position(|t| t == "text/html");
            let order_ok = plain.is_none_or(|at| at == 0)
                && html.is_none_or(|at| at == usize::from(plain.is_some()));
            if !order_ok {
                problems.push(problem(
                    "content",
                    "If present, text/plain content must be first, followed by text/html, followed by any other content.",
                ));
            }
        }
        _ if template => {}
        _ => problems.push(problem(
            "content",
            "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block. We typically suggest both text/plain and text/html blocks are included, but only one block is required.",
        )),
    }
    if let Some(categories) = body.get("categories") {
        match categories.as_array() {
            Some(list) => {
                if list.len() > 10 {
                    problems.push(problem(
                        "categories",
                        "You cannot have more than 10 categories per request.",
                    ));
                }
                let mut seen = HashSet::new();
                for (i, category) in list.iter().enumerate() {
                    match category.as_str() {
                        Some(name) if name.chars().count() > 255 => problems.push(problem(
                            format!("categories.{i}"),
                            "A category cannot be more than 255 characters.",
                        )),
                        Some(name) => {
                            if !seen.insert(name) {
                                problems.push(problem("categories", "Categories must be unique."));
                            }
                        }
                        None => problems.push(problem(
                            format!("categories.{i}"),
                            "Invalid type. Expected: string.",
                        )),
                    }
                }
            }
            None => problems.push(problem("categories", "Invalid type. Expected: array.")),
        }
    }
    if let Some(enable) = body
        .get("mail_settings")
        .and_then(|settings| settings.get("sandbox_mode"))
        .and_then(|mode| mode.get("enable"))
    {
        if !enable.is_boolean() {
            problems.push(problem(
                "mail_settings.sandbox_mode.enable",
                "Invalid type. Expected: boolean.",
            ));
        }
    }
    problems
}

fn deliveries(body: &Value, message_id: &str, received_at: Instant) -> Vec<SendGridDelivery> {
    let text = |pointer: &str| {
        body.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let content = |kind: &str| {
        body.get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|block| block.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|block| block.get("value").and_then(Value::as_str))
            .map(str::to_owned)
    };
    let categories: Vec<String> = body
        .get("categories")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    let mut out = Vec::new();
    for personalization in body
        .get("personalizations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let from = personalization.get("from").unwrap_or(&body["from"]);
        let subject = personalization
            .get("subject")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| text("/subject"))
            .unwrap_or_default();
        let mut custom_args = Map::new();
        if let Some(Value::Object(args)) = personalization.get("custom_args") {
            custom_args.extend(args.clone());
        }
        for list in ["to", "cc", "bcc"] {
            for recipient in personalization
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push(SendGridDelivery {
                    received_at,
                    message_id: message_id.to_owned(),
                    to: recipient
                        .get("email")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    from: from
                        .get("email")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    from_name: from.get("name").and_then(Value::as_str).map(str::to_owned),
                    subject: subject.clone(),
                    text: content("text/plain"),
                    html: content("text/html"),
                    categories: categories.clone(),
                    custom_args: custom_args.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Value {
        json!({
            "personalizations": [{"to": [{"email": "alex@example.com"}]}],
            "from": {"email": "orders@example.com"},
            "subject": "Hi",
            "content": [{"type": "text/plain", "value": "a"}, {"type": "text/html", "value": "<p>a</p>"}],
        })
    }

    fn fields(body: &Value) -> Vec<Option<String>> {
        validate(body).into_iter().map(|(field, _)| field).collect()
    }

    #[test]
    fn a_valid_body_has_no_problem() {
        assert!(validate(&valid()).is_empty(), "{:?}", validate(&valid()));
    }

    #[test]
    fn each_rule() {
        let mut body = valid();
        body["personalizations"][0]["to"][0]["email"] = json!("not-an-address");
        assert_eq!(
            fields(&body),
            vec![Some("personalizations.0.to.0.email".into())]
        );

        let mut body = valid();
        body["personalizations"] = json!([]);
        assert_eq!(fields(&body), vec![Some("personalizations".into())]);

        let mut body = valid();
        body.as_object_mut().map(|b| b.remove("from"));
        assert_eq!(fields(&body), vec![Some("from".into())]);

        let mut body = valid();
        body.as_object_mut().map(|b| b.remove("subject"));
        assert_eq!(fields(&body), vec![Some("subject".into())]);
        body["personalizations"][0]["subject"] = json!("per recipient");
        assert!(fields(&body).is_empty());

        let mut body = valid();
        body["content"][0]["value"] = json!("");
        assert_eq!(fields(&body), vec![Some("content.0.value".into())]);

        let mut body = valid();
        body["content"] =
            json!([{"type": "text/html", "value": "x"}, {"type": "text/plain", "value": "y"}]);
        assert_eq!(fields(&body), vec![Some("content".into())]);

        let mut body = valid();
        body["categories"] = json!(["a", "a"]);
        assert_eq!(fields(&body), vec![Some("categories".into())]);
    }

    #[test]
    fn addresses() {
        assert!(is_valid_address("a@b.example"));
        assert!(!is_valid_address("a@b"));
        assert!(!is_valid_address("@b.example"));
        assert!(!is_valid_address("a b@c.example"));
        assert!(!is_valid_address("a@@c.example"));
    }
}
