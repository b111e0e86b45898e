//! `chronicle erase --subject ID --reason TEXT`: the `eraseDataSubject` mutation from a shell,
//! as the operator (an admin). Prints the erasure's answer as JSON; exits 0 when the subject is
//! erased (now or before), 1 when it is not (`NOT_FOUND`, or the cause printed), 2 for invalid
//! input.

use std::process::ExitCode;

use chronicle_application::data::metadata::CommandMetadata;
use chronicle_application::erasure::Eraser;
use serde_json::json;

use crate::cli::{exit_status, operator};

/// Erases `subject` for `reason` and prints what was done.
pub async fn run(eraser: &Eraser, subject: &str, reason: &str) -> ExitCode {
    let operator = operator();
    let metadata = CommandMetadata::for_actor(operator.subject());
    let outcome = eraser
        .erase(&operator, subject, reason, &metadata)
        .await
        .map(|erasure| {
            let answer = json!({
                "subjectPseudonym": format!("erased:{}", erasure.subject_pseudonym),
                "erasedAt": erasure.erased_at,
                "erasedBy": erasure.erased_by,
                "reason": erasure.reason,
                "streams": erasure.streams,
                "replayed": erasure.replayed,
            });
            println!("{answer}");
            true
        });
    exit_status("erase", outcome)
}
