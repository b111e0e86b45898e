//! The feed and its subscriptions on the in-memory store: given events, when a subscription
//! starts somewhere and the store moves on, then it sees each matching event once, in order.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::stream::{BoxStream, StreamExt};
use serde_json::json;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::feed::BATCHES_KEPT;
use super::*;
use crate::data::event_log::StoredEvent;
use crate::testing::event_feed::MemoryEventFeed;

fn record(position: i64, team: &str) -> FeedRecord {
    FeedRecord {
        position,
        team: Some(team.to_owned()),
        event: StoredEvent {
            event_id: Uuid::now_v7(),
            aggregate_type: "Task".into(),
            aggregate_id: format!("t-{position}"),
            sequence: 1,
            event_type: "TaskCreated".into(),
            event_version: "1.0".into(),
            payload: json!({"TaskCreated": {}}),
            metadata: json!({"actor_id": "u-1"}),
            recorded_at: Utc::now(),
            hash: String::new(),
            previous_hash: String::new(),
        },
    }
}

/// A store holding `positions` (all of team-a, all final).
fn stored(positions: impl IntoIterator<Item = i64>) -> Arc<MemoryEventFeed> {
    let store = Arc::new(MemoryEventFeed::default());
    let mut last = 0;
    for position in positions {
        store.append(record(position, "team-a"));
        last = position;
    }
    store.settle_through(last);
    store
}

/// A tail of `store` running with `poll` and `idle_poll`, until the sender is dropped.
fn started(
    store: Arc<MemoryEventFeed>,
    poll: Duration,
    idle_poll: Duration,
) -> (LiveFeed, oneshot::Sender<()>) {
    let feed = LiveFeed::new(store, FeedSettings { poll, idle_poll });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(feed.clone().run(async move {
        let _ = stopped.await;
    }));
    (feed, stop)
}

/// [`stored`], and its feed running.
fn running(
    positions: impl IntoIterator<Item = i64>,
) -> (Arc<MemoryEventFeed>, LiveFeed, oneshot::Sender<()>) {
    let store = stored(positions);
    let millisecond = Duration::from_millis(1);
    let (feed, stop) = started(store.clone(), millisecond, millisecond);
    (store, feed, stop)
}

fn tasks_of(teams: &[&str]) -> AuditFilter {
    AuditFilter {
        aggregate_type: Some("Task".into()),
        teams: Some(teams.iter().map(|t| (*t).to_owned()).collect()),
        ..AuditFilter::default()
    }
}

async fn positions(
    stream: &mut BoxStream<'static, Result<FeedRecord, AppError>>,
    count: usize,
) -> Vec<i64> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("no error");
        seen.push(next.position);
    }
    seen
}

#[tokio::test]
async fn a_subscription_catches_up_from_its_cursor_then_follows_without_gap_or_duplicate() {
    // Positions with holes, as rolled-back transactions leave them; more than a catch-up page.
    let history: Vec<i64> = (1..=1_300).map(|n| n * 2).collect();
    let (store, feed, _stop) = running(history.clone());
    let mut stream = feed.follow(tasks_of(&["team-a"]), Start::After(100));

    // Events keep arriving while it catches up, settled a few at a time.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for position in 2_601..=3_000 {
                store.append(record(position, "team-a"));
                if position % 7 == 0 || position == 3_000 {
                    store.settle_through(position);
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let expected: Vec<i64> = history
        .into_iter()
        .filter(|p| *p > 100)
        .chain(2_601..=3_000)
        .collect();
    let seen = positions(&mut stream, expected.len()).await;
    writer.await.unwrap();
    assert_eq!(seen, expected);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), stream.next())
            .await
            .is_err(),
        "nothing more"
    );
}

#[tokio::test]
async fn a_live_only_subscription_starts_at_the_settled_end_and_sees_only_its_teams() {
    let (store, feed, _stop) = running(1..=50);
    let mut stream = feed.follow(tasks_of(&["team-a"]), Start::Now);
    // Let it learn where the store ends before anything new arrives.
    tokio::time::timeout(Duration::from_millis(20), stream.next())
        .await
        .ok();
    store.append(record(51, "team-b"));
    store.append(record(52, "team-a"));
    store.settle_through(52);
    assert_eq!(positions(&mut stream, 1).await, vec![52]);
}

#[tokio::test]
async fn a_subscriber_further_behind_than_the_kept_batches_reads_what_it_missed_from_the_store() {
    let (store, feed, _stop) = running(1..=1);
    let mut stream = feed.follow(tasks_of(&["team-a"]), Start::After(0));
    assert_eq!(positions(&mut stream, 1).await, vec![1]);
    // One batch per event, far more than are kept, while the subscriber does not read.
    let last = 1 + 2 * BATCHES_KEPT as i64;
    for position in 2..=last {
        store.append(record(position, "team-a"));
        store.settle_through(position);
        let mut settled = feed.shared.settled.subscribe();
        tokio::time::timeout(
            Duration::from_secs(5),
            settled.wait_for(|s| *s == Some(position)),
        )
        .await
        .expect("the tail moves on")
        .unwrap();
    }
    let reads_before = store.reads();
    assert_eq!(
        positions(&mut stream, (last - 1) as usize).await,
        (2..=last).collect::<Vec<_>>()
    );
    assert!(store.reads() > reads_before, "caught up from the store");
}

#[tokio::test]
async fn a_batch_that_starts_past_the_cursor_sends_the_subscriber_to_the_store_first() {
    // No tail runs: the test plays it, and moves the settled position past a stretch it never
    // broadcast (as a tail does while nobody listens).
    let feed = LiveFeed::new(stored(1..=20), FeedSettings::default());
    feed.shared.settled.send_replace(Some(5));
    let mut stream = feed.follow(tasks_of(&["team-a"]), Start::After(3));
    assert_eq!(positions(&mut stream, 2).await, vec![4, 5]);
    // Caught up: it now waits for batches.
    tokio::time::timeout(Duration::from_millis(20), stream.next())
        .await
        .expect_err("nothing more yet");
    feed.shared.settled.send_replace(Some(20));
    let batch = super::feed::Batch {
        after: 10,
        through: 20,
        records: (11..=20).map(|p| record(p, "team-a")).collect(),
    };
    feed.shared.batches.send(Arc::new(batch)).unwrap();
    assert_eq!(
        positions(&mut stream, 15).await,
        (6..=20).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_settled_position_that_rises_with_no_batch_sends_the_subscriber_to_the_store() {
    // The tail began its round while nobody listened, so it moves the position on without a
    // batch; a live-only subscriber that joined meanwhile must not wait for the next event.
    let feed = LiveFeed::new(stored(1..=20), FeedSettings::default());
    feed.shared.settled.send_replace(Some(5));
    let mut stream = feed.follow(tasks_of(&["team-a"]), Start::Now);
    tokio::time::timeout(Duration::from_millis(20), stream.next())
        .await
        .expect_err("nothing after 5 yet");
    feed.shared.settled.send_replace(Some(20));
    assert_eq!(
        positions(&mut stream, 15).await,
        (6..=20).collect::<Vec<_>>()
    );
}

/// A tail that looks at the store only when woken: a page must hurry it itself.
fn sleepy(store: Arc<MemoryEventFeed>) -> (LiveFeed, oneshot::Sender<()>) {
    let hour = Duration::from_secs(3600);
    started(store, hour, hour)
}

fn page_positions(page: &[FeedRecord]) -> Vec<i64> {
    page.iter().map(|r| r.position).collect()
}

#[tokio::test]
async fn a_page_waits_for_the_events_committed_before_it_to_settle() {
    let store = stored(1..=12);
    store.settle_through(10);
    let (feed, _stop) = sleepy(store.clone());
    let page = tokio::spawn({
        let feed = feed.clone();
        async move { feed.final_page(&tasks_of(&["team-a"]), 0, 100).await }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!page.is_finished(), "11 and 12 are not final yet");
    store.settle_through(12);
    let page = tokio::time::timeout(Duration::from_millis(500), page)
        .await
        .expect("the page came once they settled, well before its patience ran out")
        .unwrap()
        .unwrap();
    assert_eq!(page_positions(&page), (1..=12).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_page_ends_before_an_event_still_committing_and_the_next_goes_on_from_there() {
    // 6 holds a position whose transaction has not ended (as when a transaction that took
    // its position first commits after 7..=10): a page must not pass over it.
    let store = stored(1..=10);
    store.settle_through(5);
    let (feed, _stop) = sleepy(store.clone());
    let started = std::time::Instant::now();
    let first = feed
        .final_page(&tasks_of(&["team-a"]), 0, 100)
        .await
        .unwrap();
    assert_eq!(page_positions(&first), vec![1, 2, 3, 4, 5]);
    assert!(started.elapsed() >= super::pages::PAGE_PATIENCE);
    store.settle_through(10);
    let next = feed
        .final_page(&tasks_of(&["team-a"]), 5, 100)
        .await
        .unwrap();
    assert_eq!(page_positions(&next), vec![6, 7, 8, 9, 10]);
}

#[tokio::test]
async fn a_page_on_a_settled_store_does_not_wait_for_the_tail() {
    let store = stored(1..=3);
    let feed = LiveFeed::new(store, FeedSettings::default());
    feed.shared.settled.send_replace(Some(3));
    // No tail runs: a page that waited for one would take its whole patience.
    let page = tokio::time::timeout(
        Duration::from_millis(200),
        feed.final_page(&tasks_of(&["team-a"]), 1, 100),
    )
    .await
    .expect("served at once")
    .unwrap();
    assert_eq!(page_positions(&page), vec![2, 3]);
}

#[tokio::test]
async fn a_page_inside_settled_history_is_served_at_once_while_later_events_wait() {
    // 16..=20 are not final (a transaction running long holds them back): a page of older
    // events must not wait for them.
    let store = stored(1..=20);
    store.settle_through(15);
    let (feed, _stop) = sleepy(store.clone());
    tokio::time::timeout(Duration::from_secs(1), async {
        while *feed.shared.settled.borrow() != Some(15) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the tail proved 15");
    let page = tokio::time::timeout(
        Duration::from_millis(500),
        feed.final_page(&tasks_of(&["team-a"]), 5, 5),
    )
    .await
    .expect("served without waiting for 16..=20")
    .unwrap();
    assert_eq!(page_positions(&page), vec![6, 7, 8, 9, 10]);
}

#[tokio::test]
async fn a_tail_held_back_by_a_long_transaction_slows_to_its_poll() {
    // 11 never settles while a page waits: the tail must not ask every 3 ms for 2 s.
    let store = stored(1..=11);
    store.settle_through(10);
    let (feed, _stop) = started(
        store.clone(),
        Duration::from_millis(50),
        Duration::from_secs(3600),
    );
    let before = store.settles();
    let reached = feed.settled_up_to(11, Duration::from_millis(500)).await;
    assert_eq!(reached, Some(10), "11 is held back");
    let rounds = store.settles() - before;
    // Every 3 ms would be ~160 rounds; backing off to the 50 ms poll, about a dozen.
    assert!(rounds <= 25, "{rounds} settling rounds in 500 ms");
}
