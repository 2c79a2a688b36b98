//! Named keys with versions and the NIST SP 800-57 (Part 1, rev. 5, §7)
//! key states. Beyond the seed, which had no lifecycle at all.
//!
//! | state | encrypt, datakey | decrypt | rewrap | rotate | may become |
//! |---|---|---|---|---|---|
//! | pre-activation | no | no | no | yes | active, compromised, destroyed |
//! | active | yes | yes | yes | yes | suspended, deactivated, compromised |
//! | suspended | no | yes | no | no | active, deactivated, compromised |
//! | deactivated | no | yes | no | no | compromised, destroyed |
//! | compromised | no | yes | no | no | destroyed |
//! | destroyed | no | no | no | no | (none) |
//!
//! A key may protect data (encrypt, datakey, rewrap) only while active;
//! suspended, deactivated and compromised keys may still process (decrypt)
//! what they protected, as SP 800-57 allows; destroyed erases every
//! version's material and keeps only the metadata. Every transition is
//! recorded with its time. Each crypto operation first obtains a [`Permit`],
//! a proof that the state allows it, so no code path can skip the check.
//!
//! Versions: [`NamedKey::rotate`] adds a version; ciphertexts name their
//! version; decryption refuses versions below the minimum decryption
//! version; [`NamedKey::rewrap`] re-encrypts to the newest version without
//! returning the plaintext.

use std::collections::BTreeMap;

use seccs_core::SecretKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::KmsError;
use crate::ciphertext::{CiphertextHeader, MessageCipher};

/// A key's lifecycle state (NIST SP 800-57 Part 1, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyState {
    /// Created, not yet usable.
    PreActivation,
    /// Usable to protect and process data.
    Active,
    /// Temporarily out of use for protection; may process data.
    Suspended,
    /// No longer protects data; may process data protected before.
    Deactivated,
    /// Known or suspected to be compromised; may process data with caution.
    Compromised,
    /// Material erased.
    Destroyed,
}

impl KeyState {
    /// Every state, in lifecycle order.
    pub const ALL: [KeyState; 6] = [
        KeyState::PreActivation,
        KeyState::Active,
        KeyState::Suspended,
        KeyState::Deactivated,
        KeyState::Compromised,
        KeyState::Destroyed,
    ];

    /// Whether this state allows `op`.
    pub fn allows(self, op: Operation) -> bool {
        use KeyState::*;
        use Operation::*;
        matches!(
            (self, op),
            (Active, _)
                | (PreActivation, Rotate | Configure)
                | (Suspended | Deactivated | Compromised, Decrypt | Configure)
        )
    }

    /// Whether a key in this state may change to `to`.
    pub fn can_become(self, to: KeyState) -> bool {
        use KeyState::*;
        matches!(
            (self, to),
            (PreActivation, Active | Compromised | Destroyed)
                | (Active, Suspended | Deactivated | Compromised)
                | (Suspended, Active | Deactivated | Compromised)
                | (Deactivated, Compromised | Destroyed)
                | (Compromised, Destroyed)
        )
    }

    /// The state's name as used in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::PreActivation => "pre-activation",
            KeyState::Active => "active",
            KeyState::Suspended => "suspended",
            KeyState::Deactivated => "deactivated",
            KeyState::Compromised => "compromised",
            KeyState::Destroyed => "destroyed",
        }
    }
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyState {
    type Err = KmsError;
    fn from_str(s: &str) -> Result<Self, KmsError> {
        KeyState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(KmsError::Malformed("key state"))
    }
}

/// An operation on a named key, checked against its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Seal new data.
    Encrypt,
    /// Open data sealed before.
    Decrypt,
    /// Re-seal a ciphertext under the newest version.
    Rewrap,
    /// Generate a data key and its wrapped form.
    DataKey,
    /// Add a version.
    Rotate,
    /// Change settings (minimum decryption version).
    Configure,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 6] = [
        Operation::Encrypt,
        Operation::Decrypt,
        Operation::Rewrap,
        Operation::DataKey,
        Operation::Rotate,
        Operation::Configure,
    ];
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Encrypt => "encrypt",
            Operation::Decrypt => "decrypt",
            Operation::Rewrap => "rewrap",
            Operation::DataKey => "datakey",
            Operation::Rotate => "rotate",
            Operation::Configure => "configure",
        })
    }
}

/// Proof that a key's state allowed an operation when it was issued.
#[derive(Debug)]
pub struct Permit<'a> {
    key: &'a NamedKey,
    op: Operation,
}

/// The most versions one named key holds. With [`MAX_TRANSITIONS`], its
/// metadata stays far below [`crate::keyfile::MAX_META_LEN`], so that it
/// can always be retired (a test checks it).
pub const MAX_VERSIONS: usize = 4096;

/// The most state changes a named key makes between active and suspended
/// (its moves toward retirement are not counted against it).
pub const MAX_TRANSITIONS: usize = 4096;

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The state entered.
    pub state: KeyState,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

/// Metadata of one key version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The version number, from 1.
    pub version: u32,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Whether its material was erased.
    pub destroyed: bool,
}

/// The public description of a named key: everything but the material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key's name.
    pub name: String,
    /// The current state.
    pub state: KeyState,
    /// The newest version.
    pub latest_version: u32,
    /// Versions below this may not decrypt.
    pub min_decrypt_version: u32,
    /// Every version.
    pub versions: Vec<VersionInfo>,
    /// Every state change, oldest first (the first is the creation).
    pub transitions: Vec<Transition>,
}

/// A named key: metadata and the material of each live version.
pub struct NamedKey {
    info: KeyInfo,
    material: BTreeMap<u32, SecretKey>,
}

impl std::fmt::Debug for NamedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedKey")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Checks that a key name is usable as a file name.
pub fn check_name(name: &str) -> Result<(), KmsError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(KmsError::InvalidName)
    }
}

/// The invariants of a named key's metadata (see [`NamedKey::from_parts`]).
fn check_metadata(info: &KeyInfo) -> Result<(), KmsError> {
    let numbered = !info.versions.is_empty()
        && info
            .versions
            .iter()
            .zip(1u32..)
            .all(|(v, expected)| v.version == expected);
    if !numbered {
        return Err(KmsError::Malformed(
            "named key metadata: versions must be numbered 1, 2, ... in order",
        ));
    }
    if info.versions.last().map(|v| v.version) != Some(info.latest_version) {
        return Err(KmsError::Malformed(
            "named key metadata: the latest version is not the last version",
        ));
    }
    if info.min_decrypt_version == 0 || info.min_decrypt_version > info.latest_version {
        return Err(KmsError::Malformed(
            "named key metadata: the minimum decryption version is not between 1 and the latest",
        ));
    }
    if info.state == KeyState::Destroyed && info.versions.iter().any(|v| !v.destroyed) {
        return Err(KmsError::Malformed(
            "named key metadata: a destroyed key has a live version",
        ));
    }
    Ok(())
}

impl NamedKey {
    /// A new key with version 1, in `initial` state (pre-activation or
    /// active).
    pub fn create(name: &str, initial: KeyState, now: u64) -> Result<Self, KmsError> {
        check_name(name)?;
        if !matches!(initial, KeyState::PreActivation | KeyState::Active) {
            return Err(KmsError::InvalidInitialState(initial));
        }
        let mut transitions = vec![Transition {
            state: KeyState::PreActivation,
            at: now,
        }];
        if initial == KeyState::Active {
            transitions.push(Transition {
                state: KeyState::Active,
                at: now,
            });
        }
        let mut material = BTreeMap::new();
        material.insert(1, SecretKey::generate()?);
        Ok(Self {
            info: KeyInfo {
                name: name.to_owned(),
                state: initial,
                latest_version: 1,
                min_decrypt_version: 1,
                versions: vec![VersionInfo {
                    version: 1,
                    created: now,
                    destroyed: false,
                }],
                transitions,
            },
            material,
        })
    }

    /// Rebuilds a key from stored metadata and the materials of its live
    /// versions, in version order.
    ///
    /// The metadata must be what [`create`](Self::create),
    /// [`rotate`](Self::rotate) and [`transition`](Self::transition) make,
    /// else it is [`KmsError::Malformed`]: versions numbered `1, 2, …`
    /// in order, `latest_version` the last of them, `min_decrypt_version`
    /// in `1 ..= latest_version`, and a destroyed key's versions all
    /// destroyed. A count of materials other than the live versions' is
    /// [`KmsError::Tampered`].
    pub fn from_parts(info: KeyInfo, materials: Vec<SecretKey>) -> Result<Self, KmsError> {
        check_metadata(&info)?;
        let live: Vec<u32> = info
            .versions
            .iter()
            .filter(|v| !v.destroyed)
            .map(|v| v.version)
            .collect();
        if live.len() != materials.len() {
            return Err(KmsError::Tampered);
        }
        Ok(Self {
            material: live.into_iter().zip(materials).collect(),
            info,
        })
    }

    /// The metadata and the materials of live versions, in version order.
    pub fn parts(&self) -> (&KeyInfo, Vec<&SecretKey>) {
        (&self.info, self.material.values().collect())
    }

    /// An independent copy (the key ring changes copies, then swaps them in).
    pub fn duplicate(&self) -> Self {
        Self {
            info: self.info.clone(),
            material: self.material.clone(),
        }
    }

    /// The public description.
    pub fn info(&self) -> &KeyInfo {
        &self.info
    }

    /// A proof that the current state allows `op`.
    pub fn permit(&self, op: Operation) -> Result<Permit<'_>, KmsError> {
        if self.info.state.allows(op) {
            Ok(Permit { key: self, op })
        } else {
            Err(KmsError::StateForbids {
                state: self.info.state,
                op,
            })
        }
    }

    /// Moves to state `to` at time `now`. Entering `destroyed` erases
    /// every version's material. A move to active or suspended is refused
    /// past [`MAX_TRANSITIONS`]; a move toward retirement (deactivated,
    /// compromised, destroyed) never is, and there are at most three.
    pub fn transition(&mut self, to: KeyState, now: u64) -> Result<(), KmsError> {
        if !self.info.state.can_become(to) {
            return Err(KmsError::InvalidTransition {
                from: self.info.state,
                to,
            });
        }
        let count = self.info.transitions.len();
        if matches!(to, KeyState::Active | KeyState::Suspended) && count >= MAX_TRANSITIONS {
            return Err(KmsError::KeyLimit {
                what: "state changes",
                count,
                advice: "deactivate it and create a new key",
            });
        }
        self.info.state = to;
        self.info
            .transitions
            .push(Transition { state: to, at: now });
        if to == KeyState::Destroyed {
            // Dropping a SecretKey zeroizes it.
            self.material.clear();
            for v in &mut self.info.versions {
                v.destroyed = true;
            }
        }
        Ok(())
    }

    /// Adds a version; returns its number.
    pub fn rotate(&mut self, now: u64) -> Result<u32, KmsError> {
        self.permit(Operation::Rotate)?;
        let count = self.info.versions.len();
        if count >= MAX_VERSIONS {
            return Err(KmsError::KeyLimit {
                what: "versions",
                count,
                advice: "create a new key, move to it, and deactivate this one",
            });
        }
        let v = self
            .info
            .latest_version
            .checked_add(1)
            .ok_or(KmsError::Malformed("too many versions"))?;
        // Never replace a version's material (ciphertexts name it).
        let std::collections::btree_map::Entry::Vacant(slot) = self.material.entry(v) else {
            return Err(KmsError::Malformed(
                "named key: the next version exists already",
            ));
        };
        if self.info.versions.iter().any(|x| x.version == v) {
            return Err(KmsError::Malformed(
                "named key: the next version exists already",
            ));
        }
        slot.insert(SecretKey::generate()?);
        self.info.latest_version = v;
        self.info.versions.push(VersionInfo {
            version: v,
            created: now,
            destroyed: false,
        });
        Ok(v)
    }

    /// Sets the minimum decryption version (1 ..= latest).
    pub fn set_min_decrypt_version(&mut self, min: u32) -> Result<(), KmsError> {
        self.permit(Operation::Configure)?;
        if min == 0 || min > self.info.latest_version {
            return Err(KmsError::VersionRefused {
                version: min,
                min: self.info.min_decrypt_version,
                latest: self.info.latest_version,
            });
        }
        self.info.min_decrypt_version = min;
        Ok(())
    }

    fn cipher(&self, version: u32) -> Result<MessageCipher, KmsError> {
        let refused = KmsError::VersionRefused {
            version,
            min: self.info.min_decrypt_version,
            latest: self.info.latest_version,
        };
        if version < self.info.min_decrypt_version {
            return Err(refused);
        }
        let m = self.material.get(&version).ok_or(refused)?;
        Ok(MessageCipher::new(m, version))
    }

    fn check(&self, permit: &Permit<'_>, op: Operation) -> Result<(), KmsError> {
        let same_key = std::ptr::eq(permit.key, self);
        if same_key && permit.op == op {
            Ok(())
        } else {
            Err(KmsError::WrongPermit {
                permit: permit.op,
                op,
                whose: if same_key {
                    "of this key"
                } else {
                    "of another key"
                },
            })
        }
    }

    /// Seals `plaintext` under the newest version.
    pub fn encrypt(
        &self,
        permit: &Permit<'_>,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        self.check(permit, Operation::Encrypt)?;
        self.cipher(self.info.latest_version)?
            .seal(plaintext, context)
    }

    /// Opens a ciphertext of any allowed version.
    pub fn decrypt(
        &self,
        permit: &Permit<'_>,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.check(permit, Operation::Decrypt)?;
        let (header, _) = CiphertextHeader::parse(ciphertext)?;
        self.cipher(header.key_version)?.open(ciphertext, context)
    }

    /// Re-seals a ciphertext under the newest version; the plaintext never
    /// leaves this call and is zeroized.
    pub fn rewrap(
        &self,
        permit: &Permit<'_>,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        self.check(permit, Operation::Rewrap)?;
        let (header, _) = CiphertextHeader::parse(ciphertext)?;
        let plain = self.cipher(header.key_version)?.open(ciphertext, context)?;
        self.cipher(self.info.latest_version)?.seal(&plain, context)
    }

    /// A fresh data key and its form wrapped under the newest version.
    pub fn datakey(
        &self,
        permit: &Permit<'_>,
        context: &[u8],
    ) -> Result<(SecretKey, Vec<u8>), KmsError> {
        self.check(permit, Operation::DataKey)?;
        let dk = SecretKey::generate()?;
        let wrapped = self
            .cipher(self.info.latest_version)?
            .seal(dk.expose_secret(), context)?;
        Ok((dk, wrapped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key rotated and suspended as often as it may be is refused a
    /// further rotation and a further suspension, each saying what to do,
    /// can still be deactivated, marked compromised and destroyed, and its
    /// metadata stays well within what its file holds.
    #[test]
    fn a_key_at_its_limits_can_still_be_retired() -> Result<(), KmsError> {
        let mut key = key_in(KeyState::Active)?;
        while key.info.versions.len() < MAX_VERSIONS {
            key.rotate(1_700_000_000)?;
        }
        let Err(e) = key.rotate(1_700_000_000) else {
            panic!("a rotation past the limit was made");
        };
        assert!(
            e.to_string()
                .contains("4096 versions, the most one key may"),
            "{e}"
        );
        while key.info.transitions.len() < MAX_TRANSITIONS {
            let to = match key.info.state {
                KeyState::Active => KeyState::Suspended,
                _ => KeyState::Active,
            };
            key.transition(to, 1_700_000_000)?;
        }
        let to = match key.info.state {
            KeyState::Active => KeyState::Suspended,
            _ => KeyState::Active,
        };
        assert!(matches!(
            key.transition(to, 1_700_000_000),
            Err(KmsError::KeyLimit { .. })
        ));
        for to in [
            KeyState::Deactivated,
            KeyState::Compromised,
            KeyState::Destroyed,
        ] {
            key.transition(to, 4_102_444_800)?;
        }
        let meta = serde_json::to_vec(&key.info)?;
        assert!(
            meta.len() < crate::keyfile::MAX_META_LEN / 2,
            "{} bytes",
            meta.len()
        );
        Ok(())
    }

    /// The specification's transition table, written out in full.
    const ALLOWED: &[(KeyState, KeyState)] = {
        use KeyState::*;
        &[
            (PreActivation, Active),
            (PreActivation, Compromised),
            (PreActivation, Destroyed),
            (Active, Suspended),
            (Active, Deactivated),
            (Active, Compromised),
            (Suspended, Active),
            (Suspended, Deactivated),
            (Suspended, Compromised),
            (Deactivated, Compromised),
            (Deactivated, Destroyed),
            (Compromised, Destroyed),
        ]
    };

    /// A path from creation to `state`.
    fn key_in(state: KeyState) -> Result<NamedKey, KmsError> {
        use KeyState::*;
        let path: &[KeyState] = match state {
            PreActivation => &[],
            Active => &[Active],
            Suspended => &[Active, Suspended],
            Deactivated => &[Active, Deactivated],
            Compromised => &[Active, Compromised],
            Destroyed => &[Destroyed],
        };
        let mut k = NamedKey::create("k", PreActivation, 0)?;
        for (i, s) in path.iter().enumerate() {
            k.transition(*s, i as u64 + 1)?;
        }
        Ok(k)
    }

    #[test]
    fn every_transition_is_allowed_or_refused_as_specified() -> Result<(), KmsError> {
        for from in KeyState::ALL {
            for to in KeyState::ALL {
                let mut k = key_in(from)?;
                let expected = ALLOWED.contains(&(from, to));
                let r = k.transition(to, 100);
                assert_eq!(r.is_ok(), expected, "{from} -> {to}");
                if expected {
                    assert_eq!(k.info().state, to);
                    assert_eq!(
                        k.info().transitions.last(),
                        Some(&Transition { state: to, at: 100 })
                    );
                } else {
                    assert!(matches!(r, Err(KmsError::InvalidTransition { .. })));
                    assert_eq!(k.info().state, from);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn every_operation_is_allowed_or_refused_per_state() -> Result<(), KmsError> {
        use KeyState::*;
        use Operation::*;
        let table: &[(KeyState, &[Operation])] = &[
            (PreActivation, &[Rotate, Configure]),
            (
                Active,
                &[Encrypt, Decrypt, Rewrap, DataKey, Rotate, Configure],
            ),
            (Suspended, &[Decrypt, Configure]),
            (Deactivated, &[Decrypt, Configure]),
            (Compromised, &[Decrypt, Configure]),
            (Destroyed, &[]),
        ];
        let sample = key_in(Active)?;
        let p = sample.permit(Encrypt)?;
        let ct = sample.encrypt(&p, b"data", b"c")?;
        for (state, allowed) in table {
            let k = key_in(*state)?;
            for op in Operation::ALL {
                assert_eq!(k.permit(op).is_ok(), allowed.contains(&op), "{state} {op}");
            }
            // The permitted operations really work in the state.
            if let Ok(p) = k.permit(Decrypt) {
                let _ = k.decrypt(&p, &ct, b"c");
            }
        }
        Ok(())
    }

    #[test]
    fn destroyed_key_has_no_material_left() -> Result<(), KmsError> {
        let mut k = key_in(KeyState::Deactivated)?;
        k.transition(KeyState::Destroyed, 9)?;
        assert!(k.parts().1.is_empty());
        assert!(k.info().versions.iter().all(|v| v.destroyed));
        Ok(())
    }

    #[test]
    fn rotation_keeps_old_versions_decryptable_above_the_minimum() -> Result<(), KmsError> {
        let mut k = NamedKey::create("k", KeyState::Active, 0)?;
        let v1 = k.encrypt(&k.permit(Operation::Encrypt)?, b"one", b"")?;
        assert_eq!(k.rotate(1)?, 2);
        let v2 = k.encrypt(&k.permit(Operation::Encrypt)?, b"two", b"")?;
        assert_eq!(CiphertextHeader::parse(&v2)?.0.key_version, 2);
        assert_eq!(
            &**k.decrypt(&k.permit(Operation::Decrypt)?, &v1, b"")?,
            b"one"
        );
        let re = k.rewrap(&k.permit(Operation::Rewrap)?, &v1, b"")?;
        assert_eq!(CiphertextHeader::parse(&re)?.0.key_version, 2);
        k.set_min_decrypt_version(2)?;
        let p = k.permit(Operation::Decrypt)?;
        assert!(matches!(
            k.decrypt(&p, &v1, b""),
            Err(KmsError::VersionRefused { version: 1, .. })
        ));
        assert_eq!(&**k.decrypt(&p, &re, b"")?, b"one");
        assert_eq!(&**k.decrypt(&p, &v2, b"")?, b"two");
        Ok(())
    }

    #[test]
    fn datakey_unwraps_through_decrypt() -> Result<(), KmsError> {
        let k = NamedKey::create("k", KeyState::Active, 0)?;
        let (dk, wrapped) = k.datakey(&k.permit(Operation::DataKey)?, b"ctx")?;
        let back = k.decrypt(&k.permit(Operation::Decrypt)?, &wrapped, b"ctx")?;
        assert_eq!(&back[..], dk.expose_secret());
        Ok(())
    }

    #[test]
    fn a_permit_for_one_operation_does_not_authorise_another() -> Result<(), KmsError> {
        let k = NamedKey::create("k", KeyState::Active, 0)?;
        let p = k.permit(Operation::Decrypt)?;
        assert!(k.encrypt(&p, b"x", b"").is_err());
        Ok(())
    }

    #[test]
    fn from_parts_refuses_inconsistent_metadata() -> Result<(), KmsError> {
        let mut k = NamedKey::create("k", KeyState::Active, 0)?;
        k.rotate(1)?;
        let good = k.info().clone();
        let materials = || -> Vec<SecretKey> { k.parts().1.into_iter().cloned().collect() };
        assert!(NamedKey::from_parts(good.clone(), materials()).is_ok());
        let broken: Vec<(&str, KeyInfo)> = vec![
            (
                "latest 0",
                KeyInfo {
                    latest_version: 0,
                    ..good.clone()
                },
            ),
            (
                "latest 1 of 2",
                KeyInfo {
                    latest_version: 1,
                    ..good.clone()
                },
            ),
            (
                "latest 3 of 2",
                KeyInfo {
                    latest_version: 3,
                    ..good.clone()
                },
            ),
            (
                "min 0",
                KeyInfo {
                    min_decrypt_version: 0,
                    ..good.clone()
                },
            ),
            (
                "min above latest",
                KeyInfo {
                    min_decrypt_version: 3,
                    ..good.clone()
                },
            ),
            (
                "no versions",
                KeyInfo {
                    versions: vec![],
                    ..good.clone()
                },
            ),
            ("duplicate version", {
                let mut i = good.clone();
                i.versions[1].version = 1;
                i
            }),
            ("out of order", {
                let mut i = good.clone();
                i.versions.swap(0, 1);
                i
            }),
            ("gap", {
                let mut i = good.clone();
                i.versions[1].version = 3;
                i.latest_version = 3;
                i
            }),
            ("not from 1", {
                let mut i = good.clone();
                i.versions[0].version = 0;
                i
            }),
            (
                "destroyed but live",
                KeyInfo {
                    state: KeyState::Destroyed,
                    ..good.clone()
                },
            ),
        ];
        for (what, info) in broken {
            let r = NamedKey::from_parts(info, materials());
            assert!(matches!(r, Err(KmsError::Malformed(_))), "{what}: {r:?}");
        }
        Ok(())
    }

    #[test]
    fn rotate_never_replaces_an_existing_version() -> Result<(), KmsError> {
        let k = NamedKey::create("k", KeyState::Active, 0)?;
        let ct = k.encrypt(&k.permit(Operation::Encrypt)?, b"one", b"")?;
        // A key whose metadata lags its material (what from_parts refuses).
        let mut lagging = k.duplicate();
        lagging.info.latest_version = 0;
        lagging.info.versions.clear();
        assert!(matches!(lagging.rotate(1), Err(KmsError::Malformed(_))));
        lagging.info.latest_version = 1;
        let back = lagging.decrypt(&lagging.permit(Operation::Decrypt)?, &ct, b"")?;
        assert_eq!(&back[..], b"one");
        // Material present but metadata lacking, and the reverse.
        let mut meta_only = k.duplicate();
        meta_only.material.clear();
        meta_only.info.versions.push(VersionInfo {
            version: 2,
            created: 0,
            destroyed: false,
        });
        assert!(matches!(meta_only.rotate(1), Err(KmsError::Malformed(_))));
        Ok(())
    }

    #[test]
    fn a_permit_for_another_operation_says_so() -> Result<(), KmsError> {
        let k = NamedKey::create("k", KeyState::Active, 0)?;
        let ct = k.encrypt(&k.permit(Operation::Encrypt)?, b"x", b"")?;
        let shown = k
            .decrypt(&k.permit(Operation::Encrypt)?, &ct, b"")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            shown,
            "the permit is for encrypt of this key, not for decrypt: ask this key for a \
             permit for decrypt"
        );
        assert!(!shown.contains("does not allow"), "{shown}");
        let other = NamedKey::create("other", KeyState::Active, 0)?;
        let r = k.decrypt(&other.permit(Operation::Decrypt)?, &ct, b"");
        assert!(
            matches!(
                r,
                Err(KmsError::WrongPermit {
                    whose: "of another key",
                    ..
                })
            ),
            "{r:?}"
        );
        Ok(())
    }

    #[test]
    fn create_names_the_states_it_takes() {
        for state in [
            KeyState::Suspended,
            KeyState::Deactivated,
            KeyState::Compromised,
            KeyState::Destroyed,
        ] {
            let shown = NamedKey::create("x", state, 0)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert_eq!(
                shown,
                format!("a named key is created in state pre-activation or active, not {state}")
            );
        }
    }

    #[test]
    fn names_must_be_safe_file_names() {
        assert!(check_name("orders-2024_v1.x").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "sp ace"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
