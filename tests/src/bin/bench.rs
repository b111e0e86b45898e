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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
