//! The relay loop.
//!
//! - One active relay per database: it holds a session advisory lock on a dedicated connection;
//!   other instances stand by and take over when that connection (or its process) dies.
//! - Woken by `NOTIFY` from the append statement, with a polling fallback for lost notifications.
//! - Reads unpublished rows in id order (per aggregate, id order is sequence order), enqueues them
//!   on the idempotent producer in that order, waits for the broker's acknowledgements, then marks
//!   exactly the acknowledged rows published. A crash between produce and mark publishes those
//!   rows again under the same event ids; consumers skip them by sequence.
//! - When the broker is down, deliveries fail after the producer's timeout; rows stay
//!   unpublished with their error and attempts, and the relay backs off. Nothing is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;

use super::retention::purge_published;
use crate::config::KafkaSettings;
use crate::event_store::OUTBOX_CHANNEL;
use crate::InfraError;

/// The advisory lock key of the relay ("chronicle" in ASCII, truncated to fit an i64).
pub const RELAY_LOCK_KEY: i64 = 0x6368_726f_6e69_636c;

/// Tuning of the relay.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Rows read and produced per round.
    pub batch_size: i64,
    /// Longest sleep without a notification before polling anyway.
    pub poll_interval: Duration,
    /// How often a standby instance retries the lock.
    pub standby_interval: Duration,
    /// How long published rows are kept.
    pub retention: Duration,
    /// How often the retention job runs.
    pub retention_interval: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            poll_interval: Duration::from_millis(500),
            standby_interval: Duration::from_secs(2),
            retention: Duration::from_secs(3600),
            retention_interval: Duration::from_secs(60),
        }
    }
}

/// What the relay is doing, for health checks and metrics.
#[derive(Debug, Default)]
pub struct RelayStatus {
    leader: AtomicBool,
    published: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl RelayStatus {
    /// Whether this instance holds the relay lock.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Rows this instance published since start.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// The last delivery or database error, cleared by the next success.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

/// One unpublished outbox row.
struct PendingRow {
    id: i64,
    /// Seconds between the commit and the start of this round (the publish lag so far).
    waited_seconds: f64,
    topic: String,
    key: String,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

/// The relay. Run it with [`OutboxRelay::run`].
pub struct OutboxRelay {
    pool: PgPool,
    database_url: String,
    kafka: KafkaSettings,
    options: RelayOptions,
    status: Arc<RelayStatus>,
}

impl OutboxRelay {
    /// A relay over `pool`; `database_url` opens its dedicated lock and listen connections.
    pub fn new(
        pool: PgPool,
        database_url: impl Into<String>,
        kafka: KafkaSettings,
        options: RelayOptions,
    ) -> Self {
        Self {
            pool,
            database_url: database_url.into(),
            kafka,
            options,
            status: Arc::default(),
        }
    }

    /// Shared status for health and metrics.
    pub fn status(&self) -> Arc<RelayStatus> {
        Arc::clone(&self.status)
    }

    /// Runs until `shutdown`: stands by, leads when it gets the lock, and releases the lock
    /// (by closing its connection) on the way out.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut pause = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match self.lead_if_possible(&shutdown).await {
                Ok(()) => pause = Duration::from_millis(200),
                Err(error) => {
                    self.status.leader.store(false, Ordering::Relaxed);
                    self.status.set_error(Some(error.to_string()));
                    tracing::warn!(%error, ?pause, "relay interrupted; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        self.status.leader.store(false, Ordering::Relaxed);
        tracing::info!("relay stopped");
    }

    /// Tries the lock once; leads until shutdown or a failure when it gets it.
    async fn lead_if_possible(&self, shutdown: &CancellationToken) -> Result<(), InfraError> {
        let mut lock_conn = PgConnection::connect(&self.database_url)
            .await
            .map_err(InfraError::db("open relay lock connection"))?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut lock_conn)
            .await
            .map_err(InfraError::db("take relay lock"))?;
        if !locked {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(self.options.standby_interval) => {}
            }
            return Ok(());
        }
        tracing::info!("relay is active (holds the outbox lock)");
        self.status.leader.store(true, Ordering::Relaxed);
        let result = self.lead(&mut lock_conn, shutdown).await;
        self.status.leader.store(false, Ordering::Relaxed);
        // Closing the session releases the lock for a standby.
        let _ = lock_conn.close().await;
        result
    }

    async fn lead(
        &self,
        lock_conn: &mut PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), InfraError> {
        let mut listener = PgListener::connect(&self.database_url)
            .await
            .map_err(InfraError::db("open relay listener"))?;
        listener
            .listen(OUTBOX_CHANNEL)
            .await
            .map_err(InfraError::db("listen for outbox notifications"))?;
        let mut producer = self.producer()?;
        let mut last_retention = tokio::time::Instant::now();
        let mut failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                let _ = producer.flush(Duration::from_secs(10));
                return Ok(());
            }
            match self.publish_round(&producer).await {
                Ok(0) => {
                    failures = 0;
                    // Idle: check we still hold the lock, run retention, then wait for work.
                    sqlx::query("SELECT 1")
                        .execute(&mut *lock_conn)
                        .await
                        .map_err(InfraError::db("relay lock connection lost"))?;
                    if last_retention.elapsed() >= self.options.retention_interval {
                        last_retention = tokio::time::Instant::now();
                        match purge_published(&self.pool, self.options.retention).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(rows = n, "purged published outbox rows"),
                            Err(error) => tracing::warn!(%error, "outbox retention failed"),
                        }
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        notification = listener.recv() => {
                            notification.map_err(InfraError::db("outbox listener"))?;
                        }
                        () = tokio::time::sleep(self.options.poll_interval) => {}
                    }
                }
                Ok(_) => failures = 0,
                Err(RoundError::Database(error)) => return Err(error),
                Err(RoundError::Delivery {
                    message,
                    producer_unusable,
                }) => {
                    failures += 1;
                    self.status.set_error(Some(message.clone()));
                    if producer_unusable || producer.client().fatal_error().is_some() {
                        // Its idempotence state is gone; a new producer (new id) sends the
                        // same rows again, in order, under their event ids.
                        tracing::warn!(%message, "the producer cannot go on; creating a new one");
                        producer = self.producer()?;
                    }
                    let pause = Duration::from_millis(100 * 2u64.pow(failures.min(7)))
                        .min(Duration::from_secs(10));
                    tracing::warn!(%message, ?pause, "publishing failed; rows stay in the outbox");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    fn producer(&self) -> Result<FutureProducer, InfraError> {
        crate::kafka::client::producer_config(&self.kafka)
            .create()
            .map_err(InfraError::kafka("create relay producer"))
    }

    /// Publishes one batch; answers how many rows were published.
    async fn publish_round(&self, producer: &FutureProducer) -> Result<usize, RoundError> {
        let round_started = std::time::Instant::now();
        let rows = sqlx::query(
            // The payload travels as Postgres's own JSON text: parsing it into a tree and
            // printing it again only to send the bytes cost a quarter of the drain rate.
            "SELECT id, topic, key, headers, payload::text AS payload,
                    extract(epoch FROM clock_timestamp() - created_at)::float8 AS waited
             FROM outbox
             WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(self.options.batch_size)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| RoundError::Database(InfraError::db("read outbox")(e)))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let pending: Vec<PendingRow> = rows
            .iter()
            .map(|row| PendingRow {
                id: row.get("id"),
                waited_seconds: row.get::<f64, _>("waited").max(0.0),
                topic: row.get("topic"),
                key: row.get("key"),
                headers: headers_from_json(&row.get::<Value, _>("headers")),
                payload: row.get::<String, _>("payload").into_bytes(),
            })
            .collect();

        // Enqueue in id order; stop at the first full queue so nothing overtakes a row that is
        // not yet enqueued (that would break per-aggregate order).
        let mut in_flight = Vec::with_capacity(pending.len());
        let mut enqueue_error = None;
        for row in &pending {
            let mut headers = OwnedHeaders::new_with_capacity(row.headers.len());
            for (key, value) in &row.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_str()),
                });
            }
            let record = FutureRecord::to(&row.topic)
                .key(row.key.as_bytes())
                .payload(row.payload.as_slice())
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => in_flight.push((row.id, delivery)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
                Err((error, _)) => {
                    enqueue_error = Some(format!("enqueue outbox row {}: {error}", row.id));
                    break;
                }
            }
        }

        let mut published = Vec::with_capacity(in_flight.len());
        let mut failed = Vec::new();
        let mut first_failure = enqueue_error;
        let mut producer_unusable = false;
        for (id, delivery) in in_flight {
            match delivery.await {
                Ok(Ok(_)) => published.push(id),
                Ok(Err((error, _))) => {
                    producer_unusable |= loses_producer_state(&error);
                    first_failure.get_or_insert_with(|| error.to_string());
                    failed.push(id);
                }
                Err(_) => {
                    first_failure.get_or_insert_with(|| "producer dropped a delivery".to_owned());
                    failed.push(id);
                }
            }
        }
        if !published.is_empty() {
            sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
                .bind(&published)
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    RoundError::Database(InfraError::db("mark outbox rows published")(e))
                })?;
            self.status
                .published
                .fetch_add(published.len() as u64, Ordering::Relaxed);
            // Commit-to-acknowledged time of each event: the lag consumers see from the relay.
            let round_seconds = round_started.elapsed().as_secs_f64();
            let lag = metrics::histogram!("chronicle_relay_publish_lag_seconds");
            let acknowledged: std::collections::HashSet<i64> = published.iter().copied().collect();
            for row in pending.iter().filter(|row| acknowledged.contains(&row.id)) {
                lag.record(row.waited_seconds + round_seconds);
            }
            metrics::counter!("chronicle_relay_published_total").increment(published.len() as u64);
        }
        if !failed.is_empty() {
            metrics::counter!("chronicle_relay_publish_failures_total")
                .increment(failed.len() as u64);
        }
        if let Some(message) = first_failure {
            if !failed.is_empty() {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)",
                )
                .bind(&failed)
                .bind(&message)
                .execute(&self.pool)
                .await
                .map_err(|e| RoundError::Database(InfraError::db("record outbox failure")(e)))?;
            }
            return Err(RoundError::Delivery {
                message,
                producer_unusable,
            });
        }
        self.status.set_error(None);
        Ok(published.len())
    }
}

/// Why a publishing round stopped.
enum RoundError {
    /// Postgres failed: leadership is re-established from scratch.
    Database(InfraError),
    /// The broker refused or timed out: back off and retry the same rows.
    Delivery {
        /// The first failure.
        message: String,
        /// The broker rejected the producer's identity or sequence: only a new producer can
        /// publish again.
        producer_unusable: bool,
    },
}

/// Whether a delivery error means the idempotent producer's id, epoch or sequence is no longer
/// accepted. librdkafka raises some of these as fatal and others per message (a broker may
/// answer a stale epoch with `PRODUCER_FENCED`, `INVALID_PRODUCER_EPOCH` or
/// `UNKNOWN_PRODUCER_ID`); retrying with the same producer would fail forever.
fn loses_producer_state(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerIdMapping
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::Fenced
        )
    )
}

/// Reads `[[name, value], ...]` back into header pairs.
fn headers_from_json(value: &Value) -> Vec<(String, String)> {
    value
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|pair| {
                    let name = pair.get(0)?.as_str()?;
                    let value = pair.get(1)?.as_str()?;
                    Some((name.to_owned(), value.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}
