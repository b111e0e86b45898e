//! A large, realistic event store written straight into Postgres, for the benchmarks of the
//! audit trail, chain verification and replay (a million events through GraphQL would take
//! the benchmark's whole budget to write).
//!
//! Every event is what the service itself would store: domain events serialized by the domain
//! types, command metadata, UUIDv7 ids and a valid hash chain per aggregate. Tasks are written
//! in chunks whose events interleave by position, as concurrent users' would.

use chronicle_application::data::event_log::{serialize_event, StoredEvent};
use chronicle_application::data::hash_chain::{event_hash, GENESIS_HASH};
use chronicle_application::data::metadata::CommandMetadata;
use chronicle_domain::ids::{TeamId, UserId};
use chronicle_domain::task::{Priority, TaskEvent};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::DomainEvent;
use sqlx::PgPool;
use uuid::Uuid;

/// Events written per task.
pub const EVENTS_PER_TASK: usize = 5;
/// Distinct actors of the seeded commands (`u-0` … `u-999`).
pub const ACTORS: usize = 1_000;
const CHUNK_TASKS: usize = 2_000;

/// Writes `tasks` tasks of [`EVENTS_PER_TASK`] events each; returns the events written.
pub async fn seed_tasks(pool: &PgPool, tasks: usize) -> anyhow::Result<u64> {
    seed(pool, tasks, false).await
}

/// Like [`seed_tasks`], with `TaskCreated` as release 1 wrote it: schema 1.0, no `watchers`
/// (hash chains computed over that payload, as they were then).
pub async fn seed_legacy_tasks(pool: &PgPool, tasks: usize) -> anyhow::Result<u64> {
    seed(pool, tasks, true).await
}

async fn seed(pool: &PgPool, tasks: usize, legacy: bool) -> anyhow::Result<u64> {
    let start = Utc::now() - Duration::days(30);
    let mut written = 0u64;
    let mut first = 0usize;
    while first < tasks {
        let count = CHUNK_TASKS.min(tasks - first);
        let (events, teams) = chunk(first, count, start, legacy)?;
        insert(pool, &events, &teams).await?;
        written += events.len() as u64;
        first += count;
    }
    Ok(written)
}

fn chunk(
    first: usize,
    count: usize,
    start: DateTime<Utc>,
    legacy: bool,
) -> anyhow::Result<(Vec<StoredEvent>, Vec<String>)> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let mut previous: Vec<String> = vec![GENESIS_HASH.to_owned(); count];
    let mut events = Vec::with_capacity(count * EVENTS_PER_TASK);
    // The owning team of each event, written beside it as the service's append does.
    let mut teams = Vec::with_capacity(count * EVENTS_PER_TASK);
    for step in 0..EVENTS_PER_TASK {
        for (offset, id) in ids.iter().enumerate() {
            let n = first + offset;
            let team = format!("team-{}", n % 50);
            let actor = format!("u-{}", (n * 7 + step) % ACTORS);
            let event = match step {
                0 => TaskEvent::TaskCreated {
                    task_id: *id,
                    title: format!("seeded task {n}"),
                    description: "written by the benchmark seeder".to_owned(),
                    team_id: TeamId::parse("teamId", &team)?,
                    creator_id: UserId::parse("creatorId", &actor)?,
                    assignee_id: None,
                    priority: Priority::Normal,
                    due_at: None,
                    labels: vec!["seeded".to_owned()],
                    watchers: vec![UserId::parse("watchers", &actor)?],
                },
                1 => TaskEvent::TaskAssigned {
                    assignee_id: UserId::parse("assigneeId", &format!("u-{}", n % ACTORS))?,
                    previous_assignee_id: None,
                },
                2 => TaskEvent::TaskStarted {},
                3 => TaskEvent::TaskDetailsUpdated {
                    title: Some(format!("seeded task {n} (renamed)")),
                    description: None,
                    priority: Some(Priority::High),
                    due_at: None,
                    labels: None,
                },
                _ => TaskEvent::TaskCompleted {
                    result: Some("done".to_owned()),
                },
            };
            let metadata = CommandMetadata::for_actor(actor);
            let mut stored = StoredEvent {
                event_id: Uuid::now_v7(),
                aggregate_type: "Task".to_owned(),
                aggregate_id: id.to_string(),
                sequence: step as u64 + 1,
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serialize_event(&event)?,
                metadata: serde_json::to_value(&metadata)?,
                recorded_at: start
                    + Duration::milliseconds(((n * EVENTS_PER_TASK + step) * 2_500) as i64),
                hash: String::new(),
                previous_hash: std::mem::take(&mut previous[offset]),
            };
            if legacy && step == 0 {
                stored.event_version = "1.0".to_owned();
                if let Some(created) = stored.payload["TaskCreated"].as_object_mut() {
                    created.remove("watchers");
                }
            }
            stored.hash = event_hash(&stored);
            previous[offset].clone_from(&stored.hash);
            events.push(stored);
            teams.push(team);
        }
    }
    Ok((events, teams))
}

async fn insert(pool: &PgPool, events: &[StoredEvent], teams: &[String]) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, event_id, recorded_at, hash, previous_hash,
                             team_id)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                              $6::jsonb[], $7::jsonb[], $8::uuid[], $9::timestamptz[],
                              $10::text[], $11::text[], $12::text[])",
    )
    .bind(
        events
            .iter()
            .map(|e| e.aggregate_type.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|e| e.aggregate_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.event_type.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|e| e.event_version.clone())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.metadata.clone())
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.hash.clone()).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.previous_hash.clone())
            .collect::<Vec<_>>(),
    )
    .bind(teams)
    .execute(pool)
    .await?;
    Ok(())
}
