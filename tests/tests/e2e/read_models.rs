//! The read side's generic table adapter against the migrated schema: each view's description
//! (`chronicle_application::data::table`) names exactly the columns, types and nullness the
//! migrations create (the migration is the truth), and a view written through the adapter reads
//! back whole, is found by every filter it should be and by none it should not, and a row
//! edited by hand into a value the view does not know is reported by table and column.

use std::collections::BTreeSet;

use chronicle_application::data::table::{ColumnSet, Condition, TableRow, ViewFilter};
use chronicle_application::ports::view_queries::ViewQueryStore;
use chronicle_application::ports::view_store::ViewStore;
use chronicle_application::projection::report::ReportView;
use chronicle_application::projection::task::{TaskFilter, TaskReadModel, TaskView};
use chronicle_domain::ids::{TeamId, UserId};
use chronicle_domain::task::{Priority, Task, TaskStatus};
use chronicle_infrastructure::db;
use chronicle_infrastructure::read_model::views::PgViews;
use chrono::{DurationRound, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// The columns of `R`'s table as the catalog has them: (name, type, nullable).
async fn table_columns<R: TableRow>(pool: &PgPool) -> BTreeSet<(String, String, bool)> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, udt_name::text, is_nullable::text
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(R::TABLE)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(name, ty, nullable)| (name, ty, nullable == "YES"))
        .collect()
}

fn described<R: TableRow>() -> BTreeSet<(String, String, bool)> {
    R::COLUMNS
        .iter()
        .map(|c| (c.name.to_owned(), c.ty.udt_name().to_owned(), c.nullable))
        .collect()
}

#[tokio::test]
async fn every_view_description_names_exactly_the_columns_its_migrated_table_has() {
    let url = chronicle_tests::create_database().await.unwrap();
    let pool = db::connect(&url, 2).await.unwrap();
    db::migrate(&pool).await.unwrap();
    for (table, described, migrated) in [
        (
            TaskView::TABLE,
            described::<TaskView>(),
            table_columns::<TaskView>(&pool).await,
        ),
        (
            ReportView::TABLE,
            described::<ReportView>(),
            table_columns::<ReportView>(&pool).await,
        ),
    ] {
        assert!(!migrated.is_empty(), "{table}: no such table");
        assert_eq!(
            described.difference(&migrated).collect::<Vec<_>>(),
            Vec::<&(String, String, bool)>::new(),
            "{table}: described but not so in the migrations"
        );
        assert_eq!(
            migrated.difference(&described).collect::<Vec<_>>(),
            Vec::<&(String, String, bool)>::new(),
            "{table}: in the migrations but not so in the description"
        );
    }
}

fn task(title: &str, team: &str, assignee: Option<&str>, labels: &[&str]) -> TaskView {
    // Postgres keeps microseconds.
    let at = Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .unwrap();
    let id = Uuid::now_v7();
    TaskView {
        id,
        version: 2,
        state: Task {
            id: Some(id),
            status: TaskStatus::InProgress,
            title: title.to_owned(),
            description: "tab\there, \"quoted\", back\\slash".to_owned(),
            team_id: Some(TeamId::parse("teamId", team).unwrap()),
            creator_id: Some(UserId::parse("creatorId", "u-1").unwrap()),
            assignee_id: assignee.map(|a| UserId::parse("assigneeId", a).unwrap()),
            priority: Priority::High,
            due_at: None,
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            result: None,
            error: None,
        },
        created_at: at,
        updated_at: at,
        started_at: Some(at),
        finished_at: None,
        watchers: vec!["u-1".to_owned(), "u,2 \"x\"".to_owned()],
    }
}

#[tokio::test]
async fn a_view_round_trips_through_the_generic_adapter_and_every_filter_selects_it() {
    let url = chronicle_tests::create_database().await.unwrap();
    let pool = db::connect(&url, 4).await.unwrap();
    db::migrate(&pool).await.unwrap();
    let views = PgViews::<TaskReadModel>::new(pool.clone());
    let first = task("Ship the 50% fix", "team-a", Some("u-2"), &["ops", "a b"]);
    let second = task("Write docs", "team-b", None, &[]);
    views
        .save_many(&[first.clone(), second.clone()])
        .await
        .unwrap();

    assert_eq!(views.get(first.id).await.unwrap().as_ref(), Some(&first));
    assert_eq!(views.get(second.id).await.unwrap().as_ref(), Some(&second));
    let mut loaded = views.load_many(&[first.id, second.id]).await.unwrap();
    loaded.sort_by_key(|v| v.id);
    assert_eq!(loaded, vec![first.clone(), second.clone()]);

    // An older version never replaces a newer row.
    let mut stale = first.clone();
    stale.version = 1;
    stale.state.title = "stale".to_owned();
    views.save_many(&[stale]).await.unwrap();
    assert_eq!(
        views.get(first.id).await.unwrap().unwrap().state.title,
        first.state.title
    );

    // A page reads only the columns it is asked for and those the view cannot do without;
    // the rest stand in empty, and what was read is as stored.
    let titles = views
        .list(
            &ViewFilter::default(),
            10,
            None,
            ColumnSet::shown(["title"]),
        )
        .await
        .unwrap();
    let read = &titles.items[0];
    let expected = TaskView {
        state: Task {
            description: String::new(),
            assignee_id: None,
            due_at: None,
            labels: vec![],
            result: None,
            error: None,
            ..first.state.clone()
        },
        started_at: None,
        finished_at: None,
        watchers: vec![],
        ..first.clone()
    };
    assert_eq!(read, &expected);

    let only_first = |filter: TaskFilter| (ViewFilter::from(filter), vec![first.id]);
    let cases = [
        only_first(TaskFilter {
            teams: Some(vec!["team-a".into()]),
            ..TaskFilter::default()
        }),
        only_first(TaskFilter {
            assignee_id: Some("u-2".into()),
            ..TaskFilter::default()
        }),
        only_first(TaskFilter {
            label: Some("a b".into()),
            ..TaskFilter::default()
        }),
        // Text is matched literally: `%` is no wildcard, case is ignored.
        only_first(TaskFilter {
            text: Some("50% FIX".into()),
            ..TaskFilter::default()
        }),
        (
            ViewFilter::from(TaskFilter {
                text: Some("5_%".into()),
                ..TaskFilter::default()
            }),
            vec![],
        ),
        (
            ViewFilter::from(TaskFilter {
                status: Some(TaskStatus::InProgress),
                priority: Some(Priority::High),
                teams: Some(vec!["team-a".into(), "team-b".into()]),
                ..TaskFilter::default()
            }),
            vec![first.id, second.id],
        ),
    ];
    for (filter, expected) in cases {
        let page = views
            .list(&filter, 10, None, ColumnSet::all())
            .await
            .unwrap();
        let ids: Vec<Uuid> = page.items.iter().map(|v| v.id).collect();
        assert_eq!(ids, expected, "{filter:?}");
        assert_eq!(views.count(&filter).await.unwrap(), expected.len() as u64);
    }
    let page = views
        .list(&ViewFilter::default(), 1, None, ColumnSet::all())
        .await
        .unwrap();
    assert!(page.has_next_page);
    let rest = views
        .list(
            &ViewFilter::default(),
            1,
            Some(page.items[0].id),
            ColumnSet::all(),
        )
        .await
        .unwrap();
    assert_eq!(
        (rest.items[0].id, rest.has_next_page),
        (second.id, false),
        "the page after the first, in id order"
    );
    let unknown_status = ViewFilter {
        teams: None,
        conditions: vec![Condition::Equals {
            column: "status",
            value: "NOT_A_STATUS".into(),
        }],
    };
    assert_eq!(views.count(&unknown_status).await.unwrap(), 0);

    sqlx::query("UPDATE tasks SET status = 'PAUSED' WHERE id = $1")
        .bind(first.id)
        .execute(&pool)
        .await
        .unwrap();
    let error = views.get(first.id).await.unwrap_err().to_string();
    assert!(
        error.contains("tasks.status") && error.contains("PAUSED"),
        "names the table, the column and the value: {error}"
    );
}
