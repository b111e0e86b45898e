//! The span of one outbox row's publication, from its enqueueing to the broker's
//! acknowledgement: a child of the request that stored the event (the row's `traceparent`), and
//! the parent named in the message's own `traceparent`, so a trace runs from the request
//! through the publication into every consumer's processing.
//!
//! Spans inside a trace are exported only when spans are exported at all; when they are not,
//! this span is disabled, no ids are minted, and the message carries the stored `traceparent`
//! as it is (consumers then continue the request's span directly).

use chronicle_application::data::trace::TraceContext;
use tracing::field::Empty;
use tracing::{Level, Span};

/// A row's publication span and the `traceparent` its message carries.
pub(super) struct PublishSpan {
    span: Span,
    traceparent: String,
}

impl PublishSpan {
    /// Opens the span of publishing a row to `topic` whose stored `traceparent` is `stored`;
    /// `None` when the row has none or publication spans are not wanted.
    pub(super) fn open(topic: &str, stored: Option<&str>) -> Option<Self> {
        if !tracing::span_enabled!(Level::DEBUG) {
            return None;
        }
        let trace = TraceContext::continue_from(Some(stored?));
        let span = tracing::debug_span!(
            "publish",
            otel.name = format!("send {topic}"),
            otel.kind = "producer",
            otel.status_code = Empty,
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.destination.name = topic,
            messaging.destination.partition.id = Empty,
            messaging.kafka.offset = Empty,
            trace_id = trace.trace_id(),
            span_id = trace.span_id(),
            parent_span_id = trace.parent_span_id(),
            sampled = trace.sampled(),
        );
        Some(Self {
            span,
            traceparent: trace.header(),
        })
    }

    /// The `traceparent` the message carries: this span's.
    pub(super) fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The broker took the message at `partition` and `offset`; the span ends with `self`.
    pub(super) fn delivered(self, partition: i32, offset: i64) {
        self.span
            .record("messaging.destination.partition.id", partition.to_string())
            .record("messaging.kafka.offset", offset);
    }

    /// The publication failed (it is retried, as a new span).
    pub(super) fn failed(self) {
        self.span.record("otel.status_code", "ERROR");
    }
}
