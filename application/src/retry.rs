//! How a consumer treats a failing handler: which failures count as attempts, how long to wait
//! before the next one, and when to give a message up to the dead-letter topic. Pure, so the
//! rules are tested here without a broker; the consumer framework only waits and delivers.
//!
//! - `Transient`: counted; retried after an exponential pause; given up after `max_attempts`
//!   when bounded.
//! - `Unavailable` (the database is away): not counted, retried with its own growing pause for
//!   as long as the outage lasts, so an outage never dead-letters valid messages.
//! - `Paused` (a rebuild holds the projection): not counted, polled briskly so the projection
//!   resumes right after the swap.
//! - `Permanent`: given up at once.

use std::time::Duration;

use crate::ports::event_handler::HandlerError;

/// How often a paused projection's consumer tries again.
pub(crate) const PAUSED_POLL: Duration = Duration::from_millis(200);

/// A consumer's retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before a transiently failing message is given up; `None` retries forever.
    pub max_attempts: Option<u32>,
    /// First pause; it doubles per attempt.
    pub base_backoff: Duration,
    /// Longest pause.
    pub max_backoff: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Try again after at most this long (the consumer may shorten it by jitter).
    RetryAfter(Duration),
    /// Stop: the messages go to the dead-letter topic with this reason.
    GiveUp {
        /// The handler's reason.
        reason: String,
        /// Attempts counted.
        attempts: u32,
    },
}

/// The retry state of one delivery (a batch, or one message of a split batch).
#[derive(Debug, Clone)]
pub struct Retries {
    policy: RetryPolicy,
    attempts: u32,
    outage_retries: u32,
}

impl Retries {
    /// A delivery about to make its first attempt.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            attempts: 0,
            outage_retries: 0,
        }
    }

    /// Attempts counted so far, the one under way included (what a dead letter records).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Call before each attempt.
    pub fn begin_attempt(&mut self) {
        self.attempts += 1;
    }

    /// The next step after the attempt under way failed with `error`.
    pub fn after(&mut self, error: HandlerError) -> NextStep {
        match error {
            HandlerError::Permanent(reason) => NextStep::GiveUp {
                reason,
                attempts: self.attempts,
            },
            HandlerError::Paused(_) => {
                self.attempts -= 1;
                NextStep::RetryAfter(PAUSED_POLL)
            }
            HandlerError::Unavailable(_) => {
                self.attempts -= 1;
                self.outage_retries += 1;
                NextStep::RetryAfter(self.backoff(self.outage_retries))
            }
            HandlerError::Transient(reason) => {
                if self
                    .policy
                    .max_attempts
                    .is_some_and(|max| self.attempts >= max)
                {
                    return NextStep::GiveUp {
                        reason,
                        attempts: self.attempts,
                    };
                }
                NextStep::RetryAfter(self.backoff(self.attempts))
            }
        }
    }

    /// `base × 2^(n-1)`, capped.
    fn backoff(&self, n: u32) -> Duration {
        self.policy
            .base_backoff
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(self.policy.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDED: RetryPolicy = RetryPolicy {
        max_attempts: Some(3),
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(250),
    };

    fn transient() -> HandlerError {
        HandlerError::Transient("lock timeout".to_owned())
    }

    /// Runs attempts that all fail with `errors`, in turn; the steps taken.
    fn failing(policy: RetryPolicy, errors: Vec<HandlerError>) -> (Vec<NextStep>, u32) {
        let mut retries = Retries::new(policy);
        let mut steps = Vec::new();
        for error in errors {
            retries.begin_attempt();
            steps.push(retries.after(error));
        }
        (steps, retries.attempts())
    }

    #[test]
    fn transient_failures_back_off_doubling_to_the_cap_and_give_up_at_the_bound() {
        let (steps, attempts) = failing(BOUNDED, vec![transient(), transient(), transient()]);

        assert_eq!(
            steps,
            [
                NextStep::RetryAfter(Duration::from_millis(100)),
                NextStep::RetryAfter(Duration::from_millis(200)),
                NextStep::GiveUp {
                    reason: "lock timeout".to_owned(),
                    attempts: 3
                },
            ]
        );
        assert_eq!(attempts, 3);
    }

    #[test]
    fn without_a_bound_transient_failures_are_retried_forever_at_the_cap() {
        let unbounded = RetryPolicy {
            max_attempts: None,
            ..BOUNDED
        };
        let (steps, attempts) = failing(unbounded, (0..40).map(|_| transient()).collect());

        assert_eq!(attempts, 40);
        assert_eq!(
            steps.last(),
            Some(&NextStep::RetryAfter(Duration::from_millis(250)))
        );
    }

    #[test]
    fn an_outage_and_a_pause_count_no_attempt_however_long_they_last() {
        let mut errors: Vec<HandlerError> = (0..20)
            .map(|_| HandlerError::Unavailable("connection refused".to_owned()))
            .collect();
        errors.push(HandlerError::Paused("tasks".to_owned()));
        errors.push(transient());
        let (steps, attempts) = failing(BOUNDED, errors);

        assert_eq!(attempts, 1, "only the transient failure counted");
        assert!(steps[..20]
            .iter()
            .all(|step| matches!(step, NextStep::RetryAfter(_))));
        assert_eq!(steps[19], NextStep::RetryAfter(Duration::from_millis(250)));
        assert_eq!(steps[20], NextStep::RetryAfter(PAUSED_POLL));
        assert_eq!(steps[21], NextStep::RetryAfter(Duration::from_millis(100)));
    }

    #[test]
    fn a_permanent_failure_is_given_up_at_once() {
        let (steps, _) = failing(
            BOUNDED,
            vec![HandlerError::Permanent("not a task".to_owned())],
        );

        assert_eq!(
            steps,
            [NextStep::GiveUp {
                reason: "not a task".to_owned(),
                attempts: 1
            }]
        );
    }
}
