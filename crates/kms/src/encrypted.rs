//! [`Encrypted<T>`]: a value stored encrypted, the seed's
//! `EncryptedPersistent`. It serialises as the hex of a message ciphertext
//! of the value's JSON; opening it needs the same key and context.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::KmsError;
use crate::ciphertext::MessageCipher;

/// A `T` sealed with a [`MessageCipher`] (for example the cipher of a
/// cached DEK, [`crate::client::CachedKey::cipher`]).
pub struct Encrypted<T> {
    ciphertext: Vec<u8>,
    _value: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Encrypted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted")
            .field("len", &self.ciphertext.len())
            .finish()
    }
}

impl<T> Clone for Encrypted<T> {
    fn clone(&self) -> Self {
        Self {
            ciphertext: self.ciphertext.clone(),
            _value: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Encrypted<T> {
    /// Seals `value` bound to `context`.
    pub fn seal(cipher: &MessageCipher, value: &T, context: &[u8]) -> Result<Self, KmsError> {
        let plain = Zeroizing::new(serde_json::to_vec(value)?);
        Ok(Self {
            ciphertext: cipher.seal(&plain, context)?,
            _value: PhantomData,
        })
    }

    /// Opens the value; a wrong key or context, or a change, is
    /// [`KmsError::Tampered`]. A plaintext that is not the JSON of a `T`
    /// (sealed as another type) is [`KmsError::SecretJson`], which does
    /// not quote it.
    pub fn open(&self, cipher: &MessageCipher, context: &[u8]) -> Result<T, KmsError> {
        let plain = Zeroizing::new(cipher.open(&self.ciphertext, context)?);
        serde_json::from_slice(&plain).map_err(|e| KmsError::secret_json("the decrypted value", &e))
    }

    /// The ciphertext.
    pub fn as_bytes(&self) -> &[u8] {
        &self.ciphertext
    }
}

impl<T> Serialize for Encrypted<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.ciphertext))
    }
}

impl<'de, T> Deserialize<'de> for Encrypted<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let ciphertext = hex::decode(text).map_err(serde::de::Error::custom)?;
        crate::ciphertext::CiphertextHeader::parse(&ciphertext)
            .map_err(serde::de::Error::custom)?;
        Ok(Self {
            ciphertext,
            _value: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seccs_core::SecretKey;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Card {
        number: String,
        holder: String,
    }

    #[test]
    fn encrypted_value_round_trips_through_json_and_rejects_other_context() -> Result<(), KmsError>
    {
        let cipher = MessageCipher::new(&SecretKey::generate()?, 0);
        // Long enough that random ciphertext, or its hex, holds it by
        // chance with odds of about 2^-57 (a 4-digit number was in the hex
        // about once in 500 runs).
        let number = "4111111111111111";
        let card = Card {
            number: number.into(),
            holder: "A".into(),
        };
        let sealed = Encrypted::seal(&cipher, &card, b"row 7")?;
        let json = serde_json::to_string(&sealed)?;
        assert!(!json.contains(number), "{json}");
        assert!(
            !sealed
                .as_bytes()
                .windows(number.len())
                .any(|w| w == number.as_bytes())
        );
        let back: Encrypted<Card> = serde_json::from_str(&json)?;
        assert_eq!(back.open(&cipher, b"row 7")?, card);
        assert!(matches!(
            back.open(&cipher, b"row 8"),
            Err(KmsError::Tampered)
        ));
        Ok(())
    }

    /// A value opened as another type than it was sealed as fails without
    /// quoting it, in any form of the error.
    #[test]
    fn a_value_opened_as_another_type_is_not_quoted_by_the_error() -> Result<(), KmsError> {
        let cipher = MessageCipher::new(&SecretKey::generate()?, 0);
        let number = "4111111111111111";
        let sealed = Encrypted::<String>::seal(&cipher, &number.to_owned(), b"row 7")?;
        let json = serde_json::to_string(&sealed)?;
        let as_u64: Encrypted<u64> = serde_json::from_str(&json)?;
        let Err(e) = as_u64.open(&cipher, b"row 7") else {
            panic!("a string opened as a u64");
        };
        for shown in [e.to_string(), format!("{e:#}"), format!("{e:?}")] {
            assert!(!shown.contains(number), "{shown}");
        }
        assert!(
            matches!(
                e,
                KmsError::SecretJson {
                    category: "data",
                    line: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        Ok(())
    }
}
