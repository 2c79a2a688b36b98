//! Records: what one server stores for one version of one tag.
//!
//! A record holds the server's key share, its erasure-coded fragment of the
//! ciphertext, and the *manifest* of the whole save: file id, version, n, t,
//! KDF parameters and salt, nonces, lengths, and the hash of every fragment
//! and of every key share. The manifest is authenticated with a MAC keyed from
//! the password, bound to the tag, so a server (which never sees the password)
//! can neither forge a manifest nor move a record to another tag; with the
//! verified manifest the client checks each server's fragment and share and
//! names every server whose record does not match.
//!
//! Seed flaw fixed here: *a server cannot tell a lying or corrupted share*.
//! The seed stored only a hash of the plaintext and took the most common hash
//! as true; a corrupt key share went undetected and simply broke the result.
//!
//! Layouts (big-endian):
//! ```text
//! manifest: "SCMF" | format u8 | file id [16] | version u64 | created u64 | n u8 | t u8
//!           | kdf (kind u8, 3 × u32) | salt [16] | inner nonce [12] | outer nonce [12]
//!           | ciphertext length u64 | shard length u32 | n × fragment hash [32]
//!           | n × share hash [32]
//! record:   "SCNR" | 1 | index u8 | manifest (u32 len, bytes) | mac [32]
//!           | share [33] | fragment (u32 len, bytes)
//! ```
//! `created` is the save's time in whole seconds since the Unix epoch (UTC;
//! 0 when the saving machine's clock read before it), under the MAC like
//! the rest but informative only: no save is ordered or chosen by it. The shard length is every fragment's
//! length, even and not 0 ([`crate::sharing`] gives how it is chosen).
//!
//! Manifest formats (see [`ManifestFormat`]): 2, written now, hashes
//! fragments with BLAKE3 in key derivation mode; 1 hashed them with SHA-256
//! and is still read. Share hashes are SHA-256 in both. Exactly:
//! ```text
//! kdf            kind 1 = argon2id: memory KiB, passes, lanes (3 × u32)
//!                kind 2 = scrypt:   log2 N, r, p (3 × u32)
//! mac            HMAC-SHA-256(mac key, "seccs-net/v1/manifest" ‖ len(tag) u64 ‖ tag (UTF-8)
//!                ‖ manifest bytes), the mac key as `sharing` derives it
//! share hash     SHA-256("seccs-net/v1/share" ‖ file id ‖ index u8 ‖ share (33))
//! fragment hash  format 2: BLAKE3 derive_key(context "seccs-net v2 fragment hash",
//!                    file id ‖ index u8 ‖ fragment)
//!                format 1: SHA-256("seccs-net/v1/fragment" ‖ file id ‖ index u8 ‖ fragment)
//! ```
//! A record version above 1, or a manifest format above 2, is a record a
//! newer seccs wrote, or one altered to look so ([`DecodeError::NewerFormat`]:
//! it is read before anything is authenticated); a version or format 0 is
//! [`DecodeError::UnknownVersion`].

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::crypto::Kdf;
use crate::error::DecodeError;
use crate::message::MAX_RECORD_LEN;

/// Magic of a manifest.
pub const MANIFEST_MAGIC: [u8; 4] = *b"SCMF";
/// Magic of a record.
pub const RECORD_MAGIC: [u8; 4] = *b"SCNR";
/// The record format version this build writes and reads.
pub const RECORD_VERSION: u8 = 1;

/// A manifest's format version, which says how its fragment hashes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    /// Fragment hashes are labelled SHA-256 (read, no longer written).
    V1Sha256 = 1,
    /// Fragment hashes are BLAKE3 in key derivation mode: the same strength
    /// at several times the speed, and hashing is a large part of a save.
    V2Blake3 = 2,
}

impl ManifestFormat {
    /// The format this build writes.
    pub const CURRENT: Self = Self::V2Blake3;

    fn from_byte(v: u8) -> Result<Self, DecodeError> {
        match v {
            1 => Ok(Self::V1Sha256),
            2 => Ok(Self::V2Blake3),
            other if other > Self::CURRENT as u8 => Err(DecodeError::NewerFormat {
                what: "manifest",
                found: other,
                newest: Self::CURRENT as u8,
            }),
            other => Err(DecodeError::UnknownVersion(other)),
        }
    }
}
/// Length of a key share: identifier byte and 32 bytes.
pub const SHARE_LEN: usize = 33;
const MAX_MANIFEST_LEN: usize = 64 + 64 * 255 + 128;

/// The description of one save, identical on every server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Format version: how the fragment hashes are made.
    pub format: ManifestFormat,
    /// Random id of this save.
    pub file_id: [u8; 16],
    /// Version number of the tag.
    pub version: u64,
    /// Seconds since the Unix epoch when saved.
    pub created: u64,
    /// Number of servers (records).
    pub n: u8,
    /// Threshold: records needed to rebuild.
    pub t: u8,
    /// Password KDF.
    pub kdf: Kdf,
    /// Password KDF salt.
    pub salt: [u8; 16],
    /// Nonce of the password layer.
    pub inner_nonce: [u8; 12],
    /// Nonce of the data-key layer.
    pub outer_nonce: [u8; 12],
    /// Length of the doubly encrypted file.
    pub ciphertext_len: u64,
    /// Length of each fragment.
    pub shard_len: u32,
    /// Hash of each server's fragment, by index.
    pub fragment_hashes: Vec<[u8; 32]>,
    /// Hash of each server's key share, by index.
    pub share_hashes: Vec<[u8; 32]>,
}

/// One server's record. Its Debug form leaves the key share out (t of
/// them rebuild the data key), and the share is wiped when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// Which of the n records this is.
    pub index: u8,
    /// The encoded manifest.
    pub manifest: Vec<u8>,
    /// MAC of tag and manifest under a password-derived key.
    pub mac: [u8; 32],
    /// The key share: identifier (index + 1) and 32 bytes.
    pub share: Zeroizing<[u8; SHARE_LEN]>,
    /// The fragment of the ciphertext.
    pub fragment: Vec<u8>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("index", &self.index)
            .field("manifest_len", &self.manifest.len())
            .field("fragment_len", &self.fragment.len())
            .finish_non_exhaustive()
    }
}

fn labelled_hash(label: &[u8], file_id: &[u8; 16], index: u8, data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(file_id);
    h.update([index]);
    h.update(data);
    h.finalize().into()
}

/// The hash of fragment `index` of save `file_id`, as manifests of `format`
/// record it.
pub fn fragment_hash(
    format: ManifestFormat,
    file_id: &[u8; 16],
    index: u8,
    fragment: &[u8],
) -> [u8; 32] {
    match format {
        ManifestFormat::V1Sha256 => {
            labelled_hash(b"seccs-net/v1/fragment", file_id, index, fragment)
        }
        ManifestFormat::V2Blake3 => {
            let mut h = FragmentHasher::new(file_id, index);
            h.update(fragment);
            h.finalize()
        }
    }
}

/// [`fragment_hash`] in the format this build writes
/// ([`ManifestFormat::CURRENT`]), of a fragment fed a part at a time: a
/// save hashes its recovery fragments as it codes them, never holding one
/// whole.
pub struct FragmentHasher(blake3::Hasher);

impl FragmentHasher {
    /// A hasher of fragment `index` of save `file_id`.
    pub fn new(file_id: &[u8; 16], index: u8) -> Self {
        let mut h = blake3::Hasher::new_derive_key("seccs-net v2 fragment hash");
        h.update(file_id);
        h.update(&[index]);
        Self(h)
    }

    /// Feeds the fragment's next bytes.
    pub fn update(&mut self, part: &[u8]) {
        self.0.update(part);
    }

    /// The hash of every byte fed.
    pub fn finalize(&self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// The hash of key share `index` of save `file_id`.
pub fn share_hash(file_id: &[u8; 16], index: u8, share: &[u8]) -> [u8; 32] {
    labelled_hash(b"seccs-net/v1/share", file_id, index, share)
}

fn mac_state(key: &[u8; 32], tag: &str, manifest: &[u8]) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(b"seccs-net/v1/manifest");
    m.update(&(tag.len() as u64).to_be_bytes());
    m.update(tag.as_bytes());
    m.update(manifest);
    m
}

/// The MAC binding `manifest` to `tag`.
pub fn manifest_mac(key: &[u8; 32], tag: &str, manifest: &[u8]) -> [u8; 32] {
    mac_state(key, tag, manifest).finalize().into_bytes().into()
}

/// Checks a manifest MAC in constant time.
pub fn verify_manifest_mac(key: &[u8; 32], tag: &str, manifest: &[u8], mac: &[u8; 32]) -> bool {
    mac_state(key, tag, manifest).verify_slice(mac).is_ok()
}

impl Manifest {
    /// Writes the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128 + 64 * self.fragment_hashes.len());
        w.raw(&MANIFEST_MAGIC)
            .u8(self.format as u8)
            .raw(&self.file_id)
            .u64(self.version)
            .u64(self.created)
            .u8(self.n)
            .u8(self.t);
        self.kdf.encode(&mut w);
        w.raw(&self.salt)
            .raw(&self.inner_nonce)
            .raw(&self.outer_nonce)
            .u64(self.ciphertext_len)
            .u32(self.shard_len);
        for h in self.fragment_hashes.iter().chain(&self.share_hashes) {
            w.raw(h);
        }
        w.finish()
    }

    /// Reads a manifest and checks that its fields agree with each other.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.take(4)? != MANIFEST_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let format = ManifestFormat::from_byte(r.u8()?)?;
        let file_id = r.array()?;
        let version = r.u64()?;
        let created = r.u64()?;
        let n = r.u8()?;
        let t = r.u8()?;
        if n == 0 || t == 0 || t > n {
            return Err(DecodeError::Invalid("threshold"));
        }
        let kdf = Kdf::decode(&mut r)?;
        let salt = r.array()?;
        let inner_nonce = r.array()?;
        let outer_nonce = r.array()?;
        let ciphertext_len = r.u64()?;
        let shard_len = r.u32()?;
        if shard_len == 0 || shard_len % 2 != 0 {
            return Err(DecodeError::Invalid("shard length"));
        }
        if ciphertext_len < 32 || ciphertext_len > u64::from(shard_len) * u64::from(t) {
            return Err(DecodeError::Invalid("ciphertext length"));
        }
        let hashes = |r: &mut Reader<'_>| (0..n).map(|_| r.array()).collect::<Result<Vec<_>, _>>();
        let fragment_hashes = hashes(&mut r)?;
        let share_hashes = hashes(&mut r)?;
        r.finish()?;
        Ok(Self {
            format,
            file_id,
            version,
            created,
            n,
            t,
            kdf,
            salt,
            inner_nonce,
            outer_nonce,
            ciphertext_len,
            shard_len,
            fragment_hashes,
            share_hashes,
        })
    }
}

impl Record {
    /// Writes the record.
    pub fn encode(&self) -> Vec<u8> {
        Self::encode_parts(
            self.index,
            &self.manifest,
            &self.mac,
            &self.share,
            &self.fragment,
        )
    }

    /// Writes a record from its fields, wherever they lie.
    pub fn encode_parts(
        index: u8,
        manifest: &[u8],
        mac: &[u8; 32],
        share: &[u8; SHARE_LEN],
        fragment: &[u8],
    ) -> Vec<u8> {
        let mut bytes = Self::encode_head(index, manifest, mac, share, fragment.len());
        bytes.reserve_exact(fragment.len());
        bytes.extend_from_slice(fragment);
        bytes
    }

    /// Writes a record up to its fragment: the record is these bytes and
    /// then the `fragment_len` bytes of the fragment, so that a sender can
    /// send a fragment from where it lies, without copying it.
    pub fn encode_head(
        index: u8,
        manifest: &[u8],
        mac: &[u8; 32],
        share: &[u8; SHARE_LEN],
        fragment_len: usize,
    ) -> Vec<u8> {
        let mut w = Writer::with_capacity(manifest.len() + 96);
        w.raw(&RECORD_MAGIC)
            .u8(RECORD_VERSION)
            .u8(index)
            .bytes(manifest)
            .raw(mac)
            .raw(share)
            .u32(u32::try_from(fragment_len).unwrap_or(u32::MAX));
        w.finish()
    }

    /// Reads a record, checks its manifest's structure, and that the record's
    /// own fragment and share match the manifest's hashes at its index.
    ///
    /// This catches corruption; only the MAC check (which needs the password)
    /// catches a lie.
    pub fn decode(bytes: &[u8]) -> Result<(Self, Manifest), DecodeError> {
        let (parts, m) = RecordParts::check(bytes)?;
        Ok((parts.record(parts.fragment.to_vec()), m))
    }

    /// [`Record::decode`], taking the bytes: the fragment (all but a few
    /// hundred bytes of a record) is moved to the front of the buffer it
    /// arrived in, not copied out, so that a load holds each record once.
    pub fn decode_owned(mut bytes: Vec<u8>) -> Result<(Self, Manifest), DecodeError> {
        let (parts, m) = RecordParts::check(&bytes)?;
        let mut record = parts.record(Vec::new());
        // The fragment is the record's last field (the check read to the end).
        let fragment_at = bytes.len() - parts.fragment.len();
        bytes.drain(..fragment_at);
        record.fragment = bytes;
        Ok((record, m))
    }

    /// The checks of [`Record::decode`] without copying the record: what a
    /// server runs on every record it is asked to store.
    pub fn check(bytes: &[u8]) -> Result<Manifest, DecodeError> {
        RecordParts::check(bytes).map(|(_, m)| m)
    }
}

/// Bytes of a record that [`file_id_of`] needs at most: header, index, and
/// the manifest with its length.
pub const RECORD_PREFIX_MAX: usize = 4 + 1 + 1 + 4 + MAX_MANIFEST_LEN;

/// The file id (the save it belongs to) of a record, read from its first
/// bytes: at most [`RECORD_PREFIX_MAX`] are needed, and more are ignored.
pub fn file_id_of(prefix: &[u8]) -> Result<[u8; 16], DecodeError> {
    Ok(manifest_of(prefix)?.file_id)
}

/// The manifest of a record, read from its first bytes as [`file_id_of`]
/// reads them: unauthenticated, it says which save a record claims to be
/// part of, never that it is.
pub fn manifest_of(prefix: &[u8]) -> Result<Manifest, DecodeError> {
    let mut r = Reader::new(prefix);
    record_header(&mut r)?;
    let _index = r.u8()?;
    let manifest = r.bytes(MAX_MANIFEST_LEN, "manifest")?;
    Manifest::decode(manifest)
}

/// Reads a record's magic and format version: a version above
/// [`RECORD_VERSION`] is [`DecodeError::NewerFormat`].
fn record_header(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    match r.header(&RECORD_MAGIC, RECORD_VERSION) {
        Err(DecodeError::UnknownVersion(found)) if found > RECORD_VERSION => {
            Err(DecodeError::NewerFormat {
                what: "record",
                found,
                newest: RECORD_VERSION,
            })
        }
        other => other,
    }
}

/// A record's fields, borrowed from its bytes.
struct RecordParts<'a> {
    index: u8,
    manifest: &'a [u8],
    mac: [u8; 32],
    share: [u8; SHARE_LEN],
    fragment: &'a [u8],
}

impl<'a> RecordParts<'a> {
    /// The record of these parts, with `fragment` as its fragment.
    fn record(&self, fragment: Vec<u8>) -> Record {
        Record {
            index: self.index,
            manifest: self.manifest.to_vec(),
            mac: self.mac,
            share: self.share.into(),
            fragment,
        }
    }

    fn check(bytes: &'a [u8]) -> Result<(Self, Manifest), DecodeError> {
        let mut r = Reader::new(bytes);
        record_header(&mut r)?;
        let index = r.u8()?;
        let manifest = r.bytes(MAX_MANIFEST_LEN, "manifest")?;
        let mac = r.array()?;
        let share = r.array()?;
        let fragment = r.bytes(MAX_RECORD_LEN, "fragment")?;
        r.finish()?;
        let m = Manifest::decode(manifest)?;
        if index >= m.n {
            return Err(DecodeError::Invalid("record index"));
        }
        if share[0] != index.wrapping_add(1) {
            return Err(DecodeError::Invalid("share identifier"));
        }
        if fragment.len() != m.shard_len as usize {
            return Err(DecodeError::Invalid("fragment length"));
        }
        let i = usize::from(index);
        if fragment_hash(m.format, &m.file_id, index, fragment) != m.fragment_hashes[i] {
            return Err(DecodeError::Invalid("fragment hash"));
        }
        if share_hash(&m.file_id, index, &share) != m.share_hashes[i] {
            return Err(DecodeError::Invalid("share hash"));
        }
        Ok((
            Self {
                index,
                manifest,
                mac,
                share,
                fragment,
            },
            m,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// t key shares rebuild a save's data key: a record's Debug form, which
    /// ends up in logs, leaves its share out, and the share is wiped when
    /// the record is dropped.
    #[test]
    fn a_record_shows_no_key_share_and_wipes_it() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let record = Record {
            index: 1,
            manifest: vec![1, 2, 3],
            mac: [0; 32],
            share: Zeroizing::new([0xab; SHARE_LEN]),
            fragment: vec![4; 10],
        };
        let shown = format!("{record:?}");
        assert!(
            !shown.contains("171") && !shown.contains("share"),
            "{shown}"
        );
        assert!(shown.contains("index: 1"), "{shown}");
        wiped_on_drop(&record.share);
    }
}
