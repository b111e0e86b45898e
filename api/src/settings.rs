//! The API's own settings: where it listens, how tokens are checked, and the limits of one
//! request. They live here because nothing below the API reads them; the adapters' settings are
//! `chronicle_infrastructure::config::Settings`. Both read the environment the same way, and
//! the configuration table in docs/operations.md lists every variable of both.

use std::net::SocketAddr;
use std::time::Duration;

use chronicle_infrastructure::config::{parsed, var, ConfigError};
use chronicle_infrastructure::secret::Secret;

/// The API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// HTTP listen address (`CHRONICLE_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Token checking.
    pub auth: AuthSettings,
    /// Request limits of the GraphQL API.
    pub limits: ApiLimits,
}

impl ApiSettings {
    /// Reads and validates the API's settings.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_for(true)
    }

    /// Reads the settings of a process that serves GraphQL (`serves_api`) or only health and
    /// metrics: the latter needs no token settings, so none are asked for and GraphQL is
    /// never routed to them.
    pub fn from_env_for(serves_api: bool) -> Result<Self, ConfigError> {
        Ok(Self {
            auth: match serves_api {
                true => AuthSettings::from_env()?,
                false => AuthSettings::Disabled,
            },
            http_addr: parsed(
                "CHRONICLE_HTTP_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 8080)),
            )?,
            limits: ApiLimits::from_env()?,
        })
    }
}

/// Shortest accepted HS256 secret: RFC 7518 asks for a key at least as long as the hash.
pub(crate) const MIN_JWT_SECRET_BYTES: usize = 32;

/// How tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSettings {
    /// Bearer JWTs.
    Jwt(JwtSettings),
    /// No authentication: every request acts as a dev admin. Only when set explicitly.
    Disabled,
}

/// Keys and claims of accepted JWTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// HS256 secret (`CHRONICLE_JWT_SECRET`, at least [`MIN_JWT_SECRET_BYTES`]; never logged).
    pub hs256_secret: Option<Secret>,
    /// RS256 public keys, PEM (the contents of `CHRONICLE_JWT_PUBLIC_KEY_FILE`).
    pub rs256_public_keys: Option<String>,
    /// An identity provider's key set (`CHRONICLE_JWT_JWKS_URL`), for RS256 and ES256 tokens
    /// that name their key by `kid`.
    pub jwks: Option<JwksSettings>,
    /// Required `iss` (`CHRONICLE_JWT_ISSUER`).
    pub issuer: Option<String>,
    /// Required `aud` (`CHRONICLE_JWT_AUDIENCE`).
    pub audience: Option<String>,
    /// Where a token carries the caller's roles: a dotted path into its claims
    /// (`CHRONICLE_JWT_ROLES_CLAIM`; Keycloak puts them at `realm_access.roles`).
    pub roles_claim: String,
    /// Where it carries the caller's teams (`CHRONICLE_JWT_TEAMS_CLAIM`; `groups` with some
    /// identity providers).
    pub teams_claim: String,
}

/// Where an identity provider publishes its keys, and how often they are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// The JWKS document's URL (`CHRONICLE_JWT_JWKS_URL`; Keycloak:
    /// `https://HOST/realms/REALM/protocol/openid-connect/certs`, Auth0:
    /// `https://TENANT.auth0.com/.well-known/jwks.json`).
    pub url: String,
    /// How often the set is fetched again (`CHRONICLE_JWT_JWKS_REFRESH_SECS`).
    pub refresh: Duration,
    /// The shortest time between two fetches, whatever tokens arrive
    /// (`CHRONICLE_JWT_JWKS_MIN_INTERVAL_SECS`).
    pub min_interval: Duration,
}

impl JwksSettings {
    /// The set at `url`, refreshed every five minutes (providers announce a new key well
    /// before signing with it) and fetched at most every ten seconds (an unknown `kid` from a
    /// newly rotated key waits at most that long).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            refresh: Duration::from_secs(300),
            min_interval: Duration::from_secs(10),
        }
    }

    fn from_env() -> Result<Option<Self>, ConfigError> {
        let Some(url) = var("CHRONICLE_JWT_JWKS_URL") else {
            return Ok(None);
        };
        let default = Self::new(url.trim());
        Ok(Some(Self {
            refresh: Duration::from_secs(parsed(
                "CHRONICLE_JWT_JWKS_REFRESH_SECS",
                default.refresh.as_secs(),
            )?),
            min_interval: Duration::from_secs(parsed(
                "CHRONICLE_JWT_JWKS_MIN_INTERVAL_SECS",
                default.min_interval.as_secs(),
            )?),
            ..default
        }))
    }
}

/// The claim roles are read from unless `CHRONICLE_JWT_ROLES_CLAIM` says otherwise.
pub(crate) const DEFAULT_ROLES_CLAIM: &str = "roles";
/// The claim teams are read from unless `CHRONICLE_JWT_TEAMS_CLAIM` says otherwise.
pub(crate) const DEFAULT_TEAMS_CLAIM: &str = "teams";

impl AuthSettings {
    /// HS256 with `secret`, no issuer or audience (tests and local use).
    pub fn hs256(secret: impl Into<String>) -> Self {
        Self::Jwt(JwtSettings {
            hs256_secret: Some(Secret::new(secret)),
            rs256_public_keys: None,
            jwks: None,
            issuer: None,
            audience: None,
            roles_claim: DEFAULT_ROLES_CLAIM.to_owned(),
            teams_claim: DEFAULT_TEAMS_CLAIM.to_owned(),
        })
    }

    /// Reads the auth variables alone (the `token` command needs nothing else).
    pub fn from_env() -> Result<Self, ConfigError> {
        match var("CHRONICLE_AUTH").as_deref() {
            Some("disabled") => return Ok(Self::Disabled),
            None | Some("jwt") => {}
            Some(other) => {
                return Err(ConfigError {
                    variable: "CHRONICLE_AUTH",
                    message: format!("must be 'jwt' or 'disabled', not {other:?}"),
                })
            }
        }
        let hs256_secret = match (
            var("CHRONICLE_JWT_SECRET"),
            var("CHRONICLE_JWT_SECRET_FILE"),
        ) {
            (Some(secret), _) => Some(secret),
            // A file (a container secret) keeps the secret out of the environment, which
            // `docker inspect` and /proc show to anyone allowed to look.
            (None, Some(path)) => Some(
                std::fs::read_to_string(path.trim())
                    .map_err(|e| ConfigError {
                        variable: "CHRONICLE_JWT_SECRET_FILE",
                        message: format!("cannot read {path:?}: {e}"),
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if let Some(secret) = &hs256_secret {
            if secret.len() < MIN_JWT_SECRET_BYTES {
                return Err(ConfigError {
                    variable: "CHRONICLE_JWT_SECRET",
                    message: format!(
                        "must be at least {MIN_JWT_SECRET_BYTES} bytes (it is {}); generate one with `openssl rand -hex 32`",
                        secret.len()
                    ),
                });
            }
        }
        let rs256_public_keys = match var("CHRONICLE_JWT_PUBLIC_KEY_FILE") {
            None => None,
            Some(path) => Some(
                std::fs::read_to_string(path.trim()).map_err(|e| ConfigError {
                    variable: "CHRONICLE_JWT_PUBLIC_KEY_FILE",
                    message: format!("cannot read {path:?}: {e}"),
                })?,
            ),
        };
        let jwks = JwksSettings::from_env()?;
        if hs256_secret.is_none() && rs256_public_keys.is_none() && jwks.is_none() {
            return Err(ConfigError {
                variable: "CHRONICLE_JWT_SECRET",
                message: "is not set; set it (or CHRONICLE_JWT_PUBLIC_KEY_FILE or CHRONICLE_JWT_JWKS_URL), or CHRONICLE_AUTH=disabled for local experiments"
                    .to_owned(),
            });
        }
        Ok(Self::Jwt(JwtSettings {
            hs256_secret: hs256_secret.map(Secret::new),
            rs256_public_keys,
            jwks,
            issuer: var("CHRONICLE_JWT_ISSUER"),
            audience: var("CHRONICLE_JWT_AUDIENCE"),
            roles_claim: var("CHRONICLE_JWT_ROLES_CLAIM")
                .unwrap_or_else(|| DEFAULT_ROLES_CLAIM.to_owned()),
            teams_claim: var("CHRONICLE_JWT_TEAMS_CLAIM")
                .unwrap_or_else(|| DEFAULT_TEAMS_CLAIM.to_owned()),
        }))
    }
}

/// What one GraphQL request may ask for; beyond any of these the answer is `LIMIT_EXCEEDED`
/// (HTTP 413 for the body, `RATE_LIMITED` with HTTP 429 for the rate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLimits {
    /// Deepest selection nesting (`CHRONICLE_GRAPHQL_MAX_DEPTH`).
    pub max_depth: usize,
    /// Most complexity points: one per field, a connection's fields counted once per item of
    /// its page (`CHRONICLE_GRAPHQL_MAX_COMPLEXITY`).
    pub max_complexity: usize,
    /// Most aliased fields in one document (`CHRONICLE_GRAPHQL_MAX_ALIASES`).
    pub max_aliases: usize,
    /// Most operations in one batch (`CHRONICLE_GRAPHQL_MAX_BATCH`).
    pub max_batch: usize,
    /// Most subscriptions open at once on one WebSocket connection
    /// (`CHRONICLE_GRAPHQL_MAX_SUBSCRIPTIONS`).
    pub max_subscriptions: usize,
    /// Most subscriptions open at once for one token subject, over all its connections
    /// (`CHRONICLE_GRAPHQL_MAX_SUBSCRIPTIONS_PER_SUBJECT`).
    pub max_subscriptions_per_subject: usize,
    /// Most subscriptions open at once on this instance (`CHRONICLE_MAX_SUBSCRIPTIONS`).
    pub max_subscriptions_total: usize,
    /// Largest request body in bytes (`CHRONICLE_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Longest a request may run (`CHRONICLE_REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
    /// Whether the schema can be introspected (`CHRONICLE_GRAPHQL_INTROSPECTION`).
    pub introspection: bool,
    /// Sustained requests per second per subject (`CHRONICLE_RATE_LIMIT_PER_SECOND`; 0
    /// turns rate limiting off).
    pub rate_per_second: u32,
    /// Requests a subject may send at once above the sustained rate (`CHRONICLE_RATE_LIMIT_BURST`).
    pub rate_burst: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            // GraphiQL's introspection query nests deeper than 12; the deepest data query
            // (tasks with their history) nests 7.
            max_depth: 15,
            // A full page of 100 tasks with every field costs about 2,500; a page of tasks
            // each with a page of history is refused.
            max_complexity: 5_000,
            max_aliases: 30,
            max_batch: 10,
            max_subscriptions: 20,
            max_subscriptions_per_subject: 100,
            max_subscriptions_total: 10_000,
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            introspection: true,
            rate_per_second: 50,
            rate_burst: 100,
        }
    }
}

impl ApiLimits {
    /// Reads the limits, each variable falling back to its default.
    pub fn from_env() -> Result<Self, ConfigError> {
        let default = Self::default();
        let limits = Self {
            max_depth: parsed("CHRONICLE_GRAPHQL_MAX_DEPTH", default.max_depth)?,
            max_complexity: parsed("CHRONICLE_GRAPHQL_MAX_COMPLEXITY", default.max_complexity)?,
            max_aliases: parsed("CHRONICLE_GRAPHQL_MAX_ALIASES", default.max_aliases)?,
            max_batch: parsed("CHRONICLE_GRAPHQL_MAX_BATCH", default.max_batch)?,
            max_subscriptions: parsed(
                "CHRONICLE_GRAPHQL_MAX_SUBSCRIPTIONS",
                default.max_subscriptions,
            )?,
            max_subscriptions_per_subject: parsed(
                "CHRONICLE_GRAPHQL_MAX_SUBSCRIPTIONS_PER_SUBJECT",
                default.max_subscriptions_per_subject,
            )?,
            max_subscriptions_total: parsed(
                "CHRONICLE_MAX_SUBSCRIPTIONS",
                default.max_subscriptions_total,
            )?,
            max_body_bytes: parsed("CHRONICLE_MAX_BODY_BYTES", default.max_body_bytes)?,
            request_timeout: Duration::from_millis(parsed(
                "CHRONICLE_REQUEST_TIMEOUT_MS",
                default.request_timeout.as_millis() as u64,
            )?),
            introspection: parsed("CHRONICLE_GRAPHQL_INTROSPECTION", default.introspection)?,
            rate_per_second: parsed("CHRONICLE_RATE_LIMIT_PER_SECOND", default.rate_per_second)?,
            rate_burst: parsed("CHRONICLE_RATE_LIMIT_BURST", default.rate_burst)?,
        };
        for (variable, value) in [
            ("CHRONICLE_GRAPHQL_MAX_DEPTH", limits.max_depth),
            ("CHRONICLE_GRAPHQL_MAX_COMPLEXITY", limits.max_complexity),
            ("CHRONICLE_GRAPHQL_MAX_BATCH", limits.max_batch),
            (
                "CHRONICLE_GRAPHQL_MAX_SUBSCRIPTIONS",
                limits.max_subscriptions,
            ),
            (
                "CHRONICLE_GRAPHQL_MAX_SUBSCRIPTIONS_PER_SUBJECT",
                limits.max_subscriptions_per_subject,
            ),
            (
                "CHRONICLE_MAX_SUBSCRIPTIONS",
                limits.max_subscriptions_total,
            ),
            ("CHRONICLE_MAX_BODY_BYTES", limits.max_body_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError {
                    variable,
                    message: "must be at least 1".to_owned(),
                });
            }
        }
        if limits.request_timeout.is_zero() {
            return Err(ConfigError {
                variable: "CHRONICLE_REQUEST_TIMEOUT_MS",
                message: "must be at least 1".to_owned(),
            });
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jwt_secret_never_reaches_debug_output() {
        let auth = AuthSettings::hs256("x".repeat(40));
        assert!(!format!("{auth:?}").contains("xxxx"));
    }
}
