//! The rebuilder's claim, pause, swap and abandoned-claim protocol, given/when/then on the
//! in-memory adapters: events made by the real command loop, rebuilt while a live projector
//! competes for the same rows.

use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::{Projection, Rebuilder};
use crate::commands::TaskCommands;
use crate::data::message::EventMessage;
use crate::error::AppError;
use crate::ports::event_handler::{EventHandler, HandlerError};
use crate::ports::projection_control::{ProjectionState, RebuildEvent};
use crate::projection::projector::Projector;
use crate::projection::read_model::ReadModel;
use crate::projection::task::TaskReadModel;
use crate::testing::event_store::MemoryEventStore;
use crate::testing::fixtures::{a_task_retitled, published_task, sealed_personal_data};
use crate::testing::projection_control::MemoryProjectionControl;
use crate::testing::view_store::MemoryViewStore;
use crate::topics::Topics;

/// A store holding tasks, the task read model (empty: it has never been built), a live
/// projector on it, and a rebuilder.
struct Given {
    store: Arc<MemoryEventStore>,
    tasks: TaskCommands,
    control: Arc<MemoryProjectionControl>,
    views: Arc<MemoryViewStore<TaskReadModel>>,
    projector: Projector<TaskReadModel>,
    rebuilder: Rebuilder,
}

async fn given() -> Given {
    let store = Arc::new(MemoryEventStore::default());
    let control = Arc::new(MemoryProjectionControl::default());
    let views = Arc::new(MemoryViewStore::<TaskReadModel>::guarded_by(
        control.clone(),
    ));
    control.add_tables(TaskReadModel::NAME, views.clone());
    let personal = sealed_personal_data();
    let rebuilder = Rebuilder::new(
        control.clone(),
        vec![Projection::of::<TaskReadModel>(views.clone())],
        personal.clone(),
    );
    rebuilder.register().await.expect("registered");
    Given {
        tasks: TaskCommands::new(store.clone(), Topics::new(""), 0, personal),
        projector: Projector::new(views.clone()),
        store,
        control,
        views,
        rebuilder,
    }
}

impl Given {
    /// A task created and retitled `updates` times; its id.
    async fn a_task(&self, updates: usize) -> Uuid {
        a_task_retitled(&self.tasks, updates).await
    }

    /// Hands everything the store holds to the rebuilder's snapshot, in position order.
    fn the_store_is_snapshotted(&self) {
        let log = self.store.log();
        let mut position = 0;
        let events: Vec<RebuildEvent> = log
            .streams
            .values()
            .flatten()
            .map(|event| {
                position += 1;
                RebuildEvent {
                    position,
                    event_id: event.event_id,
                    aggregate_type: event.aggregate_type.clone(),
                    aggregate_id: event.aggregate_id.clone(),
                    sequence: event.sequence,
                    event_type: event.event_type.clone(),
                    event_version: event.event_version.clone(),
                    payload: event.payload.to_string(),
                    recorded_at: event.recorded_at,
                    sealed: event.metadata["sealed"].as_str().map(str::to_owned),
                    actor_id: event.metadata["actor_id"].as_str().map(str::to_owned),
                }
            })
            .collect();
        self.control.store_events(events);
    }

    /// The live messages of one task, as the relay publishes them.
    fn messages_of(&self, id: Uuid) -> Vec<EventMessage> {
        published_task(&self.store, id)
    }

    fn state(&self) -> ProjectionState {
        self.control.status("tasks").expect("registered").state
    }
}

#[tokio::test]
async fn a_rebuild_folds_the_store_into_rows_swaps_them_in_and_ends_live_at_its_version() {
    let given = given().await;
    let first = given.a_task(2).await;
    let second = given.a_task(0).await;
    given.the_store_is_snapshotted();
    let seen = Arc::new(Mutex::new(Vec::new()));

    let summary = given
        .rebuilder
        .rebuild("tasks", &{
            let seen = seen.clone();
            move |progress| {
                seen.lock()
                    .expect("lock")
                    .push((progress.done, progress.total))
            }
        })
        .await
        .expect("rebuilt");

    assert_eq!((summary.events, summary.rows, summary.failures), (4, 2, 0));
    assert_eq!(given.views.row(first).map(|row| row.version), Some(3));
    assert_eq!(given.views.row(second).map(|row| row.version), Some(1));
    let status = given.control.status("tasks").expect("registered");
    assert_eq!(status.state, ProjectionState::Live);
    assert_eq!(status.version, TaskReadModel::VERSION);
    assert_eq!(status.position, 4);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.first(), Some(&(0, 4)));
    assert_eq!(seen.last(), Some(&(4, 4)));
}

#[tokio::test]
async fn while_a_rebuild_holds_the_claim_live_writes_wait_and_a_second_rebuild_is_refused() {
    let given = given().await;
    let task = given.a_task(1).await;
    given.the_store_is_snapshotted();

    let claimed = given.rebuilder.claim("tasks").await.expect("claimed");

    let live = given.projector.handle(&given.messages_of(task)).await;
    assert!(matches!(live, Err(HandlerError::Paused(_))), "{live:?}");
    let second = given.rebuilder.claim("all").await;
    assert!(
        matches!(&second, Err(AppError::InvalidTransition(reason)) if reason.contains("already being rebuilt")),
        "{second:?}"
    );
    assert_eq!(given.state(), ProjectionState::Rebuilding);

    given
        .rebuilder
        .finish(claimed, &|_| {})
        .await
        .expect("rebuilt");
    given
        .projector
        .handle(&given.messages_of(task))
        .await
        .expect("live again");
    assert_eq!(given.views.row(task).map(|row| row.version), Some(2));
}

#[tokio::test]
async fn a_rebuild_whose_holder_died_is_taken_back_by_the_live_writer_and_cannot_swap() {
    let given = given().await;
    let task = given.a_task(1).await;
    given.the_store_is_snapshotted();
    let claimed = given.rebuilder.claim("tasks").await.expect("claimed");

    given.control.lose_claims();
    given
        .projector
        .handle(&given.messages_of(task))
        .await
        .expect("the live writer takes the projection back");
    let finished = given.rebuilder.finish(claimed, &|_| {}).await;

    assert!(
        matches!(&finished, Err(AppError::Internal { context, .. }) if context.contains("lost its claim")),
        "{finished:?}"
    );
    assert_eq!(given.state(), ProjectionState::Live);
    assert_eq!(given.views.row(task).map(|row| row.version), Some(2));
    given
        .rebuilder
        .rebuild("tasks", &|_| {})
        .await
        .expect("a new rebuild may claim it");
}

#[tokio::test]
async fn a_failed_rebuild_is_abandoned_with_its_reason_and_the_live_rows_untouched() {
    let given = given().await;
    let task = given.a_task(1).await;
    given
        .projector
        .handle(&given.messages_of(task))
        .await
        .expect("live rows");
    given.the_store_is_snapshotted();
    given.control.fail_next_snapshot("connection reset");

    let failed = given.rebuilder.rebuild("tasks", &|_| {}).await;

    assert!(failed.is_err());
    let status = given.control.status("tasks").expect("registered");
    assert_eq!(status.state, ProjectionState::Live);
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("connection reset")),
        "{status:?}"
    );
    assert_eq!(given.views.row(task).map(|row| row.version), Some(2));
    assert!(given.views.shadow_rows().is_empty());
}

#[tokio::test]
async fn an_operator_pauses_a_live_projection_and_resumes_only_a_paused_one() {
    let given = given().await;
    let task = given.a_task(0).await;

    given
        .rebuilder
        .set_paused("tasks", true)
        .await
        .expect("paused");
    let live = given.projector.handle(&given.messages_of(task)).await;
    let again = given.rebuilder.set_paused("tasks", true).await;
    given
        .rebuilder
        .set_paused("tasks", false)
        .await
        .expect("resumed");
    let resumed_twice = given.rebuilder.set_paused("tasks", false).await;

    assert!(matches!(live, Err(HandlerError::Paused(_))), "{live:?}");
    assert!(
        matches!(again, Err(AppError::InvalidTransition(_))),
        "{again:?}"
    );
    assert!(
        matches!(resumed_twice, Err(AppError::InvalidTransition(_))),
        "{resumed_twice:?}"
    );
    given
        .projector
        .handle(&given.messages_of(task))
        .await
        .expect("live again");
    assert_eq!(given.views.row(task).map(|row| row.version), Some(1));
}
