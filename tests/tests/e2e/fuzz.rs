//! Property-based fuzzing of the GraphQL endpoint: random documents (from the schema's own
//! vocabulary and from noise), random variables and random bodies, as the admin, a member and
//! nobody. Whatever arrives: no 5xx, every error has a code, none is `INTERNAL`, and the
//! service is still ready afterwards.
//!
//! Cases come from proptest strategies driven by a seeded RNG; the seed is printed so a failure
//! can be replayed with `CHRONICLE_FUZZ_SEED=<seed>`. `CHRONICLE_FUZZ_CASES` sets the number
//! of cases (default 400).

use chronicle_tests::TestApp;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Map, Value};

/// Words of the schema (and near misses) a document is stitched from.
const VOCABULARY: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    "...",
    "$v",
    "$w",
    "query",
    "mutation",
    "subscription",
    "fragment",
    "on",
    "Task",
    "Query",
    "tasks",
    "task",
    "reports",
    "report",
    "auditTrail",
    "verifyAuditTrail",
    "projections",
    "createTask",
    "updateTask",
    "assignTask",
    "startTask",
    "completeTask",
    "cancelTask",
    "reopenTask",
    "requestReport",
    "rebuildProjection",
    "pauseProjection",
    "resumeProjection",
    "id",
    "title",
    "status",
    "labels",
    "edges",
    "node",
    "cursor",
    "totalCount",
    "pageInfo",
    "history",
    "payload",
    "first:",
    "after:",
    "filter:",
    "input:",
    "teamId:",
    "text:",
    "atVersion:",
    "asOf:",
    "minVersion:",
    "expectedVersion:",
    "aggregateType:",
    "aggregateId:",
    "name:",
    "kind:",
    "TASK",
    "REPORT",
    "TEAM_SUMMARY",
    "\"team-a\"",
    "\"tasks\"",
    "\"\"",
    "\"2026-13-45T99:00:00Z\"",
    "\"1970-01-01T00:00:00Z\"",
    "\"00000000-0000-0000-0000-000000000000\"",
    "\"not-a-uuid\"",
    "0",
    "1",
    "-1",
    "100",
    "101",
    "2147483648",
    "-9223372036854775809",
    "1e400",
    "null",
    "true",
    "false",
    "__schema",
    "__type",
    "__typename",
    "a:",
    "b:",
    "@skip(if: true)",
    "@include(if: $v)",
    "#",
    "\\",
    "\"\\u0000\"",
    "\"\u{202e}\"",
    "\"%_\\\\\"",
];

/// The existing task's id, substituted into every case before it is sent.
const EXISTING: &str = "00000000-0000-0000-0000-000000000000";

/// What a variable holds, so most cases coerce and reach a resolver.
#[derive(Clone, Copy, Debug)]
enum Var {
    Id,
    Int,
    Date,
    Text,
    TaskFilter,
    ReportFilter,
    AuditFilter,
    NewTask,
    TaskChanges,
    NewReport,
}

/// Operations with typed variables: kind, declarations, selection, what `$v` and `$w` hold.
/// None pauses a projection or waits for one (a wait would only test the timeout).
const OPERATIONS: &[(&str, &str, &str, Var, Var)] = &[
    ("query", "$v: ID!, $w: Int", "task(id: $v) { id title status labels dueAt history(first: $w) { edges { node { eventType actorId } } } }", Var::Id, Var::Int),
    ("query", "$v: ID!, $w: Int", "task(id: $v, atVersion: $w) { id version title }", Var::Id, Var::Int),
    ("query", "$v: ID!, $w: DateTime", "task(id: $v, asOf: $w) { id }", Var::Id, Var::Date),
    ("query", "$v: String, $w: Int", "tasks(first: $w, after: $v) { totalCount edges { cursor node { id } } pageInfo { endCursor } }", Var::Text, Var::Int),
    ("query", "$v: TaskFilter, $w: Int", "tasks(filter: $v, first: $w) { totalCount edges { node { title } } }", Var::TaskFilter, Var::Int),
    ("query", "$v: ReportFilter, $w: Int", "reports(filter: $v, first: $w) { totalCount }", Var::ReportFilter, Var::Int),
    ("query", "$v: ID!, $w: Int", "report(id: $v, atVersion: $w) { id status result }", Var::Id, Var::Int),
    ("query", "$v: AuditFilter!, $w: Int", "auditTrail(filter: $v, first: $w) { edges { node { eventId payload hash } } }", Var::AuditFilter, Var::Int),
    ("query", "$v: ID!, $w: Int", "verifyAuditTrail(aggregateType: TASK, aggregateId: $v) { valid reason }", Var::Id, Var::Int),
    ("mutation", "$v: CreateTaskInput!, $w: Int", "createTask(input: $v) { id version }", Var::NewTask, Var::Int),
    ("mutation", "$v: ID!, $w: UpdateTaskInput!", "updateTask(id: $v, input: $w) { version }", Var::Id, Var::TaskChanges),
    ("mutation", "$v: ID!, $w: String!", "assignTask(id: $v, assigneeId: $w) { version }", Var::Id, Var::Text),
    ("mutation", "$v: ID!, $w: String", "completeTask(id: $v, result: $w) { version }", Var::Id, Var::Text),
    ("mutation", "$v: ID!, $w: String", "cancelTask(id: $v, reason: $w, expectedVersion: 1) { version }", Var::Id, Var::Text),
    ("mutation", "$v: RequestReportInput!, $w: Int", "requestReport(input: $v) { id }", Var::NewReport, Var::Int),
];

/// Values of `kind`, hostile in their contents (lengths at and past the limits, odd
/// characters, dates at the ends of the calendar), and now and then of the wrong shape.
fn variable(kind: Var) -> BoxedStrategy<Value> {
    let text = || prop_oneof![".{0,30}", "[a-z-]{1,12}", ".{190,260}"];
    let team = || {
        prop_oneof![
            Just("team-a".to_owned()),
            Just("team-b".to_owned()),
            "[a-z./ -]{0,70}"
        ]
    };
    let date = || {
        prop_oneof![
            Just("2026-01-01T00:00:00Z".to_owned()),
            Just("9999-12-31T23:59:59Z".to_owned()),
            Just("0001-01-01T00:00:00Z".to_owned()),
            "[0-9T:Z-]{0,25}",
        ]
    };
    let labels = || prop::collection::vec(".{0,60}", 0..25);
    let typed: BoxedStrategy<Value> = match kind {
        Var::Id => prop_oneof![
            3 => Just(Value::from(EXISTING)),
            1 => Just(Value::from(uuid::Uuid::now_v7().to_string())),
            1 => text().prop_map(Value::from),
        ]
        .boxed(),
        Var::Int => prop_oneof![(-5i64..150).prop_map(Value::from), Just(Value::Null)].boxed(),
        Var::Date => date().prop_map(Value::from).boxed(),
        Var::Text => text().prop_map(Value::from).boxed(),
        Var::TaskFilter => (prop::option::of(team()), prop::option::of(text()), prop::option::of(text()))
            .prop_map(|(team, text, label)| json!({"teamId": team, "text": text, "label": label}))
            .boxed(),
        Var::ReportFilter => team().prop_map(|team| json!({"teamId": team})).boxed(),
        Var::AuditFilter => (text(), prop::option::of(date()), prop::option::of(date()))
            .prop_map(|(actor, from, to)| json!({"actorId": actor, "from": from, "to": to}))
            .boxed(),
        Var::NewTask => (text(), team(), labels(), prop::option::of(date()), prop::option::of(text()))
            .prop_map(|(title, team, labels, due, assignee)| {
                json!({"title": title, "teamId": team, "labels": labels, "dueAt": due, "assigneeId": assignee})
            })
            .boxed(),
        Var::TaskChanges => (prop::option::of(text()), prop::option::of(labels()))
            .prop_map(|(title, labels)| json!({"title": title, "labels": labels}))
            .boxed(),
        Var::NewReport => (team(), date(), date())
            .prop_map(|(team, from, to)| {
                json!({"kind": "TEAM_SUMMARY", "teamId": team, "from": from, "to": to})
            })
            .boxed(),
    };
    prop_oneof![4 => typed, 1 => json_value()].boxed()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "[a-z-]{1,8}".prop_map(Value::from),
        Just(Value::from("team-a")),
        Just(Value::from(uuid::Uuid::now_v7().to_string())),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-zA-Z]{1,10}".boxed(),
                    Just("title".to_owned()).boxed(),
                    Just("teamId".to_owned()).boxed(),
                    Just("labels".to_owned()).boxed(),
                    Just("kind".to_owned()).boxed(),
                    Just("aggregateId".to_owned()).boxed(),
                ],
                inner,
                0..5
            )
            .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One request body: a document with variables, or raw noise.
fn body() -> impl Strategy<Value = String> {
    let stitched = prop::collection::vec(prop::sample::select(VOCABULARY), 0..48)
        .prop_map(|words| words.join(" "));
    let call = prop::sample::select(OPERATIONS).prop_flat_map(|(kind, signature, field, v, w)| {
        (variable(v), variable(w)).prop_map(move |(v, w)| {
            let query = format!("{kind}({signature}) {{ {field} }}");
            json!({"query": query, "variables": {"v": v, "w": w}}).to_string()
        })
    });
    let noise = prop_oneof![stitched, ".{0,200}"];
    let variables = (json_value(), json_value()).prop_map(|(v, w)| json!({"v": v, "w": w}));
    prop_oneof![
        6 => call,
        2 => (noise, variables).prop_map(|(query, variables)| {
            json!({"query": query, "variables": variables}).to_string()
        }),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ]
}

/// `cases` request bodies and callers from `seed`. Generated on a thread of its own: the
/// nested strategies recurse deeper than a test thread's stack allows in debug builds.
fn generate(seed: u64, cases: usize) -> Vec<(String, u8)> {
    std::thread::Builder::new()
        .stack_size(256 * 1024 * 1024)
        .spawn(move || {
            let mut seed_bytes = [0u8; 32];
            seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
            let mut runner = TestRunner::new_with_rng(
                Config::default(),
                TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
            );
            let strategy = (body(), 0..3u8);
            (0..cases)
                .map(|_| strategy.new_tree(&mut runner).expect("a case").current())
                .collect()
        })
        .expect("spawn the generator")
        .join()
        .expect("generate cases")
}

fn seed() -> u64 {
    std::env::var("CHRONICLE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0)
}

#[tokio::test]
async fn random_requests_never_cause_a_server_error_or_an_internal_code() {
    let app = TestApp::spawn().await.unwrap();
    let existing = app.create_task("fuzzed", "team-a").await.unwrap();
    app.wait_for_version(&existing, 1).await.unwrap();
    let member = app.token("u-fuzz", &["member"], &["team-a"]);
    let cases: usize = std::env::var("CHRONICLE_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let seed = seed();
    println!("fuzz seed {seed} ({cases} cases)");
    let http = reqwest::Client::new();
    let (mut answered_with_data, mut refused) = (0usize, 0usize);
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for (case, (body, who)) in generate(seed, cases).into_iter().enumerate() {
        let body = body.replace(EXISTING, &existing);
        if std::env::var_os("CHRONICLE_FUZZ_TRACE").is_some() {
            println!("case {case}: {body}");
        }
        let mut request = http
            .post(format!("{}/graphql", app.base_url))
            .header("content-type", "application/json")
            .body(body.clone());
        match who {
            0 => request = request.bearer_auth(&app.admin_token),
            1 => request = request.bearer_auth(&member),
            _ => {}
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("seed {seed} case {case}: {e}\n{body}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status < 500,
            "seed {seed} case {case}: HTTP {status}\nrequest: {body}\nresponse: {text}"
        );
        let Ok(answer) = serde_json::from_str::<Value>(&text) else {
            panic!("seed {seed} case {case}: not JSON (HTTP {status}): {text}\nrequest: {body}");
        };
        let errors = answer
            .as_array()
            .map(|batch| batch.iter().collect::<Vec<_>>())
            .unwrap_or_else(|| vec![&answer])
            .into_iter()
            .filter_map(|response| response["errors"].as_array())
            .flatten()
            .collect::<Vec<_>>();
        if errors.is_empty() {
            answered_with_data += 1;
        } else {
            refused += 1;
        }
        for error in errors {
            let code = error["extensions"]["code"].as_str();
            *codes.entry(code.unwrap_or("none").to_owned()).or_default() += 1;
            assert!(
                code.is_some(),
                "seed {seed} case {case}: error without a code: {error}\nrequest: {body}"
            );
            assert_ne!(
                code,
                Some("INTERNAL"),
                "seed {seed} case {case}: bad input answered INTERNAL: {error}\nrequest: {body}"
            );
        }
    }
    println!("{answered_with_data} answered without error, {refused} refused: {codes:?}");
    assert!(
        answered_with_data > 0 && refused > 0,
        "the cases reach resolvers and trip validation: {answered_with_data} / {refused}"
    );
    let ready = reqwest::get(format!("{}/health/ready", app.base_url))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let data = app
        .data(
            "query($id: ID!) { task(id: $id) { id } }",
            json!({"id": existing}),
        )
        .await
        .unwrap();
    assert_eq!(data["task"]["id"], existing.as_str());
}
