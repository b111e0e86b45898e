//! Erasing a person (`eraseDataSubject`, `chronicle erase`): afterwards no query, audit trail,
//! time travel or table shows what they wrote or their id, every proof still verifies, and
//! asking again answers the first erasure (docs/privacy.md).

use std::time::Duration;

use chronicle_application::aggregates;
use chronicle_application::topics::Topics;
use chronicle_tests::{brokers, chronicle_binary, error_code, read_topic, settled_trail, TestApp};
use serde_json::{json, Value};

/// Distinctive strings planted in every personal field a member can fill.
pub(crate) const MARIA: &str = "u-plant-maria-71";
pub(crate) const TITLE: &str = "Call PLANTKELLER about the contract";
pub(crate) const DESCRIPTION: &str = "PLANTDESC her number is +49 171 PLANT";
pub(crate) const RESULT: &str = "PLANTRESULT spoke to her";
/// Each holds a letter past `f` or a `+`, so no hash, id or trace id in a dump can hold one by
/// chance (a bare "0171" once matched a random trace id).
pub(crate) const PLANTED: [&str; 5] = [
    MARIA,
    "PLANTKELLER",
    "PLANTDESC",
    "PLANTRESULT",
    "+49 171 PLANT",
];

pub(crate) const ERASE: &str = "mutation($s: ID!, $r: String!) {
    eraseDataSubject(subjectId: $s, reason: $r) {
      subjectPseudonym erasedAt erasedBy reason streams replayed } }";

pub(crate) fn assert_nothing_planted(what: &str, text: &str) {
    for planted in PLANTED {
        assert!(
            !text.contains(planted),
            "{what} still shows {planted}: {text}"
        );
    }
}

/// Everything an auditor and a member can read of `tasks`, as one JSON text.
pub(crate) async fn everything_readable(app: &TestApp, tasks: &[&str]) -> String {
    let mut seen = String::new();
    for id in tasks {
        let answer = app
            .data(
                "query($id: ID!) {
                   task(id: $id) { title description creatorId assigneeId result
                     history { edges { node { actorId payload storedPayload storedMetadata } } } }
                   first: task(id: $id, atVersion: 1) { title description creatorId assigneeId }
                   now: task(id: $id, asOf: \"2999-01-01T00:00:00Z\") { title result }
                   verifyAuditTrail(aggregateType: TASK, aggregateId: $id) { valid reason } }",
                json!({"id": id}),
            )
            .await
            .unwrap();
        assert_eq!(answer["verifyAuditTrail"]["valid"], true, "{answer}");
        seen.push_str(&answer.to_string());
    }
    let lists = app
        .data(
            "query($a: String!) {
               search: tasks(filter: {text: \"PLANTKELLER\"}) { edges { node { id } } }
               assigned: tasks(filter: {assigneeId: $a}) { edges { node { id } } }
               trail: auditTrail(filter: {actorId: $a}) { edges { node { aggregateId payload } } } }",
            json!({"a": MARIA}),
        )
        .await
        .unwrap();
    seen.push_str(&lists.to_string());
    seen
}

/// Maria writes a task (with an idempotency key), starts and completes it; `bob` creates a
/// task assigned to her. Answers her task's id and Bob's, once both are projected.
pub(crate) async fn plant(app: &TestApp, bob: &str) -> (String, String) {
    let maria = app.token(MARIA, &["member"], &["team-a"]);
    let bob = app.token(bob, &["member"], &["team-a"]);
    let created = app
        .graphql_as(
            Some(&maria),
            "mutation($t: String!, $d: String!) { createTask(input: {title: $t, description: $d,
               teamId: \"team-a\", idempotencyKey: \"maria-plant-1\"}) { id } }",
            json!({"t": TITLE, "d": DESCRIPTION}),
        )
        .await
        .unwrap();
    let hers = created["data"]["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for mutation in [
        "mutation($id: ID!) { startTask(id: $id) { version } }",
        "mutation($id: ID!, $r: String!) { completeTask(id: $id, result: $r) { version } }",
    ] {
        let body = app
            .graphql_as(Some(&maria), mutation, json!({"id": hers, "r": RESULT}))
            .await
            .unwrap();
        assert!(body["errors"].is_null(), "{body}");
    }
    let created = app
        .graphql_as(
            Some(&bob),
            "mutation($a: String!) { createTask(input: {title: \"Bob's review\",
               teamId: \"team-a\", assigneeId: $a}) { id } }",
            json!({"a": MARIA}),
        )
        .await
        .unwrap();
    let bobs = created["data"]["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_version(&hers, 3).await.unwrap();
    app.wait_for_version(&bobs, 1).await.unwrap();
    (hers, bobs)
}

pub(crate) fn pg_dump(app: &TestApp) -> String {
    let output = std::process::Command::new("pg_dump")
        .arg(app.settings.database_url.expose())
        .output()
        .expect("pg_dump runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn an_erased_person_is_shown_nowhere_and_every_proof_still_verifies() {
    let app = TestApp::spawn().await.unwrap();
    let (hers, bobs) = plant(&app, "u-bob-72").await;
    assert!(
        everything_readable(&app, &[&hers, &bobs])
            .await
            .contains("PLANTKELLER"),
        "planted before"
    );
    // A dead letter and a projection failure hold a copy of her first event, in clear, as
    // consumers set them aside.
    let (event_id, envelope): (uuid::Uuid, Value) = sqlx::query_as(
        "SELECT e.event_id, o.payload FROM events e JOIN outbox o ON o.event_id = e.event_id
         WHERE e.aggregate_id = $1 AND e.sequence = 1",
    )
    .bind(&hers)
    .fetch_one(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO dead_letters (consumer_group, original_topic, original_partition,
             original_offset, header_names, header_values, payload, reason, attempts)
         VALUES ('g', 't', 0, 1, ARRAY['ce_id'], ARRAY[convert_to($1::text, 'UTF8')],
                 convert_to($2::text, 'UTF8'), $3, 1)",
    )
    .bind(event_id)
    .bind(&envelope)
    .bind(format!("cannot apply {TITLE}"))
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO projection_failures (projection, event_id, reason, event)
         VALUES ('tasks', $1, $2, $3)",
    )
    .bind(event_id)
    .bind(format!("invalid value: {DESCRIPTION}"))
    .bind(&envelope)
    .execute(&app.db)
    .await
    .unwrap();
    let dump = pg_dump(&app);
    assert!(
        PLANTED.iter().all(|planted| dump.contains(planted)),
        "every planted value is in the database before"
    );

    // Only the privacy role (or admin) erases.
    let member = app.token("u-m-73", &["member", "auditor"], &["team-a"]);
    let refused = app
        .graphql_as(
            Some(&member),
            ERASE,
            json!({"s": MARIA, "r": "ticket GDPR-42"}),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&refused), Some("FORBIDDEN"), "{refused}");
    let officer = app.token("u-dpo-74", &["privacy"], &[]);
    let unknown = app
        .graphql_as(
            Some(&officer),
            ERASE,
            json!({"s": "u-nobody-75", "r": "ticket GDPR-43"}),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&unknown), Some("NOT_FOUND"), "{unknown}");

    let erased = app
        .graphql_as(
            Some(&officer),
            ERASE,
            json!({"s": MARIA, "r": "ticket GDPR-42"}),
        )
        .await
        .unwrap();
    let erasure = &erased["data"]["eraseDataSubject"];
    assert_eq!(erasure["replayed"], false, "{erased}");
    assert_eq!(erasure["erasedBy"], "u-dpo-74");
    assert_eq!(erasure["streams"], 2, "her task and Bob's: {erased}");
    let marker = erasure["subjectPseudonym"].as_str().unwrap().to_owned();
    assert!(marker.starts_with("erased:"), "{marker}");

    // Every read surface shows markers; the chains still verify.
    let seen = everything_readable(&app, &[&hers, &bobs]).await;
    assert_nothing_planted("the API", &seen);
    let now = app
        .data(
            "query($id: ID!, $b: ID!) { task(id: $id) { title creatorId result }
               bobs: task(id: $b) { title assigneeId } }",
            json!({"id": hers, "b": bobs}),
        )
        .await
        .unwrap();
    assert_eq!(now["task"]["title"], marker.as_str(), "{now}");
    assert_eq!(now["task"]["creatorId"], marker.as_str());
    assert_eq!(now["bobs"]["title"], "Bob's review", "Bob's words stay");
    assert_eq!(now["bobs"]["assigneeId"], marker.as_str());
    // Three events of one unknown person (the trail shows them once older transactions
    // anywhere in the cluster have ended).
    chronicle_tests::eventually(Duration::from_secs(20), || async {
        let by_marker = app
            .data(
                "query($a: String!) { auditTrail(filter: {actorId: $a}) { edges { node { eventType } } } }",
                json!({"a": marker}),
            )
            .await?;
        Ok((by_marker["auditTrail"]["edges"].as_array().map(Vec::len) == Some(3)).then_some(()))
    })
    .await
    .expect("one unknown person did three things");

    // The erasure is itself in the history: chained, attributed to the officer, published.
    let erasures = settled_trail(|| {
        app.data(
            "{ auditTrail(filter: {aggregateType: DATA_SUBJECT}) {
                 edges { node { aggregateId eventType actorId payload } } } }",
            json!({}),
        )
    })
    .await
    .unwrap();
    let node = &erasures["auditTrail"]["edges"][0]["node"];
    assert_eq!(node["eventType"], "DataSubjectErased", "{erasures}");
    assert_eq!(node["actorId"], "u-dpo-74");
    assert_eq!(node["payload"]["reason"], "ticket GDPR-42");
    assert_eq!(
        format!(
            "erased:{}",
            node["payload"]["subjectPseudonym"].as_str().unwrap()
        ),
        marker
    );
    let stream = node["aggregateId"].as_str().unwrap().to_owned();
    let verified = app
        .data(
            "query($id: ID!) { verifyAuditTrail(aggregateType: DATA_SUBJECT, aggregateId: $id) { valid } }",
            json!({"id": stream}),
        )
        .await
        .unwrap();
    assert_eq!(verified["verifyAuditTrail"]["valid"], true, "{verified}");
    let topic = Topics::new(app.settings.kafka.topic_prefix.clone())
        .events_of(aggregates::DATA_SUBJECT.type_name);
    let published = read_topic(&brokers(), &topic, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(published[0].value["eventType"], "DataSubjectErased");
    assert_eq!(
        published[0].value["payload"]["subjectPseudonym"],
        node["payload"]["subjectPseudonym"]
    );
    assert_nothing_planted("the erasure event", &published[0].value.to_string());
    // What a downstream consumer kept, it finds by the pseudonym: her creation names it.
    let pseudonym = node["payload"]["subjectPseudonym"].as_str().unwrap();
    let task_topic =
        Topics::new(app.settings.kafka.topic_prefix.clone()).events_of(aggregates::TASK.type_name);
    let kept = read_topic(&brokers(), &task_topic, 4, Duration::from_secs(30))
        .await
        .unwrap();
    let creation = kept
        .iter()
        .find(|r| r.value["aggregateId"] == hers.as_str() && r.value["sequence"] == 1)
        .expect("her creation was published");
    assert_eq!(creation.value["personalData"]["actorId"], pseudonym);
    assert_eq!(creation.value["personalData"]["payload.title"], pseudonym);

    // The held copies read as the events do now (a dump shows a dead letter's bytes in hex).
    let (letter, why): (String, String) =
        sqlx::query_as("SELECT convert_from(payload, 'UTF8'), reason FROM dead_letters")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_nothing_planted("the dead letter", &format!("{letter} {why}"));
    assert!(letter.contains(&marker), "{letter}");

    // Nothing recoverable in the database: no value, no key.
    assert_nothing_planted("pg_dump", &pg_dump(&app));

    // Asking again, from the command line: the first answer, nothing appended.
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let output = std::process::Command::new(chronicle_binary().unwrap())
        .args([
            "erase",
            "--subject",
            MARIA,
            "--reason",
            "ticket GDPR-42 again",
        ])
        .env("DATABASE_URL", app.settings.database_url.expose())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let again: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(again["replayed"], true, "{again}");
    assert_eq!(again["subjectPseudonym"], marker.as_str());
    assert_eq!(again["reason"], "ticket GDPR-42");
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(events_after, events_before);
}

#[tokio::test]
async fn an_erasure_interrupted_after_its_key_was_destroyed_is_finished_by_asking_again() {
    use chronicle_application::ports::erasures::Erasures as _;
    use chronicle_application::ports::subject_keys::SubjectKeys as _;
    let app = TestApp::spawn().await.unwrap();
    let maria = app.token(MARIA, &["member"], &["team-a"]);
    let id = app
        .client(Some(&maria))
        .create_task(TITLE, "team-a")
        .await
        .unwrap();
    app.wait_for_version(&id, 1).await.unwrap();

    // A process died between destroying the key and rewriting the copies in clear: the read
    // model still shows her title.
    let keys = chronicle_infrastructure::subject_keys::PgSubjectKeys::new(app.db.clone());
    let pseudonym = keys.find(MARIA).await.unwrap().unwrap().pseudonym;
    chronicle_infrastructure::erasures::PgErasures::new(app.db.clone())
        .begin(MARIA, &pseudonym, "u-dpo-74", "ticket GDPR-44")
        .await
        .unwrap();
    keys.destroy(MARIA).await.unwrap();
    let half = app
        .data(
            "query($id: ID!) { task(id: $id) { title } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    assert_eq!(half["task"]["title"], TITLE, "half done: {half}");

    let officer = app.token("u-dpo-74", &["privacy"], &[]);
    let again = app
        .graphql_as(
            Some(&officer),
            ERASE,
            json!({"s": MARIA, "r": "ticket GDPR-44"}),
        )
        .await
        .unwrap();
    let erasure = &again["data"]["eraseDataSubject"];
    assert_eq!(erasure["streams"], 1, "{again}");
    assert_eq!(
        erasure["reason"], "ticket GDPR-44",
        "the first request's record"
    );
    let done = app
        .data(
            "query($id: ID!) { task(id: $id) { title } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    assert_eq!(
        done["task"]["title"],
        format!("erased:{pseudonym}").as_str(),
        "{done}"
    );
}

#[tokio::test]
async fn another_instance_forgets_the_erased_key_when_the_erasure_event_arrives() {
    let app = TestApp::spawn().await.unwrap();
    let other = chronicle_tests::ChronicleProcess::serve(&app.settings, "api").unwrap();
    other.wait_ready(Duration::from_secs(60)).await.unwrap();
    let maria = other
        .client(&app.token(MARIA, &["member"], &["team-a"]))
        .unwrap();
    let id = maria.create_task(TITLE, "team-a").await.unwrap();
    let auditor = other
        .client(&app.token("u-auditor-76", &["auditor"], &["team-a"]))
        .unwrap();
    let trail = "query($id: ID!) { auditTrail(filter: {aggregateId: $id}) {
                   edges { node { payload } } } }";
    let before = settled_trail(|| auditor.data(trail, json!({"id": id})))
        .await
        .unwrap();
    assert_eq!(
        before["auditTrail"]["edges"][0]["node"]["payload"]["title"], TITLE,
        "the other instance holds her key now: {before}"
    );

    // Erased through the first instance: the other one, whose cache keeps keys for 60 s,
    // forgets hers as soon as it reads the erasure event.
    let officer = app.token("u-dpo-74", &["privacy"], &[]);
    let erased = app
        .graphql_as(
            Some(&officer),
            ERASE,
            json!({"s": MARIA, "r": "ticket GDPR-45"}),
        )
        .await
        .unwrap();
    let marker = erased["data"]["eraseDataSubject"]["subjectPseudonym"]
        .as_str()
        .unwrap()
        .to_owned();
    chronicle_tests::eventually(Duration::from_secs(20), || async {
        let now = auditor.data(trail, json!({"id": id})).await?;
        let title = now["auditTrail"]["edges"][0]["node"]["payload"]["title"].clone();
        Ok((title == marker.as_str()).then_some(()))
    })
    .await
    .expect("the other instance shows the marker well before its cache expires");
}

#[tokio::test]
async fn an_erasure_killed_midway_is_finished_by_running_it_again() {
    let app = TestApp::spawn().await.unwrap();
    let maria = app.token(MARIA, &["member"], &["team-a"]);
    let client = app.client(Some(&maria));
    let mut writers = Vec::new();
    for writer in 0..8 {
        let client = client.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..100 {
                let title = format!("{TITLE} {writer}-{n}");
                client.create_task(&title, "team-a").await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    chronicle_tests::eventually(Duration::from_secs(60), || async {
        let rows: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tasks WHERE title LIKE '%PLANTKELLER%'")
                .fetch_one(&app.db)
                .await?;
        Ok((rows == 800).then_some(()))
    })
    .await
    .unwrap();

    // Killed as soon as it has recorded the erasure: somewhere in its event, its key or its
    // rewrite of 800 rows (run by hand, it was killed after the event and before the rewrite).
    let erase = |reason: &str| {
        std::process::Command::new(chronicle_binary().unwrap())
            .args(["erase", "--subject", MARIA, "--reason", reason])
            .env("DATABASE_URL", app.settings.database_url.expose())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = erase("ticket GDPR-46");
    chronicle_tests::eventually(Duration::from_secs(30), || async {
        let begun: i64 = sqlx::query_scalar("SELECT count(*) FROM erasures")
            .fetch_one(&app.db)
            .await?;
        Ok((begun > 0).then_some(()))
    })
    .await
    .unwrap();
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let again = erase("ticket GDPR-46").wait_with_output().unwrap();
    assert!(again.status.success(), "{again:?}");
    let answer: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(answer["streams"], 800, "{answer}");
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tasks WHERE title LIKE '%PLANTKELLER%'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(left, 0, "every row rewritten");
    let erasure_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
            .bind(aggregates::DATA_SUBJECT.type_name)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(erasure_events, 1, "one erasure event, however often it ran");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM subject_keys WHERE subject_id = $1")
        .bind(MARIA)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

#[tokio::test]
async fn a_command_sealed_under_a_key_destroyed_meanwhile_is_stored_under_a_new_one() {
    use chronicle_application::ports::subject_keys::SubjectKeys as _;
    let app = TestApp::spawn().await.unwrap();
    let maria = app.token(MARIA, &["member"], &["team-a"]);
    let client = app.client(Some(&maria));
    let first = client.create_task("first", "team-a").await.unwrap();
    // Her key is destroyed behind the service's back (an erasure it has not heard of): it
    // still holds the key in its cache.
    let keys = chronicle_infrastructure::subject_keys::PgSubjectKeys::new(app.db.clone());
    let old = keys.destroy(MARIA).await.unwrap().unwrap();

    let second = client.create_task("second", "team-a").await.unwrap();

    let new = keys
        .find(MARIA)
        .await
        .unwrap()
        .expect("a new key")
        .pseudonym;
    assert_ne!(new, old, "a new life, not the destroyed key");
    let trail = "query($id: ID!) { auditTrail(filter: {aggregateId: $id}) {
                   edges { node { actorId payload } } } }";
    let readable = settled_trail(|| app.data(trail, json!({"id": second})))
        .await
        .unwrap();
    let node = &readable["auditTrail"]["edges"][0]["node"];
    assert_eq!(
        node["actorId"], MARIA,
        "stored under a key that exists: {readable}"
    );
    assert_eq!(node["payload"]["title"], "second");
    let gone = settled_trail(|| app.data(trail, json!({"id": first})))
        .await
        .unwrap();
    assert_eq!(
        gone["auditTrail"]["edges"][0]["node"]["actorId"],
        format!("erased:{old}").as_str(),
        "{gone}"
    );
}
