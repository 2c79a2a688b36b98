//! Sharing: from a file and a password to n records, and back from any t.
//!
//! 1. Password layer: AES-256-GCM under a key from the KDF (random salt).
//! 2. Data layer: AES-256-GCM under a random 32-byte data key.
//! 3. The data key is split t-of-n with Shamir's scheme over GF(256)
//!    (`vsss-rs`, constant time); t − 1 shares say nothing about it.
//! 4. The ciphertext is erasure-coded with Reed-Solomon (`reed-solomon-simd`
//!    3) into n fragments of one shard length, ⌈len / t⌉ bytes rounded up
//!    to an even number (at least 2), any t of which rebuild it.
//!
//! Exactly, for a save of `tag` at `version` with a random 16-byte file
//! id, salt and two 12-byte nonces (the manifest's, see [`crate::record`]):
//!
//! ```text
//! root        = KDF(password, salt), 32 bytes: argon2id v0x13 (memory KiB, passes, lanes)
//!               or scrypt (log2 N, r, p), as the manifest's kdf names them (kind 1 or 2)
//! enc, mac    = HKDF-SHA-256(ikm = root, no salt, info = "seccs-net/v1/password-layer"),
//!               and the same with info "seccs-net/v1/manifest-mac", 32 bytes each
//! inner       = AES-256-GCM(enc, inner nonce, AD = "inner" ‖ file id ‖ version u64 BE, file)
//! ciphertext  = AES-256-GCM(data key, outer nonce, AD = "outer" ‖ file id ‖ version u64 BE, inner)
//!               (each AES-256-GCM output is ciphertext ‖ tag (16); the data key is 32 random
//!               bytes, used as is)
//! shares      = Shamir t-of-n of the data key over GF(2^8) (polynomial 0x11b), byte by byte;
//!               share i (33 bytes) = x-coordinate i + 1 ‖ the 32 y bytes; with t = 1 each
//!               share is its identifier ‖ the key itself
//! shard       = max(⌈len(ciphertext) / t⌉, 2) rounded up to even, in bytes (the manifest's
//!               shard length; any even length, not a multiple of 64 in general)
//! fragments   = the ciphertext zero-padded to t × shard bytes and cut in order into the t
//!               original fragments (indexes 0..t, each the ciphertext's bytes as they are);
//!               the n − t recovery fragments (indexes t..n; fragment t + j is the crate's
//!               recovery shard j) are what `reed-solomon-simd` 3's
//!               `ReedSolomonEncoder::new(t, n − t, shard)` gives for the t original ones
//!               added in order (none when t = n)
//! the code    = that crate's, as it documents it: Reed-Solomon erasure coding over GF(2^16)
//!               (`GF_POLYNOMIAL` 0x1002D, `CANTOR_BASIS`) based on Leopard-RS, by FFT, high
//!               or low rate as its `DefaultRate` picks for (t, n − t); decode with its
//!               `ReedSolomonDecoder::new(t, n − t, shard)`, original index i for fragment
//!               i < t, recovery index i − t for fragment i ≥ t (this build locks 3.1); the
//!               t original fragments joined, cut to the manifest's ciphertext length, are
//!               the ciphertext
//! elements    = the crate reads a shard as 16-bit elements, 64 bytes at a time: element k
//!               (k < 32) of 64-byte chunk c has its low byte at 64c + k, its high byte at
//!               64c + 32 + k. A last partial chunk of r = shard mod 64 bytes (r even) is
//!               laid out as the crate's `src/engine/shards.rs` does: its first r / 2 bytes
//!               are the low bytes of elements 0..r/2, its last r / 2 their high bytes (as
//!               if moved to byte 32 of a zero-filled chunk); a recovery fragment's last r
//!               bytes come out the same way. A reader without the crate must reproduce
//!               that layout, not only its code.
//! record i    = share i and fragment i, with the manifest and its MAC
//! ```
//!
//! Seed flaw fixed here: *every server stores the full ciphertext* (n× the
//! file in storage and traffic). Each server now stores ≈ 1/t of it, so the
//! whole network stores ≈ n/t × the file (5/3 for 5 servers, t = 3).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use reed_solomon_simd::ReedSolomonDecoder;
use seccs_core::SecretKey;
use zeroize::Zeroizing;

use crate::crypto::{Kdf, MAX_SEAL_LEN, Password, PasswordKeys, open, seal};
use crate::error::{DecodeError, Error};
pub use crate::fragments::SavedFragment;
use crate::fragments::{Fragments, check_threshold};
use crate::packet::{MAX_FRAME_PAYLOAD, MAX_FRAMES};
use crate::record::{
    Manifest, ManifestFormat, Record, SHARE_LEN, manifest_mac, share_hash, verify_manifest_mac,
};

/// Different (KDF, salt) pairs a client tries before it gives up: bounds the
/// work that lying servers can cause.
const MAX_KDF_ATTEMPTS: usize = 3;

fn aad(file_id: &[u8; 16], version: u64, layer: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(40);
    a.extend_from_slice(layer);
    a.extend_from_slice(file_id);
    a.extend_from_slice(&version.to_be_bytes());
    a
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    seccs_core::random_bytes(&mut b)?;
    Ok(b)
}

/// Splits the data key into n shares of [`SHARE_LEN`] bytes, identifiers 1..=n.
fn split_key(key: &SecretKey, n: usize, t: usize) -> Result<Zeroizing<Vec<Vec<u8>>>, Error> {
    if t == 1 {
        // Threshold one: every share is the key itself (a constant polynomial).
        return Ok(Zeroizing::new(
            (0..n)
                .map(|i| {
                    let mut s = Vec::with_capacity(SHARE_LEN);
                    s.push(i as u8 + 1);
                    s.extend_from_slice(key.expose_secret());
                    s
                })
                .collect(),
        ));
    }
    let rng = getrandom::rand_core::UnwrapErr(getrandom::SysRng);
    let shares = vsss_rs::Gf256::split_array(t, n, key.expose_secret(), rng).map_err(|_| {
        Error::BadThreshold {
            threshold: t,
            servers: n,
        }
    })?;
    Ok(Zeroizing::new(shares))
}

fn combine_key(shares: &[Vec<u8>], t: usize) -> Result<SecretKey, Error> {
    let bytes = if t == 1 {
        Zeroizing::new(shares[0][1..].to_vec())
    } else {
        Zeroizing::new(
            vsss_rs::Gf256::combine_array(&shares[..t])
                .map_err(|_| Error::Tampered("key shares"))?,
        )
    };
    Ok(SecretKey::from_slice(&bytes)?)
}

/// Bytes of each shard restored at once (a multiple of 64, see
/// [`decode_fragments_in_stripes`]).
const RS_STRIPE: usize = 1 << 20;

/// The keys and parameters of one save's two encryption layers, kept so
/// that [`SplitRecords::into_plaintext`] can decrypt the file back.
#[derive(Debug)]
struct Opening {
    data_key: SecretKey,
    password_key: SecretKey,
    file_id: [u8; 16],
    version: u64,
    inner_nonce: [u8; 12],
    outer_nonce: [u8; 12],
    ciphertext_len: usize,
}

/// Joins the ciphertext from `t` fragments (index, bytes), taking them:
/// each is freed as it is copied, so that a load holds about one file's
/// worth of them and the ciphertext at once, not both whole. Also says how
/// many of the ciphertext's own fragments (those below t) were missing and
/// restored from recovery fragments.
fn decode_fragments(good: Vec<(usize, Vec<u8>)>, m: &Manifest) -> Result<Joined, Error> {
    let shape = Shape {
        n: usize::from(m.n),
        t: usize::from(m.t),
        shard: m.shard_len as usize,
        len: m.ciphertext_len as usize,
    };
    decode_fragments_in_stripes(good, shape, RS_STRIPE)
}

/// A ciphertext joined from fragments.
#[derive(Debug)]
struct Joined {
    ciphertext: Vec<u8>,
    /// How many of its t own fragments were restored from recovery ones.
    restored: usize,
}

/// What the fragments of a save are: `n` of them, `t` rebuild it, each
/// `shard` bytes, joined into a ciphertext of `len` bytes.
#[derive(Debug, Clone, Copy)]
struct Shape {
    n: usize,
    t: usize,
    shard: usize,
    len: usize,
}

/// [`decode_fragments`], restoring missing original shards `stripe` bytes
/// at a time (a multiple of 64): a decoder over whole shards takes working
/// space of several shards, which for a load that got recovery fragments
/// was most of its peak. The restored bytes are the same either way: the
/// code works on each 16-bit element of the shards apart, the elements of a
/// whole 64-byte chunk lie within it, and the last stripe ends where the
/// shard does, so its partial chunk is laid out as in the whole shard.
fn decode_fragments_in_stripes(
    mut good: Vec<(usize, Vec<u8>)>,
    Shape { n, t, shard, len }: Shape,
    stripe: usize,
) -> Result<Joined, Error> {
    let tampered = || Error::Tampered("erasure code");
    good.sort_by_key(|(i, _)| *i);
    good.dedup_by_key(|(i, _)| *i);
    good.truncate(t);
    if good.len() < t || good.iter().any(|(i, f)| *i >= n || f.len() != shard) {
        return Err(tampered());
    }
    // The ciphertext is joined in zero pages that the kernel maps only
    // when they are written, and each fragment is moved in from its end a
    // stripe at a time, shrinking behind the copy: the load holds each
    // byte once, never a whole fragment twice.
    let mut blob = vec![0u8; shard * t];
    let mut recovery: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut present = vec![false; t];
    for (i, fragment) in good {
        if i >= t {
            recovery.push((i - t, fragment));
            continue;
        }
        let into = blob
            .get_mut(i * shard..(i + 1) * shard)
            .ok_or_else(tampered)?;
        move_from_the_end(fragment, into, stripe);
        present[i] = true;
    }
    let restored = present.iter().filter(|p| !**p).count();
    if !recovery.is_empty() {
        let mut decoder: Option<ReedSolomonDecoder> = None;
        // From the last stripe to the first, so that each recovery
        // fragment shrinks behind the decoding as the restored bytes fill
        // the ciphertext's zero pages: the two are never held whole at once.
        for at in (0..shard).step_by(stripe.max(1)).rev() {
            let len = (shard - at).min(stripe);
            let decoder = match &mut decoder {
                Some(d) => {
                    d.reset(t, n - t, len).map_err(|_| tampered())?;
                    d
                }
                None => {
                    decoder.insert(ReedSolomonDecoder::new(t, n - t, len).map_err(|_| tampered())?)
                }
            };
            for (i, _) in present.iter().enumerate().filter(|(_, p)| **p) {
                let from = i * shard + at;
                decoder
                    .add_original_shard(i, &blob[from..from + len])
                    .map_err(|_| tampered())?;
            }
            for (j, fragment) in &recovery {
                decoder
                    .add_recovery_shard(*j, &fragment[at..at + len])
                    .map_err(|_| tampered())?;
            }
            let restored = decoder.decode().map_err(|_| tampered())?;
            for (i, part) in restored.restored_original_iter() {
                let from = i * shard + at;
                blob.get_mut(from..from + len)
                    .ok_or_else(tampered)?
                    .copy_from_slice(part);
            }
            for (_, fragment) in &mut recovery {
                fragment.truncate(at);
                fragment.shrink_to_fit();
            }
        }
    }
    blob.truncate(len);
    Ok(Joined {
        ciphertext: blob,
        restored,
    })
}

/// Copies `from` into `into` (of the same length) `step` bytes at a time
/// from the end, giving back the memory of each part copied.
fn move_from_the_end(mut from: Vec<u8>, into: &mut [u8], step: usize) {
    let mut end = from.len().min(into.len());
    while end > 0 {
        let start = end.saturating_sub(step.max(1));
        into[start..end].copy_from_slice(&from[start..end]);
        from.truncate(start);
        from.shrink_to_fit();
        end = start;
    }
}

/// Room [`split_in_place`] needs past the plaintext: two AEAD tags, and the
/// padding of the ciphertext to whole fragments.
const SEAL_OVERHEAD: usize = 32 + 2 * 255;

/// Room left in a message for everything of a record but its fragment: the
/// message head (tag of up to 8 KiB), the manifest (up to 255 fragment hashes,
/// KDF parameters) and the key share, with a wide margin.
const RECORD_HEADROOM: u64 = 64 * 1024;

/// The largest file a save with threshold `t` carries: each server gets one
/// fragment of `1/t` of the ciphertext, and a record must fit in one message
/// ([`MAX_FRAMES`] × [`MAX_FRAME_PAYLOAD`], 1 GiB); and, from `t` = 65 on,
/// the file and the inner tag must fit in one AES-GCM encryption
/// (`MAX_SEAL_LEN`, 64 GiB less 32 bytes).
pub fn max_file_len(t: usize) -> u64 {
    let message = u64::from(MAX_FRAMES) * MAX_FRAME_PAYLOAD as u64;
    // Fragments are rounded up to an even length: one byte of slack each.
    let fragment = message - RECORD_HEADROOM - 2;
    let by_messages = (fragment * t.max(1) as u64).saturating_sub(SEAL_OVERHEAD as u64);
    by_messages.min(MAX_SEAL_LEN - 16)
}

/// Fails with [`Error::FileTooLarge`] when a file of `len` bytes is more than
/// a save with threshold `t` carries ([`max_file_len`]).
pub fn check_file_len(len: u64, t: usize) -> Result<(), Error> {
    let max = max_file_len(t);
    if len > max {
        return Err(Error::FileTooLarge {
            len,
            max,
            threshold: t,
        });
    }
    Ok(())
}

/// A copy of `plaintext` with the room [`split_in_place`] needs to encrypt
/// and cut it where it lies: the one copy a save makes of the file.
pub fn split_buffer(plaintext: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    buffer.extend_from_slice(plaintext);
    buffer
}

/// Encrypts `plaintext` and cuts it into `n` encoded records, any `t` of which
/// rebuild it. Record `i` is for server `i`.
pub fn split(
    tag: &str,
    version: u64,
    plaintext: &[u8],
    password: &Password,
    kdf: &Kdf,
    n: usize,
    t: usize,
) -> Result<Vec<Vec<u8>>, Error> {
    split_in_place(tag, version, split_buffer(plaintext), password, kdf, n, t)
}

/// [`split`], encrypting `plaintext` where it lies and cutting the data
/// fragments from the same buffer. Make it with [`split_buffer`], or it
/// grows once.
pub fn split_in_place(
    tag: &str,
    version: u64,
    plaintext: Vec<u8>,
    password: &Password,
    kdf: &Kdf,
    n: usize,
    t: usize,
) -> Result<Vec<Vec<u8>>, Error> {
    check_threshold(n, t)?;
    let keys = SaveKeys::derive(kdf, password)?;
    split_into_parts(tag, version, plaintext, &keys, n, t)?.joined()
}

/// A password's keys for saves, derived by the KDF under a fresh salt.
///
/// Derived before the file is read, the KDF's memory (64 MiB by default)
/// is free again before a save holds the file; and a save that retries at
/// another version does not run the KDF again. They are meant for one save
/// and its retries. Saves under one salt keep their secrecy and integrity
/// (every save has its own file id and random nonces, which its
/// ciphertexts' associated data and its manifest hold), but their
/// manifests name that salt, which tells the servers that one derivation
/// made them.
#[derive(Clone)]
pub struct SaveKeys {
    kdf: Kdf,
    salt: [u8; 16],
    keys: PasswordKeys,
}

impl SaveKeys {
    /// Runs `kdf` on `password` under a fresh random salt.
    pub fn derive(kdf: &Kdf, password: &Password) -> Result<Self, Error> {
        let salt = random::<16>()?;
        Ok(Self {
            kdf: kdf.clone(),
            salt,
            keys: PasswordKeys::derive(kdf, password, &salt)?,
        })
    }

    /// The KDF the keys were derived by, which the saves' manifests name.
    pub fn kdf(&self) -> &Kdf {
        &self.kdf
    }
}

impl std::fmt::Debug for SaveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaveKeys")
            .field("kdf", &self.kdf)
            .finish_non_exhaustive()
    }
}

/// The `n` records of one save, each kept as its head and its fragment
/// where the fragment is made: the first `t` fragments are slices of the
/// encrypted file's own buffer, and the others are coded from them again
/// as they are read ([`SavedFragment`]), never held whole. Joining them
/// would copy the file once more; a sender sends each as two parts.
/// Its Debug form leaves the heads out, since each holds a key share, and
/// the heads are wiped when it is dropped.
pub struct SplitRecords {
    file_id: [u8; 16],
    heads: Vec<Zeroizing<Vec<u8>>>,
    fragments: Fragments,
    /// What decrypts the file back out of the first t fragments.
    opening: Opening,
}

impl std::fmt::Debug for SplitRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitRecords")
            .field("records", &self.heads.len())
            .finish_non_exhaustive()
    }
}

impl SplitRecords {
    /// The save's random id, which every record's manifest holds.
    pub fn file_id(&self) -> [u8; 16] {
        self.file_id
    }

    /// How many records there are (`n`).
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    /// Whether there are none (never, for a split that succeeded).
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// Record `i`: its head, then its fragment; `None` past the last.
    pub fn record(&self, i: usize) -> Option<(&[u8], SavedFragment<'_>)> {
        Some((self.heads.get(i)?, self.fragments.fragment(i)?))
    }

    /// The length of each record (all are as long).
    pub fn record_len(&self) -> usize {
        self.heads
            .first()
            .map_or(0, |h| h.len() + self.fragments.shard())
    }

    /// The file the records were made from, decrypted back where it lies
    /// in the encrypted file's buffer. A save that must try another
    /// version, which is in the ciphertext's associated data, so gets its
    /// file back without having kept a copy of it beside its records.
    pub fn into_plaintext(self) -> Result<Vec<u8>, Error> {
        let Self {
            fragments, opening, ..
        } = self;
        let mut blob = fragments.into_data();
        blob.truncate(opening.ciphertext_len);
        let inner = open(
            &opening.data_key,
            &opening.outer_nonce,
            &aad(&opening.file_id, opening.version, b"outer"),
            blob,
        )?;
        open(
            &opening.password_key,
            &opening.inner_nonce,
            &aad(&opening.file_id, opening.version, b"inner"),
            inner,
        )
    }

    /// Every record in one buffer of its own.
    pub fn joined(&self) -> Result<Vec<Vec<u8>>, Error> {
        (0..self.len())
            .filter_map(|i| self.record(i))
            .map(|(head, fragment)| {
                let mut record = head.to_vec();
                record.extend_from_slice(&fragment.to_vec()?);
                Ok(record)
            })
            .collect()
    }
}

/// [`split_in_place`], keeping the records as [`SplitRecords`]: a save's
/// peak memory is then the file, encrypted where it lies (its buffer the
/// first t fragments), and a few stripes of the recovery fragments, coded
/// as they are sent, with no record copied out of them.
pub fn split_into_parts(
    tag: &str,
    version: u64,
    plaintext: Vec<u8>,
    keys: &SaveKeys,
    n: usize,
    t: usize,
) -> Result<SplitRecords, Error> {
    check_threshold(n, t)?;
    check_file_len(plaintext.len() as u64, t)?;
    let file_id = random::<16>()?;
    let inner_nonce = random::<12>()?;
    let outer_nonce = random::<12>()?;
    let SaveKeys { kdf, salt, keys } = keys;
    let inner = seal(
        &keys.enc,
        &inner_nonce,
        &aad(&file_id, version, b"inner"),
        plaintext,
    )?;
    let data_key = SecretKey::generate()?;
    let blob = seal(
        &data_key,
        &outer_nonce,
        &aad(&file_id, version, b"outer"),
        inner,
    )?;
    let ciphertext_len = blob.len() as u64;
    let fragments = Fragments::new(blob, n, t)?;
    let shard_len =
        u32::try_from(fragments.shard()).map_err(|_| Error::Tampered("file too large"))?;
    let shares = split_key(&data_key, n, t)?;
    let manifest = Manifest {
        format: ManifestFormat::CURRENT,
        file_id,
        version,
        // Whole seconds since the Unix epoch; 0 for a clock set before it.
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        n: n as u8,
        t: t as u8,
        kdf: kdf.clone(),
        salt: *salt,
        inner_nonce,
        outer_nonce,
        ciphertext_len,
        shard_len,
        fragment_hashes: fragments.hashes(&file_id)?,
        share_hashes: (0..n)
            .map(|i| share_hash(&file_id, i as u8, &shares[i]))
            .collect(),
    }
    .encode();
    let mac = manifest_mac(keys.mac.expose_secret(), tag, &manifest);
    let heads = (0..n)
        .map(|i| {
            let mut share = Zeroizing::new([0u8; SHARE_LEN]);
            share.copy_from_slice(&shares[i]);
            Zeroizing::new(Record::encode_head(
                i as u8,
                &manifest,
                &mac,
                &share,
                fragments.shard(),
            ))
        })
        .collect();
    Ok(SplitRecords {
        file_id,
        heads,
        fragments,
        opening: Opening {
            data_key,
            password_key: keys.enc.clone(),
            file_id,
            version,
            inner_nonce,
            outer_nonce,
            ciphertext_len: ciphertext_len as usize,
        },
    })
}

/// A file rebuilt from records.
#[derive(Debug)]
pub struct Rebuilt {
    /// The file.
    pub plaintext: Vec<u8>,
    /// Servers whose record was invalid, forged or inconsistent.
    pub bad: Vec<String>,
    /// Each server of `bad` with why its record was left out.
    pub bad_reasons: Vec<(String, String)>,
    /// Servers whose record was used.
    pub used: Vec<String>,
    /// Servers whose record belongs to another save of the same version
    /// (another file id): one made while the servers were partitioned, a
    /// record a failed save left, or another password's. Too few servers
    /// hold it to rebuild it, or it does not open with this password: left
    /// out, but not blamed.
    pub superseded: Vec<String>,
    /// Servers whose authentic record is the same share of the same save
    /// as another server's (a server restored from another's copy): it adds
    /// nothing, so it is left out, but it is not bad, and no server is
    /// blamed for it.
    pub repeated: Vec<String>,
    /// Servers whose record is an authentic share of the save rebuilt,
    /// used or not (a check of every server reads it), ordered by share.
    pub authentic: Vec<String>,
    /// How many records the save made (one a server).
    pub n: u8,
    /// The save's threshold.
    pub t: u8,
    /// How many of the t fragments that are the ciphertext itself were
    /// missing from the records used and restored from recovery fragments
    /// (erasure decoding): 0 when the records used were those the save gave
    /// the first servers of a load's order.
    pub restored: usize,
}

/// The records of one version that claim one save: the same manifest and
/// MAC (so the same file id, KDF parameters, salt, n and t).
struct Group {
    manifest: Vec<u8>,
    mac: [u8; 32],
    m: Manifest,
    /// Distinct share indices: a share two servers hold counts once.
    indices: std::collections::BTreeSet<u8>,
    servers: Vec<String>,
}

/// Rebuilds version `version` of `tag` from records, one per server.
///
/// The records are grouped by the save their header claims (manifest and
/// MAC). Only a group that at least its own t records share is a candidate,
/// best supported first: one stray or forged record never chooses the KDF
/// that is run, nor which save is loaded. A candidate whose manifest is
/// authentic under the password is a save that rebuilds; when two are,
/// [`Error::AmbiguousVersion`] names both (no clock decides). Every record
/// that does not decode (KDF parameters above the bounds of
/// [`Kdf::check`] included), or that claims the chosen save's file id
/// without matching its authentic manifest, is left out and its server
/// named in [`Rebuilt::bad`].
pub fn rebuild(
    tag: &str,
    version: u64,
    records: Vec<(String, Vec<u8>)>,
    password: &Password,
) -> Result<Rebuilt, Error> {
    let mut received = Received::of(version, records);
    rebuild_received(tag, &mut received, &KeyDeriver::new(password))
}

/// The password keys of the manifests that one load meets, derived under
/// its password once for each KDF and salt. A load that asks more servers
/// after its first records did not rebuild gives the second rebuild the
/// same deriver: a wrong password then runs the KDF, slow on purpose, once
/// and not once an attempt, and manifests that share a salt share it.
/// Clones share the keys derived, so that a clone can go to a blocking
/// thread.
#[derive(Clone)]
pub struct KeyDeriver {
    password: Password,
    derived: Arc<Mutex<Vec<Derived>>>,
}

/// Keys derived from one KDF and salt.
struct Derived {
    kdf: Kdf,
    salt: [u8; 16],
    keys: PasswordKeys,
}

impl KeyDeriver {
    /// A deriver of keys under `password`, with none derived yet.
    pub fn new(password: &Password) -> Self {
        Self {
            password: password.clone(),
            derived: Arc::default(),
        }
    }

    /// How many times the KDF has run, in this deriver and its clones.
    pub fn derivations(&self) -> usize {
        self.derived().len()
    }

    /// The keys derived so far. A rebuild that panicked holding them left
    /// nothing half-written (keys are pushed whole), so a poisoned lock's
    /// contents are still good.
    fn derived(&self) -> MutexGuard<'_, Vec<Derived>> {
        self.derived.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Derives the keys of `salt` now, unless they were, so that a rebuild
    /// finds them made. A load runs this on a blocking thread while its
    /// other records arrive: the KDF's memory is then freed before the
    /// load holds them all. A failure is left for the rebuild to meet and
    /// report; a forged record can make this derive once for nothing, as
    /// it could make the rebuild.
    pub fn derive_ahead(&self, salt: &KeySalt) {
        if let Err(e) = self.keys(&salt.kdf, &salt.salt) {
            tracing::debug!("deriving the password keys ahead failed: {e}");
        }
    }

    /// The keys of `kdf` and `salt`, derived on the first ask.
    fn keys(&self, kdf: &Kdf, salt: &[u8; 16]) -> Result<PasswordKeys, Error> {
        let mut derived = self.derived();
        if let Some(d) = derived.iter().find(|d| d.kdf == *kdf && d.salt == *salt) {
            return Ok(d.keys.clone());
        }
        let keys = PasswordKeys::derive(kdf, &self.password, salt)?;
        derived.push(Derived {
            kdf: kdf.clone(),
            salt: *salt,
            keys: keys.clone(),
        });
        Ok(keys)
    }
}

/// The KDF and salt that a received record's manifest names: what
/// [`KeyDeriver::derive_ahead`] needs to derive the password's keys before
/// the rest of a version's records arrive. Taken from a record not yet
/// authenticated, so it only ever gives the rebuild a head start: the
/// rebuild still authenticates each manifest with the keys it names.
#[derive(Clone, Debug)]
pub struct KeySalt {
    kdf: Kdf,
    salt: [u8; 16],
}

impl std::fmt::Debug for KeyDeriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyDeriver")
            .field("derivations", &self.derivations())
            .finish_non_exhaustive()
    }
}

/// The records of one version that a load has received, each checked
/// against its own manifest's hashes but not yet authenticated. A rebuild
/// that fails before it uses them ([`rebuild_received`]) leaves them here,
/// so that a load that asks more servers adds their records to these
/// rather than fetching these again.
#[derive(Debug)]
pub struct Received {
    version: u64,
    /// Records that parsed, of this version.
    parsed: Vec<(String, Record, Manifest)>,
    /// Servers whose record did not parse, or is of another version.
    bad_reasons: Vec<(String, String)>,
    /// Records received, parsed or not.
    held: usize,
}

impl Received {
    /// No records yet of `version`.
    pub fn new(version: u64) -> Self {
        Self {
            version,
            parsed: Vec::new(),
            bad_reasons: Vec::new(),
            held: 0,
        }
    }

    /// The records `records` (server, bytes) of `version`, as
    /// [`Self::add`] takes them.
    pub fn of(version: u64, records: Vec<(String, Vec<u8>)>) -> Self {
        let mut received = Self::new(version);
        received.add(records);
        received
    }

    /// Adds the records `records` (server, bytes), each taken where it
    /// lies ([`Record::decode_owned`]).
    pub fn add(&mut self, records: Vec<(String, Vec<u8>)>) {
        self.held += records.len();
        for (server, bytes) in records {
            match Record::decode_owned(bytes) {
                Ok((r, m)) if m.version == self.version => self.parsed.push((server, r, m)),
                Ok(_) => {
                    tracing::warn!(server, "record has the wrong version");
                    self.bad_reasons
                        .push((server, "the record is of another version".into()));
                }
                // Not authenticated (a record's format is read before
                // anything else): the reason says what its bytes show.
                Err(e @ DecodeError::NewerFormat { .. }) => {
                    tracing::warn!(server, "record of a newer format: {e}");
                    self.bad_reasons
                        .push((server, format!("unreadable record: {e}")));
                }
                Err(e) => {
                    tracing::warn!(server, "invalid record: {e}");
                    self.bad_reasons
                        .push((server, format!("invalid record: {e}")));
                }
            }
        }
    }

    /// The KDF and salt of the first record received that parsed, if any.
    pub fn first_key_salt(&self) -> Option<KeySalt> {
        self.parsed.first().map(|(_, _, m)| KeySalt {
            kdf: m.kdf.clone(),
            salt: m.salt,
        })
    }

    /// How many records were received, parsed or not.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The version the records are of.
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// Rebuilds the version of `received` from its records. When it fails
/// before it uses them (too few authentic records, no save that the
/// password opens, two saves that it does), `received` keeps every record,
/// so more can be added and the rebuild tried again; otherwise it is left
/// empty.
pub fn rebuild_received(
    tag: &str,
    received: &mut Received,
    deriver: &KeyDeriver,
) -> Result<Rebuilt, Error> {
    let (version, held) = (received.version, received.held);
    let mut groups: Vec<Group> = Vec::new();
    for (server, r, m) in &received.parsed {
        let g = match groups
            .iter()
            .position(|g| g.manifest == r.manifest && g.mac == r.mac)
        {
            Some(g) => g,
            None => {
                groups.push(Group {
                    manifest: r.manifest.clone(),
                    mac: r.mac,
                    m: m.clone(),
                    indices: Default::default(),
                    servers: Vec::new(),
                });
                groups.len() - 1
            }
        };
        groups[g].indices.insert(r.index);
        groups[g].servers.push(server.clone());
    }
    // Best supported first; equal support in a fixed order, never by clock.
    groups.sort_by(|a, b| {
        b.indices
            .len()
            .cmp(&a.indices.len())
            .then_with(|| a.m.file_id.cmp(&b.m.file_id))
    });
    let mut tried: Vec<(Kdf, [u8; 16])> = Vec::new();
    let mut authentic: Vec<(usize, PasswordKeys)> = Vec::new();
    let mut candidates = 0;
    for (i, g) in groups.iter().enumerate() {
        if g.indices.len() < usize::from(g.m.t) {
            continue;
        }
        candidates += 1;
        if let Some(keys) = authenticate(tag, &g.manifest, &g.mac, deriver, &mut tried)? {
            authentic.push((i, keys));
        }
    }
    let bad_error = |bad_reasons: &[(String, String)]| -> Vec<String> {
        bad_reasons
            .iter()
            .map(|(s, why)| format!("{s} ({why})"))
            .collect()
    };
    if authentic.len() > 1 {
        return Err(Error::AmbiguousVersion {
            tag: tag.to_owned(),
            version,
            saves: authentic
                .iter()
                .map(|(i, _)| groups[*i].servers.clone())
                .collect(),
        });
    }
    let Some((chosen, keys)) = authentic.pop() else {
        if candidates > 0 {
            return Err(Error::Decrypt);
        }
        // No save has enough records: the best supported says how many
        // are missing.
        let (good, needed) = groups
            .first()
            .map_or((0, 0), |g| (g.indices.len(), usize::from(g.m.t)));
        return Err(Error::NotEnoughShares {
            tag: tag.to_owned(),
            version,
            good,
            needed,
            held,
            asked: held,
            bad: bad_error(&received.bad_reasons),
        });
    };
    let parsed = std::mem::take(&mut received.parsed);
    let mut bad_reasons = std::mem::take(&mut received.bad_reasons);
    received.held = 0;
    let Group {
        manifest: manifest_bytes,
        mac,
        m,
        ..
    } = groups.swap_remove(chosen);
    let t = usize::from(m.t);
    let mut good: Vec<(String, Record)> = Vec::new();
    let mut superseded = Vec::new();
    let mut repeated = Vec::new();
    for (server, r, other) in parsed {
        if r.manifest == manifest_bytes && r.mac == mac {
            if good.iter().any(|(_, g)| g.index == r.index) {
                // `Record::decode` checked the share and fragment against the
                // authentic manifest's hashes: the two records are the same.
                tracing::info!(server, "record repeats another server's share");
                repeated.push(server);
            } else {
                good.push((server, r));
            }
        } else if other.file_id == m.file_id {
            tracing::warn!(server, "record does not match the authentic manifest");
            bad_reasons.push((
                server,
                "its manifest differs from the authentic one of the same save".into(),
            ));
        } else {
            tracing::info!(server, "record of another save of this version left out");
            superseded.push(server);
        }
    }
    if good.len() < t {
        return Err(Error::NotEnoughShares {
            tag: tag.to_owned(),
            version,
            good: good.len(),
            needed: t,
            held,
            asked: held,
            bad: bad_error(&bad_reasons),
        });
    }
    good.sort_by_key(|(_, r)| r.index);
    let authentic: Vec<String> = good.iter().map(|(s, _)| s.clone()).collect();
    let used = &good[..t];
    let shares = Zeroizing::new(
        used.iter()
            .map(|(_, r)| r.share.to_vec())
            .collect::<Vec<_>>(),
    );
    let data_key = combine_key(&shares, t)?;
    let used_servers: Vec<String> = used.iter().map(|(s, _)| s.clone()).collect();
    // Only the fragments used are kept from here on (the others are freed
    // before the ciphertext is joined).
    good.truncate(t);
    let frags: Vec<(usize, Vec<u8>)> = good
        .into_iter()
        .map(|(_, r)| (usize::from(r.index), r.fragment))
        .collect();
    let Joined {
        ciphertext: blob,
        restored,
    } = decode_fragments(frags, &m)?;
    let inner = open(
        &data_key,
        &m.outer_nonce,
        &aad(&m.file_id, version, b"outer"),
        blob,
    )
    .map_err(|_| Error::Tampered("data layer"))?;
    let plaintext = open(
        &keys.enc,
        &m.inner_nonce,
        &aad(&m.file_id, version, b"inner"),
        inner,
    )
    .map_err(|_| Error::Tampered("password layer"))?;
    Ok(Rebuilt {
        plaintext,
        bad: bad_reasons.iter().map(|(s, _)| s.clone()).collect(),
        bad_reasons,
        used: used_servers,
        superseded,
        repeated,
        authentic,
        n: m.n,
        t: m.t,
        restored,
    })
}

/// The password keys of a manifest, if it is authentic under `password`;
/// `None` also when the KDF attempts ran out.
fn authenticate(
    tag: &str,
    manifest: &[u8],
    mac: &[u8; 32],
    deriver: &KeyDeriver,
    tried: &mut Vec<(Kdf, [u8; 16])>,
) -> Result<Option<PasswordKeys>, Error> {
    let m = Manifest::decode(manifest)?;
    if !tried.iter().any(|(k, s)| *k == m.kdf && *s == m.salt) {
        if tried.len() >= MAX_KDF_ATTEMPTS {
            return Ok(None);
        }
        tried.push((m.kdf.clone(), m.salt));
    }
    let keys = deriver.keys(&m.kdf, &m.salt)?;
    Ok(verify_manifest_mac(keys.mac.expose_secret(), tag, manifest, mac).then_some(keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fragment_hash;
    use crate::tail::Tail;

    fn fast_keys(pw: &Password) -> Result<SaveKeys, Error> {
        SaveKeys::derive(&Kdf::INSECURE_FAST, pw)
    }

    fn named(records: &[Vec<u8>], which: &[usize]) -> Vec<(String, Vec<u8>)> {
        which
            .iter()
            .map(|&i| (format!("s{i}"), records[i].clone()))
            .collect()
    }

    #[test]
    fn records_give_their_file_back_decrypted_where_it_lies() -> Result<(), Error> {
        let pw = Password::new("p");
        for (len, n, t) in [(0, 2, 1), (1, 2, 1), (1000, 5, 3), (100_000, 5, 3)] {
            let file: Vec<u8> = (0..len).map(|i| (i * 13 % 241) as u8).collect();
            let records = split_into_parts("t", 7, split_buffer(&file), &fast_keys(&pw)?, n, t)?;
            let first_fragment = records
                .record(0)
                .and_then(|(_, f)| f.in_ciphertext())
                .map(<[u8]>::as_ptr);
            let back = records.into_plaintext()?;
            assert_eq!(back, file, "{len} bytes");
            // The encrypted file's buffer, which held the first fragment:
            // no copy of the file was made.
            assert_eq!(Some(back.as_ptr()), first_fragment, "{len} bytes");
            // Saved again at another version, it makes records that rebuild.
            let again = split_in_place("t", 8, back, &pw, &Kdf::INSECURE_FAST, n, t)?;
            let named: Vec<(String, Vec<u8>)> = again
                .into_iter()
                .enumerate()
                .map(|(i, r)| (format!("s{i}"), r))
                .collect();
            assert_eq!(rebuild("t", 8, named, &pw)?.plaintext, file);
        }
        Ok(())
    }

    #[test]
    fn keys_derived_once_serve_several_saves_each_of_its_own_id_and_nonces() -> Result<(), Error> {
        let pw = Password::new("p");
        let keys = fast_keys(&pw)?;
        let file = b"the same file, saved twice".to_vec();
        let mut manifests = Vec::new();
        for version in [3, 4] {
            let records = split_into_parts("t", version, split_buffer(&file), &keys, 5, 3)?;
            let joined = records.joined()?;
            let (_, manifest) = Record::decode(&joined[0]).map_err(Error::Decode)?;
            let got = rebuild("t", version, named(&joined, &[0, 2, 4]), &pw)?;
            assert_eq!(got.plaintext, file);
            manifests.push(manifest);
        }
        // One KDF run: both manifests name its salt, and the load derives
        // the keys from it. Each save is its own.
        let [a, b] = &manifests[..] else {
            panic!("two saves made {} manifests", manifests.len());
        };
        assert_eq!((a.salt, &a.kdf), (b.salt, &b.kdf));
        assert_ne!(a.file_id, b.file_id);
        assert_ne!(
            (a.inner_nonce, a.outer_nonce),
            (b.inner_nonce, b.outer_nonce)
        );
        Ok(())
    }

    #[test]
    fn any_t_fragments_decoded_in_stripes_give_the_ciphertext_back() -> Result<(), Error> {
        for (len, t, n) in [(1, 1, 2), (1000, 3, 5), (4099, 3, 5), (9_001, 4, 7)] {
            let blob: Vec<u8> = (0..len).map(|i| (i * 11 % 251) as u8).collect();
            let coded = Fragments::new(blob.clone(), n, t)?;
            let fragments = (0..n)
                .map(|i| coded.fragment(i).ok_or(Error::NoServers)?.to_vec())
                .collect::<Result<Vec<_>, Error>>()?;
            let shape = Shape {
                n,
                t,
                shard: coded.shard(),
                len,
            };
            // Every t-subset of the n fragments, in index order.
            for mask in 0u32..(1 << n) {
                if mask.count_ones() as usize != t {
                    continue;
                }
                let chosen: Vec<(usize, Vec<u8>)> = (0..n)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| (i, fragments[i].to_vec()))
                    .collect();
                for stripe in [64, 1024, usize::MAX] {
                    let back = decode_fragments_in_stripes(chosen.clone(), shape, stripe)?;
                    let missing = (0..t).filter(|i| mask & (1 << i) == 0).count();
                    assert_eq!(back.restored, missing, "{t} of {n}, mask {mask:b}");
                    assert!(
                        back.ciphertext == blob,
                        "len {len}, {t} of {n}, mask {mask:b}, stripe {stripe}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn records_kept_in_parts_are_the_records_and_the_first_t_lie_in_the_files_buffer()
    -> Result<(), Error> {
        let pw = Password::new("pw");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let parts = split_into_parts("t", 1, split_buffer(&data), &fast_keys(&pw)?, 5, 3)?;
        assert_eq!(parts.len(), 5);
        assert!(parts.record(5).is_none());
        let joined = parts.joined()?;
        let mut buffer = None;
        for (i, record) in joined.iter().enumerate() {
            assert_eq!(record.len(), parts.record_len());
            let (decoded, manifest) = Record::decode(record).map_err(Error::Decode)?;
            assert_eq!(usize::from(decoded.index), i);
            assert_eq!(manifest.file_id, parts.file_id());
            let (_, fragment) = parts.record(i).ok_or(Error::NoServers)?;
            // The first three lie one after another in one buffer; the
            // other two lie nowhere whole.
            let start = fragment.in_ciphertext().map(<[u8]>::as_ptr);
            assert_eq!(start.is_some(), i < 3, "fragment {i}");
            if let Some(start) = start {
                let first = *buffer.get_or_insert(start);
                assert_eq!(
                    start,
                    first.wrapping_add(i * fragment.len()),
                    "fragment {i}"
                );
            }
        }
        // Any three rebuild the file: here the last three, two of them
        // recovery fragments.
        let got = rebuild("t", 1, named(&joined, &[2, 3, 4]), &pw)?;
        assert_eq!(got.plaintext, data);
        Ok(())
    }
    #[test]
    fn any_t_of_n_records_rebuild_the_file() -> Result<(), Error> {
        let pw = Password::new("pw");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let recs = split("tag", 1, &data, &pw, &Kdf::INSECURE_FAST, 5, 3)?;
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let out = rebuild("tag", 1, named(&recs, &[a, b, c]), &pw)?;
                    assert_eq!(out.plaintext, data);
                    assert!(out.bad.is_empty());
                }
            }
        }
        Ok(())
    }

    /// A load that asks more servers after its first records failed keeps
    /// those records and derives the password's keys once for both tries.
    #[test]
    fn records_a_rebuild_did_not_use_stay_for_the_next_with_more() -> Result<(), Error> {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 11) as u8).collect();
        let recs = three_of_five(&data)?;
        // A wrong password: the three records stay, and with the other two
        // the rebuild still fails on the password, having derived once.
        let wrong = KeyDeriver::new(&Password::new("not it"));
        let mut received = Received::of(1, named(&recs, &[0, 1, 2]));
        let failed = rebuild_received("tag", &mut received, &wrong);
        assert!(matches!(failed, Err(Error::Decrypt)));
        assert_eq!(received.held(), 3);
        received.add(named(&recs, &[3, 4]));
        let failed = rebuild_received("tag", &mut received, &wrong);
        assert!(matches!(failed, Err(Error::Decrypt)));
        assert_eq!((received.held(), wrong.derivations()), (5, 1));
        // One of the first three altered: too few, kept; with the other
        // two the file rebuilds, naming the altered one, and nothing is
        // left behind.
        let mut first = named(&recs, &[0, 1, 2]);
        if let Some(last) = first[1].1.last_mut() {
            *last ^= 1;
        }
        let right = KeyDeriver::new(&Password::new("pw"));
        let mut received = Received::of(1, first);
        let short = rebuild_received("tag", &mut received, &right);
        assert_eq!(failed_shares(&short), Some((2, 3)));
        assert_eq!(received.held(), 3);
        assert_eq!(right.derivations(), 0);
        received.add(named(&recs, &[3, 4]));
        let rebuilt = rebuild_received("tag", &mut received, &right.clone())?;
        assert_eq!(rebuilt.plaintext, data);
        assert_eq!(rebuilt.bad, ["s1"]);
        assert_eq!(rebuilt.restored, 1);
        assert_eq!(right.derivations(), 1);
        assert_eq!(received.held(), 0);
        Ok(())
    }

    #[test]
    fn a_record_decoded_from_its_own_buffer_keeps_its_fragment_there() -> Result<(), Error> {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 5) as u8).collect();
        let recs = three_of_five(&data)?;
        for bytes in recs {
            let copied = Record::decode(&bytes).map_err(Error::Decode)?;
            let buffer = bytes.as_ptr();
            let owned = Record::decode_owned(bytes).map_err(Error::Decode)?;
            assert_eq!(owned, copied);
            assert_eq!(
                owned.0.fragment.as_ptr(),
                buffer,
                "record {}",
                copied.0.index
            );
        }
        let mut cut = three_of_five(&data)?;
        cut[0].pop();
        assert!(Record::decode_owned(cut.swap_remove(0)).is_err());
        Ok(())
    }

    /// The five records of `data` saved 3-of-5 as version 1 of "tag" under
    /// the password "pw".
    fn three_of_five(data: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        split(
            "tag",
            1,
            data,
            &Password::new("pw"),
            &Kdf::INSECURE_FAST,
            5,
            3,
        )
    }

    /// The good and needed records of a rebuild that had too few.
    fn failed_shares(rebuilt: &Result<Rebuilt, Error>) -> Option<(usize, usize)> {
        match rebuilt {
            Err(Error::NotEnoughShares { good, needed, .. }) => Some((*good, *needed)),
            _ => None,
        }
    }

    #[test]
    fn the_largest_file_of_any_threshold_is_one_aes_gcm_encrypts_at_once() {
        // ring's AES-GCM encrypts at most 2^36 - 32 bytes in one call; the
        // outer encryption takes the file and the inner tag.
        let aes_gcm_max = (1u64 << 36) - 32;
        for t in 1..=255 {
            assert!(max_file_len(t) + 16 <= aes_gcm_max, "t = {t}");
            assert!(check_file_len(max_file_len(t), t).is_ok());
        }
        assert!(matches!(
            check_file_len(aes_gcm_max, 255),
            Err(Error::FileTooLarge { threshold: 255, .. })
        ));
    }

    #[test]
    fn the_largest_file_a_save_carries_fits_each_record_in_one_message() -> Result<(), Error> {
        use crate::message::{Body, MAX_TAG_LEN, Message, RequestId};
        let message = u64::from(MAX_FRAMES) * MAX_FRAME_PAYLOAD as u64;
        assert!(max_file_len(1) < message);
        assert!(max_file_len(3) > 2 * max_file_len(1));
        assert!(check_file_len(max_file_len(3), 3).is_ok());
        assert!(matches!(
            check_file_len(max_file_len(3) + 1, 3),
            Err(Error::FileTooLarge { threshold: 3, .. })
        ));
        // What a record and its message add to the fragment, at the largest
        // tag and the most servers, stays inside the headroom the limit keeps.
        let (len, n, t) = (10_000usize, 255, 2);
        let tag = "x".repeat(MAX_TAG_LEN);
        let recs = split(
            &tag,
            1,
            &vec![5u8; len],
            &Password::new("pw"),
            &Kdf::INSECURE_FAST,
            n,
            t,
        )?;
        let fragment = (len + 32).div_ceil(t).next_multiple_of(2);
        for record in recs {
            let (head, _) = Message {
                request_id: RequestId([0; 16]),
                body: Body::Store {
                    tag: tag.clone(),
                    version: 1,
                    record: record.clone(),
                },
            }
            .encode_parts();
            assert!(((record.len() - fragment + head.len()) as u64) < RECORD_HEADROOM);
        }
        Ok(())
    }

    #[test]
    fn each_record_holds_about_one_t_th_of_the_file() -> Result<(), Error> {
        let data = vec![1u8; 300_000];
        let recs = split(
            "t",
            1,
            &data,
            &Password::new("p"),
            &Kdf::INSECURE_FAST,
            5,
            3,
        )?;
        for r in &recs {
            assert!((r.len() as f64) < 1.1 * 100_000.0 + 1024.0, "{}", r.len());
        }
        Ok(())
    }

    #[test]
    fn thresholds_one_and_n_and_empty_files_work() -> Result<(), Error> {
        let pw = Password::new("p");
        for (n, t) in [(1, 1), (3, 1), (3, 3), (2, 2)] {
            for data in [&b""[..], b"x", &[9u8; 1001][..]] {
                let recs = split("t", 1, data, &pw, &Kdf::INSECURE_FAST, n, t)?;
                let which: Vec<usize> = (n - t..n).collect();
                assert_eq!(rebuild("t", 1, named(&recs, &which), &pw)?.plaintext, data);
            }
        }
        Ok(())
    }

    #[test]
    fn a_corrupt_fragment_and_a_corrupt_share_are_named_and_left_out() -> Result<(), Error> {
        let pw = Password::new("p");
        let data = vec![5u8; 5000];
        let mut recs = split("t", 1, &data, &pw, &Kdf::INSECURE_FAST, 5, 3)?;
        let last = recs[0].len() - 1;
        recs[0][last] ^= 0xff; // fragment byte
        let (mut r1, _) = Record::decode(&recs[1])?;
        r1.share[5] ^= 1;
        recs[1] = r1.encode();
        // What a server checks before it stores a record catches both.
        assert!(Record::check(&recs[0]).is_err());
        assert!(Record::check(&recs[1]).is_err());
        assert!(Record::check(&recs[2]).is_ok());
        let out = rebuild("t", 1, named(&recs, &[0, 1, 2, 3, 4]), &pw)?;
        assert_eq!(out.plaintext, data);
        assert_eq!(out.bad, vec!["s0".to_string(), "s1".to_string()]);
        Ok(())
    }

    #[test]
    fn records_of_manifest_format_1_still_rebuild() -> Result<(), Error> {
        let pw = Password::new("p");
        let data = vec![7u8; 3000];
        let recs = split("t", 1, &data, &pw, &Kdf::INSECURE_FAST, 3, 2)?;
        let (_, mut m) = Record::decode(&recs[0])?;
        assert_eq!(m.format, ManifestFormat::V2Blake3);
        let decoded = recs
            .iter()
            .map(|r| Record::decode(r).map(|(r, _)| r))
            .collect::<Result<Vec<_>, _>>()?;
        // The same save as a build that wrote format 1 (SHA-256) made it.
        m.format = ManifestFormat::V1Sha256;
        let blake3_hashes = std::mem::take(&mut m.fragment_hashes);
        m.fragment_hashes = decoded
            .iter()
            .map(|r| fragment_hash(m.format, &m.file_id, r.index, &r.fragment))
            .collect();
        assert_ne!(m.fragment_hashes, blake3_hashes);
        let manifest = m.encode();
        assert_eq!(manifest[4], 1);
        let keys = PasswordKeys::derive(&m.kdf, &pw, &m.salt)?;
        let mac = manifest_mac(keys.mac.expose_secret(), "t", &manifest);
        let old: Vec<Vec<u8>> = decoded
            .into_iter()
            .map(|mut r| {
                r.manifest = manifest.clone();
                r.mac = mac;
                r.encode()
            })
            .collect();
        assert!(Record::check(&old[0]).is_ok());
        assert_eq!(
            rebuild("t", 1, named(&old, &[0, 1, 2]), &pw)?.plaintext,
            data
        );
        // Format 1 with format 2's hashes: every fragment fails its check.
        m.fragment_hashes = blake3_hashes;
        let mut mislabelled = Record::decode(&old[0])?.0;
        mislabelled.manifest = m.encode();
        assert!(Record::check(&mislabelled.encode()).is_err());
        Ok(())
    }

    #[test]
    fn a_forged_manifest_from_a_lying_server_is_named() -> Result<(), Error> {
        let pw = Password::new("p");
        let data = vec![5u8; 500];
        let mut recs = split("t", 1, &data, &pw, &Kdf::INSECURE_FAST, 3, 2)?;
        // The liar rewrites its share and the manifest hash to match: only the MAC catches it.
        let (mut r, mut m) = Record::decode(&recs[2])?;
        r.share[3] ^= 1;
        m.share_hashes[2] = share_hash(&m.file_id, 2, &r.share[..]);
        r.manifest = m.encode();
        recs[2] = r.encode();
        let out = rebuild("t", 1, named(&recs, &[2, 0, 1]), &pw)?;
        assert_eq!(out.plaintext, data);
        assert_eq!(out.bad, vec!["s2".to_string()]);
        Ok(())
    }

    #[test]
    fn two_saves_of_one_version_that_each_rebuild_fail_naming_both_whatever_their_clocks()
    -> Result<(), Error> {
        // A partition: one side saved version 1 on three servers, the other
        // side, later by its clock, on two (threshold 2). No clock decides.
        let pw = Password::new("p");
        let older = split("t", 1, b"older", &pw, &Kdf::INSECURE_FAST, 5, 2)?;
        let newer = split("t", 1, b"newer", &pw, &Kdf::INSECURE_FAST, 5, 2)?;
        let (_, m_old) = Record::decode(&older[0])?;
        let mut later = Vec::new();
        for bytes in &newer {
            let (mut r, mut m) = Record::decode(bytes)?;
            m.created = m_old.created + 60;
            r.manifest = m.encode();
            let keys = PasswordKeys::derive(&m.kdf, &pw, &m.salt)?;
            r.mac = manifest_mac(keys.mac.expose_secret(), "t", &r.manifest);
            later.push(r.encode());
        }
        for records in [
            [named(&older, &[0, 1, 2]), named(&later, &[3, 4])].concat(),
            [named(&later, &[3, 4]), named(&older, &[0, 1, 2])].concat(),
        ] {
            match rebuild("t", 1, records, &pw) {
                Err(e @ Error::AmbiguousVersion { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("t@1 holds 2 different saves")
                            && text.contains("one on s0, s1, s2")
                            && text.contains("one on s3, s4"),
                        "{text}"
                    );
                }
                other => panic!("expected AmbiguousVersion, got {other:?}"),
            }
        }
        // With too few records of one save, the other loads, whichever is
        // newer by the clock, and no honest server is blamed.
        let mut records = named(&older, &[0, 1, 2]);
        records.extend(named(&later, &[3]));
        let out = rebuild("t", 1, records, &pw)?;
        assert_eq!(out.plaintext, b"older");
        assert!(out.bad.is_empty(), "honest servers blamed: {:?}", out.bad);
        assert_eq!(out.superseded, vec!["s3"]);
        let mut records = named(&older, &[0]);
        records.extend(named(&later, &[3, 4]));
        assert_eq!(rebuild("t", 1, records, &pw)?.plaintext, b"newer");
        Ok(())
    }

    #[test]
    fn one_record_whose_kdf_header_was_raised_neither_runs_its_kdf_nor_stops_the_load()
    -> Result<(), Error> {
        let pw = Password::new("p");
        let recs = split("t", 1, b"secret", &pw, &Kdf::INSECURE_FAST, 5, 3)?;
        let raised = |kdf: Kdf| -> Result<Vec<u8>, Error> {
            let (mut r, mut m) = Record::decode(&recs[4])?;
            m.kdf = kdf;
            r.manifest = m.encode();
            Ok(r.encode())
        };
        // Within the cap but costly (1 GiB, 4 passes: seconds): one record
        // is no save, so its KDF is never run.
        let costly = raised(Kdf::Argon2id {
            memory_kib: 1 << 20,
            iterations: 4,
            parallelism: 1,
        })?;
        let mut records = named(&recs, &[0, 1, 2, 3]);
        records.push(("s4".into(), costly));
        let deriver = KeyDeriver::new(&pw);
        let out = rebuild_received("t", &mut Received::of(1, records), &deriver)?;
        assert_eq!(deriver.derivations(), 1, "the save's KDF alone");
        assert_eq!(out.plaintext, b"secret");
        assert_eq!(out.bad, vec!["s4"], "the same save's id, another manifest");
        // Above the cap (4 GiB, 16 passes): the record is invalid, and the
        // reason names the cap.
        let mut w = crate::codec::Writer::with_capacity(16);
        w.u8(1).u32(4 << 20).u32(16).u32(1);
        let bytes = w.finish();
        let (mut r, m) = Record::decode(&recs[4])?;
        let mut manifest = m.encode();
        let at = 4 + 1 + 16 + 8 + 8 + 1 + 1;
        manifest[at..at + bytes.len()].copy_from_slice(&bytes);
        r.manifest = manifest;
        let mut records = named(&recs, &[0, 1, 2, 3]);
        records.push(("s4".into(), r.encode()));
        let out = rebuild("t", 1, records, &pw)?;
        assert_eq!(out.plaintext, b"secret");
        assert_eq!(out.bad, vec!["s4"]);
        assert!(
            out.bad_reasons[0].1.contains("above the cap"),
            "{:?}",
            out.bad_reasons
        );
        // Alone with too few others, it is named in the error.
        let mut records = named(&recs, &[0, 1]);
        records.push(("s4".into(), {
            let (mut r, _) = Record::decode(&recs[4])?;
            let mut manifest = m.encode();
            manifest[at..at + bytes.len()].copy_from_slice(&bytes);
            r.manifest = manifest;
            r.encode()
        }));
        match rebuild("t", 1, records, &pw) {
            Err(e @ Error::NotEnoughShares { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("s4 (invalid record") && text.contains("above the cap"),
                    "{text}"
                );
            }
            other => panic!("expected NotEnoughShares, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn a_share_two_servers_hold_counts_once_and_blames_neither() -> Result<(), Error> {
        let pw = Password::new("p");
        let recs = split("t", 1, b"secret", &pw, &Kdf::INSECURE_FAST, 5, 3)?;
        // s0 and a server restored from s0's copy, then s1 and s2.
        let mut records = named(&recs, &[0]);
        records.push(("copy-of-s0".to_string(), recs[0].clone()));
        records.extend(named(&recs, &[1, 2]));
        let out = rebuild("t", 1, records.clone(), &pw)?;
        assert_eq!(out.plaintext, b"secret");
        assert!(out.bad.is_empty(), "honest servers blamed: {:?}", out.bad);
        assert_eq!(out.repeated, vec!["copy-of-s0"]);
        assert_eq!(out.used, vec!["s0", "s1", "s2"]);
        // The copy does not stand in for a third share.
        records.pop();
        match rebuild("t", 1, records, &pw) {
            Err(Error::NotEnoughShares {
                good: 2,
                needed: 3,
                bad,
                ..
            }) => assert!(bad.is_empty(), "honest servers blamed: {bad:?}"),
            other => panic!("expected too few shares, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn a_newer_save_held_twice_by_too_few_servers_does_not_hide_the_older() -> Result<(), Error> {
        let pw = Password::new("p");
        let older = split("t", 1, b"older", &pw, &Kdf::INSECURE_FAST, 3, 2)?;
        let newer = split("t", 1, b"newer", &pw, &Kdf::INSECURE_FAST, 3, 2)?;
        let (_, m_old) = Record::decode(&older[0])?;
        let (mut r, mut m) = Record::decode(&newer[0])?;
        m.created = m_old.created + 60;
        r.manifest = m.encode();
        let keys = PasswordKeys::derive(&m.kdf, &pw, &m.salt)?;
        r.mac = manifest_mac(keys.mac.expose_secret(), "t", &r.manifest);
        let later = r.encode();
        // Two servers hold the newer save's share 0: one share, below t = 2.
        let mut records = named(&older, &[1, 2]);
        records.push(("a".to_string(), later.clone()));
        records.push(("b".to_string(), later));
        let out = rebuild("t", 1, records, &pw)?;
        assert_eq!(out.plaintext, b"older");
        assert!(out.bad.is_empty(), "honest servers blamed: {:?}", out.bad);
        assert_eq!(out.superseded, vec!["a", "b"]);
        Ok(())
    }

    #[test]
    fn fewer_than_t_records_fail_clearly() -> Result<(), Error> {
        let pw = Password::new("p");
        let recs = split("t", 1, b"secret", &pw, &Kdf::INSECURE_FAST, 5, 3)?;
        match rebuild("t", 1, named(&recs, &[0, 4]), &pw) {
            Err(Error::NotEnoughShares {
                good: 2, needed: 3, ..
            }) => Ok(()),
            other => panic!("expected NotEnoughShares, got {other:?}"),
        }
    }

    #[test]
    fn t_minus_one_shares_leave_every_key_byte_possible() -> Result<(), Error> {
        // With 2 of 3 shares fixed, each candidate third share yields a
        // different key: all 256 values of the first key byte stay possible.
        let key = SecretKey::generate()?;
        let shares = split_key(&key, 3, 3)?;
        let mut seen = [false; 256];
        for v in 0..=255u8 {
            let mut third = shares[2].clone();
            third[1] = v;
            let k = combine_key(&[shares[0].clone(), shares[1].clone(), third], 3)?;
            seen[k.expose_secret()[0] as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        Ok(())
    }

    #[test]
    fn a_wrong_password_and_a_moved_record_are_refused() -> Result<(), Error> {
        let recs = split("t", 1, b"x", &Password::new("p"), &Kdf::INSECURE_FAST, 3, 2)?;
        assert!(matches!(
            rebuild("t", 1, named(&recs, &[0, 1]), &Password::new("q")),
            Err(Error::Decrypt)
        ));
        assert!(matches!(
            rebuild("other", 1, named(&recs, &[0, 1]), &Password::new("p")),
            Err(Error::Decrypt)
        ));
        Ok(())
    }

    #[test]
    fn seed_scrypt_parameters_are_accepted() -> Result<(), Error> {
        // The seed used N = 2^20; a cheaper N keeps the test fast, the code path is the same.
        let kdf = Kdf::Scrypt {
            log_n: 10,
            r: 8,
            p: 1,
        };
        let pw = Password::new("p");
        let recs = split("t", 1, b"data", &pw, &kdf, 3, 2)?;
        assert_eq!(
            rebuild("t", 1, named(&recs, &[0, 2]), &pw)?.plaintext,
            b"data"
        );
        assert!(Kdf::SEED_SCRYPT.check().is_ok());
        Ok(())
    }
}
