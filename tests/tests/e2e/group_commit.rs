//! Group commit in the Postgres event store: concurrent appends on different aggregates share
//! one statement and one transaction, and each command keeps its own outcome (a lost race, a
//! taken idempotency key) without taking the others of its group along; a writer the group's
//! checks could not see makes every command be judged alone, and still nothing is stored twice.

use std::time::Duration;

use chronicle_application::aggregates;
use chronicle_application::data::event_log::StoredEvent;
use chronicle_application::data::message::OutboxMessage;
use chronicle_application::ports::event_store::{AppendBatch, EventStore, IdempotencyRecord};
use chronicle_application::ports::store_error::StoreError;
use chronicle_infrastructure::db;
use chronicle_infrastructure::db::planned_per_call::{Planning, UntilAnalysed};
use chronicle_infrastructure::event_store::PgEventStore;
use chronicle_infrastructure::outbox::OutboxSignal;
use chrono::Utc;
use futures::future::join_all;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// One event at `sequence` of stream `aggregate`, with its outbox row and, with `key`, an
/// idempotency record.
fn command(aggregate: &str, sequence: u64, key: Option<&str>) -> AppendBatch {
    let event_id = Uuid::now_v7();
    let aggregate_type = aggregates::TASK.type_name.to_owned();
    AppendBatch {
        aggregate_type: aggregate_type.clone(),
        aggregate_id: aggregate.to_owned(),
        team_id: Some("team-a".to_owned()),
        events: vec![StoredEvent {
            event_id,
            aggregate_type,
            aggregate_id: aggregate.to_owned(),
            sequence,
            event_type: "TaskStarted".to_owned(),
            event_version: "1.0".to_owned(),
            payload: json!({"TaskStarted": {}}),
            metadata: json!({"actor_id": "u-1"}),
            recorded_at: Utc::now(),
            hash: format!("hash-{event_id}"),
            previous_hash: String::new(),
        }],
        outbox: vec![OutboxMessage {
            event_id,
            topic: "group-commit-test".to_owned(),
            key: aggregate.to_owned(),
            headers: vec![("ce_id".to_owned(), event_id.to_string())],
            payload: serde_json::value::to_raw_value(&json!({"eventId": event_id})).unwrap(),
        }],
        snapshot: None,
        idempotency: key.map(|key| IdempotencyRecord {
            actor_id: "u-1".to_owned(),
            key: key.to_owned(),
            command: "startTask".to_owned(),
            aggregate_id: aggregate.to_owned(),
            version: sequence,
            request_fingerprint: None,
        }),
        sealed_under: Vec::new(),
    }
}

async fn store() -> (PgEventStore, PgPool) {
    let url = chronicle_tests::create_database().await.unwrap();
    let pool = db::connect(&url, 8).await.unwrap();
    db::migrate(&pool).await.unwrap();
    (
        PgEventStore::with_group_commit(pool.clone(), OutboxSignal::new()),
        pool,
    )
}

/// (events, outbox rows, transactions) of the streams whose id starts with `prefix`.
async fn stored(pool: &PgPool, prefix: &str) -> (i64, i64, i64) {
    let pattern = format!("{prefix}%");
    let (events, transactions): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT transaction_id) FROM events WHERE aggregate_id LIKE $1",
    )
    .bind(&pattern)
    .fetch_one(pool)
    .await
    .unwrap();
    let (outbox,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox WHERE key LIKE $1")
        .bind(&pattern)
        .fetch_one(pool)
        .await
        .unwrap();
    (events, outbox, transactions)
}

#[tokio::test]
async fn concurrent_appends_share_a_transaction_and_each_keeps_its_own_outcome() {
    let (store, pool) = store().await;
    // Taken before the group: stream `taken`'s first version, and the key `k-taken`.
    store
        .append(command("taken", 1, Some("k-taken")))
        .await
        .unwrap();

    let mut commands: Vec<AppendBatch> = (0..40)
        .map(|n| command(&format!("g-{n}"), 1, None))
        .collect();
    commands.push(command("taken", 1, None)); // lost its race
    commands.push(command("g-key", 1, Some("k-taken"))); // a retry of an earlier request
    commands.push(command("g-fresh-key", 1, Some("k-fresh")));
    // Two decisions on one version of one stream: never in one group or two groups at once;
    // the later is judged after the earlier committed, and loses.
    commands.push(command("twice", 1, None));
    commands.push(command("twice", 1, None));
    let outcomes = join_all(commands.into_iter().map(|batch| store.append(batch))).await;
    assert!(outcomes[43].is_ok(), "{:?}", outcomes[43]);
    assert!(
        matches!(outcomes[44], Err(StoreError::Conflict)),
        "{:?}",
        outcomes[44]
    );

    assert!(outcomes[..40].iter().all(Result::is_ok), "{outcomes:?}");
    assert!(
        matches!(outcomes[40], Err(StoreError::Conflict)),
        "{:?}",
        outcomes[40]
    );
    assert!(
        matches!(outcomes[41], Err(StoreError::IdempotencyKeyTaken)),
        "{:?}",
        outcomes[41]
    );
    assert!(outcomes[42].is_ok(), "{:?}", outcomes[42]);

    let (events, outbox, transactions) = stored(&pool, "g-").await;
    assert_eq!(
        (events, outbox),
        (41, 41),
        "the refused command wrote nothing"
    );
    assert!(
        transactions < events,
        "concurrent commands shared transactions: {transactions} for {events} commands"
    );
    let (key_stream,): (String,) =
        sqlx::query_as("SELECT aggregate_id FROM idempotency_keys WHERE key = 'k-taken'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        key_stream, "taken",
        "the taken key still answers its first request"
    );
    let (taken_events,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM events WHERE aggregate_id = 'taken'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(taken_events, 1);
}

/// The writers keep their connection between statements (no pool test at each release); one
/// that dies under them costs the command that was on it, never the ones after.
///
/// The store's pool holds one connection, so the next command is the one to meet the killed
/// backend, whether the writer kept it or gave it back to the pool; with more, which command
/// meets it would be up to the pool's order. The test's own statements use a pool of their
/// own: a dead connection left idle in the store's pool fails whoever takes it next, once.
#[tokio::test]
async fn a_writers_connection_killed_under_it_fails_one_command_and_the_next_ones_commit() {
    let url = chronicle_tests::create_database().await.unwrap();
    let pool = db::connect(&url, 1).await.unwrap();
    db::migrate(&pool).await.unwrap();
    let store = PgEventStore::with_group_commit(pool.clone(), OutboxSignal::new());
    store.append(command("kill-0", 1, None)).await.unwrap();
    // The backend that wrote it (kept by the writer, or back in the pool if the writer idled),
    // killed from outside the pool so the kill cannot be sent on that very backend.
    let reader = db::connect(&url, 1).await.unwrap();
    let (killed,): (i64,) = sqlx::query_as(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND query LIKE '%The whole append in one statement%'",
    )
    .fetch_one(&reader)
    .await
    .unwrap();
    assert_eq!(killed, 1, "one connection wrote the first command");

    let first = store.append(command("kill-1", 1, None)).await;
    // It fails unless the pool's test of a connection given back (when the writer idled)
    // happened to find the backend dead first and opened another.
    if let Err(error) = &first {
        assert!(
            matches!(error, StoreError::Unavailable(_)),
            "a lost connection is a retryable failure: {error:?}"
        );
    }
    for n in 2..6 {
        let outcome = store.append(command(&format!("kill-{n}"), 1, None)).await;
        assert!(
            outcome.is_ok(),
            "command {n} after the kill found the dead connection kept: {outcome:?}"
        );
    }
    // The failed command wrote nothing and goes through when sent again.
    let (events, _, _) = stored(&reader, "kill-1").await;
    assert_eq!(events, i64::from(first.is_ok()));
    if first.is_err() {
        store.append(command("kill-1", 1, None)).await.unwrap();
    }
    let (events, outbox, _) = stored(&reader, "kill-").await;
    assert_eq!((events, outbox), (6, 6), "every command stored once");
}

#[tokio::test]
async fn a_writer_the_group_could_not_see_has_every_command_judged_alone() {
    let (store, pool) = store().await;
    // Another writer holds `race`'s first version in a transaction not yet committed.
    let mut rival = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, event_id, recorded_at, hash, previous_hash)
         VALUES ($1, 'r-race', 1, 'TaskStarted', '1.0', '{}', '{}', $2, now(), 'h', '')",
    )
    .bind(aggregates::TASK.type_name)
    .bind(Uuid::now_v7())
    .execute(&mut *rival)
    .await
    .unwrap();

    let mut commands: Vec<AppendBatch> = (0..12)
        .map(|n| command(&format!("r-{n}"), 1, None))
        .collect();
    commands.push(command("r-race", 1, None));
    let appending = tokio::spawn({
        let store = store.clone();
        async move { join_all(commands.into_iter().map(|batch| store.append(batch))).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    rival.commit().await.unwrap();
    let outcomes = appending.await.unwrap();

    assert!(outcomes[..12].iter().all(Result::is_ok), "{outcomes:?}");
    assert!(
        matches!(outcomes[12], Err(StoreError::Conflict)),
        "{:?}",
        outcomes[12]
    );
    let (events, outbox, _) = stored(&pool, "r-").await;
    assert_eq!(
        (events, outbox),
        (13, 12),
        "every command once, the rival's event, and no outbox row for the loser"
    );
}

#[tokio::test]
async fn the_group_statement_is_planned_per_call_until_its_tables_have_statistics() {
    let (_, pool) = store().await;
    let planning = UntilAnalysed::new(&["events", "outbox"], Duration::from_millis(50));
    // A young store: no statistics yet, whatever is asked how often.
    for _ in 0..10 {
        assert_eq!(planning.planning(&pool), Planning::PerCall);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // One table analysed is not enough: every table named must have statistics.
    sqlx::query("ANALYZE events").execute(&pool).await.unwrap();
    for _ in 0..10 {
        assert_eq!(planning.planning(&pool), Planning::PerCall);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // With both analysed (autovacuum's analyse counts the same), cached from the next check
    // on, and for good.
    sqlx::query("ANALYZE outbox").execute(&pool).await.unwrap();
    chronicle_tests::eventually(Duration::from_secs(10), || async {
        Ok((planning.planning(&pool) == Planning::Cached).then_some(()))
    })
    .await
    .expect("cached plans once the tables have statistics");
    for _ in 0..5 {
        assert_eq!(planning.planning(&pool), Planning::Cached);
    }
}
