//! The GraphQL schema: queries, mutations and the types they return.

mod audit;
mod context;
mod error;
mod mutation;
mod projection;
mod query;
mod report;
mod subscription;
mod task;

use async_graphql::{MergedObject, MergedSubscription, Schema};

pub use context::{RequestContext, Services};
pub use error::{with_error_codes, ErrorCode};
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

/// Builds the schema over `services`.
pub fn build_schema(services: Services) -> ChronicleSchema {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .data(services)
    .limit_depth(12)
    .limit_complexity(2_000)
    .finish()
}
