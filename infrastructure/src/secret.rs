//! Values that must never reach a log, as types: the structs that hold them derive `Debug`
//! (nothing to keep in step by hand), and reading one takes an explicit
//! [`expose`](Secret::expose), so every read can be found.

use std::fmt;

/// A secret (a password, a signing key): `Debug` prints `<redacted>`, and there is no
/// `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that hands it to a library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A Postgres connection URL, which may carry a password: `Debug` shows it with the password
/// replaced, so the host and database stay visible in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, password included, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `url` with the password of its credentials replaced by `<redacted>`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_secret() {
        let secret = Secret::new("hunter2-hunter2");
        let url = DatabaseUrl::new("postgres://app:s3cr3t@db.internal:5432/chronicle");

        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(
            format!("{url:?}"),
            "postgres://app:<redacted>@db.internal:5432/chronicle"
        );
        assert_eq!(secret.expose(), "hunter2-hunter2");
    }
}
