//! A server's records on disk.
//!
//! ```text
//! ROOT/server-id                         this server's id (its channel survives restarts)
//! ROOT/records/<sha256(tag) hex>/tag     the tag itself
//! ROOT/records/<sha256(tag) hex>/<version, 20 digits>.rec
//! ```
//!
//! Seed flaw fixed here: *a tag whose base64 contains `/` crashes a server
//! thread*. The seed used base64 of the tag as a file name. Here a file name
//! is the hex SHA-256 of the tag: always 64 safe characters, whatever the tag
//! holds (`/`, `+`, `..`, unicode, 4 KiB). Every file is written to a
//! temporary name, synced, then renamed, so a crash never leaves half a record.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::message::{ListEntry, VersionEntry};

/// What a store request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The record was written.
    Stored,
    /// The same record was already there.
    Unchanged,
    /// A different record holds this version.
    Conflict,
}

/// Records kept in a directory.
#[derive(Debug, Clone)]
pub struct RecordStore {
    root: PathBuf,
    dir: PathBuf,
}

fn io(context: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let context = format!("{context} {}", path.display());
    move |e| Error::io(context, e)
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Config("path without parent".into()))?;
    let mut rnd = [0u8; 8];
    seccs_core::random_bytes(&mut rnd)?;
    let tmp = dir.join(format!(".tmp-{}", hex::encode(rnd)));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename to", path))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn version_file(version: u64) -> String {
    format!("{version:020}.rec")
}

fn parse_version_file(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".rec")?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

impl RecordStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: &Path) -> Result<Self, Error> {
        let dir = root.join("records");
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        Ok(Self {
            root: root.to_owned(),
            dir,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `tag`: the hex SHA-256 of the tag.
    pub fn tag_dir(&self, tag: &str) -> PathBuf {
        self.dir.join(hex::encode(Sha256::digest(tag.as_bytes())))
    }

    /// The file of one version of `tag`.
    pub fn record_path(&self, tag: &str, version: u64) -> PathBuf {
        self.tag_dir(tag).join(version_file(version))
    }

    /// Stores `record` as `version` of `tag`, unless another record is there.
    pub fn put(&self, tag: &str, version: u64, record: &[u8]) -> Result<PutOutcome, Error> {
        let dir = self.tag_dir(tag);
        let new_tag = !dir.exists();
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let tag_file = dir.join("tag");
        if !tag_file.exists() {
            write_atomic(&tag_file, tag.as_bytes())?;
        }
        let path = dir.join(version_file(version));
        match fs::read(&path) {
            Ok(existing) if existing == record => return Ok(PutOutcome::Unchanged),
            Ok(_) => return Ok(PutOutcome::Conflict),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        }
        write_atomic(&path, record)?;
        if new_tag {
            // The new tag directory's own entry must be on disk too before
            // the record counts as stored.
            fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync", &self.dir))?;
        }
        Ok(PutOutcome::Stored)
    }

    /// The record of `version` of `tag`, if held.
    pub fn get(&self, tag: &str, version: u64) -> Result<Option<Vec<u8>>, Error> {
        let path = self.record_path(tag, version);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    fn versions(dir: &Path) -> Vec<VersionEntry> {
        let mut out: Vec<VersionEntry> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = parse_version_file(e.file_name().to_str()?)?;
                let stored_bytes = e.metadata().ok()?.len();
                Some(VersionEntry {
                    version,
                    stored_bytes,
                })
            })
            .collect();
        out.sort_by_key(|v| v.version);
        out
    }

    /// Every tag starting with `prefix`, with its versions.
    pub fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)
            .map_err(io("list", &self.dir))?
            .flatten()
        {
            let dir = entry.path();
            let Ok(tag) = fs::read(dir.join("tag")) else {
                continue;
            };
            let Ok(tag) = String::from_utf8(tag) else {
                continue;
            };
            if !tag.starts_with(prefix) {
                continue;
            }
            let versions = Self::versions(&dir);
            if !versions.is_empty() {
                out.push(ListEntry { tag, versions });
            }
        }
        out.sort_by(|a, b| a.tag.cmp(&b.tag));
        Ok(out)
    }

    /// Deletes `version` of `tag`, or every version; returns how many.
    pub fn delete(&self, tag: &str, version: Option<u64>) -> Result<u64, Error> {
        let dir = self.tag_dir(tag);
        let targets: Vec<u64> = match version {
            Some(v) => vec![v],
            None => Self::versions(&dir)
                .into_iter()
                .map(|v| v.version)
                .collect(),
        };
        let mut removed = 0;
        for v in targets {
            match fs::remove_file(dir.join(version_file(v))) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("delete from {}", dir.display()), e)),
            }
        }
        if Self::versions(&dir).is_empty() && dir.exists() {
            let _ = fs::remove_file(dir.join("tag"));
            let _ = fs::remove_dir(&dir);
        }
        Ok(removed)
    }

    /// Records held and their total size in bytes.
    pub fn stats(&self) -> Result<(u64, u64), Error> {
        let (mut records, mut bytes) = (0, 0);
        for entry in fs::read_dir(&self.dir)
            .map_err(io("list", &self.dir))?
            .flatten()
        {
            for v in Self::versions(&entry.path()) {
                records += 1;
                bytes += v.stored_bytes;
            }
        }
        Ok((records, bytes))
    }

    /// Free bytes on the filesystem holding the store.
    pub fn free_space(&self) -> u64 {
        fs4::available_space(&self.dir).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_whose_base64_has_a_slash_map_to_safe_file_names() -> Result<(), Error> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = RecordStore::open(tmp.path())?;
        // base64("??>") == "Pz8+", base64("???") == "Pz8/": the seed's crash.
        for tag in [
            "???",
            "??>",
            "../../etc/passwd",
            "a/b+c",
            "ünï/cödé",
            &"x".repeat(4096),
        ] {
            let name = store.tag_dir(tag);
            let file = name.file_name().and_then(|n| n.to_str()).unwrap_or("");
            assert_eq!(file.len(), 64);
            assert!(file.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(store.put(tag, 1, b"rec")?, PutOutcome::Stored);
            assert_eq!(store.get(tag, 1)?.as_deref(), Some(&b"rec"[..]));
        }
        assert_eq!(store.list("")?.len(), 6);
        Ok(())
    }

    #[test]
    fn versions_conflicts_and_deletes() -> Result<(), Error> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = RecordStore::open(tmp.path())?;
        assert_eq!(store.put("t", 1, b"a")?, PutOutcome::Stored);
        assert_eq!(store.put("t", 1, b"a")?, PutOutcome::Unchanged);
        assert_eq!(store.put("t", 1, b"b")?, PutOutcome::Conflict);
        store.put("t", 2, b"bb")?;
        let list = store.list("t")?;
        assert_eq!(
            list[0]
                .versions
                .iter()
                .map(|v| v.version)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(store.stats()?, (2, 3));
        assert_eq!(store.delete("t", Some(1))?, 1);
        assert_eq!(store.delete("t", None)?, 1);
        assert!(store.list("")?.is_empty());
        assert!(!store.tag_dir("t").exists());
        Ok(())
    }
}
