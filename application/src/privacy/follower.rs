//! Erasures made by other processes, acted on in this one: each `DataSubjectErased` the
//! process reads from Kafka makes its key cache forget the erased person's key at once, rather
//! than when the cache's time runs out (`CHRONICLE_PRIVACY_KEY_CACHE_SECS`).

use std::sync::Arc;

use async_trait::async_trait;
use chronicle_domain::subject::DATA_SUBJECT_ERASED;

use super::cache::CachedSubjectKeys;
use crate::aggregates;
use crate::data::message::EventMessage;
use crate::ports::event_handler::{BatchOutcome, EventHandler, HandlerError};

/// Forgets erased people's keys as their erasure events arrive.
pub struct ErasureFollower {
    keys: Arc<CachedSubjectKeys>,
}

impl ErasureFollower {
    /// Forgetting in `keys`.
    pub fn new(keys: Arc<CachedSubjectKeys>) -> Self {
        Self { keys }
    }
}

#[async_trait]
impl EventHandler for ErasureFollower {
    async fn handle(&self, batch: &[EventMessage]) -> Result<BatchOutcome, HandlerError> {
        let mut outcome = BatchOutcome::default();
        for message in batch {
            let erased = message.aggregate_type == aggregates::DATA_SUBJECT.type_name
                && message.event_type == DATA_SUBJECT_ERASED;
            match message.payload["subjectPseudonym"].as_str() {
                Some(pseudonym) if erased => {
                    self.keys.forget(pseudonym);
                    outcome.applied += 1;
                }
                _ => outcome.skipped += 1,
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ports::subject_keys::SubjectKeys;
    use crate::testing::subject_keys::MemorySubjectKeys;

    fn erasure_of(pseudonym: &str) -> EventMessage {
        serde_json::from_value(serde_json::json!({
            "eventId": uuid::Uuid::now_v7(),
            "eventType": DATA_SUBJECT_ERASED,
            "eventVersion": "1.0",
            "aggregateType": aggregates::DATA_SUBJECT.type_name,
            "aggregateId": uuid::Uuid::now_v7(),
            "sequence": 1,
            "occurredAt": "2026-12-05T21:00:00Z",
            "actorId": "u-dpo",
            "correlationId": "c",
            "causationId": "r",
            "sourceService": "chronicle",
            "payload": {"subjectPseudonym": pseudonym, "reason": "ticket"},
        }))
        .expect("an envelope")
    }

    #[tokio::test]
    async fn an_erasure_read_from_kafka_forgets_the_cached_key_at_once() {
        let store = Arc::new(MemorySubjectKeys::default());
        let keys = Arc::new(CachedSubjectKeys::new(
            store.clone(),
            Duration::from_secs(60),
        ));
        let cached = keys.key_for("u-7").await.unwrap();
        store.destroy("u-7").await.unwrap(); // by another process
        assert!(
            keys.by_pseudonym(&cached.pseudonym)
                .await
                .unwrap()
                .is_some(),
            "stale"
        );

        let outcome = ErasureFollower::new(keys.clone())
            .handle(&[erasure_of(&cached.pseudonym)])
            .await
            .unwrap();

        assert_eq!(outcome.applied, 1);
        assert_eq!(keys.by_pseudonym(&cached.pseudonym).await.unwrap(), None);
        assert_eq!(keys.find("u-7").await.unwrap(), None);
    }
}
