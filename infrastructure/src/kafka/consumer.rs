//! The consumer framework every Kafka consumer of Chronicle runs on.
//!
//! It receives messages in batches (what is already buffered, up to a maximum), decodes the
//! envelope, calls an [`EventHandler`], and then stores offsets, which are committed from the
//! store. Handler answers decide what happens (the rules live in
//! [`chronicle_application::retry`], where they are tested without a broker):
//! - `Ok`: done; messages it rejected are dead-lettered.
//! - `Transient`: retried with exponential backoff and jitter; after the configured attempts
//!   (when bounded) the batch is split and each message tried alone, then dead-lettered.
//! - `Unavailable` (the database is away): retried with backoff for as long as it takes,
//!   counting no attempt.
//! - `Permanent`: the batch is split so one poison message cannot take its neighbours with it;
//!   a single message is dead-lettered.
//!
//! Malformed messages (not JSON, missing CloudEvents headers) are dead-lettered before the
//! handler sees them. Nothing here crashes on input and nothing blocks a partition for good.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

use chronicle_application::data::message::EventMessage;
use chronicle_application::data::trace::TraceContext;
use chronicle_application::ports::dead_letters::DeadLetterStore;
use chronicle_application::ports::event_handler::{EventHandler, HandlerError};
use chronicle_application::retry::{NextStep, Retries, RetryPolicy};
use futures::FutureExt;
use rand::Rng;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};

use super::lag::{LagReporter, STATISTICS_INTERVAL_MS};
use rdkafka::message::{Headers, Message, OwnedMessage};
use tokio_util::sync::CancellationToken;

use super::dead_letter::DeadLetters;
use super::on_demand::OnDemandProducer;
use crate::config::KafkaSettings;
use crate::InfraError;
use chronicle_application::error_chain::Chain;

/// How a consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Consumer group id.
    pub group: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Most messages handed to the handler at once.
    pub max_batch: usize,
    /// Attempts before a transiently failing message is dead-lettered; `None` retries forever
    /// (right for projections: a database outage must not dead-letter valid events).
    pub max_attempts: Option<u32>,
    /// First retry pause; doubles per attempt, with jitter.
    pub base_backoff: Duration,
    /// Longest retry pause.
    pub max_backoff: Duration,
    /// How long to wait for more messages after the first one of a batch.
    pub linger: Duration,
    /// Start a new group at the end of the topics instead of the beginning (watchers).
    pub from_latest: bool,
    /// Whether rejected messages go to the group's dead-letter topic. A watcher only
    /// watches: the durable consumers already dead-letter what is malformed, so it skips.
    pub dead_letter: bool,
}

impl ConsumerOptions {
    /// Defaults for a projection in `group` on `topics`: large batches, unbounded retries.
    pub fn projection(group: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group: group.into(),
            topics,
            max_batch: 500,
            max_attempts: None,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            linger: Duration::from_millis(5),
            from_latest: false,
            dead_letter: true,
        }
    }

    /// Defaults for a consumer that only watches what happens from now on (an instance's
    /// erasure follower): its own group, starting at the end, dead-lettering nothing.
    pub fn watcher(group: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            from_latest: true,
            dead_letter: false,
            ..Self::projection(group, topics)
        }
    }
}

impl ConsumerOptions {
    /// The retry rules these options set.
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            base_backoff: self.base_backoff,
            max_backoff: self.max_backoff,
        }
    }

    /// Defaults for a worker in `group`: small batches (each message is real work), bounded
    /// retries before the message is dead-lettered.
    pub fn worker(group: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group: group.into(),
            topics,
            max_batch: 16,
            max_attempts: Some(8),
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            linger: Duration::ZERO,
            from_latest: false,
            dead_letter: true,
        }
    }
}

/// A running consumer: one group, one handler.
pub struct EventConsumer {
    /// `None` once closed. Never dropped inline: see [`close_off_thread`].
    consumer: Option<StreamConsumer<LagReporter>>,
    handler: Arc<dyn EventHandler>,
    dead_letters: DeadLetters,
    options: ConsumerOptions,
}

/// Why a message could not even be decoded.
fn decode(message: &OwnedMessage) -> Result<EventMessage, String> {
    for required in ["ce_id", "ce_type"] {
        let present = message.headers().is_some_and(|headers| {
            headers
                .iter()
                .any(|h| h.key == required && h.value.is_some())
        });
        if !present {
            return Err(format!("missing header {required}"));
        }
    }
    let payload = message.payload().ok_or("empty payload")?;
    let mut event = serde_json::from_slice::<EventMessage>(payload)
        .map_err(|e| format!("malformed envelope: {e}"))?;
    event.traceparent = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == "traceparent")
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    });
    Ok(event)
}

/// The span of one message's handling: a child of the producer's trace (the request that
/// stored the event), so a trace shows every consumer that reacted to a change.
fn consume_span(group: &str, message: &OwnedMessage, trace: &TraceContext) -> tracing::Span {
    tracing::info_span!(
        "consume",
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.consumer.group.name = group,
        messaging.destination.name = message.topic(),
        messaging.destination.partition.id = %message.partition(),
        messaging.kafka.offset = message.offset(),
        trace_id = trace.trace_id(),
        span_id = trace.span_id(),
        parent_span_id = trace.parent_span_id(),
        sampled = trace.sampled(),
    )
}

/// The span of handling a batch of several messages at once: their work serves every one of
/// their traces, so it runs in a trace of its own that links to each message's creation (the
/// span that published it), as OpenTelemetry's messaging conventions say of batch processing.
/// A message's own `consume` span still shows, in its trace, that this group received it.
/// At most `trace::MAX_LINKS` are linked; `messaging.batch.message_count` says how many there were.
fn batch_span(group: &str, batch: &[&OwnedMessage], created: &[TraceContext]) -> tracing::Span {
    // A `debug` span, like the spans inside a request: it exists for the exporter, and while
    // spans are not exported nothing of it (ids, links) is built.
    if !tracing::span_enabled!(tracing::Level::DEBUG) {
        return tracing::Span::none();
    }
    let trace = TraceContext::linking(created);
    let first_topic = batch.first().map(|message| message.topic());
    let one_topic = first_topic.filter(|topic| batch.iter().all(|m| m.topic() == *topic));
    let links = TraceContext::links_field(created);
    tracing::debug_span!(
        "process",
        otel.kind = "consumer",
        otel.name = one_topic.map_or_else(|| "process".to_owned(), |topic| format!("process {topic}")),
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.consumer.group.name = group,
        messaging.destination.name = one_topic,
        messaging.batch.message_count = batch.len(),
        links,
        trace_id = trace.trace_id(),
        span_id = trace.span_id(),
        sampled = trace.sampled(),
    )
}

impl EventConsumer {
    /// Subscribes a consumer of `options.group` to `options.topics`; what it rejects is
    /// recorded in `dead_letters` and sent to its dead-letter topics through `producer`.
    pub fn new(
        settings: &KafkaSettings,
        options: ConsumerOptions,
        handler: Arc<dyn EventHandler>,
        producer: OnDemandProducer,
        dead_letters: Arc<dyn DeadLetterStore>,
    ) -> Result<Self, InfraError> {
        let mut config = super::client::consumer_config(settings, &options.group);
        if options.from_latest {
            config.set("auto.offset.reset", "latest");
        }
        config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        let consumer: StreamConsumer<LagReporter> = config
            .create_with_context(LagReporter::new(options.group.clone()))
            .map_err(InfraError::kafka(format!(
                "create consumer {}",
                options.group
            )))?;
        let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(InfraError::kafka(format!("subscribe {}", options.group)))?;
        let dead_letters = DeadLetters::new(producer, options.group.clone(), dead_letters);
        if options.dead_letter {
            dead_letters.count_from_zero(&options.topics);
        }
        Ok(Self {
            consumer: Some(consumer),
            handler,
            dead_letters,
            options,
        })
    }

    /// Consumes until `shutdown`, then commits what was stored.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(group = %self.options.group, topics = ?self.options.topics, "consumer started");
        self.consume(&shutdown).await;
        // Closing a consumer leaves its group, which waits for the broker; with the broker
        // unreachable that wait has no end. Close off the async threads and bound the wait, so
        // a shutdown during a broker outage still finishes.
        let group = self.options.group.clone();
        if let Some(closed) = self.consumer.take().and_then(close_off_thread) {
            let waited =
                tokio::task::spawn_blocking(move || closed.recv_timeout(CLOSE_TIMEOUT)).await;
            if !matches!(waited, Ok(Ok(()))) {
                tracing::warn!(%group, "consumer did not leave its group within 10 s (broker unreachable?)");
            }
        }
        tracing::info!(%group, "consumer stopped");
    }

    /// The consume loop, until `shutdown`; then commits what was stored.
    async fn consume(&self, shutdown: &CancellationToken) {
        let Some(consumer) = &self.consumer else {
            return;
        };
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                received = consumer.recv() => received,
            };
            let first = match first {
                Ok(message) => message.detach(),
                Err(error) => {
                    tracing::warn!(group = %self.options.group, error = %Chain(&error), "consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            // Gather what arrives within a short linger after the first message: one database
            // round trip then serves many events instead of one.
            let mut batch = vec![first];
            let linger_until = tokio::time::Instant::now() + self.options.linger;
            while batch.len() < self.options.max_batch {
                let next = match consumer.recv().now_or_never() {
                    Some(next) => Some(next),
                    None => tokio::time::timeout_at(linger_until, consumer.recv())
                        .await
                        .ok(),
                };
                match next {
                    Some(Ok(message)) => batch.push(message.detach()),
                    _ => break,
                }
            }
            if !self.process(&batch, shutdown).await {
                break; // interrupted by shutdown: offsets stay unstored, the batch is redelivered
            }
            for message in &batch {
                if let Err(error) =
                    consumer.store_offset(message.topic(), message.partition(), message.offset())
                {
                    // The partition was revoked meanwhile; its new owner re-reads the message
                    // and the handler's idempotence makes that harmless.
                    tracing::debug!(error = %Chain(&error), "offset not stored");
                }
            }
        }
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(group = %self.options.group, error = %Chain(&error), "final commit skipped");
        }
    }

    /// Handles a batch to the end (handled or dead-lettered); `false` when shutdown interrupted
    /// a retry, in which case no offset may be stored.
    async fn process(&self, batch: &[OwnedMessage], shutdown: &CancellationToken) -> bool {
        let mut events = Vec::with_capacity(batch.len());
        let mut raws = Vec::with_capacity(batch.len());
        // One span per message, open while its batch is handled; the handler continues each
        // message's trace from its span.
        let mut spans = Vec::with_capacity(batch.len());
        // Where each message was created (its publication), for a batch's links.
        let mut created = Vec::with_capacity(batch.len());
        for message in batch {
            match decode(message) {
                Ok(mut event) => {
                    created.extend(event.traceparent.as_deref().and_then(TraceContext::parse));
                    let trace = TraceContext::continue_from(event.traceparent.as_deref());
                    spans.push(consume_span(&self.options.group, message, &trace));
                    event.traceparent = Some(trace.header());
                    events.push(event);
                    raws.push(message);
                }
                Err(reason) => self.reject(message, &reason, 0).await,
            }
        }
        if events.is_empty() {
            return true;
        }
        // A batch of one message is handled inside its span, so the handler's work (its
        // statements) shows in that message's trace; a larger batch's work serves several
        // traces at once, so it runs in a batch span that links to them.
        let span = match spans.as_slice() {
            [only] => only.clone(),
            _ => batch_span(&self.options.group, &raws, &created),
        };
        let delivery = self
            .attempt(&events, &raws, shutdown)
            .instrument(span)
            .await;
        match delivery {
            Delivery::Done => true,
            Delivery::Interrupted => false,
            Delivery::GiveUp { .. } if events.len() > 1 => {
                // Isolate the poison: each message alone (in its own span), so its neighbours
                // still get through.
                for ((event, raw), span) in events.iter().zip(&raws).zip(&spans) {
                    match self
                        .attempt(
                            std::slice::from_ref(event),
                            std::slice::from_ref(raw),
                            shutdown,
                        )
                        .instrument(span.clone())
                        .await
                    {
                        Delivery::Done => {}
                        Delivery::Interrupted => return false,
                        Delivery::GiveUp { reason, attempts } => {
                            self.reject(raw, &reason, attempts).await;
                        }
                    }
                }
                true
            }
            Delivery::GiveUp { reason, attempts } => {
                self.reject(raws[0], &reason, attempts).await;
                true
            }
        }
    }

    /// Dead-letters a message (or, for a watching consumer, logs and skips it).
    async fn reject(&self, message: &OwnedMessage, reason: &str, attempts: u32) {
        if self.options.dead_letter {
            self.dead_letters.send(message, reason, attempts).await;
        } else {
            tracing::debug!(group = %self.options.group, reason, "message skipped");
        }
    }

    /// Calls the handler with retries ([`Retries`] decides); dead-letters what it rejected.
    async fn attempt(
        &self,
        events: &[EventMessage],
        raws: &[&OwnedMessage],
        shutdown: &CancellationToken,
    ) -> Delivery {
        let mut retries = Retries::new(self.options.retry_policy());
        loop {
            retries.begin_attempt();
            let error = match self.handler.handle(events).await {
                Ok(outcome) => {
                    for (index, reason) in outcome.rejected {
                        if let Some(raw) = raws.get(index) {
                            self.reject(raw, &reason, retries.attempts()).await;
                        }
                    }
                    return Delivery::Done;
                }
                Err(error) => error,
            };
            let group = &self.options.group;
            match &error {
                HandlerError::Paused(projection) => {
                    tracing::debug!(%group, %projection, "projection paused; waiting");
                }
                HandlerError::Unavailable(reason) => {
                    tracing::warn!(%group, %reason, "database unavailable; retrying");
                }
                HandlerError::Transient(reason) => {
                    tracing::warn!(%group, attempts = retries.attempts(), %reason, "handler failed; retrying");
                }
                HandlerError::Permanent(_) => {}
            }
            match retries.after(error) {
                NextStep::GiveUp { reason, attempts } => {
                    return Delivery::GiveUp { reason, attempts }
                }
                NextStep::RetryAfter(pause) => {
                    tokio::select! {
                        () = shutdown.cancelled() => return Delivery::Interrupted,
                        () = tokio::time::sleep(jittered(pause)) => {}
                    }
                }
            }
        }
    }
}

/// A pause drawn from the upper half of `pause`, so consumers that failed together do not
/// retry together.
fn jittered(pause: Duration) -> Duration {
    let millis = pause.as_millis() as u64;
    Duration::from_millis(rand::thread_rng().gen_range(millis / 2..=millis.max(1)))
}

impl Drop for EventConsumer {
    /// A consumer task cancelled without its shutdown (a runtime shutting down, say a test's
    /// at its end) still leaves its group properly, waiting at most [`CLOSE_TIMEOUT`].
    fn drop(&mut self) {
        if let Some(closed) = self.consumer.take().and_then(close_off_thread) {
            let _ = closed.recv_timeout(CLOSE_TIMEOUT);
        }
    }
}

/// The longest wait for a consumer to leave its group: with the broker unreachable the wait
/// would have no end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Closes `consumer` on a thread of its own; the receiver hears when it is closed. The thread
/// first unsubscribes and serves the revocation until nothing is assigned, and only then
/// closes: librdkafka's close answers a revocation that arrives during it with an unassign
/// that waits, without a timeout, on the queue the closing thread itself serves (librdkafka
/// issue 4884), which froze a test's runtime at its end. On its own thread, a close that still
/// hangs (a broker that never answers) holds back nobody but the bounded wait.
fn close_off_thread(
    consumer: StreamConsumer<LagReporter>,
) -> Option<std::sync::mpsc::Receiver<()>> {
    let (closed, on_closed) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("kafka-consumer-close".to_owned())
        .spawn(move || {
            leave_assignment(&consumer);
            drop(consumer);
            let _ = closed.send(());
        })
        .ok()
        .map(|_| on_closed)
}

/// Unsubscribes and polls (discarding messages, whose offsets were never stored) until the
/// revocation has been served, for at most a few seconds.
fn leave_assignment(consumer: &StreamConsumer<LagReporter>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return;
    };
    consumer.unsubscribe();
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while consumer
            .assignment()
            .is_ok_and(|assigned| assigned.count() > 0)
            && tokio::time::Instant::now() < deadline
        {
            let _ = tokio::time::timeout(Duration::from_millis(50), consumer.recv()).await;
        }
    });
}

/// The end of one delivery attempt.
enum Delivery {
    /// Handled (or rejections dead-lettered).
    Done,
    /// The handler gave up on these messages.
    GiveUp { reason: String, attempts: u32 },
    /// Shutdown arrived while waiting to retry; nothing may be acknowledged.
    Interrupted,
}
