//! Logging set-up: pretty for people, JSON for log pipelines; level from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are ignored (tests start many services).
pub fn init(json: bool) {
    init_with(json, "info,sqlx=warn,rdkafka=warn");
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

fn init_with(json: bool, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
}
