//! The `tasks` table: written by the task projection, read by the task queries.

use async_trait::async_trait;
use chronicle_application::ports::store_error::StoreError;
use chronicle_application::ports::task_queries::TaskQueryStore;
use chronicle_application::ports::task_queries::{TaskFilter, TaskPage};
use chronicle_application::ports::view_store::ViewStore;
use chronicle_application::projection::read_model::ReadModel;
use chronicle_application::projection::task::{TaskReadModel, TaskView, TASK_PROJECTION};
use chronicle_domain::ids::{TeamId, UserId};
use chronicle_domain::task::{Priority, Task, TaskStatus};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::copy::CopyText;
use super::SHADOW_SUFFIX;
use super::{backend, Replace};

/// The task read model on a Postgres pool.
#[derive(Clone)]
pub struct PgTaskViews {
    pool: PgPool,
}

impl PgTaskViews {
    /// Read and write access to `tasks` on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const COLUMNS: &str = "id, version, title, description, status, team_id, creator_id, assignee_id, \
     priority, due_at, labels, result, error, created_at, updated_at, started_at, finished_at, \
     watchers";

/// Rebuilds a view from a row. Values were validated when the events were decided, so a value
/// that no longer parses means the table was edited by hand: it is reported, not guessed.
fn view_from_row(row: &PgRow) -> Result<TaskView, StoreError> {
    let status: String = row.get("status");
    let priority: String = row.get("priority");
    let corrupt = |what: &str| StoreError::corrupt(format!("tasks row has an unknown {what}"));
    let team_id: String = row.get("team_id");
    let creator_id: String = row.get("creator_id");
    let assignee_id: Option<String> = row.get("assignee_id");
    let id: Uuid = row.get("id");
    Ok(TaskView {
        id,
        version: row.get::<i64, _>("version") as u64,
        state: Task {
            id: Some(id),
            status: TaskStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
            title: row.get("title"),
            description: row.get("description"),
            team_id: Some(TeamId::parse("teamId", &team_id).map_err(|_| corrupt("team id"))?),
            creator_id: Some(
                UserId::read_back("creatorId", &creator_id).map_err(|_| corrupt("creator id"))?,
            ),
            assignee_id: assignee_id
                .map(|a| UserId::read_back("assigneeId", &a))
                .transpose()
                .map_err(|_| corrupt("assignee id"))?,
            priority: Priority::parse(&priority).ok_or_else(|| corrupt("priority"))?,
            due_at: row.get("due_at"),
            labels: row.get("labels"),
            result: row.get("result"),
            error: row.get("error"),
        },
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        watchers: row.get("watchers"),
    })
}

impl PgTaskViews {
    /// Writes rows, replacing a row only by a newer version or, with
    /// [`Replace::SameOrNewer`], by the same one.
    async fn upsert(&self, views: &[TaskView], replace: Replace) -> Result<(), StoreError> {
        let labels: Vec<Value> = views
            .iter()
            .map(|v| Value::from(v.state.labels.clone()))
            .collect();
        let statement = super::live_write(
            TASK_PROJECTION,
            TaskReadModel::AGGREGATE_TYPE,
            &format!(
                "INSERT INTO tasks (id, version, title, description, status, team_id, creator_id,
                                assignee_id, priority, due_at, labels, result, error,
                                created_at, updated_at, started_at, finished_at, watchers)
             SELECT v.id, v.version, v.title, v.description, v.status, v.team_id, v.creator_id,
                    v.assignee_id, v.priority, v.due_at,
                    ARRAY(SELECT jsonb_array_elements_text(v.labels)), v.result, v.error,
                    v.created_at, v.updated_at, v.started_at, v.finished_at,
                    ARRAY(SELECT jsonb_array_elements_text(v.watchers))
             FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[],
                         $11::jsonb[], $12::text[], $13::text[], $14::timestamptz[],
                         $15::timestamptz[], $16::timestamptz[], $17::timestamptz[],
                         $18::jsonb[])
                  AS v(id, version, title, description, status, team_id, creator_id,
                       assignee_id, priority, due_at, labels, result, error, created_at,
                       updated_at, started_at, finished_at, watchers)
             WHERE EXISTS (SELECT 1 FROM live)
             ON CONFLICT (id) DO UPDATE SET
                version = EXCLUDED.version, title = EXCLUDED.title,
                description = EXCLUDED.description, status = EXCLUDED.status,
                team_id = EXCLUDED.team_id, creator_id = EXCLUDED.creator_id,
                assignee_id = EXCLUDED.assignee_id, priority = EXCLUDED.priority,
                due_at = EXCLUDED.due_at, labels = EXCLUDED.labels, result = EXCLUDED.result,
                error = EXCLUDED.error, created_at = EXCLUDED.created_at,
                updated_at = EXCLUDED.updated_at, started_at = EXCLUDED.started_at,
                finished_at = EXCLUDED.finished_at, watchers = EXCLUDED.watchers
             WHERE tasks.version {} EXCLUDED.version",
                replace.operator()
            ),
        );
        let row = sqlx::query(&statement)
            .bind(views.iter().map(|v| v.id).collect::<Vec<_>>())
            .bind(views.iter().map(|v| v.version as i64).collect::<Vec<_>>())
            .bind(
                views
                    .iter()
                    .map(|v| v.state.title.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                views
                    .iter()
                    .map(|v| v.state.description.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                views
                    .iter()
                    .map(|v| v.state.status.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                views
                    .iter()
                    .map(|v| {
                        v.state
                            .team_id
                            .as_ref()
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>(),
            )
            .bind(
                views
                    .iter()
                    .map(|v| {
                        v.state
                            .creator_id
                            .as_ref()
                            .map(|c| c.to_string())
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>(),
            )
            .bind(
                views
                    .iter()
                    .map(|v| v.state.assignee_id.as_ref().map(|a| a.to_string()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                views
                    .iter()
                    .map(|v| v.state.priority.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(views.iter().map(|v| v.state.due_at).collect::<Vec<_>>())
            .bind(labels)
            .bind(
                views
                    .iter()
                    .map(|v| v.state.result.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                views
                    .iter()
                    .map(|v| v.state.error.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(views.iter().map(|v| v.created_at).collect::<Vec<_>>())
            .bind(views.iter().map(|v| v.updated_at).collect::<Vec<_>>())
            .bind(views.iter().map(|v| v.started_at).collect::<Vec<_>>())
            .bind(views.iter().map(|v| v.finished_at).collect::<Vec<_>>())
            .bind(
                views
                    .iter()
                    .map(|v| Value::from(v.watchers.clone()))
                    .collect::<Vec<_>>(),
            )
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        super::written_or_paused(&row, TASK_PROJECTION)
    }
}

#[async_trait]
impl ViewStore<TaskView> for PgTaskViews {
    async fn load_many(&self, ids: &[Uuid]) -> Result<Vec<TaskView>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ANY($1)"))
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(view_from_row).collect()
    }

    async fn save_many(&self, views: &[TaskView]) -> Result<(), StoreError> {
        self.upsert(views, Replace::Newer).await
    }

    async fn replace_many(&self, views: &[TaskView]) -> Result<(), StoreError> {
        self.upsert(views, Replace::SameOrNewer).await
    }

    async fn write_shadow(&self, views: &[TaskView]) -> Result<(), StoreError> {
        let mut copy = CopyText::with_capacity(views.len(), 320);
        for view in views {
            let task = &view.state;
            copy.uuid(view.id);
            copy.int(view.version as i64);
            copy.text(Some(&task.title));
            copy.text(Some(&task.description));
            copy.text(Some(task.status.as_str()));
            copy.text(task.team_id.as_ref().map(|t| t.as_str()));
            copy.text(task.creator_id.as_ref().map(|c| c.as_str()));
            copy.text(task.assignee_id.as_ref().map(|a| a.as_str()));
            copy.text(Some(task.priority.as_str()));
            copy.timestamp(task.due_at);
            copy.text_array(&task.labels);
            copy.text(task.result.as_deref());
            copy.text(task.error.as_deref());
            copy.timestamp(Some(view.created_at));
            copy.timestamp(Some(view.updated_at));
            copy.timestamp(view.started_at);
            copy.timestamp(view.finished_at);
            copy.text_array(&view.watchers);
            copy.end_row();
        }
        copy.send(
            &self.pool,
            &format!("COPY tasks{SHADOW_SUFFIX} ({COLUMNS}) FROM STDIN"),
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

/// Escapes `%`, `_` and `\` so user text matches literally inside `ILIKE`.
fn like_pattern(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    escaped.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

fn push_filter(query: &mut QueryBuilder<'static, Postgres>, filter: &TaskFilter) {
    query.push(" WHERE TRUE");
    if let Some(teams) = &filter.teams {
        super::push_teams(query, teams);
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(assignee) = &filter.assignee_id {
        query
            .push(" AND assignee_id = ")
            .push_bind(assignee.clone());
    }
    if let Some(priority) = filter.priority {
        query.push(" AND priority = ").push_bind(priority.as_str());
    }
    if let Some(label) = &filter.label {
        query
            .push(" AND labels @> ARRAY[")
            .push_bind(label.clone())
            .push("]::text[]");
    }
    if let Some(text) = &filter.text {
        query
            .push(" AND (title || ' ' || description) ILIKE ")
            .push_bind(like_pattern(text));
    }
}

#[async_trait]
impl TaskQueryStore for PgTaskViews {
    async fn get(&self, id: Uuid) -> Result<Option<TaskView>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tasks WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(view_from_row).transpose()
    }

    async fn list(
        &self,
        filter: &TaskFilter,
        first: usize,
        after: Option<Uuid>,
    ) -> Result<TaskPage, StoreError> {
        super::keyset_page(
            &self.pool,
            "tasks",
            COLUMNS,
            |query| push_filter(query, filter),
            first,
            after,
            view_from_row,
        )
        .await
    }

    async fn count(&self, filter: &TaskFilter) -> Result<u64, StoreError> {
        super::count_rows(&self.pool, "tasks", |query| push_filter(query, filter)).await
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
