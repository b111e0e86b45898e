//! `subscriptions`: how fast one client catches up from the store (next to `COPY` reading the
//! same table in the same run), and how long a live event takes from the mutation's answer to
//! its notification, idle and at 1,000 createTask a second.
//!
//! Settings: `BENCH_SUBSCRIPTION_TASKS` (seeded tasks, five events each; default 40,000),
//! `BENCH_SECONDS` (the paced run's length).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle_tests::ws::{connect_at, next_json, subscribe, Socket};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::limits::copy_events_per_second;
use crate::load::{create, env_number, paced, phase_seconds, summary};
use crate::service::BenchService;

/// createTask a second in the paced run.
const PACED_RATE: u64 = 1_000;
/// Commands one at a time on an idle service.
const IDLE_SAMPLES: usize = 100;

const FROM_THE_START: &str =
    "subscription { taskEvents(after: \"0\") { cursor taskId eventType sequence } }";
const LIVE: &str = "subscription { taskEvents(teamId: \"team-bench\") { cursor taskId } }";

/// The phase's figures.
pub async fn subscriptions_phase() -> anyhow::Result<Value> {
    let service = BenchService::start().await?;
    let base = service.graphql_url.trim_end_matches("/graphql").to_owned();
    let tasks = env_number("BENCH_SUBSCRIPTION_TASKS", 40_000usize);
    let events = chronicle_tests::seed::seed_tasks(&service.db, tasks).await?;
    sqlx::query("VACUUM ANALYZE events")
        .execute(&service.db)
        .await?;
    let copy_rate = copy_events_per_second(&service.db, events, 2).await?;
    let mut catch_up = Vec::new();
    for _ in 0..2 {
        let seconds = catch_up_seconds(&base, &service.token, events as usize).await?;
        let rate = events as f64 / seconds;
        catch_up.push(json!({
            "seconds": seconds,
            "events_per_second": rate,
            "vs_copy": rate / copy_rate,
        }));
    }
    let idle = idle_latency(&service, &base).await?;
    let paced = paced_latency(&service, &base, phase_seconds()).await?;
    Ok(json!({
        "events": events,
        "postgres_copy_events_per_second": copy_rate,
        "catch_up_one_client": catch_up,
        "answer_to_notification_idle_ms": idle,
        "answer_to_notification_at_1000_per_second": paced,
    }))
}

/// Seconds from subscribing at the beginning to the `events`-th notification.
async fn catch_up_seconds(base: &str, token: &str, events: usize) -> anyhow::Result<f64> {
    let mut socket = connect_at(base, token).await;
    let started = Instant::now();
    subscribe(&mut socket, "all", FROM_THE_START, json!({})).await;
    for n in 0..events {
        let message = next_json(&mut socket)
            .await
            .ok_or_else(|| anyhow::anyhow!("the catch-up stopped after {n} events"))?;
        anyhow::ensure!(message["type"] == "next", "{message}");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Notifications of `socket`'s live subscription, by task id, with when each arrived.
fn arrivals(mut socket: Socket) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let writer = seen.clone();
    tokio::spawn(async move {
        while let Some(message) = next_json(&mut socket).await {
            if let Some(id) = message["payload"]["data"]["taskEvents"]["taskId"].as_str() {
                writer.lock().await.insert(id.to_owned(), Instant::now());
            }
        }
    });
    seen
}

/// Milliseconds from each answer to its notification.
async fn latencies(
    answered: &[(String, Instant)],
    seen: &Mutex<HashMap<String, Instant>>,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let arrived = seen.lock().await;
        if answered.iter().all(|(id, _)| arrived.contains_key(id)) {
            let millis = answered
                .iter()
                .map(|(id, at)| {
                    let arrival = arrived[id];
                    // A notification can beat the HTTP answer to the client: that counts as 0.
                    arrival.saturating_duration_since(*at).as_secs_f64() * 1e3
                })
                .collect();
            return Ok(summary(millis));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {} notifications arrived",
            answered
                .iter()
                .filter(|(id, _)| arrived.contains_key(id))
                .count(),
            answered.len()
        );
        drop(arrived);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One createTask at a time, 20 ms apart, with one live subscriber.
async fn idle_latency(service: &BenchService, base: &str) -> anyhow::Result<Value> {
    let mut socket = connect_at(base, &service.token).await;
    subscribe(&mut socket, "live", LIVE, json!({})).await;
    let seen = arrivals(socket);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = reqwest::Client::new();
    let mut answered = Vec::with_capacity(IDLE_SAMPLES);
    for n in 0..IDLE_SAMPLES {
        let id = create(
            &client,
            &service.graphql_url,
            &service.token,
            3_000_000_000 + n,
        )
        .await?;
        answered.push((id, Instant::now()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies(&answered, &seen).await
}

/// createTask at [`PACED_RATE`] a second (open loop) for `seconds`, with one live subscriber.
async fn paced_latency(service: &BenchService, base: &str, seconds: u64) -> anyhow::Result<Value> {
    let mut socket = connect_at(base, &service.token).await;
    subscribe(&mut socket, "live", LIVE, json!({})).await;
    let seen = arrivals(socket);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total = (PACED_RATE * seconds) as usize;
    let answered: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let client = reqwest::Client::new();
    let rate = paced(PACED_RATE, total, |n| {
        let (client, url, token, answered) = (
            client.clone(),
            service.graphql_url.clone(),
            service.token.clone(),
            answered.clone(),
        );
        async move {
            let id = create(&client, &url, &token, 4_000_000_000 + n).await?;
            answered.lock().await.push((id, Instant::now()));
            anyhow::Ok(())
        }
    })
    .await?;
    let answered = answered.lock().await.clone();
    Ok(json!({
        "rate_per_second": rate,
        "latency_ms": latencies(&answered, &seen).await?,
    }))
}
