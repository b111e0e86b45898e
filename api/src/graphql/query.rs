//! Read queries.

use async_graphql::{Context, Object, ID};
use chronicle_application::AppError;
use chrono::{DateTime, Utc};

use super::arguments::{parse_id, parse_version, point_in_time};
use super::context::ContextExt;
use super::error::to_graphql;
use super::pagination::{connection, decode_cursor};
use super::report::{Report, ReportConnection, ReportEdge, ReportFilter};
use super::task::{Task, TaskConnection, TaskEdge, TaskFilter};

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
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let id = parse_id("id", &id)?;
            if let Some(point) = point_in_time(at_version, as_of, min_version)? {
                return ctx.services().task_history.at(principal, id, point).await;
            }
            let min_version = parse_version("minVersion", min_version)?;
            ctx.services()
                .task_queries
                .get(principal, id, min_version)
                .await
        };
        run.await
            .map(|view| view.map(Task))
            .map_err(|e| to_graphql(e, request))
    }

    /// Tasks in creation order, filtered, paged by keyset cursors (`first` at most 100).
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        filter: Option<TaskFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<TaskConnection> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let after = after
                .as_deref()
                .map(|c| decode_cursor("task", c))
                .transpose()?;
            let filter = filter.unwrap_or_default().into_app()?;
            let page = ctx
                .services()
                .task_queries
                .list(principal, &filter, first.map(i64::from), after)
                .await?;
            Ok::<_, AppError>((page, filter))
        };
        let (page, filter) = run.await.map_err(|e| to_graphql(e, request))?;
        let (edges, page_info) = connection(page, "task", after.is_some(), |v| v.id, Task);
        Ok(TaskConnection {
            edges: edges
                .into_iter()
                .map(|(cursor, node)| TaskEdge { cursor, node })
                .collect(),
            page_info,
            filter,
        })
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
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let id = parse_id("id", &id)?;
            if let Some(point) = point_in_time(at_version, as_of, min_version)? {
                return ctx.services().report_history.at(principal, id, point).await;
            }
            let min_version = parse_version("minVersion", min_version)?;
            ctx.services()
                .report_queries
                .get(principal, id, min_version)
                .await
        };
        run.await
            .map(|view| view.map(Report))
            .map_err(|e| to_graphql(e, request))
    }

    /// Reports in request order, filtered, paged by keyset cursors (`first` at most 100).
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn reports(
        &self,
        ctx: &Context<'_>,
        filter: Option<ReportFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ReportConnection> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let after = after
                .as_deref()
                .map(|c| decode_cursor("report", c))
                .transpose()?;
            let filter = filter.unwrap_or_default().into_app()?;
            let page = ctx
                .services()
                .report_queries
                .list(principal, &filter, first.map(i64::from), after)
                .await?;
            Ok::<_, AppError>((page, after, filter))
        };
        let (page, after, filter) = run.await.map_err(|e| to_graphql(e, request))?;
        let (edges, page_info) = connection(page, "report", after.is_some(), |v| v.id, Report);
        Ok(ReportConnection {
            edges: edges
                .into_iter()
                .map(|(cursor, node)| ReportEdge { cursor, node })
                .collect(),
            page_info,
            filter,
        })
    }
}
