//! Consumer lag per group, topic and partition, from librdkafka's own statistics, and the
//! partitions each instance owns after every rebalance.
//!
//! librdkafka already tracks each assigned partition's high watermark and committed offset;
//! its periodic statistics (`statistics.interval.ms`) carry the difference, so lag costs no
//! extra request to the brokers.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics};

/// How often librdkafka reports statistics (and the lag gauge refreshes).
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// The context of every Chronicle consumer: records `chronicle_consumer_lag_messages`.
pub struct LagReporter {
    group: String,
}

impl LagReporter {
    /// A reporter labelling with `group`.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
        }
    }
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        for (topic, details) in statistics.topics {
            for (partition, state) in details.partitions {
                // -1 is librdkafka's internal UA partition; a negative lag means "unknown yet".
                if partition < 0 || state.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(
                    "chronicle_consumer_lag_messages",
                    "group" => self.group.clone(),
                    "topic" => topic.clone(),
                    "partition" => partition.to_string(),
                )
                .set(state.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for LagReporter {
    /// Records how many partitions this instance owns in its group after every rebalance
    /// (`chronicle_consumer_assigned_partitions{group}`): with N instances, operators see the
    /// partitions spread, and a member holding none is idle.
    fn post_rebalance(&self, base_consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        let assigned = base_consumer.assignment().map_or(0, |list| list.count());
        metrics::gauge!(
            "chronicle_consumer_assigned_partitions",
            "group" => self.group.clone(),
        )
        .set(assigned as f64);
    }
}
