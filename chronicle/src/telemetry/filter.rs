//! The process's one filter: what `RUST_LOG` asks for, and beside it what the OTLP exporter
//! needs (Chronicle's spans, and sqlx's one event per statement, which the exporter turns into
//! the statement's span), so quieting the logs (`RUST_LOG=warn`) never silences the traces.
//! [`LogLines`] keeps the statement events let through for the exporter out of the log.
//!
//! One global filter rather than a filter per layer: tracing-subscriber's per-layer filters
//! keep thread-local state between deciding and creating a span, and an event decided in
//! between (a `debug!` the log filter turns down) leaves that state stale, so the next span
//! built from a callsite both layers always want was sometimes withheld from the exporter
//! (seen here: 2 to 5 request spans in 10 never exported). A union of the two decisions has no
//! such state.

use std::any::TypeId;
use std::sync::Arc;

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::EnvFilter;

/// The target of sqlx's event for each statement it ran (at `debug`; `warn` when slow).
pub(crate) const STATEMENTS: &str = "sqlx::query";

/// `RUST_LOG`'s filter, widened to Chronicle's spans at `debug` and sqlx's statement events
/// when spans are exported.
pub(crate) struct LogsAndTraces {
    logs: Arc<EnvFilter>,
    export_spans: bool,
}

impl LogsAndTraces {
    /// The filter of `logs`, letting Chronicle's spans and the statement events through too
    /// when `export_spans`.
    pub fn new(logs: Arc<EnvFilter>, export_spans: bool) -> Self {
        Self { logs, export_spans }
    }

    /// Whether the exporter wants this callsite: a span of Chronicle's own crates at `debug`
    /// or above (the entry spans that carry trace ids at `info`, the work inside them at
    /// `debug`, so that none of it costs anything while nothing is exported), or a statement.
    fn exported(&self, metadata: &Metadata<'_>) -> bool {
        self.export_spans
            && *metadata.level() <= Level::DEBUG
            && if metadata.is_span() {
                metadata.target().starts_with("chronicle")
            } else {
                metadata.target() == STATEMENTS
            }
    }
}

impl<S: Subscriber> Layer<S> for LogsAndTraces {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.exported(metadata) {
            return Interest::always();
        }
        Layer::<S>::register_callsite(&*self.logs, metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.exported(metadata) || Layer::<S>::enabled(&*self.logs, metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let logs = Layer::<S>::max_level_hint(&*self.logs);
        match (self.export_spans, logs) {
            (false, hint) => hint,
            (true, Some(hint)) => Some(hint.max(LevelFilter::DEBUG)),
            (true, None) => None,
        }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.logs.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.logs.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.logs.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.logs.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.logs.on_close(id, ctx);
    }
}

/// The log layer `L` (pretty or JSON lines), minus the statement events the filter let through
/// for the exporter only: a statement is logged when `RUST_LOG` asks for it (`sqlx=debug`),
/// never because spans are exported.
pub(crate) struct LogLines<L> {
    inner: L,
    logs: Arc<EnvFilter>,
}

impl<L> LogLines<L> {
    /// `inner`, writing statement events only where `logs` enables them.
    pub fn new(inner: L, logs: Arc<EnvFilter>) -> Self {
        Self { inner, logs }
    }
}

impl<S: Subscriber, L: Layer<S>> Layer<S> for LogLines<L> {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(id, values, ctx);
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(id, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        if metadata.target() == STATEMENTS
            && !Layer::<S>::enabled(&*self.logs, metadata, ctx.clone())
        {
            return;
        }
        self.inner.on_event(event, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }

    // SAFETY: answers a pointer to `self` for its own type, as the trait's default does, and
    // otherwise whatever the wrapped layer answers for its parts (the fmt layer is found this
    // way by those who look for it).
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else {
            // SAFETY: the wrapped layer upholds the same contract.
            unsafe { self.inner.downcast_raw(id) }
        }
    }
}
