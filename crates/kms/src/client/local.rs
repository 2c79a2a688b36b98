//! The local facility: the seed's `LocalKeyManagementFacility`, which asks a
//! key server for DEKs, caches them, and encrypts on the client's machine.
//!
//! Seed flaw fixed here: keas.kmi's `encrypt_file` padded the last chunk of
//! a file with spaces to a 16-byte multiple and its `decrypt_file` cut the
//! output back with `truncate`, which corrupted output streams that are not
//! seekable files and let a modified file decrypt to garbage. Files and
//! streams here use the segmented stream format of `seccs-core`: exact
//! lengths, authenticated segments, truncation and reordering detected.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use seccs_core::SecretKey;
use seccs_core::kdf::{self, Label};
use seccs_core::stream::{self, StreamParams};

use super::{
    BlockingClient, CachedKey, ClientConfig, Clock, DekCache, SystemClock, cache_id, url_digest,
};
use crate::KmsError;

/// HKDF label of the stream key of files, derived from the DEK.
const FILE_LABEL: Label = Label::Custom("seccs/v1/kms/file");

/// A caching client that encrypts locally with DEKs from a key server.
#[derive(Debug)]
pub struct LocalFacility {
    client: BlockingClient,
    url_digest: [u8; 32],
    cache: DekCache,
}

impl LocalFacility {
    /// A local facility for `config`, with the system clock.
    pub fn new(config: &ClientConfig) -> Result<Self, KmsError> {
        Self::with_clock(config, Arc::new(SystemClock::default()))
    }

    /// A local facility whose cache uses `clock`.
    pub fn with_clock(config: &ClientConfig, clock: Arc<dyn Clock>) -> Result<Self, KmsError> {
        Ok(Self {
            client: BlockingClient::new(config)?,
            url_digest: url_digest(&config.url),
            cache: DekCache::new(config.cache_ttl, clock),
        })
    }

    /// The DEK cache.
    pub fn cache(&self) -> &DekCache {
        &self.cache
    }

    /// Asks the server for a new KEK.
    pub fn generate(&self) -> Result<SecretKey, KmsError> {
        self.client.run(|c| c.new_kek())
    }

    /// The cached key of `kek`, fetched from the server on a miss. Errors
    /// (a 404 included) are returned and never cached.
    pub fn key(&self, kek: &SecretKey) -> Result<Arc<CachedKey>, KmsError> {
        let id = cache_id(&self.url_digest, kek);
        if let Some(k) = self.cache.get(&id) {
            return Ok(k);
        }
        let dek = self.client.run(|c| c.dek(kek))?;
        let key = Arc::new(CachedKey::new(dek));
        self.cache.insert(id, Arc::clone(&key));
        Ok(key)
    }

    /// The DEK of `kek`.
    pub fn dek(&self, kek: &SecretKey) -> Result<SecretKey, KmsError> {
        Ok(self.key(kek)?.dek().clone())
    }

    /// Encrypts `plaintext` bound to `context`.
    pub fn encrypt(
        &self,
        kek: &SecretKey,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        self.key(kek)?.cipher().seal(plaintext, context)
    }

    /// Decrypts a ciphertext of [`encrypt`](Self::encrypt); any change to
    /// it, or another context, is [`KmsError::Tampered`].
    pub fn decrypt(
        &self,
        kek: &SecretKey,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        self.key(kek)?.cipher().open(ciphertext, context)
    }

    /// Encrypts a stream of any length in constant memory.
    pub fn encrypt_stream(
        &self,
        kek: &SecretKey,
        context: &[u8],
        reader: &mut dyn Read,
        writer: &mut dyn Write,
    ) -> Result<u64, KmsError> {
        let key = file_key(self.key(kek)?.dek());
        stream::encrypt_stream(&key, StreamParams::default(), context, reader, writer)
            .map_err(KmsError::from_stream)
    }

    /// Decrypts a stream of [`encrypt_stream`](Self::encrypt_stream).
    pub fn decrypt_stream(
        &self,
        kek: &SecretKey,
        context: &[u8],
        reader: &mut dyn Read,
        writer: &mut dyn Write,
    ) -> Result<u64, KmsError> {
        let key = file_key(self.key(kek)?.dek());
        stream::decrypt_stream(&key, context, reader, writer).map_err(KmsError::from_stream)
    }

    /// Encrypts the file `src` into `dst` (written to a temporary file and
    /// renamed, so `dst` never holds a partial result).
    pub fn encrypt_file(
        &self,
        kek: &SecretKey,
        context: &[u8],
        src: &Path,
        dst: &Path,
    ) -> Result<u64, KmsError> {
        let key = file_key(self.key(kek)?.dek());
        encrypt_file_with(&key, context, src, dst)
    }

    /// Decrypts the file `src` into `dst`; on any error `dst` is untouched.
    pub fn decrypt_file(
        &self,
        kek: &SecretKey,
        context: &[u8],
        src: &Path,
        dst: &Path,
    ) -> Result<u64, KmsError> {
        let key = file_key(self.key(kek)?.dek());
        decrypt_file_with(&key, context, src, dst)
    }
}

/// The stream key of files under `dek`.
pub(crate) fn file_key(dek: &SecretKey) -> SecretKey {
    kdf::derive(dek, FILE_LABEL)
}

fn temp_beside(dst: &Path) -> Result<(std::path::PathBuf, fs::File), KmsError> {
    let dir = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dst
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or(KmsError::Config("destination needs a file name".into()))?;
    let (p, f) = crate::atomic::write_temp(dir, name, &[])?;
    Ok((p, f))
}

fn finish_temp(tmp: &Path, dst: &Path, r: Result<u64, KmsError>) -> Result<u64, KmsError> {
    match r.and_then(|n| fs::rename(tmp, dst).map(|()| n).map_err(KmsError::from)) {
        Ok(n) => Ok(n),
        Err(e) => {
            let _ = fs::remove_file(tmp);
            Err(e)
        }
    }
}

/// Encrypts file `src` to `dst` under the stream key `key`.
pub fn encrypt_file_with(
    key: &SecretKey,
    context: &[u8],
    src: &Path,
    dst: &Path,
) -> Result<u64, KmsError> {
    let mut input = fs::File::open(src)?;
    let (tmp, mut out) = temp_beside(dst)?;
    let r = stream::encrypt_stream(key, StreamParams::default(), context, &mut input, &mut out)
        .map_err(KmsError::from_stream);
    finish_temp(&tmp, dst, r)
}

/// Decrypts file `src` to `dst` under the stream key `key`.
pub fn decrypt_file_with(
    key: &SecretKey,
    context: &[u8],
    src: &Path,
    dst: &Path,
) -> Result<u64, KmsError> {
    let input = fs::File::open(src)?;
    let (tmp, mut out) = temp_beside(dst)?;
    let r = stream::decrypt_stream(key, context, input, &mut out).map_err(KmsError::from_stream);
    finish_temp(&tmp, dst, r)
}
