//! Erasures in Postgres (`erasures`, keyed by pseudonym, found by a keyed hash of the subject's
//! id), and the rewrite of the copies in clear an erasure makes in one transaction.

use async_trait::async_trait;
use chronicle_application::data::event_log::StoredEvent;
use chronicle_application::ports::erasures::{
    ErasureLock, ErasureRecord, Erasures, PositionedEvent, Redaction, Scrub, StreamRef,
};
use chronicle_application::ports::store_error::StoreError;
use chronicle_application::privacy::seal::reference;
use chronicle_domain::ids::{ERASED_PREFIX, SEALED_PREFIX};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::store_error;
use crate::event_store::{EventRow, PositionedEventRow};

/// The erasures on `pool`.
#[derive(Clone)]
pub struct PgErasures {
    pool: PgPool,
}

impl PgErasures {
    /// Over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// What a dead letter's or a projection failure's reason becomes when its event held a value
/// of an erased person: a reason may quote the value (a decoding error does).
const WITHHELD: &str = "reason withheld: the event holds values of an erased person";

/// An `erasures` row. The subject's id is recorded only as a keyed hash
/// (`sha256(tag_key || 0x0a || id)`, the key in `privacy_tag_key`): every statement that looks
/// one up computes it from `$1`.
struct RecordRow {
    pseudonym: String,
    erased_at: DateTime<Utc>,
    erased_by: String,
    reason: String,
    streams: i64,
    scrubbed: bool,
}

impl From<RecordRow> for ErasureRecord {
    fn from(row: RecordRow) -> Self {
        Self {
            pseudonym: row.pseudonym,
            erased_at: row.erased_at,
            erased_by: row.erased_by,
            reason: row.reason,
            streams: row.streams.max(0) as u64,
            scrubbed: row.scrubbed,
        }
    }
}

fn positioned(row: PositionedEventRow) -> PositionedEvent {
    let (position, event) = row.split();
    PositionedEvent { position, event }
}

/// `value` as a LIKE pattern that matches it only as a whole JSON string somewhere in a text.
fn quoted_anywhere(value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%\"{escaped}\"%")
}

#[async_trait]
impl Erasures for PgErasures {
    async fn begin(
        &self,
        subject_id: &str,
        pseudonym: &str,
        erased_by: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            r#"INSERT INTO erasures (subject_tag, pseudonym, erased_by, reason)
               VALUES ((SELECT sha256(tag_key || '\x0a'::bytea || convert_to($1, 'UTF8'))
                        FROM privacy_tag_key), $2, $3, $4)
               ON CONFLICT (pseudonym) DO NOTHING"#,
            subject_id,
            pseudonym,
            erased_by,
            reason,
        )
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn find(&self, subject_id: &str) -> Result<Option<ErasureRecord>, StoreError> {
        let row = sqlx::query_as!(
            RecordRow,
            r#"SELECT pseudonym, erased_at, erased_by, reason, streams,
                      scrubbed_at IS NOT NULL AS "scrubbed!"
               FROM erasures
               WHERE subject_tag = (SELECT sha256(tag_key || '\x0a'::bytea
                                                  || convert_to($1, 'UTF8'))
                                    FROM privacy_tag_key)
               ORDER BY erased_at DESC LIMIT 1"#,
            subject_id,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(row.map(ErasureRecord::from))
    }

    async fn unfinished(&self, subject_id: &str) -> Result<Vec<ErasureRecord>, StoreError> {
        let rows = sqlx::query_as!(
            RecordRow,
            r#"SELECT pseudonym, erased_at, erased_by, reason, streams,
                      scrubbed_at IS NOT NULL AS "scrubbed!"
               FROM erasures
               WHERE subject_tag = (SELECT sha256(tag_key || '\x0a'::bytea
                                                  || convert_to($1, 'UTF8'))
                                    FROM privacy_tag_key)
                 AND scrubbed_at IS NULL
               ORDER BY erased_at"#,
            subject_id,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.into_iter().map(ErasureRecord::from).collect())
    }

    async fn lock(&self) -> Result<ErasureLock, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('chronicle-erasure'))")
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        // The transaction holds the lock until it ends: when the guard drops, or the process
        // dies and its connection with it.
        Ok(ErasureLock(Box::new(tx)))
    }

    async fn in_clear_naming(&self, subject_id: &str) -> Result<Vec<PositionedEvent>, StoreError> {
        let rows = sqlx::query_as!(
            PositionedEventRow,
            "SELECT e.position, e.event_id, e.aggregate_type, e.aggregate_id, e.sequence,
                    e.event_type, e.event_version, e.payload, e.metadata, e.recorded_at, e.hash,
                    e.previous_hash
             FROM events e
             WHERE e.metadata ->> 'sealed' IS NULL
               AND (e.metadata ->> 'actor_id' = $1 OR e.payload::text LIKE $2)
             ORDER BY e.position",
            subject_id,
            quoted_anywhere(subject_id),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.into_iter().map(positioned).collect())
    }

    async fn reports_naming(&self, names: &[String]) -> Result<Vec<PositionedEvent>, StoreError> {
        let patterns: Vec<String> = names.iter().map(|name| quoted_anywhere(name)).collect();
        let rows = sqlx::query_as!(
            PositionedEventRow,
            "SELECT e.position, e.event_id, e.aggregate_type, e.aggregate_id, e.sequence,
                    e.event_type, e.event_version, e.payload, e.metadata, e.recorded_at, e.hash,
                    e.previous_hash
             FROM events e
             WHERE e.event_type = 'ReportCompleted' AND e.payload::text LIKE ANY($1)
             ORDER BY e.position",
            &patterns,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.into_iter().map(positioned).collect())
    }

    async fn erasure_appended(&self, pseudonym: &str) -> Result<bool, StoreError> {
        // The erasure event of the pseudonym: its stream's id is the pseudonym as a UUID.
        sqlx::query_scalar!(
            r#"SELECT EXISTS (
                   SELECT 1 FROM events
                   WHERE aggregate_type = 'DataSubject' AND replace(aggregate_id, '-', '') = $1
                     AND event_type = 'DataSubjectErased') AS "appended!""#,
            pseudonym,
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)
    }

    async fn plan(&self, pseudonym: &str, redactions: &[Redaction]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query!(
            "DELETE FROM erased_events WHERE pseudonym = $1 AND applied_at IS NULL",
            pseudonym,
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let event_ids: Vec<Uuid> = redactions.iter().map(|r| r.event_id).collect();
        let prior: Vec<String> = redactions.iter().map(|r| r.prior_hash.clone()).collect();
        let redacted: Vec<String> = redactions.iter().map(|r| r.redacted_hash.clone()).collect();
        let payloads: Vec<Value> = redactions.iter().map(|r| r.payload.clone()).collect();
        let metadata: Vec<Value> = redactions.iter().map(|r| r.metadata.clone()).collect();
        sqlx::query!(
            "INSERT INTO erased_events
                 (event_id, pseudonym, prior_hash, redacted_hash, pending_payload, pending_metadata)
             SELECT r.event_id, $1, r.prior, r.redacted, r.payload, r.metadata
             FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])
                  AS r(event_id, prior, redacted, payload, metadata)",
            pseudonym,
            &event_ids,
            &prior,
            &redacted,
            &payloads,
            &metadata,
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn settle(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // Only the plans whose erasure event was appended: its stream's id is the pseudonym
        // as a UUID.
        let changed = sqlx::query!(
            "UPDATE events e SET payload = l.pending_payload, metadata = l.pending_metadata
             FROM erased_events l
             WHERE l.event_id = e.event_id AND l.applied_at IS NULL
               AND EXISTS (SELECT 1 FROM events
                           WHERE aggregate_type = 'DataSubject'
                             AND replace(aggregate_id, '-', '') = l.pseudonym
                             AND event_type = 'DataSubjectErased')"
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?
        .rows_affected();
        sqlx::query!(
            "UPDATE erased_events l
             SET applied_at = now(), pending_payload = NULL, pending_metadata = NULL
             WHERE l.applied_at IS NULL
               AND EXISTS (SELECT 1 FROM events
                           WHERE aggregate_type = 'DataSubject'
                             AND replace(aggregate_id, '-', '') = l.pseudonym
                             AND event_type = 'DataSubjectErased')"
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query!("DELETE FROM erased_events WHERE applied_at IS NULL")
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(changed)
    }

    async fn streams_of(&self, pseudonym: &str) -> Result<Vec<StreamRef>, StoreError> {
        // The actor through its index; values in the payload by a scan of sealed events.
        let rows = sqlx::query_as!(
            StreamRef,
            r#"SELECT aggregate_type AS "aggregate_type!", aggregate_id AS "aggregate_id!"
               FROM events
               WHERE metadata ->> 'actor_id' = $1 OR metadata ->> 'actor_id' = $4
               UNION
               SELECT aggregate_type, aggregate_id FROM events
               WHERE (metadata ->> 'sealed' IS NOT NULL
                      AND (payload::text LIKE $2 OR payload::text LIKE $3))
                  OR payload::text LIKE $5
               ORDER BY 1, 2"#,
            reference(pseudonym),
            quoted_anywhere(&reference(pseudonym)),
            format!("%\"{SEALED_PREFIX}{pseudonym}:%"),
            format!("{ERASED_PREFIX}{pseudonym}"),
            quoted_anywhere(&format!("{ERASED_PREFIX}{pseudonym}")),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows)
    }

    async fn events_of(&self, streams: &[StreamRef]) -> Result<Vec<StoredEvent>, StoreError> {
        let (types, ids): (Vec<String>, Vec<String>) = streams
            .iter()
            .map(|s| (s.aggregate_type.clone(), s.aggregate_id.clone()))
            .unzip();
        let rows = sqlx::query_as!(
            EventRow,
            "SELECT e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                    e.event_version, e.payload, e.metadata, e.recorded_at, e.hash,
                    e.previous_hash
             FROM UNNEST($1::text[], $2::text[]) AS s(aggregate_type, aggregate_id)
             JOIN events e ON e.aggregate_type = s.aggregate_type
                          AND e.aggregate_id = s.aggregate_id
             ORDER BY e.aggregate_type, e.aggregate_id, e.sequence",
            &types,
            &ids,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.into_iter().map(StoredEvent::from).collect())
    }

    async fn scrub(&self, scrub: &Scrub) -> Result<ErasureRecord, StoreError> {
        let (types, ids): (Vec<String>, Vec<String>) = scrub
            .streams
            .iter()
            .map(|s| (s.aggregate_type.clone(), s.aggregate_id.clone()))
            .unzip();
        let (event_ids, envelopes): (Vec<Uuid>, Vec<Value>) = scrub
            .envelopes
            .iter()
            .map(|(id, v)| (*id, v.clone()))
            .unzip();
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query!(
            "DELETE FROM snapshots s USING UNNEST($1::text[], $2::text[]) AS a(t, id)
             WHERE s.aggregate_type = a.t AND s.aggregate_id = a.id",
            &types,
            &ids,
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        // The subject's own go. Others' on those streams stay, so their retries are still
        // recognised, without their fingerprints, which hash the commands' arguments (the
        // subject's titles, an assignee id) without a salt; a record without one still
        // answers a retry.
        sqlx::query!(
            "DELETE FROM idempotency_keys WHERE actor_id = $1",
            scrub.subject_id,
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query!(
            "UPDATE idempotency_keys SET request_fingerprint = NULL
             WHERE aggregate_id = ANY($1) AND request_fingerprint IS NOT NULL",
            &ids,
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query!(
            "UPDATE outbox o SET payload = v.payload
             FROM UNNEST($1::uuid[], $2::jsonb[]) AS v(event_id, payload)
             WHERE o.event_id = v.event_id",
            &event_ids,
            &envelopes,
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        // Dead letters and projection failures hold the events as consumed (in clear): they
        // take the envelope as it reads now, and their reasons, which may quote a value, go.
        sqlx::query!(
            "UPDATE dead_letters d SET payload = convert_to(v.payload::text, 'UTF8'),
                    reason = $3
             FROM (SELECT l.id, h.value AS ce_id
                   FROM dead_letters l, unnest(l.header_names, l.header_values) AS h(name, value)
                   WHERE h.name = 'ce_id') AS held
             JOIN UNNEST($1::uuid[], $2::jsonb[]) AS v(event_id, payload)
               ON held.ce_id = convert_to(v.event_id::text, 'UTF8')
             WHERE d.id = held.id",
            &event_ids,
            &envelopes,
            WITHHELD,
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query!(
            "UPDATE dead_letters SET
                redriven_by = CASE WHEN redriven_by = $1 THEN $2 ELSE redriven_by END,
                discarded_by = CASE WHEN discarded_by = $1 THEN $2 ELSE discarded_by END
             WHERE redriven_by = $1 OR discarded_by = $1",
            scrub.subject_id,
            format!("{ERASED_PREFIX}{}", scrub.pseudonym),
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query!(
            "UPDATE projection_failures f SET event = v.payload, reason = $3
             FROM UNNEST($1::uuid[], $2::jsonb[]) AS v(event_id, payload)
             WHERE f.event_id = v.event_id",
            &event_ids,
            &envelopes,
            WITHHELD,
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let row = sqlx::query_as!(
            RecordRow,
            r#"UPDATE erasures SET streams = $2, scrubbed_at = now() WHERE pseudonym = $1
               RETURNING pseudonym, erased_at, erased_by, reason, streams,
                         scrubbed_at IS NOT NULL AS "scrubbed!""#,
            scrub.pseudonym,
            scrub.streams.len() as i64,
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::corrupt("the erasure being scrubbed has no record"))?;
        tx.commit().await.map_err(store_error)?;
        Ok(row.into())
    }
}
