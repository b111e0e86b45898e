//! The API's HTTP routes: GraphQL, its WebSocket and GraphiQL. Health and metrics, which every
//! process serves, are the `chronicle` crate's `ops`.
//!
//! Every GraphQL request passes, in order: the body limit (HTTP 413), authentication, the
//! per-subject rate limit (HTTP 429, `RATE_LIMITED`, `Retry-After`), the batch limit, then each
//! operation runs under the request timeout with panics caught (`INTERNAL` with the request id,
//! the panic itself only in the logs) so no request can take the service down.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use crate::settings::ApiLimits;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{BatchRequest, BatchResponse, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chronicle_application::access::Principal;
use chronicle_application::data::trace::TraceContext;
use futures::FutureExt;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::graphql::{
    error_body, limit_error, request_error, with_error_codes, ChronicleSchema, ErrorCode,
    RequestContext, SubscriptionCounts, SubscriptionSlots,
};
use crate::rate_limit::RateLimiter;
use axum::extract::ws::{close_code, CloseFrame, Message};
use futures::{SinkExt, StreamExt};
use tokio_util::sync::CancellationToken;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    /// The GraphQL schema.
    pub schema: ChronicleSchema,
    /// Token checking.
    pub authenticator: Authenticator,
    /// Request limits.
    pub limits: ApiLimits,
    /// Per-subject rate limit (`None`: off).
    pub rate_limiter: Option<Arc<RateLimiter>>,
    /// The subscriptions open on this instance, against the per-subject and total limits
    /// (`SubscriptionCounts::new(limits.max_subscriptions_per_subject, ...)`).
    pub subscriptions: Arc<SubscriptionCounts>,
    /// Cancelled when the service stops: every WebSocket then ends its subscriptions and
    /// closes with 1001 (going away), so clients resume elsewhere from their cursors.
    pub shutdown: CancellationToken,
}

/// The router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: requests
/// without credentials are rate limited by client address.
pub fn router(state: HttpState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/graphql", get(crate::graphiql::page).post(graphql))
        .route(
            &format!("{}/{{file}}", crate::graphiql::ASSETS),
            get(crate::graphiql::asset),
        )
        .route("/graphql/ws", get(graphql_ws))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Accepts a client correlation id if it is a sane token; otherwise starts a new one.
fn correlation_id(headers: &HeaderMap) -> String {
    header(headers, "x-correlation-id")
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string())
}

/// A response made of request-level errors (no operation ran), with `status`.
fn error_response(status: StatusCode, code: ErrorCode, message: String) -> Response {
    let body = error_body(vec![request_error(code, message, &[])]);
    (status, Json(body)).into_response()
}

/// A body the server would not read, as a GraphQL error like every other: over the size
/// limit is `LIMIT_EXCEEDED` (HTTP 413), anything else the client's to fix.
fn unreadable_body(rejection: &BytesRejection, limit: usize) -> Response {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::LimitExceeded,
            format!("the request body is over the limit of {limit} bytes"),
        ),
        status => error_response(status, ErrorCode::ValidationFailed, rejection.body_text()),
    }
}

/// `POST /graphql`: authenticate, read the body, apply the rate and batch limits, then run
/// each operation in the request's span and answer with the correlation id.
async fn graphql(
    State(state): State<HttpState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return unreadable_body(&rejection, state.limits.max_body_bytes),
    };
    let (principal, auth_error) = match state
        .authenticator
        .authenticate(header(&headers, "authorization"))
        .await
    {
        Ok(credentials) => (credentials.map(|c| c.principal), None),
        Err(error) => (None, Some(error.to_string())),
    };
    let batch = match read_batch(&body) {
        Ok(batch) => batch,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = admit(&state, &batch, principal.as_ref(), client) {
        return refusal.into_response();
    }
    // This request is a span of the caller's trace (or the first of a new one); the events it
    // stores name this span as their parent.
    let trace = TraceContext::continue_from(header(&headers, "traceparent"));
    let context = RequestContext {
        principal,
        expires_at: None,
        subscriptions: None,
        auth_error,
        correlation_id: correlation_id(&headers),
        request_id: Uuid::now_v7().to_string(),
        traceparent: Some(trace.header()),
    };
    let correlation = context.correlation_id.clone();
    let span = tracing::info_span!(
        "graphql",
        otel.kind = "server",
        request_id = %context.request_id,
        correlation_id = %context.correlation_id,
        trace_id = %trace.trace_id(),
        span_id = %trace.span_id(),
        parent_span_id = trace.parent_span_id(),
        sampled = trace.sampled(),
        tracestate = tracestate(&headers),
        otel.status_code = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let response = execute_batch(&state, batch, context)
        .instrument(span.clone())
        .await;
    if failed_on_our_side(&response) {
        span.record("otel.status_code", "ERROR");
    }
    tracing::debug!(parent: &span, elapsed = ?started.elapsed(), "graphql request served");
    let mut http = Json(response).into_response();
    if let Ok(value) = HeaderValue::from_str(&correlation) {
        http.headers_mut().insert("x-correlation-id", value);
    }
    http
}

/// The caller's `tracestate`, kept with its `traceparent` (vendors' data, W3C: at most 512
/// characters are worth keeping).
fn tracestate(headers: &HeaderMap) -> Option<&str> {
    header(headers, "traceparent").and_then(TraceContext::parse)?;
    header(headers, "tracestate").filter(|state| !state.is_empty() && state.len() <= 512)
}

/// Whether an operation failed for a reason of the service's (`INTERNAL`, `UNAVAILABLE`): the
/// span's status is then an error. A client's mistake (`VALIDATION_FAILED`, `NOT_FOUND`...)
/// is a successful answer from the service's point of view, as OpenTelemetry's HTTP
/// conventions treat 4xx on a server span.
fn failed_on_our_side(response: &BatchResponse) -> bool {
    let responses: Vec<&async_graphql::Response> = match response {
        BatchResponse::Single(one) => vec![one],
        BatchResponse::Batch(many) => many.iter().collect(),
    };
    responses
        .iter()
        .flat_map(|r| &r.errors)
        .any(crate::graphql::spans::failed_on_our_side)
}

/// Why a request is refused before any of its operations runs.
enum Refusal {
    /// The body is not a GraphQL request (400).
    NotGraphql(serde_json::Error),
    /// Over the subject's rate: retry after this long (429).
    RateLimited(Duration),
    /// More operations in the batch than allowed (`LIMIT_EXCEEDED`).
    TooManyOperations { operations: usize, allowed: usize },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::NotGraphql(error) => error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::ValidationFailed,
                format!("the body is not a GraphQL request (JSON with a \"query\"): {error}"),
            ),
            Self::RateLimited(wait) => rate_limited(wait),
            Self::TooManyOperations {
                operations,
                allowed,
            } => Json(error_body(vec![limit_error(format!(
                "the batch has {operations} operations; at most {allowed} are allowed"
            ))]))
            .into_response(),
        }
    }
}

/// The body as a GraphQL request or batch.
fn read_batch(body: &[u8]) -> Result<BatchRequest, Refusal> {
    serde_json::from_slice(body).map_err(Refusal::NotGraphql)
}

/// Refuses a request over its subject's rate (429) or with too many operations in its batch
/// (`LIMIT_EXCEEDED`); every operation of a batch counts against the rate.
fn admit(
    state: &HttpState,
    batch: &BatchRequest,
    principal: Option<&Principal>,
    client: SocketAddr,
) -> Result<(), Refusal> {
    let operations = match batch {
        BatchRequest::Single(_) => 1,
        BatchRequest::Batch(requests) => requests.len(),
    };
    if let Some(limiter) = &state.rate_limiter {
        let key = match principal {
            Some(principal) => format!("sub:{}", principal.subject()),
            None => format!("addr:{}", client.ip()),
        };
        let cost = u32::try_from(operations).unwrap_or(u32::MAX);
        limiter.acquire(&key, cost).map_err(Refusal::RateLimited)?;
    }
    if operations > state.limits.max_batch {
        return Err(Refusal::TooManyOperations {
            operations,
            allowed: state.limits.max_batch,
        });
    }
    Ok(())
}

/// Runs a request's operations in turn, each guarded (timeout, panic), each with the context.
async fn execute_batch(
    state: &HttpState,
    batch: BatchRequest,
    context: RequestContext,
) -> BatchResponse {
    let request_id = context.request_id.clone();
    match batch {
        BatchRequest::Single(request) => {
            BatchResponse::Single(execute_guarded(state, request.data(context), &request_id).await)
        }
        BatchRequest::Batch(requests) => {
            let mut responses = Vec::with_capacity(requests.len());
            for request in requests {
                let request = request.data(context.clone());
                responses.push(execute_guarded(state, request, &request_id).await);
            }
            BatchResponse::Batch(responses)
        }
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1) and a `RATE_LIMITED` error.
fn rate_limited(wait: Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let body = error_body(vec![request_error(
        ErrorCode::RateLimited,
        format!("too many requests; retry in {seconds} s"),
        &[("retryAfterSeconds", seconds.into())],
    )]);
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Runs one operation under the request timeout, turning a panic into `INTERNAL`.
async fn execute_guarded(
    state: &HttpState,
    request: async_graphql::Request,
    request_id: &str,
) -> async_graphql::Response {
    if let Some(field) = nul_character(&request) {
        return with_error_codes(async_graphql::Response::from_errors(vec![
            validation_error(&field, "must not contain NUL characters"),
        ]));
    }
    let response = guarded(
        state.schema.execute(request),
        state.limits.request_timeout,
        request_id,
    )
    .await;
    with_error_codes(response)
}

/// Awaits `operation` for at most `timeout` (then `LIMIT_EXCEEDED`), catching a panic (then
/// `INTERNAL` with the request id; the panic message goes to the logs only).
pub(crate) async fn guarded(
    operation: impl std::future::Future<Output = async_graphql::Response>,
    timeout: Duration,
    request_id: &str,
) -> async_graphql::Response {
    let run = AssertUnwindSafe(operation).catch_unwind();
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(response)) => response,
        Ok(Err(panic)) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(%request_id, panic = %reason, "a resolver panicked");
            internal_response(request_id)
        }
        Err(_) => {
            tracing::warn!(%request_id, ?timeout, "request stopped at its timeout");
            error_body(vec![limit_error(format!(
                "the request ran longer than {} ms and was stopped",
                timeout.as_millis()
            ))])
        }
    }
}

/// Where a request carries a NUL character (`query` or a variable's path), if anywhere.
/// No text column or JSON document in Postgres can hold one, so such input is refused here,
/// for every field at once, instead of failing deep in a write.
fn nul_character(request: &async_graphql::Request) -> Option<String> {
    // GraphQL writes a NUL in a string literal only as `\u0000` (hex digits have no case).
    if request.query.contains('\0') || request.query.contains("\\u0000") {
        return Some("query".to_owned());
    }
    request.variables.iter().find_map(|(name, value)| {
        let mut path = name.to_string();
        nul_in_value(value, &mut path).then_some(path)
    })
}

fn nul_in_value(value: &async_graphql::Value, path: &mut String) -> bool {
    use async_graphql::Value;
    match value {
        Value::String(text) => text.contains('\0'),
        Value::List(items) => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = nul_in_value(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Object(fields) => fields.iter().any(|(key, item)| {
            let len = path.len();
            path.push('.');
            path.push_str(key);
            let found = key.contains('\0') || nul_in_value(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        _ => false,
    }
}

/// A request-level `VALIDATION_FAILED` naming `field`.
fn validation_error(field: &str, message: &str) -> ServerError {
    request_error(
        ErrorCode::ValidationFailed,
        format!("{field}: {message}"),
        &[("field", field.into())],
    )
}

/// The opaque answer to a failure that is the service's, not the client's.
fn internal_response(request_id: &str) -> async_graphql::Response {
    error_body(vec![request_error(
        ErrorCode::Internal,
        format!("internal error (request id {request_id})"),
        &[("requestId", request_id.into())],
    )])
}

/// How long a WebSocket is given to end its subscriptions and say goodbye once the service
/// stops.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// graphql-transport-ws (and the legacy graphql-ws). Credentials come in the `connection_init`
/// payload as `{"Authorization": "Bearer <token>"}`, since browsers cannot set headers on
/// WebSocket upgrades; a refused token closes the connection.
async fn graphql_ws(
    State(state): State<HttpState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let correlation = correlation_id(&headers);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let (mut sink, stream) = socket.split();
            // The client's messages until the service stops; then the protocol ends as if
            // the client had left, and the close frame below says why.
            let input = stream.take_until(state.shutdown.clone().cancelled_owned());
            let authenticator = state.authenticator.clone();
            let rate_limiter = state.rate_limiter.clone();
            let max_subscriptions = state.limits.max_subscriptions;
            let counts = state.subscriptions.clone();
            let served =
                GraphQLWebSocket::new_with_pair(&mut sink, input, state.schema.clone(), protocol)
                    .on_connection_init(move |payload| async move {
                        let header = payload
                            .get("Authorization")
                            .or_else(|| payload.get("authorization"))
                            .and_then(|v| v.as_str())
                            .map(str::to_owned);
                        let credentials = authenticator
                            .authenticate(header.as_deref())
                            .await
                            .map_err(|e| async_graphql::Error::new(e.to_string()))?
                            .ok_or_else(|| async_graphql::Error::new("authentication required"))?;
                        // Opening a connection counts as a request of its subject.
                        if let Some(limiter) = &rate_limiter {
                            let key = format!("sub:{}", credentials.principal.subject());
                            if let Err(wait) = limiter.acquire(&key, 1) {
                                return Err(async_graphql::Error::new(format!(
                                    "too many requests; retry in {} s",
                                    wait.as_secs().max(1)
                                )));
                            }
                        }
                        let slots = SubscriptionSlots::new(
                            max_subscriptions,
                            credentials.principal.subject(),
                            counts,
                        );
                        let mut data = async_graphql::Data::default();
                        data.insert(RequestContext {
                            principal: Some(credentials.principal),
                            expires_at: Some(credentials.expires_at),
                            subscriptions: Some(slots),
                            auth_error: None,
                            correlation_id: correlation,
                            request_id: Uuid::now_v7().to_string(),
                            traceparent: None,
                        });
                        Ok(data)
                    })
                    .serve();
            // A client that stops reading holds `serve` in a send, where the end of its input
            // is never seen: past a short grace after shutdown the connection is dropped.
            let stopping = state.shutdown.clone();
            tokio::select! {
                () = served => {}
                () = async {
                    stopping.cancelled().await;
                    tokio::time::sleep(CLOSE_GRACE).await;
                } => {}
            }
            if state.shutdown.is_cancelled() {
                let goodbye = Message::Close(Some(CloseFrame {
                    code: close_code::AWAY,
                    reason: "the service is stopping; resume from your last cursor".into(),
                }));
                // The client may be gone already, or not reading: nothing else to do then.
                let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(goodbye)).await;
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_panicking_operation_answers_internal_with_the_request_id_only() {
        let response = guarded(
            async { panic!("secret detail: /etc/chronicle/key.pem") },
            Duration::from_secs(5),
            "req-1",
        )
        .await;
        let body = serde_json::to_value(&response).unwrap();
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "INTERNAL");
        assert_eq!(error["extensions"]["requestId"], "req-1");
        assert!(!body.to_string().contains("secret detail"), "{body}");
    }

    #[test]
    fn nul_characters_are_found_wherever_they_hide() {
        let request = |query: &str, variables: serde_json::Value| {
            async_graphql::Request::new(query)
                .variables(async_graphql::Variables::from_json(variables))
        };
        let clean = request("{ tasks { totalCount } }", json!({"v": {"a": ["x"]}}));
        assert_eq!(nul_character(&clean), None);
        let nested = request("{ x }", json!({"v": {"labels": ["ok", "b\u{0}d"]}}));
        assert_eq!(nul_character(&nested).as_deref(), Some("v.labels[1]"));
        let escaped = request(
            r#"{ tasks(filter: {text: "\u0000"}) { totalCount } }"#,
            json!({}),
        );
        assert_eq!(nul_character(&escaped).as_deref(), Some("query"));
    }

    #[tokio::test]
    async fn a_slow_operation_is_stopped_at_the_timeout() {
        let response = guarded(
            async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                async_graphql::Response::new(async_graphql::Value::Null)
            },
            Duration::from_millis(20),
            "req-2",
        )
        .await;
        let body = serde_json::to_value(&response).unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED");
    }
}
