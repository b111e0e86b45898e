//! Held messages of every kind through one surface: `held`, `heldCounts`, `retryHeld`,
//! `discardHeld` and `chronicle held`, with the names each kind shipped with still answering
//! (deprecated) from the same records.

use std::time::Duration;

use chronicle::app::Parts;
use chronicle_tests::{chronicle_binary, eventually, ChronicleProcess, TestApp};
use serde_json::{json, Value};

use crate::dead_letters::publish_raw;
use crate::projection_failures::set_published;

const WORKER: &str = "chronicle-report-worker";
const HELD: &str = "query($k: HeldKind!, $h: String) { held(kind: $k, holder: $h, first: 50) {
    edges { cursor node { id kind holder reason attempts firstHeldAt lastHeldAt retriedAt
    retriedBy aggregateType aggregateId eventId sequence eventType topic partition offset key
    payload payloadTruncated } } pageInfo { hasNextPage } } }";
const RETRY: &str = "mutation($k: HeldKind!, $h: String, $ids: [ID!]) {
    retryHeld(kind: $k, holder: $h, ids: $ids) { retried remaining } }";

async fn held(app: &TestApp, kind: &str, holder: Option<&str>) -> Vec<Value> {
    let data = app
        .data(HELD, json!({"k": kind, "h": holder}))
        .await
        .unwrap();
    data["held"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

/// `heldCounts` as (kind, holder) -> count.
async fn counts(app: &TestApp) -> Vec<(String, String, i64)> {
    let data = app
        .data("{ heldCounts { kind holder count } }", json!({}))
        .await
        .unwrap();
    data["heldCounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["holder"].as_str().unwrap().to_owned(),
                c["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The error code and message of a request that must fail.
async fn refused(app: &TestApp, query: &str, variables: Value) -> (String, String) {
    let (code, message, _) = refused_field(app, query, variables).await;
    (code, message)
}

/// The error code, message and `extensions.field` of a request that must fail.
async fn refused_field(app: &TestApp, query: &str, variables: Value) -> (String, String, String) {
    let body = app.graphql(query, variables).await.unwrap();
    let error = &body["errors"][0];
    let text = |value: &Value| value.as_str().unwrap_or("").to_owned();
    (
        text(&error["extensions"]["code"]),
        text(&error["message"]),
        text(&error["extensions"]["field"]),
    )
}

fn cli(app: &TestApp, args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(chronicle_binary().unwrap())
        .arg("held")
        .args(args)
        .env("DATABASE_URL", app.settings.database_url.expose())
        .env("KAFKA_BROKERS", &app.settings.kafka.brokers)
        .env("KAFKA_TOPIC_PREFIX", &app.settings.kafka.topic_prefix)
        .env("USER", "ops-9")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn dead_letters_and_projection_failures_are_listed_retried_and_discarded_through_held() {
    let app = TestApp::spawn_parts(
        Parts {
            api: true,
            relay: false,
            projections: true,
            worker: true,
        },
        |_| {},
    )
    .await
    .unwrap();
    // A dead letter per group that reads reports, and a projection gap on a task.
    publish_raw(&app.topic("Report"), "poison-held", "not an envelope").await;
    let task = app.create_task("Held back", "team-a").await.unwrap();
    app.data(
        "mutation($id: ID!) { startTask(id: $id) { version } }",
        json!({"id": task}),
    )
    .await
    .unwrap();
    set_published(&app, &task, 1, true).await;
    let _relay = ChronicleProcess::serve(&app.settings, "relay").unwrap();

    let letter = eventually(Duration::from_secs(60), || async {
        Ok(held(&app, "DEAD_LETTER", Some(WORKER))
            .await
            .into_iter()
            .next())
    })
    .await
    .expect("the worker's dead letter is held");
    assert_eq!(letter["kind"], "DEAD_LETTER");
    assert_eq!(letter["holder"], WORKER);
    assert_eq!(letter["key"], "poison-held");
    assert_eq!(letter["payload"], "not an envelope");
    assert_eq!(letter["topic"], app.topic("Report").as_str());
    assert_eq!(letter["attempts"], 1);
    assert!(letter["eventId"].is_null() && letter["retriedAt"].is_null());
    let failure = eventually(Duration::from_secs(60), || async {
        Ok(held(&app, "PROJECTION_FAILURE", Some("tasks"))
            .await
            .into_iter()
            .next())
    })
    .await
    .expect("the gap is held");
    assert_eq!(failure["kind"], "PROJECTION_FAILURE");
    assert_eq!(failure["aggregateId"], task.as_str());
    assert_eq!(failure["eventType"], "TaskStarted");
    assert_eq!(failure["sequence"], 2);
    assert_eq!(failure["reason"], "sequence 2 does not follow version 0");
    assert!(failure["payload"].is_null() && failure["topic"].is_null());

    // The counts name every holder of every kind.
    let counts = counts(&app).await;
    for (kind, holder, count) in [
        ("PARKED", "outbox", 0),
        ("DEAD_LETTER", WORKER, 1),
        ("PROJECTION_FAILURE", "tasks", 1),
        ("PROJECTION_FAILURE", "reports", 0),
    ] {
        assert!(
            counts.contains(&(kind.to_owned(), holder.to_owned(), count)),
            "{kind} {holder} {count} in {counts:?}"
        );
    }

    // The first names answer from the same records, marked deprecated with the replacement.
    let old = app
        .data(
            "query($g: String!) { deadLetters(group: $g) { edges { node { id key } } } }",
            json!({"g": WORKER}),
        )
        .await
        .unwrap();
    assert_eq!(old["deadLetters"]["edges"][0]["node"]["id"], letter["id"]);
    let fields = app
        .data(
            "{ __type(name: \"Query\") { fields(includeDeprecated: true) { name isDeprecated
                deprecationReason } } }",
            json!({}),
        )
        .await
        .unwrap();
    for name in ["deadLetters", "parkedEvents", "projectionFailures"] {
        let field = fields["__type"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap();
        assert_eq!(field["isDeprecated"], true, "{field}");
        assert!(
            field["deprecationReason"]
                .as_str()
                .unwrap()
                .contains("held("),
            "{field}"
        );
    }

    // The first names refuse an unknown group or projection as they did, naming their own
    // argument.
    let (code, message, field) = refused_field(
        &app,
        "{ deadLetters(group: \"chronicle-nope\") { edges { cursor } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        (code.as_str(), field.as_str()),
        ("VALIDATION_FAILED", "group")
    );
    assert!(
        message.starts_with("group: unknown group; choose from"),
        "{message}"
    );
    let (code, message, field) = refused_field(
        &app,
        "mutation { retryProjectionFailures(name: \"taks\") { resolved } }",
        json!({}),
    )
    .await;
    assert_eq!(
        (code.as_str(), field.as_str()),
        ("VALIDATION_FAILED", "name")
    );
    assert!(
        message.starts_with("name: unknown projection; choose from"),
        "{message}"
    );

    // Clear errors: a holder is needed for these kinds, a parked record is never discarded.
    let (code, message) = refused(&app, HELD, json!({"k": "DEAD_LETTER"})).await;
    assert_eq!(code, "VALIDATION_FAILED");
    assert!(message.contains(WORKER), "names the groups: {message}");
    let (code, message) = refused(
        &app,
        "mutation { discardHeld(kind: PARKED, ids: [\"1\"]) }",
        json!({}),
    )
    .await;
    assert_eq!(code, "VALIDATION_FAILED");
    assert!(message.contains("cannot be discarded"), "{message}");

    // A projection failure retried while its cause is there stays, one attempt on; once the
    // missing event arrives, it applies and leaves.
    let retried = app
        .data(RETRY, json!({"k": "PROJECTION_FAILURE", "h": "tasks"}))
        .await
        .unwrap();
    assert_eq!(retried["retryHeld"], json!({"retried": 0, "remaining": 1}));
    set_published(&app, &task, 1, false).await;
    app.wait_for_version(&task, 1).await.unwrap();
    let retried = app
        .data(
            RETRY,
            json!({"k": "PROJECTION_FAILURE", "h": "tasks", "ids": [failure["id"]]}),
        )
        .await
        .unwrap();
    assert_eq!(retried["retryHeld"], json!({"retried": 1, "remaining": 0}));
    assert_eq!(
        app.wait_for_version(&task, 2).await.unwrap()["status"],
        "IN_PROGRESS"
    );
    assert!(held(&app, "PROJECTION_FAILURE", Some("tasks"))
        .await
        .is_empty());

    // The CLI lists, shows and discards the same; it names the holders it knows.
    let id = letter["id"].as_str().unwrap();
    let (code, out) = cli(&app, &["list", "--kind", "dead-letter", "--holder", WORKER]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{id}  attempts=1")) && out.contains("key=poison-held"),
        "{out}"
    );
    assert!(
        out.contains(&format!("1 dead letters of {WORKER}")),
        "{out}"
    );
    let (code, out) = cli(
        &app,
        &[
            "show",
            "--kind",
            "dead-letter",
            "--holder",
            WORKER,
            "--id",
            id,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("not an envelope"), "{out}");
    let (code, out) = cli(&app, &["list", "--kind", "projection-failure"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("tasks") && out.contains("reports"), "{out}");
    let (code, out) = cli(&app, &["show", "--kind", "dead-letter", "--holder", WORKER]);
    assert_eq!(code, 2, "show needs --id: {out}");
    let (code, out) = cli(&app, &["list", "--kind", "parked"]);
    assert_eq!((code, out.trim()), (0, "0 parked records"));
    let (code, out) = cli(
        &app,
        &[
            "discard",
            "--kind",
            "dead-letter",
            "--holder",
            WORKER,
            "--id",
            id,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(held(&app, "DEAD_LETTER", Some(WORKER)).await.is_empty());
}
