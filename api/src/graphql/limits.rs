//! Limits async-graphql does not enforce itself: aliases per document.
//!
//! Depth and complexity are the schema's own limits; aliases are not, and a document of
//! thousands of aliased copies of one cheap field (`a1: task(id: …) a2: task(id: …) …`) makes
//! as many database reads. The count happens right after parsing, before validation or any
//! resolver runs.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};

use super::error::{request_error, ErrorCode};

/// Refuses documents with more than `max` aliased fields (`LIMIT_EXCEEDED`).
pub struct AliasLimit {
    /// The most aliases a document may hold.
    pub max: usize,
}

impl ExtensionFactory for AliasLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AliasLimitExtension { max: self.max })
    }
}

struct AliasLimitExtension {
    max: usize,
}

#[async_graphql::async_trait::async_trait]
impl Extension for AliasLimitExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let aliases = count_aliases(&document);
        if aliases > self.max {
            return Err(limit_error(format!(
                "the document has {aliases} aliased fields; at most {} are allowed",
                self.max
            )));
        }
        Ok(document)
    }
}

/// A request-level error with `extensions.code = LIMIT_EXCEEDED`.
pub fn limit_error(message: String) -> ServerError {
    request_error(ErrorCode::LimitExceeded, message, &[])
}

/// Aliased fields in every operation and fragment definition of `document`.
pub fn count_aliases(document: &ExecutableDocument) -> usize {
    let in_operations: usize = document
        .operations
        .iter()
        .map(|(_, operation)| in_selection_set(&operation.node.selection_set.node))
        .sum();
    let in_fragments: usize = document
        .fragments
        .values()
        .map(|fragment| in_selection_set(&fragment.node.selection_set.node))
        .sum();
    in_operations + in_fragments
}

fn in_selection_set(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some())
                    + in_selection_set(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => {
                in_selection_set(&fragment.node.selection_set.node)
            }
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_counted_in_operations_fragments_and_nesting() {
        let document = async_graphql::parser::parse_query(
            "query { a: tasks { b: totalCount ...F ... on TaskConnection { c: totalCount } } }
             fragment F on TaskConnection { d: totalCount e: totalCount }",
        )
        .unwrap();
        assert_eq!(count_aliases(&document), 5);
    }
}
