//! W3C trace context (`traceparent`), so one trace follows a change from the HTTP request that
//! made it, through the stored event and its Kafka message, into every consumer that reacts.
//!
//! Each hop continues the caller's trace with a span of its own: the API's request span is the
//! child of the client's `traceparent`, and the traceparent stored with the events (and sent as
//! a Kafka header) names that request span, so consumers' spans become its children.

use uuid::Uuid;

/// One span's place in a trace, as the `traceparent` header carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    sampled: bool,
}

impl TraceContext {
    /// Parses a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`). Invalid values, all-zero
    /// ids and version `ff` are refused, as the W3C recommendation says (the caller then starts
    /// a new trace); later versions are read by their first four fields.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && hex(trace_id, 32)
            && hex(span_id, 16)
            && hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && span_id.bytes().any(|b| b != b'0');
        if !valid {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            parent_span_id: None,
            sampled: flags & 1 == 1,
        })
    }

    /// A span in a new trace (nobody upstream sent one).
    pub fn root() -> Self {
        Self {
            trace_id: random_hex(32),
            span_id: random_hex(16),
            parent_span_id: None,
            sampled: true,
        }
    }

    /// A new span in the same trace whose parent is this one.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: random_hex(16),
            parent_span_id: Some(self.span_id.clone()),
            sampled: self.sampled,
        }
    }

    /// The span of work that continues `header` when it is a valid traceparent, or starts a
    /// new trace otherwise.
    pub fn continue_from(header: Option<&str>) -> Self {
        header
            .and_then(Self::parse)
            .map_or_else(Self::root, |parent| parent.child())
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// This span's id: 16 lowercase hex digits.
    pub fn span_id(&self) -> &str {
        &self.span_id
    }

    /// The parent span's id, when this span continues another.
    pub fn parent_span_id(&self) -> Option<&str> {
        self.parent_span_id.as_deref()
    }

    /// Whether the trace is sampled (the caller asked for it to be recorded).
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// The `traceparent` header naming this span as the parent of what follows.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

fn random_hex(len: usize) -> String {
    let mut hex = Uuid::new_v4().simple().to_string();
    hex.truncate(len);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_is_continued_in_a_child_span() {
        let parent = TraceContext::parse(EXAMPLE).unwrap();
        assert_eq!(parent.header(), EXAMPLE);
        let child = TraceContext::continue_from(Some(EXAMPLE));
        assert_eq!(child.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(child.parent_span_id(), Some("00f067aa0ba902b7"));
        assert_ne!(child.span_id(), "00f067aa0ba902b7");
        assert!(child.sampled());
        assert!(TraceContext::parse(&child.header()).is_some());
    }

    #[test]
    fn invalid_headers_start_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
            let started = TraceContext::continue_from(Some(bad));
            assert_eq!(started.parent_span_id(), None);
            assert_eq!(started.trace_id().len(), 32);
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        let parsed = TraceContext::parse(future).unwrap();
        assert!(!parsed.sampled());
    }
}
