//! Subject keys in memory, with the rules the Postgres adapter keeps: one key per subject,
//! pseudonyms unique, a destroyed key gone for good.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::store_error::StoreError;
use crate::ports::subject_keys::{SubjectKey, SubjectKeys};
use crate::privacy::data_key::{new_pseudonym, DataKey};

/// Keys by subject id.
#[derive(Default)]
pub(crate) struct MemorySubjectKeys {
    keys: Mutex<BTreeMap<String, SubjectKey>>,
}

impl MemorySubjectKeys {
    fn keys(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SubjectKey>> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many keys exist.
    pub fn len(&self) -> usize {
        self.keys().len()
    }

    /// Whether no key exists.
    pub fn is_empty(&self) -> bool {
        self.keys().is_empty()
    }
}

#[async_trait]
impl SubjectKeys for MemorySubjectKeys {
    async fn key_for(&self, subject_id: &str) -> Result<SubjectKey, StoreError> {
        Ok(self
            .keys()
            .entry(subject_id.to_owned())
            .or_insert_with(|| SubjectKey {
                subject_id: subject_id.to_owned(),
                pseudonym: new_pseudonym(),
                key: DataKey::generate(),
            })
            .clone())
    }

    async fn find(&self, subject_id: &str) -> Result<Option<SubjectKey>, StoreError> {
        Ok(self.keys().get(subject_id).cloned())
    }

    async fn by_pseudonym(&self, pseudonym: &str) -> Result<Option<SubjectKey>, StoreError> {
        Ok(self
            .keys()
            .values()
            .find(|key| key.pseudonym == pseudonym)
            .cloned())
    }

    async fn destroy(&self, subject_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.keys().remove(subject_id).map(|key| key.pseudonym))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::seal::{open, seal, SealError};

    #[tokio::test]
    async fn a_destroyed_key_leaves_its_sealed_values_unreadable_for_good() {
        let keys = MemorySubjectKeys::default();
        let maria = keys.key_for("u-7").await.unwrap();
        assert_eq!(
            keys.key_for("u-7").await.unwrap(),
            maria,
            "one key per subject"
        );
        assert_ne!(
            keys.key_for("u-8").await.unwrap().pseudonym,
            maria.pseudonym
        );
        let sealed = seal(&maria.key, &maria.pseudonym, "Maria Keller", "title");

        let found = keys.by_pseudonym(&maria.pseudonym).await.unwrap().unwrap();
        assert_eq!(found.subject_id, "u-7");
        assert_eq!(
            open(&found.key, &sealed, "title").as_deref(),
            Ok("Maria Keller")
        );

        assert_eq!(
            keys.destroy("u-7").await.unwrap(),
            Some(maria.pseudonym.clone())
        );
        assert_eq!(keys.by_pseudonym(&maria.pseudonym).await.unwrap(), None);
        assert_eq!(
            keys.destroy("u-7").await.unwrap(),
            None,
            "nothing left to destroy"
        );
        assert_eq!(
            keys.find("u-7").await.unwrap(),
            None,
            "a search makes no key"
        );
        let again = keys.key_for("u-7").await.unwrap();
        assert_ne!(
            again.pseudonym, maria.pseudonym,
            "new data, a new pseudonym"
        );
        assert_eq!(
            open(&again.key, &sealed, "title"),
            Err(SealError::DoesNotOpen)
        );
        assert_eq!(keys.len(), 2);
    }
}
