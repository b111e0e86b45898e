//! Report generation: the pure computations of each kind and the Kafka-driven worker.

pub mod compute;
pub mod worker;

pub use compute::compute;
pub use worker::ReportWorker;
