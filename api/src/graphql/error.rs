//! The one mapping from application errors to GraphQL errors with `extensions.code`.

use async_graphql::{ErrorExtensionValues, Response, ServerError, Value};
use chronicle_application::error_chain::Chain;
use chronicle_application::AppError;

use super::context::RequestContext;

/// The public error codes (docs/api.md, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Bad input.
    ValidationFailed,
    /// No such thing.
    NotFound,
    /// Optimistic concurrency failure.
    ConcurrencyConflict,
    /// Not allowed in the current state.
    InvalidTransition,
    /// An idempotency key reused for a different request.
    IdempotencyKeyReused,
    /// No valid credentials.
    Unauthenticated,
    /// Not allowed for this caller.
    Forbidden,
    /// The read model has not caught up.
    StaleRead,
    /// A limit was exceeded.
    LimitExceeded,
    /// Too many requests.
    RateLimited,
    /// The database cannot be reached now; retry shortly.
    Unavailable,
    /// Anything else; details are only in the logs.
    Internal,
}

impl ErrorCode {
    /// The code as clients see it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::NotFound => "NOT_FOUND",
            Self::ConcurrencyConflict => "CONCURRENCY_CONFLICT",
            Self::InvalidTransition => "INVALID_TRANSITION",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::StaleRead => "STALE_READ",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::RateLimited => "RATE_LIMITED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }
}

/// An error of the request as a whole, with its code and any further extension fields: the
/// one constructor of the error bodies Chronicle writes itself, whether the GraphQL endpoint
/// answers them (limits, bad input found before execution, a panic) or plain HTTP does (a body
/// that is not GraphQL, a rate limit). Resolver errors get the same extensions through
/// [`to_graphql`].
pub fn request_error(
    code: ErrorCode,
    message: impl Into<String>,
    extra: &[(&str, Value)],
) -> ServerError {
    let mut error = ServerError::new(message, None);
    error.extensions = Some(extensions(code, extra));
    error
}

/// `{"errors": [...]}` for errors of the request as a whole.
pub fn error_body(errors: Vec<ServerError>) -> Response {
    Response::from_errors(errors)
}

fn extensions(code: ErrorCode, extra: &[(&str, Value)]) -> ErrorExtensionValues {
    let mut values = ErrorExtensionValues::default();
    values.set("code", code.as_str());
    for (name, value) in extra {
        values.set(*name, value.clone());
    }
    values
}

/// Converts an application error for this request. Internal errors are logged with the request
/// id and answered opaquely: no SQL, paths or driver messages reach the client.
pub(crate) fn to_graphql(error: AppError, request: &RequestContext) -> async_graphql::Error {
    let message = match &error {
        AppError::Internal { .. } => {
            tracing::error!(request_id = %request.request_id, error = %Chain(&error), "internal error");
            format!("internal error (request id {})", request.request_id)
        }
        AppError::Unavailable(_) => {
            tracing::warn!(request_id = %request.request_id, error = %Chain(&error), "database unavailable");
            format!("{error} (request id {})", request.request_id)
        }
        AppError::Unauthenticated => match &request.auth_error {
            Some(reason) => format!("authentication required: {reason}"),
            None => "authentication required: send 'Authorization: Bearer <token>'".to_owned(),
        },
        other => other.to_string(),
    };
    let extra: Vec<(&str, Value)> = match &error {
        AppError::Validation { field, .. } => vec![("field", Value::from(field.as_str()))],
        AppError::Conflict { expected, actual } => vec![
            ("expectedVersion", Value::from(*expected)),
            ("actualVersion", Value::from(*actual)),
        ],
        AppError::StaleRead { wanted, current } => vec![
            ("minVersion", Value::from(*wanted)),
            ("currentVersion", Value::from(*current)),
        ],
        AppError::IdempotencyKeyReused {
            command,
            aggregate_id,
        } => vec![
            ("firstCommand", Value::from(command.as_str())),
            ("firstAggregateId", Value::from(aggregate_id.as_str())),
        ],
        AppError::Internal { .. } | AppError::Unavailable(_) => {
            vec![("requestId", Value::from(request.request_id.as_str()))]
        }
        _ => Vec::new(),
    };
    let mut graphql = async_graphql::Error::new(message);
    graphql.extensions = Some(extensions(code_of(&error), &extra));
    graphql
}

fn code_of(error: &AppError) -> ErrorCode {
    match error {
        AppError::Validation { .. } => ErrorCode::ValidationFailed,
        AppError::NotFound(_) => ErrorCode::NotFound,
        AppError::Conflict { .. } => ErrorCode::ConcurrencyConflict,
        AppError::InvalidTransition(_) => ErrorCode::InvalidTransition,
        AppError::IdempotencyKeyReused { .. } => ErrorCode::IdempotencyKeyReused,
        AppError::Unauthenticated => ErrorCode::Unauthenticated,
        AppError::Forbidden(_) => ErrorCode::Forbidden,
        AppError::StaleRead { .. } => ErrorCode::StaleRead,
        AppError::LimitExceeded(_) => ErrorCode::LimitExceeded,
        AppError::Unavailable(_) => ErrorCode::Unavailable,
        AppError::Internal { .. } => ErrorCode::Internal,
    }
}

/// Gives every error of a response a code. Errors raised by resolvers and by the document limits
/// carry theirs; the rest come from async-graphql rejecting the document (syntax, unknown
/// fields, bad enum values) and are the client's to fix: `VALIDATION_FAILED`, decided by where
/// the error came from, never by its text.
pub fn with_error_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|ext| ext.get("code").is_some());
        if has_code {
            continue;
        }
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", ErrorCode::ValidationFailed.as_str());
    }
    response
}
