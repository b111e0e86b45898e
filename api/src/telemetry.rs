//! Logging and tracing set-up: pretty logs for people, JSON for log pipelines (each line with
//! its span's `request_id`, `correlation_id` and `trace_id`), level from `RUST_LOG`; spans
//! exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`otlp`]).

pub mod otlp;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, EnvFilter};

use self::otlp::{OtlpLayer, OtlpSettings};

/// Installs the global subscriber once; later calls are ignored (tests start many services).
/// Must run inside the Tokio runtime when span export is configured (it starts a task).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn"));
    let otlp = OtlpSettings::from_env().map(|settings| {
        let layer = OtlpLayer::start(settings.clone());
        (layer, settings)
    });
    let (layer, exporting) = match otlp {
        Some((layer, settings)) => (Some(layer), Some(settings.traces_url)),
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(filter).with(layer);
    let installed = if json {
        registry
            .with(fmt::layer().json().with_current_span(true))
            .try_init()
    } else {
        registry.with(fmt::layer()).try_init()
    };
    if let (Ok(()), Some(url)) = (installed, exporting) {
        tracing::info!(%url, "exporting spans over OTLP/HTTP (JSON)");
    }
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
