//! Whether the brokers answer, for `/health/ready`.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::KafkaSettings;
use crate::InfraError;

/// How long a readiness probe waits for the cluster's metadata.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One long-lived client asking for cluster metadata (no group, no subscription).
#[derive(Clone)]
pub struct BrokerProbe {
    client: Arc<BaseConsumer>,
}

/// What the probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerHealth {
    /// Metadata arrived from this many brokers.
    Reachable {
        /// Brokers in the cluster's metadata.
        brokers: usize,
    },
    /// No metadata within the timeout; why.
    Unreachable(String),
}

impl BrokerProbe {
    /// A probe with the service's connection and security settings.
    pub fn new(settings: &KafkaSettings) -> Result<Self, InfraError> {
        let client: BaseConsumer = super::client::base_config(settings)
            .create()
            .map_err(InfraError::kafka("create broker probe"))?;
        Ok(Self {
            client: Arc::new(client),
        })
    }

    /// Asks for the cluster's metadata (on a blocking thread: librdkafka's call blocks).
    pub async fn check(&self) -> BrokerHealth {
        let client = self.client.clone();
        let answer = tokio::task::spawn_blocking(move || {
            client
                .fetch_metadata(None, PROBE_TIMEOUT)
                .map(|metadata| metadata.brokers().len())
        })
        .await;
        match answer {
            Ok(Ok(brokers)) => BrokerHealth::Reachable { brokers },
            Ok(Err(error)) => BrokerHealth::Unreachable(error.to_string()),
            Err(error) => BrokerHealth::Unreachable(format!("probe thread failed: {error}")),
        }
    }
}
