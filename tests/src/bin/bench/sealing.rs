//! `sealing`: rebuilding the tasks read model from a store whose events are sealed, next to the
//! same rebuild of a store written in clear (`CHRONICLE_SEAL_PERSONAL_DATA=false`), each of
//! `BENCH_SEALING_EVENTS` (50,000) tasks created through the API with a title and a
//! description. A sealed event is opened before it is folded: a JSON parse and an AEAD more.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::load::{create_tasks_as, env_number, token};
use crate::service::BenchService;

/// The author of every task.
const AUTHOR: &str = "u-sealing-bench";

/// Rebuild rates of a sealed store and of one in clear, same size, same run.
pub async fn sealing_phase() -> anyhow::Result<Value> {
    let events: usize = env_number("BENCH_SEALING_EVENTS", 50_000);
    let mut report = json!({});
    for (name, sealed) in [("clear", false), ("sealed", true)] {
        let service = BenchService::start_with(|s| s.seal_personal_data = sealed).await?;
        let written = write_tasks(&service, events).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let rebuilder = chronicle::app::rebuilder(
            &service.db,
            chronicle::app::personal_data_for_reading(&service.db),
        );
        let mut best = 0.0_f64;
        let mut tries = 0;
        while tries < 2 {
            match rebuilder.rebuild("tasks", &|_| {}).await {
                Ok(summary) => {
                    best = best.max(summary.events_per_second());
                    tries += 1;
                }
                // The service's own start-up rebuild may still hold the projection.
                Err(error) if tries == 0 && Instant::now() < deadline => {
                    eprintln!("waiting for the projection: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => anyhow::bail!("{error}"),
            }
        }
        report[name] = json!({"events": written, "rebuild_events_per_second": best});
    }
    let ratio = report["sealed"]["rebuild_events_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / report["clear"]["rebuild_events_per_second"]
            .as_f64()
            .unwrap_or(1.0);
    report["sealed_vs_clear"] = json!(ratio);
    Ok(report)
}

/// Creates `count` tasks (rounded up to the clients) and waits until they are projected.
async fn write_tasks(service: &BenchService, count: usize) -> anyhow::Result<usize> {
    let token = token(AUTHOR, &["member"])?;
    let written = create_tasks_as(&service.graphql_url, &token, count, "sealed or not").await?;
    service
        .wait_for_tasks("creator_id = $1", AUTHOR, written)
        .await?;
    Ok(written)
}
