//! Which trace a request belongs to (W3C `traceparent`). An incoming trace is believed only
//! from a trusted hop, i.e. when the client address was found through the platform's
//! forwarding headers (`client_ip`, [`ClientAddress::forwarded`]): Google's front ends set
//! `traceparent` and `X-Cloud-Trace-Context` (`traceparent` is read first). From anyone
//! else gardien starts a new trace, so a client can neither force sampling nor choose ids.
//! Upstream gets a `traceparent` whose parent is gardien's own span; a `tracestate` travels
//! only with a believed `traceparent`, and `X-Cloud-Trace-Context` never does.

use gardien_telemetry::trace_context::{TRACEPARENT, TRACESTATE, X_CLOUD_TRACE_CONTEXT};
use gardien_telemetry::TraceContext;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::edge::client_address::ClientAddress;

const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);
const TRACESTATE_HEADER: HeaderName = HeaderName::from_static(TRACESTATE);
const CLOUD_TRACE_HEADER: HeaderName = HeaderName::from_static(X_CLOUD_TRACE_CONTEXT);

/// Whether a trace gardien starts is sampled. gardien records no spans itself; a trace it
/// starts is not sampled, so a tracer behind it samples by its own rule, never the client's.
pub const NEW_TRACE_SAMPLED: bool = false;

/// The trace of one request as gardien sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTrace {
    /// gardien's own span: the trace id and flag kept or started, a new span id.
    pub span: TraceContext,
    /// The incoming `traceparent` was believed (its `tracestate` may go upstream).
    pub continued_traceparent: bool,
}

/// The one value of `name`, if there is exactly one.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

impl RequestTrace {
    /// Continues the trace of a trusted hop, or starts a new one.
    pub fn start(headers: &HeaderMap, client: &ClientAddress) -> Self {
        if client.forwarded {
            let traceparent = single(headers, &TRACEPARENT_HEADER)
                .and_then(|v| TraceContext::from_traceparent(v.as_bytes()));
            if let Some(parent) = traceparent {
                return RequestTrace {
                    span: parent.child(),
                    continued_traceparent: true,
                };
            }
            let cloud = single(headers, &CLOUD_TRACE_HEADER)
                .and_then(|v| TraceContext::from_cloud_trace_context(v.as_bytes()));
            if let Some(parent) = cloud {
                return RequestTrace {
                    span: parent.child(),
                    continued_traceparent: false,
                };
            }
        }
        RequestTrace {
            span: TraceContext::new_root(NEW_TRACE_SAMPLED),
            continued_traceparent: false,
        }
    }

    /// Sets the upstream request's trace headers: `traceparent` with gardien's span as
    /// parent, the client's trace headers removed unless believed.
    pub fn write_upstream(&self, headers: &mut HeaderMap) {
        headers.remove(CLOUD_TRACE_HEADER);
        if !self.continued_traceparent {
            headers.remove(TRACESTATE_HEADER);
        }
        if let Ok(value) = HeaderValue::try_from(self.span.traceparent()) {
            headers.insert(TRACEPARENT_HEADER, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn client(forwarded: bool) -> ClientAddress {
        ClientAddress {
            ip: std::net::IpAddr::from([198, 51, 100, 7]),
            forwarded,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_trusted_hops_traceparent_is_continued() {
        let incoming = headers(&[("traceparent", INCOMING), ("tracestate", "g=1")]);
        let trace = RequestTrace::start(&incoming, &client(true));
        assert_eq!(trace.span.trace_id_hex(), TRACE);
        assert_ne!(trace.span.span_id_hex(), "00f067aa0ba902b7");
        assert!(trace.span.sampled);
        let mut upstream = incoming.clone();
        trace.write_upstream(&mut upstream);
        assert_eq!(upstream["traceparent"], trace.span.traceparent().as_str());
        assert_eq!(upstream["tracestate"], "g=1");
    }

    #[test]
    fn anyone_elses_trace_is_replaced() {
        let incoming = headers(&[
            ("traceparent", INCOMING),
            ("tracestate", "g=1"),
            (
                "x-cloud-trace-context",
                "4bf92f3577b34da6a3ce929d0e0e4736/1;o=1",
            ),
        ]);
        let trace = RequestTrace::start(&incoming, &client(false));
        assert_ne!(trace.span.trace_id_hex(), TRACE);
        assert_eq!(trace.span.sampled, NEW_TRACE_SAMPLED);
        let mut upstream = incoming.clone();
        trace.write_upstream(&mut upstream);
        assert_eq!(upstream["traceparent"], trace.span.traceparent().as_str());
        assert!(upstream.get("tracestate").is_none());
        assert!(upstream.get("x-cloud-trace-context").is_none());
    }

    #[test]
    fn cloud_trace_context_is_the_fallback_of_a_trusted_hop() {
        let incoming = headers(&[(
            "x-cloud-trace-context",
            "4bf92f3577b34da6a3ce929d0e0e4736/7;o=1",
        )]);
        let trace = RequestTrace::start(&incoming, &client(true));
        assert_eq!(trace.span.trace_id_hex(), TRACE);
        assert!(trace.span.sampled);
        let mut upstream = incoming.clone();
        trace.write_upstream(&mut upstream);
        assert!(upstream.get("x-cloud-trace-context").is_none());
    }

    #[test]
    fn a_malformed_or_repeated_traceparent_starts_a_new_trace() {
        for incoming in [
            headers(&[("traceparent", "00-zz-00f067aa0ba902b7-01")]),
            headers(&[("traceparent", INCOMING), ("traceparent", INCOMING)]),
        ] {
            let trace = RequestTrace::start(&incoming, &client(true));
            assert_ne!(trace.span.trace_id_hex(), TRACE);
        }
    }
}
