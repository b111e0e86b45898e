//! Erasing a data subject (the `privacy` role, and `admin`).

use async_graphql::{Context, Object, SimpleObject, ID};
use chronicle_application::erasure::DataSubjectErasure as AppErasure;
use chrono::{DateTime, Utc};

use super::context::ContextExt;
use super::error::to_graphql;

/// What an erasure did, or, on a repeated request, what the first one did.
#[derive(SimpleObject)]
pub struct DataSubjectErasure {
    /// What the person's values read as from now on, everywhere: `erased:<pseudonym>`, the
    /// same for every event of theirs, so an auditor still sees that one person did them.
    pub subject_pseudonym: String,
    /// When the erasure was first requested.
    pub erased_at: DateTime<Utc>,
    /// Who first requested it.
    pub erased_by: String,
    /// Why, as they wrote it.
    pub reason: String,
    /// Tasks and reports that held a value of the person.
    pub streams: i64,
    /// Whether this is the answer of an earlier request for the same person: nothing more
    /// was erased now.
    pub replayed: bool,
}

impl From<AppErasure> for DataSubjectErasure {
    fn from(erasure: AppErasure) -> Self {
        Self {
            subject_pseudonym: format!("erased:{}", erasure.subject_pseudonym),
            erased_at: erasure.erased_at,
            erased_by: erasure.erased_by,
            reason: erasure.reason,
            streams: erasure.streams as i64,
            replayed: erasure.replayed,
        }
    }
}

/// Privacy mutations.
#[derive(Default)]
pub(crate) struct PrivacyMutation;

#[Object]
impl PrivacyMutation {
    /// Erases a person's personal data (the `privacy` role, or `admin`): the key their values
    /// are sealed under is destroyed, so their id, their words and their name in others'
    /// events read `erased:<pseudonym>` in every query, the audit trail and time travel, and
    /// the read models are rewritten. No stored event changes: every hash and proof stays
    /// valid. Asking again answers the first erasure (`replayed`); an id Chronicle holds
    /// nothing of is `NOT_FOUND`. docs/privacy.md says what is erased and what is not yet.
    async fn erase_data_subject(
        &self,
        ctx: &Context<'_>,
        subject_id: ID,
        reason: String,
    ) -> async_graphql::Result<DataSubjectErasure> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let metadata = request.metadata(None)?;
            ctx.services()
                .eraser
                .erase(principal, &subject_id, &reason, &metadata)
                .await
        };
        run.await
            .map(DataSubjectErasure::from)
            .map_err(|e| to_graphql(e, request))
    }
}
