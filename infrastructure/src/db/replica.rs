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

/// The replica's lag, as the age of the oldest primary WAL position seen (one a second) that
/// it has not replayed yet: unlike the time since its last replayed commit, this reads 0 on an
/// idle primary and does not jump when a write follows a quiet spell.
#[derive(Default)]
struct LagClock {
    /// Primary WAL positions and when they were read, oldest first.
    seen: std::collections::VecDeque<(f64, std::time::Instant)>,
}

impl LagClock {
    /// At most this many positions are kept (ten minutes of checks): a replica further behind
    /// reads as behind by that much at least.
    const KEPT: usize = 600;

    fn primary_at(&mut self, position: f64) {
        if self.seen.back().is_none_or(|(last, _)| position > *last) {
            self.seen.push_back((position, std::time::Instant::now()));
            if self.seen.len() > Self::KEPT {
                self.seen.pop_front();
            }
        }
    }

    fn replayed(&mut self, position: f64) -> Duration {
        while self.seen.front().is_some_and(|(seen, _)| *seen <= position) {
            self.seen.pop_front();
        }
        self.seen
            .front()
            .map_or(Duration::ZERO, |(_, at)| at.elapsed())
    }
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
    let mut follower = Follower {
        primary: primary.clone(),
        reads: pool.clone(),
        probe_target: target
            .clone()
            .with_application_name("chronicle-replica-check"),
        target,
        max_lag,
        clock,
        status: status.clone(),
        lag: LagClock::default(),
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
    /// The replica's hosts, as the read pool connects to them.
    target: Target,
    /// The same, for the measuring connection (named apart from the pool's).
    probe_target: Target,
    max_lag: Duration,
    clock: Arc<SwitchClock>,
    status: Arc<ReplicaStatus>,
    lag: LagClock,
}

impl Follower {
    async fn run(mut self) {
        let mut probe = None;
        while !self.primary.is_closed() {
            tokio::time::sleep(CHECK_INTERVAL).await;
            self.check(&mut probe).await;
        }
    }

    /// Measures the replica (on `probe`, opened when missing) and points the pool.
    async fn check(&mut self, probe: &mut Option<(usize, PgConnection)>) {
        if probe.is_none() {
            *probe = find(&self.probe_target).await.ok();
        }
        // A primary that does not answer (a failover under way) leaves the replica serving
        // what it has: its lag is then judged by what it replayed of the positions seen.
        let primary_at = tokio::time::timeout(
            MEASURE_TIMEOUT,
            // Where the primary's WAL ends now, in bytes from the start.
            sqlx::query_scalar!(
                r#"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS "at!""#
            )
            .fetch_one(&self.primary),
        )
        .await;
        if let Ok(Ok(position)) = primary_at {
            self.lag.primary_at(position);
        }
        let replay = match probe.as_mut() {
            Some((_, connection)) => tokio::time::timeout(
                MEASURE_TIMEOUT,
                // Whether the replica is a standby, and where its replay is, in bytes from
                // the start.
                sqlx::query!(
                    r#"SELECT pg_is_in_recovery() AS "standby!",
                              coalesce(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0'), 0)::float8
                                AS "replayed!""#
                )
                .fetch_one(&mut *connection),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(|row| (row.standby, row.replayed)),
            None => None,
        };
        let lag = match replay {
            // A standby: how far behind.
            Some((true, replayed)) => Some(self.lag.replayed(replayed)),
            // Down, or no longer a standby (promoted apart from the primary): not fit.
            Some((false, _)) | None => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_position_not_replayed() {
        let mut lag = LagClock::default();
        lag.primary_at(100.0);
        assert_eq!(lag.replayed(100.0), Duration::ZERO, "caught up");
        // An idle primary: the same position again is no news.
        lag.primary_at(100.0);
        assert_eq!(lag.replayed(100.0), Duration::ZERO);
        lag.primary_at(200.0);
        std::thread::sleep(Duration::from_millis(30));
        lag.primary_at(300.0);
        let behind = lag.replayed(150.0);
        assert!(behind >= Duration::from_millis(30), "{behind:?}");
        // Replaying past 200 leaves only the newer position's age.
        assert!(lag.replayed(250.0) < behind);
        assert_eq!(lag.replayed(300.0), Duration::ZERO);
    }
}
