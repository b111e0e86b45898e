//! The secret a data subject's personal values are sealed under.

use chacha20poly1305::aead::rand_core::RngCore as _;
use chacha20poly1305::aead::OsRng;
use zeroize::Zeroize;

/// A 256-bit data key. Its bytes never reach a log: `Debug` shows none of them, and they are
/// overwritten when the key is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A new random key, from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A key from its stored bytes; `None` unless there are exactly 32.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    /// The key's bytes, for the store that keeps it.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A new pseudonym for a data subject: 128 random bits, hex. Random rather than derived from
/// the subject's id, so nothing computes it from the id once the subject's key row is gone.
pub fn new_pseudonym() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_shows_its_bytes_and_round_trips_through_its_store_form() {
        let key = DataKey::generate();
        assert_eq!(format!("{key:?}"), "DataKey(..)");
        assert_eq!(DataKey::from_bytes(key.expose()), Some(key.clone()));
        assert_eq!(DataKey::from_bytes(&[0; 31]), None);
        assert_ne!(DataKey::generate(), key);
    }

    #[test]
    fn pseudonyms_are_random_and_hex() {
        let (a, b) = (new_pseudonym(), new_pseudonym());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
