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

#[tokio::test]
async fn checkpoints_are_signed_published_and_prove_inclusion_and_consistency() {
    // A key as an operator makes one with openssl.
    let dir = temp_dir();
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
    let (_, public_pem) = run(
        "openssl",
        &["pkey", "-in", key.to_str().unwrap(), "-pubout"],
    );
    let public = PublicKey::from_pem(&public_pem).unwrap();
    let app = TestApp::spawn_with(|settings| {
        settings.audit_signing_key_file = Some(key.display().to_string());
        settings.audit_checkpoint_interval = Duration::from_secs(1);
    })
    .await
    .unwrap();
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
