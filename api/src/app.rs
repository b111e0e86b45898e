//! Process wiring: builds every service from settings and runs the selected parts.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use chronicle_application::audit::{AuditQueries, TimeTravel};
use chronicle_application::commands::{ReportCommands, TaskCommands};
use chronicle_application::live::{LiveFeed, LiveWatch};
use chronicle_application::ports::audit_log::AuditLog;
use chronicle_application::projection::projector::Handlers;
use chronicle_application::projection::projector::ReportProjector;
use chronicle_application::projection::projector::TaskProjector;
use chronicle_application::projection::report::ReportReadModel;
use chronicle_application::projection::task::TaskReadModel;
use chronicle_application::queries::{ReportQueries, TaskQueries};
use chronicle_application::replay::{Projection, Rebuilder};
use chronicle_application::reports::ReportWorker;
use chronicle_application::topics::Topics;
use chronicle_application::AppError;
use chronicle_infrastructure::audit_log::PgAuditLog;
use chronicle_infrastructure::config::Settings;
use chronicle_infrastructure::event_store::PgEventStore;
use chronicle_infrastructure::kafka::admin::ensure_topics;
use chronicle_infrastructure::kafka::consumer::{ConsumerOptions, EventConsumer};
use chronicle_infrastructure::outbox::{OutboxRelay, OutboxSignal, RelayOptions, RelayStatus};
use chronicle_infrastructure::projections::PgProjections;
use chronicle_infrastructure::read_model::reports::{PgReportData, PgReportViews};
use chronicle_infrastructure::read_model::tasks::PgTaskViews;
use chronicle_infrastructure::{db, kafka};
use rdkafka::producer::FutureProducer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::graphql::{build_schema, Services};
use crate::http::{router, HttpState};
use crate::rate_limit::RateLimiter;
use chronicle_application::error_chain::Chain;
use chronicle_application::observability::Gauges;
use chronicle_infrastructure::kafka::probe::BrokerProbe;
use chronicle_infrastructure::outbox::PgOutboxMonitor;

/// The consumer group of the read-model projections (under `KAFKA_TOPIC_PREFIX`).
pub const PROJECTIONS_GROUP: &str = "chronicle-projections";
/// The consumer group of the report worker (under `KAFKA_TOPIC_PREFIX`).
pub const REPORT_WORKER_GROUP: &str = "chronicle-report-worker";
/// Generation attempts before the worker fails a report.
pub const REPORT_MAX_ATTEMPTS: u32 = 3;

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
    /// Where the API listens, when it runs.
    pub http_addr: Option<SocketAddr>,
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

    /// A token that stops the service when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// The rebuilder of every read model this service has (`chronicle replay`, `rebuildProjection`,
/// the start-up rebuild of outdated projections).
pub fn rebuilder(pool: &sqlx::PgPool) -> Rebuilder {
    Rebuilder::new(
        Arc::new(PgProjections::new(pool.clone())),
        vec![
            Projection::of::<TaskReadModel>(Arc::new(PgTaskViews::new(pool.clone()))),
            Projection::of::<ReportReadModel>(Arc::new(PgReportViews::new(pool.clone()))),
        ],
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

/// Builds and starts the selected parts.
pub async fn start(settings: &Settings, parts: Parts) -> anyhow::Result<RunningService> {
    crate::metrics::handle();
    // Keys are checked before anything starts: a bad key file stops the process at once.
    let authenticator = Authenticator::from_settings(&settings.auth)?;
    let pool = db::connect_with(
        settings.database_url.expose(),
        settings.database_max_connections,
        settings.database_acquire_timeout,
    )
    .await
    .context("connecting to Postgres")?;
    db::migrate(&pool).await.context("applying migrations")?;
    let topics = Topics::new(settings.kafka.topic_prefix.clone());
    let projections_group = topics.group(PROJECTIONS_GROUP);
    let worker_group = topics.group(REPORT_WORKER_GROUP);
    let mut all_topics = topics.event_topics();
    for topic in topics.event_topics() {
        all_topics.push(Topics::dead_letter(&topic, &projections_group));
    }
    all_topics.push(Topics::dead_letter(&topics.report_events(), &worker_group));
    ensure_topics(&settings.kafka, &all_topics)
        .await
        .context("creating Kafka topics")?;

    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let rebuilder = Arc::new(rebuilder(&pool));
    rebuilder
        .register()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("registering projections")?;
    if parts.projections && settings.rebuild_outdated {
        // A shutdown abandons it: its claim goes with its connection, the live tables were
        // never touched, and the next start rebuilds again.
        let (rebuilder, shutdown) = (rebuilder.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = rebuild_outdated(rebuilder) => {}
            }
        }));
    }
    let appended = OutboxSignal::new();
    let store = Arc::new(PgEventStore::new(pool.clone(), appended.clone()));
    let task_views = Arc::new(PgTaskViews::new(pool.clone()));
    let report_views = Arc::new(PgReportViews::new(pool.clone()));
    let report_commands = Arc::new(ReportCommands::new(
        store.clone(),
        topics.clone(),
        settings.snapshot_every,
    ));

    let relay_status = if parts.relay {
        let relay = OutboxRelay::new(
            pool.clone(),
            settings.database_url.expose(),
            settings.kafka.clone(),
            RelayOptions {
                retention: settings.outbox_retention,
                ..RelayOptions::default()
            },
            appended.clone(),
        );
        let status = relay.status();
        tasks.push(tokio::spawn(relay.run(shutdown.clone())));
        Some(status)
    } else {
        None
    };
    if parts.api || parts.worker {
        // This process appends: relays of other processes hear of it by NOTIFY.
        tasks.push(tokio::spawn(appended.announce(
            pool.clone(),
            relay_status.clone(),
            shutdown.clone(),
        )));
    }

    if parts.projections || parts.worker {
        let producer: FutureProducer = kafka::client::producer_config(&settings.kafka)
            .create()
            .context("creating the dead-letter producer")?;
        if parts.projections {
            let handlers = Handlers(vec![
                Arc::new(TaskProjector::new(task_views.clone())),
                Arc::new(ReportProjector::new(report_views.clone())),
            ]);
            let consumer = EventConsumer::new(
                &settings.kafka,
                ConsumerOptions::projection(projections_group, topics.event_topics()),
                Arc::new(handlers),
                producer.clone(),
            )
            .context("starting the projection consumer")?;
            tasks.push(tokio::spawn(consumer.run(shutdown.clone())));
        }
        if parts.worker {
            let worker = ReportWorker::new(
                report_commands.clone(),
                Arc::new(PgReportData::new(pool.clone())),
                REPORT_MAX_ATTEMPTS,
            );
            let consumer = EventConsumer::new(
                &settings.kafka,
                ConsumerOptions::worker(worker_group, vec![topics.report_events()]),
                Arc::new(worker),
                producer,
            )
            .context("starting the report worker")?;
            tasks.push(tokio::spawn(consumer.run(shutdown.clone())));
        }
    }

    let http_addr = if parts.api {
        // Each API instance reads every event for its own subscribers: its own group, from
        // the end of the topics.
        let live_feed = LiveFeed::new();
        let audit_log: Arc<dyn AuditLog> = Arc::new(PgAuditLog::new(pool.clone()));
        let feed_group = topics.group(&format!("chronicle-api-{}", Uuid::now_v7().simple()));
        let producer: FutureProducer = kafka::client::producer_config(&settings.kafka)
            .create()
            .context("creating the live feed's dead-letter producer")?;
        let feed = EventConsumer::new(
            &settings.kafka,
            ConsumerOptions::live_feed(feed_group, topics.event_topics()),
            Arc::new(live_feed.clone()),
            producer,
        )
        .context("starting the live feed")?;
        tasks.push(tokio::spawn(feed.run(shutdown.clone())));
        let services = Services {
            live: LiveWatch::new(live_feed, audit_log.clone()),
            task_commands: Arc::new(TaskCommands::new(
                store.clone(),
                topics.clone(),
                settings.snapshot_every,
            )),
            task_queries: Arc::new(TaskQueries::new(
                task_views.clone(),
                settings.read_your_writes_wait,
            )),
            report_commands: report_commands.clone(),
            report_queries: Arc::new(ReportQueries::new(
                report_views.clone(),
                settings.read_your_writes_wait,
            )),
            audit: Arc::new(AuditQueries::new(audit_log.clone())),
            task_history: Arc::new(TimeTravel::new(audit_log.clone())),
            report_history: Arc::new(TimeTravel::new(audit_log)),
            rebuilder: rebuilder.clone(),
        };
        let app = router(HttpState {
            schema: build_schema(services, &settings.limits),
            authenticator,
            pool: pool.clone(),
            relay: relay_status.clone(),
            limits: settings.limits.clone(),
            broker: BrokerProbe::new(&settings.kafka).context("creating the broker probe")?,
            gauges: Arc::new(Gauges::new(
                Arc::new(PgOutboxMonitor::new(pool.clone())),
                rebuilder.clone(),
            )),
            rate_limiter: RateLimiter::new(
                settings.limits.rate_per_second,
                settings.limits.rate_burst,
            )
            .map(Arc::new),
        });
        let listener = tokio::net::TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("binding {}", settings.http_addr))?;
        let addr = listener.local_addr()?;
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
            if let Err(error) = served {
                tracing::error!(error = %Chain(&error), "HTTP server failed");
            }
        }));
        Some(addr)
    } else {
        None
    };

    Ok(RunningService {
        http_addr,
        relay_status,
        shutdown,
        tasks,
    })
}
