//! `scale`: costs that must not grow with the store. createTask on an empty store and again
//! with 1,000,000 events stored (same service, same run); the `tasks` query's first page for a
//! team of 1,000,000 tasks at 100 concurrent readers (with the service's and Postgres's CPU per
//! page), next to Postgres alone running the same page query at 100 clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::load::{closed_loop, create_load, phase_seconds, post, request, CONNECTIONS};
use crate::service::BenchService;

/// Concurrent readers of the read run.
pub(crate) const READERS: usize = 100;
/// The team of the seeded read model.
pub(crate) const TEAM: &str = "team-scale";
pub(crate) const PAGE_QUERY: &str = "query($t: String!) { tasks(filter: {teamId: $t}, first: 50) { edges { cursor node { id title status version } } pageInfo { hasNextPage endCursor } } }";

/// Tasks seeded into the read model (`BENCH_SCALE_TASKS`, default 1,000,000).
fn seeded_rows() -> usize {
    crate::load::env_number("BENCH_SCALE_TASKS", 1_000_000)
}

pub async fn scale_phase() -> anyhow::Result<Value> {
    let seconds = phase_seconds() as f64;
    let service = BenchService::start().await?;
    create_load(&service.graphql_url, &service.token, 8, 3.0, 0).await?;
    service.wait_settled(Duration::from_secs(60)).await?;
    let empty = create_load(
        &service.graphql_url,
        &service.token,
        CONNECTIONS,
        seconds,
        1_000_000_000,
    )
    .await?;
    service.wait_settled(Duration::from_secs(120)).await?;

    // 1,000,000 events as the service writes them (hash-chained, with metadata and teams),
    // seeded straight into the store: through GraphQL it would take the whole budget.
    let seeding = Instant::now();
    let events = chronicle_tests::seed::seed_tasks(
        &service.db,
        seeded_rows() / chronicle_tests::seed::EVENTS_PER_TASK,
    )
    .await?;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    sqlx::query("VACUUM ANALYZE events")
        .execute(&service.db)
        .await?;
    let full = create_load(
        &service.graphql_url,
        &service.token,
        CONNECTIONS,
        seconds,
        2_000_000_000,
    )
    .await?;
    service.wait_settled(Duration::from_secs(120)).await?;
    let rate = |v: &Value| v["per_second"].as_f64().unwrap_or(0.0);

    let rows = seed_read_model(&service, seeded_rows()).await?;
    let mut page = page_against_pgbench(&service, seconds).await?;
    page["team_tasks"] = json!(rows);
    Ok(json!({
        "create_task_empty_store": empty,
        "create_task_with_events_stored": full,
        "events_stored": events,
        "seed_seconds": seed_seconds,
        "stored_vs_empty": rate(&full) / rate(&empty),
        "tasks_first_page": page,
    }))
}

/// `page`: the `tasks` first page alone (issue 26 item 5), in `BENCH_ROUNDS` rounds (default 2)
/// on a fresh service: [`READERS`] readers through the API, then pgbench running the page's SQL
/// at as many clients, each round's rates compared, then the request floor (`{ __typename }`)
/// and what Chronicle could spend per page at the limit. The team's size does not change the page
/// (an index walk that stops after 51 rows), so `BENCH_PAGE_TASKS` (default 100,000) seeds
/// fewer rows than `scale` does and the phase takes a minute.
pub async fn page_phase() -> anyhow::Result<Value> {
    let seconds = phase_seconds() as f64;
    // Nothing is written while pages are read, so the consumers wait as long as Kafka's default
    // lets them (`BENCH_PAGE_FETCH_WAIT_MS`, default 500): at the 10 ms that Tansu needs for
    // fresh reads, its answers to idle fetches cost 72-310 µs of CPU per page on the cores the
    // page is measured on, depending on the machine (docs/performance.md).
    let fetch_wait = crate::load::env_number::<u32>("BENCH_PAGE_FETCH_WAIT_MS", 500);
    let service =
        BenchService::start_with(|settings| settings.kafka.fetch_wait_max_ms = fetch_wait).await?;
    let rows = seed_read_model(
        &service,
        crate::load::env_number("BENCH_PAGE_TASKS", 100_000),
    )
    .await?;
    let rounds = (0..crate::load::env_number("BENCH_ROUNDS", 2))
        .map(|_| page_against_pgbench(&service, seconds));
    let mut measured = Vec::new();
    for round in rounds {
        measured.push(round.await?);
    }
    Ok(json!({ "team_tasks": rows, "fetch_wait_max_ms": fetch_wait, "rounds": measured }))
}

/// The API's page rate (with every process's CPU per page) next to pgbench's rate for the
/// page's SQL, one after the other, and their ratio beside issue 26's limit.
async fn page_against_pgbench(service: &BenchService, seconds: f64) -> anyhow::Result<Value> {
    let page = request(PAGE_QUERY, json!({"t": TEAM}));
    let reads = readers(service, READERS, seconds, page, a_page, "cpu_per_page").await?;
    let alone = pgbench_page(service, seconds)?;
    anyhow::ensure!(
        alone["per_second"].as_f64().unwrap_or(0.0) > 0.0,
        "pgbench served no page: {alone}"
    );
    let type_name = request("{ __typename }", json!({}));
    let floor = readers(
        service,
        READERS,
        seconds,
        type_name,
        the_type_name,
        "cpu_per_request",
    )
    .await?;
    let rate = |v: &Value, field: &str| v[field].as_f64().unwrap_or(0.0);
    let ratio = rate(&reads, "per_second") / rate(&alone, "per_second").max(1.0);
    Ok(json!({
        "api": reads,
        "postgres_page_query_alone": alone,
        "api_vs_pgbench": ratio,
        "api_vs_pgbench_at_least": PAGE_VS_PGBENCH,
        "request_floor": floor,
        "chronicle_budget_at_the_limit": budget(&reads["cpu_per_page"], &alone),
    }))
}

/// What Chronicle could spend on a page if the API were to serve [`PAGE_VS_PGBENCH`] of
/// pgbench's rate: the machine's CPU per page at that rate, less what Postgres, the broker and
/// the load generator spent per page in the round. Beside the request floor (`{ __typename }`)
/// it shows whether the limit is within reach of any page at all on this machine.
fn budget(cpu_per_page: &Value, pgbench: &Value) -> Value {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let at_limit = PAGE_VS_PGBENCH * pgbench["per_second"].as_f64().unwrap_or(0.0);
    let machine_us = cores * 1e6 / at_limit;
    let spent = |field: &str| cpu_per_page[field].as_f64().unwrap_or(0.0);
    let others_us = spent("postgres_us") + spent("local_broker_us") + spent("load_generator_us");
    json!({
        "machine_us_per_page": machine_us,
        "postgres_broker_and_load_us": others_us,
        "chronicle_us": machine_us - others_us,
        "chronicle_spent_us": spent("chronicle_us"),
    })
}

/// Issue 26 item 5: the API serves at least this share of pgbench's rate for the page's SQL.
const PAGE_VS_PGBENCH: f64 = 0.6;

/// Fills the read model with `count` tasks of one team (plus what the load wrote), as the
/// projection would have, with every index in place.
pub(crate) async fn seed_read_model(service: &BenchService, count: usize) -> anyhow::Result<i64> {
    sqlx::query(
        "INSERT INTO tasks (id, version, title, description, status, team_id, creator_id,
                            priority, labels, created_at, updated_at, watchers)
         SELECT gen_random_uuid(), 1, 'seeded task ' || n, '', 'OPEN', $1, 'u-' || (n % 1000),
                'NORMAL', ARRAY['seeded'], now(), now(), ARRAY['u-' || (n % 1000)]
         FROM generate_series(1, $2) AS n",
    )
    .bind(TEAM)
    .bind(count as i64)
    .execute(&service.db)
    .await?;
    sqlx::query("VACUUM ANALYZE tasks")
        .execute(&service.db)
        .await?;
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM tasks WHERE team_id = $1")
            .bind(TEAM)
            .fetch_one(&service.db)
            .await?,
    )
}

/// `clients` clients sending `body` back to back, each answer checked by `check`; the rate,
/// with every process's CPU per request under `cpu_key`.
pub(crate) async fn readers(
    service: &BenchService,
    clients: usize,
    seconds: f64,
    body: String,
    check: fn(&[u8]) -> anyhow::Result<()>,
    cpu_key: &str,
) -> anyhow::Result<Value> {
    let url: Arc<str> = service.graphql_url.as_str().into();
    let token: Arc<str> = service.token.as_str().into();
    let before = service.cpu()?;
    let mut load = closed_loop(clients, seconds, move |client, _, _| {
        let (url, token, body) = (url.clone(), token.clone(), body.clone());
        async move { check(&post(&client, &url, &token, body).await?.bytes().await?) }
    })
    .await?;
    let requests = load["count"].as_f64().unwrap_or(0.0);
    load[cpu_key] = before.per(&service.cpu()?, requests);
    Ok(load)
}

/// The team's first page of 50 tasks.
fn a_page(page: &[u8]) -> anyhow::Result<()> {
    let edges = count(page, br#""cursor":""#);
    let refused = count(page, br#""errors":"#) > 0;
    anyhow::ensure!(
        edges == 50 && !refused,
        "not a page of 50 tasks: {}",
        String::from_utf8_lossy(page)
    );
    Ok(())
}

/// The answer to `{ __typename }`: the cheapest authenticated GraphQL request, what the
/// service spends on a request before it reads a row (HTTP, the token, the parsed document,
/// the answer).
pub(crate) fn the_type_name(answer: &[u8]) -> anyhow::Result<()> {
    anyhow::ensure!(
        answer == br#"{"data":{"__typename":"Query"}}"#,
        "not the query's type name: {}",
        String::from_utf8_lossy(answer)
    );
    Ok(())
}

/// How often `needle` occurs in `page`. The readers count the edges of each answer instead of
/// decoding it into a JSON tree: the load generator shares the machine's cores with the service
/// and Postgres, so what it spends is taken from what is measured.
fn count(page: &[u8], needle: &[u8]) -> usize {
    page.windows(needle.len()).filter(|w| *w == needle).count()
}

/// pgbench running the page's SQL (the columns the API reads for [`PAGE_QUERY`], the team's
/// first 51 rows in id order) at [`READERS`] clients: the database's own rate for this query.
fn pgbench_page(service: &BenchService, seconds: f64) -> anyhow::Result<Value> {
    let script = std::env::temp_dir().join(format!("chronicle-page-{}.sql", std::process::id()));
    // `id title status version` shows four columns; a task is never read without its team,
    // creator, priority and times (`TaskView`'s description), so the API reads those too.
    std::fs::write(
        &script,
        format!(
            "SELECT id, version, title, status, team_id, creator_id, priority, created_at, \
             updated_at FROM tasks WHERE team_id = '{TEAM}' ORDER BY id LIMIT 51;\n"
        ),
    )?;
    crate::limits::pgbench_script(
        service.database_url(),
        &script,
        READERS,
        seconds.round() as u64,
    )
}
