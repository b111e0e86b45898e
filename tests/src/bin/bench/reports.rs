//! `reports`: requestReport → COMPLETED for a team of 1,000 tasks, one at a time and 300 at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chronicle_tests::TestApp;
use serde_json::{json, Value};

use crate::load::{graphql, request, summary, CONNECTIONS, CREATE};

const REQUEST_REPORT: &str =
    "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }";
const REPORT_TEAM: &str = "team-report";
const REPORT_TEAM_SIZE: usize = 1_000;

async fn post(
    client: &reqwest::Client,
    app: &TestApp,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let url = format!("{}/graphql", app.base_url);
    graphql(client, &url, &app.admin_token, request(query, variables)).await
}

/// A team of 1,000 tasks: every third completed, every third in progress, the rest open,
/// spread over 20 assignees; returns once the read model holds them all.
async fn seed_report_team(app: &TestApp) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut next = 0usize;
    while next < REPORT_TEAM_SIZE {
        let chunk: Vec<usize> = (next..(next + CONNECTIONS).min(REPORT_TEAM_SIZE)).collect();
        next += chunk.len();
        let jobs = chunk.into_iter().map(|n| {
            let client = client.clone();
            async move {
                let data = post(&client, app, CREATE, json!({"i": {"title": format!("report task {n}"), "teamId": REPORT_TEAM}})).await?;
                let id = data["createTask"]["id"].as_str().context("no id")?.to_owned();
                if n % 3 == 0 {
                    return anyhow::Ok(());
                }
                let assignee = format!("u-{}", n % 20);
                post(&client, app, "mutation($id: ID!, $a: ID!) { assignTask(id: $id, assigneeId: $a) { version } }", json!({"id": id, "a": assignee})).await?;
                post(&client, app, "mutation($id: ID!) { startTask(id: $id) { version } }", json!({"id": id})).await?;
                if n % 3 == 2 {
                    post(&client, app, "mutation($id: ID!) { completeTask(id: $id, result: \"done\") { version } }", json!({"id": id})).await?;
                }
                anyhow::Ok(())
            }
        });
        futures::future::try_join_all(jobs).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (settled, completed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE (status = 'OPEN' AND version = 1)
                                        OR (status = 'IN_PROGRESS' AND version = 3)
                                        OR status = 'COMPLETED'),
                    count(*) FILTER (WHERE status = 'COMPLETED')
             FROM tasks WHERE team_id = $1",
        )
        .bind(REPORT_TEAM)
        .fetch_one(&app.db)
        .await?;
        let expected_completed = (0..REPORT_TEAM_SIZE).filter(|n| n % 3 == 2).count();
        if settled as usize == REPORT_TEAM_SIZE && completed as usize == expected_completed {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the team's tasks were not projected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn request_report(client: &reqwest::Client, app: &TestApp) -> anyhow::Result<String> {
    let now = chrono::Utc::now();
    let data = post(
        client,
        app,
        REQUEST_REPORT,
        json!({"i": {"kind": "TEAM_SUMMARY", "teamId": REPORT_TEAM,
                     "from": (now - chrono::Duration::days(1)).to_rfc3339(),
                     "to": (now + chrono::Duration::days(1)).to_rfc3339()}}),
    )
    .await?;
    data["requestReport"]["id"]
        .as_str()
        .map(str::to_owned)
        .context("no report id")
}

/// When `ReportCompleted` was committed for each of `ids` (polled every 2 ms).
async fn completed_events(
    app: &TestApp,
    ids: &[String],
) -> anyhow::Result<HashMap<String, Instant>> {
    let mut done = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while done.len() < ids.len() {
        anyhow::ensure!(Instant::now() < deadline, "reports did not complete");
        let pending: Vec<&String> = ids.iter().filter(|id| !done.contains_key(*id)).collect();
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT aggregate_id FROM events WHERE aggregate_type = 'Report'
               AND event_type = 'ReportCompleted' AND aggregate_id = ANY($1)",
        )
        .bind(&pending)
        .fetch_all(&app.db)
        .await?;
        let now = Instant::now();
        for id in found {
            done.insert(id, now);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(done)
}

/// One report at a time: request → ReportCompleted event, and → `report(id)` COMPLETED.
async fn report_latency(app: &TestApp, samples: usize) -> anyhow::Result<(Value, Value)> {
    let client = reqwest::Client::new();
    let (mut to_event, mut to_read) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let started = Instant::now();
        let id = request_report(&client, app).await?;
        let ids = [id.clone()];
        let (completed, visible) = tokio::join!(completed_events(app, &ids), async {
            loop {
                let data = post(
                    &client,
                    app,
                    "query($id: ID!) { report(id: $id) { status } }",
                    json!({"id": id}),
                )
                .await?;
                match data["report"]["status"].as_str() {
                    Some("COMPLETED") => return anyhow::Ok(Instant::now()),
                    Some("FAILED") => anyhow::bail!("report failed: {data}"),
                    _ => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
        });
        let completed = completed?[&id];
        to_event.push((completed - started).as_secs_f64() * 1000.0);
        to_read.push((visible? - started).as_secs_f64() * 1000.0);
    }
    Ok((summary(to_event), summary(to_read)))
}

/// `count` requests at once; reports completed per second, from the first request to the
/// last completion.
async fn report_throughput(app: &TestApp, count: usize) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(CONNECTIONS) {
        let requests = chunk.iter().map(|_| request_report(&client, app));
        ids.extend(futures::future::try_join_all(requests).await?);
    }
    let submitted = started.elapsed().as_secs_f64();
    let done = completed_events(app, &ids).await?;
    let last = done.values().max().copied().unwrap_or(started);
    let seconds = (last - started).as_secs_f64();
    Ok(json!({
        "reports": count,
        "team_tasks": REPORT_TEAM_SIZE,
        "submitted_in_seconds": submitted,
        "seconds": seconds,
        "per_second": count as f64 / seconds,
    }))
}

pub async fn reports_phase() -> anyhow::Result<Value> {
    let app = TestApp::spawn_with(|settings| {
        settings.snapshot_every = 100;
        settings.database_max_connections = 16;
    })
    .await?;
    seed_report_team(&app).await?;
    let (to_event, to_read) = report_latency(&app, 50).await?;
    let throughput = report_throughput(&app, 300).await?;
    Ok(json!({
        "report_latency_to_completed_event": to_event,
        "report_latency_to_completed_read": to_read,
        "report_throughput": throughput,
    }))
}
