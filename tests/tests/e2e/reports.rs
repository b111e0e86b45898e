//! Reports generated in the background by the Kafka-driven worker.

use std::time::Duration;

use chronicle::app::Parts;
use chronicle_tests::{brokers, error_code, eventually, read_topic, ChronicleProcess, TestApp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

const REQUEST: &str = "mutation($i: RequestReportInput!) { requestReport(input: $i) { id version report { status } } }";
const REPORT: &str = "query($id: ID!) { report(id: $id) { id status result error attempts kind requestedBy parameters { teamId } } }";

fn period() -> (String, String) {
    let now = chrono::Utc::now();
    (
        (now - chrono::Duration::hours(1)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339(),
    )
}

async fn run(app: &TestApp, id: &str, call: &str) -> i64 {
    let data = app
        .data(
            &format!("mutation($id: ID!) {{ m: {call} {{ version }} }}"),
            json!({"id": id}),
        )
        .await
        .unwrap();
    data["m"]["version"].as_i64().unwrap()
}

/// Requests a report of `kind` for `team` over the hour around now; returns its id.
async fn request_report(app: &TestApp, kind: &str, team: &str) -> String {
    let (from, to) = period();
    let data = app
        .data(
            REQUEST,
            json!({"i": {"kind": kind, "teamId": team, "from": from, "to": to}}),
        )
        .await
        .unwrap();
    data["requestReport"]["id"].as_str().unwrap().to_owned()
}

async fn wait_until_finished(app: &TestApp, id: &str) -> Value {
    eventually(Duration::from_secs(60), || async {
        let data = app.data(REPORT, json!({"id": id})).await?;
        let status = data["report"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(matches!(status.as_str(), "COMPLETED" | "FAILED").then(|| data["report"].clone()))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_team_summary_is_generated_in_the_background_with_a_causation_chain() {
    let app = TestApp::spawn().await.unwrap();
    let mut last = Vec::new();
    for n in 0..3 {
        let id = app
            .create_task(&format!("open {n}"), "team-r")
            .await
            .unwrap();
        let v = if n == 0 {
            run(&app, &id, "assignTask(id: $id, assigneeId: \"u-1\")").await
        } else {
            1
        };
        last.push((id, v));
    }
    for n in 0..2 {
        let id = app
            .create_task(&format!("done {n}"), "team-r")
            .await
            .unwrap();
        run(&app, &id, "assignTask(id: $id, assigneeId: \"u-1\")").await;
        run(&app, &id, "startTask(id: $id)").await;
        let v = run(&app, &id, "completeTask(id: $id, result: \"ok\")").await;
        last.push((id, v));
    }
    let failed = app.create_task("failed", "team-r").await.unwrap();
    run(&app, &failed, "assignTask(id: $id, assigneeId: \"u-2\")").await;
    run(&app, &failed, "startTask(id: $id)").await;
    let v = run(&app, &failed, "failTask(id: $id, error: \"no\")").await;
    last.push((failed, v));
    app.create_task("other team", "team-other").await.unwrap();
    for (id, version) in &last {
        app.wait_for_version(id, *version).await.unwrap();
    }

    let (from, to) = period();
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&app.admin_token)
        .header("X-Correlation-Id", "report-corr-1")
        .json(&json!({"query": REQUEST, "variables": {"i": {"kind": "TEAM_SUMMARY", "teamId": "team-r", "from": from, "to": to}}}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"].is_null(), "{body}");
    let requested = &body["data"]["requestReport"];
    assert_eq!(requested["version"], 1);
    let id = requested["id"].as_str().unwrap().to_owned();

    let report = wait_until_finished(&app, &id).await;
    assert_eq!(report["status"], "COMPLETED", "{report}");
    assert_eq!(report["kind"], "TEAM_SUMMARY");
    assert_eq!(report["requestedBy"], "u-admin");
    let result = &report["result"];
    assert_eq!(result["total"], 6);
    assert_eq!(
        result["byStatus"],
        json!({"OPEN": 3, "IN_PROGRESS": 0, "COMPLETED": 2, "FAILED": 1, "CANCELLED": 0})
    );
    assert_eq!(
        result["byAssignee"],
        json!([{"assigneeId": "u-1", "open": 1, "completed": 2},
               {"assigneeId": "u-2", "open": 0, "completed": 0}])
    );
    assert_eq!(result["completionRate"], 0.33);
    assert!(result["medianCycleTimeSeconds"].as_f64().unwrap() >= 0.0);

    // The report's events: requested by the user, then the worker's, linked by causation.
    let events: Vec<(String, Value, uuid::Uuid)> = sqlx::query_as(
        "SELECT event_type, metadata, event_id FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    let types: Vec<&str> = events.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "ReportRequested",
            "ReportGenerationStarted",
            "ReportCompleted"
        ]
    );
    let requested_id = events[0].2.to_string();
    for (_, metadata, _) in &events[1..] {
        assert_eq!(metadata["causation_id"], requested_id.as_str());
        assert_eq!(metadata["correlation_id"], "report-corr-1");
        assert_eq!(metadata["actor_id"], "chronicle-report-worker");
    }
    let records = read_topic(&brokers(), &app.topic("Report"), 3, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        records.len(),
        3,
        "the report's events are on chronicle.report.events"
    );
}

#[tokio::test]
async fn bad_report_requests_answer_with_their_code() {
    let app = TestApp::spawn().await.unwrap();
    let (from, to) = period();
    let cases = [
        (
            json!({"kind": "TEAM_SUMMARY", "teamId": "team-a", "from": to, "to": from}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"kind": "EVERYTHING", "teamId": "team-a", "from": from, "to": to}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"kind": "TEAM_SUMMARY", "teamId": "bad team", "from": from, "to": to}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"kind": "TEAM_SUMMARY", "teamId": "team-a", "from": "yesterday", "to": to}),
            "VALIDATION_FAILED",
        ),
    ];
    for (input, code) in cases {
        let body = app.graphql(REQUEST, json!({"i": input})).await.unwrap();
        assert_eq!(error_code(&body), Some(code), "{input}: {body}");
    }
    assert_eq!(app.event_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_next_request_still_completes_and_redelivery_completes_nothing_twice(
) {
    let app = TestApp::spawn().await.unwrap();
    let topic = app.topic("Report");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers().as_str())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&topic)
                .key("poison")
                .payload("this is not json"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let id = request_report(&app, "OVERDUE_TASKS", "team-p").await;
    let report = wait_until_finished(&app, &id).await;
    assert_eq!(report["status"], "COMPLETED", "{report}");
    assert_eq!(report["result"]["total"], 0);

    let dlq = format!(
        "{topic}.{}chronicle-report-worker.dlq",
        app.settings.kafka.topic_prefix
    );
    let dead = read_topic(&brokers(), &dlq, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "the poison message is on {dlq}");
    assert_eq!(dead[0].key, "poison");
    assert!(
        dead[0].headers["dlq_reason"].contains("missing header"),
        "{:?}",
        dead[0].headers
    );
    assert_eq!(dead[0].headers["dlq_original_topic"], topic);
    for header in [
        "dlq_original_partition",
        "dlq_original_offset",
        "dlq_attempts",
    ] {
        assert!(dead[0].headers.contains_key(header), "missing {header}");
    }

    // Operators see the dead letter in the metrics.
    let metrics = reqwest::get(format!("{}/metrics", app.base_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("chronicle_dead_letters_total{")
                && l.contains(&format!(
                    "group=\"{}chronicle-report-worker\"",
                    app.settings.kafka.topic_prefix
                ))
        })
        .unwrap_or_else(|| panic!("no dead-letter metric for the worker in:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");

    // Redeliver every report event (as after a relay crash): the worker sees the request again
    // and recognises the report as done.
    sqlx::query("UPDATE outbox SET published_at = NULL WHERE topic = $1")
        .bind(&topic)
        .execute(&app.db)
        .await
        .unwrap();
    let republished = read_topic(&brokers(), &topic, 7, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(republished.len(), 7, "poison + 3 events + 3 redeliveries");
    // Give the worker time to process the redelivered request, then count completions.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let completions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'ReportCompleted'",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(completions, 1);
    let starts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'ReportGenerationStarted'",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(starts, 1);
}

async fn count_events(app: &TestApp, report_id: &str, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = $2")
        .bind(report_id)
        .bind(event_type)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_worker_killed_mid_generation_finishes_the_report_exactly_once_after_restart() {
    // API, relay and projections in this process; the worker as a real process we can kill.
    let app = TestApp::spawn_parts(
        Parts {
            api: true,
            relay: true,
            projections: true,
            worker: false,
        },
        |_| {},
    )
    .await
    .unwrap();
    for n in 0..3 {
        let id = app
            .create_task(&format!("task {n}"), "team-k")
            .await
            .unwrap();
        app.wait_for_version(&id, 1).await.unwrap();
    }

    // Hold the task read model so that a generation, once started, cannot finish.
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let first_worker = ChronicleProcess::serve(&app.settings, "worker").unwrap();
    let id = request_report(&app, "TEAM_SUMMARY", "team-k").await;
    eventually(Duration::from_secs(60), || async {
        Ok((count_events(&app, &id, "ReportGenerationStarted").await == 1).then_some(()))
    })
    .await
    .expect("the first worker starts generating");

    // Crash it mid-generation: no shutdown, no offset commit.
    first_worker.kill().await.unwrap();
    blocker.rollback().await.unwrap();
    // Restart after the dead member's session expired (10 s). Apache Kafka evicts a dead member
    // on its own once the session times out; Tansu, the test broker, only when a member joins
    // after that, and otherwise leaves its partitions to the dead member.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let second_worker = ChronicleProcess::serve(&app.settings, "worker").unwrap();

    let report = wait_until_finished(&app, &id).await;
    assert_eq!(report["status"], "COMPLETED", "{report}");
    assert_eq!(report["result"]["total"], 3);
    assert_eq!(report["attempts"], 2, "the crashed attempt counts");
    // Let the new worker see any redelivery, then count: one completion, two starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count_events(&app, &id, "ReportCompleted").await, 1);
    assert_eq!(count_events(&app, &id, "ReportGenerationStarted").await, 2);
    assert_eq!(count_events(&app, &id, "ReportFailed").await, 0);
    second_worker.kill().await.unwrap();
}

#[tokio::test]
async fn a_report_over_ten_thousand_tasks_completes() {
    let app = TestApp::spawn().await.unwrap();
    // The worker reads the task read model; seed it directly so the test spends its time on
    // the report, not on 10,000 createTask round trips (those are measured by the bench).
    sqlx::query(
        "INSERT INTO tasks (id, version, title, description, status, team_id, creator_id,
                            assignee_id, priority, due_at, labels, created_at, updated_at,
                            started_at, finished_at)
         SELECT gen_random_uuid(), 3, 'task ' || i, '',
                (ARRAY['OPEN','IN_PROGRESS','COMPLETED','FAILED','CANCELLED'])[i % 5 + 1],
                'team-big', 'u-seed', 'u-' || (i % 50), 'NORMAL', NULL, '{}',
                now() - interval '10 minutes', now(),
                now() - interval '9 minutes', now() - interval '8 minutes'
         FROM generate_series(0, 9999) AS i",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let id = request_report(&app, "TEAM_SUMMARY", "team-big").await;
    let report = wait_until_finished(&app, &id).await;
    assert_eq!(report["status"], "COMPLETED", "{report}");
    let result = &report["result"];
    assert_eq!(result["total"], 10_000);
    assert_eq!(
        result["byStatus"],
        json!({"OPEN": 2000, "IN_PROGRESS": 2000, "COMPLETED": 2000, "FAILED": 2000, "CANCELLED": 2000})
    );
    assert_eq!(result["byAssignee"].as_array().unwrap().len(), 50);
    assert_eq!(result["completionRate"], 0.2);
    assert_eq!(result["medianCycleTimeSeconds"], 60.0);
}
