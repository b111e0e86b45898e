//! Faults with real processes: `chronicle serve` killed with SIGKILL or stopped with SIGTERM
//! under a steady write load, a relay leader dying beside a standby, consumers joining and
//! leaving their group, and the database restarting under the service. Each test ends by
//! comparing what clients were told (acknowledged) with what was stored, published and
//! projected.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chronicle::app::PROJECTIONS_GROUP;
use chronicle_application::topics::Topics;
use chronicle_infrastructure::config::Settings;
use chronicle_tests::outbox_drained;
use chronicle_tests::support::admin_token;
use chronicle_tests::CREATE_TASK;
use chronicle_tests::{
    brokers, create_database, eventually, read_topic_to_end, run_chronicle, test_settings, Answer,
    ChronicleProcess, GraphqlClient, PrivatePostgres, TestApp,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ALL: &str = "api,relay,projections,worker";
const START: Duration = Duration::from_secs(60);

/// A (task id, version) a client was told about.
type Ack = (String, i64);

/// What a load run was answered.
#[derive(Debug, Default)]
struct Tally {
    acknowledged: Vec<Ack>,
    /// Error answers by `extensions.code`.
    codes: BTreeMap<String, usize>,
    /// How long each error answer took.
    error_latencies: Vec<Duration>,
    /// Requests that got no answer (connection refused or broken).
    unreachable: usize,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.acknowledged.extend(other.acknowledged);
        for (code, n) in other.codes {
            *self.codes.entry(code).or_default() += n;
        }
        self.error_latencies.extend(other.error_latencies);
        self.unreachable += other.unreachable;
    }
}

/// Clients writing as fast as they are answered: each creates a task, assigns it and starts it
/// (three events per stream), and counts every answer.
struct Load {
    stop: CancellationToken,
    workers: Vec<JoinHandle<Tally>>,
}

impl Load {
    fn start(client: &GraphqlClient, workers: usize) -> Self {
        let stop = CancellationToken::new();
        let workers = (0..workers)
            .map(|worker| {
                let (client, stop) = (client.clone(), stop.clone());
                tokio::spawn(async move { write_until_stopped(client, stop, worker).await })
            })
            .collect();
        Self { stop, workers }
    }

    async fn finish(self) -> Tally {
        self.stop.cancel();
        let mut tally = Tally::default();
        for worker in self.workers {
            tally.merge(worker.await.expect("load worker"));
        }
        tally
    }
}

async fn write_until_stopped(
    client: GraphqlClient,
    stop: CancellationToken,
    worker: usize,
) -> Tally {
    let mut tally = Tally::default();
    let mut n = 0;
    while !stop.is_cancelled() {
        n += 1;
        let create = send_counted(
            &client,
            &mut tally,
            CREATE_TASK,
            json!({"i": {"title": format!("Load {worker}-{n}"), "teamId": "team-a"}}),
        )
        .await;
        let Some(data) = create else { continue };
        let id = data["createTask"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        tally.acknowledged.push((id.clone(), 1));
        for (call, version) in [
            ("assignTask(id: $id, assigneeId: \"u-load\")", 2),
            ("startTask(id: $id)", 3),
        ] {
            let query = format!("mutation($id: ID!) {{ {call} {{ version }} }}");
            if send_counted(&client, &mut tally, &query, json!({"id": id}))
                .await
                .is_none()
            {
                break;
            }
            tally.acknowledged.push((id.clone(), version));
        }
    }
    tally
}

async fn send_counted(
    client: &GraphqlClient,
    tally: &mut Tally,
    query: &str,
    variables: serde_json::Value,
) -> Option<serde_json::Value> {
    let started = Instant::now();
    match client.send(query, variables).await {
        Answer::Data(data) => Some(data),
        Answer::Error { code, .. } => {
            *tally.codes.entry(code).or_default() += 1;
            tally.error_latencies.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
        Answer::Unreachable(_) => {
            tally.unreachable += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            None
        }
    }
}

/// A database and topic prefix of its own, with no service running yet.
async fn fresh_settings() -> (Settings, PgPool) {
    let url = create_database().await.unwrap();
    let settings = test_settings(&url, &brokers());
    let pool = PgPool::connect(&url).await.unwrap();
    (settings, pool)
}

async fn stored_task_events(db: &PgPool) -> BTreeSet<Ack> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT aggregate_id, sequence FROM events WHERE aggregate_type = 'Task'",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// Waits until the outbox is drained and every task row is at its stream's last sequence.
async fn wait_published_and_projected(db: &PgPool) {
    eventually(Duration::from_secs(90), || async {
        let (unpublished, behind): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL),
                    (SELECT count(*) FROM (SELECT aggregate_id, max(sequence) AS last FROM events
                                           WHERE aggregate_type = 'Task' GROUP BY aggregate_id) e
                     LEFT JOIN tasks t ON t.id::text = e.aggregate_id
                     WHERE t.version IS DISTINCT FROM e.last)",
        )
        .fetch_one(db)
        .await?;
        if unpublished == 0 && behind == 0 {
            return Ok(Some(()));
        }
        eprintln!("waiting: {unpublished} unpublished, {behind} tasks behind their stream");
        tokio::time::sleep(Duration::from_millis(900)).await;
        Ok(None)
    })
    .await
    .expect("everything stored is published and projected");
}

/// Every stored event is on the topic; an event published twice (a relay died between
/// produce and mark) carries its one id both times; each key's events first appear in
/// sequence order. Returns how many records the topic holds.
async fn assert_published_once_per_event(settings: &Settings, stored: &BTreeSet<Ack>) -> usize {
    let topic = Topics::new(settings.kafka.topic_prefix.clone()).events_of("Task");
    let mut records = read_topic_to_end(
        &settings.kafka.brokers,
        &topic,
        stored.len(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    records.sort_by_key(|r| (r.partition, r.offset));
    let mut ids: HashMap<Ack, BTreeSet<String>> = HashMap::new();
    let mut first_seen: HashMap<String, i64> = HashMap::new();
    for record in &records {
        let id = record.value["aggregateId"].as_str().unwrap().to_owned();
        let sequence = record.value["sequence"].as_i64().unwrap();
        assert_eq!(record.key, id, "keyed by aggregate id");
        let last = first_seen.entry(id.clone()).or_insert(0);
        if sequence > *last {
            assert_eq!(
                sequence,
                *last + 1,
                "task {id}: events out of order on the topic"
            );
            *last = sequence;
        }
        ids.entry((id, sequence))
            .or_default()
            .insert(record.headers["ce_id"].clone());
    }
    let published: BTreeSet<Ack> = ids.keys().cloned().collect();
    let missing: Vec<_> = stored.difference(&published).take(5).collect();
    let unknown: Vec<_> = published.difference(stored).take(5).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "the topic must hold exactly the stored events: {} stored, {} on the topic; \
         missing e.g. {missing:?}; not stored e.g. {unknown:?}",
        stored.len(),
        published.len()
    );
    for (event, event_ids) in &ids {
        assert_eq!(event_ids.len(), 1, "{event:?} was published under two ids");
    }
    records.len()
}

async fn assert_acknowledged_stored(tally: &Tally, stored: &BTreeSet<Ack>) {
    for ack in &tally.acknowledged {
        assert!(stored.contains(ack), "acknowledged {ack:?} was lost");
    }
}

/// The tasks read model as JSON rows, for comparing with a rebuild from the store.
async fn task_rows(db: &PgPool) -> Vec<serde_json::Value> {
    sqlx::query_scalar("SELECT to_jsonb(t) FROM tasks t ORDER BY id")
        .fetch_all(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn sigkill_under_load_then_restart_loses_no_acknowledged_command_and_applies_none_twice() {
    let (settings, db) = fresh_settings().await;
    let first = ChronicleProcess::serve(&settings, ALL).unwrap();
    first.wait_ready(START).await.unwrap();
    let load = Load::start(&first.client(&admin_token()).unwrap(), 4);
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.kill().await.unwrap();
    let mut tally = load.finish().await;
    let before_restart = tally.acknowledged.len();
    assert!(before_restart > 10, "the load ran: {tally:?}");

    // Restart after the dead member's session expired (10 s). Apache Kafka evicts a dead
    // member on its own once its session times out; Tansu, the test broker, only when a member
    // joins after that, and otherwise leaves the dead member's partitions unconsumed.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let second = ChronicleProcess::serve(&settings, ALL).unwrap();
    second.wait_ready(START).await.unwrap();
    let load = Load::start(&second.client(&admin_token()).unwrap(), 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    tally.merge(load.finish().await);
    assert!(
        tally.acknowledged.len() > before_restart,
        "the restarted service took writes"
    );
    assert!(
        tally.codes.is_empty(),
        "no request was refused with an error: {:?}",
        tally.codes
    );

    wait_published_and_projected(&db).await;
    let stored = stored_task_events(&db).await;
    assert_acknowledged_stored(&tally, &stored).await;
    let records = assert_published_once_per_event(&settings, &stored).await;
    let failures: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_failures")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(failures, 0);
    println!(
        "acknowledged {}, stored {}, published {} records ({} distinct), projected all",
        tally.acknowledged.len(),
        stored.len(),
        records,
        stored.len()
    );

    // What the live projection built through the crash equals a rebuild from the store: no
    // event was applied twice, none skipped.
    let live = task_rows(&db).await;
    let (code, _) = run_chronicle(settings.database_url.expose(), &["replay", "tasks"])
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(task_rows(&db).await, live);
}

#[tokio::test]
async fn a_service_killed_amid_group_commits_keeps_every_acknowledged_command_once_and_whole() {
    let (mut settings, db) = fresh_settings().await;
    settings.group_commit = true;
    let service = ChronicleProcess::serve(&settings, ALL).unwrap();
    service.wait_ready(START).await.unwrap();
    // Enough writers that appends wait for a slot and go in groups.
    let load = Load::start(&service.client(&admin_token()).unwrap(), 24);
    tokio::time::sleep(Duration::from_secs(3)).await;
    service.kill().await.unwrap();
    let tally = load.finish().await;
    assert!(tally.acknowledged.len() > 10, "the load ran: {tally:?}");

    let (events, transactions): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT transaction_id) FROM events")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(
        transactions < events,
        "commands were committed in groups: {events} events in {transactions} transactions"
    );
    let stored = stored_task_events(&db).await;
    assert_acknowledged_stored(&tally, &stored).await;
    // Nothing half-written: every stream is whole from sequence 1, and every stored event has
    // its outbox row (a command's events and outbox rows commit together or not at all).
    let broken: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT aggregate_id, count(*), max(sequence) FROM events
         GROUP BY aggregate_id HAVING count(*) <> max(sequence) OR min(sequence) <> 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert!(broken.is_empty(), "streams with a gap: {broken:?}");
    let without_outbox: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e
         WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = e.event_id)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(without_outbox, 0, "every stored event has its outbox row");
    println!(
        "acknowledged {} of {} stored events, {events} events in {transactions} transactions",
        tally.acknowledged.len(),
        stored.len()
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_commits_offsets_and_exits_zero() {
    let (settings, db) = fresh_settings().await;
    let mut service = ChronicleProcess::serve(&settings, ALL).unwrap();
    service.wait_ready(START).await.unwrap();
    let load = Load::start(&service.client(&admin_token()).unwrap(), 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The projection has joined its group and applied some of it (on a busy machine the join
    // can take longer than the two seconds): there are offsets to commit at shutdown.
    eventually(Duration::from_secs(30), || async {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
            .fetch_one(&db)
            .await?;
        Ok((rows > 0).then_some(()))
    })
    .await
    .expect("the projection applies events under load");

    service.signal("-TERM").unwrap();
    let asked = Instant::now();
    let status = service.wait_exit(Duration::from_secs(40)).await.unwrap();
    let took = asked.elapsed();
    let tally = load.finish().await;
    assert!(status.success(), "exit status {status}");
    println!("SIGTERM to exit: {took:?}");
    assert!(
        tally.codes.is_empty(),
        "in-flight requests finished instead of failing: {:?}",
        tally.codes
    );
    let stored = stored_task_events(&db).await;
    assert!(!tally.acknowledged.is_empty());
    assert_acknowledged_stored(&tally, &stored).await;

    // The projections committed exactly what they applied: with each stream applied in order,
    // the committed offsets of the task topic add up to the sum of the rows' versions.
    let topics = Topics::new(settings.kafka.topic_prefix.clone());
    let committed = committed_offsets(
        &settings,
        &topics.group(PROJECTIONS_GROUP),
        &topics.events_of("Task"),
    );
    let applied: i64 = sqlx::query_scalar("SELECT coalesce(sum(version), 0)::bigint FROM tasks")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(applied > 0);
    assert_eq!(committed, applied, "offsets committed on shutdown");

    // The relay lock was released and the producer flushed: a new instance leads at once and
    // publishes the rest, and nothing reaches the topic twice.
    let next = ChronicleProcess::serve(&settings, ALL).unwrap();
    next.wait_ready(START).await.unwrap();
    eventually(Duration::from_secs(10), || async {
        Ok(next.relay_leader().await.filter(|leader| *leader))
    })
    .await
    .unwrap();
    wait_published_and_projected(&db).await;
    let records = assert_published_once_per_event(&settings, &stored).await;
    assert_eq!(records, stored.len(), "no event was published twice");
}

/// The committed offsets of `group` on `topic`, summed over partitions.
fn committed_offsets(settings: &Settings, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for partition in 0..settings.kafka.partitions {
        partitions.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => offset,
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn a_standby_relay_takes_over_within_seconds_when_the_leader_is_killed() {
    let (settings, db) = fresh_settings().await;
    let one = ChronicleProcess::serve(&settings, "api,relay").unwrap();
    let two = ChronicleProcess::serve(&settings, "api,relay").unwrap();
    one.wait_ready(START).await.unwrap();
    two.wait_ready(START).await.unwrap();
    eventually(Duration::from_secs(15), || async {
        let leaders = [one.relay_leader().await, two.relay_leader().await];
        Ok((leaders.iter().flatten().filter(|l| **l).count() == 1).then_some(()))
    })
    .await
    .expect("one relay leads");
    for _ in 0..10 {
        let (a, b) = (one.relay_leader().await, two.relay_leader().await);
        assert!(
            !(a == Some(true) && b == Some(true)),
            "two relays led at once"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (leader, survivor) = if one.relay_leader().await == Some(true) {
        (one, two)
    } else {
        (two, one)
    };
    let client = survivor.client(&admin_token()).unwrap();
    client
        .data(
            "mutation { createTask(input: {title: \"Before\", teamId: \"team-a\"}) { id } }",
            json!({}),
        )
        .await
        .unwrap();

    leader.kill().await.unwrap();
    let killed = Instant::now();
    eventually(Duration::from_secs(20), || async {
        Ok(survivor.relay_leader().await.filter(|leader| *leader))
    })
    .await
    .expect("the standby took over");
    let failover = killed.elapsed();
    println!("relay failover: {failover:?}");

    for n in 0..5 {
        client
            .data(
                "mutation($title: String!) { createTask(input: {title: $title, teamId: \"team-a\"}) { id } }",
                json!({"title": format!("After {n}")}),
            )
            .await
            .unwrap();
    }
    outbox_drained(&db, Duration::from_secs(30))
        .await
        .expect("the new leader published everything");
    let stored = stored_task_events(&db).await;
    assert_eq!(stored.len(), 6);
    assert_published_once_per_event(&settings, &stored).await;
}

#[tokio::test]
async fn projection_consumers_share_partitions_and_the_survivor_takes_over_when_one_leaves() {
    let app = TestApp::spawn_parts(
        chronicle::app::Parts {
            api: true,
            relay: true,
            projections: false,
            worker: false,
        },
        |_| {},
    )
    .await
    .unwrap();
    let group = Topics::new(app.settings.kafka.topic_prefix.clone()).group(PROJECTIONS_GROUP);
    // Every event topic, and beside each the group's redrive topic.
    let every_partition =
        2 * chronicle_application::aggregates::ALL.len() * app.settings.kafka.partitions as usize;
    let first = ChronicleProcess::serve(&app.settings, "api,projections").unwrap();
    first.wait_ready(START).await.unwrap();
    assigned_partitions(&first, &group, |n| n == every_partition).await;

    // A second member joins: the group rebalances and hands it part of the partitions.
    let mut second = ChronicleProcess::serve(&app.settings, "api,projections").unwrap();
    second.wait_ready(START).await.unwrap();
    let taken = assigned_partitions(&second, &group, |n| n > 0).await;
    assert!(
        taken < every_partition,
        "the partitions are shared, not moved"
    );
    for n in 0..12 {
        let id = app
            .create_task(&format!("Shared {n}"), "team-a")
            .await
            .unwrap();
        app.wait_for_version(&id, 1).await.unwrap();
    }

    // It leaves: its partitions go back to the first member, which projects everything.
    second.signal("-TERM").unwrap();
    assert!(second
        .wait_exit(Duration::from_secs(40))
        .await
        .unwrap()
        .success());
    for n in 0..24 {
        let id = app
            .create_task(&format!("After {n}"), "team-a")
            .await
            .unwrap();
        app.wait_for_version(&id, 1).await.unwrap();
    }
    drop(first);
}

/// Waits until `process` reports owning a number of `group`'s partitions that `enough`
/// accepts; returns that number.
async fn assigned_partitions(
    process: &ChronicleProcess,
    group: &str,
    enough: impl Fn(usize) -> bool,
) -> usize {
    let client = process.client("").unwrap();
    let series = format!("chronicle_consumer_assigned_partitions{{group=\"{group}\"}} ");
    eventually(Duration::from_secs(60), || async {
        let metrics = client.metrics().await?;
        let assigned = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map_or(0, |value| value as usize);
        Ok(enough(assigned).then_some(assigned))
    })
    .await
    .expect("the consumer got its partitions")
}

#[tokio::test]
async fn a_postgres_restart_fails_commands_fast_with_a_clear_code_and_the_service_recovers() {
    let postgres = PrivatePostgres::start().await.unwrap();
    let admin = PgPool::connect(&postgres.url("postgres")).await.unwrap();
    sqlx::query("CREATE DATABASE chronicle")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let settings = test_settings(&postgres.url("chronicle"), &brokers());
    let service = ChronicleProcess::serve(&settings, ALL).unwrap();
    service.wait_ready(START).await.unwrap();
    let client = service.client(&admin_token()).unwrap();
    let create = |title: &'static str| {
        let client = client.clone();
        async move {
            client
                .send(
                    "mutation($title: String!) { createTask(input: {title: $title, teamId: \"team-a\"}) { id } }",
                    json!({"title": title}),
                )
                .await
        }
    };
    let Answer::Data(_) = create("Before").await else {
        panic!("the service works before the restart");
    };

    postgres.stop_server().unwrap();
    let mut during = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let answer = create("During").await;
        during.push((answer, started.elapsed()));
    }
    for (answer, took) in &during {
        let Answer::Error { code, message } = answer else {
            panic!("a command answered without its database: {answer:?}");
        };
        assert_eq!(code, "UNAVAILABLE", "{message}");
        assert!(
            message.contains("database"),
            "the message says what is missing: {message}"
        );
        assert!(*took < Duration::from_secs(10), "failed in {took:?}");
    }
    println!(
        "commands during the outage answered UNAVAILABLE in {:?}",
        during.iter().map(|(_, took)| *took).collect::<Vec<_>>()
    );
    let (status, body) = client.ready().await.unwrap();
    assert_eq!((status, &body["database"]), (503, &json!(false)));

    postgres.start_server().unwrap();
    let back = Instant::now();
    let recovered = eventually(Duration::from_secs(60), || async {
        Ok(match create("After").await {
            Answer::Data(data) => Some(data),
            _ => None,
        })
    })
    .await
    .expect("the service recovered by itself");
    println!(
        "first successful command {:?} after Postgres was back",
        back.elapsed()
    );
    let id = recovered["createTask"]["id"].as_str().unwrap().to_owned();

    let db = PgPool::connect(settings.database_url.expose())
        .await
        .unwrap();
    wait_published_and_projected(&db).await;
    let stored = stored_task_events(&db).await;
    assert_eq!(stored.len(), 2, "before and after; nothing from the outage");
    assert!(stored.contains(&(id, 1)));
    assert_published_once_per_event(&settings, &stored).await;
    drop(service);
}

/// `postgres://` URL of database `name` over `hosts`, as libpq writes several hosts.
fn multi_host_url(hosts: &[&PrivatePostgres], name: &str, attrs: &str) -> String {
    let hosts: Vec<String> = hosts
        .iter()
        .map(|host| format!("127.0.0.1:{}", host.port))
        .collect();
    format!(
        "postgres://postgres@{}/{name}?target_session_attrs={attrs}",
        hosts.join(",")
    )
}

/// A primary with a streaming standby, both holding database `chronicle`. Synchronous: the
/// primary acknowledges a commit only once the standby has it (`synchronous_commit=on`, the
/// default, with the standby in `synchronous_standby_names`), so a failover loses nothing
/// acknowledged.
async fn primary_and_standby(synchronous: bool) -> (PrivatePostgres, PrivatePostgres) {
    let primary = PrivatePostgres::start().await.unwrap();
    let admin = PgPool::connect(&primary.url("postgres")).await.unwrap();
    sqlx::query("CREATE DATABASE chronicle")
        .execute(&admin)
        .await
        .unwrap();
    let standby = PrivatePostgres::start_standby_of(&primary, "standby")
        .await
        .unwrap();
    if synchronous {
        // Only now: before the standby streams, every commit would wait for it.
        for statement in [
            "ALTER SYSTEM SET synchronous_standby_names = 'standby'",
            "SELECT pg_reload_conf()",
        ] {
            sqlx::raw_sql(statement).execute(&admin).await.unwrap();
        }
        let state: String = eventually(Duration::from_secs(10), || async {
            Ok(sqlx::query_scalar::<_, String>(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'",
            )
            .fetch_optional(&admin)
            .await?
            .filter(|state| state == "sync"))
        })
        .await
        .expect("the standby is synchronous");
        assert_eq!(state, "sync");
    }
    admin.close().await;
    (primary, standby)
}

#[tokio::test]
async fn a_multi_host_url_finds_the_server_asked_for_and_follows_a_promoted_standby() {
    use chronicle_infrastructure::db;
    let (primary, standby) = primary_and_standby(false).await;
    // The standby is written first: read-write must pass it over.
    let url = multi_host_url(&[&standby, &primary], "chronicle", "read-write");
    let pool = db::connect(&url, 4).await.unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!in_recovery, "read-write reached the primary");
    sqlx::raw_sql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    let mut session = db::connect_session(&url).await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(7)")
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert!(locked, "a session connection on the primary");

    let on_standby = db::connect(
        &multi_host_url(&[&primary, &standby], "chronicle", "standby"),
        2,
    )
    .await
    .unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&on_standby)
        .await
        .unwrap();
    assert!(in_recovery, "standby reached the standby");

    // No host fits: the error names every host tried and why it was passed over.
    let dead = chronicle_tests::free_port().unwrap();
    let none_fits = format!(
        "postgres://postgres@127.0.0.1:{dead},127.0.0.1:{}/chronicle?target_session_attrs=primary",
        standby.port
    );
    let error = format!(
        "{:#}",
        anyhow::Error::new(db::connect(&none_fits, 2).await.unwrap_err())
    );
    for named in [
        format!("127.0.0.1:{dead}: "),
        format!("127.0.0.1:{}: a standby", standby.port),
        "no host is a primary server".to_owned(),
    ] {
        assert!(error.contains(&named), "{named:?} missing from: {error}");
    }
    let refused = db::connect("postgres://postgres@a:5432,b:x/chronicle", 2)
        .await
        .unwrap_err();
    assert!(
        format!("{:#}", anyhow::Error::new(refused)).contains("host 2 (b:x)"),
        "a malformed URL names its part"
    );

    // The primary dies; the standby is promoted. The same pool reaches it by itself.
    primary.kill().unwrap();
    let killed = Instant::now();
    standby.promote().unwrap();
    let promoted = killed.elapsed();
    let moved = eventually(Duration::from_secs(30), || async {
        Ok(sqlx::query("INSERT INTO kept VALUES (2)")
            .execute(&pool)
            .await
            .ok()
            .map(|_| killed.elapsed()))
    })
    .await
    .expect("writes reach the promoted standby");
    println!("promoted after {promoted:?}; first write through the pool after {moved:?}");
    let kept: Vec<i32> = sqlx::query_scalar("SELECT n FROM kept ORDER BY n")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        kept,
        [1, 2],
        "the promoted standby holds what the primary had"
    );
    let mut session = db::connect_session(&url).await.unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert!(!in_recovery);
}

#[tokio::test]
async fn a_killed_primary_loses_no_acknowledged_command_once_its_synchronous_standby_is_promoted() {
    let (primary, standby) = primary_and_standby(true).await;
    let url = multi_host_url(&[&primary, &standby], "chronicle", "read-write");
    let (settings, dir) = signing_settings(&url).await;
    let service = ChronicleProcess::serve(&settings, ALL).unwrap();
    service.wait_ready(START).await.unwrap();
    let client = service.client(&admin_token()).unwrap();

    let load = Load::start(&client, 4);
    tokio::time::sleep(Duration::from_secs(4)).await;
    primary.kill().unwrap();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    standby.promote().unwrap();
    let promoted = killed.elapsed();
    let recovered = until_commands_succeed(&client, killed, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tally = load.finish().await;
    println!(
        "promoted {promoted:?} after the kill; createTask succeeded again {recovered:?} after it; \
         {} acknowledged, answers refused: {:?}, unreachable: {}",
        tally.acknowledged.len(),
        tally.codes,
        tally.unreachable
    );
    let db = PgPool::connect(&standby.url("chronicle")).await.unwrap();
    assert_failover_lost_nothing(&settings, &db, &dir.join("audit.pem.pub"), &tally).await;
    drop(service);
    let _ = std::fs::remove_dir_all(dir);
}

/// Connections the service's query pool holds on `server` (they name themselves).
async fn query_connections_on(server: &PrivatePostgres) -> i64 {
    let pool = PgPool::connect(&server.url("chronicle")).await.unwrap();
    let count = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'chronicle-reads'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    count
}

/// The `readReplica` part of `/health/ready`, once `check` holds for it.
async fn replica_health(
    client: &GraphqlClient,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(Duration::from_secs(20), || async {
        let (status, body) = client.ready().await?;
        assert_eq!(
            status, 200,
            "a replica never makes the service unready: {body}"
        );
        Ok(check(&body["readReplica"]).then(|| body["readReplica"].clone()))
    })
    .await
    .expect("the replica's state as expected")
}

#[tokio::test]
async fn queries_read_the_replica_and_move_to_the_primary_while_it_lags_or_is_down() {
    use chronicle_infrastructure::config::ReadReplicaSettings;
    use chronicle_infrastructure::secret::DatabaseUrl;
    let (primary, replica) = primary_and_standby(false).await;
    let mut settings = test_settings(&primary.url("chronicle"), &brokers());
    settings.read_replica = Some(ReadReplicaSettings {
        url: DatabaseUrl::new(replica.url("chronicle")),
        max_wait: Duration::from_millis(200),
        max_lag: Duration::from_millis(1500),
    });
    let service = ChronicleProcess::serve(&settings, ALL).unwrap();
    service.wait_ready(START).await.unwrap();
    let client = service.client(&admin_token()).unwrap();
    let create = |title: &'static str| {
        let client = client.clone();
        async move {
            let Answer::Data(data) = client
                .send(
                    CREATE_TASK,
                    json!({"i": {"title": title, "teamId": "team-a"}}),
                )
                .await
            else {
                panic!("createTask failed");
            };
            data["createTask"]["id"].as_str().unwrap().to_owned()
        }
    };
    let read = |id: String| {
        let client = client.clone();
        async move {
            client
                .send(
                    "query($id: ID!) { task(id: $id, minVersion: 1) { id title } tasks(first: 100) { edges { node { id } } } }",
                    json!({"id": id}),
                )
                .await
        }
    };
    let listed = |data: &serde_json::Value, id: &str| {
        data["tasks"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|edge| edge["node"]["id"] == id)
    };

    let fit = replica_health(&client, |r| r["serving"] == true).await;
    println!("replica at start: {fit}");
    let first = create("On the replica").await;
    let Answer::Data(data) = read(first.clone()).await else {
        panic!("the first read answered")
    };
    assert_eq!(data["task"]["title"], "On the replica");
    assert!(
        query_connections_on(&replica).await > 0,
        "queries read the replica"
    );
    assert_eq!(query_connections_on(&primary).await, 0);

    // The replica stops replaying: a read-your-writes read turns to the primary after its
    // bound, and once the lag passes CHRONICLE_READ_REPLICA_MAX_LAG_MS every query does.
    let on_replica = PgPool::connect(&replica.url("chronicle")).await.unwrap();
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&on_replica)
        .await
        .unwrap();
    let behind = create("Only on the primary").await;
    let Answer::Data(data) = read(behind.clone()).await else {
        panic!("minVersion reads the primary rather than failing")
    };
    assert_eq!(data["task"]["title"], "Only on the primary");
    let lagging = replica_health(&client, |r| r["serving"] == false).await;
    assert!(lagging["lagSeconds"].as_f64().unwrap() > 1.5, "{lagging}");
    let Answer::Data(data) = read(behind.clone()).await else {
        panic!("queries answer while the replica lags")
    };
    assert!(
        listed(&data, &behind),
        "the list is read on the primary: {data}"
    );
    assert!(query_connections_on(&primary).await > 0);

    // It catches up: queries go back to it.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&on_replica)
        .await
        .unwrap();
    on_replica.close().await;
    replica_health(&client, |r| r["serving"] == true && r["lagSeconds"] == 0.0).await;

    // It dies: the primary serves, and the service stays ready.
    replica.kill().unwrap();
    let down = replica_health(&client, |r| r["serving"] == false).await;
    assert_eq!(down["lagSeconds"], serde_json::Value::Null, "{down}");
    let after = create("With the replica down").await;
    let Answer::Data(data) = read(after.clone()).await else {
        panic!("queries answer with the replica down")
    };
    assert!(
        listed(&data, &after) || data["task"]["id"] == after.as_str(),
        "{data}"
    );
    let metrics = client.metrics().await.unwrap();
    assert!(
        metrics.contains("chronicle_db_replica_serving 0"),
        "the metric says so"
    );
    drop(service);
}

/// After a failover under load: requests answered only `UNAVAILABLE` meanwhile; every
/// acknowledged command is in the new primary's store (`db`) and on Kafka once per event id;
/// the read models caught up; the checkpointer signs on the new primary; and `chronicle audit
/// verify --checkpoints kafka` exits 0 under `public_key`.
async fn assert_failover_lost_nothing(
    settings: &Settings,
    db: &PgPool,
    public_key: &std::path::Path,
    tally: &Tally,
) {
    assert!(
        tally.codes.keys().all(|code| code == "UNAVAILABLE"),
        "during the switch requests answer only UNAVAILABLE: {:?}",
        tally.codes
    );
    assert_eq!(tally.unreachable, 0, "the service itself stayed up");

    wait_published_and_projected(db).await;
    let stored = stored_task_events(db).await;
    assert_acknowledged_stored(tally, &stored).await;
    assert!(tally.acknowledged.len() > 10, "the load ran: {tally:?}");
    assert_published_once_per_event(settings, &stored).await;

    // Checkpoints signed before the failover hold against the promoted store, and the
    // signer goes on there.
    let newest_checkpoint = || async {
        sqlx::query_scalar::<_, Option<i64>>("SELECT max(tree_size) FROM audit_checkpoints")
            .fetch_one(db)
            .await
            .unwrap()
            .unwrap_or(0)
    };
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(db)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), || async {
        Ok((newest_checkpoint().await >= total).then_some(()))
    })
    .await
    .expect("the checkpointer signs on the new primary");
    let output = tokio::process::Command::new(chronicle_tests::chronicle_binary().unwrap())
        .args(["audit", "verify", "--checkpoints", "kafka", "--public-key"])
        .arg(public_key)
        .env("DATABASE_URL", settings.database_url.expose())
        .env("KAFKA_BROKERS", &settings.kafka.brokers)
        .env("KAFKA_TOPIC_PREFIX", &settings.kafka.topic_prefix)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{text}");
}

/// Settings on `url` that sign a checkpoint every second, with a key made in a directory of
/// its own (`audit.pem`, `audit.pem.pub`).
async fn signing_settings(url: &str) -> (Settings, std::path::PathBuf) {
    let dir = chronicle_tests::audit_key_dir().await.unwrap();
    let mut settings = test_settings(url, &brokers());
    settings.audit_signing_key_file = Some(dir.join("audit.pem").display().to_string());
    settings.audit_checkpoint_interval = Duration::from_secs(1);
    (settings, dir)
}

/// How long after `from` createTask succeeds again through `client`.
async fn until_commands_succeed(
    client: &GraphqlClient,
    from: Instant,
    within: Duration,
) -> Duration {
    eventually(within, || async {
        Ok(
            match client
                .send(
                    CREATE_TASK,
                    json!({"i": {"title": "After", "teamId": "team-a"}}),
                )
                .await
            {
                Answer::Data(_) => Some(from.elapsed()),
                _ => None,
            },
        )
    })
    .await
    .expect("createTask succeeds again without a restart")
}

#[tokio::test]
async fn a_patroni_switchover_and_a_killed_leader_lose_no_acknowledged_command() {
    let cluster = chronicle_tests::ha::PatroniCluster::start(2).await.unwrap();
    let admin = PgPool::connect(&cluster.url("postgres")).await.unwrap();
    sqlx::query("CREATE DATABASE chronicle")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    // Through HAProxy, which routes to whichever node Patroni says leads.
    let (settings, dir) = signing_settings(&cluster.url("chronicle")).await;
    let service = ChronicleProcess::serve(&settings, ALL).unwrap();
    service.wait_ready(START).await.unwrap();
    let client = service.client(&admin_token()).unwrap();
    let load = Load::start(&client, 4);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Patroni's own switchover, as an operator runs it for maintenance.
    let first = cluster.leader().await.unwrap().name.clone();
    let candidate = if first == "node1" { "node2" } else { "node1" };
    let asked = Instant::now();
    cluster.switchover(candidate).await.unwrap();
    let switched = until_commands_succeed(&client, asked, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.wait_synchronous().await.unwrap();
    let leader = cluster.leader().await.unwrap();
    assert_eq!(leader.name, candidate, "{}", cluster.describe().await);

    // The new leader dies with its host; Patroni promotes the synchronous standby once the
    // leader's key expires (ttl 20 s).
    leader.kill().unwrap();
    let killed = Instant::now();
    let failed_over = until_commands_succeed(&client, killed, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = load.finish().await;
    println!(
        "switchover: createTask succeeded again {switched:?} after it was asked; killed leader: \
         {failed_over:?} after the kill; {} acknowledged, refused: {:?}",
        tally.acknowledged.len(),
        tally.codes
    );
    let db = PgPool::connect(&cluster.url("chronicle")).await.unwrap();
    assert_failover_lost_nothing(&settings, &db, &dir.join("audit.pem.pub"), &tally).await;
    drop(service);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_asynchronous_failover_that_loses_commits_is_revealed_by_the_signed_checkpoints() {
    let (primary, standby) = primary_and_standby(false).await;
    let url = multi_host_url(&[&primary, &standby], "chronicle", "read-write");
    let (settings, dir) = signing_settings(&url).await;
    let service = ChronicleProcess::serve(&settings, ALL).unwrap();
    service.wait_ready(START).await.unwrap();
    let client = service.client(&admin_token()).unwrap();
    let create = |title: String| {
        let client = client.clone();
        async move {
            let answer = client
                .send(
                    CREATE_TASK,
                    json!({"i": {"title": title, "teamId": "team-a"}}),
                )
                .await;
            assert!(matches!(answer, Answer::Data(_)), "{answer:?}");
        }
    };
    for n in 0..5 {
        create(format!("Replicated {n}")).await;
    }
    // The standby stops receiving: what the primary commits from now on exists only there.
    let on_standby = PgPool::connect(&standby.url("postgres")).await.unwrap();
    for statement in [
        "ALTER SYSTEM SET primary_conninfo = ''",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::raw_sql(statement).execute(&on_standby).await.unwrap();
    }
    // The reload only asks the WAL receiver to stop: until it has, what the primary commits
    // still reaches the standby (on a loaded machine some of the next commands did, and the
    // promoted store then lost fewer of them than the assertions below expect).
    eventually(Duration::from_secs(30), || async {
        let receiving: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_wal_receiver")
            .fetch_one(&on_standby)
            .await?;
        Ok((receiving == 0).then_some(()))
    })
    .await
    .expect("the standby stops receiving WAL");
    on_standby.close().await;
    for n in 0..5 {
        create(format!("Acknowledged, then lost {n}")).await;
    }
    // A checkpoint covering the lost commands is signed and published before the primary dies.
    let on_primary = PgPool::connect(&primary.url("chronicle")).await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&on_primary)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), || async {
        let signed: Option<i64> =
            sqlx::query_scalar("SELECT max(tree_size) FROM audit_checkpoints")
                .fetch_one(&on_primary)
                .await?;
        Ok((signed.unwrap_or(0) >= events).then_some(()))
    })
    .await
    .expect("a checkpoint covers the lost commands");
    tokio::time::sleep(Duration::from_secs(2)).await; // published to Kafka
    on_primary.close().await;

    primary.kill().unwrap();
    standby.promote().unwrap();
    until_commands_succeed(&client, Instant::now(), Duration::from_secs(30)).await;
    let output = tokio::process::Command::new(chronicle_tests::chronicle_binary().unwrap())
        .args(["audit", "verify", "--checkpoints", "kafka", "--public-key"])
        .arg(dir.join("audit.pem.pub"))
        .env("DATABASE_URL", &url)
        .env("KAFKA_BROKERS", &settings.kafka.brokers)
        .env("KAFKA_TOPIC_PREFIX", &settings.kafka.topic_prefix)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    println!("{text}");
    assert_eq!(
        output.status.code(),
        Some(1),
        "a published checkpoint the promoted store cannot reproduce: {text}"
    );
    assert!(
        text.contains("DIVERGED") && text.contains("events were removed"),
        "{text}"
    );
    drop(service);
    let _ = std::fs::remove_dir_all(dir);
}
