//! Records the broker refuses for good are parked: only their aggregate waits, every other
//! aggregate keeps flowing, and an operator sends them again once the cause is fixed.

use std::time::Duration;

use chronicle_application::topics::Topics;
use chronicle_tests::support::admin_token;
use chronicle_tests::{
    brokers, create_database, eventually, read_topic, test_settings, Answer, ChronicleProcess,
    GraphqlClient,
};
use serde_json::{json, Value};
use sqlx::PgPool;

const ALL: &str = "api,relay,projections,worker";
const START: Duration = Duration::from_secs(60);

async fn create_task(client: &GraphqlClient, title: &str, description: &str) -> String {
    let data = client
        .data(
            "mutation($i: CreateTaskInput!) { createTask(input: $i) { id } }",
            json!({"i": {"title": title, "teamId": "team-a", "description": description}}),
        )
        .await
        .unwrap();
    data["createTask"]["id"].as_str().unwrap().to_owned()
}

/// `(sequence, published, parked)` of each outbox row of `aggregate`, in id order.
async fn outbox_rows(db: &PgPool, aggregate: &str) -> Vec<(i64, bool, bool)> {
    sqlx::query_as(
        "SELECT (payload->>'sequence')::bigint, published_at IS NOT NULL, parked_at IS NOT NULL
         FROM outbox WHERE key = $1 ORDER BY id",
    )
    .bind(aggregate)
    .fetch_all(db)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_oversized_event_is_parked_alone_and_published_in_order_after_a_retry() {
    let database_url = create_database().await.unwrap();
    let mut settings = test_settings(&database_url, &brokers());
    settings.kafka.message_max_bytes = 4_000;
    let service = ChronicleProcess::serve(&settings, ALL).unwrap();
    service.wait_ready(START).await.unwrap();
    let client = service.client(&admin_token()).unwrap();
    let db = PgPool::connect(&database_url).await.unwrap();

    // A task whose creation is larger than the producer may send; its next event queues
    // behind it. Another task's events flow meanwhile.
    let large = create_task(&client, "Large", &"x".repeat(9_000)).await;
    client
        .data(
            "mutation($id: ID!) { startTask(id: $id) { version } }",
            json!({"id": large}),
        )
        .await
        .unwrap();
    let small = create_task(&client, "Small", "fits").await;
    let parked = eventually(Duration::from_secs(30), || async {
        let page = client
            .data(
                "{ parkedEvents(first: 10) { edges { node { aggregateType aggregateId eventId sequence error parkedAt } } } }",
                json!({}),
            )
            .await?;
        let edges = page["parkedEvents"]["edges"].as_array().cloned().unwrap_or_default();
        Ok((!edges.is_empty()).then_some(edges))
    })
    .await
    .expect("the oversized event was parked");
    assert_eq!(parked.len(), 1, "{parked:?}");
    let node = &parked[0]["node"];
    assert_eq!(node["aggregateId"], large.as_str());
    assert_eq!(node["aggregateType"], "Task");
    assert_eq!(node["sequence"], 1);
    let error = node["error"].as_str().unwrap().to_lowercase();
    assert!(error.contains("too large"), "{error}");

    // The other aggregate was published; the parked one's later event waits unparked.
    eventually(Duration::from_secs(30), || async {
        Ok((outbox_rows(&db, &small).await == vec![(1, true, false)]).then_some(()))
    })
    .await
    .expect("the other aggregate kept flowing");
    assert_eq!(
        outbox_rows(&db, &large).await,
        vec![(1, false, true), (2, false, false)]
    );
    let (_, ready) = client.ready().await.unwrap();
    assert_eq!(ready["outbox"]["parked"], 1, "{ready}");
    assert_eq!(
        ready["status"], "ready",
        "parked records do not fail readiness"
    );
    let metrics = client.metrics().await.unwrap();
    assert!(
        metrics.contains("chronicle_outbox_parked_events 1"),
        "{metrics}"
    );
    // Held messages show it as the one parked record of the outbox.
    let held = client
        .data(
            "{ held(kind: PARKED) { edges { node { kind holder aggregateId sequence reason } } } }",
            json!({}),
        )
        .await
        .unwrap();
    let edges = held["held"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{held}");
    let node = &edges[0]["node"];
    assert_eq!(
        (&node["kind"], &node["holder"]),
        (&json!("PARKED"), &json!("outbox"))
    );
    assert_eq!(
        (&node["aggregateId"], &node["sequence"]),
        (&json!(large), &json!(1))
    );
    assert!(
        node["reason"].as_str().unwrap().contains("too large"),
        "{node}"
    );

    // A member may not see or retry them.
    let member = GraphqlClient::new(
        client.base_url().to_owned(),
        chronicle_api::auth::Authenticator::hs256(chronicle_tests::TEST_SECRET)
            .issue(
                "u-m",
                vec!["member".into()],
                vec!["team-a".into()],
                chrono::Duration::hours(1),
            )
            .unwrap(),
    );
    let Answer::Error { code, .. } = member
        .send("mutation { retryParkedEvents }", json!({}))
        .await
    else {
        panic!("a member retried parked events");
    };
    assert_eq!(code, "FORBIDDEN");

    // The operator raises the limit, restarts, and retries that aggregate.
    service.signal("-TERM").unwrap();
    let mut service = service;
    service.wait_exit(Duration::from_secs(30)).await.unwrap();
    settings.kafka.message_max_bytes = 1_000_000;
    let service = ChronicleProcess::serve(&settings, ALL).unwrap();
    service.wait_ready(START).await.unwrap();
    let client = service.client(&admin_token()).unwrap();
    let retried = client
        .data(
            "mutation($id: ID!) { retryParkedEvents(aggregateId: $id) }",
            json!({"id": large}),
        )
        .await
        .unwrap();
    assert_eq!(retried["retryParkedEvents"], 1);
    eventually(Duration::from_secs(30), || async {
        let rows = outbox_rows(&db, &large).await;
        Ok((rows == vec![(1, true, false), (2, true, false)]).then_some(()))
    })
    .await
    .expect("the parked event and the one behind it were published");

    // On the topic, in sequence order.
    let topic = Topics::new(settings.kafka.topic_prefix.clone()).events_of("Task");
    let records = read_topic(&brokers(), &topic, 3, Duration::from_secs(30))
        .await
        .unwrap();
    let sequences: Vec<i64> = records
        .iter()
        .filter(|r| r.key == large)
        .map(|r| r.value["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, vec![1, 2]);
    let description = records
        .iter()
        .find(|r| r.key == large && r.value["sequence"] == 1)
        .map(|r| r.value["payload"]["description"].clone())
        .unwrap_or(Value::Null);
    assert_eq!(description.as_str().map(str::len), Some(9_000));
}

/// Ids are taken at insert and transactions commit in any order: a row whose transaction took
/// its id before later rows committed, and commits only after the relay published them, is
/// still published, and before the next event of its aggregate. The relay's reads start above
/// a floor, and the floor waits for it.
#[tokio::test]
async fn a_row_committed_after_later_ones_were_published_goes_out_in_its_aggregates_order() {
    let database_url = create_database().await.unwrap();
    let settings = test_settings(&database_url, &brokers());
    let service = ChronicleProcess::serve(&settings, ALL).unwrap();
    service.wait_ready(START).await.unwrap();
    let client = service.client(&admin_token()).unwrap();
    let db = PgPool::connect(&database_url).await.unwrap();
    let unpublished_after = |id: i64| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM outbox WHERE id > $1 AND published_at IS NULL",
            )
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    let first = create_task(&client, "First", "published at once").await;
    eventually(Duration::from_secs(30), || async {
        Ok((unpublished_after(0).await == 0).then_some(()))
    })
    .await
    .expect("the first task was published");

    // A writer takes the next id and holds its transaction open: a second copy of the first
    // task's creation (same event id in the payload, a new outbox row).
    let mut late = db.begin().await.unwrap();
    let late_id: i64 = sqlx::query_scalar(
        "INSERT INTO outbox (event_id, topic, key, headers, payload)
         SELECT gen_random_uuid(), topic, key, headers, payload
         FROM outbox WHERE key = $1 ORDER BY id LIMIT 1 RETURNING id",
    )
    .bind(&first)
    .fetch_one(&mut *late)
    .await
    .unwrap();

    // Later commands commit and are published past it, over many reads of the relay.
    for round in 0..4 {
        for i in 0..5 {
            create_task(&client, &format!("Later {round}.{i}"), "committed first").await;
        }
        eventually(Duration::from_secs(30), || async {
            Ok((unpublished_after(late_id).await == 0).then_some(()))
        })
        .await
        .expect("the later tasks were published");
    }

    // It commits; the aggregate's next event follows at once.
    late.commit().await.unwrap();
    client
        .data(
            "mutation($id: ID!) { startTask(id: $id) { version } }",
            json!({"id": first}),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(30), || async {
        Ok((unpublished_after(0).await == 0).then_some(()))
    })
    .await
    .expect("the row that committed late was published");
    let topic = Topics::new(settings.kafka.topic_prefix.clone()).events_of("Task");
    let records = read_topic(&brokers(), &topic, 23, Duration::from_secs(30))
        .await
        .unwrap();
    let sequences: Vec<i64> = records
        .iter()
        .filter(|r| r.key == first)
        .map(|r| r.value["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(
        sequences,
        vec![1, 1, 2],
        "the late copy before the next event"
    );
}

/// The relay's read, as the relay sends it.
const RELAY_READ: &str = include_str!("../../../infrastructure/sql/relay_read.sql");

/// Shared buffers the relay's read of up to 500 rows above `floor` touches: as Postgres plans
/// it for those values, and as the generic plan a connection caches for any values, each under
/// the statistics of the moment.
async fn relay_read_buffers(db: &PgPool, floor: i64) -> [(i64, String); 2] {
    let mut connection = db.acquire().await.unwrap().detach();
    sqlx::query(&format!(
        "PREPARE relay_read(bigint, bigint[], bigint) AS {RELAY_READ}"
    ))
    .execute(&mut connection)
    .await
    .unwrap();
    let mut measured = Vec::new();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::query(&format!("SET plan_cache_mode = {mode}"))
            .execute(&mut connection)
            .await
            .unwrap();
        let plan: Value = sqlx::query_scalar(&format!(
            "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON)
             EXECUTE relay_read(500, '{{}}', {floor})"
        ))
        .fetch_one(&mut connection)
        .await
        .unwrap();
        let top = &plan[0]["Plan"];
        let buffers = top["Shared Hit Blocks"].as_i64().unwrap()
            + top["Shared Read Blocks"].as_i64().unwrap();
        measured.push((buffers, format!("{mode}: {plan}")));
    }
    measured.try_into().unwrap()
}

/// `count` outbox rows of distinct aggregates with a payload the size of a task's, published or
/// not.
async fn seed_outbox(db: &PgPool, count: i32, published: bool) {
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, key, headers, payload, published_at)
         SELECT gen_random_uuid(), 'plan.task.events', gen_random_uuid()::text, '{}'::jsonb,
                jsonb_build_object('title', repeat('x', 600)), CASE WHEN $2 THEN now() END
         FROM generate_series(1, $1)",
    )
    .bind(count)
    .bind(published)
    .execute(db)
    .await
    .unwrap();
}

/// The steady state of a busy outbox is "everything published", and that is what autovacuum's
/// analyse records. A burst then queues thousands of rows the statistics do not know of. The
/// relay's read must still cost what it returns: when it cost a walk of the whole queue per row
/// read (155,000 buffers for 500 rows behind 3,000), a backlog fed itself and reads took
/// seconds. Measured in buffers from Postgres's own plans, custom and generic (the relay
/// caches the statement), so the bound holds on any machine.
#[tokio::test]
async fn the_relay_reads_a_burst_at_the_cost_of_what_it_returns_whatever_the_statistics() {
    let db = PgPool::connect(&create_database().await.unwrap())
        .await
        .unwrap();
    chronicle_infrastructure::db::migrate(&db).await.unwrap();
    seed_outbox(&db, 20_000, true).await;
    sqlx::query("ANALYZE outbox").execute(&db).await.unwrap();
    seed_outbox(&db, 3_000, false).await;

    // 500 rows of about 700 bytes fill some 50 heap pages; the queue's index pages and the
    // parked index's single page come on top. Walking the table or the queue costs thousands.
    const BOUND: i64 = 1_500;
    for (stale, plan) in relay_read_buffers(&db, 0).await {
        assert!(
            stale < BOUND,
            "{stale} buffers under statistics of an empty queue: {plan}"
        );
    }

    // And under statistics taken in the middle of the burst, with one aggregate's row parked.
    sqlx::query(
        "UPDATE outbox SET parked_at = now()
         WHERE id = (SELECT min(id) FROM outbox WHERE published_at IS NULL)",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("ANALYZE outbox").execute(&db).await.unwrap();
    for (fresh, plan) in relay_read_buffers(&db, 0).await {
        assert!(
            fresh < BOUND,
            "{fresh} buffers under statistics of the burst: {plan}"
        );
    }
}
