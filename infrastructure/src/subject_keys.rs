//! Subject keys in Postgres (`subject_keys`): one row per data subject, deleted to erase.

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

/// A `subject_keys` row: subject id, pseudonym, key bytes.
type KeyRow = (String, String, Vec<u8>);

fn subject_key((subject_id, pseudonym, bytes): KeyRow) -> Result<SubjectKey, StoreError> {
    let key = DataKey::from_bytes(&bytes)
        .ok_or_else(|| StoreError::corrupt("a subject key is not 32 bytes"))?;
    Ok(SubjectKey {
        subject_id,
        pseudonym,
        key,
    })
}

impl PgSubjectKeys {
    /// The key `sql` finds, matching `value` (`$1`) against a unique column.
    async fn key_where(&self, sql: &str, value: &str) -> Result<Option<SubjectKey>, StoreError> {
        let row: Option<KeyRow> = sqlx::query_as(sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.map(subject_key).transpose()
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
            let inserted: Option<(String,)> = sqlx::query_as(
                "INSERT INTO subject_keys (subject_id, pseudonym, data_key) VALUES ($1, $2, $3)
                 ON CONFLICT (subject_id) DO NOTHING RETURNING pseudonym",
            )
            .bind(subject_id)
            .bind(new_pseudonym())
            .bind(made.expose().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
            if let Some((pseudonym,)) = inserted {
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
        self.key_where(
            "SELECT subject_id, pseudonym, data_key FROM subject_keys WHERE subject_id = $1",
            subject_id,
        )
        .await
    }

    async fn by_pseudonym(&self, pseudonym: &str) -> Result<Option<SubjectKey>, StoreError> {
        self.key_where(
            "SELECT subject_id, pseudonym, data_key FROM subject_keys WHERE pseudonym = $1",
            pseudonym,
        )
        .await
    }

    async fn destroy(&self, subject_id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("DELETE FROM subject_keys WHERE subject_id = $1 RETURNING pseudonym")
                .bind(subject_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(row.map(|(pseudonym,)| pseudonym))
    }
}
