//! The rebuild itself: claim, read, decode, fold, write, index, swap.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use uuid::Uuid;

use crate::data::event_log::{decode_payload, StoredEvent};
use crate::error::AppError;
use crate::error_chain::Chain;
use crate::ports::projection_control::ProjectionControl;
use crate::ports::projection_control::{
    ProjectionStatus, RebuildClaim, RebuildEvent, RebuildProgress, RebuildSnapshot, Rebuilt,
    SwapOutcome,
};
use crate::ports::store_error::StoreError;
use crate::ports::view_store::ViewStore;
use crate::privacy::personal_data::PersonalData;
use crate::projection::read_model::{fold, EventContext, Fold, ReadModel};

/// How often a running rebuild records its progress (and checks it still holds its claim).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Rows per bulk write into a shadow table.
const WRITE_CHUNK: usize = 10_000;

/// Bulk writes in flight at once (each on its own connection: the server works on both).
const PARALLEL_WRITES: usize = 2;

/// What a finished rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildSummary {
    /// The projections rebuilt.
    pub projections: Vec<&'static str>,
    /// Events folded.
    pub events: u64,
    /// Rows written.
    pub rows: u64,
    /// Events that could not be applied (recorded in the projection failures).
    pub failures: u64,
    /// Seconds from claim to swap.
    pub seconds: f64,
    /// Seconds spent reading and folding the store, writing rows, building indexes.
    pub phases: RebuildPhases,
}

/// Where a rebuild's time went.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RebuildPhases {
    /// Reading the snapshot, decoding and folding.
    pub read_seconds: f64,
    /// Of which folding in position order (the one step that cannot run in parallel).
    pub fold_seconds: f64,
    /// Writing the shadow rows.
    pub write_seconds: f64,
    /// Building the shadow indexes.
    pub index_seconds: f64,
    /// The swap transaction.
    pub swap_seconds: f64,
}

impl RebuildSummary {
    /// Events folded per second of the whole rebuild.
    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// A batch decoded for one read model (its concrete type is that model's business).
type Decoded = Box<dyn Any + Send>;

/// Decodes the events of one read model's aggregate type in a batch; runs on worker threads.
type DecodeFn = fn(&[RebuildEvent]) -> Decoded;

/// One read model's rebuild in progress: its rows, folded in memory.
#[async_trait]
trait RebuildTarget: Send {
    /// The decoder for this model's events.
    fn decoder(&self) -> DecodeFn;
    /// Folds a decoded batch, in position order; how many of its events were this model's.
    fn fold(&mut self, decoded: Decoded) -> Result<u64, AppError>;
    /// Writes every row to the shadow table; the row count.
    async fn write(&mut self) -> Result<u64, StoreError>;
    /// Records the events it could not apply; how many.
    async fn record_failures(&mut self) -> Result<u64, StoreError>;
}

/// A read model that can be rebuilt, as the rebuilder knows it.
pub struct Projection {
    /// `tasks`.
    pub name: &'static str,
    /// The fold's code version.
    pub version: u32,
    /// The aggregate type whose events it reads.
    pub aggregate_type: &'static str,
    start: Box<dyn Fn() -> Box<dyn RebuildTarget> + Send + Sync>,
}

impl Projection {
    /// The projection of read model `M`, writing through `store`.
    pub fn of<M: ReadModel>(store: Arc<dyn ViewStore<M::View>>) -> Self {
        Self {
            name: M::NAME,
            version: M::VERSION,
            aggregate_type: M::AGGREGATE_TYPE,
            start: Box::new(move || {
                Box::new(ModelRebuild::<M> {
                    store: store.clone(),
                    rows: HashMap::new(),
                    failures: Vec::new(),
                })
            }),
        }
    }
}

/// An event a rebuild decoded for model `M`, or why it could not be.
enum DecodedEvent<E> {
    Ready {
        id: Uuid,
        event_id: Uuid,
        context: EventContext,
        event: E,
    },
    Unreadable(Failure),
}

/// An event a rebuild could not apply, recorded like the live projection's failures.
struct Failure {
    event_id: Uuid,
    reason: String,
    event: serde_json::Value,
}

impl Failure {
    fn new(event: &RebuildEvent, reason: String) -> Self {
        Self {
            event_id: event.event_id,
            reason,
            event: json!({
                "eventId": event.event_id,
                "position": event.position,
                "aggregateType": event.aggregate_type,
                "aggregateId": event.aggregate_id,
                "sequence": event.sequence,
                "eventType": event.event_type,
                "eventVersion": event.event_version,
                "payload": event.payload,
            }),
        }
    }
}

fn decode_batch<M: ReadModel>(batch: &[RebuildEvent]) -> Decoded {
    let decoded: Vec<DecodedEvent<M::Event>> = batch
        .iter()
        .filter(|event| event.aggregate_type == M::AGGREGATE_TYPE)
        .map(|event| {
            let Ok(id) = event.aggregate_id.parse::<Uuid>() else {
                return DecodedEvent::Unreadable(Failure::new(
                    event,
                    "aggregate id is not a UUID".to_owned(),
                ));
            };
            match decode_payload::<M::Event>(
                &event.event_type,
                &event.event_version,
                &event.payload,
            ) {
                Ok(domain) => DecodedEvent::Ready {
                    id,
                    event_id: event.event_id,
                    context: EventContext {
                        sequence: event.sequence,
                        occurred_at: event.recorded_at,
                    },
                    event: domain,
                },
                Err(reason) => DecodedEvent::Unreadable(Failure::new(event, reason)),
            }
        })
        .collect();
    Box::new(decoded)
}

struct ModelRebuild<M: ReadModel> {
    store: Arc<dyn ViewStore<M::View>>,
    rows: HashMap<Uuid, M::View>,
    failures: Vec<Failure>,
}

#[async_trait]
impl<M: ReadModel> RebuildTarget for ModelRebuild<M> {
    fn decoder(&self) -> DecodeFn {
        decode_batch::<M>
    }

    fn fold(&mut self, decoded: Decoded) -> Result<u64, AppError> {
        let events = decoded
            .downcast::<Vec<DecodedEvent<M::Event>>>()
            .map_err(|_| AppError::internal(format!("{}: batch of another model", M::NAME)))?;
        let count = events.len() as u64;
        for item in *events {
            match item {
                DecodedEvent::Ready {
                    id,
                    event_id,
                    context,
                    event,
                } => {
                    if let Fold::Gap { have, got } = fold::<M>(&mut self.rows, id, &context, event)
                    {
                        self.failures.push(Failure {
                            event_id,
                            reason: Fold::gap_reason(have, got),
                            event: json!({"aggregateId": id, "sequence": got}),
                        });
                    }
                }
                DecodedEvent::Unreadable(failure) => self.failures.push(failure),
            }
        }
        Ok(count)
    }

    async fn write(&mut self) -> Result<u64, StoreError> {
        let mut rows: Vec<M::View> = std::mem::take(&mut self.rows).into_values().collect();
        // In id order, the order the queries page in.
        rows.sort_unstable_by_key(M::id);
        let count = rows.len() as u64;
        let mut chunks: Vec<Vec<M::View>> = Vec::with_capacity(rows.len() / WRITE_CHUNK + 1);
        let mut rows = rows.into_iter();
        loop {
            let chunk: Vec<M::View> = rows.by_ref().take(WRITE_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        futures::stream::iter(chunks)
            .map(|chunk| {
                let store = self.store.clone();
                async move { store.write_shadow(&chunk).await }
            })
            .buffer_unordered(PARALLEL_WRITES)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(count)
    }

    async fn record_failures(&mut self) -> Result<u64, StoreError> {
        let count = self.failures.len() as u64;
        for failure in self.failures.drain(..) {
            tracing::warn!(projection = M::NAME, reason = %failure.reason, "a rebuild could not apply an event");
            self.store
                .record_failure(M::NAME, failure.event_id, &failure.reason, &failure.event)
                .await?;
        }
        Ok(count)
    }
}

/// A rebuild whose projections are claimed (their live consumer paused), not yet run.
#[derive(Debug)]
pub struct ClaimedRebuild {
    claim: RebuildClaim,
    started: Instant,
}

impl ClaimedRebuild {
    /// The claimed projections.
    pub fn names(&self) -> &[&'static str] {
        &self.claim.names
    }
}

/// Rebuilds projections from the event store; see the module documentation for the steps.
pub struct Rebuilder {
    control: Arc<dyn ProjectionControl>,
    projections: Vec<Projection>,
    personal: Arc<PersonalData>,
}

impl Rebuilder {
    /// A rebuilder for `projections`, through `control`, opening sealed events with
    /// `personal` (so a rebuild after an erasure yields markers, never the erased values).
    pub fn new(
        control: Arc<dyn ProjectionControl>,
        projections: Vec<Projection>,
        personal: Arc<PersonalData>,
    ) -> Self {
        Self {
            control,
            projections,
            personal,
        }
    }

    /// The projections' names, as operators type them.
    pub fn names(&self) -> Vec<&'static str> {
        self.projections.iter().map(|p| p.name).collect()
    }

    /// The projections `name` designates: one by name, or every one for `all`.
    pub fn select(&self, name: &str) -> Result<Vec<&'static str>, AppError> {
        if name == "all" {
            return Ok(self.names());
        }
        self.projections
            .iter()
            .find(|p| p.name == name)
            .map(|p| vec![p.name])
            .ok_or_else(|| {
                AppError::validation(
                    "name",
                    format!(
                        "unknown projection {name:?}; known: {}, all",
                        self.names().join(", ")
                    ),
                )
            })
    }

    /// Gives every projection a status row (a projection seen for the first time starts at
    /// version 0, so it is built). Once per process start: status reads do not write.
    pub async fn register(&self) -> Result<(), AppError> {
        Ok(self.control.register(&self.names()).await?)
    }

    /// Every registered projection's status.
    pub async fn statuses(&self) -> Result<Vec<ProjectionStatus>, AppError> {
        let mut statuses = self.control.statuses().await?;
        statuses.retain(|s| self.projections.iter().any(|p| p.name == s.name));
        Ok(statuses)
    }

    /// Pauses (`true`) a live projection's consumer, or resumes (`false`) a paused one;
    /// `INVALID_TRANSITION` from any other state (a rebuild ends live on its own).
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), AppError> {
        let names = self.select(name)?;
        let [name] = names.as_slice() else {
            return Err(AppError::validation("name", "name one projection, not all"));
        };
        match self.control.set_paused(name, paused).await? {
            Ok(()) => {
                tracing::info!(
                    projection = name,
                    paused,
                    "projection state changed by an operator"
                );
                Ok(())
            }
            Err(status) => Err(AppError::InvalidTransition(format!(
                "projection {name} is {}; only a {} projection can be {}",
                status.state.as_str(),
                if paused { "LIVE" } else { "PAUSED" },
                if paused { "paused" } else { "resumed" }
            ))),
        }
    }

    /// Projections whose rows were built by an older version of their code (or never) and
    /// must be rebuilt. One whose events the store does not hold yet (a new deployment) has
    /// nothing to rebuild: it is marked current instead.
    pub async fn outdated(&self) -> Result<Vec<&'static str>, AppError> {
        let statuses = self.statuses().await?;
        let mut outdated = Vec::new();
        for projection in &self.projections {
            let Some(status) = statuses.iter().find(|s| s.name == projection.name) else {
                continue;
            };
            if status.version >= projection.version {
                continue;
            }
            if status.head == 0 && status.position == 0 {
                self.control
                    .set_version(projection.name, projection.version)
                    .await?;
            } else {
                outdated.push(projection.name);
            }
        }
        Ok(outdated)
    }

    /// Rebuilds `name` (or `all`), reporting progress as it goes. Refused with
    /// `INVALID_TRANSITION` while another rebuild holds one of the projections.
    pub async fn rebuild(
        &self,
        name: &str,
        progress: &(dyn Fn(RebuildProgress) + Send + Sync),
    ) -> Result<RebuildSummary, AppError> {
        let claimed = self.claim(name).await?;
        self.finish(claimed, progress).await
    }

    /// The first half of [`Rebuilder::rebuild`]: claims `name` (or `all`), pausing its live
    /// consumer, so a caller can answer at once and [`Rebuilder::finish`] in the background.
    /// A claim must be finished: it is held until then.
    pub async fn claim(&self, name: &str) -> Result<ClaimedRebuild, AppError> {
        let names = self.select(name)?;
        self.control.register(&names).await?;
        let started = Instant::now();
        match self.control.claim(&names).await? {
            Ok(claim) => {
                tracing::info!(projections = ?names, claim = %claim.id, "rebuild started");
                Ok(ClaimedRebuild { claim, started })
            }
            Err(holder) => {
                let detail = holder.rebuild.map_or(String::new(), |p| {
                    format!(
                        " (started {}, {} of {} events)",
                        p.started_at.to_rfc3339(),
                        p.done,
                        p.total
                    )
                });
                Err(AppError::InvalidTransition(format!(
                    "projection {} is already being rebuilt{detail}; wait for that rebuild to finish",
                    holder.name
                )))
            }
        }
    }

    /// Runs a claimed rebuild to its swap; on failure releases the claim (the live tables were
    /// not touched) and returns the error.
    pub async fn finish(
        &self,
        claimed: ClaimedRebuild,
        progress: &(dyn Fn(RebuildProgress) + Send + Sync),
    ) -> Result<RebuildSummary, AppError> {
        let ClaimedRebuild { claim, started } = claimed;
        match self.run(&claim, started, progress).await {
            Ok(summary) => Ok(summary),
            Err(error) => {
                tracing::warn!(projections = ?claim.names, error = %Chain(&error), "rebuild failed; live tables untouched");
                if let Err(release) = self
                    .control
                    .abandon(&claim, &Chain(&error).to_string())
                    .await
                {
                    tracing::warn!(release = %Chain(&release), "could not release the rebuild's claim; it goes with the process's connection");
                }
                Err(error)
            }
        }
    }

    /// The rebuild's steps after its claim: prepare the shadows and open the snapshot, fold it,
    /// write and index the shadows, record what could not be applied, swap.
    async fn run(
        &self,
        claim: &RebuildClaim,
        started: Instant,
        progress: &(dyn Fn(RebuildProgress) + Send + Sync),
    ) -> Result<RebuildSummary, AppError> {
        let started_at = Utc::now();
        let selected: Vec<&Projection> = self
            .projections
            .iter()
            .filter(|p| claim.names.contains(&p.name))
            .collect();
        self.control.prepare_shadows(claim).await?;
        let mut types: Vec<&'static str> = selected.iter().map(|p| p.aggregate_type).collect();
        types.dedup();
        let snapshot = self.control.snapshot(&types).await?;
        let total = snapshot.total;
        self.control.record_progress(claim, 0, total).await?;
        progress(RebuildProgress {
            done: 0,
            total,
            started_at,
        });
        let reporter = ProgressReporter::start(self.control.clone(), claim.clone(), total);
        let mut targets: Vec<Box<dyn RebuildTarget>> =
            selected.iter().map(|p| (p.start)()).collect();

        let heads = snapshot.heads.clone();
        let personal = self.personal.clone();
        let folded = fold_snapshot(snapshot, personal, &mut targets, &reporter, |done| {
            progress(RebuildProgress {
                done,
                total,
                started_at,
            })
        })
        .await?;
        let read_seconds = started.elapsed().as_secs_f64();
        let mut rows = 0;
        for target in &mut targets {
            rows += target.write().await?;
            reporter.check()?;
        }
        let written = started.elapsed().as_secs_f64();
        self.control.index_shadows(claim).await?;
        reporter.check()?;
        let indexed = started.elapsed().as_secs_f64();
        let mut failures = 0;
        for target in &mut targets {
            failures += target.record_failures().await?;
        }

        let outcome = swap_outcome(&selected, &folded.per_target, &heads, started);
        drop(reporter);
        if !self.control.swap(claim, &outcome).await? {
            return Err(lost_claim());
        }
        let seconds = started.elapsed().as_secs_f64();
        let summary = RebuildSummary {
            projections: claim.names.clone(),
            events: folded.events,
            rows,
            failures,
            seconds,
            phases: RebuildPhases {
                read_seconds,
                fold_seconds: folded.folding.as_secs_f64(),
                write_seconds: written - read_seconds,
                index_seconds: indexed - written,
                swap_seconds: seconds - outcome.seconds,
            },
        };
        tracing::info!(projections = ?summary.projections, events = folded.events, rows, seconds, "rebuild swapped in");
        Ok(summary)
    }
}

/// What folding a snapshot did.
struct Folded {
    /// Events read.
    events: u64,
    /// Events of each target's aggregate type, in target order.
    per_target: Vec<u64>,
    /// Time spent folding (decoding excluded).
    folding: Duration,
}

/// Folds every event of `snapshot` into `targets`. Decoding (JSON parsing, most of the work)
/// runs on worker threads, two batches at once; folding stays in position order here.
/// `progress` hears the events done after each batch.
async fn fold_snapshot(
    snapshot: RebuildSnapshot,
    personal: Arc<PersonalData>,
    targets: &mut [Box<dyn RebuildTarget>],
    reporter: &ProgressReporter,
    progress: impl Fn(u64),
) -> Result<Folded, AppError> {
    let decoders: Arc<Vec<DecodeFn>> = Arc::new(targets.iter().map(|t| t.decoder()).collect());
    let mut decoded = snapshot
        .events
        .map(move |batch| {
            let decoders = decoders.clone();
            let personal = personal.clone();
            async move {
                let mut batch = batch?;
                open_batch(&personal, &mut batch).await?;
                tokio::task::spawn_blocking(move || {
                    let per_model: Vec<Decoded> =
                        decoders.iter().map(|decode| decode(&batch)).collect();
                    (batch.len() as u64, per_model)
                })
                .await
                .map_err(|e| AppError::internal_from("decoding thread failed", e))
            }
        })
        .buffered(2);
    let mut folded = Folded {
        events: 0,
        per_target: vec![0; targets.len()],
        folding: Duration::ZERO,
    };
    while let Some(batch) = decoded.next().await {
        let (count, per_model) = batch?;
        let fold_started = Instant::now();
        for ((target, events), done) in targets
            .iter_mut()
            .zip(per_model)
            .zip(&mut folded.per_target)
        {
            *done += target.fold(events)?;
        }
        folded.folding += fold_started.elapsed();
        folded.events += count;
        reporter.done.store(folded.events, Ordering::Relaxed);
        progress(folded.events);
        reporter.check()?;
    }
    Ok(folded)
}

/// Opens the sealed events of a batch in place (events stored in clear are left untouched
/// and cost nothing). Key lookups are in memory after a subject's first.
async fn open_batch(personal: &PersonalData, batch: &mut [RebuildEvent]) -> Result<(), AppError> {
    for event in batch.iter_mut().filter(|event| event.sealed.is_some()) {
        let payload = serde_json::from_str(&event.payload).map_err(|e| {
            AppError::internal_from(format!("event {} has no JSON payload", event.event_id), e)
        })?;
        let mut stored = StoredEvent {
            event_id: event.event_id,
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            payload,
            metadata: json!({"actor_id": event.actor_id, "sealed": event.sealed}),
            recorded_at: event.recorded_at,
            hash: String::new(),
            previous_hash: String::new(),
        };
        personal.open(&mut stored).await?;
        event.payload = stored.payload.to_string();
    }
    Ok(())
}

/// What the swap records: each projection at its code version and its type's snapshot head.
fn swap_outcome(
    selected: &[&Projection],
    folded: &[u64],
    heads: &[(String, i64)],
    started: Instant,
) -> SwapOutcome {
    SwapOutcome {
        projections: selected
            .iter()
            .zip(folded)
            .map(|(p, events)| Rebuilt {
                name: p.name,
                version: p.version,
                position: heads
                    .iter()
                    .find(|(kind, _)| kind == p.aggregate_type)
                    .map_or(0, |(_, head)| *head),
                events: *events,
            })
            .collect(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn lost_claim() -> AppError {
    AppError::internal(
        "the rebuild lost its claim (its lock connection dropped and the live consumer took the projection back); nothing was swapped",
    )
}

/// Records progress from its own task (operators watch it through `projections`) and notices a
/// lost claim.
struct ProgressReporter {
    done: Arc<AtomicU64>,
    lost: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressReporter {
    fn start(control: Arc<dyn ProjectionControl>, claim: RebuildClaim, total: u64) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let lost = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (done, lost) = (done.clone(), lost.clone());
            async move {
                loop {
                    tokio::time::sleep(PROGRESS_EVERY).await;
                    match control
                        .record_progress(&claim, done.load(Ordering::Relaxed), total)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(error) => {
                            tracing::warn!(error = %Chain(&error), "recording rebuild progress failed")
                        }
                    }
                }
            }
        });
        Self { done, lost, task }
    }

    fn check(&self) -> Result<(), AppError> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(lost_claim());
        }
        Ok(())
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
