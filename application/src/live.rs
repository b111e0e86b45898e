//! The in-process live feed: every event this instance's feed consumer reads is broadcast to
//! the GraphQL subscriptions of this instance. Subscriptions are fed by the event flow itself,
//! never by polling a read model.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::access::{Action, Principal, TeamScope};
use crate::data::message::EventMessage;
use crate::error::AppError;
use crate::error_chain::Chain;
use crate::ports::audit_log::AuditLog;
use crate::ports::event_handler::BatchOutcome;
use crate::ports::event_handler::{EventHandler, HandlerError};

/// Events buffered per slow subscriber before it starts missing some (it is told, see
/// [`broadcast::error::RecvError::Lagged`]).
pub(crate) const LIVE_FEED_CAPACITY: usize = 4096;

/// Broadcasts consumed events to subscribers.
#[derive(Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<EventMessage>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveFeed {
    /// A feed with no subscribers yet.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(LIVE_FEED_CAPACITY);
        Self { sender }
    }

    /// A new subscription, receiving events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EventMessage> {
        self.sender.subscribe()
    }
}

#[async_trait]
impl EventHandler for LiveFeed {
    async fn handle(&self, batch: &[EventMessage]) -> Result<BatchOutcome, HandlerError> {
        for message in batch {
            // No subscriber is not an error: the event is simply not watched right now.
            let _ = self.sender.send(message.clone());
        }
        Ok(BatchOutcome {
            applied: batch.len(),
            ..BatchOutcome::default()
        })
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

/// Owners remembered per subscription before the memory is cleared (it refills from the store).
const OWNER_CACHE: usize = 10_000;

/// Subscriptions to the live feed, scoped to the subscriber's teams like every read.
#[derive(Clone)]
pub struct LiveWatch {
    feed: LiveFeed,
    owners: Arc<dyn AuditLog>,
}

impl LiveWatch {
    /// Watches `feed`, learning the owner of aggregates it has not seen created from `owners`
    /// (the event store: an event is stored before it is on Kafka, so the owner is known).
    pub fn new(feed: LiveFeed, owners: Arc<dyn AuditLog>) -> Self {
        Self { feed, owners }
    }

    /// Events matching `watch` from now on, of the caller's teams only: another team's
    /// aggregate is silent, as one that does not exist. A `teams` filter outside the caller's
    /// teams is `FORBIDDEN`.
    pub fn watch(
        &self,
        principal: &Principal,
        watch: Watch,
    ) -> Result<BoxStream<'static, EventMessage>, AppError> {
        let scope = principal.scope(Action::ReadWork)?;
        let teams = match scope.narrow(watch.teams.as_deref())? {
            None => TeamScope::All,
            Some(mut teams) => {
                teams.sort();
                teams.dedup();
                TeamScope::Teams(teams)
            }
        };
        let filter = Filter {
            watch,
            teams,
            owners: self.owners.clone(),
            known: HashMap::new(),
        };
        let receiver = self.feed.subscribe();
        Ok(stream::unfold(
            (receiver, filter),
            |(mut receiver, mut filter)| async move {
                loop {
                    let message = match receiver.recv().await {
                        Ok(message) => message,
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "subscriber too slow; events skipped");
                            continue;
                        }
                        Err(RecvError::Closed) => return None,
                    };
                    if filter.admits(&message).await {
                        return Some((message, (receiver, filter)));
                    }
                }
            },
        )
        .boxed())
    }
}

/// One subscription's filter and its memory of owners.
struct Filter {
    watch: Watch,
    teams: TeamScope,
    owners: Arc<dyn AuditLog>,
    known: HashMap<String, Option<String>>,
}

impl Filter {
    async fn admits(&mut self, message: &EventMessage) -> bool {
        if message.aggregate_type != self.watch.aggregate_type {
            return false;
        }
        if let Some(id) = &self.watch.aggregate_id {
            if id != &message.aggregate_id {
                return false;
            }
        }
        if self.teams == TeamScope::All {
            return true;
        }
        match self.owner(message).await {
            Some(team) => self.teams.covers(&team),
            None => false,
        }
    }

    /// The team owning the message's aggregate: named by a creation event, else remembered,
    /// else read from the store (a failed read hides the event rather than leak it).
    async fn owner(&mut self, message: &EventMessage) -> Option<String> {
        if self.known.len() >= OWNER_CACHE {
            self.known.clear();
        }
        let created = matches!(
            message.event_type.as_str(),
            "TaskCreated" | "ReportRequested"
        );
        if created {
            let team = message.payload["teamId"].as_str().map(str::to_owned);
            self.known
                .insert(message.aggregate_id.clone(), team.clone());
            return team;
        }
        if let Some(team) = self.known.get(&message.aggregate_id) {
            return team.clone();
        }
        let team = match self
            .owners
            .team_of(&message.aggregate_type, &message.aggregate_id)
            .await
        {
            Ok(team) => team,
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "owner lookup failed; event withheld from subscriber");
                return None;
            }
        };
        self.known
            .insert(message.aggregate_id.clone(), team.clone());
        team
    }
}
