//! File names as catalog names, byte for byte.
//!
//! A catalog name is UTF-8, but a Unix file name is any bytes but `/` and
//! NUL. So that `seccs put DIR` can store every file and a restore gives
//! each its own name back, a name is made from a file name's bytes by
//! keeping each valid UTF-8 sequence and holding each byte that is not
//! part of one (always `0x80`–`0xFF`) as the character `U+EF00 + byte`,
//! one of `U+EF80`–`U+EFFF` in the Private Use Area (the mapping of
//! MirOS OPTU-8). [`bytes_of_name`] undoes it.
//!
//! The mapping is one-to-one on every file name that does not itself hold
//! one of those characters; such a name (valid UTF-8 holding a Private Use
//! character in that range) could be read back as other bytes, so
//! [`name_of_bytes`] refuses it. Names that were never file names (given
//! with `--name`) are stored as they are.

use std::borrow::Cow;

/// The characters that stand for bytes that are not UTF-8.
const HELD_BYTES: std::ops::RangeInclusive<char> = '\u{EF80}'..='\u{EFFF}';

/// The byte `c` stands for, when it is one of `U+EF80`–`U+EFFF`.
pub fn held_byte(c: char) -> Option<u8> {
    if HELD_BYTES.contains(&c) {
        u8::try_from(u32::from(c) - 0xEF00).ok()
    } else {
        None
    }
}

/// Whether `name` holds a character that a restore reads as a byte.
fn holds_held_bytes(name: &str) -> bool {
    name.chars().any(|c| HELD_BYTES.contains(&c))
}

/// The catalog name of a file name's `bytes`, or `None` when the bytes
/// are UTF-8 holding a character of `U+EF80`–`U+EFFF`, which would come
/// back as other bytes.
pub fn name_of_bytes(bytes: &[u8]) -> Option<String> {
    hold_bytes(bytes, false)
}

/// The name a user means by typing `bytes`: the bytes of a file's name
/// (`$'caf\xe9'` in a shell), or its catalog name as `--json` gives it,
/// holding the characters that stand for bytes. Unlike
/// [`name_of_bytes`], such characters are kept: they reach the name
/// that holds them.
pub fn name_of_typed(bytes: &[u8]) -> String {
    // With the characters allowed, every byte string has a name.
    hold_bytes(bytes, true).unwrap_or_default()
}

/// Keeps each valid UTF-8 sequence of `bytes` and holds each other byte as
/// its character; `None` when a kept sequence holds such a character and
/// `keep_held` is false.
fn hold_bytes(bytes: &[u8], keep_held: bool) -> Option<String> {
    let mut name = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        let (valid, after) = match std::str::from_utf8(rest) {
            Ok(valid) => (valid, None),
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // `valid_up_to` bytes are UTF-8 by the error's own account;
                // an incomplete sequence at the end is bytes that are not
                // UTF-8 too, each held on its own.
                let bad = e.error_len().unwrap_or(after.len());
                (std::str::from_utf8(valid).ok()?, Some(after.split_at(bad)))
            }
        };
        if !keep_held && holds_held_bytes(valid) {
            return None;
        }
        name.push_str(valid);
        let Some((bad, next)) = after else {
            return Some(name);
        };
        for &b in bad {
            name.push(char::from_u32(0xEF00 + u32::from(b))?);
        }
        rest = next;
    }
}

/// The file name bytes of a catalog name: its UTF-8, with each character of
/// `U+EF80`–`U+EFFF` turned back into the byte it holds.
pub fn bytes_of_name(name: &str) -> Cow<'_, [u8]> {
    if !holds_held_bytes(name) {
        return Cow::Borrowed(name.as_bytes());
    }
    let mut bytes = Vec::with_capacity(name.len());
    let mut buf = [0u8; 4];
    for c in name.chars() {
        match held_byte(c) {
            Some(b) => bytes.push(b),
            None => bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    Cow::Owned(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_names_are_kept_as_they_are() {
        for name in ["a.txt", "photos/2024/été.jpg", "日本語", ""] {
            assert_eq!(name_of_bytes(name.as_bytes()).as_deref(), Some(name));
            assert_eq!(bytes_of_name(name), name.as_bytes());
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_come_back_as_they_were() {
        let cases: [&[u8]; 6] = [
            b"latin1-caf\xe9",
            b"\xff",
            b"\xc3",         // a sequence cut short at the end
            b"a\xe2\x82b",   // cut short in the middle
            b"\x80\x80\x80", // continuation bytes alone
            b"mixed-\xc3\xa9-\xe9",
        ];
        for bytes in cases {
            let name = name_of_bytes(bytes).expect("representable");
            assert!(std::str::from_utf8(name.as_bytes()).is_ok());
            assert_eq!(bytes_of_name(&name), bytes, "{name:?}");
        }
        assert_eq!(name_of_bytes(b"\xe9").as_deref(), Some("\u{EFE9}"));
    }

    #[test]
    fn every_two_byte_name_round_trips() {
        for a in 1..=255u8 {
            for b in 1..=255u8 {
                let bytes = [a, b];
                if let Some(name) = name_of_bytes(&bytes) {
                    assert_eq!(bytes_of_name(&name), &bytes[..]);
                }
            }
        }
    }

    #[test]
    fn a_typed_name_keeps_the_characters_that_stand_for_bytes() {
        assert_eq!(name_of_typed(b"caf\xe9"), "caf\u{EFE9}");
        assert_eq!(name_of_typed("caf\u{EFE9}".as_bytes()), "caf\u{EFE9}");
        assert_eq!(name_of_typed(b"plain"), "plain");
    }

    #[test]
    fn a_name_that_holds_the_reserved_characters_is_refused() {
        assert_eq!(name_of_bytes("x\u{EF80}".as_bytes()), None);
        assert_eq!(name_of_bytes("\u{EFFF}\u{e9}".as_bytes()), None);
        assert_eq!(name_of_bytes(b"\xff\xee\xbe\x80"), None);
        // Neighbours of the range are ordinary characters.
        assert!(name_of_bytes("\u{EF7F}\u{F000}".as_bytes()).is_some());
    }
}
