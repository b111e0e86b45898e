//! Bearer-token authentication: JWTs whose subject is the actor of every event.
//!
//! Accepted: HS256 with the configured secret, RS256 with any of the configured public keys,
//! and RS256 or ES256 with the key an identity provider publishes under the token's `kid`
//! ([`jwks`]). The key is chosen by the token's `alg` (and `kid`) and each key verifies only
//! its own algorithm,
//! so an RS256 public key can never be used as an HS256 secret (algorithm confusion), and
//! `alg: none` or any other algorithm is refused before any claim is read. `exp` is required,
//! `nbf` checked, `iss` and `aud` checked when configured; 30 s of clock skew are tolerated.

pub mod jwks;
mod verified;

use std::sync::Arc;

use crate::settings::{AuthSettings, JwtSettings, DEFAULT_ROLES_CLAIM, DEFAULT_TEAMS_CLAIM};
use chronicle_application::access::{Principal, Role, ALL_TEAMS};
use chronicle_domain::ids::{TeamId, UserId};
use chrono::Utc;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

/// The claims Chronicle reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id: the actor in event metadata.
    pub sub: String,
    /// `member`, `auditor`, `admin`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Teams the subject belongs to (`*`: every team).
    #[serde(default)]
    pub teams: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    #[serde(default)]
    pub iat: i64,
    /// Not valid before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience: one, or several (RFC 7519 allows both, and Keycloak, Auth0 and Entra ID
    /// often send an array).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// A token's `aud`: a single string or an array of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "chronicle"`.
    One(String),
    /// `"aud": ["chronicle", "account"]`.
    Many(Vec<String>),
}

/// Why a token was refused, or the authenticator could not be built. The message is safe to
/// show: it never echoes the token or a key.
#[derive(Debug, Error)]
pub enum AuthError {
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header must be 'Bearer <token>'")]
    MalformedHeader,
    /// Signature, expiry, algorithm or shape is wrong.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The token could not be signed.
    #[error("cannot sign token: {0}")]
    Signing(String),
    /// A token asked for with a subject, team or role the API would refuse.
    #[error("refused: {0}")]
    Refused(String),
    /// A configured key is unusable.
    #[error("{variable}: {message}")]
    Key {
        /// The setting holding the key.
        variable: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// The keys and rules tokens are checked with.
struct Verifier {
    hs256: Option<(EncodingKey, DecodingKey)>,
    rs256: Vec<DecodingKey>,
    /// The identity provider's keys, by `kid`.
    jwks: Option<Arc<jwks::JwksKeys>>,
    issuer: Option<String>,
    audience: Option<String>,
    /// Dotted paths of the roles and teams claims.
    roles_claim: String,
    teams_claim: String,
    /// Tokens verified with `hs256` or `rs256` before, answered from memory.
    verified: Arc<verified::VerifiedTokens<Credentials>>,
}

/// A verified caller and when its token stops being valid (subscriptions end then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Who the token names.
    pub principal: Principal,
    /// The token's `exp`.
    pub expires_at: chrono::DateTime<Utc>,
}

/// Checks and issues tokens.
#[derive(Clone)]
pub enum Authenticator {
    /// JWTs (HS256 and/or RS256). Shared: the router's state is cloned for every request, and
    /// a deep copy of the keys and claim paths cost allocations on each.
    Jwt(Arc<JwtAuthenticator>),
    /// Every request is a local admin (`CHRONICLE_AUTH=disabled`, for experiments only).
    Disabled,
}

/// The JWT mode's state; see [`Authenticator`].
pub struct JwtAuthenticator(Verifier);

impl Authenticator {
    /// HS256 with `secret` and no issuer or audience (tests, the `token` command).
    pub fn hs256(secret: &str) -> Self {
        Self::Jwt(Arc::new(JwtAuthenticator(Verifier {
            hs256: hs256_keys(secret),
            rs256: Vec::new(),
            jwks: None,
            issuer: None,
            audience: None,
            roles_claim: DEFAULT_ROLES_CLAIM.to_owned(),
            teams_claim: DEFAULT_TEAMS_CLAIM.to_owned(),
            verified: Arc::new(verified::VerifiedTokens::new(LEEWAY_SECONDS)),
        })))
    }

    /// The authenticator `settings` describe; fails on an unusable public key file.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, AuthError> {
        match settings {
            AuthSettings::Disabled => Ok(Self::Disabled),
            AuthSettings::Jwt(jwt) => {
                Ok(Self::Jwt(Arc::new(JwtAuthenticator(Verifier::new(jwt)?))))
            }
        }
    }

    /// The caller of a request given its `Authorization` header (if any).
    /// `Ok(None)` means "no credentials": the resolver decides whether that is allowed.
    pub(crate) async fn authenticate(
        &self,
        header: Option<&str>,
    ) -> Result<Option<Credentials>, AuthError> {
        let Self::Jwt(jwt) = self else {
            return Ok(Some(Credentials {
                principal: Principal::new(
                    "dev-admin",
                    &["admin".to_owned()],
                    &[ALL_TEAMS.to_owned()],
                ),
                expires_at: chrono::DateTime::<Utc>::MAX_UTC,
            }));
        };
        let Some(header) = header else {
            return Ok(None);
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::MalformedHeader)?
            .trim();
        jwt.0.verify(token).await.map(Some)
    }

    /// Signs an HS256 token for `sub` valid for `ttl`, with the configured issuer and audience.
    pub fn issue(
        &self,
        sub: &str,
        roles: Vec<String>,
        teams: Vec<String>,
        ttl: chrono::Duration,
    ) -> Result<String, AuthError> {
        let unsigned = || {
            AuthError::Signing(
                "tokens are signed with CHRONICLE_JWT_SECRET, which is not set".to_owned(),
            )
        };
        let Self::Jwt(jwt) = self else {
            return Err(unsigned());
        };
        let verifier = &jwt.0;
        let Some((encoding, _)) = &verifier.hs256 else {
            return Err(unsigned());
        };
        // A token the API would refuse, or whose roles it would ignore, is no use to anyone:
        // refuse it here, where the mistake is made.
        let refused = |e: chronicle_domain::DomainError| AuthError::Refused(e.to_string());
        UserId::parse("sub", sub).map_err(refused)?;
        for team in teams.iter().filter(|team| *team != ALL_TEAMS) {
            TeamId::parse("teams", team).map_err(refused)?;
        }
        if let Some(unknown) = roles.iter().find(|role| Role::parse(role).is_none()) {
            return Err(AuthError::Refused(format!(
                "roles: {unknown:?} is not a role; use admin, auditor or member"
            )));
        }
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_owned(),
            roles,
            teams,
            exp: now + ttl.num_seconds(),
            iat: now,
            nbf: None,
            iss: verifier.issuer.clone(),
            aud: verifier.audience.clone().map(Audience::One),
        };
        encode(&Header::new(Algorithm::HS256), &claims, encoding)
            .map_err(|e| AuthError::Signing(e.to_string()))
    }
}

/// The HS256 key pair of `secret`; none for an empty secret, which signs and accepts nothing
/// (the settings refuse a short one before it gets here).
fn hs256_keys(secret: &str) -> Option<(EncodingKey, DecodingKey)> {
    Some((
        EncodingKey::from_secret(secret.as_bytes()).ok()?,
        DecodingKey::from_secret(secret.as_bytes()).ok()?,
    ))
}

/// Splits a PEM file into its `-----BEGIN …-----` blocks, so one file can carry several
/// public keys (the current one and the next, during a key rotation).
fn pem_blocks(pem: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in pem.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END ") {
            blocks.extend(current.take());
        }
    }
    blocks
}

impl Verifier {
    fn new(settings: &JwtSettings) -> Result<Self, AuthError> {
        let key_error = |message: String| AuthError::Key {
            variable: "CHRONICLE_JWT_PUBLIC_KEY_FILE",
            message,
        };
        let mut rs256 = Vec::new();
        if let Some(pem) = &settings.rs256_public_keys {
            for block in pem_blocks(pem) {
                let key = DecodingKey::from_rsa_pem(block.as_bytes())
                    .map_err(|e| key_error(format!("not an RSA public key in PEM: {e}")))?;
                rs256.push(key);
            }
            if rs256.is_empty() {
                return Err(key_error("holds no PEM block".to_owned()));
            }
        }
        let jwks = match &settings.jwks {
            None => None,
            Some(jwks) => Some(Arc::new(jwks::JwksKeys::new(jwks.clone()).map_err(
                |e| AuthError::Key {
                    variable: "CHRONICLE_JWT_JWKS_URL",
                    message: format!("no HTTP client for it: {e}"),
                },
            )?)),
        };
        Ok(Self {
            hs256: settings
                .hs256_secret
                .as_ref()
                .and_then(|secret| hs256_keys(secret.expose())),
            rs256,
            jwks,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            roles_claim: settings.roles_claim.clone(),
            teams_claim: settings.teams_claim.clone(),
            verified: Arc::new(verified::VerifiedTokens::new(LEEWAY_SECONDS)),
        })
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present, not merely right when present.
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    async fn verify(&self, token: &str) -> Result<Credentials, AuthError> {
        // Only tokens of configured keys are kept: with none (an identity provider alone) there
        // is nothing to look up, and no digest to compute on every request.
        if self.hs256.is_some() || !self.rs256.is_empty() {
            if let Some(credentials) = self.verified.get(token) {
                return Ok(credentials);
            }
        }
        let invalid = |reason: String| AuthError::InvalidToken(reason);
        let header = decode_header(token).map_err(|e| invalid(e.to_string()))?;
        let (keys, source) = self.keys_for(&header).await?;
        let validation = self.validation(header.alg);
        let mut last_error = None;
        for key in &keys {
            match decode::<serde_json::Value>(token, key, &validation) {
                Ok(data) => {
                    let credentials = principal_of(self.claims_of(data.claims)?)?;
                    if source == KeySource::Configured {
                        let exp = credentials.expires_at.timestamp();
                        self.verified.keep(token, &credentials, exp);
                    }
                    return Ok(credentials);
                }
                Err(error) => last_error = Some(error.to_string()),
            }
        }
        Err(invalid(last_error.unwrap_or_default()))
    }

    /// The keys that may have signed a token with this header: the identity provider's key
    /// named by `kid` (which must be of the token's algorithm), else the configured keys of
    /// the token's algorithm.
    async fn keys_for(&self, header: &Header) -> Result<(Vec<DecodingKey>, KeySource), AuthError> {
        let invalid = |reason: String| AuthError::InvalidToken(reason);
        if !matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256
        ) {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let mut source = KeySource::Configured;
        if let (Some(jwks), Some(kid), false) =
            (&self.jwks, &header.kid, header.alg == Algorithm::HS256)
        {
            let local = header.alg == Algorithm::RS256 && !self.rs256.is_empty();
            match jwks.key(kid).await {
                Some(key) if key.algorithm == header.alg => {
                    return Ok((vec![key.key], KeySource::IdentityProvider))
                }
                Some(key) => {
                    return Err(invalid(format!(
                        "key {kid:?} is for {:?}, not {:?}",
                        key.algorithm, header.alg
                    )))
                }
                None if !local => {
                    return Err(invalid(format!("no key {kid:?} at the identity provider")))
                }
                // Not at the provider, so the configured keys are tried; but the provider may
                // publish this `kid` later, and then its key decides.
                None => source = KeySource::IdentityProvider,
            }
        }
        let keys: Vec<DecodingKey> = match header.alg {
            Algorithm::HS256 => self.hs256.iter().map(|(_, d)| d.clone()).collect(),
            Algorithm::RS256 => self.rs256.clone(),
            _ => Vec::new(),
        };
        if keys.is_empty() {
            return Err(invalid(format!(
                "algorithm {:?} is not configured here",
                header.alg
            )));
        }
        Ok((keys, source))
    }
}

/// Whose keys decide a token: the configured keys stay for the process's life, so a token they
/// verified may be answered from memory ([`verified`]); an identity provider may withdraw a key,
/// or publish one for a `kid` it did not know, at its next refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    /// `CHRONICLE_JWT_SECRET` or `CHRONICLE_JWT_PUBLIC_KEY_FILE`, for a token no provider's key
    /// could name.
    Configured,
    /// The identity provider's JWKS: its key, or the configured keys for a `kid` it does not
    /// know (yet).
    IdentityProvider,
}

impl Verifier {
    /// The claims Chronicle reads, with roles and teams taken from their configured paths
    /// (a claim that is absent means none).
    fn claims_of(&self, mut raw: serde_json::Value) -> Result<Claims, AuthError> {
        let roles = strings_at(&raw, &self.roles_claim)?;
        let teams = strings_at(&raw, &self.teams_claim)?;
        if let Some(object) = raw.as_object_mut() {
            object.remove("roles");
            object.remove("teams");
        }
        let mut claims: Claims = serde_json::from_value(raw)
            .map_err(|e| AuthError::InvalidToken(format!("unreadable claims: {e}")))?;
        claims.roles = roles;
        claims.teams = teams;
        Ok(claims)
    }
}

/// The strings at a dotted `path` of `claims` (`realm_access.roles`): an array of strings or a
/// single string; nothing when the path is absent.
fn strings_at(claims: &serde_json::Value, path: &str) -> Result<Vec<String>, AuthError> {
    let value = path
        .split('.')
        .try_fold(claims, |value, segment| value.get(segment));
    match value {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(one)) => Ok(vec![one.clone()]),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| AuthError::InvalidToken(format!("{path} must hold strings")))
            })
            .collect(),
        Some(_) => Err(AuthError::InvalidToken(format!(
            "{path} must be a string or an array of strings"
        ))),
    }
}

/// The principal a verified token names; ids must be of the documented alphabet, so no token
/// can put an arbitrary string in the audit trail's actor field.
fn principal_of(claims: Claims) -> Result<Credentials, AuthError> {
    let invalid = |e: chronicle_domain::DomainError| AuthError::InvalidToken(e.to_string());
    UserId::parse("sub", &claims.sub).map_err(invalid)?;
    for team in &claims.teams {
        if team != ALL_TEAMS {
            TeamId::parse("teams", team).map_err(invalid)?;
        }
    }
    let expires_at = chrono::DateTime::<Utc>::from_timestamp(claims.exp, 0)
        .ok_or_else(|| AuthError::InvalidToken("exp is out of range".to_owned()))?;
    Ok(Credentials {
        principal: Principal::new(claims.sub, &claims.roles, &claims.teams),
        expires_at,
    })
}

/// Parses a duration such as `8h`, `30m`, `45s` or `2d`.
pub fn parse_ttl(raw: &str) -> Result<chrono::Duration, String> {
    let raw = raw.trim();
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 8h, 30m or 2d"))?;
    match unit {
        "s" => Ok(chrono::Duration::seconds(n)),
        "m" => Ok(chrono::Duration::minutes(n)),
        "h" | "" => Ok(chrono::Duration::hours(n)),
        "d" => Ok(chrono::Duration::days(n)),
        other => Err(format!("unknown duration unit {other:?}; use s, m, h or d")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use chronicle_application::access::Action;
    use chronicle_infrastructure::secret::Secret;

    const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes!!";

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn member_token(auth: &Authenticator) -> String {
        auth.issue(
            "u-1",
            vec!["member".into()],
            vec!["team-a".into()],
            chrono::Duration::hours(1),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn issued_tokens_verify_and_forged_ones_do_not() {
        let auth = Authenticator::hs256(SECRET);
        let token = member_token(&auth);
        let credentials = auth
            .authenticate(Some(&bearer(&token)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(credentials.principal.subject(), "u-1");
        let lifetime = credentials.expires_at - Utc::now();
        assert!(lifetime > chrono::Duration::minutes(59) && lifetime <= chrono::Duration::hours(1));

        let other = Authenticator::hs256("another-secret-of-thirty-two-bytes!!!!");
        assert!(other.authenticate(Some(&bearer(&token))).await.is_err());
        assert!(auth.authenticate(Some("Basic abc")).await.is_err());
        assert_eq!(auth.authenticate(None).await.unwrap(), None);

        let expired = auth
            .issue("u-1", vec![], vec![], chrono::Duration::hours(-2))
            .unwrap();
        assert!(auth.authenticate(Some(&bearer(&expired))).await.is_err());
    }

    #[tokio::test]
    async fn a_token_answered_from_memory_is_refused_once_it_expires() {
        let auth = Authenticator::hs256(SECRET);
        // Expired two seconds short of the leeway: accepted now, refused three seconds on.
        let ttl = chrono::Duration::seconds(2 - LEEWAY_SECONDS as i64);
        let token = auth.issue("u-1", vec![], vec![], ttl).unwrap();
        assert!(auth.authenticate(Some(&bearer(&token))).await.is_ok());
        let Authenticator::Jwt(jwt) = &auth else {
            panic!("a JWT authenticator")
        };
        assert_eq!(jwt.0.verified.len(), 1, "remembered");
        assert!(auth.authenticate(Some(&bearer(&token))).await.is_ok());
        tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
        let error = auth.authenticate(Some(&bearer(&token))).await.unwrap_err();
        assert!(matches!(error, AuthError::InvalidToken(_)), "{error}");
    }

    #[tokio::test]
    async fn altered_claims_and_alg_none_are_refused() {
        let auth = Authenticator::hs256(SECRET);
        let token = member_token(&auth);
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["roles"] = serde_json::json!(["admin"]);
        let forged_claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let altered = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert!(auth.authenticate(Some(&bearer(&altered))).await.is_err());

        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        for unsigned in [
            format!("{none_header}.{forged_claims}."),
            format!("{none_header}.{forged_claims}.{}", parts[2]),
        ] {
            let error = auth
                .authenticate(Some(&bearer(&unsigned)))
                .await
                .unwrap_err();
            assert!(matches!(error, AuthError::InvalidToken(_)), "{error}");
        }
    }

    #[tokio::test]
    async fn issuer_audience_and_not_before_are_checked() {
        let settings = JwtSettings {
            hs256_secret: Some(Secret::new(SECRET)),
            rs256_public_keys: None,
            jwks: None,
            issuer: Some("https://idp.example".to_owned()),
            audience: Some("chronicle".to_owned()),
            roles_claim: DEFAULT_ROLES_CLAIM.to_owned(),
            teams_claim: DEFAULT_TEAMS_CLAIM.to_owned(),
        };
        let strict = Authenticator::from_settings(&AuthSettings::Jwt(settings)).unwrap();
        let good = member_token(&strict);
        assert!(strict.authenticate(Some(&bearer(&good))).await.is_ok());
        // Same secret, no issuer or audience: refused where they are required.
        let loose = member_token(&Authenticator::hs256(SECRET));
        assert!(strict.authenticate(Some(&bearer(&loose))).await.is_err());

        let now = Utc::now().timestamp();
        let future = Claims {
            sub: "u-1".into(),
            roles: vec![],
            teams: vec![],
            exp: now + 7200,
            iat: now,
            nbf: Some(now + 3600),
            iss: None,
            aud: None,
        };
        let early = encode(
            &Header::new(Algorithm::HS256),
            &future,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap();
        let auth = Authenticator::hs256(SECRET);
        assert!(auth.authenticate(Some(&bearer(&early))).await.is_err());
    }

    #[tokio::test]
    async fn an_audience_may_be_an_array_and_must_then_contain_ours() {
        let settings = JwtSettings {
            hs256_secret: Some(Secret::new(SECRET)),
            rs256_public_keys: None,
            jwks: None,
            issuer: None,
            audience: Some("chronicle".to_owned()),
            roles_claim: DEFAULT_ROLES_CLAIM.to_owned(),
            teams_claim: DEFAULT_TEAMS_CLAIM.to_owned(),
        };
        let auth = Authenticator::from_settings(&AuthSettings::Jwt(settings)).unwrap();
        let token_for = |aud: Audience| {
            let now = Utc::now().timestamp();
            let claims = Claims {
                sub: "u-1".into(),
                roles: vec!["member".into()],
                teams: vec!["team-a".into()],
                exp: now + 3600,
                iat: now,
                nbf: None,
                iss: None,
                aud: Some(aud),
            };
            let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
            encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
        };

        let listed = token_for(Audience::Many(vec!["account".into(), "chronicle".into()]));
        let elsewhere = token_for(Audience::Many(vec!["account".into()]));
        let single = token_for(Audience::One("chronicle".into()));

        assert!(auth.authenticate(Some(&bearer(&listed))).await.is_ok());
        assert!(auth.authenticate(Some(&bearer(&elsewhere))).await.is_err());
        assert!(auth.authenticate(Some(&bearer(&single))).await.is_ok());
    }

    #[tokio::test]
    async fn roles_and_teams_are_read_where_the_identity_provider_puts_them() {
        let keycloak = JwtSettings {
            hs256_secret: Some(Secret::new(SECRET)),
            rs256_public_keys: None,
            jwks: None,
            issuer: None,
            audience: None,
            roles_claim: "realm_access.roles".to_owned(),
            teams_claim: "groups".to_owned(),
        };
        let auth = Authenticator::from_settings(&AuthSettings::Jwt(keycloak)).unwrap();
        let now = Utc::now().timestamp();
        let sign = |claims: serde_json::Value| {
            let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
            encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
        };
        let token = sign(serde_json::json!({
            "sub": "u-1", "exp": now + 3600,
            "realm_access": {"roles": ["member", "offline_access"]},
            "groups": ["team-a"],
            "roles": ["admin"],
        }));

        let credentials = auth
            .authenticate(Some(&bearer(&token)))
            .await
            .unwrap()
            .unwrap();

        let principal = credentials.principal;
        assert!(
            principal.scope(Action::ChangeWork).is_ok(),
            "member from realm_access"
        );
        assert!(
            principal.scope(Action::Operate).is_err(),
            "top-level roles are not read"
        );
        assert!(principal.scope(Action::ReadWork).unwrap().covers("team-a"));
        assert!(!principal.scope(Action::ReadWork).unwrap().covers("team-b"));
        let malformed = sign(serde_json::json!({
            "sub": "u-1", "exp": now + 3600, "realm_access": {"roles": [1, 2]},
        }));
        assert!(auth.authenticate(Some(&bearer(&malformed))).await.is_err());
    }

    #[test]
    fn tokens_the_api_would_refuse_are_not_issued() {
        let auth = Authenticator::hs256("test-secret-of-sufficient-length-0123");
        let ttl = chrono::Duration::hours(1);
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (sub, roles, teams) in [
            ("bad sub!", strings(&["member"]), strings(&["team-a"])),
            ("alice", strings(&["wizard"]), strings(&["team-a"])),
            ("alice", strings(&["member"]), strings(&["team a"])),
            (
                "chronicle-report-worker",
                strings(&["member"]),
                strings(&["team-a"]),
            ),
        ] {
            let refused = auth.issue(sub, roles, teams, ttl).unwrap_err();
            assert!(matches!(refused, AuthError::Refused(_)), "{refused:?}");
        }
        let issued = auth.issue("auth0|alice", strings(&["auditor"]), strings(&["*"]), ttl);
        assert!(issued.is_ok(), "{issued:?}");
    }

    #[tokio::test]
    async fn subjects_and_teams_must_be_ids() {
        // Signed with the right key by someone other than `issue`, which refuses them.
        let auth = Authenticator::hs256(SECRET);
        let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        let hs256 = |claims: &Claims| encode(&Header::new(Algorithm::HS256), claims, &key).unwrap();
        let token = hs256(&claims_for("u 1; drop"));
        assert!(auth.authenticate(Some(&bearer(&token))).await.is_err());
        let mut claims = claims_for("u-1");
        claims.teams = vec!["*".into(), "team/x".into()];
        assert!(auth
            .authenticate(Some(&bearer(&hs256(&claims))))
            .await
            .is_err());
        let good = hs256(&claims_for("u-1"));
        assert!(auth.authenticate(Some(&bearer(&good))).await.is_ok());
    }

    #[test]
    fn pem_files_split_into_their_keys() {
        let pem = "junk\n-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n\
                   -----BEGIN PUBLIC KEY-----\nBBB\n-----END PUBLIC KEY-----\n";
        let blocks = pem_blocks(pem);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[1].contains("BBB") && !blocks[1].contains("AAA"));
        let bad = JwtSettings {
            hs256_secret: None,
            rs256_public_keys: Some("not a key".to_owned()),
            jwks: None,
            issuer: None,
            audience: None,
            roles_claim: DEFAULT_ROLES_CLAIM.to_owned(),
            teams_claim: DEFAULT_TEAMS_CLAIM.to_owned(),
        };
        assert!(Authenticator::from_settings(&AuthSettings::Jwt(bad)).is_err());
    }

    const TEST_PRIVATE_KEY: &str = include_str!("testdata/rs256-test-private.pem");
    const TEST_PUBLIC_KEY: &str = include_str!("testdata/rs256-test-public.pem");

    fn rs256_token(claims: &Claims) -> String {
        let key = EncodingKey::from_rsa_pem(TEST_PRIVATE_KEY.as_bytes()).unwrap();
        encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
    }

    fn claims_for(sub: &str) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            sub: sub.into(),
            roles: vec!["auditor".into()],
            teams: vec!["team-a".into()],
            exp: now + 600,
            iat: now,
            nbf: None,
            iss: None,
            aud: None,
        }
    }

    #[tokio::test]
    async fn rs256_tokens_verify_with_the_public_key_and_cannot_be_confused_with_hs256() {
        let settings = |secret: Option<&str>| {
            AuthSettings::Jwt(JwtSettings {
                hs256_secret: secret.map(Secret::new),
                rs256_public_keys: Some(format!("{TEST_PUBLIC_KEY}\n{TEST_PUBLIC_KEY}")),
                jwks: None,
                issuer: None,
                audience: None,
                roles_claim: DEFAULT_ROLES_CLAIM.to_owned(),
                teams_claim: DEFAULT_TEAMS_CLAIM.to_owned(),
            })
        };
        let auth = Authenticator::from_settings(&settings(None)).unwrap();
        let token = rs256_token(&claims_for("u-rsa"));
        let credentials = auth
            .authenticate(Some(&bearer(&token)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(credentials.principal.subject(), "u-rsa");

        // The public key is public: a token "signed" HS256 with it as the secret is forged.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims_for("u-evil"),
            &EncodingKey::from_secret(TEST_PUBLIC_KEY.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(auth.authenticate(Some(&bearer(&confused))).await.is_err());
        let both = Authenticator::from_settings(&settings(Some(SECRET))).unwrap();
        assert!(both.authenticate(Some(&bearer(&confused))).await.is_err());
        assert!(both.authenticate(Some(&bearer(&token))).await.is_ok());
        // An HS256-only service refuses RS256 tokens.
        assert!(Authenticator::hs256(SECRET)
            .authenticate(Some(&bearer(&token)))
            .await
            .is_err());
    }

    #[test]
    fn ttl_parses_common_units() {
        assert_eq!(parse_ttl("8h").unwrap(), chrono::Duration::hours(8));
        assert_eq!(parse_ttl("2d").unwrap(), chrono::Duration::days(2));
        assert!(parse_ttl("soon").is_err());
    }
}
