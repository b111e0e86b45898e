//! The relay loop.
//!
//! - One active relay per database: it holds a session advisory lock on a dedicated connection;
//!   other instances stand by and take over when that connection (or its process) dies.
//! - Woken at once by appends of its own process ([`OutboxSignal`]), by `NOTIFY` for appends of
//!   other processes, and by a poll as the fallback for a lost notification. While rows keep
//!   coming it reads at most once per [`RelayOptions::read_interval`], so each read takes a few
//!   milliseconds' rows and the producer gets them in fewer, fuller batches
//!   ([`super::read_pace`]). The first row after a quiet spell is read at once, and so is the
//!   rest of a read cut short (by the room in flight, a full producer queue).
//! - Reads unpublished rows in id order (per aggregate, id order is sequence order), enqueues them
//!   on the idempotent producer in that order and marks exactly the acknowledged rows published,
//!   reading on while earlier rows wait for their acknowledgement ([`super::pipeline`]). A crash
//!   between produce and mark publishes those rows again under the same event ids; consumers
//!   skip them by sequence.
//! - When the broker is down, deliveries fail after the producer's timeout; rows stay
//!   unpublished with their error and attempts, and the relay backs off. Nothing is dropped.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pipeline::{self, InFlight, PipelineError, Progress};
use super::read_pace::ReadPace;
use super::retention::purge_published;
use super::signal::{OutboxSignal, OUTBOX_CHANNEL};
use super::status::RelayStatus;
use crate::config::{KafkaSettings, DEFAULT_RELAY_READ_INTERVAL_MS};
use crate::db::kept::KeptConnection;
use crate::InfraError;
use chronicle_application::error_chain::Chain;

/// Longest the relay goes without checking its lock and its retention while it is never idle:
/// under a steady load some rows are in flight or waiting for their read at every pass.
const CHECK_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// The advisory lock key of the relay ("chronicle" in ASCII, truncated to fit an i64).
pub(crate) const RELAY_LOCK_KEY: i64 = 0x6368_726f_6e69_636c;

/// Tuning of the relay.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Most rows in flight (enqueued, not yet acknowledged) at once.
    pub batch_size: i64,
    /// Longest sleep without a notification before polling anyway.
    pub poll_interval: Duration,
    /// Least time from the end of one read to the next while rows keep coming; a read cut
    /// short is followed at once (`CHRONICLE_RELAY_READ_INTERVAL_MS`).
    pub read_interval: Duration,
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
            read_interval: Duration::from_millis(DEFAULT_RELAY_READ_INTERVAL_MS),
            standby_interval: Duration::from_secs(2),
            retention: Duration::from_secs(3600),
            retention_interval: Duration::from_secs(60),
        }
    }
}

/// The relay. Run it with [`OutboxRelay::run`].
pub struct OutboxRelay {
    pool: PgPool,
    /// Connections that hold a session: the relay lock, `LISTEN`.
    session: PgPool,
    kafka: KafkaSettings,
    options: RelayOptions,
    status: Arc<RelayStatus>,
    appended: OutboxSignal,
}

impl OutboxRelay {
    /// A relay over `pool`; `session` gives its lock and listen connections, which must keep
    /// their session (not a transaction-mode pooler). `appended` is the signal this
    /// process's event store raises after each append.
    pub fn new(
        pool: PgPool,
        session: PgPool,
        kafka: KafkaSettings,
        options: RelayOptions,
        appended: OutboxSignal,
    ) -> Self {
        Self {
            pool,
            session,
            kafka,
            options,
            status: Arc::default(),
            appended,
        }
    }

    /// Shared status for health and metrics.
    pub fn status(&self) -> Arc<RelayStatus> {
        Arc::clone(&self.status)
    }

    /// Runs until `shutdown`: stands by, leads when it gets the lock, and releases the lock
    /// (by closing its connection) on the way out.
    pub async fn run(self, shutdown: CancellationToken) {
        // Exported at 0 from the start, so the first failure after a start is an increase
        // that alerts see, not a new series.
        metrics::counter!("chronicle_relay_published_total").increment(0);
        metrics::counter!("chronicle_relay_publish_failures_total").increment(0);
        let mut pause = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match self.lead_if_possible(&shutdown).await {
                Ok(()) => pause = Duration::from_millis(200),
                Err(error) => {
                    self.status.set_leader(false);
                    self.status.set_error(Some(error.to_string()));
                    tracing::warn!(error = %Chain(&error), ?pause, "relay interrupted; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        self.status.set_leader(false);
        tracing::info!("relay stopped");
    }

    /// Tries the lock once; leads until shutdown or a failure when it gets it.
    async fn lead_if_possible(&self, shutdown: &CancellationToken) -> Result<(), InfraError> {
        // Out of the pool's hands: the lock lives exactly as long as this connection.
        let mut lock_conn = self
            .session
            .acquire()
            .await
            .map_err(InfraError::db("open relay lock connection"))?
            .detach();
        let locked = sqlx::query_scalar!("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY)
            .fetch_one(&mut lock_conn)
            .await
            .map_err(InfraError::db("take relay lock"))?;
        if locked != Some(true) {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(self.options.standby_interval) => {}
            }
            return Ok(());
        }
        tracing::info!("relay is active (holds the outbox lock)");
        self.status.set_leader(true);
        let result = self.lead(&mut lock_conn, shutdown).await;
        self.status.set_leader(false);
        // Closing the session releases the lock for a standby.
        let _ = lock_conn.close().await;
        result
    }

    async fn lead(
        &self,
        lock_conn: &mut PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), InfraError> {
        // From the session pool, so it reaches the host that pool follows.
        let mut listener = PgListener::connect_with(&self.session)
            .await
            .map_err(InfraError::db("open relay listener"))?;
        listener
            .listen(OUTBOX_CHANNEL)
            .await
            .map_err(InfraError::db("listen for outbox notifications"))?;
        let mut producer = self.producer()?;
        let mut in_flight = InFlight::default();
        let mut last_retention = tokio::time::Instant::now();
        let mut failures: u32 = 0;
        let capacity = self.options.batch_size.max(1) as usize;
        // The connection the steps run on while there is work, given back when idle.
        let mut kept = None;
        let mut pace = ReadPace::new(self.options.read_interval);
        let mut last_check = Instant::now();
        loop {
            if shutdown.is_cancelled() {
                let _ = producer.flush(Duration::from_secs(10));
                // Mark what the flush got acknowledged; anything else is sent again by the
                // next leader under the same event ids.
                let _ = self.step(&mut kept, &producer, &mut in_flight, 0).await;
                return Ok(());
            }
            let room = if pace.due(Instant::now()) {
                capacity
            } else {
                0
            };
            match self.step(&mut kept, &producer, &mut in_flight, room).await {
                Ok(progress) => {
                    failures = 0;
                    if progress.published > 0 {
                        self.status.add_published(progress.published as u64);
                        self.status.set_error(None);
                    }
                    if progress.read {
                        pace.read(Instant::now(), progress.enqueued, progress.cut_short);
                    }
                    if progress.enqueued > 0 || progress.published > 0 {
                        continue;
                    }
                    let busy = in_flight.len() > 0;
                    let idle = !busy && pace.quiet();
                    if idle {
                        kept = None;
                    }
                    // When idle, and at least once a second under a load that never leaves the
                    // relay idle, so the lock's loss is noticed and retention runs.
                    if idle || last_check.elapsed() >= CHECK_AT_LEAST_EVERY {
                        last_check = Instant::now();
                        self.idle(lock_conn, &mut last_retention).await?;
                    }
                    // Wait for an acknowledgement, new rows, the next read's turn, or the poll.
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        _ = in_flight.next_settled(), if busy => {}
                        () = self.appended.appended_here() => pace.woken(),
                        notification = listener.recv() => {
                            notification.map_err(InfraError::db("outbox listener"))?;
                            pace.woken();
                        }
                        () = pace.turn() => {}
                        () = tokio::time::sleep(self.options.poll_interval) => pace.woken(),
                    }
                }
                Err(PipelineError::Database(error)) => return Err(error),
                Err(PipelineError::Delivery {
                    message,
                    producer_unusable,
                }) => {
                    failures += 1;
                    // After the pause, everything unpublished is read again from the start.
                    pace.restart();
                    // Nothing to write while the broker is away: the pool gets it back.
                    kept = None;
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

    /// One step of the pipeline on the relay's kept connection (`db::kept`: no test of the
    /// connection between one step's statements and the next's), or on one from the pool when
    /// none is kept. A database failure gives the connection back.
    async fn step(
        &self,
        kept: &mut Option<KeptConnection>,
        producer: &FutureProducer,
        in_flight: &mut InFlight,
        capacity: usize,
    ) -> Result<Progress, PipelineError> {
        let mut connection = KeptConnection::reuse_or_acquire(kept.take(), &self.pool)
            .await
            .map_err(|e| PipelineError::Database(InfraError::db("take a relay connection")(e)))?;
        let result = pipeline::step(connection.connection(), producer, in_flight, capacity).await;
        *kept = connection.keep_if(!matches!(result, Err(PipelineError::Database(_))));
        result
    }

    /// Checks that this instance still holds the lock and runs retention when it is due.
    async fn idle(
        &self,
        lock_conn: &mut PgConnection,
        last_retention: &mut tokio::time::Instant,
    ) -> Result<(), InfraError> {
        sqlx::query!("SELECT 1 AS alive")
            .fetch_one(&mut *lock_conn)
            .await
            .map_err(InfraError::db("relay lock connection lost"))?;
        if last_retention.elapsed() >= self.options.retention_interval {
            *last_retention = tokio::time::Instant::now();
            match purge_published(&self.pool, self.options.retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "purged published outbox rows"),
                Err(error) => tracing::warn!(error = %Chain(&error), "outbox retention failed"),
            }
        }
        Ok(())
    }

    fn producer(&self) -> Result<FutureProducer, InfraError> {
        crate::kafka::client::producer_config(&self.kafka)
            .create()
            .map_err(InfraError::kafka("create relay producer"))
    }
}
