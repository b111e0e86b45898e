//! Gauges read from the store when metrics are scraped: the outbox backlog and projection lag.
//!
//! Counters and histograms are recorded where things happen (commands, consumers, GraphQL);
//! these are states of the database, so they are read on demand, where every instance sees
//! the same truth, rather than kept by whichever instance happens to run the relay.

use std::sync::Arc;

use crate::error_chain::Chain;
use crate::ports::held::{HeldKind, HeldStore};
use crate::ports::outbox_monitor::OutboxMonitor;
use crate::rebuild::Rebuilder;

/// Reads and records the gauges.
pub struct Gauges {
    outbox: Arc<dyn OutboxMonitor>,
    parked: Arc<dyn HeldStore>,
    rebuilder: Arc<Rebuilder>,
}

impl Gauges {
    /// Gauges over the outbox, its parked records and the projections.
    pub fn new(
        outbox: Arc<dyn OutboxMonitor>,
        parked: Arc<dyn HeldStore>,
        rebuilder: Arc<Rebuilder>,
    ) -> Self {
        Self {
            outbox,
            parked,
            rebuilder,
        }
    }

    /// Sets `chronicle_outbox_backlog_events`, `chronicle_outbox_oldest_unpublished_seconds`,
    /// `chronicle_outbox_parked_events`,
    /// `chronicle_projection_lag_events{projection}` and `chronicle_projection_lag_seconds{projection}`
    /// to their current values; a failed read leaves the previous value and is logged.
    pub async fn refresh(&self) {
        match self.outbox.backlog().await {
            Ok(backlog) => {
                metrics::gauge!("chronicle_outbox_backlog_events").set(backlog.events as f64);
                metrics::gauge!("chronicle_outbox_oldest_unpublished_seconds")
                    .set(backlog.oldest_seconds);
            }
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "outbox backlog unavailable for metrics")
            }
        }
        match self.parked.total(HeldKind::Parked).await {
            Ok(parked) => metrics::gauge!("chronicle_outbox_parked_events").set(parked as f64),
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "parked outbox records unavailable for metrics")
            }
        }
        match self.rebuilder.statuses().await {
            Ok(statuses) => {
                let now = chrono::Utc::now();
                for status in statuses {
                    let (events, seconds) = (status.lag() as f64, status.lag_seconds(now));
                    metrics::gauge!("chronicle_projection_lag_events", "projection" => status.name.clone())
                        .set(events);
                    metrics::gauge!("chronicle_projection_lag_seconds", "projection" => status.name)
                        .set(seconds);
                }
            }
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "projection status unavailable for metrics")
            }
        }
    }
}
