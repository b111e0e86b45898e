//! The Merkle tree over `events` and its checkpoints, in Postgres (`audit_leaves`,
//! `audit_nodes`, `audit_checkpoints`), and the Kafka copy of the checkpoints.
//!
//! Events join the tree in position order, but positions are taken at insert and transactions
//! commit in any order: an event is appended only once its position is settled
//! ([`crate::settling`]: every transaction that could still commit a lower position has ended,
//! proved by the tree's own transaction id, given out after the read that saw it), so no event
//! with a lower position can still appear. A long transaction anywhere in the cluster holds
//! the tree back for as long as it runs (the checkpoint lag shows it), never out of order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chronicle_application::audit::merkle::{self, Hash};
use chronicle_application::audit::signing::Checkpoint;
use chronicle_application::ports::audit_tree::{
    AuditTree, CheckpointLog, LeafEvent, LeafPlace, LeafSpan,
};
use chronicle_application::ports::store_error::StoreError;
use chrono::{DateTime, Utc};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::store_error;
use crate::kafka::on_demand::OnDemandProducer;
use crate::settling::Settling;

/// The tree on `pool`.
#[derive(Clone)]
pub struct PgAuditTree {
    pool: PgPool,
    /// How far positions are final; kept between rounds (a fresh process waits one read).
    settling: Arc<Mutex<Settling>>,
}

impl PgAuditTree {
    /// Over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            settling: Arc::default(),
        }
    }

    /// Appends what is settled as of one read; also answers whether events past the tree were
    /// seen and none of them was settled yet (another read, after this transaction, may
    /// settle them).
    async fn append_once(&self, limit: usize) -> Result<(u64, bool), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let last =
            sqlx::query!("SELECT index, position FROM audit_leaves ORDER BY index DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_error)?;
        let (size, after) =
            last.map_or((0u64, 0i64), |last| (last.index as u64 + 1, last.position));
        let rows = sqlx::query!(
            r#"SELECT position, event_id::text AS "event_id!", aggregate_type, aggregate_id,
                      sequence, hash,
                      marks.oldest_running AS "oldest_running!", marks.top AS "top!"
               FROM events,
                    (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS oldest_running,
                            (SELECT coalesce(max(position), 0) FROM events) AS top) AS marks
               WHERE position > $1 ORDER BY position LIMIT $2"#,
            after,
            limit as i64,
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        let Some(first) = rows.first() else {
            return Ok((size, false));
        };
        let through = self.settling().read(first.oldest_running, first.top);
        let settled: Vec<(i64, Hash)> = rows
            .iter()
            .take_while(|row| row.position <= through)
            .map(|row| {
                let data = merkle::leaf_data(
                    row.position,
                    &row.event_id,
                    &row.aggregate_type,
                    &row.aggregate_id,
                    row.sequence,
                    &row.hash,
                );
                (row.position, merkle::leaf_hash(&data))
            })
            .collect();
        let grown = if settled.is_empty() {
            size
        } else {
            self.append_rows(&mut tx, size, &settled).await?
        };
        // Given out after the read above: once every older transaction has ended, what it saw
        // is final.
        let transaction =
            sqlx::query_scalar!(r#"SELECT pg_current_xact_id()::text::bigint AS "transaction!""#)
                .fetch_one(&mut *tx)
                .await
                .map_err(store_error)?;
        self.settling().later_transaction(transaction);
        tx.commit().await.map_err(store_error)?;
        Ok((grown, settled.is_empty()))
    }

    fn settling(&self) -> std::sync::MutexGuard<'_, Settling> {
        self.settling.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `settled` leaves (position and leaf hash, in position order, right after the
    /// tree's `size` leaves) with the subtrees they complete, in `tx`; answers the new size.
    async fn append_rows(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        size: u64,
        settled: &[(i64, Hash)],
    ) -> Result<u64, StoreError> {
        // The right edge of the tree: at each level whose bit of `size` is set, the complete
        // subtree waiting for its right sibling.
        let wanted: Vec<(u32, u64)> = (0..64)
            .filter(|level| size >> level & 1 == 1)
            .map(|level| (level, (size >> level) - 1))
            .collect();
        let mut pending: HashMap<u32, Hash> = self
            .nodes(&wanted)
            .await?
            .into_iter()
            .map(|((level, _), hash)| (level, hash))
            .collect();
        let (mut leaf_index, mut leaf_position, mut leaf_hash) =
            (Vec::new(), Vec::new(), Vec::new());
        let (mut node_level, mut node_index, mut node_hash) = (Vec::new(), Vec::new(), Vec::new());
        for (offset, &(position, leaf)) in settled.iter().enumerate() {
            let index = size + offset as u64;
            leaf_index.push(index as i64);
            leaf_position.push(position);
            leaf_hash.push(leaf.to_vec());
            let (mut hash, mut level, mut at) = (leaf, 0u32, index);
            while at & 1 == 1 {
                let left = pending.remove(&level).ok_or_else(|| {
                    StoreError::corrupt(format!(
                        "the audit tree lacks its right edge at level {level}"
                    ))
                })?;
                hash = merkle::node_hash(&left, &hash);
                level += 1;
                at >>= 1;
                node_level.push(level as i16);
                node_index.push(at as i64);
                node_hash.push(hash.to_vec());
            }
            pending.insert(level, hash);
        }
        sqlx::query!(
            "INSERT INTO audit_leaves (index, position, hash)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])",
            &leaf_index,
            &leaf_position,
            &leaf_hash,
        )
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
        sqlx::query!(
            "INSERT INTO audit_nodes (level, index, hash)
             SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])",
            &node_level,
            &node_index,
            &node_hash,
        )
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
        Ok(size + settled.len() as u64)
    }
}

fn hash_of(bytes: Vec<u8>) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::corrupt("an audit tree hash is not 32 bytes"))
}

/// An `audit_checkpoints` row.
struct CheckpointRow {
    tree_size: i64,
    root_hash: Vec<u8>,
    issued_at: DateTime<Utc>,
    key_id: String,
    signature: Vec<u8>,
}

fn checkpoint(row: CheckpointRow) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        tree_size: row.tree_size.max(0) as u64,
        root: hash_of(row.root_hash)?,
        issued_at: row.issued_at,
        key_id: row.key_id,
        signature: row.signature,
    })
}

#[async_trait]
impl AuditTree for PgAuditTree {
    async fn size(&self) -> Result<u64, StoreError> {
        let size = sqlx::query_scalar!("SELECT max(index) + 1 AS size FROM audit_leaves")
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(size.unwrap_or(0).max(0) as u64)
    }

    async fn append_settled(&self, limit: usize) -> Result<u64, StoreError> {
        // A read's events settle once a transaction given out after it (this call's own) and
        // every older one ended: usually by the next read, so try twice.
        let (size, waiting) = self.append_once(limit).await?;
        if !waiting {
            return Ok(size);
        }
        Ok(self.append_once(limit).await?.0)
    }

    async fn nodes(&self, wanted: &[(u32, u64)]) -> Result<HashMap<(u32, u64), Hash>, StoreError> {
        let (levels, indexes): (Vec<i16>, Vec<i64>) = wanted
            .iter()
            .map(|(level, index)| (*level as i16, *index as i64))
            .unzip();
        let rows = sqlx::query!(
            r#"SELECT w.level AS "level!", w.index AS "index!", coalesce(l.hash, n.hash) AS "hash!"
               FROM unnest($1::smallint[], $2::bigint[]) AS w(level, index)
               LEFT JOIN audit_leaves l ON w.level = 0 AND l.index = w.index
               LEFT JOIN audit_nodes n ON w.level > 0 AND n.level = w.level AND n.index = w.index
               WHERE coalesce(l.hash, n.hash) IS NOT NULL"#,
            &levels,
            &indexes,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter()
            .map(|row| Ok(((row.level as u32, row.index as u64), hash_of(row.hash)?)))
            .collect()
    }

    async fn leaf_of(&self, event_id: Uuid) -> Result<Option<LeafPlace>, StoreError> {
        let row = sqlx::query!(
            "SELECT l.index, l.hash, e.aggregate_type, e.team_id
             FROM events e JOIN audit_leaves l ON l.position = e.position
             WHERE e.event_id = $1",
            event_id,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(|row| {
            Ok(LeafPlace {
                index: row.index as u64,
                hash: hash_of(row.hash)?,
                aggregate_type: row.aggregate_type,
                team_id: row.team_id,
            })
        })
        .transpose()
    }

    async fn leaf_span(
        &self,
        from_position: i64,
        to_position: i64,
        tree_size: u64,
    ) -> Result<LeafSpan, StoreError> {
        let size = tree_size.min(i64::MAX as u64) as i64;
        let span = sqlx::query!(
            r#"SELECT (SELECT min(index) FROM audit_leaves WHERE position >= $1 AND index < $3)
                        AS first,
                      (SELECT count(*) FROM audit_leaves
                       WHERE position BETWEEN $1 AND $2 AND index < $3) AS "count!""#,
            from_position,
            to_position,
            size,
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(LeafSpan {
            first_index: span.first.unwrap_or(size).max(0) as u64,
            count: span.count.max(0) as u64,
        })
    }

    async fn leaf_event(&self, index: u64) -> Result<Option<LeafEvent>, StoreError> {
        let row = sqlx::query!(
            r#"SELECT l.index, l.position, e.event_id::text AS "event_id!", e.aggregate_type,
                      e.aggregate_id, e.sequence, e.hash
               FROM audit_leaves l JOIN events e ON e.position = l.position
               WHERE l.index = $1"#,
            index.min(i64::MAX as u64) as i64,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(row.map(|row| LeafEvent {
            index: row.index.max(0) as u64,
            position: row.position,
            event_id: row.event_id,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            chain_hash: row.hash,
        }))
    }

    async fn checkpoint(&self, tree_size: Option<u64>) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query_as!(
            CheckpointRow,
            "SELECT tree_size, root_hash, issued_at, key_id, signature FROM audit_checkpoints
             WHERE $1::bigint IS NULL OR tree_size = $1
             ORDER BY tree_size DESC LIMIT 1",
            tree_size.map(|size| size as i64),
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(checkpoint).transpose()
    }

    async fn checkpoints_before(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query_as!(
            CheckpointRow,
            "SELECT tree_size, root_hash, issued_at, key_id, signature FROM audit_checkpoints
             WHERE $1::bigint IS NULL OR tree_size < $1
             ORDER BY tree_size DESC LIMIT $2",
            before.map(|size| size.min(i64::MAX as u64) as i64),
            limit as i64,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(checkpoint).collect()
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query_as!(
            CheckpointRow,
            "SELECT tree_size, root_hash, issued_at, key_id, signature FROM audit_checkpoints
             ORDER BY tree_size",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(checkpoint).collect()
    }

    async fn leaves(&self) -> Result<std::collections::BTreeMap<u64, Hash>, StoreError> {
        let rows = sqlx::query!("SELECT index, hash FROM audit_leaves ORDER BY index")
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.into_iter()
            .map(|row| Ok((row.index as u64, hash_of(row.hash)?)))
            .collect()
    }

    async fn store_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query!(
            "INSERT INTO audit_checkpoints (tree_size, root_hash, issued_at, key_id, signature)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING",
            checkpoint.tree_size as i64,
            checkpoint.root.as_slice(),
            checkpoint.issued_at,
            checkpoint.key_id,
            checkpoint.signature,
        )
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn unpublished(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query_as!(
            CheckpointRow,
            "SELECT tree_size, root_hash, issued_at, key_id, signature FROM audit_checkpoints
             WHERE published_at IS NULL ORDER BY tree_size",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(checkpoint).collect()
    }

    async fn mark_published(&self, tree_size: u64) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE audit_checkpoints SET published_at = now() WHERE tree_size = $1",
            tree_size as i64,
        )
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }
}

/// The Kafka copy of the checkpoints: `{prefix}chronicle.audit.checkpoints`, keyed by tree
/// size, each value [`Checkpoint::to_json`].
pub struct KafkaCheckpointLog {
    producer: OnDemandProducer,
    topic: String,
}

impl KafkaCheckpointLog {
    /// Publishing to `topic` through `producer`.
    pub fn new(producer: OnDemandProducer, topic: impl Into<String>) -> Self {
        Self {
            producer,
            topic: topic.into(),
        }
    }
}

#[async_trait]
impl CheckpointLog for KafkaCheckpointLog {
    async fn publish(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let key = checkpoint.tree_size.to_string();
        let value = checkpoint.to_json().to_string();
        self.producer
            .get()
            .map_err(StoreError::unavailable)?
            .send(
                FutureRecord::to(&self.topic).key(&key).payload(&value),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .map(|_| ())
            .map_err(|(error, _)| StoreError::unavailable(error))
    }
}

/// The advisory lock of the checkpointer ("chronaudt" in ASCII, truncated to an i64): one
/// instance grows the tree and signs at a time; the others stand by.
pub(crate) const CHECKPOINT_LOCK_KEY: i64 = 0x6368_726f_6e61_7564;

/// Runs `round` every `interval` while this instance holds the checkpoint lock (on a
/// connection of its own, so the lock goes with the process), until `shutdown`.
pub async fn lead_checkpoints<F, Fut>(
    database_url: String,
    interval: Duration,
    shutdown: tokio_util::sync::CancellationToken,
    round: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use sqlx::Connection as _;
    while !shutdown.is_cancelled() {
        let connection = crate::db::connect_session(&database_url).await;
        let mut held = false;
        if let Ok(mut connection) = connection {
            let locked =
                sqlx::query_scalar!("SELECT pg_try_advisory_lock($1)", CHECKPOINT_LOCK_KEY)
                    .fetch_one(&mut connection)
                    .await;
            held = matches!(locked, Ok(Some(true)));
            while held && !shutdown.is_cancelled() {
                round().await;
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(interval) => {}
                }
                // Still ours? A lost connection means another instance may lead now.
                held = sqlx::query!("SELECT 1 AS alive")
                    .fetch_one(&mut connection)
                    .await
                    .is_ok();
            }
            let _ = connection.close().await;
        }
        if !held {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// Every checkpoint published on `topic`, read from the beginning to the end as it is now (no
/// consumer group: nothing is committed); and how many records were not checkpoints.
pub fn read_published_checkpoints(
    settings: &crate::config::KafkaSettings,
    topic: &str,
) -> Result<(Vec<Checkpoint>, usize), crate::InfraError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = crate::kafka::client::base_config(settings)
        .set("group.id", "chronicle-audit-verify")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(crate::InfraError::kafka("create the checkpoint reader"))?;
    let metadata =
        consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(crate::InfraError::kafka(
                "read the checkpoint topic's metadata",
            ))?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), timeout)
            .map_err(crate::InfraError::kafka(
                "read the checkpoint topic's offsets",
            ))?;
        if high > low {
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Beginning)
                .map_err(crate::InfraError::kafka("assign the checkpoint topic"))?;
            ends.insert(partition.id(), high);
        }
    }
    let (mut checkpoints, mut unreadable) = (Vec::new(), 0);
    if ends.is_empty() {
        return Ok((checkpoints, unreadable));
    }
    consumer
        .assign(&assignment)
        .map_err(crate::InfraError::kafka("assign the checkpoint topic"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() && std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.map_err(crate::InfraError::kafka("read the checkpoint topic"))?;
        let value = message
            .payload()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(bytes).ok());
        match value.as_ref().and_then(Checkpoint::from_json) {
            Some(checkpoint) => checkpoints.push(checkpoint),
            None => unreadable += 1,
        }
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&message.partition());
        }
    }
    Ok((checkpoints, unreadable))
}
