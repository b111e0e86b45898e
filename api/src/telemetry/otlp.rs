//! Span export over OTLP/HTTP with JSON encoding, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! Chronicle's spans already carry their W3C ids as fields (`trace_id`, `span_id`,
//! `parent_span_id`, `otel.kind`: see `application::trace`), so exporting them needs no
//! tracing SDK: this layer collects those spans when they close and a background task posts
//! them in batches to `{endpoint}/v1/traces`, the path every OpenTelemetry collector, Jaeger and
//! Tempo accept. Spans without ids (internal plumbing) are not exported. Export never blocks
//! the service: when the queue is full (the collector is slow or away) spans are dropped and
//! counted in `chronicle_otlp_spans_dropped_total`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chronicle_application::error_chain::Chain;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Spans waiting for export at most; beyond, new spans are dropped.
const QUEUE: usize = 8192;
/// Spans per request to the collector at most.
const BATCH: usize = 512;
/// How long a span may wait for its batch to fill.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where and how to export, from the standard OpenTelemetry environment variables.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// The traces URL (`…/v1/traces`).
    pub traces_url: String,
    /// `service.name` of the resource (`OTEL_SERVICE_NAME`, default `chronicle`).
    pub service_name: String,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`, `k=v,k2=v2`), for collectors that
    /// want a key.
    pub headers: Vec<(String, String)>,
}

impl OtlpSettings {
    /// Reads the settings; `None` when no endpoint is set (no export).
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let traces_url = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _) => url,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return None,
        };
        let headers = var("OTEL_EXPORTER_OTLP_HEADERS")
            .map(|raw| {
                raw.split(',')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            traces_url,
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "chronicle".to_owned()),
            headers,
        })
    }
}

/// A finished span, as OTLP wants it.
#[derive(Debug, Clone)]
struct FinishedSpan {
    name: &'static str,
    kind: u8,
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<(String, String)>,
}

/// What a span recorded, kept in its extensions until it closes.
struct OpenSpan {
    start: SystemTime,
    fields: FieldCollector,
}

#[derive(Default)]
struct FieldCollector {
    fields: HashMap<&'static str, String>,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.fields.insert(field.name(), format!("{value:?}"));
    }
}

/// The layer that hands closed spans with W3C ids to the exporter task.
pub struct OtlpLayer {
    spans: mpsc::Sender<FinishedSpan>,
}

impl OtlpLayer {
    /// Starts the exporter task (on the current Tokio runtime) and returns its layer.
    pub fn start(settings: OtlpSettings) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(export(settings, receiver));
        Self { spans: sender }
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let has_ids = attrs.fields().field("trace_id").is_some();
        if !has_ids {
            return;
        }
        let mut fields = FieldCollector::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(OpenSpan {
                start: SystemTime::now(),
                fields,
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(open) = span.extensions_mut().get_mut::<OpenSpan>() {
                values.record(&mut open.fields);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<OpenSpan>() else {
            return;
        };
        let mut fields = open.fields.fields;
        let (Some(trace_id), Some(span_id)) = (fields.remove("trace_id"), fields.remove("span_id"))
        else {
            return;
        };
        let kind = match fields.remove("otel.kind").as_deref() {
            Some("server") => 2,
            Some("client") => 3,
            Some("producer") => 4,
            Some("consumer") => 5,
            _ => 1,
        };
        let finished = FinishedSpan {
            name: span.name(),
            kind,
            trace_id,
            span_id,
            parent_span_id: fields.remove("parent_span_id"),
            start: open.start,
            end: SystemTime::now(),
            attributes: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        };
        if self.spans.try_send(finished).is_err() {
            metrics::counter!("chronicle_otlp_spans_dropped_total").increment(1);
        }
    }
}

/// Posts batches until the layer is gone.
async fn export(settings: OtlpSettings, mut receiver: mpsc::Receiver<FinishedSpan>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(error = %Chain(&error), "cannot build the OTLP client; spans are not exported");
            return;
        }
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = match receiver.recv().await {
            Some(span) => span,
            None => return,
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let body = request_body(&settings.service_name, &batch);
        let mut request = client.post(&settings.traces_url).json(&body);
        for (name, value) in &settings.headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                metrics::counter!("chronicle_otlp_spans_exported_total")
                    .increment(batch.len() as u64);
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), url = %settings.traces_url, spans = batch.len(), "the OTLP collector refused spans");
            }
            Err(error) => {
                tracing::warn!(error = %Chain(&error), url = %settings.traces_url, spans = batch.len(), "cannot reach the OTLP collector; spans dropped");
            }
        }
        batch.clear();
    }
}

fn nanos(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding (ids in hex, times as strings).
fn request_body(service_name: &str, spans: &[FinishedSpan]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|span| {
            let attributes: Vec<Value> = span
                .attributes
                .iter()
                .map(|(key, value)| json!({"key": key, "value": {"stringValue": value}}))
                .collect();
            let mut value = json!({
                "traceId": span.trace_id,
                "spanId": span.span_id,
                "name": span.name,
                "kind": span.kind,
                "startTimeUnixNano": nanos(span.start),
                "endTimeUnixNano": nanos(span.end),
                "attributes": attributes,
            });
            if let Some(parent) = &span.parent_span_id {
                value["parentSpanId"] = json!(parent);
            }
            value
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service_name}},
        ]},
        "scopeSpans": [{"scope": {"name": "chronicle"}, "spans": spans}],
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_encoded_as_otlp_json_with_hex_ids() {
        let start = UNIX_EPOCH + Duration::from_millis(1_500);
        let span = FinishedSpan {
            name: "graphql",
            kind: 2,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: Some("1111111111111111".into()),
            start,
            end: start + Duration::from_millis(2),
            attributes: vec![("request_id".into(), "r-1".into())],
        };
        let body = request_body("chronicle", &[span]);
        let resource = &body["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0]["value"]["stringValue"],
            "chronicle"
        );
        let encoded = &resource["scopeSpans"][0]["spans"][0];
        assert_eq!(encoded["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(encoded["parentSpanId"], "1111111111111111");
        assert_eq!(encoded["kind"], 2);
        assert_eq!(encoded["startTimeUnixNano"], "1500000000");
        assert_eq!(encoded["endTimeUnixNano"], "1502000000");
        assert_eq!(encoded["attributes"][0]["key"], "request_id");
    }
}
