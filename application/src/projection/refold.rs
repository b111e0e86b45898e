//! Read-model rows folded again from the event store, as the events read now, and written over
//! the rows at the same version: how an erasure replaces the values in clear a projection
//! copied into its rows (the store's events read `erased:<pseudonym>` once the key is gone).

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::time_travel::apply;
use crate::error::AppError;
use crate::ports::audit_log::AuditLog;
use crate::ports::view_store::ViewStore;
use crate::privacy::personal_data::PersonalData;
use crate::projection::read_model::ReadModel;

/// A read model whose rows can be folded again from the store.
#[async_trait]
pub trait Refold: Send + Sync {
    /// The aggregate type its rows are of.
    fn aggregate_type(&self) -> &'static str;

    /// Folds these aggregates again from the store and replaces their rows; answers how many
    /// rows were written (an aggregate without events has none).
    async fn refold(&self, aggregate_ids: &[String]) -> Result<u64, AppError>;
}

/// [`Refold`] for read model `M`, through the same fold the live projection runs.
pub struct Refolder<M: ReadModel> {
    log: Arc<dyn AuditLog>,
    personal: Arc<PersonalData>,
    views: Arc<dyn ViewStore<M::View>>,
    model: PhantomData<fn() -> M>,
}

impl<M: ReadModel> Refolder<M> {
    /// Reading events from `log`, opened with `personal`, writing rows to `views`.
    pub fn new(
        log: Arc<dyn AuditLog>,
        personal: Arc<PersonalData>,
        views: Arc<dyn ViewStore<M::View>>,
    ) -> Self {
        Self {
            log,
            personal,
            views,
            model: PhantomData,
        }
    }
}

#[async_trait]
impl<M: ReadModel> Refold for Refolder<M> {
    fn aggregate_type(&self) -> &'static str {
        M::AGGREGATE_TYPE
    }

    async fn refold(&self, aggregate_ids: &[String]) -> Result<u64, AppError> {
        let mut rows = Vec::with_capacity(aggregate_ids.len());
        for id in aggregate_ids {
            let mut view = None;
            for mut record in self.log.stream(M::AGGREGATE_TYPE, id).await? {
                self.personal.open(&mut record.event).await?;
                view = Some(apply::<M>(view, &record.event)?);
            }
            rows.extend(view);
        }
        self.views.replace_many(&rows).await?;
        Ok(rows.len() as u64)
    }
}
