//! Dead letters: where a consumer sets aside what it cannot process, with the reason, and
//! the way back to the group that set it aside.
//!
//! Each rejected message is recorded in the [`DeadLetterStore`] (what operators list and
//! redrive) and sent to the Kafka dead-letter topic `{topic}.{group}.dlq` (for any other
//! tool). A redrive publishes it to `{topic}.{group}.redrive`, which only that group reads,
//! with two bookkeeping headers: [`REDRIVE_OF`] (its entry, so a new rejection counts on the
//! same entry) and [`ORIGINAL_TOPIC`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chronicle_application::error_chain::Chain;
use chronicle_application::ports::dead_letters::{DeadLetterStore, Redrive, RejectedMessage};
use chronicle_application::ports::store_error::StoreError;
use chronicle_application::topics::Topics;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use super::on_demand::OnDemandProducer;

/// Header of a redriven message: the id of the dead letter it is.
pub(crate) const REDRIVE_OF: &str = "chronicle_redrive_of";
/// Header of a redriven message: the event topic it was first consumed from.
pub(crate) const ORIGINAL_TOPIC: &str = "chronicle_original_topic";

/// Sets messages aside for consumer group `group`: records them in the store, then sends them
/// to `{topic}.{group}.dlq` with the original key, value and headers plus `dlq_reason`,
/// `dlq_original_topic`, `dlq_original_partition`, `dlq_original_offset`, `dlq_attempts` and
/// `dlq_id` (the entry operators redrive).
#[derive(Clone)]
pub struct DeadLetters {
    producer: OnDemandProducer,
    group: String,
    store: Arc<dyn DeadLetterStore>,
}

/// A header's value as text (empty when absent or not UTF-8).
fn header_text<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| header.value)
        .and_then(|value| std::str::from_utf8(value).ok())
}

impl DeadLetters {
    /// Dead letters of consumer group `group`, sent through `producer`, recorded in `store`.
    pub fn new(
        producer: OnDemandProducer,
        group: impl Into<String>,
        store: Arc<dyn DeadLetterStore>,
    ) -> Self {
        Self {
            producer,
            group: group.into(),
            store,
        }
    }

    /// Exports `chronicle_dead_letters_total` at 0 for each topic of `subscribed` the group
    /// consumes events from (its redrive topics count under the event topic), so the first
    /// dead letter after a start is an increase that alerts see, not a new series.
    pub(crate) fn count_from_zero(&self, subscribed: &[String]) {
        let redrives: Vec<String> = subscribed
            .iter()
            .map(|topic| Topics::redrive(topic, &self.group))
            .collect();
        for topic in subscribed.iter().filter(|t| !redrives.contains(t)) {
            metrics::counter!(
                "chronicle_dead_letters_total",
                "group" => self.group.clone(),
                "topic" => topic.clone()
            )
            .increment(0);
        }
    }

    /// What `message` was, as the store keeps it: a redriven message is recorded as the event
    /// it carries, under the entry it came from.
    fn rejected(&self, message: &OwnedMessage, reason: &str, attempts: u32) -> RejectedMessage {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .filter(|h| h.key != REDRIVE_OF && h.key != ORIGINAL_TOPIC)
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        RejectedMessage {
            group: self.group.clone(),
            original_topic: header_text(message, ORIGINAL_TOPIC)
                .unwrap_or(message.topic())
                .to_owned(),
            original_partition: message.partition(),
            original_offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            headers,
            payload: message.payload().map(<[u8]>::to_vec),
            reason: reason.to_owned(),
            // A message set aside before the handler saw it (malformed) was still delivered
            // once: every delivery counts.
            attempts: attempts.max(1),
            redrive_of: header_text(message, REDRIVE_OF).and_then(|id| id.parse().ok()),
        }
    }

    /// Records `message` with `reason` until the store accepts it, then sends it to the
    /// dead-letter topic until the broker accepts it: the caller commits the original's offset
    /// only afterwards, so nothing is lost if either is down.
    async fn record(&self, rejected: RejectedMessage) -> i64 {
        let mut pause = Duration::from_millis(200);
        loop {
            match self.store.record(rejected.clone()).await {
                Ok(id) => return id,
                Err(error) => {
                    tracing::error!(error = %Chain(&error), group = %self.group, "cannot record a dead letter; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Sets `message` aside with `reason` (see [`DeadLetters`]).
    pub async fn send(&self, message: &OwnedMessage, reason: &str, attempts: u32) {
        let rejected = self.rejected(message, reason, attempts);
        let id = self.record(rejected.clone()).await.to_string();
        let topic = Topics::dead_letter(&rejected.original_topic, &self.group);
        let mut headers = OwnedHeaders::new();
        for (key, value) in &rejected.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let attempts = rejected.attempts.to_string();
        for (key, value) in [
            ("dlq_reason", reason),
            ("dlq_original_topic", rejected.original_topic.as_str()),
            ("dlq_original_partition", partition.as_str()),
            ("dlq_original_offset", offset.as_str()),
            ("dlq_attempts", attempts.as_str()),
            ("dlq_id", id.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut pause = Duration::from_millis(200);
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&topic).headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            let sent = match self.producer.get() {
                Ok(producer) => producer
                    .send(record, Timeout::Never)
                    .await
                    .map_err(|(error, _)| error),
                Err(error) => Err(error),
            };
            match sent {
                Ok(_) => {
                    metrics::counter!(
                        "chronicle_dead_letters_total",
                        "group" => self.group.clone(),
                        "topic" => rejected.original_topic.clone()
                    )
                    .increment(1);
                    tracing::warn!(
                        dlq_topic = %topic,
                        dead_letter = %id,
                        original_topic = %rejected.original_topic,
                        partition = message.partition(),
                        offset = message.offset(),
                        reason,
                        "message dead-lettered"
                    );
                    return;
                }
                Err(error) => {
                    tracing::error!(error = %Chain(&error), dlq_topic = %topic, "dead-letter produce failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// Sends dead letters back over Kafka to `{topic}.{group}.redrive`.
pub struct KafkaRedrive {
    producer: OnDemandProducer,
}

impl KafkaRedrive {
    /// Through `producer` (the process's dead-letter producer, or the CLI's own).
    pub fn new(producer: OnDemandProducer) -> Self {
        Self { producer }
    }
}

/// How long a redrive waits for the broker's acknowledgement of one message.
const REDRIVE_TIMEOUT: Duration = Duration::from_secs(30);

#[async_trait]
impl Redrive for KafkaRedrive {
    async fn send_back(&self, id: i64, message: &RejectedMessage) -> Result<(), StoreError> {
        let topic = Topics::redrive(&message.original_topic, &message.group);
        let id = id.to_string();
        let mut headers = OwnedHeaders::new();
        for (key, value) in &message.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        headers = headers
            .insert(Header {
                key: REDRIVE_OF,
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: ORIGINAL_TOPIC,
                value: Some(message.original_topic.as_str()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key);
        }
        if let Some(payload) = &message.payload {
            record = record.payload(payload);
        }
        self.producer
            .get()
            .map_err(StoreError::unavailable)?
            .send(record, Timeout::After(REDRIVE_TIMEOUT))
            .await
            .map(|_| ())
            .map_err(|(error, _)| StoreError::unavailable(error))
    }
}
