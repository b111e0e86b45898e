//! Cursors over the event store: one opaque form for a position, shared by the audit trail's
//! pages and every subscription, so an `endCursor` of `auditTrail` resumes `auditEvents` and a
//! notification's cursor resumes its subscription on any instance.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chronicle_application::live::Start;
use chronicle_application::AppError;

/// The cursor a subscription takes to start at the beginning of the store.
pub(crate) const FROM_THE_BEGINNING: &str = "0";

/// The cursor of the event at `position`.
pub(crate) fn encode_position(position: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("audit:{position}"))
}

/// The position a cursor of [`encode_position`] names; `VALIDATION_FAILED` on `field` for
/// anything else.
pub(crate) fn decode_position(field: &str, cursor: &str) -> Result<i64, AppError> {
    let invalid = || AppError::validation(field, "is not a cursor returned by this API");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix("audit:")
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| *p >= 0)
        .ok_or_else(invalid)
}

/// Where a subscription given `after` starts: live only without it, the beginning with
/// [`FROM_THE_BEGINNING`], else after the cursor's event.
pub(crate) fn subscription_start(after: Option<&str>) -> Result<Start, AppError> {
    match after {
        None => Ok(Start::Now),
        Some(FROM_THE_BEGINNING) => Ok(Start::After(0)),
        Some(cursor) => decode_position("after", cursor).map(Start::After),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_names_its_position_and_anything_else_is_refused() {
        assert_eq!(
            subscription_start(Some(&encode_position(42))).unwrap(),
            Start::After(42)
        );
        assert_eq!(subscription_start(Some("0")).unwrap(), Start::After(0));
        assert_eq!(subscription_start(None).unwrap(), Start::Now);
        let negative = URL_SAFE_NO_PAD.encode("audit:-1");
        for bad in ["", "42", "not base64!", negative.as_str()] {
            let error = subscription_start(Some(bad)).unwrap_err();
            assert!(
                matches!(error, AppError::Validation { ref field, .. } if field == "after"),
                "{bad}: {error:?}"
            );
        }
    }
}
