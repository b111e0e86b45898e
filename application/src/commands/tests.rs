//! The command loop, given/when/then, on the in-memory event store: expected versions, lost
//! races, idempotency keys and team scoping, with no database and no broker.

use std::sync::Arc;

use chronicle_domain::task::UpdateTaskDetails;
use uuid::Uuid;

use super::task::{NewTask, TaskCommands};
use crate::access::Principal;
use crate::data::event_log::StoredEvent;
use crate::data::hash_chain::{event_hash, GENESIS_HASH};
use crate::data::metadata::CommandMetadata;
use crate::error::AppError;
use crate::ports::event_store::IdempotencyRecord;
use crate::privacy::personal_data::PersonalData;
use crate::testing::event_store::MemoryEventStore;
use crate::testing::fixtures::sealed_personal_data;
use crate::topics::Topics;

const TEAM: &str = "team-a";

/// A task service on an empty in-memory store, and a member of `team-a`.
struct Given {
    store: Arc<MemoryEventStore>,
    tasks: TaskCommands,
    personal: Arc<PersonalData>,
    member: Principal,
}

fn given() -> Given {
    given_snapshots_every(0)
}

fn given_snapshots_every(snapshot_every: u64) -> Given {
    let store = Arc::new(MemoryEventStore::default());
    let personal = sealed_personal_data();
    Given {
        tasks: TaskCommands::new(
            store.clone(),
            Topics::new("test."),
            snapshot_every,
            personal.clone(),
        ),
        store,
        personal,
        member: member_of(TEAM),
    }
}

fn member_of(team: &str) -> Principal {
    Principal::new("alice", &["member".to_owned()], &[team.to_owned()])
}

fn new_task(title: &str) -> NewTask {
    NewTask {
        title: title.to_owned(),
        team_id: TEAM.to_owned(),
        ..NewTask::default()
    }
}

fn retitle(title: &str) -> UpdateTaskDetails {
    UpdateTaskDetails {
        title: Some(title.to_owned()),
        ..UpdateTaskDetails::default()
    }
}

fn with_key(key: &str) -> CommandMetadata {
    CommandMetadata {
        idempotency_key: Some(key.to_owned()),
        ..CommandMetadata::for_actor("alice")
    }
}

impl Given {
    /// A task created by the member; its id.
    async fn a_task(&self, title: &str) -> Uuid {
        self.a_task_from(new_task(title)).await
    }

    /// A task created by the member from `input`; its id.
    async fn a_task_from(&self, input: NewTask) -> Uuid {
        let created = self
            .tasks
            .create(&self.member, input, &CommandMetadata::for_actor("alice"))
            .await
            .expect("created");
        created.aggregate_id.parse().expect("a UUID")
    }

    async fn update(
        &self,
        task: Uuid,
        title: &str,
        expected_version: Option<u64>,
    ) -> Result<crate::commands::executor::CommandOutcome, AppError> {
        self.tasks
            .update(
                &self.member,
                task,
                retitle(title),
                expected_version,
                &CommandMetadata::for_actor("alice"),
            )
            .await
    }

    fn stream(&self, task: Uuid) -> Vec<StoredEvent> {
        self.store.log().stream("Task", &task.to_string()).to_vec()
    }

    /// The stream with its personal values opened, as readers see it.
    async fn opened_stream(&self, task: Uuid) -> Vec<StoredEvent> {
        let mut stream = self.stream(task);
        for event in &mut stream {
            self.personal.open(event).await.expect("opens");
        }
        stream
    }

    /// Lets a rival writer append its own retitling of `task` between the next command's load
    /// and its append, so that command loses the race. The rival stores in clear (an instance
    /// with sealing off, or from before it): the loser reads both kinds.
    fn a_rival_wins_the_next_race(&self, rival_title: &'static str) {
        self.store.before_next_append(move |log, batch| {
            let mut rival = batch.clone();
            for event in &mut rival.events {
                event.event_id = Uuid::now_v7();
                event.payload["TaskDetailsUpdated"]["title"] = rival_title.into();
                event.metadata = serde_json::json!({
                    "actor_id": "rival", "correlation_id": "c-rival", "causation_id": "r-rival"
                });
                event.hash = event_hash(event);
            }
            rival.idempotency = None;
            log.append(rival).expect("the rival's append");
        });
    }
}

#[tokio::test]
async fn a_created_task_is_one_event_chained_from_genesis_with_its_outbox_row() {
    let given = given();

    let task = given.a_task("Write the report").await;

    let stream = given.stream(task);
    assert_eq!(stream.len(), 1);
    assert_eq!(stream[0].event_type, "TaskCreated");
    assert_eq!(stream[0].sequence, 1);
    assert_eq!(stream[0].previous_hash, GENESIS_HASH);
    let log = given.store.log();
    assert_eq!(log.outbox.len(), 1);
    assert_eq!(log.outbox[0].event_id, stream[0].event_id);
    assert_eq!(log.outbox[0].topic, "test.chronicle.task.events");
    assert_eq!(log.teams.values().next(), Some(&Some(TEAM.to_owned())));
}

#[tokio::test]
async fn a_stale_expected_version_is_a_conflict_and_appends_nothing() {
    let given = given();
    let task = given.a_task("Draft").await;
    given
        .update(task, "Second", Some(1))
        .await
        .expect("at version 1");

    let error = given.update(task, "Third", Some(1)).await.unwrap_err();

    assert!(
        matches!(
            error,
            AppError::Conflict {
                expected: 1,
                actual: 2
            }
        ),
        "{error:?}"
    );
    assert_eq!(given.stream(task).len(), 2);
}

#[tokio::test]
async fn a_command_that_loses_a_race_is_decided_again_on_the_newer_state() {
    let given = given();
    let task = given.a_task("Draft").await;
    given.a_rival_wins_the_next_race("Rival's title");

    let outcome = given.update(task, "Mine", None).await.expect("retried");

    assert_eq!(outcome.version, 3);
    let stream = given.opened_stream(task).await;
    let titles: Vec<&str> = stream[1..]
        .iter()
        .map(|event| {
            event.payload["TaskDetailsUpdated"]["title"]
                .as_str()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(titles, ["Rival's title", "Mine"]);
    assert_eq!(
        stream[2].previous_hash, stream[1].hash,
        "chained after the rival"
    );
}

#[tokio::test]
async fn a_pinned_command_that_loses_a_race_is_a_conflict_naming_the_new_version() {
    let given = given();
    let task = given.a_task("Draft").await;
    given.a_rival_wins_the_next_race("Rival's title");

    let error = given.update(task, "Mine", Some(1)).await.unwrap_err();

    assert!(
        matches!(
            error,
            AppError::Conflict {
                expected: 1,
                actual: 2
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_answers_the_first_result_and_appends_nothing() {
    let given = given();
    let first = given
        .tasks
        .create(&given.member, new_task("Once"), &with_key("k-1"))
        .await
        .expect("created");

    let again = given
        .tasks
        .create(&given.member, new_task("Once"), &with_key("k-1"))
        .await
        .expect("answered");

    assert_eq!(again.aggregate_id, first.aggregate_id);
    assert_eq!(again.version, 1);
    assert!(again.replayed && !first.replayed);
    assert_eq!(given.store.log().streams.len(), 1, "one task, not two");
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_command_is_refused() {
    let given = given();
    let created = given
        .tasks
        .create(&given.member, new_task("Once"), &with_key("k-1"))
        .await
        .expect("created");
    let task: Uuid = created.aggregate_id.parse().expect("a UUID");

    let error = given
        .tasks
        .update(
            &given.member,
            task,
            retitle("Other"),
            None,
            &with_key("k-1"),
        )
        .await
        .unwrap_err();

    assert!(
        matches!(&error, AppError::IdempotencyKeyReused { command, aggregate_id }
            if command == "createTask" && *aggregate_id == task.to_string()),
        "{error:?}"
    );
    assert_eq!(given.stream(task).len(), 1);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_other_arguments_is_refused_and_writes_nothing() {
    let given = given();
    let first = given
        .tasks
        .create(&given.member, new_task("first"), &with_key("k-1"))
        .await
        .expect("created");

    let error = given
        .tasks
        .create(&given.member, new_task("DIFFERENT"), &with_key("k-1"))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, AppError::IdempotencyKeyReused { command, aggregate_id }
            if command == "createTask" && *aggregate_id == first.aggregate_id),
        "{error:?}"
    );
    assert_eq!(given.store.log().streams.len(), 1, "no second task");
    let retried = given
        .tasks
        .create(&given.member, new_task("first"), &with_key("k-1"))
        .await
        .expect("an exact retry still answers");
    assert!(retried.replayed);
    assert_eq!(retried.aggregate_id, first.aggregate_id);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_expected_version_is_refused() {
    let given = given();
    let task = given.a_task("Draft").await;
    given
        .tasks
        .update(
            &given.member,
            task,
            retitle("Second"),
            Some(1),
            &with_key("k-3"),
        )
        .await
        .expect("updated");

    let error = given
        .tasks
        .update(
            &given.member,
            task,
            retitle("Second"),
            Some(2),
            &with_key("k-3"),
        )
        .await
        .unwrap_err();

    assert!(
        matches!(error, AppError::IdempotencyKeyReused { .. }),
        "{error:?}"
    );
    assert_eq!(given.stream(task).len(), 2);
}

#[tokio::test]
async fn a_key_recorded_by_a_concurrent_request_first_answers_that_requests_result() {
    let given = given();
    let task = given.a_task("Draft").await;
    let winner = IdempotencyRecord {
        actor_id: "alice".to_owned(),
        key: "k-2".to_owned(),
        command: "updateTask".to_owned(),
        aggregate_id: task.to_string(),
        version: 2,
        // As recorded before fingerprints were: the command and target decide.
        request_fingerprint: None,
    };
    given.store.before_next_append(move |log, _| {
        log.idempotency
            .insert(("alice".to_owned(), "k-2".to_owned()), winner);
    });

    let outcome = given
        .tasks
        .update(&given.member, task, retitle("Mine"), None, &with_key("k-2"))
        .await
        .expect("answered");

    assert!(outcome.replayed);
    assert_eq!(outcome.version, 2);
    assert_eq!(
        given.stream(task).len(),
        1,
        "the losing request appended nothing"
    );
}

#[tokio::test]
async fn a_key_a_concurrent_different_request_recorded_first_refuses_this_one() {
    let given = given();
    let task = given.a_task("Draft").await;
    let winner = IdempotencyRecord {
        actor_id: "alice".to_owned(),
        key: "k-4".to_owned(),
        command: "updateTask".to_owned(),
        aggregate_id: task.to_string(),
        version: 2,
        // A fingerprint made the same way (v1), of another title.
        request_fingerprint: Some(format!("v1:{}", "0".repeat(64))),
    };
    given.store.before_next_append(move |log, _| {
        log.idempotency
            .insert(("alice".to_owned(), "k-4".to_owned()), winner);
    });

    let error = given
        .tasks
        .update(&given.member, task, retitle("Mine"), None, &with_key("k-4"))
        .await
        .unwrap_err();

    assert!(
        matches!(error, AppError::IdempotencyKeyReused { .. }),
        "{error:?}"
    );
    assert_eq!(
        given.stream(task).len(),
        1,
        "the refused request appended nothing"
    );
}

#[tokio::test]
async fn another_teams_task_is_answered_as_missing_and_cannot_be_created() {
    let given = given();
    let task = given.a_task("Team A's").await;
    let outsider = member_of("team-b");

    let change = given
        .tasks
        .update(
            &outsider,
            task,
            retitle("Mine"),
            None,
            &CommandMetadata::for_actor("bob"),
        )
        .await
        .unwrap_err();
    let create = given
        .tasks
        .create(
            &outsider,
            new_task("In team A"),
            &CommandMetadata::for_actor("bob"),
        )
        .await
        .unwrap_err();

    assert!(matches!(change, AppError::NotFound(_)), "{change:?}");
    assert!(matches!(create, AppError::Forbidden(_)), "{create:?}");
    assert_eq!(given.stream(task).len(), 1);
    assert_eq!(given.store.log().streams.len(), 1);
}

#[tokio::test]
async fn a_snapshot_is_taken_when_the_interval_is_crossed_and_loading_folds_from_it() {
    let given = given_snapshots_every(2);
    let task = given.a_task("Draft").await;
    assert!(given.store.log().snapshots.is_empty());

    given.update(task, "Second", None).await.expect("updated");
    given.update(task, "Third", None).await.expect("updated");

    let snapshot = given.store.log().snapshots.values().next().cloned();
    assert_eq!(snapshot.map(|s| s.last_sequence), Some(2));
    let loaded = given
        .tasks
        .executor()
        .load(&task.to_string())
        .await
        .expect("loaded");
    assert_eq!(loaded.version, 3);
    assert_eq!(loaded.aggregate.title, "Third");
}

#[tokio::test]
async fn personal_values_are_stored_sealed_and_read_back_in_clear() {
    let given = given();
    let input = NewTask {
        description: Some("about her contract".to_owned()),
        assignee_id: Some("u-assignee-9".to_owned()),
        watchers: Some(vec!["u-watcher-4".to_owned()]),
        ..new_task("Call Maria Keller")
    };
    let task = given.a_task_from(input).await;
    given
        .update(task, "Call Maria again", None)
        .await
        .expect("loads its sealed past");

    let stored = given.stream(task);
    let as_stored: String = stored
        .iter()
        .map(|event| format!("{} {}", event.payload, event.metadata))
        .collect();
    for planted in ["Maria", "contract", "alice", "u-assignee-9", "u-watcher-4"] {
        assert!(!as_stored.contains(planted), "{planted} is stored in clear");
    }
    for event in &stored {
        assert_eq!(
            event.hash,
            event_hash(event),
            "the hash covers the stored form"
        );
    }
    assert_eq!(stored[1].previous_hash, stored[0].hash);

    let opened = given.opened_stream(task).await;
    let created = &opened[0].payload["TaskCreated"];
    assert_eq!(created["title"], "Call Maria Keller");
    assert_eq!(created["assigneeId"], "u-assignee-9");
    assert_eq!(
        opened[1].payload["TaskDetailsUpdated"]["title"],
        "Call Maria again"
    );
    assert_eq!(opened[1].metadata["actor_id"], "alice");

    let envelope: serde_json::Value =
        serde_json::from_str(given.store.log().outbox[0].payload.get()).unwrap();
    assert_eq!(
        envelope["payload"]["title"], "Call Maria Keller",
        "consumers read the envelope in clear"
    );
    let pseudonym_of = |id: &'static str| {
        let keys = given.personal.keys().clone();
        async move { keys.find(id).await.unwrap().unwrap().pseudonym }
    };
    let alice = pseudonym_of("alice").await;
    assert_eq!(
        envelope["personalData"],
        serde_json::json!({
            "actorId": alice,
            "payload.creatorId": alice,
            "payload.title": alice,
            "payload.description": alice,
            "payload.assigneeId": pseudonym_of("u-assignee-9").await,
            "payload.watchers.0": pseudonym_of("u-watcher-4").await,
        }),
        "whose each value is, for consumers acting on an erasure"
    );
}

#[tokio::test]
async fn a_destroyed_key_erases_its_values_everywhere_and_changes_no_hash() {
    let given = given();
    let task = given.a_task("Call Maria Keller").await;
    let hashes: Vec<String> = given.stream(task).iter().map(|e| e.hash.clone()).collect();

    let pseudonym = given
        .personal
        .keys()
        .destroy("alice")
        .await
        .expect("destroyed")
        .expect("alice had a key");

    let opened = given.opened_stream(task).await;
    let marker = format!("erased:{pseudonym}");
    assert_eq!(opened[0].payload["TaskCreated"]["title"], marker.as_str());
    assert_eq!(
        opened[0].payload["TaskCreated"]["creatorId"],
        marker.as_str()
    );
    assert_eq!(opened[0].metadata["actor_id"], marker.as_str());
    let after: Vec<String> = given.stream(task).iter().map(|e| e.hash.clone()).collect();
    assert_eq!(after, hashes);
    assert!(given.stream(task).iter().all(|e| e.hash == event_hash(e)));
}

#[tokio::test]
async fn a_task_whose_assignee_was_erased_can_be_reassigned_and_stays_erased() {
    let given = given();
    let input = NewTask {
        assignee_id: Some("u-gone".to_owned()),
        ..new_task("Review")
    };
    let task = given.a_task_from(input).await;
    let pseudonym = given
        .personal
        .keys()
        .destroy("u-gone")
        .await
        .expect("destroyed")
        .expect("had a key");

    let reassigned = given
        .tasks
        .run(
            &given.member,
            task,
            chronicle_domain::task::TaskCommand::Assign {
                assignee_id: "u-next".to_owned(),
            },
            "assignTask",
            None,
            &CommandMetadata::for_actor("alice"),
        )
        .await;

    assert_eq!(reassigned.expect("reassigned").version, 2);
    let opened = given.opened_stream(task).await;
    let assigned = &opened[1].payload["TaskAssigned"];
    assert_eq!(assigned["assigneeId"], "u-next");
    assert_eq!(
        assigned["previousAssigneeId"],
        format!("erased:{pseudonym}").as_str(),
        "still erased, stored as the reference it was"
    );
    assert!(given.stream(task)[1]
        .payload
        .to_string()
        .contains(&format!("subject:{pseudonym}")));
}
