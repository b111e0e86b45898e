//! Keys from an identity provider's JWKS endpoint (RFC 7517), chosen by a token's `kid`.
//!
//! Identity providers rotate their signing keys: they publish the next key, start signing with
//! it, and later withdraw the old one. So the set is cached and fetched again every
//! `CHRONICLE_JWT_JWKS_REFRESH_SECS`, and at once when a token names a `kid` the cache lacks
//! (a key published since the last fetch works without a restart). A token can name any `kid`
//! it likes, so fetches are never closer together than `CHRONICLE_JWT_JWKS_MIN_INTERVAL_SECS`:
//! a flood of made-up kids costs the provider one request per interval, not one per token.
//!
//! Only signing keys of the algorithms Chronicle accepts are kept (RSA for RS256, P-256 for
//! ES256); each key verifies only its own algorithm, so a token cannot pick another one for it.
//! Symmetric keys (`kty: oct`), encryption keys (`use: enc`) and keys whose `alg` is another
//! algorithm are left out.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::settings::JwksSettings;

/// How long one fetch of the key set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A verification key from the set, with the one algorithm it verifies.
#[derive(Clone)]
pub(crate) struct JwksKey {
    /// RS256 or ES256.
    pub algorithm: Algorithm,
    /// The public key.
    pub key: DecodingKey,
}

/// The cached key set of one JWKS URL.
pub(crate) struct JwksKeys {
    settings: JwksSettings,
    http: reqwest::Client,
    cache: RwLock<Cache>,
    /// Held while fetching: concurrent callers wait for one fetch instead of making their own.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, JwksKey>,
    /// When the set was last fetched successfully.
    fetched_at: Option<Instant>,
    /// When a fetch was last started, successful or not (the floor counts from here).
    attempted_at: Option<Instant>,
}

/// Why the key set could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwksError {
    /// The request failed or the answer was not JSON.
    #[error("fetching {url}: {source}")]
    Fetch {
        /// The JWKS URL.
        url: String,
        /// What went wrong.
        source: reqwest::Error,
    },
}

/// The key set document: `keys` is kept as raw JSON so that one key of a kind this library
/// does not know cannot make the whole set unreadable.
#[derive(Deserialize)]
struct KeySet {
    keys: Vec<serde_json::Value>,
}

impl JwksKeys {
    /// A cache of `settings.url`'s keys; nothing is fetched until a token needs a key.
    pub fn new(settings: JwksSettings) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?,
            settings,
            cache: RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key named `kid`, fetching the set first when the key is unknown or the set is due
    /// for its periodic refresh (and the floor between fetches allows). `None`: no such key.
    pub async fn key(self: &Arc<Self>, kid: &str) -> Option<JwksKey> {
        let (known, refresh_due) = {
            let cache = self.read();
            let due = cache
                .fetched_at
                .is_none_or(|at| at.elapsed() >= self.settings.refresh);
            (cache.keys.get(kid).cloned(), due)
        };
        match (known, refresh_due) {
            (Some(key), false) => Some(key),
            (Some(key), true) => {
                // The key is known: answer with it now and refresh beside the request.
                let keys = self.clone();
                tokio::spawn(async move { keys.refresh().await });
                Some(key)
            }
            (None, _) => {
                self.refresh().await;
                self.read().keys.get(kid).cloned()
            }
        }
    }

    /// Fetches the set unless another fetch started less than the floor ago; a failed fetch
    /// keeps the keys already known.
    async fn refresh(&self) {
        let _one_at_a_time = self.fetching.lock().await;
        {
            let mut cache = self.write();
            if cache
                .attempted_at
                .is_some_and(|at| at.elapsed() < self.settings.min_interval)
            {
                return;
            }
            cache.attempted_at = Some(Instant::now());
        }
        match self.fetch().await {
            Ok(keys) => {
                let mut cache = self.write();
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
            }
            Err(error) => tracing::warn!(
                error = %chronicle_application::error_chain::Chain(&error),
                "JWKS not refreshed; the keys fetched before stay in use"
            ),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, JwksKey>, JwksError> {
        let url = &self.settings.url;
        let failed = |source| JwksError::Fetch {
            url: url.clone(),
            source,
        };
        let set: KeySet = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?
            .json()
            .await
            .map_err(failed)?;
        Ok(usable_keys(set.keys))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        // The cache is replaced whole under the lock; a poisoned lock still holds a whole set.
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The signing keys Chronicle can use, by `kid`; everything else in the set is skipped.
fn usable_keys(raw: Vec<serde_json::Value>) -> HashMap<String, JwksKey> {
    raw.into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let key = usable_key(&jwk)?;
            Some((kid, key))
        })
        .collect()
}

/// The key and its one algorithm, when `jwk` is an RS256 or ES256 signing key.
fn usable_key(jwk: &Jwk) -> Option<JwksKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(JwksKey { algorithm, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_rs256_and_es256_signing_keys_with_a_kid_are_kept() {
        let rsa = json!({"kty": "RSA", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
        let with = |extra: serde_json::Value| {
            let mut key = rsa.clone();
            key.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            key
        };
        let keys = usable_keys(vec![
            with(json!({"kid": "plain"})),
            with(json!({"kid": "signing", "use": "sig", "alg": "RS256"})),
            with(json!({"kid": "encryption", "use": "enc"})),
            with(json!({"kid": "pss", "alg": "PS256"})),
            rsa.clone(), // no kid: a token could not name it
            json!({"kid": "hmac", "kty": "oct", "k": "c2VjcmV0"}),
            json!({"kid": "unknown", "kty": "OKP", "crv": "X448", "x": "abc"}),
        ]);
        let mut kept: Vec<_> = keys.keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, vec!["plain", "signing"]);
        assert!(keys.values().all(|key| key.algorithm == Algorithm::RS256));
    }
}
