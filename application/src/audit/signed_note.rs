//! Checkpoints as C2SP signed notes, so that standard transparency-log tools (Go's
//! `golang.org/x/mod/sumdb/note`, transparency-dev's clients and witnesses) check Chronicle's
//! checkpoints without knowing Chronicle's own checkpoint text.
//!
//! The note of a checkpoint at tree size 2 (<https://c2sp.org/tlog-checkpoint> for the text,
//! <https://c2sp.org/signed-note> for the rest):
//!
//! ```text
//! chronicle-audit/21fe31dfa154a261
//! 2
//! 1mlfYpQSMoe83+yrCIO152yntUuHQQgarbbvoFL31wY=
//!
//! — chronicle-audit/21fe31dfa154a261 8IiYWd60l9fQnn6Fk/949WzVWOVVwg2U6OPkpnx7jPSdPiSzgNckUo3mfLyW1I7XSY1tH7AlIz+FIGpITQgY0JXizQU=
//! ```
//!
//! - The text: the log's origin, the tree size in decimal (no leading zero) and the root hash
//!   in standard base64, each line ending in `\n`. Chronicle writes no extension lines (the
//!   spec advises against them) and reads notes that carry some.
//! - A blank line, then the signature line: an em dash (U+2014), a space, the key name, a
//!   space, and base64 of the 4-byte key id (big-endian) followed by the 64-byte Ed25519
//!   signature of the text, its last newline included and the blank line not.
//! - The key id is `SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[..4]`, signed-note's
//!   id of an Ed25519 key (signature type `0x01`): not Chronicle's key id, which hashes the key
//!   alone and could not tell two logs sharing a key apart.
//! - A tool is configured with the verifier key `<name>+<key id, 8 hex digits>+<base64(0x01 ||
//!   public key)>` ([`VerifierKey`]).
//!
//! The key's name is the origin (tlog-checkpoint says it SHOULD be), and the key is the
//! checkpoint key: a note is a second signature by the same key over the size and root of a
//! stored checkpoint, made only once that checkpoint's own signature verifies under the key
//! ([`checkpoint_note`]), so a database writer cannot have a root the log never signed signed
//! as a note. A note carries no time: the checkpoint's `issuedAt` is not in it.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::erasure_check::ERASURE_FORMAT;
use super::merkle::Hash;
use super::signing::{Checkpoint, CheckpointSigner, PublicKey};
use crate::data::checkpoint::CHECKPOINT_FORMAT;

/// signed-note's signature type of Ed25519.
const ED25519: u8 = 0x01;

/// What starts a signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The most signature lines read: as Go's `note.Open` (the spec asks for at least 16), so a
/// note of endless lines is refused rather than read.
const MAX_SIGNATURES: usize = 100;

/// Chronicle's other statements under the checkpoint key start with their format's name; a
/// note starts with its origin, so no origin may be one of those names and no note reads as
/// one of them.
const RESERVED_ORIGINS: [&str; 2] = [CHECKPOINT_FORMAT, ERASURE_FORMAT];

/// Why a note, a name or a verifier key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name or origin the specs do not allow.
    #[error(
        "{0:?} is not a key name: it must be non-empty, without spaces, '+' or control characters"
    )]
    InvalidName(String),
    /// An origin that is one of Chronicle's statement formats.
    #[error("{0:?} names one of Chronicle's own signed statements: choose another origin")]
    ReservedOrigin(String),
    /// Not `<name>+<key id>+<key>`.
    #[error("not a verifier key (<name>+<8 hex digits>+<base64 of 0x01 and the 32-byte Ed25519 key>): {0}")]
    MalformedVerifierKey(String),
    /// Not a signed note (signed-note's syntax).
    #[error("malformed note: {0}")]
    Malformed(String),
    /// A signed note whose text is not a checkpoint (tlog-checkpoint's syntax).
    #[error("not a checkpoint (origin, tree size, root hash): {0}")]
    NotACheckpoint(String),
    /// The verifier's key signed the note, and its signature does not verify.
    #[error("the signature of {key} does not verify: the note was changed or forged")]
    InvalidSignature {
        /// `<name>+<key id>`.
        key: String,
    },
    /// No signature of the verifier's key (name and key id) is in the note.
    #[error("no signature of {expected} in the note (it is signed by {found})")]
    NotSigned {
        /// The verifier's `<name>+<key id>`.
        expected: String,
        /// The note's signers, `<name>+<key id>` each.
        found: String,
    },
    /// The note is signed, and its origin is not the key's name.
    #[error("the checkpoint's origin {origin:?} is not the name of its key, {name:?}")]
    OriginMismatch {
        /// The note's origin line.
        origin: String,
        /// The verifier key's name.
        name: String,
    },
    /// The stored checkpoint does not verify under the signer's key: it is not signed again.
    #[error(
        "the checkpoint at tree size {tree_size} (key {key_id}) does not verify under key \
         {signer_key_id}: it is not signed again as a note"
    )]
    UnverifiedCheckpoint {
        /// Its tree size.
        tree_size: u64,
        /// The key id it names.
        key_id: String,
        /// The signer's key id.
        signer_key_id: String,
    },
}

/// A key name: non-empty, without Unicode spaces or `+` (signed-note), nor control characters
/// (which no note may hold).
fn check_name(name: &str) -> Result<(), NoteError> {
    let invalid = |c: char| c.is_whitespace() || c == '+' || c < ' ';
    if name.is_empty() || name.chars().any(invalid) {
        return Err(NoteError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// An origin Chronicle signs notes under: a key name, and none of its statement formats.
fn check_origin(origin: &str) -> Result<(), NoteError> {
    check_name(origin)?;
    if RESERVED_ORIGINS.contains(&origin) {
        return Err(NoteError::ReservedOrigin(origin.to_owned()));
    }
    Ok(())
}

/// The origin of a key's notes when none is given: `chronicle-audit/<Chronicle key id>`.
/// Derived from the key, so every note of one log names the same origin without a setting
/// (tools follow a log by its origin); a new key starts a new origin.
pub fn default_origin(key: &PublicKey) -> String {
    format!("chronicle-audit/{}", key.id())
}

/// A verifier key: a key name and an Ed25519 public key, written
/// `<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>` as Go's `note.NewVerifier`
/// reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key: PublicKey,
}

impl VerifierKey {
    /// `key` under `name`.
    pub fn new(name: &str, key: PublicKey) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// Reads `<name>+<key id>+<key>`: the id must be the name's and key's.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let malformed = |why: &str| NoteError::MalformedVerifierKey(why.to_owned());
        // The name holds no '+' and the id none: the key's base64 may.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed("it has fewer than three parts joined by '+'"));
        };
        check_name(name)?;
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("its key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id, 16).map_err(|e| malformed(&e.to_string()))?;
        let bytes = STANDARD
            .decode(key)
            .map_err(|_| malformed("its key is not base64"))?;
        let raw: [u8; 32] = match bytes.split_first() {
            Some((&ED25519, raw)) => raw
                .try_into()
                .map_err(|_| malformed("an Ed25519 key has 32 bytes"))?,
            _ => return Err(malformed("its key is not an Ed25519 key (type byte 0x01)")),
        };
        let key = PublicKey::from_bytes(&raw).map_err(|e| malformed(&e.to_string()))?;
        let verifier = Self {
            name: name.to_owned(),
            key,
        };
        if verifier.key_id() != id {
            return Err(malformed(&format!(
                "its key id {id:08x} is not that of its name and key ({:08x})",
                verifier.key_id()
            )));
        }
        Ok(verifier)
    }

    /// The key's name: Chronicle's notes' origin.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// signed-note's key id: `SHA-256(name || 0x0A || 0x01 || key)[..4]`, big-endian.
    pub fn key_id(&self) -> u32 {
        let mut digest = Sha256::new();
        digest.update(self.name.as_bytes());
        digest.update([b'\n', ED25519]);
        digest.update(self.key.to_bytes());
        let hash = digest.finalize();
        u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]])
    }

    /// `<name>+<key id>`, as errors and Go's name a key.
    fn short(&self) -> String {
        format!("{}+{:08x}", self.name, self.key_id())
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = vec![ED25519];
        key.extend_from_slice(&self.key.to_bytes());
        write!(f, "{}+{}", self.short(), STANDARD.encode(key))
    }
}

/// No ASCII control character but the newline, as signed-note requires of a whole note.
fn check_characters(text: &str) -> Result<(), NoteError> {
    match text.chars().find(|&c| c < ' ' && c != '\n') {
        Some(c) => Err(NoteError::Malformed(format!(
            "it holds the control character U+{:04X}",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

/// A note's text: ending in a newline, of the characters a note may hold.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed(
            "its text does not end in a newline".to_owned(),
        ));
    }
    check_characters(text)
}

/// Signs `text` as a note under `name`: the text, a blank line, the signature line. Private:
/// the checkpoint key signs checkpoints' texts only ([`checkpoint_note`]); the first-line check
/// is a second guard of that.
fn sign_text(text: &str, name: &str, signer: &CheckpointSigner) -> Result<String, NoteError> {
    let verifier = VerifierKey::new(name, signer.public_key())?;
    check_text(text)?;
    let first = text.lines().next().unwrap_or_default();
    if RESERVED_ORIGINS.contains(&first) {
        return Err(NoteError::ReservedOrigin(first.to_owned()));
    }
    let mut signature = verifier.key_id().to_be_bytes().to_vec();
    signature.extend_from_slice(&signer.sign_note_text(text));
    Ok(format!(
        "{text}\n{SIGNATURE_PREFIX}{name} {}\n",
        STANDARD.encode(signature)
    ))
}

/// A note whose signature by the verifier's key verified.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenedNote {
    /// The signed text, its last newline included.
    text: String,
    /// The other signatures (witnesses' cosignatures, another key's), `<name>+<key id>` each:
    /// ignored, as the spec says.
    others: Vec<String>,
}

/// One signature line: its key name, key id and signature.
fn signature_line(line: &str) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let malformed = |why: &str| NoteError::Malformed(format!("{line:?} {why}"));
    let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
        malformed("is not a signature line (an em dash, a space, a key name, a space, base64)")
    })?;
    let (name, encoded) = rest.split_once(' ').unwrap_or((rest, ""));
    check_name(name).map_err(|_| malformed("does not start with a key name"))?;
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| malformed("does not end in base64"))?;
    match bytes.split_first_chunk::<4>() {
        Some((id, signature)) if !signature.is_empty() => {
            Ok((name, u32::from_be_bytes(*id), signature.to_vec()))
        }
        _ => Err(malformed("holds no key id and signature")),
    }
}

/// Opens a note as Go's `note.Open` does: every signature line well formed; the first
/// signature of the verifier's key (name and key id) must verify, and its repeats are
/// skipped; signatures of other keys are ignored; a note the key did not sign is refused.
fn open_note(note: &str, verifier: &VerifierKey) -> Result<OpenedNote, NoteError> {
    let malformed = |why: &str| NoteError::Malformed(why.to_owned());
    check_characters(note)?;
    // The text may hold blank lines: the last one separates it from the signatures.
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| malformed("no blank line separates its text from signatures"))?;
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    let Some(signatures) = signatures.strip_suffix('\n') else {
        return Err(malformed(
            "it does not end in a signature line and a newline",
        ));
    };
    let lines: Vec<&str> = signatures.split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(malformed("it has more than 100 signatures"));
    }
    let (mut verified, mut others) = (false, Vec::new());
    for line in lines {
        let (name, id, signature) = signature_line(line)?;
        if name != verifier.name || id != verifier.key_id() {
            others.push(format!("{name}+{id:08x}"));
        } else if !verified {
            if !verifier.key.verifies(text, &signature) {
                return Err(NoteError::InvalidSignature {
                    key: verifier.short(),
                });
            }
            verified = true;
        }
    }
    if !verified {
        return Err(NoteError::NotSigned {
            expected: verifier.short(),
            found: others.join(", "),
        });
    }
    Ok(OpenedNote {
        text: text.to_owned(),
        others,
    })
}

/// A checkpoint's note text (tlog-checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteCheckpoint {
    /// The log's origin: the note key's name.
    pub origin: String,
    /// Events in the tree.
    pub tree_size: u64,
    /// The tree's root hash.
    pub root: Hash,
    /// Extension lines (Chronicle writes none).
    pub extensions: Vec<String>,
}

impl NoteCheckpoint {
    /// The text: origin, tree size, base64 root and any extension lines, each ending in `\n`.
    pub fn text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Reads a note's text as a checkpoint: at least three lines, none empty; a decimal tree
    /// size without a leading zero; a root of 32 bytes (Chronicle's tree is SHA-256).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let not = |why: &str| NoteError::NotACheckpoint(why.to_owned());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| not("its text does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|origin| !origin.is_empty())
            .ok_or_else(|| not("the origin line is empty"))?;
        let size = lines.next().ok_or_else(|| not("no tree size line"))?;
        let canonical = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        if !canonical {
            return Err(not(&format!(
                "the tree size {size:?} is not a decimal number without a leading zero"
            )));
        }
        let tree_size: u64 = size
            .parse()
            .map_err(|_| not(&format!("the tree size {size} is beyond 2^64 - 1")))?;
        let root = lines.next().ok_or_else(|| not("no root hash line"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| not(&format!("the root hash {root:?} is not base64 of 32 bytes")))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(not("an extension line is empty"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            tree_size,
            root,
            extensions,
        })
    }
}

/// The signed checkpoint as a note of `origin`, signed again by `signer` under that name:
/// only when `signer`'s key signed the checkpoint, so a note states nothing the log did not.
pub fn checkpoint_note(
    checkpoint: &Checkpoint,
    origin: &str,
    signer: &CheckpointSigner,
) -> Result<String, NoteError> {
    let key = signer.public_key();
    if !checkpoint.verify(&key) {
        return Err(NoteError::UnverifiedCheckpoint {
            tree_size: checkpoint.tree_size,
            key_id: checkpoint.key_id.clone(),
            signer_key_id: key.id(),
        });
    }
    check_origin(origin)?;
    let text = NoteCheckpoint {
        origin: origin.to_owned(),
        tree_size: checkpoint.tree_size,
        root: checkpoint.root,
        extensions: Vec::new(),
    }
    .text();
    sign_text(&text, origin, signer)
}

/// A checkpoint note that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// What it states.
    pub checkpoint: NoteCheckpoint,
    /// Signatures of other keys it carries, `<name>+<key id>` each: not checked.
    pub others: Vec<String>,
}

/// Checks a checkpoint note under `verifier`: its signature (other keys' are ignored), then
/// its text as a checkpoint (read only once signed, as signed-note says), whose origin must be
/// the key's name.
pub fn open_checkpoint(
    note: &str,
    verifier: &VerifierKey,
) -> Result<VerifiedCheckpoint, NoteError> {
    let opened = open_note(note, verifier)?;
    let checkpoint = NoteCheckpoint::parse(&opened.text)?;
    if checkpoint.origin != verifier.name {
        return Err(NoteError::OriginMismatch {
            origin: checkpoint.origin,
            name: verifier.name.clone(),
        });
    }
    Ok(VerifiedCheckpoint {
        checkpoint,
        others: opened.others,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod vectors;
