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
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::db::store_error;
use crate::event_store::stored_event;

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

/// The keyed hash a subject's id (`$1`) is recorded under: the id itself is never stored.
const SUBJECT_TAG: &str =
    "(SELECT sha256(tag_key || '\\x0a'::bytea || convert_to($1, 'UTF8')) FROM privacy_tag_key)";

/// What a dead letter's or a projection failure's reason becomes when its event held a value
/// of an erased person: a reason may quote the value (a decoding error does).
const WITHHELD: &str = "reason withheld: the event holds values of an erased person";

/// An erasure row's columns, as [`record`] reads them.
const RECORD: &str =
    "pseudonym, erased_at, erased_by, reason, streams, scrubbed_at IS NOT NULL AS scrubbed";

fn record(row: &PgRow) -> ErasureRecord {
    ErasureRecord {
        pseudonym: row.get("pseudonym"),
        erased_at: row.get("erased_at"),
        erased_by: row.get("erased_by"),
        reason: row.get("reason"),
        streams: row.get::<i64, _>("streams").max(0) as u64,
        scrubbed: row.get("scrubbed"),
    }
}

/// The erasure event of the pseudonym `$1`: its stream's id is the pseudonym as a UUID.
const ERASURE_EVENT: &str = "SELECT 1 FROM events
     WHERE aggregate_type = 'DataSubject' AND replace(aggregate_id, '-', '') = $1
       AND event_type = 'DataSubjectErased'";

/// An event's columns with its position, as [`positioned`] reads them.
const POSITIONED: &str = "e.position, e.event_id, e.aggregate_type, e.aggregate_id, e.sequence,
     e.event_type, e.event_version, e.payload, e.metadata, e.recorded_at, e.hash, e.previous_hash";

fn positioned(row: &PgRow) -> PositionedEvent {
    PositionedEvent {
        position: row.get("position"),
        event: stored_event(row),
    }
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
        sqlx::query(&format!(
            "INSERT INTO erasures (subject_tag, pseudonym, erased_by, reason)
             VALUES ({SUBJECT_TAG}, $2, $3, $4) ON CONFLICT (pseudonym) DO NOTHING"
        ))
        .bind(subject_id)
        .bind(pseudonym)
        .bind(erased_by)
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn find(&self, subject_id: &str) -> Result<Option<ErasureRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RECORD} FROM erasures WHERE subject_tag = {SUBJECT_TAG}
             ORDER BY erased_at DESC LIMIT 1"
        ))
        .bind(subject_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(row.as_ref().map(record))
    }

    async fn unfinished(&self, subject_id: &str) -> Result<Vec<ErasureRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RECORD} FROM erasures
             WHERE subject_tag = {SUBJECT_TAG} AND scrubbed_at IS NULL ORDER BY erased_at"
        ))
        .bind(subject_id)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.iter().map(record).collect())
    }

    async fn lock(&self) -> Result<ErasureLock, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('chronicle-erasure'))")
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        // The transaction holds the lock until it ends: when the guard drops, or the process
        // dies and its connection with it.
        Ok(ErasureLock(Box::new(tx)))
    }

    async fn in_clear_naming(&self, subject_id: &str) -> Result<Vec<PositionedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {POSITIONED} FROM events e
             WHERE e.metadata ->> 'sealed' IS NULL
               AND (e.metadata ->> 'actor_id' = $1 OR e.payload::text LIKE $2)
             ORDER BY e.position"
        ))
        .bind(subject_id)
        .bind(quoted_anywhere(subject_id))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.iter().map(positioned).collect())
    }

    async fn reports_naming(&self, names: &[String]) -> Result<Vec<PositionedEvent>, StoreError> {
        let patterns: Vec<String> = names.iter().map(|name| quoted_anywhere(name)).collect();
        let rows = sqlx::query(&format!(
            "SELECT {POSITIONED} FROM events e
             WHERE e.event_type = 'ReportCompleted' AND e.payload::text LIKE ANY($1)
             ORDER BY e.position"
        ))
        .bind(&patterns)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.iter().map(positioned).collect())
    }

    async fn erasure_appended(&self, pseudonym: &str) -> Result<bool, StoreError> {
        sqlx::query_scalar(&format!("SELECT EXISTS ({ERASURE_EVENT})"))
            .bind(pseudonym)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)
    }

    async fn plan(&self, pseudonym: &str, redactions: &[Redaction]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query("DELETE FROM erased_events WHERE pseudonym = $1 AND applied_at IS NULL")
            .bind(pseudonym)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let event_ids: Vec<Uuid> = redactions.iter().map(|r| r.event_id).collect();
        let prior: Vec<&str> = redactions.iter().map(|r| r.prior_hash.as_str()).collect();
        let redacted: Vec<&str> = redactions
            .iter()
            .map(|r| r.redacted_hash.as_str())
            .collect();
        let payloads: Vec<&Value> = redactions.iter().map(|r| &r.payload).collect();
        let metadata: Vec<&Value> = redactions.iter().map(|r| &r.metadata).collect();
        sqlx::query(
            "INSERT INTO erased_events
                 (event_id, pseudonym, prior_hash, redacted_hash, pending_payload, pending_metadata)
             SELECT r.event_id, $1, r.prior, r.redacted, r.payload, r.metadata
             FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])
                  AS r(event_id, prior, redacted, payload, metadata)",
        )
        .bind(pseudonym)
        .bind(&event_ids)
        .bind(&prior)
        .bind(&redacted)
        .bind(&payloads)
        .bind(&metadata)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn settle(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let changed = sqlx::query(&format!(
            "UPDATE events e SET payload = l.pending_payload, metadata = l.pending_metadata
             FROM erased_events l
             WHERE l.event_id = e.event_id AND l.applied_at IS NULL
               AND EXISTS ({})",
            ERASURE_EVENT.replace("$1", "l.pseudonym")
        ))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?
        .rows_affected();
        sqlx::query(&format!(
            "UPDATE erased_events l
             SET applied_at = now(), pending_payload = NULL, pending_metadata = NULL
             WHERE l.applied_at IS NULL AND EXISTS ({})",
            ERASURE_EVENT.replace("$1", "l.pseudonym")
        ))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query("DELETE FROM erased_events WHERE applied_at IS NULL")
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(changed)
    }

    async fn streams_of(&self, pseudonym: &str) -> Result<Vec<StreamRef>, StoreError> {
        // The actor through its index; values in the payload by a scan of sealed events.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT aggregate_type, aggregate_id FROM events
             WHERE metadata ->> 'actor_id' = $1 OR metadata ->> 'actor_id' = $4
             UNION
             SELECT aggregate_type, aggregate_id FROM events
             WHERE (metadata ->> 'sealed' IS NOT NULL
                    AND (payload::text LIKE $2 OR payload::text LIKE $3))
                OR payload::text LIKE $5
             ORDER BY 1, 2",
        )
        .bind(reference(pseudonym))
        .bind(quoted_anywhere(&reference(pseudonym)))
        .bind(format!("%\"{SEALED_PREFIX}{pseudonym}:%"))
        .bind(format!("{ERASED_PREFIX}{pseudonym}"))
        .bind(quoted_anywhere(&format!("{ERASED_PREFIX}{pseudonym}")))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|(aggregate_type, aggregate_id)| StreamRef {
                aggregate_type,
                aggregate_id,
            })
            .collect())
    }

    async fn events_of(&self, streams: &[StreamRef]) -> Result<Vec<StoredEvent>, StoreError> {
        let (types, ids): (Vec<&str>, Vec<&str>) = streams
            .iter()
            .map(|s| (s.aggregate_type.as_str(), s.aggregate_id.as_str()))
            .unzip();
        let rows = sqlx::query(
            "SELECT e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                    e.event_version, e.payload, e.metadata, e.recorded_at, e.hash,
                    e.previous_hash
             FROM UNNEST($1::text[], $2::text[]) AS s(aggregate_type, aggregate_id)
             JOIN events e ON e.aggregate_type = s.aggregate_type
                          AND e.aggregate_id = s.aggregate_id
             ORDER BY e.aggregate_type, e.aggregate_id, e.sequence",
        )
        .bind(&types)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.iter().map(stored_event).collect())
    }

    async fn scrub(&self, scrub: &Scrub) -> Result<ErasureRecord, StoreError> {
        let (types, ids): (Vec<&str>, Vec<&str>) = scrub
            .streams
            .iter()
            .map(|s| (s.aggregate_type.as_str(), s.aggregate_id.as_str()))
            .unzip();
        let (event_ids, envelopes): (Vec<Uuid>, Vec<&Value>) =
            scrub.envelopes.iter().map(|(id, v)| (*id, v)).unzip();
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query(
            "DELETE FROM snapshots s USING UNNEST($1::text[], $2::text[]) AS a(t, id)
             WHERE s.aggregate_type = a.t AND s.aggregate_id = a.id",
        )
        .bind(&types)
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        // The subject's own go. Others' on those streams stay, so their retries are still
        // recognised, without their fingerprints, which hash the commands' arguments (the
        // subject's titles, an assignee id) without a salt; a record without one still
        // answers a retry.
        sqlx::query("DELETE FROM idempotency_keys WHERE actor_id = $1")
            .bind(&scrub.subject_id)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(
            "UPDATE idempotency_keys SET request_fingerprint = NULL
             WHERE aggregate_id = ANY($1) AND request_fingerprint IS NOT NULL",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query(
            "UPDATE outbox o SET payload = v.payload
             FROM UNNEST($1::uuid[], $2::jsonb[]) AS v(event_id, payload)
             WHERE o.event_id = v.event_id",
        )
        .bind(&event_ids)
        .bind(&envelopes)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        // Dead letters and projection failures hold the events as consumed (in clear): they
        // take the envelope as it reads now, and their reasons, which may quote a value, go.
        sqlx::query(
            "UPDATE dead_letters d SET payload = convert_to(v.payload::text, 'UTF8'),
                    reason = $3
             FROM (SELECT l.id, h.value AS ce_id
                   FROM dead_letters l, unnest(l.header_names, l.header_values) AS h(name, value)
                   WHERE h.name = 'ce_id') AS held
             JOIN UNNEST($1::uuid[], $2::jsonb[]) AS v(event_id, payload)
               ON held.ce_id = convert_to(v.event_id::text, 'UTF8')
             WHERE d.id = held.id",
        )
        .bind(&event_ids)
        .bind(&envelopes)
        .bind(WITHHELD)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query(
            "UPDATE dead_letters SET
                redriven_by = CASE WHEN redriven_by = $1 THEN $2 ELSE redriven_by END,
                discarded_by = CASE WHEN discarded_by = $1 THEN $2 ELSE discarded_by END
             WHERE redriven_by = $1 OR discarded_by = $1",
        )
        .bind(&scrub.subject_id)
        .bind(format!("{ERASED_PREFIX}{}", scrub.pseudonym))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query(
            "UPDATE projection_failures f SET event = v.payload, reason = $3
             FROM UNNEST($1::uuid[], $2::jsonb[]) AS v(event_id, payload)
             WHERE f.event_id = v.event_id",
        )
        .bind(&event_ids)
        .bind(&envelopes)
        .bind(WITHHELD)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let row = sqlx::query(&format!(
            "UPDATE erasures SET streams = $2, scrubbed_at = now() WHERE pseudonym = $1
             RETURNING {RECORD}"
        ))
        .bind(&scrub.pseudonym)
        .bind(scrub.streams.len() as i64)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::corrupt("the erasure being scrubbed has no record"))?;
        tx.commit().await.map_err(store_error)?;
        Ok(record(&row))
    }
}
