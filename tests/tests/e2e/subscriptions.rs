//! GraphQL subscriptions over graphql-transport-ws, fed from the event flow.

use std::time::Duration;

use chronicle_tests::ws::{connect, next_json, open, subscribe};
use chronicle_tests::TestApp;
use futures::StreamExt;
use serde_json::{json, Value};

#[tokio::test]
async fn task_events_of_a_team_arrive_as_they_happen_and_other_teams_stay_out() {
    let app = TestApp::spawn().await.unwrap();
    let mut socket = connect(&app, &app.admin_token).await;
    subscribe(
        &mut socket,
        "1",
        "subscription($t: ID) { taskEvents(teamId: $t) { eventType taskId sequence actorId payload } }",
        json!({"t": "team-live"}),
    )
    .await;
    // The feed starts at the end of the topics: give the subscription a moment to be in place
    // and the feed consumer to get its partitions, then keep producing until events arrive.
    let mut mine = Vec::new();
    let mut first = None;
    for attempt in 0..20 {
        app.create_task("other team", "team-elsewhere")
            .await
            .unwrap();
        let id = app
            .create_task(&format!("mine {attempt}"), "team-live")
            .await
            .unwrap();
        mine.push(id);
        if let Ok(Some(value)) =
            tokio::time::timeout(Duration::from_millis(500), next_json(&mut socket)).await
        {
            first = Some(value);
            break;
        }
    }
    let first = first.expect("a task event arrived");
    assert_eq!(first["type"], "next", "{first}");
    let event = &first["payload"]["data"]["taskEvents"];
    assert_eq!(event["eventType"], "TaskCreated");
    assert!(
        mine.contains(&event["taskId"].as_str().unwrap().to_owned()),
        "only team-live tasks: {event}"
    );
    assert_eq!(event["payload"]["teamId"], "team-live");

    // A later change of the same task (no team in its payload) is still recognised.
    let task = event["taskId"].as_str().unwrap().to_owned();
    app.data(
        "mutation($id: ID!) { startTask(id: $id) { version } }",
        json!({"id": task}),
    )
    .await
    .unwrap();
    let mut saw_start = false;
    while let Some(value) = next_json(&mut socket).await {
        let event = &value["payload"]["data"]["taskEvents"];
        assert_eq!(value["type"], "next");
        assert!(
            mine.contains(&event["taskId"].as_str().unwrap().to_owned()),
            "{event}"
        );
        if event["eventType"] == "TaskStarted" {
            assert_eq!(event["taskId"], task.as_str());
            saw_start = true;
            break;
        }
    }
    assert!(saw_start);
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn report_status_pushes_each_status_until_completed() {
    let app = TestApp::spawn().await.unwrap();
    let mut socket = connect(&app, &app.admin_token).await;
    let now = chrono::Utc::now();
    let data = app
        .data(
            "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }",
            json!({"i": {"kind": "TEAM_SUMMARY", "teamId": "team-x",
                         "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
                         "to": (now + chrono::Duration::hours(1)).to_rfc3339()}}),
        )
        .await
        .unwrap();
    let id = data["requestReport"]["id"].as_str().unwrap().to_owned();
    subscribe(
        &mut socket,
        "r",
        "subscription($id: ID!) { reportStatus(reportId: $id) { status version } }",
        json!({"id": id}),
    )
    .await;
    let mut statuses = Vec::new();
    let mut versions = Vec::new();
    while let Some(value) = next_json(&mut socket).await {
        if value["type"] == "complete" {
            break;
        }
        assert_eq!(value["type"], "next", "{value}");
        let status = &value["payload"]["data"]["reportStatus"];
        statuses.push(status["status"].as_str().unwrap().to_owned());
        versions.push(status["version"].as_i64().unwrap());
    }
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("COMPLETED"),
        "{statuses:?}"
    );
    let order = ["REQUESTED", "GENERATING", "COMPLETED"];
    let ranks: Vec<usize> = statuses
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] < w[1]),
        "in lifecycle order: {statuses:?}"
    );
    assert!(versions.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn a_subscription_without_a_valid_token_is_refused() {
    let app = TestApp::spawn().await.unwrap();
    let (_socket, reply) = open(&app, "forged").await;
    assert!(
        reply.is_none(),
        "expected the connection to be closed, got {reply:?}"
    );
}

#[tokio::test]
async fn projection_status_follows_a_rebuild_from_claim_to_swap() {
    let app = TestApp::spawn().await.unwrap();
    let status = "subscription { projectionStatus(name: \"tasks\") { state lag rebuild { eventsDone eventsTotal } lastRebuild { events } } }";

    let member = app.token("u-1", &["member"], &["team-a"]);
    let mut refused = connect(&app, &member).await;
    subscribe(&mut refused, "1", status, json!({})).await;
    let error = next_json(&mut refused).await.unwrap();
    assert_eq!(error["payload"]["data"], Value::Null, "{error}");
    assert_eq!(
        error["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{error}"
    );

    chronicle_tests::seed::seed_tasks(&app.db, 10_000)
        .await
        .unwrap();
    let mut socket = connect(&app, &app.admin_token).await;
    subscribe(&mut socket, "1", status, json!({})).await;
    let first = next_json(&mut socket).await.unwrap();
    assert_eq!(
        first["payload"]["data"]["projectionStatus"]["state"], "LIVE",
        "{first}"
    );
    assert_eq!(
        first["payload"]["data"]["projectionStatus"]["lag"], 50_000,
        "{first}"
    );

    app.data(
        "mutation { rebuildProjection(name: \"tasks\") { state } }",
        json!({}),
    )
    .await
    .unwrap();
    let mut states = Vec::new();
    let last = loop {
        let message = next_json(&mut socket).await.expect("status update");
        let status = message["payload"]["data"]["projectionStatus"].clone();
        states.push(status["state"].as_str().unwrap_or_default().to_owned());
        if status["state"] == "LIVE" {
            break status;
        }
        // Counted once the rebuild's snapshot is open; never more done than there is.
        let (done, total) = (
            status["rebuild"]["eventsDone"].as_i64().unwrap(),
            status["rebuild"]["eventsTotal"].as_i64().unwrap(),
        );
        assert!(total == 50_000 || (total, done) == (0, 0), "{status}");
        assert!(done <= total, "{status}");
    };
    assert!(states.contains(&"REBUILDING".to_owned()), "{states:?}");
    assert_eq!(last["lastRebuild"]["events"], 50_000, "{last}");
    assert_eq!(last["lag"], 0, "{last}");
}

/// The position a notification's cursor names (cursors are opaque to clients; the test reads
/// them to check the order).
fn position_of(cursor: &Value) -> i64 {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.as_str().expect("a cursor"))
        .expect("base64");
    String::from_utf8(bytes)
        .unwrap()
        .strip_prefix("audit:")
        .expect("a position cursor")
        .parse()
        .unwrap()
}

/// Reads `taskEvents` notifications of subscription `id` until `done` says so or the socket
/// closes; answers (cursor, task id, event type) of each.
async fn read_task_events(
    socket: &mut chronicle_tests::ws::Socket,
    mut done: impl FnMut(&[(Value, String, String)]) -> bool,
) -> Vec<(Value, String, String)> {
    let mut seen = Vec::new();
    while !done(&seen) {
        let Some(message) = next_json(socket).await else {
            break;
        };
        assert_eq!(message["type"], "next", "{message}");
        let event = &message["payload"]["data"]["taskEvents"];
        seen.push((
            event["cursor"].clone(),
            event["taskId"].as_str().unwrap().to_owned(),
            event["eventType"].as_str().unwrap().to_owned(),
        ));
    }
    seen
}

/// The ids of a team's tasks in the order the store holds their creations.
async fn created_in_store_order(app: &TestApp, team: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT aggregate_id FROM events
         WHERE event_type = 'TaskCreated' AND team_id = $1 ORDER BY position",
    )
    .bind(team)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

const RESUMABLE: &str = "subscription($t: ID, $after: String) {
    taskEvents(teamId: $t, after: $after) { cursor taskId eventType } }";

#[tokio::test]
async fn a_client_that_drops_resumes_from_its_last_cursor_and_misses_nothing() {
    const TASKS: usize = 2_000;
    let app = std::sync::Arc::new(TestApp::spawn().await.unwrap());
    let mut socket = connect(&app, &app.admin_token).await;
    subscribe(
        &mut socket,
        "1",
        RESUMABLE,
        json!({"t": "team-resume", "after": "0"}),
    )
    .await;

    // Another client creates the tasks at about 500/s (8 writers, one every 16 ms each).
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let writers = (0..8).map(|w| {
                let app = app.clone();
                async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(16));
                    for n in (w..TASKS).step_by(8) {
                        tick.tick().await;
                        app.create_task(&format!("resume {n}"), "team-resume")
                            .await
                            .unwrap();
                    }
                }
            });
            futures::future::join_all(writers).await;
            started.elapsed()
        })
    };

    // The first connection drops after about 700 notifications.
    let first = read_task_events(&mut socket, |seen| seen.len() >= 700).await;
    drop(socket);
    let last_cursor = first.last().expect("notifications").0.clone();
    let mut socket = connect(&app, &app.admin_token).await;
    subscribe(
        &mut socket,
        "1",
        RESUMABLE,
        json!({"t": "team-resume", "after": last_cursor}),
    )
    .await;
    let rest = read_task_events(&mut socket, |seen| first.len() + seen.len() >= TASKS).await;
    let took = writer.await.unwrap();
    socket.close(None).await.unwrap();

    let all: Vec<_> = first.into_iter().chain(rest).collect();
    let positions: Vec<i64> = all
        .iter()
        .map(|(cursor, _, _)| position_of(cursor))
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "store order, no repeat"
    );
    assert!(all.iter().all(|(_, _, kind)| kind == "TaskCreated"));
    let ids: Vec<String> = all.into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(ids.len(), TASKS);
    assert_eq!(
        ids,
        created_in_store_order(&app, "team-resume").await,
        "exactly the creations, in order, once each (written in {took:?})"
    );
}

#[tokio::test]
async fn a_cursor_from_long_ago_catches_up_and_a_live_event_arrives_once_after_the_older_ones() {
    let app = TestApp::spawn().await.unwrap();
    // A store with 100,000 events from a month ago, as if the client last saw its beginning.
    let seeded = chronicle_tests::seed::seed_tasks(&app.db, 20_000)
        .await
        .unwrap();
    assert_eq!(seeded, 100_000);
    let mut socket = connect(&app, &app.admin_token).await;
    subscribe(&mut socket, "1", RESUMABLE, json!({"after": "0"})).await;
    // A live event while it catches up.
    let first = read_task_events(&mut socket, |seen| seen.len() >= 1_000).await;
    let live = app
        .create_task("created while catching up", "team-a")
        .await
        .unwrap();
    let rest = read_task_events(&mut socket, |seen| {
        seen.last().is_some_and(|(_, id, _)| *id == live)
    })
    .await;
    let all: Vec<_> = first.into_iter().chain(rest).collect();
    assert_eq!(all.len(), 100_001, "every seeded event and the live one");
    let positions: Vec<i64> = all
        .iter()
        .map(|(cursor, _, _)| position_of(cursor))
        .collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(all.iter().filter(|(_, id, _)| *id == live).count(), 1);
    // Nothing after it: it came once.
    assert!(
        chronicle_tests::ws::next_json_within(&mut socket, Duration::from_millis(500))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_malformed_cursor_is_refused_and_one_past_the_end_waits_for_new_events() {
    let app = TestApp::spawn().await.unwrap();
    let mut socket = connect(&app, &app.admin_token).await;
    subscribe(
        &mut socket,
        "1",
        RESUMABLE,
        json!({"after": "not a cursor"}),
    )
    .await;
    let refused = next_json(&mut socket).await.expect("an answer");
    assert_eq!(refused["payload"]["data"], Value::Null, "{refused}");
    let error = &refused["payload"]["errors"][0];
    assert_eq!(
        error["extensions"]["code"], "VALIDATION_FAILED",
        "{refused}"
    );
    assert_eq!(error["extensions"]["field"], "after");
    let ended = next_json(&mut socket).await.expect("an answer");
    assert_eq!(ended, json!({"id": "1", "type": "complete"}));

    // A cursor far past the end: nothing until events get there... and a new one does not
    // (its position is lower), so the subscription stays silent.
    use base64::Engine as _;
    let far = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("audit:1000000");
    subscribe(&mut socket, "2", RESUMABLE, json!({"after": far})).await;
    app.create_task("below the cursor", "team-a").await.unwrap();
    assert!(
        chronicle_tests::ws::next_json_within(&mut socket, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing at or below the cursor"
    );
}

/// Whether a subscription's first answer refused it for a limit, naming `which`.
async fn refused_for(socket: &mut chronicle_tests::ws::Socket, id: &str, which: &str) -> bool {
    let answer = loop {
        let answer = chronicle_tests::ws::next_json_within(socket, Duration::from_secs(5))
            .await
            .expect("an answer");
        // A refused subscription's `complete` follows its error.
        if answer["type"] != "complete" {
            break answer;
        }
    };
    assert_eq!(answer["id"], id, "{answer}");
    let error = &answer["payload"]["errors"][0];
    error["extensions"]["code"] == "LIMIT_EXCEEDED"
        && error["message"].as_str().is_some_and(|m| m.contains(which))
}

#[tokio::test]
async fn subscriptions_are_limited_per_subject_and_per_instance() {
    let app = TestApp::spawn_with_api(|api| {
        api.limits.max_subscriptions_per_subject = 3;
        api.limits.max_subscriptions_total = 4;
    })
    .await
    .unwrap();
    // A subscription that answers at once, so each is known to be open before the next.
    let live = "subscription { projectionStatus(name: \"tasks\") { state } }";
    let alice = app.token("alice", &["admin"], &["team-a"]);
    let bob = app.token("bob", &["admin"], &["team-a"]);
    let mut first = connect(&app, &alice).await;
    let mut second = connect(&app, &alice).await;
    for id in ["1", "2"] {
        subscribe(&mut first, id, live, json!({})).await;
        assert!(!refused_for(&mut first, id, "").await);
    }
    subscribe(&mut second, "3", live, json!({})).await;
    assert!(!refused_for(&mut second, "3", "").await);
    // Alice's fourth, on another connection: over her own limit.
    subscribe(&mut second, "4", live, json!({})).await;
    assert!(refused_for(&mut second, "4", "per subject").await);
    // Bob's first fills the instance; his second is over the instance's limit.
    let mut third = connect(&app, &bob).await;
    subscribe(&mut third, "5", live, json!({})).await;
    assert!(!refused_for(&mut third, "5", "").await);
    subscribe(&mut third, "6", live, json!({})).await;
    assert!(refused_for(&mut third, "6", "this instance serves at most 4").await);
    // Alice's connection closes: its two slots are free for Bob.
    first.close(None).await.unwrap();
    drop(first);
    let mut accepted = false;
    for attempt in 0..30 {
        let id = format!("again-{attempt}");
        subscribe(&mut third, &id, live, json!({})).await;
        if !refused_for(&mut third, &id, "").await {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(accepted, "a closed connection gives its slots back");
}

#[tokio::test]
async fn a_cursor_resumes_on_another_instance_and_a_stopped_instance_closes_cleanly() {
    let app = TestApp::spawn().await.unwrap();
    let other = chronicle_tests::ChronicleProcess::serve(&app.settings, "api").unwrap();
    other.wait_ready(Duration::from_secs(60)).await.unwrap();
    let base = other
        .client(&app.admin_token)
        .unwrap()
        .base_url()
        .to_owned();
    let mut socket = chronicle_tests::ws::connect_at(&base, &app.admin_token).await;
    subscribe(
        &mut socket,
        "1",
        RESUMABLE,
        json!({"t": "team-a", "after": "0"}),
    )
    .await;
    let mut created = Vec::new();
    for n in 0..40 {
        created.push(
            app.create_task(&format!("across {n}"), "team-a")
                .await
                .unwrap(),
        );
    }
    let before = read_task_events(&mut socket, |seen| seen.len() >= 15).await;

    // SIGTERM: the instance says goodbye with a close frame, not a reset.
    other.signal("-TERM").unwrap();
    let mut closed_cleanly = false;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(20), socket.next()).await
    {
        match message {
            Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                closed_cleanly = frame.is_some_and(|f| u16::from(f.code) == 1001);
                break;
            }
            Ok(_) => {}
            Err(error) => panic!("the connection broke instead of closing: {error}"),
        }
    }
    assert!(closed_cleanly, "a close frame with 1001 (going away)");

    // The cursor it last gave resumes on this instance.
    let last = before.last().unwrap().0.clone();
    let mut socket = connect(&app, &app.admin_token).await;
    subscribe(
        &mut socket,
        "1",
        RESUMABLE,
        json!({"t": "team-a", "after": last}),
    )
    .await;
    let after = read_task_events(&mut socket, |seen| {
        before.len() + seen.len() >= created.len()
    })
    .await;
    let ids: Vec<String> = before
        .into_iter()
        .chain(after)
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(ids, created_in_store_order(&app, "team-a").await);
    assert_eq!(ids.len(), created.len());
}

/// The resident memory of process `pid`, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Creates `count` tasks in `team`, 16 at a time.
async fn create_tasks(app: &TestApp, count: usize, team: &str) {
    use futures::stream;
    stream::iter(0..count)
        .map(|n| async move { app.create_task(&format!("load {n}"), team).await.unwrap() })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::test]
async fn idle_subscribers_and_ones_that_never_read_keep_the_service_memory_flat() {
    let app = TestApp::spawn().await.unwrap();
    let service = chronicle_tests::ChronicleProcess::serve(&app.settings, "api").unwrap();
    service.wait_ready(Duration::from_secs(60)).await.unwrap();
    let pid = service.pid().unwrap();
    let base = service
        .client(&app.admin_token)
        .unwrap()
        .base_url()
        .to_owned();
    create_tasks(&app, 300, "team-a").await;

    // 200 subscribers of a team where nothing happens, on 10 connections, reading.
    let mut idle = Vec::new();
    let token = |subject: String| app.token(&subject, &["admin"], &["team-a", "team-b"]);
    for connection in 0..10 {
        let mut socket =
            chronicle_tests::ws::connect_at(&base, &token(format!("idle-{connection}"))).await;
        for n in 0..20 {
            let id = format!("{connection}-{n}");
            subscribe(&mut socket, &id, RESUMABLE, json!({"t": "team-b"})).await;
        }
        idle.push(socket);
    }
    // 10 that subscribe to everything from the beginning and never read a message.
    let mut stalled = Vec::new();
    let everything =
        "subscription { taskEvents(after: \"0\") { cursor taskId eventType actorId payload } }";
    for n in 0..10 {
        let mut socket =
            chronicle_tests::ws::connect_at(&base, &token(format!("stalled-{n}"))).await;
        subscribe(&mut socket, "all", everything, json!({})).await;
        stalled.push(socket);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = resident_kib(pid);
    create_tasks(&app, 2_000, "team-a").await;
    let middle = resident_kib(pid);
    create_tasks(&app, 2_000, "team-a").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let end = resident_kib(pid);
    eprintln!("service RSS with 210 subscribers: {start} KiB, after 2,000 tasks {middle} KiB, after 4,000 {end} KiB");
    // Each stalled subscriber would otherwise hold the ~104,000 events it asked for.
    assert!(
        end.saturating_sub(start) < 48 * 1024,
        "RSS grew from {start} to {end} KiB"
    );
    // Against the highest reading before: the allocator gives pages back and takes them again
    // between readings (a dip of a few MiB at `middle` under a loaded machine is not a trend).
    let before = start.max(middle);
    assert!(
        end.saturating_sub(before) < 16 * 1024,
        "RSS still growing with the events: {start}, {middle} then {end} KiB"
    );
    // The idle ones still work: a change in their team arrives.
    app.create_task("at last", "team-b").await.unwrap();
    let first = next_json(&mut idle[0]).await.expect("a notification");
    assert_eq!(
        first["payload"]["data"]["taskEvents"]["eventType"], "TaskCreated",
        "{first}"
    );
    // The stalled ones were served all along: what they hold unread is a whole page.
    let mut unread = 0;
    while let Some(message) =
        chronicle_tests::ws::next_json_within(&mut stalled[0], Duration::from_millis(500)).await
    {
        assert_eq!(message["type"], "next", "{message}");
        unread += 1;
        if unread == 1_000 {
            break;
        }
    }
    assert_eq!(
        unread, 1_000,
        "a stalled subscriber's events are waiting for it"
    );
}

const AUDIT_EVENTS: &str = "subscription($f: AuditFilter, $after: String) {
    auditEvents(filter: $f, after: $after) {
      cursor node { position eventType aggregateId actorId payload } } }";

#[tokio::test]
async fn audit_events_follow_the_trail_from_its_cursor_within_the_auditors_teams() {
    let app = TestApp::spawn().await.unwrap();
    let mine = app.create_task("first of team-a", "team-a").await.unwrap();
    app.create_task("of team-b", "team-b").await.unwrap();
    let auditor = app.token("u-auditor", &["auditor"], &["team-a"]);
    // A page of the trail, then the subscription from its end.
    let page = app
        .graphql_as(
            Some(&auditor),
            "{ auditTrail(filter: {}, first: 10) { pageInfo { endCursor } edges { node { aggregateId } } } }",
            json!({}),
        )
        .await
        .unwrap();
    let end = page["data"]["auditTrail"]["pageInfo"]["endCursor"].clone();
    assert_eq!(
        page["data"]["auditTrail"]["edges"][0]["node"]["aggregateId"],
        mine.as_str()
    );
    let mut socket = connect(&app, &auditor).await;
    subscribe(
        &mut socket,
        "1",
        AUDIT_EVENTS,
        json!({"f": {"eventType": "TaskStarted"}, "after": end}),
    )
    .await;
    // Started: one of team-a before, one of team-b; then one of team-a created after the page.
    let later = app.create_task("later of team-a", "team-a").await.unwrap();
    let elsewhere = app.create_task("later of team-b", "team-b").await.unwrap();
    for id in [&mine, &elsewhere, &later] {
        app.data(
            "mutation($id: ID!) { startTask(id: $id) { version } }",
            json!({"id": id}),
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let message = next_json(&mut socket).await.expect("a notification");
        let edge = &message["payload"]["data"]["auditEvents"];
        assert_eq!(edge["node"]["eventType"], "TaskStarted", "{message}");
        assert_eq!(edge["node"]["actorId"], "u-admin");
        assert_eq!(
            position_of(&edge["cursor"]),
            edge["node"]["position"].as_i64().unwrap()
        );
        seen.push(edge["node"]["aggregateId"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        vec![mine, later],
        "team-a's starts only, in store order"
    );
    assert!(
        chronicle_tests::ws::next_json_within(&mut socket, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing of team-b"
    );

    // A member may not follow the trail.
    let member = app.token("u-member", &["member"], &["team-a"]);
    let mut socket = connect(&app, &member).await;
    subscribe(&mut socket, "1", AUDIT_EVENTS, json!({"after": "0"})).await;
    let refused = next_json(&mut socket).await.expect("an answer");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
}

#[tokio::test]
async fn a_projection_rebuild_does_not_touch_a_subscription() {
    let app = TestApp::spawn().await.unwrap();
    let mut socket = connect(&app, &app.admin_token).await;
    subscribe(
        &mut socket,
        "1",
        RESUMABLE,
        json!({"t": "team-a", "after": "0"}),
    )
    .await;
    create_tasks(&app, 100, "team-a").await;
    let rebuilt = app
        .data(
            "mutation { rebuildProjection(name: \"tasks\") { state } }",
            json!({}),
        )
        .await
        .unwrap();
    assert!(rebuilt["rebuildProjection"].is_array(), "{rebuilt}");
    create_tasks(&app, 100, "team-a").await;
    let seen = read_task_events(&mut socket, |seen| seen.len() >= 200).await;
    let ids: Vec<String> = seen.into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(ids, created_in_store_order(&app, "team-a").await);
}
