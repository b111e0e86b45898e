//! Chronicle keeps postgres-es's tables and columns so that the package on its design card can
//! still read what it stores. This test holds it to that: postgres-es's own
//! `PostgresEventRepository` loads a task Chronicle wrote through GraphQL, with the same
//! upcasters, into the same state Chronicle's API shows.

use chronicle_application::aggregates;
use chronicle_domain::task::{Task, TaskStatus};
use chronicle_tests::TestApp;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::EventStore;
use postgres_es::PostgresEventRepository;
use serde_json::json;

#[tokio::test]
async fn postgres_es_loads_a_task_that_chronicle_stored() {
    let app = TestApp::spawn().await.unwrap();
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

    let task = &loaded.aggregate;
    assert_eq!(task.title, "Read by postgres-es");
    assert_eq!(task.status, TaskStatus::InProgress);
    assert_eq!(task.assignee_id.as_ref().map(|a| a.as_str()), Some("u-7"));
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].sequence, 3);
    assert_eq!(
        events[0].metadata.get("actor_id").map(String::as_str),
        Some("u-admin"),
        "postgres-es reads Chronicle's metadata too"
    );
}
