//! What operators do with the dead letters of a consumer group (admin): list them, send them
//! back to that group once the cause is fixed (redrive), or discard them.
//!
//! Groups are named as operators know them (`chronicle-projections`,
//! `chronicle-report-worker`); the topic prefix of the deployment applies inside.

use std::sync::Arc;

use crate::access::{Action, Principal};
use crate::error::AppError;
use crate::ports::dead_letters::{DeadLetter, DeadLetterStore, Redrive};
use crate::ports::page::Page;
use crate::queries::page_size;
use crate::topics::Topics;

/// The dead letters of the service's consumer groups.
pub struct DeadLetterAdmin {
    store: Arc<dyn DeadLetterStore>,
    redrive: Arc<dyn Redrive>,
    /// Each group's name as operators write it, and its id under the topic prefix.
    groups: Vec<(String, String)>,
}

impl DeadLetterAdmin {
    /// Over `store`, sending back through `redrive`, for the consumer groups named `groups`
    /// under `topics`' prefix.
    pub fn new(
        store: Arc<dyn DeadLetterStore>,
        redrive: Arc<dyn Redrive>,
        topics: &Topics,
        groups: &[&str],
    ) -> Self {
        Self {
            store,
            redrive,
            groups: groups
                .iter()
                .map(|name| ((*name).to_owned(), topics.group(name)))
                .collect(),
        }
    }

    /// The group id of `name`; an unknown name is refused, naming the known ones.
    fn group(&self, name: &str) -> Result<&str, AppError> {
        self.groups
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, id)| id.as_str())
            .ok_or_else(|| {
                let known: Vec<&str> = self.groups.iter().map(|(n, _)| n.as_str()).collect();
                AppError::validation(
                    "group",
                    format!("unknown group; choose from {}", known.join(", ")),
                )
            })
    }

    /// A page of `group`'s dead letters (not discarded) in the order they were set aside.
    pub async fn list(
        &self,
        principal: &Principal,
        group: &str,
        first: Option<i64>,
        after: Option<i64>,
    ) -> Result<Page<DeadLetter>, AppError> {
        principal.scope(Action::Operate)?;
        let group = self.group(group)?;
        Ok(self.store.list(group, after, page_size(first)?).await?)
    }

    /// One dead letter of `group`, if it exists and was not discarded.
    pub async fn get(
        &self,
        principal: &Principal,
        group: &str,
        id: i64,
    ) -> Result<Option<DeadLetter>, AppError> {
        principal.scope(Action::Operate)?;
        let group = self.group(group)?;
        let page = self.store.list(group, Some(id - 1), 1).await?;
        Ok(page.items.into_iter().find(|letter| letter.id == id))
    }

    /// Sends `group`'s dead letters waiting for a redrive (those of `ids`, or every one) back
    /// to that group alone, in the order they were set aside (so per key, in their order);
    /// answers how many were sent. Each is marked with `principal` and the time; one the
    /// group rejects again is listed again with its attempts counted on.
    pub async fn redrive(
        &self,
        principal: &Principal,
        group: &str,
        ids: Option<&[i64]>,
    ) -> Result<u64, AppError> {
        principal.scope(Action::Operate)?;
        let group = self.group(group)?;
        let actor = principal.subject();
        let mut sent = 0;
        for letter in self.store.pending(group, ids).await? {
            self.store.mark_redriven(&[letter.id], actor).await?;
            if let Err(error) = self.redrive.send_back(&letter).await {
                // The rest stays behind it, in order, for the next redrive.
                self.store.unmark_redriven(&[letter.id]).await?;
                tracing::warn!(%group, sent, dead_letter = letter.id, "redrive stopped: the broker refused");
                return Err(error.into());
            }
            sent += 1;
        }
        tracing::info!(actor, %group, sent, ids = ?ids, "dead letters sent back to their group");
        Ok(sent)
    }

    /// Discards `ids` of `group`: they leave the list (the record of them stays); answers how
    /// many.
    pub async fn discard(
        &self,
        principal: &Principal,
        group: &str,
        ids: &[i64],
    ) -> Result<u64, AppError> {
        principal.scope(Action::Operate)?;
        let group = self.group(group)?;
        let discarded = self.store.discard(group, ids, principal.subject()).await?;
        tracing::info!(actor = principal.subject(), %group, discarded, ?ids, "dead letters discarded");
        Ok(discarded)
    }
}
