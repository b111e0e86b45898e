//! A view's filter as SQL: the teams in scope and each condition, with every value bound.

use chronicle_application::data::table::{Condition, TableRow, ViewFilter};
use sqlx::{Postgres, QueryBuilder};

/// Appends ` WHERE ...` for `filter` on `R`'s table (at least ` WHERE TRUE`). A page and its
/// count take the same one, so they apply exactly the same filter.
pub(crate) fn push_filter<R: TableRow>(
    query: &mut QueryBuilder<'static, Postgres>,
    filter: &ViewFilter,
) {
    query.push(" WHERE TRUE");
    if let Some(teams) = &filter.teams {
        push_teams(query, R::TEAM_COLUMN, teams);
    }
    for condition in &filter.conditions {
        match condition {
            Condition::Equals { column, value } => {
                query
                    .push(format!(" AND {column} = "))
                    .push_bind(value.clone());
            }
            Condition::Holds { column, value } => {
                query
                    .push(format!(" AND {column} @> ARRAY["))
                    .push_bind(value.clone())
                    .push("]::text[]");
            }
            Condition::ContainsText { columns, text } => {
                // Spelled as the trigram index's expression (`title || ' ' || description`),
                // so the index serves it.
                query
                    .push(format!(" AND ({}) ILIKE ", columns.join(" || ' ' || ")))
                    .push_bind(like_pattern(text));
            }
        }
    }
}

/// Restricts a filter to `teams`. One team is an equality, so the planner walks the
/// `(team_id, id)` index in id order and stops after the page; `= ANY` of an array, even of one
/// element, makes it collect every match of the team and sort them, which grows with the team.
fn push_teams(query: &mut QueryBuilder<'static, Postgres>, column: &str, teams: &[String]) {
    match teams {
        [team] => {
            query
                .push(format!(" AND {column} = "))
                .push_bind(team.clone());
        }
        _ => {
            query
                .push(format!(" AND {column} = ANY("))
                .push_bind(teams.to_vec())
                .push(")");
        }
    }
}

/// Escapes `%`, `_` and `\` so user text matches literally inside `ILIKE`.
fn like_pattern(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    escaped.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronicle_application::data::table::{Cell, Cells, Column, CorruptRow};

    struct Note;

    impl TableRow for Note {
        const TABLE: &'static str = "notes";
        const COLUMNS: &'static [Column] = &[];
        const TEAM_COLUMN: &'static str = "team_id";

        fn cells(&self) -> Vec<Cell> {
            Vec::new()
        }

        fn from_cells(_: &mut Cells) -> Result<Self, CorruptRow> {
            Ok(Self)
        }
    }

    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn every_condition_binds_its_value_and_one_team_is_an_equality() {
        let filter = ViewFilter {
            teams: Some(vec!["team-a".into()]),
            conditions: vec![
                Condition::Equals {
                    column: "status",
                    value: "OPEN".into(),
                },
                Condition::Holds {
                    column: "labels",
                    value: "x'y".into(),
                },
                Condition::ContainsText {
                    columns: &["title", "description"],
                    text: "50%".into(),
                },
            ],
        };
        let mut query = QueryBuilder::new("SELECT 1 FROM notes");
        push_filter::<Note>(&mut query, &filter);
        assert_eq!(
            query.sql(),
            "SELECT 1 FROM notes WHERE TRUE AND team_id = $1 AND status = $2 \
             AND labels @> ARRAY[$3]::text[] AND (title || ' ' || description) ILIKE $4"
        );
        let mut teams = QueryBuilder::new("");
        push_filter::<Note>(
            &mut teams,
            &ViewFilter {
                teams: Some(vec!["a".into(), "b".into()]),
                conditions: Vec::new(),
            },
        );
        assert_eq!(teams.sql(), " WHERE TRUE AND team_id = ANY($1)");
    }
}
