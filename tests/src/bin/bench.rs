//! `chronicle-bench`: measures the command path and publication latency against the real
//! services, next to the physical limit taken in the same run, and prints JSON.
//!
//! - `create_task`: createTask mutations through GraphQL at 32 concurrent connections
//!   (throughput, p50, p99), with the relay and projection running.
//! - `pgbench_insert`: what Postgres alone reaches inserting one event-shaped row per
//!   transaction with 32 clients (`pgbench`), the physical limit of the command path.
//! - `commit_to_kafka`: at a paced 1,000 commands/s, the time from a mutation's answer (its
//!   commit) to the event being readable by an independent Kafka consumer (p50, p99).
//! - `projection_lag`: the time from a mutation's answer to its read-model row (p50, p99).
//! - `report_latency`: for a team of 1,000 tasks, the time from `requestReport`'s answer to
//!   the report's `ReportCompleted` event (the worker's work) and to `report(id)` answering
//!   COMPLETED (what a user sees), one request at a time (p50, p99).
//! - `report_throughput`: 300 requests sent at once; reports completed per second.
//!
//! - `audit` (`BENCH_AUDIT_TASKS` tasks of 5 events, default 200,000 = 1,000,000 events,
//!   seeded straight into the store): `auditTrail` latency through GraphQL by aggregate, by
//!   correlation id and by actor (p50, p99, first page of 100), the plan of each filter, and
//!   `audit verify`'s events/s next to Postgres alone reading the table in position order.
//!
//! - `outage` (needs `TANSU_BIN`: it starts and freezes a broker of its own): the broker stopped
//!   (SIGSTOP) for at least 30 s while `BENCH_OUTAGE_EVENTS` (100,000) createTask commands are
//!   acknowledged; then the outbox drain rate after SIGCONT, next to a bare producer sending the
//!   same records and the relay's database work alone.
//!
//! `BENCH_PHASES` (default `commands,reports`; add `audit`, `replay`, `outage`) selects the
//! phases.
//!
//! Run with `cargo run --release -p chronicle-tests --bin chronicle-bench`; environment as for
//! the tests (`CHRONICLE_ADMIN_URL`, `KAFKA_BROKERS`). `BENCH_SECONDS` sets each phase's length.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chronicle_tests::{brokers, TestApp};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use tokio::sync::Mutex;

const CONNECTIONS: usize = 32;
const CREATE: &str = "mutation($i: CreateTaskInput!) { createTask(input: $i) { id version } }";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn summary(mut millis: Vec<f64>) -> Value {
    millis.sort_by(f64::total_cmp);
    json!({
        "count": millis.len(),
        "p50_ms": percentile(&millis, 0.50),
        "p99_ms": percentile(&millis, 0.99),
        "max_ms": millis.last().copied().unwrap_or(f64::NAN),
    })
}

async fn create(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    n: usize,
) -> anyhow::Result<String> {
    let body: Value = client
        .post(url)
        .bearer_auth(token)
        .json(&json!({"query": CREATE, "variables": {"i": {"title": format!("bench {n}"), "teamId": "team-bench", "labels": ["bench"]}}}))
        .send()
        .await?
        .json()
        .await?;
    body["data"]["createTask"]["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("createTask failed: {body}"))
}

/// Closed-loop load: `CONNECTIONS` clients each sending createTask back to back.
async fn throughput(app: &TestApp, seconds: u64) -> anyhow::Result<Value> {
    let url = format!("{}/graphql", app.base_url);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONNECTIONS {
        let url = url.clone();
        let token = app.admin_token.clone();
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut n = worker * 1_000_000;
            while Instant::now() < deadline {
                let t = Instant::now();
                create(&client, &url, &token, n).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                n += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = all.len();
    let mut result = summary(all);
    result["per_second"] = json!(count as f64 / elapsed);
    result["connections"] = json!(CONNECTIONS);
    Ok(result)
}

/// Open-loop load at `rate` per second; measures commit→Kafka and commit→read model, both
/// observed while the load runs.
async fn latency(app: &TestApp, rate: u64, seconds: u64) -> anyhow::Result<(Value, Value, f64)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers().as_str())
        .set(
            "group.id",
            format!("bench-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "10")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[app.topic("Task").as_str()])?;
    // Wait for the assignment before producing, so "latest" does not skip the first events.
    let assigned = Instant::now();
    while consumer.assignment()?.count() == 0 && assigned.elapsed() < Duration::from_secs(20) {
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(message) = consumer.recv().await {
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                seen.lock().await.insert(key, Instant::now());
            }
        })
    };

    let url = format!("{}/graphql", app.base_url);
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();

    // Projection lag is observed while the load runs: a poller asks the read model for the
    // acknowledged rows it has not seen yet, every 2 ms, and stamps each when it appears.
    let projected: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let load_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (acked, projected, load_done, db) = (
            acked.clone(),
            projected.clone(),
            load_done.clone(),
            app.db.clone(),
        );
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(seconds + 60);
            while Instant::now() < deadline {
                let pending: Vec<uuid::Uuid> = {
                    let projected = projected.lock().await;
                    acked
                        .lock()
                        .await
                        .iter()
                        .filter(|(id, _)| !projected.contains_key(id))
                        .filter_map(|(id, _)| id.parse().ok())
                        .collect()
                };
                let finished = load_done.load(std::sync::atomic::Ordering::Relaxed);
                if pending.is_empty() && finished {
                    break;
                }
                if !pending.is_empty() {
                    let found: Vec<uuid::Uuid> =
                        sqlx::query_scalar("SELECT id FROM tasks WHERE id = ANY($1)")
                            .bind(&pending)
                            .fetch_all(&db)
                            .await?;
                    let now = Instant::now();
                    let mut projected = projected.lock().await;
                    for id in found {
                        projected.insert(id.to_string(), now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(())
        })
    };

    let started = Instant::now();
    let mut requests = Vec::with_capacity(total);
    let client = reqwest::Client::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        ticker.tick().await;
        let (client, url, token, acked) = (
            client.clone(),
            url.clone(),
            app.admin_token.clone(),
            acked.clone(),
        );
        requests.push(tokio::spawn(async move {
            let id = create(&client, &url, &token, n).await?;
            acked.lock().await.push((id, Instant::now()));
            anyhow::Ok(())
        }));
    }
    for request in requests {
        request.await??;
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    load_done.store(true, std::sync::atomic::Ordering::Relaxed);
    poller.await??;
    let acked = acked.lock().await.clone();
    let projected = projected.lock().await.clone();
    let wait = Instant::now() + Duration::from_secs(30);
    while seen.lock().await.len() < acked.len() && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader.abort();
    let seen = seen.lock().await;
    let kafka: Vec<f64> = acked
        .iter()
        .filter_map(|(id, at)| {
            seen.get(id)
                .map(|t| t.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    let projection: Vec<f64> = acked
        .iter()
        .filter_map(|(id, at)| {
            projected
                .get(id)
                .map(|t| t.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    let mut kafka = summary(kafka);
    kafka["missing"] = json!(acked.len() - seen.len().min(acked.len()));
    Ok((kafka, summary(projection), achieved))
}

/// pgbench: one event-shaped row per transaction, 32 clients.
fn pgbench(database_url: &str, seconds: u64) -> anyhow::Result<Value> {
    let bin = std::env::var("PGBENCH").ok().or_else(|| {
        let found = std::process::Command::new("sh")
            .args([
                "-c",
                "command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -n 1",
            ])
            .output()
            .ok()?;
        let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
        (!path.is_empty()).then_some(path)
    });
    let bin = bin.context("pgbench not found (set PGBENCH)")?;
    let script = std::env::temp_dir().join(format!("chronicle-bench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id, hash, previous_hash) \
         VALUES ('Task', gen_random_uuid()::text, 1, 'TaskCreated', '1.0', \
         '{\"TaskCreated\":{\"title\":\"bench\",\"teamId\":\"team-bench\",\"labels\":[\"bench\"]}}', \
         '{\"actor_id\":\"u-admin\",\"correlation_id\":\"c\",\"causation_id\":\"c\"}', gen_random_uuid(), \
         'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', '');\n",
    )?;
    let output = std::process::Command::new(bin)
        .args([
            "-n",
            "-c",
            &CONNECTIONS.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(database_url)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "pgbench output: {text} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let latency = text
        .lines()
        .find(|l| l.starts_with("latency average"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<f64>().ok());
    Ok(json!({"per_second": tps, "latency_avg_ms": latency, "clients": CONNECTIONS}))
}

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
    let body: Value = client
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&app.admin_token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await?
        .json()
        .await?;
    if !body["errors"].is_null() {
        anyhow::bail!("GraphQL errors: {body}");
    }
    Ok(body["data"].clone())
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

async fn reports_phase() -> anyhow::Result<Value> {
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

const AUDIT_TRAIL: &str = "query($f: AuditFilter!) { auditTrail(filter: $f, first: 100) { edges { node { eventId position eventType actorId correlationId payload hash } } } }";

/// `auditTrail` latency for each filter value in `values`, through GraphQL.
async fn trail_latency(app: &TestApp, token: &str, filters: Vec<Value>) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    let mut millis = Vec::with_capacity(filters.len());
    let mut rows = 0usize;
    for filter in filters {
        let started = Instant::now();
        let body: Value = client
            .post(format!("{}/graphql", app.base_url))
            .bearer_auth(token)
            .json(&json!({"query": AUDIT_TRAIL, "variables": {"f": filter}}))
            .send()
            .await?
            .json()
            .await?;
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(body["errors"].is_null(), "auditTrail failed: {body}");
        rows += body["data"]["auditTrail"]["edges"]
            .as_array()
            .map_or(0, Vec::len);
    }
    let count = millis.len();
    let mut result = summary(millis);
    result["rows_per_query"] = json!(rows as f64 / count as f64);
    Ok(result)
}

/// The plan Postgres chooses for a trail filter, and its execution time.
async fn explain(db: &sqlx::PgPool, condition: &str, value: &str) -> anyhow::Result<Value> {
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT * FROM events WHERE {condition} ORDER BY position LIMIT 101"
    ))
    .bind(value)
    .fetch_all(db)
    .await?;
    Ok(json!(plan))
}

/// Tasks the audit and replay phases seed (`BENCH_AUDIT_TASKS`, 5 events each).
fn seeded_tasks() -> usize {
    std::env::var("BENCH_AUDIT_TASKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000)
}

async fn audit_phase() -> anyhow::Result<Value> {
    let tasks = seeded_tasks();
    let app = TestApp::spawn().await?;
    let seeding = Instant::now();
    let events = chronicle_tests::seed::seed_tasks(&app.db, tasks).await?;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    sqlx::query("VACUUM ANALYZE events")
        .execute(&app.db)
        .await?;

    let samples = 200;
    let aggregates: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE sequence = 1 ORDER BY random() LIMIT $1",
    )
    .bind(samples as i64)
    .fetch_all(&app.db)
    .await?;
    let correlations: Vec<String> = sqlx::query_scalar(
        "SELECT metadata ->> 'correlation_id' FROM events ORDER BY random() LIMIT $1",
    )
    .bind(samples as i64)
    .fetch_all(&app.db)
    .await?;
    let token = app.token("u-auditor", &["auditor"], &["*"]);
    let by_aggregate = trail_latency(
        &app,
        &token,
        aggregates
            .iter()
            .map(|id| json!({"aggregateType": "TASK", "aggregateId": id}))
            .collect(),
    )
    .await?;
    let by_correlation = trail_latency(
        &app,
        &token,
        correlations
            .iter()
            .map(|id| json!({"correlationId": id}))
            .collect(),
    )
    .await?;
    let by_actor = trail_latency(
        &app,
        &token,
        (0..samples)
            .map(|n| json!({"actorId": format!("u-{}", n * 5 % chronicle_tests::seed::ACTORS)}))
            .collect(),
    )
    .await?;
    // Auditors scoped to teams: the trail is filtered on `events.team_id` (50 seeded teams).
    let one_team = app.token("u-team-auditor", &["auditor"], &["team-7"]);
    let scoped_by_actor = trail_latency(
        &app,
        &one_team,
        (0..samples)
            .map(|n| json!({"actorId": format!("u-{}", n * 5 % chronicle_tests::seed::ACTORS)}))
            .collect(),
    )
    .await?;
    let three_teams = app.token(
        "u-teams-auditor",
        &["auditor"],
        &["team-1", "team-2", "team-3"],
    );
    let scoped_whole_trail = trail_latency(
        &app,
        &three_teams,
        (0..samples).map(|_| json!({})).collect(),
    )
    .await?;
    let plans = json!({
        "scoped_one_team": explain(&app.db, "team_id = $1", "team-7").await?,
        "by_aggregate": explain(&app.db, "aggregate_type = 'Task' AND aggregate_id = $1", &aggregates[0]).await?,
        "by_correlation": explain(&app.db, "metadata ->> 'correlation_id' = $1", &correlations[0]).await?,
        "by_actor": explain(&app.db, "metadata ->> 'actor_id' = $1", "u-5").await?,
    });

    // Postgres alone reading the table in position order: the physical limit of a verifier.
    let copying = Instant::now();
    sqlx::query("COPY (SELECT * FROM events ORDER BY position) TO '/dev/null'")
        .execute(&app.db)
        .await?;
    let copy_rate = events as f64 / copying.elapsed().as_secs_f64();
    let log = chronicle_infrastructure::audit_log::PgAuditLog::new(app.db.clone());
    let verifying = Instant::now();
    let check = chronicle_application::audit::store_check::verify_store(&log, |_| {})
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        check.first_broken.is_none(),
        "seeded store is broken: {check:?}"
    );
    let verify_rate = check.events_checked as f64 / verifying.elapsed().as_secs_f64();
    Ok(json!({
        "events": events,
        "seed_seconds": seed_seconds,
        "audit_trail_by_aggregate": by_aggregate,
        "audit_trail_by_correlation": by_correlation,
        "audit_trail_by_actor": by_actor,
        "audit_trail_one_team_by_actor": scoped_by_actor,
        "audit_trail_three_teams_first_page": scoped_whole_trail,
        "plans": plans,
        "postgres_copy_events_per_second": copy_rate,
        "audit_verify_events_per_second": verify_rate,
        "audit_verify_vs_copy": verify_rate / copy_rate,
    }))
}

/// Rebuild rates on a seeded store, next to Postgres alone reading the events table.
async fn replay_phase() -> anyhow::Result<Value> {
    let tasks = seeded_tasks();
    let app = TestApp::spawn().await?;
    let events = chronicle_tests::seed::seed_tasks(&app.db, tasks).await?;
    sqlx::query("VACUUM ANALYZE events")
        .execute(&app.db)
        .await?;
    // The physical limit: the server reading the table in position order (best of two, so
    // both sides run with the table cached).
    let mut copy_seconds = f64::MAX;
    for _ in 0..2 {
        let copying = Instant::now();
        sqlx::query("COPY (SELECT * FROM events ORDER BY position) TO '/dev/null'")
            .execute(&app.db)
            .await?;
        copy_seconds = copy_seconds.min(copying.elapsed().as_secs_f64());
    }
    let copy_rate = events as f64 / copy_seconds;
    let rebuilder = chronicle_api::app::rebuilder(&app.db);
    let mut runs = serde_json::Map::new();
    for name in ["tasks", "all", "tasks"] {
        let summary = rebuilder
            .rebuild(name, &|_| {})
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let rate = summary.events_per_second();
        let key = if runs.contains_key(name) {
            format!("{name}_again")
        } else {
            name.to_owned()
        };
        runs.insert(
            key,
            json!({
                "events": summary.events,
                "rows": summary.rows,
                "seconds": summary.seconds,
                "events_per_second": rate,
                "vs_copy": rate / copy_rate,
                "read_fold_seconds": summary.phases.read_seconds,
                "of_which_fold_seconds": summary.phases.fold_seconds,
                "write_seconds": summary.phases.write_seconds,
                "index_seconds": summary.phases.index_seconds,
                "swap_seconds": summary.phases.swap_seconds,
            }),
        );
    }
    Ok(json!({
        "events": events,
        "postgres_copy_events_per_second": copy_rate,
        "rebuilds": runs,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "commands,reports".to_owned());
    let mut report = json!({});
    if phases.split(',').any(|p| p == "commands") {
        report = commands_phase().await?;
    }
    if phases.split(',').any(|p| p == "reports") {
        report["reports"] = reports_phase().await?;
    }
    if phases.split(',').any(|p| p == "audit") {
        report["audit"] = audit_phase().await?;
    }
    if phases.split(',').any(|p| p == "replay") {
        report["replay"] = replay_phase().await?;
    }
    if phases.split(',').any(|p| p == "outage") {
        report["outage"] = outage_phase().await?;
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn commands_phase() -> anyhow::Result<Value> {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let app = TestApp::spawn_with(|settings| {
        settings.snapshot_every = 100;
        settings.database_max_connections = 16;
    })
    .await?;
    for n in 0..200 {
        create(
            &reqwest::Client::new(),
            &format!("{}/graphql", app.base_url),
            &app.admin_token,
            n,
        )
        .await?;
    }
    let create_task = throughput(&app, seconds).await?;
    let (kafka, projection, achieved) = latency(&app, 1000, seconds.min(5)).await?;

    sqlx::query("CREATE TABLE bench_events (LIKE events INCLUDING ALL)")
        .execute(&app.db)
        .await?;
    let pg = pgbench(&app.settings.database_url, seconds)?;
    let ratio = create_task["per_second"].as_f64().unwrap_or(0.0)
        / pg["per_second"].as_f64().unwrap_or(f64::NAN);
    let report = json!({
        "create_task": create_task,
        "pgbench_insert": pg,
        "create_task_vs_pgbench": ratio,
        "commit_to_kafka": kafka,
        "projection_lag": projection,
        "paced_rate_per_second": achieved,
        "phase_seconds": seconds,
    });
    Ok(report)
}

/// Events the outage phase writes while the broker is stopped (`BENCH_OUTAGE_EVENTS`).
fn outage_events() -> usize {
    std::env::var("BENCH_OUTAGE_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// createTask through GraphQL at [`CONNECTIONS`] connections until `total` were acknowledged;
/// returns the seconds it took.
async fn create_until(app: &TestApp, total: usize) -> anyhow::Result<f64> {
    let url = format!("{}/graphql", app.base_url);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (url, token, next) = (url.clone(), app.admin_token.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    return anyhow::Ok(());
                }
                create(&client, &url, &token, n).await?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn unpublished(db: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(db)
            .await?,
    )
}

/// The broker stopped (SIGSTOP) for at least 30 s while `BENCH_OUTAGE_EVENTS` commands are
/// acknowledged, then resumed: how fast the relay drains the outbox, next to a bare producer
/// (same configuration, same records) on the same broker and the relay's own database work
/// (its reads and marks without Kafka).
async fn outage_phase() -> anyhow::Result<Value> {
    let events = outage_events();
    let broker = chronicle_tests::PrivateBroker::start().await?;
    let app = TestApp::spawn_parts(
        chronicle_api::app::Parts {
            api: true,
            relay: true,
            projections: false,
            worker: false,
        },
        |settings| {
            settings.kafka.brokers = broker.address.clone();
            settings.snapshot_every = 100;
            settings.database_max_connections = 16;
        },
    )
    .await?;
    app.create_task("warm-up", "team-bench").await?;
    while unpublished(&app.db).await? > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    broker.signal("-STOP")?;
    let stopped = Instant::now();
    let write_seconds = create_until(&app, events).await?;
    if let Some(rest) = Duration::from_secs(30).checked_sub(stopped.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let backlog = unpublished(&app.db).await?;
    let outage_seconds = stopped.elapsed().as_secs_f64();
    broker.signal("-CONT")?;
    let resumed = Instant::now();
    while unpublished(&app.db).await? > 0 {
        anyhow::ensure!(
            resumed.elapsed() < Duration::from_secs(900),
            "the outbox did not drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_seconds = resumed.elapsed().as_secs_f64();

    let bare = bare_producer(&app, &broker.address, backlog).await?;
    let database = relay_database_work(&app.db).await?;
    Ok(json!({
        "acknowledged_during_outage": events,
        "write_seconds": write_seconds,
        "commands_per_second_during_outage": events as f64 / write_seconds,
        "outage_seconds": outage_seconds,
        "backlog_at_resume": backlog,
        "drain_seconds": drain_seconds,
        "drain_events_per_second": backlog as f64 / drain_seconds,
        "bare_producer_events_per_second": bare,
        "relay_database_work_events_per_second": database,
        "drain_vs_bare_producer": backlog as f64 / drain_seconds / bare,
    }))
}

/// Produces the outbox's own records again, to a fresh topic, with the relay's producer
/// configuration and nothing else: the broker's and librdkafka's limit for this traffic.
async fn bare_producer(app: &TestApp, address: &str, count: i64) -> anyhow::Result<f64> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT key, payload FROM outbox WHERE published_at IS NOT NULL ORDER BY id DESC LIMIT $1",
    )
    .bind(count)
    .fetch_all(&app.db)
    .await?;
    let mut kafka = app.settings.kafka.clone();
    kafka.brokers = address.to_owned();
    let topic = format!("{}bare", kafka.topic_prefix);
    chronicle_infrastructure::kafka::admin::ensure_topics(&kafka, std::slice::from_ref(&topic))
        .await?;
    let producer: FutureProducer =
        chronicle_infrastructure::kafka::client::producer_config(&kafka).create()?;
    let payloads: Vec<(String, Vec<u8>)> = rows
        .into_iter()
        .map(|(key, payload)| (key, serde_json::to_vec(&payload).unwrap_or_default()))
        .collect();
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(payloads.len());
    for (key, payload) in &payloads {
        let mut record = FutureRecord::to(&topic)
            .key(key.as_bytes())
            .payload(payload);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((_, returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    for delivery in deliveries {
        delivery
            .await?
            .map_err(|(error, _)| anyhow::anyhow!("{error}"))?;
    }
    Ok(payloads.len() as f64 / started.elapsed().as_secs_f64())
}

/// The relay's database work alone on the same rows: read a batch of 1,000 unpublished rows in
/// id order and mark them, until none is left.
async fn relay_database_work(db: &sqlx::PgPool) -> anyhow::Result<f64> {
    let total: i64 = sqlx::query_scalar(
        "WITH reset AS (UPDATE outbox SET published_at = NULL RETURNING 1) SELECT count(*) FROM reset",
    )
    .fetch_one(db)
    .await?;
    let started = Instant::now();
    loop {
        let rows: Vec<(i64, String, String, Value, String)> = sqlx::query_as(
            "SELECT id, topic, key, headers, payload::text FROM outbox
             WHERE published_at IS NULL ORDER BY id LIMIT 1000",
        )
        .fetch_all(db)
        .await?;
        let ids: Vec<i64> = rows.iter().map(|row| row.0).collect();
        if ids.is_empty() {
            break;
        }
        sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(db)
            .await?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
