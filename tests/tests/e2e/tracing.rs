//! One trace per change: a client's W3C `traceparent` is continued by the request span, stored
//! with the events, sent as a Kafka header, continued by every consumer's span and by the report
//! worker's events; JSON logs carry the trace id; spans reach an OTLP collector.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use chronicle_application::topics::Topics;
use chronicle_infrastructure::config::Settings;
use chronicle_tests::{
    brokers, create_database, eventually, read_topic, test_settings, ChronicleProcess,
};
use serde_json::{json, Value};
use sqlx::PgPool;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A stand-in OpenTelemetry collector: keeps every span posted to `/v1/traces`.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let store = spans.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: axum::Json<Value>| {
                let store = store.clone();
                async move {
                    for resource in body["resourceSpans"].as_array().into_iter().flatten() {
                        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                            for span in scope["spans"].as_array().into_iter().flatten() {
                                store.lock().unwrap().push(span.clone());
                            }
                        }
                    }
                    "{}"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, spans }
    }

    /// The spans of `trace_id` named `name`, once at least `count` arrived.
    async fn spans(&self, trace_id: &str, name: &str, count: usize) -> Vec<Value> {
        self.spans_where(trace_id, name, count, |_| true).await
    }

    /// The spans of `trace_id` named `name` that `wanted` accepts, once at least `count`
    /// arrived.
    async fn spans_where(
        &self,
        trace_id: &str,
        name: &str,
        count: usize,
        wanted: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        eventually(Duration::from_secs(30), || async {
            let found: Vec<Value> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s["traceId"] == trace_id && s["name"] == name && wanted(s))
                .cloned()
                .collect();
            Ok((found.len() >= count).then_some(found))
        })
        .await
        .unwrap_or_else(|_| {
            let names: Vec<String> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s["traceId"] == trace_id)
                .map(|s| s["name"].to_string())
                .collect();
            panic!("no {count} {name} span(s) of trace {trace_id} exported; it has {names:?}")
        })
    }
}

fn span_id_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(2).unwrap()
}

impl Collector {
    /// The variables that export a service's spans here, as JSON, every 200 ms.
    fn export_env(&self) -> [(&'static str, &str); 3] {
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.url.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ]
    }
}

/// `chronicle serve --only parts` with `env`, once it is ready.
async fn ready_service(settings: &Settings, parts: &str, env: &[(&str, &str)]) -> ChronicleProcess {
    let service = ChronicleProcess::serve_logged(settings, parts, env, true).unwrap();
    service.wait_ready(Duration::from_secs(60)).await.unwrap();
    service
}

/// A member of team-a's token.
fn member_token(sub: &str) -> String {
    chronicle_api::auth::Authenticator::hs256(chronicle_tests::TEST_SECRET)
        .issue(
            sub,
            vec!["member".into()],
            vec!["team-a".into()],
            chrono::Duration::hours(1),
        )
        .unwrap()
}

/// Posts `request` in trace `trace` (its parent the client span [`CLIENT_SPAN`]); the answer.
async fn post_traced(base: &str, token: &str, trace: &str, request: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .header("traceparent", format!("00-{trace}-{CLIENT_SPAN}-01"))
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Creates a task titled `title` in a request of trace `trace`; the task's id.
async fn create_traced(base: &str, token: &str, trace: &str, title: &str) -> String {
    let request = json!({
        "query": "mutation CreateOne($i: CreateTaskInput!) { createTask(input: $i) { id } }",
        "variables": {"i": {"title": title, "teamId": "team-a"}},
    });
    let body = post_traced(base, token, trace, request).await;
    body["data"]["createTask"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

#[tokio::test]
async fn a_client_trace_follows_the_change_into_events_kafka_consumers_logs_and_the_collector() {
    let collector = Collector::start().await;
    let database_url = create_database().await.unwrap();
    let settings = test_settings(&database_url, &brokers());
    let service = ChronicleProcess::serve_logged(
        &settings,
        "api,relay,projections,worker",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url),
            // This stand-in reads JSON; the protobuf default has its own test below.
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_SERVICE_NAME", "chronicle-test"),
            ("CHRONICLE_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,chronicle_api=debug"),
        ],
        true,
    )
    .unwrap();
    service.wait_ready(Duration::from_secs(60)).await.unwrap();
    let token = chronicle_api::auth::Authenticator::hs256(chronicle_tests::TEST_SECRET)
        .issue(
            "u-tracer",
            vec!["admin".into()],
            vec!["team-a".into()],
            chrono::Duration::hours(1),
        )
        .unwrap();
    let now = chrono::Utc::now();
    let base = service.client("").unwrap().base_url().to_owned();
    let request = json!({
        "query": "mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }",
        "variables": {"i": {"kind": "TEAM_SUMMARY", "teamId": "team-a",
            "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
            "to": (now + chrono::Duration::hours(1)).to_rfc3339()}},
    });
    let body = post_traced(&base, &token, CLIENT_TRACE, request).await;
    let report_id = body["data"]["requestReport"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();

    // The request's span continues the client's trace; the stored event names it.
    let request_span = collector.spans(CLIENT_TRACE, "graphql", 1).await.remove(0);
    assert_eq!(request_span["parentSpanId"], CLIENT_SPAN);
    assert_eq!(request_span["kind"], 2);
    let request_span_id = request_span["spanId"].as_str().unwrap().to_owned();
    let db = PgPool::connect(&database_url).await.unwrap();
    let requested: String = sqlx::query_scalar(
        "SELECT metadata->>'traceparent' FROM events WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(&report_id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(requested, format!("00-{CLIENT_TRACE}-{request_span_id}-01"));

    // The relay's publication is a span under the request's, and the Kafka message carries
    // the publication's traceparent as a header, in the same trace.
    let topic = Topics::new(settings.kafka.topic_prefix.clone()).events_of("Report");
    let records = read_topic(&brokers(), &topic, 1, Duration::from_secs(30))
        .await
        .unwrap();
    let sent = records[0].headers["traceparent"].clone();
    assert!(sent.starts_with(&format!("00-{CLIENT_TRACE}-")), "{sent}");
    let publication = collector
        .spans_where(CLIENT_TRACE, &format!("send {topic}"), 1, |s| {
            s["spanId"] == span_id_of(&sent)
        })
        .await
        .remove(0);
    assert_eq!(publication["parentSpanId"], request_span_id.as_str());
    assert_eq!(publication["kind"], 4);

    // Each durable consumer group opened a span under the publication: the projections and the
    // worker (the live feed too when it had joined before the event: it starts at the end).
    let group_of = |span: &Value| {
        span["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "messaging.consumer.group.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let durable = |span: &Value| {
        let group = group_of(span);
        group.ends_with("chronicle-projections") || group.ends_with("chronicle-report-worker")
    };
    let under_request = collector
        .spans_where(CLIENT_TRACE, "consume", 2, |s| {
            s["parentSpanId"] == publication["spanId"] && durable(s)
        })
        .await;
    assert!(under_request.iter().all(|s| s["kind"] == 5));
    let groups: std::collections::BTreeSet<String> = under_request.iter().map(group_of).collect();
    assert_eq!(
        groups.len(),
        2,
        "the projections and the worker: {groups:?}"
    );

    // The worker's generation is a child of its consumer span, and the report's next events
    // name the generation span: the trace goes on through the worker's own writes.
    let generation = collector
        .spans(CLIENT_TRACE, "generate_report", 1)
        .await
        .remove(0);
    assert!(under_request
        .iter()
        .any(|s| s["spanId"] == generation["parentSpanId"]));
    let generation_id = generation["spanId"].as_str().unwrap().to_owned();
    let later: Vec<String> = eventually(Duration::from_secs(30), || async {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT metadata->>'traceparent' FROM events WHERE aggregate_id = $1 AND sequence > 1",
        )
        .bind(&report_id)
        .fetch_all(&db)
        .await?;
        Ok((rows.len() >= 2).then_some(rows))
    })
    .await
    .unwrap();
    for traceparent in &later {
        assert!(traceparent.starts_with(&format!("00-{CLIENT_TRACE}-")));
        assert_eq!(span_id_of(traceparent), generation_id);
    }

    // The JSON logs of the request carry its ids.
    let logs = eventually(Duration::from_secs(10), || async {
        let output = service.output()?;
        Ok(output
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| {
                line["span"]["trace_id"] == CLIENT_TRACE
                    && line["fields"]["message"] == "graphql request served"
            }))
    })
    .await
    .expect("a JSON log line with the trace id");
    assert_eq!(logs["span"]["span_id"], request_span_id.as_str());
    assert!(logs["span"]["request_id"].is_string());
    assert!(logs["span"]["correlation_id"].is_string());
}

/// An attribute of an OTLP/JSON span: its value as the collector got it (`stringValue`,
/// `intValue`, ...).
fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

/// An OTLP/JSON integer attribute (int64 may arrive as a JSON string or number).
fn int_attribute(span: &Value, key: &str) -> Option<i64> {
    let value = &attribute(span, key)?["intValue"];
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

#[tokio::test]
async fn one_create_task_is_one_trace_from_the_request_through_its_statements_the_relay_and_a_projection(
) {
    let collector = Collector::start().await;
    let database_url = create_database().await.unwrap();
    let settings = test_settings(&database_url, &brokers());
    // Statements are exported whatever the logs say of sqlx.
    let env = [
        &collector.export_env()[..],
        &[("RUST_LOG", "info,sqlx=warn")],
    ]
    .concat();
    let service = ready_service(&settings, "api,relay,projections", &env).await;
    let token = member_token("u-tracer");
    let base = service.client("").unwrap().base_url().to_owned();
    create_traced(&base, &token, CLIENT_TRACE, "Trace me").await;

    // The request, its GraphQL phases and its root field, one inside the other.
    let request = collector.spans(CLIENT_TRACE, "graphql", 1).await.remove(0);
    assert_eq!(request["parentSpanId"], CLIENT_SPAN);
    let request_id = request["spanId"].as_str().unwrap().to_owned();
    for phase in ["graphql.parse", "graphql.validate", "graphql.execute"] {
        let span = collector.spans(CLIENT_TRACE, phase, 1).await.remove(0);
        assert_eq!(span["parentSpanId"], request_id.as_str(), "{phase}");
        assert_eq!(span["kind"], 1, "{phase} is internal");
    }
    let execute = collector
        .spans(CLIENT_TRACE, "graphql.execute", 1)
        .await
        .remove(0);
    assert_eq!(
        attribute(&execute, "graphql.operation.name").unwrap()["stringValue"],
        "CreateOne"
    );
    let resolve = collector
        .spans(CLIENT_TRACE, "Mutation.createTask", 1)
        .await
        .remove(0);
    assert_eq!(resolve["parentSpanId"], execute["spanId"]);

    // Every span of the trace, by id, to walk from a statement up to the request.
    let all = || -> Vec<Value> {
        collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s["traceId"] == CLIENT_TRACE)
            .cloned()
            .collect()
    };
    let ancestors = |span: &Value| -> Vec<String> {
        let spans = all();
        let mut names = Vec::new();
        let mut parent = span["parentSpanId"].as_str().unwrap_or_default().to_owned();
        while let Some(up) = spans.iter().find(|s| s["spanId"] == parent.as_str()) {
            names.push(up["name"].as_str().unwrap_or_default().to_owned());
            parent = up["parentSpanId"].as_str().unwrap_or_default().to_owned();
        }
        names
    };

    // The append is a statement under the resolver, with the database conventions and no
    // values: the title is a bound parameter, not part of the text.
    let appends = collector
        .spans_where(CLIENT_TRACE, "WITH guard AS", 1, |s| {
            attribute(s, "db.query.text")
                .and_then(|v| v["stringValue"].as_str())
                .is_some_and(|text| text.contains("INSERT INTO events"))
        })
        .await;
    let append = &appends[0];
    assert_eq!(append["kind"], 3, "a client span");
    assert_eq!(
        attribute(append, "db.system.name").unwrap()["stringValue"],
        "postgresql"
    );
    assert_eq!(
        attribute(append, "db.operation.name").unwrap()["stringValue"],
        "WITH"
    );
    let text = attribute(append, "db.query.text").unwrap()["stringValue"]
        .as_str()
        .unwrap();
    assert!(!text.contains("Trace me"), "{text}");
    let up = ancestors(append);
    assert!(up.contains(&"Mutation.createTask".to_owned()), "{up:?}");
    assert_eq!(up.last().map(String::as_str), Some("graphql"), "{up:?}");

    // The relay's publication continues the request's trace from the stored traceparent, with
    // the messaging conventions and where the broker put the message.
    let publishes: Vec<Value> = eventually(Duration::from_secs(30), || async {
        let found: Vec<Value> = all().into_iter().filter(|s| s["kind"] == 4).collect();
        Ok((!found.is_empty()).then_some(found))
    })
    .await
    .expect("a publication span");
    let publish = &publishes[0];
    assert_eq!(publish["parentSpanId"], request_id.as_str());
    assert_eq!(
        attribute(publish, "messaging.system").unwrap()["stringValue"],
        "kafka"
    );
    let topic = Topics::new(settings.kafka.topic_prefix.clone()).events_of("Task");
    assert_eq!(
        attribute(publish, "messaging.destination.name").unwrap()["stringValue"],
        topic.as_str()
    );
    assert!(int_attribute(publish, "messaging.kafka.offset").is_some_and(|o| o >= 0));

    // The projection's processing is the publication's child, and its own statements are its.
    let consumed = collector
        .spans_where(CLIENT_TRACE, "consume", 1, |s| {
            s["parentSpanId"] == publish["spanId"]
                && attribute(s, "messaging.consumer.group.name")
                    .and_then(|v| v["stringValue"].as_str())
                    .is_some_and(|group| group.ends_with("chronicle-projections"))
        })
        .await
        .remove(0);
    assert_eq!(consumed["kind"], 5);
    assert_eq!(
        attribute(&consumed, "messaging.destination.name").unwrap()["stringValue"],
        topic.as_str()
    );
    let consumed_id = consumed["spanId"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), || async {
        Ok(all()
            .iter()
            .any(|s| s["kind"] == 3 && s["parentSpanId"] == consumed_id.as_str())
            .then_some(()))
    })
    .await
    .expect("a statement of the projection under its consume span");

    // Ten requests in a row: ten request spans, each with its phases (no span lost to the
    // filter).
    let mut traces = Vec::new();
    for n in 0..10 {
        let trace = format!("{:032x}", 0x1000 + n);
        create_traced(&base, &token, &trace, "Trace me").await;
        traces.push(trace);
    }
    for trace in &traces {
        collector.spans(trace, "graphql", 1).await;
        collector.spans(trace, "graphql.execute", 1).await;
    }
}

#[tokio::test]
async fn a_batch_of_messages_is_processed_in_a_span_linked_to_each_publication() {
    let collector = Collector::start().await;
    let database_url = create_database().await.unwrap();
    let settings = test_settings(&database_url, &brokers());
    let export = collector.export_env();
    // Tasks are published while no projection runs, so the projection that starts afterwards
    // finds them all waiting and handles them in batches.
    let api = ready_service(&settings, "api,relay", &export).await;
    let token = member_token("u-batcher");
    let base = api.client("").unwrap().base_url().to_owned();
    let traces: Vec<String> = (0..6).map(|n| format!("{:032x}", 0xba7c0 + n)).collect();
    for trace in &traces {
        create_traced(&base, &token, trace, "Batch me").await;
    }
    // Each task's publication, by its trace.
    let mut published = Vec::new();
    for trace in &traces {
        let publish = collector
            .spans_where(trace, &format!("send {}", api_topic(&settings)), 1, |s| {
                s["kind"] == 4
            })
            .await
            .remove(0);
        published.push((
            trace.clone(),
            publish["spanId"].as_str().unwrap().to_owned(),
        ));
    }

    let _projections = ready_service(&settings, "projections", &export).await;
    let batch_name = format!("process {}", api_topic(&settings));
    let batch: Value = eventually(Duration::from_secs(30), || async {
        Ok(collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| {
                s["name"] == batch_name.as_str()
                    && attribute(s, "messaging.consumer.group.name")
                        .and_then(|v| v["stringValue"].as_str())
                        .is_some_and(|group| group.ends_with("chronicle-projections"))
            })
            .cloned())
    })
    .await
    .expect("a batch span of the projections");
    assert_eq!(batch["kind"], 5, "a consumer span");
    let batch_trace = batch["traceId"].as_str().unwrap().to_owned();
    assert!(
        !traces.contains(&batch_trace),
        "the batch has a trace of its own"
    );
    assert!(
        batch["parentSpanId"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{batch}"
    );
    // It links to the publication of every message it handled, and to nothing else.
    let links: Vec<(String, String)> = batch["links"]
        .as_array()
        .unwrap_or_else(|| panic!("no links: {batch}"))
        .iter()
        .map(|l| {
            (
                l["traceId"].as_str().unwrap().to_owned(),
                l["spanId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(links.len() >= 2, "a batch of one is not a batch: {links:?}");
    for link in &links {
        assert!(published.contains(link), "{link:?} is not a publication");
    }
    assert_eq!(
        int_attribute(&batch, "messaging.batch.message_count"),
        Some(links.len() as i64)
    );
    // The batch's work (the projection's statements) is under it, in its trace.
    let batch_id = batch["spanId"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), || async {
        Ok(collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == 3 && s["parentSpanId"] == batch_id.as_str())
            .then_some(()))
    })
    .await
    .expect("a statement of the projection under its batch span");
    // And every message's own trace still shows that the projections received it.
    for (trace, publish_id) in &published {
        collector
            .spans_where(trace, "consume", 1, |s| {
                s["parentSpanId"] == publish_id.as_str()
            })
            .await;
    }
}

#[tokio::test]
async fn a_group_of_appends_runs_in_a_span_linked_to_each_request() {
    let collector = Collector::start().await;
    let database_url = create_database().await.unwrap();
    let settings = test_settings(&database_url, &brokers());
    let service = ready_service(&settings, "api", &collector.export_env()).await;
    let token = member_token("u-grouper");
    let base = service.client("").unwrap().base_url().to_owned();
    // Requests in bursts, each in a trace of its own, until the store has grouped some.
    let group_of = |spans: &[Value]| -> Option<Value> {
        spans
            .iter()
            .find(|s| {
                s["name"] == "append group" && s["links"].as_array().is_some_and(|l| l.len() >= 2)
            })
            .cloned()
    };
    let mut requests = Vec::new();
    let mut group = None;
    for burst in 0..20 {
        let traces: Vec<String> = (0..32)
            .map(|n| format!("{:032x}", 0x96000 + burst * 100 + n))
            .collect();
        futures::future::join_all(
            traces
                .iter()
                .map(|trace| create_traced(&base, &token, trace, "Group me")),
        )
        .await;
        requests.extend(traces);
        tokio::time::sleep(Duration::from_millis(500)).await;
        group = group_of(&collector.spans.lock().unwrap());
        if group.is_some() {
            break;
        }
    }
    let group = group.unwrap_or_else(|| {
        let mut names: Vec<String> = collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| s["name"].to_string())
            .collect();
        names.sort();
        names.dedup();
        panic!("no append group span after 20 bursts of 32 requests; spans: {names:?}")
    });
    let group_trace = group["traceId"].as_str().unwrap().to_owned();
    assert!(!requests.contains(&group_trace), "a trace of its own");
    // Each link names a request span of one of the bursts' traces.
    let links: Vec<(String, String)> = group["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["traceId"].as_str().unwrap().to_owned(),
                l["spanId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (trace, span) in &links {
        assert!(requests.contains(trace), "{trace} is not a request's trace");
        let request = collector.spans(trace, "graphql", 1).await.remove(0);
        assert_eq!(
            request["spanId"],
            span.as_str(),
            "the link names the request span"
        );
    }
    assert_eq!(
        int_attribute(&group, "chronicle.group.commands"),
        Some(links.len() as i64)
    );
    // The group's statement is under it.
    let group_id = group["spanId"].as_str().unwrap().to_owned();
    collector
        .spans_where(&group_trace, "WITH command AS", 1, |s| {
            s["kind"] == 3 && s["parentSpanId"] == group_id.as_str()
        })
        .await;
}

/// The task events' topic the relay publishes to.
fn api_topic(settings: &Settings) -> String {
    Topics::new(settings.kafka.topic_prefix.clone()).events_of("Task")
}

/// One field of a protobuf message, as the wire has it.
#[derive(Debug, Clone)]
enum Wire {
    /// A varint, fixed64 or fixed32.
    Number(u64),
    Bytes(Vec<u8>),
}

/// A protobuf message's fields in order: enough of a decoder to read what the exporter sent
/// without trusting its own encoder.
fn decode(mut bytes: &[u8]) -> Vec<(u64, Wire)> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = bytes[0];
            *bytes = &bytes[1..];
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        value
    }
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes);
        let value = match key & 7 {
            0 => Wire::Number(varint(&mut bytes)),
            1 => {
                let (value, rest) = bytes.split_at(8);
                bytes = rest;
                Wire::Number(u64::from_le_bytes(value.try_into().unwrap()))
            }
            2 => {
                let len = varint(&mut bytes) as usize;
                let (value, rest) = bytes.split_at(len);
                bytes = rest;
                Wire::Bytes(value.to_vec())
            }
            5 => {
                let (value, rest) = bytes.split_at(4);
                bytes = rest;
                Wire::Number(u32::from_le_bytes(value.try_into().unwrap()).into())
            }
            other => panic!("wire type {other}"),
        };
        fields.push((key >> 3, value));
    }
    fields
}

/// The embedded messages (or strings) of field `number`.
fn all(fields: &[(u64, Wire)], number: u64) -> Vec<Vec<u8>> {
    fields
        .iter()
        .filter(|(n, _)| *n == number)
        .filter_map(|(_, value)| match value {
            Wire::Bytes(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

fn text(fields: &[(u64, Wire)], number: u64) -> String {
    all(fields, number)
        .first()
        .map(|bytes| String::from_utf8(bytes.clone()).unwrap())
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `KeyValue`s with string values, as pairs.
fn attributes(fields: &[(u64, Wire)], number: u64) -> Vec<(String, String)> {
    all(fields, number)
        .iter()
        .map(|kv| {
            let kv = decode(kv);
            let value = decode(&all(&kv, 2)[0]);
            (text(&kv, 1), text(&value, 1))
        })
        .collect()
}

/// What a protobuf stand-in collector received: per request its headers, the resource's
/// attributes, and each span's (trace id, parent span id, name, kind).
#[derive(Debug, Clone)]
struct ProtoRequest {
    content_type: String,
    content_encoding: String,
    resource: Vec<(String, String)>,
    spans: Vec<(String, String, String, u64)>,
}

#[tokio::test]
async fn spans_wait_for_their_batch_leave_gzipped_as_protobuf_at_sigterm_and_unsampled_stay() {
    use std::io::Read as _;
    let received: Arc<Mutex<Vec<ProtoRequest>>> = Arc::default();
    let store = received.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let mut raw = Vec::new();
                    flate2::read::GzDecoder::new(&body[..])
                        .read_to_end(&mut raw)
                        .unwrap();
                    let request = decode(&raw);
                    let resource_spans = decode(&all(&request, 1)[0]);
                    let resource = attributes(&decode(&all(&resource_spans, 1)[0]), 1);
                    let scope_spans = decode(&all(&resource_spans, 2)[0]);
                    let spans = all(&scope_spans, 2)
                        .iter()
                        .map(|span| {
                            let span = decode(span);
                            let parent = all(&span, 4).first().map(|p| hex(p)).unwrap_or_default();
                            let kind = span
                                .iter()
                                .find_map(|(n, v)| match (n, v) {
                                    (6, Wire::Number(kind)) => Some(*kind),
                                    _ => None,
                                })
                                .unwrap_or(0);
                            (hex(&all(&span, 1)[0]), parent, text(&span, 5), kind)
                        })
                        .collect();
                    store.lock().unwrap().push(ProtoRequest {
                        content_type: header("content-type"),
                        content_encoding: header("content-encoding"),
                        resource,
                        spans,
                    });
                    ""
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let database_url = create_database().await.unwrap();
    let settings = test_settings(&database_url, &brokers());
    let mut service = ChronicleProcess::serve_logged(
        &settings,
        "api",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_SERVICE_NAME", "chronicle-proto"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test,team=a%2Cb",
            ),
            // Nothing leaves on the schedule: only the shutdown's flush sends the batch.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            // Quiet logs must not silence the traces.
            ("RUST_LOG", "warn"),
        ],
        false,
    )
    .unwrap();
    service.wait_ready(Duration::from_secs(60)).await.unwrap();
    let base = service.client("").unwrap().base_url().to_owned();
    let unsampled_trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    for (trace, flags) in [(CLIENT_TRACE, "01"), (unsampled_trace, "00")] {
        let answer: Value = reqwest::Client::new()
            .post(format!("{base}/graphql"))
            .header("traceparent", format!("00-{trace}-{CLIENT_SPAN}-{flags}"))
            .json(&json!({"query": "{ __typename }"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["data"]["__typename"], "Query", "{answer}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        received.lock().unwrap().is_empty(),
        "spans wait for their batch"
    );

    service.signal("-TERM").unwrap();
    let status = service.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "{status}");
    let requests = received.lock().unwrap().clone();
    assert!(
        !requests.is_empty(),
        "the shutdown flushed the queued spans"
    );
    for request in &requests {
        assert_eq!(request.content_type, "application/x-protobuf");
        assert_eq!(request.content_encoding, "gzip");
        // The resource's attributes, in whatever order the SDK sends them.
        let mut resource = request.resource.clone();
        resource.sort();
        assert_eq!(
            resource,
            vec![
                ("deployment.environment".to_owned(), "test".to_owned()),
                ("service.name".to_owned(), "chronicle-proto".to_owned()),
                ("team".to_owned(), "a,b".to_owned()),
            ]
        );
    }
    let spans: Vec<_> = requests.iter().flat_map(|r| r.spans.clone()).collect();
    assert!(
        spans.contains(&(
            CLIENT_TRACE.to_owned(),
            CLIENT_SPAN.to_owned(),
            "graphql".to_owned(),
            2 // SERVER
        )),
        "{spans:?}"
    );
    assert!(
        spans
            .iter()
            .all(|(trace, _, _, _)| trace != unsampled_trace),
        "the caller's unsampled trace was exported: {spans:?}"
    );
}
