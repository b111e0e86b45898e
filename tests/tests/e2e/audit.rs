//! The audit trail: filters, correlation across the worker, time travel, roles, tampering.

use std::collections::HashSet;
use std::time::Duration;

use chronicle_tests::CREATE_TASK;
use chronicle_tests::{error_code, eventually, run_chronicle, TestApp};
use serde_json::{json, Value};

const TRAIL: &str = "query($f: AuditFilter!, $first: Int, $after: String) {
  auditTrail(filter: $f, first: $first, after: $after) {
    edges { cursor node { eventId position aggregateType aggregateId sequence eventType
                          eventVersion occurredAt actorId correlationId causationId payload
                          hash previousHash } }
    pageInfo { hasNextPage endCursor } } }";

fn auditor(app: &TestApp) -> String {
    app.token("u-auditor", &["auditor"], &["*"])
}

/// Every matching event, following pages of `first`.
async fn trail(app: &TestApp, filter: Value) -> Vec<Value> {
    let token = auditor(app);
    let mut nodes = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let body = app
            .graphql_as(
                Some(&token),
                TRAIL,
                json!({"f": filter, "first": 100, "after": after}),
            )
            .await
            .unwrap();
        assert!(body["errors"].is_null(), "{body}");
        let connection = &body["data"]["auditTrail"];
        for edge in connection["edges"].as_array().unwrap() {
            nodes.push(edge["node"].clone());
        }
        if connection["pageInfo"]["hasNextPage"] != true {
            return nodes;
        }
        after = connection["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_owned);
    }
}

/// The trail once it holds `count` events (an event is shown once every older transaction
/// in the cluster has ended, which other tests' writes can delay by a moment).
async fn trail_of(app: &TestApp, filter: Value, count: usize) -> Vec<Value> {
    eventually(Duration::from_secs(20), || async {
        let nodes = trail(app, filter.clone()).await;
        Ok((nodes.len() >= count).then_some(nodes))
    })
    .await
    .unwrap_or_else(|_| panic!("the trail for {filter} never reached {count} events"))
}

fn types(nodes: &[Value]) -> Vec<&str> {
    nodes
        .iter()
        .map(|n| n["eventType"].as_str().unwrap())
        .collect()
}

async fn post_with_correlation(
    app: &TestApp,
    token: &str,
    correlation: &str,
    query: &str,
    variables: Value,
) -> Value {
    let body: Value = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(token)
        .header("X-Correlation-Id", correlation)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body["errors"].is_null(), "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn every_filter_alone_and_combined_and_a_correlation_is_followed_through_the_worker() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let member = app.token("u-2", &["member"], &["team-a"]);

    let a = post_with_correlation(
        &app,
        &admin,
        "corr-a",
        CREATE_TASK,
        json!({"i": {"title": "A", "teamId": "team-a"}}),
    )
    .await;
    let a = a["createTask"]["id"].as_str().unwrap().to_owned();
    post_with_correlation(
        &app,
        &admin,
        "corr-a2",
        "mutation($id: ID!) { assignTask(id: $id, assigneeId: \"u-9\") { version } }",
        json!({"id": a}),
    )
    .await;
    post_with_correlation(
        &app,
        &admin,
        "corr-a3",
        "mutation($id: ID!) { startTask(id: $id) { version } }",
        json!({"id": a}),
    )
    .await;
    let b = post_with_correlation(
        &app,
        &member,
        "corr-b",
        CREATE_TASK,
        json!({"i": {"title": "B", "teamId": "team-a"}}),
    )
    .await;
    let b = b["createTask"]["id"].as_str().unwrap().to_owned();

    let now = chrono::Utc::now();
    let report = post_with_correlation(
        &app,
        &admin,
        "corr-r",
        "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }",
        json!({"i": {"kind": "TEAM_SUMMARY", "teamId": "team-a",
                     "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
                     "to": (now + chrono::Duration::hours(1)).to_rfc3339()}}),
    )
    .await;
    let report = report["requestReport"]["id"].as_str().unwrap().to_owned();

    // The correlation id of the request reaches the worker's events, linked by causation.
    let chain = trail_of(&app, json!({"correlationId": "corr-r"}), 3).await;
    assert_eq!(
        types(&chain),
        [
            "ReportRequested",
            "ReportGenerationStarted",
            "ReportCompleted"
        ]
    );
    assert_eq!(chain[0]["actorId"], "u-admin");
    for node in &chain[1..] {
        assert_eq!(node["actorId"], "chronicle-report-worker");
        assert_eq!(node["causationId"], chain[0]["eventId"]);
        assert_eq!(node["aggregateId"], report.as_str());
    }

    // Each filter alone.
    let all = trail_of(&app, json!({}), 7).await;
    assert_eq!(all.len(), 7);
    let positions: Vec<i64> = all
        .iter()
        .map(|n| n["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "position order");
    let tasks = trail(&app, json!({"aggregateType": "TASK"})).await;
    assert_eq!(
        types(&tasks),
        ["TaskCreated", "TaskAssigned", "TaskStarted", "TaskCreated"]
    );
    let of_a = trail(&app, json!({"aggregateId": a})).await;
    assert_eq!(types(&of_a), ["TaskCreated", "TaskAssigned", "TaskStarted"]);
    assert_eq!(
        of_a.iter()
            .map(|n| n["sequence"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(of_a[0]["previousHash"], "");
    assert_eq!(of_a[1]["previousHash"], of_a[0]["hash"]);
    assert_eq!(of_a[2]["previousHash"], of_a[1]["hash"]);
    assert_eq!(of_a[0]["hash"].as_str().unwrap().len(), 64);
    assert_eq!(of_a[1]["payload"]["assigneeId"], "u-9");
    assert_eq!(of_a[1]["correlationId"], "corr-a2");
    let by_member = trail(&app, json!({"actorId": "u-2"})).await;
    assert_eq!(by_member.len(), 1);
    assert_eq!(by_member[0]["aggregateId"], b.as_str());
    let assigned = trail(&app, json!({"eventType": "TaskAssigned"})).await;
    assert_eq!(assigned.len(), 1);
    let since_start = trail(&app, json!({"from": of_a[2]["occurredAt"]})).await;
    assert_eq!(since_start.first().unwrap()["eventType"], "TaskStarted");
    assert_eq!(since_start.len(), 5);
    let until_start = trail(&app, json!({"to": of_a[2]["occurredAt"]})).await;
    assert_eq!(types(&until_start), ["TaskCreated", "TaskAssigned"]);

    // Combined.
    let combined = trail(
        &app,
        json!({"aggregateType": "TASK", "actorId": "u-admin", "eventType": "TaskCreated"}),
    )
    .await;
    assert_eq!(combined.len(), 1);
    assert_eq!(combined[0]["aggregateId"], a.as_str());
    let none = trail(&app, json!({"aggregateId": b, "actorId": "u-admin"})).await;
    assert!(none.is_empty());
    let window = trail(
        &app,
        json!({"aggregateType": "REPORT", "from": chain[1]["occurredAt"], "to": chain[2]["occurredAt"]}),
    )
    .await;
    assert_eq!(types(&window), ["ReportGenerationStarted"]);

    // Task.history is the task's trail.
    app.wait_for_version(&a, 3).await.unwrap();
    let history = app
        .graphql_as(
            Some(&auditor(&app)),
            "query($id: ID!) { task(id: $id) { history(first: 2) { edges { node { eventType sequence } } pageInfo { hasNextPage } } } }",
            json!({"id": a}),
        )
        .await
        .unwrap();
    let edges = history["data"]["task"]["history"]["edges"]
        .as_array()
        .unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[1]["node"]["eventType"], "TaskAssigned");
    assert_eq!(
        history["data"]["task"]["history"]["pageInfo"]["hasNextPage"],
        true
    );
}

const TASK_AT: &str = "query($id: ID!, $v: Int, $t: DateTime) { task(id: $id, atVersion: $v, asOf: $t) { version title assigneeId status } }";

#[tokio::test]
async fn tasks_and_reports_are_read_as_they_were_at_each_version_and_time() {
    let app = TestApp::spawn().await.unwrap();
    let token = auditor(&app);
    let id = app.create_task("first title", "team-a").await.unwrap();
    app.data(
        "mutation($id: ID!) { updateTask(id: $id, input: {title: \"second title\"}) { version } }",
        json!({"id": id}),
    )
    .await
    .unwrap();
    app.data(
        "mutation($id: ID!) { assignTask(id: $id, assigneeId: \"u-7\") { version } }",
        json!({"id": id}),
    )
    .await
    .unwrap();
    let events = trail_of(&app, json!({"aggregateId": id}), 3).await;

    let at = |v: Option<i64>, t: Option<String>| {
        let (app, token, id) = (&app, token.clone(), id.clone());
        async move {
            app.graphql_as(Some(&token), TASK_AT, json!({"id": id, "v": v, "t": t}))
                .await
                .unwrap()
        }
    };
    let v1 = at(Some(1), None).await;
    assert_eq!(
        v1["data"]["task"],
        json!({"version": 1, "title": "first title", "assigneeId": null, "status": "OPEN"})
    );
    let v2 = at(Some(2), None).await;
    assert_eq!(v2["data"]["task"]["title"], "second title");
    assert_eq!(v2["data"]["task"]["assigneeId"], Value::Null);
    let v3 = at(Some(3), None).await;
    assert_eq!(v3["data"]["task"]["assigneeId"], "u-7");
    assert_eq!(error_code(&at(Some(4), None).await), Some("NOT_FOUND"));
    assert_eq!(
        error_code(&at(Some(0), None).await),
        Some("VALIDATION_FAILED")
    );

    // asOf: before creation → null, no error; at an event's time → that version; future → now.
    let created: chrono::DateTime<chrono::Utc> =
        events[0]["occurredAt"].as_str().unwrap().parse().unwrap();
    let updated: chrono::DateTime<chrono::Utc> =
        events[1]["occurredAt"].as_str().unwrap().parse().unwrap();
    let before = at(
        None,
        Some((created - chrono::Duration::seconds(1)).to_rfc3339()),
    )
    .await;
    assert!(before["errors"].is_null(), "{before}");
    assert_eq!(before["data"]["task"], Value::Null);
    let between = at(
        None,
        Some((updated - chrono::Duration::microseconds(1)).to_rfc3339()),
    )
    .await;
    assert_eq!(between["data"]["task"]["version"], 1);
    let exactly = at(None, Some(updated.to_rfc3339())).await;
    assert_eq!(exactly["data"]["task"]["version"], 2);
    let future = at(
        None,
        Some((chrono::Utc::now() + chrono::Duration::days(365)).to_rfc3339()),
    )
    .await;
    assert_eq!(future["data"]["task"]["version"], 3);
    let both = at(Some(1), Some(updated.to_rfc3339())).await;
    assert_eq!(error_code(&both), Some("VALIDATION_FAILED"));

    // The read model is not what answers: change it and time travel still tells the truth.
    sqlx::query("UPDATE tasks SET title = 'tampered read model' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        at(Some(3), None).await["data"]["task"]["title"],
        "second title"
    );

    // Reports too.
    let now = chrono::Utc::now();
    let data = app
        .data(
            "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }",
            json!({"i": {"kind": "OVERDUE_TASKS", "teamId": "team-a",
                         "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
                         "to": (now + chrono::Duration::hours(1)).to_rfc3339()}}),
        )
        .await
        .unwrap();
    let report = data["requestReport"]["id"].as_str().unwrap().to_owned();
    trail_of(&app, json!({"aggregateId": report}), 3).await;
    let first = app
        .graphql_as(
            Some(&token),
            "query($id: ID!) { report(id: $id, atVersion: 1) { version status result } }",
            json!({"id": report}),
        )
        .await
        .unwrap();
    assert_eq!(
        first["data"]["report"],
        json!({"version": 1, "status": "REQUESTED", "result": null})
    );
    let last = app
        .graphql_as(
            Some(&token),
            "query($id: ID!) { report(id: $id, atVersion: 3) { status result } }",
            json!({"id": report}),
        )
        .await
        .unwrap();
    assert_eq!(last["data"]["report"]["status"], "COMPLETED");
    assert_eq!(last["data"]["report"]["result"]["total"], 0);
}

#[tokio::test]
async fn members_are_refused_and_bad_arguments_answer_with_their_code() {
    let app = TestApp::spawn().await.unwrap();
    let id = app.create_task("t", "team-a").await.unwrap();
    app.wait_for_version(&id, 1).await.unwrap();
    let member = app.token("u-m", &["member"], &["team-a"]);
    let cases = [
        (TRAIL, json!({"f": {}})),
        (TASK_AT, json!({"id": id, "v": 1})),
        (
            "query($id: ID!) { verifyAuditTrail(aggregateType: TASK, aggregateId: $id) { valid } }",
            json!({"id": id}),
        ),
        (
            "query($id: ID!) { task(id: $id) { history { edges { cursor } } } }",
            json!({"id": id}),
        ),
    ];
    for (query, variables) in cases {
        let body = app
            .graphql_as(Some(&member), query, variables)
            .await
            .unwrap();
        assert_eq!(error_code(&body), Some("FORBIDDEN"), "{query}: {body}");
    }
    let body = app.graphql_as(None, TRAIL, json!({"f": {}})).await.unwrap();
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"));

    let token = auditor(&app);
    let bad = [
        (
            json!({"f": {"aggregateType": "INVOICE"}}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"f": {"aggregateId": "not-a-uuid"}}),
            "VALIDATION_FAILED",
        ),
        (json!({"f": {}, "first": 101}), "LIMIT_EXCEEDED"),
        (json!({"f": {}, "after": "garbage"}), "VALIDATION_FAILED"),
        (
            json!({"f": {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}}),
            "VALIDATION_FAILED",
        ),
    ];
    for (variables, code) in bad {
        let body = app
            .graphql_as(Some(&token), TRAIL, variables.clone())
            .await
            .unwrap();
        assert_eq!(error_code(&body), Some(code), "{variables}: {body}");
    }
    let missing = app
        .graphql_as(
            Some(&token),
            "query($id: ID!) { verifyAuditTrail(aggregateType: TASK, aggregateId: $id) { valid } }",
            json!({"id": uuid::Uuid::now_v7().to_string()}),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&missing), Some("NOT_FOUND"));
}

const VERIFY: &str = "query($id: ID!) { verifyAuditTrail(aggregateType: TASK, aggregateId: $id) { valid eventsChecked firstInvalidSequence reason } }";

/// A task with four events, projected (so the read model witnesses version 4).
async fn task_with_four_events(app: &TestApp, title: &str) -> String {
    let id = app.create_task(title, "team-a").await.unwrap();
    for call in [
        "assignTask(id: $id, assigneeId: \"u-1\")",
        "startTask(id: $id)",
        "completeTask(id: $id, result: \"ok\")",
    ] {
        app.data(
            &format!("mutation($id: ID!) {{ m: {call} {{ version }} }}"),
            json!({"id": id}),
        )
        .await
        .unwrap();
    }
    app.wait_for_version(&id, 4).await.unwrap();
    id
}

#[tokio::test]
async fn every_kind_of_tampering_is_detected_by_the_query_and_the_cli() {
    let app = TestApp::spawn().await.unwrap();
    let token = auditor(&app);
    let url = app.settings.database_url.expose().to_owned();
    let intact = task_with_four_events(&app, "intact").await;
    let edited_payload = task_with_four_events(&app, "payload").await;
    let edited_metadata = task_with_four_events(&app, "metadata").await;
    let removed = task_with_four_events(&app, "removed").await;
    let swapped = task_with_four_events(&app, "swapped").await;
    let truncated = task_with_four_events(&app, "truncated").await;

    let (code, out) = run_chronicle(&url, &["audit", "verify"]).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact: 24 events in 6 aggregates"), "{out}");

    let tamper = [
        (
            &edited_payload,
            "UPDATE events SET payload = jsonb_set(payload, '{TaskAssigned,assigneeId}', '\"u-evil\"') WHERE aggregate_id = $1 AND sequence = 2",
            2,
        ),
        (
            &edited_metadata,
            "UPDATE events SET metadata = jsonb_set(metadata, '{actor_id}', '\"u-evil\"') WHERE aggregate_id = $1 AND sequence = 3",
            3,
        ),
        (&removed, "DELETE FROM events WHERE aggregate_id = $1 AND sequence = 2", 2),
        (
            &swapped,
            "UPDATE events SET sequence = CASE sequence WHEN 2 THEN 1003 ELSE 1002 END WHERE aggregate_id = $1 AND sequence IN (2, 3)",
            0,
        ),
        (&truncated, "DELETE FROM events WHERE aggregate_id = $1 AND sequence = 4", 4),
    ];
    for (id, sql, _) in &tamper {
        sqlx::query(sql)
            .bind(id.as_str())
            .execute(&app.db)
            .await
            .unwrap();
    }
    sqlx::query(
        "UPDATE events SET sequence = sequence - 1000 WHERE aggregate_id = $1 AND sequence > 1000",
    )
    .bind(swapped.as_str())
    .execute(&app.db)
    .await
    .unwrap();

    for (id, _, expected) in &tamper {
        let expected = if *expected == 0 { 2 } else { *expected };
        let body = app
            .graphql_as(Some(&token), VERIFY, json!({"id": id}))
            .await
            .unwrap();
        let verdict = &body["data"]["verifyAuditTrail"];
        assert_eq!(verdict["valid"], false, "{id}: {body}");
        assert_eq!(verdict["firstInvalidSequence"], expected, "{id}: {body}");
        assert!(!verdict["reason"].as_str().unwrap().is_empty());

        let (code, out) = run_chronicle(&url, &["audit", "verify", "--type", "Task", "--id", id])
            .await
            .unwrap();
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!("BROKEN Task {id} at sequence {expected}")),
            "{out}"
        );
    }
    let body = app
        .graphql_as(Some(&token), VERIFY, json!({"id": intact}))
        .await
        .unwrap();
    assert_eq!(
        body["data"]["verifyAuditTrail"],
        json!({"valid": true, "eventsChecked": 4, "firstInvalidSequence": null, "reason": null})
    );
    let (code, out) = run_chronicle(
        &url,
        &["audit", "verify", "--type", "Task", "--id", &intact],
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");

    // The whole-store check stops at the first broken chain.
    let (code, out) = run_chronicle(&url, &["audit", "verify"]).await.unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN Task"), "{out}");
    let broken: HashSet<&str> = tamper.iter().map(|(id, _, _)| id.as_str()).collect();
    assert!(
        broken.iter().any(|id| out.contains(id)),
        "names one of the tampered tasks: {out}"
    );
}

#[tokio::test]
async fn pages_stay_consistent_while_events_are_appended() {
    let app = TestApp::spawn().await.unwrap();
    for n in 0..12 {
        app.create_task(&format!("before {n}"), "team-a")
            .await
            .unwrap();
    }
    trail_of(&app, json!({"eventType": "TaskCreated"}), 12).await;
    let token = auditor(&app);
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut after: Option<String> = None;
    let mut appended = 0;
    // Page by 5 while creating two tasks between pages; then drain until every event was seen.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = app
            .graphql_as(
                Some(&token),
                TRAIL,
                json!({"f": {"eventType": "TaskCreated"}, "first": 5, "after": after}),
            )
            .await
            .unwrap();
        let connection = &body["data"]["auditTrail"];
        for edge in connection["edges"].as_array().unwrap() {
            seen.push((
                edge["node"]["position"].as_i64().unwrap(),
                edge["node"]["eventId"].as_str().unwrap().to_owned(),
            ));
        }
        if let Some(cursor) = connection["pageInfo"]["endCursor"].as_str() {
            after = Some(cursor.to_owned());
        }
        if appended < 10 {
            for _ in 0..2 {
                app.create_task(&format!("during {appended}"), "team-a")
                    .await
                    .unwrap();
                appended += 1;
            }
        } else if seen.len() >= 22 || tokio::time::Instant::now() > deadline {
            break;
        } else if connection["pageInfo"]["hasNextPage"] != true {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let positions: Vec<i64> = seen.iter().map(|(p, _)| *p).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {positions:?}"
    );
    let ids: HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), seen.len(), "no event twice");
    let stored: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT event_id FROM events WHERE event_type = 'TaskCreated'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(stored.len(), 22);
    for id in stored {
        assert!(ids.contains(&id.to_string()), "event {id} was skipped");
    }
}

/// Inserts an event of `aggregate_id` (the trail shows it; no chain is checked here) inside
/// `transaction`, and answers its position.
async fn insert_raw_event(
    transaction: &mut sqlx::PgConnection,
    aggregate_id: &str,
    sequence: i64,
) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, event_id, recorded_at, hash, previous_hash,
                             team_id)
         VALUES ('Task', $1, $2, 'TaskStarted', '1.0', '{\"TaskStarted\": {}}',
                 '{\"actor_id\": \"u-1\"}', $3, now(), '', '', 'team-a')
         RETURNING position",
    )
    .bind(aggregate_id)
    .bind(sequence)
    .bind(uuid::Uuid::now_v7())
    .fetch_one(transaction)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_page_never_ends_past_an_event_whose_transaction_is_still_committing() {
    // Two writers as Postgres can interleave them: `earlier` takes its transaction id first,
    // `later` takes a lower position but commits last. A page read between the two commits
    // must not show `earlier`'s event, or its endCursor would pass over `later`'s for good.
    let app = TestApp::spawn().await.unwrap();
    let aggregate = uuid::Uuid::now_v7().to_string();
    let mut earlier = app.db.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *earlier)
        .await
        .unwrap();
    let mut later = app.db.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *later)
        .await
        .unwrap();
    let lower = insert_raw_event(&mut later, &aggregate, 1).await;
    let higher = insert_raw_event(&mut earlier, &aggregate, 2).await;
    assert!(lower < higher);
    earlier.commit().await.unwrap();

    let token = auditor(&app);
    let page = |after: Option<String>| {
        let token = token.clone();
        let app = &app;
        let aggregate = aggregate.clone();
        async move {
            let body = app
                .graphql_as(
                    Some(&token),
                    TRAIL,
                    json!({"f": {"aggregateId": aggregate}, "first": 10, "after": after}),
                )
                .await
                .unwrap();
            assert!(body["errors"].is_null(), "{body}");
            body["data"]["auditTrail"].clone()
        }
    };
    let first = page(None).await;
    let shown: Vec<i64> = first["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["position"].as_i64().unwrap())
        .collect();
    assert!(
        !shown.contains(&higher),
        "a page showed position {higher} while {lower} was still committing: {first}"
    );

    later.commit().await.unwrap();
    let mut after = first["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    let mut positions = shown;
    // Other tests' transactions on the same server can hold the settled position back a
    // moment: page on until both came, or the deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while positions.len() < 2 && tokio::time::Instant::now() < deadline {
        let next = page(after.clone()).await;
        for edge in next["edges"].as_array().unwrap() {
            positions.push(edge["node"]["position"].as_i64().unwrap());
        }
        if let Some(cursor) = next["pageInfo"]["endCursor"].as_str() {
            after = Some(cursor.to_owned());
        }
    }
    assert_eq!(
        positions,
        vec![lower, higher],
        "paging on from the first page's endCursor shows both, in order"
    );
}
