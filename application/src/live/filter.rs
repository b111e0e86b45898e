//! An [`AuditFilter`] applied to an event in memory, as the store applies it in SQL: the tail's
//! batches carry every event, and each subscription keeps its own.

use crate::ports::audit_log::AuditFilter;
use crate::ports::event_feed::FeedRecord;

/// Whether `record` matches every field `filter` sets.
pub(crate) fn admits(filter: &AuditFilter, record: &FeedRecord) -> bool {
    let event = &record.event;
    let metadata = |field: &str| event.metadata.get(field).and_then(|v| v.as_str());
    let same = |wanted: &Option<String>, actual: Option<&str>| {
        wanted
            .as_deref()
            .is_none_or(|wanted| Some(wanted) == actual)
    };
    let actor = match &filter.actor_forms {
        Some(forms) => metadata("actor_id").is_some_and(|actor| forms.iter().any(|f| f == actor)),
        None => same(&filter.actor_id, metadata("actor_id")),
    };
    same(&filter.aggregate_type, Some(&event.aggregate_type))
        && same(&filter.aggregate_id, Some(&event.aggregate_id))
        && actor
        && same(&filter.correlation_id, metadata("correlation_id"))
        && same(&filter.event_type, Some(&event.event_type))
        && filter.from.is_none_or(|from| event.recorded_at >= from)
        && filter.to.is_none_or(|to| event.recorded_at < to)
        && filter.teams.as_ref().is_none_or(|teams| {
            record
                .team
                .as_ref()
                .is_some_and(|team| teams.iter().any(|t| t == team))
        })
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::data::event_log::StoredEvent;

    fn record(team: Option<&str>) -> FeedRecord {
        FeedRecord {
            position: 7,
            team: team.map(str::to_owned),
            event: StoredEvent {
                event_id: Uuid::now_v7(),
                aggregate_type: "Task".into(),
                aggregate_id: "t-1".into(),
                sequence: 2,
                event_type: "TaskStarted".into(),
                event_version: "1.0".into(),
                payload: json!({"TaskStarted": {}}),
                metadata: json!({"actor_id": "u-1", "correlation_id": "c-1"}),
                recorded_at: Utc::now(),
                hash: String::new(),
                previous_hash: String::new(),
            },
        }
    }

    #[test]
    fn every_set_field_must_match_and_unset_ones_match_anything() {
        let event = record(Some("team-a"));
        assert!(admits(&AuditFilter::default(), &event));
        let matching = AuditFilter {
            aggregate_type: Some("Task".into()),
            aggregate_id: Some("t-1".into()),
            actor_id: Some("u-1".into()),
            correlation_id: Some("c-1".into()),
            event_type: Some("TaskStarted".into()),
            from: Some(event.event.recorded_at),
            to: Some(event.event.recorded_at + Duration::microseconds(1)),
            teams: Some(vec!["team-b".into(), "team-a".into()]),
            actor_forms: None,
        };
        assert!(admits(&matching, &event));
        let misses = [
            AuditFilter {
                aggregate_type: Some("Report".into()),
                ..matching.clone()
            },
            AuditFilter {
                aggregate_id: Some("t-2".into()),
                ..matching.clone()
            },
            AuditFilter {
                actor_id: Some("u-2".into()),
                ..matching.clone()
            },
            AuditFilter {
                correlation_id: Some("c-2".into()),
                ..matching.clone()
            },
            AuditFilter {
                event_type: Some("TaskCreated".into()),
                ..matching.clone()
            },
            AuditFilter {
                to: Some(event.event.recorded_at),
                ..matching.clone()
            },
            AuditFilter {
                from: Some(event.event.recorded_at + Duration::microseconds(1)),
                ..matching.clone()
            },
            AuditFilter {
                teams: Some(vec!["team-b".into()]),
                ..matching.clone()
            },
        ];
        for filter in misses {
            assert!(!admits(&filter, &event), "{filter:?}");
        }
    }

    #[test]
    fn actor_forms_replace_the_actor_and_a_team_filter_hides_teamless_events() {
        let event = record(None);
        let forms = AuditFilter {
            actor_id: Some("someone else".into()),
            actor_forms: Some(vec!["subject:abc".into(), "u-1".into()]),
            ..AuditFilter::default()
        };
        assert!(admits(&forms, &event));
        let teams = AuditFilter {
            teams: Some(vec!["team-a".into()]),
            ..AuditFilter::default()
        };
        assert!(!admits(&teams, &event));
    }
}
