//! Fuzzes the share network's decoders of untrusted bytes: frames, messages
//! and records. Whatever decodes must encode back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use seccs_net::message::Message;
use seccs_net::packet::Frame;
use seccs_net::record::{Manifest, Record};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        assert_eq!(frame.encode(), data);
    }
    if let Ok(message) = Message::decode(data) {
        assert_eq!(message.encode(), data);
    }
    if let Ok(manifest) = Manifest::decode(data) {
        assert_eq!(manifest.encode(), data);
    }
    if let Ok((record, _)) = Record::decode(data) {
        assert_eq!(record.encode(), data);
    }
});
