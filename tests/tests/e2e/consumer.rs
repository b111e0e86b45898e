//! The consumer framework against the real broker: retries, dead letters and offset commits.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chronicle_application::data::message::EventMessage;
use chronicle_application::ports::event_handler::BatchOutcome;
use chronicle_application::ports::event_handler::{EventHandler, HandlerError};
use chronicle_application::topics::Topics;
use chronicle_infrastructure::config::KafkaSettings;
use chronicle_infrastructure::held::dead_letters::PgDeadLetters;
use chronicle_infrastructure::kafka::admin::ensure_topics;
use chronicle_infrastructure::kafka::client::producer_config;
use chronicle_infrastructure::kafka::consumer::{ConsumerOptions, EventConsumer};
use chronicle_infrastructure::kafka::on_demand::OnDemandProducer;
use chronicle_tests::{brokers, eventually, read_topic, test_settings};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Fails every call transiently until `failures` calls have failed, then handles; records
/// which events it handled and when it was called.
struct Flaky {
    failures: u32,
    calls: AtomicU32,
    called_at: Mutex<Vec<Instant>>,
    handled: Mutex<Vec<Uuid>>,
}

impl Flaky {
    fn new(failures: u32) -> Arc<Self> {
        Arc::new(Self {
            failures,
            calls: AtomicU32::new(0),
            called_at: Mutex::default(),
            handled: Mutex::default(),
        })
    }

    fn handled(&self) -> Vec<Uuid> {
        self.handled.lock().unwrap().clone()
    }
}

#[async_trait]
impl EventHandler for Flaky {
    async fn handle(&self, batch: &[EventMessage]) -> Result<BatchOutcome, HandlerError> {
        self.called_at.lock().unwrap().push(Instant::now());
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call <= self.failures {
            return Err(HandlerError::Transient(format!("flaky call {call}")));
        }
        let mut handled = self.handled.lock().unwrap();
        handled.extend(batch.iter().map(|m| m.event_id));
        Ok(BatchOutcome {
            applied: batch.len(),
            ..BatchOutcome::default()
        })
    }
}

struct Fixture {
    kafka: KafkaSettings,
    topic: String,
    group: String,
    producer: FutureProducer,
    dead_letters: Arc<PgDeadLetters>,
}

impl Fixture {
    async fn new() -> Self {
        let database_url = chronicle_tests::create_database().await.unwrap();
        let pool = chronicle_infrastructure::db::connect(&database_url, 2)
            .await
            .unwrap();
        chronicle_infrastructure::db::migrate(&pool).await.unwrap();
        let kafka = test_settings(&database_url, &brokers()).kafka;
        let topics = Topics::new(kafka.topic_prefix.clone());
        let topic = topics.task_events();
        let group = topics.group("framework-test");
        ensure_topics(
            &kafka,
            &[topic.clone(), Topics::dead_letter(&topic, &group)],
        )
        .await
        .unwrap();
        let producer = producer_config(&kafka).create().unwrap();
        Self {
            kafka,
            topic,
            group,
            producer,
            dead_letters: Arc::new(PgDeadLetters::new(pool)),
        }
    }

    fn options(&self, max_attempts: u32) -> ConsumerOptions {
        ConsumerOptions {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_attempts: Some(max_attempts),
            ..ConsumerOptions::worker(self.group.clone(), vec![self.topic.clone()])
        }
    }

    /// Publishes a well-formed event envelope, as the relay would; returns its event id.
    async fn publish(&self, aggregate_id: &str) -> Uuid {
        let message = EventMessage {
            event_id: Uuid::now_v7(),
            event_type: "TaskCreated".to_owned(),
            event_version: "1".to_owned(),
            aggregate_type: "Task".to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sequence: 1,
            occurred_at: chrono::Utc::now(),
            actor_id: "u-test".to_owned(),
            correlation_id: "c-1".to_owned(),
            causation_id: "c-1".to_owned(),
            source_service: "chronicle".to_owned(),
            payload: json!({}),
            personal_data: None,
            traceparent: None,
        };
        let mut headers = OwnedHeaders::new();
        for (key, value) in message.headers(None) {
            headers = headers.insert(Header {
                key: &key,
                value: Some(&value),
            });
        }
        let payload = serde_json::to_vec(&message).unwrap();
        self.producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(aggregate_id)
                    .payload(&payload)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        message.event_id
    }

    /// Runs a consumer of the fixture's group with `handler` until the returned token is
    /// cancelled.
    fn run(
        &self,
        options: ConsumerOptions,
        handler: Arc<Flaky>,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let consumer = EventConsumer::new(
            &self.kafka,
            options,
            handler,
            OnDemandProducer::new(producer_config(&self.kafka)),
            self.dead_letters.clone(),
        )
        .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(consumer.run(stop.clone()));
        (stop, task)
    }
}

#[tokio::test]
async fn a_handler_failing_transiently_twice_succeeds_on_the_third_attempt_and_the_offset_is_committed(
) {
    let fixture = Fixture::new().await;
    let event_id = fixture.publish("agg-1").await;
    let flaky = Flaky::new(2);
    let (stop, task) = fixture.run(fixture.options(5), flaky.clone());
    eventually(Duration::from_secs(30), || async {
        Ok((!flaky.handled().is_empty()).then_some(()))
    })
    .await
    .expect("handled after the retries");
    assert_eq!(flaky.handled(), [event_id], "handled once");
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    let called_at = flaky.called_at.lock().unwrap().clone();
    // Backoff: at least half of 100 ms, then at least half of 200 ms.
    assert!(called_at[1] - called_at[0] >= Duration::from_millis(50));
    assert!(called_at[2] - called_at[1] >= Duration::from_millis(100));
    stop.cancel();
    task.await.unwrap();

    // Nothing dead-lettered.
    let dlq = Topics::dead_letter(&fixture.topic, &fixture.group);
    let dead = read_topic(&brokers(), &dlq, 1, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(dead.is_empty(), "{dead:?}");

    // The group's offset was committed: a new member of the group sees only what comes next.
    let restarted = Flaky::new(0);
    let (stop, task) = fixture.run(fixture.options(5), restarted.clone());
    let next = fixture.publish("agg-2").await;
    eventually(Duration::from_secs(30), || async {
        Ok((!restarted.handled().is_empty()).then_some(()))
    })
    .await
    .expect("the next event is handled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        restarted.handled(),
        [next],
        "the first event is not redelivered"
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_handler_failing_beyond_its_attempts_dead_letters_the_message_and_moves_on() {
    let fixture = Fixture::new().await;
    let doomed = fixture.publish("agg-doomed").await;
    let flaky = Flaky::new(3);
    let (stop, task) = fixture.run(fixture.options(3), flaky.clone());
    let dlq = Topics::dead_letter(&fixture.topic, &fixture.group);
    let dead = read_topic(&brokers(), &dlq, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, "agg-doomed");
    assert_eq!(dead[0].headers["ce_id"], doomed.to_string());
    assert_eq!(dead[0].headers["dlq_attempts"], "3");
    assert!(dead[0].headers["dlq_reason"].contains("flaky call 3"));
    assert_eq!(dead[0].headers["dlq_original_topic"], fixture.topic);

    let next = fixture.publish("agg-next").await;
    eventually(Duration::from_secs(30), || async {
        Ok((!flaky.handled().is_empty()).then_some(()))
    })
    .await
    .expect("the consumer moves on to the next message");
    assert_eq!(flaky.handled(), [next]);
    stop.cancel();
    task.await.unwrap();
}
