//! Arguments every resolver reads the same way: ids, versions, and which past state to show.

use async_graphql::ID;
use chronicle_application::audit::PointInTime;
use chronicle_application::AppError;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Parses a task or report id; the field name goes into the error.
pub(crate) fn parse_id(field: &str, id: &ID) -> Result<Uuid, AppError> {
    id.parse::<Uuid>()
        .map_err(|_| AppError::validation(field, "must be a UUID"))
}

/// Parses a version argument.
pub(crate) fn parse_version(field: &str, version: Option<i64>) -> Result<Option<u64>, AppError> {
    match version {
        Some(v) if v < 0 => Err(AppError::validation(field, "must not be negative")),
        other => Ok(other.map(|v| v as u64)),
    }
}

/// Which past state a `task` or `report` query asks for, if any: `atVersion` or `asOf`, never
/// both, and not with `minVersion` (which waits for the present).
pub(crate) fn point_in_time(
    at_version: Option<i64>,
    as_of: Option<DateTime<Utc>>,
    min_version: Option<i64>,
) -> Result<Option<PointInTime>, AppError> {
    let point = match (at_version, as_of) {
        (Some(_), Some(_)) => {
            return Err(AppError::validation(
                "asOf",
                "pass atVersion or asOf, not both",
            ))
        }
        (Some(v), None) if v < 1 => {
            return Err(AppError::validation("atVersion", "must be at least 1"))
        }
        (Some(v), None) => Some(PointInTime::Version(v as u64)),
        (None, Some(t)) => Some(PointInTime::Instant(t)),
        (None, None) => None,
    };
    if point.is_some() && min_version.is_some() {
        return Err(AppError::validation(
            "minVersion",
            "waits for the present; it cannot be combined with atVersion or asOf",
        ));
    }
    Ok(point)
}
