//! An audit export an auditor checks on their own machine, with no database and no broker:
//! JSON Lines, first a header with the signed checkpoint and the range the export covers,
//! then each event as the trail shows it with its leaf index, leaf hash and inclusion proof
//! against that checkpoint.
//!
//! ```text
//! {"format": "chronicle-audit-export-v2", "checkpoint": {treeSize, rootHash, issuedAt, keyId, signature},
//!  "range": {fromPosition, toPosition, firstLeafIndex, count},
//!  "before": {leafIndex, position, eventId, aggregateType, aggregateId, sequence, hash, proof} | null,
//!  "after": (the same) | null}
//! {"event": {position, eventId, aggregateType, aggregateId, sequence, eventType, eventVersion,
//!            payload, metadata, recordedAt, hash, previousHash}, "leafIndex", "leafHash", "proof": [hex...]}
//! {"erasure": {subjectPseudonym, eventId, position, erasedAt, erasedBy, redactions,
//!              rows: [{eventId, position, priorHash, redactedHash}...]}}   (after the events)
//! ```
//!
//! An erasure of values stored in clear changed the content of some events and kept their
//! hashes ([`super::erasure_check`]): for each erasure that changed an exported event, a last
//! line carries what it committed to (its whole ledger and its signed digest), so the verifier
//! accepts those changes offline, under the same public key, and nothing else.
//!
//! Proving each event is not enough: a file with an event removed would still prove every
//! line it kept. Leaves are in position order, so the events of a position range are the
//! consecutive leaves `firstLeafIndex..firstLeafIndex + count`, and the leaves just outside
//! them (`before`, `after`, each proved against the checkpoint) show positions outside the
//! range. [`verify_export`] checks that every leaf of the range is there exactly once and in
//! order, each stream's sequences are contiguous and chain-linked within it, and each event's
//! content, leaf and proof; and the checkpoint's signature.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::erasure_check::{Committed, Content, ErasureEvidence, ErasureRef};
use super::merkle::{self, Hash};
use super::signing::{Checkpoint, PublicKey};
use crate::data::event_log::StoredEvent;
use crate::data::hash_chain::event_hash;
use crate::ports::audit_log::LedgerEntry;
use crate::ports::audit_tree::LeafEvent;

/// Names the export's format on its first line.
pub(crate) const EXPORT_FORMAT: &str = "chronicle-audit-export-v2";

/// The first format, which stated no range: its completeness cannot be proved.
const EXPORT_FORMAT_V1: &str = "chronicle-audit-export-v1";

/// The positions an export covers and the leaves they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportRange {
    /// The first store position asked for.
    pub from_position: i64,
    /// The last store position asked for.
    pub to_position: i64,
    /// The first leaf of the range: the first at or after `from_position` (the checkpoint's
    /// size when there is none).
    pub first_leaf_index: u64,
    /// Leaves in the range, as many as the export's event lines.
    pub count: u64,
}

/// A leaf just outside the range, with the fields it commits to and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boundary {
    /// The leaf and its event's fields.
    pub leaf: LeafEvent,
    /// Its inclusion proof against the export's checkpoint.
    pub proof: Vec<Hash>,
}

/// Everything an export states before its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportHeader {
    /// The checkpoint every proof is against.
    pub checkpoint: Checkpoint,
    /// The range.
    pub range: ExportRange,
    /// The leaf before the range (none when the range starts at leaf 0).
    pub before: Option<Boundary>,
    /// The leaf after the range (none when the range reaches the checkpoint's end).
    pub after: Option<Boundary>,
}

fn leaf_of(leaf: &LeafEvent) -> Hash {
    merkle::leaf_hash(&merkle::leaf_data(
        leaf.position,
        &leaf.event_id,
        &leaf.aggregate_type,
        &leaf.aggregate_id,
        leaf.sequence,
        &leaf.chain_hash,
    ))
}

fn boundary_json(boundary: &Boundary) -> Value {
    let leaf = &boundary.leaf;
    json!({
        "leafIndex": leaf.index,
        "position": leaf.position,
        "eventId": leaf.event_id,
        "aggregateType": leaf.aggregate_type,
        "aggregateId": leaf.aggregate_id,
        "sequence": leaf.sequence,
        "hash": leaf.chain_hash,
        "proof": boundary.proof.iter().map(hex::encode).collect::<Vec<_>>(),
    })
}

fn boundary_of(value: &Value) -> Option<Boundary> {
    Some(Boundary {
        leaf: LeafEvent {
            index: value["leafIndex"].as_u64()?,
            position: value["position"].as_i64()?,
            event_id: value["eventId"].as_str()?.to_owned(),
            aggregate_type: value["aggregateType"].as_str()?.to_owned(),
            aggregate_id: value["aggregateId"].as_str()?.to_owned(),
            sequence: value["sequence"].as_i64()?,
            chain_hash: value["hash"].as_str()?.to_owned(),
        },
        proof: hashes(&value["proof"])?,
    })
}

/// The export's first line.
pub fn header_line(header: &ExportHeader) -> Value {
    let range = &header.range;
    json!({
        "format": EXPORT_FORMAT,
        "checkpoint": header.checkpoint.to_json(),
        "range": {
            "fromPosition": range.from_position,
            "toPosition": range.to_position,
            "firstLeafIndex": range.first_leaf_index,
            "count": range.count,
        },
        "before": header.before.as_ref().map(boundary_json),
        "after": header.after.as_ref().map(boundary_json),
    })
}

fn header_of(value: &Value) -> Option<ExportHeader> {
    let range = &value["range"];
    let boundary = |field: &str| match &value[field] {
        Value::Null => Some(None),
        other => boundary_of(other).map(Some),
    };
    Some(ExportHeader {
        checkpoint: Checkpoint::from_json(&value["checkpoint"])?,
        range: ExportRange {
            from_position: range["fromPosition"].as_i64()?,
            to_position: range["toPosition"].as_i64()?,
            first_leaf_index: range["firstLeafIndex"].as_u64()?,
            count: range["count"].as_u64()?,
        },
        before: boundary("before")?,
        after: boundary("after")?,
    })
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

/// An erasure's line: what it committed to, and its pseudonym's whole ledger (in position
/// order), which its digest covers.
pub fn erasure_line(committed: &Committed, rows: &[LedgerEntry]) -> Value {
    let erasure = &committed.erasure;
    json!({
        "erasure": {
            "subjectPseudonym": erasure.pseudonym,
            "eventId": erasure.event_id,
            "position": erasure.position,
            "erasedAt": erasure.erased_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "erasedBy": erasure.erased_by,
            "redactions": committed.redactions,
            "rows": rows.iter().map(|row| json!({
                "eventId": row.event_id,
                "position": row.position,
                "priorHash": row.prior_hash,
                "redactedHash": row.redacted_hash,
            })).collect::<Vec<_>>(),
        }
    })
}

fn erasure_of(value: &Value) -> Option<(Committed, Vec<LedgerEntry>)> {
    let pseudonym = value["subjectPseudonym"].as_str()?.to_owned();
    let rows = value["rows"]
        .as_array()?
        .iter()
        .map(|row| {
            Some(LedgerEntry {
                event_id: row["eventId"].as_str()?.parse().ok()?,
                position: row["position"].as_i64()?,
                pseudonym: pseudonym.clone(),
                prior_hash: row["priorHash"].as_str()?.to_owned(),
                redacted_hash: row["redactedHash"].as_str()?.to_owned(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let committed = Committed {
        erasure: ErasureRef {
            pseudonym,
            event_id: value["eventId"].as_str()?.parse().ok()?,
            position: value["position"].as_i64()?,
            erased_at: DateTime::parse_from_rfc3339(value["erasedAt"].as_str()?)
                .ok()?
                .with_timezone(&Utc),
            erased_by: value["erasedBy"].as_str()?.to_owned(),
        },
        redactions: serde_json::from_value(value["redactions"].clone()).ok()?,
    };
    Some((committed, rows))
}

/// What checking an export found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportCheck {
    /// Event lines checked.
    pub events: u64,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The range the export states (none when its header is unreadable or of v1).
    pub range: Option<ExportRange>,
    /// When the checkpoint was signed: a file re-proved against an older checkpoint shows it.
    pub issued_at: Option<DateTime<Utc>>,
    /// The position of the last event line: where a range that reaches the checkpoint's end
    /// is proved up to.
    pub last_position: Option<i64>,
    /// Events whose content an erasure changed, through its signed ledger.
    pub erased: u64,
    /// Every problem, in words; empty when the export is intact and complete.
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

/// One event line, parsed.
struct EventLine {
    position: i64,
    event: StoredEvent,
    leaf_index: u64,
    leaf_hash: Hash,
    proof: Vec<Hash>,
}

fn event_line_of(line: &str) -> Option<EventLine> {
    let value: Value = serde_json::from_str(line).ok()?;
    let (position, event) = stored_event(&value["event"])?;
    Some(EventLine {
        position,
        event,
        leaf_index: value["leafIndex"].as_u64()?,
        leaf_hash: hex::decode(value["leafHash"].as_str()?)
            .ok()?
            .try_into()
            .ok()?,
        proof: hashes(&value["proof"])?,
    })
}

/// Checks an export (its whole text) under `key`.
pub fn verify_export(text: &str, key: &PublicKey) -> ExportCheck {
    let mut check = ExportCheck::default();
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header_value = lines
        .next()
        .and_then(|line| serde_json::from_str::<Value>(line).ok());
    let header = match header_value.as_ref() {
        Some(value) if value["format"] == EXPORT_FORMAT => header_of(value),
        Some(value) if value["format"] == EXPORT_FORMAT_V1 => {
            check.findings.push(format!(
                "the export is {EXPORT_FORMAT_V1}, which states no range: events left out of it \
                 cannot be found; export it again with this version"
            ));
            return check;
        }
        _ => None,
    };
    let Some(header) = header else {
        check.findings.push(format!(
            "the first line is not a {EXPORT_FORMAT} header with a checkpoint and a range"
        ));
        return check;
    };
    let checkpoint = &header.checkpoint;
    check.tree_size = checkpoint.tree_size;
    check.range = Some(header.range);
    check.issued_at = Some(checkpoint.issued_at);
    if !checkpoint.verify(key) {
        check.findings.push(format!(
            "the checkpoint at tree size {} does not verify under key {}",
            checkpoint.tree_size,
            key.id()
        ));
    }
    check_boundaries(&header, &mut check);
    let mut events = EventChecks::new(&header);
    let (mut ledger, mut committed) = (Vec::new(), Vec::new());
    for (number, line) in lines.enumerate() {
        let line_number = number + 2;
        let erasure = serde_json::from_str::<Value>(line)
            .ok()
            .filter(|value| value.get("erasure").is_some());
        if let Some(value) = erasure {
            match erasure_of(&value["erasure"]) {
                Some((erasure, rows)) => {
                    committed.push(erasure);
                    ledger.extend(rows);
                }
                None => check
                    .findings
                    .push(format!("line {line_number} is not a readable erasure")),
            }
            continue;
        }
        match event_line_of(line) {
            Some(parsed) => {
                check.events += 1;
                events.check(line_number, &parsed, &mut check.findings);
            }
            None => check
                .findings
                .push(format!("line {line_number} is not an exported event")),
        }
    }
    events.finish(check.events, &mut check.findings);
    let evidence = ErasureEvidence::of_committed(ledger, committed, Some(key));
    for changed in &events.changed {
        match evidence.judge(
            changed.event_id,
            &changed.hash,
            changed.position,
            &changed.content_hash,
        ) {
            Content::Intact => {}
            Content::Erased(_) => check.erased += 1,
            Content::Edited(reason) => check.findings.push(format!("{}: {reason}", changed.name)),
        }
    }
    check.last_position = events.last_position;
    check
}

impl ExportCheck {
    /// Whether the range reaches the checkpoint's end (no leaf after it yet).
    pub fn reaches_checkpoint_end(&self) -> bool {
        self.range.is_some_and(|range| {
            range.first_leaf_index.saturating_add(range.count) == self.tree_size
        })
    }
}

/// What the auditor asked for: the header is not signed, so an export narrowed to a smaller
/// range, or re-proved against an older checkpoint, is complete for what it states. Stating
/// what was asked turns such a file into a finding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expected {
    /// The range must start here.
    pub from_position: Option<i64>,
    /// The range must end here.
    pub to_position: Option<i64>,
    /// The checkpoint must cover at least this many events.
    pub min_tree_size: Option<u64>,
}

/// Adds a finding for each way `check` differs from what was `expected`.
pub fn check_expected(check: &mut ExportCheck, expected: &Expected) {
    let Some(range) = check.range else {
        return;
    };
    let mut differs = |what: &str, asked: Option<i64>, stated: i64| {
        if asked.is_some_and(|asked| asked != stated) {
            check.findings.push(format!(
                "the export states {what} {stated}, not the {} asked for",
                asked.unwrap_or_default()
            ));
        }
    };
    differs("fromPosition", expected.from_position, range.from_position);
    differs("toPosition", expected.to_position, range.to_position);
    if let Some(min) = expected.min_tree_size.filter(|min| check.tree_size < *min) {
        check.findings.push(format!(
            "the checkpoint covers {} events, fewer than the {min} asked for: an older one",
            check.tree_size
        ));
    }
}

/// The leaves around the range prove that no event of the range lies outside it.
fn check_boundaries(header: &ExportHeader, check: &mut ExportCheck) {
    let (range, size) = (&header.range, header.checkpoint.tree_size);
    let end = range.first_leaf_index.saturating_add(range.count);
    if range.from_position > range.to_position || end > size {
        check.findings.push(format!(
            "the range (positions {}..{}, leaves {}..{}) is not within the checkpoint at tree size {size}",
            range.from_position, range.to_position, range.first_leaf_index, end
        ));
        return;
    }
    let mut boundary =
        |which: &str, wanted: Option<u64>, given: &Option<Boundary>| match (wanted, given) {
            (None, None) => {}
            (None, Some(_)) => check
                .findings
                .push(format!("the {which} leaf is given where the tree has none")),
            (Some(index), None) => check.findings.push(format!(
                "the {which} leaf ({index}) is missing: the range's edge is not proved"
            )),
            (Some(index), Some(given)) => {
                let leaf = &given.leaf;
                let outside = match which {
                    "before" => leaf.position < range.from_position,
                    _ => leaf.position > range.to_position,
                };
                if leaf.index != index {
                    check.findings.push(format!(
                        "the {which} leaf is leaf {}, not leaf {index}",
                        leaf.index
                    ));
                } else if !outside {
                    check.findings.push(format!(
                        "the {which} leaf {index} is at position {}, inside the range: the \
                         range leaves an event out",
                        leaf.position
                    ));
                } else if !merkle::verify_inclusion(
                    &leaf_of(leaf),
                    index,
                    size,
                    &given.proof,
                    &header.checkpoint.root,
                ) {
                    check.findings.push(format!(
                        "the {which} leaf {index} is not in the log the checkpoint signed"
                    ));
                }
            }
        };
    boundary(
        "before",
        range.first_leaf_index.checked_sub(1),
        &header.before,
    );
    boundary("after", (end < size).then_some(end), &header.after);
}

/// The checks that run across event lines: leaf order, positions, stream continuity.
struct EventChecks<'h> {
    header: &'h ExportHeader,
    /// The leaf index the next line must have.
    next_leaf: u64,
    last_position: Option<i64>,
    /// The last event seen of each stream: (sequence, hash).
    streams: HashMap<(String, String), (u64, String)>,
    /// Events whose content does not hash to their hash: erased, or edited.
    changed: Vec<Changed>,
}

/// An event whose content does not hash to its hash, judged once every erasure line is read.
struct Changed {
    name: String,
    event_id: uuid::Uuid,
    hash: String,
    position: i64,
    content_hash: String,
}

impl<'h> EventChecks<'h> {
    fn new(header: &'h ExportHeader) -> Self {
        Self {
            header,
            next_leaf: header.range.first_leaf_index,
            last_position: None,
            streams: HashMap::new(),
            changed: Vec::new(),
        }
    }

    fn end(&self) -> u64 {
        // Both come from the unsigned header: an absurd one must not overflow.
        self.header
            .range
            .first_leaf_index
            .saturating_add(self.header.range.count)
    }

    fn check(&mut self, line_number: usize, line: &EventLine, findings: &mut Vec<String>) {
        let event = &line.event;
        let name = format!(
            "{} {} sequence {} (line {line_number})",
            event.aggregate_type, event.aggregate_id, event.sequence
        );
        self.check_place(&name, line, findings);
        let content_hash = event_hash(event);
        if content_hash != event.hash {
            self.changed.push(Changed {
                name: name.clone(),
                event_id: event.event_id,
                hash: event.hash.clone(),
                position: line.position,
                content_hash,
            });
        }
        let stream = (event.aggregate_type.clone(), event.aggregate_id.clone());
        if let Some((sequence, hash)) = self.streams.get(&stream) {
            if event.sequence != sequence + 1 {
                findings.push(format!(
                    "{name}: follows sequence {sequence} of its stream: the stream is not \
                     contiguous within the range"
                ));
            } else if event.previous_hash != *hash {
                findings.push(format!(
                    "{name}: does not link to the previous event of its stream"
                ));
            }
        }
        self.streams
            .insert(stream, (event.sequence, event.hash.clone()));
        let leaf = merkle::leaf_hash(&merkle::leaf_data(
            line.position,
            &event.event_id.to_string(),
            &event.aggregate_type,
            &event.aggregate_id,
            event.sequence as i64,
            &event.hash,
        ));
        let checkpoint = &self.header.checkpoint;
        if leaf != line.leaf_hash {
            findings.push(format!(
                "{name}: its leaf hash is not the one its fields make"
            ));
        } else if !merkle::verify_inclusion(
            &leaf,
            line.leaf_index,
            checkpoint.tree_size,
            &line.proof,
            &checkpoint.root,
        ) {
            findings.push(format!(
                "{name}: not in the log the checkpoint at tree size {} signed",
                checkpoint.tree_size
            ));
        }
    }

    /// Each line must be the next leaf of the range, at a later position within it.
    fn check_place(&mut self, name: &str, line: &EventLine, findings: &mut Vec<String>) {
        let range = &self.header.range;
        if line.leaf_index == self.next_leaf && line.leaf_index < self.end() {
            self.next_leaf += 1;
        } else if line.leaf_index > self.next_leaf && line.leaf_index < self.end() {
            findings.push(format!(
                "{name}: is leaf {}, so leaves {}..{} of the range are missing before it",
                line.leaf_index,
                self.next_leaf,
                line.leaf_index - 1
            ));
            self.next_leaf = line.leaf_index + 1;
        } else if line.leaf_index < self.next_leaf && line.leaf_index >= range.first_leaf_index {
            findings.push(format!(
                "{name}: leaf {} comes again or out of order (expected leaf {})",
                line.leaf_index, self.next_leaf
            ));
        } else {
            findings.push(format!(
                "{name}: leaf {} is outside the range's leaves {}..{}",
                line.leaf_index,
                range.first_leaf_index,
                self.end()
            ));
        }
        if line.position < range.from_position || line.position > range.to_position {
            findings.push(format!(
                "{name}: position {} is outside the range {}..{}",
                line.position, range.from_position, range.to_position
            ));
        }
        if self.last_position.is_some_and(|last| line.position <= last) {
            findings.push(format!(
                "{name}: position {} does not follow position {}",
                line.position,
                self.last_position.unwrap_or_default()
            ));
        }
        self.last_position = Some(line.position);
    }

    /// Leaves of the range after the last line are missing too.
    fn finish(&self, lines: u64, findings: &mut Vec<String>) {
        if lines != self.header.range.count {
            findings.push(format!(
                "the range holds {} events; the file has {lines} event lines",
                self.header.range.count
            ));
        }
        if self.next_leaf < self.end() {
            findings.push(format!(
                "leaves {}..{} of the range are missing: the file ends after {} of its {} events",
                self.next_leaf,
                self.end() - 1,
                self.next_leaf - self.header.range.first_leaf_index,
                self.header.range.count
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::merkle::MemoryTree;
    use crate::audit::signing::CheckpointSigner;
    use crate::data::hash_chain::GENESIS_HASH;

    /// A log of `n` events over three streams, at positions with gaps (as a sequence leaves
    /// them after rolled-back appends), its tree, and a checkpoint over all of it.
    struct Log {
        events: Vec<(i64, StoredEvent)>,
        tree: MemoryTree,
        signer: CheckpointSigner,
        checkpoint: Checkpoint,
    }

    fn log(n: usize) -> Log {
        let mut last: HashMap<String, (u64, String)> = HashMap::new();
        let mut events = Vec::new();
        let mut tree = MemoryTree::default();
        for i in 0..n {
            let stream = format!("a{}", i % 3);
            let (sequence, previous) = last
                .get(&stream)
                .map_or((1, GENESIS_HASH.to_owned()), |(s, h)| (s + 1, h.clone()));
            let mut event = StoredEvent {
                event_id: uuid::Uuid::now_v7(),
                aggregate_type: "Task".into(),
                aggregate_id: stream.clone(),
                sequence,
                event_type: "TaskCreated".into(),
                event_version: "2.0".into(),
                payload: json!({"TaskCreated": {"title": format!("t{i}")}}),
                metadata: json!({"actor_id": "u-1"}),
                recorded_at: crate::data::event_log::store_now(),
                hash: String::new(),
                previous_hash: previous,
            };
            event.hash = event_hash(&event);
            last.insert(stream, (sequence, event.hash.clone()));
            let position = 3 * i as i64 + 1;
            tree.push(leaf_of(&leaf_event(i as u64, position, &event)));
            events.push((position, event));
        }
        let signer = CheckpointSigner::generate();
        let checkpoint = signer.sign(n as u64, merkle::root(&tree, n as u64).unwrap(), Utc::now());
        Log {
            events,
            tree,
            signer,
            checkpoint,
        }
    }

    fn leaf_event(index: u64, position: i64, event: &StoredEvent) -> LeafEvent {
        LeafEvent {
            index,
            position,
            event_id: event.event_id.to_string(),
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence as i64,
            chain_hash: event.hash.clone(),
        }
    }

    impl Log {
        fn boundary(&self, index: u64) -> Boundary {
            let (position, event) = &self.events[index as usize];
            Boundary {
                leaf: leaf_event(index, *position, event),
                proof: merkle::inclusion_proof(&self.tree, index, self.checkpoint.tree_size)
                    .unwrap(),
            }
        }

        /// The export of positions `from..=to`, as `chronicle audit export` writes it: one
        /// string per line.
        fn export(&self, from: i64, to: i64) -> Vec<String> {
            let size = self.checkpoint.tree_size;
            let inside: Vec<u64> = (0..size)
                .filter(|&i| (from..=to).contains(&self.events[i as usize].0))
                .collect();
            let first = inside.first().copied().unwrap_or_else(|| {
                (0..size)
                    .find(|&i| self.events[i as usize].0 >= from)
                    .unwrap_or(size)
            });
            let end = first + inside.len() as u64;
            let header = ExportHeader {
                checkpoint: self.checkpoint.clone(),
                range: ExportRange {
                    from_position: from,
                    to_position: to,
                    first_leaf_index: first,
                    count: inside.len() as u64,
                },
                before: first.checked_sub(1).map(|i| self.boundary(i)),
                after: (end < size).then(|| self.boundary(end)),
            };
            let mut lines = vec![header_line(&header).to_string()];
            for i in inside {
                let (position, event) = &self.events[i as usize];
                let leaf = leaf_of(&leaf_event(i, *position, event));
                let proof = merkle::inclusion_proof(&self.tree, i, size).unwrap();
                lines.push(event_line(*position, event, i, &leaf, &proof).to_string());
            }
            lines
        }

        fn verify(&self, lines: &[String]) -> ExportCheck {
            verify_export(&lines.join("\n"), &self.signer.public_key())
        }
    }

    fn assert_found(check: &ExportCheck, words: &str) {
        assert!(
            check.findings.iter().any(|f| f.contains(words)),
            "no finding with {words:?} in {:?}",
            check.findings
        );
    }

    #[test]
    fn an_intact_export_verifies_with_no_database_and_states_its_range() {
        let log = log(12);
        // Positions 1, 4, 7, ...: 10..=25 holds the leaves 3..=8.
        let check = log.verify(&log.export(10, 25));
        assert_eq!(check.findings, Vec::<String>::new());
        assert_eq!((check.events, check.tree_size), (6, 12));
        let range = check.range.unwrap();
        assert_eq!((range.first_leaf_index, range.count), (3, 6));
        assert!(!check.reaches_checkpoint_end());
        let whole = log.verify(&log.export(1, 1_000));
        assert_eq!(whole.findings, Vec::<String>::new());
        assert_eq!(whole.events, 12);
        assert!(whole.reaches_checkpoint_end());
    }

    #[test]
    fn a_removed_line_anywhere_in_the_range_is_found() {
        let log = log(12);
        let lines = log.export(10, 25);
        for removed in 1..lines.len() {
            let mut edited = lines.clone();
            edited.remove(removed);
            let check = log.verify(&edited);
            assert_found(&check, "missing");
            assert_found(&check, "the range holds 6 events; the file has 5");
        }
    }

    #[test]
    fn a_reordered_or_duplicated_line_is_found() {
        let log = log(12);
        let lines = log.export(10, 25);
        let mut swapped = lines.clone();
        swapped.swap(2, 3);
        let check = log.verify(&swapped);
        assert_found(&check, "out of order");
        assert_found(&check, "does not follow position");

        let mut duplicated = lines.clone();
        duplicated.insert(3, lines[3].clone());
        let check = log.verify(&duplicated);
        assert_found(&check, "comes again");
        assert_found(&check, "the file has 7 event lines");
    }

    #[test]
    fn a_range_that_claims_fewer_leaves_than_its_positions_hold_is_found() {
        let log = log(12);
        let mut lines = log.export(10, 25);
        // Drop the last event and shrink the stated count: the leaf after the range is
        // then the dropped event, inside the stated positions.
        lines.pop();
        let mut header: Value = serde_json::from_str(&lines[0]).unwrap();
        header["range"]["count"] = json!(5);
        header["after"] = boundary_json(&log.boundary(8));
        lines[0] = header.to_string();
        let check = log.verify(&lines);
        assert_found(&check, "inside the range");
        // Or keep the old `after` leaf: it is not the leaf after the stated range.
        header["after"] = boundary_json(&log.boundary(9));
        lines[0] = header.to_string();
        assert_found(&log.verify(&lines), "not leaf 8");
        // Or drop the boundary: the range's edge is then unproved.
        header["after"] = Value::Null;
        lines[0] = header.to_string();
        assert_found(
            &log.verify(&lines),
            "missing: the range's edge is not proved",
        );
    }

    #[test]
    fn a_narrowed_range_or_an_older_checkpoint_differs_from_what_was_asked() {
        let log = log(12);
        // A range that is complete for what it states, but smaller than asked.
        let mut check = log.verify(&log.export(10, 22));
        assert_eq!(check.findings, Vec::<String>::new());
        let asked = Expected {
            from_position: Some(10),
            to_position: Some(25),
            min_tree_size: Some(13),
        };
        check_expected(&mut check, &asked);
        assert_found(&check, "toPosition 22, not the 25 asked for");
        assert_found(&check, "fewer than the 13 asked for");
        let mut check = log.verify(&log.export(10, 25));
        check_expected(
            &mut check,
            &Expected {
                min_tree_size: Some(12),
                ..asked
            },
        );
        assert_eq!(check.findings, Vec::<String>::new());
    }

    #[test]
    fn an_empty_range_is_proved_empty_by_its_neighbours() {
        let log = log(12);
        // Positions 1, 4, 7, 10: nothing at 5..=6.
        let lines = log.export(5, 6);
        assert_eq!(lines.len(), 1);
        let check = log.verify(&lines);
        assert_eq!(check.findings, Vec::<String>::new());
        assert_eq!(
            check.range.map(|r| (r.first_leaf_index, r.count)),
            Some((2, 0))
        );
    }

    #[test]
    fn a_gap_in_a_stream_is_found_even_when_its_leaves_are_all_there() {
        // The leaves are the signer's word; the streams are the chain's. Take an export whose
        // stream skips a sequence: re-sign a tree without one event.
        let full = log(9);
        let (mut events, mut tree) = (Vec::new(), MemoryTree::default());
        for (index, (position, event)) in full.events.iter().enumerate() {
            if index == 4 {
                continue; // a1's second event
            }
            tree.push(leaf_of(&leaf_event(events.len() as u64, *position, event)));
            events.push((*position, event.clone()));
        }
        let size = events.len() as u64;
        let checkpoint = full
            .signer
            .sign(size, merkle::root(&tree, size).unwrap(), Utc::now());
        let gapped = Log {
            events,
            tree,
            signer: full.signer,
            checkpoint,
        };
        let check = gapped.verify(&gapped.export(1, 1_000));
        assert_found(&check, "not contiguous");
    }

    #[test]
    fn edits_another_key_and_a_v1_export_are_found() {
        let log = log(6);
        let lines = log.export(1, 100);
        let edited: Vec<String> = lines
            .iter()
            .map(|l| l.replacen("\"t2\"", "\"t2!\"", 1))
            .collect();
        assert_found(&log.verify(&edited), "chain hash");
        let other = CheckpointSigner::generate().public_key();
        let check = verify_export(&lines.join("\n"), &other);
        assert_found(&check, "does not verify");
        let mut v1 = lines.clone();
        v1[0] =
            json!({"format": EXPORT_FORMAT_V1, "checkpoint": log.checkpoint.to_json()}).to_string();
        assert_found(&log.verify(&v1), "states no range");
    }
}
