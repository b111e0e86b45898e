//! Topic creation at start-up: the service never relies on broker auto-creation.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaSettings;
use crate::InfraError;

/// Creates `topics` with the configured partitions and replication; existing topics are left
/// as they are.
pub async fn ensure_topics(settings: &KafkaSettings, topics: &[String]) -> Result<(), InfraError> {
    let admin: AdminClient<DefaultClientContext> = super::client::base_config(settings)
        .create()
        .map_err(InfraError::kafka("create admin client"))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                settings.partitions,
                TopicReplication::Fixed(settings.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new_topics.iter(), &options)
        .await
        .map_err(InfraError::kafka("create topics"))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(InfraError::Kafka {
                    context: format!("create topic {name}"),
                    source: rdkafka::error::KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(())
}
