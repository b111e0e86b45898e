//! What operators do with held messages (admin): parked outbox records, dead letters and
//! projection failures, listed, retried and discarded alike. Each kind keeps its own retry
//! (the relay, a redrive to one group, the projection's fold), chosen here and nowhere else.
//!
//! Holders are named as operators know them: `outbox`; a consumer group
//! (`chronicle-projections`, `chronicle-report-worker`; the deployment's topic prefix applies
//! inside); a projection (`tasks`, `reports`).

use std::sync::Arc;

use uuid::Uuid;

use crate::access::{Action, Principal};
use crate::data::message::EventMessage;
use crate::error::AppError;
use crate::ports::dead_letters::Redrive;
use crate::ports::held::{HeldContent, HeldKind, HeldMessage, HeldStore};
use crate::ports::page::Page;
use crate::privacy::personal_data::PersonalData;
use crate::projection::projector::Reapply;
use crate::queries::page_size;
use crate::topics::Topics;

/// The one holder of parked records.
pub const OUTBOX: &str = "outbox";

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOutcome {
    /// Messages handed back: parked records to the relay, dead letters to their group,
    /// projection failures that applied (those are removed).
    pub retried: u64,
    /// Messages still held after it (projection failures that failed again).
    pub remaining: u64,
}

/// The held messages of every kind, for operators.
pub struct HeldMessages {
    store: Arc<dyn HeldStore>,
    redrive: Arc<dyn Redrive>,
    projectors: Vec<Arc<dyn Reapply>>,
    personal: Arc<PersonalData>,
    /// Each consumer group's name as operators write it, and its id under the topic prefix.
    groups: Vec<(String, String)>,
}

impl HeldMessages {
    /// Over `store`; dead letters of `groups` (named under `topics`' prefix) are sent back
    /// through `redrive`, projection failures applied again through `projectors` (one per
    /// projection) with their personal values opened by `personal`.
    pub fn new(
        store: Arc<dyn HeldStore>,
        redrive: Arc<dyn Redrive>,
        projectors: Vec<Arc<dyn Reapply>>,
        personal: Arc<PersonalData>,
        topics: &Topics,
        groups: &[&str],
    ) -> Self {
        Self {
            store,
            redrive,
            projectors,
            personal,
            groups: groups
                .iter()
                .map(|name| ((*name).to_owned(), topics.group(name)))
                .collect(),
        }
    }

    /// Every holder of `kind`: its name as operators write it, and as the store knows it.
    fn holders(&self, kind: HeldKind) -> Vec<(&str, &str)> {
        match kind {
            HeldKind::Parked => vec![(OUTBOX, OUTBOX)],
            HeldKind::DeadLetter => self
                .groups
                .iter()
                .map(|(name, id)| (name.as_str(), id.as_str()))
                .collect(),
            HeldKind::ProjectionFailure => self
                .projectors
                .iter()
                .map(|p| (p.name(), p.name()))
                .collect(),
        }
    }

    /// The store's name of `holder` of `kind`. Parked records have one holder, which may be
    /// left out; an unknown or missing one is refused, naming the known ones.
    fn holder<'a>(&'a self, kind: HeldKind, holder: Option<&str>) -> Result<&'a str, AppError> {
        let holders = self.holders(kind);
        let found = match (kind, holder) {
            (HeldKind::Parked, None) => Some(OUTBOX),
            (_, Some(name)) => holders.iter().find(|(n, _)| *n == name).map(|(_, id)| *id),
            (_, None) => None,
        };
        found.ok_or_else(|| {
            let known: Vec<&str> = holders.iter().map(|(name, _)| *name).collect();
            let known = known.join(", ");
            let message = match (kind, holder) {
                (HeldKind::Parked, _) => {
                    format!(
                        "parked records are held by the outbox; leave holder out or write {OUTBOX}"
                    )
                }
                (HeldKind::DeadLetter, Some(_)) => format!("unknown group; choose from {known}"),
                (HeldKind::DeadLetter, None) => {
                    format!("name the consumer group holding the dead letters: {known}")
                }
                (HeldKind::ProjectionFailure, Some(_)) => {
                    format!("unknown projection; choose from {known}")
                }
                (HeldKind::ProjectionFailure, None) => {
                    format!("name the projection holding the failures: {known}")
                }
            };
            AppError::validation("holder", message)
        })
    }

    /// `message` with its holder named as operators write it.
    fn as_named(&self, mut message: HeldMessage) -> HeldMessage {
        if let Some((name, _)) = self
            .holders(message.kind())
            .into_iter()
            .find(|(_, id)| *id == message.holder)
        {
            message.holder = name.to_owned();
        }
        message
    }

    /// How many of `kind` each holder holds, every holder named (0 when none).
    pub async fn counts(&self, kind: HeldKind) -> Result<Vec<(String, u64)>, AppError> {
        let counts = self.store.counts(kind).await?;
        Ok(self
            .holders(kind)
            .into_iter()
            .map(|(name, id)| {
                let n = counts
                    .iter()
                    .find(|(holder, _)| holder == id)
                    .map_or(0, |(_, n)| *n);
                (name.to_owned(), n)
            })
            .collect())
    }

    /// A page of `kind` held by `holder`, in id order (the order they were recorded; parked
    /// records in outbox order); `first` as every page (1..=100).
    pub async fn list(
        &self,
        principal: &Principal,
        kind: HeldKind,
        holder: Option<&str>,
        first: Option<i64>,
        after: Option<i64>,
    ) -> Result<Page<HeldMessage>, AppError> {
        principal.scope(Action::Operate)?;
        let holder = self.holder(kind, holder)?;
        let page = self
            .store
            .list(kind, holder, after, page_size(first)?)
            .await?;
        Ok(Page {
            items: page.items.into_iter().map(|m| self.as_named(m)).collect(),
            has_next_page: page.has_next_page,
        })
    }

    /// One held message, if it is there and was not discarded.
    pub async fn get(
        &self,
        principal: &Principal,
        kind: HeldKind,
        holder: Option<&str>,
        id: i64,
    ) -> Result<Option<HeldMessage>, AppError> {
        let page = self
            .list(principal, kind, holder, Some(1), Some(id - 1))
            .await?;
        Ok(page.items.into_iter().find(|message| message.id == id))
    }

    /// The ids of the parked records of `aggregate_id` (what `retryParkedEvents(aggregateId)`
    /// named before held messages had ids).
    pub async fn parked_of(
        &self,
        principal: &Principal,
        aggregate_id: Uuid,
    ) -> Result<Vec<i64>, AppError> {
        principal.scope(Action::Operate)?;
        let key = aggregate_id.to_string();
        let pending = self.store.pending(HeldKind::Parked, OUTBOX, None).await?;
        Ok(pending
            .iter()
            .filter(|m| matches!(&m.content, HeldContent::Outbox { aggregate_id, .. } if *aggregate_id == key))
            .map(|m| m.id)
            .collect())
    }

    /// Retries `kind` held by `holder` (those of `ids`, or every one waiting), in the order
    /// they must go: parked records go back to the relay, which publishes them and what
    /// waited behind them in order; dead letters go back to their group alone, in the order
    /// they were set aside; projection failures are applied again in store order, and those
    /// that apply are removed. One that fails again is held again with its attempts counted
    /// on.
    pub async fn retry(
        &self,
        principal: &Principal,
        kind: HeldKind,
        holder: Option<&str>,
        ids: Option<&[i64]>,
    ) -> Result<RetryOutcome, AppError> {
        principal.scope(Action::Operate)?;
        let store_holder = self.holder(kind, holder)?;
        let actor = principal.subject();
        let pending = self.store.pending(kind, store_holder, ids).await?;
        let outcome = match kind {
            HeldKind::Parked => self.unpark(ids, &pending, actor).await?,
            HeldKind::DeadLetter => self.redrive(&pending, actor).await?,
            HeldKind::ProjectionFailure => self.reapply(store_holder, pending).await?,
        };
        tracing::info!(
            actor,
            kind = kind.as_str(),
            holder = store_holder,
            ids = ?ids,
            retried = outcome.retried,
            remaining = outcome.remaining,
            "held messages retried"
        );
        Ok(outcome)
    }

    /// Parked records: unparking them is the retry; the relay is woken. Without `ids`, every
    /// record parked when the statement runs, also one parked since `pending` was read.
    async fn unpark(
        &self,
        ids: Option<&[i64]>,
        pending: &[HeldMessage],
        actor: &str,
    ) -> Result<RetryOutcome, AppError> {
        let retried = match ids {
            Some(_) if pending.is_empty() => 0,
            Some(_) => {
                let ids: Vec<i64> = pending.iter().map(|m| m.id).collect();
                self.store
                    .mark_retried(HeldKind::Parked, Some(&ids), actor)
                    .await?
            }
            None => {
                self.store
                    .mark_retried(HeldKind::Parked, None, actor)
                    .await?
            }
        };
        Ok(RetryOutcome {
            retried,
            remaining: 0,
        })
    }

    /// Dead letters, one by one in order: marked, then sent; the rest stays behind the first
    /// the broker refuses, in order, for the next redrive.
    async fn redrive(
        &self,
        pending: &[HeldMessage],
        actor: &str,
    ) -> Result<RetryOutcome, AppError> {
        let mut sent = 0;
        for held in pending {
            let HeldContent::Message(message) = &held.content else {
                continue;
            };
            self.store
                .mark_retried(HeldKind::DeadLetter, Some(&[held.id]), actor)
                .await?;
            if let Err(error) = self.redrive.send_back(held.id, message).await {
                self.store
                    .unmark_retried(HeldKind::DeadLetter, &[held.id])
                    .await?;
                tracing::warn!(group = %held.holder, sent, dead_letter = held.id, "redrive stopped: the broker refused");
                return Err(error.into());
            }
            sent += 1;
        }
        Ok(RetryOutcome {
            retried: sent,
            remaining: 0,
        })
    }

    /// Projection failures: applied again through the projection's own fold, in store order;
    /// those that applied (or that its rows already reflect) are removed.
    async fn reapply(
        &self,
        projection: &str,
        pending: Vec<HeldMessage>,
    ) -> Result<RetryOutcome, AppError> {
        let projector = self
            .projectors
            .iter()
            .find(|p| p.name() == projection)
            .ok_or_else(|| AppError::internal(format!("no projector named {projection}")))?;
        let mut events = Vec::with_capacity(pending.len());
        let mut seen = Vec::with_capacity(pending.len());
        for held in &pending {
            let HeldContent::Event(stored) = &held.content else {
                continue;
            };
            let (opened, _) = self.personal.opened(stored).await?;
            let event = EventMessage::of_stored(&opened).ok_or_else(|| {
                AppError::internal(format!(
                    "event {}'s metadata is not readable",
                    opened.event_id
                ))
            })?;
            events.push(event);
            seen.push((held.id, held.attempts));
        }
        if events.is_empty() {
            return Ok(RetryOutcome {
                retried: 0,
                remaining: 0,
            });
        }
        projector.reapply(&events).await?;
        let released = self
            .store
            .release(HeldKind::ProjectionFailure, projection, &seen)
            .await?;
        Ok(RetryOutcome {
            retried: released,
            remaining: seen.len() as u64 - released,
        })
    }

    /// Discards `ids` of `kind` held by `holder`: they leave the list; answers how many.
    /// Parked records cannot be: every committed event is published, in its aggregate's
    /// order, so the fix is to remove the cause and retry them.
    pub async fn discard(
        &self,
        principal: &Principal,
        kind: HeldKind,
        holder: Option<&str>,
        ids: &[i64],
    ) -> Result<u64, AppError> {
        principal.scope(Action::Operate)?;
        let store_holder = self.holder(kind, holder)?;
        if kind == HeldKind::Parked {
            return Err(AppError::validation(
                "kind",
                "parked records cannot be discarded: every committed event is published, in \
                 order; fix the cause (a larger KAFKA_MESSAGE_MAX_BYTES, a granted ACL) and \
                 retry them",
            ));
        }
        let actor = principal.subject();
        let discarded = self.store.discard(kind, store_holder, ids, actor).await?;
        tracing::info!(
            actor,
            kind = kind.as_str(),
            holder = store_holder,
            discarded,
            ?ids,
            "held messages discarded"
        );
        Ok(discarded)
    }
}
