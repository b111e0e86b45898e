//! Finding the server a URL asks for among its hosts, and following it when it moves: what
//! libpq does for each new connection (try the hosts in order, keep the first that fits
//! `target_session_attrs`), done once for a pool and again whenever the chosen host stops
//! fitting, as when a failover promotes a standby.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::sync::Notify;

use super::target::{Host, ServerRole, SessionAttrs, Target};

/// How long one host may take to accept a connection and say what it is. A host that is down
/// usually refuses at once; this bounds one that does not answer at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a pool checks that its host still fits; a new connection that finds the host
/// no longer fits asks for a check at once.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

async fn role_of(connection: &mut PgConnection) -> Result<ServerRole, sqlx::Error> {
    sqlx::query_as!(
        ServerRole,
        r#"SELECT pg_is_in_recovery() AS "in_recovery!",
                  current_setting('transaction_read_only') = 'on' AS "read_only!""#
    )
    .fetch_one(&mut *connection)
    .await
}

/// Connects to `host` and reads what it is; the error is why it cannot be used, in words.
async fn probe(host: &Host) -> Result<(PgConnection, ServerRole), String> {
    let attempt = async {
        let mut connection = host.options.connect().await?;
        let role = role_of(&mut connection).await?;
        Ok::<_, sqlx::Error>((connection, role))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(error)) => Err(short(&error)),
        Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// A driver error in a few words, without the URL.
fn short(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Tls(tls) => format!("TLS: {tls}"),
        other => other.to_string(),
    }
}

/// An error that reads as "the database is out of reach" (`UNAVAILABLE`), with `message`.
fn unreachable(message: String) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        message,
    ))
}

/// The first host of `target` that fits, with a connection to it; when none does, an error
/// naming every host tried and why it was passed over.
pub(crate) async fn find(target: &Target) -> Result<(usize, PgConnection), sqlx::Error> {
    let mut passed_over = Vec::new();
    // `prefer-standby`: a first round for standbys only, then any host (libpq's order).
    let rounds: &[SessionAttrs] = match target.attrs {
        SessionAttrs::PreferStandby => &[SessionAttrs::Standby, SessionAttrs::Any],
        attrs => &[attrs][..],
    };
    let mut standing_by = Vec::new();
    for (round, attrs) in rounds.iter().enumerate() {
        for (index, host) in target.hosts.iter().enumerate() {
            if round > 0 && !standing_by.contains(&index) {
                continue; // refused the connection in the first round
            }
            match probe(host).await {
                Ok((connection, role)) if attrs.fits(role) => return Ok((index, connection)),
                Ok((_, role)) => {
                    standing_by.push(index);
                    if round == 0 {
                        passed_over.push(format!("{}: {role}", host.name));
                    }
                }
                Err(why) => passed_over.push(format!("{}: {why}", host.name)),
            }
        }
    }
    Err(unreachable(format!(
        "no host is a {} server ({})",
        target.attrs.name(),
        passed_over.join("; ")
    )))
}

/// One connection of its own to a server `url` asks for: for a session that must outlive
/// statements (an advisory lock, LISTEN).
pub async fn connect_session(url: &str) -> Result<PgConnection, sqlx::Error> {
    let target = Target::parse(url)
        .map_err(|error| sqlx::Error::Configuration(error.into()))?
        .with_application_name("chronicle-session");
    if target.is_plain() {
        return target.hosts[0].options.connect().await;
    }
    Ok(find(&target).await?.1)
}

/// When a pool was last pointed at another host: idle connections older than that went to
/// the previous host and are closed rather than handed out.
pub(super) struct SwitchClock {
    since: Instant,
    /// Nanoseconds after `since`.
    switched_at: AtomicU64,
}

impl Default for SwitchClock {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            switched_at: AtomicU64::new(0),
        }
    }
}

impl SwitchClock {
    /// Records a switch now.
    pub(super) fn mark(&self) {
        let now = self.since.elapsed().as_nanos() as u64;
        self.switched_at.store(now, Ordering::Relaxed);
    }

    /// Whether a connection `age` old was made after the last switch.
    pub(super) fn fresh(&self, age: Duration) -> bool {
        let switched = Duration::from_nanos(self.switched_at.load(Ordering::Relaxed));
        age < self.since.elapsed().saturating_sub(switched)
    }
}

/// What a pool over several hosts shares with its hooks and its follower.
struct Following {
    target: Target,
    /// The host new connections go to.
    current: AtomicUsize,
    clock: SwitchClock,
    /// Asks the follower to check now.
    check: Notify,
}

/// A pool on the server `target` asks for, found among its hosts, that moves to another
/// host when its own stops fitting (checked every second, and whenever a new connection finds
/// it no longer fits): after a failover, new connections reach the new primary by
/// themselves.
pub(crate) async fn following_pool(
    target: Target,
    options: PgPoolOptions,
) -> Result<PgPool, sqlx::Error> {
    let (index, probe) = find(&target).await?;
    let following = Arc::new(Following {
        current: AtomicUsize::new(index),
        clock: SwitchClock::default(),
        check: Notify::new(),
        target,
    });
    let start = following.target.hosts[index].options.clone();
    let on_connect = following.clone();
    let on_acquire = following.clone();
    let pool = options
        .after_connect(move |connection, _| {
            let following = on_connect.clone();
            Box::pin(async move {
                let role = role_of(connection).await?;
                if following.target.attrs.fits(role) {
                    return Ok(());
                }
                following.check.notify_one();
                Err(unreachable(format!(
                    "the database host is {role}, not a {} server; looking for another",
                    following.target.attrs.name()
                )))
            })
        })
        .before_acquire(move |_, meta| {
            let fresh = on_acquire.clock.fresh(meta.age);
            Box::pin(async move { Ok(fresh) })
        })
        .connect_with(start)
        .await?;
    tracing::info!(
        host = %following.target.hosts[index].name,
        wanted = following.target.attrs.name(),
        "database host chosen"
    );
    tokio::spawn(follow(pool.clone(), following, probe));
    Ok(pool)
}

/// Checks the pool's host until the pool closes; moves the pool when the host stops fitting.
async fn follow(pool: PgPool, following: Arc<Following>, probe: PgConnection) {
    let mut probe = Some(probe);
    while !pool.is_closed() {
        tokio::select! {
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
            () = following.check.notified() => {}
        }
        let attrs = following.target.attrs;
        let still_fits = match probe.as_mut() {
            Some(connection) => {
                matches!(tokio::time::timeout(CONNECT_TIMEOUT, role_of(connection)).await,
                         Ok(Ok(role)) if attrs.fits(role))
            }
            None => false,
        };
        if still_fits {
            continue;
        }
        probe = None;
        match find(&following.target).await {
            Ok((index, connection)) => {
                let before = following.current.swap(index, Ordering::Relaxed);
                if before != index {
                    pool.set_connect_options(following.target.hosts[index].options.clone());
                    following.clock.mark();
                    tracing::warn!(
                        from = %following.target.hosts[before].name,
                        to = %following.target.hosts[index].name,
                        wanted = attrs.name(),
                        "database host changed; new connections go to the new host"
                    );
                }
                probe = Some(connection);
            }
            Err(error) => {
                tracing::warn!(error = %error, "no database host fits; checking again");
            }
        }
    }
}
