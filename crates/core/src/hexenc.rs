//! Lowercase hex, the user-facing form of references and key ids.

use crate::Error;

/// Encodes bytes as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Decodes hex (either case); rejects odd lengths and non-hex characters.
pub fn decode(text: &str) -> Result<Vec<u8>, Error> {
    hex::decode(text.trim()).map_err(|e| match e {
        hex::FromHexError::OddLength => Error::Hex("odd number of digits"),
        hex::FromHexError::InvalidHexCharacter { .. } => Error::Hex("not a hex digit"),
        hex::FromHexError::InvalidStringLength => Error::Hex("wrong length"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_lowercase() -> Result<(), Error> {
        let text = encode(&[0xAB, 0x01]);
        assert_eq!(text, "ab01");
        assert_eq!(decode("AB01")?, vec![0xab, 0x01]);
        Ok(())
    }

    #[test]
    fn rejects_bad_input() {
        assert!(decode("abc").is_err());
        assert!(decode("zz").is_err());
    }
}
