//! The span pipeline behind the layer: OpenTelemetry's batch span processor and OTLP/HTTP
//! exporter (the `opentelemetry_sdk` and `opentelemetry-otlp` crates), fed Chronicle's finished
//! spans and configured from Chronicle's reading of the `OTEL_*` variables ([`super::settings`]).
//!
//! The processor batches on a thread of its own and drops spans when its queue is full, so
//! nothing here ever makes a request wait. Its exports go through Chronicle's own HTTP client
//! ([`TokioHttpClient`]): one TLS stack in the binary, and the collector's CA and client
//! certificate (`OTEL_EXPORTER_OTLP_CERTIFICATE`, `..._CLIENT_CERTIFICATE`, `..._CLIENT_KEY`),
//! which the OTLP crate does not read, still apply.

use chronicle_application::error_chain::Chain;
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanExporter, SpanProcessor as _,
};
use opentelemetry_sdk::Resource;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::settings::{Compression, OtlpSettings, Protocol};

/// Why the span pipeline could not be built.
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
    /// The OTLP exporter refused its settings.
    #[error("the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// The batch processor that exports to the settings' collector; it must be built inside the
/// Tokio runtime, whose handle its HTTP client keeps.
pub(crate) fn processor(settings: &OtlpSettings) -> Result<BatchSpanProcessor, ExporterError> {
    let client = TokioHttpClient {
        client: http_client(settings)?,
        runtime: tokio::runtime::Handle::current(),
    };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(settings.traces_url.clone())
        .with_protocol(match settings.protocol {
            Protocol::Protobuf => opentelemetry_otlp::Protocol::HttpBinary,
            Protocol::Json => opentelemetry_otlp::Protocol::HttpJson,
        })
        .with_timeout(settings.timeout);
    if settings.compression == Compression::Gzip {
        exporter = exporter.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    let exporter = Counted(exporter.build().map_err(ExporterError::Exporter)?);
    let batch = &settings.batch;
    let mut processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(batch.schedule_delay)
                .with_max_queue_size(batch.max_queue)
                .with_max_export_batch_size(batch.max_batch)
                .build(),
        )
        .build();
    processor.set_resource(
        &Resource::builder_empty()
            .with_attributes(
                settings
                    .resource
                    .iter()
                    .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
            )
            .build(),
    );
    Ok(processor)
}

/// Chronicle's HTTP client with the settings' headers (checked here, so a bad one stops the
/// start rather than being left out) and TLS material.
fn http_client(settings: &OtlpSettings) -> Result<reqwest::Client, ExporterError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &settings.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ExporterError::Header(name.clone()))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| ExporterError::Header(name.to_string()))?;
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
    builder.build().map_err(ExporterError::Client)
}

/// The exporter's HTTP client: Chronicle's reqwest client, its requests run on the service's
/// Tokio runtime and awaited from the processor's own thread (which has no runtime).
#[derive(Debug)]
struct TokioHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for TokioHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let request = reqwest::Request::try_from(request)?;
        self.runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                let mut answer = Response::builder().status(status).body(body)?;
                *answer.headers_mut() = headers;
                Ok::<_, HttpError>(answer)
            })
            .await?
    }
}

/// The OTLP exporter, counting what it delivered and what it gave up on
/// (`chronicle_otlp_spans_exported_total`, `chronicle_otlp_spans_dropped_total`).
#[derive(Debug)]
struct Counted<E>(E);

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let outcome = self.0.export(batch).await;
        match &outcome {
            Ok(()) => metrics::counter!("chronicle_otlp_spans_exported_total").increment(spans),
            Err(error) => {
                tracing::warn!(spans, error = %Chain(error), "the OTLP collector did not take spans; dropped");
                metrics::counter!("chronicle_otlp_spans_dropped_total").increment(spans);
            }
        }
        outcome
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use axum::http::StatusCode;
    use axum::routing::post;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
    use opentelemetry::InstrumentationScope;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks, SpanProcessor as _};

    use super::*;
    use crate::telemetry::otlp::settings::BatchSettings;

    /// A collector answering 503 to its first `failures` posts, then 200; counts the posts and
    /// keeps the names of the spans it took (JSON).
    async fn flaky_collector(
        failures: usize,
    ) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let posts = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(Mutex::new(Vec::new()));
        let (counter, taken) = (posts.clone(), names.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: axum::Json<serde_json::Value>| {
                let (counter, taken) = (counter.clone(), taken.clone());
                async move {
                    if counter.fetch_add(1, Ordering::SeqCst) < failures {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let spans = &body["resourceSpans"][0]["scopeSpans"][0]["spans"];
                    for span in spans.as_array().into_iter().flatten() {
                        let name = span["name"].as_str().unwrap_or_default().to_owned();
                        taken.lock().unwrap().push(name);
                    }
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, posts, names)
    }

    fn settings(url: String) -> OtlpSettings {
        OtlpSettings {
            traces_url: url,
            protocol: Protocol::Json,
            compression: Compression::None,
            headers: vec![("x-api-key".into(), "k".into())],
            timeout: Duration::from_secs(5),
            certificate: None,
            client_identity: None,
            resource: vec![("service.name".into(), "test".into())],
            batch: BatchSettings {
                schedule_delay: Duration::from_secs(3600),
                max_queue: 16,
                max_batch: 8,
                export_timeout: Duration::from_secs(10),
            },
        }
    }

    fn span(name: &'static str) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
                SpanId::from(0x00f0_67aa_0ba9_02b7),
                TraceFlags::SAMPLED,
                false,
                Default::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_wait_for_the_flush_and_an_unavailable_collector_is_retried_until_it_takes_them()
    {
        let (url, posts, names) = flaky_collector(2).await;
        let processor = Arc::new(processor(&settings(url)).unwrap());
        processor.on_end(span("one"));
        processor.on_end(span("two"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(posts.load(Ordering::SeqCst), 0, "they wait for their batch");
        let flushing = processor.clone();
        let flushed = tokio::task::spawn_blocking(move || flushing.force_flush())
            .await
            .unwrap();
        assert!(flushed.is_ok(), "{flushed:?}");
        assert_eq!(posts.load(Ordering::SeqCst), 3, "two refusals, then taken");
        assert_eq!(*names.lock().unwrap(), vec!["one", "two"]);
    }
}
