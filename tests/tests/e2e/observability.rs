//! What operators see at `/metrics`: command and GraphQL latency histograms by name and outcome,
//! the outbox backlog and projection lag.

use chronicle::app::Parts;
use chronicle_tests::TestApp;
use serde_json::json;

/// The value of the first sample of `name` whose labels include every `label="value"` pair.
fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .find(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_show_command_and_operation_latency_backlog_and_lag() {
    // No relay and no projections: what is committed stays in the outbox and unprojected.
    let app = TestApp::spawn_parts(
        Parts {
            api: true,
            relay: false,
            projections: false,
            worker: false,
        },
        |_| {},
    )
    .await
    .unwrap();
    for n in 0..3 {
        app.create_task(&format!("task {n}"), "team-a")
            .await
            .unwrap();
    }
    let missing = app
        .graphql(
            "mutation($id: ID!) { startTask(id: $id) { version } }",
            json!({"id": uuid::Uuid::now_v7().to_string()}),
        )
        .await
        .unwrap();
    assert!(missing.get("errors").is_some());
    app.data("{ tasks { totalCount } }", json!({}))
        .await
        .unwrap();

    let exposition = reqwest::get(format!("{}/metrics", app.base_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |name: &str, labels: &[(&str, &str)]| {
        sample(&exposition, name, labels)
            .unwrap_or_else(|| panic!("{name} {labels:?} in:\n{exposition}"))
    };
    assert_eq!(
        count(
            "chronicle_command_duration_seconds_count",
            &[("command", "createTask"), ("outcome", "ok")]
        ),
        3.0
    );
    assert_eq!(
        count(
            "chronicle_command_duration_seconds_count",
            &[("command", "startTask"), ("outcome", "not_found")]
        ),
        1.0
    );
    assert!(
        count(
            "chronicle_command_duration_seconds_bucket",
            &[("command", "createTask"), ("outcome", "ok"), ("le", "10")]
        ) >= 3.0,
        "histogram buckets are exposed"
    );
    assert_eq!(
        count(
            "chronicle_graphql_operation_duration_seconds_count",
            &[
                ("type", "Mutation"),
                ("field", "createTask"),
                ("outcome", "ok")
            ]
        ),
        3.0
    );
    assert_eq!(
        count(
            "chronicle_graphql_operation_duration_seconds_count",
            &[
                ("type", "Mutation"),
                ("field", "startTask"),
                ("outcome", "error")
            ]
        ),
        1.0
    );
    assert_eq!(
        count(
            "chronicle_graphql_operation_duration_seconds_count",
            &[("type", "Query"), ("field", "tasks"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(count("chronicle_outbox_backlog_events", &[]), 3.0);
    assert!(count("chronicle_outbox_oldest_unpublished_seconds", &[]) > 0.0);
    assert_eq!(
        count(
            "chronicle_projection_lag_events",
            &[("projection", "tasks")]
        ),
        3.0
    );
}

#[tokio::test]
async fn metrics_show_what_the_relay_published_and_how_late() {
    let app = TestApp::spawn().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            app.create_task(&format!("task {n}"), "team-a")
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        app.wait_for_version(id, 1).await.unwrap();
    }
    let url = format!("{}/metrics", app.base_url);
    let exposition = chronicle_tests::eventually(std::time::Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            let text = reqwest::get(&url).await?.text().await?;
            let published = sample(&text, "chronicle_relay_published_total", &[]).unwrap_or(0.0);
            let backlog = sample(&text, "chronicle_outbox_backlog_events", &[]).unwrap_or(-1.0);
            Ok((published >= 3.0 && backlog == 0.0).then_some(text))
        }
    })
    .await
    .unwrap();
    assert!(
        sample(
            &exposition,
            "chronicle_relay_publish_lag_seconds_count",
            &[]
        )
        .unwrap()
            >= 3.0
    );
    assert_eq!(
        sample(
            &exposition,
            "chronicle_projection_lag_events",
            &[("projection", "tasks")]
        ),
        Some(0.0),
        "{exposition}"
    );
    assert_eq!(
        sample(
            &exposition,
            "chronicle_projection_lag_seconds",
            &[("projection", "tasks")]
        ),
        Some(0.0),
        "{exposition}"
    );

    // The projections group's lag, from librdkafka's statistics (every 5 s): caught up.
    let group = chronicle_application::topics::Topics::new(app.settings.kafka.topic_prefix.clone())
        .group(chronicle::app::PROJECTIONS_GROUP);
    let task_topic = app.topic("Task");
    let lag = chronicle_tests::eventually(std::time::Duration::from_secs(20), || {
        let (url, group, topic) = (url.clone(), group.clone(), task_topic.clone());
        async move {
            let text = reqwest::get(&url).await?.text().await?;
            let labels = [("group", group.as_str()), ("topic", topic.as_str())];
            Ok(sample(&text, "chronicle_consumer_lag_messages", &labels))
        }
    })
    .await
    .unwrap();
    assert_eq!(lag, 0.0);
}

/// Alerts take `increase()` of the failure counters, which sees nothing in a series that
/// starts with its first failure: every counter of a known label set is exported at 0 from
/// the start, before anything failed.
#[tokio::test]
async fn failure_counters_are_exported_at_zero_before_the_first_failure() {
    let app = TestApp::spawn().await.unwrap();
    let topics =
        chronicle_application::topics::Topics::new(app.settings.kafka.topic_prefix.clone());
    let url = format!("{}/metrics", app.base_url);
    let exposition = chronicle_tests::eventually(std::time::Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            let text = reqwest::get(&url).await?.text().await?;
            Ok(sample(&text, "chronicle_relay_publish_failures_total", &[]).map(|_| text))
        }
    })
    .await
    .unwrap();
    assert_eq!(
        sample(&exposition, "chronicle_relay_publish_failures_total", &[]),
        Some(0.0),
        "{exposition}"
    );
    assert_eq!(
        sample(&exposition, "chronicle_relay_published_total", &[]),
        Some(0.0),
        "{exposition}"
    );
    for (group, topic) in [
        (chronicle::app::PROJECTIONS_GROUP, topics.task_events()),
        (chronicle::app::PROJECTIONS_GROUP, topics.report_events()),
        (chronicle::app::REPORT_WORKER_GROUP, topics.report_events()),
    ] {
        let group = topics.group(group);
        let labels = [("group", group.as_str()), ("topic", topic.as_str())];
        assert_eq!(
            sample(&exposition, "chronicle_dead_letters_total", &labels),
            Some(0.0),
            "{group} on {topic}: {exposition}"
        );
    }
    assert!(
        !exposition.contains(".redrive\""),
        "redrive topics count under their event topic: {exposition}"
    );
}

async fn admin_execute(sql: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&chronicle_tests::admin_url())
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut admin).await.unwrap();
}

async fn ready(app: &TestApp) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("{}/health/ready", app.base_url))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn readiness_reports_database_broker_and_relay_and_recovers_after_an_outage() {
    let app = TestApp::spawn().await.unwrap();
    let (status, body) = ready(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"], true);
    assert_eq!(body["broker"]["reachable"], true, "{body}");
    assert!(body["broker"]["brokers"].as_u64().unwrap() >= 1);
    assert!(body["relay"].is_object(), "{body}");

    // The database goes away: no new connections, existing ones cut.
    let name = app
        .settings
        .database_url
        .expose()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    admin_execute(&format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
    ))
    .await;
    admin_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let down = chronicle_tests::eventually(std::time::Duration::from_secs(15), || async {
        let (status, body) = ready(&app).await;
        Ok((status == 503).then_some(body))
    })
    .await
    .unwrap();
    assert_eq!(down["database"], false, "{down}");
    assert_eq!(down["status"], "unavailable");

    // It comes back: the service recovers by itself.
    admin_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true")).await;
    chronicle_tests::eventually(std::time::Duration::from_secs(15), || async {
        Ok((ready(&app).await.0 == 200).then_some(()))
    })
    .await
    .unwrap();
    let id = app.create_task("after the outage", "team-a").await.unwrap();
    app.wait_for_version(&id, 1).await.unwrap();
}

/// A process started without the API (`--only relay,projections,worker`, as a deployment that
/// scales the API apart would run it) still answers health and metrics on its listener:
/// readiness names the parts it runs, and `/metrics` shows its relay's and consumers' work.
#[tokio::test]
async fn a_process_without_the_api_answers_health_and_metrics_of_its_parts() {
    let app = TestApp::spawn_parts(
        Parts {
            api: true,
            relay: false,
            projections: false,
            worker: false,
        },
        |_| {},
    )
    .await
    .unwrap();
    let background =
        chronicle_tests::ChronicleProcess::serve(&app.settings, "relay,projections,worker")
            .unwrap();
    let ready = background
        .wait_ready(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        ready["parts"],
        json!({"relay": "running", "projections": "running", "worker": "running"}),
        "{ready}"
    );
    assert_eq!(ready["database"], true, "{ready}");
    let base = background.http_url().unwrap().to_owned();
    let live = reqwest::get(format!("{base}/health/live")).await.unwrap();
    assert_eq!(live.status().as_u16(), 200);
    let graphql = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        graphql.status().as_u16(),
        404,
        "GraphQL only where the API runs"
    );

    // The API process commits; the background process publishes and projects it.
    let id = app
        .create_task("published elsewhere", "team-a")
        .await
        .unwrap();
    app.wait_for_version(&id, 1).await.unwrap();
    let group = chronicle_application::topics::Topics::new(app.settings.kafka.topic_prefix.clone())
        .group(chronicle::app::PROJECTIONS_GROUP);
    let metrics_url = format!("{base}/metrics");
    let exposition = chronicle_tests::eventually(std::time::Duration::from_secs(20), || {
        let (url, group) = (metrics_url.clone(), group.clone());
        async move {
            let text = reqwest::get(&url).await?.text().await?;
            let lag = sample(
                &text,
                "chronicle_consumer_lag_messages",
                &[("group", &group)],
            );
            Ok(lag.is_some().then_some(text))
        }
    })
    .await
    .unwrap();
    assert!(
        sample(&exposition, "chronicle_relay_published_total", &[]).unwrap_or(0.0) >= 1.0,
        "{exposition}"
    );
    assert_eq!(
        sample(&exposition, "chronicle_relay_leader", &[]),
        Some(1.0),
        "{exposition}"
    );
    assert!(
        sample(
            &exposition,
            "chronicle_consumer_assigned_partitions",
            &[("group", &group)]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{exposition}"
    );
}
