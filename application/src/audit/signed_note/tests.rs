//! Round trips, tampering and notes that break the specs, with random keys.

use chrono::Utc;

use super::*;

const ORIGIN: &str = "audit.example.com/chronicle";

struct Log {
    signer: CheckpointSigner,
    checkpoint: Checkpoint,
}

impl Log {
    fn new(tree_size: u64) -> Self {
        let signer = CheckpointSigner::generate();
        let checkpoint = signer.sign(tree_size, [7; 32], Utc::now());
        Self { signer, checkpoint }
    }

    fn note(&self) -> String {
        checkpoint_note(&self.checkpoint, ORIGIN, &self.signer).unwrap()
    }

    fn verifier(&self) -> VerifierKey {
        VerifierKey::new(ORIGIN, self.signer.public_key()).unwrap()
    }

    fn open(&self, note: &str) -> Result<VerifiedCheckpoint, NoteError> {
        open_checkpoint(note, &self.verifier())
    }

    /// `text` signed as a note under the log's name, whatever it holds.
    fn signed(&self, text: &str) -> String {
        sign_text(text, ORIGIN, &self.signer).unwrap()
    }
}

/// `note` with one base64 character of its last signature line changed, 20 characters in: in
/// the signature, past the key id's 4 bytes (6 characters).
fn corrupted(note: &str) -> String {
    let line = note.rfind('—').unwrap();
    let name = line + note[line..].find(' ').unwrap() + 1;
    let at = name + note[name..].find(' ').unwrap() + 1 + 20;
    let mut bytes = note.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

fn invalid_signature(result: Result<VerifiedCheckpoint, NoteError>) -> bool {
    matches!(result, Err(NoteError::InvalidSignature { .. }))
}

#[test]
fn a_note_verifies_under_its_verifier_key_and_states_the_checkpoint() {
    let log = Log::new(42);
    let note = log.note();
    let opened = log.open(&note).unwrap();
    assert_eq!(opened.checkpoint.origin, ORIGIN);
    assert_eq!(opened.checkpoint.tree_size, 42);
    assert_eq!(opened.checkpoint.root, [7; 32]);
    assert!(opened.checkpoint.extensions.is_empty());
    // The verifier key travels as text.
    let again = VerifierKey::parse(&log.verifier().to_string()).unwrap();
    assert_eq!(again, log.verifier());
    assert!(open_checkpoint(&note, &again).is_ok());
    // An empty tree and the largest size are written and read alike.
    for size in [0, u64::MAX] {
        let log = Log::new(size);
        assert_eq!(log.open(&log.note()).unwrap().checkpoint.tree_size, size);
    }
}

#[test]
fn a_changed_size_root_origin_or_signature_is_refused() {
    let log = Log::new(42);
    let note = log.note();
    assert!(invalid_signature(
        log.open(&note.replacen("\n42\n", "\n43\n", 1))
    ));
    let root = STANDARD.encode([7u8; 32]);
    let other_root = STANDARD.encode([8u8; 32]);
    assert!(invalid_signature(log.open(&note.replacen(
        &root,
        &other_root,
        1
    ))));
    // The origin line alone (the signature line keeps the key's name).
    let renamed = note.replacen(
        &format!("{ORIGIN}\n42"),
        "audit.example.org/chronicle\n42",
        1,
    );
    assert_ne!(renamed, note);
    assert!(invalid_signature(log.open(&renamed)));
    assert!(invalid_signature(log.open(&corrupted(&note))));
}

#[test]
fn another_key_or_name_finds_no_signature_of_its_own() {
    let log = Log::new(5);
    let note = log.note();
    let stranger = VerifierKey::new(ORIGIN, CheckpointSigner::generate().public_key()).unwrap();
    assert!(matches!(
        open_checkpoint(&note, &stranger),
        Err(NoteError::NotSigned { .. })
    ));
    let renamed = VerifierKey::new("elsewhere.example/log", log.signer.public_key()).unwrap();
    assert!(matches!(
        open_checkpoint(&note, &renamed),
        Err(NoteError::NotSigned { .. })
    ));
    // A note signed under the key's name, whose origin is another log's.
    let text = NoteCheckpoint {
        origin: "elsewhere.example/log".to_owned(),
        tree_size: 5,
        root: [7; 32],
        extensions: Vec::new(),
    }
    .text();
    assert!(matches!(
        log.open(&log.signed(&text)),
        Err(NoteError::OriginMismatch { .. })
    ));
}

#[test]
fn other_keys_signatures_are_ignored_but_a_bad_one_of_the_key_is_not() {
    let log = Log::new(9);
    let note = log.note();
    let witness = CheckpointSigner::generate();
    let cosigned = sign_text(
        &log.open(&note).unwrap().checkpoint.text(),
        "witness.example/w1",
        &witness,
    )
    .unwrap();
    let witness_line = &cosigned[cosigned.rfind('—').unwrap()..];
    let both = format!("{note}{witness_line}");
    let opened = log.open(&both).unwrap();
    assert_eq!(opened.others.len(), 1);
    assert!(opened.others[0].starts_with("witness.example/w1+"));
    // The key's own signature, corrupted, before a good one: the first decides (as Go's Open).
    let own_line = &note[note.rfind('—').unwrap()..];
    let bad_first = format!("{}{own_line}", corrupted(&note));
    assert!(invalid_signature(log.open(&bad_first)));
}

#[test]
fn notes_that_break_signed_note_are_refused() {
    let log = Log::new(3);
    let note = log.note();
    let malformed = |note: &str| matches!(log.open(note), Err(NoteError::Malformed(_)));
    // No final newline; no blank line; a hyphen for the em dash; a control character; a key
    // name with '+'; a signature too short to hold a key id and a signature.
    assert!(malformed(note.trim_end()));
    assert!(malformed(&note.replacen("\n\n", "\n", 1)));
    assert!(malformed(&note.replacen('—', "-", 1)));
    assert!(malformed(&note.replacen(ORIGIN, "audit\texample", 1)));
    let line = note.rfind('—').unwrap();
    let text = &note[..line];
    assert!(malformed(&format!("{text}— a+b AAAAAAAA\n")));
    assert!(malformed(&format!("{text}— {ORIGIN} AAAAAA==\n")));
    assert!(malformed(&format!("{text}— {ORIGIN}\n")));
}

#[test]
fn signed_texts_that_break_tlog_checkpoint_are_refused() {
    let log = Log::new(3);
    let root = STANDARD.encode([7u8; 32]);
    let not_a_checkpoint = |text: &str| {
        matches!(
            log.open(&log.signed(text)),
            Err(NoteError::NotACheckpoint(_))
        )
    };
    for size in ["03", "+3", "-3", "3.0", " 3", "", "18446744073709551616"] {
        assert!(
            not_a_checkpoint(&format!("{ORIGIN}\n{size}\n{root}\n")),
            "size {size:?}"
        );
    }
    let short_root = STANDARD.encode([7u8; 31]);
    let hex_root = hex::encode([7u8; 32]);
    for bad_root in [short_root.as_str(), hex_root.as_str(), "", "not base64!"] {
        assert!(
            not_a_checkpoint(&format!("{ORIGIN}\n3\n{bad_root}\n")),
            "root {bad_root:?}"
        );
    }
    assert!(not_a_checkpoint(&format!("{ORIGIN}\n3\n")));
    assert!(not_a_checkpoint(&format!("\n3\n{root}\n")));
    // An empty extension line: a blank line inside the text, which signed-note allows (the
    // last blank line ends the text) and tlog-checkpoint does not.
    assert!(not_a_checkpoint(&format!("{ORIGIN}\n3\n{root}\nx\n\ny\n")));
    // Extension lines are allowed, and read.
    let extended = log
        .open(&log.signed(&format!("{ORIGIN}\n3\n{root}\nx-ext 1\nmore\n")))
        .unwrap();
    assert_eq!(extended.checkpoint.extensions, vec!["x-ext 1", "more"]);
}

#[test]
fn only_a_checkpoint_the_key_signed_is_signed_again_and_under_a_valid_origin() {
    let log = Log::new(4);
    let other = CheckpointSigner::generate();
    assert!(matches!(
        checkpoint_note(&log.checkpoint, ORIGIN, &other),
        Err(NoteError::UnverifiedCheckpoint { .. })
    ));
    // A stored checkpoint rewritten in the database: its signature no longer holds.
    let mut rewritten = log.checkpoint.clone();
    rewritten.root[0] ^= 1;
    assert!(matches!(
        checkpoint_note(&rewritten, ORIGIN, &log.signer),
        Err(NoteError::UnverifiedCheckpoint { .. })
    ));
    for bad in ["", "a b", "a+b", "a\tb", "a\u{a0}b"] {
        assert_eq!(
            checkpoint_note(&log.checkpoint, bad, &log.signer),
            Err(NoteError::InvalidName(bad.to_owned()))
        );
        assert!(VerifierKey::new(bad, log.signer.public_key()).is_err());
    }
    // No note reads as one of Chronicle's own statements under the same key.
    for reserved in RESERVED_ORIGINS {
        assert_eq!(
            checkpoint_note(&log.checkpoint, reserved, &log.signer),
            Err(NoteError::ReservedOrigin(reserved.to_owned()))
        );
        let text = format!("{reserved}\n4\n{}\n", STANDARD.encode([7u8; 32]));
        assert!(sign_text(&text, "any.example/name", &log.signer).is_err());
    }
    assert!(sign_text("no newline", ORIGIN, &log.signer).is_err());
}

#[test]
fn verifier_keys_of_other_shapes_are_refused() {
    let log = Log::new(1);
    let good = log.verifier().to_string();
    let key = good.splitn(3, '+').nth(2).unwrap();
    let id = log.verifier().key_id();
    // The key with another type byte: 0x02 (ECDSA) for 0x01.
    let mut typed = STANDARD.decode(key).unwrap();
    typed[0] = 0x02;
    for bad in [
        String::new(),
        ORIGIN.to_owned(),
        good.replacen('+', "+0", 1),
        good.to_uppercase(),
        format!("{ORIGIN}+00000000+{key}"),
        format!("{ORIGIN}+{id:08x}+{}", STANDARD.encode(typed)),
        format!("{ORIGIN}+{id:08x}+{}", &key[..key.len() - 4]),
    ] {
        assert!(VerifierKey::parse(&bad).is_err(), "{bad:?} was read");
    }
    // The key id's hex digits may be upper case, as Go's ParseUint reads them.
    let hex_id = format!("{id:08x}");
    let upper = good.replacen(&hex_id, &hex_id.to_uppercase(), 1);
    assert_eq!(VerifierKey::parse(&upper).unwrap(), log.verifier());
}
