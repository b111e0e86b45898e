//! Events a projection could not apply are listed with their reason and attempts, counted in
//! `projections`, and applied by a retry once their cause is gone.

use std::time::Duration;

use chronicle::app::Parts;
use chronicle_tests::{chronicle_binary, eventually, ChronicleProcess, TestApp};
use serde_json::{json, Value};

const FAILURES: &str = "query($n: String!) { projectionFailures(name: $n, first: 10) { edges { node {
    eventId aggregateType aggregateId sequence eventType reason attempts firstFailedAt lastFailedAt } } } }";
const RETRY: &str =
    "mutation($n: String!) { retryProjectionFailures(name: $n) { resolved remaining } }";

async fn failures(app: &TestApp) -> Vec<Value> {
    let data = app.data(FAILURES, json!({"n": "tasks"})).await.unwrap();
    data["projectionFailures"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

async fn failure_count(app: &TestApp) -> i64 {
    let data = app
        .data("{ projections { name failures } }", json!({}))
        .await
        .unwrap();
    data["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tasks")
        .and_then(|p| p["failures"].as_i64())
        .unwrap()
}

async fn retry(app: &TestApp) -> (i64, i64) {
    let data = app.data(RETRY, json!({"n": "tasks"})).await.unwrap();
    let outcome = &data["retryProjectionFailures"];
    (
        outcome["resolved"].as_i64().unwrap(),
        outcome["remaining"].as_i64().unwrap(),
    )
}

/// Marks the outbox row of `task`'s event `sequence` published (`true`, so the relay skips it)
/// or not, and wakes the relay.
pub(crate) async fn set_published(app: &TestApp, task: &str, sequence: i64, published: bool) {
    sqlx::query(
        "UPDATE outbox SET published_at = CASE WHEN $3 THEN now() END
         WHERE key = $1 AND (payload->>'sequence')::bigint = $2",
    )
    .bind(task)
    .bind(sequence)
    .bind(published)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('chronicle_outbox', '')")
        .execute(&app.db)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_projection_gap_is_listed_and_applied_by_a_retry_once_the_missing_event_exists() {
    let app = TestApp::spawn_parts(
        Parts {
            api: true,
            relay: false,
            projections: true,
            worker: false,
        },
        |_| {},
    )
    .await
    .unwrap();
    let task = app.create_task("With a gap", "team-a").await.unwrap();
    app.data(
        "mutation($id: ID!) { startTask(id: $id) { version } }",
        json!({"id": task}),
    )
    .await
    .unwrap();
    // The creation does not reach Kafka (as if lost on the way): the projection sees the
    // start first, a gap.
    set_published(&app, &task, 1, true).await;
    let _relay = ChronicleProcess::serve(&app.settings, "relay").unwrap();
    let listed = eventually(Duration::from_secs(30), || async {
        let listed = failures(&app).await;
        Ok((!listed.is_empty()).then_some(listed))
    })
    .await
    .expect("the gap was recorded");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let failure = &listed[0];
    assert_eq!(failure["aggregateId"], task.as_str());
    assert_eq!(failure["aggregateType"], "Task");
    assert_eq!(failure["sequence"], 2);
    assert_eq!(failure["eventType"], "TaskStarted");
    assert_eq!(failure["attempts"], 1);
    assert_eq!(
        failure["reason"], "sequence 2 does not follow version 0",
        "{failure}"
    );
    assert_eq!(failure_count(&app).await, 1);

    // While the cause is there, a retry changes nothing but the attempts.
    assert_eq!(retry(&app).await, (0, 1));
    assert_eq!(failures(&app).await[0]["attempts"], 2);

    // The missing event arrives; the retry applies the rest in order.
    set_published(&app, &task, 1, false).await;
    app.wait_for_version(&task, 1).await.unwrap();
    assert_eq!(retry(&app).await, (1, 0));
    let row = app.wait_for_version(&task, 2).await.unwrap();
    assert_eq!(row["status"], "IN_PROGRESS");
    assert!(failures(&app).await.is_empty());
    assert_eq!(failure_count(&app).await, 0);

    // The CLI: the same list, and a clear refusal of an unknown projection.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(chronicle_binary().unwrap())
            .arg("projection-failures")
            .args(args)
            .env("DATABASE_URL", app.settings.database_url.expose())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.code().unwrap_or(-1), text)
    };
    let (code, out) = cli(&["list", "tasks"]);
    assert_eq!((code, out.trim()), (0, "0 failures of tasks"));
    let (code, out) = cli(&["retry", "tasks"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(&["list", "nope"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("tasks") && out.contains("reports"), "{out}");

    // A rebuild records what it cannot apply with less of the event than the live consumer
    // does; the list and the retry read the event from the store either way.
    let gapped = app
        .create_task("Gapped in the store", "team-a")
        .await
        .unwrap();
    app.data(
        "mutation($id: ID!) { startTask(id: $id) { version } }",
        json!({"id": gapped}),
    )
    .await
    .unwrap();
    app.wait_for_version(&gapped, 2).await.unwrap();
    sqlx::query("DELETE FROM events WHERE aggregate_id = $1 AND sequence = 1")
        .bind(&gapped)
        .execute(&app.db)
        .await
        .unwrap();
    app.data(
        "mutation { rebuildProjection(name: \"tasks\") { state } }",
        json!({}),
    )
    .await
    .unwrap();
    let listed = eventually(Duration::from_secs(30), || async {
        let listed = failures(&app).await;
        Ok(listed
            .into_iter()
            .find(|f| f["aggregateId"] == gapped.as_str()))
    })
    .await
    .expect("the rebuild's gap is listed");
    assert_eq!(listed["sequence"], 2);
    assert_eq!(listed["eventType"], "TaskStarted");
    // The gap is listed while the rebuild still runs; a retry then would apply it to the live
    // rows, which still hold the task, not to the rebuilt ones that lack it. Retry once the
    // rebuilt rows are the live ones.
    eventually(Duration::from_secs(30), || async {
        let data = app
            .data("{ projections { name state } }", json!({}))
            .await?;
        let live = data["projections"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == "tasks" && p["state"] == "LIVE");
        Ok(live.then_some(()))
    })
    .await
    .expect("the rebuild swapped in");
    assert_eq!(retry(&app).await, (0, 1), "still a gap: it stays");
}
