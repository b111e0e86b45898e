//! A read replica for the queries: a pool that reads from the replica while it is up and
//! close enough to the primary, and from the primary otherwise. The query adapters are handed
//! this pool like any other; what it points at is decided here, every second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::PgPool;

use super::failover::{find, SwitchClock};
use super::target::Target;
use crate::InfraError;

/// How often the replica's lag is measured and the read pool pointed where it should.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long a lag measurement may take before the replica counts as down.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the read pool serves from now, and how far behind the replica was last measured.
#[derive(Default)]
pub struct ReplicaStatus {
    serving: AtomicBool,
    /// Milliseconds; `u64::MAX` when the replica could not be measured (down).
    lag_ms: AtomicU64,
}

impl ReplicaStatus {
    /// Whether queries are read on the replica now (else on the primary).
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Relaxed)
    }

    /// The replica's replay lag when last measured; `None` when it did not answer.
    pub fn lag(&self) -> Option<Duration> {
        match self.lag_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    fn record(&self, lag: Option<Duration>, serving: bool) {
        let ms = lag.map_or(u64::MAX, |lag| {
            lag.as_millis().min(u64::MAX as u128 - 1) as u64
        });
        self.lag_ms.store(ms, Ordering::Relaxed);
        self.serving.store(serving, Ordering::Relaxed);
        match lag {
            Some(lag) => metrics::gauge!("chronicle_db_replica_lag_seconds").set(lag.as_secs_f64()),
            None => metrics::gauge!("chronicle_db_replica_lag_seconds").set(f64::INFINITY),
        }
        metrics::gauge!("chronicle_db_replica_serving").set(f64::from(u8::from(serving)));
    }
}

/// The replica's replay lag: nothing when it has replayed all the primary had written when
/// asked (`primary_lsn`), else the time since the last transaction it replayed was committed.
const LAG_SQL: &str = "
    SELECT CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= $1::pg_lsn THEN 0
                ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))
           END::float8";

async fn measure(primary: &PgPool, replica: &mut PgConnection) -> Result<Duration, sqlx::Error> {
    let (primary_lsn,): (String,) = sqlx::query_as("SELECT pg_current_wal_lsn()::text")
        .fetch_one(primary)
        .await?;
    let (seconds,): (Option<f64>,) = sqlx::query_as(LAG_SQL)
        .bind(primary_lsn)
        .fetch_one(&mut *replica)
        .await?;
    // No transaction replayed yet since the replica started: as far behind as can be said.
    Ok(seconds.map_or(Duration::MAX, |s| Duration::from_secs_f64(s.max(0.0))))
}

/// The pool the queries read from, and its status; the pool follows the replica's health for
/// as long as `primary` is open.
pub async fn read_pool(
    primary: &PgPool,
    replica_url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    max_lag: Duration,
) -> Result<(PgPool, Arc<ReplicaStatus>), InfraError> {
    let target = Target::parse(replica_url)
        .map_err(|error| InfraError::Database {
            context: "read CHRONICLE_READ_DATABASE_URL".to_owned(),
            source: sqlx::Error::Configuration(error.into()),
        })?
        .with_application_name(READS_NAME);
    let clock = Arc::new(SwitchClock::default());
    let on_acquire = clock.clone();
    let status = Arc::new(ReplicaStatus::default());
    status.record(None, false);
    // Starts on the primary; the first check moves it to the replica when that is fit.
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(move |_, meta| {
            let fresh = on_acquire.fresh(meta.age);
            Box::pin(async move { Ok(fresh) })
        })
        .connect_lazy_with(on_primary(primary));
    let follower = Follower {
        primary: primary.clone(),
        reads: pool.clone(),
        target,
        max_lag,
        clock,
        status: status.clone(),
    };
    follower.check(&mut None).await;
    tokio::spawn(follower.run());
    Ok((pool, status))
}

/// Where the primary pool connects now (after a failover too), for the read pool: named as the
/// replica's connections are, so an operator sees which connections serve queries.
fn on_primary(primary: &PgPool) -> PgConnectOptions {
    (*primary.connect_options())
        .clone()
        .application_name(READS_NAME)
}

/// The `application_name` of the connections that serve queries.
const READS_NAME: &str = "chronicle-reads";

/// Points the read pool at the replica or the primary.
struct Follower {
    primary: PgPool,
    reads: PgPool,
    target: Target,
    max_lag: Duration,
    clock: Arc<SwitchClock>,
    status: Arc<ReplicaStatus>,
}

impl Follower {
    async fn run(self) {
        let mut probe = None;
        while !self.primary.is_closed() {
            tokio::time::sleep(CHECK_INTERVAL).await;
            self.check(&mut probe).await;
        }
    }

    /// Measures the replica (on `probe`, opened when missing) and points the pool.
    async fn check(&self, probe: &mut Option<(usize, PgConnection)>) {
        if probe.is_none() {
            *probe = tokio::time::timeout(MEASURE_TIMEOUT, find(&self.target))
                .await
                .ok()
                .and_then(Result::ok);
        }
        let lag = match probe.as_mut() {
            Some((_, connection)) => {
                match tokio::time::timeout(MEASURE_TIMEOUT, measure(&self.primary, connection))
                    .await
                {
                    Ok(Ok(lag)) => Some(lag),
                    _ => None,
                }
            }
            None => None,
        };
        if lag.is_none() {
            *probe = None;
        }
        let on_replica = lag.is_some_and(|lag| lag <= self.max_lag);
        let wanted = match (on_replica, probe.as_ref()) {
            (true, Some((index, _))) => self.target.hosts[*index].options.clone(),
            _ => on_primary(&self.primary),
        };
        let now = self.reads.connect_options();
        if (now.get_host(), now.get_port()) != (wanted.get_host(), wanted.get_port())
            || on_replica != self.status.serving()
        {
            self.reads.set_connect_options(wanted);
            self.clock.mark();
            match on_replica {
                true => tracing::info!(lag = ?lag, "queries read on the replica"),
                false => tracing::warn!(
                    lag = ?lag,
                    max_lag = ?self.max_lag,
                    "replica down or behind; queries read on the primary"
                ),
            }
        }
        self.status.record(lag, on_replica);
    }
}
