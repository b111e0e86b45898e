//! The GraphQL schema: queries, mutations and the types they return.

mod arguments;
mod audit;
mod audit_proofs;
mod context;
mod cursor;
mod error;
mod held;
mod in_place;
mod limits;
mod mutation;
mod observe;
mod pagination;
mod parsed;
mod privacy;
mod projection;
mod query;
mod report;
mod slots;
pub(crate) mod spans;
mod subscription;
mod task;
mod view;

use crate::settings::ApiLimits;
use async_graphql::{MergedObject, MergedSubscription, Schema};

pub use context::{RequestContext, Services};
pub use error::{error_body, request_error, with_error_codes, ErrorCode};
pub use limits::limit_error;
pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use slots::{SubscriptionCounts, SubscriptionSlots};
pub use subscription::SubscriptionRoot;

/// Every query: tasks and reports, the audit trail, projections, held messages (parked outbox
/// records, dead letters, projection failures).
#[derive(MergedObject, Default)]
pub struct Query(
    QueryRoot,
    audit::AuditQuery,
    audit_proofs::AuditProofQuery,
    projection::ProjectionQuery,
    held::HeldQuery,
    held::deprecated::DeprecatedHeldQuery,
);

/// Every mutation: task and report commands, projection rebuilds, held messages, erasure.
#[derive(MergedObject, Default)]
pub struct Mutation(
    MutationRoot,
    projection::ProjectionMutation,
    projection::ProjectionPauseMutation,
    held::HeldMutation,
    held::deprecated::DeprecatedHeldMutation,
    privacy::PrivacyMutation,
);

/// Every subscription: task events, report status, projection status.
#[derive(MergedSubscription, Default)]
pub struct Subscription(SubscriptionRoot, projection::ProjectionSubscription);

/// The schema type served at `/graphql`.
pub(crate) type ChronicleSchema = Schema<Query, Mutation, Subscription>;

/// Directives one field may carry: the schema has only `@skip`/`@include`, so more than a few
/// is noise meant to slow validation down.
const MAX_DIRECTIVES_PER_FIELD: usize = 4;

/// Selection nesting the parser accepts (async-graphql's default); the depth limit proper is
/// `CHRONICLE_GRAPHQL_MAX_DEPTH`, checked after validation.
const MAX_RECURSION: usize = 32;

/// Builds the schema over `services`, refusing documents beyond `limits` before any resolver
/// runs ([`limits::DocumentLimits`]) and parsing a document's text once
/// ([`parsed::ParsedDocuments`]).
pub fn build_schema(services: Services, limits: &ApiLimits) -> ChronicleSchema {
    let builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .data(services)
    .limit_recursive_depth(MAX_RECURSION)
    .extension(spans::RequestSpans)
    .extension(parsed::ParsedDocuments::default())
    .extension(limits::DocumentLimits {
        max_aliases: limits.max_aliases,
        max_directives: MAX_DIRECTIVES_PER_FIELD,
        max_depth: limits.max_depth,
        max_complexity: limits.max_complexity,
        max_recursion: MAX_RECURSION,
    })
    .extension(observe::OperationMetrics);
    if limits.introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// The schema as the service serves it, in GraphQL SDL: what `docs/schema.graphql` holds.
/// Printing needs no services and no limits, so none are given.
#[cfg(test)]
pub(crate) fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .finish()
    .sdl()
}

#[cfg(test)]
mod tests {
    /// The contract's copy of the schema, beside `docs/api.md`.
    const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/schema.graphql");

    #[test]
    fn schema_file_is_the_served_schema() {
        let served = super::sdl();
        if std::env::var_os("CHRONICLE_WRITE_SCHEMA").is_some() {
            std::fs::write(SCHEMA_FILE, &served).expect("writing docs/schema.graphql");
        }
        let file = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
        assert!(
            file == served,
            "docs/schema.graphql is not the schema the service serves; if the change is \
             meant, regenerate it with `CHRONICLE_WRITE_SCHEMA=1 cargo test -p chronicle-api \
             schema_file` and review the diff"
        );
    }
}
