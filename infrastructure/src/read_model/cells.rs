//! Rows of a described table to and from Postgres: a row read into cells by its columns'
//! types, and a batch of views turned into one array per column for an `UNNEST` write.

use chronicle_application::data::table::{
    described_cells, view_from_selected_cells, Cell, ColumnSet, ColumnType, TableRow,
};
use chronicle_application::ports::store_error::StoreError;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::QueryScalar;
use sqlx::{Column, FromRow, Postgres, Row};
use uuid::Uuid;

/// One row of `R`'s table, read column by column as its description says. The statement must
/// select the columns of its `ColumnSet` in the description's order (`column_list_of`): a cell is read
/// by its position, not looked up by name in each row (a hash of the name per cell, 900 per page
/// of tasks).
pub(crate) struct RowOf<R> {
    cells: Vec<Cell>,
    columns: ColumnSet<R>,
}

impl<R: TableRow> RowOf<R> {
    /// The cells of the columns `columns` selects, from a row of a statement that selected them.
    pub(crate) fn selected(row: &PgRow, columns: ColumnSet<R>) -> sqlx::Result<Self> {
        let cells = columns
            .columns()
            .enumerate()
            .map(|(position, column)| {
                // Read by position: a statement that listed two columns of one type the other
                // way round would swap them silently, so the tests' builds check each name.
                debug_assert_eq!(row.column(position).name(), column.name);
                Ok(match column.ty {
                    ColumnType::Uuid => Cell::Uuid(row.try_get(position)?),
                    ColumnType::BigInt => Cell::BigInt(row.try_get(position)?),
                    ColumnType::Integer => Cell::Integer(row.try_get(position)?),
                    ColumnType::Text => Cell::Text(row.try_get(position)?),
                    ColumnType::TextArray => Cell::TextArray(row.try_get(position)?),
                    ColumnType::Timestamp => Cell::Timestamp(row.try_get(position)?),
                    ColumnType::Jsonb => Cell::Jsonb(row.try_get(position)?),
                })
            })
            .collect::<sqlx::Result<Vec<_>>>()?;
        Ok(Self { cells, columns })
    }

    /// The view the row holds; a value it no longer understands is a corrupt row.
    pub(crate) fn view(self) -> Result<R, StoreError> {
        view_from_selected_cells::<R>(self.cells, self.columns)
            .map_err(|corrupt| StoreError::corrupt(corrupt.to_string()))
    }
}

impl<'r, R: TableRow> FromRow<'r, PgRow> for RowOf<R> {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Self::selected(row, ColumnSet::all())
    }
}

/// One column's values across a batch of rows, bound as one array parameter.
enum ColumnValues {
    Uuid(Vec<Uuid>),
    BigInt(Vec<i64>),
    Integer(Vec<i32>),
    Text(Vec<Option<String>>),
    /// Postgres has no array of arrays of varying length, so each `text[]` travels as a
    /// `jsonb` array and is unpacked in the statement ([`unnest_select`]).
    TextArray(Vec<Value>),
    Timestamp(Vec<Option<DateTime<Utc>>>),
    Jsonb(Vec<Option<Value>>),
}

impl ColumnValues {
    fn new(ty: ColumnType, rows: usize) -> Self {
        match ty {
            ColumnType::Uuid => Self::Uuid(Vec::with_capacity(rows)),
            ColumnType::BigInt => Self::BigInt(Vec::with_capacity(rows)),
            ColumnType::Integer => Self::Integer(Vec::with_capacity(rows)),
            ColumnType::Text => Self::Text(Vec::with_capacity(rows)),
            ColumnType::TextArray => Self::TextArray(Vec::with_capacity(rows)),
            ColumnType::Timestamp => Self::Timestamp(Vec::with_capacity(rows)),
            ColumnType::Jsonb => Self::Jsonb(Vec::with_capacity(rows)),
        }
    }

    /// Adds a row's cell, of this column's type ([`checked_cells`] makes sure); another is
    /// ignored.
    fn push(&mut self, cell: Cell) {
        match (self, cell) {
            (Self::Uuid(values), Cell::Uuid(value)) => values.push(value),
            (Self::BigInt(values), Cell::BigInt(value)) => values.push(value),
            (Self::Integer(values), Cell::Integer(value)) => values.push(value),
            (Self::Text(values), Cell::Text(value)) => values.push(value),
            (Self::TextArray(values), Cell::TextArray(value)) => values.push(Value::from(value)),
            (Self::Timestamp(values), Cell::Timestamp(value)) => values.push(value),
            (Self::Jsonb(values), Cell::Jsonb(value)) => values.push(value),
            _ => {}
        }
    }

    fn bind<'q, O>(
        self,
        query: QueryScalar<'q, Postgres, O, PgArguments>,
    ) -> QueryScalar<'q, Postgres, O, PgArguments> {
        match self {
            Self::Uuid(values) => query.bind(values),
            Self::BigInt(values) => query.bind(values),
            Self::Integer(values) => query.bind(values),
            Self::Text(values) => query.bind(values),
            Self::TextArray(values) => query.bind(values),
            Self::Timestamp(values) => query.bind(values),
            Self::Jsonb(values) => query.bind(values),
        }
    }
}

/// Binds `views` to `query` as one array per column, in column order (`$1` the ids, `$2` the
/// versions, ...), as [`unnest_select`] reads them.
pub(crate) fn bind_columns<'q, R: TableRow, O>(
    mut query: QueryScalar<'q, Postgres, O, PgArguments>,
    views: &[R],
) -> Result<QueryScalar<'q, Postgres, O, PgArguments>, StoreError> {
    let mut columns: Vec<ColumnValues> = R::COLUMNS
        .iter()
        .map(|column| ColumnValues::new(column.ty, views.len()))
        .collect();
    for view in views {
        for (values, cell) in columns.iter_mut().zip(checked_cells(view)?) {
            // `checked_cells` checked each cell's type against its column, so it fits.
            values.push(cell);
        }
    }
    for values in columns {
        query = values.bind(query);
    }
    Ok(query)
}

/// `view`'s cells as its description says they must be ([`described_cells`]).
pub(crate) fn checked_cells<R: TableRow>(view: &R) -> Result<Vec<Cell>, StoreError> {
    described_cells(view).map_err(|corrupt| StoreError::corrupt(corrupt.to_string()))
}

/// `SELECT <columns> FROM UNNEST($1::uuid[], ...) AS v(<columns>)`: the rows [`bind_columns`]
/// binds, typed as the description says.
pub(crate) fn unnest_select<R: TableRow>() -> String {
    let columns = R::COLUMNS;
    let names = column_list::<R>();
    let selected = columns
        .iter()
        .map(|column| match column.ty {
            ColumnType::TextArray => {
                format!(
                    "ARRAY(SELECT jsonb_array_elements_text(v.{0}))",
                    column.name
                )
            }
            _ => format!("v.{}", column.name),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let arrays = columns
        .iter()
        .enumerate()
        .map(|(index, column)| format!("${}::{}[]", index + 1, bound_type(column.ty)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT {selected} FROM UNNEST({arrays}) AS v({names})")
}

/// The table's columns, comma-separated, in description order.
pub(crate) fn column_list<R: TableRow>() -> String {
    column_list_of::<R>(ColumnSet::all())
}

/// The columns `columns` selects, comma-separated, in description order.
pub(crate) fn column_list_of<R: TableRow>(columns: ColumnSet<R>) -> String {
    columns
        .columns()
        .map(|column| column.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The element type a column's values are bound as.
fn bound_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Uuid => "uuid",
        ColumnType::BigInt => "bigint",
        ColumnType::Integer => "integer",
        ColumnType::Text => "text",
        ColumnType::TextArray | ColumnType::Jsonb => "jsonb",
        ColumnType::Timestamp => "timestamptz",
    }
}
