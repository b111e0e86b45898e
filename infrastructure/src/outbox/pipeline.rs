//! The relay's publishing pipeline: rows are read and enqueued while earlier ones are still
//! waiting for the broker's acknowledgement.
//!
//! The relay used to publish in rounds: read a batch, enqueue it, wait for every
//! acknowledgement, mark, read again. Under 1,000 commands/s a round took 30-70 ms, almost all
//! of it waiting, and a row committed just after a read waited for the whole round before it
//! was even read: commit-to-Kafka p50 54 ms against 7 ms for a bare producer. Now each step
//! takes what is ready and never waits for the rest:
//!
//! - **read** unpublished rows in id order that are not already in flight, and enqueue them in
//!   that order (stopping at a full queue so nothing overtakes a row not yet enqueued);
//! - **harvest** the acknowledgements that arrived, mark exactly those rows published in one
//!   statement, before the next read (so an acknowledged row is never read again).
//!
//! Per-aggregate order holds as before: an aggregate's next event is written by a command that
//! started after the previous one committed, so it has a higher id and no read sees it without
//! the earlier one, which is then enqueued first (or already in flight, on the same partition of
//! the idempotent producer). On a failed delivery nothing more is enqueued until everything in
//! flight has settled; then the failures are recorded and the relay backs off and starts over
//! from the oldest unpublished row.
//!
//! Reads start above a gap-safe [`Floor`] instead of at the first row, so they do not walk
//! the entries every published row leaves in the index until the next vacuum; the floor moves
//! past an id only once no transaction that could still commit one at or below it is running.
//!
//! A row refused for good (too large for the broker, an invalid record, a topic the
//! producer may not write) would fail the same way forever. After [`PARK_AFTER`] refusals it
//! is parked: it and the later rows of its aggregate (same topic and key) are left out of the
//! reads until an operator retries them, so only that aggregate waits, never the relay.

use std::collections::HashSet;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use sqlx::PgConnection;

use super::floor::{Covered, Floor, Marks};
use super::publish_span::PublishSpan;
use crate::InfraError;

/// Refusals for good a row may get before it is parked.
pub(crate) const PARK_AFTER: i32 = 3;

/// Why a delivery failed.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    /// The producer's idempotence state is gone: only a new producer can publish again.
    producer_unusable: bool,
    /// The record itself is refused, and would be again (see [`refused_for_good`]).
    permanent: bool,
}

impl Failure {
    fn of(error: &KafkaError) -> Self {
        Self {
            message: error.to_string(),
            producer_unusable: loses_producer_state(error),
            permanent: refused_for_good(error),
        }
    }
}

/// The outcome of one row's delivery.
struct Settled {
    id: i64,
    /// Seconds from the commit to the acknowledgement (or failure).
    lag_seconds: f64,
    /// The broker's or the producer's refusal, if any.
    failure: Option<Failure>,
}

/// Rows enqueued on the producer and not yet settled.
#[derive(Default)]
pub(super) struct InFlight {
    deliveries: FuturesUnordered<BoxFuture<'static, Settled>>,
    ids: HashSet<i64>,
    /// Settled, not yet harvested.
    parked: Vec<Settled>,
    /// Every row still to read is above it.
    floor: Floor,
}

impl InFlight {
    /// Rows enqueued and not yet acknowledged or refused.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Waits until one more delivery settles; `None` at once when none is in flight.
    pub(super) async fn next_settled(&mut self) -> Option<()> {
        let settled = self.deliveries.next().await?;
        self.parked.push(settled);
        Some(())
    }
}

/// What a step of the pipeline did.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Whether it read (it may not: no room, a delivery failed, or not asked to).
    pub read: bool,
    /// Whether the read stopped short of what it could see (the room in flight, a full
    /// producer queue, a refused row): the rest waits to be read at once.
    pub cut_short: bool,
    /// Rows read and enqueued.
    pub enqueued: usize,
    /// Rows acknowledged and marked published.
    pub published: usize,
}

/// Why the pipeline stopped.
pub(super) enum PipelineError {
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

/// Harvests settled deliveries and marks them; then, unless a delivery failed, reads and
/// enqueues what is new. `capacity` bounds the rows in flight (0: harvest only).
pub(super) async fn step(
    connection: &mut PgConnection,
    producer: &FutureProducer,
    in_flight: &mut InFlight,
    capacity: usize,
) -> Result<Progress, PipelineError> {
    let mut progress = Progress::default();
    let failure = harvest(connection, in_flight, &mut progress).await?;
    if let Some(Failure {
        message,
        producer_unusable,
        ..
    }) = failure
    {
        // Let everything in flight settle, mark what got through, then report. The failed rows
        // are unpublished below the floor: the next read starts from the first row.
        while in_flight.next_settled().await.is_some() {}
        let _ = harvest(connection, in_flight, &mut progress).await?;
        in_flight.floor.reset();
        return Err(PipelineError::Delivery {
            message,
            producer_unusable,
        });
    }
    let room = capacity.saturating_sub(in_flight.len());
    if room > 0 {
        progress.read = true;
        (progress.enqueued, progress.cut_short) =
            read_and_enqueue(connection, producer, in_flight, room).await?;
    }
    Ok(progress)
}

/// Marks every settled acknowledgement published and records refusals (parking the rows
/// refused for good [`PARK_AFTER`] times); answers the first refusal.
async fn harvest(
    connection: &mut PgConnection,
    in_flight: &mut InFlight,
    progress: &mut Progress,
) -> Result<Option<Failure>, PipelineError> {
    while let Some(Some(settled)) = in_flight.deliveries.next().now_or_never() {
        in_flight.parked.push(settled);
    }
    if in_flight.parked.is_empty() {
        return Ok(None);
    }
    let settled = std::mem::take(&mut in_flight.parked);
    let mut published = Vec::with_capacity(settled.len());
    let mut failed = Vec::new();
    let mut first_failure: Option<Failure> = None;
    let lag = metrics::histogram!("chronicle_relay_publish_lag_seconds");
    for row in &settled {
        in_flight.ids.remove(&row.id);
        match &row.failure {
            None => {
                published.push(row.id);
                lag.record(row.lag_seconds);
            }
            Some(failure) => {
                failed.push((row.id, failure.permanent));
                match &mut first_failure {
                    None => first_failure = Some(failure.clone()),
                    Some(first) => first.producer_unusable |= failure.producer_unusable,
                }
            }
        }
    }
    if !published.is_empty() {
        // The mark's transaction id is given out after the last read: the floor's proof that
        // the transactions that read could not see have ended, once they have.
        let transaction = sqlx::query_scalar!(
            r#"WITH marked AS (
                   UPDATE outbox SET published_at = now() WHERE id = ANY($1) RETURNING 1)
               SELECT pg_current_xact_id()::text::bigint AS "transaction!"
               FROM (SELECT count(*) FROM marked) AS done"#,
            &published,
        )
        .fetch_one(&mut *connection)
        .await
        .map_err(|e| PipelineError::Database(InfraError::db("mark outbox rows published")(e)))?;
        in_flight.floor.later_transaction(transaction);
        progress.published += published.len();
        metrics::counter!("chronicle_relay_published_total").increment(published.len() as u64);
    }
    if let Some(first) = &first_failure {
        metrics::counter!("chronicle_relay_publish_failures_total").increment(failed.len() as u64);
        record_failures(connection, &failed, &first.message).await?;
    }
    Ok(first_failure)
}

/// Counts an attempt on each failed row with the error; a row refused for good for the
/// [`PARK_AFTER`]th time is parked.
async fn record_failures(
    connection: &mut PgConnection,
    failed: &[(i64, bool)],
    message: &str,
) -> Result<(), PipelineError> {
    let (ids, permanent): (Vec<i64>, Vec<bool>) = failed.iter().copied().unzip();
    let recorded = sqlx::query!(
        r#"UPDATE outbox o SET attempts = o.attempts + 1, last_error = $3,
                  parked_at = CASE WHEN f.permanent AND o.attempts + 1 >= $4 THEN now() END
           FROM unnest($1::bigint[], $2::bool[]) AS f(id, permanent)
           WHERE o.id = f.id
           RETURNING o.id, o.topic, o.key, o.parked_at IS NOT NULL AS "now_parked!""#,
        &ids,
        &permanent,
        message,
        PARK_AFTER,
    )
    .fetch_all(connection)
    .await
    .map_err(|e| PipelineError::Database(InfraError::db("record outbox failure")(e)))?;
    let mut parked = 0u64;
    for row in recorded.iter().filter(|row| row.now_parked) {
        let (id, topic, key) = (row.id, &row.topic, &row.key);
        parked += 1;
        tracing::error!(outbox_id = id, %topic, %key, error = %message,
            "outbox row parked after {PARK_AFTER} refusals; its aggregate's later events wait for retryHeld(kind: PARKED)");
    }
    if parked > 0 {
        metrics::counter!("chronicle_relay_parked_total").increment(parked);
    }
    Ok(())
}

/// An unpublished outbox row as the relay reads it, with the marks of the read's snapshot
/// (the `!` of the column names is the macro's not-null mark, part of the name Postgres answers
/// with).
#[derive(sqlx::FromRow)]
struct UnpublishedRow {
    id: i64,
    topic: String,
    key: String,
    /// `[[name, value], ...]` as Postgres's own JSON text.
    #[sqlx(rename = "headers!")]
    headers: String,
    /// The event as Postgres's own JSON text.
    #[sqlx(rename = "payload!")]
    payload: String,
    /// Seconds between the row's commit and the read.
    #[sqlx(rename = "waited!")]
    waited: f64,
    /// The oldest transaction still running in the read's snapshot.
    #[sqlx(rename = "oldest_running!")]
    oldest_running: i64,
    /// The highest id the read's snapshot sees.
    #[sqlx(rename = "top!")]
    top: i64,
    /// The first parked row the snapshot sees, if any.
    first_parked: Option<i64>,
}

/// Reads up to `room` unpublished rows above the floor and not in flight, in id order, and
/// enqueues them in that order; answers how many were enqueued, and whether anything it could
/// see is left to read (the room, a full queue or a refused row stopped it).
async fn read_and_enqueue(
    connection: &mut PgConnection,
    producer: &FutureProducer,
    in_flight: &mut InFlight,
    room: usize,
) -> Result<(usize, bool), PipelineError> {
    let floor = in_flight.floor.get(Instant::now());
    let exclude: Vec<i64> = in_flight
        .ids
        .iter()
        .copied()
        .filter(|id| *id > floor)
        .collect();
    // Prepared once per connection, like most statements: the statement's file says why its
    // plans stay cheap whatever the statistics.
    let statement = sqlx::query_file_as!(
        UnpublishedRow,
        "sql/relay_read.sql",
        room as i64,
        &exclude,
        floor,
    );
    let rows: Vec<UnpublishedRow> = statement
        .fetch_all(connection)
        .await
        .map_err(|e| PipelineError::Database(InfraError::db("read outbox")(e)))?;
    let read_at = Instant::now();
    let mut enqueued = 0;
    for row in &rows {
        let id = row.id;
        // Seconds between the commit and the read.
        let waited = row.waited.max(0.0);
        let (topic, key, payload) = (row.topic.as_str(), row.key.as_str(), row.payload.as_str());
        let pairs = header_pairs(&row.headers);
        let stored = pairs
            .iter()
            .find(|(name, _)| name == "traceparent")
            .map(|(_, value)| value.as_str());
        let publish = PublishSpan::open(topic, stored);
        let mut headers = OwnedHeaders::new_with_capacity(pairs.len());
        for (name, value) in &pairs {
            let value = match &publish {
                Some(publish) if name == "traceparent" => publish.traceparent(),
                _ => value.as_str(),
            };
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let record = FutureRecord::to(topic)
            .key(key.as_bytes())
            .payload(payload.as_bytes())
            .headers(headers);
        let delivery = match producer.send_result(record) {
            Ok(delivery) => delivery,
            // Full: the rest waits for the next step, so nothing overtakes it.
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
            Err((error, _)) => {
                // Refused before it was queued: it settles as failed, like a refused delivery.
                let failure = Some(Failure {
                    message: format!("enqueue outbox row {id}: {error}"),
                    ..Failure::of(&error)
                });
                in_flight.ids.insert(id);
                in_flight.deliveries.push(
                    async move {
                        Settled {
                            id,
                            lag_seconds: waited,
                            failure,
                        }
                    }
                    .boxed(),
                );
                break;
            }
        };
        in_flight.ids.insert(id);
        in_flight.deliveries.push(
            async move {
                let (failure, delivered) = match delivery.await {
                    Ok(Ok(delivered)) => (None, Some(delivered)),
                    Ok(Err((error, _))) => (Some(Failure::of(&error)), None),
                    Err(_) => (
                        Some(Failure {
                            message: "producer dropped a delivery".to_owned(),
                            producer_unusable: false,
                            permanent: false,
                        }),
                        None,
                    ),
                };
                match (publish, delivered) {
                    (Some(publish), Some(at)) => publish.delivered(at.partition, at.offset),
                    (Some(publish), None) => publish.failed(),
                    (None, _) => {}
                }
                Settled {
                    id,
                    lag_seconds: waited + read_at.elapsed().as_secs_f64(),
                    failure,
                }
            }
            .boxed(),
        );
        enqueued += 1;
    }
    let cut_short = !rows.is_empty() && (enqueued < rows.len() || rows.len() >= room);
    if let Some(first) = rows.first() {
        let covered = if cut_short {
            // A limit, a full queue or a refused row stopped it: the rest is still to read.
            Covered::UpTo(rows[..enqueued].last().map_or(floor, |row| row.id))
        } else {
            Covered::Everything
        };
        let marks = Marks {
            oldest_running: first.oldest_running,
            top: first.top,
            first_parked: first.first_parked,
        };
        in_flight.floor.advance(marks, covered);
    }
    Ok((enqueued, cut_short))
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

/// Whether the broker or the producer refuses the record itself, so that sending it again
/// can only fail again: too large, malformed, or for a topic this producer may not write.
/// Outages, timeouts and leadership changes are not among them: those rows are retried as
/// long as it takes.
fn refused_for_good(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::TopicAuthorizationFailed
        )
    )
}

/// Reads `[[name, value], ...]` back into header pairs: straight into the pairs, as the store
/// writes them (`OutboxHeaders`); through a JSON tree, keeping what pairs it finds, only if
/// something else wrote the row.
fn header_pairs(text: &str) -> Vec<(String, String)> {
    serde_json::from_str(text).unwrap_or_else(|_| {
        let value: Value = serde_json::from_str(text).unwrap_or_default();
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_of_the_record_itself_park_it() {
        let refused = |code| KafkaError::MessageProduction(code);
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ] {
            assert!(refused_for_good(&refused(code)), "{code:?}");
        }
        // Outages, timeouts and leadership changes pass: those rows are retried forever.
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
        ] {
            assert!(!refused_for_good(&refused(code)), "{code:?}");
        }
    }

    #[test]
    fn headers_read_back_as_the_store_wrote_them_and_a_foreign_rows_good_pairs_are_kept() {
        let written = vec![
            ("ce_id".to_owned(), "0193".to_owned()),
            ("correlation_id".to_owned(), "a \"quoted\" id ☃".to_owned()),
        ];
        let text = serde_json::to_string(&written).unwrap();
        assert_eq!(header_pairs(&text), written);
        assert_eq!(
            header_pairs(r#"[["ce_id", "0193"], ["broken"], 7, ["n", 1]]"#),
            vec![("ce_id".to_owned(), "0193".to_owned())]
        );
        assert!(header_pairs("not json").is_empty());
    }
}
