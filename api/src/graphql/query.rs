//! Read queries: each view's point read and page, written once in [`super::view`].

use async_graphql::{Context, Object, ID};
use chrono::{DateTime, Utc};

use super::report::{Report, ReportFilter};
use super::task::{Task, TaskFilter};
use super::view::{one, page, Connection};

/// The query root.
#[derive(Default)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// One task by id. With `minVersion`, waits (bounded) until the read model reflects that
    /// version, else answers `STALE_READ`. With `atVersion` or `asOf` (auditors and admins),
    /// the task as it was then, folded from the event store: null before it existed, the
    /// current state for a time in the future, `NOT_FOUND` for a version it never reached.
    async fn task(
        &self,
        ctx: &Context<'_>,
        id: ID,
        at_version: Option<i64>,
        as_of: Option<DateTime<Utc>>,
        min_version: Option<i64>,
    ) -> async_graphql::Result<Option<Task>> {
        one(ctx, id, at_version, as_of, min_version).await
    }

    /// Tasks in creation order, filtered, paged by keyset cursors (`first` at most 100).
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        filter: Option<TaskFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<Task>> {
        page(ctx, filter, first, after).await
    }

    /// One report by id, optionally waiting (bounded) for `minVersion`; with `atVersion` or
    /// `asOf` (auditors and admins), the report as it was then, as for `task`.
    async fn report(
        &self,
        ctx: &Context<'_>,
        id: ID,
        at_version: Option<i64>,
        as_of: Option<DateTime<Utc>>,
        min_version: Option<i64>,
    ) -> async_graphql::Result<Option<Report>> {
        one(ctx, id, at_version, as_of, min_version).await
    }

    /// Reports in request order, filtered, paged by keyset cursors (`first` at most 100).
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn reports(
        &self,
        ctx: &Context<'_>,
        filter: Option<ReportFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<Report>> {
        page(ctx, filter, first, after).await
    }
}
