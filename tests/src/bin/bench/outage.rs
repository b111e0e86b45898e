//! `outage`: the broker frozen for 30 s under load, then the outbox's drain rate next to a bare
//! producer and the relay's database work alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle_tests::TestApp;
use serde_json::{json, Value};

use crate::load::{create, CONNECTIONS};

/// Events the outage phase writes while the broker is stopped (`BENCH_OUTAGE_EVENTS`).
fn outage_events() -> usize {
    crate::load::env_number("BENCH_OUTAGE_EVENTS", 100_000)
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
pub async fn outage_phase() -> anyhow::Result<Value> {
    let events = outage_events();
    let broker = chronicle_tests::PrivateBroker::start().await?;
    let app = TestApp::spawn_parts(
        chronicle::app::Parts {
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
