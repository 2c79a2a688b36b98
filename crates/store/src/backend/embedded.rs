//! placeholder
use super::{Backend, BackendError, Batch, Entry};
/// The embedded backend.
#[derive(Debug)]
pub struct EmbeddedBackend;
impl Backend for EmbeddedBackend {
    fn name(&self) -> &str {
        "embedded"
    }
    fn get_many(&self, _keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
        Err(BackendError::Config("wip".into()))
    }
    fn apply(&self, _batch: &Batch) -> Result<(), BackendError> {
        Err(BackendError::Config("wip".into()))
    }
    fn is_transactional(&self) -> bool {
        true
    }
    fn for_each(
        &self,
        _visit: &mut dyn FnMut(&[u8], &Entry) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        Ok(())
    }
}
