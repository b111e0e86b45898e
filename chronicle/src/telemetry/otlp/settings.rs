//! The exporter's settings, from OpenTelemetry's standard environment variables (the SDK
//! specification's names and defaults), so a deployment configures Chronicle as it configures
//! any other instrumented service.

use std::time::Duration;

use chronicle_application::data::trace::Sampler;
use chronicle_infrastructure::config::{var, ConfigError};

/// How spans are encoded on the wire (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`: the specification's default, and every collector's.
    Protobuf,
    /// `http/json`.
    Json,
}

/// How request bodies are compressed (`OTEL_EXPORTER_OTLP_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// `none`.
    None,
    /// `gzip`.
    Gzip,
}

/// The batch span processor's settings (`OTEL_BSP_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchSettings {
    /// Longest a span waits for its batch (`OTEL_BSP_SCHEDULE_DELAY`, ms).
    pub schedule_delay: Duration,
    /// Spans queued at most; beyond, new spans are dropped, never waited for
    /// (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub max_queue: usize,
    /// Spans per request at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub max_batch: usize,
    /// Longest one batch's export may take, retries included (`OTEL_BSP_EXPORT_TIMEOUT`, ms).
    pub export_timeout: Duration,
}

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OtlpSettings {
    /// The traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`.
    pub traces_url: String,
    /// Wire encoding.
    pub protocol: Protocol,
    /// Body compression.
    pub compression: Compression,
    /// Request headers (`OTEL_EXPORTER_OTLP_HEADERS`: `k=v,k2=v2`, values percent-decoded),
    /// for collectors that want a key.
    pub headers: Vec<(String, String)>,
    /// Longest one request may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, ms).
    pub timeout: Duration,
    /// A PEM file of CAs the collector's certificate is checked against
    /// (`OTEL_EXPORTER_OTLP_CERTIFICATE`; the system's roots otherwise).
    pub certificate: Option<String>,
    /// A client certificate and PKCS#8 key, PEM (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`,
    /// `OTEL_EXPORTER_OTLP_CLIENT_KEY`), for collectors that ask for one.
    pub client_identity: Option<(String, String)>,
    /// The resource's attributes: `OTEL_RESOURCE_ATTRIBUTES`, with `service.name` from
    /// `OTEL_SERVICE_NAME` (default `chronicle`).
    pub resource: Vec<(String, String)>,
    /// Batching.
    pub batch: BatchSettings,
}

/// Reads OpenTelemetry's variables with `lookup` (the environment, or a test's table).
pub(crate) struct OtelEnv<F: Fn(&'static str) -> Option<String>> {
    lookup: F,
}

impl OtelEnv<fn(&'static str) -> Option<String>> {
    /// The process's environment.
    pub fn process() -> Self {
        Self { lookup: var }
    }
}

impl<F: Fn(&'static str) -> Option<String>> OtelEnv<F> {
    /// Variables read through `lookup` (tests give a map).
    #[cfg(test)]
    pub(crate) fn new(lookup: F) -> Self {
        Self { lookup }
    }

    fn get(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.trim().is_empty())
    }

    /// The traces-specific variable when set, else the general one.
    fn either(
        &self,
        traces: &'static str,
        general: &'static str,
    ) -> Option<(&'static str, String)> {
        self.get(traces)
            .map(|value| (traces, value))
            .or_else(|| self.get(general).map(|value| (general, value)))
    }

    fn number(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|e| ConfigError {
                variable: name,
                message: format!("cannot parse {raw:?}: {e}"),
            }),
        }
    }

    /// The sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`); it applies whether or
    /// not spans are exported, since it decides the `sampled` flag passed on to others.
    pub fn sampler(&self) -> Result<Sampler, ConfigError> {
        let ratio = || -> Result<f64, ConfigError> {
            let Some(raw) = self.get("OTEL_TRACES_SAMPLER_ARG") else {
                return Ok(1.0);
            };
            match raw.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
                _ => Err(ConfigError {
                    variable: "OTEL_TRACES_SAMPLER_ARG",
                    message: format!("{raw:?} is not a ratio from 0 to 1"),
                }),
            }
        };
        let sampler = self
            .get("OTEL_TRACES_SAMPLER")
            .unwrap_or_else(|| "parentbased_always_on".to_owned());
        let (parent_based, ratio) = match sampler.trim() {
            "always_on" => (false, 1.0),
            "always_off" => (false, 0.0),
            "traceidratio" => (false, ratio()?),
            "parentbased_always_on" => (true, 1.0),
            "parentbased_always_off" => (true, 0.0),
            "parentbased_traceidratio" => (true, ratio()?),
            other => {
                return Err(ConfigError {
                    variable: "OTEL_TRACES_SAMPLER",
                    message: format!(
                        "{other:?} is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
                    ),
                })
            }
        };
        Ok(Sampler {
            parent_based,
            ratio,
        })
    }

    /// The exporter's settings; `None` when nothing is to be exported (no endpoint,
    /// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`).
    pub fn exporter(&self) -> Result<Option<OtlpSettings>, ConfigError> {
        let disabled = self
            .get("OTEL_SDK_DISABLED")
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
        let exporter = self.get("OTEL_TRACES_EXPORTER");
        match exporter.as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(ConfigError {
                    variable: "OTEL_TRACES_EXPORTER",
                    message: format!("{other:?}: only otlp (or none) is built in"),
                })
            }
        }
        let traces_url = match (
            self.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            self.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _) => url.trim().to_owned(),
            (None, Some(base)) => format!("{}/v1/traces", base.trim().trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        if disabled {
            return Ok(None);
        }
        let protocol = match self.either(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            None => Protocol::Protobuf,
            Some((variable, value)) => match value.trim() {
                "http/protobuf" => Protocol::Protobuf,
                "http/json" => Protocol::Json,
                other => {
                    return Err(ConfigError {
                        variable,
                        message: format!("{other:?}: use http/protobuf or http/json (OTLP over gRPC is not built in; collectors take both on port 4318)"),
                    })
                }
            },
        };
        let compression = match self.either(
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ) {
            None => Compression::None,
            Some((variable, value)) => match value.trim() {
                "none" => Compression::None,
                "gzip" => Compression::Gzip,
                other => {
                    return Err(ConfigError {
                        variable,
                        message: format!("{other:?}: use gzip or none"),
                    })
                }
            },
        };
        let headers = match self.either(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            None => Vec::new(),
            Some((variable, raw)) => key_values(variable, &raw)?,
        };
        let timeout = match self.either(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            None => Duration::from_millis(10_000),
            Some((variable, raw)) => {
                Duration::from_millis(raw.trim().parse().map_err(|e| ConfigError {
                    variable,
                    message: format!("cannot parse {raw:?} as milliseconds: {e}"),
                })?)
            }
        };
        let mut resource = match self.get("OTEL_RESOURCE_ATTRIBUTES") {
            None => Vec::new(),
            Some(raw) => key_values("OTEL_RESOURCE_ATTRIBUTES", &raw)?,
        };
        // OTEL_SERVICE_NAME wins over a service.name among the resource attributes.
        let service_name = self.get("OTEL_SERVICE_NAME").or_else(|| {
            resource
                .iter()
                .find(|(key, _)| key == "service.name")
                .map(|(_, value)| value.clone())
        });
        resource.retain(|(key, _)| key != "service.name");
        resource.insert(
            0,
            (
                "service.name".to_owned(),
                service_name.unwrap_or_else(|| "chronicle".to_owned()),
            ),
        );
        let client_identity = match (
            self.either(
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            ),
            self.either("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        ) {
            (Some((_, cert)), Some((_, key))) => Some((cert, key)),
            (None, None) => None,
            (Some((variable, _)), None) | (None, Some((variable, _))) => {
                return Err(ConfigError {
                    variable,
                    message: "a client certificate needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY".to_owned(),
                })
            }
        };
        let batch = BatchSettings {
            schedule_delay: Duration::from_millis(self.number("OTEL_BSP_SCHEDULE_DELAY", 5000)?),
            max_queue: self.number("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?.max(1) as usize,
            max_batch: self.number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.max(1) as usize,
            export_timeout: Duration::from_millis(self.number("OTEL_BSP_EXPORT_TIMEOUT", 30000)?),
        };
        Ok(Some(OtlpSettings {
            traces_url,
            protocol,
            compression,
            headers,
            timeout,
            certificate: self
                .either(
                    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                    "OTEL_EXPORTER_OTLP_CERTIFICATE",
                )
                .map(|(_, path)| path.trim().to_owned()),
            client_identity,
            resource,
            batch,
        }))
    }
}

/// `k=v,k2=v2` as the specification writes headers and resource attributes: keys and values
/// trimmed, values percent-decoded (so a value may hold `,` or `=` as `%2C`, `%3D`).
fn key_values(variable: &'static str, raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    raw.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').ok_or_else(|| ConfigError {
                variable,
                message: format!("{pair:?} is not key=value"),
            })?;
            let value = percent_decode(value.trim()).ok_or_else(|| ConfigError {
                variable,
                message: format!(
                    "the value of {:?} is not valid percent-encoded UTF-8",
                    key.trim()
                ),
            })?;
            Ok((key.trim().to_owned(), value))
        })
        .collect()
}

/// `%XX` sequences decoded; `None` for a malformed sequence or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &str)]) -> OtelEnv<impl Fn(&'static str) -> Option<String>> {
        let pairs: Vec<(&'static str, String)> =
            pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        OtelEnv::new(move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        })
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint_or_when_disabled() {
        assert_eq!(env(&[]).exporter().unwrap(), None);
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert!(env(&[endpoint]).exporter().unwrap().is_some());
        assert_eq!(
            env(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")])
                .exporter()
                .unwrap(),
            None
        );
        assert_eq!(
            env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])
                .exporter()
                .unwrap(),
            None
        );
    }

    #[test]
    fn defaults_are_the_specifications() {
        let settings = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318/")])
            .exporter()
            .unwrap()
            .unwrap();
        assert_eq!(settings.traces_url, "https://collector:4318/v1/traces");
        assert_eq!(settings.protocol, Protocol::Protobuf);
        assert_eq!(settings.compression, Compression::None);
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(
            settings.resource,
            vec![("service.name".to_owned(), "chronicle".to_owned())]
        );
        assert_eq!(
            settings.batch,
            BatchSettings {
                schedule_delay: Duration::from_secs(5),
                max_queue: 2048,
                max_batch: 512,
                export_timeout: Duration::from_secs(30),
            }
        );
        assert_eq!(env(&[]).sampler().unwrap(), Sampler::DEFAULT);
    }

    #[test]
    fn traces_specific_variables_win_and_values_are_percent_decoded() {
        let settings = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:4318/custom/path",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=a%2Cb%3Dc, x-tenant = blue ",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=ignored,team=a%20b",
            ),
            ("OTEL_SERVICE_NAME", "chronicle-eu"),
        ])
        .exporter()
        .unwrap()
        .unwrap();
        assert_eq!(settings.traces_url, "http://traces:4318/custom/path");
        assert_eq!(settings.protocol, Protocol::Protobuf);
        assert_eq!(settings.compression, Compression::Gzip);
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            settings.headers,
            pairs(&[("api-key", "a,b=c"), ("x-tenant", "blue")])
        );
        assert_eq!(
            settings.resource,
            pairs(&[
                ("service.name", "chronicle-eu"),
                ("deployment.environment", "prod"),
                ("team", "a b"),
            ])
        );
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        for (pair, variable) in [
            (
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd"),
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            ),
            (
                ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals"),
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                ("OTEL_RESOURCE_ATTRIBUTES", "a=%zz"),
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
            (
                ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
                "OTEL_BSP_SCHEDULE_DELAY",
            ),
        ] {
            let error = env(&[endpoint, pair]).exporter().unwrap_err();
            assert_eq!(error.variable, variable, "{error}");
        }
        let error = env(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ])
        .sampler()
        .unwrap_err();
        assert_eq!(error.variable, "OTEL_TRACES_SAMPLER_ARG");
    }

    #[test]
    fn samplers_are_read_by_their_specification_names() {
        let sampler = env(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .sampler()
        .unwrap();
        assert_eq!(
            sampler,
            Sampler {
                parent_based: true,
                ratio: 0.25
            }
        );
        let off = env(&[("OTEL_TRACES_SAMPLER", "always_off")])
            .sampler()
            .unwrap();
        assert_eq!(
            off,
            Sampler {
                parent_based: false,
                ratio: 0.0
            }
        );
    }
}
