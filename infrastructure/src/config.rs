//! Settings from the environment (and `.env`), validated once at start.
//!
//! A missing or malformed setting stops the process with one line naming the variable, so a
//! misconfigured deployment fails at start instead of at the first request.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

/// A setting that is missing or malformed.
#[derive(Debug, Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong.
    pub message: String,
}

/// How the service reaches Kafka.
#[derive(Clone, PartialEq, Eq)]
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
    pub sasl_password: Option<String>,
    /// CA bundle for SSL.
    pub ssl_ca_location: Option<String>,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field(
                "sasl_password",
                &self.sasl_password.as_ref().map(|_| "<redacted>"),
            )
            .field("ssl_ca_location", &self.ssl_ca_location)
            .finish()
    }
}

/// How tokens are checked.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthSettings {
    /// HS256 with this secret.
    Hs256 {
        /// The shared secret (never logged).
        secret: String,
    },
    /// No authentication: every request acts as a dev admin. Only when set explicitly.
    Disabled,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hs256 { .. } => f.write_str("Hs256 { secret: <redacted> }"),
            Self::Disabled => f.write_str("Disabled"),
        }
    }
}

/// Every setting of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Postgres connection string.
    pub database_url: String,
    /// Most Postgres connections this process opens.
    pub database_max_connections: u32,
    /// Kafka.
    pub kafka: KafkaSettings,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// Token checking.
    pub auth: AuthSettings,
    /// Events between snapshots (0: never).
    pub snapshot_every: u64,
    /// `pretty` or `json`.
    pub log_json: bool,
    /// How long published outbox rows are kept before the retention job removes them.
    pub outbox_retention: Duration,
    /// How long a `minVersion` read waits for the projection before `STALE_READ`.
    pub read_your_writes_wait: Duration,
    /// Whether `serve` rebuilds, in the background, projections built by older projection code.
    pub rebuild_outdated: bool,
}

/// Reads one variable; empty counts as unset.
fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
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
    /// Reads settings for commands that need only the database (`migrate`, `replay`).
    pub fn database_url() -> Result<String, ConfigError> {
        var("DATABASE_URL").ok_or(ConfigError {
            variable: "DATABASE_URL",
            message: "is not set (./scripts/dev sets it for local use)".to_owned(),
        })
    }

    /// Reads and validates every setting.
    pub fn from_env() -> Result<Self, ConfigError> {
        let auth = match (
            var("CHRONICLE_AUTH").as_deref(),
            var("CHRONICLE_JWT_SECRET"),
        ) {
            (Some("disabled"), _) => AuthSettings::Disabled,
            (Some(other), _) if other != "jwt" => {
                return Err(ConfigError {
                    variable: "CHRONICLE_AUTH",
                    message: format!("must be 'jwt' or 'disabled', not {other:?}"),
                })
            }
            (_, Some(secret)) => AuthSettings::Hs256 { secret },
            (_, None) => {
                return Err(ConfigError {
                    variable: "CHRONICLE_JWT_SECRET",
                    message: "is not set; set it, or CHRONICLE_AUTH=disabled for local experiments"
                        .to_owned(),
                })
            }
        };
        let log_json = match var("CHRONICLE_LOG_FORMAT").as_deref() {
            None | Some("pretty") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError {
                    variable: "CHRONICLE_LOG_FORMAT",
                    message: format!("must be 'pretty' or 'json', not {other:?}"),
                })
            }
        };
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
            kafka: KafkaSettings {
                brokers: var("KAFKA_BROKERS").unwrap_or_else(|| "127.0.0.1:9092".to_owned()),
                topic_prefix: var("KAFKA_TOPIC_PREFIX").unwrap_or_default(),
                partitions,
                replication_factor: parsed("KAFKA_REPLICATION_FACTOR", 1)?,
                security_protocol,
                sasl_mechanism: var("KAFKA_SASL_MECHANISM"),
                sasl_username: var("KAFKA_SASL_USERNAME"),
                sasl_password: var("KAFKA_SASL_PASSWORD"),
                ssl_ca_location: var("KAFKA_SSL_CA_LOCATION"),
            },
            http_addr: parsed(
                "CHRONICLE_HTTP_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 8080)),
            )?,
            auth,
            snapshot_every: parsed("CHRONICLE_SNAPSHOT_EVERY", 100)?,
            log_json,
            outbox_retention: Duration::from_secs(parsed("CHRONICLE_OUTBOX_RETENTION_SECS", 3600)?),
            read_your_writes_wait: Duration::from_millis(parsed("CHRONICLE_READ_WAIT_MS", 2000)?),
            rebuild_outdated: parsed("CHRONICLE_REBUILD_OUTDATED", true)?,
        })
    }
}
