//! `audit`: the audit trail's filters and `audit verify` on a seeded store of 1,000,000 events.

use std::time::Instant;

use chronicle_tests::TestApp;
use serde_json::{json, Value};

use crate::limits::copy_events_per_second;
use crate::load::summary;

const AUDIT_TRAIL: &str = "query($f: AuditFilter!) { auditTrail(filter: $f, first: 100) { edges { node { eventId position eventType actorId correlationId payload hash } } } }";

/// `auditTrail` latency for each filter value in `values`, through GraphQL.
async fn trail_latency(app: &TestApp, token: &str, filters: Vec<Value>) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    let mut millis = Vec::with_capacity(filters.len());
    let mut rows = 0usize;
    for filter in filters {
        let started = Instant::now();
        let body: Value = client
            .post(format!("{}/graphql", app.base_url))
            .bearer_auth(token)
            .json(&json!({"query": AUDIT_TRAIL, "variables": {"f": filter}}))
            .send()
            .await?
            .json()
            .await?;
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(body["errors"].is_null(), "auditTrail failed: {body}");
        rows += body["data"]["auditTrail"]["edges"]
            .as_array()
            .map_or(0, Vec::len);
    }
    let count = millis.len();
    let mut result = summary(millis);
    result["rows_per_query"] = json!(rows as f64 / count as f64);
    Ok(result)
}

/// The plan Postgres chooses for a trail filter, and its execution time.
async fn explain(db: &sqlx::PgPool, condition: &str, value: &str) -> anyhow::Result<Value> {
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT * FROM events WHERE {condition} ORDER BY position LIMIT 101"
    ))
    .bind(value)
    .fetch_all(db)
    .await?;
    Ok(json!(plan))
}

/// Tasks the audit and replay phases seed (`BENCH_AUDIT_TASKS`, 5 events each).
pub fn seeded_tasks() -> usize {
    crate::load::env_number("BENCH_AUDIT_TASKS", 200_000)
}

pub async fn audit_phase() -> anyhow::Result<Value> {
    let tasks = seeded_tasks();
    let app = TestApp::spawn().await?;
    let seeding = Instant::now();
    let events = chronicle_tests::seed::seed_tasks(&app.db, tasks).await?;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    sqlx::query("VACUUM ANALYZE events")
        .execute(&app.db)
        .await?;

    let samples = 200;
    let aggregates: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE sequence = 1 ORDER BY random() LIMIT $1",
    )
    .bind(samples as i64)
    .fetch_all(&app.db)
    .await?;
    let correlations: Vec<String> = sqlx::query_scalar(
        "SELECT metadata ->> 'correlation_id' FROM events ORDER BY random() LIMIT $1",
    )
    .bind(samples as i64)
    .fetch_all(&app.db)
    .await?;
    let token = app.token("u-auditor", &["auditor"], &["*"]);
    let by_aggregate = trail_latency(
        &app,
        &token,
        aggregates
            .iter()
            .map(|id| json!({"aggregateType": "TASK", "aggregateId": id}))
            .collect(),
    )
    .await?;
    let by_correlation = trail_latency(
        &app,
        &token,
        correlations
            .iter()
            .map(|id| json!({"correlationId": id}))
            .collect(),
    )
    .await?;
    let by_actor = trail_latency(
        &app,
        &token,
        (0..samples)
            .map(|n| json!({"actorId": format!("u-{}", n * 5 % chronicle_tests::seed::ACTORS)}))
            .collect(),
    )
    .await?;
    // Auditors scoped to teams: the trail is filtered on `events.team_id` (50 seeded teams).
    let one_team = app.token("u-team-auditor", &["auditor"], &["team-7"]);
    let scoped_by_actor = trail_latency(
        &app,
        &one_team,
        (0..samples)
            .map(|n| json!({"actorId": format!("u-{}", n * 5 % chronicle_tests::seed::ACTORS)}))
            .collect(),
    )
    .await?;
    let three_teams = app.token(
        "u-teams-auditor",
        &["auditor"],
        &["team-1", "team-2", "team-3"],
    );
    let scoped_whole_trail = trail_latency(
        &app,
        &three_teams,
        (0..samples).map(|_| json!({})).collect(),
    )
    .await?;
    let plans = json!({
        "scoped_one_team": explain(&app.db, "team_id = $1", "team-7").await?,
        "by_aggregate": explain(&app.db, "aggregate_type = 'Task' AND aggregate_id = $1", &aggregates[0]).await?,
        "by_correlation": explain(&app.db, "metadata ->> 'correlation_id' = $1", &correlations[0]).await?,
        "by_actor": explain(&app.db, "metadata ->> 'actor_id' = $1", "u-5").await?,
    });

    // Postgres alone reading the table in position order: the physical limit of a verifier.
    let copy_rate = copy_events_per_second(&app.db, events, 1).await?;
    let log = chronicle_infrastructure::audit_log::PgAuditLog::new(app.db.clone());
    let verifying = Instant::now();
    let check = chronicle_application::audit::store_check::verify_store(&log, None, |_| {})
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        check.first_broken.is_none(),
        "seeded store is broken: {check:?}"
    );
    let verify_rate = check.events_checked as f64 / verifying.elapsed().as_secs_f64();
    let tree = tree_figures(&app, events as u64, copy_rate).await?;
    Ok(json!({
        "merkle_tree": tree,
        "events": events,
        "seed_seconds": seed_seconds,
        "audit_trail_by_aggregate": by_aggregate,
        "audit_trail_by_correlation": by_correlation,
        "audit_trail_by_actor": by_actor,
        "audit_trail_one_team_by_actor": scoped_by_actor,
        "audit_trail_three_teams_first_page": scoped_whole_trail,
        "plans": plans,
        "postgres_copy_events_per_second": copy_rate,
        "audit_verify_events_per_second": verify_rate,
        "audit_verify_vs_copy": verify_rate / copy_rate,
    }))
}

/// The Merkle tree over the seeded store: how fast it is grown from the events, how fast the
/// whole store is verified against a signed checkpoint (next to `COPY`, the raw read rate),
/// and proof sizes and latencies at that size.
async fn tree_figures(app: &TestApp, events: u64, copy_rate: f64) -> anyhow::Result<Value> {
    use chronicle_application::audit::checkpoints::{root_at, AuditProofs, Signing};
    use chronicle_application::audit::signing::CheckpointSigner;
    use chronicle_application::ports::audit_tree::AuditTree;
    use chronicle_infrastructure::audit_tree::PgAuditTree;
    let tree = std::sync::Arc::new(PgAuditTree::new(app.db.clone()));
    let growing = Instant::now();
    let mut size = 0;
    while size < events {
        size = tree
            .append_settled(5_000)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let append_rate = size as f64 / growing.elapsed().as_secs_f64();
    let signer = CheckpointSigner::generate();
    let root = root_at(tree.as_ref(), size)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let checkpoint = signer.sign(size, root, chrono::Utc::now());
    tree.store_checkpoint(&checkpoint)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let log = chronicle_infrastructure::audit_log::PgAuditLog::new(app.db.clone());
    let leaves = tree.leaves().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let verifying = Instant::now();
    let check = chronicle_application::audit::tree_check::verify_tree(
        &log,
        std::slice::from_ref(&checkpoint),
        std::slice::from_ref(&checkpoint),
        &leaves,
        &signer.public_key(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(check.findings.is_empty(), "seeded tree diverged: {check:?}");
    let verify_rate = check.events as f64 / verifying.elapsed().as_secs_f64();
    let proofs = AuditProofs::new(tree.clone(), Signing::On);
    let auditor = chronicle_application::access::Principal::system("bench");
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT event_id FROM events ORDER BY random() LIMIT 200")
            .fetch_all(&app.db)
            .await?;
    let (mut millis, mut lengths) = (Vec::new(), Vec::new());
    for id in ids {
        let started = Instant::now();
        let proof = proofs
            .inclusion(&auditor, id, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
        lengths.push(proof.path.len() as f64);
    }
    let started = Instant::now();
    let half = signer.sign(
        size / 2,
        root_at(tree.as_ref(), size / 2)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        chrono::Utc::now(),
    );
    tree.store_checkpoint(&half)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let consistency = proofs
        .consistency(&auditor, size / 2, size)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let consistency_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(json!({
        "leaves": size,
        "append_events_per_second": append_rate,
        "verify_against_checkpoint_events_per_second": verify_rate,
        "verify_against_checkpoint_vs_copy": verify_rate / copy_rate,
        "inclusion_proof_ms": summary(millis),
        "inclusion_proof_hashes_min": lengths.iter().copied().fold(f64::INFINITY, f64::min),
        "inclusion_proof_hashes_max": lengths.iter().copied().fold(0.0, f64::max),
        "consistency_proof_hashes": consistency.path.len(),
        "consistency_proof_ms_with_signing_half": consistency_ms,
    }))
}
