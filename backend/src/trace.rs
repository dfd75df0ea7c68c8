//! The trace of each request. gardien-backend sits behind gardien, which sends a
//! `traceparent` whose parent is the gateway's span (a client's own is never believed
//! there): the backend continues that trace with a span of its own, so one trace id ties
//! the gateway's lines and the backend's. A request without one (a probe, a test) starts a
//! new, unsampled trace. Every line logged while the request is served is inside its span
//! (`gardien_telemetry::request_span`), and a `debug` line on target
//! `gardien_backend::trace` ends each request.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use gardien_telemetry::trace_context::TRACEPARENT;
use gardien_telemetry::TraceContext;
use tracing::Instrument;

/// The trace a request continues, or a new one.
pub fn context_of(request: &Request) -> TraceContext {
    let mut values = request.headers().get_all(TRACEPARENT).iter();
    let parent = match (values.next(), values.next()) {
        (Some(one), None) => TraceContext::from_traceparent(one.as_bytes()),
        _ => None,
    };
    parent.map_or_else(|| TraceContext::new_root(false), |p| p.child())
}

/// Runs the request inside its span and logs its end (at `debug`, without the query).
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let context = context_of(&request);
    let span = gardien_telemetry::request_span(&context);
    // For the error reports of the request (`crate::request_id` adds the id).
    request.extensions_mut().insert(context);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    async move {
        let response = next.run(request).await;
        tracing::debug!(
            "httpRequest.requestMethod" = method.as_str(),
            "httpRequest.requestUrl" = path.as_str(),
            "httpRequest.status" = response.status().as_u16(),
            "httpRequest.latency" = format!("{:.6}s", started.elapsed().as_secs_f64()).as_str(),
            "request served"
        );
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(traceparents: &[&'static str]) -> Request {
        let mut builder = Request::builder().uri("/healthz");
        for value in traceparents {
            builder = builder.header(TRACEPARENT, *value);
        }
        builder.body(axum::body::Body::empty()).expect("a request")
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_gateways_trace_is_continued_with_a_span_of_its_own() {
        let context = context_of(&request(&[PARENT]));
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(context.span_id_hex(), "00f067aa0ba902b7");
        assert!(context.sampled);
    }

    #[test]
    fn no_or_several_or_bad_traceparents_start_a_new_trace() {
        for traceparents in [&[][..], &[PARENT, PARENT][..], &["00-bad"][..]] {
            let context = context_of(&request(traceparents));
            assert_ne!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(!context.sampled);
        }
    }
}
