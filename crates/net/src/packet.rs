//! Packets: the bounded frames that travel through the broker.
//!
//! A [`Frame`] is what one publish carries. A message (see [`crate::message`])
//! larger than [`MAX_FRAME_PAYLOAD`] is cut into numbered data frames that the
//! receiver acknowledges one by one, so a sender never has more than a small
//! window in flight per peer.
//!
//! Seed flaws fixed here:
//! - *Packets trusted as they come*: the seed parsed protobuf and used every
//!   field blindly. Every frame here starts with a magic and a version, every
//!   length is bounded, the sender channel is checked, the frame index must be
//!   below the frame count, and trailing bytes are an error. A frame that fails
//!   any check is logged and dropped by the endpoint that received it; it is never
//!   fatal.
//! - *A large file overflows the broker's per-client output buffer*: the seed
//!   published the whole ciphertext in one Redis message, which Redis cuts off
//!   at its `client-output-buffer-limit pubsub` (32 MiB hard, 8 MiB soft). Here
//!   no publish exceeds [`MAX_FRAME_PAYLOAD`] plus a small header, and at most
//!   [`WINDOW`] frames per message wait unacknowledged.
//!
//! Layout (big-endian):
//! ```text
//! "SCNF" | version u8 = 1 | kind u8 | message id [16] | sender (u32 len, bytes)
//! kind 1 (data): index u32 | count u32 | payload (u32 len, bytes)
//! kind 2 (ack):  index u32
//! kind 3 (dropped): nothing more
//! ```
//!
//! A *dropped* frame tells a sender that the receiver let go of a message it
//! was reassembling (its slot went to another message: a receiver
//! keeps 64 messages in progress at once), so frames already acknowledged must be sent again.
//! Without it the sender learned only from its request's timeout. A build
//! that predates it drops the frame as of an unknown kind and keeps that
//! older behaviour.

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;

/// Magic of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"SCNF";
/// The frame format version this build writes and reads.
pub const FRAME_VERSION: u8 = 1;
/// Largest payload of one data frame: 256 KiB, far below Redis's 8 MiB soft
/// and NATS's 1 MiB default limits.
pub const MAX_FRAME_PAYLOAD: usize = 256 * 1024;
/// Largest number of frames in one message (so a message is at most 1 GiB).
pub const MAX_FRAMES: u32 = 4096;
/// Largest channel name.
pub const MAX_CHANNEL_LEN: usize = 200;
/// Frames of one message a sender keeps in flight before waiting for acks.
pub const WINDOW: usize = 16;

const KIND_DATA: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_DROPPED: u8 = 3;

/// A random identifier of one framed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(pub [u8; 16]);

/// One publish's worth of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A piece of a message.
    Data(DataFrame),
    /// The receiver got data frame `index` of `message_id`.
    Ack(AckFrame),
    /// The receiver dropped what it held of `message_id`.
    Dropped(DroppedFrame),
}

/// A piece of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFrame {
    /// The message this frame belongs to.
    pub message_id: MessageId,
    /// The channel of the sender, where acks and replies go.
    pub sender: String,
    /// Position of this frame, below `count`.
    pub index: u32,
    /// Number of frames of the message, 1 to [`MAX_FRAMES`].
    pub count: u32,
    /// At most [`MAX_FRAME_PAYLOAD`] bytes of the message.
    pub payload: Vec<u8>,
}

/// Acknowledges one data frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckFrame {
    /// The message acknowledged.
    pub message_id: MessageId,
    /// The channel of the acknowledging host.
    pub sender: String,
    /// The frame acknowledged.
    pub index: u32,
}

/// Tells a sender that the receiver dropped what it held of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedFrame {
    /// The message dropped.
    pub message_id: MessageId,
    /// The channel of the host that dropped it.
    pub sender: String,
}

/// Whether `name` is a channel every broker can carry: 1 to
/// [`MAX_CHANNEL_LEN`] characters from `A-Z a-z 0-9 : _ -`.
pub fn valid_channel(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// A frame decoded in place: a data frame's payload still points into the
/// bytes received, so the receiver copies it once, straight to where the
/// message is reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRef<'a> {
    /// A piece of a message.
    Data(DataFrameRef<'a>),
    /// The receiver got data frame `index` of `message_id`.
    Ack(AckFrameRef<'a>),
    /// The receiver dropped what it held of `message_id`.
    Dropped(DroppedFrameRef<'a>),
}

/// A piece of a message, borrowed from the frame's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrameRef<'a> {
    /// The message this frame belongs to.
    pub message_id: MessageId,
    /// The channel of the sender, where acks and replies go (already valid).
    pub sender: &'a str,
    /// Position of this frame, below `count`.
    pub index: u32,
    /// Number of frames of the message, 1 to [`MAX_FRAMES`].
    pub count: u32,
    /// At most [`MAX_FRAME_PAYLOAD`] bytes of the message.
    pub payload: &'a [u8],
}

/// An acknowledgement, borrowed from the frame's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckFrameRef<'a> {
    /// The message acknowledged.
    pub message_id: MessageId,
    /// The channel of the acknowledging host (already valid).
    pub sender: &'a str,
    /// The frame acknowledged.
    pub index: u32,
}

/// A dropped message's notice, borrowed from the frame's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedFrameRef<'a> {
    /// The message dropped.
    pub message_id: MessageId,
    /// The channel of the host that dropped it (already valid).
    pub sender: &'a str,
}

/// Writes a data frame whose payload is `payload`, copying it once.
pub fn encode_data(
    message_id: MessageId,
    sender: &str,
    index: u32,
    count: u32,
    payload: &[u8],
) -> Vec<u8> {
    encode_data_parts(message_id, sender, index, count, [payload, &[]])
}

/// Writes a data frame whose payload is the two parts one after the other.
pub fn encode_data_parts(
    message_id: MessageId,
    sender: &str,
    index: u32,
    count: u32,
    payload: [&[u8]; 2],
) -> Vec<u8> {
    let len = payload[0].len() + payload[1].len();
    let mut w = frame_head(KIND_DATA, message_id, sender, len + 64);
    w.u32(index)
        .u32(count)
        .u32(u32::try_from(len).unwrap_or(u32::MAX))
        .raw(payload[0])
        .raw(payload[1]);
    w.finish()
}

/// The fields every frame starts with, in a writer with room for `more`.
fn frame_head(kind: u8, message_id: MessageId, sender: &str, more: usize) -> Writer {
    let mut w = Writer::with_capacity(more + 32 + sender.len());
    w.raw(&FRAME_MAGIC)
        .u8(FRAME_VERSION)
        .u8(kind)
        .raw(&message_id.0)
        .str(sender);
    w
}

impl Frame {
    /// Writes the frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Data(d) => encode_data(d.message_id, &d.sender, d.index, d.count, &d.payload),
            Frame::Ack(a) => {
                let mut w = frame_head(KIND_ACK, a.message_id, &a.sender, 4);
                w.u32(a.index);
                w.finish()
            }
            Frame::Dropped(d) => frame_head(KIND_DROPPED, d.message_id, &d.sender, 0).finish(),
        }
    }

    /// Reads a frame, checking every bound.
    pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        Ok(match FrameRef::decode(bytes)? {
            FrameRef::Data(d) => Frame::Data(DataFrame {
                message_id: d.message_id,
                sender: d.sender.to_owned(),
                index: d.index,
                count: d.count,
                payload: d.payload.to_vec(),
            }),
            FrameRef::Ack(a) => Frame::Ack(AckFrame {
                message_id: a.message_id,
                sender: a.sender.to_owned(),
                index: a.index,
            }),
            FrameRef::Dropped(d) => Frame::Dropped(DroppedFrame {
                message_id: d.message_id,
                sender: d.sender.to_owned(),
            }),
        })
    }
}

impl<'a> FrameRef<'a> {
    /// Reads a frame in place, checking every bound.
    pub fn decode(bytes: &'a [u8]) -> Result<FrameRef<'a>, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(&FRAME_MAGIC, FRAME_VERSION)?;
        let kind = r.u8()?;
        let message_id = MessageId(r.array()?);
        let sender = r.str(MAX_CHANNEL_LEN, "sender")?;
        if !valid_channel(sender) {
            return Err(DecodeError::Invalid("sender"));
        }
        let frame = match kind {
            KIND_DATA => {
                let index = r.u32()?;
                let count = r.u32()?;
                if count == 0 || count > MAX_FRAMES {
                    return Err(DecodeError::Invalid("frame count"));
                }
                if index >= count {
                    return Err(DecodeError::Invalid("frame index"));
                }
                let payload = r.bytes(MAX_FRAME_PAYLOAD, "frame payload")?;
                FrameRef::Data(DataFrameRef {
                    message_id,
                    sender,
                    index,
                    count,
                    payload,
                })
            }
            KIND_ACK => {
                let index = r.u32()?;
                if index >= MAX_FRAMES {
                    return Err(DecodeError::Invalid("frame index"));
                }
                FrameRef::Ack(AckFrameRef {
                    message_id,
                    sender,
                    index,
                })
            }
            KIND_DROPPED => FrameRef::Dropped(DroppedFrameRef { message_id, sender }),
            other => return Err(DecodeError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(payload_len: usize) -> Frame {
        Frame::Data(DataFrame {
            message_id: MessageId([7; 16]),
            sender: "seccs:client:abc".into(),
            index: 2,
            count: 3,
            payload: vec![9; payload_len],
        })
    }

    #[test]
    fn frames_round_trip() -> Result<(), DecodeError> {
        for f in [
            data(0),
            data(MAX_FRAME_PAYLOAD),
            Frame::Ack(AckFrame {
                message_id: MessageId([1; 16]),
                sender: "seccs:server:x".into(),
                index: 4,
            }),
            Frame::Dropped(DroppedFrame {
                message_id: MessageId([2; 16]),
                sender: "seccs:server:x".into(),
            }),
        ] {
            assert_eq!(Frame::decode(&f.encode())?, f);
        }
        Ok(())
    }

    #[test]
    fn every_truncation_of_a_frame_is_rejected() {
        let bytes = data(100).encode();
        for cut in 0..bytes.len() {
            assert!(Frame::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn trailing_bytes_oversized_payloads_and_bad_indexes_are_rejected() {
        let mut bytes = data(10).encode();
        bytes.push(0);
        assert_eq!(Frame::decode(&bytes), Err(DecodeError::Trailing));
        let big = data(MAX_FRAME_PAYLOAD + 1).encode();
        assert_eq!(
            Frame::decode(&big),
            Err(DecodeError::TooLong("frame payload"))
        );
        let bad_index = Frame::Data(DataFrame {
            message_id: MessageId([0; 16]),
            sender: "a".into(),
            index: 3,
            count: 3,
            payload: vec![],
        });
        assert_eq!(
            Frame::decode(&bad_index.encode()),
            Err(DecodeError::Invalid("frame index"))
        );
    }

    #[test]
    fn unknown_versions_and_bad_senders_are_rejected() {
        let mut bytes = data(1).encode();
        bytes[4] = 2;
        assert_eq!(Frame::decode(&bytes), Err(DecodeError::UnknownVersion(2)));
        let bad_sender = Frame::Data(DataFrame {
            message_id: MessageId([0; 16]),
            sender: "a b*".into(),
            index: 0,
            count: 1,
            payload: vec![],
        });
        assert_eq!(
            Frame::decode(&bad_sender.encode()),
            Err(DecodeError::Invalid("sender"))
        );
    }
}
