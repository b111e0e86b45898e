//! Span export over OTLP/HTTP (protobuf or JSON) through OpenTelemetry's SDK ([`export`]),
//! configured by OpenTelemetry's standard variables ([`settings`]): `OTEL_EXPORTER_OTLP_ENDPOINT`
//! and its kin, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_BSP_*`, `OTEL_SDK_DISABLED`.
//!
//! Chronicle's entry spans carry their W3C ids as fields (`trace_id`, `span_id`,
//! `parent_span_id`, `sampled`, `otel.kind`: see `application::data::trace`, which mints them
//! and shares them with the logs, the stored events and the Kafka headers, whether or not
//! anything is exported); a span that works for several traces at once (a consumer's batch, a
//! group of appends) names them in `links`, space-separated traceparents. This layer reads
//! those ids, gives every span opened inside a sampled one an id of its own in the same trace
//! (so the work inside a request shows as its children), and hands each span, when it closes,
//! to the SDK's batch processor as `SpanData`. Spans outside any trace (internal plumbing) and
//! spans of traces not sampled are not exported. Export never blocks the service: when the
//! processor's queue is full (the collector is slow or away) spans are dropped. At shutdown,
//! [`flush`] sends what is queued.

pub mod export;
pub mod settings;

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor as _,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use chronicle_application::data::trace::TraceContext;

use self::export::ExporterError;
use self::settings::OtlpSettings;
use super::filter::STATEMENTS;

/// The processor [`flush`] empties at shutdown.
static PROCESSOR: OnceLock<Arc<BatchSpanProcessor>> = OnceLock::new();

/// Sends every span queued so far, waiting at most `timeout`; nothing to do when spans are
/// not exported. `chronicle serve` calls it after its parts stopped, so the spans of the last
/// requests and messages are not lost with the process. The SDK's flush blocks its caller, so
/// it runs on a blocking thread while the runtime goes on driving the export's request.
pub async fn flush(timeout: Duration) {
    let Some(processor) = PROCESSOR.get().cloned() else {
        return;
    };
    let flushed = tokio::task::spawn_blocking(move || processor.force_flush());
    match tokio::time::timeout(timeout, flushed).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(%error, "spans not all exported before shutdown"),
        Ok(Err(_)) | Err(_) => tracing::warn!(?timeout, "spans not all exported before shutdown"),
    }
}

/// Where a span stands in its trace, kept in its extensions from its start to its close.
struct OpenSpan {
    start: SystemTime,
    /// `None` for a span of a trace not sampled: nothing of it is exported, and its children
    /// learn so here.
    ids: Option<SpanIds>,
    kind: SpanKind,
    /// The span's name for the collector (`otel.name` when the span sets one).
    name: Cow<'static, str>,
    /// Set when the span recorded `otel.status_code = "ERROR"`: the service failed it.
    error: Option<String>,
    attributes: Vec<KeyValue>,
    /// The spans this one works for without being their child (a consumer's batch).
    links: Vec<Link>,
}

/// A sampled span's W3C ids.
#[derive(Clone)]
struct SpanIds {
    trace_id: TraceId,
    span_id: SpanId,
    /// [`SpanId::INVALID`] for the first span of a trace.
    parent: SpanId,
    /// The parent came from another process (a `traceparent` header or a stored event).
    remote_parent: bool,
    trace_state: TraceState,
}

impl SpanIds {
    /// The ids of a new span inside this one: same trace, a new span id, this span its parent.
    fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: new_span_id(),
            parent: self.span_id,
            remote_parent: false,
            trace_state: self.trace_state.clone(),
        }
    }

    /// The finished span with these ids, as the processor takes it; it ends now.
    fn finish(
        self,
        name: Cow<'static, str>,
        kind: SpanKind,
        start: SystemTime,
        recorded: Recorded,
        scope: InstrumentationScope,
    ) -> SpanData {
        let Recorded {
            attributes,
            links,
            status,
        } = recorded;
        SpanData {
            span_context: SpanContext::new(
                self.trace_id,
                self.span_id,
                TraceFlags::SAMPLED,
                false,
                self.trace_state,
            ),
            parent_span_id: self.parent,
            parent_span_is_remote: self.remote_parent,
            span_kind: kind,
            name,
            start_time: start,
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: span_links(links),
            status,
            instrumentation_scope: scope,
        }
    }
}

/// What a span recorded besides its name, kind and times.
struct Recorded {
    attributes: Vec<KeyValue>,
    links: Vec<Link>,
    status: Status,
}

/// A span's fields as the layer reads them: its ids and OpenTelemetry's `otel.*` conventions
/// apart, everything else as typed attributes.
#[derive(Default)]
struct Fields {
    trace_id: Option<String>,
    span_id: Option<String>,
    parent_span_id: Option<String>,
    sampled: Option<bool>,
    trace_state: Option<String>,
    kind: Option<SpanKind>,
    name: Option<String>,
    error: Option<String>,
    links: Vec<Link>,
    attributes: Vec<KeyValue>,
}

impl Fields {
    fn set(&mut self, field: &Field, value: Value) {
        let text = || value.as_str().into_owned();
        match field.name() {
            "trace_id" => self.trace_id = Some(text()),
            "span_id" => self.span_id = Some(text()),
            "parent_span_id" => self.parent_span_id = Some(text()),
            "tracestate" => self.trace_state = Some(text()),
            "sampled" => self.sampled = Some(matches!(value, Value::Bool(true))),
            "otel.kind" => self.kind = Some(kind(&value.as_str())),
            "otel.name" => self.name = Some(text()),
            "otel.status_code" => {
                if value.as_str() == "ERROR" {
                    self.error.get_or_insert_with(String::new);
                }
            }
            "otel.status_description" => self.error = Some(text()),
            "links" => self.links = value.as_str().split_whitespace().filter_map(link).collect(),
            name => match self
                .attributes
                .iter_mut()
                .find(|kv| kv.key.as_str() == name)
            {
                Some(existing) => existing.value = value,
                None => self.attributes.push(KeyValue::new(name, value)),
            },
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, Value::from(value.to_owned()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        // OTLP has signed integers only; a count past i64::MAX is not a count Chronicle keeps.
        self.set(field, Value::I64(i64::try_from(value).unwrap_or(i64::MAX)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Value::F64(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, Value::from(format!("{value:?}")));
    }
}

/// What sqlx's event says of a statement it ran (`sqlx-core`'s `QueryLogger`): the SQL with its
/// `$n` placeholders, never the values bound to them.
#[derive(Default)]
struct Statement {
    /// The statement's first four words.
    summary: String,
    /// The whole SQL; empty for statements of four words or fewer.
    text: String,
    elapsed_secs: f64,
    rows_returned: Option<u64>,
    rows_affected: Option<u64>,
}

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.text = value.trim().to_owned(),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_returned" => self.rows_returned = Some(value),
            "rows_affected" => self.rows_affected = Some(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl Statement {
    /// The statement as a client span, following OpenTelemetry's database conventions.
    fn into_span(self, parent: &SpanIds, scope: InstrumentationScope) -> SpanData {
        let end = SystemTime::now();
        let start = Duration::try_from_secs_f64(self.elapsed_secs)
            .ok()
            .and_then(|elapsed| end.checked_sub(elapsed))
            .unwrap_or(end);
        let summary = match self.text.is_empty() {
            true => self.summary.trim_end_matches('…').trim().to_owned(),
            false => query_summary(&self.text),
        };
        let operation = summary
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let text = match self.text.is_empty() {
            true => summary.clone(),
            false => self.text,
        };
        let mut attributes = vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.operation.name", operation),
            KeyValue::new("db.query.summary", summary.clone()),
            KeyValue::new("db.query.text", text),
        ];
        if let Some(rows) = self.rows_returned.or(self.rows_affected) {
            attributes.push(KeyValue::new(
                "db.response.returned_rows",
                i64::try_from(rows).unwrap_or(i64::MAX),
            ));
        }
        parent.child().finish(
            Cow::Owned(summary),
            SpanKind::Client,
            start,
            Recorded {
                attributes,
                links: Vec::new(),
                status: Status::Unset,
            },
            scope,
        )
    }
}

/// A statement's first three words after its comments (`WITH guard AS`, `INSERT INTO tasks`):
/// a name that says which statement it is, the same for every call (sqlx's own summary is the
/// first four words, which for Chronicle's commented statements are comment).
fn query_summary(text: &str) -> String {
    text.lines()
        .map(|line| line.split("--").next().unwrap_or_default())
        .flat_map(str::split_whitespace)
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `links` as the SDK takes them (its type can only be built from its default).
fn span_links(links: Vec<Link>) -> SpanLinks {
    let mut span_links = SpanLinks::default();
    span_links.links = links;
    span_links
}

/// A link to the span a `traceparent` names (another trace's, so remote); `None` when the
/// header is malformed, by the same rules as every traceparent Chronicle reads.
fn link(traceparent: &str) -> Option<Link> {
    let linked = TraceContext::parse(traceparent)?;
    let flags = match linked.sampled() {
        true => TraceFlags::SAMPLED,
        false => TraceFlags::default(),
    };
    Some(Link::with_context(SpanContext::new(
        TraceId::from_hex(linked.trace_id()).ok()?,
        SpanId::from_hex(linked.span_id()).ok()?,
        flags,
        true,
        TraceState::default(),
    )))
}

fn kind(name: &str) -> SpanKind {
    match name {
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        _ => SpanKind::Internal,
    }
}

/// A new span id: 8 random bytes, never all zero.
fn new_span_id() -> SpanId {
    loop {
        let (high, _) = uuid::Uuid::new_v4().as_u64_pair();
        if high != 0 {
            return SpanId::from(high);
        }
    }
}

/// The layer that gives spans of sampled traces their ids and hands them to the processor.
pub(crate) struct OtlpLayer {
    processor: Arc<BatchSpanProcessor>,
    scope: InstrumentationScope,
}

impl OtlpLayer {
    /// Builds the processor (on the current Tokio runtime, which its exports use) and the
    /// layer that feeds it.
    pub fn start(settings: OtlpSettings) -> Result<Self, ExporterError> {
        let processor = Arc::new(export::processor(&settings)?);
        let _ = PROCESSOR.set(processor.clone());
        Ok(Self {
            processor,
            scope: InstrumentationScope::builder("chronicle")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })
    }
}

/// The ids of a span that carries its own (an entry span), `None` when it is not sampled or its
/// ids are malformed.
fn own_ids(fields: &Fields) -> Option<SpanIds> {
    if fields.sampled == Some(false) {
        return None;
    }
    let trace_id = TraceId::from_hex(fields.trace_id.as_deref()?).ok()?;
    let span_id = SpanId::from_hex(fields.span_id.as_deref()?).ok()?;
    let parent = fields
        .parent_span_id
        .as_deref()
        .and_then(|hex| SpanId::from_hex(hex).ok())
        .unwrap_or(SpanId::INVALID);
    Some(SpanIds {
        trace_id,
        span_id,
        remote_parent: parent != SpanId::INVALID,
        parent,
        trace_state: fields
            .trace_state
            .as_deref()
            .and_then(|state| state.parse().ok())
            .unwrap_or_default(),
    })
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let ids = if attrs.fields().field("trace_id").is_some() {
            own_ids(&fields)
        } else {
            // Inside a span of a trace (the nearest one that is exported, or known not to be
            // sampled), a span of the same trace; outside any, not exported.
            let nearest = span.scope().skip(1).find_map(|ancestor| {
                let extensions = ancestor.extensions();
                let open = extensions.get::<OpenSpan>()?;
                Some(open.ids.as_ref().map(SpanIds::child))
            });
            let Some(ids) = nearest else { return };
            ids
        };
        let name = match fields.name.take() {
            Some(name) => Cow::Owned(name),
            None => Cow::Borrowed(span.name()),
        };
        span.extensions_mut().insert(OpenSpan {
            start: SystemTime::now(),
            kind: fields.kind.take().unwrap_or(SpanKind::Internal),
            error: fields.error.take(),
            links: fields.links,
            attributes: if ids.is_some() {
                fields.attributes
            } else {
                Vec::new()
            },
            ids,
            name,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        let Some(open) = extensions.get_mut::<OpenSpan>() else {
            return;
        };
        if open.ids.is_none() {
            return;
        }
        let mut fields = Fields {
            attributes: std::mem::take(&mut open.attributes),
            error: open.error.take(),
            ..Fields::default()
        };
        values.record(&mut fields);
        open.attributes = fields.attributes;
        open.error = fields.error;
        if let Some(name) = fields.name {
            open.name = Cow::Owned(name);
        }
    }

    /// sqlx's event for a statement, as a child span of the span that ran it: the event comes
    /// when the statement is done, with its duration, so the span ends now and began that long
    /// ago.
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != STATEMENTS {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let nearest = scope.into_iter().find_map(|span| {
            let extensions = span.extensions();
            extensions.get::<OpenSpan>().map(|open| open.ids.clone())
        });
        let Some(Some(parent)) = nearest else { return };
        let mut statement = Statement::default();
        event.record(&mut statement);
        self.processor
            .on_end(statement.into_span(&parent, self.scope.clone()));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<OpenSpan>() else {
            return;
        };
        let Some(ids) = open.ids else { return };
        let status = match open.error {
            Some(description) => Status::error(description),
            None => Status::Unset,
        };
        self.processor.on_end(ids.finish(
            open.name,
            open.kind,
            open.start,
            Recorded {
                attributes: open.attributes,
                links: open.links,
                status,
            },
            self.scope.clone(),
        ));
    }
}
