//! The JSON lines Cloud Logging reads from a container's stderr
//! (<https://cloud.google.com/logging/docs/structured-logging>): `severity` in its names,
//! `message`, `time` (RFC 3339), the event's fields, and, on every line emitted inside a
//! request's span, `logging.googleapis.com/trace`, `…/spanId` and `…/trace_sampled`.
//!
//! Written by hand (a small `Layer`) because no crate does this well for us:
//! `tracing_subscriber`'s own JSON format cannot rename `level` to `severity` nor lift span
//! fields to top-level keys with Cloud Logging's names, and `tracing-stackdriver` reads the
//! trace only from OpenTelemetry span data, which would bring the whole OpenTelemetry SDK
//! to carry two ids we already hold (gardien decides which trace to believe itself).

use std::io::Write;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::{SPAN_ID_FIELD, TRACE_ID_FIELD, TRACE_SAMPLED_FIELD};

/// Cloud Logging's keys for the trace of a line.
pub const TRACE_KEY: &str = "logging.googleapis.com/trace";
pub const SPAN_ID_KEY: &str = "logging.googleapis.com/spanId";
pub const TRACE_SAMPLED_KEY: &str = "logging.googleapis.com/trace_sampled";
/// Fields named `httpRequest.<name>` are gathered into Cloud Logging's `httpRequest` object.
pub const HTTP_REQUEST: &str = "httpRequest";
/// The severities Cloud Logging knows that an event may name in a `severity` field (e.g.
/// `severity = "CRITICAL"`, which `tracing` has no level for).
const SEVERITIES: [&str; 8] = [
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "ALERT",
    "EMERGENCY",
];

/// Writes each event as one JSON object on one line.
#[derive(Debug)]
pub struct CloudLoggingLayer<W> {
    /// `GOOGLE_CLOUD_PROJECT`: the trace key needs it; without it the trace id is written
    /// as a plain `trace_id` field.
    project: Option<String>,
    make_writer: W,
}

impl<W> CloudLoggingLayer<W> {
    pub fn new(project: Option<String>, make_writer: W) -> Self {
        CloudLoggingLayer {
            project,
            make_writer,
        }
    }
}

/// The fields of a span, kept in its extensions for the events inside it.
struct SpanFields(Map<String, Value>);

/// Collects fields as JSON values.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.0.insert(field.name().to_owned(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<W> CloudLoggingLayer<W> {
    /// A span field onto the line: the trace fields under Cloud Logging's keys.
    fn put_span_field(&self, line: &mut Map<String, Value>, name: &str, value: &Value) {
        match (name, &self.project, value) {
            (TRACE_ID_FIELD, Some(project), Value::String(id)) => {
                line.insert(
                    TRACE_KEY.to_owned(),
                    format!("projects/{project}/traces/{id}").into(),
                );
            }
            (SPAN_ID_FIELD, _, _) => {
                line.insert(SPAN_ID_KEY.to_owned(), value.clone());
            }
            (TRACE_SAMPLED_FIELD, _, _) => {
                line.insert(TRACE_SAMPLED_KEY.to_owned(), value.clone());
            }
            _ => {
                line.insert(name.to_owned(), value.clone());
            }
        }
    }

    /// The JSON object of one event.
    fn render<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>) -> Map<String, Value>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let named = match fields.remove("severity") {
            Some(Value::String(s)) if SEVERITIES.contains(&s.as_str()) => Some(s),
            Some(other) => {
                fields.insert("severity_field".to_owned(), other);
                None
            }
            None => None,
        };
        let mut line = Map::new();
        line.insert(
            "severity".to_owned(),
            named.map_or_else(|| severity(metadata.level()).into(), Value::String),
        );
        let message = match fields.remove("message") {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        line.insert("message".to_owned(), message.into());
        line.insert(
            "time".to_owned(),
            humantime::format_rfc3339_micros(SystemTime::now())
                .to_string()
                .into(),
        );
        line.insert("target".to_owned(), metadata.target().into());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(span_fields)) = span.extensions().get::<SpanFields>() {
                    for (name, value) in span_fields {
                        self.put_span_field(&mut line, name, value);
                    }
                }
            }
        }
        let mut http_request = Map::new();
        for (name, value) in fields {
            if name.starts_with("log.") {
                // `log` records carry their origin here; `target` already says it.
                continue;
            }
            match name.strip_prefix("httpRequest.") {
                Some(inner) => {
                    http_request.insert(inner.to_owned(), value);
                }
                None => {
                    line.insert(name, value);
                }
            }
        }
        if !http_request.is_empty() {
            line.insert(HTTP_REQUEST.to_owned(), Value::Object(http_request));
        }
        line
    }
}

impl<S, W> Layer<S> for CloudLoggingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let line = self.render(event, &ctx);
        let Ok(mut bytes) = serde_json::to_vec(&line) else {
            return;
        };
        bytes.push(b'\n');
        // One write per line, so lines of concurrent requests never interleave.
        let _ = self.make_writer.make_writer().write_all(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::trace_context::TraceContext;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("the buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    fn lines(project: Option<&str>, emit: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let layer = CloudLoggingLayer::new(project.map(str::to_owned), buffer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().expect("the buffer").clone();
        String::from_utf8(bytes)
            .expect("UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    #[test]
    fn a_line_has_severity_message_time_and_fields() {
        let out = lines(None, || {
            tracing::warn!(
                upstream = "api",
                attempts = 3_u64,
                "upstream request failed"
            );
            tracing::error!(severity = "CRITICAL", "policy refused");
            tracing::debug!("detail");
        });
        assert_eq!(out[0]["severity"], "WARNING");
        assert_eq!(out[0]["message"], "upstream request failed");
        assert_eq!(out[0]["upstream"], "api");
        assert_eq!(out[0]["attempts"], 3);
        let time = out[0]["time"].as_str().expect("a time");
        humantime::parse_rfc3339(time).expect("RFC 3339");
        assert_eq!(out[1]["severity"], "CRITICAL");
        assert_eq!(out[2]["severity"], "DEBUG");
        assert!(
            out[0].get(TRACE_KEY).is_none(),
            "no trace outside a request"
        );
    }

    #[test]
    fn lines_inside_a_request_carry_its_trace() {
        let context = TraceContext::new_root(true);
        let out = lines(Some("my-project"), || {
            let span = crate::request_span(&context);
            span.in_scope(|| tracing::info!(status = 200_u64, "inside"));
            tracing::info!("outside");
        });
        assert_eq!(
            out[0][TRACE_KEY],
            format!("projects/my-project/traces/{}", context.trace_id_hex())
        );
        assert_eq!(out[0][SPAN_ID_KEY], context.span_id_hex());
        assert_eq!(out[0][TRACE_SAMPLED_KEY], true);
        assert!(out[1].get(TRACE_KEY).is_none());
        assert!(out[1].get(SPAN_ID_KEY).is_none());
    }

    #[test]
    fn without_a_project_the_trace_id_is_a_plain_field() {
        let context = TraceContext::new_root(false);
        let out = lines(None, || {
            crate::request_span(&context).in_scope(|| tracing::info!("inside"));
        });
        assert!(out[0].get(TRACE_KEY).is_none());
        assert_eq!(out[0]["trace_id"], context.trace_id_hex());
        assert_eq!(out[0][SPAN_ID_KEY], context.span_id_hex());
    }

    #[test]
    fn http_request_fields_are_one_object() {
        let out = lines(None, || {
            tracing::info!(
                httpRequest.requestMethod = "GET",
                httpRequest.status = 204_u64,
                httpRequest.latency = "0.012000s",
                "request"
            );
        });
        assert_eq!(out[0][HTTP_REQUEST]["requestMethod"], "GET");
        assert_eq!(out[0][HTTP_REQUEST]["status"], 204);
        assert_eq!(out[0][HTTP_REQUEST]["latency"], "0.012000s");
        assert!(out[0].get("httpRequest.status").is_none());
    }
}
