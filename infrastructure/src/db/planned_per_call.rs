//! Compile-checked statements that Postgres plans again at every call, with that call's values.
//!
//! sqlx prepares every `query!` statement once per connection, and Postgres then settles on a
//! generic plan, made for any values and from the statistics of the moment. For most
//! statements that saves the planning. For a statement whose best plan depends on its values,
//! or on how far the tables grew since the plan was made, it does not: the group append's
//! generic plan, made while a young store's tables were nearly empty, took 2.2-2.4 ms per call
//! until the first autovacuum analyse, against 1.0-1.2 ms planned per call (docs/performance.md,
//! "Why a grouped round was slow"). It runs once per batch, so planning each call costs little
//! per command. (The relay's read was planned per call too, after a cached plan took 94 ms a
//! call; it is cached again since no plan of it can walk the outbox: see
//! `infrastructure/sql/relay_read.sql`.)
//!
//! sqlx's `query!` family gives no way to say "unprepared" (its `Map` is always cached);
//! [`fetch_all_planned`] says it ([`UntilAnalysed`] only while a young store has no statistics), and
//! keeps the macro's checks of the SQL, of the arguments' types and (through `query_as!` into
//! the row type) of the columns' types.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgArguments, PgRow, PgStatement};
use sqlx::{Execute, Executor, FromRow, PgPool, Postgres};

/// How a statement is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planning {
    /// Parsed and planned at every call, with its values.
    PerCall,
    /// Prepared once per connection, as `query!` does; Postgres may settle on a generic plan,
    /// which it makes again whenever an analyse of a table it reads changes the statistics.
    Cached,
}

/// Runs `statement` planned as `planning` says and reads each row into `T` by the column names
/// the statement declares. Give it a `query_as!`/`query_file_as!` into the same `T`, so the
/// macro checks the columns against `T`'s fields at build time. [`Planning::PerCall`] sends it
/// as an unnamed statement, parsed and planned for this call's values and never cached on the
/// connection.
pub(crate) async fn fetch_all_planned<'q, 'c, T, Q, E>(
    executor: E,
    statement: Q,
    planning: Planning,
) -> Result<Vec<T>, sqlx::Error>
where
    Q: Execute<'q, Postgres> + 'q,
    T: for<'r> FromRow<'r, PgRow>,
    E: Executor<'c, Database = Postgres>,
    'q: 'c,
{
    let rows = executor.fetch_all(Planned(statement, planning)).await?;
    rows.iter().map(T::from_row).collect()
}

/// `Q` with its cache flag as [`Planning`] says: the one thing `query!`'s `Map` cannot say.
struct Planned<Q>(Q, Planning);

impl<'q, Q> Execute<'q, Postgres> for Planned<Q>
where
    Q: Execute<'q, Postgres>,
{
    fn sql(&self) -> &'q str {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, sqlx::error::BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.1 == Planning::Cached
    }
}

/// How often the event store's [`UntilAnalysed`] asks whether the tables have been analysed yet.
pub const CHECK_ANALYSED_EVERY: Duration = Duration::from_secs(10);

/// Plans a statement per call until the tables it reads have statistics, and cached from then
/// on. A generic plan is only as good as the statistics it was made from: made before a young
/// store's first analyse, it kept its tables' "nearly empty" estimates however much they grew
/// (the group append took 6.7-13.3 ms per call instead of 2). Once a table has been analysed,
/// every later analyse (autovacuum's, at each 10% of growth) makes Postgres plan the statement
/// again, so the cached plan follows the tables, and saves each call's planning (about half
/// a millisecond for the group append; docs/performance.md).
pub struct UntilAnalysed {
    /// Whether every table has been analysed; never unset once set.
    analysed: Arc<AtomicBool>,
    /// When the last check was started, so a busy store asks at most once per `every`.
    checked: Mutex<Option<Instant>>,
    every: Duration,
    tables: &'static [&'static str],
}

impl UntilAnalysed {
    /// Plans per call until each of `tables` (names as `regclass` reads them) was analysed,
    /// asking the server at most once per `every`. Name the tables whose growth the plan must
    /// follow: a small table is planned again at its own first analyse, as every table is.
    pub fn new(tables: &'static [&'static str], every: Duration) -> Self {
        Self {
            analysed: Arc::new(AtomicBool::new(false)),
            checked: Mutex::new(None),
            every,
            tables,
        }
    }

    /// How to plan the next call. Never waits: while the answer is not known it says
    /// [`Planning::PerCall`] and asks the server in the background.
    pub fn planning(&self, pool: &PgPool) -> Planning {
        if self.analysed.load(Ordering::Relaxed) {
            return Planning::Cached;
        }
        let due = {
            let mut checked = self
                .checked
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let due = checked.is_none_or(|at| at.elapsed() >= self.every);
            if due {
                *checked = Some(Instant::now());
            }
            due
        };
        if due {
            let (pool, analysed, tables) = (pool.clone(), self.analysed.clone(), self.tables);
            tokio::spawn(async move {
                match all_analysed(&pool, tables).await {
                    Ok(true) => {
                        tracing::debug!(?tables, "tables analysed: cached plans from now on");
                        analysed.store(true, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(error) => tracing::debug!(
                        error = %chronicle_application::error_chain::Chain(&error),
                        "could not read whether the tables were analysed"
                    ),
                }
            });
        }
        Planning::PerCall
    }
}

/// Whether every one of `tables` has statistics: its row count is known (`reltuples` is -1
/// until the first analyse or vacuum, by hand or by autovacuum). The catalog, not the
/// cumulative statistics views: those forget their `last_analyze` at a crash recovery, a
/// `pg_stat_reset()` or on a promoted standby, while the planner's statistics stay. A name
/// that is no table counts as not analysed.
async fn all_analysed(pool: &PgPool, tables: &[&str]) -> Result<bool, sqlx::Error> {
    let tables: Vec<String> = tables.iter().map(|&table| table.to_owned()).collect();
    let analysed = sqlx::query_scalar!(
        r#"SELECT coalesce(bool_and(c.reltuples >= 0), false) AS "analysed!"
           FROM unnest($1::text[]) AS name
           LEFT JOIN pg_class c ON c.oid = to_regclass(name)"#,
        &tables
    )
    .fetch_one(pool)
    .await?;
    Ok(analysed)
}
