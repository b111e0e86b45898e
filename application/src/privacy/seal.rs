//! Sealing one personal value under its subject's key, and opening it again.
//!
//! A sealed value is text, so it fits every JSON field a plain value did:
//!
//! ```text
//! pd1:<pseudonym>:<base64url(nonce || ciphertext)>
//! ```
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce (no counter to keep per key, however many
//! values a subject writes). The associated data binds the value to its subject's pseudonym and
//! to its place (`context`: the event and field it belongs to), so a sealed value copied to
//! another event or field, or relabelled with another subject, does not open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use thiserror::Error;

use chronicle_domain::ids::{REFERENCE_PREFIX, SEALED_PREFIX};

use super::data_key::DataKey;

/// The reference a user id is stored as.
pub fn reference(pseudonym: &str) -> String {
    format!("{REFERENCE_PREFIX}{pseudonym}")
}

/// The pseudonym a reference names; `None` for anything else.
pub(crate) fn referenced_pseudonym(value: &str) -> Option<&str> {
    value
        .strip_prefix(REFERENCE_PREFIX)
        .filter(|pseudonym| is_pseudonym(pseudonym))
}

/// Whether `text` has a pseudonym's form: 32 lowercase hex digits.
pub(crate) fn is_pseudonym(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Bytes of an XChaCha20 nonce.
const NONCE_BYTES: usize = 24;

/// Why a value did not open.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    /// The value is not in the sealed format.
    #[error("not a sealed value")]
    NotSealed,
    /// It is sealed, but under another key, for another place, or altered.
    #[error("the sealed value does not open under this key and context")]
    DoesNotOpen,
}

fn associated_data(pseudonym: &str, context: &str) -> String {
    let mut data = String::with_capacity(SEALED_PREFIX.len() + pseudonym.len() + 1 + context.len());
    data.push_str(SEALED_PREFIX);
    data.push_str(pseudonym);
    data.push('\n');
    data.push_str(context);
    data
}

/// Seals `plaintext` under `key`, the key of the subject named `pseudonym`, for `context`.
pub fn seal(key: &DataKey, pseudonym: &str, plaintext: &str, context: &str) -> String {
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    // The thread's CSPRNG (ChaCha12, reseeded from the OS): a random 192-bit nonce needs no
    // system call of its own, which one per sealed value (about four per createTask) cost.
    let nonce = XChaCha20Poly1305::generate_nonce(&mut rand::thread_rng());
    let aad = associated_data(pseudonym, context);
    let payload = Payload {
        msg: plaintext.as_bytes(),
        aad: aad.as_bytes(),
    };
    // Encryption into memory fails only when the message exceeds what the cipher counts
    // (256 GiB): no text a request can carry comes near.
    let ciphertext = cipher.encrypt(&nonce, payload).unwrap_or_default();
    let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    // Written into one string of its final size: sealing runs for every personal value of
    // every command, and growing strings by formatting was most of its allocations.
    let encoded = base64::encoded_len(sealed.len(), false).unwrap_or_default();
    let mut text = String::with_capacity(SEALED_PREFIX.len() + pseudonym.len() + 1 + encoded);
    text.push_str(SEALED_PREFIX);
    text.push_str(pseudonym);
    text.push(':');
    URL_SAFE_NO_PAD.encode_string(&sealed, &mut text);
    text
}

/// The pseudonym a sealed value names, so its key can be found; `None` for any other text.
pub(crate) fn pseudonym_of(value: &str) -> Option<&str> {
    let (pseudonym, _) = value.strip_prefix(SEALED_PREFIX)?.split_once(':')?;
    Some(pseudonym)
}

/// Opens a value [`seal`] made with the same key and context.
pub fn open(key: &DataKey, sealed: &str, context: &str) -> Result<String, SealError> {
    let (pseudonym, encoded) = sealed
        .strip_prefix(SEALED_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .ok_or(SealError::NotSealed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| SealError::NotSealed)?;
    if bytes.len() < NONCE_BYTES {
        return Err(SealError::NotSealed);
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    let aad = associated_data(pseudonym, context);
    let plaintext = cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| SealError::DoesNotOpen)?;
    String::from_utf8(plaintext).map_err(|_| SealError::DoesNotOpen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLACE: &str = "event 0190f0a0-0000-7000-8000-000000000001 /TaskCreated/title";

    #[test]
    fn a_sealed_value_opens_under_its_key_and_place_only() {
        let key = DataKey::generate();
        let sealed = seal(&key, "3f9a", "Call Maria Keller about her contract", PLACE);
        assert!(sealed.starts_with("pd1:3f9a:"), "{sealed}");
        assert!(!sealed.contains("Maria"));
        assert_eq!(pseudonym_of(&sealed), Some("3f9a"));
        assert_eq!(
            open(&key, &sealed, PLACE).as_deref(),
            Ok("Call Maria Keller about her contract")
        );
        assert_eq!(
            open(&DataKey::generate(), &sealed, PLACE),
            Err(SealError::DoesNotOpen),
            "another subject's key"
        );
        assert_eq!(
            open(
                &key,
                &sealed,
                "event 0190f0a0-0000-7000-8000-000000000002 /TaskCreated/title"
            ),
            Err(SealError::DoesNotOpen),
            "copied to another event"
        );
        let relabelled = sealed.replacen("pd1:3f9a:", "pd1:aaaa:", 1);
        assert_eq!(open(&key, &relabelled, PLACE), Err(SealError::DoesNotOpen));
    }

    #[test]
    fn sealing_twice_gives_two_texts_and_an_altered_one_does_not_open() {
        let key = DataKey::generate();
        let (a, b) = (
            seal(&key, "p", "same", PLACE),
            seal(&key, "p", "same", PLACE),
        );
        assert_ne!(
            a, b,
            "a random nonce each time: equal values do not show as equal"
        );
        // One bit of the ciphertext flipped (after the nonce), the framing left valid.
        let (prefix, encoded) = a.rsplit_once(':').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(encoded).unwrap();
        bytes[NONCE_BYTES] ^= 1;
        let altered = format!("{prefix}:{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(open(&key, &altered, PLACE), Err(SealError::DoesNotOpen));
    }

    #[test]
    fn plain_text_is_not_taken_for_a_sealed_value() {
        let key = DataKey::generate();
        for plain in [
            "Write the release notes",
            "pd1:",
            "pd1:p:",
            "pd1:p:!!",
            "u-7",
        ] {
            assert_eq!(pseudonym_of(plain).is_some(), plain.starts_with("pd1:p:"));
            assert_eq!(
                open(&key, plain, PLACE),
                Err(SealError::NotSealed),
                "{plain}"
            );
        }
        assert_eq!(open(&key, "", PLACE), Err(SealError::NotSealed));
    }
}
