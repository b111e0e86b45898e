//! An `ExportTraceServiceRequest` (opentelemetry-proto's `collector/trace/v1`) in either of
//! OTLP/HTTP's encodings: protobuf, written by hand (six messages, a handful of fields each;
//! a code generator and its runtime would cost more than they save), and JSON (ids as hex,
//! 64-bit times as strings, as the OTLP specification's JSON mapping says).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::span::FinishedSpan;

/// `Status.code` of a failed span (`STATUS_CODE_ERROR`).
const STATUS_CODE_ERROR: u64 = 2;
/// The instrumentation scope every span is reported under.
const SCOPE: &str = "chronicle";

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The request in OTLP's JSON encoding.
pub fn json(resource: &[(String, String)], spans: &[FinishedSpan]) -> Value {
    let attributes = |pairs: &[(String, String)]| -> Vec<Value> {
        pairs
            .iter()
            .map(|(key, value)| json!({"key": key, "value": {"stringValue": value}}))
            .collect()
    };
    let spans: Vec<Value> = spans
        .iter()
        .map(|span| {
            let mut value = json!({
                "traceId": span.trace_id,
                "spanId": span.span_id,
                "name": span.name,
                "kind": span.kind,
                "startTimeUnixNano": nanos(span.start).to_string(),
                "endTimeUnixNano": nanos(span.end).to_string(),
                "attributes": attributes(&span.attributes),
            });
            if let Some(parent) = &span.parent_span_id {
                value["parentSpanId"] = json!(parent);
            }
            if let Some(state) = &span.trace_state {
                value["traceState"] = json!(state);
            }
            if span.error {
                value["status"] = json!({"code": STATUS_CODE_ERROR});
            }
            value
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": attributes(resource)},
        "scopeSpans": [{"scope": {"name": SCOPE}, "spans": spans}],
    }]})
}

/// The request in protobuf.
pub fn protobuf(resource: &[(String, String)], spans: &[FinishedSpan]) -> Vec<u8> {
    let mut request = Proto::default();
    // ExportTraceServiceRequest.resource_spans = 1
    request.message(1, |resource_spans| {
        // ResourceSpans.resource = 1: Resource.attributes = 1
        resource_spans.message(1, |r| {
            for (key, value) in resource {
                r.message(1, |kv| key_value(kv, key, value));
            }
        });
        // ResourceSpans.scope_spans = 2
        resource_spans.message(2, |scope_spans| {
            // ScopeSpans.scope = 1: InstrumentationScope.name = 1
            scope_spans.message(1, |scope| scope.string(1, SCOPE));
            for span in spans {
                // ScopeSpans.spans = 2
                scope_spans.message(2, |s| encode_span(s, span));
            }
        });
    });
    request.0
}

fn encode_span(s: &mut Proto, span: &FinishedSpan) {
    s.bytes(1, &hex_bytes(&span.trace_id));
    s.bytes(2, &hex_bytes(&span.span_id));
    if let Some(state) = &span.trace_state {
        s.string(3, state);
    }
    if let Some(parent) = &span.parent_span_id {
        s.bytes(4, &hex_bytes(parent));
    }
    s.string(5, span.name);
    s.uint(6, u64::from(span.kind));
    s.fixed64(7, nanos(span.start));
    s.fixed64(8, nanos(span.end));
    for (key, value) in &span.attributes {
        s.message(9, |kv| key_value(kv, key, value));
    }
    if span.error {
        // Span.status = 15: Status.code = 3
        s.message(15, |status| status.uint(3, STATUS_CODE_ERROR));
    }
}

/// `KeyValue { key = 1, value = 2: AnyValue { string_value = 1 } }`.
fn key_value(kv: &mut Proto, key: &str, value: &str) {
    kv.string(1, key);
    kv.message(2, |any| any.string(1, value));
}

/// Lowercase hex as bytes; ids are checked hex where they are made (`application::trace`).
fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// A protobuf message being written: fields in order, each a key (field number and wire type)
/// and its value.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    const VARINT: u32 = 0;
    const FIXED64: u32 = 1;
    const LENGTH_DELIMITED: u32 = 2;

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u32, wire_type: u32) {
        self.varint(u64::from(field << 3 | wire_type));
    }

    /// A non-zero integer (zero is the default, which protobuf leaves out).
    fn uint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, Self::VARINT);
            self.varint(value);
        }
    }

    fn fixed64(&mut self, field: u32, value: u64) {
        self.key(field, Self::FIXED64);
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn bytes(&mut self, field: u32, value: &[u8]) {
        if !value.is_empty() {
            self.key(field, Self::LENGTH_DELIMITED);
            self.varint(value.len() as u64);
            self.0.extend_from_slice(value);
        }
    }

    fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    /// An embedded message, written by `write` (kept even when empty: its presence is data).
    fn message(&mut self, field: u32, write: impl FnOnce(&mut Proto)) {
        let mut inner = Proto::default();
        write(&mut inner);
        self.key(field, Self::LENGTH_DELIMITED);
        self.varint(inner.0.len() as u64);
        self.0.extend_from_slice(&inner.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn span() -> FinishedSpan {
        let start = UNIX_EPOCH + Duration::from_millis(1_500);
        FinishedSpan {
            name: "graphql",
            kind: 2,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: Some("1111111111111111".into()),
            trace_state: Some("vendor=x".into()),
            start,
            end: start + Duration::from_millis(2),
            attributes: vec![("request_id".into(), "r-1".into())],
            error: true,
        }
    }

    fn resource() -> Vec<(String, String)> {
        vec![("service.name".into(), "chronicle".into())]
    }

    #[test]
    fn json_has_hex_ids_string_times_state_and_status() {
        let body = json(&resource(), &[span()]);
        let resource = &body["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0]["value"]["stringValue"],
            "chronicle"
        );
        let encoded = &resource["scopeSpans"][0]["spans"][0];
        assert_eq!(encoded["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(encoded["parentSpanId"], "1111111111111111");
        assert_eq!(encoded["traceState"], "vendor=x");
        assert_eq!(encoded["kind"], 2);
        assert_eq!(encoded["startTimeUnixNano"], "1500000000");
        assert_eq!(encoded["endTimeUnixNano"], "1502000000");
        assert_eq!(encoded["attributes"][0]["key"], "request_id");
        assert_eq!(encoded["status"]["code"], 2);
    }

    #[test]
    fn varints_and_keys_are_protobufs() {
        let mut proto = Proto::default();
        proto.uint(1, 150);
        assert_eq!(
            proto.0,
            [0x08, 0x96, 0x01],
            "the specification's own example"
        );
        let mut kv = Proto::default();
        key_value(&mut kv, "a", "b");
        assert_eq!(kv.0, [0x0a, 0x01, b'a', 0x12, 0x03, 0x0a, 0x01, b'b']);
    }

    #[test]
    fn a_span_is_encoded_field_by_field() {
        let mut encoded = Proto::default();
        encode_span(&mut encoded, &span());
        let mut expected = vec![0x0a, 16];
        expected.extend(hex_bytes("4bf92f3577b34da6a3ce929d0e0e4736"));
        expected.extend([0x12, 8]);
        expected.extend(hex_bytes("00f067aa0ba902b7"));
        expected.extend([0x1a, 8]);
        expected.extend(b"vendor=x");
        expected.extend([0x22, 8]);
        expected.extend([0x11; 8]);
        expected.extend([0x2a, 7]);
        expected.extend(b"graphql");
        expected.extend([0x30, 2]); // kind: SERVER
        expected.push(0x39); // field 7, fixed64
        expected.extend(1_500_000_000u64.to_le_bytes());
        expected.push(0x41); // field 8, fixed64
        expected.extend(1_502_000_000u64.to_le_bytes());
        expected.extend([0x4a, 19, 0x0a, 10]);
        expected.extend(b"request_id");
        expected.extend([0x12, 5, 0x0a, 3]);
        expected.extend(b"r-1");
        expected.extend([0x7a, 2, 0x18, 2]); // status { code: ERROR }
        assert_eq!(encoded.0, expected);
    }

    #[test]
    fn the_request_nests_resource_scope_and_spans() {
        let body = protobuf(&resource(), &[span()]);
        // resource_spans (1) > resource (1) > attributes (1) > key "service.name"
        assert_eq!(&body[..1], [0x0a]);
        let resource_at = body.windows(12).position(|w| w == b"service.name").unwrap();
        let scope_at = body.windows(9).position(|w| w == b"chronicle").unwrap();
        assert!(scope_at > resource_at);
        assert!(body.windows(7).any(|w| w == b"graphql"));
    }
}
