//! `erasure`: erasing a person with 10,000 events (`BENCH_ERASURE_EVENTS`), next to createTask
//! load by someone else, before and while the erasure runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chronicle_tests::TEST_SECRET;
use serde_json::{json, Value};

use crate::load::{create_load, env_number, graphql, request, CONNECTIONS, CREATE};
use crate::service::BenchService;

/// The person erased.
const SUBJECT: &str = "u-erased-bench";

fn token(sub: &str, roles: &[&str]) -> anyhow::Result<String> {
    chronicle_api::auth::Authenticator::hs256(TEST_SECRET)
        .issue(
            sub,
            roles.iter().map(|r| r.to_string()).collect(),
            vec!["*".to_owned()],
            chrono::Duration::hours(1),
        )
        .context("sign a benchmark token")
}

/// Erasure time of one person's events, and what it does to other writers meanwhile.
pub async fn erasure_phase() -> anyhow::Result<Value> {
    let events: usize = env_number("BENCH_ERASURE_EVENTS", 10_000);
    let service = BenchService::start().await?;
    let url: Arc<str> = service.graphql_url.as_str().into();
    let subject = token(SUBJECT, &["member"])?;
    let per_client = events.div_ceil(CONNECTIONS);
    let mut writers = Vec::new();
    for index in 0..CONNECTIONS {
        let (url, subject) = (url.clone(), subject.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..per_client {
                let variables = json!({"i": {
                    "title": format!("erase me {index}-{n}"),
                    "description": "a description of theirs",
                    "teamId": "team-bench"}});
                graphql(&client, &url, &subject, request(CREATE, variables)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    let written = per_client * CONNECTIONS;
    wait_for_rows(&service, written).await?;

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

/// Waits until the read model holds `count` rows of the subject.
async fn wait_for_rows(service: &BenchService, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE creator_id = $1")
            .bind(SUBJECT)
            .fetch_one(&service.db)
            .await?;
        if rows as usize >= count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{rows} of {count} rows projected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
