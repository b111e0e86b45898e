//! Where the service's write and read paths meet personal data: the executor seals what it
//! stores, and every reader of stored events (command loads, the audit trail, time travel,
//! rebuilds) opens what it reads through this one type.

use std::sync::Arc;

use super::seal::reference;
use super::sealing::{EventSealer, Opening, Sealed};
use crate::data::event_log::StoredEvent;
use crate::error::AppError;
use crate::ports::subject_keys::SubjectKeys;

/// Whether new events are stored with their personal values sealed. Opening never depends on
/// it: a store holds events of both kinds once sealing was on for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// Sealed: a person can be erased (`CHRONICLE_SEAL_PERSONAL_DATA=true`, the default).
    On,
    /// In clear, as before sealing existed: readable by anything that reads the table, and
    /// not erasable without rewriting history.
    Off,
}

/// Seals and opens events' personal values with the subjects' keys.
pub struct PersonalData {
    keys: Arc<dyn SubjectKeys>,
    sealer: EventSealer,
    sealing: Sealing,
}

impl PersonalData {
    /// Over `keys`, sealing new events or not.
    pub fn new(keys: Arc<dyn SubjectKeys>, sealing: Sealing) -> Self {
        Self {
            sealer: EventSealer::new(keys.clone()),
            keys,
            sealing,
        }
    }

    /// The subjects' keys.
    pub fn keys(&self) -> &Arc<dyn SubjectKeys> {
        &self.keys
    }

    /// Seals a new event's personal values in place, before its hash is computed, when
    /// sealing is on; answers whose each value was and the keys used (nothing when sealing is
    /// off).
    pub(crate) async fn seal_new(&self, event: &mut StoredEvent) -> Result<Sealed, AppError> {
        match self.sealing {
            Sealing::On => self.sealer.seal(event).await,
            Sealing::Off => Ok(Sealed::default()),
        }
    }

    /// Forgets what this process holds about these keys: an append sealed under them was
    /// refused because one is gone.
    pub fn evict(&self, pseudonyms: &[String]) {
        for pseudonym in pseudonyms {
            self.keys.evict(pseudonym);
        }
    }

    /// Opens a stored event in place: the values, or markers where a key was destroyed. An
    /// event stored in clear is left as it is.
    pub async fn open(&self, event: &mut StoredEvent) -> Result<Opening, AppError> {
        self.sealer.open(event).await
    }

    /// An opened copy of a stored event, and what opening it found.
    pub async fn opened(&self, stored: &StoredEvent) -> Result<(StoredEvent, Opening), AppError> {
        let mut event = stored.clone();
        let opening = self.open(&mut event).await?;
        Ok((event, opening))
    }

    /// A user id as the trail shows it: a stored reference opened to the id, or to its
    /// marker once the key is gone; anything else as stored.
    pub(crate) async fn actor_as_read(&self, stored: &str) -> Result<String, AppError> {
        let Some(pseudonym) = super::seal::referenced_pseudonym(stored) else {
            return Ok(stored.to_owned());
        };
        Ok(match self.keys.by_pseudonym(pseudonym).await? {
            Some(key) => key.subject_id,
            None => format!("{}{pseudonym}", chronicle_domain::ids::ERASED_PREFIX),
        })
    }

    /// Every form `subject_id` is stored under as an actor: in clear (events stored before
    /// sealing) and as a reference to its key, while it has one. An erased person's id names
    /// no reference: their events answer to their pseudonym only.
    pub(crate) async fn stored_forms(&self, subject_id: &str) -> Result<Vec<String>, AppError> {
        let mut forms = vec![subject_id.to_owned()];
        if let Some(key) = self.keys.find(subject_id).await? {
            forms.push(reference(&key.pseudonym));
        }
        Ok(forms)
    }
}
