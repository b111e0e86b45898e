//! Test helpers: a whole Chronicle service per test, isolated by database and topic prefix.
//!
//! Every test gets its own Postgres database (`chronicle_test_*`) and its own Kafka topic and
//! consumer-group prefix on the shared broker, so tests run in parallel without seeing each
//! other. Nothing is mocked: the service is the real one, started in-process.
//!
//! Environment: `CHRONICLE_ADMIN_URL` (a Postgres URL allowed to create databases; defaults to
//! the local server) and `KAFKA_BROKERS` (default `127.0.0.1:9092`), both set by
//! `./scripts/test`.

pub mod client;
pub mod ha;
pub mod process;
pub mod seed;
pub mod support;
pub mod ws;

pub use client::{new_task, Answer, GraphqlClient, CREATE_TASK};
pub use process::{
    chronicle_binary, free_port, ChronicleProcess, PrivateBroker, PrivatePgBouncer,
    PrivatePostgres, TlsFiles,
};
pub use support::{eventually, settled_trail, TEST_SECRET};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use chronicle::app::{self, Parts, RunningService};
use chronicle_api::auth::Authenticator;
use chronicle_api::settings::{ApiLimits, ApiSettings, AuthSettings};
use chronicle_infrastructure::config::{KafkaSettings, Settings};
use chronicle_infrastructure::secret::DatabaseUrl;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The Postgres URL tests create their databases with.
pub fn admin_url() -> String {
    std::env::var("CHRONICLE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The broker tests use.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = base.rsplit_once('/').map_or(base, |(head, _)| head);
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A fresh, empty database; dropped by `./scripts/test` on the next run.
pub async fn create_database() -> anyhow::Result<String> {
    let name = format!("chronicle_test_{}", Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .context("connect to the admin database (CHRONICLE_ADMIN_URL)")?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await?;
    Ok(with_database(&admin_url(), &name))
}

/// Settings of a test service on `database_url`, with its own topic prefix.
pub fn test_settings(database_url: &str, brokers: &str) -> Settings {
    Settings {
        database_url: DatabaseUrl::new(database_url),
        database_max_connections: 8,
        session_database_url: None,
        read_replica: None,
        kafka: KafkaSettings {
            brokers: brokers.to_owned(),
            topic_prefix: format!("t{}.", Uuid::now_v7().simple()),
            partitions: 3,
            replication_factor: 1,
            security_protocol: "plaintext".to_owned(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            // As ./scripts/test sets it: the local broker answers fetches only at the wait's end.
            fetch_wait_max_ms: std::env::var("KAFKA_FETCH_WAIT_MAX_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10),
            message_max_bytes: 1_000_000,
            // The benchmark compares lingers through the environment, in-process and spawned alike.
            linger_ms: std::env::var("KAFKA_LINGER_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(chronicle_infrastructure::config::DEFAULT_LINGER_MS),
        },
        snapshot_every: 5,
        group_commit: true,
        outbox_retention: Duration::from_secs(3600),
        relay_read_interval: Duration::from_millis(
            chronicle_infrastructure::config::DEFAULT_RELAY_READ_INTERVAL_MS,
        ),
        read_your_writes_wait: Duration::from_secs(15),
        feed_poll: Duration::from_millis(20),
        feed_idle_poll: Duration::from_millis(250),
        rebuild_outdated: true,
        shutdown_timeout: Duration::from_secs(30),
        database_acquire_timeout: Duration::from_secs(5),
        worker_max_attempts: 8,
        audit_signing_key_file: None,
        audit_checkpoint_interval: Duration::from_secs(10),
        seal_personal_data: true,
        privacy_key_cache: Duration::from_secs(60),
    }
}

/// The API's settings of a test service: any free port, tokens signed with [`TEST_SECRET`],
/// and no rate limit (tests drive many requests from one subject; the limit has its own tests).
pub fn test_api_settings() -> ApiSettings {
    ApiSettings {
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        auth: AuthSettings::hs256(TEST_SECRET),
        limits: ApiLimits {
            rate_per_second: 0,
            ..ApiLimits::default()
        },
    }
}

/// A running Chronicle with an HTTP client and a direct database handle for assertions.
pub struct TestApp {
    /// The service's settings (topic prefix, database).
    pub settings: Settings,
    /// Base URL of the API.
    pub base_url: String,
    /// A pool on the service's database, for assertions on what was stored.
    pub db: PgPool,
    /// An admin token (subject `u-admin`).
    pub admin_token: String,
    /// An anonymous client of the service, whose connections every caller's client shares.
    client: GraphqlClient,
    service: Option<RunningService>,
}

impl TestApp {
    /// Starts every part of the service on a new database and topic prefix.
    pub async fn spawn() -> anyhow::Result<Self> {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`TestApp::spawn`], after `adjust` changed the settings.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> anyhow::Result<Self> {
        Self::spawn_parts(Parts::ALL, adjust).await
    }

    /// Like [`TestApp::spawn`], after `adjust` changed the API's settings (its limits, say).
    pub async fn spawn_with_api(adjust: impl FnOnce(&mut ApiSettings)) -> anyhow::Result<Self> {
        let mut api = test_api_settings();
        adjust(&mut api);
        Self::start(Parts::ALL, |_| {}, api).await
    }

    /// Starts only `parts` (the API always: tests talk to it), after `adjust` changed the
    /// settings; other parts can run in separate processes ([`ChronicleProcess`]).
    pub async fn spawn_parts(
        parts: Parts,
        adjust: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Self> {
        Self::start(parts, adjust, test_api_settings()).await
    }

    async fn start(
        parts: Parts,
        adjust: impl FnOnce(&mut Settings),
        api: ApiSettings,
    ) -> anyhow::Result<Self> {
        chronicle::telemetry::init(chronicle::telemetry::TelemetrySettings::from_env()?)?;
        let database_url = create_database().await?;
        let mut settings = test_settings(&database_url, &brokers());
        adjust(&mut settings);
        let parts = Parts { api: true, ..parts };
        let service = app::start(&settings, &api, parts).await?;
        let addr = service.http_addr;
        let db = PgPool::connect(settings.database_url.expose()).await?;
        if parts.projections && settings.rebuild_outdated {
            projections_current(&db).await?;
        }
        let mut app = Self {
            base_url: format!("http://{addr}"),
            client: GraphqlClient::with_token(format!("http://{addr}"), None),
            db,
            admin_token: String::new(),
            service: Some(service),
            settings,
        };
        app.admin_token = app.token("u-admin", &["admin"], &["team-a", "team-b"]);
        Ok(app)
    }

    /// How the store writes `user_id` where it names a person (an actor, an assignee):
    /// `subject:<pseudonym>`, a reference to the person's key.
    pub async fn stored_as(&self, user_id: &str) -> String {
        use chronicle_application::ports::subject_keys::SubjectKeys as _;
        let key = chronicle_infrastructure::subject_keys::PgSubjectKeys::new(self.db.clone())
            .find(user_id)
            .await
            .expect("key store readable")
            .unwrap_or_else(|| panic!("{user_id} has no key: nothing of theirs was stored"));
        chronicle_application::privacy::seal::reference(&key.pseudonym)
    }

    /// A token for `sub` with roles and teams.
    pub fn token(&self, sub: &str, roles: &[&str], teams: &[&str]) -> String {
        Authenticator::hs256(TEST_SECRET)
            .issue(
                sub,
                roles.iter().map(|r| r.to_string()).collect(),
                teams.iter().map(|t| t.to_string()).collect(),
                chrono::Duration::hours(1),
            )
            .expect("sign test token")
    }

    /// A client of this service sending `token` (none: an anonymous caller).
    pub fn client(&self, token: Option<&str>) -> GraphqlClient {
        self.client.as_caller(token)
    }

    /// Posts a GraphQL request with an optional bearer token; returns the whole response body.
    pub async fn graphql_as(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        self.client(token).body(query, variables).await
    }

    /// Posts a GraphQL request as the admin.
    pub async fn graphql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        self.graphql_as(Some(&self.admin_token), query, variables)
            .await
    }

    /// Posts a request that must succeed and returns its `data`.
    pub async fn data(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body = self.graphql(query, variables).await?;
        if body.get("errors").is_some_and(|e| !e.is_null()) {
            bail!("unexpected errors: {body}");
        }
        Ok(body["data"].clone())
    }

    /// Creates a task as the admin; its id.
    pub async fn create_task(&self, title: &str, team: &str) -> anyhow::Result<String> {
        self.client(Some(&self.admin_token))
            .create_task(title, team)
            .await
    }

    /// Events committed and not yet published (the outbox's backlog).
    pub async fn unpublished(&self) -> anyhow::Result<i64> {
        unpublished(&self.db).await
    }

    /// Waits until the relay has published everything committed so far.
    pub async fn outbox_drained(&self, timeout: Duration) -> anyhow::Result<()> {
        outbox_drained(&self.db, timeout).await
    }

    /// Number of rows in the events table.
    pub async fn event_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.db)
            .await?)
    }

    /// Waits until the read model holds `task_id` at `version`.
    pub async fn wait_for_version(&self, task_id: &str, version: i64) -> anyhow::Result<Value> {
        let data = self
            .data(
                "query($id: ID!, $v: Int) { task(id: $id, minVersion: $v) { id version status title assigneeId labels } }",
                json!({"id": task_id, "v": version}),
            )
            .await?;
        Ok(data["task"].clone())
    }

    /// The full name of an event topic (with this app's prefix).
    pub fn topic(&self, aggregate: &str) -> String {
        chronicle_application::topics::Topics::new(self.settings.kafka.topic_prefix.clone())
            .events_of(aggregate)
    }

    /// Stops the service (in-flight work finishes, offsets commit, the relay lock is released).
    pub async fn stop(&mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await;
        }
    }
}

/// Runs a `chronicle` subcommand against `database_url`; returns its exit code and stdout.
pub async fn run_chronicle(database_url: &str, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let output = run_chronicle_output(database_url, args).await?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// Runs a `chronicle` subcommand against `database_url`; returns its status and both outputs.
pub async fn run_chronicle_output(
    database_url: &str,
    args: &[&str],
) -> anyhow::Result<std::process::Output> {
    Ok(tokio::process::Command::new(chronicle_binary()?)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("CHRONICLE_JWT_SECRET", TEST_SECRET)
        .output()
        .await?)
}

/// A record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Key as text.
    pub key: String,
    /// Value as JSON.
    pub value: Value,
    /// Headers as text.
    pub headers: HashMap<String, String>,
}

/// Reads `topic` from the beginning until `count` records arrived or `timeout` passed, like any
/// independent Kafka client would (its own group, no Chronicle code).
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Record>> {
    read_records(brokers, topic, count, timeout, None).await
}

/// Reads `count` records like [`read_topic`], then goes on until nothing arrived for `quiet`.
async fn read_records(
    brokers: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
    quiet: Option<Duration>,
) -> anyhow::Result<Vec<Record>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", Uuid::now_v7().simple()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let until = match quiet {
            Some(quiet) if records.len() >= count => tokio::time::Instant::now() + quiet,
            _ if records.len() >= count => break,
            _ => deadline,
        };
        let message = match tokio::time::timeout_at(until, consumer.recv()).await {
            Err(_) => break,
            Ok(message) => message?,
        };
        let mut headers = HashMap::new();
        if let Some(list) = message.headers() {
            for header in list.iter() {
                let value = header
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                headers.insert(header.key.to_owned(), value);
            }
        }
        records.push(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            value: serde_json::from_slice(message.payload().unwrap_or_default())
                .unwrap_or(Value::Null),
            headers,
        });
    }
    // Closing leaves the group, and librdkafka's close can wait forever when a rebalance
    // arrives during it (the service's consumers close the same way, for the same reason).
    std::thread::spawn(move || drop(consumer));
    Ok(records)
}

/// Reads every record `topic` holds now: at least `at_least` records and at least what the
/// high watermarks count, then whatever else arrives until the topic has been quiet for a
/// second (Tansu's watermarks can lag a record behind after a producer changes, so they are
/// a floor here, not the end).
pub async fn read_topic_to_end(
    brokers: &str,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Record>> {
    let probe: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let metadata = probe.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .context("topic missing")?;
    let mut count = 0;
    for partition in 0..partitions {
        let (low, high) =
            probe.fetch_watermarks(topic, partition as i32, Duration::from_secs(10))?;
        count += usize::try_from(high - low)?;
    }
    let count = count.max(at_least);
    let records =
        read_records(brokers, topic, count, timeout, Some(Duration::from_secs(1))).await?;
    if records.len() < count {
        bail!("read {} of the {count} records of {topic}", records.len());
    }
    Ok(records)
}

/// The `extensions.code` of the first error of a response.
pub fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// Events committed to the store on `db` and not yet published.
pub async fn unpublished(db: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(db)
            .await?,
    )
}

/// Waits until the outbox of the store on `db` is empty of unpublished rows.
pub async fn outbox_drained(db: &PgPool, timeout: Duration) -> anyhow::Result<()> {
    eventually(timeout, || async {
        Ok((unpublished(db).await? == 0).then_some(()))
    })
    .await
}

/// Waits for the service's start-up check of outdated projections to be done: on an empty
/// store it marks every projection current at once, but it runs in the background, and a test
/// that writes events before it ran would see a rebuild start under its feet.
async fn projections_current(db: &PgPool) -> anyhow::Result<()> {
    use chronicle_application::projection::read_model::ReadModel;
    use chronicle_application::projection::report::ReportReadModel;
    use chronicle_application::projection::task::TaskReadModel;
    let current = [
        (TaskReadModel::NAME, TaskReadModel::VERSION),
        (ReportReadModel::NAME, ReportReadModel::VERSION),
    ];
    eventually(Duration::from_secs(20), || async {
        let mut all = true;
        for (name, version) in current {
            let stored: Option<i32> =
                sqlx::query_scalar("SELECT version FROM projections WHERE name = $1")
                    .bind(name)
                    .fetch_optional(db)
                    .await?;
            all &= stored.is_some_and(|stored| stored as u32 >= version);
        }
        Ok(all.then_some(()))
    })
    .await
    .context("the start-up check of outdated projections did not finish")
}

/// A directory of its own holding a checkpoint signing key made as an operator makes one
/// (`chronicle audit keygen`): `audit.pem` and `audit.pem.pub`. Answers the directory.
pub async fn audit_key_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("chronicle-keys-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("audit.pem");
    let key = key
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("a key path in UTF-8"))?;
    let (code, out) = run_chronicle("", &["audit", "keygen", "--out", key]).await?;
    if code != 0 {
        anyhow::bail!("chronicle audit keygen exited {code}: {out}");
    }
    Ok(dir)
}
