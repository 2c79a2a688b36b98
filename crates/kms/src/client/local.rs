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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use seccs_core::SecretKey;
use seccs_core::kdf::{self, Label};
use seccs_core::stream::{self, StreamParams};
use zeroize::Zeroizing;

use super::{
    BlockingClient, CachedKey, ClientConfig, Clock, DekCache, SystemClock, cache_id,
    ensure_not_in_runtime, url_digest,
};
use crate::KmsError;

/// HKDF label of the stream key of files, derived from the DEK.
const FILE_LABEL: Label = Label::Custom("seccs/v1/kms/file");

/// A caching client that encrypts locally with DEKs from a key server.
///
/// Its methods block (they ask the server through a [`BlockingClient`]):
/// call them on a thread outside any tokio runtime. On a thread inside one
/// (an async task, a `#[tokio::main]` or `#[tokio::test]` body, and also a
/// `spawn_blocking` closure, to which tokio gives the runtime's context)
/// every method but [`cache`](Self::cache) fails with
/// [`KmsError::InsideAsyncRuntime`], whether the key is cached or not,
/// instead of panicking. From async code, run them on a thread of its own
/// (`std::thread::spawn`), or use the async [`super::KmsClient`]. Making
/// and dropping one inside a runtime is safe.
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
        ensure_not_in_runtime("LocalFacility")?;
        self.client.run(|c| c.new_kek())
    }

    /// The cached key of `kek`, fetched from the server on a miss. Errors
    /// (a 404 included) are returned and never cached.
    pub fn key(&self, kek: &SecretKey) -> Result<Arc<CachedKey>, KmsError> {
        ensure_not_in_runtime("LocalFacility")?;
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
    /// it, or another context, is [`KmsError::Tampered`]. The plaintext is
    /// zeroized when dropped.
    pub fn decrypt(
        &self,
        kek: &SecretKey,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
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

    /// Encrypts the file `src` into `dst` (written to a temporary file,
    /// synced and renamed, so `dst` never holds a partial result). An
    /// existing `dst` that is not a regular file (a device, a named pipe, a
    /// symbolic link, a directory) is refused, never replaced.
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
    /// `dst` is written as by [`encrypt_file`](Self::encrypt_file).
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

/// Opens `src` for reading, naming it in the error.
fn open_input(src: &Path) -> Result<fs::File, KmsError> {
    fs::File::open(src).map_err(|source| KmsError::File {
        action: "open",
        path: src.to_owned(),
        source,
    })
}

/// A temporary file beside `dst` (mode 0600), after checking that `dst`,
/// if it exists, is a regular file: a rename over a device node, a named
/// pipe, a symbolic link or a directory would replace it.
fn temp_beside(dst: &Path) -> Result<(PathBuf, fs::File), KmsError> {
    match fs::symlink_metadata(dst) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(KmsError::NotRegularFile(dst.to_owned()));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(KmsError::File {
                action: "check",
                path: dst.to_owned(),
                source,
            });
        }
    }
    let dir = parent_dir(dst);
    let name = dst
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or(KmsError::Config("destination needs a file name".into()))?;
    crate::dir::DirFd::open_io(dir)
        .and_then(|opened| {
            crate::atomic::write_temp(&opened, name, &[])
                .map(|(tmp, file)| (opened.join(tmp), file))
        })
        .map_err(|source| KmsError::File {
            action: "create a file in",
            path: dir.to_owned(),
            source,
        })
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Syncs the temporary file and renames it to `dst` if `r` succeeded (then
/// syncs the directory, so the new file survives a crash); else removes it.
fn finish_temp(
    tmp: &Path,
    out: fs::File,
    dst: &Path,
    r: Result<u64, KmsError>,
) -> Result<u64, KmsError> {
    let published = r.and_then(|n| {
        out.sync_all()
            .and_then(|()| fs::rename(tmp, dst))
            .map_err(|source| KmsError::File {
                action: "write",
                path: dst.to_owned(),
                source,
            })?;
        Ok(n)
    });
    drop(out);
    match published {
        Ok(n) => {
            let dir = parent_dir(dst);
            crate::atomic::sync_dir(dir).map_err(|source| KmsError::File {
                action: "sync",
                path: dir.to_owned(),
                source,
            })?;
            Ok(n)
        }
        Err(e) => {
            let _ = fs::remove_file(tmp);
            Err(e)
        }
    }
}

/// Encrypts file `src` to `dst` under the stream key `key`: through a
/// synced temporary file beside `dst`, renamed over it only once whole. An
/// existing `dst` that is not a regular file is refused
/// ([`KmsError::NotRegularFile`]).
pub fn encrypt_file_with(
    key: &SecretKey,
    context: &[u8],
    src: &Path,
    dst: &Path,
) -> Result<u64, KmsError> {
    let mut input = open_input(src)?;
    let (tmp, mut out) = temp_beside(dst)?;
    let r = stream::encrypt_stream(key, StreamParams::default(), context, &mut input, &mut out)
        .map_err(KmsError::from_stream);
    finish_temp(&tmp, out, dst, r)
}

/// Decrypts file `src` to `dst` under the stream key `key`, as
/// [`encrypt_file_with`] writes: `dst` appears only if all of `src`
/// authenticates.
pub fn decrypt_file_with(
    key: &SecretKey,
    context: &[u8],
    src: &Path,
    dst: &Path,
) -> Result<u64, KmsError> {
    let input = open_input(src)?;
    let (tmp, mut out) = temp_beside(dst)?;
    let r = stream::decrypt_stream(key, context, input, &mut out).map_err(KmsError::from_stream);
    finish_temp(&tmp, out, dst, r)
}
