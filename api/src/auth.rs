//! Bearer-token authentication: HS256 JWTs whose subject is the actor of every event.

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The claims Chronicle reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id: the actor in event metadata.
    pub sub: String,
    /// `member`, `auditor`, `admin`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Teams the subject belongs to.
    #[serde(default)]
    pub teams: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    #[serde(default)]
    pub iat: i64,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The token's subject.
    pub id: String,
    /// Roles from the token.
    pub roles: Vec<String>,
    /// Teams from the token.
    pub teams: Vec<String>,
}

impl Actor {
    /// Whether the actor has `role` (admins have every role).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role || r == "admin")
    }
}

/// Why a token was refused. The message is safe to show: it never echoes the token.
#[derive(Debug, Error)]
pub enum AuthError {
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header must be 'Bearer <token>'")]
    MalformedHeader,
    /// Signature, expiry or shape is wrong.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The token could not be signed.
    #[error("cannot sign token: {0}")]
    Signing(String),
}

/// Checks and issues tokens.
#[derive(Clone)]
pub enum Authenticator {
    /// HS256 with a shared secret.
    Hs256 {
        /// Signing key.
        encoding: EncodingKey,
        /// Verifying key.
        decoding: DecodingKey,
    },
    /// Every request is a local admin (`CHRONICLE_AUTH=disabled`, for experiments only).
    Disabled,
}

impl Authenticator {
    /// HS256 with `secret`.
    pub fn hs256(secret: &str) -> Self {
        Self::Hs256 {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// The actor of a request given its `Authorization` header (if any).
    /// `Ok(None)` means "no credentials": the resolver decides whether that is allowed.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Option<Actor>, AuthError> {
        let Self::Hs256 { decoding, .. } = self else {
            return Ok(Some(Actor {
                id: "dev-admin".to_owned(),
                roles: vec!["admin".to_owned()],
                teams: Vec::new(),
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
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        validation.validate_nbf = true;
        let data = decode::<Claims>(token, decoding, &validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        Ok(Some(Actor {
            id: data.claims.sub,
            roles: data.claims.roles,
            teams: data.claims.teams,
        }))
    }

    /// Signs a token for `sub` valid for `ttl`.
    pub fn issue(
        &self,
        sub: &str,
        roles: Vec<String>,
        teams: Vec<String>,
        ttl: chrono::Duration,
    ) -> Result<String, AuthError> {
        let Self::Hs256 { encoding, .. } = self else {
            return Err(AuthError::Signing(
                "authentication is disabled; set CHRONICLE_JWT_SECRET".to_owned(),
            ));
        };
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_owned(),
            roles,
            teams,
            exp: now + ttl.num_seconds(),
            iat: now,
        };
        encode(&Header::new(Algorithm::HS256), &claims, encoding)
            .map_err(|e| AuthError::Signing(e.to_string()))
    }
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

    #[test]
    fn issued_tokens_verify_and_forged_ones_do_not() {
        let auth = Authenticator::hs256("a-secret-of-at-least-thirty-two-bytes!!");
        let token = auth
            .issue(
                "u-1",
                vec!["member".into()],
                vec!["team-a".into()],
                chrono::Duration::hours(1),
            )
            .unwrap();
        let actor = auth
            .authenticate(Some(&format!("Bearer {token}")))
            .unwrap()
            .unwrap();
        assert_eq!(actor.id, "u-1");
        assert_eq!(actor.teams, vec!["team-a"]);

        let other = Authenticator::hs256("another-secret-of-thirty-two-bytes!!!!");
        assert!(other
            .authenticate(Some(&format!("Bearer {token}")))
            .is_err());
        assert!(auth.authenticate(Some("Basic abc")).is_err());
        assert_eq!(auth.authenticate(None).unwrap(), None);

        let expired = auth
            .issue("u-1", vec![], vec![], chrono::Duration::hours(-2))
            .unwrap();
        assert!(auth
            .authenticate(Some(&format!("Bearer {expired}")))
            .is_err());
    }

    #[test]
    fn ttl_parses_common_units() {
        assert_eq!(parse_ttl("8h").unwrap(), chrono::Duration::hours(8));
        assert_eq!(parse_ttl("2d").unwrap(), chrono::Duration::days(2));
        assert!(parse_ttl("soon").is_err());
    }
}
