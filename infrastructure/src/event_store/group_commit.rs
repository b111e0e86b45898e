//! Group commit: concurrent commands on different aggregates share one append statement and one
//! transaction, so Postgres pays its per-transaction cost (the commit's WAL flush, the round
//! trip, the statement's planning and locking) once per group instead of once per command.
//!
//! One task collects the commands waiting to append. An idle store adds no waiting: the first
//! command finds a free slot and goes alone at once, by the single statement. While
//! [`MAX_GROUPS_IN_FLIGHT`] groups are being written, newcomers wait, and when a slot frees,
//! everything that waited goes as the next group (at most [`MAX_GROUP_COMMANDS`]).
//!
//! Each command stays atomic and is judged on its own (`sql/append_group.sql`): one that lost
//! its version's race, whose idempotency key was taken or whose sealing key was destroyed fails
//! alone, with the error it would get by itself, and the others commit. Two commands of one
//! aggregate, or with one idempotency key, never share a group: the later waits for the next.
//! When the group statement meets a writer it could not see (a transaction that committed
//! during it), it fails whole on the unique key, and each command is appended again alone,
//! which judges it exactly. Any other failure is each command's failure: a group whose commit
//! may or may not have happened (a connection lost at the commit) is never retried, so no
//! command can be stored twice.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, OnceLock};

use chronicle_application::ports::event_store::AppendBatch;
use chronicle_application::ports::store_error::StoreError;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

use super::append::{append_alone, headers_json, store_error};
use crate::outbox::signal::OutboxSignal;

/// Groups written at once. More overlap commits (Postgres flushes the WAL for them together);
/// fewer make groups larger. Four keeps a 2-core primary busy without starving the readers.
const MAX_GROUPS_IN_FLIGHT: usize = 4;
/// Largest group: bounds one statement's size (about 20 parameters' worth per event).
const MAX_GROUP_COMMANDS: usize = 64;

/// A command waiting to append, and where its outcome goes.
struct Waiting {
    batch: AppendBatch,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

/// The store's queue of appends and the task that writes them in groups.
#[derive(Clone)]
pub(super) struct GroupCommit {
    pool: PgPool,
    appended: OutboxSignal,
    /// Started by the first append, inside the runtime that runs the store.
    queue: Arc<OnceLock<mpsc::UnboundedSender<Waiting>>>,
}

impl GroupCommit {
    pub(super) fn new(pool: PgPool, appended: OutboxSignal) -> Self {
        Self {
            pool,
            appended,
            queue: Arc::new(OnceLock::new()),
        }
    }

    /// Appends `batch`, alone or in a group; answers once its outcome is known (after the
    /// commit when it was written).
    pub(super) async fn append(&self, batch: AppendBatch) -> Result<(), StoreError> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(collect(self.pool.clone(), self.appended.clone(), receiver));
            sender
        });
        let (answer, answered) = oneshot::channel();
        queue
            .send(Waiting { batch, answer })
            .map_err(|_| StoreError::unavailable("the append queue has stopped"))?;
        answered
            .await
            .map_err(|_| StoreError::unavailable("the append was dropped before its outcome"))?
    }
}

/// Takes waiting commands into groups and writes each as soon as a slot is free.
async fn collect(
    pool: PgPool,
    appended: OutboxSignal,
    mut queue: mpsc::UnboundedReceiver<Waiting>,
) {
    let slots = Arc::new(Semaphore::new(MAX_GROUPS_IN_FLIGHT));
    let mut waiting = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match queue.recv().await {
                Some(command) => waiting.push_back(command),
                None => return,
            }
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        while let Ok(command) = queue.try_recv() {
            waiting.push_back(command);
        }
        let group = take_group(&mut waiting);
        let pool = pool.clone();
        let appended = appended.clone();
        tokio::spawn(async move {
            if write(&pool, group).await {
                appended.appended();
            }
            drop(slot);
        });
    }
}

/// The next group: waiting commands in arrival order, leaving for later one whose aggregate or
/// idempotency key is already in the group.
fn take_group(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    let mut group = Vec::new();
    let mut later = VecDeque::new();
    let mut streams = HashSet::new();
    let mut keys = HashSet::new();
    while let Some(command) = waiting.pop_front() {
        let batch = &command.batch;
        let stream = (batch.aggregate_type.clone(), batch.aggregate_id.clone());
        let key = batch
            .idempotency
            .as_ref()
            .map(|record| (record.actor_id.clone(), record.key.clone()));
        let clashes =
            streams.contains(&stream) || key.as_ref().is_some_and(|key| keys.contains(key));
        if group.len() == MAX_GROUP_COMMANDS || clashes {
            later.push_back(command);
            continue;
        }
        streams.insert(stream);
        keys.extend(key);
        group.push(command);
    }
    *waiting = later;
    group
}

/// Writes one group and answers each command; whether anything was written.
async fn write(pool: &PgPool, mut group: Vec<Waiting>) -> bool {
    if group.len() == 1 {
        let Some(command) = group.pop() else {
            return false;
        };
        let outcome = append_alone(pool, &command.batch).await;
        let written = outcome.is_ok();
        let _ = command.answer.send(outcome);
        return written;
    }
    let batches: Vec<&AppendBatch> = group.iter().map(|command| &command.batch).collect();
    match append_group(pool, &batches).await {
        Ok(outcomes) => {
            let written = outcomes.iter().any(Result::is_ok);
            for (command, outcome) in group.into_iter().zip(outcomes) {
                let _ = command.answer.send(outcome);
            }
            written
        }
        // A writer the group's checks could not see took a sequence or a key: nothing of the
        // group was written, and each command alone is judged exactly.
        Err(StoreError::Conflict | StoreError::IdempotencyKeyTaken) => {
            let alone = group.into_iter().map(|command| async move {
                let outcome = append_alone(pool, &command.batch).await;
                let written = outcome.is_ok();
                let _ = command.answer.send(outcome);
                written
            });
            futures::future::join_all(alone)
                .await
                .into_iter()
                .any(|written| written)
        }
        Err(error) => {
            let reason = chronicle_application::error_chain::Chain(&error).to_string();
            tracing::warn!(commands = group.len(), %reason, "a group append failed");
            for command in group {
                let _ = command.answer.send(Err(StoreError::backend(
                    "appending a group of commands",
                    reason.clone(),
                )));
            }
            false
        }
    }
}

/// One statement for the whole group (`sql/append_group.sql`); each command's outcome, in the
/// group's order.
async fn append_group(
    pool: &PgPool,
    group: &[&AppendBatch],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut columns = GroupColumns::default();
    for (n, batch) in group.iter().enumerate() {
        columns.push(n as i32, batch);
    }
    let rows = sqlx::query_file!(
        "sql/append_group.sql",
        &columns.n,
        &columns.aggregate_type,
        &columns.aggregate_id,
        &columns.team_id as &[Option<String>],
        &columns.first_sequence,
        &columns.snapshot_sequence as &[Option<i64>],
        &columns.snapshot_payload as &[Option<Value>],
        &columns.key_actor as &[Option<String>],
        &columns.key as &[Option<String>],
        &columns.key_command as &[Option<String>],
        &columns.key_version as &[Option<i64>],
        &columns.key_fingerprint as &[Option<String>],
        &columns.event_n,
        &columns.sequence,
        &columns.event_type,
        &columns.event_version,
        &columns.payload,
        &columns.metadata,
        &columns.event_id,
        &columns.recorded_at,
        &columns.hash,
        &columns.previous_hash,
        &columns.outbox_n,
        &columns.outbox_event_id,
        &columns.topic,
        &columns.headers,
        &columns.outbox_payload,
        &columns.sealed_n,
        &columns.pseudonym,
    )
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    if rows.len() != group.len() {
        return Err(StoreError::corrupt(format!(
            "a group append of {} commands answered {} outcomes",
            group.len(),
            rows.len()
        )));
    }
    Ok(rows
        .into_iter()
        .zip(group)
        .map(|(row, batch)| match row.outcome.as_str() {
            "ok" => Ok(()),
            "conflict" => Err(StoreError::Conflict),
            "key_taken" => Err(StoreError::IdempotencyKeyTaken),
            "erased" => Err(StoreError::SubjectErased(batch.sealed_under.clone())),
            other => Err(StoreError::corrupt(format!(
                "a group append answered {other:?} for command {}",
                row.n
            ))),
        })
        .collect())
}

/// A group's commands as one array per column: the statement unnests them side by side.
#[derive(Default)]
struct GroupColumns {
    n: Vec<i32>,
    aggregate_type: Vec<String>,
    aggregate_id: Vec<String>,
    team_id: Vec<Option<String>>,
    first_sequence: Vec<i64>,
    snapshot_sequence: Vec<Option<i64>>,
    snapshot_payload: Vec<Option<Value>>,
    key_actor: Vec<Option<String>>,
    key: Vec<Option<String>>,
    key_command: Vec<Option<String>>,
    key_version: Vec<Option<i64>>,
    key_fingerprint: Vec<Option<String>>,
    event_n: Vec<i32>,
    sequence: Vec<i64>,
    event_type: Vec<String>,
    event_version: Vec<String>,
    payload: Vec<Value>,
    metadata: Vec<Value>,
    event_id: Vec<Uuid>,
    recorded_at: Vec<chrono::DateTime<chrono::Utc>>,
    hash: Vec<String>,
    previous_hash: Vec<String>,
    outbox_n: Vec<i32>,
    outbox_event_id: Vec<Uuid>,
    topic: Vec<String>,
    headers: Vec<Value>,
    outbox_payload: Vec<Value>,
    sealed_n: Vec<i32>,
    pseudonym: Vec<String>,
}

impl GroupColumns {
    fn push(&mut self, n: i32, batch: &AppendBatch) {
        self.n.push(n);
        self.aggregate_type.push(batch.aggregate_type.clone());
        self.aggregate_id.push(batch.aggregate_id.clone());
        self.team_id.push(batch.team_id.clone());
        // No event has sequence 0, so a command without events is never a conflict.
        self.first_sequence
            .push(batch.events.first().map_or(0, |e| e.sequence as i64));
        self.snapshot_sequence
            .push(batch.snapshot.as_ref().map(|s| s.last_sequence as i64));
        self.snapshot_payload
            .push(batch.snapshot.as_ref().map(|s| s.payload.clone()));
        let key = batch.idempotency.as_ref();
        self.key_actor.push(key.map(|k| k.actor_id.clone()));
        self.key.push(key.map(|k| k.key.clone()));
        self.key_command.push(key.map(|k| k.command.clone()));
        self.key_version.push(key.map(|k| k.version as i64));
        self.key_fingerprint
            .push(key.and_then(|k| k.request_fingerprint.clone()));
        for event in &batch.events {
            self.event_n.push(n);
            self.sequence.push(event.sequence as i64);
            self.event_type.push(event.event_type.clone());
            self.event_version.push(event.event_version.clone());
            self.payload.push(event.payload.clone());
            self.metadata.push(event.metadata.clone());
            self.event_id.push(event.event_id);
            self.recorded_at.push(event.recorded_at);
            self.hash.push(event.hash.clone());
            self.previous_hash.push(event.previous_hash.clone());
        }
        for message in &batch.outbox {
            self.outbox_n.push(n);
            self.outbox_event_id.push(message.event_id);
            self.topic.push(message.topic.clone());
            self.headers.push(headers_json(&message.headers));
            self.outbox_payload.push(message.payload.clone());
        }
        for pseudonym in &batch.sealed_under {
            self.sealed_n.push(n);
            self.pseudonym.push(pseudonym.clone());
        }
    }
}
