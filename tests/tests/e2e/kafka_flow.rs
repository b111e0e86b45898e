//! What reaches Kafka: contract, order, redelivery and broker outages.

use std::collections::HashMap;
use std::time::Duration;

use chronicle_tests::{brokers, eventually, read_topic, read_topic_to_end, PrivateBroker, TestApp};
use serde_json::json;

#[tokio::test]
async fn every_event_is_on_the_topic_keyed_by_task_in_sequence_order_with_cloudevents_headers() {
    let app = TestApp::spawn().await.unwrap();
    let mut expected = HashMap::new();
    for n in 0..4 {
        let id = app
            .create_task(&format!("Task {n}"), "team-a")
            .await
            .unwrap();
        for call in [
            "assignTask(id: $id, assigneeId: \"u-1\")",
            "startTask(id: $id)",
            "completeTask(id: $id)",
        ] {
            app.data(
                &format!("mutation($id: ID!) {{ {call} {{ version }} }}"),
                json!({"id": id}),
            )
            .await
            .unwrap();
        }
        expected.insert(id, 4);
    }
    let records = read_topic(&brokers(), &app.topic("Task"), 16, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(records.len(), 16);

    let mut partitions: HashMap<String, i32> = HashMap::new();
    let mut last_sequence: HashMap<String, u64> = HashMap::new();
    let mut by_partition = records.clone();
    by_partition.sort_by_key(|r| (r.partition, r.offset));
    for record in &by_partition {
        let value = &record.value;
        let id = value["aggregateId"].as_str().unwrap().to_owned();
        assert_eq!(record.key, id, "keyed by aggregate id");
        assert_eq!(
            *partitions.entry(id.clone()).or_insert(record.partition),
            record.partition
        );
        let sequence = value["sequence"].as_u64().unwrap();
        let previous = last_sequence.insert(id.clone(), sequence).unwrap_or(0);
        assert_eq!(
            sequence,
            previous + 1,
            "per-aggregate order on the partition"
        );
        for field in [
            "eventId",
            "eventType",
            "eventVersion",
            "aggregateType",
            "occurredAt",
            "actorId",
            "correlationId",
            "causationId",
            "sourceService",
            "payload",
        ] {
            assert!(!value[field].is_null(), "envelope lacks {field}: {value}");
        }
        assert_eq!(record.headers["ce_specversion"], "1.0");
        assert_eq!(record.headers["ce_id"], value["eventId"].as_str().unwrap());
        assert_eq!(record.headers["ce_subject"], id);
        assert_eq!(record.headers["content-type"], "application/json");
        assert_eq!(
            record.headers["ce_type"],
            format!("chronicle.task.{}", value["eventType"].as_str().unwrap())
        );
        assert_eq!(
            record.headers["correlation_id"],
            value["correlationId"].as_str().unwrap()
        );
        assert!(record.headers.contains_key("ce_time") && record.headers.contains_key("ce_source"));
    }
    for (id, count) in expected {
        assert_eq!(last_sequence[&id], count);
    }
    let first = by_partition
        .iter()
        .find(|r| r.value["eventType"] == "TaskCreated")
        .unwrap();
    assert_eq!(first.value["payload"]["teamId"], "team-a");
    assert_eq!(first.value["actorId"], "u-admin");
}

#[tokio::test]
async fn a_relay_that_dies_between_produce_and_mark_republishes_under_the_same_ids_and_the_projection_applies_once(
) {
    let app = TestApp::spawn().await.unwrap();
    let id = app.create_task("Redelivered", "team-a").await.unwrap();
    app.data(
        "mutation($id: ID!) { startTask(id: $id) { version } }",
        json!({"id": id}),
    )
    .await
    .unwrap();
    app.wait_for_version(&id, 2).await.unwrap();
    app.outbox_drained(Duration::from_secs(15)).await.unwrap();

    // The state a crash after produce and before the mark leaves behind: delivered to Kafka,
    // still unpublished in the outbox. The relay must publish those rows again.
    sqlx::query("UPDATE outbox SET published_at = NULL")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("SELECT pg_notify('chronicle_outbox', '')")
        .execute(&app.db)
        .await
        .unwrap();

    let records = read_topic(&brokers(), &app.topic("Task"), 4, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(records.len(), 4, "both events twice");
    let mut ids: Vec<&str> = records
        .iter()
        .map(|r| r.headers["ce_id"].as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2, "duplicates carry the same event ids");

    // The projection skipped the redeliveries: same version, no failure recorded, and a new
    // command still lands on top.
    app.data(
        "mutation($id: ID!) { completeTask(id: $id) { version } }",
        json!({"id": id}),
    )
    .await
    .unwrap();
    let task = app.wait_for_version(&id, 3).await.unwrap();
    assert_eq!(task["version"], 3);
    assert_eq!(task["status"], "COMPLETED");
    let failures: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_failures")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(failures, 0);
}

#[tokio::test]
async fn a_stopped_broker_loses_nothing_commands_succeed_and_the_outbox_drains_after() {
    let broker = PrivateBroker::start().await.unwrap();
    let mut app = TestApp::spawn_with(|settings| settings.kafka.brokers = broker.address.clone())
        .await
        .unwrap();
    let first = app
        .create_task("Before the outage", "team-a")
        .await
        .unwrap();
    app.wait_for_version(&first, 1).await.unwrap();
    // The consumer may see the event before the relay has its acknowledgement and marks it:
    // freeze only once the relay is idle, so the outbox then holds exactly the outage's events.
    app.outbox_drained(Duration::from_secs(30)).await.unwrap();

    // Frozen for longer than the producer's delivery timeout (30 s): deliveries in flight
    // fail, the relay keeps their rows and retries; commands go on succeeding meanwhile.
    broker.signal("-STOP").unwrap();
    let frozen = std::time::Instant::now();
    let mut during = Vec::new();
    while frozen.elapsed() < Duration::from_secs(35) {
        during.push(
            app.create_task(&format!("During the outage {}", during.len()), "team-a")
                .await
                .expect("commands succeed while the broker is stopped"),
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let unpublished = app.unpublished().await.unwrap();
    assert_eq!(
        unpublished as usize,
        during.len(),
        "the outbox absorbed the outage"
    );
    broker.signal("-CONT").unwrap();

    app.outbox_drained(Duration::from_secs(90)).await.unwrap();
    // The consumers' group sessions timed out during the freeze: rejoining can take longer
    // than one request may run (CHRONICLE_REQUEST_TIMEOUT_MS), so each read is retried.
    for id in &during {
        eventually(Duration::from_secs(90), || async {
            Ok(app.wait_for_version(id, 1).await.ok())
        })
        .await
        .unwrap_or_else(|_| panic!("task {id} was not projected after the outage"));
    }
    let records = read_topic_to_end(
        &broker.address,
        &app.topic("Task"),
        during.len() + 1,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let mut event_ids: Vec<&str> = records
        .iter()
        .map(|r| r.headers["ce_id"].as_str())
        .collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    assert_eq!(
        event_ids.len(),
        during.len() + 1,
        "every creation reached the broker, under one id however often it was sent"
    );
    let published: std::collections::HashSet<&str> = records
        .iter()
        .filter_map(|r| r.value["aggregateId"].as_str())
        .collect();
    assert!(during.iter().all(|id| published.contains(id.as_str())));
    // Stop the service while its broker still runs, so its clients can leave cleanly.
    app.stop().await;
}
