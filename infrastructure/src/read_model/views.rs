//! Every read model's table on Postgres, from its description: one adapter writes, loads,
//! pages, counts and bulk-loads tasks, reports and any view added later.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use chronicle_application::data::table::{ColumnSet, TableRow, ViewFilter};
use chronicle_application::ports::page::Page;
use chronicle_application::ports::store_error::StoreError;
use chronicle_application::ports::view_queries::ViewQueryStore;
use chronicle_application::ports::view_store::ViewStore;
use chronicle_application::projection::read_model::ReadModel;
use serde_json::Value;
use sqlx::{PgPool, QueryBuilder};
use uuid::Uuid;

use super::cells::{
    bind_columns, checked_cells, column_list, column_list_of, unnest_select, RowOf,
};
use super::copy::CopyText;
use super::filter::push_filter;
use super::{backend, live_write, Replace, SHADOW_SUFFIX};

/// The read model `M` in its table on a Postgres pool.
pub struct PgViews<M> {
    pool: PgPool,
    statements: Arc<Statements>,
    model: PhantomData<fn() -> M>,
}

impl<M> Clone for PgViews<M> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            statements: self.statements.clone(),
            model: PhantomData,
        }
    }
}

/// The statements that do not vary with a query's filter, written once from the description.
struct Statements {
    /// The columns, comma-separated.
    columns: String,
    /// `SELECT count(*) FROM <table>`.
    count: String,
    /// One row by id.
    get: String,
    /// The rows of a batch's ids.
    load: String,
    /// A projection's write: replaces only older rows.
    save: String,
    /// An erasure's rewrite: replaces rows at the same version too.
    replace: String,
}

impl<M> PgViews<M>
where
    M: ReadModel,
    M::View: TableRow,
{
    /// Read and write access to `M`'s table on `pool`.
    pub fn new(pool: PgPool) -> Self {
        let select = format!(
            "SELECT {} FROM {}",
            column_list::<M::View>(),
            <M::View as TableRow>::TABLE
        );
        Self {
            pool,
            statements: Arc::new(Statements {
                columns: column_list::<M::View>(),
                get: format!("{select} WHERE id = $1"),
                load: format!("{select} WHERE id = ANY($1)"),
                count: format!("SELECT count(*) FROM {}", <M::View as TableRow>::TABLE),
                save: upsert::<M>(Replace::Newer),
                replace: upsert::<M>(Replace::SameOrNewer),
            }),
            model: PhantomData,
        }
    }

    async fn write(&self, statement: &str, views: &[M::View]) -> Result<(), StoreError> {
        // Prepared once per connection. It was planned per call while its position came from
        // a join that plans made under a young store's statistics ran by walking `events`
        // (44 ms a call); the position is now a lookup by primary key per row, which no
        // statistics turn into a walk (`super::live_write`).
        let query = bind_columns(sqlx::query_scalar::<_, bool>(statement), views)?;
        let live = query.fetch_one(&self.pool).await.map_err(backend)?;
        if live {
            Ok(())
        } else {
            Err(StoreError::Paused(M::NAME.to_owned()))
        }
    }
}

/// The projection's upsert of a batch, inside [`live_write`]: a row is replaced only by a newer
/// version (or, `SameOrNewer`, the same one).
fn upsert<M>(replace: Replace) -> String
where
    M: ReadModel,
    M::View: TableRow,
{
    let table = <M::View as TableRow>::TABLE;
    let columns = <M::View as TableRow>::COLUMNS;
    let updates = columns
        .iter()
        .skip(1)
        .map(|column| format!("{0} = EXCLUDED.{0}", column.name))
        .collect::<Vec<_>>()
        .join(", ");
    live_write(
        M::NAME,
        M::AGGREGATE_TYPE,
        &format!(
            "INSERT INTO {table} ({names})
             {rows}
             WHERE EXISTS (SELECT 1 FROM live)
             ON CONFLICT (id) DO UPDATE SET {updates}
             WHERE {table}.version {operator} EXCLUDED.version",
            names = column_list::<M::View>(),
            rows = unnest_select::<M::View>(),
            operator = replace.operator(),
        ),
    )
}

#[async_trait]
impl<M> ViewStore<M::View> for PgViews<M>
where
    M: ReadModel,
    M::View: TableRow,
{
    async fn load_many(&self, ids: &[Uuid]) -> Result<Vec<M::View>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<RowOf<M::View>> = sqlx::query_as(&self.statements.load)
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.into_iter().map(RowOf::view).collect()
    }

    async fn save_many(&self, views: &[M::View]) -> Result<(), StoreError> {
        self.write(&self.statements.save, views).await
    }

    async fn replace_many(&self, views: &[M::View]) -> Result<(), StoreError> {
        self.write(&self.statements.replace, views).await
    }

    async fn write_shadow(&self, views: &[M::View]) -> Result<(), StoreError> {
        let mut copy = CopyText::with_capacity(views.len(), 320);
        for view in views {
            for cell in checked_cells(view)? {
                copy.cell(cell);
            }
            copy.end_row();
        }
        copy.send(
            &self.pool,
            &format!(
                "COPY {}{SHADOW_SUFFIX} ({}) FROM STDIN",
                <M::View as TableRow>::TABLE,
                self.statements.columns
            ),
        )
        .await
    }

    async fn record_failure(
        &self,
        projection: &str,
        event_id: Uuid,
        reason: &str,
        event: &Value,
    ) -> Result<(), StoreError> {
        super::record_failure(&self.pool, projection, event_id, reason, event).await
    }
}

#[async_trait]
impl<M> ViewQueryStore<M::View> for PgViews<M>
where
    M: ReadModel,
    M::View: TableRow,
{
    async fn get(&self, id: Uuid) -> Result<Option<M::View>, StoreError> {
        let row: Option<RowOf<M::View>> = sqlx::query_as(&self.statements.get)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(RowOf::view).transpose()
    }

    async fn list(
        &self,
        filter: &ViewFilter,
        first: usize,
        after: Option<Uuid>,
        columns: ColumnSet<M::View>,
    ) -> Result<Page<M::View>, StoreError> {
        let mut page = QueryBuilder::new(format!(
            "SELECT {} FROM {}",
            column_list_of(columns),
            <M::View as TableRow>::TABLE
        ));
        push_filter::<M::View>(&mut page, filter);
        if let Some(after) = after {
            page.push(" AND id > ").push_bind(after);
        }
        page.push(" ORDER BY id LIMIT ").push_bind(first as i64 + 1);
        let rows = page.build().fetch_all(&self.pool).await.map_err(backend)?;
        let views = rows
            .iter()
            .map(|row| RowOf::selected(row, columns).map_err(backend)?.view())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of_one_extra(views, first))
    }

    async fn count(&self, filter: &ViewFilter) -> Result<u64, StoreError> {
        let mut count = QueryBuilder::new(self.statements.count.as_str());
        push_filter::<M::View>(&mut count, filter);
        let total: i64 = count
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(total as u64)
    }
}
