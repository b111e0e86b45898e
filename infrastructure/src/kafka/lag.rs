//! Consumer lag per group, topic and partition, from librdkafka's own statistics, and the
//! partitions each instance owns after every rebalance.
//!
//! librdkafka already tracks each assigned partition's high watermark and committed offset;
//! its periodic statistics (`statistics.interval.ms`) carry the difference, so lag costs no
//! extra request to the brokers.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics};

/// How often librdkafka reports statistics (and the lag gauge refreshes).
pub(crate) const STATISTICS_INTERVAL_MS: &str = "5000";

/// The context of every Chronicle consumer: records `chronicle_consumer_lag_messages`.
pub(crate) struct LagReporter {
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

/// librdkafka's fetch state of a partition this consumer owns and fetches.
const FETCH_ACTIVE: &str = "active";

/// librdkafka's fetch states of a partition this consumer does not own (any more).
const FETCH_NOT_OWNED: [&str; 3] = ["none", "stopping", "stopped"];

/// A partition this consumer owns, with its lag when it fetches it and the lag is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnedPartition {
    /// Its topic.
    pub topic: String,
    /// Its number.
    pub partition: i32,
    /// Messages behind the high watermark; `None` until librdkafka fetches and knows.
    pub lag: Option<i64>,
}

/// The partitions this consumer owns, from librdkafka's per-partition statistics
/// `(topic, partition, fetch state, consumer lag)`. librdkafka keeps statistics of partitions
/// it no longer owns (revoked in a rebalance: fetch state `none`, `stopping` or `stopped`),
/// and `-1` is its internal unassigned partition; neither is this consumer's to report. Lag
/// counts only once the partition is fetched (`active`): before, it is a stale figure.
pub(crate) fn owned_partitions<'a>(
    partitions: impl IntoIterator<Item = (&'a str, i32, &'a str, i64)>,
) -> Vec<OwnedPartition> {
    partitions
        .into_iter()
        .filter(|(_, partition, fetch_state, _)| {
            *partition >= 0 && !FETCH_NOT_OWNED.contains(fetch_state)
        })
        .map(|(topic, partition, fetch_state, lag)| OwnedPartition {
            topic: topic.to_owned(),
            partition,
            // A negative lag means "not known yet" (no committed offset or watermark).
            lag: (fetch_state == FETCH_ACTIVE && lag >= 0).then_some(lag),
        })
        .collect()
}

impl ClientContext for LagReporter {
    /// Sets the lag of each partition this consumer owns. A revoked partition is not set any
    /// more, so its series leaves `/metrics` once the recorder's idle timeout for gauges runs
    /// out, instead of showing its last lag forever.
    fn stats(&self, statistics: Statistics) {
        let owned = owned_partitions(statistics.topics.iter().flat_map(|(topic, details)| {
            details.partitions.iter().map(move |(partition, state)| {
                (
                    topic.as_str(),
                    *partition,
                    state.fetch_state.as_str(),
                    state.consumer_lag,
                )
            })
        }));
        for owned in &owned {
            if let Some(lag) = owned.lag {
                metrics::gauge!(
                    "chronicle_consumer_lag_messages",
                    "group" => self.group.clone(),
                    "topic" => owned.topic.clone(),
                    "partition" => owned.partition.to_string(),
                )
                .set(lag as f64);
            }
        }
        // Set again at every statistics round, not only at rebalances: an idle gauge is dropped.
        metrics::gauge!(
            "chronicle_consumer_assigned_partitions",
            "group" => self.group.clone(),
        )
        .set(owned.len() as f64);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owned_partitions_are_reported_and_lag_only_once_fetched() {
        let owned = owned_partitions([
            ("tasks", 0, "active", 4),
            ("tasks", 1, "none", 9),      // revoked in a rebalance
            ("tasks", 2, "stopped", 9),   // being revoked
            ("tasks", -1, "active", 0),   // librdkafka's unassigned partition
            ("reports", 0, "active", -1), // owned, lag not known yet
        ]);
        assert_eq!(
            owned,
            vec![
                OwnedPartition {
                    topic: "tasks".into(),
                    partition: 0,
                    lag: Some(4)
                },
                OwnedPartition {
                    topic: "reports".into(),
                    partition: 0,
                    lag: None
                },
            ]
        );
    }
}
