//! The generic command loop shared by every aggregate.

use std::marker::PhantomData;
use std::sync::Arc;

use chronicle_domain::TeamOwned;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

use super::fingerprint::{self, request_fingerprint};
use crate::access::TeamScope;
use crate::data::event_log::{deserialize_event, serialize_event, store_now, StoredEvent};
use crate::data::hash_chain::{event_hash, GENESIS_HASH};
use crate::data::message::EventMessage;
use crate::data::metadata::CommandMetadata;
use crate::error::AppError;
use crate::ports::event_store::{AppendBatch, EventStore, IdempotencyRecord, Snapshot};
use crate::ports::store_error::StoreError;
use crate::privacy::personal_data::PersonalData;
use crate::privacy::sealing::Sealed;
use crate::topics::Topics;

/// How many times a command without `expectedVersion` is re-decided after losing a race.
/// The caller did not pin a version, so re-deciding on the newer state is what they meant.
/// Generous: a hot aggregate with dozens of concurrent writers must still converge.
const CONFLICT_RETRIES: usize = 64;

/// What a successful command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The aggregate's id.
    pub aggregate_id: String,
    /// Its version after the command (unchanged when the command changed nothing).
    pub version: u64,
    /// Whether this answer is the stored first result of an idempotent retry.
    pub replayed: bool,
}

/// Per-call options: what the client asked for and which teams the caller may change.
#[derive(Debug, Clone)]
pub struct ExecuteOptions {
    /// Refuse with `CONCURRENCY_CONFLICT` unless the aggregate is at this version.
    pub expected_version: Option<u64>,
    /// The command's public name, recorded with its idempotency key.
    pub command_name: &'static str,
    /// Whether the command creates its aggregate under an id generated for this request: a
    /// retry then carries a new id, and the first request's id is the answer.
    pub creates_aggregate: bool,
    /// The teams the caller may change ([`crate::access::Action::ChangeWork`]). An existing
    /// aggregate of another team is treated as one that does not exist; creating one in another
    /// team is `FORBIDDEN`.
    pub scope: TeamScope,
}

/// Runs commands against aggregates of type `A`.
pub struct AggregateExecutor<A> {
    store: Arc<dyn EventStore>,
    topics: Topics,
    snapshot_every: u64,
    personal: Arc<PersonalData>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> AggregateExecutor<A>
where
    A: Aggregate<Services = ()> + TeamOwned,
    A::Command: Clone + serde::Serialize,
    AppError: From<A::Error>,
{
    /// An executor writing through `store`, publishing to `topics`, snapshotting every
    /// `snapshot_every` events (0 disables snapshots), sealing and opening personal values
    /// with `personal`.
    pub fn new(
        store: Arc<dyn EventStore>,
        topics: Topics,
        snapshot_every: u64,
        personal: Arc<PersonalData>,
    ) -> Self {
        Self {
            store,
            topics,
            snapshot_every,
            personal,
            _aggregate: PhantomData,
        }
    }

    /// Loads, decides and appends, retrying on a lost race unless a version was pinned, and
    /// answering the first result again when the idempotency key was seen before. Records
    /// `chronicle_command_duration_seconds{command, outcome}`.
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        options: &ExecuteOptions,
        metadata: &CommandMetadata,
    ) -> Result<CommandOutcome, AppError> {
        let started = std::time::Instant::now();
        let result = self
            .execute_unmeasured(aggregate_id, command, options, metadata)
            .await;
        let outcome = match &result {
            Ok(outcome) if outcome.replayed => "replayed",
            Ok(_) => "ok",
            Err(error) => error.kind(),
        };
        metrics::histogram!(
            "chronicle_command_duration_seconds",
            "command" => options.command_name,
            "outcome" => outcome,
        )
        .record(started.elapsed().as_secs_f64());
        result
    }

    async fn execute_unmeasured(
        &self,
        aggregate_id: &str,
        command: A::Command,
        options: &ExecuteOptions,
        metadata: &CommandMetadata,
    ) -> Result<CommandOutcome, AppError> {
        let fingerprint = match metadata.idempotency_key {
            Some(_) => Some(request_fingerprint(
                options.command_name,
                aggregate_id,
                options.creates_aggregate,
                options.expected_version,
                &command,
            )?),
            None => None,
        };
        let fingerprint = fingerprint.as_deref();
        if let Some(previous) = self
            .previous_result(aggregate_id, options, metadata, fingerprint)
            .await?
        {
            return Ok(previous);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .try_execute(
                    aggregate_id,
                    command.clone(),
                    options,
                    metadata,
                    fingerprint,
                )
                .await
            {
                Err(ExecuteError::Store(StoreError::Conflict))
                    if options.expected_version.is_none() && attempt < CONFLICT_RETRIES =>
                {
                    // The winner may have been this request under the same key (a client's
                    // retry racing its original): then its result is the answer.
                    if let Some(previous) = self
                        .previous_result(aggregate_id, options, metadata, fingerprint)
                        .await?
                    {
                        return Ok(previous);
                    }
                    tracing::debug!(aggregate_id, attempt, "lost a race, deciding again");
                    // A short random pause de-synchronises the racers so one wins each round.
                    let jitter = Uuid::new_v4().as_u128() % (500 * attempt.min(10) as u128);
                    tokio::time::sleep(std::time::Duration::from_micros(jitter as u64)).await;
                }
                // Sealed under a key an erasure destroyed while this process held it: read the
                // keys again (the person's next action is a new life, under a new key) and
                // decide again.
                Err(ExecuteError::Store(StoreError::SubjectErased(keys)))
                    if attempt < CONFLICT_RETRIES =>
                {
                    tracing::debug!(
                        aggregate_id,
                        attempt,
                        "sealed under a destroyed key, deciding again"
                    );
                    self.personal.evict(&keys);
                }
                Err(ExecuteError::Store(StoreError::Conflict)) => {
                    let actual = self.load(aggregate_id).await?.version;
                    let expected = options.expected_version.unwrap_or(actual);
                    return Err(AppError::Conflict { expected, actual });
                }
                Err(ExecuteError::Store(StoreError::IdempotencyKeyTaken)) => {
                    return self
                        .previous_result(aggregate_id, options, metadata, fingerprint)
                        .await?
                        .ok_or_else(|| AppError::internal("idempotency record vanished"));
                }
                Err(ExecuteError::Store(other)) => return Err(other.into()),
                Err(ExecuteError::App(error)) => return Err(error),
                Ok(outcome) => return Ok(outcome),
            }
        }
    }

    /// Folds the aggregate from its snapshot and later events.
    pub async fn load(&self, aggregate_id: &str) -> Result<LoadedAggregate<A>, AppError> {
        self.load_internal(aggregate_id).await
    }

    /// The stored first result of this request, when its idempotency key was used before; a
    /// key first used for a different request is refused.
    async fn previous_result(
        &self,
        aggregate_id: &str,
        options: &ExecuteOptions,
        metadata: &CommandMetadata,
        fingerprint: Option<&str>,
    ) -> Result<Option<CommandOutcome>, AppError> {
        let Some(key) = &metadata.idempotency_key else {
            return Ok(None);
        };
        let Some(record) = self.store.find_idempotent(&metadata.actor_id, key).await? else {
            return Ok(None);
        };
        let same_target = options.creates_aggregate || record.aggregate_id == aggregate_id;
        let same_arguments = match (&record.request_fingerprint, fingerprint) {
            (Some(first), Some(this)) => !fingerprint::differs(first, this),
            // Recorded before fingerprints were: the command and target are all there is.
            _ => true,
        };
        if record.command != options.command_name || !same_target || !same_arguments {
            return Err(AppError::IdempotencyKeyReused {
                command: record.command,
                aggregate_id: record.aggregate_id,
            });
        }
        Ok(Some(CommandOutcome {
            aggregate_id: record.aggregate_id,
            version: record.version,
            replayed: true,
        }))
    }

    async fn load_internal(&self, aggregate_id: &str) -> Result<LoadedAggregate<A>, AppError> {
        let stream = self.store.load(A::TYPE, aggregate_id).await?;
        let (mut aggregate, mut version) = match &stream.snapshot {
            Some(snapshot) => (
                serde_json::from_value::<A>(snapshot.payload.clone()).map_err(|e| {
                    AppError::internal_from(format!("snapshot of {aggregate_id} is unreadable"), e)
                })?,
                snapshot.last_sequence,
            ),
            None => (A::default(), 0),
        };
        let mut last_hash = GENESIS_HASH.to_owned();
        for event in stream.events {
            last_hash.clone_from(&event.hash);
            if event.sequence <= version {
                continue; // the snapshot already holds it; read only for its hash
            }
            let mut event = event;
            self.personal.open(&mut event).await?;
            aggregate.apply(deserialize_event::<A::Event>(&event)?);
            version = event.sequence;
        }
        Ok(LoadedAggregate {
            aggregate,
            version,
            last_hash,
        })
    }

    /// One attempt: load, decide, append. A lost race comes back as
    /// `ExecuteError::Store(Conflict)` for [`Self::execute_unmeasured`] to retry.
    async fn try_execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        options: &ExecuteOptions,
        metadata: &CommandMetadata,
        fingerprint: Option<&str>,
    ) -> Result<CommandOutcome, ExecuteError> {
        let mut loaded = self.load_for_command(aggregate_id, options).await?;
        let decided = Self::decide(&mut loaded.aggregate, command).await?;
        if decided.is_empty() {
            return Ok(CommandOutcome {
                aggregate_id: aggregate_id.to_owned(),
                version: loaded.version,
                replayed: false,
            });
        }
        let team_id = Self::owning_team(&loaded.aggregate, &decided);
        if let Some(team) = &team_id {
            if !options.scope.covers(team) {
                return Err(
                    AppError::Forbidden(format!("team {team:?} is not one of your teams")).into(),
                );
            }
        }
        let new_version = loaded.version + decided.len() as u64;
        let idempotency = metadata
            .idempotency_key
            .as_ref()
            .map(|key| IdempotencyRecord {
                actor_id: metadata.actor_id.clone(),
                key: key.clone(),
                command: options.command_name.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                version: new_version,
                request_fingerprint: fingerprint.map(str::to_owned),
            });
        let batch = self
            .append_batch(
                aggregate_id,
                loaded,
                decided,
                team_id,
                idempotency,
                metadata,
            )
            .await?;
        self.store.append(batch).await?;
        Ok(CommandOutcome {
            aggregate_id: aggregate_id.to_owned(),
            version: new_version,
            replayed: false,
        })
    }

    /// The aggregate a command runs on, at the version the caller expects. A create targets an
    /// id generated for this request: nothing to load (a collision would still be refused by
    /// the store's primary key).
    async fn load_for_command(
        &self,
        aggregate_id: &str,
        options: &ExecuteOptions,
    ) -> Result<LoadedAggregate<A>, AppError> {
        let loaded = if options.creates_aggregate {
            LoadedAggregate {
                aggregate: A::default(),
                version: 0,
                last_hash: GENESIS_HASH.to_owned(),
            }
        } else {
            self.load_in_scope(aggregate_id, &options.scope).await?
        };
        match options.expected_version {
            Some(expected) if expected != loaded.version => Err(AppError::Conflict {
                expected,
                actual: loaded.version,
            }),
            _ => Ok(loaded),
        }
    }

    /// What the aggregate decides for `command` (nothing, when it is already done); cqrs-es's
    /// sink applies each decided event to `aggregate` as it is written.
    async fn decide(aggregate: &mut A, command: A::Command) -> Result<Vec<A::Event>, AppError> {
        let sink = EventSink::<A>::default();
        aggregate
            .handle(command, &(), &sink)
            .await
            .map_err(AppError::from)?;
        Ok(sink.collect().await)
    }

    /// Everything the decided events write in one transaction: the stamped events, one outbox
    /// row each, a snapshot when the interval is crossed (of `loaded`, which already holds the
    /// decided events), and the idempotency record.
    ///
    /// The outbox's envelopes are built from the events in clear, before their personal values
    /// are sealed: consumers read titles and ids, not ciphertext (docs/privacy.md says what that
    /// means for Kafka's retention), with `personalData` saying whose each value is.
    async fn append_batch(
        &self,
        aggregate_id: &str,
        loaded: LoadedAggregate<A>,
        decided: Vec<A::Event>,
        team_id: Option<String>,
        idempotency: Option<IdempotencyRecord>,
        metadata: &CommandMetadata,
    ) -> Result<AppendBatch, AppError> {
        let LoadedAggregate {
            aggregate,
            version,
            last_hash,
        } = loaded;
        let new_version = version + decided.len() as u64;
        let mut events = self.stamp(aggregate_id, version, &decided, metadata)?;
        let messages: Vec<EventMessage> = events
            .iter()
            .map(|event| EventMessage::from_stored(event, metadata))
            .collect();
        let sealed = self.seal_and_chain(&mut events, &last_hash).await?;
        let mut sealed_under: Vec<String> = sealed
            .iter()
            .flat_map(|s| s.keys_used.iter().cloned())
            .collect();
        sealed_under.sort();
        sealed_under.dedup();
        let topic = self.topics.events_of(A::TYPE);
        let outbox = messages
            .into_iter()
            .zip(sealed)
            .map(|(mut message, sealed)| {
                let whose = sealed.whose;
                message.personal_data = (!whose.is_empty()).then_some(whose);
                message
                    .to_outbox(topic.clone(), metadata.traceparent.as_deref())
                    .map_err(|e| AppError::internal_from("encode envelope", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let snapshot = if self.snapshot_due(version, new_version) {
            let payload = serde_json::to_value(&aggregate)
                .map_err(|e| AppError::internal_from("serialize snapshot", e))?;
            Some(Snapshot {
                payload,
                last_sequence: new_version,
            })
        } else {
            None
        };
        Ok(AppendBatch {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            team_id,
            events,
            outbox,
            snapshot,
            idempotency,
            sealed_under,
        })
    }

    /// Loads an aggregate for a command; one of a team outside `scope` loads as the empty
    /// aggregate, so the command fails exactly as it would on an id that does not exist.
    async fn load_in_scope(
        &self,
        aggregate_id: &str,
        scope: &TeamScope,
    ) -> Result<LoadedAggregate<A>, AppError> {
        let loaded = self.load_internal(aggregate_id).await?;
        let hidden = loaded
            .aggregate
            .owning_team()
            .is_some_and(|team| !scope.covers(team.as_str()));
        if hidden {
            return Ok(LoadedAggregate {
                aggregate: A::default(),
                version: 0,
                last_hash: GENESIS_HASH.to_owned(),
            });
        }
        Ok(loaded)
    }

    /// The team the aggregate belongs to after `decided`: its own, or for a creation the team
    /// its first event names.
    fn owning_team(aggregate: &A, decided: &[A::Event]) -> Option<String> {
        if let Some(team) = aggregate.owning_team() {
            return Some(team.to_string());
        }
        let mut created = A::default();
        created.apply(decided.first()?.clone());
        created.owning_team().map(ToString::to_string)
    }

    fn snapshot_due(&self, old_version: u64, new_version: u64) -> bool {
        self.snapshot_every > 0
            && new_version / self.snapshot_every > old_version / self.snapshot_every
    }

    /// Gives decided events their ids, sequences and time; [`Self::seal_and_chain`] then
    /// gives them their stored form and hash-chain links.
    fn stamp(
        &self,
        aggregate_id: &str,
        version: u64,
        decided: &[A::Event],
        metadata: &CommandMetadata,
    ) -> Result<Vec<StoredEvent>, AppError> {
        let metadata_json = serde_json::to_value(metadata)
            .map_err(|e| AppError::internal_from("serialize metadata", e))?;
        let recorded_at = store_now();
        let mut events = Vec::with_capacity(decided.len());
        for (offset, event) in decided.iter().enumerate() {
            events.push(StoredEvent {
                event_id: Uuid::now_v7(),
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                sequence: version + offset as u64 + 1,
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serialize_event(event)?,
                metadata: metadata_json.clone(),
                recorded_at,
                hash: String::new(),
                previous_hash: String::new(),
            });
        }
        Ok(events)
    }

    /// Seals each event's personal values, then links it to the chain: the hash covers the
    /// stored (sealed) form, so destroying a key later changes no hash. Answers, per event,
    /// whose each personal value was (for its envelope's `personalData`) and the keys used.
    async fn seal_and_chain(
        &self,
        events: &mut [StoredEvent],
        last_hash: &str,
    ) -> Result<Vec<Sealed>, AppError> {
        let mut previous = last_hash.to_owned();
        let mut whose = Vec::with_capacity(events.len());
        for event in events {
            whose.push(self.personal.seal_new(event).await?);
            event.previous_hash = previous;
            event.hash = event_hash(event);
            previous = event.hash.clone();
        }
        Ok(whose)
    }
}

/// An aggregate folded from its stream: its state and version, and (for the next append) the
/// hash its next event chains to.
#[derive(Debug)]
pub struct LoadedAggregate<A> {
    /// The state.
    pub aggregate: A,
    /// Its version (0 when it does not exist).
    pub version: u64,
    /// The hash of its last event (the genesis hash when it has none).
    last_hash: String,
}

/// Internal: keeps store conflicts distinguishable from application errors inside the retry loop.
enum ExecuteError {
    Store(StoreError),
    App(AppError),
}

impl From<StoreError> for ExecuteError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<AppError> for ExecuteError {
    fn from(error: AppError) -> Self {
        Self::App(error)
    }
}
