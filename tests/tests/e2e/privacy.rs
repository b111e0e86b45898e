//! The keys personal data is sealed under, in Postgres: one per data subject however many
//! requests race to make it, and gone from the database once destroyed, so what was sealed
//! under it can no longer be read (docs/privacy.md).

use chronicle_application::ports::subject_keys::SubjectKeys;
use chronicle_application::privacy::seal::{open, seal, SealError};
use chronicle_infrastructure::db;
use chronicle_infrastructure::subject_keys::PgSubjectKeys;

#[tokio::test]
async fn a_subject_has_one_key_and_a_destroyed_key_leaves_nothing_to_open_with() {
    let url = chronicle_tests::create_database().await.unwrap();
    let pool = db::connect(&url, 10).await.unwrap();
    db::migrate(&pool).await.unwrap();
    let keys = PgSubjectKeys::new(pool.clone());

    // Eight first uses at once: every caller seals under the one key that was kept.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.key_for("u-7").await.unwrap() })
        })
        .collect();
    let mut made = Vec::new();
    for racer in racers {
        made.push(racer.await.unwrap());
    }
    assert!(made.iter().all(|key| *key == made[0]), "one key for u-7");
    let maria = made.remove(0);
    let other = keys.key_for("u-8").await.unwrap();
    assert_ne!(other.pseudonym, maria.pseudonym);

    let place = "event 1 /TaskCreated/title";
    let sealed = seal(&maria.key, &maria.pseudonym, "Call Maria Keller", place);
    let found = keys.by_pseudonym(&maria.pseudonym).await.unwrap().unwrap();
    assert_eq!(found.subject_id, "u-7");
    assert_eq!(
        open(&found.key, &sealed, place).as_deref(),
        Ok("Call Maria Keller")
    );

    assert_eq!(
        keys.destroy("u-7").await.unwrap(),
        Some(maria.pseudonym.clone())
    );
    assert_eq!(keys.by_pseudonym(&maria.pseudonym).await.unwrap(), None);
    let (rows, key_bytes): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM subject_keys WHERE subject_id = 'u-7'),
                (SELECT count(*) FROM subject_keys WHERE data_key = $1)",
    )
    .bind(maria.key.expose().as_slice())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((rows, key_bytes), (0, 0), "no visible row holds the key");
    assert_eq!(keys.destroy("u-7").await.unwrap(), None);
    assert_eq!(
        keys.find("u-7").await.unwrap(),
        None,
        "a search makes no key"
    );
    assert_eq!(keys.find("u-8").await.unwrap(), Some(other.clone()));
    assert_eq!(
        keys.by_pseudonym(&other.pseudonym).await.unwrap(),
        Some(other.clone()),
        "another subject's key is untouched"
    );

    // New data of the same person is sealed under a new key: the old text stays unreadable.
    let again = keys.key_for("u-7").await.unwrap();
    assert_ne!(again.pseudonym, maria.pseudonym);
    assert_eq!(
        open(&again.key, &sealed, place),
        Err(SealError::DoesNotOpen)
    );
}

/// An append checks, in its one statement, that the keys it sealed under exist; a statement
/// that began before a key's deletion committed saw the key and may commit after it, with
/// values in clear in its outbox row. `destroy` answers only once such an append has ended, so
/// the erasure's rewrite of copies, which comes next, finds what it wrote.
#[tokio::test]
async fn a_destroyed_key_is_answered_only_after_the_appends_that_saw_it() {
    let url = chronicle_tests::create_database().await.unwrap();
    let pool = db::connect(&url, 10).await.unwrap();
    db::migrate(&pool).await.unwrap();
    let keys = PgSubjectKeys::new(pool.clone());
    let made = keys.key_for("u-7").await.unwrap();

    // What an append's statement holds while it runs: it has read the key and writes events
    // until it commits.
    let mut append = pool.begin().await.unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM subject_keys WHERE pseudonym = $1")
        .bind(&made.pseudonym)
        .fetch_one(&mut *append)
        .await
        .unwrap();
    assert_eq!(seen, 1);
    sqlx::query("LOCK TABLE events IN ROW EXCLUSIVE MODE")
        .execute(&mut *append)
        .await
        .unwrap();

    let destroying = tokio::spawn({
        let keys = keys.clone();
        async move { keys.destroy("u-7").await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !destroying.is_finished(),
        "destroy answered while an append that saw the key was still in flight"
    );
    assert_eq!(
        keys.by_pseudonym(&made.pseudonym).await.unwrap(),
        None,
        "the key is gone for every new reader meanwhile"
    );

    append.commit().await.unwrap();
    let destroyed = tokio::time::timeout(std::time::Duration::from_secs(5), destroying)
        .await
        .expect("destroy answers once the append has ended")
        .unwrap()
        .unwrap();
    assert_eq!(destroyed, Some(made.pseudonym));

    // With nothing in flight it answers at once.
    keys.key_for("u-8").await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(1), keys.destroy("u-8"))
        .await
        .expect("nothing to wait for")
        .unwrap();
}

/// What an auditor reads of one task's first event, and the chain's verdict.
async fn audited_creation(app: &chronicle_tests::TestApp, id: &str) -> serde_json::Value {
    chronicle_tests::settled_trail(|| {
        app.data(
            "query($id: ID!) {
           auditTrail(filter: {aggregateId: $id}) {
             edges { node { actorId payload erasedFields storedPayload hash } } }
           verifyAuditTrail(aggregateType: TASK, aggregateId: $id) { valid eventsChecked reason }
           task(id: $id, atVersion: 1) { title description assigneeId creatorId } }",
            serde_json::json!({"id": id}),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_service_stores_personal_values_sealed_and_a_destroyed_key_reads_as_erased() {
    // No key cache, so a key destroyed behind the service's back is gone for it at once.
    let app = chronicle_tests::TestApp::spawn_with(|s| {
        s.privacy_key_cache = std::time::Duration::ZERO;
    })
    .await
    .unwrap();
    let maria = app.token("u-maria-57", &["member"], &["team-a"]);
    let created = app
        .graphql_as(
            Some(&maria),
            "mutation { createTask(input: {title: \"Call Maria Keller\", teamId: \"team-a\",
               description: \"about her contract 4711\", assigneeId: \"u-assignee-58\"}) { id } }",
            serde_json::json!({}),
        )
        .await
        .unwrap();
    let id = created["data"]["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let stored: String =
        sqlx::query_scalar("SELECT string_agg(payload::text || metadata::text, ' ') FROM events")
            .fetch_one(&app.db)
            .await
            .unwrap();
    for planted in ["Maria", "4711", "u-maria-57", "u-assignee-58"] {
        assert!(
            !stored.contains(planted),
            "{planted} stored in clear: {stored}"
        );
    }

    let before = audited_creation(&app, &id).await;
    let node = &before["auditTrail"]["edges"][0]["node"];
    assert_eq!(node["actorId"], "u-maria-57", "{before}");
    assert_eq!(node["payload"]["title"], "Call Maria Keller");
    assert_eq!(node["erasedFields"], serde_json::json!([]));
    assert!(node["storedPayload"]["TaskCreated"]["title"]
        .as_str()
        .unwrap()
        .starts_with("pd1:"));
    assert_eq!(before["task"]["description"], "about her contract 4711");
    assert_eq!(before["verifyAuditTrail"]["valid"], true);
    let by_actor = chronicle_tests::settled_trail(|| {
        app.data(
            "{ auditTrail(filter: {actorId: \"u-maria-57\"}) { edges { node { aggregateId } } } }",
            serde_json::json!({}),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        by_actor["auditTrail"]["edges"][0]["node"]["aggregateId"],
        id.as_str()
    );

    // Destroying Maria's key: the values she wrote and her id are gone; the assignee's id and
    // every hash stay.
    let pseudonym = PgSubjectKeys::new(app.db.clone())
        .destroy("u-maria-57")
        .await
        .unwrap()
        .unwrap();
    let after = audited_creation(&app, &id).await;
    let marker = format!("erased:{pseudonym}");
    let node = &after["auditTrail"]["edges"][0]["node"];
    assert_eq!(node["actorId"], marker.as_str(), "{after}");
    assert_eq!(node["payload"]["title"], marker.as_str());
    assert_eq!(node["payload"]["assigneeId"], "u-assignee-58");
    assert_eq!(
        node["hash"],
        before["auditTrail"]["edges"][0]["node"]["hash"]
    );
    let erased: Vec<&str> = node["erasedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(erased.contains(&"metadata/actor_id"), "{erased:?}");
    assert_eq!(
        after["task"]["title"],
        marker.as_str(),
        "time travel: {after}"
    );
    // Every hash holds, but a key destroyed with no erasure event to say who did it and why
    // is itself tampering (an erasure, `eraseDataSubject`, records one first).
    assert_eq!(after["verifyAuditTrail"]["valid"], false, "{after}");
    assert!(
        after["verifyAuditTrail"]["reason"]
            .as_str()
            .unwrap()
            .contains("destroyed outside an erasure"),
        "{after}"
    );
    let by_marker = chronicle_tests::settled_trail(|| {
        app.data(
            "query($a: String!) { auditTrail(filter: {actorId: $a}) { edges { node { aggregateId } } } }",
            serde_json::json!({"a": marker}),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        by_marker["auditTrail"]["edges"][0]["node"]["aggregateId"],
        id.as_str()
    );
}
