//! Fuzzes the ephemeral file block decoder and the persisted footer parser
//! with untrusted bytes, and checks the round trip of both.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seccs_tempfile::format::{BLOCK_OVERHEAD, BlockCipher, Footer, NONCE_LEN};
use seccs_tempfile::{FileKey, KeySize};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let size = match sel % 3 {
        0 => KeySize::Aes128,
        1 => KeySize::Aes192,
        _ => KeySize::Aes256,
    };
    let key = FileKey::from_slice(&[0x42; 32][..size.key_len()]).expect("16, 24 or 32 bytes");
    let cipher = BlockCipher::new(&key, [7; 16]).expect("a valid key");
    let index = u64::from(sel >> 2);
    let version = u64::from(sel) + 1;

    // Untrusted slot: it must not open (nobody without the key can forge a
    // tag), must not panic, and must leave no plaintext behind.
    if rest.len() >= BLOCK_OVERHEAD {
        let mut out = vec![0xaa; rest.len() - BLOCK_OVERHEAD];
        assert!(cipher.open_block(index, version, rest, &mut out).is_err());
        assert!(out.iter().all(|b| *b == 0));
    }

    // Round trip: seal the input as a block, open it back; any other index
    // or version fails.
    let mut slot = vec![0u8; rest.len() + BLOCK_OVERHEAD];
    let nonce = [sel; NONCE_LEN];
    cipher.seal_block(index, version, &nonce, rest, &mut slot);
    let mut back = vec![0u8; rest.len()];
    cipher
        .open_block(index, version, &slot, &mut back)
        .expect("a block just sealed opens");
    assert_eq!(back, rest);
    assert!(
        cipher
            .open_block(index + 1, version, &slot, &mut back)
            .is_err()
    );
    assert!(
        cipher
            .open_block(index, version + 1, &slot, &mut back)
            .is_err()
    );

    // Untrusted footer: parse errors, never panics.
    if let Ok(footer) = Footer::open(rest, &key) {
        let again = footer.seal(&key, &nonce).expect("a parsed footer seals");
        assert_eq!(Footer::open(&again, &key).expect("round trip"), footer);
    }

    // Footer round trip from fuzzed state.
    let versions: Vec<u64> = rest
        .chunks(8)
        .map(|c| c.iter().map(|b| u64::from(*b)).sum())
        .collect();
    let footer = Footer {
        block_log2: 10 + sel % 11,
        file_id: [sel; 16],
        len: (versions.len() as u64) << (10 + sel % 11),
        versions,
    };
    let sealed = footer.seal(&key, &nonce).expect("seal a footer");
    assert_eq!(
        Footer::open(&sealed, &key).expect("a footer just sealed opens"),
        footer
    );
});
