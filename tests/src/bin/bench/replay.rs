//! `replay`: rebuilds of the seeded store, next to Postgres alone reading the table.

use chronicle_tests::TestApp;
use serde_json::{json, Value};

use crate::audit::seeded_tasks;
use crate::limits::copy_events_per_second;

/// Rebuild rates on a seeded store, next to Postgres alone reading the events table.
pub async fn replay_phase() -> anyhow::Result<Value> {
    let tasks = seeded_tasks();
    let app = TestApp::spawn().await?;
    let events = chronicle_tests::seed::seed_tasks(&app.db, tasks).await?;
    sqlx::query("VACUUM ANALYZE events")
        .execute(&app.db)
        .await?;
    // The physical limit: the server reading the table in position order (best of two, so
    // both sides run with the table cached).
    let copy_rate = copy_events_per_second(&app.db, events, 2).await?;
    let rebuilder =
        chronicle::app::rebuilder(&app.db, chronicle::app::personal_data_for_reading(&app.db));
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
