//! GraphQL subscriptions over graphql-transport-ws, fed from the event flow.

use std::time::Duration;

use chronicle_tests::ws::{connect, next_json, open, subscribe};
use chronicle_tests::TestApp;
use serde_json::{json, Value};

#[tokio::test]
async fn task_events_of_a_team_arrive_as_they_happen_and_other_teams_stay_out() {
    let app = TestApp::spawn().await.unwrap();
    let mut socket = connect(&app, &app.admin_token).await;
    subscribe(
        &mut socket,
        "1",
        "subscription($t: ID) { taskEvents(teamId: $t) { eventType taskId sequence actorId payload } }",
        json!({"t": "team-live"}),
    )
    .await;
    // The feed starts at the end of the topics: give the subscription a moment to be in place
    // and the feed consumer to get its partitions, then keep producing until events arrive.
    let mut mine = Vec::new();
    let mut first = None;
    for attempt in 0..20 {
        app.create_task("other team", "team-elsewhere")
            .await
            .unwrap();
        let id = app
            .create_task(&format!("mine {attempt}"), "team-live")
            .await
            .unwrap();
        mine.push(id);
        if let Ok(Some(value)) =
            tokio::time::timeout(Duration::from_millis(500), next_json(&mut socket)).await
        {
            first = Some(value);
            break;
        }
    }
    let first = first.expect("a task event arrived");
    assert_eq!(first["type"], "next", "{first}");
    let event = &first["payload"]["data"]["taskEvents"];
    assert_eq!(event["eventType"], "TaskCreated");
    assert!(
        mine.contains(&event["taskId"].as_str().unwrap().to_owned()),
        "only team-live tasks: {event}"
    );
    assert_eq!(event["payload"]["teamId"], "team-live");

    // A later change of the same task (no team in its payload) is still recognised.
    let task = event["taskId"].as_str().unwrap().to_owned();
    app.data(
        "mutation($id: ID!) { startTask(id: $id) { version } }",
        json!({"id": task}),
    )
    .await
    .unwrap();
    let mut saw_start = false;
    while let Some(value) = next_json(&mut socket).await {
        let event = &value["payload"]["data"]["taskEvents"];
        assert_eq!(value["type"], "next");
        assert!(
            mine.contains(&event["taskId"].as_str().unwrap().to_owned()),
            "{event}"
        );
        if event["eventType"] == "TaskStarted" {
            assert_eq!(event["taskId"], task.as_str());
            saw_start = true;
            break;
        }
    }
    assert!(saw_start);
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn report_status_pushes_each_status_until_completed() {
    let app = TestApp::spawn().await.unwrap();
    let mut socket = connect(&app, &app.admin_token).await;
    let now = chrono::Utc::now();
    let data = app
        .data(
            "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }",
            json!({"i": {"kind": "TEAM_SUMMARY", "teamId": "team-x",
                         "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
                         "to": (now + chrono::Duration::hours(1)).to_rfc3339()}}),
        )
        .await
        .unwrap();
    let id = data["requestReport"]["id"].as_str().unwrap().to_owned();
    subscribe(
        &mut socket,
        "r",
        "subscription($id: ID!) { reportStatus(reportId: $id) { status version } }",
        json!({"id": id}),
    )
    .await;
    let mut statuses = Vec::new();
    let mut versions = Vec::new();
    while let Some(value) = next_json(&mut socket).await {
        if value["type"] == "complete" {
            break;
        }
        assert_eq!(value["type"], "next", "{value}");
        let status = &value["payload"]["data"]["reportStatus"];
        statuses.push(status["status"].as_str().unwrap().to_owned());
        versions.push(status["version"].as_i64().unwrap());
    }
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("COMPLETED"),
        "{statuses:?}"
    );
    let order = ["REQUESTED", "GENERATING", "COMPLETED"];
    let ranks: Vec<usize> = statuses
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] < w[1]),
        "in lifecycle order: {statuses:?}"
    );
    assert!(versions.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn a_subscription_without_a_valid_token_is_refused() {
    let app = TestApp::spawn().await.unwrap();
    let (_socket, reply) = open(&app, "forged").await;
    assert!(
        reply.is_none(),
        "expected the connection to be closed, got {reply:?}"
    );
}

#[tokio::test]
async fn projection_status_follows_a_rebuild_from_claim_to_swap() {
    let app = TestApp::spawn().await.unwrap();
    let status = "subscription { projectionStatus(name: \"tasks\") { state lag rebuild { eventsDone eventsTotal } lastRebuild { events } } }";

    let member = app.token("u-1", &["member"], &["team-a"]);
    let mut refused = connect(&app, &member).await;
    subscribe(&mut refused, "1", status, json!({})).await;
    let error = next_json(&mut refused).await.unwrap();
    assert_eq!(error["payload"]["data"], Value::Null, "{error}");
    assert_eq!(
        error["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{error}"
    );

    chronicle_tests::seed::seed_tasks(&app.db, 10_000)
        .await
        .unwrap();
    let mut socket = connect(&app, &app.admin_token).await;
    subscribe(&mut socket, "1", status, json!({})).await;
    let first = next_json(&mut socket).await.unwrap();
    assert_eq!(
        first["payload"]["data"]["projectionStatus"]["state"], "LIVE",
        "{first}"
    );
    assert_eq!(
        first["payload"]["data"]["projectionStatus"]["lag"], 50_000,
        "{first}"
    );

    app.data(
        "mutation { rebuildProjection(name: \"tasks\") { state } }",
        json!({}),
    )
    .await
    .unwrap();
    let mut states = Vec::new();
    let last = loop {
        let message = next_json(&mut socket).await.expect("status update");
        let status = message["payload"]["data"]["projectionStatus"].clone();
        states.push(status["state"].as_str().unwrap_or_default().to_owned());
        if status["state"] == "LIVE" {
            break status;
        }
        // Counted once the rebuild's snapshot is open; never more done than there is.
        let (done, total) = (
            status["rebuild"]["eventsDone"].as_i64().unwrap(),
            status["rebuild"]["eventsTotal"].as_i64().unwrap(),
        );
        assert!(total == 50_000 || (total, done) == (0, 0), "{status}");
        assert!(done <= total, "{status}");
    };
    assert!(states.contains(&"REBUILDING".to_owned()), "{states:?}");
    assert_eq!(last["lastRebuild"]["events"], 50_000, "{last}");
    assert_eq!(last["lag"], 0, "{last}");
}
