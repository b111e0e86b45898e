//! Subscriptions that never miss an event: each starts from a cursor (a position in the event
//! store) or from now, catches up by reading the store, then follows this instance's tail of
//! it, in position order, with no gap and no duplicate (docs/api.md, "Subscriptions").
//!
//! - [`feed`]: the tail: one task per instance settles the store's position and broadcasts
//!   what became final while anyone subscribes;
//! - [`follow`]: one subscription's way from its cursor through the store and the batches;
//! - [`filter`]: a subscription's filter, applied to the batches in memory;
//! - [`pages`]: the audit trail's pages, read up to the settled position.
//!
//! Everything comes from the store, never from a read model or Kafka, so a cursor means the
//! same on every instance and a projection's rebuild does not touch subscriptions.

mod feed;
pub(crate) mod filter;
mod follow;
mod pages;

use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};

pub use feed::{FeedSettings, LiveFeed};
pub use follow::Start;

use crate::access::{Action, Principal};
use crate::data::message::EventMessage;
use crate::error::AppError;
use crate::ports::audit_log::AuditFilter;
use crate::ports::event_feed::FeedRecord;
use crate::privacy::personal_data::PersonalData;
use follow::Follower;

impl LiveFeed {
    /// The events matching `filter` from `start`, in position order, each once; an error
    /// ends the stream (the subscriber resumes from its last cursor).
    pub(crate) fn follow(
        &self,
        filter: AuditFilter,
        start: Start,
    ) -> BoxStream<'static, Result<FeedRecord, AppError>> {
        let follower = Follower::new(self.shared.clone(), filter, start);
        stream::unfold(Some(follower), |follower| async move {
            let mut follower = follower?;
            match follower.next().await? {
                Ok(record) => Some((Ok(record), Some(follower))),
                Err(error) => Some((Err(error), None)),
            }
        })
        .boxed()
    }
}

/// What a subscription watches: one aggregate type, optionally one aggregate and some teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// `Task` or `Report`.
    pub aggregate_type: &'static str,
    /// Only this aggregate.
    pub aggregate_id: Option<String>,
    /// Only aggregates of these teams (narrowed to the caller's).
    pub teams: Option<Vec<String>>,
}

/// An event as a subscriber receives it: where it is in the store, and its envelope with
/// personal values opened.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    /// Global position: the cursor to resume after it.
    pub position: i64,
    /// The event as Kafka consumers receive it.
    pub message: EventMessage,
}

/// Subscriptions to aggregates' events, scoped to the subscriber's teams like every read.
#[derive(Clone)]
pub struct LiveWatch {
    feed: LiveFeed,
    personal: Arc<PersonalData>,
}

impl LiveWatch {
    /// Watches `feed`, opening personal values with `personal`.
    pub fn new(feed: LiveFeed, personal: Arc<PersonalData>) -> Self {
        Self { feed, personal }
    }

    /// The feed, for the audit trail's subscriptions.
    pub fn feed(&self) -> &LiveFeed {
        &self.feed
    }

    /// Events matching `watch` from `start`, of the caller's teams only: another team's
    /// aggregate is silent, as one that does not exist. A `teams` filter outside the caller's
    /// teams is `FORBIDDEN`.
    pub fn watch(
        &self,
        principal: &Principal,
        watch: Watch,
        start: Start,
    ) -> Result<BoxStream<'static, Result<LiveEvent, AppError>>, AppError> {
        let scope = principal.scope(Action::ReadWork)?;
        let teams = scope.narrow(watch.teams.as_deref())?;
        let filter = AuditFilter {
            aggregate_type: Some(watch.aggregate_type.to_owned()),
            aggregate_id: watch.aggregate_id,
            teams,
            ..AuditFilter::default()
        };
        let personal = self.personal.clone();
        Ok(self
            .feed
            .follow(filter, start)
            .then(move |record| {
                let personal = personal.clone();
                async move { open(&personal, record?).await }
            })
            .boxed())
    }
}

/// The envelope of a stored event, its personal values opened.
async fn open(personal: &PersonalData, record: FeedRecord) -> Result<LiveEvent, AppError> {
    let (event, _) = personal.opened(&record.event).await?;
    let message = EventMessage::of_stored(&event).ok_or_else(|| {
        AppError::internal(format!(
            "event {} has metadata that is not a command's",
            event.event_id
        ))
    })?;
    Ok(LiveEvent {
        position: record.position,
        message,
    })
}

#[cfg(test)]
mod tests;
