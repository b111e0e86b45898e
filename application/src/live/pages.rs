//! Pages of the store read up to the tail's settled position, for the audit trail: a page
//! never shows an event past one that is still committing, so a cursor taken from a page (and
//! handed to the next page or to a subscription) never passes over an event that appears later.
//!
//! A page first waits, briefly, for every event committed before it was asked for to settle,
//! so a client reads its own writes.

use std::time::Duration;

use crate::error::AppError;
use crate::ports::audit_log::AuditFilter;
use crate::ports::event_feed::FeedRecord;

use super::LiveFeed;

/// How long a page waits for the events committed before it to settle. Past it (a transaction
/// running long on the server holds every position back) the page shows what is settled; the
/// rest follows on the next page once that transaction ends.
pub(crate) const PAGE_PATIENCE: Duration = Duration::from_secs(2);

/// Why a page cannot be served by an instance that has proved no position final yet.
const NOTHING_PROVED: &str = "the audit trail is not available yet: no position of the event \
    store has been proved final since this instance started (a transaction running long on \
    the database server holds it back); retry shortly";

impl LiveFeed {
    /// Events matching `filter` after position `after`, at most `limit`, in position order,
    /// up to the settled position: every event committed before the call, unless a long
    /// transaction held them back for [`PAGE_PATIENCE`].
    pub(crate) async fn final_page(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FeedRecord>, AppError> {
        let top = self.shared.store.top().await?;
        let settled_now = *self.shared.settled.borrow();
        // Behind the store's top (commits settling, or a long transaction elsewhere): a page
        // that fills below what is settled is final as it is, and old history never waits.
        if let Some(settled) = settled_now.filter(|settled| *settled > after && *settled < top) {
            let records = self
                .shared
                .store
                .read(filter, after, settled, limit)
                .await?;
            if records.len() == limit {
                return Ok(records);
            }
        }
        // At once when the settled position already reached the top (an idle store).
        let through = self
            .settled_up_to(top, PAGE_PATIENCE)
            .await
            .ok_or_else(|| AppError::Unavailable(NOTHING_PROVED.into()))?;
        Ok(self
            .shared
            .store
            .read(filter, after, through, limit)
            .await?)
    }

    /// The settled position once it reaches `position`, or what it is after `patience`
    /// (`None` while the tail has proved nothing). Waiting holds the tail to its quick pace.
    pub(crate) async fn settled_up_to(&self, position: i64, patience: Duration) -> Option<i64> {
        let mut settled = self.shared.settled.subscribe();
        let reached = |settled: &Option<i64>| settled.is_some_and(|s| s >= position);
        if !reached(&settled.borrow()) {
            self.shared.wake.notify_one();
            // Past the patience, or with the tail gone, the page makes do with what is settled.
            let _ = tokio::time::timeout(patience, settled.wait_for(reached)).await;
        }
        let now = *settled.borrow();
        now
    }
}
