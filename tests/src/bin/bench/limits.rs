//! The limits each figure is measured against, in the same run: what Postgres alone reaches
//! (pgbench) and what Kafka alone reaches (a bare producer and consumer).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::load::{summary, CONNECTIONS};

/// pgbench: one event-shaped row per transaction into `bench_events` (a copy of `events` with
/// every index), [`CONNECTIONS`] clients: the physical limit of the command path.
pub fn pgbench(database_url: &str, seconds: u64) -> anyhow::Result<Value> {
    let script = std::env::temp_dir().join(format!("chronicle-bench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id, hash, previous_hash) \
         VALUES ('Task', gen_random_uuid()::text, 1, 'TaskCreated', '1.0', \
         '{\"TaskCreated\":{\"title\":\"bench\",\"teamId\":\"team-bench\",\"labels\":[\"bench\"]}}', \
         '{\"actor_id\":\"u-admin\",\"correlation_id\":\"c\",\"causation_id\":\"c\"}', gen_random_uuid(), \
         'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', '');\n",
    )?;
    pgbench_script(database_url, &script, CONNECTIONS, seconds)
}

/// Runs pgbench with `script` at `clients` clients for `seconds`: transactions per second and
/// average latency.
pub fn pgbench_script(
    database_url: &str,
    script: &std::path::Path,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Value> {
    let bin = std::env::var("PGBENCH").ok().or_else(|| {
        let found = std::process::Command::new("sh")
            .args([
                "-c",
                "command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -n 1",
            ])
            .output()
            .ok()?;
        let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
        (!path.is_empty()).then_some(path)
    });
    let bin = bin.context("pgbench not found (set PGBENCH)")?;
    let output = std::process::Command::new(bin)
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(script)
        .arg(database_url)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "pgbench output: {text} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let latency = text
        .lines()
        .find(|l| l.starts_with("latency average"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<f64>().ok());
    Ok(json!({"per_second": tps, "latency_avg_ms": latency, "clients": clients}))
}

/// When each key was first read from a topic by an independent consumer.
pub struct TopicWatch {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl TopicWatch {
    /// A consumer of `topic` in a group of its own, from the end, assigned before this returns
    /// (so "latest" cannot skip the first records). It asks the broker to answer within 2 ms
    /// when idle, so its own polling adds little to what it measures.
    pub async fn start(brokers: &str, topic: &str) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set(
                "group.id",
                format!("bench-{}", uuid::Uuid::now_v7().simple()),
            )
            .set("auto.offset.reset", "latest")
            .set("fetch.wait.max.ms", "2")
            .set("enable.auto.commit", "false")
            .create()?;
        consumer.subscribe(&[topic])?;
        let assigned = Instant::now();
        while consumer.assignment()?.count() == 0 && assigned.elapsed() < Duration::from_secs(20) {
            let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
        }
        // The assignment exists; wait for positions at the end before anything is produced.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let reader = {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Ok(message) = consumer.recv().await {
                    let now = Instant::now();
                    let key =
                        String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                    seen.lock().await.entry(key).or_insert(now);
                }
            })
        };
        Ok(Self { seen, reader })
    }

    /// Milliseconds from each `(key, from)` to its first sighting, waiting up to 30 s for
    /// stragglers; the summary counts keys never seen as `missing`.
    pub async fn latencies(self, sent: &[(String, Instant)]) -> Value {
        let wait = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.seen.lock().await;
            if sent.iter().all(|(key, _)| seen.contains_key(key)) || Instant::now() > wait {
                break;
            }
            drop(seen);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.reader.abort();
        let seen = self.seen.lock().await;
        let millis: Vec<f64> = sent
            .iter()
            .filter_map(|(key, from)| {
                seen.get(key)
                    .map(|at| at.saturating_duration_since(*from).as_secs_f64() * 1000.0)
            })
            .collect();
        let missing = sent.len() - millis.len();
        let mut result = summary(millis);
        result["missing"] = json!(missing);
        result
    }
}

/// A bare producer with the relay's configuration sending `rate` records a second for
/// `seconds` to `topic`: produce call to first sighting by an independent consumer, the
/// broker's and librdkafka's own latency for this traffic.
pub async fn bare_producer_latency(
    kafka: &chronicle_infrastructure::config::KafkaSettings,
    topic: &str,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Value> {
    chronicle_infrastructure::kafka::admin::ensure_topics(kafka, &[topic.to_owned()]).await?;
    let producer: FutureProducer =
        chronicle_infrastructure::kafka::client::producer_config(kafka).create()?;
    let watch = TopicWatch::start(&kafka.brokers, topic).await?;
    let payload = vec![b'x'; 700];
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut sent = Vec::new();
    let mut deliveries = Vec::new();
    for n in 0..rate * seconds {
        ticker.tick().await;
        let key = format!("bare-{n}");
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        let at = Instant::now();
        let delivery = producer
            .send_result(record)
            .map_err(|(error, _)| anyhow::anyhow!("{error}"))?;
        deliveries.push(delivery);
        sent.push((key, at));
    }
    for delivery in deliveries {
        delivery
            .await?
            .map_err(|(error, _)| anyhow::anyhow!("{error}"))
            .context("bare producer delivery")?;
    }
    Ok(watch.latencies(&sent).await)
}

/// Postgres alone reading the events table in position order, in events a second: the
/// physical limit of every reader of the whole store (best of `rounds`, so a reader measured
/// after it finds the table cached as well).
pub async fn copy_events_per_second(
    db: &sqlx::PgPool,
    events: u64,
    rounds: usize,
) -> anyhow::Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..rounds.max(1) {
        let copying = Instant::now();
        sqlx::query("COPY (SELECT * FROM events ORDER BY position) TO '/dev/null'")
            .execute(db)
            .await?;
        best = best.min(copying.elapsed().as_secs_f64());
    }
    Ok(events as f64 / best)
}

/// A record as the relay publishes it, to send again under other keys: its payload and headers.
pub struct RecordShape {
    pub payload: String,
    pub headers: Vec<(String, String)>,
}

impl RecordShape {
    /// The last record the service put in its outbox. Its headers (`[[name, value], ...]`)
    /// are split into pairs by Postgres, as the relay reads them, not parsed again here.
    pub async fn last_published(db: &sqlx::PgPool) -> anyhow::Result<Self> {
        let (id, payload): (i64, String) =
            sqlx::query_as("SELECT id, payload::text FROM outbox ORDER BY id DESC LIMIT 1")
                .fetch_one(db)
                .await
                .context("no outbox row to copy the shape of")?;
        let headers = sqlx::query_as(
            "SELECT pair->>0, pair->>1
             FROM outbox, jsonb_array_elements(headers) WITH ORDINALITY AS h(pair, n)
             WHERE id = $1 ORDER BY n",
        )
        .bind(id)
        .fetch_all(db)
        .await?;
        Ok(Self { payload, headers })
    }
}

/// How a floor's records are handed to the producer.
#[derive(Debug, Clone, Copy)]
pub enum Offered {
    /// Every record at once: the largest batches, the least CPU per record a client can reach.
    AllAtOnce,
    /// `burst` records at a time, `per_second` records a second on average: as the relay hands
    /// over the rows of each read of the outbox.
    AtRate { per_second: u64, burst: u64 },
}

/// Kafka's share of carrying one event, as a client pays it: a producer with the relay's
/// configuration and a consumer with the projection's, both in this process, move `records`
/// records of `shape` (a fresh UUID key each) through `topic`, handed over as `offered` says.
/// This process's CPU per record, from the first send until the consumer has stored the offset
/// of the last, is what the service's background process spends on Kafka before it reads the
/// outbox, marks a row or writes a read model: its floor.
pub async fn kafka_floor(
    kafka: &chronicle_infrastructure::config::KafkaSettings,
    topic: &str,
    shape: &RecordShape,
    records: u64,
    offered: Offered,
) -> anyhow::Result<Value> {
    use chronicle_infrastructure::kafka::client::{consumer_config, producer_config};
    use rdkafka::message::{Header, OwnedHeaders};

    chronicle_infrastructure::kafka::admin::ensure_topics(kafka, &[topic.to_owned()]).await?;
    let producer: FutureProducer = producer_config(kafka).create()?;
    let group = format!("bench-floor-{}", uuid::Uuid::now_v7().simple());
    let consumer: StreamConsumer = consumer_config(kafka, &group).create()?;
    consumer.subscribe(&[topic])?;
    let assigning = Instant::now();
    while consumer.assignment()?.count() == 0 {
        // Joining the group is not part of carrying a record: it must be done before the
        // measurement starts.
        anyhow::ensure!(
            assigning.elapsed() < Duration::from_secs(20),
            "the floor's consumer got no partitions of {topic} in 20 s"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    let total = records.max(1);
    let (burst, mut ticker) = match offered {
        Offered::AllAtOnce => (total, None),
        Offered::AtRate { per_second, burst } => {
            let burst = burst.max(1);
            let period = Duration::from_secs_f64(burst as f64 / per_second.max(1) as f64);
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            (burst, Some(ticker))
        }
    };
    let before = crate::service::own_cpu_seconds()?;
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        for _ in 0..total {
            let message = consumer.recv().await?;
            consumer.store_offset_from_message(&message)?;
        }
        // Handed back so that closing it (a commit, leaving the group) falls outside the
        // measurement.
        anyhow::Ok(consumer)
    });
    let mut deliveries = Vec::with_capacity(total as usize);
    for n in 0..total {
        if let (0, Some(ticker)) = (n % burst, ticker.as_mut()) {
            ticker.tick().await;
        }
        let key = uuid::Uuid::new_v4().to_string();
        let mut headers = OwnedHeaders::new_with_capacity(shape.headers.len());
        for (name, value) in &shape.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let record = FutureRecord::to(topic)
            .key(key.as_bytes())
            .payload(shape.payload.as_bytes())
            .headers(headers);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(error, _)| anyhow::anyhow!("{error}"))?,
        );
    }
    for delivery in deliveries {
        delivery
            .await?
            .map_err(|(error, _)| anyhow::anyhow!("{error}"))
            .context("floor producer delivery")?;
    }
    let consumer = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .context("the floor's consumer did not read every record in 60 s")???;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = crate::service::own_cpu_seconds()? - before;
    drop((consumer, producer));
    Ok(json!({
        "records": total,
        "offered": format!("{offered:?}"),
        "per_second": total as f64 / elapsed,
        "payload_bytes": shape.payload.len(),
        "headers": shape.headers.len(),
        "cpu_us_per_record": cpu * 1e6 / total as f64,
    }))
}
