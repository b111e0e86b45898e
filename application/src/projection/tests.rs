//! The live projector, given/when/then, on in-memory adapters: events made by the real command
//! loop, folded into the task read model; redeliveries skipped by sequence, gaps recorded,
//! poison rejected, a paused read model waited for.

use std::sync::Arc;

use uuid::Uuid;

use super::projector::Projector;
use super::task::TaskReadModel;
use crate::commands::TaskCommands;
use crate::data::message::EventMessage;
use crate::ports::event_handler::{EventHandler, HandlerError};
use crate::testing::event_store::MemoryEventStore;
use crate::testing::fixtures::{a_task_retitled, published_task, sealed_personal_data};
use crate::testing::view_store::MemoryViewStore;
use crate::topics::Topics;

/// The messages of one task that was created and then retitled `updates` times, as the relay
/// publishes them.
async fn a_task_with_updates(updates: usize) -> (Uuid, Vec<EventMessage>) {
    let store = Arc::new(MemoryEventStore::default());
    let tasks = TaskCommands::new(store.clone(), Topics::new(""), 0, sealed_personal_data());
    let id = a_task_retitled(&tasks, updates).await;
    (id, published_task(&store, id))
}

fn a_projector() -> (
    Arc<MemoryViewStore<TaskReadModel>>,
    Projector<TaskReadModel>,
) {
    let views = Arc::new(MemoryViewStore::<TaskReadModel>::default());
    (views.clone(), Projector::new(views))
}

#[tokio::test]
async fn a_stream_in_order_becomes_one_row_at_its_last_version() {
    let (id, messages) = a_task_with_updates(2).await;
    let (views, projector) = a_projector();

    let outcome = projector.handle(&messages).await.expect("applied");

    assert_eq!(outcome.applied, 3);
    let row = views.row(id).expect("a row");
    assert_eq!(row.version, 3);
    assert_eq!(row.state.title, "Title 1");
}

#[tokio::test]
async fn redelivered_events_are_skipped_and_leave_the_row_as_it_was() {
    let (id, messages) = a_task_with_updates(2).await;
    let (views, projector) = a_projector();
    projector.handle(&messages).await.expect("applied");

    let outcome = projector.handle(&messages[1..]).await.expect("handled");

    assert_eq!((outcome.applied, outcome.skipped), (0, 2));
    assert_eq!(views.row(id).map(|row| row.version), Some(3));
    assert!(views.failures().is_empty());
}

#[tokio::test]
async fn an_event_after_a_missing_one_is_recorded_as_a_gap_and_not_applied() {
    let (id, messages) = a_task_with_updates(2).await;
    let (views, projector) = a_projector();

    let outcome = projector
        .handle(&[messages[0].clone(), messages[2].clone()])
        .await
        .expect("handled");

    assert_eq!(outcome.applied, 1);
    assert_eq!(views.row(id).map(|row| row.version), Some(1));
    let failures = views.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].event_id, messages[2].event_id);
    assert_eq!(failures[0].reason, "sequence 3 does not follow version 1");
}

#[tokio::test]
async fn an_unreadable_event_is_rejected_with_its_reason_and_the_rest_applied() {
    let (id, mut messages) = a_task_with_updates(1).await;
    let (views, projector) = a_projector();
    messages[1].payload = serde_json::json!({"title": 42});

    let outcome = projector.handle(&messages).await.expect("handled");

    assert_eq!(outcome.applied, 1);
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].0, 1);
    assert!(
        outcome.rejected[0]
            .1
            .starts_with("cannot read TaskDetailsUpdated"),
        "{:?}",
        outcome.rejected
    );
    assert_eq!(views.row(id).map(|row| row.version), Some(1));
}

#[tokio::test]
async fn events_of_other_aggregate_types_are_not_this_projections() {
    let (_, mut messages) = a_task_with_updates(0).await;
    let (views, projector) = a_projector();
    messages[0].aggregate_type = "Report".to_owned();

    let outcome = projector.handle(&messages).await.expect("handled");

    assert_eq!((outcome.applied, outcome.skipped), (0, 0));
    assert!(outcome.rejected.is_empty());
    assert!(views.is_empty());
}

#[tokio::test]
async fn a_paused_read_model_makes_the_batch_wait_and_applies_it_once_resumed() {
    let (id, messages) = a_task_with_updates(1).await;
    let (views, projector) = a_projector();
    views.set_paused(true);

    let error = projector.handle(&messages).await.unwrap_err();
    assert!(
        matches!(&error, HandlerError::Paused(name) if name == "tasks"),
        "{error:?}"
    );
    assert!(views.is_empty());

    views.set_paused(false);
    projector.handle(&messages).await.expect("applied");
    assert_eq!(views.row(id).map(|row| row.version), Some(2));
}
