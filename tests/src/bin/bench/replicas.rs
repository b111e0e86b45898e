//! `replicas`: the `tasks` query's first page at 100 concurrent readers, served by an API
//! process reading the primary and by one reading a streaming replica
//! (`CHRONICLE_READ_DATABASE_URL`), in the same run on the same data, with the CPU each
//! Postgres cluster spent per page; and what one createTask writes: WAL bytes (the
//! replication stream each standby receives) and the Kafka record it publishes.

use std::sync::Arc;
use std::time::Duration;

use chronicle_infrastructure::config::{ReadReplicaSettings, Settings};
use chronicle_infrastructure::secret::DatabaseUrl;
use chronicle_tests::PrivatePostgres;
use serde_json::{json, Value};

use crate::load::{closed_loop, create_load, graphql, phase_seconds, request, CONNECTIONS};
use crate::scale::{seed_read_model, PAGE_QUERY, READERS, TEAM};
use crate::service::BenchService;

/// Tasks seeded into the read model (`BENCH_REPLICA_TASKS`, default 100,000).
fn seeded_rows() -> usize {
    crate::load::env_number("BENCH_REPLICA_TASKS", 100_000)
}

pub async fn replicas_phase() -> anyhow::Result<Value> {
    let seconds = phase_seconds() as f64;
    let service = BenchService::start().await?;
    let replica = PrivatePostgres::start_standby_of(service.postgres(), "replica").await?;

    // What one command writes, measured on the primary while createTask runs.
    let wal_before = wal_position(&service).await?;
    let created_before: i64 = created(&service).await?;
    let cpu_before = service.cpu()?;
    let writes = create_load(
        &service.graphql_url,
        &service.token,
        CONNECTIONS,
        seconds,
        3_000_000_000,
    )
    .await?;
    service.wait_settled(Duration::from_secs(120)).await?;
    let cpu_after = service.cpu()?;
    let commands = (created(&service).await? - created_before).max(1) as f64;
    let wal_bytes: f64 =
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8")
            .bind(&wal_before)
            .fetch_one(&service.db)
            .await?;
    // A Kafka record's payload, headers and key as the relay sends them (before the
    // broker's batching and compression).
    let record_bytes: f64 = sqlx::query_scalar(
        "SELECT avg(octet_length(payload::text) + octet_length(headers::text) + octet_length(key))::float8
         FROM outbox",
    )
    .fetch_one(&service.db)
    .await?;

    let rows = seed_read_model(&service, seeded_rows()).await?;
    wait_replayed(&service).await?;
    let on_primary_settings = service.settings.clone();
    let mut on_replica_settings = service.settings.clone();
    on_replica_settings.read_replica = Some(ReadReplicaSettings {
        url: DatabaseUrl::new(replica.url(crate::service::DATABASE)),
        max_wait: Duration::from_millis(250),
        max_lag: Duration::from_secs(5),
    });
    let primary_reads = reads_on(&service, &replica, &on_primary_settings, seconds).await?;
    let replica_reads = reads_on(&service, &replica, &on_replica_settings, seconds).await?;
    let rate = |v: &Value| v["pages"]["per_second"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "create_task": writes,
        "cpu_per_command": cpu_before.per(&cpu_after, commands),
        "wal_bytes_per_command": wal_bytes / commands,
        "kafka_record_bytes_per_event": record_bytes,
        "team_tasks": rows,
        "tasks_first_page_on_primary": primary_reads,
        "tasks_first_page_on_replica": replica_reads,
        "replica_vs_primary_rate": rate(&replica_reads) / rate(&primary_reads),
    }))
}

async fn created(service: &BenchService) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'TaskCreated'")
            .fetch_one(&service.db)
            .await?,
    )
}

async fn wal_position(service: &BenchService) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&service.db)
        .await?)
}

/// Waits until the replica has replayed everything the primary wrote so far.
async fn wait_replayed(service: &BenchService) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let behind: Option<f64> = sqlx::query_scalar(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8
             FROM pg_stat_replication WHERE application_name = 'replica'",
        )
        .fetch_optional(&service.db)
        .await?
        .flatten();
        if behind.is_some_and(|bytes| bytes <= 0.0) {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the replica did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An API process with `settings` serving [`READERS`] clients asking for the team's first page
/// back to back; the pages' rate and each cluster's CPU per page.
async fn reads_on(
    service: &BenchService,
    replica: &PrivatePostgres,
    settings: &Settings,
    seconds: f64,
) -> anyhow::Result<Value> {
    let api = BenchService::spawn(settings, "api").await?;
    let url: Arc<str> = format!("{}/graphql", api.client("")?.base_url()).into();
    let token: Arc<str> = service.token.as_str().into();
    let body = request(PAGE_QUERY, json!({"t": TEAM}));
    // Warm the replica's (or the primary's) cache and the process's connections first.
    for _ in 0..20 {
        graphql(&reqwest::Client::new(), &url, &token, body.clone()).await?;
    }
    let (primary_pid, replica_pid) = (
        service.postgres().postmaster_pid()?,
        replica.postmaster_pid()?,
    );
    let before = (
        BenchService::cluster_cpu(primary_pid)?,
        BenchService::cluster_cpu(replica_pid)?,
    );
    let pages = closed_loop(READERS, seconds, move |client, _, _| {
        let (url, token, body) = (url.clone(), token.clone(), body.clone());
        async move {
            let data = graphql(&client, &url, &token, body).await?;
            let edges = data["tasks"]["edges"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(edges == 50, "a page of {edges} tasks");
            Ok(())
        }
    })
    .await?;
    let after = (
        BenchService::cluster_cpu(primary_pid)?,
        BenchService::cluster_cpu(replica_pid)?,
    );
    let served = pages["count"].as_f64().unwrap_or(0.0).max(1.0);
    drop(api);
    Ok(json!({
        "pages": pages,
        "primary_postgres_us_per_page": (after.0 - before.0) * 1e6 / served,
        "replica_postgres_us_per_page": (after.1 - before.1) * 1e6 / served,
    }))
}
