//! Read-model rows folded again from the event store, as the events read now, and written over
//! the rows at the same version: how an erasure replaces the values in clear a projection
//! copied into its rows (the store's events read `erased:<pseudonym>` once the key is gone).

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;

use crate::data::event_log::StoredEvent;
use crate::error::AppError;
use crate::ports::view_store::ViewStore;
use crate::projection::read_model::apply_stored;
use crate::projection::read_model::ReadModel;

/// A read model whose rows can be folded again from the store.
#[async_trait]
pub trait Refold: Send + Sync {
    /// The aggregate type its rows are of.
    fn aggregate_type(&self) -> &'static str;

    /// Folds whole streams again from `opened` (events of this type, already opened, stream
    /// after stream, each in sequence order) and replaces their rows; answers how many rows
    /// were written.
    async fn refold(&self, opened: &[StoredEvent]) -> Result<u64, AppError>;
}

/// [`Refold`] for read model `M`, through the same fold the live projection runs.
pub struct Refolder<M: ReadModel> {
    views: Arc<dyn ViewStore<M::View>>,
    model: PhantomData<fn() -> M>,
}

impl<M: ReadModel> Refolder<M> {
    /// Writing rows to `views`.
    pub fn new(views: Arc<dyn ViewStore<M::View>>) -> Self {
        Self {
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

    async fn refold(&self, opened: &[StoredEvent]) -> Result<u64, AppError> {
        let mut rows = Vec::new();
        for stream in opened.chunk_by(|a, b| a.aggregate_id == b.aggregate_id) {
            let mut view = None;
            for event in stream {
                view = Some(apply_stored::<M>(view, event)?);
            }
            rows.extend(view);
        }
        self.views.replace_many(&rows).await?;
        Ok(rows.len() as u64)
    }
}
