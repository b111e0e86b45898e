//! Tokens verified before, answered from memory. A client sends the same bearer token with
//! every request until it expires, and verifying it again (two base64 decodes, two JSON
//! documents, the signature, the claims' checks) cost about a twentieth of the API's CPU per
//! createTask (docs/performance.md).
//!
//! A kept answer is the answer verification would give again, for as long as it is kept:
//!
//! - only tokens verified with the configured keys (`CHRONICLE_JWT_SECRET`,
//!   `CHRONICLE_JWT_PUBLIC_KEY_FILE`) are kept, since those keys are fixed for the process's
//!   life; a token whose `kid` an identity provider could answer for ([`super::jwks`]) is
//!   verified each time, because the provider may withdraw or publish that key at its next
//!   refresh;
//! - the lookup is by the SHA-256 of the token's exact text, so a token altered in any byte is
//!   verified afresh (and refused), and the tokens themselves, which are credentials, are not
//!   kept;
//! - a kept token is answered only while it is unexpired by the same rule (`exp` with the same
//!   leeway); `nbf` was met when it was verified and time only moves on.
//!
//! The memory is bounded in tokens and in a token's length; when full it forgets everything
//! and refills, which costs a caller sending a new token every time no more than no memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;
use sha2::{Digest, Sha256};

/// Tokens kept before the memory starts over.
const MAX_TOKENS: usize = 4096;

/// Longer tokens are verified every time: they are rare and would cost the memory.
const MAX_TOKEN_BYTES: usize = 4096;

/// A token's SHA-256: what it is kept under.
type Digest32 = [u8; 32];

/// What verification answered for a token, and the token's `exp`.
type Kept<T> = (Arc<T>, i64);

/// What verification answered for each token kept (`T`: the caller's credentials), by the
/// token's SHA-256, with the token's `exp`.
pub(super) struct VerifiedTokens<T> {
    tokens: Mutex<HashMap<Digest32, Kept<T>>>,
    /// Seconds past `exp` a token is still accepted (the verifier's leeway).
    leeway: i64,
}

impl<T: Clone> VerifiedTokens<T> {
    /// An empty memory for a verifier that accepts tokens until `leeway_seconds` past `exp`.
    pub(super) fn new(leeway_seconds: u64) -> Self {
        Self {
            tokens: Mutex::new(HashMap::new()),
            leeway: i64::try_from(leeway_seconds).unwrap_or(i64::MAX),
        }
    }

    /// What `token` was verified to carry, while it is unexpired.
    pub(super) fn get(&self, token: &str) -> Option<T> {
        if token.len() > MAX_TOKEN_BYTES {
            return None; // never kept, and not worth hashing
        }
        let digest = digest(token);
        let answer = {
            let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
            let (answer, exp) = tokens.get(&digest)?;
            // jsonwebtoken's rule: refused once `exp < now - leeway`.
            if *exp < Utc::now().timestamp().saturating_sub(self.leeway) {
                tokens.remove(&digest);
                return None;
            }
            Arc::clone(answer)
        };
        Some(T::clone(&answer))
    }

    /// Remembers that `token`, expiring at `exp`, verified to `answer`.
    pub(super) fn keep(&self, token: &str, answer: &T, exp: i64) {
        if token.len() > MAX_TOKEN_BYTES {
            return;
        }
        let (digest, answer) = (digest(token), Arc::new(answer.clone()));
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= MAX_TOKENS {
            tokens.clear();
        }
        tokens.insert(digest, (answer, exp));
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The key a token is kept under.
fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEEWAY: u64 = 30;

    #[test]
    fn a_kept_token_is_answered_by_its_exact_text_while_unexpired() {
        let kept = VerifiedTokens::new(LEEWAY);
        let now = Utc::now().timestamp();
        kept.keep("a.b.c", &"u-1", now + 3600);
        assert_eq!(kept.get("a.b.c"), Some("u-1"));
        assert!(
            kept.get("a.b.d").is_none(),
            "another text is verified afresh"
        );

        // Within the leeway it is still good; beyond it, forgotten.
        kept.keep("late", &"u-2", now - LEEWAY as i64 + 5);
        assert!(kept.get("late").is_some());
        kept.keep("gone", &"u-3", now - LEEWAY as i64 - 1);
        assert!(kept.get("gone").is_none());
        assert!(kept.get("gone").is_none(), "and removed");
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn the_memory_stays_bounded_in_tokens_and_length() {
        let kept = VerifiedTokens::new(LEEWAY);
        let exp = Utc::now().timestamp() + 3600;
        kept.keep(&"t".repeat(MAX_TOKEN_BYTES + 1), &"u-1", exp);
        assert_eq!(kept.len(), 0, "too long to keep");
        for n in 0..=MAX_TOKENS {
            kept.keep(&format!("token-{n}"), &"u-1", exp);
        }
        assert!(kept.len() <= MAX_TOKENS);
        assert!(kept.get(&format!("token-{MAX_TOKENS}")).is_some());
    }
}
