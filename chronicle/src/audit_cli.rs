//! `chronicle audit verify`: the hash-chain check from the command line, for operators and
//! scheduled jobs (exit status 1 on the first broken chain).

use std::time::Instant;

use anyhow::Context as _;
use chronicle_application::aggregates;
use chronicle_application::audit::checkpoints::{AuditProofs, Signing};
use chronicle_application::audit::erasure_check::{Committed, Signatures};
use chronicle_application::audit::export::{
    check_expected, erasure_line, event_line, header_line, verify_export, Expected,
};
use chronicle_application::audit::signed_note::{
    checkpoint_note, default_origin, open_checkpoint, VerifierKey,
};
use chronicle_application::audit::signing::{Checkpoint, CheckpointSigner, PublicKey};
use chronicle_application::audit::store_check::verify_store;
use chronicle_application::audit::tree_check::verify_tree;
use chronicle_application::audit::AuditQueries;
use chronicle_application::ports::audit_log::AuditLog;
use chronicle_application::ports::audit_tree::AuditTree;
use chronicle_application::topics::Topics;
use chronicle_infrastructure::audit_log::PgAuditLog;
use chronicle_infrastructure::audit_tree::{read_published_checkpoints, PgAuditTree};
use chrono::SecondsFormat;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

use crate::cli::operator;

/// Verifies one aggregate (`target` = type and id) or every chain, erasures' signatures under
/// `key` when given; prints the verdict and returns whether everything is intact.
pub async fn verify(
    pool: PgPool,
    target: Option<(String, String)>,
    key: Option<PublicKey>,
) -> anyhow::Result<bool> {
    let personal = crate::app::personal_data_for_reading(&pool);
    let log = Arc::new(PgAuditLog::new(pool));
    match target {
        Some((aggregate_type, id)) => {
            let audit = AuditQueries::new(log, personal).with_erasure_key(key);
            verify_one(audit, &aggregate_type, &id).await
        }
        None => verify_all(log.as_ref(), key.as_ref()).await,
    }
}

async fn verify_one(audit: AuditQueries, aggregate_type: &str, id: &str) -> anyhow::Result<bool> {
    let aggregate_type = aggregates::ALL
        .iter()
        .map(|kind| kind.type_name)
        .find(|t| t.eq_ignore_ascii_case(aggregate_type))
        .with_context(|| {
            format!(
                "--type {aggregate_type}: must be one of {}",
                aggregates::type_names().join(", ")
            )
        })?;
    let id: Uuid = id
        .parse()
        .with_context(|| format!("--id {id}: must be a UUID"))?;
    let check = audit
        .verify(&operator(), aggregate_type, &id.to_string())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match (check.first_invalid_sequence, check.reason) {
        (Some(sequence), Some(reason)) => {
            println!("BROKEN {aggregate_type} {id} at sequence {sequence}: {reason}");
            Ok(false)
        }
        _ => {
            println!(
                "intact: {aggregate_type} {id}, {} events",
                check.events_checked
            );
            for (sequence, by) in &check.erased {
                let erasures: Vec<String> = by
                    .iter()
                    .map(|e| format!("{} (event {}, by {})", e.pseudonym, e.event_id, e.erased_by))
                    .collect();
                println!("erased: sequence {sequence} under {}", erasures.join(", "));
            }
            Ok(true)
        }
    }
}

async fn verify_all(log: &PgAuditLog, key: Option<&PublicKey>) -> anyhow::Result<bool> {
    let total = log
        .event_count()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
            .context("progress template")?,
    );
    let started = Instant::now();
    let check = verify_store(log, key, |done| bar.set_position(done))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let rate = check.events_checked as f64 / seconds.max(1e-9);
    match check.first_broken {
        Some((aggregate_type, id, sequence, reason)) => {
            println!("BROKEN {aggregate_type} {id} at sequence {sequence}: {reason}");
            println!(
                "checked {} events in {:.2} s before the first broken chain",
                check.events_checked, seconds
            );
            Ok(false)
        }
        None => {
            println!(
                "intact: {} events in {} aggregates, {:.2} s, {:.0} events/s",
                check.events_checked, check.aggregates_checked, seconds, rate
            );
            if check.erasures > 0 {
                let signatures = match check.signatures {
                    Signatures::Checked { key_id } => format!("signatures verified, key {key_id}"),
                    Signatures::NotChecked => "signatures not checked: name the key with \
                                               --public-key"
                        .to_owned(),
                };
                println!(
                    "erased: {} events changed by {} erasures ({signatures})",
                    check.erased_events, check.erasures
                );
            }
            for pseudonym in &check.keys_destroyed_unrecorded {
                println!(
                    "BROKEN: the values of {pseudonym} read as erased, but no DataSubjectErased \
                     event records an erasure of them: their key was destroyed outside an erasure"
                );
            }
            Ok(check.keys_destroyed_unrecorded.is_empty())
        }
    }
}

/// `chronicle audit verify --checkpoints kafka|FILE`: every chain, then the whole store
/// against the signed checkpoints (application::audit::tree_check); prints every finding.
pub async fn verify_checkpoints(
    pool: PgPool,
    settings: &chronicle_infrastructure::config::Settings,
    source: &str,
    key: &PublicKey,
) -> anyhow::Result<bool> {
    let published = match source {
        "kafka" => {
            let topic = Topics::new(settings.kafka.topic_prefix.clone()).audit_checkpoints();
            let kafka = settings.kafka.clone();
            let reading = topic.clone();
            let (checkpoints, unreadable) =
                tokio::task::spawn_blocking(move || read_published_checkpoints(&kafka, &reading))
                    .await
                    .context("the checkpoint reader stopped")?
                    .with_context(|| format!("reading {topic}"))?;
            if unreadable > 0 {
                println!("{unreadable} records of {topic} are not checkpoints (ignored)");
            }
            checkpoints
        }
        path => read_checkpoint_file(path)?,
    };
    let log = PgAuditLog::new(pool.clone());
    let chains = verify_all(&log, Some(key)).await?;
    let tree = PgAuditTree::new(pool);
    let stored = tree
        .checkpoints()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let leaves = tree.leaves().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let check = verify_tree(&log, &published, &stored, &leaves, key)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for finding in &check.findings {
        println!("DIVERGED {finding}");
    }
    println!(
        "{} events against {} published checkpoints ({} verified) under key {}, {:.2} s",
        check.events,
        published.len(),
        check.checkpoints_verified,
        key.id(),
        started.elapsed().as_secs_f64()
    );
    if published.is_empty() {
        println!("DIVERGED no signed checkpoint to verify against");
        return Ok(false);
    }
    Ok(chains && check.findings.is_empty())
}

/// Checkpoints from a file: one JSON object a line, as Kafka holds them (other lines, such as
/// an export's events, are skipped).
fn read_checkpoint_file(path: &str) -> anyhow::Result<Vec<Checkpoint>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--checkpoints {path}"))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|value| Checkpoint::from_json(value.get("checkpoint").unwrap_or(&value)))
        .collect())
}

/// `chronicle audit keygen --out PATH`: a new checkpoint signing key at PATH (mode 0600) and
/// its public key at PATH.pub. Exit 1 when either file exists: a key is never overwritten.
pub fn keygen(out: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let public_path = std::path::PathBuf::from(format!("{}.pub", out.display()));
    for path in [out, public_path.as_path()] {
        if path.exists() {
            eprintln!(
                "chronicle audit keygen: {} exists; not overwritten",
                path.display()
            );
            return Ok(std::process::ExitCode::FAILURE);
        }
    }
    let signer = chronicle_application::audit::signing::CheckpointSigner::generate();
    let mut private = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    private.write_all(signer.to_pem()?.as_bytes())?;
    std::fs::write(&public_path, signer.public_key().to_pem()?)
        .with_context(|| format!("writing {}", public_path.display()))?;
    println!(
        "key {} written to {} (public key: {})",
        signer.public_key().id(),
        out.display(),
        public_path.display()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// `chronicle audit export --from-position N --to-position M`: a header with the latest
/// checkpoint, the range's leaves and the leaves just outside it, then each event of the range
/// with its inclusion proof (JSON Lines, on stdout), for `chronicle audit verify-export` on an
/// auditor's machine. Events newer than the checkpoint are left out, and said so.
/// What the erasure of `pseudonym` committed to, from its `DataSubjectErased` event.
async fn erasure_committed(log: &PgAuditLog, pseudonym: &str) -> anyhow::Result<Option<Committed>> {
    let Ok(stream) = Uuid::parse_str(pseudonym) else {
        return Ok(None);
    };
    let events = log
        .stream(aggregates::DATA_SUBJECT.type_name, &stream.to_string())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(events.iter().find_map(Committed::of))
}

pub async fn export(pool: PgPool, from: i64, to: i64) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write as _;
    let tree = Arc::new(PgAuditTree::new(pool.clone()));
    // The export needs a signed checkpoint whoever signs them: "none yet" is the honest answer.
    let proofs = AuditProofs::new(tree.clone(), Signing::On);
    let operator = operator();
    let header = proofs
        .export_header(&operator, from, to)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (size, range) = (header.checkpoint.tree_size, header.range);
    let log = PgAuditLog::new(pool);
    // Erasures that changed events stored in clear: those of exported events go with them.
    let ledger = log
        .erasure_ledger(None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut changed_by: std::collections::HashMap<Uuid, Vec<&str>> = Default::default();
    for row in &ledger {
        changed_by
            .entry(row.event_id)
            .or_default()
            .push(&row.pseudonym);
    }
    let mut erasures_exported = std::collections::BTreeSet::new();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "{}", header_line(&header))?;
    let (mut exported, mut outside) = (0u64, 0u64);
    let mut events = log.scan();
    while let Some(record) = events.next().await {
        let record = record.map_err(|e| anyhow::anyhow!("{e}"))?;
        if record.position < from {
            continue;
        }
        if record.position > to {
            break;
        }
        let proof = match proofs
            .inclusion(&operator, record.event.event_id, Some(size))
            .await
        {
            Ok(proof) => proof,
            // Not in the checkpoint yet (newer than it): left out, and said so below.
            Err(chronicle_application::AppError::NotFound(_)) => {
                outside += 1;
                continue;
            }
            Err(error) => return Err(anyhow::anyhow!("{error}")),
        };
        let line = event_line(
            record.position,
            &record.event,
            proof.leaf_index,
            &proof.leaf_hash,
            &proof.path,
        );
        writeln!(out, "{line}")?;
        exported += 1;
        if let Some(pseudonyms) = changed_by.get(&record.event.event_id) {
            erasures_exported.extend(pseudonyms.iter().copied());
        }
    }
    for pseudonym in erasures_exported {
        let Some(committed) = erasure_committed(&log, pseudonym).await? else {
            // No erasure event: the verifier reports the change as an edit.
            continue;
        };
        let rows: Vec<_> = ledger
            .iter()
            .filter(|row| row.pseudonym == pseudonym)
            .cloned()
            .collect();
        writeln!(out, "{}", erasure_line(&committed, &rows))?;
    }
    out.flush()?;
    if exported != range.count {
        // The store does not hold what its tree says: the file would not verify.
        eprintln!(
            "chronicle audit export: the range's {} leaves do not match the {exported} events \
             the store holds there; run `chronicle audit verify --checkpoints`",
            range.count
        );
        return Ok(std::process::ExitCode::FAILURE);
    }
    eprintln!(
        "exported {exported} events (leaves {}..{}) against the checkpoint at tree size {size}{}",
        range.first_leaf_index,
        (range.first_leaf_index + range.count).saturating_sub(1),
        if outside > 0 {
            format!("; {outside} newer events are not in it yet and were left out")
        } else {
            String::new()
        }
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// `chronicle audit export --format signed-note [--origin NAME]`: the latest signed checkpoint
/// as a C2SP signed note (application::audit::signed_note) on stdout, signed again with
/// `signer` after its stored signature verified under it; the verifier key a standard tool
/// checks it with goes to stderr.
pub async fn export_signed_note(
    pool: PgPool,
    signer: &CheckpointSigner,
    origin: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    // The checkpoint the range export proves against: the latest one.
    let proofs = AuditProofs::new(Arc::new(PgAuditTree::new(pool)), Signing::On);
    let checkpoint = proofs
        .checkpoint(&operator(), None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = signer.public_key();
    let origin = origin.map_or_else(|| default_origin(&key), str::to_owned);
    let note = checkpoint_note(&checkpoint, &origin, signer)?;
    let verifier = VerifierKey::new(&origin, key)?;
    print!("{note}");
    eprintln!(
        "signed note of the checkpoint at tree size {} (signed {}); verifier key: {verifier}",
        checkpoint.tree_size,
        checkpoint
            .issued_at
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// `chronicle audit verify-note FILE --key VERIFIER`: checks a checkpoint note with no database;
/// exit 0 when it verifies, 1 with a `DIVERGED` line.
pub fn verify_note_file(
    file: &std::path::Path,
    verifier: &VerifierKey,
) -> anyhow::Result<std::process::ExitCode> {
    let note =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match open_checkpoint(&note, verifier) {
        Ok(verified) => {
            let checkpoint = &verified.checkpoint;
            let others = match verified.others.len() {
                0 => String::new(),
                n => format!(
                    "; {n} signatures of other keys not checked ({})",
                    verified.others.join(", ")
                ),
            };
            println!(
                "verified: {}, tree size {}, root {} (hex), signed by {}+{:08x}{others}",
                checkpoint.origin,
                checkpoint.tree_size,
                hex::encode(checkpoint.root),
                verifier.name(),
                verifier.key_id()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("DIVERGED {error}");
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}

/// `chronicle audit verify-export FILE --public-key KEY`: checks an export with no database
/// and no broker; exit 0 when intact, 1 with a `DIVERGED` line per finding.
pub fn verify_export_file(
    file: &std::path::Path,
    key: &std::path::Path,
    expected: &Expected,
) -> anyhow::Result<std::process::ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let pem =
        std::fs::read_to_string(key).with_context(|| format!("--public-key {}", key.display()))?;
    let key =
        PublicKey::from_pem(&pem).with_context(|| format!("--public-key {}", key.display()))?;
    let mut check = verify_export(&text, &key);
    check_expected(&mut check, expected);
    for finding in &check.findings {
        println!("DIVERGED {finding}");
    }
    let checked = format!(
        "{} events checked against the checkpoint at tree size {}{} under key {}",
        check.events,
        check.tree_size,
        check
            .issued_at
            .map(|at| format!(
                " (signed {})",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ))
            .unwrap_or_default(),
        key.id()
    );
    match (&check.range, check.findings.is_empty()) {
        (Some(range), true) => {
            let leaves = match range.count {
                0 => "no events".to_owned(),
                count => format!(
                    "leaves {}..{}",
                    range.first_leaf_index,
                    range.first_leaf_index + count - 1
                ),
            };
            // Events of the range newer than the checkpoint are not in it: say how far it goes.
            let end = match (check.reaches_checkpoint_end(), check.last_position) {
                (true, Some(last)) => {
                    format!(", to the checkpoint's end (its last event is at position {last})")
                }
                (true, None) => ", to the checkpoint's end".to_owned(),
                (false, _) => String::new(),
            };
            println!(
                "complete: positions {}..{}, {leaves}{end}, {checked}",
                range.from_position, range.to_position
            );
        }
        _ => println!("{checked}"),
    }
    if check.erased > 0 {
        println!(
            "erased: {} events changed by erasures whose signed ledgers the file carries",
            check.erased
        );
    }
    Ok(if check.findings.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
