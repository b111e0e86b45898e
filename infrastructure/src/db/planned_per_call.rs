//! Compile-checked statements that Postgres plans again at every call, with that call's values.
//!
//! sqlx prepares every `query!` statement once per connection, and Postgres then settles on a
//! generic plan, made for any values and from the statistics of the moment. For most
//! statements that saves the planning. For a statement whose best plan depends on its values,
//! or on how far the tables grew since the plan was made, it does not: the group append's
//! generic plan, made while a young store's tables were nearly empty, took 2.2-2.4 ms per call
//! until the first autovacuum analyse, against 1.0-1.2 ms planned per call; and the relay's
//! read of the outbox took 94 ms per call under statistics taken while the outbox was small
//! (docs/performance.md, "Why a grouped round was slow"). Both run once per batch, so planning
//! each call costs little per command.
//!
//! sqlx's `query!` family gives no way to say "unprepared" (its `Map` is always cached);
//! [`fetch_all`] says it, and keeps the macro's checks of the SQL, of the arguments' types and
//! (through `query_as!` into the row type) of the columns' types.

use sqlx::postgres::{PgArguments, PgRow, PgStatement};
use sqlx::{Execute, Executor as _, FromRow, PgPool, Postgres};

/// Runs `statement` as an unnamed statement, parsed and planned for this call's values and
/// never cached on the connection, and reads each row into `T` by the column names the
/// statement declares. Give it a `query_as!`/`query_file_as!` into the same `T`, so the macro
/// checks the columns against `T`'s fields at build time.
pub(crate) async fn fetch_all<'q, T, Q>(pool: &PgPool, statement: Q) -> Result<Vec<T>, sqlx::Error>
where
    Q: Execute<'q, Postgres> + 'q,
    T: for<'r> FromRow<'r, PgRow>,
{
    let rows = pool.fetch_all(PlannedPerCall(statement)).await?;
    rows.iter().map(T::from_row).collect()
}

/// `Q` with its cache flag turned off: the one thing `query!`'s `Map` cannot say.
struct PlannedPerCall<Q>(Q);

impl<'q, Q> Execute<'q, Postgres> for PlannedPerCall<Q>
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
        false
    }
}
