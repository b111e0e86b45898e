//! Logging and tracing set-up: pretty logs for people, JSON for log pipelines (each line with
//! its span's `request_id`, `correlation_id` and `trace_id`), level from `RUST_LOG`; spans
//! exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`otlp`]).

mod filter;
pub mod otlp;

use chronicle_infrastructure::config::ConfigError;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, EnvFilter};

use self::filter::LogsAndTraces;

use self::otlp::settings::OtelEnv;
use self::otlp::OtlpLayer;

/// Installs the global subscriber once; later calls are ignored (tests start many services).
/// Must run inside the Tokio runtime when span export is configured (it starts a task).
/// Fails on a malformed `OTEL_*` variable, naming it.
///
/// `RUST_LOG` filters the logs only: spans are exported at `info` and above whatever the log
/// level, so quieting the logs never silences the traces.
pub fn init(json: bool) -> Result<(), ConfigError> {
    let env = OtelEnv::process();
    chronicle_application::data::trace::set_sampler(env.sampler()?);
    let exporting = env.exporter()?;
    let logs = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn"));
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
        .with(LogsAndTraces::new(logs, layer.is_some()))
        .with(layer);
    // The fmt layer writes events only, so the spans let through for export add context to
    // log lines but no lines of their own.
    let installed = if json {
        registry
            .with(fmt::layer().json().with_current_span(true))
            .try_init()
    } else {
        registry.with(fmt::layer()).try_init()
    };
    if let (Ok(()), Some(url)) = (installed, url) {
        tracing::info!(%url, "exporting spans over OTLP/HTTP");
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
