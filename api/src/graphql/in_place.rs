//! A page's rows resolved in place, field after field, instead of one future per field.
//!
//! async-graphql resolves every field of every object as a boxed future of its own, run
//! concurrently, and passes each through every extension's `resolve` hook with a
//! `ResolveInfo` built for it (type names formatted, the schema's registry looked up). A page of
//! 50 tasks is about 350 such fields; profiled with callgrind, they were 56% of the service's
//! instructions per page, more than the database read and the JSON together
//! (docs/performance.md, "The `tasks` page").
//!
//! [`InPlace`] and [`InPlaceList`] wrap an object (a list of objects) whose selected fields wait
//! on nothing (no query of their own): each field is then resolved by the object's own
//! resolver, in selection order, with the same response keys, paths, errors and fragment
//! handling as async-graphql's, but without a future or the hook chain per field. Nothing is
//! lost: no extension of this schema watches fields below the root (`observe` times root fields
//! only, `spans` the request's phases). A selection that waits (a task's `history`) is resolved
//! the usual way, concurrently, so a page of histories is not read one after another.
//!
//! It relies on async-graphql 7's `with_field`, `with_index` and `with_selection_set`, public
//! but hidden from its documentation; its tests here pin the behaviour.

use std::borrow::Cow;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::{resolve_list, ContainerType};
use async_graphql::{
    ContextSelectionSet, Name, OutputType, Positioned, ServerError, ServerResult, Value,
};

/// An object type whose fields resolve without waiting, all but those [`Self::in_place`] names.
pub(crate) trait ResolvesInPlace: ContainerType {
    /// Whether `field`, selected on this type in `ctx`, resolves without waiting on I/O.
    fn in_place(field: &Positioned<Field>, ctx: &ContextSelectionSet<'_>) -> bool;
}

/// `T`, resolved in place when its selection allows. The schema sees `T` itself.
pub(crate) struct InPlace<T>(pub T);

impl<T: ResolvesInPlace> OutputType for InPlace<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn introspection_type_name(&self) -> Cow<'static, str> {
        self.0.introspection_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let fields = selected_fields::<T>(ctx)?;
        if all_in_place::<T>(&fields, ctx) {
            Ok(resolve_fields(ctx, &self.0, &fields).await)
        } else {
            self.0.resolve(ctx, field).await
        }
    }
}

/// A list of `T` (`[T!]!` to the schema), each resolved in place when the selection allows.
pub(crate) struct InPlaceList<T>(pub Vec<T>);

impl<T: ResolvesInPlace> OutputType for InPlaceList<T> {
    fn type_name() -> Cow<'static, str> {
        Vec::<T>::type_name()
    }

    fn qualified_type_name() -> String {
        Vec::<T>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        Vec::<T>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let fields = selected_fields::<T>(ctx)?;
        if !all_in_place::<T>(&fields, ctx) {
            return resolve_list(ctx, field, &self.0, Some(self.0.len())).await;
        }
        let mut items = Vec::with_capacity(self.0.len());
        for (index, item) in self.0.iter().enumerate() {
            let ctx_item = ctx.with_index(index);
            items.push(resolve_fields(&ctx_item, item, &fields).await);
        }
        Ok(Value::List(items))
    }
}

/// For a field holding an `N` (an edge's `node`): whether `field` resolves in place, which for
/// the field named `holding` means every field selected on its `N` does.
pub(crate) fn in_place_unless_within<N: ResolvesInPlace>(
    holding: &str,
    field: &Positioned<Field>,
    ctx: &ContextSelectionSet<'_>,
) -> bool {
    if field.node.name.node != holding {
        return true;
    }
    let ctx = ctx.with_selection_set(&field.node.selection_set);
    selected_fields::<N>(&ctx).is_ok_and(|fields| all_in_place::<N>(&fields, &ctx))
}

/// Whether every one of `fields`, selected on `T`, resolves in place (`__typename` always does).
fn all_in_place<T: ResolvesInPlace>(
    fields: &[&Positioned<Field>],
    ctx: &ContextSelectionSet<'_>,
) -> bool {
    fields
        .iter()
        .all(|field| field.node.name.node == "__typename" || T::in_place(field, ctx))
}

/// The fields `ctx`'s selection set selects on `T`, fragments spread in place, in selection
/// order (as async-graphql's `Fields::add_set` collects them).
fn selected_fields<'a, T: ContainerType>(
    ctx: &ContextSelectionSet<'a>,
) -> ServerResult<Vec<&'a Positioned<Field>>> {
    let mut fields = Vec::new();
    collect::<T>(ctx, ctx.item, &mut fields)?;
    Ok(fields)
}

fn collect<'a, T: ContainerType>(
    ctx: &ContextSelectionSet<'a>,
    set: &'a Positioned<SelectionSet>,
    fields: &mut Vec<&'a Positioned<Field>>,
) -> ServerResult<()> {
    for selection in &set.node.items {
        let (condition, selections) = match &selection.node {
            Selection::Field(field) => {
                fields.push(field);
                continue;
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                let fragment = ctx.query_env.fragments.get(name).ok_or_else(|| {
                    ServerError::new(format!(r#"Unknown fragment "{name}"."#), Some(spread.pos))
                })?;
                (
                    Some(&fragment.node.type_condition),
                    &fragment.node.selection_set,
                )
            }
            Selection::InlineFragment(fragment) => (
                fragment.node.type_condition.as_ref(),
                &fragment.node.selection_set,
            ),
        };
        let applies = condition.is_none_or(|condition| {
            let on = condition.node.on.node.as_str();
            let name = T::type_name();
            name == on
                || ctx
                    .schema_env
                    .registry
                    .implements
                    .get(name.as_ref())
                    .is_some_and(|interfaces| interfaces.contains(on))
        });
        if applies {
            collect::<T>(ctx, selections, fields)?;
        }
    }
    Ok(())
}

/// `fields` of `root`, each by `root`'s own resolver, one after another: a failed field is
/// left out and its error reported, as async-graphql does.
async fn resolve_fields<T: ContainerType>(
    ctx: &ContextSelectionSet<'_>,
    root: &T,
    fields: &[&Positioned<Field>],
) -> Value {
    let mut results = IndexMap::with_capacity(fields.len());
    for field in fields {
        let key = field.node.response_key().node.clone();
        if field.node.name.node == "__typename" {
            let name = root.introspection_type_name().into_owned();
            insert(&mut results, key, Value::String(name));
            continue;
        }
        match root.resolve_field(&ctx.with_field(field)).await {
            Ok(value) => insert(&mut results, key, value.unwrap_or_default()),
            Err(error) => ctx.add_error(error),
        }
    }
    if results.is_empty() {
        Value::Null
    } else {
        Value::Object(results)
    }
}

/// Adds a field's value under its response key, merging objects and lists selected twice under
/// the same key (`node { id } node { title }`), as async-graphql's `insert_value` does.
fn insert(target: &mut IndexMap<Name, Value>, key: Name, value: Value) {
    match (target.get_mut(&key), value) {
        (None, value) => {
            target.insert(key, value);
        }
        (Some(Value::Object(existing)), Value::Object(more)) => {
            for (key, value) in more {
                insert(existing, key, value);
            }
        }
        (Some(Value::List(existing)), Value::List(more)) => {
            for (existing, more) in existing.iter_mut().zip(more) {
                if let (Value::Object(existing), Value::Object(more)) = (existing, more) {
                    for (key, value) in more {
                        insert(existing, key, value);
                    }
                }
            }
        }
        (Some(_), _) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_graphql::extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo,
    };
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};

    use super::*;

    struct Row {
        n: i32,
    }

    #[Object]
    impl Row {
        async fn n(&self) -> i32 {
            self.n
        }
        async fn label(&self) -> String {
            format!("row {}", self.n)
        }
        async fn odd(&self) -> async_graphql::Result<bool> {
            if self.n == 2 {
                Err("two is refused".into())
            } else {
                Ok(self.n % 2 == 1)
            }
        }
        async fn inner(&self) -> Inner {
            Inner {
                doubled: self.n * 2,
            }
        }
        /// Stands for a field that reads the store, as a task's `history` does.
        async fn waits(&self) -> i32 {
            tokio::task::yield_now().await;
            self.n
        }
    }

    impl ResolvesInPlace for Row {
        fn in_place(field: &Positioned<Field>, _: &ContextSelectionSet<'_>) -> bool {
            field.node.name.node != "waits"
        }
    }

    #[derive(SimpleObject)]
    struct Inner {
        doubled: i32,
    }

    /// An interface `Row` implements, for fragments on it.
    #[derive(async_graphql::Interface)]
    #[graphql(field(name = "n", ty = "i32"))]
    #[allow(dead_code)]
    enum Named {
        Row(Row),
    }

    /// Holds a row as an edge holds its node.
    #[derive(SimpleObject)]
    struct Holder {
        label: String,
        row: InPlace<Row>,
    }

    impl ResolvesInPlace for Holder {
        fn in_place(field: &Positioned<Field>, ctx: &ContextSelectionSet<'_>) -> bool {
            in_place_unless_within::<Row>("row", field, ctx)
        }
    }

    fn rows() -> Vec<Row> {
        (1..=3).map(|n| Row { n }).collect()
    }

    struct Query;

    #[Object]
    impl Query {
        async fn in_place_rows(&self) -> InPlaceList<Row> {
            InPlaceList(rows())
        }
        async fn usual_rows(&self) -> Vec<Row> {
            rows()
        }
        async fn in_place_one(&self) -> InPlace<Row> {
            InPlace(Row { n: 2 })
        }
        async fn usual_one(&self) -> Row {
            Row { n: 2 }
        }
        async fn holders(&self) -> InPlaceList<Holder> {
            InPlaceList(
                rows()
                    .into_iter()
                    .map(|row| Holder {
                        label: format!("holds {}", row.n),
                        row: InPlace(row),
                    })
                    .collect(),
            )
        }
    }

    /// Counts the fields that went through the extensions' `resolve` hook.
    #[derive(Clone, Default)]
    struct Hooked(Arc<AtomicUsize>);

    impl ExtensionFactory for Hooked {
        fn create(&self) -> Arc<dyn Extension> {
            Arc::new(self.clone())
        }
    }

    #[async_graphql::async_trait::async_trait]
    impl Extension for Hooked {
        async fn resolve(
            &self,
            ctx: &ExtensionContext<'_>,
            info: ResolveInfo<'_>,
            next: NextResolve<'_>,
        ) -> ServerResult<Option<Value>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            next.run(ctx, info).await
        }
    }

    /// The response (data and errors) as JSON text, in the order the service would write it,
    /// and the fields hooked.
    async fn answer(query: &str) -> (String, usize) {
        let hooked = Hooked::default();
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
            .register_output_type::<Named>()
            .extension(hooked.clone())
            .finish();
        let response = schema.execute(query).await;
        let text = serde_json::to_string(&response).expect("a response is JSON");
        (text, hooked.0.load(Ordering::Relaxed))
    }

    /// [`answer`], parsed to look into.
    async fn run(query: &str) -> (serde_json::Value, usize) {
        let (text, hooked) = answer(query).await;
        (serde_json::from_str(&text).expect("JSON"), hooked)
    }

    /// `selection` on the rows both ways: the same answer, and how many fields each hooked.
    async fn both(selection: &str) -> (serde_json::Value, usize, usize) {
        let fragment = if selection.contains("...F") {
            "fragment F on Row { label n }"
        } else {
            ""
        };
        let (in_place, in_place_hooked) =
            answer(&format!("{{ rows: inPlaceRows {selection} }} {fragment}")).await;
        // Spelled to the same length, so errors name the same columns.
        let (usual, usual_hooked) =
            answer(&format!("{{ rows:   usualRows {selection} }} {fragment}")).await;
        // Compared as text: the same keys in the same order.
        assert_eq!(in_place, usual, "{selection}");
        let parsed = serde_json::from_str(&in_place).expect("JSON");
        (parsed, in_place_hooked, usual_hooked)
    }

    #[tokio::test]
    async fn rows_resolved_in_place_answer_as_async_graphql_does() {
        let selections = [
            "{ n label }",
            "{ second: label first: n __typename }",
            "{ ...F n }",
            "{ ... on Row { n } ... { label } }",
            "{ ... on Named { n } label }",
            "{ inner { doubled } inner { d: doubled } }",
            "{ n odd label }",
        ];
        for selection in selections {
            let (answer, in_place, usual) = both(selection).await;
            assert_eq!(answer["data"]["rows"].as_array().map(Vec::len), Some(3));
            // The usual way hooks each row and each of its fields; in place, only the root
            // field and fields of objects below the rows' (`inner`'s `doubled`).
            assert!(in_place < usual, "{selection}: {in_place} vs {usual}");
        }
        let (_, in_place, usual) = both("{ n label }").await;
        assert_eq!((in_place, usual), (1, 1 + 3 + 3 * 2));
    }

    #[tokio::test]
    async fn a_failed_field_is_left_out_with_its_error_and_path() {
        let (answer, _, _) = both("{ n odd }").await;
        assert_eq!(answer["data"]["rows"][1], serde_json::json!({"n": 2}));
        assert_eq!(answer["errors"][0]["message"], "two is refused");
        assert_eq!(
            answer["errors"][0]["path"],
            serde_json::json!(["rows", 1, "odd"])
        );
    }

    #[tokio::test]
    async fn a_selection_that_waits_is_resolved_the_usual_way() {
        let (answer, in_place, usual) = both("{ n waits }").await;
        assert_eq!(answer["data"]["rows"][2]["waits"], 3);
        assert_eq!(in_place, usual);
        let (answer, hooked) = run("{ inPlaceOne { ...F waits } } fragment F on Row { n }").await;
        assert_eq!(answer["data"]["inPlaceOne"]["waits"], 2);
        assert!(hooked > 1, "{hooked}");
    }

    #[tokio::test]
    async fn one_object_in_place_answers_as_async_graphql_does() {
        let selection = "{ n odd inner { doubled } __typename }";
        let (in_place, hooked) = answer(&format!("{{ row: inPlaceOne {selection} }}")).await;
        // Spelled to the same length, so errors name the same columns.
        let (usual, _) = answer(&format!("{{ row:   usualOne {selection} }}")).await;
        assert_eq!(in_place, usual);
        assert_eq!(hooked, 2, "the root field and `inner`'s `doubled`");
    }

    #[tokio::test]
    async fn a_held_row_is_resolved_in_place_unless_its_selection_waits() {
        let (answer, hooked) = run("{ holders { label row { n label } } }").await;
        assert_eq!(answer["data"]["holders"][2]["row"]["n"], 3);
        assert_eq!(hooked, 1, "only the root field");
        for query in [
            "{ holders { label row { n waits } } }",
            "{ holders { ...H } } fragment H on Holder { row { ... on Row { waits } } }",
        ] {
            let (answer, hooked) = run(query).await;
            assert_eq!(answer["data"]["holders"][1]["row"]["waits"], 2, "{query}");
            // The usual way: the root, then each holder, its two fields and the row's field.
            assert!(hooked > 3 * 3, "{query}: {hooked}");
        }
    }
}
