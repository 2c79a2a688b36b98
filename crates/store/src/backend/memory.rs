//! An in-memory backend: a hash map behind a lock, for tests, benchmarks and
//! short-lived stores.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::{Backend, BackendError, Batch, Damaged, Entry, Op, Visitor};

/// Entries held in process memory; gone when dropped.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    map: Mutex<HashMap<Vec<u8>, Entry>>,
    /// The store marker, where the backend keeps one
    /// ([`MemoryBackend::keeping_marker`]).
    marker: Slot,
    /// The store's descriptor, kept where a marker is.
    descriptor: Slot,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty backend that keeps a store marker and descriptor, as a
    /// network backend does. For tests of what a marker decides.
    pub fn keeping_marker() -> Self {
        Self {
            marker: Some(Mutex::default()),
            descriptor: Some(Mutex::default()),
            ..Self::default()
        }
    }

    /// Loses every entry, the marker and the descriptor at once, as a
    /// server emptied behind the store's back. For tests.
    pub fn lose_everything(&self) {
        self.lock().clear();
        set_slot(&self.marker, None);
        set_slot(&self.descriptor, None);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Entry>> {
        // A panic while holding the lock cannot leave a half-applied batch
        // visible: `apply` builds nothing in place before it validates, so the
        // map is usable after poisoning.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the value of an entry in place, keeping its count. For tests
    /// that tamper with stored data.
    pub fn tamper(&self, key: &[u8], value: Vec<u8>) -> bool {
        match self.lock().get_mut(key) {
            Some(entry) => {
                entry.value = value;
                true
            }
            None => false,
        }
    }

    /// The stored value of an entry (empty if absent). For tests.
    pub fn get_raw(&self, key: &[u8]) -> Vec<u8> {
        self.lock()
            .get(key)
            .map(|e| e.value.clone())
            .unwrap_or_default()
    }

    /// Removes an entry behind the store's back. For tests.
    pub fn remove_raw(&self, key: &[u8]) -> bool {
        self.lock().remove(key).is_some()
    }

    /// Every key, for tests that tamper with stored data.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.lock().keys().cloned().collect()
    }
}

/// A value kept beside the entries (the marker, the descriptor), where the
/// backend keeps one. Nothing panics while holding its lock.
type Slot = Option<Mutex<Option<Vec<u8>>>>;

fn read_slot(slot: &Slot) -> Option<Vec<u8>> {
    slot.as_ref()
        .and_then(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
}

fn set_slot(slot: &Slot, value: Option<Vec<u8>>) {
    if let Some(s) = slot {
        *s.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

impl Backend for MemoryBackend {
    fn keeps_marker(&self) -> bool {
        self.marker.is_some()
    }

    fn read_marker(&self) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(read_slot(&self.marker))
    }

    fn write_marker(&self, value: &[u8]) -> Result<(), BackendError> {
        set_slot(&self.marker, Some(value.to_vec()));
        Ok(())
    }

    fn remove_marker(&self) -> Result<(), BackendError> {
        set_slot(&self.marker, None);
        Ok(())
    }

    fn keeps_descriptor(&self) -> bool {
        self.descriptor.is_some()
    }

    fn read_descriptor(&self) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(read_slot(&self.descriptor))
    }

    fn write_descriptor(&self, value: &[u8]) -> Result<(), BackendError> {
        set_slot(&self.descriptor, Some(value.to_vec()));
        Ok(())
    }

    fn name(&self) -> &str {
        "memory"
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
        let map = self.lock();
        Ok(keys.iter().map(|k| map.get(*k).cloned()).collect())
    }

    fn get_counts(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        let map = self.lock();
        Ok(keys.iter().map(|k| map.get(*k).map(|e| e.count)).collect())
    }

    fn apply(&self, batch: &Batch) -> Result<(), BackendError> {
        self.apply_owned(batch.clone())
    }

    fn apply_owned(&self, batch: Batch) -> Result<(), BackendError> {
        let mut map = self.lock();
        for op in batch.into_ops() {
            match op {
                Op::Put { key, value, count } => {
                    map.insert(key, Entry { value, count });
                }
                Op::SetCount { key, count } => {
                    if let Some(entry) = map.get_mut(&key) {
                        entry.count = count;
                    }
                }
                Op::Delete { key } => {
                    map.remove(&key);
                }
                Op::Barrier => {}
            }
        }
        Ok(())
    }

    fn is_transactional(&self) -> bool {
        true
    }

    /// Entries in memory cannot be damaged apart from their values (which
    /// the store authenticates), so `damaged` is never called.
    fn walk(
        &self,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
        _damaged: Option<&mut Damaged<'_>>,
    ) -> Result<(), BackendError> {
        let map = self.lock();
        for (key, entry) in map.iter().filter(|(key, _)| key.starts_with(prefix)) {
            visit(key, entry)?;
        }
        Ok(())
    }
}
