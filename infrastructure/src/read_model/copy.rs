//! Rows in `COPY ... FROM STDIN` text format: the fastest way to load a rebuilt table.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;
use uuid::Uuid;

use super::backend;
use chronicle_application::data::table::Cell;
use chronicle_application::ports::store_error::StoreError;

/// Builds the text of a `COPY` in Postgres's text format: tab-separated columns, `\N` for
/// null, backslash escapes, one row per line.
#[derive(Default)]
pub(crate) struct CopyText {
    buffer: String,
    at_row_start: bool,
}

impl CopyText {
    /// An empty buffer sized for `rows` rows of about `row_bytes` each.
    pub(crate) fn with_capacity(rows: usize, row_bytes: usize) -> Self {
        Self {
            buffer: String::with_capacity(rows * row_bytes),
            at_row_start: true,
        }
    }

    fn separate(&mut self) {
        if !self.at_row_start {
            self.buffer.push('\t');
        }
        self.at_row_start = false;
    }

    /// Ends the current row.
    pub(crate) fn end_row(&mut self) {
        self.buffer.push('\n');
        self.at_row_start = true;
    }

    /// A column of a described row, in the text form of its type.
    pub(crate) fn cell(&mut self, cell: Cell) {
        match cell {
            Cell::Uuid(value) => self.uuid(value),
            Cell::BigInt(value) => self.int(value),
            Cell::Integer(value) => self.int(i64::from(value)),
            Cell::Text(value) => self.text(value.as_deref()),
            Cell::TextArray(values) => self.text_array(&values),
            Cell::Timestamp(value) => self.timestamp(value),
            Cell::Jsonb(value) => self.json(value.as_ref()),
        }
    }

    /// A text column (escaped).
    fn text(&mut self, value: Option<&str>) {
        self.separate();
        match value {
            Some(text) => escape_into(&mut self.buffer, text),
            None => self.buffer.push_str("\\N"),
        }
    }

    /// A column whose text form needs no escaping (numbers, UUIDs, timestamps).
    fn plain(&mut self, value: Option<impl std::fmt::Display>) {
        self.separate();
        match value {
            Some(value) => {
                use std::fmt::Write as _;
                let _ = write!(self.buffer, "{value}");
            }
            None => self.buffer.push_str("\\N"),
        }
    }

    /// A uuid column.
    fn uuid(&mut self, value: Uuid) {
        self.plain(Some(value));
    }

    /// A bigint or integer column.
    fn int(&mut self, value: i64) {
        self.plain(Some(value));
    }

    /// A timestamptz column, in RFC 3339 with microseconds (Postgres's precision).
    fn timestamp(&mut self, value: Option<DateTime<Utc>>) {
        self.plain(value.map(|at| at.to_rfc3339_opts(SecondsFormat::Micros, true)));
    }

    /// A `text[]` column: an array literal (elements quoted), then escaped as a column.
    fn text_array(&mut self, values: &[String]) {
        let mut literal = String::from("{");
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                literal.push(',');
            }
            literal.push('"');
            for c in value.chars() {
                if matches!(c, '"' | '\\') {
                    literal.push('\\');
                }
                literal.push(c);
            }
            literal.push('"');
        }
        literal.push('}');
        self.text(Some(&literal));
    }

    /// A jsonb column.
    fn json(&mut self, value: Option<&Value>) {
        let text = value.map(Value::to_string);
        self.text(text.as_deref());
    }

    /// Sends the rows to `statement` (`COPY table (columns) FROM STDIN`).
    pub(crate) async fn send(self, pool: &PgPool, statement: &str) -> Result<(), StoreError> {
        let mut copy = pool.copy_in_raw(statement).await.map_err(backend)?;
        copy.send(self.buffer.into_bytes()).await.map_err(backend)?;
        copy.finish().await.map_err(backend)?;
        Ok(())
    }
}

/// Escapes backslash, tab, newline and carriage return, as COPY's text format requires.
fn escape_into(buffer: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => buffer.push_str("\\\\"),
            '\t' => buffer.push_str("\\t"),
            '\n' => buffer.push_str("\\n"),
            '\r' => buffer.push_str("\\r"),
            other => buffer.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_columns_and_array_elements() {
        let mut copy = CopyText::with_capacity(1, 64);
        copy.text(Some("a\tb\\c\nd"));
        copy.text(None);
        copy.text_array(&["x\"y".to_owned(), "p\\q".to_owned(), "plain".to_owned()]);
        copy.int(-7);
        copy.end_row();
        assert_eq!(
            copy.buffer,
            "a\\tb\\\\c\\nd\t\\N\t{\"x\\\\\"y\",\"p\\\\\\\\q\",\"plain\"}\t-7\n"
        );
    }
}
