//! An audit export an auditor checks on their own machine, with no database and no broker:
//! JSON Lines, first the signed checkpoint, then each event as the trail shows it with its
//! leaf index, leaf hash and inclusion proof against that checkpoint.
//!
//! ```text
//! {"format": "chronicle-audit-export-v1", "checkpoint": {treeSize, rootHash, issuedAt, keyId, signature}}
//! {"event": {position, eventId, aggregateType, aggregateId, sequence, eventType, eventVersion,
//!            payload, metadata, recordedAt, hash, previousHash}, "leafIndex", "leafHash", "proof": [hex...]}
//! ```
//!
//! [`verify_export`] checks, for each event: its content against its chain hash, the leaf it
//! makes against the leaf hash, the proof against the signed root, and the chain links between
//! consecutive events of a stream in the file; and the checkpoint's signature.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::merkle::{self, Hash};
use super::signing::{Checkpoint, PublicKey};
use crate::event_log::StoredEvent;
use crate::hash_chain::event_hash;

/// Names the export's format on its first line.
pub const EXPORT_FORMAT: &str = "chronicle-audit-export-v1";

/// The export's first line.
pub fn header_line(checkpoint: &Checkpoint) -> Value {
    json!({"format": EXPORT_FORMAT, "checkpoint": checkpoint.to_json()})
}

/// One event's line.
pub fn event_line(
    position: i64,
    event: &StoredEvent,
    leaf_index: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
) -> Value {
    json!({
        "event": {
            "position": position,
            "eventId": event.event_id,
            "aggregateType": event.aggregate_type,
            "aggregateId": event.aggregate_id,
            "sequence": event.sequence,
            "eventType": event.event_type,
            "eventVersion": event.event_version,
            "payload": event.payload,
            "metadata": event.metadata,
            "recordedAt": event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "hash": event.hash,
            "previousHash": event.previous_hash,
        },
        "leafIndex": leaf_index,
        "leafHash": hex::encode(leaf_hash),
        "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
    })
}

/// What checking an export found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportCheck {
    /// Events checked.
    pub events: u64,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// Every problem, in words; empty when the export is intact.
    pub findings: Vec<String>,
}

fn stored_event(value: &Value) -> Option<(i64, StoredEvent)> {
    Some((
        value["position"].as_i64()?,
        StoredEvent {
            event_id: value["eventId"].as_str()?.parse().ok()?,
            aggregate_type: value["aggregateType"].as_str()?.to_owned(),
            aggregate_id: value["aggregateId"].as_str()?.to_owned(),
            sequence: value["sequence"].as_u64()?,
            event_type: value["eventType"].as_str()?.to_owned(),
            event_version: value["eventVersion"].as_str()?.to_owned(),
            payload: value["payload"].clone(),
            metadata: value["metadata"].clone(),
            recorded_at: DateTime::parse_from_rfc3339(value["recordedAt"].as_str()?)
                .ok()?
                .with_timezone(&Utc),
            hash: value["hash"].as_str()?.to_owned(),
            previous_hash: value["previousHash"].as_str()?.to_owned(),
        },
    ))
}

fn hashes(value: &Value) -> Option<Vec<Hash>> {
    value
        .as_array()?
        .iter()
        .map(|h| hex::decode(h.as_str()?).ok()?.try_into().ok())
        .collect()
}

/// Checks an export (its whole text) under `key`.
pub fn verify_export(text: &str, key: &PublicKey) -> ExportCheck {
    let mut check = ExportCheck::default();
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header = lines
        .next()
        .and_then(|line| serde_json::from_str::<Value>(line).ok());
    let checkpoint = match header.as_ref() {
        Some(header) if header["format"] == EXPORT_FORMAT => {
            Checkpoint::from_json(&header["checkpoint"])
        }
        _ => None,
    };
    let Some(checkpoint) = checkpoint else {
        check.findings.push(format!(
            "the first line is not a {EXPORT_FORMAT} header with a checkpoint"
        ));
        return check;
    };
    check.tree_size = checkpoint.tree_size;
    if !checkpoint.verify(key) {
        check.findings.push(format!(
            "the checkpoint at tree size {} does not verify under key {}",
            checkpoint.tree_size,
            key.id()
        ));
    }
    // The last event seen of each stream: (sequence, hash).
    let mut streams: HashMap<(String, String), (u64, String)> = HashMap::new();
    for (number, line) in lines.enumerate() {
        let line_number = number + 2;
        let value: Option<Value> = serde_json::from_str(line).ok();
        let parsed = value.as_ref().and_then(|value| {
            let (position, event) = stored_event(&value["event"])?;
            let leaf_hash: Hash = hex::decode(value["leafHash"].as_str()?)
                .ok()?
                .try_into()
                .ok()?;
            Some((
                position,
                event,
                value["leafIndex"].as_u64()?,
                leaf_hash,
                hashes(&value["proof"])?,
            ))
        });
        let Some((position, event, leaf_index, leaf_hash, proof)) = parsed else {
            check
                .findings
                .push(format!("line {line_number} is not an exported event"));
            continue;
        };
        check.events += 1;
        let name = format!(
            "{} {} sequence {} (line {line_number})",
            event.aggregate_type, event.aggregate_id, event.sequence
        );
        if event_hash(&event) != event.hash {
            check
                .findings
                .push(format!("{name}: its content does not match its chain hash"));
        }
        let stream = (event.aggregate_type.clone(), event.aggregate_id.clone());
        if let Some((sequence, hash)) = streams.get(&stream) {
            if event.sequence == sequence + 1 && event.previous_hash != *hash {
                check.findings.push(format!(
                    "{name}: does not link to the previous event of its stream"
                ));
            }
        }
        streams.insert(stream, (event.sequence, event.hash.clone()));
        let leaf = merkle::leaf_hash(&merkle::leaf_data(
            position,
            &event.event_id.to_string(),
            &event.aggregate_type,
            &event.aggregate_id,
            event.sequence as i64,
            &event.hash,
        ));
        if leaf != leaf_hash {
            check.findings.push(format!(
                "{name}: its leaf hash is not the one its fields make"
            ));
        }
        if !merkle::verify_inclusion(
            &leaf,
            leaf_index,
            checkpoint.tree_size,
            &proof,
            &checkpoint.root,
        ) {
            check.findings.push(format!(
                "{name}: not in the log the checkpoint at tree size {} signed",
                checkpoint.tree_size
            ));
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::merkle::MemoryTree;
    use crate::audit::signing::CheckpointSigner;
    use crate::hash_chain::GENESIS_HASH;

    fn event(sequence: u64, previous_hash: &str) -> StoredEvent {
        let mut event = StoredEvent {
            event_id: uuid::Uuid::now_v7(),
            aggregate_type: "Task".into(),
            aggregate_id: "a1".into(),
            sequence,
            event_type: "TaskCreated".into(),
            event_version: "2.0".into(),
            payload: json!({"TaskCreated": {"title": format!("t{sequence}")}}),
            metadata: json!({"actor_id": "u-1"}),
            recorded_at: crate::event_log::store_now(),
            hash: String::new(),
            previous_hash: previous_hash.to_owned(),
        };
        event.hash = event_hash(&event);
        event
    }

    /// An export of three events of one stream, signed by a new key.
    fn export() -> (String, PublicKey) {
        let first = event(1, GENESIS_HASH);
        let second = event(2, &first.hash);
        let third = event(3, &second.hash);
        let events = [first, second, third];
        let mut tree = MemoryTree::default();
        let leaves: Vec<Hash> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                merkle::leaf_hash(&merkle::leaf_data(
                    i as i64 + 1,
                    &e.event_id.to_string(),
                    &e.aggregate_type,
                    &e.aggregate_id,
                    e.sequence as i64,
                    &e.hash,
                ))
            })
            .collect();
        for leaf in &leaves {
            tree.push(*leaf);
        }
        let signer = CheckpointSigner::generate();
        let checkpoint = signer.sign(3, merkle::root(&tree, 3).unwrap(), Utc::now());
        let mut lines = vec![header_line(&checkpoint).to_string()];
        for (i, e) in events.iter().enumerate() {
            let proof = merkle::inclusion_proof(&tree, i as u64, 3).unwrap();
            lines.push(event_line(i as i64 + 1, e, i as u64, &leaves[i], &proof).to_string());
        }
        (lines.join("\n"), signer.public_key())
    }

    #[test]
    fn an_intact_export_verifies_with_no_database() {
        let (text, key) = export();
        let check = verify_export(&text, &key);
        assert_eq!(check.findings, Vec::<String>::new());
        assert_eq!((check.events, check.tree_size), (3, 3));
    }

    #[test]
    fn edits_to_the_file_and_another_key_are_found() {
        let (text, key) = export();
        let edited = text.replacen("\"t2\"", "\"t2!\"", 1);
        let check = verify_export(&edited, &key);
        assert!(
            check
                .findings
                .iter()
                .any(|f| f.contains("sequence 2") && f.contains("chain hash")),
            "{:?}",
            check.findings
        );
        let other = CheckpointSigner::generate().public_key();
        let check = verify_export(&text, &other);
        assert!(check.findings.iter().any(|f| f.contains("does not verify")));
        let dropped: Vec<&str> = text.lines().filter(|l| !l.contains("\"t2\"")).collect();
        let check = verify_export(&dropped.join("\n"), &key);
        assert!(
            check.findings.is_empty(),
            "a range may leave events out; each is still proved"
        );
        assert_eq!(check.events, 2);
    }
}
