//! Logging and tracing set-up: pretty logs for people, JSON for log pipelines (each line with
//! its span's `request_id`, `correlation_id` and `trace_id`), level from `RUST_LOG`; spans
//! exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`otlp`]).

mod filter;
pub mod otlp;

use std::io::IsTerminal as _;
use std::sync::Arc;

use chronicle_application::data::trace::Sampler;
use chronicle_infrastructure::config::{var, ConfigError};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, EnvFilter};

use self::filter::{LogLines, LogsAndTraces};

use self::otlp::settings::{OtelEnv, OtlpSettings};
use self::otlp::OtlpLayer;

/// How the process logs and exports spans: the telemetry branch of the settings tree
/// ([`crate::settings`]), read once where a command starts.
pub struct TelemetrySettings {
    /// JSON log lines (`CHRONICLE_LOG_FORMAT=json`) rather than pretty ones.
    pub log_json: bool,
    /// Which traces are sampled (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
    sampler: Sampler,
    /// Where spans go, if anywhere (`OTEL_EXPORTER_OTLP_*`).
    export: Option<OtlpSettings>,
}

impl TelemetrySettings {
    /// Reads `CHRONICLE_LOG_FORMAT` and the `OTEL_*` variables; a malformed one is an error
    /// naming it.
    pub fn from_env() -> Result<Self, ConfigError> {
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
        let env = OtelEnv::process();
        Ok(Self {
            log_json,
            sampler: env.sampler()?,
            export: env.exporter()?,
        })
    }
}

/// Installs the global subscriber once; later calls are ignored (tests start many services).
/// Must run inside the Tokio runtime when span export is configured (it starts a task).
///
/// `RUST_LOG` filters the logs only: Chronicle's spans (at `debug` and above) and the statements
/// are exported whatever the log level, so quieting the logs never silences the traces.
pub fn init(settings: TelemetrySettings) -> Result<(), ConfigError> {
    chronicle_application::data::trace::set_sampler(settings.sampler);
    let exporting = settings.export;
    let json = settings.log_json;
    let logs = Arc::new(
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn")),
    );
    let (layer, url) = match exporting {
        Some(settings) => {
            let url = settings.traces_url.clone();
            let layer = OtlpLayer::start(settings).map_err(|error| ConfigError {
                variable: "OTEL_EXPORTER_OTLP_ENDPOINT",
                message: chronicle_application::error_chain::Chain(&error).to_string(),
            })?;
            (Some(layer), Some(url))
        }
        None => (None, None),
    };
    let registry = tracing_subscriber::registry()
        .with(LogsAndTraces::new(logs.clone(), layer.is_some()))
        .with(layer);
    // The fmt layer writes events only, so the spans let through for export add context to
    // log lines but no lines of their own; `LogLines` keeps out the statement events let
    // through for export.
    let installed = if json {
        registry
            .with(LogLines::new(
                fmt::layer().json().with_current_span(true),
                logs,
            ))
            .try_init()
    } else {
        // Colours only for a person at a terminal who did not ask for none (`NO_COLOR`): in a
        // file or a collector's pipe the escape codes are noise, and styling every span's
        // field names cost CPU on every request and consumed message (docs/performance.md).
        let colours = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
        registry
            .with(LogLines::new(fmt::layer().with_ansi(colours), logs))
            .try_init()
    };
    if let (Ok(()), Some(url)) = (installed, url) {
        tracing::info!(%url, "exporting spans over OTLP/HTTP (OpenTelemetry SDK)");
    }
    Ok(())
}

/// Logging for one-shot commands (`chronicle replay`): warnings only unless `RUST_LOG` says
/// otherwise, on stderr, so stdout carries just the command's own report.
pub fn init_for_command() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
