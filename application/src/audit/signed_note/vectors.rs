//! Fixed vectors of the signed note, each computed outside Chronicle:
//!
//! - Chronicle's: RFC 8032's first test key (as in `signing`'s vectors) and the two-leaf tree of
//!   `merkle`'s vectors; the key ids, signatures, notes and verifier keys were computed with
//!   Python's hashlib and `cryptography` (OpenSSL) from the specs' text alone.
//! - Go's: the key, text and notes of `golang.org/x/mod/sumdb/note`'s own tests
//!   (`note_test.go`: `TestNewVerifier`, `TestSign`, `TestOpen`), the reference implementation
//!   the standard tools are built on. The PeterNeumann signer key
//!   `PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+…` holds the Ed25519 seed
//!   `810a1402…3173` after its type byte; below it is that seed as PKCS#8 PEM.

use chrono::{DateTime, Utc};

use super::*;

/// RFC 8032, section 7.1, TEST 1: the secret key, as PKCS#8 v1 PEM.
const RFC_8032_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
";

/// The root of `merkle`'s two-leaf vector tree (hex), `1mlfYpQS…` in base64.
const ROOT: &str = "d6695f6294123287bcdfecab0883b5e76ca7b54b8741081aadb6efa052f7d706";

/// The default origin of the RFC 8032 key: its Chronicle key id is `21fe31dfa154a261`.
const DEFAULT_ORIGIN: &str = "chronicle-audit/21fe31dfa154a261";

/// SHA-256("chronicle-audit/21fe31dfa154a261" || 0x0A || 0x01 || d75a9801…511a)[..4].
const DEFAULT_KEY_ID: u32 = 0xf088_9859;

/// The note of the two-leaf checkpoint under the default origin.
const DEFAULT_NOTE: &str = "chronicle-audit/21fe31dfa154a261
2
1mlfYpQSMoe83+yrCIO152yntUuHQQgarbbvoFL31wY=

— chronicle-audit/21fe31dfa154a261 8IiYWd60l9fQnn6Fk/949WzVWOVVwg2U6OPkpnx7jPSdPiSzgNckUo3mfLyW1I7XSY1tH7AlIz+FIGpITQgY0JXizQU=
";

/// Its verifier key.
const DEFAULT_VKEY: &str =
    "chronicle-audit/21fe31dfa154a261+f0889859+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea";

/// The same checkpoint under a chosen origin.
const EXAMPLE_ORIGIN: &str = "example.com/chronicle";

/// Its note: another key id, another signature.
const EXAMPLE_NOTE: &str = "example.com/chronicle
2
1mlfYpQSMoe83+yrCIO152yntUuHQQgarbbvoFL31wY=

— example.com/chronicle pCFwc2m/f9VvlTMAEcHP/JHDZzdm8p0fGCn6CIG52TMWy7hAR+cy/ZOGEALFOhV/LxgRGNcXcYzNDP3dYR0DV5Oy9w0=
";

/// Its verifier key.
const EXAMPLE_VKEY: &str =
    "example.com/chronicle+a4217073+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea";

/// Go's PeterNeumann key: the seed of its signer key, as PKCS#8 v1 PEM.
const PETER_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz
-----END PRIVATE KEY-----
";

/// Go's PeterNeumann verifier key (`TestNewVerifier`).
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

/// Go's EnochRoot verifier key (`TestOpen`).
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";

/// Go's note text.
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,
then you don't know what your problem is.
";

/// Go's signature lines of [`GO_TEXT`].
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn rfc_8032_signer() -> CheckpointSigner {
    CheckpointSigner::from_pem(RFC_8032_PEM).unwrap()
}

/// The two-leaf checkpoint, as the checkpointer signs it.
fn checkpoint() -> Checkpoint {
    let root: Hash = hex::decode(ROOT).unwrap().try_into().unwrap();
    let at: DateTime<Utc> = "2024-05-06T07:08:09.010Z".parse().unwrap();
    rfc_8032_signer().sign(2, root, at)
}

#[test]
fn a_checkpoint_signs_to_the_pinned_notes_and_verifier_keys() {
    let signer = rfc_8032_signer();
    let key = signer.public_key();
    assert_eq!(default_origin(&key), DEFAULT_ORIGIN);
    let verifier = VerifierKey::new(DEFAULT_ORIGIN, key.clone()).unwrap();
    assert_eq!(verifier.key_id(), DEFAULT_KEY_ID);
    assert_eq!(verifier.to_string(), DEFAULT_VKEY);
    assert_eq!(
        checkpoint_note(&checkpoint(), DEFAULT_ORIGIN, &signer).unwrap(),
        DEFAULT_NOTE
    );
    let example = VerifierKey::new(EXAMPLE_ORIGIN, key).unwrap();
    assert_eq!(example.to_string(), EXAMPLE_VKEY);
    assert_eq!(
        checkpoint_note(&checkpoint(), EXAMPLE_ORIGIN, &signer).unwrap(),
        EXAMPLE_NOTE
    );
}

#[test]
fn the_pinned_notes_open_under_their_verifier_keys_only() {
    for (note, vkey, origin) in [
        (DEFAULT_NOTE, DEFAULT_VKEY, DEFAULT_ORIGIN),
        (EXAMPLE_NOTE, EXAMPLE_VKEY, EXAMPLE_ORIGIN),
    ] {
        let verifier = VerifierKey::parse(vkey).unwrap();
        assert_eq!(verifier.public_key(), &rfc_8032_signer().public_key());
        let opened = open_checkpoint(note, &verifier).unwrap();
        assert_eq!(
            opened.checkpoint,
            NoteCheckpoint {
                origin: origin.to_owned(),
                tree_size: 2,
                root: checkpoint().root,
                extensions: Vec::new(),
            }
        );
        assert!(opened.others.is_empty());
    }
    // The same key under the other name is another key id: its signature is not looked for.
    let other = VerifierKey::parse(EXAMPLE_VKEY).unwrap();
    assert!(matches!(
        open_checkpoint(DEFAULT_NOTE, &other),
        Err(NoteError::NotSigned { .. })
    ));
}

#[test]
fn go_sumdb_notes_verifier_key_is_reproduced_and_read() {
    let peter = CheckpointSigner::from_pem(PETER_PEM).unwrap();
    let verifier = VerifierKey::new("PeterNeumann", peter.public_key()).unwrap();
    assert_eq!(verifier.key_id(), 0xc74f_20a3);
    assert_eq!(verifier.to_string(), PETER_VKEY);
    assert_eq!(VerifierKey::parse(PETER_VKEY).unwrap(), verifier);
    let enoch = VerifierKey::parse(ENOCH_VKEY).unwrap();
    assert_eq!((enoch.name(), enoch.key_id()), ("EnochRoot", 0xaf0c_fe78));
    assert_eq!(enoch.to_string(), ENOCH_VKEY);
}

#[test]
fn go_sumdb_notes_mangled_verifier_keys_are_refused() {
    // As TestNewVerifier: every part of the key, and the key with any one byte changed.
    let bytes = PETER_VKEY.as_bytes();
    for start in 0..=bytes.len() {
        for end in start + 1..=bytes.len() {
            if (start, end) != (0, bytes.len()) {
                let part = &PETER_VKEY[start..end];
                assert!(VerifierKey::parse(part).is_err(), "{part:?} was read");
            }
        }
    }
    for index in 0..bytes.len() {
        let mut changed = bytes.to_vec();
        changed[index] += 1;
        let changed = String::from_utf8(changed).unwrap();
        assert!(
            VerifierKey::parse(&changed).is_err(),
            "{changed:?} was read"
        );
    }
    // A key of the wrong length and an unknown algorithm, each with its key id adjusted.
    for bad in [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ] {
        assert!(VerifierKey::parse(bad).is_err(), "{bad:?} was read");
    }
}

#[test]
fn go_sumdb_notes_signature_is_reproduced() {
    let peter = CheckpointSigner::from_pem(PETER_PEM).unwrap();
    assert_eq!(
        sign_text(GO_TEXT, "PeterNeumann", &peter).unwrap(),
        format!("{GO_TEXT}\n{PETER_SIG}")
    );
}

#[test]
fn go_sumdb_notes_doubly_signed_note_opens_under_either_key() {
    let note = format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    let peter = VerifierKey::parse(PETER_VKEY).unwrap();
    let opened = open_note(&note, &peter).unwrap();
    assert_eq!(opened.text, GO_TEXT);
    assert_eq!(opened.others, vec!["EnochRoot+af0cfe78".to_owned()]);
    let enoch = VerifierKey::parse(ENOCH_VKEY).unwrap();
    let opened = open_note(&note, &enoch).unwrap();
    assert_eq!(opened.others, vec!["PeterNeumann+c74f20a3".to_owned()]);
    // Repeats of a verified signature are skipped; a corrupted signature of the key is not.
    let repeated = format!("{GO_TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}");
    assert!(open_note(&repeated, &peter).is_ok());
    let corrupted = format!("{GO_TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert!(matches!(
        open_note(&corrupted, &peter),
        Err(NoteError::InvalidSignature { .. })
    ));
    // 101 signatures are too many.
    let many = format!("{GO_TEXT}\n{}", PETER_SIG.repeat(101));
    assert!(matches!(
        open_note(&many, &peter),
        Err(NoteError::Malformed(_))
    ));
}

#[test]
fn go_sumdb_notes_malformed_messages_are_refused() {
    let peter = VerifierKey::parse(PETER_VKEY).unwrap();
    let bad = [
        GO_TEXT.to_owned(),
        format!("{GO_TEXT}\n"),
        format!("{GO_TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\x01{GO_TEXT}\n{PETER_SIG}"),
        format!("{GO_TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
        format!("{GO_TEXT}\n{PETER_SIG}Unexpected line.\n"),
    ];
    for note in bad {
        assert!(
            matches!(open_note(&note, &peter), Err(NoteError::Malformed(_))),
            "{note:?} was opened"
        );
    }
}
