//! Chronicle keeps postgres-es's tables and columns so that the package on its design card can
//! still read what it stores. This test holds it to that: postgres-es's own
//! `PostgresEventRepository` loads a task Chronicle wrote through GraphQL, with the same
//! upcasters. With sealing off it is the state Chronicle's API shows; with sealing on (the
//! default) every event still loads, its personal values sealed, and they open with the
//! subjects' keys.

use chronicle_application::aggregates;
use chronicle_domain::task::{Task, TaskStatus};
use chronicle_tests::TestApp;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use serde_json::json;

/// A task created, assigned to u-7 and started through GraphQL, as postgres-es loads it.
async fn loaded_by_postgres_es(app: &TestApp) -> (String, Task, Vec<EventEnvelope<Task>>) {
    let id = app
        .create_task("Read by postgres-es", "team-a")
        .await
        .unwrap();
    for mutation in [
        "mutation($id: ID!) { assignTask(id: $id, assigneeId: \"u-7\") { version } }",
        "mutation($id: ID!) { startTask(id: $id) { version } }",
    ] {
        app.data(mutation, json!({"id": id})).await.unwrap();
    }
    let repository = PostgresEventRepository::new(app.db.clone());
    let store = PersistedEventStore::<_, Task>::new_event_store(repository)
        .with_upcasters((aggregates::TASK.upcasters)());
    let loaded = store.load_aggregate(&id).await.unwrap();
    let events = store.load_events(&id).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].sequence, 3);
    (id, loaded.aggregate, events)
}

#[tokio::test]
async fn postgres_es_loads_a_task_that_chronicle_stored_in_clear() {
    let app = TestApp::spawn_with(|s| s.seal_personal_data = false)
        .await
        .unwrap();
    let (_, task, events) = loaded_by_postgres_es(&app).await;

    assert_eq!(task.title, "Read by postgres-es");
    assert_eq!(task.status, TaskStatus::InProgress);
    assert_eq!(task.assignee_id.as_ref().map(|a| a.as_str()), Some("u-7"));
    assert_eq!(
        events[0].metadata.get("actor_id").map(String::as_str),
        Some("u-admin"),
        "postgres-es reads Chronicle's metadata too"
    );
}

#[tokio::test]
async fn postgres_es_loads_a_sealed_task_whose_values_open_with_the_subjects_keys() {
    let app = TestApp::spawn().await.unwrap();
    let (id, task, events) = loaded_by_postgres_es(&app).await;

    assert_eq!(task.status, TaskStatus::InProgress, "the shapes still load");
    assert!(task.title.starts_with("pd1:"), "{}", task.title);
    assert_eq!(
        task.assignee_id.as_ref().map(|a| a.as_str().to_owned()),
        Some(app.stored_as("u-7").await)
    );
    assert_eq!(
        events[0].metadata.get("actor_id"),
        Some(&app.stored_as("u-admin").await)
    );

    // Chronicle opens the same stored events with the subjects' keys.
    let trail = chronicle_tests::settled_trail(|| {
        app.data(
            "query($id: ID!) { auditTrail(filter: {aggregateId: $id}) { edges { node { actorId payload } } } }",
            json!({"id": id}),
        )
    })
    .await
    .unwrap();
    let created = &trail["auditTrail"]["edges"][0]["node"];
    assert_eq!(
        created["payload"]["title"], "Read by postgres-es",
        "{trail}"
    );
    assert_eq!(created["actorId"], "u-admin", "{trail}");
}
