//! Span export over OTLP/HTTP (protobuf or JSON), configured by OpenTelemetry's standard
//! variables ([`settings`]): `OTEL_EXPORTER_OTLP_ENDPOINT` and its kin, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_SDK_DISABLED`.
//!
//! Chronicle's spans already carry their W3C ids as fields (`trace_id`, `span_id`,
//! `parent_span_id`, `sampled`, `otel.kind`: see `application::trace`, which mints them and
//! shares them with the logs, the stored events and the Kafka headers), so exporting them needs
//! no tracing SDK, which would mint ids of its own: this layer collects those spans when they
//! close, and the [`export`] task posts them in batches. Spans without ids (internal plumbing)
//! and spans of traces not sampled are not exported. Export never blocks the service: when
//! the queue is full (the collector is slow or away) spans are dropped and counted in
//! `chronicle_otlp_spans_dropped_total`. At shutdown, [`flush`] sends what is queued.

mod encode;
pub mod export;
pub mod settings;
mod span;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use self::export::{Exporter, ExporterError, FlushRequest};
use self::settings::OtlpSettings;
use self::span::FinishedSpan;

/// Where [`flush`] asks the exporter to send what is queued.
static FLUSH: OnceLock<mpsc::Sender<FlushRequest>> = OnceLock::new();

/// Sends every span queued so far, waiting at most `timeout`; nothing to do when spans are
/// not exported. `chronicle serve` calls it after its parts stopped, so the spans of the last
/// requests and messages are not lost with the process.
pub async fn flush(timeout: Duration) {
    let Some(flushes) = FLUSH.get() else { return };
    let (done, flushed) = oneshot::channel();
    if flushes.send(done).await.is_err() {
        return;
    }
    if tokio::time::timeout(timeout, flushed).await.is_err() {
        tracing::warn!(?timeout, "spans not all exported before shutdown");
    }
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
pub(crate) struct OtlpLayer {
    spans: mpsc::Sender<FinishedSpan>,
}

impl OtlpLayer {
    /// Starts the exporter task (on the current Tokio runtime) and returns its layer.
    pub fn start(settings: OtlpSettings) -> Result<Self, ExporterError> {
        let (sender, receiver) = mpsc::channel(settings.batch.max_queue);
        let (flush_sender, flush_receiver) = mpsc::channel(1);
        let exporter = Exporter::new(settings)?;
        tokio::spawn(exporter.run(receiver, flush_receiver));
        let _ = FLUSH.set(flush_sender);
        Ok(Self { spans: sender })
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
        if fields.remove("sampled").as_deref() == Some("false") {
            return;
        }
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
            trace_state: fields.remove("tracestate"),
            error: fields.remove("otel.status_code").as_deref() == Some("ERROR"),
            start: open.start,
            end: SystemTime::now(),
            attributes: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        };
        if self.spans.try_send(finished).is_err() {
            metrics::counter!("chronicle_otlp_spans_dropped_total").increment(1);
        }
    }
}
