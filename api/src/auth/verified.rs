//! Tokens verified before, answered from memory. A client sends the same bearer token with
//! every request until it expires, and verifying it again (two base64 decodes, two JSON
//! documents, the signature, the claims' checks) cost about a twentieth of the API's CPU per
//! createTask (docs/performance.md).
//!
//! A kept answer is the answer verification would give again, for as long as it is kept:
//!
//! - only tokens verified with the configured keys (`CHRONICLE_JWT_SECRET`,
//!   `CHRONICLE_JWT_PUBLIC_KEY_FILE`) are kept, since those keys are fixed for the process's
//!   life; a token verified with an identity provider's key ([`super::jwks`]) is verified each
//!   time, because the provider may withdraw that key at its next refresh;
//! - the lookup is by the token's exact text, so a token altered in any byte is verified
//!   afresh (and refused);
//! - a kept token is answered only while it is unexpired by the same rule (`exp` with the same
//!   leeway); `nbf` was met when it was verified and time only moves on.
//!
//! The memory is bounded in tokens and in a token's length; when full it forgets everything
//! and refills, which costs a caller sending a new token every time no more than no memory.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::Utc;

use super::{Credentials, LEEWAY_SECONDS};

/// Tokens kept before the memory starts over.
const MAX_TOKENS: usize = 4096;

/// Longer tokens are verified every time: they are rare and would cost the memory.
const MAX_TOKEN_BYTES: usize = 4096;

/// The tokens verified with the configured keys, by their text.
#[derive(Default)]
pub(super) struct VerifiedTokens {
    tokens: Mutex<HashMap<String, Credentials>>,
}

impl VerifiedTokens {
    /// The credentials `token` was verified to carry, while it is unexpired.
    pub(super) fn get(&self, token: &str) -> Option<Credentials> {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let credentials = tokens.get(token)?;
        if is_expired(credentials, Utc::now().timestamp()) {
            tokens.remove(token);
            return None;
        }
        Some(credentials.clone())
    }

    /// Remembers that `token` verified to `credentials`.
    pub(super) fn keep(&self, token: &str, credentials: &Credentials) {
        if token.len() > MAX_TOKEN_BYTES {
            return;
        }
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= MAX_TOKENS {
            tokens.clear();
        }
        tokens.insert(token.to_owned(), credentials.clone());
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Whether verification would now refuse a token expiring at `credentials.expires_at`:
/// jsonwebtoken's rule, `exp < now - leeway`.
fn is_expired(credentials: &Credentials, now: i64) -> bool {
    credentials.expires_at.timestamp() < now - LEEWAY_SECONDS as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronicle_application::access::Principal;

    fn credentials(sub: &str, exp: i64) -> Credentials {
        Credentials {
            principal: Principal::new(sub, &["member".to_owned()], &["team-a".to_owned()]),
            expires_at: chrono::DateTime::<Utc>::from_timestamp(exp, 0).unwrap(),
        }
    }

    #[test]
    fn a_kept_token_is_answered_by_its_exact_text_while_unexpired() {
        let kept = VerifiedTokens::default();
        let now = Utc::now().timestamp();
        kept.keep("a.b.c", &credentials("u-1", now + 3600));
        assert_eq!(kept.get("a.b.c").unwrap().principal.subject(), "u-1");
        assert!(
            kept.get("a.b.d").is_none(),
            "another text is verified afresh"
        );

        // Within the leeway it is still good; beyond it, forgotten.
        kept.keep("late", &credentials("u-2", now - LEEWAY_SECONDS as i64 + 5));
        assert!(kept.get("late").is_some());
        kept.keep("gone", &credentials("u-3", now - LEEWAY_SECONDS as i64 - 1));
        assert!(kept.get("gone").is_none());
        assert!(kept.get("gone").is_none(), "and removed");
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn the_memory_stays_bounded_in_tokens_and_length() {
        let kept = VerifiedTokens::default();
        let exp = Utc::now().timestamp() + 3600;
        kept.keep(&"t".repeat(MAX_TOKEN_BYTES + 1), &credentials("u-1", exp));
        assert_eq!(kept.len(), 0, "too long to keep");
        for n in 0..=MAX_TOKENS {
            kept.keep(&format!("token-{n}"), &credentials("u-1", exp));
        }
        assert!(kept.len() <= MAX_TOKENS);
        assert!(kept.get(&format!("token-{MAX_TOKENS}")).is_some());
    }
}
