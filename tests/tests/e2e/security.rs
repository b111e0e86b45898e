//! Access control: who may see and change what, across teams, through every door (queries by
//! id and by filter, mutations, the audit trail, time travel, subscriptions), and which tokens
//! are refused.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chronicle_tests::ws::{connect, next_json, next_json_within, open, subscribe};
use chronicle_tests::CREATE_TASK;
use chronicle_tests::{error_code, TestApp, TEST_SECRET};
use serde_json::{json, Value};

/// Two tasks and a report: one task in `team-a`, a task and a report in `team-b`.
struct TwoTeams {
    task_a: String,
    task_b: String,
    report_b: String,
}

async fn two_teams(app: &TestApp) -> TwoTeams {
    let task_a = app.create_task("alpha", "team-a").await.unwrap();
    let task_b = app.create_task("bravo", "team-b").await.unwrap();
    app.wait_for_version(&task_a, 1).await.unwrap();
    app.wait_for_version(&task_b, 1).await.unwrap();
    let now = chrono::Utc::now();
    let data = app
        .data(
            "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }",
            json!({"i": {"kind": "TEAM_SUMMARY", "teamId": "team-b",
                         "from": (now - chrono::Duration::days(1)).to_rfc3339(),
                         "to": now.to_rfc3339()}}),
        )
        .await
        .unwrap();
    let report_b = data["requestReport"]["id"].as_str().unwrap().to_owned();
    let query = "query($id: ID!) { report(id: $id, minVersion: 1) { id } }";
    app.data(query, json!({"id": report_b})).await.unwrap();
    TwoTeams {
        task_a,
        task_b,
        report_b,
    }
}

#[tokio::test]
async fn members_read_only_their_teams_tasks_and_reports() {
    let app = TestApp::spawn().await.unwrap();
    let seeded = two_teams(&app).await;
    let member = app.token("u-a", &["member"], &["team-a"]);
    let read = |query: &'static str, variables: Value| {
        let member = member.clone();
        let app = &app;
        async move {
            app.graphql_as(Some(&member), query, variables)
                .await
                .unwrap()
        }
    };

    let task = "query($id: ID!) { task(id: $id) { id title } }";
    let own = read(task, json!({"id": seeded.task_a})).await;
    assert_eq!(own["data"]["task"]["title"], "alpha", "{own}");
    let other = read(task, json!({"id": seeded.task_b})).await;
    assert_eq!(other["data"]["task"], Value::Null, "{other}");
    assert!(other.get("errors").is_none(), "reads as missing: {other}");
    let missing = read(task, json!({"id": uuid::Uuid::now_v7().to_string()})).await;
    assert_eq!(
        other, missing,
        "another team's task answers exactly as a missing one"
    );

    let list = read(
        "{ tasks { totalCount edges { node { id teamId } } } }",
        json!({}),
    )
    .await;
    assert_eq!(list["data"]["tasks"]["totalCount"], 1, "{list}");
    assert_eq!(
        list["data"]["tasks"]["edges"][0]["node"]["id"],
        seeded.task_a.as_str()
    );
    let by_text = read(
        "query($t: String) { tasks(filter: {text: $t}) { totalCount } }",
        json!({"t": "bravo"}),
    )
    .await;
    assert_eq!(by_text["data"]["tasks"]["totalCount"], 0, "{by_text}");
    let by_team = read(
        "{ tasks(filter: {teamId: \"team-b\"}) { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(error_code(&by_team), Some("FORBIDDEN"), "{by_team}");

    let report = read(
        "query($id: ID!) { report(id: $id) { id } }",
        json!({"id": seeded.report_b}),
    )
    .await;
    assert_eq!(report["data"]["report"], Value::Null, "{report}");
    let reports = read("{ reports { totalCount } }", json!({})).await;
    assert_eq!(reports["data"]["reports"]["totalCount"], 0, "{reports}");

    // The admin sees both teams.
    let all = app
        .data("{ tasks { totalCount } }", json!({}))
        .await
        .unwrap();
    assert_eq!(all["tasks"]["totalCount"], 2);
}

#[tokio::test]
async fn members_cannot_change_or_create_in_other_teams() {
    let app = TestApp::spawn().await.unwrap();
    let seeded = two_teams(&app).await;
    let member = app.token("u-a", &["member"], &["team-a"]);
    let start = "mutation($id: ID!) { startTask(id: $id) { version } }";

    let other = app
        .graphql_as(Some(&member), start, json!({"id": seeded.task_b}))
        .await
        .unwrap();
    let missing = app
        .graphql_as(
            Some(&member),
            start,
            json!({"id": uuid::Uuid::now_v7().to_string()}),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&other), Some("NOT_FOUND"), "{other}");
    assert_eq!(
        other["errors"][0]["message"], missing["errors"][0]["message"],
        "the same answer as for a task that does not exist"
    );
    let pinned = app
        .graphql_as(
            Some(&member),
            "mutation($id: ID!) { cancelTask(id: $id, expectedVersion: 1) { version } }",
            json!({"id": seeded.task_b}),
        )
        .await
        .unwrap();
    assert_ne!(error_code(&pinned), None, "{pinned}");
    assert!(
        !pinned.to_string().contains("\"actualVersion\":1"),
        "no version of another team's task leaks: {pinned}"
    );

    let create = app
        .graphql_as(
            Some(&member),
            "mutation { createTask(input: {title: \"x\", teamId: \"team-b\"}) { id } }",
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&create), Some("FORBIDDEN"), "{create}");
    let now = chrono::Utc::now();
    let report = app
        .graphql_as(
            Some(&member),
            "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }",
            json!({"i": {"kind": "TEAM_SUMMARY", "teamId": "team-b",
                         "from": (now - chrono::Duration::days(1)).to_rfc3339(),
                         "to": now.to_rfc3339()}}),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&report), Some("FORBIDDEN"), "{report}");

    let auditor = app.token("u-aud", &["auditor"], &["team-a"]);
    let audited = app
        .graphql_as(Some(&auditor), start, json!({"id": seeded.task_a}))
        .await
        .unwrap();
    assert_eq!(
        error_code(&audited),
        Some("FORBIDDEN"),
        "auditors only read"
    );

    // Nothing was written for any refused command: team-b's task is still at version 1,
    // and the store holds only the seeded events.
    let versions: Vec<i64> = sqlx::query_scalar(
        "SELECT max(sequence) FROM events WHERE aggregate_id = $1 GROUP BY aggregate_id",
    )
    .bind(&seeded.task_b)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(versions, vec![1]);

    // Its own team's task it changes.
    let own = app
        .graphql_as(Some(&member), start, json!({"id": seeded.task_a}))
        .await
        .unwrap();
    assert_eq!(own["data"]["startTask"]["version"], 2, "{own}");
}

#[tokio::test]
async fn auditors_see_only_their_teams_trail_and_past_states() {
    let app = TestApp::spawn().await.unwrap();
    let seeded = two_teams(&app).await;
    let auditor = app.token("u-aud", &["auditor"], &["team-a"]);
    let trail = "query($f: AuditFilter!) { auditTrail(filter: $f, first: 100) { edges { node { aggregateId } } } }";

    let everything = app
        .graphql_as(Some(&auditor), trail, json!({"f": {}}))
        .await
        .unwrap();
    let ids: Vec<&str> = everything["data"]["auditTrail"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{everything}"))
        .iter()
        .map(|e| e["node"]["aggregateId"].as_str().unwrap())
        .collect();
    assert!(!ids.is_empty());
    assert!(
        ids.iter().all(|id| *id == seeded.task_a),
        "only team-a's events: {ids:?}"
    );
    let aimed = app
        .graphql_as(
            Some(&auditor),
            trail,
            json!({"f": {"aggregateId": seeded.task_b}}),
        )
        .await
        .unwrap();
    assert_eq!(aimed["data"]["auditTrail"]["edges"], json!([]), "{aimed}");

    let verify =
        "query($id: ID!) { verifyAuditTrail(aggregateType: TASK, aggregateId: $id) { valid } }";
    let other = app
        .graphql_as(Some(&auditor), verify, json!({"id": seeded.task_b}))
        .await
        .unwrap();
    assert_eq!(error_code(&other), Some("NOT_FOUND"), "{other}");
    let own = app
        .graphql_as(Some(&auditor), verify, json!({"id": seeded.task_a}))
        .await
        .unwrap();
    assert_eq!(own["data"]["verifyAuditTrail"]["valid"], true, "{own}");

    let past = "query($id: ID!) { task(id: $id, atVersion: 1) { title history { edges { node { eventType } } } } }";
    let other = app
        .graphql_as(Some(&auditor), past, json!({"id": seeded.task_b}))
        .await
        .unwrap();
    assert_eq!(other["data"]["task"], Value::Null, "{other}");
    let own = app
        .graphql_as(Some(&auditor), past, json!({"id": seeded.task_a}))
        .await
        .unwrap();
    assert_eq!(own["data"]["task"]["title"], "alpha", "{own}");
    assert_eq!(
        own["data"]["task"]["history"]["edges"][0]["node"]["eventType"],
        "TaskCreated"
    );

    // An organisation-wide auditor (`*`) sees both teams; a member sees no trail at all.
    let org = app.token("u-org", &["auditor"], &["*"]);
    let both = app
        .graphql_as(
            Some(&org),
            trail,
            json!({"f": {"aggregateId": seeded.task_b}}),
        )
        .await
        .unwrap();
    assert_eq!(
        both["data"]["auditTrail"]["edges"][0]["node"]["aggregateId"],
        seeded.task_b.as_str()
    );
    let member = app.token("u-a", &["member"], &["team-a"]);
    let refused = app
        .graphql_as(Some(&member), trail, json!({"f": {}}))
        .await
        .unwrap();
    assert_eq!(error_code(&refused), Some("FORBIDDEN"), "{refused}");
}

#[tokio::test]
async fn subscriptions_deliver_only_the_callers_teams_events() {
    let app = TestApp::spawn().await.unwrap();
    let seeded = two_teams(&app).await;
    let member = app.token("u-a", &["member"], &["team-a"]);

    let mut refused = connect(&app, &member).await;
    subscribe(
        &mut refused,
        "1",
        "subscription { taskEvents(teamId: \"team-b\") { taskId } }",
        json!({}),
    )
    .await;
    let error = next_json(&mut refused).await.unwrap();
    assert_eq!(
        error["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{error}"
    );

    // Every task event the member can subscribe to, and one aimed at team-b's task.
    let mut socket = connect(&app, &member).await;
    subscribe(
        &mut socket,
        "all",
        "subscription { taskEvents { taskId eventType } }",
        json!({}),
    )
    .await;
    subscribe(
        &mut socket,
        "aimed",
        "subscription($id: ID) { taskEvents(taskId: $id) { taskId } }",
        json!({"id": seeded.task_b}),
    )
    .await;
    let report = "subscription($id: ID!) { reportStatus(reportId: $id) { status } }";
    subscribe(
        &mut socket,
        "report",
        report,
        json!({"id": seeded.report_b}),
    )
    .await;
    // Changes to team-b's task, then to team-a's, repeated until team-a's arrive (the feed
    // starts at the end of the topics once its consumer has partitions).
    let mut received = Vec::new();
    for attempt in 0..20 {
        let label = format!(
            "{{updateTask(id: \"{}\", input: {{title: \"b{attempt}\"}}) {{ version }}}}",
            seeded.task_b
        );
        app.data(&format!("mutation {label}"), json!({}))
            .await
            .unwrap();
        let label = format!(
            "{{updateTask(id: \"{}\", input: {{title: \"a{attempt}\"}}) {{ version }}}}",
            seeded.task_a
        );
        app.data(&format!("mutation {label}"), json!({}))
            .await
            .unwrap();
        while let Some(message) = next_json_within(&mut socket, Duration::from_millis(500)).await {
            received.push(message);
        }
        if received.iter().any(|m| m["id"] == "all") {
            break;
        }
    }
    assert!(
        received.iter().any(|m| m["id"] == "all"),
        "team-a's events arrive"
    );
    for message in &received {
        assert_eq!(message["id"], "all", "nothing of team-b: {message}");
        assert_eq!(
            message["payload"]["data"]["taskEvents"]["taskId"],
            seeded.task_a.as_str(),
            "{message}"
        );
    }
}

fn forge(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    change(&mut claims);
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    )
}

#[tokio::test]
async fn forged_expired_and_unsigned_tokens_are_unauthenticated_everywhere() {
    let app = TestApp::spawn().await.unwrap();
    let member = app.token("u-a", &["member"], &["team-a"]);
    let escalated = forge(&member, |c| c["roles"] = json!(["admin"]));
    let other_team = forge(&member, |c| c["teams"] = json!(["*"]));
    let header_none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let claims = member.split('.').nth(1).unwrap().to_owned();
    let unsigned = format!("{header_none}.{claims}.");
    let wrong_secret = chronicle_api::auth::Authenticator::hs256(&format!("{TEST_SECRET}-other"))
        .issue(
            "u-a",
            vec!["admin".into()],
            vec![],
            chrono::Duration::hours(1),
        )
        .unwrap();
    let expired = chronicle_api::auth::Authenticator::hs256(TEST_SECRET)
        .issue(
            "u-a",
            vec!["admin".into()],
            vec![],
            chrono::Duration::minutes(-5),
        )
        .unwrap();
    for (name, token) in [
        ("escalated roles", escalated),
        ("widened teams", other_team),
        ("alg none", unsigned),
        ("wrong secret", wrong_secret),
        ("expired", expired),
        ("garbage", "not.a.token".to_owned()),
    ] {
        let body = app
            .graphql_as(Some(&token), "{ tasks { totalCount } }", json!({}))
            .await
            .unwrap();
        assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{name}: {body}");
        assert!(
            !body.to_string().contains(&token),
            "{name}: the token is not echoed"
        );
        let (_socket, reply) = open(&app, &token).await;
        assert!(
            reply.is_none(),
            "{name}: the subscription is refused: {reply:?}"
        );
    }
    let body = app
        .graphql_as(None, "{ tasks { totalCount } }", json!({}))
        .await
        .unwrap();
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
}

#[tokio::test]
async fn the_actor_is_always_the_token_subject() {
    let app = TestApp::spawn().await.unwrap();
    let member = app.token("u-real", &["member"], &["team-a"]);
    for input in [
        json!({"title": "t", "teamId": "team-a", "creatorId": "u-fake"}),
        json!({"title": "t", "teamId": "team-a", "actorId": "u-fake"}),
    ] {
        let body = app
            .graphql_as(Some(&member), CREATE_TASK, json!({"i": input}))
            .await
            .unwrap();
        assert_eq!(error_code(&body), Some("VALIDATION_FAILED"), "{body}");
    }
    let body = app
        .graphql_as(
            Some(&member),
            "mutation { createTask(input: {title: \"mine\", teamId: \"team-a\"}) { id task { creatorId } } }",
            json!({}),
        )
        .await
        .unwrap();
    let id = body["data"]["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let actors: Vec<String> =
        sqlx::query_scalar("SELECT metadata ->> 'actor_id' FROM events WHERE aggregate_id = $1")
            .bind(&id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(actors, vec![app.stored_as("u-real").await]);
    let creator: String = sqlx::query_scalar(
        "SELECT payload -> 'TaskCreated' ->> 'creatorId' FROM events WHERE aggregate_id = $1",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(creator, app.stored_as("u-real").await);
}

#[tokio::test]
async fn subscriptions_end_when_the_token_expires() {
    let app = TestApp::spawn().await.unwrap();
    let short = chronicle_api::auth::Authenticator::hs256(TEST_SECRET)
        .issue(
            "u-short",
            vec!["admin".into()],
            vec![],
            chrono::Duration::seconds(3),
        )
        .unwrap();
    let mut socket = connect(&app, &short).await;
    let started = std::time::Instant::now();
    subscribe(
        &mut socket,
        "s",
        "subscription { projectionStatus(name: \"tasks\") { state } }",
        json!({}),
    )
    .await;
    let first = next_json(&mut socket).await.unwrap();
    assert_eq!(
        first["payload"]["data"]["projectionStatus"]["state"], "LIVE",
        "{first}"
    );
    let mut ended = None;
    while let Some(message) = next_json_within(&mut socket, Duration::from_secs(10)).await {
        if message["type"] == "complete" {
            ended = Some(started.elapsed());
            break;
        }
    }
    let ended = ended.expect("the subscription completes at the token's expiry");
    assert!(
        ended >= Duration::from_secs(1) && ended < Duration::from_secs(10),
        "{ended:?}"
    );
}

#[tokio::test]
async fn moving_an_event_to_another_team_is_detected_as_tampering() {
    let app = TestApp::spawn().await.unwrap();
    let task = app.create_task("moved", "team-b").await.unwrap();
    app.data(
        "mutation($id: ID!) { startTask(id: $id) { version } }",
        json!({"id": task}),
    )
    .await
    .unwrap();
    // Someone with database access files the second event under team-a, so that team-a's
    // auditors would see it and team-b's would not.
    sqlx::query("UPDATE events SET team_id = 'team-a' WHERE aggregate_id = $1 AND sequence = 2")
        .bind(&task)
        .execute(&app.db)
        .await
        .unwrap();
    let body = app
        .data(
            "query($id: ID!) { verifyAuditTrail(aggregateType: TASK, aggregateId: $id) { valid firstInvalidSequence reason } }",
            json!({"id": task}),
        )
        .await
        .unwrap();
    let verdict = &body["verifyAuditTrail"];
    assert_eq!(verdict["valid"], false, "{body}");
    assert_eq!(verdict["firstInvalidSequence"], 2);
    assert!(
        verdict["reason"].as_str().unwrap().contains("team-b"),
        "{body}"
    );
    let (code, out) =
        chronicle_tests::run_chronicle(app.settings.database_url.expose(), &["audit", "verify"])
            .await
            .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&task) && out.contains("sequence 2"), "{out}");
}
