//! [`MemoryViewStore`]: one read model's rows, shadow rows and recorded failures in memory,
//! and its queries: pages and counts filtered as the Postgres adapter's SQL filters them, read
//! through the same view description.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use crate::data::table::{
    view_from_selected_cells, Cell, ColumnSet, Condition, TableRow, ViewFilter,
};
use crate::ports::page::Page;
use crate::ports::store_error::StoreError;
use crate::ports::view_queries::ViewQueryStore;
use crate::ports::view_store::ViewStore;
use crate::projection::read_model::ReadModel;
use crate::testing::projection_control::{ShadowTables, WriteGate};

/// An event the projection could not apply, as `projection_failures` keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RecordedFailure {
    /// The projection's name.
    pub projection: String,
    /// The event.
    pub event_id: Uuid,
    /// Why it was not applied.
    pub reason: String,
}

/// The rows of read model `M`.
pub(crate) struct MemoryViewStore<M: ReadModel> {
    rows: Mutex<HashMap<Uuid, M::View>>,
    shadow: Mutex<Vec<M::View>>,
    failures: Mutex<Vec<RecordedFailure>>,
    paused: AtomicBool,
    gate: Option<Arc<dyn WriteGate>>,
}

impl<M: ReadModel> Default for MemoryViewStore<M> {
    fn default() -> Self {
        Self {
            rows: Mutex::new(HashMap::new()),
            shadow: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            paused: AtomicBool::new(false),
            gate: None,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<M: ReadModel> MemoryViewStore<M> {
    /// A store whose live writes `gate` allows or refuses, as the projection's status row
    /// does in Postgres.
    pub(crate) fn guarded_by(gate: Arc<dyn WriteGate>) -> Self {
        Self {
            gate: Some(gate),
            ..Self::default()
        }
    }

    /// One row.
    pub fn row(&self, id: Uuid) -> Option<M::View> {
        lock(&self.rows).get(&id).cloned()
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        lock(&self.rows).len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows a rebuild wrote to the shadow table.
    pub(crate) fn shadow_rows(&self) -> Vec<M::View> {
        lock(&self.shadow).clone()
    }

    /// The failures recorded so far.
    pub fn failures(&self) -> Vec<RecordedFailure> {
        lock(&self.failures).clone()
    }

    /// Refuses live writes (as a claimed or paused projection does) until resumed.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }
}

impl<M: ReadModel> MemoryViewStore<M> {
    /// Writes the rows whose existing version `replaces` allows, as the Postgres adapter's
    /// conditional upsert does; refused while paused or gated, like it.
    fn write(&self, views: &[M::View], replaces: fn(u64, u64) -> bool) -> Result<(), StoreError> {
        let refused = self.paused.load(Ordering::SeqCst)
            || self
                .gate
                .as_ref()
                .is_some_and(|gate| !gate.may_write(M::NAME));
        if refused {
            return Err(StoreError::Paused(M::NAME.to_owned()));
        }
        let mut rows = lock(&self.rows);
        for view in views {
            let allowed = rows
                .get(&M::id(view))
                .is_none_or(|current| replaces(M::version(current), M::version(view)));
            if allowed {
                rows.insert(M::id(view), view.clone());
            }
        }
        Ok(())
    }
}

#[async_trait]
impl<M: ReadModel> ViewStore<M::View> for MemoryViewStore<M> {
    async fn load_many(&self, ids: &[Uuid]) -> Result<Vec<M::View>, StoreError> {
        let rows = lock(&self.rows);
        Ok(ids.iter().filter_map(|id| rows.get(id).cloned()).collect())
    }

    async fn save_many(&self, views: &[M::View]) -> Result<(), StoreError> {
        self.write(views, |current, new| current < new)
    }

    async fn replace_many(&self, views: &[M::View]) -> Result<(), StoreError> {
        self.write(views, |current, new| current <= new)
    }

    async fn write_shadow(&self, views: &[M::View]) -> Result<(), StoreError> {
        lock(&self.shadow).extend_from_slice(views);
        Ok(())
    }

    async fn record_failure(
        &self,
        projection: &str,
        event_id: Uuid,
        reason: &str,
        _event: &Value,
    ) -> Result<(), StoreError> {
        lock(&self.failures).push(RecordedFailure {
            projection: projection.to_owned(),
            event_id,
            reason: reason.to_owned(),
        });
        Ok(())
    }
}

#[async_trait]
impl<M: ReadModel> ViewQueryStore<M::View> for MemoryViewStore<M>
where
    M::View: TableRow,
{
    async fn get(&self, id: Uuid) -> Result<Option<M::View>, StoreError> {
        Ok(self.row(id))
    }

    async fn list(
        &self,
        filter: &ViewFilter,
        first: usize,
        after: Option<Uuid>,
        columns: ColumnSet<M::View>,
    ) -> Result<Page<M::View>, StoreError> {
        let mut rows: Vec<M::View> = lock(&self.rows)
            .values()
            .filter(|view| after.is_none_or(|after| M::id(view) > after))
            .filter(|view| matches(filter, *view))
            .cloned()
            .collect();
        rows.sort_by_key(M::id);
        rows.truncate(first + 1);
        let rows = rows
            .iter()
            .map(|view| selected(view, columns))
            .collect::<Result<_, _>>()?;
        Ok(Page::of_one_extra(rows, first))
    }

    async fn count(&self, filter: &ViewFilter) -> Result<u64, StoreError> {
        let rows = lock(&self.rows);
        Ok(rows.values().filter(|view| matches(filter, *view)).count() as u64)
    }
}

/// `view` as a read of the columns `read` selects gives it: what was left out stands in empty,
/// as on Postgres.
fn selected<R: TableRow>(view: &R, columns: ColumnSet<R>) -> Result<R, StoreError> {
    view_from_selected_cells(columns.select(view.cells()), columns)
        .map_err(|corrupt| StoreError::corrupt(corrupt.to_string()))
}

/// Whether `view` passes `filter`, judged on its cells as its table holds them.
fn matches<R: TableRow>(filter: &ViewFilter, view: &R) -> bool {
    let cells = view.cells();
    let cell = |name: &str| {
        R::COLUMNS
            .iter()
            .position(|column| column.name == name)
            .and_then(|at| cells.get(at))
    };
    let text = |name: &str| match cell(name) {
        Some(Cell::Text(Some(text))) => Some(text.as_str()),
        _ => None,
    };
    let in_teams = filter.teams.as_ref().is_none_or(|teams| {
        text(R::TEAM_COLUMN).is_some_and(|team| teams.iter().any(|t| t == team))
    });
    in_teams
        && filter.conditions.iter().all(|condition| match condition {
            Condition::Equals { column, value } => text(column) == Some(value.as_str()),
            Condition::Holds { column, value } => {
                matches!(cell(column), Some(Cell::TextArray(values)) if values.contains(value))
            }
            Condition::ContainsText {
                columns,
                text: wanted,
            } => {
                let joined = columns
                    .iter()
                    .map(|column| text(column).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(" ");
                joined.to_lowercase().contains(&wanted.to_lowercase())
            }
        })
}

impl<M: ReadModel> ShadowTables for MemoryViewStore<M> {
    fn clear_shadow(&self) {
        lock(&self.shadow).clear();
    }

    fn swap_in_shadow(&self) {
        let shadow = std::mem::take(&mut *lock(&self.shadow));
        *lock(&self.rows) = shadow
            .into_iter()
            .map(|view| (M::id(&view), view))
            .collect();
    }
}
