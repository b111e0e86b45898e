//! The keys personal data is sealed under, one per data subject: destroying a subject's key is
//! what erases their data (docs/privacy.md). Postgres keeps them today; a KMS (Vault transit,
//! a cloud KMS) can later, behind the same port.

use async_trait::async_trait;

use crate::data::data_key::DataKey;
use crate::ports::store_error::StoreError;

/// A data subject's key and the pseudonym sealed values name it by. `Debug` shows the
/// pseudonym only: the subject's id is personal data, and the key a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectKey {
    /// The subject: a user id.
    pub subject_id: String,
    /// What sealed values name instead of the subject's id.
    pub pseudonym: String,
    /// The key.
    pub key: DataKey,
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKey")
            .field("pseudonym", &self.pseudonym)
            .finish_non_exhaustive()
    }
}

/// The keys of the data subjects.
#[async_trait]
pub trait SubjectKeys: Send + Sync {
    /// The key of `subject_id`, made on first use; callers racing on a first use all get the
    /// one that was kept.
    async fn key_for(&self, subject_id: &str) -> Result<SubjectKey, StoreError>;

    /// The key of `subject_id` if one exists, without making one: a lookup by person (a
    /// filter) must not give keys to ids that were only searched for, nor to erased people.
    async fn find(&self, subject_id: &str) -> Result<Option<SubjectKey>, StoreError>;

    /// The subject and key a sealed value or a reference names by `pseudonym`; `None` once the
    /// key was destroyed (or never existed).
    async fn by_pseudonym(&self, pseudonym: &str) -> Result<Option<SubjectKey>, StoreError>;

    /// Destroys the key of `subject_id` for good, answering the pseudonym it had (`None` when
    /// there was no key). A later [`Self::key_for`] makes a new key under a new pseudonym.
    ///
    /// Answers only once no append that may have seen the key is still in flight (also when
    /// the key was already gone, as when an erasure is asked again): every event sealed under
    /// it is then committed, or refused, so what the erasure rewrites next includes it.
    async fn destroy(&self, subject_id: &str) -> Result<Option<String>, StoreError>;

    /// Drops whatever this process holds about the key named `pseudonym`, so the next lookup
    /// reads the key store (nothing for a store without a cache).
    fn evict(&self, _pseudonym: &str) {}
}
