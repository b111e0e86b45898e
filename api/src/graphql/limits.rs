//! The limits of one GraphQL document, enforced by the service with its own coded errors:
//! aliases and directives counted right after parsing, depth and complexity checked on the
//! figures async-graphql's validation computes. async-graphql can enforce depth, complexity and
//! directives itself, but its refusals carry only a message, and telling them from a client's
//! mistakes would mean matching their text; here every refusal is `LIMIT_EXCEEDED` by
//! construction.
//!
//! Aliases matter because a document of thousands of aliased copies of one cheap field
//! (`a1: task(id: …) a2: task(id: …) …`) makes as many database reads.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};

use super::error::{request_error, ErrorCode};

/// Refuses documents beyond these limits (`LIMIT_EXCEEDED`) before any resolver runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DocumentLimits {
    /// Aliased fields in the document.
    pub max_aliases: usize,
    /// Directives on one field or fragment.
    pub max_directives: usize,
    /// Selection nesting.
    pub max_depth: usize,
    /// Complexity points (one per field, a connection's counted once per item of its page).
    pub max_complexity: usize,
    /// Selection nesting async-graphql accepts while parsing, before validation computes the
    /// depth: the schema is built with this as its recursion limit.
    pub max_recursion: usize,
}

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for DocumentLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = match next.run(ctx, query, variables).await {
            Ok(document) => document,
            // The one check async-graphql makes while parsing is its recursion limit: a
            // document that parses, yet was refused there, nests beyond it.
            Err(_) if async_graphql::parser::parse_query(query).is_ok() => {
                return Err(limit_error(format!(
                    "the document nests more than {} selection levels",
                    self.max_recursion
                )));
            }
            Err(error) => return Err(error),
        };
        let aliases = count_aliases(&document);
        if aliases > self.max_aliases {
            return Err(limit_error(format!(
                "the document has {aliases} aliased fields; at most {} are allowed",
                self.max_aliases
            )));
        }
        let directives = most_directives(&document);
        if directives > self.max_directives {
            return Err(limit_error(format!(
                "a field carries {directives} directives; at most {} are allowed",
                self.max_directives
            )));
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if result.depth > self.max_depth {
            return Err(vec![limit_error(format!(
                "the document nests {} levels deep; at most {} are allowed",
                result.depth, self.max_depth
            ))]);
        }
        if result.complexity > self.max_complexity {
            return Err(vec![limit_error(format!(
                "the document's complexity is {}; at most {} is allowed (page sizes multiply)",
                result.complexity, self.max_complexity
            ))]);
        }
        Ok(result)
    }
}

/// A request-level error with `extensions.code = LIMIT_EXCEEDED`.
pub fn limit_error(message: String) -> ServerError {
    request_error(ErrorCode::LimitExceeded, message, &[])
}

/// The most directives on any one field, fragment spread or inline fragment of `document`.
pub(crate) fn most_directives(document: &ExecutableDocument) -> usize {
    let sets = document
        .operations
        .iter()
        .map(|(_, operation)| &operation.node.selection_set.node)
        .chain(
            document
                .fragments
                .values()
                .map(|fragment| &fragment.node.selection_set.node),
        );
    sets.map(most_directives_in).max().unwrap_or(0)
}

fn most_directives_in(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => field
                .node
                .directives
                .len()
                .max(most_directives_in(&field.node.selection_set.node)),
            Selection::InlineFragment(fragment) => fragment
                .node
                .directives
                .len()
                .max(most_directives_in(&fragment.node.selection_set.node)),
            Selection::FragmentSpread(spread) => spread.node.directives.len(),
        })
        .max()
        .unwrap_or(0)
}

/// Aliased fields in every operation and fragment definition of `document`.
pub(crate) fn count_aliases(document: &ExecutableDocument) -> usize {
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

    #[test]
    fn directives_are_counted_per_field_fragment_and_spread() {
        let document = async_graphql::parser::parse_query(
            "query { tasks @skip(if: false) { totalCount @include(if: true) @skip(if: false)
               ... on TaskConnection @skip(if: false) { totalCount } ...F @a @b @c } }
             fragment F on TaskConnection { totalCount }",
        )
        .unwrap();
        assert_eq!(most_directives(&document), 3);
    }
}
