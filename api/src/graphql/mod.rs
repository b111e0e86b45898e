//! The GraphQL schema: queries, mutations and the types they return.

mod audit;
mod context;
mod error;
mod limits;
mod mutation;
mod observe;
mod projection;
mod query;
mod report;
mod subscription;
mod task;

use async_graphql::{MergedObject, MergedSubscription, Schema};
use chronicle_infrastructure::config::ApiLimits;

pub use context::{RequestContext, Services, SubscriptionSlots};
pub use error::{with_error_codes, ErrorCode};
pub use limits::limit_error;
pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

/// Every query: tasks and reports, the audit trail, projections.
#[derive(MergedObject, Default)]
pub struct Query(QueryRoot, audit::AuditQuery, projection::ProjectionQuery);

/// Every mutation: task and report commands, projection rebuilds.
#[derive(MergedObject, Default)]
pub struct Mutation(
    MutationRoot,
    projection::ProjectionMutation,
    projection::ProjectionPauseMutation,
);

/// Every subscription: task events, report status, projection status.
#[derive(MergedSubscription, Default)]
pub struct Subscription(SubscriptionRoot, projection::ProjectionSubscription);

/// The schema type served at `/graphql`.
pub type ChronicleSchema = Schema<Query, Mutation, Subscription>;

/// Directives one field may carry: the schema has only `@skip`/`@include`, so more than a few
/// is noise meant to slow validation down.
const MAX_DIRECTIVES_PER_FIELD: usize = 4;

/// Builds the schema over `services`, refusing documents beyond `limits` before any resolver
/// runs.
pub fn build_schema(services: Services, limits: &ApiLimits) -> ChronicleSchema {
    let builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .data(services)
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity)
    .limit_directives(MAX_DIRECTIVES_PER_FIELD)
    .extension(limits::AliasLimit {
        max: limits.max_aliases,
    })
    .extension(observe::OperationMetrics);
    if limits.introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}
