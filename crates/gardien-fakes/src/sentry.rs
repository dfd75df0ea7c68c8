//! A fake of Sentry's ingestion endpoint, the envelope protocol
//! (<https://develop.sentry.dev/sdk/envelopes/>): a DSN `http://<key>@127.0.0.1:<port>/<project>`
//! makes an SDK `POST /api/<project>/envelope/` with `X-Sentry-Auth: Sentry sentry_key=<key>,
//! …` (or `?sentry_key=`), a body of newline-separated JSON: the envelope header, then for
//! each item a header (`type`, optional `length` in bytes) and its payload (`length` bytes,
//! or up to the next newline without one).
//!
//! Answers `200 {"id":"<event_id>"}`, `401 {"detail":…}` for an unknown key, `404` for another
//! project, `400` for a body that is not an envelope. Records every request's raw body (so a
//! test can assert a secret is nowhere in what was sent) and every parsed item.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};

/// One envelope as received.
#[derive(Debug, Clone)]
pub struct ReceivedEnvelope {
    /// The raw request body, as the SDK sent it.
    pub raw: Vec<u8>,
    /// The envelope header (`event_id`, `dsn`, `sent_at`…).
    pub header: Value,
    /// The items: `(item header, payload parsed as JSON or as a string)`.
    pub items: Vec<(Value, Value)>,
}

impl ReceivedEnvelope {
    /// The payloads of the items of `type` `event`.
    pub fn events(&self) -> impl Iterator<Item = &Value> {
        self.items
            .iter()
            .filter(|(h, _)| h["type"] == "event")
            .map(|(_, p)| p)
    }
}

#[derive(Debug)]
struct Shared {
    key: String,
    project: String,
    envelopes: Mutex<Vec<ReceivedEnvelope>>,
    notify: tokio::sync::Notify,
}

/// The fake, on `127.0.0.1:0`; stopped on drop.
#[derive(Debug)]
pub struct FakeSentry {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeSentry {
    /// Accepts envelopes for `project` signed with `key`.
    pub async fn start(key: &str, project: &str) -> FakeSentry {
        let shared = Arc::new(Shared {
            key: key.to_owned(),
            project: project.to_owned(),
            envelopes: Mutex::new(Vec::new()),
            notify: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route("/api/{project}/envelope/", post(envelope))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Sentry");
        let addr = listener.local_addr().expect("fake Sentry address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        FakeSentry {
            addr,
            shared,
            shutdown: Some(tx),
        }
    }

    /// The DSN an SDK is configured with to send here.
    pub fn dsn(&self) -> String {
        format!(
            "http://{}@{}/{}",
            self.shared.key, self.addr, self.shared.project
        )
    }

    /// Every envelope received so far.
    pub fn envelopes(&self) -> Vec<ReceivedEnvelope> {
        self.shared.envelopes.lock().clone()
    }

    /// Every event payload received so far, in order.
    pub fn events(&self) -> Vec<Value> {
        self.shared
            .envelopes
            .lock()
            .iter()
            .flat_map(|e| e.events().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// All raw bodies received, concatenated: what left the process.
    pub fn raw(&self) -> Vec<u8> {
        self.shared
            .envelopes
            .lock()
            .iter()
            .flat_map(|e| e.raw.clone())
            .collect()
    }

    /// Waits until an event satisfies `matches`, at most `timeout`; returns it.
    pub async fn wait_event(
        &self,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.notify.notified();
            if let Some(event) = self.events().into_iter().find(|e| matches(e)) {
                return Some(event);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

impl FakeSentry {
    /// Waits (at most `timeout`) for a panic event (an exception of mechanism `panic`) whose
    /// message contains `message`; returns it.
    pub async fn wait_panic(&self, timeout: Duration, message: &str) -> Option<Value> {
        self.wait_event(timeout, |event| {
            let exception = &event["exception"]["values"][0];
            exception["mechanism"]["type"] == "panic"
                && exception["value"]
                    .as_str()
                    .is_some_and(|v| v.contains(message))
        })
        .await
    }
}

impl Drop for FakeSentry {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn envelope(
    State(shared): State<Arc<Shared>>,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if project != shared.project {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"detail": "unknown project"})),
        )
            .into_response();
    }
    if sentry_key(&headers, query.as_deref()).as_deref() != Some(shared.key.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"detail": "invalid api key"})),
        )
            .into_response();
    }
    let Some((header, items)) = parse(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": "invalid envelope"})),
        )
            .into_response();
    };
    let id = header["event_id"].clone();
    shared.envelopes.lock().push(ReceivedEnvelope {
        raw: body.to_vec(),
        header,
        items,
    });
    shared.notify.notify_waiters();
    Json(json!({ "id": id })).into_response()
}

/// The key from `X-Sentry-Auth: Sentry sentry_key=…, …` or the `sentry_key` query parameter.
fn sentry_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(auth) = headers.get("x-sentry-auth").and_then(|v| v.to_str().ok()) {
        let rest = auth.trim().strip_prefix("Sentry")?.trim();
        return rest
            .split(',')
            .filter_map(|part| part.trim().split_once('='))
            .find(|(name, _)| *name == "sentry_key")
            .map(|(_, value)| value.to_owned());
    }
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "sentry_key")
        .map(|(_, value)| value.to_owned())
}

/// Splits an envelope into its header and items; `None` when it is not one.
fn parse(body: &[u8]) -> Option<(Value, Vec<(Value, Value)>)> {
    let (header_line, mut rest) = split_line(body);
    let header: Value = serde_json::from_slice(header_line).ok()?;
    let mut items = Vec::new();
    while !rest.is_empty() {
        let (item_line, after) = split_line(rest);
        if item_line.is_empty() {
            rest = after;
            continue;
        }
        let item: Value = serde_json::from_slice(item_line).ok()?;
        let (payload, after) = match item["length"].as_u64() {
            Some(length) => {
                let length = usize::try_from(length).ok()?;
                let payload = after.get(..length)?;
                let after = &after[length..];
                (payload, after.strip_prefix(b"\n").unwrap_or(after))
            }
            None => split_line(after),
        };
        let payload = serde_json::from_slice(payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()));
        items.push((item, payload));
        rest = after;
    }
    Some((header, items))
}

fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_with_and_without_length_are_read() {
        let body = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n\
{\"type\":\"event\",\"length\":18}\n{\"message\":\"a\\nb\"}\n\
{\"type\":\"attachment\"}\nhello\n";
        let (header, items) = parse(body).expect("an envelope");
        assert_eq!(header["event_id"], "9ec79c33ec9942ab8353589fcb2e04dc");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].1["message"], "a\nb");
        assert_eq!(items[1].1, "hello");
    }

    #[test]
    fn a_body_that_is_not_an_envelope_is_refused() {
        assert!(parse(b"not json\n").is_none());
        assert!(parse(b"{}\n{\"type\":\"event\",\"length\":99}\n{}").is_none());
    }

    #[test]
    fn the_key_is_read_from_the_auth_header_or_the_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-sentry-auth",
            "Sentry sentry_version=7, sentry_client=sentry.rust/0.49.5, sentry_key=abc"
                .parse()
                .expect("header"),
        );
        assert_eq!(sentry_key(&headers, None).as_deref(), Some("abc"));
        assert_eq!(
            sentry_key(&HeaderMap::new(), Some("sentry_version=7&sentry_key=xyz")).as_deref(),
            Some("xyz")
        );
        assert_eq!(sentry_key(&HeaderMap::new(), None), None);
    }
}
