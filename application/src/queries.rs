//! Queries of the read models, the same for every view: a row by id (with read-your-writes
//! through `minVersion`), a filtered keyset page and a count, each scoped to the caller's teams
//! and served by a replica when there is one.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::access::{Action, Principal, TeamScope};
use crate::data::table::{ColumnSet, ViewFilter};
use crate::error::AppError;
use crate::ports::page::Page;
use crate::ports::store_error::StoreError;
use crate::ports::view_queries::ViewQueryStore;
use crate::projection::read_model::ReadModel;
use crate::projection::report::ReportReadModel;
use crate::projection::task::TaskReadModel;

/// Largest page a client may ask for.
pub(crate) const MAX_PAGE_SIZE: usize = 100;
/// Page size when the client does not say.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 20;
/// Longest pause between two reads of a `minVersion` wait.
const MAX_READ_WAIT_PAUSE: Duration = Duration::from_millis(10);

/// The store of `M`'s rows.
type Store<M> = dyn ViewQueryStore<<M as ReadModel>::View>;

/// Serves one view's reads from its read model.
pub struct ViewQueries<M: ReadModel> {
    store: Arc<Store<M>>,
    max_wait: Duration,
    primary: Option<OnPrimary<Store<M>>>,
}

/// Task reads.
pub type TaskQueries = ViewQueries<TaskReadModel>;
/// Report reads.
pub type ReportQueries = ViewQueries<ReportReadModel>;

impl<M: ReadModel> ViewQueries<M> {
    /// Queries over `store`; `minVersion` waits at most `max_wait` for the projection.
    pub fn new(store: Arc<Store<M>>, max_wait: Duration) -> Self {
        Self {
            store,
            max_wait,
            primary: None,
        }
    }

    /// `store` being a replica: a `minVersion` read it has not reached after `after` reads
    /// `primary` for the rest of the wait.
    pub fn with_primary(mut self, primary: Arc<Store<M>>, after: Duration) -> Self {
        self.primary = Some(OnPrimary {
            store: primary,
            after,
        });
        self
    }

    /// One row of the caller's teams (another team's is `None`, as if it did not exist).
    /// With `min_version`, waits (bounded) until the read model reflects at least that version,
    /// then answers `STALE_READ` if it still does not.
    pub async fn get(
        &self,
        principal: &Principal,
        id: Uuid,
        min_version: Option<u64>,
    ) -> Result<Option<M::View>, AppError> {
        let scope = principal.scope(Action::ReadWork)?;
        let read = |store: Arc<Store<M>>| {
            let scope = &scope;
            async move {
                let view = store.get(id).await?;
                Ok(visible::<M>(scope, view))
            }
        };
        let versioned = Versioned {
            max_wait: self.max_wait,
            min_version,
            version_of: M::version,
        };
        versioned
            .read(&self.store, self.primary.as_ref(), read)
            .await
    }

    /// A page of the caller's teams' rows after the cursor; `first` must be 1..=100. Each row
    /// is read from the columns `columns` selects: those its reader shows.
    pub async fn list(
        &self,
        principal: &Principal,
        filter: &ViewFilter,
        first: Option<i64>,
        after: Option<Uuid>,
        columns: ColumnSet<M::View>,
    ) -> Result<Page<M::View>, AppError> {
        let filter = in_scope(principal, filter)?;
        let first = page_size(first)?;
        let read = |store: Arc<Store<M>>| {
            let filter = &filter;
            async move { store.list(filter, first, after, columns).await }
        };
        Ok(either(&self.store, self.primary.as_ref(), read).await?)
    }

    /// How many of the caller's teams' rows match `filter` in all.
    pub async fn count(&self, principal: &Principal, filter: &ViewFilter) -> Result<u64, AppError> {
        let filter = in_scope(principal, filter)?;
        let read = |store: Arc<Store<M>>| {
            let filter = &filter;
            async move { store.count(filter).await }
        };
        Ok(either(&self.store, self.primary.as_ref(), read).await?)
    }
}

/// `filter` narrowed to the teams the caller may read.
fn in_scope(principal: &Principal, filter: &ViewFilter) -> Result<ViewFilter, AppError> {
    let scope = principal.scope(Action::ReadWork)?;
    Ok(ViewFilter {
        teams: scope.narrow(filter.teams.as_deref())?,
        conditions: filter.conditions.clone(),
    })
}

/// Validates a requested page size (1..=100, default 20).
pub(crate) fn page_size(first: Option<i64>) -> Result<usize, AppError> {
    match first {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if n < 1 => Err(AppError::validation("first", "must be at least 1")),
        Some(n) if n > MAX_PAGE_SIZE as i64 => Err(AppError::LimitExceeded(format!(
            "first: at most {MAX_PAGE_SIZE} items per page"
        ))),
        Some(n) => Ok(n as usize),
    }
}

/// The primary's copy of a store that reads a replica, and how long a `minVersion` read waits
/// for the replica before it turns to the primary.
struct OnPrimary<S: ?Sized> {
    store: Arc<S>,
    after: Duration,
}

/// A read that waits (bounded) for a version.
struct Versioned<V> {
    max_wait: Duration,
    min_version: Option<u64>,
    version_of: fn(&V) -> u64,
}

impl<V> Versioned<V> {
    /// Reads on `store`; a `min_version` it has not reached within `primary`'s `after` is
    /// waited for on the primary for the rest of `max_wait`: a replica that is behind delays
    /// read-your-writes by at most that, never fails it.
    async fn read<S, F, Fut>(
        &self,
        store: &Arc<S>,
        primary: Option<&OnPrimary<S>>,
        read: F,
    ) -> Result<Option<V>, AppError>
    where
        S: ?Sized,
        F: Fn(Arc<S>) -> Fut,
        Fut: std::future::Future<Output = Result<Option<V>, StoreError>>,
    {
        let on = |store: &Arc<S>| {
            let store = store.clone();
            let read = &read;
            move || read(store.clone())
        };
        let Some(primary) = primary else {
            return wait_for_version(self.max_wait, self.min_version, on(store), self.version_of)
                .await;
        };
        // The replica for at most `after` (all the wait without `minVersion`); the primary
        // for the rest when the replica is behind, and when it does not answer.
        let first = match self.min_version {
            Some(_) => primary.after.min(self.max_wait),
            None => self.max_wait,
        };
        match wait_for_version(first, self.min_version, on(store), self.version_of).await {
            Err(AppError::StaleRead { .. } | AppError::Unavailable(_)) => {
                let rest = self.max_wait.saturating_sub(first);
                wait_for_version(rest, self.min_version, on(&primary.store), self.version_of).await
            }
            answered => answered,
        }
    }
}

/// Reads `store`, a replica; the primary when the replica does not answer (it is down, and
/// the check that leaves it for the primary has not run yet).
async fn either<S, T, F, Fut>(
    store: &Arc<S>,
    primary: Option<&OnPrimary<S>>,
    read: F,
) -> Result<T, StoreError>
where
    S: ?Sized,
    F: Fn(Arc<S>) -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    match (read(store.clone()).await, primary) {
        (Err(StoreError::Unavailable(_)), Some(primary)) => read(primary.store.clone()).await,
        (answer, _) => answer,
    }
}

/// Reads a row, and with `min_version` re-reads with growing pauses until it reflects that
/// version or `max_wait` passed (`STALE_READ`): read-your-writes over an asynchronous
/// projection.
async fn wait_for_version<V, F, Fut>(
    max_wait: Duration,
    min_version: Option<u64>,
    read: F,
    version_of: fn(&V) -> u64,
) -> Result<Option<V>, AppError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<V>, StoreError>>,
{
    let Some(wanted) = min_version else {
        return Ok(read().await?);
    };
    let deadline = Instant::now() + max_wait;
    let mut pause = Duration::from_millis(2);
    loop {
        let view = read().await?;
        let current = view.as_ref().map_or(0, version_of);
        if current >= wanted {
            return Ok(view);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(AppError::StaleRead { wanted, current });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        // Capped low: a read waits at most one pause longer than the projection took, and a
        // point read by primary key costs the database little.
        pause = (pause * 2).min(MAX_READ_WAIT_PAUSE);
    }
}

/// A row the caller may see, or `None`: another team's row reads as a missing one.
fn visible<M: ReadModel>(scope: &TeamScope, view: Option<M::View>) -> Option<M::View> {
    view.filter(|view| M::team(view).is_some_and(|team| scope.covers(team)))
}

#[cfg(test)]
mod replica_tests {
    use super::*;
    use crate::ports::store_error::StoreError;
    use crate::projection::task::TaskView;
    use chronicle_domain::ids::TeamId;
    use chronicle_domain::task::Task;

    /// A read model holding one task at `version` (none at 0), counting its reads; or, `down`,
    /// one that does not answer.
    struct AtVersion {
        version: u64,
        down: bool,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl AtVersion {
        fn new(version: u64) -> Arc<Self> {
            Arc::new(Self {
                version,
                down: false,
                reads: Default::default(),
            })
        }

        fn down() -> Arc<Self> {
            Arc::new(Self {
                version: 0,
                down: true,
                reads: Default::default(),
            })
        }

        fn reads(&self) -> usize {
            self.reads.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    #[async_trait::async_trait]
    impl ViewQueryStore<TaskView> for AtVersion {
        async fn get(&self, id: Uuid) -> Result<Option<TaskView>, StoreError> {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if self.down {
                return Err(StoreError::unavailable("connection refused"));
            }
            let state = Task {
                team_id: Some(TeamId::parse("teamId", "team-a").unwrap()),
                ..Task::default()
            };
            Ok((self.version > 0).then(|| TaskView {
                id,
                version: self.version,
                state,
                created_at: chrono::Utc::now(),
                updated_at: chrono::Utc::now(),
                started_at: None,
                finished_at: None,
                watchers: Vec::new(),
            }))
        }

        async fn list(
            &self,
            _: &ViewFilter,
            _: usize,
            _: Option<Uuid>,
            _: ColumnSet<TaskView>,
        ) -> Result<Page<TaskView>, StoreError> {
            Err(StoreError::corrupt("not used"))
        }

        async fn count(&self, _: &ViewFilter) -> Result<u64, StoreError> {
            Err(StoreError::corrupt("not used"))
        }
    }

    fn member() -> Principal {
        Principal::new("alice", &["member".to_owned()], &["team-a".to_owned()])
    }

    #[tokio::test]
    async fn a_replica_behind_a_min_version_read_hands_it_to_the_primary_after_its_bound() {
        let (replica, primary) = (AtVersion::new(1), AtVersion::new(2));
        let queries = TaskQueries::new(replica.clone(), Duration::from_secs(2))
            .with_primary(primary.clone(), Duration::from_millis(50));
        let started = Instant::now();
        let view = queries.get(&member(), Uuid::nil(), Some(2)).await.unwrap();
        assert_eq!(view.map(|v| v.version), Some(2), "the primary's answer");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(50),
            "waited for the replica first: {took:?}"
        );
        assert!(
            took < Duration::from_secs(1),
            "not for the whole wait: {took:?}"
        );
        assert!(replica.reads() > 1 && primary.reads() == 1);

        // A plain read, and a version the replica has, stay on the replica.
        let reads = primary.reads();
        assert_eq!(
            queries
                .get(&member(), Uuid::nil(), None)
                .await
                .unwrap()
                .map(|v| v.version),
            Some(1)
        );
        assert_eq!(
            queries
                .get(&member(), Uuid::nil(), Some(1))
                .await
                .unwrap()
                .map(|v| v.version),
            Some(1)
        );
        assert_eq!(primary.reads(), reads);
    }

    #[tokio::test]
    async fn a_replica_that_does_not_answer_leaves_reads_to_the_primary() {
        let primary = AtVersion::new(3);
        let queries = TaskQueries::new(AtVersion::down(), Duration::from_secs(2))
            .with_primary(primary.clone(), Duration::from_millis(50));
        for min_version in [None, Some(3)] {
            let view = queries
                .get(&member(), Uuid::nil(), min_version)
                .await
                .unwrap();
            assert_eq!(view.map(|v| v.version), Some(3), "{min_version:?}");
        }
        assert_eq!(primary.reads(), 2);
    }

    #[tokio::test]
    async fn a_version_neither_has_is_stale_after_the_whole_wait() {
        let queries = TaskQueries::new(AtVersion::new(1), Duration::from_millis(120))
            .with_primary(AtVersion::new(1), Duration::from_millis(40));
        let started = Instant::now();
        let answer = queries.get(&member(), Uuid::nil(), Some(5)).await;
        assert!(matches!(
            answer,
            Err(AppError::StaleRead {
                wanted: 5,
                current: 1
            })
        ));
        assert!(started.elapsed() >= Duration::from_millis(120));
    }
}

#[cfg(test)]
mod view_tests {
    //! The generic queries on the in-memory adapter: team scoping, filters, keyset pages and
    //! counts, for any described view, without a database.

    use super::*;
    use crate::ports::view_store::ViewStore;
    use crate::projection::task::{TaskFilter, TaskView};
    use crate::testing::view_store::MemoryViewStore;
    use chronicle_domain::ids::{TeamId, UserId};
    use chronicle_domain::task::{Priority, Task, TaskStatus};

    fn task(n: u128, team: &str, title: &str, labels: &[&str]) -> TaskView {
        let id = Uuid::from_u128(n);
        TaskView {
            id,
            version: 1,
            state: Task {
                id: Some(id),
                status: TaskStatus::Open,
                title: title.to_owned(),
                team_id: Some(TeamId::parse("teamId", team).unwrap()),
                creator_id: Some(UserId::parse("creatorId", "u-1").unwrap()),
                priority: Priority::Normal,
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                ..Task::default()
            },
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            started_at: None,
            finished_at: None,
            watchers: Vec::new(),
        }
    }

    async fn given_tasks() -> TaskQueries {
        let store = Arc::new(MemoryViewStore::<TaskReadModel>::default());
        store
            .save_many(&[
                task(1, "team-a", "Fix the 50% bug", &["ops"]),
                task(2, "team-b", "Other team's", &["ops"]),
                task(3, "team-a", "Write docs", &[]),
                task(4, "team-a", "Ops review", &["ops", "q4"]),
            ])
            .await
            .unwrap();
        TaskQueries::new(store, Duration::from_millis(50))
    }

    fn member_of(teams: &[&str]) -> Principal {
        let teams: Vec<String> = teams.iter().map(|t| (*t).to_owned()).collect();
        Principal::new("alice", &["member".to_owned()], &teams)
    }

    fn ids(page: &Page<TaskView>) -> Vec<u128> {
        page.items.iter().map(|v| v.id.as_u128()).collect()
    }

    #[tokio::test]
    async fn a_member_pages_through_only_their_teams_rows_and_the_count_agrees() {
        let queries = given_tasks().await;
        let alice = member_of(&["team-a"]);
        let all = ViewFilter::default();
        let first = queries
            .list(&alice, &all, Some(2), None, ColumnSet::all())
            .await
            .unwrap();
        assert_eq!((ids(&first), first.has_next_page), (vec![1, 3], true));
        let after = Some(first.items[1].id);
        let rest = queries
            .list(&alice, &all, Some(2), after, ColumnSet::all())
            .await
            .unwrap();
        assert_eq!((ids(&rest), rest.has_next_page), (vec![4], false));
        assert_eq!(queries.count(&alice, &all).await.unwrap(), 3);

        let labelled = ViewFilter::from(TaskFilter {
            label: Some("ops".into()),
            ..TaskFilter::default()
        });
        let page = queries
            .list(&alice, &labelled, None, None, ColumnSet::all())
            .await
            .unwrap();
        assert_eq!(ids(&page), vec![1, 4], "team-b's ops task stays out");
        assert_eq!(queries.count(&alice, &labelled).await.unwrap(), 2);

        let text = ViewFilter::from(TaskFilter {
            text: Some("OPS REV".into()),
            ..TaskFilter::default()
        });
        let page = queries
            .list(&alice, &text, None, None, ColumnSet::all())
            .await
            .unwrap();
        assert_eq!(ids(&page), vec![4]);

        let other_team = ViewFilter::from(TaskFilter {
            teams: Some(vec!["team-b".into()]),
            ..TaskFilter::default()
        });
        assert!(matches!(
            queries
                .list(&alice, &other_team, None, None, ColumnSet::all())
                .await,
            Err(AppError::Forbidden(_))
        ));
        assert_eq!(
            queries.get(&alice, Uuid::from_u128(2), None).await.unwrap(),
            None,
            "another team's row reads as missing"
        );
        assert!(matches!(
            queries
                .list(&alice, &all, Some(101), None, ColumnSet::all())
                .await,
            Err(AppError::LimitExceeded(_))
        ));
    }

    #[tokio::test]
    async fn a_page_holds_the_columns_its_reader_shows_and_the_rest_stand_in_empty() {
        let queries = given_tasks().await;
        let alice = member_of(&["team-a"]);
        let all = ViewFilter::default();
        let titles = ColumnSet::shown(["title"]);
        let page = queries
            .list(&alice, &all, None, None, titles)
            .await
            .unwrap();
        let review = &page.items[2].state;
        assert_eq!(
            (review.title.as_str(), review.status, review.labels.len()),
            ("Ops review", TaskStatus::Open, 0)
        );
        let whole = queries
            .list(&alice, &all, None, None, ColumnSet::all())
            .await
            .unwrap();
        assert_eq!(whole.items[2].state.labels, ["ops", "q4"]);
    }
}
