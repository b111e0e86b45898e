//! What each report kind computes, from facts about a team's tasks. Pure, so every rule is a
//! unit test and the worker only gathers inputs and stores outputs.
//!
//! - `TEAM_SUMMARY`: tasks created in the period; counts by status, per assignee open
//!   (open or in progress) and completed, completion rate (completed / total, two decimals) and
//!   the median cycle time (start to completion) of the completed ones.
//! - `ASSIGNEE_WORKLOAD`: unfinished tasks created before the period's end, per assignee:
//!   open, in progress, urgent and overdue counts.
//! - `OVERDUE_TASKS`: unfinished tasks due within the period and already past due at
//!   generation time, most overdue first.

use std::collections::BTreeMap;

use chronicle_domain::report::ReportKind;
use chronicle_domain::task::{Priority, TaskStatus};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::ports::report_data::TaskFacts;

/// Computes a report of `kind` over `tasks` for `[from, to)`, as of `now`.
pub fn compute(
    kind: ReportKind,
    tasks: &[TaskFacts],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Value {
    match kind {
        ReportKind::TeamSummary => team_summary(tasks, from, to),
        ReportKind::AssigneeWorkload => assignee_workload(tasks, to, now),
        ReportKind::OverdueTasks => overdue_tasks(tasks, from, to, now),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

fn team_summary(tasks: &[TaskFacts], from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    let in_period: Vec<&TaskFacts> = tasks
        .iter()
        .filter(|t| t.created_at >= from && t.created_at < to)
        .collect();
    let mut by_status: BTreeMap<&str, u64> = [
        TaskStatus::Open,
        TaskStatus::InProgress,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ]
    .into_iter()
    .map(|s| (s.as_str(), 0))
    .collect();
    let mut by_assignee: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut cycle_times = Vec::new();
    for task in &in_period {
        *by_status.entry(task.status.as_str()).or_default() += 1;
        if let Some(assignee) = &task.assignee_id {
            let entry = by_assignee.entry(assignee.as_str()).or_default();
            match task.status {
                TaskStatus::Open | TaskStatus::InProgress => entry.0 += 1,
                TaskStatus::Completed => entry.1 += 1,
                _ => {}
            }
        }
        if task.status == TaskStatus::Completed {
            if let (Some(started), Some(finished)) = (task.started_at, task.finished_at) {
                cycle_times.push((finished - started).num_milliseconds() as f64 / 1000.0);
            }
        }
    }
    let total = in_period.len() as u64;
    let completed = by_status.get("COMPLETED").copied().unwrap_or(0);
    let completion_rate = if total == 0 {
        0.0
    } else {
        round2(completed as f64 / total as f64)
    };
    json!({
        "total": total,
        "byStatus": by_status,
        "byAssignee": by_assignee
            .into_iter()
            .map(|(assignee, (open, completed))| json!({"assigneeId": assignee, "open": open, "completed": completed}))
            .collect::<Vec<_>>(),
        "completionRate": completion_rate,
        "medianCycleTimeSeconds": median(cycle_times),
    })
}

fn assignee_workload(tasks: &[TaskFacts], to: DateTime<Utc>, now: DateTime<Utc>) -> Value {
    let mut per_assignee: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    for task in tasks
        .iter()
        .filter(|t| !t.status.is_finished() && t.created_at < to)
    {
        let key = task
            .assignee_id
            .clone()
            .unwrap_or_else(|| "unassigned".to_owned());
        let counts = per_assignee.entry(key).or_default();
        match task.status {
            TaskStatus::Open => counts[0] += 1,
            _ => counts[1] += 1,
        }
        if task.priority == Priority::Urgent {
            counts[2] += 1;
        }
        if task.due_at.is_some_and(|due| due < now) {
            counts[3] += 1;
        }
    }
    json!({
        "assignees": per_assignee
            .into_iter()
            .map(|(assignee, [open, in_progress, urgent, overdue])| json!({
                "assigneeId": assignee, "open": open, "inProgress": in_progress,
                "total": open + in_progress, "urgent": urgent, "overdue": overdue,
            }))
            .collect::<Vec<_>>(),
    })
}

fn overdue_tasks(
    tasks: &[TaskFacts],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Value {
    let mut overdue: Vec<(&TaskFacts, DateTime<Utc>)> = tasks
        .iter()
        .filter(|t| !t.status.is_finished())
        .filter_map(|t| t.due_at.map(|due| (t, due)))
        .filter(|(_, due)| *due >= from && *due < to && *due < now)
        .collect();
    overdue.sort_by_key(|(t, due)| (*due, t.id));
    json!({
        "total": overdue.len(),
        "tasks": overdue
            .iter()
            .map(|(t, due)| json!({
                "taskId": t.id, "title": t.title, "assigneeId": t.assignee_id,
                "status": t.status.as_str(), "dueAt": due,
                "overdueSeconds": (now - *due).num_seconds(),
            }))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use uuid::Uuid;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 0, 0, 0).unwrap()
    }

    fn task(status: TaskStatus, assignee: Option<&str>, created: u32) -> TaskFacts {
        TaskFacts {
            id: Uuid::now_v7(),
            title: "t".into(),
            status,
            assignee_id: assignee.map(str::to_owned),
            priority: Priority::Normal,
            due_at: None,
            created_at: at(created),
            started_at: None,
            finished_at: None,
        }
    }

    fn completed(assignee: &str, cycle_seconds: i64) -> TaskFacts {
        let mut t = task(TaskStatus::Completed, Some(assignee), 2);
        t.started_at = Some(at(3));
        t.finished_at = Some(at(3) + Duration::seconds(cycle_seconds));
        t
    }

    #[test]
    fn team_summary_matches_the_documented_example() {
        let tasks = vec![
            task(TaskStatus::Open, Some("u-1"), 2),
            task(TaskStatus::Open, None, 2),
            task(TaskStatus::Open, None, 2),
            completed("u-1", 10),
            completed("u-1", 15),
            task(TaskStatus::Failed, Some("u-2"), 2),
            task(TaskStatus::Open, Some("u-1"), 20), // outside the period
        ];
        let result = compute(ReportKind::TeamSummary, &tasks, at(1), at(10), at(28));
        assert_eq!(result["total"], 6);
        assert_eq!(
            result["byStatus"],
            json!({"OPEN": 3, "IN_PROGRESS": 0, "COMPLETED": 2, "FAILED": 1, "CANCELLED": 0})
        );
        assert_eq!(
            result["byAssignee"],
            json!([{"assigneeId": "u-1", "open": 1, "completed": 2},
                   {"assigneeId": "u-2", "open": 0, "completed": 0}])
        );
        assert_eq!(result["completionRate"], 0.33);
        assert_eq!(result["medianCycleTimeSeconds"], 12.5);
    }

    #[test]
    fn an_empty_period_has_zero_rate_and_no_median() {
        let result = compute(ReportKind::TeamSummary, &[], at(1), at(2), at(3));
        assert_eq!(result["total"], 0);
        assert_eq!(result["completionRate"], 0.0);
        assert_eq!(result["medianCycleTimeSeconds"], Value::Null);
    }

    #[test]
    fn workload_counts_unfinished_work_per_assignee() {
        let mut urgent = task(TaskStatus::InProgress, Some("u-1"), 2);
        urgent.priority = Priority::Urgent;
        urgent.due_at = Some(at(5));
        let tasks = vec![
            task(TaskStatus::Open, Some("u-1"), 2),
            urgent,
            completed("u-1", 5),
            task(TaskStatus::Open, None, 2),
        ];
        let result = compute(ReportKind::AssigneeWorkload, &tasks, at(1), at(10), at(9));
        assert_eq!(
            result["assignees"],
            json!([
                {"assigneeId": "u-1", "open": 1, "inProgress": 1, "total": 2, "urgent": 1, "overdue": 1},
                {"assigneeId": "unassigned", "open": 1, "inProgress": 0, "total": 1, "urgent": 0, "overdue": 0},
            ])
        );
    }

    #[test]
    fn overdue_lists_unfinished_tasks_past_due_in_the_period_most_overdue_first() {
        let mut late = task(TaskStatus::Open, Some("u-1"), 1);
        late.due_at = Some(at(3));
        let mut later = task(TaskStatus::InProgress, None, 1);
        later.due_at = Some(at(5));
        let mut done = completed("u-1", 1);
        done.due_at = Some(at(3));
        let mut future = task(TaskStatus::Open, None, 1);
        future.due_at = Some(at(25));
        let result = compute(
            ReportKind::OverdueTasks,
            &[later.clone(), done, future, late.clone()],
            at(1),
            at(28),
            at(10),
        );
        assert_eq!(result["total"], 2);
        assert_eq!(result["tasks"][0]["taskId"], json!(late.id));
        assert_eq!(result["tasks"][1]["taskId"], json!(later.id));
        assert_eq!(result["tasks"][0]["overdueSeconds"], 7 * 86_400);
    }
}
