//! A page of a read model, in the order of its cursor.

/// One page of a keyset-paginated query, in id (creation) order. It carries no total: counting
/// every match costs as much as the filter is large, so `ViewQueries::count` runs only when a
/// client asks for `totalCount`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Whether more match after the last item.
    pub has_next_page: bool,
}

impl<T> Page<T> {
    /// The page of a query that asked for `limit + 1` rows: the extra row only says that more
    /// follow, and is dropped.
    pub fn of_one_extra(mut rows: Vec<T>, limit: usize) -> Self {
        let has_next_page = rows.len() > limit;
        rows.truncate(limit);
        Self {
            items: rows,
            has_next_page,
        }
    }
}
