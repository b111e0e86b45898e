//! The service under measurement: the real `chronicle` binary as its own process, on a private
//! Postgres cluster with the server's durable defaults, and the CPU both spend.
//!
//! A private cluster keeps the figures honest and readable: `fsync` and synchronous commit are
//! on (the benchmark never trades durability for speed), `pg_stat_statements` is loaded to list
//! the statements of a command, and every server process is a child of its postmaster, so its
//! CPU can be summed from `/proc` without counting anyone else's database.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use chronicle_infrastructure::config::Settings;
use chronicle_tests::{brokers, test_settings, ChronicleProcess, PrivatePostgres, TEST_SECRET};
use serde_json::{json, Value};
use sqlx::PgPool;

/// The database the service and pgbench use on the private cluster.
pub(crate) const DATABASE: &str = "bench";

/// Every part of `chronicle serve`, as a user runs it.
pub const ALL_PARTS: &str = "api,relay,projections,worker";

/// The parts that follow the store rather than answer requests: with [`API_PART`] in another
/// process they make up [`ALL_PARTS`], so each one's CPU can be read apart.
pub const BACKGROUND_PARTS: &str = "relay,projections,worker";

/// The part that answers GraphQL requests, commands included.
pub const API_PART: &str = "api";

/// Server options of the private cluster beyond Postgres's defaults.
const SERVER_OPTIONS: &str =
    "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on -c max_connections=200";

/// A running service and the database it writes to.
pub struct BenchService {
    postgres: PrivatePostgres,
    /// The service's settings (topic prefix, database URL).
    pub settings: Settings,
    /// The process answering requests: every part, or only the API when the parts are split.
    process: ChronicleProcess,
    /// The relay, projections and report worker, when they run in a process of their own
    /// ([`BenchService::start_split`]).
    background: Option<ChronicleProcess>,
    /// `http://127.0.0.1:port/graphql`.
    pub graphql_url: String,
    /// An admin token.
    pub token: String,
    /// A pool on the service's database, for the benchmark's own reads.
    pub db: PgPool,
    /// The outbox id up to which every row was published and projected at the last
    /// [`Self::wait_settled`], so that the next one looks only at rows written since.
    settled_through: AtomicI64,
}

/// CPU time spent so far, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    /// Every `chronicle` process of the service (all their threads).
    pub chronicle: f64,
    /// When the parts run apart: the API process's and the background process's shares of
    /// `chronicle`.
    pub parts: Option<(f64, f64)>,
    /// When the parts run apart: the context switches of the API process's and the background
    /// process's threads so far. A task woken on another worker, a worker parked and unparked,
    /// a blocking call: each costs one, and each is kernel time beside the work.
    pub switches: Option<(f64, f64)>,
    /// Every process of the Postgres cluster (postmaster, backends, WAL writer, autovacuum).
    pub postgres: f64,
    /// A local Tansu broker, if one runs (0 otherwise: a remote broker is not measured).
    pub broker: f64,
    /// This process: the load generator.
    pub generator: f64,
}

impl CpuSample {
    /// CPU per unit of work between `self` (earlier) and `later`, in microseconds.
    pub fn per(&self, later: &CpuSample, units: f64) -> Value {
        let per = |a: f64, b: f64| (b - a) * 1e6 / units.max(1.0);
        let mut cpu = json!({
            "chronicle_us": per(self.chronicle, later.chronicle),
            "postgres_us": per(self.postgres, later.postgres),
            "local_broker_us": per(self.broker, later.broker),
            "load_generator_us": per(self.generator, later.generator),
        });
        if let (Some((api, background)), Some((api_later, background_later))) =
            (self.parts, later.parts)
        {
            cpu["api_process_us"] = json!(per(api, api_later));
            cpu["background_process_us"] = json!(per(background, background_later));
        }
        if let (Some((api, background)), Some((api_later, background_later))) =
            (self.switches, later.switches)
        {
            let count = |a: f64, b: f64| (b - a) / units.max(1.0);
            cpu["api_process_switches"] = json!(count(api, api_later));
            cpu["background_process_switches"] = json!(count(background, background_later));
        }
        cpu
    }
}

/// Counters of [`BenchService::activity`], so far.
#[derive(Debug, Clone)]
pub struct Activity {
    checkpoints: i64,
    wal_fpi: i64,
    wal_bytes: f64,
    wal_buffers_full: i64,
    wal_syncs: i64,
    autovacuums: i64,
    /// Commands appended by each way of the group commit (`alone`, `grouped`, `fallback`,
    /// `failed`).
    appends: std::collections::BTreeMap<String, f64>,
}

impl Activity {
    /// What happened between `self` (earlier) and `later`, over `commands` commands.
    pub fn since(&self, later: &Activity, commands: f64) -> Value {
        let appends: serde_json::Map<String, Value> = later
            .appends
            .iter()
            .map(|(way, count)| {
                let before = self.appends.get(way).copied().unwrap_or(0.0);
                (way.clone(), json!(count - before))
            })
            .collect();
        json!({
            "checkpoints": later.checkpoints - self.checkpoints,
            "autovacuums_and_analyzes": later.autovacuums - self.autovacuums,
            "wal_full_page_images_per_command":
                (later.wal_fpi - self.wal_fpi) as f64 / commands.max(1.0),
            "wal_bytes_per_command": (later.wal_bytes - self.wal_bytes) / commands.max(1.0),
            // Backends that had to write WAL themselves because its buffers were full.
            "wal_buffers_full": later.wal_buffers_full - self.wal_buffers_full,
            "wal_syncs_per_command":
                (later.wal_syncs - self.wal_syncs) as f64 / commands.max(1.0),
            "commands_appended_by_way": appends,
        })
    }
}

impl BenchService {
    /// Starts a private cluster and `chronicle serve` (every part) on it.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// [`Self::start`], with settings `adjust` changes from `chronicle serve`'s defaults.
    pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> anyhow::Result<Self> {
        Self::start_parts(adjust, false).await
    }

    /// [`Self::start`] as two processes on the same database and topics: `--only api`, which
    /// the benchmark's requests reach, and `--only relay,projections,worker`, so that the CPU
    /// of answering a command and of carrying its event on can be read apart.
    pub async fn start_split() -> anyhow::Result<Self> {
        Self::start_parts(|_| {}, true).await
    }

    async fn start_parts(adjust: impl FnOnce(&mut Settings), split: bool) -> anyhow::Result<Self> {
        use_release_binary()?;
        // `BENCH_POSTGRES_OPTIONS` adds server settings, to measure what one changes.
        let extra = std::env::var("BENCH_POSTGRES_OPTIONS").unwrap_or_default();
        let postgres = PrivatePostgres::start_durable(&format!("{SERVER_OPTIONS} {extra}")).await?;
        let admin = PgPool::connect(&postgres.url("postgres")).await?;
        sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let mut settings = test_settings(&postgres.url(DATABASE), &brokers());
        // The defaults of `chronicle serve`, where the test settings differ.
        settings.kafka.partitions = 6;
        settings.database_max_connections = 16;
        settings.snapshot_every = 100;
        adjust(&mut settings);
        let (process, background) = match split {
            false => (Self::spawn(&settings, ALL_PARTS).await?, None),
            true => (
                Self::spawn(&settings, API_PART).await?,
                Some(Self::spawn(&settings, BACKGROUND_PARTS).await?),
            ),
        };
        let graphql_url = format!("{}/graphql", process.client("")?.base_url());
        let db = PgPool::connect(settings.database_url.expose()).await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&db)
            .await?;
        let token = chronicle_api::auth::Authenticator::hs256(TEST_SECRET)
            .issue(
                "u-bench",
                vec!["admin".to_owned()],
                vec!["*".to_owned()],
                chrono::Duration::hours(4),
            )
            .context("sign the benchmark's token")?;
        Ok(Self {
            postgres,
            settings,
            process,
            background,
            graphql_url,
            token,
            db,
            settled_through: AtomicI64::new(0),
        })
    }

    /// Waits (up to 10 minutes) until the tasks read model holds `count` rows matching
    /// `condition` (SQL over `tasks`, with `$1` bound to `value`).
    pub async fn wait_for_tasks(
        &self,
        condition: &str,
        value: &str,
        count: usize,
    ) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        loop {
            let rows: i64 =
                sqlx::query_scalar(&format!("SELECT count(*) FROM tasks WHERE {condition}"))
                    .bind(value)
                    .fetch_one(&self.db)
                    .await?;
            if rows as usize >= count {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "{rows} of {count} rows projected"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts another `chronicle serve --only <parts>` on the same database and topics.
    pub async fn spawn(settings: &Settings, parts: &str) -> anyhow::Result<ChronicleProcess> {
        // Logging as `chronicle serve` does by default (the harness would lower it to warn).
        let process = ChronicleProcess::serve_logged(
            settings,
            parts,
            &[("RUST_LOG", "info,sqlx=warn,rdkafka=warn")],
            true,
        )?;
        process.wait_ready(Duration::from_secs(60)).await?;
        Ok(process)
    }

    /// CPU seconds spent so far by every process of the cluster whose postmaster is
    /// `postmaster`: its own time and that of its children that have exited (autovacuum
    /// workers come and go), then the children still running.
    pub fn cluster_cpu(postmaster: u32) -> anyhow::Result<f64> {
        let children: f64 = processes()?
            .filter(|stat| stat.parent == postmaster)
            .map(|stat| stat.own)
            .sum();
        Ok(stat(postmaster)?.with_children + children)
    }

    /// The CPU spent so far by the service, the database, the broker and this process.
    pub fn cpu(&self) -> anyhow::Result<CpuSample> {
        let postgres = Self::cluster_cpu(self.postgres.postmaster_pid()?)?;
        let broker = processes()?
            .filter(|stat| stat.command == "tansu")
            .map(|stat| stat.own)
            .sum();
        // The process the requests reach: every part, or the API alone when the parts are split.
        let serving = stat(self.process.pid()?)?.own;
        let (background, switches) = match &self.background {
            Some(process) => (
                Some(stat(process.pid()?)?.own),
                Some((
                    context_switches(self.process.pid()?)?,
                    context_switches(process.pid()?)?,
                )),
            ),
            None => (None, None),
        };
        Ok(CpuSample {
            chronicle: serving + background.unwrap_or(0.0),
            parts: background.map(|background| (serving, background)),
            switches,
            postgres,
            broker,
            generator: own_cpu_seconds()?,
        })
    }

    /// One throughput round: createTask from [`crate::load::CONNECTIONS`] clients for `seconds`
    /// (tasks numbered apart by `round`), then a wait until everything it wrote is published and
    /// projected, so that the CPU sampled after it holds the relay's and the projection's share.
    /// Answers the load's summary and the CPU before and after.
    pub async fn create_round(
        &self,
        seconds: u64,
        round: usize,
    ) -> anyhow::Result<(Value, CpuSample, CpuSample)> {
        let before = self.cpu()?;
        let load = crate::load::create_load(
            &self.graphql_url,
            &self.token,
            crate::load::CONNECTIONS,
            seconds as f64,
            (round + 1) * 1_000_000_000,
        )
        .await?;
        self.wait_settled(Duration::from_secs(120)).await?;
        Ok((load, before, self.cpu()?))
    }

    /// Forgets the statements counted so far.
    pub async fn reset_statements(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// The statements run since the last reset, costliest first, per command.
    pub async fn statements(&self, commands: f64) -> anyhow::Result<Value> {
        let rows: Vec<(String, i64, f64, i64, i64, f64)> = sqlx::query_as(
            "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 180), calls::bigint,
                    total_exec_time, rows::bigint, plans::bigint, total_plan_time
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
             WHERE d.datname = current_database()
             ORDER BY total_exec_time DESC LIMIT 15",
        )
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(query, calls, total_ms, rows, plans, plan_ms)| {
                json!({
                    "plans_per_call": plans as f64 / calls.max(1) as f64,
                    "plan_us_per_command": plan_ms * 1000.0 / commands,
                    "statement": query,
                    "calls_per_command": calls as f64 / commands,
                    "mean_us": total_ms * 1000.0 / calls.max(1) as f64,
                    "us_per_command": total_ms * 1000.0 / commands,
                    "rows_per_call": rows as f64 / calls.max(1) as f64,
                })
            })
            .collect())
    }

    /// Waits until everything committed so far is published and projected, so CPU sampled
    /// afterwards includes the relay's and the projection's share of the commands.
    pub async fn wait_settled(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Events seeded straight into the store have no outbox row and are never projected:
            // only what the service itself wrote is waited for. Polled every 20 ms while the
            // round's CPU is still being counted, so each poll reads only the relay's queue and
            // then the rows from the first one not yet seen projected, each through an index (a
            // scan of the whole outbox against `tasks` cost Postgres 250-350 ms a poll once it
            // held 100,000 rows).
            let unpublished: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL AND parked_at IS NULL",
            )
            .fetch_one(&self.db)
            .await?;
            let since = self.settled_through.load(Ordering::Relaxed);
            let mut unprojected = None;
            if unpublished == 0 {
                let (first, top): (Option<i64>, i64) = sqlx::query_as(
                    "SELECT (SELECT min(o.id) FROM outbox o
                             WHERE o.id > $1 AND o.topic LIKE '%task.events'
                               AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = CASE
                                   WHEN o.topic LIKE '%task.events' THEN o.key::uuid END)),
                            (SELECT coalesce(max(id), 0) FROM outbox)",
                )
                .bind(since)
                .fetch_one(&self.db)
                .await?;
                match first {
                    // Every command was answered before this was called, so no row at or
                    // below `top` can still commit.
                    None => {
                        self.settled_through.store(top, Ordering::Relaxed);
                        return Ok(());
                    }
                    // The rows before it are projected and stay so: the next poll starts there.
                    Some(first) => {
                        self.settled_through.store(first - 1, Ordering::Relaxed);
                        unprojected = Some(first);
                    }
                }
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "not settled: {unpublished} unpublished, outbox row {unprojected:?} unprojected"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the server and the service's writer did so far that can make one round slower
    /// than the next: checkpoints, full-page images in the WAL, autovacuum, and the group
    /// commit's ways of writing (when it is on).
    pub async fn activity(&self) -> anyhow::Result<Activity> {
        let (checkpoints, wal_fpi, wal_bytes, wal_buffers_full, wal_syncs, autovacuums): (
            i64,
            i64,
            f64,
            i64,
            i64,
            i64,
        ) = sqlx::query_as(
            "SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
                    (SELECT wal_fpi FROM pg_stat_wal),
                    (SELECT wal_bytes::float8 FROM pg_stat_wal),
                    (SELECT wal_buffers_full FROM pg_stat_wal),
                    (SELECT wal_sync FROM pg_stat_wal),
                    (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)::bigint
                     FROM pg_stat_user_tables)",
        )
        .fetch_one(&self.db)
        .await?;
        let metrics = reqwest::get(format!("{}/metrics", self.process.http_url()?))
            .await?
            .text()
            .await?;
        let appends = metrics
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("chronicle_append_commands_total{way=\"")?;
                let (way, value) = rest.split_once("\"} ")?;
                Some((way.to_owned(), value.trim().parse::<f64>().ok()?))
            })
            .collect();
        Ok(Activity {
            checkpoints,
            wal_fpi,
            wal_bytes,
            wal_buffers_full,
            wal_syncs,
            autovacuums,
            appends,
        })
    }

    /// The private cluster the service writes to.
    pub fn postgres(&self) -> &PrivatePostgres {
        &self.postgres
    }

    /// The service's database URL (for pgbench).
    pub fn database_url(&self) -> &str {
        self.settings.database_url.expose()
    }
}

/// Points the process harness at the release binary next to this one, unless `CHRONICLE_BIN`
/// names another (an older build, to compare).
fn use_release_binary() -> anyhow::Result<()> {
    if std::env::var_os("CHRONICLE_BIN").is_some() {
        return Ok(());
    }
    let sibling: PathBuf = std::env::current_exe()?
        .parent()
        .context("the benchmark binary has no directory")?
        .join("chronicle");
    anyhow::ensure!(
        sibling.exists(),
        "{} is missing: cargo build --release -p chronicle --bin chronicle",
        sibling.display()
    );
    std::env::set_var("CHRONICLE_BIN", sibling);
    Ok(())
}

/// Clock ticks per second of `/proc/*/stat` CPU times.
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// What `/proc/<pid>/stat` says of a process.
struct ProcStat {
    command: String,
    parent: u32,
    /// User and system CPU seconds of every thread.
    own: f64,
    /// `own` plus that of the children it has waited for.
    with_children: f64,
}

/// Every process now running that `/proc` can tell of (one that exits meanwhile is skipped).
fn processes() -> anyhow::Result<impl Iterator<Item = ProcStat>> {
    Ok(std::fs::read_dir("/proc")?.filter_map(|entry| {
        let pid = entry.ok()?.file_name().to_str()?.parse::<u32>().ok()?;
        stat(pid).ok()
    }))
}

fn stat(pid: u32) -> anyhow::Result<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces; the fields follow it.
    let (head, rest) = text.rsplit_once(')').context("malformed /proc stat")?;
    let command = head.split_once('(').map_or("", |(_, name)| name).to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let number = |index: usize| -> anyhow::Result<f64> {
        Ok(fields.get(index).context("short /proc stat")?.parse()?)
    };
    let ticks = ticks_per_second();
    let own = (number(11)? + number(12)?) / ticks;
    Ok(ProcStat {
        command,
        parent: fields.get(1).context("no ppid")?.parse()?,
        own,
        with_children: own + (number(13)? + number(14)?) / ticks,
    })
}

/// Context switches, voluntary and not, of every thread `pid` runs now (`/proc/<pid>/task`);
/// a thread that has exited is no longer counted, so a count is only fair between samples of
/// a process whose threads last (the runtime's workers, Kafka's client).
fn context_switches(pid: u32) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for thread in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(thread?.path().join("status")) else {
            continue; // the thread exited meanwhile
        };
        for line in status.lines() {
            let counted = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"));
            if let Some(count) = counted {
                total += count.trim().parse::<f64>()?;
            }
        }
    }
    Ok(total)
}

/// CPU seconds this process (the benchmark) has spent so far.
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    Ok(stat(std::process::id())?.own)
}
