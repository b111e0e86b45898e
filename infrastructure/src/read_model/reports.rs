//! The `reports` table, and the task facts report generation reads.

use async_trait::async_trait;
use chronicle_application::ports::report_data::ReportDataSource;
use chronicle_application::ports::report_data::TaskFacts;
use chronicle_application::ports::report_queries::ReportQueryStore;
use chronicle_application::ports::report_queries::{ReportFilter, ReportPage};
use chronicle_application::ports::store_error::StoreError;
use chronicle_application::ports::view_store::ViewStore;
use chronicle_application::projection::read_model::ReadModel;
use chronicle_application::projection::report::{ReportReadModel, ReportView, REPORT_PROJECTION};
use chronicle_domain::ids::{TeamId, UserId};
use chronicle_domain::report::{Report, ReportKind, ReportStatus};
use chronicle_domain::task::{Priority, TaskStatus};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::copy::CopyText;
use super::SHADOW_SUFFIX;
use super::{backend, Replace};

/// The report read model on a Postgres pool.
#[derive(Clone)]
pub struct PgReportViews {
    pool: PgPool,
}

impl PgReportViews {
    /// Read and write access to `reports` on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const COLUMNS: &str = "id, version, kind, status, team_id, period_from, period_to, requested_by, \
     attempts, result, error, requested_at, completed_at, updated_at";

fn view_from_row(row: &PgRow) -> Result<ReportView, StoreError> {
    let corrupt = |what: &str| StoreError::corrupt(format!("reports row has an unknown {what}"));
    let id: Uuid = row.get("id");
    let kind: String = row.get("kind");
    let status: String = row.get("status");
    let team: String = row.get("team_id");
    let requested_by: String = row.get("requested_by");
    Ok(ReportView {
        id,
        version: row.get::<i64, _>("version") as u64,
        state: Report {
            id: Some(id),
            status: ReportStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
            kind: Some(ReportKind::parse(&kind).ok_or_else(|| corrupt("kind"))?),
            team_id: Some(TeamId::parse("teamId", &team).map_err(|_| corrupt("team id"))?),
            from: Some(row.get("period_from")),
            to: Some(row.get("period_to")),
            requested_by: Some(
                UserId::read_back("requestedBy", &requested_by)
                    .map_err(|_| corrupt("requester"))?,
            ),
            attempts: row.get::<i32, _>("attempts") as u32,
            result: row.get("result"),
            error: row.get("error"),
        },
        requested_at: row.get("requested_at"),
        completed_at: row.get("completed_at"),
        updated_at: row.get("updated_at"),
    })
}

impl PgReportViews {
    /// Writes rows, replacing a row only by a newer version or, with
    /// [`Replace::SameOrNewer`], by the same one.
    async fn upsert(&self, views: &[ReportView], replace: Replace) -> Result<(), StoreError> {
        let text = |f: fn(&ReportView) -> String| views.iter().map(f).collect::<Vec<_>>();
        let statement = super::live_write(
            REPORT_PROJECTION,
            ReportReadModel::AGGREGATE_TYPE,
            &format!(
                "INSERT INTO reports (id, version, kind, status, team_id, period_from, period_to,
                                  requested_by, attempts, result, error, requested_at,
                                  completed_at, updated_at)
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                                  $6::timestamptz[], $7::timestamptz[], $8::text[], $9::int[],
                                  $10::jsonb[], $11::text[], $12::timestamptz[],
                                  $13::timestamptz[], $14::timestamptz[])
             WHERE EXISTS (SELECT 1 FROM live)
             ON CONFLICT (id) DO UPDATE SET
                version = EXCLUDED.version, kind = EXCLUDED.kind, status = EXCLUDED.status,
                team_id = EXCLUDED.team_id, period_from = EXCLUDED.period_from,
                period_to = EXCLUDED.period_to, requested_by = EXCLUDED.requested_by,
                attempts = EXCLUDED.attempts, result = EXCLUDED.result, error = EXCLUDED.error,
                requested_at = EXCLUDED.requested_at, completed_at = EXCLUDED.completed_at,
                updated_at = EXCLUDED.updated_at
             WHERE reports.version {} EXCLUDED.version",
                replace.operator()
            ),
        );
        let row = sqlx::query(&statement)
            .bind(views.iter().map(|v| v.id).collect::<Vec<_>>())
            .bind(views.iter().map(|v| v.version as i64).collect::<Vec<_>>())
            .bind(text(|v| {
                v.state
                    .kind
                    .map(|k| k.as_str())
                    .unwrap_or_default()
                    .to_owned()
            }))
            .bind(text(|v| v.state.status.as_str().to_owned()))
            .bind(text(|v| {
                v.state
                    .team_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            }))
            .bind(
                views
                    .iter()
                    .map(|v| v.state.from.unwrap_or(v.requested_at))
                    .collect::<Vec<_>>(),
            )
            .bind(
                views
                    .iter()
                    .map(|v| v.state.to.unwrap_or(v.requested_at))
                    .collect::<Vec<_>>(),
            )
            .bind(text(|v| {
                v.state
                    .requested_by
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            }))
            .bind(
                views
                    .iter()
                    .map(|v| v.state.attempts as i32)
                    .collect::<Vec<_>>(),
            )
            .bind(
                views
                    .iter()
                    .map(|v| v.state.result.clone())
                    .collect::<Vec<Option<Value>>>(),
            )
            .bind(
                views
                    .iter()
                    .map(|v| v.state.error.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(views.iter().map(|v| v.requested_at).collect::<Vec<_>>())
            .bind(views.iter().map(|v| v.completed_at).collect::<Vec<_>>())
            .bind(views.iter().map(|v| v.updated_at).collect::<Vec<_>>())
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        super::written_or_paused(&row, REPORT_PROJECTION)
    }
}

#[async_trait]
impl ViewStore<ReportView> for PgReportViews {
    async fn load_many(&self, ids: &[Uuid]) -> Result<Vec<ReportView>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM reports WHERE id = ANY($1)"))
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(view_from_row).collect()
    }

    async fn save_many(&self, views: &[ReportView]) -> Result<(), StoreError> {
        self.upsert(views, Replace::Newer).await
    }

    async fn replace_many(&self, views: &[ReportView]) -> Result<(), StoreError> {
        self.upsert(views, Replace::SameOrNewer).await
    }

    async fn write_shadow(&self, views: &[ReportView]) -> Result<(), StoreError> {
        let mut copy = CopyText::with_capacity(views.len(), 400);
        for view in views {
            let report = &view.state;
            copy.uuid(view.id);
            copy.int(view.version as i64);
            copy.text(report.kind.map(|k| k.as_str()));
            copy.text(Some(report.status.as_str()));
            copy.text(report.team_id.as_ref().map(|t| t.as_str()));
            copy.timestamp(Some(report.from.unwrap_or(view.requested_at)));
            copy.timestamp(Some(report.to.unwrap_or(view.requested_at)));
            copy.text(report.requested_by.as_ref().map(|r| r.as_str()));
            copy.int(i64::from(report.attempts));
            copy.json(report.result.as_ref());
            copy.text(report.error.as_deref());
            copy.timestamp(Some(view.requested_at));
            copy.timestamp(view.completed_at);
            copy.timestamp(Some(view.updated_at));
            copy.end_row();
        }
        copy.send(
            &self.pool,
            &format!("COPY reports{SHADOW_SUFFIX} ({COLUMNS}) FROM STDIN"),
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

fn push_filter(query: &mut QueryBuilder<'static, Postgres>, filter: &ReportFilter) {
    query.push(" WHERE TRUE");
    if let Some(teams) = &filter.teams {
        super::push_teams(query, teams);
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(kind) = filter.kind {
        query.push(" AND kind = ").push_bind(kind.as_str());
    }
}

#[async_trait]
impl ReportQueryStore for PgReportViews {
    async fn get(&self, id: Uuid) -> Result<Option<ReportView>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM reports WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(view_from_row).transpose()
    }

    async fn list(
        &self,
        filter: &ReportFilter,
        first: usize,
        after: Option<Uuid>,
    ) -> Result<ReportPage, StoreError> {
        super::keyset_page(
            &self.pool,
            "reports",
            COLUMNS,
            |query| push_filter(query, filter),
            first,
            after,
            view_from_row,
        )
        .await
    }

    async fn count(&self, filter: &ReportFilter) -> Result<u64, StoreError> {
        super::count_rows(&self.pool, "reports", |query| push_filter(query, filter)).await
    }
}

/// Task facts for report generation, read from the task read model.
#[derive(Clone)]
pub struct PgReportData {
    pool: PgPool,
}

impl PgReportData {
    /// Reads `tasks` on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl ReportDataSource for PgReportData {
    async fn team_tasks(&self, team_id: &str) -> Result<Vec<TaskFacts>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, title, status, assignee_id, priority, due_at, created_at, started_at,
                    finished_at
             FROM tasks WHERE team_id = $1",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let status: String = row.get("status");
                let priority: String = row.get("priority");
                Ok(TaskFacts {
                    id: row.get("id"),
                    title: row.get("title"),
                    status: TaskStatus::parse(&status)
                        .ok_or_else(|| StoreError::corrupt("unknown task status".to_owned()))?,
                    assignee_id: row.get("assignee_id"),
                    priority: Priority::parse(&priority)
                        .ok_or_else(|| StoreError::corrupt("unknown priority".to_owned()))?,
                    due_at: row.get("due_at"),
                    created_at: row.get("created_at"),
                    started_at: row.get("started_at"),
                    finished_at: row.get("finished_at"),
                })
            })
            .collect()
    }
}
