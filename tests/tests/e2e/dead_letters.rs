//! Dead letters an operator can see, send back to the group that set them aside, or discard:
//! over GraphQL and with `chronicle dead-letters`, against the real broker and database.

use std::time::Duration;

use chronicle_application::topics::Topics;
use chronicle_tests::process::ChronicleProcess;
use chronicle_tests::{
    brokers, chronicle_binary, create_database, eventually, read_topic, read_topic_to_end,
    test_settings, TestApp,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

const PROJECTIONS: &str = "chronicle-projections";
const WORKER: &str = "chronicle-report-worker";
const LIST: &str = "query($g: String!) { deadLetters(group: $g, first: 50) { edges { node {
    id originalTopic originalPartition originalOffset key reason attempts deadLetteredAt payload
    payloadTruncated redrivenAt redrivenBy } } } }";

/// The dead letters `group` lists now.
async fn dead_letters(app: &TestApp, group: &str) -> Vec<Value> {
    let data = app.data(LIST, json!({"g": group})).await.unwrap();
    data["deadLetters"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

/// Waits until `group` lists a dead letter that `wanted` accepts.
async fn listed(app: &TestApp, group: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(60), || async {
        Ok(dead_letters(app, group)
            .await
            .into_iter()
            .find(|l| wanted(l)))
    })
    .await
    .unwrap_or_else(|_| panic!("no such dead letter of {group}"))
}

pub(crate) async fn publish_raw(topic: &str, key: &str, payload: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers().as_str())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

/// `chronicle dead-letters <args>` against `app`'s database and broker: exit code and output.
fn cli(app: &TestApp, args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(chronicle_binary().unwrap())
        .arg("dead-letters")
        .args(args)
        .env("DATABASE_URL", app.settings.database_url.expose())
        .env("KAFKA_BROKERS", &app.settings.kafka.brokers)
        .env("KAFKA_TOPIC_PREFIX", &app.settings.kafka.topic_prefix)
        .env("USER", "ops-7")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn a_poison_message_is_listed_redriven_to_its_group_only_and_listed_again_with_two_attempts()
{
    let app = TestApp::spawn().await.unwrap();
    // The report topic is read by both durable groups: each sets the poison aside.
    let topic = app.topic("Report");
    publish_raw(&topic, "poison-1", "this is not json").await;
    let for_projections = listed(&app, PROJECTIONS, |l| l["key"] == "poison-1").await;
    let for_worker = listed(&app, WORKER, |l| l["key"] == "poison-1").await;
    assert_ne!(
        for_worker["id"], for_projections["id"],
        "an entry per group"
    );
    assert_eq!(for_projections["originalTopic"], topic.as_str());
    assert_eq!(for_projections["payload"], "this is not json");
    assert_eq!(for_projections["payloadTruncated"], false);
    assert_eq!(for_projections["attempts"], 1);
    assert!(
        for_projections["reason"]
            .as_str()
            .unwrap()
            .contains("missing header"),
        "{for_projections}"
    );
    assert!(for_projections["redrivenAt"].is_null());
    let on_topic = read_topic_to_end(&brokers(), &topic, 1, Duration::from_secs(30))
        .await
        .unwrap()
        .len();

    // Sent back to the projections only: the cause is still there, so it is listed again
    // with two attempts, and who sent it back and when.
    let sent = app
        .data(
            "mutation($g: String!, $ids: [ID!]) { redriveDeadLetters(group: $g, ids: $ids) }",
            json!({"g": PROJECTIONS, "ids": [for_projections["id"]]}),
        )
        .await
        .unwrap();
    assert_eq!(sent["redriveDeadLetters"], 1);
    let again = listed(&app, PROJECTIONS, |l| {
        l["id"] == for_projections["id"] && l["attempts"] == 2
    })
    .await;
    assert_eq!(again["redrivenBy"], "u-admin");
    let redriven_at = again["redrivenAt"].as_str().unwrap();
    let dead_again_at = again["deadLetteredAt"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(dead_again_at).unwrap()
            > chrono::DateTime::parse_from_rfc3339(redriven_at).unwrap(),
        "set aside again after the redrive: {again}"
    );
    // It went to the group's own redrive topic with its key, not back to the event topic
    // (where every group would read it), and the worker's entry is untouched.
    let group = Topics::new(app.settings.kafka.topic_prefix.clone()).group(PROJECTIONS);
    let redrive_topic = Topics::redrive(&topic, &group);
    let redriven = read_topic(&brokers(), &redrive_topic, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(redriven[0].key, "poison-1");
    let after = read_topic_to_end(&brokers(), &topic, on_topic, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        after.len(),
        on_topic,
        "nothing was published to {topic} again"
    );
    let worker_now = listed(&app, WORKER, |l| l["key"] == "poison-1").await;
    assert_eq!(worker_now["attempts"], 1);
    assert!(worker_now["redrivenAt"].is_null());
    // Nothing waits for a redrive now until it is rejected again: a second redrive of the
    // whole group sends only what is waiting (the entry rejected again).
    let all = app
        .data(
            "mutation($g: String!) { redriveDeadLetters(group: $g) }",
            json!({"g": PROJECTIONS}),
        )
        .await
        .unwrap();
    assert_eq!(all["redriveDeadLetters"], 1);
    listed(&app, PROJECTIONS, |l| {
        l["id"] == for_projections["id"] && l["attempts"] == 3
    })
    .await;

    // The CLI sees the same, and discards.
    let (code, out) = cli(&app, &["list", "--group", WORKER]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("key=poison-1") && out.contains("attempts=1"),
        "{out}"
    );
    let worker_id = worker_now["id"].as_str().unwrap();
    let (code, out) = cli(&app, &["show", "--group", WORKER, "--id", worker_id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("this is not json"), "{out}");
    let (code, out) = cli(&app, &["show", "--group", WORKER, "--id", "999999"]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = cli(&app, &["list", "--group", "chronicle-nope"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(PROJECTIONS), "names the known groups: {out}");
    let (code, out) = cli(&app, &["discard", "--group", WORKER, "--id", worker_id]);
    assert_eq!(code, 0, "{out}");
    assert!(dead_letters(&app, WORKER).await.is_empty());

    // Operating dead letters is the admin's.
    let member = app.token("u-m", &["member"], &["team-a"]);
    let body = app
        .graphql_as(Some(&member), LIST, json!({"g": PROJECTIONS}))
        .await
        .unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
}

#[tokio::test]
async fn a_report_request_the_worker_set_aside_completes_exactly_once_after_a_redrive() {
    let app = TestApp::spawn_with(|settings| settings.worker_max_attempts = 2)
        .await
        .unwrap();
    // The fault: the store refuses the start of any generation.
    sqlx::query(
        "CREATE FUNCTION refuse_generation() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'generation refused by the test'; END $$",
    )
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_generation BEFORE INSERT ON events FOR EACH ROW
         WHEN (NEW.event_type = 'ReportGenerationStarted') EXECUTE FUNCTION refuse_generation()",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let (from, to) = (
        (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339(),
        (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339(),
    );
    let requested = app
        .data(
            "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }",
            json!({"i": {"kind": "TEAM_SUMMARY", "teamId": "team-a", "from": from, "to": to}}),
        )
        .await
        .unwrap();
    let report = requested["requestReport"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let letter = listed(&app, WORKER, |l| l["key"] == report.as_str()).await;
    assert_eq!(letter["attempts"], 2);
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("generation refused by the test"),
        "{letter}"
    );

    // The fault is removed; the request is sent back and completes, once.
    sqlx::query("DROP TRIGGER refuse_generation ON events")
        .execute(&app.db)
        .await
        .unwrap();
    let sent = app
        .data(
            "mutation($g: String!) { redriveDeadLetters(group: $g) }",
            json!({"g": WORKER}),
        )
        .await
        .unwrap();
    assert_eq!(sent["redriveDeadLetters"], 1);
    let status = eventually(Duration::from_secs(60), || async {
        let data = app
            .data(
                "query($id: ID!) { report(id: $id) { status } }",
                json!({"id": report}),
            )
            .await?;
        let status = data["report"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok((status == "COMPLETED" || status == "FAILED").then_some(status))
    })
    .await
    .unwrap();
    assert_eq!(status, "COMPLETED");
    // A second redrive finds nothing waiting; the worker's events show one generation.
    let again = app
        .data(
            "mutation($g: String!) { redriveDeadLetters(group: $g) }",
            json!({"g": WORKER}),
        )
        .await
        .unwrap();
    assert_eq!(again["redriveDeadLetters"], 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&report)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        events,
        vec![
            "ReportRequested",
            "ReportGenerationStarted",
            "ReportCompleted"
        ]
    );
    let listed_now = listed(&app, WORKER, |l| l["key"] == report.as_str()).await;
    assert!(
        listed_now["redrivenAt"].is_string(),
        "the redrive is on record"
    );
}

/// The dead-letter producer is made only when it first sends, yet its settings are judged at
/// start: a linger librdkafka refuses (above `message.timeout.ms`, 30 s) stops `serve` there,
/// naming the setting, rather than at the first poison message, where it would stall the group.
#[tokio::test]
async fn producer_settings_librdkafka_refuses_stop_serve_at_start() {
    let database_url = create_database().await.unwrap();
    let mut settings = test_settings(&database_url, &brokers());
    settings.kafka.linger_ms = 40_000;
    let mut service =
        ChronicleProcess::serve_logged(&settings, "projections,worker", &[], true).unwrap();
    let status = service.wait_exit(Duration::from_secs(60)).await.unwrap();
    let output = service.output().unwrap();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("KAFKA_LINGER_MS"), "{output}");
}
