//! Parsed documents, kept by their text: clients send the same few operations again and again
//! (an app has a fixed set; variables carry what changes), and parsing one cost about 4% of the
//! service's CPU per createTask (docs/performance.md).
//!
//! Only documents that parsed and passed the limits are kept, so a hit skips exactly the work
//! that would give the same answer again; validation and execution still run per request (they
//! depend on the variables and the caller). The cache is bounded in entries and in the length
//! of the text it keeps; when full it forgets everything and refills, which costs a client that
//! sends a new text every time no more than no cache at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};

/// Documents kept before the cache starts over.
const MAX_DOCUMENTS: usize = 512;

/// Longer texts are parsed every time: a long document is rare and would cost the memory.
const MAX_TEXT_BYTES: usize = 8 * 1024;

/// Answers the parse of a document seen before from memory; the outermost parse step, so a
/// miss goes through the limits ([`super::limits::DocumentLimits`]) as before.
#[derive(Clone, Default)]
pub(crate) struct ParsedDocuments {
    documents: Arc<Mutex<HashMap<String, ExecutableDocument>>>,
}

impl ParsedDocuments {
    fn get(&self, text: &str) -> Option<ExecutableDocument> {
        let documents = self
            .documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        documents.get(text).cloned()
    }

    fn keep(&self, text: &str, document: &ExecutableDocument) {
        if text.len() > MAX_TEXT_BYTES {
            return;
        }
        let mut documents = self
            .documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if documents.len() >= MAX_DOCUMENTS {
            documents.clear();
        }
        documents.insert(text.to_owned(), document.clone());
    }
}

impl ExtensionFactory for ParsedDocuments {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ParsedDocuments {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(document) = self.get(query) {
            return Ok(document);
        }
        let document = next.run(ctx, query, variables).await?;
        self.keep(query, &document);
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(text).unwrap()
    }

    #[test]
    fn a_kept_document_is_answered_by_its_exact_text_only() {
        let cache = ParsedDocuments::default();
        let text = "{ task(id: \"t-1\") { title } }";
        cache.keep(text, &parsed(text));
        let again = cache.get(text).expect("kept");
        assert_eq!(again.operations.iter().count(), 1);
        assert!(cache.get("{ task(id: \"t-2\") { title } }").is_none());
    }

    #[test]
    fn the_cache_stays_bounded_in_entries_and_text() {
        let cache = ParsedDocuments::default();
        let long = format!("{{ a{} }}", "b".repeat(MAX_TEXT_BYTES));
        cache.keep(&long, &parsed("{ a }"));
        assert!(cache.get(&long).is_none(), "too long to keep");
        for n in 0..=MAX_DOCUMENTS {
            let text = format!("{{ f{n} }}");
            cache.keep(&text, &parsed(&text));
        }
        let kept = cache.documents.lock().unwrap().len();
        assert!(kept <= MAX_DOCUMENTS, "{kept}");
        assert!(cache.get(&format!("{{ f{MAX_DOCUMENTS} }}")).is_some());
    }
}
