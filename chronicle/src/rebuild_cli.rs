//! `chronicle replay <projection>|all`: rebuilds read models from the event store while the
//! service keeps serving, with a progress bar and a summary line.

use std::process::ExitCode;

use anyhow::Context as _;
use chronicle_application::rebuild::Rebuilder;
use chronicle_application::AppError;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::USAGE;

/// Rebuilds `name` and prints what it did; exit 0 when swapped in, 2 for an unknown name, 1
/// when refused (another rebuild runs) or failed (the live tables are untouched then).
pub async fn replay(rebuilder: &Rebuilder, name: &str) -> anyhow::Result<ExitCode> {
    if let Err(AppError::Validation { message, .. }) = rebuilder.select(name) {
        eprintln!("chronicle replay: {message}");
        return Ok(ExitCode::from(USAGE));
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
            .context("progress template")?,
    );
    bar.set_message(format!("replaying {name}"));
    let result = rebuilder
        .rebuild(name, &|progress| {
            bar.set_length(progress.total);
            bar.set_position(progress.done);
        })
        .await;
    bar.finish_and_clear();
    match result {
        Ok(summary) => {
            println!(
                "rebuilt {}: {} events, {} rows, {:.2} s, {:.0} events/s",
                summary.projections.join(", "),
                summary.events,
                summary.rows,
                summary.seconds,
                summary.events_per_second()
            );
            println!(
                "  read+fold {:.2} s (fold {:.2} s), write {:.2} s, index {:.2} s, swap {:.3} s{}",
                summary.phases.read_seconds,
                summary.phases.fold_seconds,
                summary.phases.write_seconds,
                summary.phases.index_seconds,
                summary.phases.swap_seconds,
                if summary.failures > 0 {
                    format!(
                        "; {} events could not be applied (see projection_failures)",
                        summary.failures
                    )
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ AppError::InvalidTransition(_)) => {
            eprintln!("chronicle replay: {error}");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(anyhow::anyhow!("{error}")).context(format!(
            "replaying {name} failed; the live tables were not touched"
        )),
    }
}
