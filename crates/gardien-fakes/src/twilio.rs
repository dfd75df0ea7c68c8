//! A fake Twilio Messages API (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`)
//! following `shared/contracts/twilio_api_v2010.json` and Twilio's documented behaviour:
//! HTTP Basic `AccountSid:AuthToken`, a form-encoded body (`To`, `From` or
//! `MessagingServiceSid`, `Body`), `201` with the message resource (`sid` = `SM` + 32 hex),
//! errors as `{"code","message","more_info","status"}`, `429` with code `20429`, `401` with
//! code `20003`. Accounts added with [`FakeTwilio::add_test_account`] behave like test
//! credentials: only `From=+15005550006` succeeds, the magic `To` numbers fail with their
//! documented codes, and nothing is delivered.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::switchable::Switchable;

/// The sender test credentials accept.
pub const TEST_FROM_OK: &str = "+15005550006";
/// Test `To`: invalid number (21211).
pub const TEST_TO_INVALID: &str = "+15005550001";
/// Test `To`: cannot route to this number (21612).
pub const TEST_TO_UNROUTABLE: &str = "+15005550002";
/// Test `To`: no international permission (21408).
pub const TEST_TO_NO_PERMISSION: &str = "+15005550003";
/// Test `To`: the recipient unsubscribed (21610).
pub const TEST_TO_BLOCKED: &str = "+15005550004";
/// Test `To`: not a mobile number (21614).
pub const TEST_TO_NOT_MOBILE: &str = "+15005550009";

/// A random Account SID (`AC` + 32 hex).
pub fn random_account_sid() -> String {
    format!("AC{}", uuid::Uuid::new_v4().simple())
}

/// A random Auth Token (32 hex).
pub fn random_auth_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn new_sid(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// One request the fake received, whatever it answered.
#[derive(Debug, Clone)]
pub struct TwilioRequest {
    /// When the request reached the handler (for latency measurements).
    pub received_at: Instant,
    pub received_at_system: SystemTime,
    pub method: String,
    pub path: String,
    /// The `{AccountSid}` of the path.
    pub path_account_sid: Option<String>,
    /// The Basic auth user and password presented.
    pub basic_auth: Option<(String, String)>,
    pub content_type: Option<String>,
    /// The form fields, in order.
    pub form: Vec<(String, String)>,
    pub status: u16,
    /// The created message's `sid`, on `201`.
    pub sid: Option<String>,
    /// The error code answered, if any.
    pub error_code: Option<u32>,
}

impl TwilioRequest {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A message created on a live (not test) account: what Twilio would deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct TwilioMessage {
    pub received_at: Instant,
    pub sid: String,
    pub account_sid: String,
    pub to: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub body: String,
    /// The resource answered with `201`.
    pub resource: Value,
}

#[derive(Debug, Clone)]
struct Account {
    token: String,
    test: bool,
}

#[derive(Debug, Default)]
struct Switches {
    accounts: HashMap<String, Account>,
    recipient_failures: HashMap<String, u32>,
    failures: VecDeque<u16>,
    rate_limited: u32,
    retry_after: Option<u64>,
    delay: Duration,
}

#[derive(Debug, Default)]
struct Shared {
    switches: Mutex<Switches>,
    requests: Mutex<Vec<TwilioRequest>>,
    messages: Mutex<Vec<TwilioMessage>>,
}

/// The fake Twilio: a real HTTP server on 127.0.0.1.
#[derive(Debug)]
pub struct FakeTwilio {
    server: Switchable,
    shared: Arc<Shared>,
}

impl FakeTwilio {
    /// Starts on an ephemeral port with no account.
    ///
    /// # Panics
    /// When no loopback port can be bound (a test set-up failure).
    pub async fn start() -> FakeTwilio {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = Switchable::start(router)
            .await
            .unwrap_or_else(|e| panic!("fake Twilio: cannot listen on 127.0.0.1: {e}"));
        FakeTwilio { server, shared }
    }

    /// `http://127.0.0.1:PORT`, for `TWILIO_API_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// A live account: messages are created and recorded as deliveries.
    pub fn add_account(&self, sid: &str, token: &str) {
        self.shared.switches.lock().accounts.insert(
            sid.to_owned(),
            Account {
                token: token.to_owned(),
                test: false,
            },
        );
    }

    /// An account with test credentials (magic numbers, nothing delivered).
    pub fn add_test_account(&self, sid: &str, token: &str) {
        self.shared.switches.lock().accounts.insert(
            sid.to_owned(),
            Account {
                token: token.to_owned(),
                test: true,
            },
        );
    }

    /// Rotates an account's Auth Token: the old one answers `401` from now on.
    pub fn set_token(&self, sid: &str, token: &str) {
        if let Some(account) = self.shared.switches.lock().accounts.get_mut(sid) {
            token.clone_into(&mut account.token);
        }
    }

    pub fn remove_account(&self, sid: &str) {
        self.shared.switches.lock().accounts.remove(sid);
    }

    /// Messages to `to` on live accounts fail with `code` (21610 for a number that replied
    /// STOP, 21612, 21614…), answered `400`.
    pub fn fail_recipient(&self, to: &str, code: u32) {
        self.shared
            .switches
            .lock()
            .recipient_failures
            .insert(to.to_owned(), code);
    }

    /// The next `n` requests answer `status` (`500` → 20500, `503` → 20503…).
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared
            .switches
            .lock()
            .failures
            .extend(std::iter::repeat_n(status, n));
    }

    /// The next `n` authenticated requests answer `429` code `20429`, with `Retry-After`
    /// when given.
    pub fn rate_limit(&self, n: u32, retry_after_seconds: Option<u64>) {
        let mut switches = self.shared.switches.lock();
        switches.rate_limited = n;
        switches.retry_after = retry_after_seconds;
    }

    /// Every answer waits `delay` first (zero to stop).
    pub fn delay(&self, delay: Duration) {
        self.shared.switches.lock().delay = delay;
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
            .unwrap_or_else(|e| panic!("fake Twilio: cannot listen again: {e}"));
    }

    pub fn is_up(&self) -> bool {
        self.server.is_up()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<TwilioRequest> {
        self.shared.requests.lock().clone()
    }

    /// Every message created on a live account, in order.
    pub fn messages(&self) -> Vec<TwilioMessage> {
        self.shared.messages.lock().clone()
    }

    /// Forgets recorded requests and messages (switches stay).
    pub fn clear(&self) {
        self.shared.requests.lock().clear();
        self.shared.messages.lock().clear();
    }
}

/// Twilio's error body.
pub fn error_body(code: u32, message: &str, status: u16) -> Value {
    json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    })
}

/// A refusal: status, code, message, and the `Retry-After` seconds of a `429`.
struct Refusal(u16, u32, String, Option<u64>);

impl Refusal {
    fn new(status: u16, code: u32, message: impl Into<String>) -> Refusal {
        Refusal(status, code, message.into(), None)
    }

    fn response(&self) -> Response {
        let status = StatusCode::from_u16(self.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response =
            (status, axum::Json(error_body(self.1, &self.2, self.0))).into_response();
        if let Some(seconds) = self.3 {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}

fn status_code_of(status: u16) -> (u32, &'static str) {
    match status {
        400 => (20001, "Bad Request"),
        401 => (20003, "Authenticate"),
        403 => (20003, "Permission Denied"),
        404 => (20404, "The requested resource was not found"),
        429 => (20429, "Too Many Requests"),
        500 => (20500, "Internal Server Error"),
        502 => (20502, "Bad Gateway"),
        503 => (20503, "Service Unavailable"),
        504 => (20504, "Gateway Timeout"),
        _ => (u32::from(status) * 100, "Error"),
    }
}

fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

fn is_sid(text: &str, prefix: &str) -> bool {
    text.len() == 34 && text.starts_with(prefix) && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Segments of an SMS body: GSM-7 fits 160 characters (153 per part when split), anything
/// else is UCS-2 at 70 (67).
fn segments(body: &str) -> usize {
    const GSM: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€";
    let gsm = body.chars().all(|c| GSM.contains(c));
    let (length, single, part) = if gsm {
        (body.chars().count(), 160, 153)
    } else {
        (body.encode_utf16().count(), 70, 67)
    };
    if length <= single {
        1
    } else {
        length.div_ceil(part)
    }
}

/// `Thu, 24 Aug 2023 05:01:45 +0000`, as the resource's dates are written.
fn rfc2822(at: SystemTime) -> String {
    httpdate::fmt_http_date(at).replace(" GMT", " +0000")
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
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
    let bytes = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .unwrap_or_default();
    let delay = shared.switches.lock().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let path = uri.path().to_owned();
    let path_account_sid = path
        .strip_prefix("/2010-04-01/Accounts/")
        .and_then(|rest| rest.strip_suffix("/Messages.json"))
        .map(str::to_owned);
    let auth = basic_auth(&headers);
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = content_type.as_deref().is_some_and(|t| {
        t.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    let form: Vec<(String, String)> = if is_form {
        serde_urlencoded::from_bytes(&bytes).unwrap_or_default()
    } else {
        Vec::new()
    };
    let outcome = answer(
        &shared,
        &Incoming {
            method: &method,
            path: &path,
            path_sid: path_account_sid.as_deref(),
            auth: auth.as_ref(),
            form: &form,
            received_at,
            now: received_at_system,
        },
    );
    let (response, sid, error_code) = match outcome {
        Ok((response, sid)) => (response, Some(sid), None),
        Err(refusal) => (refusal.response(), None, Some(refusal.1)),
    };
    let mut response = response;
    response.headers_mut().insert(
        "twilio-request-id",
        HeaderValue::from_str(&new_sid("RQ")).unwrap_or(HeaderValue::from_static("RQ")),
    );
    shared.requests.lock().push(TwilioRequest {
        received_at,
        received_at_system,
        method: method.to_string(),
        path,
        path_account_sid,
        basic_auth: auth,
        content_type,
        form,
        status: response.status().as_u16(),
        sid,
        error_code,
    });
    response
}

/// What [`answer`] looks at.
struct Incoming<'a> {
    method: &'a Method,
    path: &'a str,
    path_sid: Option<&'a str>,
    auth: Option<&'a (String, String)>,
    form: &'a [(String, String)],
    received_at: Instant,
    now: SystemTime,
}

/// The created resource and its sid, or the refusal.
fn answer(shared: &Shared, request: &Incoming<'_>) -> Result<(Response, String), Refusal> {
    let Incoming {
        method,
        path,
        path_sid,
        auth,
        form,
        received_at,
        now,
    } = *request;
    let failure = shared.switches.lock().failures.pop_front();
    if let Some(status) = failure {
        let (code, message) = status_code_of(status);
        return Err(Refusal::new(status, code, message));
    }
    let Some(account_sid) = path_sid.filter(|sid| is_sid(sid, "AC")) else {
        return Err(Refusal::new(
            404,
            20404,
            format!("The requested resource {path} was not found"),
        ));
    };
    if *method != Method::POST {
        return Err(Refusal::new(405, 20004, "Method not allowed"));
    }
    let account = {
        let mut switches = shared.switches.lock();
        let account = auth
            .filter(|(user, _)| user == account_sid)
            .and_then(|(user, password)| {
                switches
                    .accounts
                    .get(user)
                    .filter(|a| &a.token == password)
                    .cloned()
            });
        let Some(account) = account else {
            return Err(Refusal::new(401, 20003, "Authenticate"));
        };
        if switches.rate_limited > 0 {
            switches.rate_limited -= 1;
            let mut refusal = Refusal::new(429, 20429, "Too Many Requests");
            refusal.3 = switches.retry_after;
            return Err(refusal);
        }
        account
    };
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|v| !v.is_empty())
    };
    let Some(to) = field("To") else {
        return Err(Refusal::new(400, 21604, "A 'To' phone number is required."));
    };
    let from = field("From");
    let service = field("MessagingServiceSid");
    if from.is_none() && service.is_none() {
        return Err(Refusal::new(
            400,
            21603,
            "A 'From' phone number is required.",
        ));
    }
    if let Some(service) = service {
        if !is_sid(service, "MG") {
            return Err(Refusal::new(
                400,
                21701,
                format!("The Messaging Service Sid {service} is invalid."),
            ));
        }
    }
    let Some(body) = field("Body").or(field("MediaUrl")).or(field("ContentSid")) else {
        return Err(Refusal::new(400, 21602, "Message body is required."));
    };
    if body.chars().count() > 1600 {
        return Err(Refusal::new(
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ));
    }
    if !is_e164(to) {
        return Err(Refusal::new(
            400,
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        ));
    }
    if account.test {
        test_credentials(to, from)?;
    } else {
        let code = shared.switches.lock().recipient_failures.get(to).copied();
        if let Some(code) = code {
            return Err(recipient_refusal(code, to, from.unwrap_or("")));
        }
    }
    let sid = new_sid("SM");
    let date = rfc2822(now);
    let resource = json!({
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": date,
        "date_sent": null,
        "date_updated": date,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from,
        "messaging_service_sid": service,
        "num_media": "0",
        "num_segments": segments(body).to_string(),
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": if service.is_some() && from.is_none() { "accepted" } else { "queued" },
        "subresource_uris": {
            "media": format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"),
        },
        "to": to,
        "uri": format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"),
    });
    if !account.test {
        shared.messages.lock().push(TwilioMessage {
            received_at,
            sid: sid.clone(),
            account_sid: account_sid.to_owned(),
            to: to.to_owned(),
            from: from.map(str::to_owned),
            messaging_service_sid: service.map(str::to_owned),
            body: body.to_owned(),
            resource: resource.clone(),
        });
    }
    Ok((
        (StatusCode::CREATED, axum::Json(resource)).into_response(),
        sid,
    ))
}

fn recipient_refusal(code: u32, to: &str, from: &str) -> Refusal {
    let message = match code {
        21211 => format!("The 'To' number {to} is not a valid phone number."),
        21408 => format!(
            "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."
        ),
        21610 => "Attempt to send to unsubscribed recipient".to_owned(),
        21612 => format!(
            "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: {from} via SMS."
        ),
        21614 => format!("'To' number {to} is not a valid mobile number"),
        _ => "The message could not be sent to this recipient.".to_owned(),
    };
    Refusal::new(400, code, message)
}

/// Test credentials: the magic `From` and `To` numbers of Twilio's documentation.
fn test_credentials(to: &str, from: Option<&str>) -> Result<(), Refusal> {
    // Test credentials know no Messaging Service: only the magic From numbers.
    let Some(from) = from else {
        return Err(Refusal::new(
            400,
            21603,
            "A 'From' phone number is required.",
        ));
    };
    match from {
        TEST_FROM_OK => {}
        "+15005550001" => {
            return Err(Refusal::new(
                400,
                21212,
                format!("The 'From' number {from} is not a valid phone number, shortcode, or alphanumeric sender ID."),
            ))
        }
        "+15005550008" => {
            return Err(Refusal::new(
                400,
                21611,
                "This 'From' number has exceeded the maximum number of queued messages",
            ))
        }
        _ => {
            return Err(Refusal::new(
                400,
                21606,
                format!("The 'From' phone number provided ({from}) is not a valid message-capable Twilio phone number for this destination/account."),
            ))
        }
    }
    let code = match to {
        TEST_TO_INVALID => 21211,
        TEST_TO_UNROUTABLE => 21612,
        TEST_TO_NO_PERMISSION => 21408,
        TEST_TO_BLOCKED => 21610,
        TEST_TO_NOT_MOBILE => 21614,
        _ => return Ok(()),
    };
    Err(recipient_refusal(code, to, from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_count() {
        assert_eq!(segments("hello"), 1);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"ж".repeat(70)), 1);
        assert_eq!(segments(&"ж".repeat(71)), 2);
    }

    #[test]
    fn magic_numbers() {
        assert!(test_credentials("+33612345678", Some(TEST_FROM_OK)).is_ok());
        let code = |to, from| test_credentials(to, from).err().map(|r| r.1);
        assert_eq!(code(TEST_TO_INVALID, Some(TEST_FROM_OK)), Some(21211));
        assert_eq!(code(TEST_TO_UNROUTABLE, Some(TEST_FROM_OK)), Some(21612));
        assert_eq!(code(TEST_TO_BLOCKED, Some(TEST_FROM_OK)), Some(21610));
        assert_eq!(code("+33612345678", Some("+33700000000")), Some(21606));
        assert_eq!(code("+33612345678", None), Some(21603));
    }

    #[test]
    fn dates_look_like_the_contract() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_692_853_305);
        assert_eq!(rfc2822(at), "Thu, 24 Aug 2023 05:01:45 +0000");
    }
}
