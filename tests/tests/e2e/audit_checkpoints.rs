//! Signed checkpoints of the whole log, and proofs a client checks by itself: every event is
//! a leaf of an RFC 9162 Merkle tree in store order, checkpoints are signed with an Ed25519
//! key the database never holds and published to Kafka too.

use std::time::Duration;

use chronicle_application::audit::merkle::{self, Hash};
use chronicle_application::audit::signing::{Checkpoint, PublicKey};
use chronicle_application::topics::Topics;
use chronicle_tests::{brokers, chronicle_binary, eventually, read_topic, TestApp};
use serde_json::{json, Value};

const CHECKPOINT: &str = "query($s: Int) { auditCheckpoint(treeSize: $s) { treeSize rootHash issuedAt keyId signature signedText } }";

fn temp_dir() -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("chronicle-audit-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(program: &str, args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

/// A key made as an operator makes one, `openssl genpkey -algorithm ed25519`, in `dir`: the
/// private key's path and the public key (SPKI PEM).
fn openssl_key(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let key = dir.join("audit.pem");
    let (code, out) = run(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (code, public) = run(
        "openssl",
        &["pkey", "-in", key.to_str().unwrap(), "-pubout"],
    );
    assert_eq!(code, 0, "{public}");
    (key, public)
}

fn hash(hex: &Value) -> Hash {
    hex::decode(hex.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn checkpoint_of(value: &Value) -> Checkpoint {
    Checkpoint::from_json(value).unwrap_or_else(|| panic!("not a checkpoint: {value}"))
}

/// The latest checkpoint once it covers at least `size` events.
async fn checkpoint_covering(app: &TestApp, size: u64) -> Value {
    eventually(Duration::from_secs(30), || async {
        let body = app.graphql(CHECKPOINT, json!({})).await?;
        let checkpoint = body["data"]["auditCheckpoint"].clone();
        Ok((checkpoint["treeSize"].as_u64().unwrap_or(0) >= size).then_some(checkpoint))
    })
    .await
    .expect("a checkpoint covering the events")
}

/// A service signing a checkpoint every second with a key made as an operator makes one
/// (openssl), and that key's public half.
async fn signing_app() -> (TestApp, PublicKey) {
    let (key, public_pem) = openssl_key(&temp_dir());
    let app = TestApp::spawn_with(|settings| {
        settings.audit_signing_key_file = Some(key.display().to_string());
        settings.audit_checkpoint_interval = Duration::from_secs(1);
    })
    .await
    .unwrap();
    (app, PublicKey::from_pem(&public_pem).unwrap())
}

#[tokio::test]
async fn checkpoints_are_signed_published_and_prove_inclusion_and_consistency() {
    let (app, public) = signing_app().await;
    let (_, ready) = app.client(None).ready().await.unwrap();
    assert_eq!(ready["audit"]["checkpoints"], "on", "{ready}");

    let mut tasks = Vec::new();
    for n in 0..5 {
        tasks.push(
            app.create_task(&format!("Audited {n}"), "team-a")
                .await
                .unwrap(),
        );
    }
    let first = checkpoint_covering(&app, 5).await;
    let signed = checkpoint_of(&first);
    assert!(
        signed.verify(&public),
        "signed by the configured key: {first}"
    );
    assert_eq!(signed.key_id, public.id());
    assert_eq!(
        first["signedText"].as_str().unwrap(),
        Checkpoint::signed_text(signed.tree_size, &signed.root, &signed.issued_at)
    );

    // The first task's creation is in the signed log: the proof checks out against the
    // checkpoint's root, and its leaf is what the stored event commits to.
    let (event_id, position, aggregate_type, sequence, chain_hash): (
        uuid::Uuid,
        i64,
        String,
        i64,
        String,
    ) = sqlx::query_as(
        "SELECT event_id, position, aggregate_type, sequence, hash FROM events
             WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(&tasks[0])
    .fetch_one(&app.db)
    .await
    .unwrap();
    let body = app
        .graphql(
            "query($e: ID!, $s: Int) { auditProof(eventId: $e, treeSize: $s) { leafIndex leafHash path checkpoint { treeSize rootHash } } }",
            json!({"e": event_id, "s": signed.tree_size}),
        )
        .await
        .unwrap();
    let proof = &body["data"]["auditProof"];
    let leaf = merkle::leaf_hash(&merkle::leaf_data(
        position,
        &event_id.to_string(),
        &aggregate_type,
        &tasks[0],
        sequence,
        &chain_hash,
    ));
    assert_eq!(hash(&proof["leafHash"]), leaf, "{body}");
    let path: Vec<Hash> = proof["path"].as_array().unwrap().iter().map(hash).collect();
    let index = proof["leafIndex"].as_u64().unwrap();
    assert!(merkle::verify_inclusion(
        &leaf,
        index,
        signed.tree_size,
        &path,
        &signed.root
    ));
    assert!(!merkle::verify_inclusion(
        &leaf,
        index,
        signed.tree_size,
        &path,
        &[0; 32]
    ));

    // More events, a later checkpoint, and the proof that it extends the first.
    for n in 0..4 {
        app.create_task(&format!("Later {n}"), "team-a")
            .await
            .unwrap();
    }
    let later = checkpoint_of(&checkpoint_covering(&app, signed.tree_size + 4).await);
    let body = app
        .graphql(
            "query($f: Int!, $t: Int!) { auditConsistencyProof(fromSize: $f, toSize: $t) { path from { treeSize } to { treeSize } } }",
            json!({"f": signed.tree_size, "t": later.tree_size}),
        )
        .await
        .unwrap();
    let consistency = &body["data"]["auditConsistencyProof"];
    let path: Vec<Hash> = consistency["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    assert!(
        merkle::verify_consistency(
            signed.tree_size,
            later.tree_size,
            &signed.root,
            &later.root,
            &path
        ),
        "{body}"
    );

    // Kafka holds the same signed checkpoints: a copy database access cannot rewrite.
    let topic = Topics::new(app.settings.kafka.topic_prefix.clone()).audit_checkpoints();
    let published = read_topic(&brokers(), &topic, 2, Duration::from_secs(30))
        .await
        .unwrap();
    let copies: Vec<Checkpoint> = published.iter().map(|r| checkpoint_of(&r.value)).collect();
    assert!(
        copies.contains(&signed) && copies.contains(&later),
        "{copies:?}"
    );
    assert!(copies.iter().all(|c| c.verify(&public)));

    // An auditor of another team learns nothing of team-a's events, not even hashes.
    let outsider = app.token("u-aud", &["auditor"], &["team-b"]);
    let body = app
        .graphql_as(
            Some(&outsider),
            "query($e: ID!) { auditProof(eventId: $e) { leafHash } }",
            json!({"e": event_id}),
        )
        .await
        .unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );
    let member = app.token("u-m", &["member"], &["team-a"]);
    let body = app
        .graphql_as(Some(&member), CHECKPOINT, json!({}))
        .await
        .unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
}

/// The root of the log's first `size` events, computed from the stored events as a client
/// with read access would (leaf data in position order).
async fn root_of_first(app: &TestApp, size: u64) -> Hash {
    let rows: Vec<(i64, uuid::Uuid, String, String, i64, String)> = sqlx::query_as(
        "SELECT position, event_id, aggregate_type, aggregate_id, sequence, hash FROM events
         ORDER BY position LIMIT $1",
    )
    .bind(size as i64)
    .fetch_all(&app.db)
    .await
    .unwrap();
    let mut tree = merkle::MemoryTree::default();
    for (position, event_id, aggregate_type, aggregate_id, sequence, chain_hash) in rows {
        tree.push(merkle::leaf_hash(&merkle::leaf_data(
            position,
            &event_id.to_string(),
            &aggregate_type,
            &aggregate_id,
            sequence,
            &chain_hash,
        )));
    }
    merkle::root(&tree, size).unwrap()
}

const CHECKPOINTS: &str = "query($first: Int, $after: String) { auditCheckpoints(first: $first, after: $after) { edges { cursor node { treeSize rootHash keyId signature } } pageInfo { hasNextPage endCursor } } }";

#[tokio::test]
async fn checkpoints_are_listed_newest_first_and_a_consistency_proof_starts_at_any_size() {
    let (app, public) = signing_app().await;
    for round in 0..3 {
        for n in 0..3 {
            app.create_task(&format!("Round {round} task {n}"), "team-a")
                .await
                .unwrap();
        }
        checkpoint_covering(&app, 3 * (round + 1)).await;
    }
    let signed: Vec<i64> =
        sqlx::query_scalar("SELECT tree_size FROM audit_checkpoints ORDER BY tree_size DESC")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert!(signed.len() >= 3, "{signed:?}");

    // One page at a time, newest first, each a checkpoint the key signed.
    let (mut listed, mut after) = (Vec::new(), Value::Null);
    loop {
        let body = app
            .graphql(CHECKPOINTS, json!({"first": 2, "after": after}))
            .await
            .unwrap();
        let page = &body["data"]["auditCheckpoints"];
        let edges = page["edges"].as_array().unwrap_or_else(|| panic!("{body}"));
        for edge in edges {
            let node = &edge["node"];
            let checkpoint = checkpoint_of(
                &app.graphql(CHECKPOINT, json!({"s": node["treeSize"]}))
                    .await
                    .unwrap()["data"]["auditCheckpoint"],
            );
            assert!(checkpoint.verify(&public));
            assert_eq!(
                node["signature"].as_str().unwrap(),
                hex::encode(&checkpoint.signature)
            );
            listed.push(node["treeSize"].as_i64().unwrap());
        }
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(listed, signed, "every checkpoint once, newest first");

    // From a size no checkpoint signed, up to the latest signed one: the old root comes from
    // the stored tree, and the proof binds it to the signed root.
    let latest = checkpoint_of(&checkpoint_covering(&app, 9).await);
    let unsigned = (1..latest.tree_size as i64)
        .find(|size| !signed.contains(size))
        .expect("a size no checkpoint signed") as u64;
    let body = app
        .graphql(
            "query($f: Int!, $t: Int!) { auditConsistencyProof(fromSize: $f, toSize: $t) { fromSize fromRootHash from { treeSize } path to { treeSize rootHash } } }",
            json!({"f": unsigned, "t": latest.tree_size}),
        )
        .await
        .unwrap();
    let proof = &body["data"]["auditConsistencyProof"];
    assert_eq!(proof["from"], Value::Null, "{body}");
    assert_eq!(proof["fromSize"], unsigned, "{body}");
    let kept_root = root_of_first(&app, unsigned).await;
    assert_eq!(hash(&proof["fromRootHash"]), kept_root, "{body}");
    let path: Vec<Hash> = proof["path"].as_array().unwrap().iter().map(hash).collect();
    assert!(merkle::verify_consistency(
        unsigned,
        latest.tree_size,
        &kept_root,
        &latest.root,
        &path
    ));
    assert!(!merkle::verify_consistency(
        unsigned,
        latest.tree_size,
        &[7; 32],
        &latest.root,
        &path
    ));

    // The end must be signed, and a proof needs at least one event at its start.
    for (from, to, code) in [
        (0, latest.tree_size, "VALIDATION_FAILED"),
        (1, latest.tree_size + 1, "NOT_FOUND"),
    ] {
        let body = app
            .graphql(
                "query($f: Int!, $t: Int!) { auditConsistencyProof(fromSize: $f, toSize: $t) { path } }",
                json!({"f": from, "t": to}),
            )
            .await
            .unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
    }
}

#[tokio::test]
async fn without_a_signing_key_checkpoints_are_said_to_be_off() {
    let app = TestApp::spawn().await.unwrap();
    app.create_task("Unsigned", "team-a").await.unwrap();
    let body = app.graphql(CHECKPOINT, json!({})).await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("checkpoints are off")
            && message.contains("CHRONICLE_AUDIT_SIGNING_KEY_FILE"),
        "{message}"
    );
    let body = app.graphql(CHECKPOINTS, json!({})).await.unwrap();
    assert_eq!(
        body["data"]["auditCheckpoints"]["edges"],
        json!([]),
        "{body}"
    );
}

#[test]
fn keygen_writes_a_key_pair_that_public_key_reads_back_and_never_overwrites() {
    let dir = temp_dir();
    let key = dir.join("signing.pem");
    let binary = chronicle_binary().unwrap();
    let binary = binary.to_str().unwrap();
    let (code, out) = run(binary, &["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = std::fs::read_to_string(dir.join("signing.pem.pub")).unwrap();
    let output = std::process::Command::new(binary)
        .args(["audit", "public-key"])
        .env("CHRONICLE_AUDIT_SIGNING_KEY_FILE", &key)
        .env("DATABASE_URL", "postgres://unused")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), written);
    assert!(PublicKey::from_pem(&written).is_ok());
    // openssl reads it too.
    let (code, out) = run("openssl", &["pkey", "-in", key.to_str().unwrap(), "-noout"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(binary, &["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, 1, "an existing key is never overwritten: {out}");
}

/// `chronicle audit verify --checkpoints <source> --public-key <key>` against `app`.
fn verify(app: &TestApp, source: &str, key: &std::path::Path) -> (i32, String) {
    let output = std::process::Command::new(chronicle_binary().unwrap())
        .args(["audit", "verify", "--checkpoints", source, "--public-key"])
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

async fn execute(app: &TestApp, sql: &str) {
    sqlx::raw_sql(sql).execute(&app.db).await.unwrap();
}

/// Replaces stream `id`'s last event's payload with `payload` and recomputes its chain hash,
/// as someone with write access to the database and the chain's recipe would.
async fn edit_last_event(app: &TestApp, id: &str, payload: Value) -> (Value, String) {
    use chronicle_application::ports::audit_log::AuditLog;
    let log = chronicle_infrastructure::audit_log::PgAuditLog::new(app.db.clone());
    let stream = log.stream("Task", id).await.unwrap();
    let mut last = stream.last().unwrap().event.clone();
    let original = (last.payload.clone(), last.hash.clone());
    last.payload = payload;
    last.hash = chronicle_application::data::hash_chain::event_hash(&last);
    sqlx::query(
        "UPDATE events SET payload = $3, hash = $4 WHERE aggregate_id = $1 AND sequence = $2",
    )
    .bind(id)
    .bind(last.sequence as i64)
    .bind(&last.payload)
    .bind(&last.hash)
    .execute(&app.db)
    .await
    .unwrap();
    original
}

#[tokio::test]
async fn verify_finds_what_a_database_administrator_changed_under_signed_checkpoints() {
    let dir = temp_dir();
    let (key, public_pem) = openssl_key(&dir);
    let public_key = dir.join("audit.pub");
    std::fs::write(&public_key, &public_pem).unwrap();
    let app = TestApp::spawn_with(|settings| {
        settings.audit_signing_key_file = Some(key.display().to_string());
        settings.audit_checkpoint_interval = Duration::from_secs(1);
    })
    .await
    .unwrap();
    let edited = app.create_task("Edited", "team-a").await.unwrap();
    app.data(
        "mutation($id: ID!) { startTask(id: $id) { version } }",
        json!({"id": edited}),
    )
    .await
    .unwrap();
    let removed = app.create_task("Removed", "team-a").await.unwrap();
    app.create_task("Kept", "team-a").await.unwrap();
    let checkpoint = checkpoint_covering(&app, 4).await;
    // Wait for it on Kafka too.
    let topic = Topics::new(app.settings.kafka.topic_prefix.clone()).audit_checkpoints();
    read_topic(&brokers(), &topic, 1, Duration::from_secs(30))
        .await
        .unwrap();

    let (code, out) = verify(&app, "kafka", &public_key);
    assert_eq!(code, 0, "an untouched store verifies: {out}");

    // An export of the range checks out on a machine with neither database nor broker; an
    // event edited in the file does not.
    let export = std::process::Command::new(chronicle_binary().unwrap())
        .args([
            "audit",
            "export",
            "--from-position",
            "1",
            "--to-position",
            "1000",
        ])
        .env("DATABASE_URL", app.settings.database_url.expose())
        .output()
        .unwrap();
    assert!(export.status.success(), "{export:?}");
    let exported = String::from_utf8(export.stdout).unwrap();
    assert_eq!(
        exported.lines().count(),
        5,
        "a checkpoint and four events: {exported}"
    );
    let file = dir.join("export.jsonl");
    std::fs::write(&file, &exported).unwrap();
    let binary = chronicle_binary().unwrap();
    let verify_export = |file: &std::path::Path| {
        run(
            binary.to_str().unwrap(),
            &[
                "audit",
                "verify-export",
                file.to_str().unwrap(),
                "--public-key",
                public_key.to_str().unwrap(),
            ],
        )
    };
    let (code, out) = verify_export(&file);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("complete: positions 1..1000, leaves 0..3, to the checkpoint's end (its last event is at position"),
        "{out}"
    );
    // A line removed, repeated or moved: the leaves of the stated range are no longer all
    // there once, in order.
    let lines: Vec<&str> = exported.lines().collect();
    let mut one_removed = lines.clone();
    one_removed.remove(3);
    let mut one_repeated = lines.clone();
    one_repeated.insert(3, lines[3]);
    let mut one_moved = lines.clone();
    one_moved.swap(2, 3);
    for (what, edited) in [
        ("removed", one_removed),
        ("repeated", one_repeated),
        ("moved", one_moved),
    ] {
        std::fs::write(&file, edited.join("\n")).unwrap();
        let (code, out) = verify_export(&file);
        assert_eq!(code, 1, "a line {what}: {out}");
        assert!(
            out.contains("DIVERGED") && !out.contains("complete:"),
            "{out}"
        );
    }
    // A part of the log: the events just outside it prove that nothing inside was left out.
    let (first_position, last_position): (i64, i64) =
        sqlx::query_as("SELECT min(position), max(position) FROM events")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let (from, to) = (first_position + 1, last_position - 1);
    let part = std::process::Command::new(chronicle_binary().unwrap())
        .args(["audit", "export", "--from-position"])
        .arg(from.to_string())
        .arg("--to-position")
        .arg(to.to_string())
        .env("DATABASE_URL", app.settings.database_url.expose())
        .output()
        .unwrap();
    assert!(part.status.success(), "{part:?}");
    std::fs::write(&file, &part.stdout).unwrap();
    let (code, out) = verify_export(&file);
    assert_eq!(code, 0, "{out}");
    // Stating what was asked for: the same range passes, another one diverges.
    let asked = |to: i64| {
        run(
            binary.to_str().unwrap(),
            &[
                "audit",
                "verify-export",
                file.to_str().unwrap(),
                "--public-key",
                public_key.to_str().unwrap(),
                "--from-position",
                &from.to_string(),
                "--to-position",
                &to.to_string(),
            ],
        )
    };
    assert_eq!(asked(to).0, 0, "{}", asked(to).1);
    let (narrowed_code, narrowed) = asked(to + 1);
    assert_eq!(narrowed_code, 1, "{narrowed}");
    assert!(narrowed.contains("not the"), "{narrowed}");
    assert!(
        out.contains(&format!(
            "complete: positions {from}..{to}, leaves 1..2, 2 events"
        )),
        "{out}"
    );
    // The export holds events as stored (titles sealed): edit a value in clear, the team.
    assert!(!exported.contains("Kept"), "titles are exported sealed");
    std::fs::write(&file, exported.replacen("\"team-a\"", "\"team-z\"", 1)).unwrap();
    let (code, out) = verify_export(&file);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("DIVERGED") && out.contains("chain hash"),
        "{out}"
    );

    // 1. An event edited, its chain recomputed: every chain still checks out, the tree does not.
    let original = edit_last_event(
        &app,
        &edited,
        json!({"TaskStarted": {"by": "someone else"}}),
    )
    .await;
    let (code, out) = verify(&app, "kafka", &public_key);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("intact:"),
        "the chains alone see nothing: {out}"
    );
    assert!(
        out.contains("DIVERGED the first") && out.contains(&format!("Task {edited} sequence 2")),
        "{out}"
    );
    edit_last_event(&app, &edited, original.0).await;
    let (code, out) = verify(&app, "kafka", &public_key);
    assert_eq!(code, 0, "restored: {out}");

    // 1b. An event removed, and what witnessed it (the read-model row's version, snapshots)
    //     rewound, so the remaining chain is whole and ends where the rows say it does.
    execute(
        &app,
        &format!(
            "CREATE TABLE kept_event AS SELECT * FROM events WHERE aggregate_id = '{edited}' AND sequence = 2;
             CREATE TABLE kept_row AS SELECT * FROM tasks WHERE id = '{edited}';
             CREATE TABLE kept_snapshots AS SELECT * FROM snapshots WHERE aggregate_id = '{edited}';
             DELETE FROM events WHERE aggregate_id = '{edited}' AND sequence = 2;
             UPDATE tasks SET version = 1 WHERE id = '{edited}';
             DELETE FROM snapshots WHERE aggregate_id = '{edited}';"
        ),
    )
    .await;
    let (code, out) = verify(&app, "kafka", &public_key);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("intact:"),
        "the chains alone see nothing: {out}"
    );
    assert!(out.contains("DIVERGED"), "{out}");
    execute(
        &app,
        &format!(
            "INSERT INTO events SELECT * FROM kept_event;
             DELETE FROM tasks WHERE id = '{edited}'; INSERT INTO tasks SELECT * FROM kept_row;
             INSERT INTO snapshots SELECT * FROM kept_snapshots;"
        ),
    )
    .await;
    assert_eq!(verify(&app, "kafka", &public_key).0, 0);

    // 2. A whole stream removed, with its row and snapshot: nothing of it is left to check,
    //    except what the checkpoints signed.
    execute(
        &app,
        &format!(
            "CREATE TABLE kept_events AS SELECT * FROM events WHERE aggregate_id = '{removed}';
         CREATE TABLE kept_tasks AS SELECT * FROM tasks WHERE id = '{removed}';
         DELETE FROM events WHERE aggregate_id = '{removed}';
         DELETE FROM tasks WHERE id = '{removed}';
         DELETE FROM snapshots WHERE aggregate_id = '{removed}';"
        ),
    )
    .await;
    let (code, out) = verify(&app, "kafka", &public_key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DIVERGED"), "{out}");
    execute(
        &app,
        "INSERT INTO events SELECT * FROM kept_events; INSERT INTO tasks SELECT * FROM kept_tasks;",
    )
    .await;
    assert_eq!(verify(&app, "kafka", &public_key).0, 0);

    // 3. An event inserted before the latest checkpoint (a valid chain of its own).
    execute(&app, &format!(
        "INSERT INTO events SELECT aggregate_type, '{}', sequence, event_type, event_version,
                payload, metadata, 0, gen_random_uuid(), recorded_at, hash, previous_hash, transaction_id, team_id
         FROM events WHERE aggregate_id = '{removed}' AND sequence = 1",
        uuid::Uuid::now_v7()
    )).await;
    let (code, out) = verify(&app, "kafka", &public_key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DIVERGED"), "{out}");
    execute(&app, "DELETE FROM events WHERE position = 0").await;
    assert_eq!(verify(&app, "kafka", &public_key).0, 0);

    // 4. The checkpoint table rewritten: the Kafka copy disagrees.
    let size = checkpoint["treeSize"].as_u64().unwrap();
    execute(
        &app,
        &format!(
            "CREATE TABLE kept_checkpoints AS SELECT * FROM audit_checkpoints;
         UPDATE audit_checkpoints SET root_hash = sha256('forged') WHERE tree_size = {size}"
        ),
    )
    .await;
    let (code, out) = verify(&app, "kafka", &public_key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint table was rewritten"), "{out}");
    execute(&app, "DELETE FROM audit_checkpoints; INSERT INTO audit_checkpoints SELECT * FROM kept_checkpoints;").await;

    // A file of checkpoints exported earlier serves as well as Kafka.
    let file = dir.join("checkpoints.jsonl");
    std::fs::write(&file, format!("{}\n", checkpoint_of(&checkpoint).to_json())).unwrap();
    let (code, out) = verify(&app, file.to_str().unwrap(), &public_key);
    assert_eq!(code, 0, "{out}");

    // 5. The signing key swapped: checkpoints signed with another key fail under the auditor's.
    let impostor = chronicle_application::audit::signing::CheckpointSigner::generate();
    let forged = impostor.sign(size, checkpoint_of(&checkpoint).root, chrono::Utc::now());
    std::fs::write(&file, format!("{}\n", forged.to_json())).unwrap();
    let (code, out) = verify(&app, file.to_str().unwrap(), &public_key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not verify under key"), "{out}");
}
