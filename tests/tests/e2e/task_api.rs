//! The task journeys through GraphQL, against the real event store, broker and projection.

use std::time::Duration;

use chronicle_tests::CREATE_TASK;
use chronicle_tests::{error_code, eventually, TestApp};
use serde_json::{json, Value};

const TASK_FIELDS: &str = "id version title description status teamId creatorId assigneeId \
    priority dueAt labels result error createdAt updatedAt";

async fn mutate(app: &TestApp, mutation: &str, vars: Value) -> Value {
    app.graphql(mutation, vars).await.expect("request failed")
}

#[tokio::test]
async fn a_task_moves_through_its_whole_lifecycle_and_every_change_is_readable() {
    let app = TestApp::spawn().await.unwrap();
    let created = app
        .data(
            &format!("mutation($i: CreateTaskInput!) {{ createTask(input: $i) {{ id version task {{ {TASK_FIELDS} }} }} }}"),
            json!({"i": {"title": "  Ship the release ", "teamId": "team-a", "priority": "HIGH",
                         "labels": ["release", "q4"], "description": "all of it"}}),
        )
        .await
        .unwrap();
    let task = &created["createTask"]["task"];
    let id = created["createTask"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["createTask"]["version"], 1);
    assert_eq!(task["title"], "Ship the release");
    assert_eq!(task["status"], "OPEN");
    assert_eq!(task["creatorId"], "u-admin");
    assert_eq!(task["priority"], "HIGH");
    assert_eq!(task["labels"], json!(["q4", "release"]));

    let steps: Vec<(&str, Value, &str, i64)> = vec![
        (
            "assignTask(id: $id, assigneeId: \"u-7\")",
            json!({}),
            "OPEN",
            2,
        ),
        ("startTask(id: $id)", json!({}), "IN_PROGRESS", 3),
        (
            "completeTask(id: $id, result: \"done\")",
            json!({}),
            "COMPLETED",
            4,
        ),
        ("reopenTask(id: $id)", json!({}), "OPEN", 5),
        (
            "cancelTask(id: $id, reason: \"dup\")",
            json!({}),
            "CANCELLED",
            6,
        ),
        ("reopenTask(id: $id)", json!({}), "OPEN", 7),
        ("startTask(id: $id)", json!({}), "IN_PROGRESS", 8),
        (
            "failTask(id: $id, error: \"blocked\")",
            json!({}),
            "FAILED",
            9,
        ),
        ("reopenTask(id: $id)", json!({}), "OPEN", 10),
        ("unassignTask(id: $id)", json!({}), "OPEN", 11),
    ];
    for (call, _, status, version) in steps {
        let body = mutate(
            &app,
            &format!(
                "mutation($id: ID!) {{ step: {call} {{ version task {{ status version }} }} }}"
            ),
            json!({"id": id}),
        )
        .await;
        assert_eq!(body["data"]["step"]["version"], version, "{call}: {body}");
        assert_eq!(
            body["data"]["step"]["task"]["status"], status,
            "{call}: {body}"
        );
    }

    let updated = app
        .data(
            "mutation($id: ID!) { updateTask(id: $id, input: {title: \"Ship it\", dueAt: \"2027-01-01T00:00:00Z\", labels: [\"x\"]}) { version task { title dueAt labels } } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    assert_eq!(updated["updateTask"]["version"], 12);
    assert_eq!(updated["updateTask"]["task"]["title"], "Ship it");
    assert_eq!(updated["updateTask"]["task"]["labels"], json!(["x"]));
    assert!(updated["updateTask"]["task"]["dueAt"]
        .as_str()
        .unwrap()
        .starts_with("2027-01-01T00:00:00"));

    // An update that changes nothing writes nothing and keeps the version.
    let before = app.event_count().await.unwrap();
    let same = app
        .data(
            "mutation($id: ID!) { updateTask(id: $id, input: {title: \"Ship it\"}) { version } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    assert_eq!(same["updateTask"]["version"], 12);
    assert_eq!(app.event_count().await.unwrap(), before);

    // Clearing the due date with an explicit null.
    let cleared = app
        .data(
            "mutation($id: ID!) { updateTask(id: $id, input: {dueAt: null}) { version task { dueAt } } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    assert_eq!(cleared["updateTask"]["task"]["dueAt"], Value::Null);
    assert_eq!(cleared["updateTask"]["version"], 13);

    let listed = app
        .data(
            "{ tasks(filter: {teamId: \"team-a\"}) { totalCount edges { node { id status version } } } }",
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(listed["tasks"]["totalCount"], 1);
    assert_eq!(listed["tasks"]["edges"][0]["node"]["version"], 13);
}

#[tokio::test]
async fn bad_input_answers_with_its_code_and_writes_nothing() {
    let app = TestApp::spawn().await.unwrap();
    let id = app.create_task("Existing", "team-a").await.unwrap();
    app.wait_for_version(&id, 1).await.unwrap();
    let events_before = app.event_count().await.unwrap();
    let create = CREATE_TASK;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            create,
            json!({"i": {"title": "   ", "teamId": "team-a"}}),
            "VALIDATION_FAILED",
        ),
        (
            create,
            json!({"i": {"title": "x".repeat(201), "teamId": "team-a"}}),
            "VALIDATION_FAILED",
        ),
        (
            create,
            json!({"i": {"title": "ok", "teamId": "team a!"}}),
            "VALIDATION_FAILED",
        ),
        (
            create,
            json!({"i": {"title": "ok", "teamId": "team-a", "priority": "SOMEDAY"}}),
            "VALIDATION_FAILED",
        ),
        (
            create,
            json!({"i": {"title": "ok", "teamId": "team-a", "labels": ["", "b"]}}),
            "VALIDATION_FAILED",
        ),
        (
            "mutation { startTask(id: \"not-a-uuid\") { version } }",
            json!({}),
            "VALIDATION_FAILED",
        ),
        (
            "mutation { startTask(id: \"01900000-0000-7000-8000-000000000001\") { version } }",
            json!({}),
            "NOT_FOUND",
        ),
        (
            "mutation($id: ID!) { completeTask(id: $id) { version } }",
            json!({"id": id}),
            "INVALID_TRANSITION",
        ),
        (
            "mutation($id: ID!) { startTask(id: $id, expectedVersion: 7) { version } }",
            json!({"id": id}),
            "CONCURRENCY_CONFLICT",
        ),
        (
            "mutation($id: ID!) { startTask(id: $id, expectedVersion: -1) { version } }",
            json!({"id": id}),
            "VALIDATION_FAILED",
        ),
        (
            "{ tasks(first: 1000) { totalCount } }",
            json!({}),
            "LIMIT_EXCEEDED",
        ),
        (
            "{ tasks(after: \"garbage\") { totalCount } }",
            json!({}),
            "VALIDATION_FAILED",
        ),
        ("{ nope }", json!({}), "VALIDATION_FAILED"),
    ];
    for (query, vars, code) in cases {
        let body = app.graphql(query, vars.clone()).await.unwrap();
        assert_eq!(error_code(&body), Some(code), "{query} {vars}: {body}");
    }
    // The field at fault is named.
    let body = app
        .graphql(create, json!({"i": {"title": " ", "teamId": "team-a"}}))
        .await
        .unwrap();
    assert_eq!(body["errors"][0]["extensions"]["field"], "title");
    let conflict = app
        .graphql(
            "mutation($id: ID!) { startTask(id: $id, expectedVersion: 7) { version } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    assert_eq!(conflict["errors"][0]["extensions"]["expectedVersion"], 7);
    assert_eq!(conflict["errors"][0]["extensions"]["actualVersion"], 1);

    assert_eq!(app.event_count().await.unwrap(), events_before);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(outbox, events_before);
}

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthenticated() {
    let app = TestApp::spawn().await.unwrap();
    let query = "mutation { createTask(input: {title: \"t\", teamId: \"team-a\"}) { id } }";
    for token in [
        None,
        Some("garbage"),
        Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."),
    ] {
        let body = app.graphql_as(token, query, json!({})).await.unwrap();
        assert_eq!(
            error_code(&body),
            Some("UNAUTHENTICATED"),
            "{token:?}: {body}"
        );
    }
    assert_eq!(app.event_count().await.unwrap(), 0);
}

#[tokio::test]
async fn the_actor_and_correlation_id_are_recorded_with_every_event() {
    let app = TestApp::spawn().await.unwrap();
    let token = app.token("u-42", &["member"], &["team-a"]);
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&token)
        .header("X-Correlation-Id", "corr-123")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .json(&json!({"query": "mutation { createTask(input: {title: \"t\", teamId: \"team-a\"}) { id } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-correlation-id"], "corr-123");
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"].is_null(), "{body}");
    let metadata: Value = sqlx::query_scalar("SELECT metadata FROM events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(metadata["actor_id"], app.stored_as("u-42").await.as_str());
    assert_eq!(metadata["correlation_id"], "corr-123");
    // The events continue the caller's trace; their parent is the request's own span.
    let traceparent = metadata["traceparent"].as_str().unwrap();
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
            && traceparent.ends_with("-01"),
        "{traceparent}"
    );
    assert!(!traceparent.contains("00f067aa0ba902b7"), "{traceparent}");

    // Without a header, a correlation id is generated and returned.
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&token)
        .json(&json!({"query": "{ tasks { totalCount } }"}))
        .send()
        .await
        .unwrap();
    assert!(!response.headers()["x-correlation-id"].is_empty());
}

#[tokio::test]
async fn a_retried_mutation_with_the_same_idempotency_key_answers_the_first_result() {
    let app = TestApp::spawn().await.unwrap();
    let create = "mutation($i: CreateTaskInput!) { createTask(input: $i) { id version replayed } }";
    let input = json!({"i": {"title": "Once", "teamId": "team-a", "idempotencyKey": "k-1"}});
    let first = app.data(create, input.clone()).await.unwrap();
    let second = app.data(create, input).await.unwrap();
    assert_eq!(first["createTask"]["id"], second["createTask"]["id"]);
    assert_eq!(first["createTask"]["replayed"], false);
    assert_eq!(second["createTask"]["replayed"], true);
    assert_eq!(app.event_count().await.unwrap(), 1);

    let id = first["createTask"]["id"].as_str().unwrap();
    let assign = "mutation($id: ID!, $to: String!) { assignTask(id: $id, assigneeId: $to, idempotencyKey: \"k-2\") { version replayed } }";
    let a = app
        .data(assign, json!({"id": id, "to": "u-1"}))
        .await
        .unwrap();
    let b = app
        .data(assign, json!({"id": id, "to": "u-1"}))
        .await
        .unwrap();
    assert_eq!(a["assignTask"]["version"], 2);
    assert_eq!(b["assignTask"]["version"], 2);
    assert_eq!(b["assignTask"]["replayed"], true);
    assert_eq!(app.event_count().await.unwrap(), 2);

    // The same key for a different command is refused rather than silently answered.
    let body = app
        .graphql(
            "mutation($id: ID!) { startTask(id: $id, idempotencyKey: \"k-2\") { version } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&body), Some("IDEMPOTENCY_KEY_REUSED"), "{body}");
    assert_eq!(app.event_count().await.unwrap(), 2);

    // The same key for the same command with other arguments is refused too, naming the
    // first request, and writes nothing.
    let other = json!({"i": {"title": "DIFFERENT", "teamId": "team-a", "idempotencyKey": "k-1"}});
    let body = app.graphql(create, other).await.unwrap();
    assert_eq!(error_code(&body), Some("IDEMPOTENCY_KEY_REUSED"), "{body}");
    let extensions = &body["errors"][0]["extensions"];
    assert_eq!(extensions["firstCommand"], "createTask", "{body}");
    assert_eq!(
        extensions["firstAggregateId"], first["createTask"]["id"],
        "{body}"
    );
    assert_eq!(app.event_count().await.unwrap(), 2);
    let other_assignee = app
        .graphql(assign, json!({"id": id, "to": "u-2"}))
        .await
        .unwrap();
    assert_eq!(
        error_code(&other_assignee),
        Some("IDEMPOTENCY_KEY_REUSED"),
        "{other_assignee}"
    );
    assert_eq!(app.event_count().await.unwrap(), 2);
}

#[tokio::test]
async fn concurrent_commands_on_one_task_never_lose_an_update() {
    let app = TestApp::spawn().await.unwrap();
    let id = app.create_task("Contended", "team-a").await.unwrap();
    let mut handles = Vec::new();
    for i in 0..16 {
        let token = app.admin_token.clone();
        let url = format!("{}/graphql", app.base_url);
        let id = id.clone();
        handles.push(tokio::spawn(async move {
            let body: Value = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&json!({
                    "query": "mutation($id: ID!, $l: String!) { updateTask(id: $id, input: {description: $l}) { version } }",
                    "variables": {"id": id, "l": format!("writer {i}")}
                }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body
        }));
    }
    let mut versions = Vec::new();
    for handle in handles {
        let body = handle.await.unwrap();
        assert!(body["errors"].is_null(), "{body}");
        versions.push(body["data"]["updateTask"]["version"].as_i64().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..=17).collect::<Vec<_>>(),
        "every writer got its own version"
    );
    let sequences: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(&id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(sequences, (1..=17).collect::<Vec<_>>());
    let task = app.wait_for_version(&id, 17).await.unwrap();
    assert_eq!(task["version"], 17);

    // With expectedVersion pinned, exactly one of two racers wins.
    let race = "mutation($id: ID!, $d: String!) { updateTask(id: $id, input: {description: $d}, expectedVersion: 17) { version } }";
    let (a, b) = tokio::join!(
        app.graphql(race, json!({"id": id, "d": "a"})),
        app.graphql(race, json!({"id": id, "d": "b"}))
    );
    let codes: Vec<Option<String>> = [a.unwrap(), b.unwrap()]
        .iter()
        .map(|body| error_code(body).map(str::to_owned))
        .collect();
    assert_eq!(
        codes
            .iter()
            .filter(|c| c.as_deref() == Some("CONCURRENCY_CONFLICT"))
            .count(),
        1,
        "{codes:?}"
    );
    assert_eq!(codes.iter().filter(|c| c.is_none()).count(), 1);
}

#[tokio::test]
async fn snapshots_are_taken_and_loading_from_them_keeps_the_state() {
    let app = TestApp::spawn().await.unwrap(); // snapshot every 5 events in tests
    let id = app.create_task("Snap", "team-a").await.unwrap();
    for i in 0..11 {
        app.data(
            "mutation($id: ID!, $d: String!) { updateTask(id: $id, input: {description: $d}) { version } }",
            json!({"id": id, "d": format!("d{i}")}),
        )
        .await
        .unwrap();
    }
    let snapshot: i64 =
        sqlx::query_scalar("SELECT max(last_sequence) FROM snapshots WHERE aggregate_id = $1")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(snapshot, 10);
    let body = app
        .data(
            "mutation($id: ID!) { startTask(id: $id, expectedVersion: 12) { version task { status description } } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    assert_eq!(body["startTask"]["version"], 13);
    assert_eq!(body["startTask"]["task"]["description"], "d10");
}

#[tokio::test]
async fn keyset_pages_stay_correct_while_tasks_are_added_and_filters_combine() {
    let app = TestApp::spawn().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        let labels = if i % 2 == 0 {
            json!(["even"])
        } else {
            json!(["odd"])
        };
        let data = app
            .data(
                CREATE_TASK,
                json!({"i": {"title": format!("Task {i} alpha"), "teamId": if i < 5 { "team-a" } else { "team-b" },
                             "labels": labels, "priority": if i == 3 { "URGENT" } else { "NORMAL" },
                             "assigneeId": if i == 1 { Some("u-9") } else { None }}}),
            )
            .await
            .unwrap();
        ids.push(data["createTask"]["id"].as_str().unwrap().to_owned());
    }
    app.wait_for_version(ids.last().unwrap(), 1).await.unwrap();
    eventually(Duration::from_secs(15), || async {
        let data = app.data("{ tasks { totalCount } }", json!({})).await?;
        Ok((data["tasks"]["totalCount"] == 7).then_some(()))
    })
    .await
    .unwrap();

    let page = "query($after: String) { tasks(first: 3, after: $after) { totalCount edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }";
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = app.data(page, json!({"after": after})).await.unwrap();
        for edge in data["tasks"]["edges"].as_array().unwrap() {
            seen.push(edge["node"]["id"].as_str().unwrap().to_owned());
        }
        // A task added while paging must not shift or repeat what the cursor already passed.
        if seen.len() == 3 {
            app.create_task("Inserted while paging", "team-a")
                .await
                .unwrap();
        }
        if data["tasks"]["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = data["tasks"]["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(&seen[..7], &ids[..], "creation order, no gaps or repeats");
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());

    let count = |filter: &'static str| {
        let app = &app;
        async move {
            let data = app
                .data(
                    &format!(
                        "{{ tasks(filter: {filter}) {{ totalCount edges {{ node {{ id }} }} }} }}"
                    ),
                    json!({}),
                )
                .await
                .unwrap();
            data["tasks"]["totalCount"].as_i64().unwrap()
        }
    };
    assert_eq!(count("{teamId: \"team-b\"}").await, 2);
    assert_eq!(count("{label: \"even\"}").await, 4);
    assert_eq!(count("{label: \"even\", teamId: \"team-a\"}").await, 3);
    assert_eq!(count("{priority: URGENT}").await, 1);
    assert_eq!(count("{assigneeId: \"u-9\"}").await, 1);
    assert_eq!(count("{status: OPEN, text: \"ALPHA\"}").await, 7);
    assert_eq!(count("{text: \"task 3\"}").await, 1);
    assert_eq!(count("{text: \"%\"}").await, 0);
    assert_eq!(count("{status: COMPLETED}").await, 0);
}

/// A page reads only the columns its rows show (docs/performance.md); whichever fields it asks
/// for, through aliases and fragments, each shows what `task(id)` shows.
#[tokio::test]
async fn a_page_shows_each_field_as_the_task_itself_does_whatever_else_it_asks_for() {
    let app = TestApp::spawn().await.unwrap();
    let created = app
        .data(
            "mutation($i: CreateTaskInput!) { createTask(input: $i) { id } }",
            json!({"i": {"title": "Every field", "teamId": "team-a", "priority": "URGENT",
                         "description": "long enough to matter", "labels": ["q4", "ops"],
                         "dueAt": "2030-01-02T03:04:05Z", "watchers": ["u-8", "u-9"]}}),
        )
        .await
        .unwrap();
    let id = created["createTask"]["id"].as_str().unwrap().to_owned();
    for change in [
        "assignTask(id: $id, assigneeId: \"u-7\")",
        "startTask(id: $id)",
        "completeTask(id: $id, result: \"shipped\")",
    ] {
        mutate(
            &app,
            &format!("mutation($id: ID!) {{ {change} {{ version }} }}"),
            json!({"id": id}),
        )
        .await;
    }
    app.wait_for_version(&id, 4).await.unwrap();

    let introspected = app
        .data(
            "{ __type(name: \"Task\") { fields { name type { kind ofType { kind ofType { kind ofType { kind } } } } } } }",
            json!({}),
        )
        .await
        .unwrap();
    let shown: Vec<&str> = introspected["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|field| !field.to_string().contains("\"OBJECT\""))
        .map(|field| field["name"].as_str().unwrap())
        .collect();
    assert!(
        shown.len() >= 15 && !shown.contains(&"history"),
        "{shown:?}"
    );

    let page_and_task = |selection: &str, fragments: &str| {
        format!(
            "query($id: ID!) {{ page: tasks(filter: {{teamId: \"team-a\"}}) {{ edges {{ node {{ {selection} }} }} }} \
             task(id: $id) {{ {selection} }} }} {fragments}"
        )
    };
    for field in &shown {
        let answer = app
            .data(&page_and_task(field, ""), json!({"id": id}))
            .await
            .unwrap();
        assert_eq!(
            answer["page"]["edges"][0]["node"], answer["task"],
            "{field} on a page that asks for it alone"
        );
    }
    let through_fragments = app
        .data(
            &page_and_task(
                "... on Task { d: description } ...Seen",
                "fragment Seen on Task { who: watchers labels dueAt result assigneeId }",
            ),
            json!({"id": id}),
        )
        .await
        .unwrap();
    let node = &through_fragments["page"]["edges"][0]["node"];
    assert_eq!(node, &through_fragments["task"]);
    assert_eq!(
        (&node["d"], &node["result"], &node["assigneeId"]),
        (
            &json!("long enough to matter"),
            &json!("shipped"),
            &json!("u-7")
        )
    );
    assert!(node["who"]
        .as_array()
        .is_some_and(|who| who.contains(&json!("u-9"))));
}
