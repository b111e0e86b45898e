//! Relay pagination shared by every connection: page info and opaque keyset cursors.

use async_graphql::SimpleObject;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chronicle_application::ports::page::Page;
use chronicle_application::AppError;

/// Relay page information.
#[derive(SimpleObject)]
pub(crate) struct PageInfo {
    /// More tasks match after `endCursor`.
    pub has_next_page: bool,
    /// Whether tasks precede this page (always false when paging forward from the start).
    pub has_previous_page: bool,
    /// Cursor of the first edge.
    pub start_cursor: Option<String>,
    /// Cursor of the last edge.
    pub end_cursor: Option<String>,
}

/// Encodes a keyset cursor for a row of `kind` (`task`, `report`, `deadletter`) whose key is
/// `key` (a row id, or a sequence number). Cursors name a row, so they stay valid while rows
/// are added.
pub(crate) fn encode_cursor(kind: &str, key: impl std::fmt::Display) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{key}"))
}

/// Decodes a cursor of `kind` from [`encode_cursor`].
pub(crate) fn decode_cursor<K: std::str::FromStr>(kind: &str, cursor: &str) -> Result<K, AppError> {
    let invalid = || AppError::validation("after", "is not a cursor returned by this API");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|key| key.parse().ok())
        .ok_or_else(invalid)
}

/// Turns a page of rows into Relay parts: (cursor, node) pairs and page info.
pub fn connection<V, N, K: std::fmt::Display>(
    page: Page<V>,
    kind: &str,
    has_previous_page: bool,
    key_of: fn(&V) -> K,
    node: fn(V) -> N,
) -> (Vec<(String, N)>, PageInfo) {
    let edges: Vec<(String, N)> = page
        .items
        .into_iter()
        .map(|view| (encode_cursor(kind, key_of(&view)), node(view)))
        .collect();
    let page_info = PageInfo {
        has_next_page: page.has_next_page,
        has_previous_page,
        start_cursor: edges.first().map(|(cursor, _)| cursor.clone()),
        end_cursor: edges.last().map(|(cursor, _)| cursor.clone()),
    };
    (edges, page_info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn cursors_round_trip_and_garbage_is_a_validation_error() {
        let id = Uuid::now_v7();
        assert_eq!(
            decode_cursor::<Uuid>("task", &encode_cursor("task", id)).unwrap(),
            id
        );
        assert_eq!(
            decode_cursor::<i64>("deadletter", &encode_cursor("deadletter", 42)).unwrap(),
            42
        );
        assert!(matches!(
            decode_cursor::<Uuid>("task", "not-a-cursor"),
            Err(AppError::Validation { .. })
        ));
        assert!(decode_cursor::<Uuid>("report", &encode_cursor("task", id)).is_err());
    }
}
