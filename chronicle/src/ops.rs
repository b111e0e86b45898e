//! What every process serves, whatever parts it runs: `/health/live`, `/health/ready` and
//! `/metrics`.
//!
//! A process started with `--only relay,projections,worker` has no GraphQL API, yet an
//! orchestrator still needs to know whether it is alive and ready, and an operator still needs
//! its relay's and consumers' metrics; so these routes are served on `CHRONICLE_HTTP_ADDR` by
//! every process, and GraphQL is added only where the API runs.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chronicle_application::observability::Gauges;
use chronicle_application::ports::held::{HeldKind, HeldStore};
use chronicle_infrastructure::db::replica::ReplicaStatus;
use chronicle_infrastructure::kafka::probe::{BrokerHealth, BrokerProbe};
use chronicle_infrastructure::outbox::RelayStatus;
use serde_json::json;
use sqlx::PgPool;

/// Shared state of the health and metrics routes.
#[derive(Clone)]
pub struct OpsState {
    /// For readiness checks.
    pub pool: PgPool,
    /// The relay's state, when this process runs one.
    pub relay: Option<Arc<RelayStatus>>,
    /// Gauges read from the database at each scrape.
    pub gauges: Arc<Gauges>,
    /// Asks the brokers for metadata, for readiness.
    pub broker: BrokerProbe,
    /// The parts this process runs.
    pub parts: PartsHealth,
    /// Held messages; parked records are counted for readiness.
    pub held: Arc<dyn HeldStore>,
    /// Whether audit checkpoints are signed (a key is configured).
    pub checkpoints: bool,
    /// The read replica's state, when one serves the queries.
    pub replica: Option<Arc<ReplicaStatus>>,
}

/// The parts a process runs (relay, projections, worker, api) and whether each still runs.
/// A part whose task ended (a consumer that gave up, say) makes the process unready, so an
/// orchestrator restarts it instead of leaving it half-working.
#[derive(Clone, Default)]
pub struct PartsHealth {
    parts: Arc<Mutex<Vec<Part>>>,
}

/// A part's name, and whether its task still runs.
type Part = (&'static str, Arc<AtomicBool>);

impl PartsHealth {
    /// Registers the part `name` as running, and answers `part` wrapped so that its end marks
    /// it stopped: returning, panicking (the runtime drops a task's future once it panicked)
    /// or being dropped unfinished, even before its first poll.
    pub fn watch(
        &self,
        name: &'static str,
        part: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let running = Arc::new(AtomicBool::new(true));
        self.lock().push((name, running.clone()));
        // Made before the future is first polled, so a part dropped before it ever ran (its
        // task aborted, the runtime shut down) is marked stopped too.
        let stopped_when_gone = StoppedWhenGone(running);
        async move {
            let _stopped_when_gone = stopped_when_gone;
            part.await;
        }
    }

    /// Each registered part and whether it runs. Tasks registered under one name (the API's
    /// live feed and its erasure follower are both `api`) report running only while all of
    /// them run.
    pub fn report(&self) -> BTreeMap<&'static str, bool> {
        let mut report = BTreeMap::new();
        for (name, running) in self.lock().iter() {
            let running = running.load(Ordering::Acquire);
            report
                .entry(*name)
                .and_modify(|all: &mut bool| *all &= running)
                .or_insert(running);
        }
        report
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Part>> {
        // A panic elsewhere while holding the lock cannot leave the list half-written (one
        // push), so a poisoned lock is still a good list.
        self.parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Marks a part stopped when dropped, however its future ended: a panic skips every line
/// after the `await` that panicked, but not the drop of what the future holds.
struct StoppedWhenGone(Arc<AtomicBool>);

impl Drop for StoppedWhenGone {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Asks the process listening on `addr` (an unspecified address means this host) whether it
/// is ready: its `/health/ready` body when it answers 200, else why not. `chronicle health`
/// runs it, so a container's health check needs no curl in the image.
pub async fn probe_ready(addr: SocketAddr) -> Result<String, String> {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!("http://{}/health/ready", SocketAddr::new(host, addr.port()));
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", chronicle_application::error_chain::Chain(&e)))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    match status.is_success() {
        true => Ok(body),
        false => Err(format!("{url} answered {status}: {body}")),
    }
}

/// How long `chronicle health` waits for the answer (readiness itself waits 2 s per check).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long readiness waits for the database's answer.
const READY_DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a scrape waits for the database gauges before answering with the last values.
const GAUGE_REFRESH_LIMIT: Duration = Duration::from_secs(2);

/// The health and metrics routes.
pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(prometheus))
        .with_state(state)
}

/// The Prometheus text exposition, database gauges refreshed first.
async fn prometheus(State(state): State<OpsState>) -> impl IntoResponse {
    if let Some(relay) = &state.relay {
        // 1 on the instance whose relay publishes; the sum over instances should be 1.
        metrics::gauge!("chronicle_relay_leader").set(f64::from(u8::from(relay.is_leader())));
    }
    if tokio::time::timeout(GAUGE_REFRESH_LIMIT, state.gauges.refresh())
        .await
        .is_err()
    {
        tracing::warn!("metrics gauges not refreshed in time; serving the last values");
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::handle().render(),
    )
}

/// Readiness: 503 when the database does not answer (nothing can be served without it) or a
/// part of this process stopped. The broker's state is reported but does not fail readiness:
/// commands still commit to the outbox while Kafka is away, and the relay drains it when Kafka
/// returns.
async fn ready(State(state): State<OpsState>) -> Response {
    let (database, broker, parked) = tokio::join!(
        tokio::time::timeout(
            READY_DATABASE_TIMEOUT,
            sqlx::query!("SELECT 1 AS alive").fetch_one(&state.pool)
        ),
        state.broker.check(),
        tokio::time::timeout(READY_DATABASE_TIMEOUT, state.held.total(HeldKind::Parked)),
    );
    // Parked records are reported, not failed on: the process works, an operator is needed.
    let parked = match parked {
        Ok(Ok(count)) => json!(count),
        _ => json!(null),
    };
    let database = matches!(database, Ok(Ok(_)));
    let broker = match broker {
        BrokerHealth::Reachable { brokers } => json!({"reachable": true, "brokers": brokers}),
        BrokerHealth::Unreachable(reason) => json!({"reachable": false, "error": reason}),
    };
    let relay = state.relay.as_ref().map(|status| {
        json!({
            "leader": status.is_leader(),
            "published": status.published(),
            "lastError": status.last_error(),
        })
    });
    let parts = state.parts.report();
    let all_running = parts.values().all(|running| *running);
    let parts: BTreeMap<_, _> = parts
        .into_iter()
        .map(|(name, running)| (name, if running { "running" } else { "stopped" }))
        .collect();
    let is_ready = database && all_running;
    let body = json!({
        "status": if is_ready { "ready" } else { "unavailable" },
        "database": database,
        "broker": broker,
        "relay": relay,
        "outbox": {"parked": parked},
        "audit": {"checkpoints": if state.checkpoints { "on" } else { "off" }},
        "parts": parts,
        // Reported, not failed on: the primary serves the queries while the replica cannot.
        "readReplica": state.replica.as_ref().map(|replica| json!({
            "serving": replica.serving(),
            "lagSeconds": replica.lag().map(|lag| lag.as_secs_f64()),
        })),
    });
    let code = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_part_whose_task_ended_is_reported_stopped() {
        let health = PartsHealth::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let relay = tokio::spawn(health.watch("relay", async {
            let _ = stopped.await;
        }));
        let _worker = tokio::spawn(health.watch("worker", std::future::pending()));
        tokio::task::yield_now().await;
        assert_eq!(
            health.report(),
            BTreeMap::from([("relay", true), ("worker", true)])
        );
        stop.send(()).unwrap();
        relay.await.unwrap();
        assert_eq!(
            health.report(),
            BTreeMap::from([("relay", false), ("worker", true)])
        );
    }

    #[tokio::test]
    async fn a_part_that_panicked_is_reported_stopped() {
        let health = PartsHealth::default();
        let (fail, failed) = tokio::sync::oneshot::channel::<()>();
        let projections = tokio::spawn(health.watch("projections", async {
            let _ = failed.await;
            panic!("a projection's handler panicked");
        }));
        let _relay = tokio::spawn(health.watch("relay", std::future::pending()));
        let _other_projections = tokio::spawn(health.watch("projections", std::future::pending()));
        tokio::task::yield_now().await;
        assert!(health.report()["projections"]);
        fail.send(()).unwrap();
        assert!(projections.await.unwrap_err().is_panic());
        assert_eq!(
            health.report(),
            BTreeMap::from([("projections", false), ("relay", true)]),
            "one of two tasks named projections stopped"
        );
    }

    #[tokio::test]
    async fn a_part_aborted_before_it_ran_is_reported_stopped() {
        let health = PartsHealth::default();
        let never_polled = health.watch("worker", std::future::pending());
        assert_eq!(health.report(), BTreeMap::from([("worker", true)]));
        drop(never_polled);
        assert_eq!(health.report(), BTreeMap::from([("worker", false)]));
    }
}
