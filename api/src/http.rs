//! HTTP routes: GraphQL, GraphiQL and health.

use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::State;
use axum::extract::WebSocketUpgrade;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chronicle_infrastructure::outbox::RelayStatus;
use serde_json::json;
use sqlx::PgPool;
use tower_http::limit::RequestBodyLimitLayer;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::graphql::{with_error_codes, ChronicleSchema, RequestContext};

/// Largest accepted request body; larger ones get HTTP 413 before any parsing.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    /// The GraphQL schema.
    pub schema: ChronicleSchema,
    /// Token checking.
    pub authenticator: Authenticator,
    /// For readiness checks.
    pub pool: PgPool,
    /// The relay's state, when this process runs one.
    pub relay: Option<Arc<RelayStatus>>,
}

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/graphql/ws", get(graphql_ws))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(prometheus))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .with_state(state)
}

/// The Prometheus text exposition.
async fn prometheus() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::handle().render(),
    )
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Chronicle")
            .finish(),
    )
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

async fn graphql(
    State(state): State<HttpState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let (actor, auth_error) = match state
        .authenticator
        .authenticate(header(&headers, "authorization"))
    {
        Ok(actor) => (actor, None),
        Err(error) => (None, Some(error.to_string())),
    };
    let context = RequestContext {
        actor,
        auth_error,
        correlation_id: correlation_id(&headers),
        request_id: Uuid::now_v7().to_string(),
        traceparent: header(&headers, "traceparent")
            .filter(|t| t.len() <= 128)
            .map(str::to_owned),
    };
    let correlation = context.correlation_id.clone();
    let span = tracing::info_span!(
        "graphql",
        request_id = %context.request_id,
        correlation_id = %context.correlation_id
    );
    let request = request.into_inner().data(context);
    let response = with_error_codes(state.schema.execute(request).instrument(span).await);
    let mut http = GraphQLResponse::from(response).into_response();
    if let Ok(value) = HeaderValue::from_str(&correlation) {
        http.headers_mut().insert("x-correlation-id", value);
    }
    http
}

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
        .on_upgrade(move |socket| {
            let authenticator = state.authenticator.clone();
            GraphQLWebSocket::new(socket, state.schema.clone(), protocol)
                .on_connection_init(move |payload| async move {
                    let header = payload
                        .get("Authorization")
                        .or_else(|| payload.get("authorization"))
                        .and_then(|v| v.as_str())
                        .map(str::to_owned);
                    let actor = authenticator
                        .authenticate(header.as_deref())
                        .map_err(|e| async_graphql::Error::new(e.to_string()))?
                        .ok_or_else(|| async_graphql::Error::new("authentication required"))?;
                    let mut data = async_graphql::Data::default();
                    data.insert(RequestContext {
                        actor: Some(actor),
                        auth_error: None,
                        correlation_id: correlation,
                        request_id: Uuid::now_v7().to_string(),
                        traceparent: None,
                    });
                    Ok(data)
                })
                .serve()
        })
}

async fn ready(State(state): State<HttpState>) -> Response {
    let database = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let relay = state.relay.as_ref().map(|status| {
        json!({
            "leader": status.is_leader(),
            "published": status.published(),
            "lastError": status.last_error(),
        })
    });
    let body = json!({
        "status": if database { "ready" } else { "unavailable" },
        "database": database,
        "relay": relay,
    });
    let code = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}
