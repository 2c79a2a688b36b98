//! The store descriptor: how a store's nodes are made (chunk size, wrapper,
//! compression) and, for a store keyed by the key service, the salt its key
//! is derived with, kept on the backend beside the entries
//! ([`Backend::read_descriptor`](crate::backend::Backend::read_descriptor)).
//!
//! A store's directory records all of this in config.toml. Kept on the
//! backend too, a store whose directory was lost is attached again
//! (`seccs init --attach`) from its backend and its key alone: without it
//! the operator must remember the parameters, and a key-service store whose
//! salt went with its config.toml could never derive its key again.
//!
//! # Format, version 1
//!
//! UTF-8 text of at most [`MAX_LEN`] bytes, each line ended by one LF, in
//! exactly this order (the `kms_salt` line only for a store keyed by the key
//! service with a salt):
//!
//! ```text
//! seccs-store-descriptor 1
//! chunk_size S            S in decimal, no sign or leading zero
//! wrapper W               the wrapper's name (`aes-siv`, ...)
//! compression C           `none` or `zstd:LEVEL`
//! kms_salt HEX            32 lowercase hex digits
//! mac HEX                 64 lowercase hex digits
//! ```
//!
//! `mac` is HMAC-SHA-256 under `HKDF(store key,
//! "seccs/v1/store/descriptor")` of every byte before the `mac` line. The
//! backend's owner can read a descriptor (nothing in it is secret: a salt
//! is not, and node sizes already show the chunk size) but cannot change
//! one unseen: a reader takes the salt on trust only to derive a candidate
//! key, and trusts nothing in the descriptor until that key checks its MAC.
//! A forged salt gives a key that checks no MAC and opens nothing.

use hmac::{Hmac, KeyInit, Mac};
use seccs_core::SecretKey;
use seccs_core::kdf::{self, Label};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::{Result, StoreError};
use crate::params::{Compression, Params};
use crate::wrapper::WrapperKind;

/// The first line's magic.
const MAGIC: &str = "seccs-store-descriptor";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// The longest descriptor read: a version 1 descriptor is under 250 bytes,
/// and a backend reads no more than one byte past this.
pub const MAX_LEN: usize = crate::backend::MAX_BESIDE_ENTRIES;
/// The HKDF label of the descriptor's MAC key; part of the format.
const MAC_LABEL: Label = Label::Custom("seccs/v1/store/descriptor");
/// Bytes of a key-service salt.
const SALT_LEN: usize = 16;

/// What a store's descriptor records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// How the store's nodes are made.
    pub params: Params,
    /// The salt of a store whose key is derived from a key-service DEK.
    pub kms_salt: Option<[u8; SALT_LEN]>,
}

impl Descriptor {
    /// The descriptor's bytes, authenticated under `key`.
    pub fn seal(&self, key: &SecretKey) -> Vec<u8> {
        let mut text = format!(
            "{MAGIC} {VERSION}\nchunk_size {}\nwrapper {}\ncompression {}\n",
            self.params.chunk_size(),
            self.params.wrapper(),
            self.params.compression()
        );
        if let Some(salt) = &self.kms_salt {
            text.push_str(&format!("kms_salt {}\n", seccs_core::hexenc::encode(salt)));
        }
        let tag = mac(key, text.as_bytes());
        text.push_str(&format!("mac {}\n", seccs_core::hexenc::encode(&tag)));
        text.into_bytes()
    }

    /// Reads a descriptor's bytes, as a backend gave them: well formed, but
    /// not yet authenticated (see [`Unverified::verify`]).
    pub fn parse(bytes: &[u8]) -> Result<Unverified> {
        if bytes.len() > MAX_LEN {
            return Err(malformed(format!(
                "{} bytes, more than any descriptor ({MAX_LEN})",
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8 text"))?;
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| malformed("its last line has no line end"))?;
        let mut lines = body.split('\n');
        let mut field = |name: &str| -> Result<&str> {
            let line = lines
                .next()
                .ok_or_else(|| malformed(format!("no `{name}` line")))?;
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .ok_or_else(|| malformed(format!("`{name}` expected, found {line:?}")))
        };
        let version = field(MAGIC)?;
        if version != VERSION.to_string() {
            return match version.parse::<u32>() {
                Ok(newer) if newer > VERSION => Err(StoreError::Config(format!(
                    "the backend's store descriptor is of format {newer}, newer than this build \
                     reads ({VERSION}): use a newer seccs"
                ))),
                _ => Err(malformed(format!("version {version:?}"))),
            };
        }
        let chunk_size = field("chunk_size")?;
        let chunk_size = chunk_size
            .parse::<usize>()
            .ok()
            .filter(|n| n.to_string() == chunk_size)
            .ok_or_else(|| malformed(format!("chunk size {chunk_size:?}")))?;
        let wrapper: WrapperKind = field("wrapper")?
            .parse()
            .map_err(|e| malformed(format!("wrapper: {e}")))?;
        let compression = field("compression")?;
        let compression: Compression = compression
            .parse()
            .ok()
            .filter(|c: &Compression| c.to_string() == compression)
            .ok_or_else(|| malformed(format!("compression {compression:?}")))?;
        let params = Params::new(chunk_size, wrapper)
            .map_err(|e| malformed(e.to_string()))?
            .with_compression(compression);
        let mut rest: Vec<&str> = lines.collect();
        let mac_line = rest.pop().ok_or_else(|| malformed("no `mac` line"))?;
        let kms_salt = match rest.as_slice() {
            [] => None,
            [salt] => Some(
                salt.strip_prefix("kms_salt ")
                    .and_then(lower_hex::<SALT_LEN>)
                    .ok_or_else(|| malformed(format!("`kms_salt HEX` expected, found {salt:?}")))?,
            ),
            _ => return Err(malformed("lines after `compression` other than `kms_salt`")),
        };
        let tag = mac_line
            .strip_prefix("mac ")
            .and_then(lower_hex::<32>)
            .ok_or_else(|| malformed(format!("`mac HEX` expected, found {mac_line:?}")))?;
        // The MAC covers every byte before its own line.
        let signed = text.len() - mac_line.len() - 1;
        Ok(Unverified {
            descriptor: Descriptor { params, kms_salt },
            signed: bytes[..signed].to_vec(),
            tag,
        })
    }
}

/// A descriptor read from a backend, well formed but not authenticated:
/// nothing in it but the salt is given out before [`Unverified::verify`].
#[derive(Debug)]
pub struct Unverified {
    descriptor: Descriptor,
    signed: Vec<u8>,
    tag: [u8; 32],
}

impl Unverified {
    /// The salt the descriptor claims, to derive the candidate key that
    /// [`Unverified::verify`] then checks it with.
    pub fn claimed_kms_salt(&self) -> Option<[u8; SALT_LEN]> {
        self.descriptor.kms_salt
    }

    /// The descriptor, once `key` authenticates it; an error if it does
    /// not (another store's key, or a descriptor changed on the backend).
    pub fn verify(self, key: &SecretKey) -> Result<Descriptor> {
        if bool::from(mac(key, &self.signed).ct_eq(&self.tag)) {
            Ok(self.descriptor)
        } else {
            Err(StoreError::Integrity(
                "the backend's store descriptor does not authenticate under this key: it was \
                 changed on the backend, or the key is not this store's"
                    .to_owned(),
            ))
        }
    }
}

fn mac(key: &SecretKey, signed: &[u8]) -> [u8; 32] {
    let mac_key = kdf::derive(key, MAC_LABEL);
    // Cannot fail: HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(mac_key.expose_secret())
        .expect("HMAC takes any key length");
    mac.update(signed);
    mac.finalize().into_bytes().into()
}

/// `N` bytes from exactly `2N` lowercase hex digits.
fn lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    seccs_core::hexenc::decode(text).ok()?.try_into().ok()
}

fn malformed(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Integrity(format!(
        "the backend's store descriptor is not one: {detail}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes([n; 32])
    }

    fn descriptor(salt: Option<[u8; SALT_LEN]>) -> Descriptor {
        let params = Params::new(2048, WrapperKind::AesSivDistinguishedRoot)
            .expect("params")
            .with_compression(Compression::None);
        Descriptor {
            params,
            kms_salt: salt,
        }
    }

    #[test]
    fn a_descriptor_reads_back_under_its_key_with_or_without_a_salt() -> Result<()> {
        for salt in [None, Some([7; SALT_LEN])] {
            let sealed = descriptor(salt).seal(&key(1));
            let read = Descriptor::parse(&sealed)?;
            assert_eq!(read.claimed_kms_salt(), salt);
            assert_eq!(read.verify(&key(1))?, descriptor(salt));
        }
        Ok(())
    }

    #[test]
    fn the_format_is_the_one_the_module_specifies() -> Result<()> {
        let sealed = descriptor(Some([0xab; SALT_LEN])).seal(&key(1));
        let text = String::from_utf8(sealed.clone()).expect("text");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..5],
            [
                "seccs-store-descriptor 1",
                "chunk_size 2048",
                "wrapper aes-siv-dr",
                "compression none",
                &format!("kms_salt {}", "ab".repeat(16)),
            ]
        );
        let signed = &text[..text.find("mac ").expect("mac line")];
        let mac_key = kdf::derive(&key(1), Label::Custom("seccs/v1/store/descriptor"));
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(mac_key.expose_secret()).expect("any length");
        mac.update(signed.as_bytes());
        let expected = seccs_core::hexenc::encode(&mac.finalize().into_bytes());
        assert_eq!(lines[5], format!("mac {expected}"));
        assert_eq!(lines.len(), 6);
        Ok(())
    }

    #[test]
    fn a_changed_byte_or_another_key_fails_to_authenticate() -> Result<()> {
        let sealed = descriptor(Some([1; SALT_LEN])).seal(&key(1));
        assert!(matches!(
            Descriptor::parse(&sealed)?.verify(&key(2)),
            Err(StoreError::Integrity(_))
        ));
        let text = String::from_utf8(sealed).expect("text");
        for (from, to) in [
            ("chunk_size 2048", "chunk_size 4096"),
            ("wrapper aes-siv-dr", "wrapper aes-siv"),
            ("compression none", "compression zstd:3"),
            ("kms_salt 01", "kms_salt 02"),
        ] {
            let changed = text.replacen(from, to, 1);
            assert_ne!(changed, text);
            let read = Descriptor::parse(changed.as_bytes())?;
            assert!(
                matches!(read.verify(&key(1)), Err(StoreError::Integrity(_))),
                "{to}"
            );
        }
        // The salt's line taken away.
        let start = text.find("kms_salt").expect("salt line");
        let end = start + text[start..].find('\n').expect("line end") + 1;
        let without = format!("{}{}", &text[..start], &text[end..]);
        assert!(
            Descriptor::parse(without.as_bytes())?
                .verify(&key(1))
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn what_is_not_a_descriptor_is_refused_before_any_key_is_tried() {
        let good = String::from_utf8(descriptor(None).seal(&key(1))).expect("text");
        let cases = [
            String::new(),
            good.trim_end().to_owned(),
            good.replace("chunk_size 2048", "chunk_size 02048"),
            good.replace("chunk_size 2048", "chunk_size 1"),
            good.replace("wrapper aes-siv-dr", "wrapper rot13"),
            good.replace("compression none", "compression zstd"),
            good.replace("compression none\n", "compression none\nextra 1\n"),
            good.replace("mac ", "MAC "),
            match good.find("mac ") {
                Some(at) => format!("{}{}", &good[..at + 4], good[at + 4..].to_uppercase()),
                None => String::new(),
            },
            good.replace("seccs-store-descriptor 1", "seccs-store-descriptor x"),
            "x".repeat(MAX_LEN + 1),
        ];
        for case in cases {
            assert!(
                matches!(
                    Descriptor::parse(case.as_bytes()),
                    Err(StoreError::Integrity(_))
                ),
                "{case:?}"
            );
        }
        assert!(Descriptor::parse(&[0xff, b'\n']).is_err());
        let newer = good.replace("seccs-store-descriptor 1", "seccs-store-descriptor 2");
        let said = Descriptor::parse(newer.as_bytes())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(said.contains("newer than this build"), "{said}");
    }
}
