//! Erasing a person whose values are stored in clear: events written before sealing was on
//! (every store older than erasure holds its events so, and a deployment with
//! `CHRONICLE_SEAL_PERSONAL_DATA=false` writes them so still: the same stored form, no `sealed`
//! flag) and reports' results, which copy ids and titles. The erasure replaces the values by
//! markers through the signed erasure ledger; every verify tool then reports those events as
//! erased, and anything else changed, or a change no erasure signed, as tampering.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chronicle_application::audit::merkle::{self, Hash};
use chronicle_application::audit::signing::{Checkpoint, CheckpointSigner};
use chronicle_application::data::event_log::StoredEvent;
use chronicle_application::data::hash_chain::event_hash;
use chronicle_tests::{chronicle_binary, eventually, settled_trail, TestApp};
use serde_json::{json, Value};

use super::erasure::{
    assert_nothing_planted, everything_readable, pg_dump, plant, ERASE, MARIA, TITLE,
};

/// A checkpoint key in a fresh directory: the private key's path and the public key's.
fn checkpoint_key() -> (PathBuf, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("chronicle-erase-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let signer = CheckpointSigner::generate();
    let private = dir.join("audit.pem");
    let public = dir.join("audit.pub.pem");
    std::fs::write(&private, signer.to_pem().unwrap()).unwrap();
    std::fs::write(&public, signer.public_key().to_pem().unwrap()).unwrap();
    (private, public)
}

/// `chronicle audit verify [args]` against `app`; its exit code and what it printed.
fn audit_verify(app: &TestApp, args: &[&str], key: &Path) -> (i32, String) {
    let output = std::process::Command::new(chronicle_binary().unwrap())
        .args(["audit", "verify"])
        .args(args)
        .arg("--public-key")
        .arg(key)
        .env("DATABASE_URL", app.settings.database_url.expose())
        .env("KAFKA_BROKERS", &app.settings.kafka.brokers)
        .env("KAFKA_TOPIC_PREFIX", &app.settings.kafka.topic_prefix)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

const CHECKPOINT: &str =
    "query($s: Int) { auditCheckpoint(treeSize: $s) { treeSize rootHash issuedAt keyId signature } }";

/// The latest checkpoint once it covers at least `size` events.
async fn checkpoint_covering(app: &TestApp, size: u64) -> Checkpoint {
    let value = eventually(Duration::from_secs(30), || async {
        let body = app.graphql(CHECKPOINT, json!({})).await?;
        let checkpoint = body["data"]["auditCheckpoint"].clone();
        Ok((checkpoint["treeSize"].as_u64().unwrap_or(0) >= size).then_some(checkpoint))
    })
    .await
    .expect("a checkpoint covering the events");
    Checkpoint::from_json(&value).unwrap()
}

fn hashes(value: &Value) -> Vec<Hash> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

/// One event as stored, with its position, as the audit log reads it.
async fn stored(
    app: &TestApp,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: u64,
) -> (i64, StoredEvent) {
    use chronicle_application::ports::audit_log::AuditLog as _;
    let stream = chronicle_infrastructure::audit_log::PgAuditLog::new(app.db.clone())
        .stream(aggregate_type, aggregate_id)
        .await
        .unwrap();
    let record = stream
        .into_iter()
        .find(|record| record.event.sequence == sequence)
        .expect("the event is stored");
    (record.position, record.event)
}

async fn request_workload_report(app: &TestApp, token: &str) -> String {
    let now = chrono::Utc::now();
    let body = app
        .graphql_as(
            Some(token),
            "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }",
            json!({"i": {"kind": "ASSIGNEE_WORKLOAD", "teamId": "team-a",
                         "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
                         "to": (now + chrono::Duration::hours(1)).to_rfc3339()}}),
        )
        .await
        .unwrap();
    let id = body["data"]["requestReport"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    eventually(Duration::from_secs(30), || async {
        let report = app
            .data(
                "query($id: ID!) { report(id: $id) { status } }",
                json!({"id": id}),
            )
            .await?;
        Ok((report["report"]["status"] == "COMPLETED").then_some(()))
    })
    .await
    .expect("the report completes");
    id
}

#[tokio::test]
async fn values_stored_in_clear_are_erased_through_the_signed_ledger_and_every_proof_holds() {
    let (private_key, public_key) = checkpoint_key();
    let app = TestApp::spawn_with(|settings| {
        settings.seal_personal_data = false;
        settings.audit_signing_key_file = Some(private_key.display().to_string());
        settings.audit_checkpoint_interval = Duration::from_secs(1);
    })
    .await
    .unwrap();
    // In clear: Maria's task, written, started and completed by her; Bob's task assigned to
    // her; a report that names her as an assignee.
    let (hers, bobs) = plant(&app, "u-bob-82").await;
    let bob = app.token("u-bob-82", &["member"], &["team-a"]);
    let report = request_workload_report(&app, &bob).await;
    let (_, first) = stored(&app, "Task", &hers, 1).await;
    assert_eq!(
        first.payload["TaskCreated"]["title"], TITLE,
        "stored in clear, as before sealing"
    );
    assert!(first.metadata.get("sealed").is_none());
    let report_text = app
        .data(
            "query($id: ID!) { report(id: $id) { result } }",
            json!({"id": report}),
        )
        .await
        .unwrap()
        .to_string();
    assert!(
        report_text.contains(MARIA),
        "the report names her: {report_text}"
    );

    // Proofs an auditor fetched before the erasure, against a checkpoint signed before it.
    let events_before = app.event_count().await.unwrap() as u64;
    let before = checkpoint_covering(&app, events_before).await;
    let (position, _) = stored(&app, "Task", &hers, 1).await;
    let proof = app
        .data(
            "query($e: ID!, $s: Int) { auditProof(eventId: $e, treeSize: $s) { leafIndex leafHash path } }",
            json!({"e": first.event_id, "s": before.tree_size}),
        )
        .await
        .unwrap();
    let (code, out) = audit_verify(&app, &[], &public_key);
    assert_eq!(code, 0, "intact before: {out}");

    let officer = app.token("u-dpo-84", &["privacy"], &[]);
    let erased = app
        .graphql_as(
            Some(&officer),
            ERASE,
            json!({"s": MARIA, "r": "ticket GDPR-77"}),
        )
        .await
        .unwrap();
    let erasure = &erased["data"]["eraseDataSubject"];
    assert_eq!(erasure["replayed"], false, "{erased}");
    assert_eq!(
        erasure["streams"], 3,
        "her task, Bob's and the report: {erased}"
    );
    let marker = erasure["subjectPseudonym"].as_str().unwrap().to_owned();

    // Nothing of her is readable, nor left in the database; the report was replaced whole.
    let seen = everything_readable(&app, &[&hers, &bobs]).await;
    assert_nothing_planted("the API", &seen);
    let now = app
        .data(
            "query($id: ID!, $b: ID!, $r: ID!) { task(id: $id) { title description creatorId result }
               bobs: task(id: $b) { title assigneeId } report(id: $r) { result } }",
            json!({"id": hers, "b": bobs, "r": report}),
        )
        .await
        .unwrap();
    assert_eq!(now["task"]["title"], marker.as_str(), "{now}");
    assert_eq!(now["task"]["result"], marker.as_str());
    assert_eq!(now["bobs"]["title"], "Bob's review", "Bob's words stay");
    assert_eq!(now["bobs"]["assigneeId"], marker.as_str());
    assert_eq!(now["report"]["result"], marker.as_str(), "{now}");
    assert_nothing_planted("pg_dump", &pg_dump(&app));

    // The erasure event commits to every change it made, signed.
    let erasures = settled_trail(|| {
        app.data(
            "{ auditTrail(filter: {aggregateType: DATA_SUBJECT}) {
                 edges { node { eventId payload storedPayload } } } }",
            json!({}),
        )
    })
    .await
    .unwrap();
    let node = &erasures["auditTrail"]["edges"][0]["node"];
    let redactions = &node["storedPayload"]["DataSubjectErased"]["redactions"];
    let ledger: i64 = sqlx::query_scalar("SELECT count(*) FROM erased_events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(
        ledger >= 5,
        "her three, Bob's creation, the report's result: {ledger}"
    );
    assert_eq!(redactions["events"], ledger, "{node}");
    assert!(redactions["signature"].is_string(), "{node}");

    // verifyAuditTrail says erased, by whom and under which erasure; never tampered.
    let verified = app
        .data(
            "query($id: ID!) { verifyAuditTrail(aggregateType: TASK, aggregateId: $id) {
                 valid reason erasedEvents { sequence erasures { subjectPseudonym erasureEventId erasedBy erasedAt } } } }",
            json!({"id": hers}),
        )
        .await
        .unwrap();
    let verdict = &verified["verifyAuditTrail"];
    assert_eq!(verdict["valid"], true, "{verified}");
    let erased_events = verdict["erasedEvents"].as_array().unwrap();
    assert_eq!(
        erased_events.len(),
        3,
        "created, started, completed: {verified}"
    );
    let by = &erased_events[0]["erasures"][0];
    assert_eq!(by["erasureEventId"], node["eventId"]);
    assert_eq!(by["erasedBy"], "u-dpo-84");
    assert_eq!(
        format!("erased:{}", by["subjectPseudonym"].as_str().unwrap()),
        marker
    );

    // The command line agrees, chains and checkpoints; the old proof still holds, and the
    // next checkpoint extends the one signed before.
    let (code, out) = audit_verify(&app, &[], &public_key);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "{ledger} events changed by 1 erasures (signatures verified"
        )),
        "{out}"
    );
    let (code, out) = audit_verify(&app, &["--checkpoints", "kafka"], &public_key);
    assert_eq!(code, 0, "{out}");
    let (now_position, now_first) = stored(&app, "Task", &hers, 1).await;
    assert_eq!((now_position, &now_first.hash), (position, &first.hash));
    assert_ne!(now_first.payload, first.payload);
    let leaf = merkle::leaf_hash(&merkle::leaf_data(
        position,
        &first.event_id.to_string(),
        &first.aggregate_type,
        &hers,
        1,
        &now_first.hash,
    ));
    let old_proof = &proof["auditProof"];
    assert!(merkle::verify_inclusion(
        &leaf,
        old_proof["leafIndex"].as_u64().unwrap(),
        before.tree_size,
        &hashes(&old_proof["path"]),
        &before.root,
    ));
    let after = checkpoint_covering(&app, before.tree_size + 1).await;
    let consistency = app
        .data(
            "query($f: Int!, $t: Int!) { auditConsistencyProof(fromSize: $f, toSize: $t) { path } }",
            json!({"f": before.tree_size, "t": after.tree_size}),
        )
        .await
        .unwrap();
    assert!(merkle::verify_consistency(
        before.tree_size,
        after.tree_size,
        &before.root,
        &after.root,
        &hashes(&consistency["auditConsistencyProof"]["path"]),
    ));

    // An audit export proved against the new checkpoint carries the erasure's signed ledger:
    // the auditor's machine accepts the changed events, offline, under the same key.
    let export = std::process::Command::new(chronicle_binary().unwrap())
        .args(["audit", "export", "--from-position", "1", "--to-position"])
        .arg(i64::MAX.to_string())
        .env("DATABASE_URL", app.settings.database_url.expose())
        .output()
        .unwrap();
    assert!(export.status.success(), "{export:?}");
    let exported = String::from_utf8(export.stdout).unwrap();
    assert_nothing_planted("the export", &exported);
    let file = public_key.with_file_name("export.jsonl");
    std::fs::write(&file, &exported).unwrap();
    let verify_export = |file: &Path| {
        let output = std::process::Command::new(chronicle_binary().unwrap())
            .args(["audit", "verify-export"])
            .arg(file)
            .arg("--public-key")
            .arg(&public_key)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, out) = verify_export(&file);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("erased: "), "{out}");
    // Without the erasure's line, the changed events are edits.
    let without: Vec<&str> = exported
        .lines()
        .filter(|line| !line.starts_with("{\"erasure\""))
        .collect();
    assert!(without.len() < exported.lines().count(), "{exported}");
    std::fs::write(&file, without.join("\n")).unwrap();
    let (code, out) = verify_export(&file);
    assert_eq!(code, 1, "{out}");

    // An erased event edited afterwards is tampering.
    let (_, completed) = stored(&app, "Task", &hers, 3).await;
    sqlx::query("UPDATE events SET payload = jsonb_set(payload, '{TaskCompleted,result}', '\"forged\"') WHERE event_id = $1")
        .bind(completed.event_id)
        .execute(&app.db)
        .await
        .unwrap();
    let (code, out) = audit_verify(&app, &[], &public_key);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BROKEN Task {hers} at sequence 3")),
        "{out}"
    );
    sqlx::query("UPDATE events SET payload = $2 WHERE event_id = $1")
        .bind(completed.event_id)
        .bind(&completed.payload)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(audit_verify(&app, &[], &public_key).0, 0);

    // An erasure undone (her values copied back from a backup) is tampering too: the chain
    // records a signed change the event no longer shows.
    let put_back = |event: &StoredEvent| {
        sqlx::query("UPDATE events SET payload = $2, metadata = $3 WHERE event_id = $1")
            .bind(event.event_id)
            .bind(event.payload.clone())
            .bind(event.metadata.clone())
            .execute(&app.db)
    };
    put_back(&first).await.unwrap();
    let (code, out) = audit_verify(&app, &[], &public_key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("undone"), "{out}");
    put_back(&now_first).await.unwrap();
    assert_eq!(audit_verify(&app, &[], &public_key).0, 0);

    // A forged erasure: the report's request (Bob's, naming no one erased) given a marker,
    // with a ledger row under her erasure that leads to it, written straight into the
    // database. Her signed erasure commits to other rows: none of its changes is trusted now.
    let (_, requested) = stored(&app, "Report", &report, 1).await;
    let mut forged = requested.clone();
    forged.payload["ReportRequested"]["requestedBy"] = json!(marker);
    sqlx::query(
        "INSERT INTO erased_events (event_id, pseudonym, prior_hash, redacted_hash, applied_at)
         VALUES ($1, $2, $3, $4, now())",
    )
    .bind(forged.event_id)
    .bind(marker.trim_start_matches("erased:"))
    .bind(event_hash(&requested))
    .bind(event_hash(&forged))
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("UPDATE events SET payload = $2 WHERE event_id = $1")
        .bind(forged.event_id)
        .bind(&forged.payload)
        .execute(&app.db)
        .await
        .unwrap();
    let (code, out) = audit_verify(&app, &[], &public_key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("another digest"), "{out}");
    let forged_check = app
        .data(
            "query($id: ID!) { verifyAuditTrail(aggregateType: REPORT, aggregateId: $id) { valid reason } }",
            json!({"id": report}),
        )
        .await
        .unwrap();
    assert_eq!(
        forged_check["verifyAuditTrail"]["valid"], false,
        "{forged_check}"
    );

    // Asking again answers the first erasure and appends nothing.
    let count = app.event_count().await.unwrap();
    let again = app
        .graphql_as(Some(&officer), ERASE, json!({"s": MARIA, "r": "again"}))
        .await
        .unwrap();
    assert_eq!(
        again["data"]["eraseDataSubject"]["replayed"], true,
        "{again}"
    );
    assert_eq!(app.event_count().await.unwrap(), count);
}

#[tokio::test]
async fn a_key_destroyed_outside_an_erasure_is_reported_by_verify() {
    let (_, public_key) = checkpoint_key();
    let app = TestApp::spawn().await.unwrap();
    let maria = app.token("u-keyless-91", &["member"], &["team-a"]);
    let body = app
        .graphql_as(
            Some(&maria),
            "mutation { createTask(input: {title: \"Sealed\", teamId: \"team-a\"}) { id } }",
            json!({}),
        )
        .await
        .unwrap();
    let id = body["data"]["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Without the signing key, signatures are not checked; nothing is wrong yet.
    let (code, out) = audit_verify(&app, &[], &public_key);
    assert_eq!(code, 0, "{out}");
    sqlx::query("DELETE FROM subject_keys WHERE subject_id = 'u-keyless-91'")
        .execute(&app.db)
        .await
        .unwrap();
    let (code, out) = audit_verify(&app, &[], &public_key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("destroyed outside an erasure"), "{out}");
    // The aggregate's own check says the same (the command line reads keys uncached).
    let (code, out) = audit_verify(&app, &["--type", "Task", "--id", &id], &public_key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("outside an erasure"), "{out}");
}
