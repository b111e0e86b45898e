//! Client configuration shared by every producer, consumer and admin client.

use rdkafka::ClientConfig;

use crate::config::KafkaSettings;

/// Base configuration: brokers and security. Every client starts from this so SASL/SSL
/// settings apply everywhere or nowhere.
pub(crate) fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("security.protocol", &settings.security_protocol)
        .set("client.id", "chronicle");
    if let Some(mechanism) = &settings.sasl_mechanism {
        config.set("sasl.mechanism", mechanism);
    }
    if let Some(username) = &settings.sasl_username {
        config.set("sasl.username", username);
    }
    if let Some(password) = &settings.sasl_password {
        config.set("sasl.password", password.expose());
    }
    if let Some(ca) = &settings.ssl_ca_location {
        config.set("ssl.ca.location", ca);
    }
    config
}

/// The event producer: idempotent (no duplicates or reordering from the client's own retries),
/// `acks=all`, and Java-compatible key hashing so a key lands on the same partition as with
/// any other client.
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", settings.linger_ms.to_string())
        .set("compression.type", "lz4")
        // Bounded: a delivery that cannot finish in this time is reported failed and the relay
        // keeps the row for a later attempt instead of waiting forever.
        .set("message.timeout.ms", "30000")
        .set("message.max.bytes", settings.message_max_bytes.to_string());
    config
}

/// A consumer in `group`: offsets are stored only after the work is durable and committed from
/// what was stored, never automatically on receipt.
pub fn consumer_config(settings: &KafkaSettings, group: &str) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("fetch.wait.max.ms", settings.fetch_wait_max_ms.to_string())
        .set("partition.assignment.strategy", "cooperative-sticky");
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_settings_reach_every_client() {
        let settings = KafkaSettings {
            brokers: "broker:9093".into(),
            topic_prefix: String::new(),
            partitions: 1,
            replication_factor: 1,
            security_protocol: "sasl_ssl".into(),
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("chronicle".into()),
            sasl_password: Some(crate::secret::Secret::new("pw")),
            ssl_ca_location: Some("/etc/ssl/kafka-ca.pem".into()),
            fetch_wait_max_ms: 10,
            message_max_bytes: 1_000_000,
            linger_ms: 10,
        };
        for config in [
            base_config(&settings),
            producer_config(&settings),
            consumer_config(&settings, "g"),
        ] {
            assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
            assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
            assert_eq!(config.get("sasl.username"), Some("chronicle"));
            assert_eq!(config.get("sasl.password"), Some("pw"));
            assert_eq!(config.get("ssl.ca.location"), Some("/etc/ssl/kafka-ca.pem"));
        }
        assert_eq!(
            consumer_config(&settings, "g").get("fetch.wait.max.ms"),
            Some("10")
        );
        assert_eq!(producer_config(&settings).get("linger.ms"), Some("10"));
    }
}
