//! A read model's table described as data: its columns, how one view becomes a row of cells and
//! back, and the filters the table answers. Each view describes itself once, beside its fold
//! (`projection::task`, `projection::report`); the Postgres adapter saves, loads, pages, filters
//! and bulk-loads every described table with the same code, and a test compares each
//! description with the table the migrations create.

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// The SQL type of a read-model column: the few a view needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `uuid`.
    Uuid,
    /// `bigint`.
    BigInt,
    /// `integer`.
    Integer,
    /// `text`.
    Text,
    /// `text[]`.
    TextArray,
    /// `timestamptz`.
    Timestamp,
    /// `jsonb`.
    Jsonb,
}

impl ColumnType {
    /// The type as Postgres's catalog names it (`information_schema.columns.udt_name`).
    pub fn udt_name(self) -> &'static str {
        match self {
            Self::Uuid => "uuid",
            Self::BigInt => "int8",
            Self::Integer => "int4",
            Self::Text => "text",
            Self::TextArray => "_text",
            Self::Timestamp => "timestamptz",
            Self::Jsonb => "jsonb",
        }
    }
}

/// One column of a read-model table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name in the table.
    pub name: &'static str,
    /// Its type.
    pub ty: ColumnType,
    /// Whether it may hold null.
    pub nullable: bool,
    /// Whether a read that shows nothing of it may leave it out ([`ColumnSet`]): the view then
    /// holds an empty stand-in (null, `[]`, `""`) that nobody is shown.
    pub omissible: bool,
}

impl Column {
    /// A `NOT NULL` column. Only a `text[]` one may be left out of a read (`[]` stands in);
    /// [`Column::omissible`] allows it for a text the view shows as it is.
    pub const fn required(name: &'static str, ty: ColumnType) -> Self {
        Self {
            name,
            ty,
            nullable: false,
            omissible: matches!(ty, ColumnType::TextArray),
        }
    }

    /// A column that may be null, and so may be left out of a read (null stands in).
    pub const fn optional(name: &'static str, ty: ColumnType) -> Self {
        Self {
            name,
            ty,
            nullable: true,
            omissible: true,
        }
    }

    /// This required `text` column may be left out of a read that shows nothing of it, `""`
    /// standing in: only for a text the view keeps as it is, never one it parses (a status,
    /// a team), which an empty text would not parse as.
    pub const fn omissible(self) -> Self {
        Self {
            omissible: true,
            ..self
        }
    }
}

/// The columns of `R`'s table one read selects: those its reader shows, and every one the view
/// cannot be read without (the id, the version, what it parses). A page of tasks that shows a
/// title and a status reads neither descriptions nor watcher lists.
pub struct ColumnSet<R> {
    selected: u64,
    table: PhantomData<fn() -> R>,
}

impl<R> Clone for ColumnSet<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for ColumnSet<R> {}

impl<R> PartialEq for ColumnSet<R> {
    fn eq(&self, other: &Self) -> bool {
        self.selected == other.selected
    }
}

impl<R> std::fmt::Debug for ColumnSet<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ColumnSet({:#b})", self.selected)
    }
}

impl<R: TableRow> ColumnSet<R> {
    /// Every column of the table.
    pub fn all() -> Self {
        Self::with(|_| true)
    }

    /// The columns named (by their names in the table), with every one that may not be left
    /// out. A name the table does not have selects every column: a read never holds less than
    /// was asked for.
    pub fn shown<'n>(names: impl IntoIterator<Item = &'n str>) -> Self {
        let mut set = Self::with(|column| !column.omissible);
        for name in names {
            match R::COLUMNS.iter().position(|column| column.name == name) {
                Some(index) => set.selected |= 1 << index,
                None => return Self::all(),
            }
        }
        set
    }

    /// The columns `keep` accepts. A set is one bit per column, so a table has at most 64.
    fn with(keep: impl Fn(&Column) -> bool) -> Self {
        assert!(R::COLUMNS.len() <= 64, "{}: at most 64 columns", R::TABLE);
        let selected = R::COLUMNS
            .iter()
            .enumerate()
            .filter(|(_, column)| keep(column))
            .fold(0, |bits, (index, _)| bits | 1 << index);
        Self {
            selected,
            table: PhantomData,
        }
    }

    /// Whether the column at `index` (in [`TableRow::COLUMNS`]) is read.
    pub fn contains(&self, index: usize) -> bool {
        self.selected & (1 << index) != 0
    }

    /// The columns read, in table order.
    pub fn columns(&self) -> impl Iterator<Item = &'static Column> + '_ {
        R::COLUMNS
            .iter()
            .enumerate()
            .filter(|(index, _)| self.contains(*index))
            .map(|(_, column)| column)
    }

    /// Of a row's cells (one per column, in column order), those of the columns read.
    pub fn select(&self, cells: Vec<Cell>) -> Vec<Cell> {
        cells
            .into_iter()
            .enumerate()
            .filter(|(index, _)| self.contains(*index))
            .map(|(_, cell)| cell)
            .collect()
    }
}

/// One value of a row, in its column's type (`None` is SQL null).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A `uuid`.
    Uuid(Uuid),
    /// A `bigint`.
    BigInt(i64),
    /// An `integer`.
    Integer(i32),
    /// A `text`.
    Text(Option<String>),
    /// A `text[]`.
    TextArray(Vec<String>),
    /// A `timestamptz`.
    Timestamp(Option<DateTime<Utc>>),
    /// A `jsonb`.
    Jsonb(Option<Value>),
}

impl Cell {
    /// The type of column that holds it.
    pub fn column_type(&self) -> ColumnType {
        match self {
            Self::Uuid(_) => ColumnType::Uuid,
            Self::BigInt(_) => ColumnType::BigInt,
            Self::Integer(_) => ColumnType::Integer,
            Self::Text(_) => ColumnType::Text,
            Self::TextArray(_) => ColumnType::TextArray,
            Self::Timestamp(_) => ColumnType::Timestamp,
            Self::Jsonb(_) => ColumnType::Jsonb,
        }
    }

    /// Whether it is SQL null.
    pub fn is_null(&self) -> bool {
        matches!(
            self,
            Self::Text(None) | Self::Timestamp(None) | Self::Jsonb(None)
        )
    }
}

/// A row that does not fit its view: the table was edited by hand or by a release that wrote
/// values this one does not know. Values were validated when their events were decided, so it
/// is reported, never guessed.
#[derive(Debug, thiserror::Error)]
#[error("{table}.{column}: {problem}")]
pub struct CorruptRow {
    /// The table.
    pub table: &'static str,
    /// The column whose value does not fit.
    pub column: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// A view kept as one row per aggregate in a table: its description.
///
/// The first column is the aggregate id (`uuid`): the primary key, and the order pages are read
/// in (ids are UUIDv7, so it is creation order). The second is the version (`bigint`), which a
/// write compares so a row never moves backwards.
pub trait TableRow: Sized + Send + Sync + 'static {
    /// The table's name.
    const TABLE: &'static str;
    /// Its columns, in the order of [`TableRow::cells`].
    const COLUMNS: &'static [Column];
    /// The column holding the owning team, which team scoping compares with the caller's.
    const TEAM_COLUMN: &'static str;

    /// The view as a row: one cell per column, in [`TableRow::COLUMNS`] order.
    fn cells(&self) -> Vec<Cell>;

    /// The view a row holds, its cells read in column order.
    fn from_cells(cells: &mut Cells) -> Result<Self, CorruptRow>;
}

/// A row's cells, read one after the other in its table's column order by
/// [`TableRow::from_cells`]. Each read checks the cell's type and nullness against the column,
/// so a description whose reads and columns disagree fails on the first row, by name. A column
/// the read left out ([`ColumnSet`]) reads as its empty stand-in: null, `[]` or `""`.
pub struct Cells {
    table: &'static str,
    columns: std::iter::Enumerate<std::slice::Iter<'static, Column>>,
    cells: std::vec::IntoIter<Cell>,
    selected: u64,
    column: &'static str,
}

impl Cells {
    /// The cells of one row of `R`'s table, one per column, in column order.
    pub fn of<R: TableRow>(cells: Vec<Cell>) -> Self {
        Self::selected(cells, ColumnSet::<R>::all())
    }

    /// The cells of the columns `columns` selected of one row of `R`'s table, in column order.
    pub fn selected<R: TableRow>(cells: Vec<Cell>, columns: ColumnSet<R>) -> Self {
        Self {
            table: R::TABLE,
            columns: R::COLUMNS.iter().enumerate(),
            cells: cells.into_iter(),
            selected: columns.selected,
            column: "",
        }
    }

    /// A problem with the column read last.
    pub fn corrupt(&self, problem: impl Into<String>) -> CorruptRow {
        CorruptRow {
            table: self.table,
            column: self.column,
            problem: problem.into(),
        }
    }

    /// The next column's cell, or `None` where the read left the column out.
    fn next(&mut self, wanted: ColumnType) -> Result<Option<Cell>, CorruptRow> {
        let (index, column) = self.columns.next().ok_or_else(|| CorruptRow {
            table: self.table,
            column: "(past the last column)",
            problem: "the view reads more columns than the table has".to_owned(),
        })?;
        self.column = column.name;
        if column.ty != wanted {
            return Err(self.corrupt(format!("read as {wanted:?}, described as {:?}", column.ty)));
        }
        if self.selected & (1 << index) == 0 {
            return if column.omissible {
                Ok(None)
            } else {
                Err(self.corrupt("left out of the read, but the view cannot do without it"))
            };
        }
        let cell = self
            .cells
            .next()
            .ok_or_else(|| self.corrupt("the row has fewer cells than columns"))?;
        if cell.column_type() != wanted {
            return Err(self.corrupt(format!(
                "read as {wanted:?}, holding {:?}",
                cell.column_type()
            )));
        }
        Ok(Some(cell))
    }

    /// The next column, a `uuid`.
    pub fn uuid(&mut self) -> Result<Uuid, CorruptRow> {
        match self.next(ColumnType::Uuid)? {
            Some(Cell::Uuid(value)) => Ok(value),
            _ => Err(self.corrupt("not a uuid")),
        }
    }

    /// The next column, a `bigint`.
    pub fn bigint(&mut self) -> Result<i64, CorruptRow> {
        match self.next(ColumnType::BigInt)? {
            Some(Cell::BigInt(value)) => Ok(value),
            _ => Err(self.corrupt("not a bigint")),
        }
    }

    /// The next column, a `bigint` that counts (a version): never negative.
    pub fn count(&mut self) -> Result<u64, CorruptRow> {
        let value = self.bigint()?;
        u64::try_from(value).map_err(|_| self.corrupt(format!("negative count {value}")))
    }

    /// The next column, an `integer` that counts: never negative.
    pub fn small_count(&mut self) -> Result<u32, CorruptRow> {
        match self.next(ColumnType::Integer)? {
            Some(Cell::Integer(value)) => {
                u32::try_from(value).map_err(|_| self.corrupt(format!("negative count {value}")))
            }
            _ => Err(self.corrupt("not an integer")),
        }
    }

    /// The next column, a `text` that may be null.
    pub fn optional_text(&mut self) -> Result<Option<String>, CorruptRow> {
        match self.next(ColumnType::Text)? {
            Some(Cell::Text(value)) => Ok(value),
            None => Ok(None),
            _ => Err(self.corrupt("not text")),
        }
    }

    /// The next column, a `text` that is never null (`""` where the read left it out).
    pub fn text(&mut self) -> Result<String, CorruptRow> {
        match self.next(ColumnType::Text)? {
            Some(Cell::Text(Some(value))) => Ok(value),
            None => Ok(String::new()),
            Some(Cell::Text(None)) => Err(self.corrupt("null in a column the view requires")),
            _ => Err(self.corrupt("not text")),
        }
    }

    /// The next column, a `text` read as `T` by `parse` (which answers why it refused).
    pub fn parsed<T, E: std::fmt::Display>(
        &mut self,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, CorruptRow> {
        let text = self.text()?;
        parse(&text).map_err(|why| self.corrupt(format!("unknown value {text:?}: {why}")))
    }

    /// The next column, a nullable `text` read as `T` by `parse` when present.
    pub fn parsed_optional<T, E: std::fmt::Display>(
        &mut self,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, CorruptRow> {
        match self.optional_text()? {
            None => Ok(None),
            Some(text) => parse(&text)
                .map(Some)
                .map_err(|why| self.corrupt(format!("unknown value {text:?}: {why}"))),
        }
    }

    /// The next column, a `text[]` (`[]` where the read left it out).
    pub fn text_array(&mut self) -> Result<Vec<String>, CorruptRow> {
        match self.next(ColumnType::TextArray)? {
            Some(Cell::TextArray(value)) => Ok(value),
            None => Ok(Vec::new()),
            _ => Err(self.corrupt("not a text array")),
        }
    }

    /// The next column, a `timestamptz` that may be null.
    pub fn optional_timestamp(&mut self) -> Result<Option<DateTime<Utc>>, CorruptRow> {
        match self.next(ColumnType::Timestamp)? {
            Some(Cell::Timestamp(value)) => Ok(value),
            None => Ok(None),
            _ => Err(self.corrupt("not a timestamp")),
        }
    }

    /// The next column, a `timestamptz` that is never null.
    pub fn timestamp(&mut self) -> Result<DateTime<Utc>, CorruptRow> {
        self.optional_timestamp()?
            .ok_or_else(|| self.corrupt("null in a column the view requires"))
    }

    /// The next column, a `jsonb` that may be null.
    pub fn json(&mut self) -> Result<Option<Value>, CorruptRow> {
        match self.next(ColumnType::Jsonb)? {
            Some(Cell::Jsonb(value)) => Ok(value),
            None => Ok(None),
            _ => Err(self.corrupt("not json")),
        }
    }

    /// Checks that every column was read: a description that reads fewer columns than it
    /// declares would silently drop one.
    pub fn finish(mut self) -> Result<(), CorruptRow> {
        match self.columns.next() {
            None => Ok(()),
            Some((_, column)) => Err(CorruptRow {
                table: self.table,
                column: column.name,
                problem: "described but never read by the view".to_owned(),
            }),
        }
    }
}

/// `view`'s cells, checked against its description: one per column, each of its column's
/// type, none null where the column requires a value. Every writer of a row goes through it,
/// so a description whose `cells` disagree with its columns fails naming the column, not as
/// a constraint error or a short row padded with nulls.
pub fn described_cells<R: TableRow>(view: &R) -> Result<Vec<Cell>, CorruptRow> {
    let cells = view.cells();
    let corrupt = |column: &'static str, problem: String| CorruptRow {
        table: R::TABLE,
        column,
        problem,
    };
    if cells.len() != R::COLUMNS.len() {
        return Err(corrupt(
            "(every column)",
            format!("{} cells for {} columns", cells.len(), R::COLUMNS.len()),
        ));
    }
    for (column, cell) in R::COLUMNS.iter().zip(&cells) {
        if cell.column_type() != column.ty {
            return Err(corrupt(
                column.name,
                format!(
                    "described as {:?}, given {:?}",
                    column.ty,
                    cell.column_type()
                ),
            ));
        }
        if !column.nullable && cell.is_null() {
            return Err(corrupt(
                column.name,
                "null in a column that requires a value".to_owned(),
            ));
        }
    }
    Ok(cells)
}

/// Reads a view from its row's cells, checking every column was read.
pub fn view_from_cells<R: TableRow>(cells: Vec<Cell>) -> Result<R, CorruptRow> {
    view_from_selected_cells(cells, ColumnSet::all())
}

/// Reads a view from the cells of the columns `columns` selected of its row, each column left
/// out standing in empty, checking every column was read.
pub fn view_from_selected_cells<R: TableRow>(
    cells: Vec<Cell>,
    columns: ColumnSet<R>,
) -> Result<R, CorruptRow> {
    let mut reader = Cells::selected(cells, columns);
    let view = R::from_cells(&mut reader)?;
    reader.finish()?;
    Ok(view)
}

/// One condition of a view's filter, on columns of its description.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The column equals the value.
    Equals {
        /// A `text` column.
        column: &'static str,
        /// The value.
        value: String,
    },
    /// The `text[]` column holds the value.
    Holds {
        /// A `text[]` column.
        column: &'static str,
        /// The element.
        value: String,
    },
    /// The columns, joined by a space, contain the text, ignoring case. The join is spelled
    /// as the table's trigram index is, so the index serves it.
    ContainsText {
        /// `text` columns.
        columns: &'static [&'static str],
        /// The text (matched literally: `%` and `_` are not wildcards).
        text: String,
    },
}

/// A view's filter as its store answers it: the teams in the caller's scope and conditions that
/// must all hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewFilter {
    /// Only these teams (`None`: every team). The use case narrows it to the caller's teams
    /// before the store sees it.
    pub teams: Option<Vec<String>>,
    /// Conditions on the view's columns.
    pub conditions: Vec<Condition>,
}

/// Checks a description against itself with a sample view: the first two columns are the id
/// and the version, `view`'s cells fit the columns ([`described_cells`]), it reads back equal,
/// and every column a filter names is described. What the table holds is checked against the
/// migrated schema by the end-to-end suite.
#[cfg(test)]
pub(crate) fn check_description<R: TableRow + PartialEq + std::fmt::Debug>(
    view: &R,
    filters: &[Condition],
) {
    let columns = R::COLUMNS;
    assert_eq!(
        (columns[0].name, columns[0].ty),
        ("id", ColumnType::Uuid),
        "{}: the first column is the id",
        R::TABLE
    );
    assert_eq!(
        (columns[1].name, columns[1].ty),
        ("version", ColumnType::BigInt),
        "{}: the second column is the version",
        R::TABLE
    );
    let cells = described_cells(view).expect("cells fit the columns");
    let read_back = view_from_cells::<R>(cells).expect("reads back");
    assert_eq!(
        &read_back,
        view,
        "{}: a row reads back as its view",
        R::TABLE
    );
    // Every column that may be left out, left out: the view still reads (nothing it parses
    // stands in empty), and the id, the version and the team are always read.
    let least = ColumnSet::<R>::shown(std::iter::empty());
    let kept = least.select(described_cells(view).expect("cells fit the columns"));
    view_from_selected_cells::<R>(kept, least)
        .expect("reads with every column that may be left out left out");
    let named = |name: &str| columns.iter().any(|column| column.name == name);
    assert!(named(R::TEAM_COLUMN), "{}: team column", R::TABLE);
    for (index, column) in columns.iter().enumerate() {
        if index < 2 || column.name == R::TEAM_COLUMN {
            assert!(
                least.contains(index),
                "{}: {} is always read",
                R::TABLE,
                column.name
            );
        }
    }
    for condition in filters {
        let columns = match condition {
            Condition::Equals { column, .. } | Condition::Holds { column, .. } => {
                std::slice::from_ref(column)
            }
            Condition::ContainsText { columns, .. } => columns,
        };
        for column in columns {
            assert!(named(column), "{}: a filter names {column}", R::TABLE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        id: Uuid,
        version: u64,
    }

    impl TableRow for Pair {
        const TABLE: &'static str = "pairs";
        const COLUMNS: &'static [Column] = &[
            Column::required("id", ColumnType::Uuid),
            Column::required("version", ColumnType::BigInt),
            Column::optional("note", ColumnType::Text),
        ];
        const TEAM_COLUMN: &'static str = "note";

        fn cells(&self) -> Vec<Cell> {
            vec![
                Cell::Uuid(self.id),
                Cell::BigInt(self.version as i64),
                Cell::Text(None),
            ]
        }

        fn from_cells(cells: &mut Cells) -> Result<Self, CorruptRow> {
            Ok(Self {
                id: cells.uuid()?,
                version: cells.count()?,
            })
        }
    }

    #[test]
    fn a_view_that_skips_a_described_column_or_misreads_one_is_refused_by_name() {
        let cells = Pair {
            id: Uuid::nil(),
            version: 1,
        }
        .cells();
        let skipped = view_from_cells::<Pair>(cells).err().map(|e| e.to_string());
        assert_eq!(
            skipped.as_deref(),
            Some("pairs.note: described but never read by the view")
        );

        let mut reader = Cells::of::<Pair>(vec![Cell::Uuid(Uuid::nil()), Cell::BigInt(-1)]);
        reader.uuid().unwrap();
        assert_eq!(
            reader.count().unwrap_err().to_string(),
            "pairs.version: negative count -1"
        );

        let mut reader = Cells::of::<Pair>(vec![Cell::Text(Some("x".into()))]);
        assert!(reader
            .uuid()
            .unwrap_err()
            .to_string()
            .starts_with("pairs.id: read as Uuid, holding Text"));
    }

    /// A row with a column of each kind that may be left out, and one that may not.
    #[derive(Debug, PartialEq)]
    struct Wide {
        id: Uuid,
        version: u64,
        team: String,
        title: String,
        tags: Vec<String>,
        note: Option<String>,
    }

    impl TableRow for Wide {
        const TABLE: &'static str = "wide";
        const COLUMNS: &'static [Column] = &[
            Column::required("id", ColumnType::Uuid),
            Column::required("version", ColumnType::BigInt),
            Column::required("team", ColumnType::Text),
            Column::required("title", ColumnType::Text).omissible(),
            Column::required("tags", ColumnType::TextArray),
            Column::optional("note", ColumnType::Text),
        ];
        const TEAM_COLUMN: &'static str = "team";

        fn cells(&self) -> Vec<Cell> {
            vec![
                Cell::Uuid(self.id),
                Cell::BigInt(self.version as i64),
                Cell::Text(Some(self.team.clone())),
                Cell::Text(Some(self.title.clone())),
                Cell::TextArray(self.tags.clone()),
                Cell::Text(self.note.clone()),
            ]
        }

        fn from_cells(cells: &mut Cells) -> Result<Self, CorruptRow> {
            Ok(Self {
                id: cells.uuid()?,
                version: cells.count()?,
                team: cells.text()?,
                title: cells.text()?,
                tags: cells.text_array()?,
                note: cells.optional_text()?,
            })
        }
    }

    fn wide() -> Wide {
        Wide {
            id: Uuid::nil(),
            version: 3,
            team: "team-a".into(),
            title: "a title".into(),
            tags: vec!["x".into()],
            note: Some("a note".into()),
        }
    }

    fn names(set: ColumnSet<Wide>) -> Vec<&'static str> {
        set.columns().map(|column| column.name).collect()
    }

    #[test]
    fn a_read_selects_what_is_shown_and_what_the_view_cannot_do_without() {
        assert_eq!(
            names(ColumnSet::shown(["note"])),
            ["id", "version", "team", "note"]
        );
        assert_eq!(
            names(ColumnSet::shown(std::iter::empty())),
            ["id", "version", "team"]
        );
        // A name the table does not have reads everything rather than less.
        assert_eq!(
            ColumnSet::<Wide>::shown(["note", "nickname"]),
            ColumnSet::all()
        );
        assert_ne!(
            ColumnSet::<Wide>::shown(["title", "tags"]),
            ColumnSet::all()
        );
    }

    #[test]
    fn columns_left_out_read_as_empty_and_the_rest_as_stored() {
        let read = ColumnSet::<Wide>::shown(["title"]);
        let view = view_from_selected_cells(read.select(wide().cells()), read).unwrap();
        assert_eq!(
            view,
            Wide {
                tags: vec![],
                note: None,
                ..wide()
            }
        );
    }

    #[test]
    fn a_column_the_view_cannot_do_without_is_never_stood_in_for() {
        let read = ColumnSet::<Wide> {
            selected: 0b11,
            table: PhantomData,
        };
        let cells = wide().cells().into_iter().take(2).collect();
        assert_eq!(
            view_from_selected_cells(cells, read)
                .unwrap_err()
                .to_string(),
            "wide.team: left out of the read, but the view cannot do without it"
        );
    }
}
