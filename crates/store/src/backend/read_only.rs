//! A backend that only reads: the store a reader opens
//! ([`crate::dir::StoreDir::open_for_reading`]) holds no writer lease, so
//! anything it wrote would race the store's writer on reference counts.
//! Every write is refused here instead of reaching the server.

use std::sync::Arc;

use super::{Backend, BackendError, Batch, Damaged, Entry, Usage, Visitor};

/// `inner` with every write ([`Backend::apply`], [`Backend::write_marker`],
/// [`Backend::write_descriptor`],
/// [`Backend::reclaim_space`]) refused.
pub(crate) struct ReadOnly(pub(crate) Arc<dyn Backend>);

impl ReadOnly {
    fn refused(&self) -> BackendError {
        BackendError::other(
            self.0.name(),
            "the store was opened for reading (without the writer lease): nothing is written \
             through it",
        )
    }
}

impl Backend for ReadOnly {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
        self.0.get_many(keys)
    }
    fn get_values(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        self.0.get_values(keys)
    }
    fn get_counts(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        self.0.get_counts(keys)
    }
    fn apply(&self, _batch: &Batch) -> Result<(), BackendError> {
        Err(self.refused())
    }
    fn apply_owned(&self, _batch: Batch) -> Result<(), BackendError> {
        Err(self.refused())
    }
    fn is_transactional(&self) -> bool {
        self.0.is_transactional()
    }
    fn walk(
        &self,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
        damaged: Option<&mut Damaged<'_>>,
    ) -> Result<(), BackendError> {
        self.0.walk(prefix, visit, damaged)
    }
    fn usage(&self) -> Result<Usage, BackendError> {
        self.0.usage()
    }
    fn reclaim_space(&self) -> Result<Option<String>, BackendError> {
        Err(self.refused())
    }
    fn release(&self) {
        self.0.release()
    }
    fn check_lookups(
        &self,
        keys: &[&[u8]],
        failed: &mut dyn FnMut(&[u8], BackendError),
    ) -> Result<(), BackendError> {
        self.0.check_lookups(keys, failed)
    }
    fn risks(&self) -> Vec<String> {
        self.0.risks()
    }
    fn keeps_marker(&self) -> bool {
        self.0.keeps_marker()
    }
    fn read_marker(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.0.read_marker()
    }
    fn write_marker(&self, _value: &[u8]) -> Result<(), BackendError> {
        Err(self.refused())
    }
    fn remove_marker(&self) -> Result<(), BackendError> {
        Err(self.refused())
    }
    fn nested_stores(&self) -> Result<Vec<String>, BackendError> {
        self.0.nested_stores()
    }
    fn keeps_descriptor(&self) -> bool {
        self.0.keeps_descriptor()
    }
    fn read_descriptor(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.0.read_descriptor()
    }
    fn write_descriptor(&self, _value: &[u8]) -> Result<(), BackendError> {
        Err(self.refused())
    }
}
