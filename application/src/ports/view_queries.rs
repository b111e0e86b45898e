//! Read access to a read model's rows, the same for every view.

use async_trait::async_trait;
use uuid::Uuid;

use crate::data::table::{ColumnSet, ViewFilter};
use crate::ports::page::Page;
use crate::ports::store_error::StoreError;

/// Read access to the rows of one view (`V`: `TaskView`, `ReportView`).
#[async_trait]
pub trait ViewQueryStore<V: Send + Sync + 'static>: Send + Sync {
    /// One row by its aggregate id.
    async fn get(&self, id: Uuid) -> Result<Option<V>, StoreError>;

    /// A page of rows matching `filter`, in id (creation) order after the cursor id, each
    /// read from the columns `columns` selects (the others stand in empty).
    async fn list(
        &self,
        filter: &ViewFilter,
        first: usize,
        after: Option<Uuid>,
        columns: ColumnSet<V>,
    ) -> Result<Page<V>, StoreError>;

    /// How many rows match `filter` in all: a scan of every match, so only run when a client
    /// asks for it.
    async fn count(&self, filter: &ViewFilter) -> Result<u64, StoreError>;
}
