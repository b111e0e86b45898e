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

fn data_key(bytes: &[u8]) -> Result<DataKey, StoreError> {
    DataKey::from_bytes(bytes).ok_or_else(|| StoreError::corrupt("a subject key is not 32 bytes"))
}

#[async_trait]
impl SubjectKeys for PgSubjectKeys {
    async fn key_for(&self, subject_id: &str) -> Result<SubjectKey, StoreError> {
        // Nearly every call finds the key: one read, no key made in vain.
        if let Some(found) = self.find(subject_id).await? {
            return Ok(found);
        }
        // A key destroyed between our insert and our read is made again: at most a few rounds.
        for _ in 0..3 {
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
            // Another caller's key was kept. A statement of its own: the insert's snapshot was
            // taken before that caller committed, so only a new statement sees its row.
            let kept: Option<(String, Vec<u8>)> = sqlx::query_as(
                "SELECT pseudonym, data_key FROM subject_keys WHERE subject_id = $1",
            )
            .bind(subject_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
            if let Some((pseudonym, bytes)) = kept {
                return Ok(SubjectKey {
                    subject_id: subject_id.to_owned(),
                    pseudonym,
                    key: data_key(&bytes)?,
                });
            }
        }
        // No id in the message: errors reach logs, and an id is personal data.
        Err(StoreError::corrupt(
            "a data subject's key was destroyed as often as it was made (an erasure is running)",
        ))
    }

    async fn find(&self, subject_id: &str) -> Result<Option<SubjectKey>, StoreError> {
        let row: Option<(String, Vec<u8>)> =
            sqlx::query_as("SELECT pseudonym, data_key FROM subject_keys WHERE subject_id = $1")
                .bind(subject_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        row.map(|(pseudonym, bytes)| {
            Ok(SubjectKey {
                subject_id: subject_id.to_owned(),
                pseudonym,
                key: data_key(&bytes)?,
            })
        })
        .transpose()
    }

    async fn by_pseudonym(&self, pseudonym: &str) -> Result<Option<SubjectKey>, StoreError> {
        let row: Option<(String, Vec<u8>)> =
            sqlx::query_as("SELECT subject_id, data_key FROM subject_keys WHERE pseudonym = $1")
                .bind(pseudonym)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        row.map(|(subject_id, bytes)| {
            Ok(SubjectKey {
                subject_id,
                pseudonym: pseudonym.to_owned(),
                key: data_key(&bytes)?,
            })
        })
        .transpose()
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
