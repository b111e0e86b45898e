//! Request limits and hostile input: every limit answers with its code, no error leaks
//! internals, and the service keeps serving.

use std::time::Duration;

use chronicle_tests::CREATE_TASK;
use chronicle_tests::{error_code, run_chronicle_output, ws, TestApp, TEST_SECRET};
use serde_json::{json, Value};

async fn post_raw(
    app: &TestApp,
    token: Option<&str>,
    body: String,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/graphql", app.base_url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

#[tokio::test]
async fn depth_complexity_aliases_and_page_size_are_limited() {
    let app = TestApp::spawn().await.unwrap();
    // A reasonable nesting (tasks with their history) passes.
    let nested = "{ tasks { edges { node { history { edges { node { payload } } } } } } }";
    let body = app.graphql(nested, json!({})).await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");

    // Complexity: a page of 100 tasks each with a page of 100 history events.
    let fan_out = "{ tasks(first: 100) { edges { node { id history(first: 100) { edges { node { eventId payload hash } } } } } } }";
    let body = app.graphql(fan_out, json!({})).await.unwrap();
    assert_eq!(error_code(&body), Some("LIMIT_EXCEEDED"), "{body}");
    assert_eq!(body["data"], Value::Null, "nothing ran: {body}");

    // Aliases: 31 copies of one cheap field.
    let aliased: String = (0..31)
        .map(|n| format!("a{n}: tasks(first: 1) {{ totalCount }} "))
        .collect();
    let fine: String = (0..5)
        .map(|n| format!("a{n}: tasks(first: 1) {{ totalCount }} "))
        .collect();
    // Twice each: a document parsed before is answered from memory, the same way.
    for _ in 0..2 {
        let body = app
            .graphql(&format!("{{ {aliased} }}"), json!({}))
            .await
            .unwrap();
        assert_eq!(error_code(&body), Some("LIMIT_EXCEEDED"), "{body}");
        let body = app
            .graphql(&format!("{{ {fine} }}"), json!({}))
            .await
            .unwrap();
        assert!(body.get("errors").is_none(), "{body}");
    }

    // Directives: more than four on one field.
    let body = app
        .graphql(
            "{ tasks @skip(if: false) @skip(if: false) @skip(if: false) @skip(if: false) @skip(if: false) { totalCount } }",
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&body), Some("LIMIT_EXCEEDED"), "{body}");

    // Nesting beyond what the parser accepts is a limit too, not a malformed document.
    let deep = format!("{{ {}x{} }}", "a { ".repeat(40), " }".repeat(40));
    let body = app.graphql(&deep, json!({})).await.unwrap();
    assert_eq!(error_code(&body), Some("LIMIT_EXCEEDED"), "{body}");
    let malformed = app.graphql("{ tasks { ", json!({})).await.unwrap();
    assert_eq!(
        error_code(&malformed),
        Some("VALIDATION_FAILED"),
        "{malformed}"
    );

    // Page size.
    let body = app
        .graphql("{ tasks(first: 101) { totalCount } }", json!({}))
        .await
        .unwrap();
    assert_eq!(error_code(&body), Some("LIMIT_EXCEEDED"), "{body}");
}

#[tokio::test]
async fn a_document_nested_past_the_depth_limit_is_refused() {
    let app = TestApp::spawn().await.unwrap();
    // 18 levels of introspection nesting: past the limit of 15.
    let query = "{ tasks { edges { node { history { edges { node { __typename } } } } } } }";
    let wrapped = format!(
        "{{ a: __type(name: \"Task\") {{ fields {{ type {{ {} name {} }} }} }} }}",
        "ofType { ".repeat(14),
        "} ".repeat(14)
    );
    let body = app.graphql(&wrapped, json!({})).await.unwrap();
    assert_eq!(error_code(&body), Some("LIMIT_EXCEEDED"), "{body}");
    let body = app.graphql(query, json!({})).await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");
}

#[tokio::test]
async fn bodies_and_batches_are_bounded() {
    let app = TestApp::spawn().await.unwrap();
    let token = app.admin_token.clone();
    let huge =
        json!({"query": format!("{{ tasks {{ totalCount }} }} # {}", "x".repeat(1_100_000))});
    let (status, body, _) = post_raw(&app, Some(&token), huge.to_string()).await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&body), Some("LIMIT_EXCEEDED"), "{body}");

    let one = json!({"query": "{ tasks { totalCount } }"});
    let (status, body, _) = post_raw(&app, Some(&token), json!([one, one]).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(body[1]["data"]["tasks"]["totalCount"], 0);

    let eleven: Vec<Value> = (0..11).map(|_| one.clone()).collect();
    let (status, body, _) = post_raw(&app, Some(&token), Value::from(eleven).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(error_code(&body), Some("LIMIT_EXCEEDED"), "{body}");

    for malformed in ["{", "42", "{\"query\": 5}", "\u{0}"] {
        let (status, body, _) = post_raw(&app, Some(&token), malformed.to_owned()).await;
        assert_eq!(status, 400, "{malformed:?}");
        assert_eq!(
            error_code(&body),
            Some("VALIDATION_FAILED"),
            "{malformed:?}: {body}"
        );
    }
}

#[tokio::test]
async fn requests_are_rate_limited_per_subject_with_retry_after() {
    let app = TestApp::spawn_with_api(|api| {
        api.limits.rate_per_second = 1;
        api.limits.rate_burst = 3;
    })
    .await
    .unwrap();
    let busy = app.token("u-busy", &["member"], &["team-a"]);
    let calm = app.token("u-calm", &["member"], &["team-a"]);
    let query = json!({"query": "{ tasks { totalCount } }"}).to_string();
    for _ in 0..3 {
        let (status, body, _) = post_raw(&app, Some(&busy), query.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body, headers) = post_raw(&app, Some(&busy), query.clone()).await;
    assert_eq!(status, 429);
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let (status, _, _) = post_raw(&app, Some(&calm), query.clone()).await;
    assert_eq!(status, 200, "another subject is not affected");
    // A batch costs one per operation.
    let batch =
        json!([{"query": "{ tasks { totalCount } }"}, {"query": "{ tasks { totalCount } }"}]);
    let (status, _, _) = post_raw(&app, Some(&calm), batch.to_string()).await;
    assert_eq!(status, 200);
    let (status, _, _) = post_raw(&app, Some(&calm), batch.to_string()).await;
    assert_eq!(status, 429);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, _, _) = post_raw(&app, Some(&busy), query).await;
    assert_eq!(status, 200, "the bucket refills");
}

#[tokio::test]
async fn slow_requests_stop_at_the_timeout_and_introspection_can_be_turned_off() {
    let app = TestApp::spawn_with_api(|api| {
        api.limits.request_timeout = Duration::from_millis(300);
        api.limits.introspection = false;
    })
    .await
    .unwrap();
    // minVersion waits (up to 15 s in tests) for a version the task never reaches.
    let id = app.create_task("waits", "team-a").await.unwrap();
    let started = std::time::Instant::now();
    let body = app
        .graphql(
            "query($id: ID!) { task(id: $id, minVersion: 99) { id } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&body), Some("LIMIT_EXCEEDED"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let body = app
        .graphql(
            "{ __schema { queryType { name } } __type(name: \"Task\") { name } }",
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(body["data"]["__schema"], Value::Null, "hidden: {body}");
    assert_eq!(body["data"]["__type"], Value::Null, "hidden: {body}");
    let ready = reqwest::get(format!("{}/health/ready", app.base_url))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    let open = TestApp::spawn().await.unwrap();
    let body = open
        .graphql("{ __schema { queryType { name } } }", json!({}))
        .await
        .unwrap();
    assert_eq!(
        body["data"]["__schema"]["queryType"]["name"], "Query",
        "{body}"
    );
}

#[tokio::test]
async fn internal_errors_carry_a_request_id_and_no_internals() {
    let app = TestApp::spawn().await.unwrap();
    sqlx::query("ALTER TABLE reports RENAME TO reports_hidden")
        .execute(&app.db)
        .await
        .unwrap();
    let body = app
        .graphql("{ reports { totalCount } }", json!({}))
        .await
        .unwrap();
    sqlx::query("ALTER TABLE reports_hidden RENAME TO reports")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(error_code(&body), Some("INTERNAL"), "{body}");
    let request_id = body["errors"][0]["extensions"]["requestId"]
        .as_str()
        .unwrap();
    assert!(!request_id.is_empty());
    let text = body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_lowercase();
    for leak in ["relation", "sql", "reports", "postgres", "/", "select"] {
        assert!(!text.contains(leak), "{leak:?} leaked: {body}");
    }
    let body = app
        .graphql("{ reports { totalCount } }", json!({}))
        .await
        .unwrap();
    assert_eq!(
        body["data"]["reports"]["totalCount"], 0,
        "serving again: {body}"
    );
}

#[tokio::test]
async fn inputs_are_validated_at_the_edge_naming_the_field() {
    let app = TestApp::spawn().await.unwrap();
    let cases = [
        (
            "{ tasks(filter: {teamId: \"team a\"}) { totalCount } }",
            "filter.teamId",
        ),
        (
            "{ tasks(filter: {assigneeId: \"u/1\"}) { totalCount } }",
            "filter.assigneeId",
        ),
        (
            "{ reports(filter: {teamId: \"\"}) { totalCount } }",
            "filter.teamId",
        ),
        ("{ task(id: \"not-a-uuid\") { id } }", "id"),
        ("{ tasks(after: \"garbage\") { totalCount } }", "after"),
    ];
    for (query, field) in cases {
        let body = app.graphql(query, json!({})).await.unwrap();
        assert_eq!(
            error_code(&body),
            Some("VALIDATION_FAILED"),
            "{query}: {body}"
        );
        assert_eq!(
            body["errors"][0]["extensions"]["field"], field,
            "{query}: {body}"
        );
    }
    let long_text = "x".repeat(201);
    let body = app
        .graphql(
            "query($t: String) { tasks(filter: {text: $t}) { totalCount } }",
            json!({"t": long_text}),
        )
        .await
        .unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["field"], "filter.text",
        "{body}"
    );
    let mutation = CREATE_TASK;
    let inputs = [
        (json!({"title": "", "teamId": "team-a"}), "title"),
        (
            json!({"title": "x".repeat(201), "teamId": "team-a"}),
            "title",
        ),
        (json!({"title": "t", "teamId": "team/a"}), "teamId"),
        (
            json!({"title": "t", "teamId": "team-a", "labels": [" "]}),
            "labels[0]",
        ),
        (
            json!({"title": "t", "teamId": "team-a", "assigneeId": "x".repeat(65)}),
            "assigneeId",
        ),
    ];
    for (input, field) in inputs {
        let body = app.graphql(mutation, json!({"i": input})).await.unwrap();
        assert_eq!(error_code(&body), Some("VALIDATION_FAILED"), "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
    }
    let body = app
        .graphql(
            CREATE_TASK,
            json!({"i": {"title": "t", "teamId": "team-a", "priority": "EXTREME"}}),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&body), Some("VALIDATION_FAILED"), "{body}");
}

#[tokio::test]
async fn secrets_stay_out_of_logs_help_and_errors() {
    let secret = "do-not-print-this-secret-0123456789abcdef";
    // A short secret refuses to start, naming the variable and not the value.
    let output = tokio::process::Command::new(chronicle_tests::chronicle_binary().unwrap())
        .args(["serve"])
        .env("DATABASE_URL", "postgres://app:db-pass-42@127.0.0.1:1/none")
        .env("CHRONICLE_JWT_SECRET", "short-secret")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CHRONICLE_JWT_SECRET"), "{stderr}");
    assert!(!stderr.contains("short-secret"), "{stderr}");

    // A service that cannot reach its database logs why, without the password or the secret.
    let output = tokio::process::Command::new(chronicle_tests::chronicle_binary().unwrap())
        .args(["serve"])
        .env(
            "DATABASE_URL",
            "postgres://app:db-pass-42@127.0.0.1:1/none?connect_timeout=1",
        )
        .env("CHRONICLE_JWT_SECRET", secret)
        .env("KAFKA_SASL_PASSWORD", "kafka-pass-42")
        .env("RUST_LOG", "trace")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for leaked in [secret, "db-pass-42", "kafka-pass-42"] {
        assert!(!all.contains(leaked), "{leaked} leaked: {all}");
    }

    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["token", "--help"],
    ] {
        let output = run_chronicle_output("postgres://app:db-pass-42@127.0.0.1:1/none", &args)
            .await
            .unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}");
        assert!(
            !help.contains(TEST_SECRET) && !help.contains("db-pass-42"),
            "{help}"
        );
    }
}

#[tokio::test]
async fn a_connection_holds_a_bounded_number_of_subscriptions() {
    let app = TestApp::spawn_with_api(|api| api.limits.max_subscriptions = 2)
        .await
        .unwrap();
    let status = "subscription { projectionStatus(name: \"tasks\") { state } }";
    let mut socket = ws::connect(&app, &app.admin_token).await;
    for id in ["1", "2"] {
        ws::subscribe(&mut socket, id, status, json!({})).await;
        let first = ws::next_json(&mut socket).await.unwrap();
        assert_eq!(first["id"], id, "{first}");
        assert_eq!(
            first["payload"]["data"]["projectionStatus"]["state"],
            "LIVE"
        );
    }
    ws::subscribe(&mut socket, "3", status, json!({})).await;
    let refused = ws::next_json(&mut socket).await.unwrap();
    assert_eq!(refused["id"], "3");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED",
        "{refused}"
    );
    // Stopping one gives its slot back.
    ws::stop(&mut socket, "1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws::subscribe(&mut socket, "4", status, json!({})).await;
    let mut accepted = false;
    while let Some(message) = ws::next_json_within(&mut socket, Duration::from_secs(5)).await {
        if message["id"] == "4" {
            accepted = message["payload"]["data"]["projectionStatus"]["state"] == "LIVE";
            break;
        }
    }
    assert!(accepted, "a freed slot can be used again");
}

/// The introspection query GraphiQL sends (graphql-js 16's `getIntrospectionQuery()`): the
/// limits must leave the service's own GraphiQL page working.
const GRAPHIQL_INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}
"#;

#[tokio::test]
async fn graphiql_can_introspect_the_schema_within_the_limits() {
    let app = TestApp::spawn().await.unwrap();
    let body = app
        .graphql(GRAPHIQL_INTROSPECTION, json!({}))
        .await
        .unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    let types = body["data"]["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "Task"));
}
