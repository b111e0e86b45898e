//! How many subscriptions may be open: per WebSocket connection, per subject (a client cannot
//! get around the first limit by opening more connections) and per instance (memory and the
//! store's reads stay bounded whoever asks). Past any of them, `LIMIT_EXCEEDED` naming it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chronicle_application::AppError;

/// The instance's counts of open subscriptions, shared by every connection.
#[derive(Debug)]
pub struct SubscriptionCounts {
    per_subject: usize,
    total: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_subject: HashMap<String, usize>,
}

impl SubscriptionCounts {
    /// At most `per_subject` open subscriptions per token subject, `total` in all.
    pub fn new(per_subject: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_subject,
            total,
            open: Mutex::default(),
        })
    }

    /// Takes one for `subject`, or says which limit is reached.
    fn take(&self, subject: &str) -> Result<(), AppError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.total {
            return Err(AppError::LimitExceeded(format!(
                "this instance serves at most {} subscriptions; retry later or on another instance",
                self.total
            )));
        }
        let mine = open.by_subject.get(subject).copied().unwrap_or(0);
        if mine >= self.per_subject {
            return Err(AppError::LimitExceeded(format!(
                "at most {} subscriptions per subject",
                self.per_subject
            )));
        }
        open.total += 1;
        open.by_subject.insert(subject.to_owned(), mine + 1);
        Ok(())
    }

    fn give_back(&self, subject: &str) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_subject.get_mut(subject) {
            *mine -= 1;
            if *mine == 0 {
                open.by_subject.remove(subject);
            }
        }
    }
}

/// The subscription slots of one WebSocket connection, whose subject is `subject`.
#[derive(Debug, Clone)]
pub struct SubscriptionSlots {
    open: Arc<AtomicUsize>,
    max: usize,
    subject: Arc<str>,
    counts: Arc<SubscriptionCounts>,
}

impl SubscriptionSlots {
    /// `max` slots, none taken, within the instance's `counts` for `subject`.
    pub fn new(max: usize, subject: &str, counts: Arc<SubscriptionCounts>) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            subject: subject.into(),
            counts,
        }
    }

    /// A slot, given back when the guard is dropped (the subscription's stream ends).
    pub(crate) fn take(&self) -> Result<SlotGuard, AppError> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            });
        if taken.is_err() {
            return Err(AppError::LimitExceeded(format!(
                "at most {} subscriptions per connection",
                self.max
            )));
        }
        if let Err(refused) = self.counts.take(&self.subject) {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(refused);
        }
        Ok(SlotGuard(self.clone()))
    }
}

/// Gives its slot back when the subscription's stream is dropped.
#[derive(Debug)]
pub(crate) struct SlotGuard(SubscriptionSlots);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.counts.give_back(&self.0.subject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_holds_and_a_closed_subscription_gives_its_slot_back() {
        let counts = SubscriptionCounts::new(3, 4);
        let alice_1 = SubscriptionSlots::new(2, "alice", counts.clone());
        let alice_2 = SubscriptionSlots::new(2, "alice", counts.clone());
        let bob = SubscriptionSlots::new(5, "bob", counts.clone());

        let a = alice_1.take().unwrap();
        let _b = alice_1.take().unwrap();
        let refused = alice_1.take().unwrap_err().to_string();
        assert!(refused.contains("per connection"), "{refused}");
        let _c = alice_2.take().unwrap();
        let refused = alice_2.take().unwrap_err().to_string();
        assert!(refused.contains("per subject"), "{refused}");
        let _d = bob.take().unwrap();
        let refused = bob.take().unwrap_err().to_string();
        assert!(refused.contains("at most 4 subscriptions"), "{refused}");

        drop(a);
        let _e = bob.take().expect("a slot given back is free again");
        assert!(alice_1.take().is_err(), "the instance is full again");
    }
}
