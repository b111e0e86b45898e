//! The in-process live feed: every event this instance's feed consumer reads is broadcast to
//! the GraphQL subscriptions of this instance. Subscriptions are fed by the event flow itself,
//! never by polling a read model.

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::message::EventMessage;
use crate::ports::{EventHandler, HandlerError};
use crate::projection::BatchOutcome;

/// Events buffered per slow subscriber before it starts missing some (it is told, see
/// [`broadcast::error::RecvError::Lagged`]).
pub const LIVE_FEED_CAPACITY: usize = 4096;

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
