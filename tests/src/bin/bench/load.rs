//! The load generator's tools shared by every phase: GraphQL requests over plain HTTP, closed
//! loops of clients, latency summaries and the bench's settings.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

/// Concurrent connections of the closed-loop write load.
pub const CONNECTIONS: usize = 32;
/// The mutation of the write load.
pub const CREATE: &str = "mutation($i: CreateTaskInput!) { createTask(input: $i) { id version } }";

/// The `p`th percentile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Count, p50, p99 and max of latencies in milliseconds.
pub fn summary(mut millis: Vec<f64>) -> Value {
    millis.sort_by(f64::total_cmp);
    json!({
        "count": millis.len(),
        "p50_ms": percentile(&millis, 0.50),
        "p99_ms": percentile(&millis, 0.99),
        "max_ms": millis.last().copied().unwrap_or(f64::NAN),
    })
}

/// A GraphQL request body.
pub fn request(query: &str, variables: Value) -> String {
    json!({"query": query, "variables": variables}).to_string()
}

/// Posts one GraphQL request (a JSON body) as `token`; answers the HTTP response.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
}

/// Posts one GraphQL request as `token`; answers its `data`, or an error showing the response
/// when it carries `errors`.
pub async fn graphql(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: String,
) -> anyhow::Result<Value> {
    let mut response: Value = post(client, url, token, body).await?.json().await?;
    anyhow::ensure!(response["errors"].is_null(), "GraphQL errors: {response}");
    Ok(response["data"].take())
}

/// Sends createTask number `n` (a distinct title each); answers the new task's id.
pub async fn create(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    n: usize,
) -> anyhow::Result<String> {
    let variables =
        json!({"i": {"title": format!("bench {n}"), "teamId": "team-bench", "labels": ["bench"]}});
    let data = graphql(client, url, token, request(CREATE, variables)).await?;
    data["createTask"]["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("createTask answered no id: {data}"))
}

/// A token for `sub` with `roles` on every team, signed as the benchmark's service expects.
pub fn token(sub: &str, roles: &[&str]) -> anyhow::Result<String> {
    chronicle_api::auth::Authenticator::hs256(chronicle_tests::TEST_SECRET)
        .issue(
            sub,
            roles.iter().map(|r| r.to_string()).collect(),
            vec!["*".to_owned()],
            chrono::Duration::hours(1),
        )
        .context("sign a benchmark token")
}

/// Creates at least `count` tasks as `token` from [`CONNECTIONS`] clients, each titled
/// `{title} {client}-{n}` with a description, and answers how many (rounded up to the
/// clients): a store written through the API, as a user's tasks are.
pub async fn create_tasks_as(
    url: &str,
    token: &str,
    count: usize,
    title: &str,
) -> anyhow::Result<usize> {
    let (url, token, title): (Arc<str>, Arc<str>, Arc<str>) =
        (url.into(), token.into(), title.into());
    let per_client = count.div_ceil(CONNECTIONS);
    let mut writers = Vec::new();
    let shared = shared_client()?;
    for index in 0..CONNECTIONS {
        let (url, token, title) = (url.clone(), token.clone(), title.clone());
        let client = shared.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..per_client {
                let variables = json!({"i": {
                    "title": format!("{title} {index}-{n}"),
                    "description": "a description someone wrote, of some length",
                    "teamId": "team-bench"}});
                graphql(&client, &url, &token, request(CREATE, variables)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    Ok(per_client * CONNECTIONS)
}

/// One HTTP client for every simulated client: a pool that keeps a connection per client in
/// flight. A client of its own each loaded the system's CA certificates each (OpenSSL decoding
/// them took most of the load generator's CPU while readers started), on the cores the
/// service and Postgres are measured on.
fn shared_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().build()?)
}

/// Closed-loop load: `clients` clients, each sending `send(client, its index, request number)`
/// back to back for `seconds`; throughput, latency of the successful requests, and errors.
pub async fn closed_loop<F, Fut>(clients: usize, seconds: f64, send: F) -> anyhow::Result<Value>
where
    F: Fn(reqwest::Client, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    let shared = shared_client()?;
    for index in 0..clients {
        let send = send.clone();
        let client = shared.clone();
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0usize, None);
            let mut n = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                match send(client.clone(), index, n).await {
                    Ok(()) => latencies.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{error:#}"));
                    }
                }
                n += 1;
            }
            (latencies, errors, first_error)
        }));
    }
    let (mut all, mut errors, mut first_error) = (Vec::new(), 0, None);
    for worker in workers {
        let (latencies, failed, error) = worker.await?;
        all.extend(latencies);
        errors += failed;
        first_error = first_error.or(error);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = all.len();
    let mut result = summary(all);
    result["per_second"] = json!(count as f64 / elapsed);
    result["errors"] = json!(errors);
    // What the first failed request said, so a run with errors shows why.
    result["first_error"] = json!(first_error);
    result["clients"] = json!(clients);
    result["seconds"] = json!(elapsed);
    Ok(result)
}

/// createTask from `connections` clients back to back for `seconds`; `first` numbers the tasks
/// apart from other runs.
pub async fn create_load(
    url: &str,
    token: &str,
    connections: usize,
    seconds: f64,
    first: usize,
) -> anyhow::Result<Value> {
    let (url, token): (Arc<str>, Arc<str>) = (url.into(), token.into());
    closed_loop(connections, seconds, move |client, index, n| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            create(&client, &url, &token, first + index * 10_000_000 + n).await?;
            Ok(())
        }
    })
    .await
}

/// A number from the environment variable `name`, or `default`.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Each timed run's length (`BENCH_SECONDS`, default 10).
pub fn phase_seconds() -> u64 {
    env_number("BENCH_SECONDS", 10)
}

/// Open-loop load: `send(n)` started for n in `0..total` at `rate` a second, each in a task
/// of its own (a slow answer does not delay the next send); answers the rate achieved once
/// every send has finished.
pub async fn paced<F, Fut>(rate: u64, total: usize, send: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut requests = Vec::with_capacity(total);
    for n in 0..total {
        ticker.tick().await;
        requests.push(tokio::spawn(send(n)));
    }
    for request in requests {
        request.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
