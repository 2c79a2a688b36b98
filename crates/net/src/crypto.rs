//! The password layer: a memory-hard KDF and the AEAD helpers.
//!
//! Argon2id is the default KDF; scrypt is accepted so that the seed's
//! parameters (N = 2^20, r = 8, p = 1, see [`Kdf::SEED_SCRYPT`]) keep working.
//! KDF parameters travel inside records, which a server could alter, so every
//! parameter is bounded before it is used (the cap, [`Kdf::check`]): at most
//! [`MAX_KDF_MEMORY`] (1 GiB) of memory, and memory × passes (argon2id) or
//! memory × p (scrypt) at most [`MAX_KDF_WORK`] (4 GiB), a few seconds of
//! CPU. A save's parameters are held to the same cap, so whatever is saved
//! loads; a record above it is invalid, and a server refuses to store it.

use hkdf::Hkdf;
use seccs_core::SecretKey;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, Error};

/// A password, zeroized on drop and never shown.
#[derive(Clone)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// Takes ownership of the password bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }

    /// The password bytes.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Password").finish_non_exhaustive()
    }
}

/// A password-based key derivation function and its cost parameters.
///
/// In the config file: `[kdf]` with `algorithm = "argon2id"` and
/// `memory_kib`, `iterations`, `parallelism`, or `algorithm = "scrypt"` and
/// `log_n`, `r`, `p`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "lowercase", deny_unknown_fields)]
pub enum Kdf {
    /// Argon2id (RFC 9106).
    Argon2id {
        /// Memory in KiB, 8 to 1 Gi (1,048,576 KiB).
        memory_kib: u32,
        /// Passes, 1 to 16, and memory × passes at most 4 GiB.
        iterations: u32,
        /// Lanes, 1 to 16.
        parallelism: u32,
    },
    /// scrypt (RFC 7914).
    Scrypt {
        /// log2 of N, 1 to 22; memory (128 · r · N bytes) at most 1 GiB.
        log_n: u8,
        /// Block size, 1 to 32.
        r: u32,
        /// Parallelism, 1 to 16, and memory × p at most 4 GiB.
        p: u32,
    },
}

impl Default for Kdf {
    /// Argon2id with 64 MiB, 3 passes, 1 lane.
    fn default() -> Self {
        Kdf::Argon2id {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

/// The most memory a KDF may take, in bytes (1 GiB).
pub const MAX_KDF_MEMORY: u64 = 1 << 30;
/// The most work a KDF may take, in bytes of memory × passes (argon2id) or
/// × p (scrypt): 4 GiB, a few seconds.
pub const MAX_KDF_WORK: u64 = 4 << 30;

/// The least Argon2id memory (KiB) a store key is saved with: OWASP's
/// minimum configuration (19 MiB, 2 passes).
pub const MIN_KEY_ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// The least Argon2id passes a store key is saved with (OWASP's minimum).
pub const MIN_KEY_ARGON2_ITERATIONS: u32 = 2;
/// The least scrypt log2(N) a store key is saved with.
pub const MIN_KEY_SCRYPT_LOG_N: u8 = 15;
/// The least scrypt block size r a store key is saved with: with log_n 15,
/// 32 MiB of memory (128 · r · N bytes), the common interactive setting.
pub const MIN_KEY_SCRYPT_R: u32 = 8;
const KDF_ARGON2ID: u8 = 1;
const KDF_SCRYPT: u8 = 2;

impl Kdf {
    /// The seed's scrypt parameters: N = 2^20, r = 8, p = 1.
    pub const SEED_SCRYPT: Kdf = Kdf::Scrypt {
        log_n: 20,
        r: 8,
        p: 1,
    };

    /// Cheap parameters for tests only. **Never for real data**: a
    /// password guarded by it is cheap to guess from a stolen record. A
    /// save with it gets a warning in
    /// [`SaveReport::warnings`](crate::SaveReport::warnings), and a store
    /// key cannot be saved with it ([`Kdf::check_key_floor`]). Real code
    /// keeps [`Kdf::default`], as [`crate::ClientOptions::default`] does.
    pub const INSECURE_FAST: Kdf = Kdf::Argon2id {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    /// The cheapest Argon2id parameters a store key may be saved with
    /// (see [`Kdf::check_key_floor`]).
    pub const KEY_FLOOR: Kdf = Kdf::Argon2id {
        memory_kib: MIN_KEY_ARGON2_MEMORY_KIB,
        iterations: MIN_KEY_ARGON2_ITERATIONS,
        parallelism: 1,
    };

    /// Checks every parameter against its bound.
    pub fn check(&self) -> Result<(), Error> {
        match *self {
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                // Parallelism is bounded before it scales the memory floor,
                // so an untrusted value cannot overflow the product.
                if !(1..=16).contains(&iterations) || !(1..=16).contains(&parallelism) {
                    return Err(Error::Kdf(
                        "argon2id iterations or parallelism out of range",
                    ));
                }
                if !(8..=(MAX_KDF_MEMORY >> 10) as u32).contains(&memory_kib)
                    || memory_kib < 8 * parallelism
                {
                    return Err(Error::Kdf(
                        "argon2id memory_kib out of range (8 to 1048576, 1 GiB)",
                    ));
                }
                if (u64::from(memory_kib) << 10) * u64::from(iterations) > MAX_KDF_WORK {
                    return Err(Error::Kdf(
                        "argon2id memory_kib × iterations above 4 GiB (4194304 KiB)",
                    ));
                }
            }
            Kdf::Scrypt { log_n, r, p } => {
                if !(1..=22).contains(&log_n) || !(1..=32).contains(&r) || !(1..=16).contains(&p) {
                    return Err(Error::Kdf("scrypt parameter out of range"));
                }
                let memory = 128 * u64::from(r) * (1u64 << log_n);
                if memory > MAX_KDF_MEMORY {
                    return Err(Error::Kdf(
                        "scrypt needs more than 1 GiB (128 · r · 2^log_n)",
                    ));
                }
                if memory * u64::from(p) > MAX_KDF_WORK {
                    return Err(Error::Kdf("scrypt memory × p above 4 GiB"));
                }
            }
        }
        Ok(())
    }

    /// Checks that these parameters are costly enough to save a store key
    /// with: a key guarded by a near-free KDF falls to a guessed password.
    /// Only saves are held to it, so records saved before stay loadable.
    pub fn check_key_floor(&self) -> Result<(), Error> {
        let below = |setting: &'static str, value: u64, floor: u64| {
            Err(Error::WeakKdf {
                setting,
                value,
                floor,
            })
        };
        match *self {
            Kdf::Argon2id {
                memory_kib,
                iterations,
                ..
            } => {
                if memory_kib < MIN_KEY_ARGON2_MEMORY_KIB {
                    return below(
                        "argon2id memory_kib",
                        memory_kib.into(),
                        MIN_KEY_ARGON2_MEMORY_KIB.into(),
                    );
                }
                if iterations < MIN_KEY_ARGON2_ITERATIONS {
                    return below(
                        "argon2id iterations",
                        iterations.into(),
                        MIN_KEY_ARGON2_ITERATIONS.into(),
                    );
                }
            }
            Kdf::Scrypt { log_n, r, .. } => {
                if log_n < MIN_KEY_SCRYPT_LOG_N {
                    return below("scrypt log_n", log_n.into(), MIN_KEY_SCRYPT_LOG_N.into());
                }
                if r < MIN_KEY_SCRYPT_R {
                    return below("scrypt r", r.into(), MIN_KEY_SCRYPT_R.into());
                }
            }
        }
        Ok(())
    }

    /// Derives a 32-byte key from `password` and `salt`.
    pub fn derive(&self, password: &Password, salt: &[u8]) -> Result<SecretKey, Error> {
        self.check()?;
        // Derived straight into the key's own bytes: no copy of it is left
        // on the stack, as one moved out of a local array would be.
        SecretKey::try_filled(|out| self.derive_into(password, salt, out))
    }

    fn derive_into(
        &self,
        password: &Password,
        salt: &[u8],
        out: &mut [u8; 32],
    ) -> Result<(), Error> {
        match *self {
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                let params = argon2::Params::new(memory_kib, iterations, parallelism, Some(32))
                    .map_err(|_| Error::Kdf("argon2 rejected the parameters"))?;
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                    .hash_password_into(password.expose_secret(), salt, out.as_mut())
                    .map_err(|_| Error::Kdf("argon2 failed"))?;
            }
            Kdf::Scrypt { log_n, r, p } => {
                let params = scrypt::Params::new(log_n, r, p)
                    .map_err(|_| Error::Kdf("scrypt rejected the parameters"))?;
                scrypt::scrypt(password.expose_secret(), salt, &params, out.as_mut())
                    .map_err(|_| Error::Kdf("scrypt failed"))?;
            }
        }
        Ok(())
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        match *self {
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                w.u8(KDF_ARGON2ID)
                    .u32(memory_kib)
                    .u32(iterations)
                    .u32(parallelism);
            }
            Kdf::Scrypt { log_n, r, p } => {
                w.u8(KDF_SCRYPT).u32(u32::from(log_n)).u32(r).u32(p);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let kind = r.u8()?;
        let (a, b, c) = (r.u32()?, r.u32()?, r.u32()?);
        let kdf = match kind {
            KDF_ARGON2ID => Kdf::Argon2id {
                memory_kib: a,
                iterations: b,
                parallelism: c,
            },
            KDF_SCRYPT => Kdf::Scrypt {
                log_n: u8::try_from(a).map_err(|_| DecodeError::Invalid("scrypt log_n"))?,
                r: b,
                p: c,
            },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        kdf.check().map_err(|_| {
            DecodeError::Invalid(
                "KDF parameters (above the cap of 1 GiB of memory and 4 GiB × passes, or malformed)",
            )
        })?;
        Ok(kdf)
    }
}

/// The two keys derived from the password key.
#[derive(Clone)]
pub(crate) struct PasswordKeys {
    pub enc: SecretKey,
    pub mac: SecretKey,
}

impl PasswordKeys {
    pub(crate) fn derive(kdf: &Kdf, password: &Password, salt: &[u8]) -> Result<Self, Error> {
        let root = kdf.derive(password, salt)?;
        let hk = Hkdf::<Sha256>::new(None, root.expose_secret());
        let expand = |info: &[u8]| {
            SecretKey::try_filled(|out| {
                hk.expand(info, out)
                    .map_err(|_| Error::Kdf("hkdf output length"))
            })
        };
        Ok(Self {
            enc: expand(b"seccs-net/v1/password-layer")?,
            mac: expand(b"seccs-net/v1/manifest-mac")?,
        })
    }
}

/// AES-256-GCM from `ring`: the same ciphertext as RustCrypto's `aes-gcm`
/// (used here before), about three times as fast here on the
/// large payloads of a save (VAES/VPCLMULQDQ), which `seccs bench share`
/// measured as the biggest cost after the durable writes.
fn cipher(key: &SecretKey) -> ring::aead::LessSafeKey {
    let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key.expose_secret())
        .expect("a SecretKey is 32 bytes, the AES-256 key length");
    ring::aead::LessSafeKey::new(unbound)
}

/// The most bytes ring's AES-GCM encrypts in one call: its 32-bit block
/// counter leaves 2^32 - 2 blocks of 16 bytes for the data.
pub(crate) const MAX_SEAL_LEN: u64 = ((1 << 32) - 2) * 16;

/// Encrypts `data` in place with AES-256-GCM and appends the tag. Give
/// `data` 16 bytes of spare capacity to spare a copy. Fails with
/// [`Error::Encrypt`] when `data` is longer than [`MAX_SEAL_LEN`].
pub(crate) fn seal(
    key: &SecretKey,
    nonce: &[u8; 12],
    aad: &[u8],
    mut data: Vec<u8>,
) -> Result<Vec<u8>, Error> {
    let tag = cipher(key)
        .seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(*nonce),
            ring::aead::Aad::from(aad),
            &mut data,
        )
        .map_err(|_| Error::Encrypt(data.len() as u64))?;
    data.extend_from_slice(tag.as_ref());
    Ok(data)
}

/// Checks and removes the tag, then decrypts in place. Never says why it failed.
pub(crate) fn open(
    key: &SecretKey,
    nonce: &[u8; 12],
    aad: &[u8],
    mut data: Vec<u8>,
) -> Result<Vec<u8>, Error> {
    let body_len = data.len().checked_sub(16).ok_or(Error::Decrypt)?;
    let tag_bytes: [u8; 16] = data[body_len..].try_into().map_err(|_| Error::Decrypt)?;
    data.truncate(body_len);
    cipher(key)
        .open_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(*nonce),
            ring::aead::Aad::from(aad),
            ring::aead::Tag::from(tag_bytes),
            &mut data,
            0..,
        )
        .map_err(|_| Error::Decrypt)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_detects_a_flipped_bit() -> Result<(), Error> {
        let key = SecretKey::generate()?;
        let sealed = seal(&key, &[1; 12], b"ad", b"hello".to_vec())?;
        assert_eq!(open(&key, &[1; 12], b"ad", sealed.clone())?, b"hello");
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert!(matches!(
            open(&key, &[1; 12], b"ad", bad),
            Err(Error::Decrypt)
        ));
        assert!(matches!(
            open(&key, &[1; 12], b"other", sealed),
            Err(Error::Decrypt)
        ));
        Ok(())
    }

    #[test]
    fn kdf_bounds_reject_parameters_a_lying_server_could_send() {
        assert!(Kdf::SEED_SCRYPT.check().is_ok());
        assert!(Kdf::default().check().is_ok());
        assert!(
            Kdf::Scrypt {
                log_n: 30,
                r: 8,
                p: 1
            }
            .check()
            .is_err()
        );
        assert!(
            Kdf::Argon2id {
                memory_kib: u32::MAX,
                iterations: 1,
                parallelism: 1
            }
            .check()
            .is_err()
        );
        assert!(
            Kdf::Argon2id {
                memory_kib: 64,
                iterations: 0,
                parallelism: 1
            }
            .check()
            .is_err()
        );
        // The cap: 4 GiB and 16 passes (74 s of one core) once passed.
        for (memory_kib, iterations) in [(4 << 20, 16), (2 << 20, 1), (1 << 20, 5)] {
            assert!(
                Kdf::Argon2id {
                    memory_kib,
                    iterations,
                    parallelism: 1
                }
                .check()
                .is_err(),
                "{memory_kib} KiB x {iterations}"
            );
        }
        assert!(
            Kdf::Argon2id {
                memory_kib: 1 << 20,
                iterations: 4,
                parallelism: 4
            }
            .check()
            .is_ok()
        );
        // Found by the share_packet fuzz target: a parallelism this large
        // overflowed the memory floor's product before it was bounded.
        assert!(
            Kdf::Argon2id {
                memory_kib: 64,
                iterations: 1,
                parallelism: 0xff00_0000
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn store_keys_need_kdf_settings_at_or_above_the_floor() {
        assert!(Kdf::default().check_key_floor().is_ok());
        assert!(Kdf::SEED_SCRYPT.check_key_floor().is_ok());
        assert!(Kdf::KEY_FLOOR.check_key_floor().is_ok());
        let weak = |kdf: Kdf| match kdf.check_key_floor() {
            Err(e @ Error::WeakKdf { .. }) => e.to_string(),
            other => format!("not refused: {other:?}"),
        };
        let m = weak(Kdf::INSECURE_FAST);
        assert!(m.contains("memory_kib = 8") && m.contains("19456"), "{m}");
        let m = weak(Kdf::Argon2id {
            memory_kib: 65536,
            iterations: 1,
            parallelism: 1,
        });
        assert!(
            m.contains("iterations = 1") && m.contains("at least 2"),
            "{m}"
        );
        let m = weak(Kdf::Scrypt {
            log_n: 1,
            r: 1,
            p: 1,
        });
        assert!(m.contains("log_n = 1") && m.contains("at least 15"), "{m}");
        let m = weak(Kdf::Scrypt {
            log_n: 15,
            r: 1,
            p: 1,
        });
        assert!(m.contains("r = 1") && m.contains("at least 8"), "{m}");
    }

    #[test]
    fn scrypt_and_argon2id_derive_distinct_deterministic_keys() -> Result<(), Error> {
        let pw = Password::new("pw");
        let scrypt = Kdf::Scrypt {
            log_n: 4,
            r: 8,
            p: 1,
        };
        assert_eq!(
            scrypt.derive(&pw, b"salt-salt-salt-1")?,
            scrypt.derive(&pw, b"salt-salt-salt-1")?
        );
        assert_ne!(
            scrypt.derive(&pw, b"salt-salt-salt-1")?,
            Kdf::INSECURE_FAST.derive(&pw, b"salt-salt-salt-1")?
        );
        assert_ne!(
            scrypt.derive(&pw, b"salt-salt-salt-1")?,
            scrypt.derive(&pw, b"salt-salt-salt-2")?
        );
        Ok(())
    }

    #[test]
    fn password_debug_is_redacted() {
        assert!(!format!("{:?}", Password::new("hunter2")).contains("hunter2"));
    }
}
