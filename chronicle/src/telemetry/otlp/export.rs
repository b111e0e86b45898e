//! The batch exporter: a task that takes finished spans from a bounded queue, posts them in
//! batches, retries what the collector could not take yet, and empties the queue when asked
//! (at shutdown). Nothing here ever makes a request wait: the layer only `try_send`s.

use std::io::Write as _;
use std::time::Duration;

use chronicle_application::error_chain::Chain;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::encode;
use super::settings::{Compression, OtlpSettings, Protocol};
use super::span::FinishedSpan;

/// The first wait before a retry; each later one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A request to export everything queued so far, answered when done.
pub(crate) type FlushRequest = oneshot::Sender<()>;

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExporterError {
    /// A certificate or key file could not be read or parsed.
    #[error("{what} {path:?}: {message}")]
    Credentials {
        /// Which file.
        what: &'static str,
        /// Where.
        path: String,
        /// Why.
        message: String,
    },
    /// A header name or value is not valid in HTTP.
    #[error("OTEL_EXPORTER_OTLP_HEADERS: {0:?} is not a valid header")]
    Header(String),
    /// The HTTP client could not be built.
    #[error("the OTLP HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Posts spans to the collector.
pub(crate) struct Exporter {
    settings: OtlpSettings,
    client: reqwest::Client,
}

/// What came of one attempt to post a batch.
enum Attempt {
    Sent,
    /// Worth trying again (HTTP 429, 502, 503, 504, or the collector was unreachable), after
    /// the collector's `Retry-After` when it gave one.
    Retry(String, Option<Duration>),
    /// Refused for good (another HTTP status): retrying would be refused again.
    Refused(String),
}

impl Exporter {
    /// An exporter with the settings' TLS material, headers and timeout.
    pub fn new(settings: OtlpSettings) -> Result<Self, ExporterError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &settings.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ExporterError::Header(name.clone()))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| ExporterError::Header(name.to_string()))?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .default_headers(headers);
        let read = |what: &'static str, path: &str| {
            std::fs::read(path).map_err(|e| ExporterError::Credentials {
                what,
                path: path.to_owned(),
                message: e.to_string(),
            })
        };
        if let Some(path) = &settings.certificate {
            let pem = read("OTEL_EXPORTER_OTLP_CERTIFICATE", path)?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ExporterError::Credentials {
                    what: "OTEL_EXPORTER_OTLP_CERTIFICATE",
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some((cert_path, key_path)) = &settings.client_identity {
            let cert = read("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert_path)?;
            let key = read("OTEL_EXPORTER_OTLP_CLIENT_KEY", key_path)?;
            let identity = reqwest::Identity::from_pkcs8_pem(&cert, &key).map_err(|e| {
                ExporterError::Credentials {
                    what: "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                    path: key_path.clone(),
                    message: e.to_string(),
                }
            })?;
            builder = builder.identity(identity);
        }
        Ok(Self {
            client: builder.build().map_err(ExporterError::Client)?,
            settings,
        })
    }

    /// Exports until the queue's senders are gone: a batch leaves when it is full or its first
    /// span waited the schedule delay; a flush request exports everything queued first.
    pub async fn run(
        self,
        mut spans: mpsc::Receiver<FinishedSpan>,
        mut flushes: mpsc::Receiver<FlushRequest>,
    ) {
        let batch_settings = self.settings.batch.clone();
        let mut batch: Vec<FinishedSpan> = Vec::with_capacity(batch_settings.max_batch);
        let mut deadline: Option<Instant> = None;
        loop {
            let due = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some(done) = flushes.recv() => {
                    while let Ok(span) = spans.try_recv() {
                        batch.push(span);
                    }
                    for chunk in batch.chunks(batch_settings.max_batch) {
                        self.export(chunk).await;
                    }
                    batch.clear();
                    deadline = None;
                    let _ = done.send(());
                }
                () = due => {
                    self.export(&batch).await;
                    batch.clear();
                    deadline = None;
                }
                span = spans.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        deadline.get_or_insert_with(|| Instant::now() + batch_settings.schedule_delay);
                        if batch.len() >= batch_settings.max_batch {
                            self.export(&batch).await;
                            batch.clear();
                            deadline = None;
                        }
                    }
                    None => {
                        self.export(&batch).await;
                        return;
                    }
                },
            }
        }
    }

    /// Posts one batch, retrying with backoff within the export timeout; spans that cannot be
    /// delivered are counted as dropped.
    async fn export(&self, spans: &[FinishedSpan]) {
        if spans.is_empty() {
            return;
        }
        let body = match self.body(spans) {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "cannot compress spans; dropped");
                return dropped(spans.len());
            }
        };
        let give_up = Instant::now() + self.settings.batch.export_timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let reason = match self.attempt(body.clone()).await {
                Attempt::Sent => {
                    metrics::counter!("chronicle_otlp_spans_exported_total")
                        .increment(spans.len() as u64);
                    return;
                }
                Attempt::Refused(reason) => {
                    tracing::warn!(url = %self.settings.traces_url, spans = spans.len(), %reason, "the OTLP collector refused spans; dropped");
                    return dropped(spans.len());
                }
                Attempt::Retry(reason, after) => {
                    let wait = after.unwrap_or(backoff);
                    if Instant::now() + wait < give_up {
                        tokio::time::sleep(wait).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                    reason
                }
            };
            tracing::warn!(url = %self.settings.traces_url, spans = spans.len(), %reason, "the OTLP collector could not take spans in time; dropped");
            return dropped(spans.len());
        }
    }

    fn body(&self, spans: &[FinishedSpan]) -> std::io::Result<Vec<u8>> {
        let resource = &self.settings.resource;
        let encoded = match self.settings.protocol {
            Protocol::Protobuf => encode::protobuf(resource, spans),
            Protocol::Json => encode::json(resource, spans).to_string().into_bytes(),
        };
        match self.settings.compression {
            Compression::None => Ok(encoded),
            Compression::Gzip => {
                let mut gzip =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gzip.write_all(&encoded)?;
                gzip.finish()
            }
        }
    }

    async fn attempt(&self, body: Vec<u8>) -> Attempt {
        let content_type = match self.settings.protocol {
            Protocol::Protobuf => "application/x-protobuf",
            Protocol::Json => "application/json",
        };
        let mut request = self
            .client
            .post(&self.settings.traces_url)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        if self.settings.compression == Compression::Gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Attempt::Sent,
            Ok(response) => {
                let status = response.status();
                let after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.trim().parse().ok())
                    .map(Duration::from_secs);
                let reason = format!("HTTP {status}");
                match status {
                    StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT => Attempt::Retry(reason, after),
                    _ => Attempt::Refused(reason),
                }
            }
            Err(error) => Attempt::Retry(Chain(&error).to_string(), None),
        }
    }
}

fn dropped(spans: usize) {
    metrics::counter!("chronicle_otlp_spans_dropped_total").increment(spans as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::otlp::settings::BatchSettings;
    use axum::http::StatusCode as AxumStatus;
    use axum::routing::post;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn span(name: &'static str) -> FinishedSpan {
        FinishedSpan {
            name,
            kind: 1,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: None,
            trace_state: None,
            start: UNIX_EPOCH,
            end: SystemTime::now(),
            attributes: Vec::new(),
            error: false,
        }
    }

    /// A collector answering 503 to its first `failures` posts, then 200; counts posts and
    /// the spans' names it took (JSON).
    async fn flaky_collector(
        failures: usize,
    ) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
        let posts = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (counter, taken) = (posts.clone(), names.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: axum::Json<serde_json::Value>| {
                let (counter, taken) = (counter.clone(), taken.clone());
                async move {
                    if counter.fetch_add(1, Ordering::SeqCst) < failures {
                        return AxumStatus::SERVICE_UNAVAILABLE;
                    }
                    let spans = &body["resourceSpans"][0]["scopeSpans"][0]["spans"];
                    for span in spans.as_array().into_iter().flatten() {
                        taken
                            .lock()
                            .unwrap()
                            .push(span["name"].as_str().unwrap().to_owned());
                    }
                    AxumStatus::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, posts, names)
    }

    fn settings(url: String, schedule_delay: Duration) -> OtlpSettings {
        OtlpSettings {
            traces_url: url,
            protocol: Protocol::Json,
            compression: Compression::None,
            headers: vec![("x-api-key".into(), "k".into())],
            timeout: Duration::from_secs(2),
            certificate: None,
            client_identity: None,
            resource: vec![("service.name".into(), "test".into())],
            batch: BatchSettings {
                schedule_delay,
                max_queue: 16,
                max_batch: 2,
                export_timeout: Duration::from_secs(10),
            },
        }
    }

    #[tokio::test]
    async fn an_unavailable_collector_is_retried_until_it_takes_the_batch() {
        let (url, posts, names) = flaky_collector(2).await;
        let exporter = Exporter::new(settings(url, Duration::from_secs(60))).unwrap();
        exporter.export(&[span("a")]).await;
        assert_eq!(posts.load(Ordering::SeqCst), 3);
        assert_eq!(*names.lock().unwrap(), vec!["a"]);
    }

    #[tokio::test]
    async fn a_flush_exports_what_waits_for_its_batch_in_full_batches() {
        let (url, posts, names) = flaky_collector(0).await;
        let exporter = Exporter::new(settings(url, Duration::from_secs(3600))).unwrap();
        let (span_tx, span_rx) = mpsc::channel(16);
        let (flush_tx, flush_rx) = mpsc::channel(1);
        let task = tokio::spawn(exporter.run(span_rx, flush_rx));
        span_tx.send(span("one")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(posts.load(Ordering::SeqCst), 0, "waits for its batch");
        for name in ["two", "three"] {
            span_tx.try_send(span(name)).unwrap();
        }
        let (done, flushed) = oneshot::channel();
        flush_tx.send(done).await.unwrap();
        flushed.await.unwrap();
        // "one" and "two" filled a batch of two as soon as "two" arrived or at the flush;
        // "three" left at the flush.
        assert_eq!(*names.lock().unwrap(), vec!["one", "two", "three"]);
        assert_eq!(posts.load(Ordering::SeqCst), 2);
        drop(span_tx);
        task.await.unwrap();
    }
}
