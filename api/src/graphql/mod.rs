//! The GraphQL schema: queries, mutations and the types they return.

mod audit;
mod context;
mod error;
mod mutation;
mod query;
mod report;
mod subscription;
mod task;

use async_graphql::{MergedObject, Schema};

pub use context::{RequestContext, Services};
pub use error::{with_error_codes, ErrorCode};
pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

/// Every query: tasks and reports, and the audit trail.
#[derive(MergedObject, Default)]
pub struct Query(QueryRoot, audit::AuditQuery);

/// The schema type served at `/graphql`.
pub type ChronicleSchema = Schema<Query, MutationRoot, SubscriptionRoot>;

/// Builds the schema over `services`.
pub fn build_schema(services: Services) -> ChronicleSchema {
    Schema::build(Query::default(), MutationRoot, SubscriptionRoot)
        .data(services)
        .limit_depth(12)
        .limit_complexity(2_000)
        .finish()
}
