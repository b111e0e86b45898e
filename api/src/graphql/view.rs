//! The read side's GraphQL, written once for every view: a row by id (live, waited for, or
//! as it was), a filtered page as a Relay connection with its count, and a row's audit history.
//! A view's object type (`Task`, `Report`) says which fields it shows and implements
//! [`ViewNode`]; its filter input implements [`FilterInput`].

use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::{
    ComplexObject, Context, ContextSelectionSet, OutputType, Positioned, SimpleObject, TypeName, ID,
};
use chronicle_application::audit::TimeTravel;
use chronicle_application::data::table::{ColumnSet, TableRow, ViewFilter};
use chronicle_application::ports::audit_log::AuditFilter;
use chronicle_application::projection::read_model::ReadModel;
use chronicle_application::queries::ViewQueries;
use chronicle_application::AppError;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::arguments::{parse_id, parse_version, point_in_time};
use super::audit::AuditEventConnection;
use super::context::{ContextExt, Services};
use super::error::to_graphql;
use super::in_place::{in_place_unless_within, InPlace, InPlaceList, ResolvesInPlace};
use super::pagination::{connection, decode_cursor, PageInfo};

/// The row of a view as a GraphQL object; a page resolves its fields in place
/// ([`super::in_place`]), all but those that wait.
pub(crate) trait ViewNode:
    ResolvesInPlace + OutputType + Sized + Send + Sync + 'static
{
    /// The read model whose rows it shows.
    type Model: ReadModel<View: TableRow>;
    /// What its cursors name (`task`): a cursor of one view is refused by another.
    const CURSOR: &'static str;
    /// Its fields that show columns of the row, with those columns.
    const COLUMNS: &'static [FieldColumns];

    /// The object showing `view`.
    fn of(view: <Self::Model as ReadModel>::View) -> Self;
    /// The view's queries.
    fn queries(services: &Services) -> &ViewQueries<Self::Model>;
    /// The view folded as it was, for `atVersion` and `asOf`.
    fn history(services: &Services) -> &TimeTravel<Self::Model>;
}

/// A view's filter input: every field checked, the error naming it.
pub(crate) trait FilterInput: Default {
    /// The filter as the view's store answers it.
    fn into_view_filter(self) -> Result<ViewFilter, AppError>;
}

/// A field of a view's row (`parameters`) and the columns of its table it shows (`team_id`,
/// `period_from`, `period_to`).
pub(crate) type FieldColumns = (&'static str, &'static [&'static str]);

/// The columns `field` shows, if it is one of `columns`' fields.
fn columns_of(field: &str, columns: &[FieldColumns]) -> Option<&'static [&'static str]> {
    columns
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, shown)| *shown)
}

/// Whether a row's field resolves in place: `columns` lists the fields that show columns of the
/// row already read. Any other (`history` reads the event store, and so would a field added
/// later until it is listed) resolves the usual, concurrent way.
pub(crate) fn shows_a_column(field: &Positioned<Field>, columns: &[FieldColumns]) -> bool {
    columns_of(&field.node.name.node, columns).is_some()
}

/// A row's fields that show no column: `history` reads the event store by the row's id (always
/// read), `__typename` names the type.
const FIELDS_WITHOUT_COLUMNS: &[&str] = &["history", "__typename"];

/// The columns a page reads: those its rows' fields show (`edges { node { ... } }`, through
/// aliases and fragments).
fn columns_shown<N: ViewNode>(ctx: &Context<'_>) -> ColumnSet<View<N>> {
    let nodes = ctx
        .look_ahead()
        .field("edges")
        .field("node")
        .selection_fields();
    columns_of_fields::<N>(
        nodes
            .iter()
            .flat_map(|node| node.selection_set())
            .map(|field| field.name()),
    )
}

/// The columns behind `fields` of `N`'s rows, with those the view cannot be read without. A
/// field not listed (one added later) reads every column.
fn columns_of_fields<'f, N: ViewNode>(
    fields: impl IntoIterator<Item = &'f str>,
) -> ColumnSet<View<N>> {
    let mut shown = Vec::new();
    for field in fields {
        match columns_of(field, N::COLUMNS) {
            Some(columns) => shown.extend_from_slice(columns),
            None if FIELDS_WITHOUT_COLUMNS.contains(&field) => {}
            None => return ColumnSet::all(),
        }
    }
    ColumnSet::shown(shown)
}

/// The read model's row type a view node shows.
type View<N> = <<N as ViewNode>::Model as ReadModel>::View;

/// One row of a page, with the cursor to continue after it.
#[derive(SimpleObject)]
#[graphql(name_type)]
pub(crate) struct Edge<N: ViewNode> {
    /// Opaque cursor: pass it as `after` to continue after this row.
    pub cursor: String,
    /// The row.
    pub node: InPlace<N>,
}

impl<N: ViewNode> ResolvesInPlace for Edge<N> {
    fn in_place(field: &Positioned<Field>, ctx: &ContextSelectionSet<'_>) -> bool {
        in_place_unless_within::<N>("node", field, ctx)
    }
}

impl<N: ViewNode> TypeName for Edge<N> {
    fn type_name() -> Cow<'static, str> {
        format!("{}Edge", N::type_name()).into()
    }
}

/// A page of rows in their view's order (tasks in creation order, reports in request order),
/// after a keyset cursor.
#[derive(SimpleObject)]
#[graphql(name_type, complex)]
pub(crate) struct Connection<N: ViewNode> {
    /// The rows with their cursors.
    pub edges: InPlaceList<Edge<N>>,
    /// Paging state.
    pub page_info: PageInfo,
    /// The page's filter, counted only when `totalCount` is asked for.
    #[graphql(skip)]
    pub filter: ViewFilter,
}

impl<N: ViewNode> TypeName for Connection<N> {
    fn type_name() -> Cow<'static, str> {
        format!("{}Connection", N::type_name()).into()
    }
}

#[ComplexObject]
impl<N: ViewNode> Connection<N> {
    /// How many rows match the filter in all. Counting visits every match, so it costs as
    /// much as the filter is large; a page without it does not pay for it.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            N::queries(ctx.services())
                .count(principal, &self.filter)
                .await
        };
        run.await
            .map(|count| count as i64)
            .map_err(|e| to_graphql(e, request))
    }
}

/// A point read (`task(id, ...)`): with `minVersion`, waits (bounded) until the read model
/// reflects that version; with `atVersion` or `asOf` (auditors and admins), the row as it was,
/// folded from the event store.
pub(crate) async fn one<N: ViewNode>(
    ctx: &Context<'_>,
    id: ID,
    at_version: Option<i64>,
    as_of: Option<DateTime<Utc>>,
    min_version: Option<i64>,
) -> async_graphql::Result<Option<N>> {
    let request = ctx.request();
    let run = async {
        let principal = request.principal()?;
        let id = parse_id("id", &id)?;
        if let Some(point) = point_in_time(at_version, as_of, min_version)? {
            return N::history(ctx.services()).at(principal, id, point).await;
        }
        let min_version = parse_version("minVersion", min_version)?;
        N::queries(ctx.services())
            .get(principal, id, min_version)
            .await
    };
    run.await
        .map(|view| view.map(N::of))
        .map_err(|e| to_graphql(e, request))
}

/// The row a mutation just wrote, at least at `version`: waits, bounded, for the read model.
pub(crate) async fn written<N: ViewNode>(
    ctx: &Context<'_>,
    id: Uuid,
    version: u64,
) -> async_graphql::Result<Option<N>> {
    let request = ctx.request();
    let run = async {
        let principal = request.principal()?;
        N::queries(ctx.services())
            .get(principal, id, Some(version))
            .await
    };
    run.await
        .map(|view| view.map(N::of))
        .map_err(|e| to_graphql(e, request))
}

/// A filtered page (`tasks(filter, first, after)`) after a cursor of this view.
pub(crate) async fn page<N: ViewNode, F: FilterInput>(
    ctx: &Context<'_>,
    filter: Option<F>,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<Connection<N>> {
    let request = ctx.request();
    let run = async {
        let principal = request.principal()?;
        let after = after
            .as_deref()
            .map(|c| decode_cursor(N::CURSOR, c))
            .transpose()?;
        let filter = filter.unwrap_or_default().into_view_filter()?;
        let page = N::queries(ctx.services())
            .list(
                principal,
                &filter,
                first.map(i64::from),
                after,
                columns_shown::<N>(ctx),
            )
            .await?;
        Ok::<_, AppError>((page, after, filter))
    };
    let (page, after, filter) = run.await.map_err(|e| to_graphql(e, request))?;
    let (edges, page_info) = connection(
        page,
        N::CURSOR,
        after.is_some(),
        <N::Model as ReadModel>::id,
        N::of,
    );
    Ok(Connection {
        edges: InPlaceList(
            edges
                .into_iter()
                .map(|(cursor, node)| Edge {
                    cursor,
                    node: InPlace(node),
                })
                .collect(),
        ),
        page_info,
        filter,
    })
}

/// A row's audit events in order (auditors and admins): its `history` field.
pub(crate) async fn history<M: ReadModel>(
    ctx: &Context<'_>,
    id: Uuid,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<AuditEventConnection> {
    let filter = AuditFilter {
        aggregate_type: Some(M::AGGREGATE_TYPE.to_owned()),
        aggregate_id: Some(id.to_string()),
        ..Default::default()
    };
    super::audit::trail(ctx, filter, first, after)
        .await
        .map_err(|e| to_graphql(e, ctx.request()))
}

#[cfg(test)]
mod tests {
    use async_graphql::registry::Registry;
    use async_graphql::OutputType;
    use chronicle_application::data::table::{ColumnSet, TableRow};

    use super::{columns_of_fields, View, ViewNode, FIELDS_WITHOUT_COLUMNS};

    /// The fields `T` shows in the schema, in order.
    fn fields_of<T: OutputType>() -> Vec<String> {
        let mut registry = Registry::default();
        T::create_type_info(&mut registry);
        registry.types[T::type_name().as_ref()]
            .fields()
            .expect("an object type")
            .keys()
            .cloned()
            .collect()
    }

    fn names<N: ViewNode>(columns: ColumnSet<View<N>>) -> Vec<&'static str> {
        columns.columns().map(|column| column.name).collect()
    }

    #[test]
    fn a_page_reads_the_columns_of_its_fields_and_what_a_task_needs() {
        use super::super::task::Task;
        assert_eq!(
            names::<Task>(columns_of_fields::<Task>([
                "id", "title", "status", "version"
            ])),
            [
                "id",
                "version",
                "title",
                "status",
                "team_id",
                "creator_id",
                "priority",
                "created_at",
                "updated_at"
            ]
        );
        let with_history = columns_of_fields::<Task>(["__typename", "history", "labels"]);
        assert!(names::<Task>(with_history).contains(&"labels"));
        assert!(!names::<Task>(with_history).contains(&"description"));
        assert_eq!(
            columns_of_fields::<Task>(["title", "nickname"]),
            ColumnSet::all()
        );
    }

    /// Every field of a row but `history` is listed with the columns it shows, each a column of
    /// the view's table: a field added to `Task` or `Report` is decided on here, not left to the
    /// default (which reads every column and resolves the field the concurrent way).
    fn check_listed<N: ViewNode>() {
        let mut fields = fields_of::<N>();
        assert!(fields.iter().any(|field| field == "history"), "{fields:?}");
        fields.retain(|field| !FIELDS_WITHOUT_COLUMNS.contains(&field.as_str()));
        let listed: Vec<&str> = N::COLUMNS.iter().map(|(field, _)| *field).collect();
        assert_eq!(fields, listed);
        for (field, columns) in N::COLUMNS {
            for column in *columns {
                assert!(
                    View::<N>::COLUMNS.iter().any(|c| c.name == *column),
                    "{field} shows {column}, which {} does not have",
                    View::<N>::TABLE
                );
            }
        }
    }

    #[test]
    fn every_row_field_but_history_is_listed_with_the_columns_it_shows() {
        check_listed::<super::super::task::Task>();
        check_listed::<super::super::report::Report>();
    }
}
