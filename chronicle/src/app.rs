//! Process wiring: builds every service from settings and runs the selected parts.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chronicle_application::aggregates;
use chronicle_application::audit::{AuditQueries, TimeTravel};
use chronicle_application::commands::{AggregateExecutor, ReportCommands, TaskCommands};
use chronicle_application::live::{FeedSettings, LiveFeed, LiveWatch};
use chronicle_application::ports::audit_log::AuditLog;
use chronicle_application::projection::projector::Handlers;
use chronicle_application::projection::projector::ReportProjector;
use chronicle_application::projection::projector::TaskProjector;
use chronicle_application::projection::report::ReportReadModel;
use chronicle_application::projection::task::TaskReadModel;
use chronicle_application::queries::{ReportQueries, TaskQueries};
use chronicle_application::rebuild::{Projection, Rebuilder};
use chronicle_application::reports::ReportWorker;
use chronicle_application::topics::Topics;
use chronicle_application::AppError;
use chronicle_infrastructure::audit_log::PgAuditLog;
use chronicle_infrastructure::config::Settings;
use chronicle_infrastructure::db;
use chronicle_infrastructure::event_store::PgEventStore;
use chronicle_infrastructure::kafka::admin::ensure_topics;
use chronicle_infrastructure::kafka::consumer::{ConsumerOptions, EventConsumer};
use chronicle_infrastructure::kafka::on_demand::OnDemandProducer;
use chronicle_infrastructure::outbox::{OutboxRelay, OutboxSignal, RelayOptions, RelayStatus};
use chronicle_infrastructure::projections::PgProjections;
use chronicle_infrastructure::read_model::report_data::PgReportData;
use chronicle_infrastructure::read_model::views::PgViews;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::ops::{OpsState, PartsHealth};
use chronicle_api::auth::Authenticator;
use chronicle_api::graphql::{build_schema, Services, SubscriptionCounts};
use chronicle_api::http::{router, HttpState};
use chronicle_api::rate_limit::RateLimiter;
use chronicle_api::settings::ApiSettings;
use chronicle_application::audit::checkpoints::{AuditProofs, Checkpointer, Signing};
use chronicle_application::audit::signing::CheckpointSigner;
use chronicle_application::erasure::Eraser;
use chronicle_application::error_chain::Chain;
use chronicle_application::held::HeldMessages;
use chronicle_application::observability::Gauges;
use chronicle_application::ports::dead_letters::Redrive;
use chronicle_application::privacy::cache::CachedSubjectKeys;
use chronicle_application::privacy::follower::ErasureFollower;
use chronicle_application::privacy::personal_data::{PersonalData, Sealing};
use chronicle_application::projection::refold::Refolder;
use chronicle_infrastructure::audit_tree::{lead_checkpoints, KafkaCheckpointLog, PgAuditTree};
use chronicle_infrastructure::config::DEFAULT_PRIVACY_KEY_CACHE_SECS;
use chronicle_infrastructure::db::replica::ReplicaStatus;
use chronicle_infrastructure::erasures::PgErasures;
use chronicle_infrastructure::event_feed::PgEventFeed;
use chronicle_infrastructure::held::dead_letters::PgDeadLetters;
use chronicle_infrastructure::held::PgHeld;
use chronicle_infrastructure::kafka::dead_letter::KafkaRedrive;
use chronicle_infrastructure::kafka::probe::BrokerProbe;
use chronicle_infrastructure::outbox::PgOutboxMonitor;
use chronicle_infrastructure::subject_keys::PgSubjectKeys;

/// The consumer group of the read-model projections (under `KAFKA_TOPIC_PREFIX`).
pub const PROJECTIONS_GROUP: &str = "chronicle-projections";
/// The consumer group of the report worker (under `KAFKA_TOPIC_PREFIX`).
pub const REPORT_WORKER_GROUP: &str = "chronicle-report-worker";
/// Generation attempts before the worker fails a report.
pub(crate) const REPORT_MAX_ATTEMPTS: u32 = 3;

/// Which parts of the service this process runs (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// The HTTP/GraphQL API.
    pub api: bool,
    /// The outbox relay (one is active per database; others stand by).
    pub relay: bool,
    /// The read-model projections.
    pub projections: bool,
    /// The report worker.
    pub worker: bool,
}

impl Parts {
    /// Everything: the default of `chronicle serve`.
    pub const ALL: Self = Self {
        api: true,
        relay: true,
        projections: true,
        worker: true,
    };

    /// Parses `api,relay,projections,worker` (any subset).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut parts = Self {
            api: false,
            relay: false,
            projections: false,
            worker: false,
        };
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "api" => parts.api = true,
                "relay" => parts.relay = true,
                "projections" => parts.projections = true,
                "worker" => parts.worker = true,
                other => {
                    return Err(format!(
                        "unknown part {other:?}; choose from api, relay, projections, worker"
                    ))
                }
            }
        }
        Ok(parts)
    }
}

/// A started service. Dropping it does not stop it: call [`RunningService::stop`].
pub struct RunningService {
    /// Where the process serves health and metrics, and GraphQL when the API runs.
    pub http_addr: SocketAddr,
    /// Whether GraphQL is served at `http_addr` (the `api` part runs).
    pub serves_api: bool,
    /// The relay's state, when it runs.
    pub relay_status: Option<Arc<RelayStatus>>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningService {
    /// Asks every part to stop and waits until they did (in-flight requests finish, the producer
    /// flushes, consumers commit, the relay lock is released).
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The rebuilder of every read model this service has (`chronicle replay`, `rebuildProjection`,
/// the start-up rebuild of outdated projections).
pub fn rebuilder(pool: &sqlx::PgPool, personal: Arc<PersonalData>) -> Rebuilder {
    rebuilder_on(pool, pool, personal)
}

/// [`rebuilder`], holding its locks on connections from `session` (`CHRONICLE_SESSION_DATABASE_URL`).
fn rebuilder_on(pool: &PgPool, session: &PgPool, personal: Arc<PersonalData>) -> Rebuilder {
    Rebuilder::new(
        Arc::new(PgProjections::new(pool.clone()).with_session(session.clone())),
        vec![
            Projection::of::<TaskReadModel>(Arc::new(PgViews::<TaskReadModel>::new(pool.clone()))),
            Projection::of::<ReportReadModel>(Arc::new(PgViews::<ReportReadModel>::new(
                pool.clone(),
            ))),
        ],
        personal,
    )
}

/// Erasing data subjects on `pool` (`eraseDataSubject`, `chronicle erase`): keys destroyed
/// through `personal`, the erasure appended through `store` and published to `topics`, every
/// read model folded again, changes to values stored in clear signed by `signer`.
pub fn eraser(
    pool: &PgPool,
    store: Arc<PgEventStore>,
    topics: Topics,
    personal: Arc<PersonalData>,
    signer: Option<Arc<CheckpointSigner>>,
) -> Eraser {
    let fresh = Arc::new(PersonalData::new(
        Arc::new(PgSubjectKeys::new(pool.clone())),
        Sealing::Off,
    ));
    Eraser::new(
        personal.clone(),
        fresh,
        Arc::new(PgErasures::new(pool.clone())),
        AggregateExecutor::new(store, topics, 0, personal),
        vec![
            Arc::new(Refolder::<TaskReadModel>::new(Arc::new(PgViews::<
                TaskReadModel,
            >::new(
                pool.clone()
            )))),
            Arc::new(Refolder::<ReportReadModel>::new(Arc::new(PgViews::<
                ReportReadModel,
            >::new(
                pool.clone()
            )))),
        ],
        signer,
    )
}

/// The subjects' keys on `pool`, kept in memory for `cache`, sealing new events or not.
pub fn personal_data(pool: &PgPool, sealing: Sealing, cache: Duration) -> Arc<PersonalData> {
    Arc::new(PersonalData::new(cached_keys(pool, cache), sealing))
}

/// The subjects' keys on `pool`, each kept in memory for `cache`.
fn cached_keys(pool: &PgPool, cache: Duration) -> Arc<CachedSubjectKeys> {
    let keys = Arc::new(PgSubjectKeys::new(pool.clone()));
    Arc::new(CachedSubjectKeys::new(keys, cache))
}

/// [`personal_data`] for commands that only read events (`chronicle replay`, `audit verify`).
pub fn personal_data_for_reading(pool: &PgPool) -> Arc<PersonalData> {
    personal_data(
        pool,
        Sealing::Off,
        Duration::from_secs(DEFAULT_PRIVACY_KEY_CACHE_SECS),
    )
}

/// Rebuilds, one after the other, the projections whose rows older projection code built (or
/// that were never built). Runs beside the service: readers read the current rows meanwhile
/// and each projection's live consumer waits for its swap. Another instance starting at the
/// same time finds them claimed and leaves them to it.
async fn rebuild_outdated(rebuilder: Arc<Rebuilder>) {
    let outdated = match rebuilder.outdated().await {
        Ok(outdated) => outdated,
        Err(error) => {
            tracing::warn!(error = %Chain(&error), "cannot read projection versions; no start-up rebuild");
            return;
        }
    };
    for name in outdated {
        tracing::info!(
            projection = name,
            "projection code is newer than its rows; rebuilding"
        );
        match rebuilder.rebuild(name, &|_| {}).await {
            Ok(summary) => tracing::info!(
                projection = name,
                events = summary.events,
                seconds = summary.seconds,
                "start-up rebuild swapped in"
            ),
            Err(AppError::InvalidTransition(reason)) => {
                tracing::info!(%reason, "left to the other rebuild")
            }
            Err(error) => {
                tracing::warn!(projection = name, error = %Chain(&error), "start-up rebuild failed")
            }
        }
    }
}

/// Builds and starts the selected parts: connect and migrate, create the topics, build the
/// adapters, then start each part this process runs.
pub async fn start(
    settings: &Settings,
    api: &ApiSettings,
    parts: Parts,
) -> anyhow::Result<RunningService> {
    crate::metrics::handle();
    // Keys are checked before anything starts: a bad key file stops the process at once.
    let authenticator = match parts.api {
        true => Some(Authenticator::from_settings(&api.auth)?),
        false => None,
    };
    let pool = db::connect_with(
        settings.database_url.expose(),
        settings.database_max_connections,
        settings.database_acquire_timeout,
    )
    .await
    .context("connecting to Postgres")?;
    db::migrate(&pool).await.context("applying migrations")?;
    let topics = Topics::new(settings.kafka.topic_prefix.clone());
    ensure_topics(&settings.kafka, &service_topics(&topics))
        .await
        .context("creating Kafka topics")?;
    let mut wiring = Wiring::new(settings, pool, topics).await?;
    if let (true, Some(replica)) = (parts.api, &settings.read_replica) {
        wiring.reads = Some(
            db::replica::read_pool(
                &wiring.pool,
                replica.url.expose(),
                settings.database_max_connections,
                settings.database_acquire_timeout,
                replica.max_lag,
            )
            .await
            .context("connecting to the read replica")?,
        );
    }
    if parts.projections && settings.rebuild_outdated {
        wiring.start_outdated_rebuild();
    }
    let relay_status = parts.relay.then(|| wiring.start_relay());
    let signer = checkpoint_signer(settings)?;
    let checkpoints_on = signer.is_some();
    if let (true, Some(signer)) = (parts.relay, signer) {
        wiring.start_checkpointer(signer)?;
    }
    if parts.api || parts.worker {
        // This process appends: relays of other processes hear of it by NOTIFY.
        wiring.start_announcer(relay_status.clone());
    }
    if parts.projections {
        wiring.start_projections()?;
    }
    if parts.worker {
        wiring.start_worker()?;
    }
    let mut routes = crate::ops::router(wiring.ops_state(relay_status.clone(), checkpoints_on)?);
    if let Some(authenticator) = authenticator {
        routes = routes.merge(wiring.start_api(api, authenticator)?);
    }
    let http_addr = wiring.serve_http(api.http_addr, routes).await?;
    Ok(RunningService {
        http_addr,
        serves_api: parts.api,
        relay_status,
        shutdown: wiring.shutdown,
        tasks: wiring.tasks,
    })
}

/// The checkpoint signer of `CHRONICLE_AUDIT_SIGNING_KEY_FILE`, read at start so a bad key stops
/// the process at once; `None` without one (checkpoints off).
pub fn checkpoint_signer(settings: &Settings) -> anyhow::Result<Option<CheckpointSigner>> {
    signer_of_key_file(settings.audit_signing_key_file.clone())
}

/// The signer of the key file at `path`, when one is named.
pub fn signer_of_key_file(path: Option<String>) -> anyhow::Result<Option<CheckpointSigner>> {
    let Some(path) = path.filter(|path| !path.is_empty()) else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(&path)
        .with_context(|| format!("CHRONICLE_AUDIT_SIGNING_KEY_FILE: cannot read {path:?}"))?;
    let signer = CheckpointSigner::from_pem(&pem)
        .with_context(|| format!("CHRONICLE_AUDIT_SIGNING_KEY_FILE: {path:?}"))?;
    Ok(Some(signer))
}

/// Every topic the service writes or dead-letters to: the event topics, the projections'
/// dead letters of each, and the worker's of the report topic.
fn service_topics(topics: &Topics) -> Vec<String> {
    let mut all = topics.event_topics();
    all.push(topics.audit_checkpoints());
    for (group, consumed) in consumed_topics(topics) {
        for topic in consumed {
            all.push(Topics::dead_letter(&topic, &group));
            all.push(Topics::redrive(&topic, &group));
        }
    }
    all
}

/// Each durable consumer group (under the prefix) and the event topics it consumes.
fn consumed_topics(topics: &Topics) -> [(String, Vec<String>); 2] {
    [
        (topics.group(PROJECTIONS_GROUP), topics.event_topics()),
        (
            topics.group(REPORT_WORKER_GROUP),
            vec![topics.report_events()],
        ),
    ]
}

/// What `group` subscribes to: its event topics, and beside each the topic its dead letters
/// are sent back on (only this group reads it).
fn subscription(group: &str, topics: Vec<String>) -> Vec<String> {
    let redrives: Vec<String> = topics.iter().map(|t| Topics::redrive(t, group)).collect();
    topics.into_iter().chain(redrives).collect()
}

/// The consumer groups whose dead letters operators see, as they name them.
pub(crate) const DEAD_LETTER_GROUPS: [&str; 2] = [PROJECTIONS_GROUP, REPORT_WORKER_GROUP];

/// The held messages of every kind: dead letters sent back through `redrive`, projection
/// failures retried through each projection's own fold.
pub fn held_messages(
    pool: &PgPool,
    topics: &Topics,
    redrive: Arc<dyn Redrive>,
    personal: Arc<PersonalData>,
) -> HeldMessages {
    HeldMessages::new(
        Arc::new(PgHeld::new(pool.clone())),
        redrive,
        vec![
            Arc::new(TaskProjector::new(Arc::new(PgViews::<TaskReadModel>::new(
                pool.clone(),
            )))),
            Arc::new(ReportProjector::new(Arc::new(
                PgViews::<ReportReadModel>::new(pool.clone()),
            ))),
        ],
        personal,
        topics,
        &DEAD_LETTER_GROUPS,
    )
}

/// The adapters every part is built from, and the tasks started so far.
struct Wiring<'a> {
    settings: &'a Settings,
    pool: PgPool,
    topics: Topics,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// Raised by the store after each append (wakes the relay).
    appended: OutboxSignal,
    store: Arc<PgEventStore>,
    task_views: Arc<PgViews<TaskReadModel>>,
    report_views: Arc<PgViews<ReportReadModel>>,
    report_commands: Arc<ReportCommands>,
    rebuilder: Arc<Rebuilder>,
    /// The producer of dead letters, redrives and checkpoints this process shares, made
    /// when one of them first sends.
    dead_letters: OnDemandProducer,
    /// The parts started so far, for readiness.
    parts: PartsHealth,
    /// Held messages (parked records), counted for readiness and metrics.
    held: Arc<PgHeld>,
    /// Where consumers record what they set aside.
    dead_letter_store: Arc<PgDeadLetters>,
    /// Seals and opens personal values with the subjects' keys (one key cache per process).
    personal: Arc<PersonalData>,
    /// That key cache, which forgets a key when its erasure event arrives.
    key_cache: Arc<CachedSubjectKeys>,
    /// The pool queries read from when a replica serves them, and the replica's state.
    reads: Option<(PgPool, Arc<ReplicaStatus>)>,
    /// Connections that keep a session (locks, `LISTEN`).
    session: PgPool,
}

impl<'a> Wiring<'a> {
    /// The adapters on `pool`, with every projection registered.
    async fn new(settings: &'a Settings, pool: PgPool, topics: Topics) -> anyhow::Result<Self> {
        let sealing = match settings.seal_personal_data {
            true => Sealing::On,
            false => Sealing::Off,
        };
        let key_cache = cached_keys(&pool, settings.privacy_key_cache);
        let personal = Arc::new(PersonalData::new(key_cache.clone(), sealing));
        // Locks and LISTEN keep a session: not through a transaction-mode pooler.
        let session = match &settings.session_database_url {
            Some(url) => db::connect_named(
                url.expose(),
                4,
                settings.database_acquire_timeout,
                "chronicle-session",
            )
            .await
            .context("connecting to CHRONICLE_SESSION_DATABASE_URL")?,
            None => pool.clone(),
        };
        let rebuilder = Arc::new(rebuilder_on(&pool, &session, personal.clone()));
        rebuilder
            .register()
            .await
            .context("registering projections")?;
        let appended = OutboxSignal::new();
        let held = Arc::new(PgHeld::new(pool.clone()));
        let dead_letter_store = Arc::new(PgDeadLetters::new(pool.clone()));
        let dead_letters = OnDemandProducer::checked(&settings.kafka)?;
        let store = Arc::new(match settings.group_commit {
            true => PgEventStore::with_group_commit(pool.clone(), appended.clone()),
            false => PgEventStore::new(pool.clone(), appended.clone()),
        });
        let report_commands = Arc::new(ReportCommands::new(
            store.clone(),
            topics.clone(),
            settings.snapshot_every,
            personal.clone(),
        ));
        Ok(Self {
            settings,
            task_views: Arc::new(PgViews::<TaskReadModel>::new(pool.clone())),
            report_views: Arc::new(PgViews::<ReportReadModel>::new(pool.clone())),
            reads: None,
            session,
            pool,
            topics,
            shutdown: CancellationToken::new(),
            tasks: Vec::new(),
            appended,
            store,
            report_commands,
            rebuilder,
            dead_letters,
            parts: PartsHealth::default(),
            held,
            dead_letter_store,
            personal,
            key_cache,
        })
    }

    /// Starts `part` as a task that readiness reports by `name`.
    fn spawn_part(&mut self, name: &'static str, part: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(self.parts.watch(name, part)));
    }

    /// Rebuilds outdated projections in the background. A shutdown abandons it: its claim goes
    /// with its connection, the live tables were never touched, and the next start rebuilds
    /// again.
    fn start_outdated_rebuild(&mut self) {
        let (rebuilder, shutdown) = (self.rebuilder.clone(), self.shutdown.clone());
        self.tasks.push(tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = rebuild_outdated(rebuilder) => {}
            }
        }));
    }

    /// The outbox relay (it leads or stands by); its status.
    fn start_relay(&mut self) -> Arc<RelayStatus> {
        let relay = OutboxRelay::new(
            self.pool.clone(),
            self.session.clone(),
            self.settings.kafka.clone(),
            RelayOptions {
                retention: self.settings.outbox_retention,
                read_interval: self.settings.relay_read_interval,
                ..RelayOptions::default()
            },
            self.appended.clone(),
        );
        let status = relay.status();
        let shutdown = self.shutdown.clone();
        self.spawn_part("relay", relay.run(shutdown));
        status
    }

    /// Tells relays of other processes about this process's appends.
    fn start_announcer(&mut self, local_relay: Option<Arc<RelayStatus>>) {
        self.tasks.push(tokio::spawn(self.appended.clone().announce(
            self.pool.clone(),
            local_relay,
            self.shutdown.clone(),
        )));
    }

    /// The read models' consumer group.
    fn start_projections(&mut self) -> anyhow::Result<()> {
        let handlers = Handlers(vec![
            Arc::new(TaskProjector::new(self.task_views.clone())),
            Arc::new(ReportProjector::new(self.report_views.clone())),
        ]);
        let group = self.topics.group(PROJECTIONS_GROUP);
        let topics = subscription(&group, self.topics.event_topics());
        let options = ConsumerOptions::projection(group, topics);
        let producer = self.dead_letters.clone();
        let consumer = EventConsumer::new(
            &self.settings.kafka,
            options,
            Arc::new(handlers),
            producer,
            self.dead_letter_store.clone(),
        )
        .context("starting the projection consumer")?;
        let shutdown = self.shutdown.clone();
        self.spawn_part("projections", consumer.run(shutdown));
        Ok(())
    }

    /// The report worker's consumer group.
    fn start_worker(&mut self) -> anyhow::Result<()> {
        let worker = ReportWorker::new(
            self.report_commands.clone(),
            Arc::new(PgReportData::new(self.pool.clone())),
            REPORT_MAX_ATTEMPTS,
        );
        let group = self.topics.group(REPORT_WORKER_GROUP);
        let topics = subscription(&group, vec![self.topics.report_events()]);
        let options = ConsumerOptions {
            max_attempts: Some(self.settings.worker_max_attempts),
            ..ConsumerOptions::worker(group, topics)
        };
        let producer = self.dead_letters.clone();
        let consumer = EventConsumer::new(
            &self.settings.kafka,
            options,
            Arc::new(worker),
            producer,
            self.dead_letter_store.clone(),
        )
        .context("starting the report worker")?;
        let shutdown = self.shutdown.clone();
        self.spawn_part("worker", consumer.run(shutdown));
        Ok(())
    }

    /// Grows the audit tree and signs checkpoints while this instance holds the checkpoint
    /// lock (one instance at a time; the others stand by).
    fn start_checkpointer(&mut self, signer: CheckpointSigner) -> anyhow::Result<()> {
        let producer = self.dead_letters.clone();
        let log = KafkaCheckpointLog::new(producer, self.topics.audit_checkpoints());
        let checkpointer = Arc::new(Checkpointer::new(
            Arc::new(PgAuditTree::new(self.pool.clone())),
            Arc::new(log),
            signer,
        ));
        let (url, interval, shutdown) = (
            self.settings.session_url().expose().to_owned(),
            self.settings.audit_checkpoint_interval,
            self.shutdown.clone(),
        );
        self.spawn_part(
            "checkpoints",
            lead_checkpoints(url, interval, shutdown, move || {
                let checkpointer = checkpointer.clone();
                async move {
                    match checkpointer.round().await {
                        Ok(Some(checkpoint)) => tracing::debug!(
                            tree_size = checkpoint.tree_size,
                            "audit checkpoint signed"
                        ),
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(error = %Chain(&error), "audit checkpoint round failed")
                        }
                    }
                }
            }),
        );
        Ok(())
    }

    /// What health and metrics read: the database, the broker, the relay, the parts.
    fn ops_state(
        &self,
        relay: Option<Arc<RelayStatus>>,
        checkpoints: bool,
    ) -> anyhow::Result<OpsState> {
        Ok(OpsState {
            checkpoints,
            pool: self.pool.clone(),
            relay,
            gauges: Arc::new(Gauges::new(
                Arc::new(PgOutboxMonitor::new(self.pool.clone())),
                self.held.clone(),
                self.rebuilder.clone(),
            )),
            held: self.held.clone(),
            broker: BrokerProbe::new(&self.settings.kafka).context("creating the broker probe")?,
            parts: self.parts.clone(),
            replica: self.reads.as_ref().map(|(_, status)| status.clone()),
        })
    }

    /// The GraphQL API's routes, with its live feed started.
    fn start_api(
        &mut self,
        api: &ApiSettings,
        authenticator: Authenticator,
    ) -> anyhow::Result<axum::Router> {
        let live_feed = self.start_live_feed()?;
        let dead_letter_producer = self.dead_letters.clone();
        let settings = self.settings;
        let signer = checkpoint_signer(settings)?.map(Arc::new);
        let audit_log: Arc<dyn AuditLog> = Arc::new(PgAuditLog::new(self.pool.clone()));
        let wait = settings.read_your_writes_wait;
        let mut task_queries = TaskQueries::new(self.task_views.clone(), wait);
        let mut report_queries = ReportQueries::new(self.report_views.clone(), wait);
        let mut read_log = audit_log.clone();
        if let (Some((reads, _)), Some(replica)) = (&self.reads, &settings.read_replica) {
            // Queries, history and time travel read the replica; a `minVersion` it has not
            // reached within its bound, and a read it does not answer, go to the primary.
            task_queries =
                TaskQueries::new(Arc::new(PgViews::<TaskReadModel>::new(reads.clone())), wait)
                    .with_primary(self.task_views.clone(), replica.max_wait);
            report_queries = ReportQueries::new(
                Arc::new(PgViews::<ReportReadModel>::new(reads.clone())),
                wait,
            )
            .with_primary(self.report_views.clone(), replica.max_wait);
            read_log = Arc::new(PgAuditLog::new(reads.clone()));
        }
        let services = Services {
            live: LiveWatch::new(live_feed, self.personal.clone()),
            task_commands: Arc::new(TaskCommands::new(
                self.store.clone(),
                self.topics.clone(),
                settings.snapshot_every,
                self.personal.clone(),
            )),
            task_queries: Arc::new(task_queries),
            report_commands: self.report_commands.clone(),
            report_queries: Arc::new(report_queries),
            // The trail and its verdict read the primary: they judge events against the
            // keys and the erasure ledger as they are now, which a replica may lag behind.
            audit: Arc::new(
                AuditQueries::new(audit_log.clone(), self.personal.clone())
                    .with_erasure_key(signer.as_ref().map(|signer| signer.public_key())),
            ),
            task_history: Arc::new(TimeTravel::new(read_log.clone(), self.personal.clone())),
            report_history: Arc::new(TimeTravel::new(read_log, self.personal.clone())),
            rebuilder: self.rebuilder.clone(),
            held: Arc::new(held_messages(
                &self.pool,
                &self.topics,
                Arc::new(KafkaRedrive::new(dead_letter_producer)),
                self.personal.clone(),
            )),
            eraser: Arc::new(eraser(
                &self.pool,
                self.store.clone(),
                self.topics.clone(),
                self.personal.clone(),
                signer,
            )),
            audit_proofs: Arc::new(AuditProofs::new(
                Arc::new(PgAuditTree::new(self.pool.clone())),
                match self.settings.audit_signing_key_file {
                    Some(_) => Signing::On,
                    None => Signing::Off,
                },
            )),
        };
        Ok(router(HttpState {
            schema: build_schema(services, &api.limits),
            authenticator,
            limits: api.limits.clone(),
            rate_limiter: RateLimiter::new(api.limits.rate_per_second, api.limits.rate_burst)
                .map(Arc::new),
            shutdown: self.shutdown.clone(),
            subscriptions: SubscriptionCounts::new(
                api.limits.max_subscriptions_per_subject,
                api.limits.max_subscriptions_total,
            ),
        }))
    }

    /// Serves `routes` on `addr` until shutdown; the address it listens on.
    async fn serve_http(
        &mut self,
        addr: SocketAddr,
        routes: axum::Router,
    ) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} (CHRONICLE_HTTP_ADDR)"))?;
        let addr = listener.local_addr()?;
        let stop = self.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            let served = axum::serve(
                listener,
                routes.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
            if let Err(error) = served {
                tracing::error!(error = %Chain(&error), "HTTP server failed");
            }
        }));
        Ok(addr)
    }

    /// This instance's tail of the event store, for its subscribers; and the consumer that
    /// makes the key cache forget erased people's keys as their erasure events arrive, whichever
    /// instance erased them: a group of its own, from the end of the erasures' topic only.
    fn start_live_feed(&mut self) -> anyhow::Result<LiveFeed> {
        let settings = self.settings;
        let live_feed = LiveFeed::new(
            Arc::new(PgEventFeed::new(self.pool.clone())),
            FeedSettings {
                poll: settings.feed_poll,
                idle_poll: settings.feed_idle_poll,
            },
        );
        self.appended.also_wake({
            let feed = live_feed.clone();
            move || feed.nudge()
        });
        let stop = self.shutdown.clone();
        self.spawn_part("api", {
            let feed = live_feed.clone();
            async move { feed.run(stop.cancelled_owned()).await }
        });
        let group = self
            .topics
            .group(&format!("chronicle-api-{}", Uuid::now_v7().simple()));
        // The follower dead-letters nothing (it only watches), but the framework takes a
        // producer: the process's one, not a client of its own.
        let producer = self.dead_letters.clone();
        let erasures = EventConsumer::new(
            &settings.kafka,
            ConsumerOptions::watcher(
                group,
                vec![self.topics.events_of(aggregates::DATA_SUBJECT.type_name)],
            ),
            Arc::new(ErasureFollower::new(self.key_cache.clone())),
            producer,
            self.dead_letter_store.clone(),
        )
        .context("starting the erasure follower")?;
        let shutdown = self.shutdown.clone();
        self.spawn_part("api", erasures.run(shutdown));
        Ok(live_feed)
    }
}
