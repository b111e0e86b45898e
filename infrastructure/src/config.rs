//! Settings from the environment (and `.env`), validated once at start.
//!
//! A missing or malformed setting stops the process with one line naming the variable, so a
//! misconfigured deployment fails at start instead of at the first request.

use std::time::Duration;

use thiserror::Error;

use crate::secret::{DatabaseUrl, Secret};

/// A setting that is missing or malformed.
#[derive(Debug, Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The producer's `linger.ms` unless `KAFKA_LINGER_MS` says otherwise.
pub const DEFAULT_LINGER_MS: u32 = 2;

/// The relay's least time between reads while rows keep coming, unless
/// `CHRONICLE_RELAY_READ_INTERVAL_MS` says otherwise: Apache Kafka's own producer waits as long
/// (`linger.ms`, 5 ms since Kafka 4.0) to fill its batches.
pub const DEFAULT_RELAY_READ_INTERVAL_MS: u64 = 5;

/// How the service reaches Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Prepended to every topic name.
    pub topic_prefix: String,
    /// Partitions of topics the service creates.
    pub partitions: i32,
    /// Replication factor of topics the service creates.
    pub replication_factor: i32,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, with SASL.
    pub sasl_mechanism: Option<String>,
    /// SASL user.
    pub sasl_username: Option<String>,
    /// SASL password (never logged: see the `Debug` impl).
    pub sasl_password: Option<Secret>,
    /// CA bundle for SSL.
    pub ssl_ca_location: Option<String>,
    /// Longest a consumer's fetch waits at the broker for new records
    /// (`KAFKA_FETCH_WAIT_MAX_MS`, librdkafka's default). Apache Kafka answers a fetch as soon as a
    /// record arrives, so there this only bounds idle polling; a broker that answers only when
    /// the wait ends (Tansu, which `./scripts/dev` starts) adds up to this much to the time a
    /// change takes to reach the read models, so `./scripts/dev` sets 10.
    pub fetch_wait_max_ms: u32,
    /// Largest record the producer sends (`KAFKA_MESSAGE_MAX_BYTES`, librdkafka's
    /// `message.max.bytes`): set it to the brokers' own limit, so an oversized event is refused
    /// here, before anything behind it is sent, and parked.
    pub message_max_bytes: u32,
    /// How long the relay's producer waits to fill a batch (`KAFKA_LINGER_MS`, librdkafka's
    /// `linger.ms`). Longer means fewer and larger produce requests, so less work per event
    /// for the producer and the brokers, at up to this much more time from commit to Kafka.
    pub linger_ms: u32,
}

/// Where queries are read when a replica serves them, and when the primary takes over.
#[derive(Debug, Clone)]
pub struct ReadReplicaSettings {
    /// The replica's connection string (`CHRONICLE_READ_DATABASE_URL`).
    pub url: DatabaseUrl,
    /// How long a `minVersion` read waits for the replica before it reads the primary
    /// (`CHRONICLE_READ_REPLICA_MAX_WAIT_MS`).
    pub max_wait: Duration,
    /// A replica further behind than this is left for the primary until it catches up
    /// (`CHRONICLE_READ_REPLICA_MAX_LAG_MS`).
    pub max_lag: Duration,
}

/// Every setting of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Postgres connection string.
    pub database_url: DatabaseUrl,
    /// Most Postgres connections this process opens.
    pub database_max_connections: u32,
    /// Where connections that need a session of their own connect: the relay's and the
    /// checkpointer's advisory locks, the relay's `LISTEN`, a rebuild's locks
    /// (`CHRONICLE_SESSION_DATABASE_URL`; none: `DATABASE_URL`). Behind a pooler in
    /// transaction mode, point it at Postgres or at a session-mode pool.
    pub session_database_url: Option<DatabaseUrl>,
    /// A replica that serves the queries (`CHRONICLE_READ_DATABASE_URL`, the same syntax as
    /// `DATABASE_URL`); none: the primary serves them.
    pub read_replica: Option<ReadReplicaSettings>,
    /// Kafka.
    pub kafka: KafkaSettings,
    /// Events between snapshots (0: never).
    pub snapshot_every: u64,
    /// Whether concurrent commands on different aggregates are appended in groups, one
    /// statement and transaction each (`CHRONICLE_GROUP_COMMIT`; on by default: more commands
    /// per second for less of the service's and Postgres's CPU each, docs/performance.md).
    /// Off, every command is its own transaction.
    pub group_commit: bool,
    /// How long published outbox rows are kept before the retention job removes them.
    pub outbox_retention: Duration,
    /// Least time from the end of one of the relay's reads to the next while rows keep coming
    /// (`CHRONICLE_RELAY_READ_INTERVAL_MS`); a row after a quiet spell, and the rest of a read
    /// cut short, are read at once.
    pub relay_read_interval: Duration,
    /// How long a `minVersion` read waits for the projection before `STALE_READ`.
    pub read_your_writes_wait: Duration,
    /// How often each instance looks for new events while anyone subscribes
    /// (`CHRONICLE_FEED_POLL_MS`): bounds the delay of a notification, and costs one small
    /// statement per round.
    pub feed_poll: Duration,
    /// The same while nobody subscribes (`CHRONICLE_FEED_IDLE_POLL_MS`): how far a new
    /// live-only subscription may start before the store's end.
    pub feed_idle_poll: Duration,
    /// Whether `serve` rebuilds, in the background, projections built by older projection code.
    pub rebuild_outdated: bool,
    /// How long a stopping `serve` waits for in-flight requests, the producer's flush and the
    /// consumers' commits before it gives up and exits 1 (`CHRONICLE_SHUTDOWN_TIMEOUT_SECS`).
    pub shutdown_timeout: Duration,
    /// How long a request waits for a database connection before it answers `UNAVAILABLE`
    /// (`CHRONICLE_DB_ACQUIRE_TIMEOUT_MS`): how fast requests fail while the database is away;
    /// with a healthy database a wait that long means the pool is far too small.
    pub database_acquire_timeout: Duration,
    /// Attempts the report worker makes at a request that keeps failing before it sets it
    /// aside as a dead letter (`CHRONICLE_WORKER_MAX_ATTEMPTS`).
    pub worker_max_attempts: u32,
    /// The Ed25519 key (PKCS#8 PEM) audit checkpoints are signed with
    /// (`CHRONICLE_AUDIT_SIGNING_KEY_FILE`); none: no tree, no checkpoints.
    pub audit_signing_key_file: Option<String>,
    /// How often a checkpoint is signed when events were added
    /// (`CHRONICLE_AUDIT_CHECKPOINT_SECS`).
    pub audit_checkpoint_interval: Duration,
    /// Whether new events are stored with their personal values sealed under their subjects'
    /// keys, so a person can be erased (`CHRONICLE_SEAL_PERSONAL_DATA`).
    pub seal_personal_data: bool,
    /// How long this process keeps a subject's key in memory (`CHRONICLE_PRIVACY_KEY_CACHE_SECS`):
    /// the longest another process may still open an erased person's values.
    pub privacy_key_cache: Duration,
}

/// The default of `CHRONICLE_PRIVACY_KEY_CACHE_SECS`, also what commands that read no other
/// setting (`chronicle replay`) use.
pub const DEFAULT_PRIVACY_KEY_CACHE_SECS: u64 = 60;

/// Reads one variable; empty counts as unset. Every setting is read through it or
/// [`parsed`], here and in the API's settings.
pub fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub fn parsed<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|e| ConfigError {
            variable: name,
            message: format!("cannot parse {raw:?}: {e}"),
        }),
    }
}

impl Settings {
    /// The URL of connections that need a session of their own.
    pub fn session_url(&self) -> &DatabaseUrl {
        self.session_database_url
            .as_ref()
            .unwrap_or(&self.database_url)
    }

    /// Reads settings for commands that need only the database (`migrate`, `replay`).
    pub fn database_url() -> Result<DatabaseUrl, ConfigError> {
        var("DATABASE_URL")
            .map(DatabaseUrl::new)
            .ok_or(ConfigError {
                variable: "DATABASE_URL",
                message: "is not set (./scripts/dev sets it for local use)".to_owned(),
            })
    }

    /// Reads and validates every setting.
    pub fn from_env() -> Result<Self, ConfigError> {
        let security_protocol = var("KAFKA_SECURITY_PROTOCOL")
            .unwrap_or_else(|| "plaintext".to_owned())
            .to_ascii_lowercase();
        if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"].contains(&security_protocol.as_str())
        {
            return Err(ConfigError {
                variable: "KAFKA_SECURITY_PROTOCOL",
                message: format!(
                    "must be plaintext, ssl, sasl_plaintext or sasl_ssl, not {security_protocol:?}"
                ),
            });
        }
        let sasl_mechanism = var("KAFKA_SASL_MECHANISM").map(|m| m.to_ascii_uppercase());
        if security_protocol.starts_with("sasl") {
            match sasl_mechanism.as_deref() {
                Some("PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") => {}
                other => {
                    return Err(ConfigError {
                        variable: "KAFKA_SASL_MECHANISM",
                        message: format!(
                            "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 with {security_protocol}, not {other:?}"
                        ),
                    })
                }
            }
            for variable in ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"] {
                if var(variable).is_none() {
                    return Err(ConfigError {
                        variable,
                        message: format!("is required with {security_protocol}"),
                    });
                }
            }
        }
        let partitions: i32 = parsed("KAFKA_PARTITIONS", 6)?;
        if partitions < 1 {
            return Err(ConfigError {
                variable: "KAFKA_PARTITIONS",
                message: "must be at least 1".to_owned(),
            });
        }
        Ok(Self {
            database_url: Self::database_url()?,
            database_max_connections: parsed("CHRONICLE_DB_MAX_CONNECTIONS", 16)?,
            session_database_url: var("CHRONICLE_SESSION_DATABASE_URL").map(DatabaseUrl::new),
            read_replica: match var("CHRONICLE_READ_DATABASE_URL") {
                None => None,
                Some(url) => Some(ReadReplicaSettings {
                    url: DatabaseUrl::new(url),
                    max_wait: Duration::from_millis(parsed(
                        "CHRONICLE_READ_REPLICA_MAX_WAIT_MS",
                        250,
                    )?),
                    max_lag: Duration::from_millis(parsed(
                        "CHRONICLE_READ_REPLICA_MAX_LAG_MS",
                        5000,
                    )?),
                }),
            },
            kafka: KafkaSettings {
                brokers: var("KAFKA_BROKERS").unwrap_or_else(|| "127.0.0.1:9092".to_owned()),
                topic_prefix: var("KAFKA_TOPIC_PREFIX").unwrap_or_default(),
                partitions,
                replication_factor: parsed("KAFKA_REPLICATION_FACTOR", 1)?,
                security_protocol,
                sasl_mechanism,
                sasl_username: var("KAFKA_SASL_USERNAME"),
                sasl_password: var("KAFKA_SASL_PASSWORD").map(Secret::new),
                ssl_ca_location: var("KAFKA_SSL_CA_LOCATION"),
                fetch_wait_max_ms: parsed("KAFKA_FETCH_WAIT_MAX_MS", 500)?,
                message_max_bytes: parsed("KAFKA_MESSAGE_MAX_BYTES", 1_000_000)?,
                linger_ms: parsed("KAFKA_LINGER_MS", DEFAULT_LINGER_MS)?,
            },
            snapshot_every: parsed("CHRONICLE_SNAPSHOT_EVERY", 100)?,
            group_commit: parsed("CHRONICLE_GROUP_COMMIT", true)?,
            outbox_retention: Duration::from_secs(parsed("CHRONICLE_OUTBOX_RETENTION_SECS", 3600)?),
            relay_read_interval: Duration::from_millis(parsed(
                "CHRONICLE_RELAY_READ_INTERVAL_MS",
                DEFAULT_RELAY_READ_INTERVAL_MS,
            )?),
            read_your_writes_wait: Duration::from_millis(parsed("CHRONICLE_READ_WAIT_MS", 2000)?),
            feed_poll: Duration::from_millis(parsed("CHRONICLE_FEED_POLL_MS", 20)?.max(1)),
            feed_idle_poll: Duration::from_millis(
                parsed("CHRONICLE_FEED_IDLE_POLL_MS", 250)?.max(1),
            ),
            rebuild_outdated: parsed("CHRONICLE_REBUILD_OUTDATED", true)?,
            // Below Kubernetes' default grace period, so the process ends its own way.
            shutdown_timeout: Duration::from_secs(parsed("CHRONICLE_SHUTDOWN_TIMEOUT_SECS", 30)?),
            database_acquire_timeout: Duration::from_millis(parsed(
                "CHRONICLE_DB_ACQUIRE_TIMEOUT_MS",
                2000,
            )?),
            // With the worker's backoff (0.2 s doubling, at most 30 s), about a minute of trying.
            worker_max_attempts: parsed("CHRONICLE_WORKER_MAX_ATTEMPTS", 8)?.max(1),
            audit_signing_key_file: var("CHRONICLE_AUDIT_SIGNING_KEY_FILE"),
            audit_checkpoint_interval: Duration::from_secs(
                parsed("CHRONICLE_AUDIT_CHECKPOINT_SECS", 10)?.max(1),
            ),
            seal_personal_data: parsed("CHRONICLE_SEAL_PERSONAL_DATA", true)?,
            privacy_key_cache: Duration::from_secs(parsed(
                "CHRONICLE_PRIVACY_KEY_CACHE_SECS",
                DEFAULT_PRIVACY_KEY_CACHE_SECS,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::redact_url;

    #[test]
    fn passwords_never_reach_debug_output() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/chronicle"),
            "postgres://app:<redacted>@db:5432/chronicle"
        );
        assert_eq!(
            redact_url("postgres://db/chronicle"),
            "postgres://db/chronicle"
        );
        let kafka = KafkaSettings {
            brokers: "b:9092".into(),
            topic_prefix: String::new(),
            partitions: 1,
            replication_factor: 1,
            security_protocol: "sasl_ssl".into(),
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("svc".into()),
            sasl_password: Some(Secret::new("kafka-pass-123")),
            ssl_ca_location: None,
            fetch_wait_max_ms: 500,
            message_max_bytes: 1_000_000,
            linger_ms: DEFAULT_LINGER_MS,
        };
        assert!(!format!("{kafka:?}").contains("kafka-pass-123"));
    }
}
