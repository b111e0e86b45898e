//! The Prometheus exposition of the process's metrics.
//!
//! Every layer records through the `metrics` facade (as it logs through `tracing`), so no layer
//! below the edge knows the exporter. The recorder is process-wide: installed once, whatever
//! number of services a process starts (tests start several), and rendered at `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        describe();
        handle
    })
}

/// Help texts of the metrics Chronicle records.
fn describe() {
    metrics::describe_counter!(
        "chronicle_dead_letters_total",
        "Messages a consumer group parked on its dead-letter topic, by group and original topic"
    );
}
