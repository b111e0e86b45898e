//! Kafka clients: configuration, topic creation, the producer and the consumer framework.

pub mod admin;
pub mod client;
pub mod consumer;
pub mod dead_letter;
pub mod lag;
pub mod on_demand;
pub mod probe;
