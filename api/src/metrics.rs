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
        // Histograms as buckets (aggregatable across instances), from 1 ms to 10 s.
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
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
    metrics::describe_histogram!(
        "chronicle_command_duration_seconds",
        metrics::Unit::Seconds,
        "Command handling time (load, decide, append), by command and outcome"
    );
    metrics::describe_histogram!(
        "chronicle_graphql_operation_duration_seconds",
        metrics::Unit::Seconds,
        "GraphQL root field resolution time, by type (Query, Mutation, Subscription), field and outcome"
    );
    metrics::describe_counter!(
        "chronicle_relay_published_total",
        "Outbox events the active relay published and Kafka acknowledged"
    );
    metrics::describe_counter!(
        "chronicle_relay_publish_failures_total",
        "Outbox events whose delivery failed (they stay in the outbox and are retried)"
    );
    metrics::describe_histogram!(
        "chronicle_relay_publish_lag_seconds",
        metrics::Unit::Seconds,
        "Time from an event's commit to Kafka's acknowledgement of it"
    );
    metrics::describe_gauge!(
        "chronicle_outbox_backlog_events",
        "Events committed to the store and not yet published to Kafka"
    );
    metrics::describe_gauge!(
        "chronicle_outbox_oldest_unpublished_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest unpublished outbox event (0 when none)"
    );
    metrics::describe_gauge!(
        "chronicle_projection_lag_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest event the projection's rows do not reflect yet (0 when caught up)"
    );
    metrics::describe_gauge!(
        "chronicle_projection_lag_events",
        "Store positions of the projection's aggregate type not yet reflected by its rows (an upper bound)"
    );
}
