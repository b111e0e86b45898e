//! Spans of a GraphQL request's phases (parse, validate, execute), children of the HTTP
//! request's span (`crate::http`), so a trace shows where a request's time went; each root
//! field's span is opened by `observe`, which already wraps every field's resolution (a second
//! hook would cost every nested field another boxed future). They are `debug` spans: they cost nothing unless spans are exported,
//! when the process's filter lets Chronicle's spans through at `debug`.
//!
//! Neither documents nor variables are recorded: variables carry the callers' data, personal
//! data among it (docs/privacy.md), and so can a document's literals.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Value, Variables};
use tracing::field::Empty;
use tracing::Instrument as _;

/// Opens the spans of every request.
pub(crate) struct RequestSpans;

impl ExtensionFactory for RequestSpans {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestSpans)
    }
}

/// Whether `error` is the service's failure (`INTERNAL`, `UNAVAILABLE`), which marks a span
/// failed, rather than the caller's (a refused input, a conflict, a missing permission).
pub(crate) fn failed_on_our_side(error: &ServerError) -> bool {
    let code = error
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get("code"));
    matches!(code, Some(Value::String(code)) if code == "INTERNAL" || code == "UNAVAILABLE")
}

#[async_graphql::async_trait::async_trait]
impl Extension for RequestSpans {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let span = tracing::debug_span!("graphql.parse");
        next.run(ctx, query, variables).instrument(span).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let span = tracing::debug_span!("graphql.validate");
        next.run(ctx).instrument(span).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let span = tracing::debug_span!(
            "graphql.execute",
            graphql.operation.name = operation_name,
            otel.status_code = Empty,
        );
        let response = next.run(ctx, operation_name).instrument(span.clone()).await;
        if response.errors.iter().any(failed_on_our_side) {
            span.record("otel.status_code", "ERROR");
        }
        response
    }
}
