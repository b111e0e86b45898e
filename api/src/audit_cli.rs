//! `chronicle audit verify`: the hash-chain check from the command line, for operators and
//! scheduled jobs (exit status 1 on the first broken chain).

use std::time::Instant;

use anyhow::Context as _;
use chronicle_application::aggregates;
use chronicle_application::audit::store_check::verify_store;
use chronicle_application::audit::AuditQueries;
use chronicle_application::ports::audit_log::AuditLog;
use chronicle_infrastructure::audit_log::PgAuditLog;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

/// Verifies one aggregate (`target` = type and id) or every chain; prints the verdict and
/// returns whether everything is intact.
pub async fn verify(pool: PgPool, target: Option<(String, String)>) -> anyhow::Result<bool> {
    let log = Arc::new(PgAuditLog::new(pool));
    match target {
        Some((aggregate_type, id)) => verify_one(log, &aggregate_type, &id).await,
        None => verify_all(log.as_ref()).await,
    }
}

async fn verify_one(log: Arc<PgAuditLog>, aggregate_type: &str, id: &str) -> anyhow::Result<bool> {
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
    let check = AuditQueries::new(log)
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
            Ok(true)
        }
    }
}

async fn verify_all(log: &PgAuditLog) -> anyhow::Result<bool> {
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
    let check = verify_store(log, |done| bar.set_position(done))
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
            Ok(true)
        }
    }
}

/// The command line's caller: whoever can reach the database already reads every stream.
fn operator() -> chronicle_application::access::Principal {
    chronicle_application::access::Principal::system("chronicle-cli")
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
