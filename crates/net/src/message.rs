//! Messages: the requests and replies of the share protocol.
//!
//! A message is reassembled from one or more [`crate::packet::Frame`]s and
//! then decoded here. Every request carries a random [`RequestId`]; a reply
//! carries the id of its request, so a client can run many requests at once
//! and a late reply to an old request is recognised and dropped.
//!
//! Seed flaw fixed here: *no request ids*. The seed matched replies by type
//! alone, so a late reply to a previous command was taken as an answer to the
//! current one.
//!
//! Layout: `"SCNM" | version u8 = 1 | kind u8 | request id [16] | body`.
//! Integers are big-endian; `str` is a u32 length and that many bytes of
//! UTF-8 (a tag at most [`MAX_TAG_LEN`] bytes); a record is last, so it is
//! sent from where it lies. The bodies, by kind:
//! ```text
//!  1 Store          tag str | version u64 | record length u32 | record
//!  2 Stored         (empty)
//!  3 Fetch          tag str | version u64
//!  4 Fetched        0 (not held) | 1, record length u32, record
//!  5 List           prefix str
//!  6 Listed         count u32 | count × ( tag str | v u32 | v × ( version u64 | stored bytes u64 ) )
//!  7 Info           (empty)
//!  8 InfoReply      name str | free bytes u64 | records u64 | stored bytes u64
//!  9 Delete         tag str | 0 (every version) | 1, version u64
//! 10 Deleted        removed u64
//! 11 Refused        reason str
//! 12 Rollback       tag str | version u64 | file id [16]
//! 13 Versions       tag str
//! 14 VersionsHeld   highest u64 | count u32 | count × ( version u64 | file id [16] | n u8 | t u8 )
//! ```
//!
//! Compatibility: kinds are only ever added, never changed, so the format
//! version stays 1. A peer that predates a kind rejects it as an unknown kind
//! and drops the message; each added kind is one whose loss is safe.
//! [`Body::Rollback`] (kind 12) was added so a failed save removes only its
//! own records: a server that predates it drops it and keeps the record,
//! which a later save steps over, rather than deleting another save's.
//!
//! A server remembers the saves it was told to roll back and refuses a later
//! store of one ([`ROLLED_BACK_REASON`]): a client sends the rollback of a
//! failed save to every server it asked, also to those that did not answer
//! in time, which may still get the store late.
//!
//! A refusal whose reason is [`conflict_reason`] (the text servers have sent
//! since format 1) means "another record holds this version", or "this
//! server held this version once (it was removed since)": a client
//! recognises a lost race by it, and tries a higher version.
//!
//! [`Body::Versions`] (kind 13, answered by [`Body::VersionsHeld`], kind 14)
//! asks a server the highest version of a tag it has ever held (it
//! remembers it after a removal) and, for each version it holds, the save
//! it belongs to (file id, n, t, read from the record's header). A server
//! that predates it drops it and is not heard: a client waits its timeout
//! for it, so upgrade servers before clients.
//!
//! Versions go up to [`MAX_VERSION`]: a server refuses to store above it.

use std::ops::Range;

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;

/// Magic of every message.
pub const MESSAGE_MAGIC: [u8; 4] = *b"SCNM";
/// The message format version this build writes and reads.
pub const MESSAGE_VERSION: u8 = 1;
/// Longest tag, in bytes of UTF-8.
pub const MAX_TAG_LEN: usize = 8 * 1024;
/// Longest record a message may carry (1 GiB, the frame limit).
pub const MAX_RECORD_LEN: usize = 1 << 30;
const MAX_TEXT: usize = 4096;
/// Most tags a [`Body::Listed`] carries (about a million). An entry takes
/// 8 bytes on the wire at least and a whole [`ListEntry`] (48 bytes) in
/// memory: without a bound, a forged 1 GiB listing would decode into 6 GiB.
pub const MAX_LISTED_ENTRIES: usize = 1 << 20;
/// Entries a decoder reserves room for before it has read them.
const LISTED_RESERVE: usize = 4096;
/// The largest version a server stores (about 4.3 billion saves of one
/// tag): a record above it is refused, and one found above it (left by an
/// earlier build) never counts when a save chooses its version.
pub const MAX_VERSION: u64 = u32::MAX as u64;

/// The reason of a [`Body::Refused`] answering a store whose version holds
/// another record: part of the protocol, matched by clients.
pub fn conflict_reason(version: u64) -> String {
    format!("version {version} exists")
}

/// The reason of a [`Body::Refused`] answering a store whose save was rolled
/// back before the server stored it (the request came late).
pub const ROLLED_BACK_REASON: &str = "the save was rolled back";

/// The reason of a [`Body::Refused`] answering a store of version 0, which
/// no save takes (versions start at 1).
pub const NOT_A_VERSION_REASON: &str = "version 0 is not a version (versions start at 1)";

/// A random identifier of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub [u8; 16]);

impl RequestId {
    /// A fresh id from the OS generator.
    pub fn random() -> Result<Self, seccs_core::Error> {
        let mut id = [0u8; 16];
        seccs_core::random_bytes(&mut id)?;
        Ok(Self(id))
    }
}

/// One request or reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The request this message is, or answers.
    pub request_id: RequestId,
    /// What it says.
    pub body: Body,
}

/// One version of a tag as a server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    /// The version number (1, 2, …).
    pub version: u64,
    /// Bytes of the record this server holds.
    pub stored_bytes: u64,
}

/// One tag as a server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The tag.
    pub tag: String,
    /// Its versions held by this server, ascending.
    pub versions: Vec<VersionEntry>,
}

/// One version of a tag as a server holds it, read from its record's header
/// (not authenticated: it tells a client what to try, never what to trust).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveEntry {
    /// The version.
    pub version: u64,
    /// The file id of the save the record belongs to.
    pub file_id: [u8; 16],
    /// Servers the save went to.
    pub n: u8,
    /// Records the save needs to rebuild.
    pub t: u8,
}

impl SaveEntry {
    /// A record the server holds as `version` but cannot read or parse:
    /// `n` and `t` are 0, which no save has.
    pub fn unreadable(version: u64) -> Self {
        Self {
            version,
            file_id: [0; 16],
            n: 0,
            t: 0,
        }
    }

    /// Whether this names a save a record could belong to: one that needs
    /// at least one record and at most the servers it went to. Anything
    /// else is a record held but unreadable, or a server's lie.
    pub fn is_readable(&self) -> bool {
        self.t >= 1 && self.t <= self.n
    }
}

/// What a server says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's configured name.
    pub name: String,
    /// Free bytes on the filesystem of its root.
    pub free_bytes: u64,
    /// Records it holds.
    pub records: u64,
    /// Bytes of records it holds.
    pub stored_bytes: u64,
}

/// The body of a [`Message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Store `record` as `version` of `tag`.
    Store {
        /// The tag.
        tag: String,
        /// The version.
        version: u64,
        /// The encoded [`crate::record::Record`].
        record: Vec<u8>,
    },
    /// The record was stored.
    Stored,
    /// Send the record of `version` of `tag`.
    Fetch {
        /// The tag.
        tag: String,
        /// The version.
        version: u64,
    },
    /// The requested record, if held.
    Fetched {
        /// The record, or `None` when not held.
        record: Option<Vec<u8>>,
    },
    /// List tags starting with `prefix`.
    List {
        /// The prefix; empty lists all.
        prefix: String,
    },
    /// The tags held.
    Listed {
        /// One entry per tag, at most [`MAX_LISTED_ENTRIES`] (a server
        /// holding more under the prefix refuses the listing).
        entries: Vec<ListEntry>,
    },
    /// Describe yourself.
    Info,
    /// The server's description.
    InfoReply(ServerInfo),
    /// Delete `version` of `tag`, or all versions.
    Delete {
        /// The tag.
        tag: String,
        /// One version, or `None` for all.
        version: Option<u64>,
    },
    /// Delete `version` of `tag` only if its record belongs to the save
    /// `file_id`: the rollback of a failed save, which must never remove
    /// another save's record. The server remembers the save and refuses a
    /// store of it that comes later. Answered with [`Body::Deleted`].
    Rollback {
        /// The tag.
        tag: String,
        /// The version.
        version: u64,
        /// The file id of the save being rolled back.
        file_id: [u8; 16],
    },
    /// Say what you hold of `tag`: the highest version ever held, and the
    /// save of each version held. Answered with [`Body::VersionsHeld`].
    Versions {
        /// The tag.
        tag: String,
    },
    /// The answer to [`Body::Versions`].
    VersionsHeld {
        /// The highest version of the tag this server has held (also one
        /// removed since), 0 when none; at most [`MAX_VERSION`].
        highest: u64,
        /// The versions held, ascending, each with its save.
        saves: Vec<SaveEntry>,
    },
    /// Records deleted.
    Deleted {
        /// How many.
        removed: u64,
    },
    /// The request was refused.
    Refused {
        /// Why, for a person.
        reason: String,
    },
}

mod kind {
    pub const STORE: u8 = 1;
    pub const STORED: u8 = 2;
    pub const FETCH: u8 = 3;
    pub const FETCHED: u8 = 4;
    pub const LIST: u8 = 5;
    pub const LISTED: u8 = 6;
    pub const INFO: u8 = 7;
    pub const INFO_REPLY: u8 = 8;
    pub const DELETE: u8 = 9;
    pub const DELETED: u8 = 10;
    pub const REFUSED: u8 = 11;
    pub const ROLLBACK: u8 = 12;
    pub const VERSIONS: u8 = 13;
    pub const VERSIONS_HELD: u8 = 14;
}

impl Body {
    /// Whether this body is a request (which servers answer) rather than a reply.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Body::Store { .. }
                | Body::Fetch { .. }
                | Body::List { .. }
                | Body::Info
                | Body::Delete { .. }
                | Body::Rollback { .. }
                | Body::Versions { .. }
        )
    }
}

fn read_tag<'a>(r: &mut Reader<'a>) -> Result<&'a str, DecodeError> {
    r.str(MAX_TAG_LEN, "tag")
}

impl Message {
    /// Writes the message.
    pub fn encode(&self) -> Vec<u8> {
        let (mut bytes, record) = self.encode_parts();
        bytes.extend_from_slice(record);
        bytes
    }

    /// The encoded start of a store request whose record, `record_len`
    /// bytes, follows it: the bytes of
    /// [`encode`](Self::encode) up to the record, so that a record made of
    /// parts is sent from where they lie.
    pub fn encode_store_head(
        request_id: RequestId,
        tag: &str,
        version: u64,
        record_len: usize,
    ) -> Vec<u8> {
        let mut w = Writer::with_capacity(tag.len() + 64);
        w.raw(&MESSAGE_MAGIC).u8(MESSAGE_VERSION);
        store_head(&mut w, &request_id.0, tag, version, record_len);
        w.finish()
    }

    /// The encoded head of a `Fetched` reply to `request_id` that carries a
    /// record of `record_len` bytes, to be sent before the record's bytes
    /// (so that a server frames a record from its file, never whole).
    pub fn encode_fetched_head(request_id: RequestId, record_len: usize) -> Vec<u8> {
        let mut w = Writer::with_capacity(32);
        w.raw(&MESSAGE_MAGIC).u8(MESSAGE_VERSION);
        fetched_head(&mut w, &request_id.0, record_len);
        w.finish()
    }

    /// The encoded message as two parts to be sent one after the other:
    /// everything up to a record, and the record itself (empty when the
    /// message has none). The record is the last field of every message that
    /// carries one, so a sender frames megabytes without copying them into
    /// one buffer first.
    pub fn encode_parts(&self) -> (Vec<u8>, &[u8]) {
        let mut tail: &[u8] = &[];
        let mut w = Writer::with_capacity(match &self.body {
            Body::Store { tag, .. } => tag.len() + 64,
            _ => 320,
        });
        w.raw(&MESSAGE_MAGIC).u8(MESSAGE_VERSION);
        let id = &self.request_id.0;
        match &self.body {
            Body::Store {
                tag,
                version,
                record,
            } => {
                store_head(&mut w, id, tag, *version, record.len());
                tail = record;
            }
            Body::Stored => {
                w.u8(kind::STORED).raw(id);
            }
            Body::Fetch { tag, version } => {
                w.u8(kind::FETCH).raw(id).str(tag).u64(*version);
            }
            Body::Fetched { record } => {
                match record {
                    Some(rec) => {
                        tail = rec;
                        fetched_head(&mut w, id, rec.len());
                    }
                    None => {
                        w.u8(kind::FETCHED).raw(id).u8(0);
                    }
                };
            }
            Body::List { prefix } => {
                w.u8(kind::LIST).raw(id).str(prefix);
            }
            Body::Listed { entries } => {
                w.u8(kind::LISTED).raw(id);
                w.u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
                for e in entries {
                    w.str(&e.tag);
                    w.u32(u32::try_from(e.versions.len()).unwrap_or(u32::MAX));
                    for v in &e.versions {
                        w.u64(v.version).u64(v.stored_bytes);
                    }
                }
            }
            Body::Info => {
                w.u8(kind::INFO).raw(id);
            }
            Body::InfoReply(info) => {
                w.u8(kind::INFO_REPLY)
                    .raw(id)
                    .str(&info.name)
                    .u64(info.free_bytes)
                    .u64(info.records)
                    .u64(info.stored_bytes);
            }
            Body::Delete { tag, version } => {
                w.u8(kind::DELETE).raw(id).str(tag);
                match version {
                    Some(v) => w.u8(1).u64(*v),
                    None => w.u8(0),
                };
            }
            Body::Rollback {
                tag,
                version,
                file_id,
            } => {
                w.u8(kind::ROLLBACK)
                    .raw(id)
                    .str(tag)
                    .u64(*version)
                    .raw(file_id);
            }
            Body::Versions { tag } => {
                w.u8(kind::VERSIONS).raw(id).str(tag);
            }
            Body::VersionsHeld { highest, saves } => {
                w.u8(kind::VERSIONS_HELD).raw(id).u64(*highest);
                w.u32(u32::try_from(saves.len()).unwrap_or(u32::MAX));
                for s in saves {
                    w.u64(s.version).raw(&s.file_id).u8(s.n).u8(s.t);
                }
            }
            Body::Deleted { removed } => {
                w.u8(kind::DELETED).raw(id).u64(*removed);
            }
            Body::Refused { reason } => {
                w.u8(kind::REFUSED).raw(id).str(reason);
            }
        }
        (w.finish(), tail)
    }

    /// Reads a message, checking every bound.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let (mut message, record) = Self::decode_parts(bytes)?;
        if let Some(range) = record {
            message.body.set_record(bytes[range].to_vec());
        }
        Ok(message)
    }

    /// [`Message::decode`], taking the bytes so that a record (megabytes, the
    /// one large field) is moved within them rather than copied out.
    pub fn decode_owned(mut bytes: Vec<u8>) -> Result<Message, DecodeError> {
        let (mut message, record) = Self::decode_parts(&bytes)?;
        if let Some(range) = record {
            bytes.truncate(range.end);
            bytes.drain(..range.start);
            message.body.set_record(bytes);
        }
        Ok(message)
    }

    /// The message with any record left empty, and where the record lies.
    fn decode_parts(bytes: &[u8]) -> Result<(Message, Option<Range<usize>>), DecodeError> {
        let mut r = Reader::new(bytes);
        let mut record_at = None;
        let mut record = |r: &mut Reader<'_>| -> Result<Vec<u8>, DecodeError> {
            let len = r.bytes(MAX_RECORD_LEN, "record")?.len();
            let end = bytes.len() - r.remaining();
            record_at = Some(end - len..end);
            Ok(Vec::new())
        };
        r.header(&MESSAGE_MAGIC, MESSAGE_VERSION)?;
        let k = r.u8()?;
        let request_id = RequestId(r.array()?);
        let body = match k {
            kind::STORE => {
                let tag = read_tag(&mut r)?.to_owned();
                let version = r.u64()?;
                let record = record(&mut r)?;
                Body::Store {
                    tag,
                    version,
                    record,
                }
            }
            kind::STORED => Body::Stored,
            kind::FETCH => Body::Fetch {
                tag: read_tag(&mut r)?.to_owned(),
                version: r.u64()?,
            },
            kind::FETCHED => Body::Fetched {
                record: match r.u8()? {
                    0 => None,
                    1 => Some(record(&mut r)?),
                    _ => return Err(DecodeError::Invalid("option flag")),
                },
            },
            kind::LIST => Body::List {
                prefix: read_tag(&mut r)?.to_owned(),
            },
            kind::LISTED => {
                let n = r.count(8, "tag list")?;
                if n > MAX_LISTED_ENTRIES {
                    return Err(DecodeError::TooLong("tag list"));
                }
                let mut entries = Vec::with_capacity(n.min(LISTED_RESERVE));
                for _ in 0..n {
                    let tag = read_tag(&mut r)?.to_owned();
                    let m = r.count(16, "version list")?;
                    let mut versions = Vec::new();
                    for _ in 0..m {
                        versions.push(VersionEntry {
                            version: r.u64()?,
                            stored_bytes: r.u64()?,
                        });
                    }
                    entries.push(ListEntry { tag, versions });
                }
                Body::Listed { entries }
            }
            kind::INFO => Body::Info,
            kind::INFO_REPLY => Body::InfoReply(ServerInfo {
                name: r.str(MAX_TEXT, "name")?.to_owned(),
                free_bytes: r.u64()?,
                records: r.u64()?,
                stored_bytes: r.u64()?,
            }),
            kind::DELETE => Body::Delete {
                tag: read_tag(&mut r)?.to_owned(),
                version: match r.u8()? {
                    0 => None,
                    1 => Some(r.u64()?),
                    _ => return Err(DecodeError::Invalid("option flag")),
                },
            },
            kind::ROLLBACK => Body::Rollback {
                tag: read_tag(&mut r)?.to_owned(),
                version: r.u64()?,
                file_id: r.array()?,
            },
            kind::VERSIONS => Body::Versions {
                tag: read_tag(&mut r)?.to_owned(),
            },
            kind::VERSIONS_HELD => {
                let highest = r.u64()?;
                let n = r.count(26, "save list")?;
                let mut saves = Vec::with_capacity(n);
                for _ in 0..n {
                    saves.push(SaveEntry {
                        version: r.u64()?,
                        file_id: r.array()?,
                        n: r.u8()?,
                        t: r.u8()?,
                    });
                }
                Body::VersionsHeld { highest, saves }
            }
            kind::DELETED => Body::Deleted { removed: r.u64()? },
            kind::REFUSED => Body::Refused {
                reason: r.str(MAX_TEXT, "reason")?.to_owned(),
            },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        r.finish()?;
        Ok((Message { request_id, body }, record_at))
    }
}

impl Body {
    fn set_record(&mut self, bytes: Vec<u8>) {
        match self {
            Body::Store { record, .. } => *record = bytes,
            Body::Fetched { record } => *record = Some(bytes),
            _ => {}
        }
    }
}

/// A store request's fields after the magic and version, up to its record.
fn fetched_head(w: &mut Writer, id: &[u8; 16], record_len: usize) {
    w.u8(kind::FETCHED)
        .raw(id)
        .u8(1)
        .u32(u32::try_from(record_len).unwrap_or(u32::MAX));
}

fn store_head(w: &mut Writer, id: &[u8; 16], tag: &str, version: u64, record_len: usize) {
    w.u8(kind::STORE)
        .raw(id)
        .str(tag)
        .u64(version)
        .u32(u32::try_from(record_len).unwrap_or(u32::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Body> {
        vec![
            Body::Store {
                tag: "a/b+c é".into(),
                version: 3,
                record: vec![1, 2, 3],
            },
            Body::Stored,
            Body::Fetch {
                tag: "t".into(),
                version: 1,
            },
            Body::Fetched { record: None },
            Body::Fetched {
                record: Some(vec![5; 10]),
            },
            Body::List { prefix: "".into() },
            Body::Listed {
                entries: vec![ListEntry {
                    tag: "x".into(),
                    versions: vec![VersionEntry {
                        version: 1,
                        stored_bytes: 9,
                    }],
                }],
            },
            Body::Info,
            Body::InfoReply(ServerInfo {
                name: "s".into(),
                free_bytes: 1,
                records: 2,
                stored_bytes: 3,
            }),
            Body::Delete {
                tag: "t".into(),
                version: Some(2),
            },
            Body::Delete {
                tag: "t".into(),
                version: None,
            },
            Body::Rollback {
                tag: "t".into(),
                version: 7,
                file_id: [9; 16],
            },
            Body::Versions { tag: "t".into() },
            Body::VersionsHeld {
                highest: 9,
                saves: vec![SaveEntry {
                    version: 3,
                    file_id: [4; 16],
                    n: 5,
                    t: 3,
                }],
            },
            Body::Deleted { removed: 4 },
            Body::Refused {
                reason: "no".into(),
            },
        ]
    }

    #[test]
    fn every_message_kind_round_trips_and_rejects_truncation() -> Result<(), DecodeError> {
        for body in samples() {
            let m = Message {
                request_id: RequestId([3; 16]),
                body,
            };
            let bytes = m.encode();
            assert_eq!(Message::decode(&bytes)?, m);
            assert_eq!(Message::decode_owned(bytes.clone())?, m);
            for cut in 0..bytes.len() {
                assert!(Message::decode(&bytes[..cut]).is_err());
                assert!(Message::decode_owned(bytes[..cut].to_vec()).is_err());
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(Message::decode(&long), Err(DecodeError::Trailing));
        }
        Ok(())
    }

    #[test]
    fn a_store_sent_as_its_head_and_the_records_parts_is_the_store_encoded_whole()
    -> Result<(), DecodeError> {
        // A save sends each record as its head and a fragment that lies in
        // another buffer: the bytes must be those of the whole message.
        let record_head = b"record head".to_vec();
        let fragment = vec![7u8; 1000];
        let whole = Message {
            request_id: RequestId([9; 16]),
            body: Body::Store {
                tag: "docs/a".into(),
                version: 42,
                record: [record_head.as_slice(), &fragment].concat(),
            },
        };
        let mut sent = Message::encode_store_head(
            RequestId([9; 16]),
            "docs/a",
            42,
            record_head.len() + fragment.len(),
        );
        sent.extend_from_slice(&record_head);
        sent.extend_from_slice(&fragment);
        assert_eq!(sent, whole.encode());
        assert_eq!(Message::decode(&sent)?, whole);
        Ok(())
    }

    #[test]
    fn a_huge_claimed_list_count_is_rejected_without_allocating() {
        let mut bytes = Message {
            request_id: RequestId([0; 16]),
            body: Body::Listed { entries: vec![] },
        }
        .encode();
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError::TooLong("tag list"))
        );
    }

    #[test]
    fn a_listing_of_more_entries_than_the_bound_is_rejected() {
        // Each entry an empty tag with no versions: 8 bytes on the wire, a
        // whole `ListEntry` in memory.
        let n = MAX_LISTED_ENTRIES + 1;
        let mut bytes = Message {
            request_id: RequestId([0; 16]),
            body: Body::Listed { entries: vec![] },
        }
        .encode();
        let len = bytes.len();
        bytes[len - 4..].copy_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
        bytes.resize(len + n * 8, 0);
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError::TooLong("tag list"))
        );
    }

    #[test]
    fn request_ids_are_random() -> Result<(), seccs_core::Error> {
        assert_ne!(RequestId::random()?, RequestId::random()?);
        Ok(())
    }
}
