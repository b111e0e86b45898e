//! Subject keys in Postgres (`subject_keys`): one row per data subject, deleted to erase.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chronicle_application::ports::store_error::StoreError;
use chronicle_application::ports::subject_keys::{SubjectKey, SubjectKeys};
use chronicle_application::privacy::data_key::{new_pseudonym, DataKey};

use sqlx::PgPool;

use crate::db::store_error;

/// The keys on `pool`.
#[derive(Clone)]
pub struct PgSubjectKeys {
    pool: PgPool,
}

impl PgSubjectKeys {
    /// Over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A `subject_keys` row.
struct KeyRow {
    subject_id: String,
    pseudonym: String,
    data_key: Vec<u8>,
}

fn subject_key(row: KeyRow) -> Result<SubjectKey, StoreError> {
    let key = DataKey::from_bytes(&row.data_key)
        .ok_or_else(|| StoreError::corrupt("a subject key is not 32 bytes"))?;
    Ok(SubjectKey {
        subject_id: row.subject_id,
        pseudonym: row.pseudonym,
        key,
    })
}

/// How long a destroyed key waits for the appends that may have seen it; an append is one
/// statement, so this is only reached when something holds `events` open for writing.
const APPENDS_DEADLINE: Duration = Duration::from_secs(10);

impl PgSubjectKeys {
    /// Waits until every append that was in flight when a key's deletion committed has ended.
    ///
    /// An append checks, in its one statement, that the keys it sealed under exist; a
    /// statement that began before the deletion committed still saw the key and may commit
    /// after it, with values in clear in its outbox row. Once this answers, every such append
    /// has committed (or failed), so the erasure's rewrite of copies, which comes next, finds
    /// it; any later append sees the key gone and is refused.
    async fn await_appends_in_flight(&self) -> Result<(), StoreError> {
        // The transactions writing `events` now, other than ours: every append in flight. An
        // append takes this lock when its statement starts, before its snapshot, and keeps it
        // to its commit.
        let in_flight = sqlx::query_scalar!(
            r#"SELECT coalesce(array_agg(virtualtransaction), '{}') AS "in_flight!"
               FROM pg_locks
               WHERE locktype = 'relation' AND relation = to_regclass('events')
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()"#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        while !in_flight.is_empty() {
            // Which of them still hold their lock on `events`.
            let left = sqlx::query_scalar!(
                r#"SELECT count(*) AS "left!" FROM pg_locks
                   WHERE locktype = 'relation' AND relation = to_regclass('events')
                     AND database = (SELECT oid FROM pg_database
                                     WHERE datname = current_database())
                     AND mode = 'RowExclusiveLock' AND virtualtransaction = ANY($1)"#,
                &in_flight,
            )
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
            if left == 0 {
                break;
            }
            if started.elapsed() > APPENDS_DEADLINE {
                return Err(StoreError::Backend {
                    context: format!(
                        "{left} transactions writing events did not end within {}s of a \
                         key's destruction; ask for the erasure again once they have",
                        APPENDS_DEADLINE.as_secs()
                    ),
                    source: None,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Ok(())
    }
}

#[async_trait]
impl SubjectKeys for PgSubjectKeys {
    async fn key_for(&self, subject_id: &str) -> Result<SubjectKey, StoreError> {
        // Nearly every call finds the key: one read, no key made in vain. A key destroyed
        // between our insert and our read is made again: at most a few rounds.
        for _ in 0..3 {
            if let Some(found) = self.find(subject_id).await? {
                return Ok(found);
            }
            let made = DataKey::generate();
            let inserted = sqlx::query_scalar!(
                "INSERT INTO subject_keys (subject_id, pseudonym, data_key) VALUES ($1, $2, $3)
                 ON CONFLICT (subject_id) DO NOTHING RETURNING pseudonym",
                subject_id,
                new_pseudonym(),
                made.expose().as_slice(),
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
            if let Some(pseudonym) = inserted {
                return Ok(SubjectKey {
                    subject_id: subject_id.to_owned(),
                    pseudonym,
                    key: made,
                });
            }
            // Another caller's key was kept; the next round's read (a statement of its own,
            // so it sees that caller's commit) finds it.
        }
        if let Some(found) = self.find(subject_id).await? {
            return Ok(found); // kept by another caller in the last round
        }
        // No id in the message: errors reach logs, and an id is personal data.
        Err(StoreError::corrupt(
            "a data subject's key was destroyed as often as it was made (an erasure is running)",
        ))
    }

    async fn find(&self, subject_id: &str) -> Result<Option<SubjectKey>, StoreError> {
        sqlx::query_as!(
            KeyRow,
            "SELECT subject_id, pseudonym, data_key FROM subject_keys WHERE subject_id = $1",
            subject_id,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .map(subject_key)
        .transpose()
    }

    async fn by_pseudonym(&self, pseudonym: &str) -> Result<Option<SubjectKey>, StoreError> {
        sqlx::query_as!(
            KeyRow,
            "SELECT subject_id, pseudonym, data_key FROM subject_keys WHERE pseudonym = $1",
            pseudonym,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .map(subject_key)
        .transpose()
    }

    async fn destroy(&self, subject_id: &str) -> Result<Option<String>, StoreError> {
        let pseudonym = sqlx::query_scalar!(
            "DELETE FROM subject_keys WHERE subject_id = $1 RETURNING pseudonym",
            subject_id,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        // Also when there was no key: an erasure asked again after its wait failed (or after a
        // crash between the deletion and the wait) must not rewrite copies before the
        // appends that saw the key have ended.
        self.await_appends_in_flight().await?;
        Ok(pseudonym)
    }
}
