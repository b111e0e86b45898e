//! Events made by the real command loop, for tests of what consumes them: a task created and
//! retitled, and its stream as the relay publishes it.

use std::sync::Arc;

use chronicle_domain::task::UpdateTaskDetails;
use uuid::Uuid;

use crate::access::Principal;
use crate::aggregates;
use crate::commands::{NewTask, TaskCommands};
use crate::data::message::EventMessage;
use crate::data::metadata::CommandMetadata;
use crate::privacy::personal_data::{PersonalData, Sealing};
use crate::testing::event_store::MemoryEventStore;
use crate::testing::subject_keys::MemorySubjectKeys;

/// Creates a task ("Draft") in `team-a` as a member, then retitles it `updates` times
/// ("Title 0", "Title 1", …); its id. The task is at version `updates + 1`.
pub(crate) async fn a_task_retitled(tasks: &TaskCommands, updates: usize) -> Uuid {
    let member = Principal::new("alice", &["member".to_owned()], &["team-a".to_owned()]);
    let metadata = CommandMetadata::for_actor("alice");
    let input = NewTask {
        title: "Draft".to_owned(),
        team_id: "team-a".to_owned(),
        ..NewTask::default()
    };
    let created = tasks
        .create(&member, input, &metadata)
        .await
        .expect("created");
    let id: Uuid = created.aggregate_id.parse().expect("a UUID");
    for n in 0..updates {
        let update = UpdateTaskDetails {
            title: Some(format!("Title {n}")),
            ..UpdateTaskDetails::default()
        };
        tasks
            .update(&member, id, update, None, &metadata)
            .await
            .expect("updated");
    }
    id
}

/// The messages of one task's stream in `store`, as the relay publishes them: the outbox's
/// envelopes (in clear; the stored events are sealed).
pub(crate) fn published_task(store: &MemoryEventStore, id: Uuid) -> Vec<EventMessage> {
    let id = id.to_string();
    let log = store.log();
    let mut messages: Vec<EventMessage> = log
        .outbox
        .iter()
        .map(|row| serde_json::from_str::<EventMessage>(row.payload.get()).expect("envelope"))
        .filter(|message| {
            message.aggregate_type == aggregates::TASK.type_name && message.aggregate_id == id
        })
        .collect();
    messages.sort_by_key(|message| message.sequence);
    messages
}

/// Personal data sealed under keys kept in memory, as the service seals it.
pub(crate) fn sealed_personal_data() -> Arc<PersonalData> {
    Arc::new(PersonalData::new(
        Arc::new(MemorySubjectKeys::default()),
        Sealing::On,
    ))
}
