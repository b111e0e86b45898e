//! The audit trail in GraphQL: `auditTrail`, `verifyAuditTrail`, and the types they return.

use async_graphql::{Context, Enum, InputObject, Json, Object, SimpleObject, ID};
use chronicle_application::aggregates;
use chronicle_application::audit::AuditEntry;
use chronicle_application::audit::ChainCheck;
use chronicle_application::data::event_log::inner_payload;
use chronicle_application::ports::audit_log::AuditFilter as AppAuditFilter;
use chronicle_application::AppError;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::arguments::parse_id;
use super::context::ContextExt;
use super::cursor::{decode_position, encode_position};
use super::error::to_graphql;
use super::pagination::PageInfo;

/// The kinds of aggregate in the store.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AggregateType {
    /// Tasks.
    Task,
    /// Reports.
    Report,
    /// Erased people: each one's erasure (`DataSubjectErased`).
    DataSubject,
}

impl AggregateType {
    /// The name the store uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Task => aggregates::TASK.type_name,
            Self::Report => aggregates::REPORT.type_name,
            Self::DataSubject => aggregates::DATA_SUBJECT.type_name,
        }
    }
}

/// Which events to show; the fields combine (AND).
#[derive(InputObject, Default)]
pub struct AuditFilter {
    /// Only this kind of aggregate.
    pub aggregate_type: Option<AggregateType>,
    /// Only this aggregate (a task or report id).
    pub aggregate_id: Option<ID>,
    /// Only events caused by this user (the token subject, or `chronicle-report-worker`).
    pub actor_id: Option<String>,
    /// Only events of one user action, including the reactions it caused later.
    pub correlation_id: Option<String>,
    /// Only this event type (`TaskAssigned`).
    pub event_type: Option<String>,
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to: Option<DateTime<Utc>>,
}

impl AuditFilter {
    pub(crate) fn into_app(self) -> Result<AppAuditFilter, AppError> {
        let aggregate_id = self
            .aggregate_id
            .map(|id| parse_id("filter.aggregateId", &id).map(|id| id.to_string()))
            .transpose()?;
        Ok(AppAuditFilter {
            aggregate_type: self.aggregate_type.map(|t| t.as_str().to_owned()),
            aggregate_id,
            actor_id: self.actor_id,
            correlation_id: self.correlation_id,
            event_type: self.event_type,
            from: self.from,
            to: self.to,
            teams: None,
            actor_forms: None,
        })
    }
}

/// One event of the trail: what changed, who did it, when, why, and its place in the chain.
pub(crate) struct AuditEvent(pub AuditEntry);

#[Object]
impl AuditEvent {
    /// The event's id (UUIDv7), also its CloudEvents id on Kafka.
    async fn event_id(&self) -> ID {
        ID(self.0.event.event_id.to_string())
    }
    /// Global position in the store: the trail's order.
    async fn position(&self) -> i64 {
        self.0.position
    }
    /// `Task` or `Report`.
    async fn aggregate_type(&self) -> &str {
        &self.0.event.aggregate_type
    }
    /// The aggregate's id.
    async fn aggregate_id(&self) -> ID {
        ID(self.0.event.aggregate_id.clone())
    }
    /// The event's number in its aggregate (1 is the creation): the version it produced.
    async fn sequence(&self) -> i64 {
        self.0.event.sequence as i64
    }
    /// `TaskCreated`, `ReportCompleted`, ...
    async fn event_type(&self) -> &str {
        &self.0.event.event_type
    }
    /// The payload's schema version.
    async fn event_version(&self) -> &str {
        &self.0.event.event_version
    }
    /// When the store accepted it.
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.event.recorded_at
    }
    /// Who caused it: the token subject of the request, or the worker; `erased:<pseudonym>`
    /// once that person was erased (the same for every event of theirs).
    async fn actor_id(&self) -> Option<&str> {
        self.0.metadata("actor_id")
    }
    /// The user action it belongs to.
    async fn correlation_id(&self) -> Option<&str> {
        self.0.metadata("correlation_id")
    }
    /// What directly caused it: a request id, or the event a reaction answered.
    async fn causation_id(&self) -> Option<&str> {
        self.0.metadata("causation_id")
    }
    /// The event's data, with personal values opened; an erased person's values answer
    /// `erased:<pseudonym>`.
    async fn payload(&self) -> Json<Value> {
        Json(inner_payload(&self.0.event.payload))
    }
    /// The fields whose values were erased (`payload/TaskCreated/title`,
    /// `metadata/actor_id`): a value typed to look like a marker is not listed.
    async fn erased_fields(&self) -> Vec<&str> {
        self.0.erased.iter().map(|e| e.field.as_str()).collect()
    }
    /// The payload as stored, personal values sealed (`subject:<pseudonym>`, `pd1:...`): with
    /// `storedMetadata`, what `hash` covers (docs/audit.md says how to recompute it).
    async fn stored_payload(&self) -> Json<Value> {
        Json(self.0.stored.payload.clone())
    }
    /// The metadata as stored.
    async fn stored_metadata(&self) -> Json<Value> {
        Json(self.0.stored.metadata.clone())
    }
    /// SHA-256 over the event's stored content and `previousHash`.
    async fn hash(&self) -> &str {
        &self.0.stored.hash
    }
    /// The hash of the aggregate's previous event (empty for the first).
    async fn previous_hash(&self) -> &str {
        &self.0.stored.previous_hash
    }
}

/// An edge of the trail.
#[derive(SimpleObject)]
pub(crate) struct AuditEventEdge {
    /// Opaque cursor: pass it as `after` to continue after this event.
    pub cursor: String,
    /// The event.
    pub node: AuditEvent,
}

/// A page of the trail in position order.
#[derive(SimpleObject)]
pub(crate) struct AuditEventConnection {
    /// The events with their cursors.
    pub edges: Vec<AuditEventEdge>,
    /// Paging state.
    pub page_info: PageInfo,
}

/// The verdict on one aggregate's hash chain.
#[derive(SimpleObject)]
pub(crate) struct AuditVerification {
    /// Whether every event is intact, in order and complete.
    pub valid: bool,
    /// How many events were checked (up to the first broken one).
    pub events_checked: i64,
    /// The first sequence that fails, when one does.
    pub first_invalid_sequence: Option<i64>,
    /// What is wrong with it.
    pub reason: Option<String>,
    /// Events whose personal values an erasure made unreadable (a destroyed key) or replaced
    /// by markers (values stored in clear, through the signed erasure ledger): erased, not
    /// tampered with.
    pub erased_events: Vec<ErasedEvent>,
}

/// An event whose personal values were erased, and by which erasures.
#[derive(SimpleObject)]
pub(crate) struct ErasedEvent {
    /// Its sequence in the aggregate.
    pub sequence: i64,
    /// The erasures, oldest first.
    pub erasures: Vec<ErasureRecord>,
}

/// An erasure as the audit trail records it: its `DataSubjectErased` event.
#[derive(SimpleObject)]
pub struct ErasureRecord {
    /// What the person's values read as now, without `erased:`.
    pub subject_pseudonym: String,
    /// The `DataSubjectErased` event's id.
    pub erasure_event_id: ID,
    /// When it was recorded.
    pub erased_at: DateTime<Utc>,
    /// Who asked for it (their id, or their marker once erased themselves).
    pub erased_by: String,
}

impl From<ChainCheck> for AuditVerification {
    fn from(check: ChainCheck) -> Self {
        Self {
            valid: check.valid,
            events_checked: check.events_checked as i64,
            first_invalid_sequence: check.first_invalid_sequence.map(|s| s as i64),
            reason: check.reason,
            erased_events: check
                .erased
                .into_iter()
                .map(|(sequence, by)| ErasedEvent {
                    sequence: sequence as i64,
                    erasures: by
                        .into_iter()
                        .map(|erasure| ErasureRecord {
                            subject_pseudonym: erasure.pseudonym,
                            erasure_event_id: ID(erasure.event_id.to_string()),
                            erased_at: erasure.erased_at,
                            erased_by: erasure.erased_by,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A page of the trail as a connection, of the caller's teams (auditors and admins).
pub async fn trail(
    ctx: &Context<'_>,
    filter: AppAuditFilter,
    first: Option<i32>,
    after: Option<String>,
) -> Result<AuditEventConnection, AppError> {
    let principal = ctx.request().principal()?;
    let after = after
        .as_deref()
        .map(|cursor| decode_position("after", cursor))
        .transpose()?;
    let services = ctx.services();
    let page = services
        .audit
        .trail(
            services.live.feed(),
            principal,
            &filter,
            first.map(i64::from),
            after,
        )
        .await?;
    let edges: Vec<AuditEventEdge> = page
        .items
        .into_iter()
        .map(|record| AuditEventEdge {
            cursor: encode_position(record.position),
            node: AuditEvent(record),
        })
        .collect();
    let page_info = PageInfo {
        has_next_page: page.has_next_page,
        has_previous_page: after.is_some(),
        start_cursor: edges.first().map(|e| e.cursor.clone()),
        end_cursor: edges.last().map(|e| e.cursor.clone()),
    };
    Ok(AuditEventConnection { edges, page_info })
}

/// The audit queries (auditors and admins).
#[derive(Default)]
pub(crate) struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The event store as an audit trail, in position order, filtered, paged by cursor
    /// (`first` at most 100). Needs the `auditor` or `admin` role.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn audit_trail(
        &self,
        ctx: &Context<'_>,
        filter: AuditFilter,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AuditEventConnection> {
        let run = async { trail(ctx, filter.into_app()?, first, after).await };
        run.await.map_err(|e| to_graphql(e, ctx.request()))
    }

    /// Checks one aggregate's hash chain: every event intact, in order, none missing.
    /// Needs the `auditor` or `admin` role.
    async fn verify_audit_trail(
        &self,
        ctx: &Context<'_>,
        aggregate_type: AggregateType,
        aggregate_id: ID,
    ) -> async_graphql::Result<AuditVerification> {
        let request = ctx.request();
        let run = async {
            let principal = request.principal()?;
            let id = parse_id("aggregateId", &aggregate_id)?;
            ctx.services()
                .audit
                .verify(principal, aggregate_type.as_str(), &id.to_string())
                .await
        };
        run.await
            .map(AuditVerification::from)
            .map_err(|e| to_graphql(e, request))
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::resolver_utils::EnumType;
    use chronicle_application::aggregates;

    use super::AggregateType;

    #[test]
    fn every_aggregate_of_the_registry_is_a_value_of_the_graphql_enum() {
        let items = AggregateType::items();
        assert_eq!(items.len(), aggregates::ALL.len());
        for kind in &aggregates::ALL {
            let item = items
                .iter()
                .find(|item| item.name == kind.graphql_name)
                .unwrap_or_else(|| panic!("AggregateType has no {}", kind.graphql_name));
            assert_eq!(item.value.as_str(), kind.type_name);
        }
    }
}
