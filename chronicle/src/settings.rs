//! The process's settings as one typed tree, read from the environment once, where a command
//! starts: `serve` reads [`ServeSettings`]; an operator command reads the one branch it needs
//! (`Settings::database_url` alone, the store and broker's `Settings`, or `AuthSettings`).
//! Each branch is parsed by the crate that uses it, every variable through
//! `chronicle_infrastructure::config::{var, parsed}`, so empty means unset everywhere and a
//! malformed value stops the command naming its variable. The variables and their defaults
//! are listed in docs/operations.md and in each command's `--help` ([`crate::variables`]).

use chronicle_api::settings::ApiSettings;
use chronicle_infrastructure::config::{ConfigError, Settings};

use crate::app::Parts;
use crate::telemetry::TelemetrySettings;

/// Everything `chronicle serve` reads.
pub struct ServeSettings {
    /// The store, the broker and the service's own loops.
    pub service: Settings,
    /// Where the API listens, how it checks tokens (only when it serves GraphQL), its limits.
    pub api: ApiSettings,
    /// Logs and span export.
    pub telemetry: TelemetrySettings,
}

impl ServeSettings {
    /// Reads the whole tree for the `parts` this process runs.
    pub fn from_env(parts: Parts) -> Result<Self, ConfigError> {
        Ok(Self {
            service: Settings::from_env()?,
            api: ApiSettings::from_env_for(parts.api)?,
            telemetry: TelemetrySettings::from_env()?,
        })
    }
}
