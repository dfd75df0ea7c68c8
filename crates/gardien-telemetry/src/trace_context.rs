//! W3C Trace Context (`traceparent`, <https://www.w3.org/TR/trace-context/>) and Google's
//! older `X-Cloud-Trace-Context`, parsed and written the same way by both binaries. Whether
//! an incoming one is believed is the caller's decision (gardien: only from a trusted hop).

use std::fmt;

/// The `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header (vendor data that travels with a believed `traceparent`).
pub const TRACESTATE: &str = "tracestate";
/// Google's front ends' own header: `TRACE_ID/SPAN_ID;o=1` (span id in decimal).
pub const X_CLOUD_TRACE_CONTEXT: &str = "x-cloud-trace-context";

/// One span of a trace: the trace id, this span's id, and the sampled flag.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.traceparent())
    }
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        // All zeros is invalid for both ids (W3C §3.2.2.3, §3.2.2.4).
        if bytes.iter().any(|&b| b != 0) {
            return bytes;
        }
    }
}

/// Lower-case hex only, as the specification requires.
fn is_lower_hex(text: &[u8]) -> bool {
    text.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `N` bytes from exactly `2N` lower-case hex digits, not all zero.
fn hex_exact<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N || !is_lower_hex(text) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    out.iter().any(|&b| b != 0).then_some(out)
}

impl TraceContext {
    /// A new trace: random ids, `sampled` as the caller decides.
    pub fn new_root(sampled: bool) -> Self {
        TraceContext {
            trace_id: random_nonzero(),
            span_id: random_nonzero(),
            sampled,
        }
    }

    /// A span of the same trace, child of this one: a new span id, the same flag.
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id,
            span_id: random_nonzero(),
            sampled: self.sampled,
        }
    }

    /// Parses a `traceparent` value: `00-<32 hex>-<16 hex>-<2 hex>`. A later version is read
    /// by its first four fields, as the specification says; version `ff` and all-zero ids
    /// are invalid.
    pub fn from_traceparent(value: &[u8]) -> Option<Self> {
        let value = value.trim_ascii();
        if value.len() < 55 {
            return None;
        }
        let (head, rest) = value.split_at(55);
        let version = &head[0..2];
        if !is_lower_hex(version) || version == b"ff" {
            return None;
        }
        if version == b"00" && !rest.is_empty() {
            return None;
        }
        if version != b"00" && rest.first().is_some_and(|&b| b != b'-') {
            return None;
        }
        if head[2] != b'-' || head[35] != b'-' || head[52] != b'-' {
            return None;
        }
        let trace_id = hex_exact::<16>(&head[3..35])?;
        let span_id = hex_exact::<8>(&head[36..52])?;
        let flags = &head[53..55];
        if !is_lower_hex(flags) {
            return None;
        }
        let mut flag = [0u8; 1];
        hex::decode_to_slice(flags, &mut flag).ok()?;
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flag[0] & 1 == 1,
        })
    }

    /// Parses `X-Cloud-Trace-Context`: `TRACE_ID/SPAN_ID;o=OPTIONS` (span id decimal, `o=1`
    /// sampled; the span and options parts may be missing).
    pub fn from_cloud_trace_context(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value.trim_ascii()).ok()?;
        let (trace, rest) = text.split_once('/').unwrap_or((text, ""));
        let trace_id = hex_exact::<16>(trace.to_ascii_lowercase().as_bytes())?;
        let (span, options) = rest.split_once(';').unwrap_or((rest, ""));
        let span_id = match span {
            "" => random_nonzero(),
            decimal => {
                let id: u64 = decimal.parse().ok()?;
                if id == 0 {
                    return None;
                }
                id.to_be_bytes()
            }
        };
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: options == "o=1",
        })
    }

    /// The trace id in lower-case hex (32 characters).
    pub fn trace_id_hex(&self) -> String {
        lower_hex(&self.trace_id)
    }

    /// The span id in lower-case hex (16 characters), as Cloud Logging's `spanId` takes it.
    pub fn span_id_hex(&self) -> String {
        lower_hex(&self.span_id)
    }

    /// This span as a `traceparent` value (version 00), in one allocation: the gateway
    /// writes one on every proxied request.
    pub fn traceparent(&self) -> String {
        let mut trace = [0u8; 32];
        let mut span = [0u8; 16];
        encode(&self.trace_id, &mut trace);
        encode(&self.span_id, &mut span);
        let mut value = Vec::with_capacity(55);
        value.extend_from_slice(b"00-");
        value.extend_from_slice(&trace);
        value.push(b'-');
        value.extend_from_slice(&span);
        value.extend_from_slice(if self.sampled { b"-01" } else { b"-00" });
        String::from_utf8(value).unwrap_or_else(|_| unreachable!("hex digits are ASCII"))
    }
}

/// `bytes` as lower-case hex in `out` (twice as long). `hex::encode_to_slice`, not
/// `hex::encode`: the latter collects a `String` one `char` at a time, several times slower.
fn encode(bytes: &[u8], out: &mut [u8]) {
    hex::encode_to_slice(bytes, out).unwrap_or_else(|_| unreachable!("out is twice as long"));
}

fn lower_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    encode(bytes, &mut out);
    String::from_utf8(out).unwrap_or_else(|_| unreachable!("hex digits are ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let context = TraceContext::from_traceparent(GOOD.as_bytes()).expect("valid");
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id_hex(), "00f067aa0ba902b7");
        assert!(context.sampled);
        assert_eq!(context.traceparent(), GOOD);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert_eq!(
                TraceContext::from_traceparent(bad.as_bytes()),
                None,
                "{bad}"
            );
        }
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        assert!(TraceContext::from_traceparent(later.as_bytes()).is_some());
    }

    #[test]
    fn cloud_trace_context_is_read() {
        let value = b"4BF92F3577B34DA6A3CE929D0E0E4736/1;o=1";
        let context = TraceContext::from_cloud_trace_context(value).expect("valid");
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id_hex(), "0000000000000001");
        assert!(context.sampled);
        let unsampled = b"4bf92f3577b34da6a3ce929d0e0e4736/12345;o=0";
        assert!(
            !TraceContext::from_cloud_trace_context(unsampled)
                .expect("valid")
                .sampled
        );
        assert!(TraceContext::from_cloud_trace_context(b"nothex/1;o=1").is_none());
    }

    #[test]
    fn children_keep_the_trace_and_change_the_span() {
        let root = TraceContext::new_root(false);
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert!(!child.sampled);
        assert_ne!(TraceContext::new_root(false).trace_id, root.trace_id);
    }
}
