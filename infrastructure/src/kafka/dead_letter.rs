//! The dead-letter topic: where a consumer parks what it can never process, with the reason.

use std::time::Duration;

use chronicle_application::error_chain::Chain;
use chronicle_application::topics::Topics;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// Sends messages to `{topic}.{group}.dlq`, carrying the original key, value and headers plus
/// `dlq_reason`, `dlq_original_topic`, `dlq_original_partition`, `dlq_original_offset` and
/// `dlq_attempts`.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    group: String,
}

impl DeadLetters {
    /// Dead letters of consumer group `group`, sent through `producer`.
    pub fn new(producer: FutureProducer, group: impl Into<String>) -> Self {
        Self {
            producer,
            group: group.into(),
        }
    }

    /// Parks `message` with `reason`. Retries until the broker accepts it: the caller commits
    /// the original's offset only afterwards, so nothing is lost if the broker is down.
    pub async fn send(&self, message: &OwnedMessage, reason: &str, attempts: u32) {
        let topic = Topics::dead_letter(message.topic(), &self.group);
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter() {
                headers = headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let attempts = attempts.to_string();
        for (key, value) in [
            ("dlq_reason", reason),
            ("dlq_original_topic", message.topic()),
            ("dlq_original_partition", partition.as_str()),
            ("dlq_original_offset", offset.as_str()),
            ("dlq_attempts", attempts.as_str()),
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
            match self.producer.send(record, Timeout::Never).await {
                Ok(_) => {
                    metrics::counter!(
                        "chronicle_dead_letters_total",
                        "group" => self.group.clone(),
                        "topic" => message.topic().to_owned()
                    )
                    .increment(1);
                    tracing::warn!(
                        dlq_topic = %topic,
                        original_topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        reason,
                        "message dead-lettered"
                    );
                    return;
                }
                Err((error, _)) => {
                    tracing::error!(error = %Chain(&error), dlq_topic = %topic, "dead-letter produce failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}
