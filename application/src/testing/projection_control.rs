//! [`MemoryProjectionControl`]: the `projections` table and the rebuild protocol in memory.
//!
//! It keeps the rules the Postgres adapter keeps with row locks and advisory locks: a claim
//! pauses the live writers of its projections ([`WriteGate`]); a second claim is refused while
//! the first one's holder lives; a claim whose holder died ([`MemoryProjectionControl::lose_claims`],
//! as when its lock connection drops) is free again, and the next live write takes the
//! projection back; only the claim's holder may record progress or swap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::Utc;
use futures::stream::{self, StreamExt};
use uuid::Uuid;

use crate::ports::projection_control::{
    ProjectionControl, ProjectionState, ProjectionStatus, RebuildClaim, RebuildEvent,
    RebuildProgress, RebuildSnapshot, SwapOutcome,
};
use crate::ports::store_error::StoreError;

/// Events per batch of a snapshot (small, so tests see several batches).
const SNAPSHOT_BATCH: usize = 2;

/// Whether a live writer may write a projection's rows now; asked by
/// [`MemoryViewStore`](crate::testing::view_store::MemoryViewStore) before every save.
pub(crate) trait WriteGate: Send + Sync {
    /// `true` when the projection is live (taking it back from a dead rebuild first).
    fn may_write(&self, projection: &str) -> bool;
}

/// What a rebuild does to a read model's tables: implemented by the in-memory view store.
pub(crate) trait ShadowTables: Send + Sync {
    /// Drops the shadow rows (a new or abandoned rebuild).
    fn clear_shadow(&self);
    /// Makes the shadow rows the live rows.
    fn swap_in_shadow(&self);
}

/// One row of the `projections` table.
#[derive(Debug, Clone)]
struct Row {
    version: u32,
    state: ProjectionState,
    position: i64,
    claim: Option<Uuid>,
    progress: Option<RebuildProgress>,
    last_rebuild: Option<(u64, f64, chrono::DateTime<Utc>)>,
    last_error: Option<String>,
}

impl Row {
    fn new() -> Self {
        Self {
            version: 0,
            state: ProjectionState::Live,
            position: 0,
            claim: None,
            progress: None,
            last_rebuild: None,
            last_error: None,
        }
    }
}

#[derive(Default)]
struct State {
    rows: BTreeMap<String, Row>,
    /// Claims whose holder is alive (in Postgres: whose advisory lock is held).
    held: Vec<Uuid>,
    /// The store's events in position order, as a snapshot reads them.
    events: Vec<RebuildEvent>,
    /// Why the next snapshot fails, if it should.
    snapshot_failure: Option<String>,
}

/// The projections' status and the rebuild protocol, in memory.
#[derive(Default)]
pub(crate) struct MemoryProjectionControl {
    state: Mutex<State>,
    tables: Mutex<BTreeMap<String, Arc<dyn ShadowTables>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryProjectionControl {
    /// Lets rebuilds of `projection` write and swap `tables`.
    pub(crate) fn add_tables(&self, projection: &str, tables: Arc<dyn ShadowTables>) {
        lock(&self.tables).insert(projection.to_owned(), tables);
    }

    /// Events the store holds from now on (appended after earlier ones, positions as given).
    pub(crate) fn store_events(&self, events: impl IntoIterator<Item = RebuildEvent>) {
        lock(&self.state).events.extend(events);
    }

    /// Every running rebuild's holder dies (in Postgres: its lock connection drops).
    pub(crate) fn lose_claims(&self) {
        lock(&self.state).held.clear();
    }

    /// The next snapshot fails with `reason` (the database went away mid-rebuild, say).
    pub(crate) fn fail_next_snapshot(&self, reason: &str) {
        lock(&self.state).snapshot_failure = Some(reason.to_owned());
    }

    /// One projection's status.
    pub fn status(&self, name: &str) -> Option<ProjectionStatus> {
        let state = lock(&self.state);
        let head = head(&state);
        state.rows.get(name).map(|row| status(name, row, head))
    }

    fn tables_of(&self, names: &[&'static str]) -> Vec<Arc<dyn ShadowTables>> {
        let tables = lock(&self.tables);
        names
            .iter()
            .filter_map(|name| tables.get(*name).cloned())
            .collect()
    }
}

fn head(state: &State) -> i64 {
    state.events.last().map_or(0, |event| event.position)
}

fn status(name: &str, row: &Row, head: i64) -> ProjectionStatus {
    ProjectionStatus {
        name: name.to_owned(),
        version: row.version,
        state: row.state,
        position: row.position,
        head,
        rebuild: row.progress,
        last_rebuild: row.last_rebuild,
        last_error: row.last_error.clone(),
        oldest_unprojected_at: None,
    }
}

/// Whether `row` is held by a rebuild whose holder lives.
fn held_by_live_claim(row: &Row, held: &[Uuid]) -> bool {
    row.state == ProjectionState::Rebuilding && row.claim.is_some_and(|id| held.contains(&id))
}

impl WriteGate for MemoryProjectionControl {
    fn may_write(&self, projection: &str) -> bool {
        let mut state = lock(&self.state);
        let held = state.held.clone();
        let Some(row) = state.rows.get_mut(projection) else {
            return true;
        };
        match row.state {
            ProjectionState::Live => true,
            ProjectionState::Paused => false,
            ProjectionState::Rebuilding if held_by_live_claim(row, &held) => false,
            ProjectionState::Rebuilding => {
                row.state = ProjectionState::Live;
                row.claim = None;
                row.progress = None;
                row.last_error = Some("the rebuild died; the live consumer took over".to_owned());
                true
            }
        }
    }
}

#[async_trait]
impl ProjectionControl for MemoryProjectionControl {
    async fn register(&self, names: &[&'static str]) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        for name in names {
            state
                .rows
                .entry((*name).to_owned())
                .or_insert_with(Row::new);
        }
        Ok(())
    }

    async fn set_version(&self, name: &str, version: u32) -> Result<(), StoreError> {
        if let Some(row) = lock(&self.state).rows.get_mut(name) {
            row.version = version;
        }
        Ok(())
    }

    async fn set_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Result<(), ProjectionStatus>, StoreError> {
        let mut state = lock(&self.state);
        let head = head(&state);
        let row = state.rows.entry(name.to_owned()).or_insert_with(Row::new);
        let from = if paused {
            ProjectionState::Live
        } else {
            ProjectionState::Paused
        };
        if row.state != from {
            return Ok(Err(status(name, row, head)));
        }
        row.state = if paused {
            ProjectionState::Paused
        } else {
            ProjectionState::Live
        };
        Ok(Ok(()))
    }

    async fn statuses(&self) -> Result<Vec<ProjectionStatus>, StoreError> {
        let state = lock(&self.state);
        let head = head(&state);
        Ok(state
            .rows
            .iter()
            .map(|(name, row)| status(name, row, head))
            .collect())
    }

    async fn claim(
        &self,
        names: &[&'static str],
    ) -> Result<Result<RebuildClaim, ProjectionStatus>, StoreError> {
        let mut state = lock(&self.state);
        let head = head(&state);
        let held = state.held.clone();
        for name in names {
            let row = state
                .rows
                .entry((*name).to_owned())
                .or_insert_with(Row::new);
            if held_by_live_claim(row, &held) {
                return Ok(Err(status(name, row, head)));
            }
        }
        let claim = RebuildClaim {
            id: Uuid::now_v7(),
            names: names.to_vec(),
        };
        for name in names {
            if let Some(row) = state.rows.get_mut(*name) {
                row.state = ProjectionState::Rebuilding;
                row.claim = Some(claim.id);
                row.progress = Some(RebuildProgress {
                    done: 0,
                    total: 0,
                    started_at: Utc::now(),
                });
            }
        }
        state.held.push(claim.id);
        Ok(Ok(claim))
    }

    async fn record_progress(
        &self,
        claim: &RebuildClaim,
        done: u64,
        total: u64,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.state);
        if !state.held.contains(&claim.id) {
            return Ok(false);
        }
        for row in state.rows.values_mut() {
            if row.claim == Some(claim.id) {
                if let Some(progress) = &mut row.progress {
                    progress.done = done;
                    progress.total = total;
                }
            }
        }
        Ok(true)
    }

    async fn prepare_shadows(&self, claim: &RebuildClaim) -> Result<(), StoreError> {
        for tables in self.tables_of(&claim.names) {
            tables.clear_shadow();
        }
        Ok(())
    }

    async fn snapshot(
        &self,
        aggregate_types: &[&'static str],
    ) -> Result<RebuildSnapshot, StoreError> {
        let mut state = lock(&self.state);
        if let Some(reason) = state.snapshot_failure.take() {
            return Err(StoreError::backend("the snapshot read failed", reason));
        }
        let events: Vec<RebuildEvent> = state
            .events
            .iter()
            .filter(|event| aggregate_types.contains(&event.aggregate_type.as_str()))
            .cloned()
            .collect();
        let heads = aggregate_types
            .iter()
            .map(|kind| {
                let head = events
                    .iter()
                    .filter(|event| event.aggregate_type == *kind)
                    .map(|event| event.position)
                    .max()
                    .unwrap_or(0);
                ((*kind).to_owned(), head)
            })
            .collect();
        let batches: Vec<Result<Vec<RebuildEvent>, StoreError>> = events
            .chunks(SNAPSHOT_BATCH)
            .map(|batch| Ok(batch.to_vec()))
            .collect();
        Ok(RebuildSnapshot {
            total: events.len() as u64,
            heads,
            events: stream::iter(batches).boxed(),
        })
    }

    async fn index_shadows(&self, _claim: &RebuildClaim) -> Result<(), StoreError> {
        Ok(())
    }

    async fn swap(&self, claim: &RebuildClaim, outcome: &SwapOutcome) -> Result<bool, StoreError> {
        {
            let state = lock(&self.state);
            let holds = state.held.contains(&claim.id)
                && claim.names.iter().all(|name| {
                    state
                        .rows
                        .get(*name)
                        .is_some_and(|row| row.claim == Some(claim.id))
                });
            if !holds {
                return Ok(false);
            }
        }
        for tables in self.tables_of(&claim.names) {
            tables.swap_in_shadow();
        }
        let mut state = lock(&self.state);
        for rebuilt in &outcome.projections {
            if let Some(row) = state.rows.get_mut(rebuilt.name) {
                row.version = rebuilt.version;
                row.position = rebuilt.position;
                row.state = ProjectionState::Live;
                row.claim = None;
                row.progress = None;
                row.last_rebuild = Some((rebuilt.events, outcome.seconds, Utc::now()));
                row.last_error = None;
            }
        }
        state.held.retain(|id| *id != claim.id);
        Ok(true)
    }

    async fn abandon(&self, claim: &RebuildClaim, reason: &str) -> Result<(), StoreError> {
        for tables in self.tables_of(&claim.names) {
            tables.clear_shadow();
        }
        let mut state = lock(&self.state);
        for row in state.rows.values_mut() {
            if row.claim == Some(claim.id) {
                row.state = ProjectionState::Live;
                row.claim = None;
                row.progress = None;
                row.last_error = Some(reason.to_owned());
            }
        }
        state.held.retain(|id| *id != claim.id);
        Ok(())
    }
}
