//! Read access to the report read model, and the filter it answers.

use async_trait::async_trait;
use uuid::Uuid;

use crate::data::views::ReportView;
use crate::ports::page::Page;
use crate::ports::store_error::StoreError;

/// Filters of the `reports` query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportFilter {
    /// Only these teams (`None`: every team), narrowed to the caller's teams like
    /// [`TaskFilter::teams`].
    pub teams: Option<Vec<String>>,
    /// Only this status.
    pub status: Option<chronicle_domain::report::ReportStatus>,
    /// Only this kind.
    pub kind: Option<chronicle_domain::report::ReportKind>,
}

/// One page of reports.
pub type ReportPage = Page<ReportView>;

/// Read access to the report read model.
#[async_trait]
pub trait ReportQueryStore: Send + Sync {
    /// One report by id.
    async fn get(&self, id: Uuid) -> Result<Option<ReportView>, StoreError>;

    /// A page of reports in request order after the cursor id.
    async fn list(
        &self,
        filter: &ReportFilter,
        first: usize,
        after: Option<Uuid>,
    ) -> Result<ReportPage, StoreError>;

    /// How many reports match the filter in all (only run when a client asks for it).
    async fn count(&self, filter: &ReportFilter) -> Result<u64, StoreError>;
}
