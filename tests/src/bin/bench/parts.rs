//! `parts`: where the service's CPU per createTask goes, each part beside its floor measured in
//! the same round (issue 26 item 3).
//!
//! The service runs as two processes on one database and one set of topics: `--only api`,
//! which answers the commands, and `--only relay,projections,worker`, which carries each event
//! from the outbox to Kafka and from Kafka into the read model. Each round drives createTask at
//! 32 connections and reads each process's CPU per command once the outbox is drained and the
//! projection has caught up, then measures two floors:
//!
//! - the request floor: the API process's CPU per authenticated `{ __typename }` at the same
//!   32 connections (HTTP, the token, a parsed document, an answer), what any request costs
//!   before it does anything;
//! - the Kafka floor: this process's CPU per record for a producer with the relay's settings and
//!   a consumer with the projection's moving as many records as the round's commands, shaped
//!   like its events (payload, headers, a UUID key), once at the round's rate in bursts of the
//!   relay's mean read (as the relay hands them over) and once all at once, the largest
//!   batches the client can make ([`crate::limits::kafka_floor`]).
//!
//! What each process spends above its floor estimates what Chronicle's own code adds to what the
//! protocols cost at that rate. An estimate, not a strict bound: the Kafka floor runs in another
//! process, with a ticker of its own, and the background process does more besides (the relay's
//! reads and marks, the projection's writes, a second consumer).

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::limits::{kafka_floor, Offered, RecordShape};
use crate::load::{create_load, phase_seconds, request, CONNECTIONS};
use crate::scale::{readers, the_type_name};
use crate::service::BenchService;

/// Starts the split service, warms it, and measures `BENCH_ROUNDS` rounds (default 2), each
/// with both floors right after its load.
pub async fn parts_phase() -> anyhow::Result<Value> {
    let seconds = phase_seconds();
    let service = BenchService::start_split().await?;
    // Warm-up: connections, prepared statements, the first pages of every index.
    create_load(&service.graphql_url, &service.token, 8, 3.0, 0).await?;
    service.wait_settled(Duration::from_secs(60)).await?;

    let mut rounds = Vec::new();
    for round in 0..crate::load::env_number("BENCH_ROUNDS", 2) {
        service.reset_statements().await?;
        let (load, before, after) = service.create_round(seconds, round).await?;
        let commands = load["count"].as_f64().unwrap_or(0.0);
        let cpu = before.per(&after, commands);
        let statements = service.statements(commands).await?;

        let type_name = request("{ __typename }", json!({}));
        let request_floor = readers(
            &service,
            CONNECTIONS,
            seconds as f64,
            type_name,
            the_type_name,
            "cpu_per_request",
        )
        .await?;

        let shape = RecordShape::last_published(&service.db).await?;
        let topic =
            |way: &str| format!("{}floor-{way}-{round}", service.settings.kafka.topic_prefix);
        let kafka = &service.settings.kafka;
        let records = commands as u64;
        let rate = load["per_second"].as_f64().unwrap_or(1_000.0).max(1.0) as u64;
        let relay_read = relay_rows_per_read(&statements)?;
        let as_the_relay = Offered::AtRate {
            per_second: rate,
            burst: relay_read.round().max(1.0) as u64,
        };
        let kafka_paced =
            kafka_floor(kafka, &topic("paced"), &shape, records, as_the_relay).await?;
        let kafka_burst =
            kafka_floor(kafka, &topic("burst"), &shape, records, Offered::AllAtOnce).await?;
        let us = |value: &Value, key: &str| value[key].as_f64().unwrap_or(f64::NAN);
        let api_floor = us(&request_floor["cpu_per_request"], "api_process_us");
        let kafka_per_record = us(&kafka_paced, "cpu_us_per_record");
        rounds.push(json!({
            "create_task": load,
            "cpu_per_command": cpu,
            "request_floor": request_floor,
            "kafka_floor_at_the_rounds_rate": kafka_paced,
            "kafka_floor_all_at_once": kafka_burst,
            "relay_rows_per_read": relay_read,
            "postgres_statements_per_command": statements,
            "api_above_request_floor_us": us(&cpu, "api_process_us") - api_floor,
            "background_above_kafka_floor_us": us(&cpu, "background_process_us") - kafka_per_record,
        }));
    }
    Ok(json!({ "rounds": rounds, "phase_seconds": seconds }))
}

/// Rows per call of the relay's read of the outbox in `statements` (from
/// [`BenchService::statements`]). A floor handed over in bursts of another size would not be
/// the relay's, so a read that is not found is an error, not a guess.
fn relay_rows_per_read(statements: &Value) -> anyhow::Result<f64> {
    statements
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| {
            // The statement's text starts with its file's comment (sql/relay_read.sql), or
            // with the statement itself in builds from before that file.
            s["statement"].as_str().is_some_and(|text| {
                text.starts_with("-- The relay's read:")
                    || text.starts_with("SELECT id, topic, key, headers, payload::text")
            })
        })
        .and_then(|s| s["rows_per_call"].as_f64())
        .context("the relay's read of the outbox is not among the round's statements")
}
