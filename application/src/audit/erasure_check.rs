//! Telling an erased event from an edited one.
//!
//! An erasure of values stored in clear ([`crate::privacy::redact`]) changes an event's content
//! and keeps its hash, so the content no longer matches the hash: exactly what an edit looks
//! like. The erasure ledger records each change as a pair of content hashes (`prior_hash` to
//! `redacted_hash`), and the erasure's `DataSubjectErased` event, chained and checkpointed like
//! every event, commits to its pseudonym's rows with a count, a digest and an Ed25519 signature
//! under the checkpoint key. An event whose content does not match its hash is **erased** only
//! when all of these hold, and **edited** otherwise:
//! 1. its ledger rows lead from its stored hash to the hash of its content now;
//! 2. each row's erasure event is in the store, after the event;
//! 3. that event's digest and count are those of its pseudonym's rows, recomputed;
//! 4. its signature verifies, when the verifier holds the public key (otherwise the verdict
//!    says signatures were not checked: a database writer could then forge all of it).
//!
//! The digest is SHA-256 (hex) of `chronicle-erasure-ledger-v1\n` followed by
//! `<event id> <prior hash> <redacted hash>\n` per row, in the events' position order; the
//! signature covers, one field per line, `chronicle-erasure-v1`, the pseudonym, the count and
//! the digest.

use std::collections::HashMap;

use chronicle_domain::subject::{Redactions, DATA_SUBJECT_ERASED};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::signing::{CheckpointSigner, PublicKey};
use crate::ports::audit_log::{AuditRecord, LedgerEntry};

/// Names the ledger digest's format.
pub(crate) const LEDGER_FORMAT: &str = "chronicle-erasure-ledger-v1";
/// Names the signed text's format.
pub(crate) const ERASURE_FORMAT: &str = "chronicle-erasure-v1";

/// The digest of a pseudonym's ledger rows, given in position order.
pub(crate) fn ledger_digest<'r>(
    rows: impl IntoIterator<Item = (&'r Uuid, &'r str, &'r str)>,
) -> String {
    let mut digest = Sha256::new();
    digest.update(format!("{LEDGER_FORMAT}\n"));
    for (event_id, prior_hash, redacted_hash) in rows {
        digest.update(format!("{event_id} {prior_hash} {redacted_hash}\n"));
    }
    hex::encode(digest.finalize())
}

/// The text an erasure's signature covers.
pub fn signed_text(pseudonym: &str, events: u64, digest: &str) -> String {
    format!("{ERASURE_FORMAT}\n{pseudonym}\n{events}\n{digest}\n")
}

/// What an erasure of `pseudonym` commits to for `rows` (its ledger, in position order),
/// signed by `signer` when there is one.
pub fn redactions<'r>(
    pseudonym: &str,
    rows: impl IntoIterator<Item = (&'r Uuid, &'r str, &'r str)>,
    count: u64,
    signer: Option<&CheckpointSigner>,
) -> Redactions {
    let digest = ledger_digest(rows);
    let signed =
        signer.map(|signer| signer.sign_statement(&signed_text(pseudonym, count, &digest)));
    Redactions {
        events: count,
        digest,
        key_id: signed.as_ref().map(|(key_id, _)| key_id.clone()),
        signature: signed.map(|(_, signature)| hex::encode(signature)),
    }
}

/// The erasure event that changed an event, as the verdict names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRef {
    /// Whose values: what they read as, without `erased:`.
    pub pseudonym: String,
    /// The `DataSubjectErased` event.
    pub event_id: Uuid,
    /// Its global position.
    pub position: i64,
    /// When it was recorded.
    pub erased_at: DateTime<Utc>,
    /// Who asked for it, as stored (a reference to the officer's subject when sealed).
    pub erased_by: String,
}

impl ErasureRef {
    /// The erasure of `pseudonym` that `record`, its `DataSubjectErased` event, is.
    pub fn of(pseudonym: &str, record: &AuditRecord) -> Self {
        Self {
            pseudonym: pseudonym.to_owned(),
            event_id: record.event.event_id,
            position: record.position,
            erased_at: record.event.recorded_at,
            erased_by: record.metadata("actor_id").unwrap_or_default().to_owned(),
        }
    }
}

/// One erasure's standing: the event, or why its redactions are not to be trusted.
#[derive(Debug, Clone)]
struct Erasure {
    found: Option<ErasureRef>,
    problem: Option<String>,
}

/// Whether erasures' signatures were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signatures {
    /// Every erasure that changed an event was signed by this key.
    Checked {
        /// Its id.
        key_id: String,
    },
    /// No public key was given: digests were checked, signatures were not.
    NotChecked,
}

/// An event's content, judged against its hash and the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Content {
    /// It hashes to its hash.
    Intact,
    /// It differs only by erasures, these (oldest first).
    Erased(Vec<ErasureRef>),
    /// It was changed otherwise: why.
    Edited(String),
}

/// The ledger and the erasure events, read once, to judge events against.
#[derive(Debug, Clone)]
pub(crate) struct ErasureEvidence {
    rows: HashMap<Uuid, Vec<LedgerEntry>>,
    erasures: HashMap<String, Erasure>,
    signatures: Signatures,
}

/// The reason an event gives whose erasure the chain records but its content does not show.
const UNDONE: &str = "an erasure recorded in the chain changed it, but its content is as \
     before that erasure: the change was undone (or the erasure was interrupted: ask for it \
     again)";

/// The reason an edited event gives.
pub(crate) const EDITED: &str =
    "its content does not match its chain hash: the event was edited or moved";

impl ErasureEvidence {
    /// Over `ledger` (in position order) and the erasure events of its pseudonyms (each
    /// `DataSubject` stream's events, any order), checking signatures under `key` if given.
    pub fn new(
        ledger: Vec<LedgerEntry>,
        erasure_events: &[AuditRecord],
        key: Option<&PublicKey>,
    ) -> Self {
        let committed = erasure_events.iter().filter_map(Committed::of).collect();
        Self::of_committed(ledger, committed, key)
    }

    /// Over `ledger` (in position order) and what each erasure committed to, as an audit
    /// export carries them.
    pub(crate) fn of_committed(
        ledger: Vec<LedgerEntry>,
        committed: Vec<Committed>,
        key: Option<&PublicKey>,
    ) -> Self {
        let mut by_pseudonym: HashMap<&str, Vec<&LedgerEntry>> = HashMap::new();
        for row in &ledger {
            by_pseudonym.entry(&row.pseudonym).or_default().push(row);
        }
        let erasures = by_pseudonym
            .iter()
            .map(|(pseudonym, rows)| {
                let found = committed.iter().find(|c| c.erasure.pseudonym == *pseudonym);
                let erasure = judge_erasure(pseudonym, rows, found, key);
                ((*pseudonym).to_owned(), erasure)
            })
            .collect();
        let mut rows: HashMap<Uuid, Vec<LedgerEntry>> = HashMap::new();
        for row in ledger {
            rows.entry(row.event_id).or_default().push(row);
        }
        Self {
            rows,
            erasures,
            signatures: match key {
                Some(key) => Signatures::Checked { key_id: key.id() },
                None => Signatures::NotChecked,
            },
        }
    }

    /// Whether signatures were checked.
    pub fn signatures(&self) -> &Signatures {
        &self.signatures
    }

    /// Erasures that changed at least one event.
    pub fn erasures(&self) -> usize {
        self.erasures.len()
    }

    /// `event` (at `position`), whose content hashes to `content_hash`.
    pub fn judge(
        &self,
        event_id: Uuid,
        stored_hash: &str,
        position: i64,
        content_hash: &str,
    ) -> Content {
        let rows = self
            .rows
            .get(&event_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        // Rows a chained, trusted erasure commits to: each must be in effect.
        let committed = rows
            .iter()
            .filter(|row| {
                let erasure = &self.erasures[&row.pseudonym];
                erasure.problem.is_none() && erasure.found.is_some()
            })
            .count();
        if content_hash == stored_hash {
            return match committed {
                0 => Content::Intact,
                _ => Content::Edited(UNDONE.to_owned()),
            };
        }
        if rows.is_empty() {
            return Content::Edited(EDITED.to_owned());
        }
        let mut at = stored_hash;
        let mut by = Vec::new();
        // Each step follows one row; a path longer than the rows would be a cycle.
        for _ in 0..rows.len() {
            if at == content_hash {
                break;
            }
            let Some(row) = rows.iter().find(|row| row.prior_hash == at) else {
                break;
            };
            let erasure = &self.erasures[&row.pseudonym];
            match (&erasure.problem, &erasure.found) {
                (Some(problem), _) => {
                    return Content::Edited(format!(
                        "its content was changed under the erasure of {}, which {problem}",
                        row.pseudonym
                    ))
                }
                (None, Some(found)) if found.position > position => by.push(found.clone()),
                (None, _) => {
                    return Content::Edited(format!(
                        "its content was changed under the erasure of {}, which does not come \
                         after it",
                        row.pseudonym
                    ))
                }
            }
            at = &row.redacted_hash;
        }
        if at == content_hash && by.len() < committed {
            Content::Edited(UNDONE.to_owned())
        } else if at == content_hash {
            Content::Erased(by)
        } else {
            Content::Edited(format!(
                "{EDITED} (the erasure ledger does not lead from its hash to its content)"
            ))
        }
    }
}

/// An erasure event and what it committed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The erasure.
    pub erasure: ErasureRef,
    /// Its `redactions`, if it made any (or if they are readable).
    pub redactions: Option<Redactions>,
}

impl Committed {
    /// What `record` commits to, when it is a `DataSubjectErased` event.
    pub fn of(record: &AuditRecord) -> Option<Self> {
        if record.event.event_type != DATA_SUBJECT_ERASED {
            return None;
        }
        let fields = &record.event.payload[DATA_SUBJECT_ERASED];
        let pseudonym = fields["subjectPseudonym"].as_str()?;
        Some(Self {
            erasure: ErasureRef::of(pseudonym, record),
            redactions: serde_json::from_value(fields["redactions"].clone())
                .ok()
                .flatten(),
        })
    }
}

/// Whether `pseudonym`'s erasure event commits to exactly `rows`.
fn judge_erasure(
    pseudonym: &str,
    rows: &[&LedgerEntry],
    committed: Option<&Committed>,
    key: Option<&PublicKey>,
) -> Erasure {
    let Some(committed) = committed else {
        return Erasure {
            found: None,
            problem: Some("no DataSubjectErased event records".to_owned()),
        };
    };
    let found = committed.erasure.clone();
    let committed = committed.redactions.clone();
    let digest = ledger_digest(rows.iter().map(|row| {
        (
            &row.event_id,
            row.prior_hash.as_str(),
            row.redacted_hash.as_str(),
        )
    }));
    let problem = match committed {
        None => Some("commits to no change of an event".to_owned()),
        Some(committed) if committed.events != rows.len() as u64 || committed.digest != digest => {
            Some(format!(
                "commits to {} changed events with another digest than the ledger's {} rows \
                 (rows were added, removed or altered)",
                committed.events,
                rows.len()
            ))
        }
        Some(committed) => key.and_then(|key| {
            let text = signed_text(pseudonym, committed.events, &committed.digest);
            let signature = committed
                .signature
                .as_deref()
                .and_then(|s| hex::decode(s).ok());
            match (committed.key_id.as_deref(), signature) {
                (Some(key_id), Some(signature))
                    if key.verifies_statement(&text, key_id, &signature) =>
                {
                    None
                }
                (None, _) | (_, None) => Some("is not signed".to_owned()),
                (Some(key_id), Some(_)) => Some(format!(
                    "is not signed by key {} (its signature names key {key_id})",
                    key.id()
                )),
            }
        }),
    };
    Erasure {
        found: Some(found),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::data::event_log::StoredEvent;

    const P: &str = "3f9a0000000000000000000000000000";

    fn row(event: u128, position: i64, prior: &str, redacted: &str) -> LedgerEntry {
        LedgerEntry {
            event_id: Uuid::from_u128(event),
            position,
            pseudonym: P.to_owned(),
            prior_hash: prior.to_owned(),
            redacted_hash: redacted.to_owned(),
        }
    }

    fn erasure_event(position: i64, redactions: Option<Redactions>) -> AuditRecord {
        AuditRecord {
            position,
            event: StoredEvent {
                event_id: Uuid::from_u128(99),
                aggregate_type: "DataSubject".into(),
                aggregate_id: Uuid::from_u128(98).to_string(),
                sequence: 1,
                event_type: DATA_SUBJECT_ERASED.into(),
                event_version: "1.0".into(),
                payload: json!({DATA_SUBJECT_ERASED: {
                    "subjectPseudonym": P, "reason": "ticket", "redactions": redactions,
                }}),
                metadata: json!({"actor_id": "u-officer"}),
                recorded_at: Utc::now(),
                hash: "e".into(),
                previous_hash: "g".into(),
            },
        }
    }

    fn ledger() -> Vec<LedgerEntry> {
        vec![row(1, 1, "a", "a2"), row(2, 2, "b", "b2")]
    }

    fn signed_by(signer: &CheckpointSigner, rows: &[LedgerEntry]) -> Redactions {
        redactions(
            P,
            rows.iter()
                .map(|r| (&r.event_id, r.prior_hash.as_str(), r.redacted_hash.as_str())),
            rows.len() as u64,
            Some(signer),
        )
    }

    #[test]
    fn a_signed_erasure_makes_its_changes_erased_and_nothing_else() {
        let signer = CheckpointSigner::generate();
        let key = signer.public_key();
        let events = [erasure_event(10, Some(signed_by(&signer, &ledger())))];
        let evidence = ErasureEvidence::new(ledger(), &events, Some(&key));
        assert!(matches!(
            evidence.judge(Uuid::from_u128(1), "a", 1, "a2"),
            Content::Erased(by) if by.len() == 1 && by[0].event_id == Uuid::from_u128(99)
        ));
        // Its content put back as before the erasure: the signed change was undone.
        assert!(matches!(
            evidence.judge(Uuid::from_u128(1), "a", 1, "a"),
            Content::Edited(reason) if reason.contains("undone")
        ));
        // Changed again after the erasure: no row leads to that content.
        assert!(matches!(
            evidence.judge(Uuid::from_u128(1), "a", 1, "a3"),
            Content::Edited(_)
        ));
        // An event without a row is edited.
        assert!(matches!(
            evidence.judge(Uuid::from_u128(3), "c", 3, "c2"),
            Content::Edited(_)
        ));
        assert_eq!(
            evidence.signatures(),
            &Signatures::Checked { key_id: key.id() }
        );
    }

    #[test]
    fn a_row_added_to_the_ledger_breaks_the_digest_of_its_erasure() {
        let signer = CheckpointSigner::generate();
        let events = [erasure_event(10, Some(signed_by(&signer, &ledger())))];
        let mut forged = ledger();
        forged.push(row(3, 3, "c", "c2"));
        let evidence = ErasureEvidence::new(forged, &events, Some(&signer.public_key()));
        let Content::Edited(reason) = evidence.judge(Uuid::from_u128(3), "c", 3, "c2") else {
            panic!("a forged row is accepted");
        };
        assert!(reason.contains("another digest"), "{reason}");
        assert!(matches!(
            evidence.judge(Uuid::from_u128(1), "a", 1, "a2"),
            Content::Edited(_)
        ));
    }

    #[test]
    fn an_erasure_without_its_event_or_signature_or_before_the_event_is_not_trusted() {
        let signer = CheckpointSigner::generate();
        let key = signer.public_key();
        let judge = |events: &[AuditRecord], key: Option<&PublicKey>, position: i64| {
            ErasureEvidence::new(ledger(), events, key).judge(
                Uuid::from_u128(1),
                "a",
                position,
                "a2",
            )
        };
        assert!(matches!(judge(&[], Some(&key), 1), Content::Edited(_)));
        let mut unsigned = signed_by(&signer, &ledger());
        unsigned.signature = None;
        let events = [erasure_event(10, Some(unsigned))];
        assert!(
            matches!(judge(&events, Some(&key), 1), Content::Edited(r) if r.contains("not signed"))
        );
        assert!(
            matches!(judge(&events, None, 1), Content::Erased(_)),
            "without a key only the digest is checked"
        );
        let other = CheckpointSigner::generate();
        let events = [erasure_event(10, Some(signed_by(&other, &ledger())))];
        assert!(matches!(judge(&events, Some(&key), 1), Content::Edited(_)));
        let events = [erasure_event(10, Some(signed_by(&signer, &ledger())))];
        assert!(
            matches!(judge(&events, Some(&key), 11), Content::Edited(r) if r.contains("after"))
        );
    }

    #[test]
    fn two_erasures_of_one_event_chain_their_rows() {
        let second = "4b1c0000000000000000000000000000";
        let mut rows = vec![row(1, 1, "a", "a2")];
        rows.push(LedgerEntry {
            pseudonym: second.to_owned(),
            ..row(1, 1, "a2", "a3")
        });
        let first_event = erasure_event(
            10,
            Some(redactions(P, [(&rows[0].event_id, "a", "a2")], 1, None)),
        );
        let mut second_event = erasure_event(
            11,
            Some(redactions(
                second,
                [(&rows[1].event_id, "a2", "a3")],
                1,
                None,
            )),
        );
        second_event.event.payload[DATA_SUBJECT_ERASED]["subjectPseudonym"] = json!(second);
        let evidence = ErasureEvidence::new(rows, &[first_event, second_event], None);
        assert!(matches!(
            evidence.judge(Uuid::from_u128(1), "a", 1, "a3"),
            Content::Erased(by) if by.len() == 2
        ));
        assert_eq!(evidence.erasures(), 2);
    }
}
