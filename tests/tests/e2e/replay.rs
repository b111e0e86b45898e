//! Replay: rebuilt read models equal the live ones, readers are served throughout, events
//! written during a rebuild appear after it, a killed rebuild leaves the live tables intact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronicle::app;
use chronicle_tests::CREATE_TASK;
use chronicle_tests::{
    eventually, run_chronicle_output, seed, test_api_settings, ChronicleProcess, TestApp,
};
use serde_json::{json, Value};
use sqlx::PgPool;

async fn run(app: &TestApp, mutation: &str, vars: Value) -> Value {
    app.data(mutation, vars).await.unwrap()
}

/// Every row of a read-model table, in id order, as JSON (every column compared).
async fn rows(db: &PgPool, table: &str) -> Vec<Value> {
    sqlx::query_scalar(&format!("SELECT to_jsonb(t) FROM {table} t ORDER BY id"))
        .fetch_all(db)
        .await
        .unwrap()
}

/// The index names of a table, sorted.
async fn indexes(db: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE tablename = $1 ORDER BY 1")
        .bind(table)
        .fetch_all(db)
        .await
        .unwrap()
}

async fn projection_row(db: &PgPool, name: &str) -> (String, i32, i64, Option<i64>) {
    sqlx::query_as(
        "SELECT state, version, position, last_rebuild_events FROM projections WHERE name = $1",
    )
    .bind(name)
    .fetch_one(db)
    .await
    .unwrap()
}

const PRIORITIES: [&str; 4] = ["LOW", "NORMAL", "HIGH", "URGENT"];

/// A workload touching every event type, with text that COPY must escape.
async fn mixed_workload(app: &TestApp) -> Vec<(String, i64)> {
    let create = CREATE_TASK;
    let mut tasks = Vec::new();
    for n in 0..12 {
        let data = run(
            app,
            create,
            json!({"i": {
                "title": format!("task {n} \\ with \"quotes\""),
                "description": format!("line one\n\tline two {n}\r\nüñí €"),
                "teamId": if n % 2 == 0 { "team-a" } else { "team-b" },
                "assigneeId": if n % 3 == 0 { Value::from("u-7") } else { Value::Null },
                "priority": PRIORITIES[n % 4],
                "dueAt": if n % 4 == 0 { Value::from("2027-03-01T12:30:00.123456Z") } else { Value::Null },
                "labels": ["a,b", "quote\"d", "back\\slash", "{brace}", "with space"],
            }}),
        )
        .await;
        tasks.push(data["createTask"]["id"].as_str().unwrap().to_owned());
    }
    let step = |call: &str| format!("mutation($id: ID!) {{ s: {call} {{ version }} }}");
    for (n, id) in tasks.iter().enumerate() {
        let vars = json!({"id": id});
        match n % 6 {
            0 => {
                run(app, &step("startTask(id: $id)"), vars.clone()).await;
                run(
                    app,
                    &step("completeTask(id: $id, result: \"done\\twell\")"),
                    vars,
                )
                .await;
            }
            1 => {
                run(
                    app,
                    &step("assignTask(id: $id, assigneeId: \"u-9\")"),
                    vars.clone(),
                )
                .await;
                run(app, &step("startTask(id: $id)"), vars.clone()).await;
                run(
                    app,
                    &step("failTask(id: $id, error: \"boom\\nstack\")"),
                    vars,
                )
                .await;
            }
            2 => {
                run(
                    app,
                    &step("cancelTask(id: $id, reason: \"dup\")"),
                    vars.clone(),
                )
                .await;
                run(app, &step("reopenTask(id: $id)"), vars).await;
            }
            3 => {
                run(
                    app,
                    &step(
                        "updateTask(id: $id, input: {title: \"renamed\", dueAt: null, labels: []})",
                    ),
                    vars.clone(),
                )
                .await;
                run(app, &step("unassignTask(id: $id)"), vars).await;
            }
            _ => {}
        }
    }
    let mut versions = Vec::new();
    for id in tasks {
        let version: i64 = sqlx::query_scalar(
            "SELECT max(sequence) FROM events WHERE aggregate_type = 'Task' AND aggregate_id = $1",
        )
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
        versions.push((id, version));
    }
    versions
}

async fn wait_for_tasks(app: &TestApp, versions: &[(String, i64)]) {
    for (id, version) in versions {
        let task = app.wait_for_version(id, *version).await.unwrap();
        assert_eq!(task["version"], *version, "{task}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_all_rebuilds_models_equal_to_the_live_ones_and_projection_resumes() {
    let app = TestApp::spawn().await.unwrap();
    let versions = mixed_workload(&app).await;
    let (from, to) = (
        (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
        (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
    );
    let report = run(
        &app,
        "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }",
        json!({"i": {"kind": "TEAM_SUMMARY", "teamId": "team-a", "from": from, "to": to}}),
    )
    .await["requestReport"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for_tasks(&app, &versions).await;
    eventually(Duration::from_secs(60), || async {
        let data = app
            .data(
                "query($id: ID!) { report(id: $id) { status } }",
                json!({"id": report}),
            )
            .await?;
        Ok((data["report"]["status"] == "COMPLETED").then_some(()))
    })
    .await
    .unwrap();
    let live_tasks = rows(&app.db, "tasks").await;
    let live_reports = rows(&app.db, "reports").await;
    let live_indexes = indexes(&app.db, "tasks").await;
    assert_eq!(live_tasks.len(), 12);

    let output = run_chronicle_output(app.settings.database_url.expose(), &["replay", "all"])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events = app.event_count().await.unwrap();
    assert!(
        stdout.contains(&format!("rebuilt tasks, reports: {events} events, 13 rows")),
        "{stdout}"
    );
    assert!(stdout.contains("events/s"), "{stdout}");

    assert_eq!(
        rows(&app.db, "tasks").await,
        live_tasks,
        "rebuilt tasks differ"
    );
    assert_eq!(
        rows(&app.db, "reports").await,
        live_reports,
        "rebuilt reports differ"
    );
    assert_eq!(indexes(&app.db, "tasks").await, live_indexes);
    let (state, version, position, last_events) = projection_row(&app.db, "tasks").await;
    let task_head: i64 =
        sqlx::query_scalar("SELECT max(position) FROM events WHERE aggregate_type = 'Task'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(state, "LIVE");
    assert_eq!(version, 2, "the task projection's code version");
    assert_eq!(
        position, task_head,
        "the newest task event the rows reflect"
    );
    let task_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Task'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        last_events,
        Some(task_events),
        "the task projection's own events"
    );
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_\\_rebuild%'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(leftovers, 0, "shadow tables or indexes left behind");

    // The live projection carries on over the rebuilt table.
    let id = app
        .create_task("after the rebuild", "team-a")
        .await
        .unwrap();
    assert_eq!(
        app.wait_for_version(&id, 1).await.unwrap()["title"],
        "after the rebuild"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_are_served_during_a_rebuild_and_writes_made_meanwhile_appear_after() {
    let app = TestApp::spawn().await.unwrap();
    let first = app.create_task("before", "team-a").await.unwrap();
    app.wait_for_version(&first, 1).await.unwrap();
    // A store large enough that the rebuild takes a while.
    seed::seed_tasks(&app.db, 20_000).await.unwrap();

    let served = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let reader = tokio::spawn({
        let (served, stop) = (served.clone(), stop.clone());
        let (base, token) = (app.base_url.clone(), app.admin_token.clone());
        let first = first.clone();
        async move {
            let client = reqwest::Client::new();
            let mut errors = Vec::new();
            while !stop.is_cancelled() {
                let body: Value = client
                    .post(format!("{base}/graphql"))
                    .bearer_auth(&token)
                    .json(&json!({"query": "query($id: ID!) { task(id: $id) { title } tasks(first: 20, filter: {teamId: \"team-a\"}) { totalCount edges { node { id title } } } }", "variables": {"id": first}}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if !body["errors"].is_null() || body["data"]["task"]["title"] != "before" {
                    errors.push(body);
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
            errors
        }
    });

    let rebuilder = app::rebuilder(&app.db, app::personal_data_for_reading(&app.db));
    let rebuild = tokio::spawn(async move { rebuilder.rebuild("tasks", &|_| {}).await });
    // Written while the projection is paused: they reach the table only after the swap.
    eventually(Duration::from_secs(30), || async {
        Ok((projection_row(&app.db, "tasks").await.0 == "REBUILDING").then_some(()))
    })
    .await
    .unwrap();
    let during = app.create_task("during", "team-b").await.unwrap();
    let summary = rebuild.await.unwrap().unwrap();
    // The seeded and the first task's events, and the one written during the rebuild if the
    // snapshot was opened after it committed.
    assert!((100_001..=100_002).contains(&summary.events), "{summary:?}");

    assert_eq!(
        app.wait_for_version(&during, 1).await.unwrap()["title"],
        "during"
    );
    stop.cancel();
    let errors = reader.await.unwrap();
    assert!(errors.is_empty(), "readers saw errors: {errors:?}");
    assert!(served.load(Ordering::Relaxed) > 10, "the reader hardly ran");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        count, 20_002,
        "seeded, first and the task written during the rebuild"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rebuild_leaves_live_tables_intact_and_the_next_one_succeeds() {
    let app = TestApp::spawn().await.unwrap();
    let versions = mixed_workload(&app).await;
    wait_for_tasks(&app, &versions).await;
    let live = rows(&app.db, "tasks").await;
    let table_oid: i64 = sqlx::query_scalar("SELECT 'tasks'::regclass::oid::bigint")
        .fetch_one(&app.db)
        .await
        .unwrap();

    // A reader holding the live table keeps the swap waiting; the rebuild is killed there,
    // after it built its shadow and before anything was swapped.
    let mut reader = app.db.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM tasks")
        .execute(&mut *reader)
        .await
        .unwrap();
    let replay = ChronicleProcess::run(&app.settings, &["replay", "tasks"]).unwrap();
    eventually(Duration::from_secs(60), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
             AND query LIKE 'DROP TABLE tasks%'",
        )
        .fetch_one(&app.db)
        .await?;
        Ok((waiting > 0).then_some(()))
    })
    .await
    .expect("the rebuild never reached its swap");
    // Another rebuild is refused while this one runs.
    let refused = run_chronicle_output(app.settings.database_url.expose(), &["replay", "tasks"])
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("already being rebuilt"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    replay.kill().await.unwrap();
    reader.rollback().await.unwrap();

    assert_eq!(rows(&app.db, "tasks").await, live, "the live rows changed");
    let oid_after: i64 = sqlx::query_scalar("SELECT 'tasks'::regclass::oid::bigint")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(oid_after, table_oid, "the live table was replaced");
    // The live projection takes the projection back from the dead rebuild.
    let id = app.create_task("after the crash", "team-a").await.unwrap();
    assert_eq!(
        app.wait_for_version(&id, 1).await.unwrap()["title"],
        "after the crash"
    );
    let (state, _, _, _) = projection_row(&app.db, "tasks").await;
    assert_eq!(state, "LIVE");
    let error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM projections WHERE name = 'tasks'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(error.unwrap_or_default().contains("rebuild abandoned"));

    // A new rebuild starts over (dropping the dead one's shadow) and matches the live rows.
    let live = rows(&app.db, "tasks").await;
    let output = run_chronicle_output(app.settings.database_url.expose(), &["replay", "tasks"])
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(rows(&app.db, "tasks").await, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_projection_lists_the_known_ones_and_exits_2() {
    let url = chronicle_tests::create_database().await.unwrap();
    let output = run_chronicle_output(&url, &["replay", "taks"])
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown projection \"taks\"; known: tasks, reports, all"),
        "{stderr}"
    );
}

const PROJECTIONS: &str = "{ projections { name version state position lag
    rebuild { eventsDone eventsTotal fraction startedAt }
    lastRebuild { events seconds finishedAt } lastError } }";
const REBUILD: &str = "mutation($n: String!) { rebuildProjection(name: $n) { name state } }";

/// Asserts the response failed with `code` and a message containing `saying`.
fn assert_refused(body: &Value, code: &str, saying: &str) {
    assert_eq!(chronicle_tests::error_code(body), Some(code), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(saying),
        "{message:?} does not say {saying:?}"
    );
}

fn projection<'a>(data: &'a Value, name: &str) -> &'a Value {
    data["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no projection {name} in {data}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_see_projections_and_rebuild_them_from_graphql() {
    let app = TestApp::spawn().await.unwrap();
    let member = app.token("u-1", &["member"], &["team-a"]);
    for query in [PROJECTIONS, REBUILD] {
        let body = app
            .graphql_as(Some(&member), query, json!({"n": "tasks"}))
            .await
            .unwrap();
        assert_refused(&body, "FORBIDDEN", "admin role");
    }
    let body = app.graphql(REBUILD, json!({"n": "nope"})).await.unwrap();
    assert_refused(&body, "VALIDATION_FAILED", "known: tasks, reports, all");

    let id = app.create_task("live", "team-a").await.unwrap();
    app.wait_for_version(&id, 1).await.unwrap();
    let data = app.data(PROJECTIONS, json!({})).await.unwrap();
    let tasks = projection(&data, "tasks");
    assert_eq!(
        (tasks["state"].as_str(), tasks["version"].as_i64()),
        (Some("LIVE"), Some(2))
    );
    assert_eq!(tasks["lag"], 0, "{tasks}");
    assert!(tasks["position"].as_i64().unwrap() > 0, "{tasks}");

    seed::seed_tasks(&app.db, 20_000).await.unwrap();
    let data = app.data(PROJECTIONS, json!({})).await.unwrap();
    assert_eq!(projection(&data, "tasks")["lag"], 100_000, "{data}");

    let started = app.data(REBUILD, json!({"n": "tasks"})).await.unwrap();
    assert_eq!(
        started["rebuildProjection"],
        json!([{"name": "tasks", "state": "REBUILDING"}])
    );
    let again = app.graphql(REBUILD, json!({"n": "tasks"})).await.unwrap();
    assert_refused(&again, "INVALID_TRANSITION", "already being rebuilt");

    let done = eventually(Duration::from_secs(120), || async {
        let data = app.data(PROJECTIONS, json!({})).await?;
        let tasks = projection(&data, "tasks").clone();
        Ok((tasks["state"] == "LIVE").then_some(tasks))
    })
    .await
    .unwrap();
    assert_eq!(done["lastRebuild"]["events"], 100_001, "{done}");
    assert_eq!(done["lag"], 0, "{done}");
    assert!(
        done["rebuild"].is_null() && done["lastError"].is_null(),
        "{done}"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 20_001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_rebuilds_a_projection_built_by_older_code_unless_told_not_to() {
    let mut app = TestApp::spawn().await.unwrap();
    let id = app.create_task("the truth", "team-a").await.unwrap();
    app.wait_for_version(&id, 1).await.unwrap();
    app.stop().await;
    // As an older release would have left it: rows of projection code version 0 (here made
    // visibly wrong, so the rebuild shows).
    sqlx::query("UPDATE projections SET version = 0 WHERE name = 'tasks'")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("UPDATE tasks SET title = 'old code wrote this'")
        .execute(&app.db)
        .await
        .unwrap();
    let projections_only = app::Parts {
        api: false,
        relay: false,
        projections: true,
        worker: false,
    };

    let mut settings = app.settings.clone();
    settings.rebuild_outdated = false;
    let service = app::start(&settings, &test_api_settings(), projections_only)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    service.stop().await;
    let (_, version, _, _) = projection_row(&app.db, "tasks").await;
    assert_eq!(
        version, 0,
        "rebuilt although CHRONICLE_REBUILD_OUTDATED=false"
    );

    let service = app::start(&app.settings, &test_api_settings(), projections_only)
        .await
        .unwrap();
    eventually(Duration::from_secs(60), || async {
        Ok((projection_row(&app.db, "tasks").await.1 == 2).then_some(()))
    })
    .await
    .expect("the outdated projection was not rebuilt");
    service.stop().await;
    let title: String = sqlx::query_scalar("SELECT title FROM tasks")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(title, "the truth");
    let (state, _, _, last_events) = projection_row(&app.db, "tasks").await;
    assert_eq!((state.as_str(), last_events), ("LIVE", Some(1)));
    // The other projection was current and left alone.
    assert_eq!(projection_row(&app.db, "reports").await.3, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_holding_both_task_created_versions_loads_travels_and_replays() {
    let app = TestApp::spawn().await.unwrap();
    // Three tasks as release 1 wrote them (TaskCreated 1.0, no watchers) ...
    seed::seed_legacy_tasks(&app.db, 3).await.unwrap();
    let legacy: Vec<(String, String)> = sqlx::query_as(
        "SELECT aggregate_id, payload->'TaskCreated'->>'creatorId' FROM events
         WHERE event_type = 'TaskCreated' AND event_version = '1.0' ORDER BY position",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(legacy.len(), 3);
    // ... and one as today's release writes it (2.0).
    let data = run(
        &app,
        CREATE_TASK,
        json!({"i": {"title": "current", "teamId": "team-a", "watchers": ["u-5", "u-2", "u-5"]}}),
    )
    .await;
    let current = data["createTask"]["id"].as_str().unwrap().to_owned();
    let version: String = sqlx::query_scalar(
        "SELECT event_version FROM events WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(&current)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(version, "2.0");

    // Replay reads both versions.
    let output = run_chronicle_output(app.settings.database_url.expose(), &["replay", "tasks"])
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let watchers = |id: String| {
        let app = &app;
        async move {
            app.data(
                "query($id: ID!) { task(id: $id) { watchers version } }",
                json!({"id": id}),
            )
            .await
            .unwrap()["task"]
                .clone()
        }
    };
    assert_eq!(
        watchers(current.clone()).await["watchers"],
        json!(["u-2", "u-5"])
    );
    for (id, creator) in &legacy {
        assert_eq!(
            watchers(id.clone()).await["watchers"],
            json!([creator]),
            "{id}"
        );
    }

    // The aggregate loads from the upcast stream and takes commands; the live projection
    // continues the rebuilt row.
    let (id, creator) = &legacy[0];
    let reopened = run(
        &app,
        "mutation($id: ID!) { reopenTask(id: $id) { version } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(reopened["reopenTask"]["version"], 6);
    let task = app.wait_for_version(id, 6).await.unwrap();
    assert_eq!(task["status"], "OPEN");
    assert_eq!(watchers(id.clone()).await["watchers"], json!([creator]));

    // Time travel folds the 1.0 event too.
    let past = app
        .data(
            "query($id: ID!) { task(id: $id, atVersion: 1) { version watchers status } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    assert_eq!(
        past["task"],
        json!({"version": 1, "watchers": [creator], "status": "OPEN"})
    );

    // The stored 1.0 events were never rewritten: their chains still verify.
    let (code, out) =
        chronicle_tests::run_chronicle(app.settings.database_url.expose(), &["audit", "verify"])
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_projection_holds_its_events_until_resumed() {
    let app = TestApp::spawn().await.unwrap();
    let pause = "mutation { pauseProjection(name: \"tasks\") { name state } }";
    let resume = "mutation { resumeProjection(name: \"tasks\") { name state } }";
    let member = app.token("u-1", &["member"], &["team-a"]);
    let body = app
        .graphql_as(Some(&member), pause, json!({}))
        .await
        .unwrap();
    assert_refused(&body, "FORBIDDEN", "admin role");
    let body = app.graphql(resume, json!({})).await.unwrap();
    assert_refused(
        &body,
        "INVALID_TRANSITION",
        "only a PAUSED projection can be resumed",
    );

    let paused = app.data(pause, json!({})).await.unwrap();
    assert_eq!(
        paused["pauseProjection"],
        json!({"name": "tasks", "state": "PAUSED"})
    );
    let id = app.create_task("held", "team-a").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let read = app
        .data(
            "query($id: ID!) { task(id: $id) { title } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    assert_eq!(read["task"], Value::Null, "written while paused");
    let data = app.data(PROJECTIONS, json!({})).await.unwrap();
    assert_eq!(projection(&data, "tasks")["lag"], 1, "{data}");

    let resumed = app.data(resume, json!({})).await.unwrap();
    assert_eq!(resumed["resumeProjection"]["state"], "LIVE");
    assert_eq!(app.wait_for_version(&id, 1).await.unwrap()["title"], "held");
}
