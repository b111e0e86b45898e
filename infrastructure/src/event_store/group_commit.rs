//! Group commit: concurrent commands on different aggregates share one append statement and one
//! transaction, so Postgres pays its per-transaction cost (the commit's WAL flush, the round
//! trip, the statement's planning and locking) once per group instead of once per command.
//!
//! One task collects the commands waiting to append. An idle store adds no waiting: the first
//! command finds a free slot and goes alone at once, by the single statement. While
//! [`MAX_GROUPS_IN_FLIGHT`] groups are being written, newcomers wait, and when a slot frees,
//! everything that waited goes as the next group (at most [`MAX_GROUP_COMMANDS`]). A command
//! whose caller stopped waiting is dropped unwritten; one that waited longer than the pool's
//! acquire timeout is answered `UNAVAILABLE`, as the pool would.
//!
//! Each command stays atomic and is judged on its own (`sql/append_group.sql`): one that lost
//! its version's race, whose idempotency key was taken or whose sealing key was destroyed fails
//! alone, with the error it would get by itself, and the others commit. Two commands of one
//! aggregate, or with one idempotency key, are never written by two groups at once (the later
//! waits for the earlier group to finish), and a group takes its rows' locks in stream order,
//! so groups never wait on each other. When the server refuses a group's statement (a writer
//! it could not see committed the same sequence or key meanwhile, a timeout), nothing of it
//! was written, and each command is appended again alone, which judges it exactly. A failed
//! connection is each command's failure: a group whose commit may or may not have happened is
//! never retried, so no command can be stored twice.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronicle_application::data::trace::TraceContext;
use chronicle_application::ports::event_store::AppendBatch;
use chronicle_application::ports::store_error::StoreError;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;
use uuid::Uuid;

use super::append::{
    append_alone, outbox_headers, outbox_payload, store_error, OutboxHeaders, OutboxPayload,
};
use crate::db::kept::{KeptConnection, KEEP_WHILE_IDLE};
use crate::db::planned_per_call::{self, Planning, UntilAnalysed};
use crate::outbox::signal::OutboxSignal;

/// Groups written at once. More overlap their commits; fewer make each group larger, so
/// fewer commands go alone and Postgres pays its per-statement and per-transaction cost less
/// often. Two against four, on the 2-core development machine: a twentieth of the commands
/// alone instead of a sixth, 0.79x Postgres's CPU per createTask, 1.12x the rate and a lower
/// p99 (docs/performance.md, "Two groups in flight"). One was cheaper still, but then a single
/// slow group (a lock wait, a statement refused and retried command by command) holds up
/// every append behind it.
const MAX_GROUPS_IN_FLIGHT: usize = 2;
/// Largest group: bounds one statement's size (about 20 parameters' worth per event).
const MAX_GROUP_COMMANDS: usize = 64;

/// A command waiting to append, and where its outcome goes.
struct Waiting {
    batch: AppendBatch,
    answer: oneshot::Sender<Result<(), StoreError>>,
    since: Instant,
    /// The caller's span: a command written alone is written inside it, so its statement shows
    /// in the request's trace as it would without grouping.
    span: tracing::Span,
}

/// The streams and idempotency keys a group writes: no other group in flight may write them,
/// so two groups never wait on each other's rows.
#[derive(Default)]
struct Claims {
    streams: HashSet<(String, String)>,
    keys: HashSet<(String, String)>,
}

impl Claims {
    fn of(batch: &AppendBatch) -> ((String, String), Option<(String, String)>) {
        let stream = (batch.aggregate_type.clone(), batch.aggregate_id.clone());
        let key = batch
            .idempotency
            .as_ref()
            .map(|record| (record.actor_id.clone(), record.key.clone()));
        (stream, key)
    }

    fn holds(&self, stream: &(String, String), key: Option<&(String, String)>) -> bool {
        self.streams.contains(stream) || key.is_some_and(|key| self.keys.contains(key))
    }

    fn claim(&mut self, stream: (String, String), key: Option<(String, String)>) {
        self.streams.insert(stream);
        self.keys.extend(key);
    }

    fn add(&mut self, other: &Claims) {
        self.streams.extend(other.streams.iter().cloned());
        self.keys.extend(other.keys.iter().cloned());
    }

    fn release(&mut self, done: &Claims) {
        for stream in &done.streams {
            self.streams.remove(stream);
        }
        for key in &done.keys {
            self.keys.remove(key);
        }
    }
}

/// The store's queue of appends and the task that writes them in groups.
#[derive(Clone)]
pub(super) struct GroupCommit {
    pool: PgPool,
    appended: OutboxSignal,
    /// How the group statement is planned: per call on a young store, cached once `events`,
    /// the table it reads that grows with every command, has statistics.
    planning: Arc<UntilAnalysed>,
    /// Started by an append, inside the runtime that runs it; started again if that runtime
    /// ended (a test's, a command's).
    queue: Arc<Mutex<Option<mpsc::UnboundedSender<Waiting>>>>,
}

impl GroupCommit {
    pub(super) fn new(pool: PgPool, appended: OutboxSignal) -> Self {
        register_ways();
        Self {
            pool,
            appended,
            planning: Arc::new(UntilAnalysed::new(
                &["events"],
                planned_per_call::CHECK_ANALYSED_EVERY,
            )),
            queue: Arc::new(Mutex::new(None)),
        }
    }

    /// Appends `batch`, alone or in a group; answers once its outcome is known (after the
    /// commit when it was written). A caller that stops waiting before its group is formed
    /// (a request cancelled or timed out) has nothing written.
    pub(super) async fn append(&self, batch: AppendBatch) -> Result<(), StoreError> {
        let (answer, answered) = oneshot::channel();
        let mut waiting = Waiting {
            batch,
            answer,
            since: Instant::now(),
            span: tracing::Span::current(),
        };
        {
            let mut queue = self
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for _ in 0..2 {
                let sender = queue.get_or_insert_with(|| {
                    let (sender, receiver) = mpsc::unbounded_channel();
                    tokio::spawn(collect(
                        self.pool.clone(),
                        self.appended.clone(),
                        self.planning.clone(),
                        receiver,
                    ));
                    sender
                });
                match sender.send(waiting) {
                    Ok(()) => break,
                    Err(mpsc::error::SendError(back)) => {
                        waiting = back;
                        *queue = None;
                    }
                }
            }
        }
        answered
            .await
            .map_err(|_| StoreError::unavailable("the append queue has stopped"))?
    }
}

/// Takes waiting commands into groups and writes each as soon as one of the slots is free and
/// its streams and keys are not being written by another group.
async fn collect(
    pool: PgPool,
    appended: OutboxSignal,
    planning: Arc<UntilAnalysed>,
    mut queue: mpsc::UnboundedReceiver<Waiting>,
) {
    // As long as a command may wait: what the pool allows for a connection.
    let max_wait = pool.options().get_acquire_timeout();
    let (done, mut finished) = mpsc::unbounded_channel::<(Claims, Option<KeptConnection>)>();
    let mut busy = Claims::default();
    let mut in_flight = 0;
    // Connections of finished writes, for the next ones (at most one per write in flight),
    // oldest first: each is used in turn and none stays unused past its time.
    let mut kept: VecDeque<KeptConnection> = VecDeque::new();
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut open = true;
    loop {
        while let Ok(command) = queue.try_recv() {
            waiting.push_back(command);
        }
        while let Ok((claims, connection)) = finished.try_recv() {
            busy.release(&claims);
            kept.extend(connection);
            in_flight -= 1;
        }
        turn_away(&mut waiting, max_wait);
        kept.retain(KeptConnection::fresh);
        if in_flight < MAX_GROUPS_IN_FLIGHT && !waiting.is_empty() {
            let (group, claims) = take_group(&mut waiting, &busy);
            if !group.is_empty() {
                busy.add(&claims);
                in_flight += 1;
                let (pool, appended, done) = (pool.clone(), appended.clone(), done.clone());
                let (planning, connection) = (planning.clone(), kept.pop_front());
                tokio::spawn(async move {
                    let (written, connection) = write(&pool, connection, group, &planning).await;
                    if written {
                        appended.appended();
                    }
                    let _ = done.send((claims, connection));
                });
                continue;
            }
        }
        if !open && in_flight == 0 && waiting.is_empty() {
            return;
        }
        tokio::select! {
            command = queue.recv(), if open => match command {
                Some(command) => waiting.push_back(command),
                None => open = false,
            },
            Some((claims, connection)) = finished.recv() => {
                busy.release(&claims);
                kept.extend(connection);
                in_flight -= 1;
            }
            () = tokio::time::sleep(KEEP_WHILE_IDLE), if !kept.is_empty() => kept.clear(),
        }
    }
}

/// Answers the commands whose caller stopped waiting (nothing is written for them) and those
/// that waited longer than a connection may be waited for (`UNAVAILABLE`, as the pool answers
/// when it has none to give).
fn turn_away(waiting: &mut VecDeque<Waiting>, max_wait: Duration) {
    waiting.retain(|command| !command.answer.is_closed());
    while waiting
        .front()
        .is_some_and(|command| command.since.elapsed() > max_wait)
    {
        if let Some(command) = waiting.pop_front() {
            let _ = command.answer.send(Err(StoreError::unavailable(format!(
                "the database took no append for {max_wait:?}"
            ))));
        }
    }
}

/// The next group: waiting commands in arrival order, leaving for later one whose aggregate or
/// idempotency key is in the group or in a group being written. Sorted by stream, so groups
/// that overlap in time take the rows' locks in one order.
fn take_group(waiting: &mut VecDeque<Waiting>, busy: &Claims) -> (Vec<Waiting>, Claims) {
    let mut group = Vec::new();
    let mut claims = Claims::default();
    let mut later = VecDeque::new();
    while let Some(command) = waiting.pop_front() {
        let (stream, key) = Claims::of(&command.batch);
        let clashes = busy.holds(&stream, key.as_ref()) || claims.holds(&stream, key.as_ref());
        if group.len() == MAX_GROUP_COMMANDS || clashes {
            later.push_back(command);
            continue;
        }
        claims.claim(stream, key);
        group.push(command);
    }
    *waiting = later;
    group.sort_by(|a, b| {
        (&a.batch.aggregate_type, &a.batch.aggregate_id)
            .cmp(&(&b.batch.aggregate_type, &b.batch.aggregate_id))
    });
    (group, claims)
}

/// The ways [`count_write`] counts: `alone` (one command, the single statement, whatever its
/// outcome), `grouped` (one statement for several), `fallback` (the server refused a group's
/// statement; each command then went again alone, not counted again) or `failed` (a group's
/// connection failed). A run of fallbacks is groups losing to writers they cannot see (another
/// instance, a tool): each of those commands costs two round trips.
const WAYS: [&str; 4] = ["alone", "grouped", "fallback", "failed"];

/// Exports every way's counters at 0, so the first fallback is an increase a rule sees.
fn register_ways() {
    for way in WAYS {
        metrics::counter!("chronicle_append_writes_total", "way" => way).increment(0);
        metrics::counter!("chronicle_append_commands_total", "way" => way).increment(0);
    }
}

/// Counts a write of `commands` commands by `way` (one of [`WAYS`]).
fn count_write(way: &'static str, commands: usize) {
    metrics::counter!("chronicle_append_writes_total", "way" => way).increment(1);
    metrics::counter!("chronicle_append_commands_total", "way" => way).increment(commands as u64);
}

/// Writes one group on `kept` (else on a connection from the pool) and answers each command;
/// whether anything was written, and the connection if it may be kept for the next group.
async fn write(
    pool: &PgPool,
    kept: Option<KeptConnection>,
    mut group: Vec<Waiting>,
    planning: &UntilAnalysed,
) -> (bool, Option<KeptConnection>) {
    let mut connection = match KeptConnection::reuse_or_acquire(kept, pool).await {
        Ok(connection) => connection,
        // No connection to be had: a command alone gets what the pool said, as it always did.
        Err(error) if group.len() == 1 => {
            count_write("alone", 1);
            if let Some(command) = group.pop() {
                let _ = command.answer.send(Err(store_error(error)));
            }
            return (false, None);
        }
        Err(error) => {
            fail_each(group, error);
            return (false, None);
        }
    };
    if group.len() == 1 {
        count_write("alone", 1);
        let Some(command) = group.pop() else {
            return (false, Some(connection));
        };
        let outcome = append_alone(connection.connection(), &command.batch)
            .instrument(command.span)
            .await;
        let written = outcome.is_ok();
        // The server answered unless the store says it could not be reached or failed.
        let answered = !matches!(
            outcome,
            Err(StoreError::Unavailable(_) | StoreError::Backend { .. })
        );
        let _ = command.answer.send(outcome);
        return (written, connection.keep_if(answered));
    }
    let batches: Vec<&AppendBatch> = group.iter().map(|command| &command.batch).collect();
    let span = group_span(&batches);
    let result = append_group(connection.connection(), &batches, planning.planning(pool))
        .instrument(span)
        .await;
    let mut connection = connection.keep_after(&result);
    let written = match result {
        Ok(outcomes) => {
            count_write("grouped", outcomes.len());
            let written = outcomes.iter().any(Result::is_ok);
            for (command, outcome) in group.into_iter().zip(outcomes) {
                let _ = command.answer.send(outcome);
            }
            written
        }
        // The server refused the statement (a writer the checks could not see took a sequence
        // or a key, a deadlock, a timeout): it rolled back, nothing of the group was written,
        // and each command alone is judged exactly.
        Err(sqlx::Error::Database(refusal)) => {
            // The code and the constraint only: a message's detail can quote a key's values.
            tracing::info!(
                commands = group.len(),
                code = refusal.code().as_deref().unwrap_or(""),
                constraint = refusal.constraint().unwrap_or(""),
                "a group's statement was refused; its commands go again alone"
            );
            count_write("fallback", group.len());
            // Back to the pool, which the commands alone draw on.
            connection = None;
            let alone = group.into_iter().map(|command| async move {
                let outcome = append_alone(pool, &command.batch)
                    .instrument(command.span.clone())
                    .await;
                let written = outcome.is_ok();
                let _ = command.answer.send(outcome);
                written
            });
            futures::future::join_all(alone)
                .await
                .into_iter()
                .any(|written| written)
        }
        // The connection failed: the commit may or may not have happened, so nothing is
        // retried; each command gets the failure as it would alone.
        Err(error) => {
            fail_each(group, error);
            false
        }
    };
    (written, connection)
}

/// Answers every command of a group that could not be written with `error`, as each would
/// have been answered alone, and counts the group `failed`.
fn fail_each(group: Vec<Waiting>, error: sqlx::Error) {
    let reason = chronicle_application::error_chain::Chain(&error).to_string();
    tracing::warn!(commands = group.len(), %reason, "a group append failed");
    count_write("failed", group.len());
    let unavailable = matches!(store_error(error), StoreError::Unavailable(_));
    for command in group {
        let failure = match unavailable {
            true => StoreError::unavailable(reason.clone()),
            false => StoreError::backend("appending a group of commands", reason.clone()),
        };
        let _ = command.answer.send(Err(failure));
    }
}

/// The span of a group's statement. It serves several requests' traces at once, so it starts a
/// trace of its own that links to each command's request (the traceparent its events store),
/// as a consumer's batch does. A `debug` span like every span inside a request: while spans
/// are not exported it is disabled and nothing of it is built.
fn group_span(group: &[&AppendBatch]) -> tracing::Span {
    if !tracing::span_enabled!(tracing::Level::DEBUG) {
        return tracing::Span::none();
    }
    let requests: Vec<TraceContext> = group
        .iter()
        .filter_map(|batch| {
            let metadata = &batch.events.first()?.metadata;
            TraceContext::parse(metadata.get("traceparent")?.as_str()?)
        })
        .collect();
    let trace = TraceContext::linking(&requests);
    tracing::debug_span!(
        "append group",
        chronicle.group.commands = group.len(),
        links = TraceContext::links_field(&requests),
        trace_id = trace.trace_id(),
        span_id = trace.span_id(),
        sampled = trace.sampled(),
    )
}

/// One statement for the whole group (`sql/append_group.sql`); each command's outcome, in the
/// group's order.
async fn append_group(
    connection: &mut sqlx::PgConnection,
    group: &[&AppendBatch],
    planning: Planning,
) -> Result<Vec<Result<(), StoreError>>, sqlx::Error> {
    let mut columns = GroupColumns::default();
    for (n, batch) in group.iter().enumerate() {
        columns.push(n as i32, batch);
    }
    // The `as` overrides bind borrowed forms (`&str` for text, `&Value` for jsonb), which the
    // macro's compile-time check knows only as owned types, so it skips those parameters;
    // every createTask and the e2e `group_commit` tests run the statement.
    let statement = sqlx::query_file_as!(
        GroupOutcome,
        "sql/append_group.sql",
        &columns.n,
        &columns.aggregate_type as &[&str],
        &columns.aggregate_id as &[&str],
        &columns.team_id as &[Option<&str>],
        &columns.first_sequence,
        &columns.snapshot_sequence as &[Option<i64>],
        &columns.snapshot_payload as &[Option<&Value>],
        &columns.key_actor as &[Option<&str>],
        &columns.key as &[Option<&str>],
        &columns.key_command as &[Option<&str>],
        &columns.key_version as &[Option<i64>],
        &columns.key_fingerprint as &[Option<&str>],
        &columns.event_n,
        &columns.sequence,
        &columns.event_type as &[&str],
        &columns.event_version as &[&str],
        &columns.payload as &[&Value],
        &columns.metadata as &[&Value],
        &columns.event_id,
        &columns.recorded_at,
        &columns.hash as &[&str],
        &columns.previous_hash as &[&str],
        &columns.outbox_n,
        &columns.outbox_event_id,
        &columns.topic as &[&str],
        &columns.headers as &[OutboxHeaders<'_>],
        &columns.outbox_payload as &[OutboxPayload<'_>],
        &columns.sealed_n,
        &columns.pseudonym as &[&str],
    );
    // Planned per call on a young store: a generic plan made on its nearly empty tables was
    // several times slower until the first autovacuum analyse (`UntilAnalysed`).
    let rows: Vec<GroupOutcome> =
        planned_per_call::fetch_all_planned(connection, statement, planning).await?;
    if rows.len() != group.len() {
        return Err(sqlx::Error::Protocol(format!(
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

/// One command's outcome in a group, as `sql/append_group.sql` answers it (the `!` of the
/// column names is the macro's not-null mark, part of the name Postgres answers with).
#[derive(sqlx::FromRow)]
struct GroupOutcome {
    /// The command's place in the group.
    #[sqlx(rename = "n!")]
    n: i32,
    /// `ok`, `conflict`, `key_taken` or `erased`.
    #[sqlx(rename = "outcome!")]
    outcome: String,
}

/// A group's commands as one array per column: the statement unnests them side by side. The
/// columns borrow from the group's batches, which the writer holds until every command is
/// answered: copying each command's JSON trees (and later freeing the copies on another
/// thread) cost about a twentieth of the API's CPU per createTask (docs/performance.md).
#[derive(Default)]
struct GroupColumns<'a> {
    n: Vec<i32>,
    aggregate_type: Vec<&'a str>,
    aggregate_id: Vec<&'a str>,
    team_id: Vec<Option<&'a str>>,
    first_sequence: Vec<i64>,
    snapshot_sequence: Vec<Option<i64>>,
    snapshot_payload: Vec<Option<&'a Value>>,
    key_actor: Vec<Option<&'a str>>,
    key: Vec<Option<&'a str>>,
    key_command: Vec<Option<&'a str>>,
    key_version: Vec<Option<i64>>,
    key_fingerprint: Vec<Option<&'a str>>,
    event_n: Vec<i32>,
    sequence: Vec<i64>,
    event_type: Vec<&'a str>,
    event_version: Vec<&'a str>,
    payload: Vec<&'a Value>,
    metadata: Vec<&'a Value>,
    event_id: Vec<Uuid>,
    recorded_at: Vec<chrono::DateTime<chrono::Utc>>,
    hash: Vec<&'a str>,
    previous_hash: Vec<&'a str>,
    outbox_n: Vec<i32>,
    outbox_event_id: Vec<Uuid>,
    topic: Vec<&'a str>,
    headers: Vec<OutboxHeaders<'a>>,
    outbox_payload: Vec<OutboxPayload<'a>>,
    sealed_n: Vec<i32>,
    pseudonym: Vec<&'a str>,
}

impl<'a> GroupColumns<'a> {
    fn push(&mut self, n: i32, batch: &'a AppendBatch) {
        self.n.push(n);
        self.aggregate_type.push(&batch.aggregate_type);
        self.aggregate_id.push(&batch.aggregate_id);
        self.team_id.push(batch.team_id.as_deref());
        // No event has sequence 0, so a command without events is never a conflict.
        self.first_sequence
            .push(batch.events.first().map_or(0, |e| e.sequence as i64));
        self.snapshot_sequence
            .push(batch.snapshot.as_ref().map(|s| s.last_sequence as i64));
        self.snapshot_payload
            .push(batch.snapshot.as_ref().map(|s| &s.payload));
        let key = batch.idempotency.as_ref();
        self.key_actor.push(key.map(|k| k.actor_id.as_str()));
        self.key.push(key.map(|k| k.key.as_str()));
        self.key_command.push(key.map(|k| k.command.as_str()));
        self.key_version.push(key.map(|k| k.version as i64));
        self.key_fingerprint
            .push(key.and_then(|k| k.request_fingerprint.as_deref()));
        for event in &batch.events {
            self.event_n.push(n);
            self.sequence.push(event.sequence as i64);
            self.event_type.push(&event.event_type);
            self.event_version.push(&event.event_version);
            self.payload.push(&event.payload);
            self.metadata.push(&event.metadata);
            self.event_id.push(event.event_id);
            self.recorded_at.push(event.recorded_at);
            self.hash.push(&event.hash);
            self.previous_hash.push(&event.previous_hash);
        }
        for message in &batch.outbox {
            self.outbox_n.push(n);
            self.outbox_event_id.push(message.event_id);
            self.topic.push(&message.topic);
            self.headers.push(outbox_headers(&message.headers));
            self.outbox_payload.push(outbox_payload(&message.payload));
        }
        for pseudonym in &batch.sealed_under {
            self.sealed_n.push(n);
            self.pseudonym.push(pseudonym);
        }
    }
}
