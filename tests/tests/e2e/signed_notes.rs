//! Checkpoints as C2SP signed notes from the command line: `chronicle audit export --format
//! signed-note` writes the latest checkpoint signed again with the checkpoint key,
//! `public-key --format verifier-key` the key a standard tool checks it with, and
//! `verify-note` checks a note with no database, under that key or the PEM public key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chronicle_tests::{chronicle_binary, eventually, TestApp};
use serde_json::json;

/// RFC 8032's first test key (PKCS#8 PEM) and the note and verifier key that
/// `application::audit::signed_note`'s vectors pin for it.
const RFC_8032_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
";
const RFC_8032_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
-----END PUBLIC KEY-----
";
const PINNED_NOTE: &str = "chronicle-audit/21fe31dfa154a261
2
1mlfYpQSMoe83+yrCIO152yntUuHQQgarbbvoFL31wY=

— chronicle-audit/21fe31dfa154a261 8IiYWd60l9fQnn6Fk/949WzVWOVVwg2U6OPkpnx7jPSdPiSzgNckUo3mfLyW1I7XSY1tH7AlIz+FIGpITQgY0JXizQU=
";
const PINNED_VKEY: &str =
    "chronicle-audit/21fe31dfa154a261+f0889859+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea";

fn temp_dir() -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("chronicle-notes-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `chronicle <args>` with `env`: its exit status, stdout and stderr.
fn chronicle(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = std::process::Command::new(chronicle_binary().unwrap())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn verify_note_checks_the_pinned_note_with_no_database() {
    let dir = temp_dir();
    let note = write(&dir, "pinned.note", PINNED_NOTE);
    let public = write(&dir, "audit.pem.pub", RFC_8032_PUBLIC_PEM);
    let (code, out, err) = chronicle(&["audit", "verify-note", &note, "--key", PINNED_VKEY], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "tree size 2, root d6695f6294123287bcdfecab0883b5e76ca7b54b8741081aadb6efa052f7d706"
        ),
        "{out}"
    );
    // The PEM public key and the default origin make the same verifier key.
    let (code, out, err) = chronicle(
        &["audit", "verify-note", &note, "--public-key", &public],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    // Another origin is another key id: no signature of it.
    let (code, out, _) = chronicle(
        &[
            "audit",
            "verify-note",
            &note,
            "--public-key",
            &public,
            "--origin",
            "example.com/chronicle",
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("DIVERGED no signature of"), "{out}");
    // A larger size, as someone editing the file would write it.
    let edited = write(
        &dir,
        "edited.note",
        &PINNED_NOTE.replacen("\n2\n", "\n3\n", 1),
    );
    let (code, out, _) = chronicle(
        &["audit", "verify-note", &edited, "--key", PINNED_VKEY],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DIVERGED the signature of"), "{out}");

    // public-key prints the verifier key of the configured key.
    let key = write(&dir, "audit.pem", RFC_8032_PEM);
    let env = [
        ("CHRONICLE_AUDIT_SIGNING_KEY_FILE", key.as_str()),
        ("DATABASE_URL", "postgres://unused"),
    ];
    let (code, out, err) = chronicle(&["audit", "public-key", "--format", "verifier-key"], &env);
    assert_eq!((code, out.trim()), (0, PINNED_VKEY), "{err}");
}

#[tokio::test]
async fn the_latest_checkpoint_exports_as_a_note_that_verifies_offline() {
    let dir = temp_dir();
    let key = write(&dir, "audit.pem", RFC_8032_PEM);
    let public = write(&dir, "audit.pem.pub", RFC_8032_PUBLIC_PEM);
    let signing_key = key.clone();
    let app = TestApp::spawn_with(move |settings| {
        settings.audit_signing_key_file = Some(signing_key);
        settings.audit_checkpoint_interval = Duration::from_secs(1);
    })
    .await
    .unwrap();
    app.create_task("Noted", "team-a").await.unwrap();
    let checkpoint = eventually(Duration::from_secs(30), || async {
        let body = app
            .graphql("{ auditCheckpoint { treeSize rootHash } }", json!({}))
            .await?;
        let checkpoint = body["data"]["auditCheckpoint"].clone();
        Ok((checkpoint["treeSize"].as_u64().unwrap_or(0) >= 1).then_some(checkpoint))
    })
    .await
    .expect("a signed checkpoint");
    let database = app.settings.database_url.expose().to_string();
    let env = [
        ("CHRONICLE_AUDIT_SIGNING_KEY_FILE", key.as_str()),
        ("DATABASE_URL", database.as_str()),
    ];
    let origin = "audit.example.com/chronicle";
    let (code, note, err) = chronicle(
        &[
            "audit",
            "export",
            "--format",
            "signed-note",
            "--origin",
            origin,
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(note.starts_with(&format!("{origin}\n")), "{note}");
    let (code, vkey, err) = chronicle(
        &[
            "audit",
            "public-key",
            "--format",
            "verifier-key",
            "--origin",
            origin,
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let vkey = vkey.trim();
    assert!(vkey.starts_with(&format!("{origin}+")), "{vkey}");
    let file = write(&dir, "checkpoint.note", &note);
    let (code, out, err) = chronicle(&["audit", "verify-note", &file, "--key", vkey], &[]);
    assert_eq!(code, 0, "{out}{err}");
    // The note states a signed checkpoint's size and root (a later one may have come since the
    // query: the note's is the latest).
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    assert!(size >= checkpoint["treeSize"].as_u64().unwrap());
    let body = app
        .graphql(
            "query($s: Int) { auditCheckpoint(treeSize: $s) { rootHash } }",
            json!({"s": size}),
        )
        .await
        .unwrap();
    let root = body["data"]["auditCheckpoint"]["rootHash"]
        .as_str()
        .unwrap();
    assert!(
        out.contains(&format!("tree size {size}, root {root} (hex)")),
        "{out}"
    );
    let (code, out, err) = chronicle(
        &[
            "audit",
            "verify-note",
            &file,
            "--public-key",
            &public,
            "--origin",
            origin,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");

    // A checkpoint rewritten in the database is not signed again.
    sqlx::raw_sql(
        "UPDATE audit_checkpoints SET root_hash = decode(repeat('00', 32), 'hex') \
         WHERE tree_size = (SELECT max(tree_size) FROM audit_checkpoints)",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let (code, out, err) = chronicle(&["audit", "export", "--format", "signed-note"], &env);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("does not verify under key"), "{err}");
    assert!(out.is_empty(), "{out}");
}
