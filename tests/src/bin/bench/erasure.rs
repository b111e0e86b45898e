//! `erasure`: erasing a person with 10,000 events (`BENCH_ERASURE_EVENTS`), next to createTask
//! load by someone else, before and while the erasure runs: once with the events sealed (the
//! key is destroyed, the copies in clear rewritten) and once with them stored in clear (as
//! before sealing: each event also changed, through the signed ledger).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle_application::audit::signing::CheckpointSigner;
use serde_json::{json, Value};

use crate::load::{create_load, create_tasks_as, env_number, graphql, request, token, CONNECTIONS};
use crate::service::BenchService;

/// The person erased.
const SUBJECT: &str = "u-erased-bench";

/// Erasure time of one person's events, sealed and in clear, and what it does to other
/// writers meanwhile.
pub async fn erasure_phase() -> anyhow::Result<Value> {
    let sealed = erase_one(true).await?;
    let in_clear = erase_one(false).await?;
    Ok(json!({"sealed": sealed, "in_clear": in_clear}))
}

/// One erasure, on a service that seals or not.
async fn erase_one(sealing: bool) -> anyhow::Result<Value> {
    let events: usize = env_number("BENCH_ERASURE_EVENTS", 10_000);
    // The erasure of values in clear signs its ledger with the checkpoint key.
    let key = std::env::temp_dir().join(format!(
        "chronicle-bench-{}.pem",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::write(&key, CheckpointSigner::generate().to_pem()?)?;
    let service = BenchService::start_with(|settings| {
        settings.seal_personal_data = sealing;
        settings.audit_signing_key_file = Some(key.display().to_string());
    })
    .await?;
    let url: Arc<str> = service.graphql_url.as_str().into();
    let subject = token(SUBJECT, &["member"])?;
    let written = create_tasks_as(&url, &subject, events, "erase me").await?;
    service
        .wait_for_tasks("creator_id = $1", SUBJECT, written)
        .await?;

    let seconds = 5.0;
    let before = create_load(&url, &service.token, CONNECTIONS / 2, seconds, 0).await?;
    let load = tokio::spawn({
        let (url, token) = (url.clone(), service.token.clone());
        async move { create_load(&url, &token, CONNECTIONS / 2, seconds, 50_000_000).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let officer = token("u-privacy-bench", &["privacy"])?;
    let erasing = Instant::now();
    let answer = graphql(
        &reqwest::Client::new(),
        &url,
        &officer,
        request(
            "mutation($s: ID!) { eraseDataSubject(subjectId: $s, reason: \"bench\") { streams } }",
            json!({"s": SUBJECT}),
        ),
    )
    .await?;
    anyhow::ensure!(
        answer["eraseDataSubject"]["streams"].is_number(),
        "{answer}"
    );
    let erase_seconds = erasing.elapsed().as_secs_f64();
    let during = load.await??;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE title LIKE 'erase me %'")
        .fetch_one(&service.db)
        .await?;
    anyhow::ensure!(left == 0, "{left} rows still show the erased titles");
    Ok(json!({
        "events": written,
        "streams": answer["eraseDataSubject"]["streams"],
        "erase_seconds": erase_seconds,
        "create_task_before": before,
        "create_task_during": during,
    }))
}
