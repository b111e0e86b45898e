//! A span as the exporter keeps it from its close to its export.

use std::time::SystemTime;

/// A finished span, as OTLP wants it.
#[derive(Debug, Clone)]
pub(crate) struct FinishedSpan {
    pub(super) name: &'static str,
    pub(super) kind: u8,
    pub(super) trace_id: String,
    pub(super) span_id: String,
    pub(super) parent_span_id: Option<String>,
    /// The caller's W3C `tracestate`, when it sent one.
    pub(super) trace_state: Option<String>,
    pub(super) start: SystemTime,
    pub(super) end: SystemTime,
    pub(super) attributes: Vec<(String, String)>,
    /// The span recorded `otel.status_code = "ERROR"`: the service failed it.
    pub(super) error: bool,
}
