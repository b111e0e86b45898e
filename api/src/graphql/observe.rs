//! Latency of each GraphQL operation, by root field: the schema's fields are a bounded label
//! set (an operation's client-chosen name is not, so it is never a label); and each root
//! field's span (`Mutation.createTask`, a `debug` span like the others of `spans`).

use std::sync::Arc;
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo,
};
use async_graphql::{ServerResult, Value};
use tracing::Instrument as _;

/// Records `chronicle_graphql_operation_duration_seconds{type, field, outcome}` for every root
/// field a request resolves (`type` is Query, Mutation or Subscription), inside its span.
pub(crate) struct OperationMetrics;

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationMetricsExtension)
    }
}

struct OperationMetricsExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for OperationMetricsExtension {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if !is_root_field(&info) {
            return next.run(ctx, info).await;
        }
        let (kind, field) = (info.parent_type.to_owned(), info.name.to_owned());
        let span = tracing::debug_span!(
            "graphql.resolve",
            otel.name = format!("{kind}.{field}"),
            graphql.field.name = %field,
            graphql.field.parent_type = %kind,
            otel.status_code = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = next.run(ctx, info).instrument(span.clone()).await;
        if matches!(&result, Err(error) if super::spans::failed_on_our_side(error)) {
            span.record("otel.status_code", "ERROR");
        }
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::histogram!(
            "chronicle_graphql_operation_duration_seconds",
            "type" => kind,
            "field" => field,
            "outcome" => outcome,
        )
        .record(started.elapsed().as_secs_f64());
        result
    }
}

/// Whether `info` is one of the operation's root fields (`Mutation.createTask`), not a field
/// inside one nor introspection: what the metrics and the span count.
fn is_root_field(info: &ResolveInfo<'_>) -> bool {
    info.path_node.parent.is_none() && !info.is_for_introspection
}
