//! A producer made when it first has something to send.
//!
//! Every rdkafka `FutureProducer` runs a polling thread of the crate's own, which polls in
//! turns of 100 ms and counts each wait in whole milliseconds: when less than a millisecond of
//! a turn is left, it polls without waiting until the turn ends. Profiled, an idle producer's
//! thread took about 0.7% of a core that way (docs/performance.md, "The producers nobody
//! uses"). The producer of dead letters, redrives and audit checkpoints sends rarely, and in
//! a healthy process that is not a relay never, so every process shares one made on first use
//! rather than at start. Its settings are still checked at start ([`OnDemandProducer::checked`]),
//! so a value librdkafka refuses stops the process there, not at the first dead letter.

use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, FutureProducer};
use rdkafka::ClientConfig;

use crate::config::KafkaSettings;
use crate::InfraError;

/// One producer shared by its clones, made by the first [`OnDemandProducer::get`].
#[derive(Clone)]
pub struct OnDemandProducer {
    config: Arc<ClientConfig>,
    made: Arc<Mutex<Option<FutureProducer>>>,
}

impl OnDemandProducer {
    /// A producer of `config` (usually [`super::client::producer_config`]), not made yet.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config: Arc::new(config),
            made: Arc::new(Mutex::new(None)),
        }
    }

    /// The process's producer of `settings` ([`super::client::producer_config`]), its settings
    /// judged now: what every process that may send starts with, so that none runs with
    /// settings librdkafka refuses. The relay's producer takes the same settings.
    pub fn checked(settings: &KafkaSettings) -> Result<Self, InfraError> {
        let producer = Self::new(super::client::producer_config(settings));
        producer.check().map_err(InfraError::kafka(
            "the producer settings (KAFKA_LINGER_MS, KAFKA_MESSAGE_MAX_BYTES)",
        ))?;
        Ok(producer)
    }

    /// Whether librdkafka accepts the settings, as making the producer would judge them (some
    /// only together, such as `linger.ms` below `message.timeout.ms`). It makes a client with
    /// no polling thread of rust-rdkafka's (a `BaseProducer`), which connects to nothing before
    /// it is dropped. Making the producer also blocks its caller for that long; both happen once.
    fn check(&self) -> Result<(), KafkaError> {
        let _accepted: BaseProducer = self.config.create()?;
        Ok(())
    }

    /// The producer, made now when this is the first call. A configuration librdkafka refuses
    /// is an error here, and the next call tries again.
    pub fn get(&self) -> Result<FutureProducer, KafkaError> {
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(producer) = made.as_ref() {
            return Ok(producer.clone());
        }
        let producer: FutureProducer = self.config.create()?;
        *made = Some(producer.clone());
        Ok(producer)
    }

    /// Whether a call to [`Self::get`] has made the producer.
    #[cfg(test)]
    fn is_made(&self) -> bool {
        self.made
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::producer::Producer;

    use super::*;

    /// No broker answers here; making a producer does not connect.
    fn config() -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        config
    }

    #[test]
    fn nothing_is_made_until_the_first_get_and_every_clone_shares_it() {
        let producer = OnDemandProducer::new(config());
        let clone = producer.clone();
        assert!(!producer.is_made() && !clone.is_made());

        let first = clone.get().unwrap();
        assert!(producer.is_made());
        let again = producer.get().unwrap();
        assert_eq!(
            first.client().native_ptr(),
            again.client().native_ptr(),
            "one librdkafka client for every clone"
        );
    }

    #[test]
    fn a_refused_configuration_is_an_error_on_each_get() {
        let mut config = config();
        config.set("acks", "not-a-number");
        let producer = OnDemandProducer::new(config);
        assert!(producer.check().is_err());
        assert!(producer.get().is_err());
        assert!(producer.get().is_err());
        assert!(!producer.is_made());
    }

    #[test]
    fn the_check_judges_settings_together_and_makes_nothing() {
        let mut refused = config();
        // Each value alone is valid; librdkafka refuses the pair when it makes the client.
        refused
            .set("linger.ms", "40000")
            .set("message.timeout.ms", "30000");
        assert!(OnDemandProducer::new(refused).check().is_err());

        let accepted = OnDemandProducer::new(config());
        accepted.check().unwrap();
        assert!(!accepted.is_made(), "checking is not making");
    }
}
