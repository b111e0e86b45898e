//! `chronicle-bench`: measures Chronicle against the real services, each figure next to the
//! physical limit taken in the same run, and prints JSON.
//!
//! Phases (`BENCH_PHASES`, default `commands,reports`):
//!
//! - `commands` ([`commands`]): the default `chronicle serve` as its own process on a private,
//!   durable Postgres cluster (fsync and synchronous commit on, `pg_stat_statements` loaded),
//!   driven from this process: createTask throughput and latency at 32 connections next to
//!   pgbench's single-row insert rate; Chronicle's and Postgres's CPU per command; the
//!   statements Postgres ran per command; commit→Kafka at 1,000 commands/s next to a bare
//!   producer; read-after-write through `task(id)` at 1,000 commands/s and idle; `minVersion`
//!   reads; two instances side by side.
//! - `scale` ([`scale`]): the same service with 1,000,000 events already stored (createTask rate
//!   next to the empty store's, in the same run) and the `tasks` query at 100 concurrent readers
//!   on 1,000,000 tasks.
//! - `parts` ([`parts`]): the API and the background parts in processes of their own, each
//!   one's CPU per createTask beside its floor (an empty request; Kafka alone).
//! - `page` ([`scale::page_phase`]): that `tasks` page alone, in rounds against pgbench.
//! - `reports`, `audit`, `replay`, `outage`, `erasure`, `sealing`, `replicas`,
//!   `subscriptions`: see their modules.
//!
//! Run with `cargo run --release -p chronicle-tests --bin chronicle-bench` (it starts the
//! `chronicle` binary beside it: `CHRONICLE_BIN`, else `target/release/chronicle`, built by
//! `cargo build --release -p chronicle --bin chronicle`); environment as for the tests
//! (`CHRONICLE_ADMIN_URL`, `KAFKA_BROKERS`). `BENCH_SECONDS` sets each timed run's length.

mod audit;
mod commands;
mod erasure;
mod limits;
mod load;
mod outage;
mod parts;
mod replay;
mod replicas;
mod reports;
mod scale;
mod sealing;
mod service;
mod subscriptions;

use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "commands,reports".to_owned());
    let wanted = |name: &str| phases.split(',').any(|p| p.trim() == name);
    let mut report = json!({});
    if wanted("commands") {
        report["commands"] = commands::commands_phase().await?;
    }
    if wanted("parts") {
        report["parts"] = parts::parts_phase().await?;
    }
    if wanted("scale") {
        report["scale"] = scale::scale_phase().await?;
    }
    if wanted("page") {
        report["page"] = scale::page_phase().await?;
    }
    if wanted("reports") {
        report["reports"] = reports::reports_phase().await?;
    }
    if wanted("audit") {
        report["audit"] = audit::audit_phase().await?;
    }
    if wanted("replay") {
        report["replay"] = replay::replay_phase().await?;
    }
    if wanted("sealing") {
        report["sealing"] = sealing::sealing_phase().await?;
    }
    if wanted("erasure") {
        report["erasure"] = erasure::erasure_phase().await?;
    }
    if wanted("replicas") {
        report["replicas"] = replicas::replicas_phase().await?;
    }
    if wanted("subscriptions") {
        report["subscriptions"] = subscriptions::subscriptions_phase().await?;
    }
    if wanted("outage") {
        report["outage"] = outage::outage_phase().await?;
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
