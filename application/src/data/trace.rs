//! W3C trace context (`traceparent`), so one trace follows a change from the HTTP request that
//! made it, through the stored event and its Kafka message, into every consumer that reacts.
//!
//! Each hop continues the caller's trace with a span of its own: the API's request span is the
//! child of the client's `traceparent`, and the traceparent stored with the events (and sent as
//! a Kafka header) names that request span, so consumers' spans become its children.

use std::sync::OnceLock;

/// Which new traces are recorded: OpenTelemetry's samplers (`OTEL_TRACES_SAMPLER`), decided
/// where a trace enters Chronicle and carried onward in the traceparent's `sampled` flag, so
/// every hop of one trace agrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// Follow the caller's `sampled` flag when there is a caller (`parentbased_*`).
    pub parent_based: bool,
    /// Share of traces recorded where the decision is Chronicle's: 1 (`always_on`), 0
    /// (`always_off`), or a ratio (`traceidratio`), by trace id so every service that uses the
    /// same ratio decides alike.
    pub ratio: f64,
}

impl Sampler {
    /// OpenTelemetry's default: `parentbased_always_on`.
    pub const DEFAULT: Self = Self {
        parent_based: true,
        ratio: 1.0,
    };

    /// Whether a trace with `trace_id` is recorded, given its caller's flag if any.
    pub fn sampled(&self, trace_id: &str, parent: Option<bool>) -> bool {
        match parent {
            Some(flag) if self.parent_based => flag,
            _ if self.ratio >= 1.0 => true,
            _ if self.ratio <= 0.0 => false,
            _ => {
                // The trace id's last 16 hex digits, as a fraction of 2^64: random in every
                // trace id W3C allows, so the share recorded is `ratio`.
                let low = trace_id
                    .get(16..32)
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                    .unwrap_or(0);
                (low as f64) < self.ratio * (u64::MAX as f64)
            }
        }
    }
}

static SAMPLER: OnceLock<Sampler> = OnceLock::new();

/// Most links one span carries: OpenTelemetry's default span link limit
/// (`OTEL_SPAN_LINK_COUNT_LIMIT`).
pub const MAX_LINKS: usize = 128;

/// Sets the process's sampler once, at start (later calls are ignored; tests start many
/// services in one process).
pub fn set_sampler(sampler: Sampler) {
    let _ = SAMPLER.set(sampler);
}

fn sampler() -> Sampler {
    SAMPLER.get().copied().unwrap_or(Sampler::DEFAULT)
}

/// One span's place in a trace, as the `traceparent` header carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    sampled: bool,
}

impl TraceContext {
    /// Parses a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`). Invalid values, all-zero
    /// ids and version `ff` are refused, as the W3C recommendation says (the caller then starts
    /// a new trace); later versions are read by their first four fields.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && hex(trace_id, 32)
            && hex(span_id, 16)
            && hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && span_id.bytes().any(|b| b != b'0');
        if !valid {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            parent_span_id: None,
            sampled: flags & 1 == 1,
        })
    }

    /// A span in a new trace (nobody upstream sent one), sampled as the process's sampler
    /// decides.
    pub fn root() -> Self {
        let trace_id = random_hex(32);
        Self {
            sampled: sampler().sampled(&trace_id, None),
            trace_id,
            span_id: random_hex(16),
            parent_span_id: None,
        }
    }

    /// A new span in the same trace whose parent is this one.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: random_hex(16),
            parent_span_id: Some(self.span_id.clone()),
            sampled: self.sampled,
        }
    }

    /// The span of work that continues `header` when it is a valid traceparent, or starts a
    /// new trace otherwise.
    pub fn continue_from(header: Option<&str>) -> Self {
        match header.and_then(Self::parse) {
            None => Self::root(),
            Some(parent) => {
                let mut child = parent.child();
                child.sampled = sampler().sampled(&child.trace_id, Some(parent.sampled));
                child
            }
        }
    }

    /// The span of work done for several messages at once (a consumer's batch): it belongs to
    /// none of their traces, so it starts a trace of its own and links to theirs. Under a
    /// parent-based sampler it is recorded when any of them is, so a sampled message's work is
    /// never lost in an unsampled batch; otherwise the process's sampler decides.
    pub fn linking(linked: &[TraceContext]) -> Self {
        let mut root = Self::root();
        if !linked.is_empty() {
            let any_sampled = linked.iter().any(|context| context.sampled);
            root.sampled = sampler().sampled(&root.trace_id, Some(any_sampled));
        }
        root
    }

    /// The `links` field of a span that works for `linked` (how the exporter learns of a
    /// span's links): their traceparents, space-separated, at most [`MAX_LINKS`], the sampled
    /// ones first, so a span recorded for a sampled trace (see [`TraceContext::linking`])
    /// links to it however many it works for.
    pub fn links_field(linked: &[TraceContext]) -> String {
        let sampled = linked.iter().filter(|context| context.sampled);
        let unsampled = linked.iter().filter(|context| !context.sampled);
        sampled
            .chain(unsampled)
            .take(MAX_LINKS)
            .map(TraceContext::header)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// This span's id: 16 lowercase hex digits.
    pub fn span_id(&self) -> &str {
        &self.span_id
    }

    /// The parent span's id, when this span continues another.
    pub fn parent_span_id(&self) -> Option<&str> {
        self.parent_span_id.as_deref()
    }

    /// Whether the trace is sampled (the caller asked for it to be recorded).
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// The `traceparent` header naming this span as the parent of what follows.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// `len` random lowercase hex digits, every one random, as W3C wants of trace ids (ratio
/// sampling reads the last 16 digits). From the thread's generator, seeded from the system's
/// and reseeded as it goes: a system call per id (a v4 UUID's `getrandom`) was a few µs of
/// kernel time on every request and every consumed message (docs/performance.md).
fn random_hex(len: usize) -> String {
    use rand::RngCore as _;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0_u8; 16];
    let mut hex = String::with_capacity(len + 32);
    let mut random = rand::thread_rng();
    while hex.len() < len {
        random.fill_bytes(&mut bytes);
        for byte in bytes {
            // Two digits pushed by hand: a `format!` per byte was an allocation each, 32 per
            // trace id, on every request (visible in the service's profile).
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
    }
    hex.truncate(len);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_is_continued_in_a_child_span() {
        let parent = TraceContext::parse(EXAMPLE).unwrap();
        assert_eq!(parent.header(), EXAMPLE);
        let child = TraceContext::continue_from(Some(EXAMPLE));
        assert_eq!(child.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(child.parent_span_id(), Some("00f067aa0ba902b7"));
        assert_ne!(child.span_id(), "00f067aa0ba902b7");
        assert!(child.sampled());
        assert!(TraceContext::parse(&child.header()).is_some());
    }

    #[test]
    fn a_batch_starts_its_own_trace_recorded_when_any_linked_message_is() {
        let sampled = TraceContext::parse(EXAMPLE).unwrap();
        let unsampled =
            TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").unwrap();
        let batch = TraceContext::linking(&[unsampled.clone(), sampled.clone()]);
        assert_ne!(batch.trace_id(), sampled.trace_id());
        assert_ne!(batch.trace_id(), unsampled.trace_id());
        assert_eq!(batch.parent_span_id(), None, "a trace of its own");
        assert!(batch.sampled());
        assert!(!TraceContext::linking(&[unsampled.clone(), unsampled.clone()]).sampled());
        // However many it works for, the sampled trace that made it recorded is linked.
        let mut many = vec![unsampled; MAX_LINKS + 10];
        many.push(sampled.clone());
        let links = TraceContext::links_field(&many);
        assert_eq!(links.split(' ').count(), MAX_LINKS);
        assert!(links.starts_with(&sampled.header()), "{links}");
    }

    #[test]
    fn invalid_headers_start_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
            let started = TraceContext::continue_from(Some(bad));
            assert_eq!(started.parent_span_id(), None);
            assert_eq!(started.trace_id().len(), 32);
            assert!(
                TraceContext::parse(&started.header()).is_some(),
                "lowercase hex"
            );
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        let parsed = TraceContext::parse(future).unwrap();
        assert!(!parsed.sampled());
    }

    #[test]
    fn parent_based_sampling_follows_the_caller_and_decides_roots_by_ratio() {
        let sampler = Sampler {
            parent_based: true,
            ratio: 0.5,
        };
        let low = "4bf92f3577b34da60000000000000001";
        let high = "4bf92f3577b34da6ffffffffffffff00";
        assert!(sampler.sampled(high, Some(true)), "the caller's yes");
        assert!(!sampler.sampled(low, Some(false)), "the caller's no");
        assert!(sampler.sampled(low, None));
        assert!(!sampler.sampled(high, None));
        let always_off = Sampler {
            parent_based: false,
            ratio: 0.0,
        };
        assert!(!always_off.sampled(low, Some(true)), "not parent based");
        assert!(Sampler::DEFAULT.sampled(high, None));
        // About half of random trace ids at 0.5.
        let recorded = (0..2000)
            .filter(|_| sampler.sampled(&random_hex(32), None))
            .count();
        assert!((800..1200).contains(&recorded), "{recorded}");
    }
}
