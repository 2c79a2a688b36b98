//! The named catalog: names → versions of contents, kept encrypted in the
//! same backend as the nodes, and updated in the same batch as the put or
//! delete it records.
//!
//! A name's record lives under the key `'N' ‖ HMAC-SHA-256(index key, name)`
//! (33 bytes, a length no node digest has), so the backend does not learn
//! the names. It does learn how many names there are, and from a record's
//! length (records are not padded) each name's length in bytes and roughly
//! how many versions and extended attributes it has, as a restic or borg
//! repository shows its metadata's sizes. The record is sealed with AES-SIV
//! under the catalog key, with its backend key as associated data, so a
//! record cannot be moved to another name.
//!
//! A name with many versions keeps only its newest inline, in the record
//! under its key (its *head*), and its older ones in *pages* of
//! [`PAGE_VERSIONS`] versions each, entries of their own under keys
//! `'N' ‖ HMAC-SHA-256(index key, "\0page\0" ‖ name ‖ u32 id)` (catalog
//! keys too; no name holds a NUL, so none has a page's key). When a head
//! would hold more than twice [`PAGE_VERSIONS`] versions, its oldest
//! [`PAGE_VERSIONS`] move into a new page, which is written again only
//! when one of its versions is removed (and deleted when all are): a put
//! writes the head and at most one page, however many versions the name
//! has, where a record holding every version made the bytes a put writes
//! grow with them. A page is sealed like a head, its key as associated
//! data, and names its name and id inside, so it can be neither moved nor
//! taken for a head; a head lists each page's id and count of versions, so
//! a page missing or replaced by an older one of the same key is damage
//! to the record. The backend learns from a page's existence that some
//! name has more than twice [`PAGE_VERSIONS`] versions (not which name:
//! keys are unlinkable without the index key), and the count of catalog
//! entries counts pages as well as names.
//!
//! Each version of a name holds one put of its content's root: removing a
//! version undoes exactly that put, and the reference counts stay exact.
//!
//! A version may carry the [`FileStamp`] of the file it was read from, so
//! that `seccs put DIR` can skip files that have not changed since (as
//! restic, borg and git do), without a cache outside the store.
//!
//! A name can be *gone*: `seccs put DIR` did not find the file under DIR
//! any more. A gone name keeps its versions (readable as `NAME@N`, removed
//! only by `rm`), but is left out of listings and tree restores, so that a
//! restore of DIR gives the tree as it was last put. Putting the name
//! again brings it back, and the time it was gone is kept as an
//! [`Absence`], so that [`Record::at`] can tell what the name held at any
//! earlier time.
//!
//! A stamp taken within a tick of the file's last change is kept too, but
//! only for its times ([`Stamp::Recent`]): the file may have changed again
//! since without its stamp showing it, so a later put reads it again.
//!
//! A version may also carry the permission bits of its file, so that a
//! restore gives the file back as it was (an executable stays executable),
//! its numeric owner and group, which a restore run as root gives back, and
//! its extended attributes (file capabilities, ACLs, SELinux labels, user
//! attributes); its modification time, restored too, is the stamp's.
//!
//! A version read from a regular file also carries its [`HardLinks`]: the
//! device it was on and its link count, which a restore needs to tell the
//! names that were one file (hard links) from different files on different
//! file systems that happen to share an inode number, change time and
//! content (two snapshots of one file system, bind mounts). They are kept
//! outside the stamp, so that a put does not take a file as changed for
//! them: a device number may change with nothing done to the file (a
//! reboot or a remount may number the disks anew), and a link count
//! changes only together with the change time, which is in the stamp
//! (`link` and `unlink` change the inode's change time). A file read
//! again with its stamp unchanged gets its version's device and link count
//! replaced, not another version. Versions written before format 8 have
//! neither; a restore groups those by inode, change time and content alone,
//! as it did, and only with each other.
//!
//! Record format (version 9), written and read by separate code, trailing
//! bytes rejected; versions 1 to 8 are still read, and a record of one of
//! them is written as version 9 when it next changes. A head:
//! ```text
//! u8 9 | u8 0 (head) | u32 p | p × ( u32 page_id | u32 count ) | BODY
//! ```
//! with page ids increasing and counts at least 1, pages listed oldest
//! first (their versions are older than the head's), and BODY:
//! ```text
//! u32 name_len | name | u32 next_version | u32 n | n × VERSION |
//!   u8 is_gone | [ u64 gone_since ] |
//!   u32 m | m × ( u64 gone_from | u64 back_at )
//! ```
//! A page:
//! ```text
//! u8 9 | u8 1 (page) | u32 name_len | name | u32 page_id | u32 n | n × VERSION
//! ```
//! with n at least 1, versions oldest first. Format 8 is `u8 8 | BODY`,
//! with VERSION as below; in full:
//! ```text
//! u8 8 | u32 name_len | name | u32 next_version | u32 n |
//!   n × ( u32 number | u8 ref_len | ref | u64 size | u64 time | u8 kind |
//!         u8 stamp | [ i64 mtime_s | u32 mtime_ns | i64 ctime_s |
//!                      u32 ctime_ns | u64 inode ] |
//!         u8 has_mode | [ u16 mode ] |
//!         u8 has_owner | [ u32 uid | u32 gid ] |
//!         u16 k | k × ( u8 xname_len | xname | u32 xvalue_len | xvalue ) |
//!         u8 has_links | [ u64 device | u64 nlink ] ) |
//!   u8 is_gone | [ u64 gone_since ] |
//!   u32 m | m × ( u64 gone_from | u64 back_at )
//! ```
//! (`kind`: 0 file, 1 symlink, 2 directory; `stamp`: 0 none, 1 settled,
//! 2 recent; extended attributes sorted by name, names unique, not empty and
//! without NUL, values at most 64 KiB; `device` and `nlink` are `st_dev`
//! and `st_nlink` as read. Format 7 has no links flag; format 6 also has no
//! attribute count;
//! format 5 also has no owner flag; format 4 also has no recent
//! stamps and ends at the gone flag and its time;
//! format 3 also ends each version after the stamp and has no directories;
//! format 2 also ends after the last version; format 1 also ends each
//! version at `kind`).
//!
//! VERSION is one `( u32 number | … | u8 has_links | [ … ] )` above.
//! Every integer is big-endian; times (`time`, `gone_since`, `gone_from`,
//! `back_at`) are seconds since the Unix epoch; `ref` is a content
//! reference ([`ContentRef`]: root digest ‖ length u64); a directory's
//! name is stored without its trailing `/`. Sealed, as the backend holds it:
//! ```text
//! backend key = 'N' ‖ HMAC-SHA-256(HKDF(store key, "seccs/v1/store/catalog-index"), name)
//!               (a head), or
//!               'N' ‖ HMAC-SHA-256(that key, 0x00 ‖ "page" ‖ 0x00 ‖ name ‖ u32 page_id)
//!               (a page)
//! value       = SIV tag (16) ‖ ciphertext, from AES-256-SIV with the 64-byte key
//!               HKDF(store key, "seccs/v1/store/catalog-encryption") and the backend
//!               key (33 bytes) as its one associated-data header
//! ```
//! A build that reads formats up to 8 finds a head or a page of format 9
//! authentic and written by a newer seccs, as it does any record of a
//! format above its own.
//! (`HKDF` is `seccs_core::kdf`'s: HKDF-SHA-256 with the salt `seccs`.)

use aes_siv::Tag;
use hmac::{Hmac, KeyInit, Mac};
use seccs_core::SecretKey;
use seccs_core::kdf::{self, Label};
use sha2::Sha256;

use crate::error::{Result, StoreError};
use crate::params::ContentRef;
use crate::wrapper::SivPool;

/// First byte of every catalog key.
pub const KEY_PREFIX: u8 = b'N';
/// Length of catalog keys.
pub const KEY_LEN: usize = 33;
pub(crate) const FORMAT: u8 = 9;
/// The kind byte of a name's record (its head).
const KIND_HEAD: u8 = 0;
/// The kind byte of a page of older versions.
const KIND_PAGE: u8 = 1;
/// Versions moved out of a head into a page at a time: a head holding more
/// than twice as many inline moves its oldest this many into a new page, so
/// a head holds at most `2 × PAGE_VERSIONS` versions and a page is written
/// once, then only when one of its versions is removed.
pub const PAGE_VERSIONS: usize = 32;
/// What a page key's HMAC input starts with: no name holds a NUL, so no
/// name's key is a page's.
const PAGE_KEY_TAG: &[u8] = b"\0page\0";
/// The format before pages; still read.
const FORMAT_NO_PAGES: u8 = 8;
/// The format before devices and link counts; still read.
const FORMAT_NO_LINKS: u8 = 7;
/// The format before extended attributes; still read.
const FORMAT_NO_XATTRS: u8 = 6;
/// The format before owners; still read.
const FORMAT_NO_OWNER: u8 = 5;
/// The format before recent stamps; still read.
const FORMAT_SETTLED_STAMPS: u8 = 4;
/// The format before permission bits and directories; still read.
const FORMAT_NO_MODE: u8 = 3;
/// The format before gone names; still read.
const FORMAT_NO_GONE: u8 = 2;
/// The format before file stamps; still read.
const FORMAT_NO_STAMPS: u8 = 1;
/// The oldest format read.
pub(crate) const OLDEST_FORMAT: u8 = FORMAT_NO_STAMPS;

/// What a catalog version stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file; the content is its bytes.
    File,
    /// A symbolic link; the content is its target.
    Symlink,
    /// A directory; the content is empty. Kept so that a restore creates
    /// empty directories and gives directories their bits and times.
    Directory,
}

/// A file's identity and change times when it was read, as `stat` gives
/// them. A file whose stamp still matches is taken to hold the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Modification time: seconds since the epoch.
    pub mtime_s: i64,
    /// Modification time: nanoseconds.
    pub mtime_ns: u32,
    /// Status change time: seconds since the epoch.
    pub ctime_s: i64,
    /// Status change time: nanoseconds.
    pub ctime_ns: u32,
    /// Inode number.
    pub inode: u64,
}

impl FileStamp {
    /// The modification time, seconds and nanoseconds: what a restore
    /// gives back of the stamp.
    pub fn modified(&self) -> (i64, u32) {
        (self.mtime_s, self.mtime_ns)
    }
}

/// Where a regular file was and how many names it had when it was read
/// (`st_dev`, `st_nlink`): for a restore only, to link again the names
/// that were one file and no others. Not part of the [`FileStamp`]: a
/// device number can change with no change to the file (a reboot, a
/// remount), and the link count changes only with the change time, which
/// the stamp has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HardLinks {
    /// The device (file system) the file was on.
    pub device: u64,
    /// Its link count: how many names it had.
    pub nlink: u64,
}

/// A [`FileStamp`] as a version records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// Taken more than a timestamp tick after the file's last change: any
    /// later change gives the file another stamp, so a put that finds this
    /// one again takes the file as unchanged.
    Settled(FileStamp),
    /// Taken within a tick of the file's last change: a change right after
    /// it may have left the stamp as it was, so it is kept for the file's
    /// times only.
    Recent(FileStamp),
}

impl Stamp {
    /// The file's stamp, settled or not.
    pub fn file_stamp(&self) -> &FileStamp {
        match self {
            Stamp::Settled(s) | Stamp::Recent(s) => s,
        }
    }

    /// Whether a file whose stamp is now `now` is the file this stamp
    /// recorded, unchanged. The file's device and link count
    /// ([`HardLinks`]) take no part: a device renumbered alone is no
    /// change to the file, and a link made or removed moves the change
    /// time anyway.
    pub fn recognizes(&self, now: &FileStamp) -> bool {
        matches!(self, Stamp::Settled(s) if s == now)
    }
}

/// The permission bits of a file (`st_mode & 0o7777`: read, write and
/// execute for owner, group and others, and setuid, setgid, sticky).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(u16);

impl FileMode {
    /// The permission bits of `st_mode`; the file type bits are dropped.
    pub fn from_st_mode(st_mode: u32) -> Self {
        Self((st_mode & 0o7777) as u16)
    }

    /// The bits, at most `0o7777`.
    pub fn bits(self) -> u32 {
        u32::from(self.0)
    }
}

/// The numeric owner and group of a file (`st_uid`, `st_gid`). Numbers,
/// not names, as `tar --numeric-owner` keeps them: a restore on another
/// machine gives the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// One extended attribute of a file (`user.origin`, `security.capability`,
/// `system.posix_acl_access`): a name of 1 to 255 bytes without NUL, and a
/// value of at most [`Xattr::MAX_VALUE`] bytes, as Linux bounds them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Xattr {
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Xattr {
    /// The longest value Linux gives an attribute.
    pub const MAX_VALUE: usize = 64 << 10;

    /// An attribute, when `name` and `value` are within Linux's bounds.
    pub fn new(name: Vec<u8>, value: Vec<u8>) -> Option<Self> {
        let name_ok = (1..=255).contains(&name.len()) && !name.contains(&0);
        (name_ok && value.len() <= Self::MAX_VALUE).then_some(Self { name, value })
    }

    /// Its name, with its namespace prefix (`user.`, `security.`, ...).
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// Its value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

/// What a version records of the file its content was read from; all
/// empty for a content that was not read from a file (standard input).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileMeta {
    /// The file's stamp, for recognizing it unchanged and for its times.
    pub stamp: Option<Stamp>,
    /// Its permission bits.
    pub mode: Option<FileMode>,
    /// Its owner and group.
    pub owner: Option<Owner>,
    /// Its extended attributes, sorted by name.
    pub xattrs: Vec<Xattr>,
    /// Its device and link count, for a restore; a regular file's only.
    pub hard_links: Option<HardLinks>,
}

/// One version of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Version number, from 1, never reused while the name has a version:
    /// once every version of a name is removed the name is gone with its
    /// record (a store whose names are all removed holds nothing), and a
    /// later put of it starts again at 1.
    pub number: u32,
    /// The content.
    pub content_ref: ContentRef,
    /// Seconds since the Unix epoch when it was put.
    pub time: u64,
    /// File or symlink.
    pub kind: EntryKind,
    /// The stamp of the file it was read from, when it was read from a
    /// file.
    pub stamp: Option<Stamp>,
    /// The permission bits of the file it was read from.
    pub mode: Option<FileMode>,
    /// The owner and group of the file it was read from.
    pub owner: Option<Owner>,
    /// The extended attributes of the file it was read from, sorted by
    /// name.
    pub xattrs: Vec<Xattr>,
    /// The device and link count of the regular file it was read from;
    /// `None` for other entries and for versions written before format 8.
    pub hard_links: Option<HardLinks>,
}

/// A time a name was gone before it was put again: from `from` (when a put
/// of its directory found it missing) until `to` (when it was put again),
/// in seconds since the Unix epoch, `from <= to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Absence {
    /// When the name was found gone.
    pub from: u64,
    /// When it was put again.
    pub to: u64,
}

/// Every live version of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The name.
    pub name: String,
    /// The number the next version gets.
    pub next_version: u32,
    /// Live versions, oldest first.
    pub versions: Vec<Version>,
    /// When `seccs put DIR` last found the name's file missing from its
    /// directory (seconds since the Unix epoch); `None` while it is there.
    pub gone_since: Option<u64>,
    /// Earlier times it was gone, oldest first.
    pub absences: Vec<Absence>,
}

impl Record {
    /// The newest version.
    pub fn latest(&self) -> Option<&Version> {
        self.versions.last()
    }

    /// The version with `number`.
    pub fn version(&self, number: u32) -> Option<&Version> {
        self.versions.iter().find(|v| v.number == number)
    }

    /// The newest version when it is a `kind` (a file or a directory) of
    /// `len` bytes whose recorded stamp is `stamp`, settled: the file has not
    /// changed since it was stored. `None` for a gone name, so that the put
    /// that finds its file again reads it and says it is back.
    pub fn unchanged_since(
        &self,
        kind: EntryKind,
        len: u64,
        stamp: &FileStamp,
    ) -> Option<&Version> {
        if self.is_gone() {
            return None;
        }
        self.latest().filter(|v| {
            v.kind == kind
                && v.content_ref.len() == len
                && v.stamp.is_some_and(|s| s.recognizes(stamp))
        })
    }

    /// Whether `seccs put DIR` last found the name's file missing.
    pub fn is_gone(&self) -> bool {
        self.gone_since.is_some()
    }

    /// What the name held at `time` (seconds since the Unix epoch): its
    /// newest version put by then, unless it was gone then. Versions
    /// removed since are not there to give.
    pub fn at(&self, time: u64) -> Option<&Version> {
        let gone = self.gone_since.is_some_and(|from| from <= time)
            || self.absences.iter().any(|a| a.from <= time && time < a.to);
        if gone {
            return None;
        }
        self.versions.iter().rev().find(|v| v.time <= time)
    }

    /// Brings a gone name back at `now`, keeping when it was gone.
    pub fn come_back(&mut self, now: u64) {
        if let Some(from) = self.gone_since.take() {
            self.absences.push(Absence {
                from,
                to: now.max(from),
            });
        }
    }

    /// This record alone, with no pages: every version inline, in the
    /// current format.
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        Head {
            record: self.clone(),
            pages: Vec::new(),
        }
        .encode()
    }

    /// A record of any format read here, when it has no pages (a head that
    /// lists pages holds only some of its versions: `None`).
    #[cfg(test)]
    pub(crate) fn decode(bytes: &[u8]) -> Option<Record> {
        match Entry::decode(bytes)? {
            Entry::Head(head) if head.pages.is_empty() => Some(head.record),
            _ => None,
        }
    }

    /// The fields of format 8 from the name on: what a head of format 9
    /// holds after its page list.
    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.name.len() as u32).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.next_version.to_be_bytes());
        encode_versions(&self.versions, out);
        match self.gone_since {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.absences.len() as u32).to_be_bytes());
        for a in &self.absences {
            out.extend_from_slice(&a.from.to_be_bytes());
            out.extend_from_slice(&a.to.to_be_bytes());
        }
    }

    /// The fields from the name on, as `format` (1 to 9) lays them out.
    fn decode_body(r: &mut Reader<'_>, format: u8) -> Option<Record> {
        let name = decode_name(r)?;
        let next_version = r.u32()?;
        let versions = decode_versions(r, format)?;
        let is_gone = match format {
            f if f > FORMAT_NO_GONE => r.u8()?,
            _ => 0,
        };
        let gone_since = match is_gone {
            0 => None,
            1 => Some(r.u64()?),
            _ => return None,
        };
        let m = match format {
            f if f > FORMAT_SETTLED_STAMPS => r.u32()? as usize,
            _ => 0,
        };
        let mut absences = Vec::with_capacity(m.min(1024));
        for _ in 0..m {
            let (from, to) = (r.u64()?, r.u64()?);
            if from > to {
                return None;
            }
            absences.push(Absence { from, to });
        }
        Some(Record {
            name,
            next_version,
            versions,
            gone_since,
            absences,
        })
    }
}

/// A page of a name's record as its head lists it: the page's id and how
/// many versions it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRef {
    /// Its id, which with the name gives its key ([`CatalogCrypto::page_key`]).
    pub(crate) id: u32,
    /// How many versions it holds, at least one.
    pub(crate) versions: u32,
}

/// The record stored under a name's key: the name's newest versions
/// (inline, in `record.versions`), everything else it has, and the pages
/// that hold its older versions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// The record with its inline versions only.
    pub(crate) record: Record,
    /// Its pages, oldest versions first, ids increasing.
    pub(crate) pages: Vec<PageRef>,
}

/// Older versions of one name, moved out of its head a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    /// The name whose versions these are.
    pub(crate) name: String,
    /// The page's id.
    pub(crate) id: u32,
    /// Its versions, oldest first, at least one.
    pub(crate) versions: Vec<Version>,
}

/// A catalog entry, opened: a name's head, or a page of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A name's record (of any format; those before 9 have no pages).
    Head(Head),
    /// A page of older versions.
    Page(Page),
}

impl Head {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT, KIND_HEAD];
        out.extend_from_slice(&(self.pages.len() as u32).to_be_bytes());
        for p in &self.pages {
            out.extend_from_slice(&p.id.to_be_bytes());
            out.extend_from_slice(&p.versions.to_be_bytes());
        }
        self.record.encode_body(&mut out);
        out
    }

    /// The whole record: `pages` are this head's pages as read, in the
    /// order it lists them (`None`: not stored). Fails when one is missing
    /// or is not the page the head lists (another name's, another id, other
    /// than the count of versions it says), or when the versions are not
    /// in the order they were put.
    pub(crate) fn assemble(self, pages: Vec<Option<Page>>) -> Result<(Record, Layout)> {
        let damaged = |what: String| StoreError::integrity(format!("a catalog record's {what}"));
        if pages.len() != self.pages.len() {
            return Err(damaged("pages were not all read".into()));
        }
        let Head {
            mut record,
            pages: refs,
        } = self;
        let mut versions = Vec::new();
        let mut stored = Vec::with_capacity(refs.len());
        for (listed, page) in refs.iter().zip(pages) {
            let page = page.ok_or_else(|| damaged(format!("page {} is missing", listed.id)))?;
            if page.name != record.name
                || page.id != listed.id
                || page.versions.len() != listed.versions as usize
            {
                return Err(damaged(format!(
                    "page {} is not the page the record lists",
                    listed.id
                )));
            }
            versions.extend(page.versions.iter().cloned());
            stored.push((page.id, page.versions));
        }
        versions.append(&mut record.versions);
        if versions.windows(2).any(|w| w[0].number >= w[1].number) {
            return Err(damaged("versions are out of order".into()));
        }
        record.versions = versions;
        Ok((record, Layout::Read(stored)))
    }
}

impl Page {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT, KIND_PAGE];
        out.extend_from_slice(&(self.name.len() as u32).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        encode_versions(&self.versions, &mut out);
        out
    }
}

impl Entry {
    /// Decodes a catalog entry's plaintext, of any format read here; `None`
    /// when it is malformed (trailing bytes included).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut r = Reader(bytes);
        let format = r.u8()?;
        if !(OLDEST_FORMAT..=FORMAT).contains(&format) {
            return None;
        }
        let entry = if format <= FORMAT_NO_PAGES {
            Entry::Head(Head {
                record: Record::decode_body(&mut r, format)?,
                pages: Vec::new(),
            })
        } else {
            match r.u8()? {
                KIND_HEAD => {
                    let p = r.u32()? as usize;
                    let mut pages: Vec<PageRef> = Vec::with_capacity(p.min(1024));
                    for _ in 0..p {
                        let page = PageRef {
                            id: r.u32()?,
                            versions: r.u32()?,
                        };
                        // Ids increasing, each page holding a version: one
                        // encoding for each head.
                        if page.versions == 0 || pages.last().is_some_and(|l| l.id >= page.id) {
                            return None;
                        }
                        pages.push(page);
                    }
                    Entry::Head(Head {
                        record: Record::decode_body(&mut r, format)?,
                        pages,
                    })
                }
                KIND_PAGE => {
                    let name = decode_name(&mut r)?;
                    let id = r.u32()?;
                    let versions = decode_versions(&mut r, format)?;
                    if versions.is_empty() {
                        return None;
                    }
                    Entry::Page(Page { name, id, versions })
                }
                _ => return None,
            }
        };
        r.0.is_empty().then_some(entry)
    }

    #[cfg(any(test, fuzzing))]
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Entry::Head(head) => head.encode(),
            Entry::Page(page) => page.encode(),
        }
    }
}

/// Where a stored record's versions are, as far as it was read: which
/// versions each of its pages holds, or only which pages its head lists
/// when a put read the head alone. Empty for a record without pages (all
/// its versions inline) and for a name not stored yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Every page was read: each page's id and versions, as stored, and
    /// the record holds them all.
    Read(Vec<(u32, Vec<Version>)>),
    /// The pages were left unread: the record holds its head's inline
    /// versions only, the newest among them, and these pages hold the
    /// rest, all older. Enough for a put, which only appends.
    Unread(Vec<PageRef>),
}

impl Default for Layout {
    fn default() -> Self {
        Layout::Read(Vec::new())
    }
}

fn decode_name(r: &mut Reader<'_>) -> Option<String> {
    let name_len = r.u32()? as usize;
    String::from_utf8(r.take(name_len)?.to_vec()).ok()
}

/// `u32 n | n × version`, in the current format.
fn encode_versions(versions: &[Version], out: &mut Vec<u8>) {
    out.extend_from_slice(&(versions.len() as u32).to_be_bytes());
    for v in versions {
        out.extend_from_slice(&v.number.to_be_bytes());
        let r = v.content_ref.as_bytes();
        out.push(r.len() as u8);
        out.extend_from_slice(r);
        out.extend_from_slice(&v.content_ref.len().to_be_bytes());
        out.extend_from_slice(&v.time.to_be_bytes());
        out.push(match v.kind {
            EntryKind::File => 0,
            EntryKind::Symlink => 1,
            EntryKind::Directory => 2,
        });
        match &v.stamp {
            None => out.push(0),
            Some(stamp) => {
                out.push(match stamp {
                    Stamp::Settled(_) => 1,
                    Stamp::Recent(_) => 2,
                });
                let s = stamp.file_stamp();
                out.extend_from_slice(&s.mtime_s.to_be_bytes());
                out.extend_from_slice(&s.mtime_ns.to_be_bytes());
                out.extend_from_slice(&s.ctime_s.to_be_bytes());
                out.extend_from_slice(&s.ctime_ns.to_be_bytes());
                out.extend_from_slice(&s.inode.to_be_bytes());
            }
        }
        match v.mode {
            None => out.push(0),
            Some(mode) => {
                out.push(1);
                out.extend_from_slice(&mode.0.to_be_bytes());
            }
        }
        match v.owner {
            None => out.push(0),
            Some(owner) => {
                out.push(1);
                out.extend_from_slice(&owner.uid.to_be_bytes());
                out.extend_from_slice(&owner.gid.to_be_bytes());
            }
        }
        out.extend_from_slice(&(v.xattrs.len() as u16).to_be_bytes());
        for x in &v.xattrs {
            out.push(x.name.len() as u8);
            out.extend_from_slice(&x.name);
            out.extend_from_slice(&(x.value.len() as u32).to_be_bytes());
            out.extend_from_slice(&x.value);
        }
        match v.hard_links {
            None => out.push(0),
            Some(links) => {
                out.push(1);
                out.extend_from_slice(&links.device.to_be_bytes());
                out.extend_from_slice(&links.nlink.to_be_bytes());
            }
        }
    }
}

/// `u32 n | n × version`, as `format` lays a version out.
fn decode_versions(r: &mut Reader<'_>, format: u8) -> Option<Vec<Version>> {
    let n = r.u32()? as usize;
    let mut versions = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        versions.push(decode_version(r, format)?);
    }
    Some(versions)
}

fn decode_version(r: &mut Reader<'_>, format: u8) -> Option<Version> {
    let number = r.u32()?;
    let ref_len = usize::from(r.u8()?);
    let content_ref = ContentRef::from_bytes(r.take(ref_len)?).ok()?;
    let size = r.u64()?;
    let time = r.u64()?;
    let kind = match r.u8()? {
        0 => EntryKind::File,
        1 => EntryKind::Symlink,
        2 if format > FORMAT_NO_MODE => EntryKind::Directory,
        _ => return None,
    };
    if size != content_ref.len() {
        return None;
    }
    let has_stamp = match format {
        FORMAT_NO_STAMPS => 0,
        _ => r.u8()?,
    };
    let settled = match has_stamp {
        0 => None,
        1 => Some(true),
        2 if format > FORMAT_SETTLED_STAMPS => Some(false),
        _ => return None,
    };
    let stamp = match settled {
        None => None,
        Some(settled) => {
            let s = FileStamp {
                mtime_s: r.i64()?,
                mtime_ns: r.u32()?,
                ctime_s: r.i64()?,
                ctime_ns: r.u32()?,
                inode: r.u64()?,
            };
            Some(if settled {
                Stamp::Settled(s)
            } else {
                Stamp::Recent(s)
            })
        }
    };
    let has_mode = match format {
        f if f > FORMAT_NO_MODE => r.u8()?,
        _ => 0,
    };
    let mode = match has_mode {
        0 => None,
        1 => match r.u16()? {
            m if m & !0o7777 == 0 => Some(FileMode(m)),
            _ => return None,
        },
        _ => return None,
    };
    let has_owner = match format {
        f if f > FORMAT_NO_OWNER => r.u8()?,
        _ => 0,
    };
    let owner = match has_owner {
        0 => None,
        1 => Some(Owner {
            uid: r.u32()?,
            gid: r.u32()?,
        }),
        _ => return None,
    };
    let k = match format {
        f if f > FORMAT_NO_XATTRS => usize::from(r.u16()?),
        _ => 0,
    };
    let mut xattrs: Vec<Xattr> = Vec::with_capacity(k.min(64));
    for _ in 0..k {
        let name_len = usize::from(r.u8()?);
        let name = r.take(name_len)?.to_vec();
        let value_len = r.u32()? as usize;
        let x = Xattr::new(name, r.take(value_len)?.to_vec())?;
        // Sorted, each name once: one encoding for each set.
        if xattrs.last().is_some_and(|last| last.name >= x.name) {
            return None;
        }
        xattrs.push(x);
    }
    let has_links = match format {
        f if f > FORMAT_NO_LINKS => r.u8()?,
        _ => 0,
    };
    let hard_links = match has_links {
        0 => None,
        1 => Some(HardLinks {
            device: r.u64()?,
            nlink: r.u64()?,
        }),
        _ => return None,
    };
    Some(Version {
        number,
        content_ref,
        time,
        kind,
        stamp,
        mode,
        owner,
        xattrs,
        hard_links,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Seals and opens catalog records and computes their keys.
pub(crate) struct CatalogCrypto {
    index: Hmac<Sha256>,
    ciphers: SivPool,
}

impl CatalogCrypto {
    pub(crate) fn new(store_key: &SecretKey) -> Self {
        let index_key = kdf::derive(store_key, Label::CatalogIndex);
        // Cannot fail: HMAC takes keys of any length.
        let index = <Hmac<Sha256> as KeyInit>::new_from_slice(index_key.expose_secret())
            .expect("HMAC accepts any key length");
        Self {
            index,
            ciphers: SivPool::new(store_key, Label::CatalogEncryption),
        }
    }

    /// The backend key of `name`'s record.
    pub(crate) fn key_of(&self, name: &str) -> Vec<u8> {
        let mut mac = self.index.clone();
        mac.update(name.as_bytes());
        let mut key = vec![KEY_PREFIX];
        key.extend_from_slice(&mac.finalize().into_bytes());
        key
    }

    /// The backend keys of the pages `head` lists, in its order.
    pub(crate) fn page_keys(&self, head: &Head) -> Vec<Vec<u8>> {
        head.pages
            .iter()
            .map(|p| self.page_key(&head.record.name, p.id))
            .collect()
    }

    /// The backend key of page `id` of `name`'s record: a catalog key
    /// (33 bytes, `'N'` first) from an HMAC input no name gives.
    pub(crate) fn page_key(&self, name: &str, id: u32) -> Vec<u8> {
        let mut mac = self.index.clone();
        mac.update(PAGE_KEY_TAG);
        mac.update(name.as_bytes());
        mac.update(&id.to_be_bytes());
        let mut key = vec![KEY_PREFIX];
        key.extend_from_slice(&mac.finalize().into_bytes());
        key
    }

    /// `record` sealed under `key` with every version inline (no pages).
    #[cfg(test)]
    pub(crate) fn seal(&self, key: &[u8], record: &Record) -> Vec<u8> {
        self.seal_plain(key, &record.encode())
    }

    fn seal_plain(&self, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.ciphers.with_cipher(|c| {
            // Cannot fail: one header is within the SIV header limit.
            c.encrypt([key], plaintext)
                .expect("one header is within the SIV header limit")
        })
    }

    /// What to write so that `record`, stored under `key` as `layout` says,
    /// is stored as it now is: each entry's key, and its sealed value or
    /// `None` to delete it. Pages whose versions did not change are not
    /// written; one that lost versions is written again, or deleted when
    /// it lost all; versions beyond `2 × PAGE_VERSIONS` inline move, the
    /// oldest `PAGE_VERSIONS` at a time, into new pages. A record without
    /// versions is deleted with its pages. A put thus writes the head and
    /// at most a page or two, however many versions the name has. With a
    /// [`Layout::Unread`], `record` holds the head's versions only, and the
    /// pages are kept as the head lists them.
    ///
    /// Callers only remove versions, append them, or change the newest:
    /// the versions of a page stay older than those of later pages and
    /// of the head.
    pub(crate) fn entries(
        &self,
        key: &[u8],
        layout: &Layout,
        record: &Record,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let stored = match layout {
            Layout::Read(stored) => stored,
            Layout::Unread(refs) => {
                // Only appended to: the pages stay as they are, and the
                // head holds at least its newest version.
                let next_id = refs.last().map_or(0, |p| p.id.saturating_add(1));
                return self.spill_and_seal(
                    key,
                    record,
                    record.versions.clone(),
                    refs.clone(),
                    next_id,
                    out,
                );
            }
        };
        if record.versions.is_empty() {
            for (id, _) in stored {
                out.push((self.page_key(&record.name, *id), None));
            }
            out.push((key.to_vec(), None));
            return out;
        }
        let mut inline = record.versions.clone();
        let mut pages = Vec::new();
        for (id, stored) in stored {
            let numbers: std::collections::HashSet<u32> = stored.iter().map(|v| v.number).collect();
            let (kept, rest): (Vec<Version>, Vec<Version>) = inline
                .into_iter()
                .partition(|v| numbers.contains(&v.number));
            inline = rest;
            let page_key = self.page_key(&record.name, *id);
            if kept.is_empty() {
                out.push((page_key, None));
                continue;
            }
            pages.push(PageRef {
                id: *id,
                versions: kept.len() as u32,
            });
            if kept != *stored {
                let page = Page {
                    name: record.name.clone(),
                    id: *id,
                    versions: kept,
                };
                out.push((
                    page_key.clone(),
                    Some(self.seal_plain(&page_key, &page.encode())),
                ));
            }
        }
        // Past every id the record had, emptied pages' too: an id is not
        // written again in the batch that deletes it.
        let next_id = stored
            .iter()
            .map(|(id, _)| *id)
            .max()
            .map_or(0, |id| id.saturating_add(1));
        self.spill_and_seal(key, record, inline, pages, next_id, out)
    }

    /// Completes `out` with the head of `record` holding `inline` after
    /// `pages`: versions beyond `2 × PAGE_VERSIONS` inline move, the oldest
    /// `PAGE_VERSIONS` at a time, into new pages from id `next_id` on.
    fn spill_and_seal(
        &self,
        key: &[u8],
        record: &Record,
        mut inline: Vec<Version>,
        mut pages: Vec<PageRef>,
        mut next_id: u32,
        mut out: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        while inline.len() > 2 * PAGE_VERSIONS {
            let moved: Vec<Version> = inline.drain(..PAGE_VERSIONS).collect();
            let page = Page {
                name: record.name.clone(),
                id: next_id,
                versions: moved,
            };
            let page_key = self.page_key(&record.name, next_id);
            out.push((
                page_key.clone(),
                Some(self.seal_plain(&page_key, &page.encode())),
            ));
            pages.push(PageRef {
                id: next_id,
                versions: PAGE_VERSIONS as u32,
            });
            next_id = next_id.saturating_add(1);
        }
        let head = Head {
            record: Record {
                versions: inline,
                ..record.clone()
            },
            pages,
        };
        out.push((key.to_vec(), Some(self.seal_plain(key, &head.encode()))));
        out
    }

    /// Opens the catalog entry under `key`: a name's head or a page.
    pub(crate) fn open_entry(&self, key: &[u8], value: &[u8]) -> Result<Entry> {
        let tampered = || StoreError::integrity("a catalog record failed to authenticate");
        if value.len() < 16 {
            return Err(tampered());
        }
        let plaintext = self.ciphers.with_cipher(|c| {
            let (tag, ct) = value.split_at(16);
            let tag = Tag::try_from(tag).map_err(|_| tampered())?;
            let mut buf = ct.to_vec();
            c.decrypt_inout_detached([key], buf.as_mut_slice().into(), &tag)
                .map_err(|_| tampered())?;
            Ok::<_, StoreError>(buf)
        })?;
        // An authentic record of a format above ours was written by a newer
        // seccs: not damage, and not to be taken for it (gc removes damaged
        // records).
        if let Some(&format) = plaintext.first()
            && format > FORMAT
        {
            return Err(newer_record(format));
        }
        Entry::decode(&plaintext)
            .ok_or_else(|| StoreError::integrity("a catalog record is malformed"))
    }

    /// Opens the head under `key`, a name's key: a page there is damage.
    pub(crate) fn open_head(&self, key: &[u8], value: &[u8]) -> Result<Head> {
        match self.open_entry(key, value)? {
            Entry::Head(head) => Ok(head),
            Entry::Page(_) => Err(StoreError::integrity(
                "a catalog page is stored where a name's record should be",
            )),
        }
    }

    /// Opens page `id` of `name`'s record, stored under `key`: anything
    /// else there (a head, another page) is damage.
    pub(crate) fn open_page(&self, key: &[u8], value: &[u8], name: &str, id: u32) -> Result<Page> {
        match self.open_entry(key, value)? {
            Entry::Page(page) if page.name == name && page.id == id => Ok(page),
            _ => Err(StoreError::integrity(format!(
                "page {id} of a catalog record is not the page its record lists"
            ))),
        }
    }

    /// Seals `plaintext` as the record under `key`, whatever it holds: a
    /// record of another format, for tests.
    #[cfg(test)]
    pub(crate) fn seal_bytes(&self, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.ciphers.with_cipher(|c| {
            c.encrypt([key], plaintext)
                .expect("one header is within the SIV header limit")
        })
    }
}

/// The error of an authentic catalog record of `format`, newer than any
/// this build reads; its name is not known here ([`StoreError::of_name`]
/// gives it one).
pub(crate) fn newer_record(format: u8) -> StoreError {
    newer_records(1, format)
}

/// The error of `count` authentic catalog records whose newest format,
/// `format`, is newer than any this build reads.
pub(crate) fn newer_records(count: usize, format: u8) -> StoreError {
    StoreError::NewerFormat {
        what: match count {
            1 => "a catalog record (its name cannot be read by this build)".into(),
            n => format!("{n} catalog records (their names cannot be read by this build)"),
        },
        found: format,
        oldest: OLDEST_FORMAT,
        newest: FORMAT,
    }
}

/// Whether a backend key is a catalog key.
pub fn is_catalog_key(key: &[u8]) -> bool {
    key.len() == KEY_LEN && key[0] == KEY_PREFIX
}

/// Whether damage that a damage-tolerant walk reports under `key` may have
/// cost catalog records: `key` is a catalog key, or a shorter prefix of
/// catalog keys that is not a node's key (`node_key_len` bytes). A backend
/// that reads entries a block at a time (the embedded one) reports a block
/// it cannot read by the prefix of the key range it then could not walk,
/// and that range may hold any number of records, or only nodes whose
/// digests start like a catalog key: it counts as damage to the catalog.
pub(crate) fn damage_may_hold_records(key: &[u8], node_key_len: usize) -> bool {
    is_catalog_key(key)
        || (key.first() == Some(&KEY_PREFIX) && key.len() < KEY_LEN && key.len() != node_key_len)
}

/// Parses `NAME` or `NAME@N`. A name may itself contain `@`; only a suffix of
/// digits after the last `@` is a version.
pub fn parse_name_version(s: &str) -> (&str, Option<u32>) {
    if let Some((name, v)) = s.rsplit_once('@')
        && !name.is_empty()
        && let Ok(n) = v.parse::<u32>()
    {
        return (name, Some(n));
    }
    (s, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module's spec of a sealed record, computed from the primitives
    /// directly: a change of key derivation, associated data or layout
    /// fails this.
    #[test]
    fn a_record_is_sealed_and_keyed_as_its_spec_says() {
        let store_key = SecretKey::from_bytes([5; 32]);
        let crypto = CatalogCrypto::new(&store_key);
        let name = "photos/2024/a.jpg";
        let index_key = kdf::derive(&store_key, Label::CatalogIndex);
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(index_key.expose_secret()).expect("key");
        mac.update(name.as_bytes());
        let mut want_key = vec![b'N'];
        want_key.extend_from_slice(&mac.finalize().into_bytes());
        let key = crypto.key_of(name);
        assert_eq!(key, want_key);
        assert_eq!(key.len(), 33);
        let rec = Record {
            name: name.into(),
            next_version: 2,
            versions: vec![version(1, None)],
            gone_since: None,
            absences: Vec::new(),
        };
        let sealed = crypto.seal(&key, &rec);
        let mut siv_key = [0; 64];
        kdf::derive_into(&store_key, Label::CatalogEncryption, &mut siv_key);
        let opened = aes_siv::siv::Aes256Siv::new((&siv_key).into())
            .decrypt([&key[..]], &sealed)
            .expect("opens as the spec says");
        assert_eq!(opened, rec.encode());
        assert_eq!(opened[..6], [9, 0, 0, 0, 0, 0], "format, head, no pages");
    }

    fn version(number: u32, stamp: Option<Stamp>) -> Version {
        Version {
            number,
            content_ref: ContentRef::new(&[number as u8; 16], 99),
            time: 1_700_000_000,
            kind: EntryKind::File,
            stamp,
            mode: None,
            owner: None,
            xattrs: Vec::new(),
            hard_links: None,
        }
    }

    #[test]
    fn record_round_trip_and_strict_parsing() {
        let stamp = FileStamp {
            mtime_s: 1_700_000_000,
            mtime_ns: 123,
            ctime_s: -5,
            ctime_ns: 999_999_999,
            inode: u64::MAX,
        };
        let rec = Record {
            name: "photos/2024/a.jpg".into(),
            next_version: 4,
            versions: vec![
                Version {
                    mode: Some(FileMode::from_st_mode(0o104755)),
                    ..version(2, None)
                },
                version(3, Some(Stamp::Settled(stamp))),
            ],
            gone_since: None,
            absences: Vec::new(),
        };
        let bytes = rec.encode();
        assert_eq!(Record::decode(&bytes), Some(rec.clone()));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(Record::decode(&trailing), None);
        assert_eq!(Record::decode(&bytes[..bytes.len() - 1]), None);
        // The stamp flag is 0, 1 (settled) or 2 (recent), nothing else (it
        // precedes the mode and owner flags, the attribute count, the links
        // flag, the gone flag and the absence count).
        let flag_at = bytes.len() - 43;
        assert_eq!(bytes[flag_at], 1);
        let mut recent = bytes.clone();
        recent[flag_at] = 2;
        let mut expected = rec.clone();
        expected.versions[1].stamp = Some(Stamp::Recent(stamp));
        assert_eq!(Record::decode(&recent), Some(expected));
        let mut bad_flag = bytes.clone();
        bad_flag[flag_at] = 3;
        assert_eq!(Record::decode(&bad_flag), None);
        // Permission bits are the low 12 bits, nothing more, and the mode
        // flag is 0 or 1.
        let moded = Record {
            versions: vec![rec.versions[0].clone()],
            ..rec.clone()
        }
        .encode();
        assert_eq!(
            moded[moded.len() - 12..],
            [1, 0x09, 0xED, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let mut bad_mode = moded.clone();
        bad_mode[moded.len() - 11] |= 0x10;
        assert_eq!(Record::decode(&bad_mode), None);
        let mut bad_mode_flag = moded.clone();
        bad_mode_flag[moded.len() - 12] = 2;
        assert_eq!(Record::decode(&bad_mode_flag), None);
        // An owner is a user and a group id; its flag is 0 or 1.
        let owned = Record {
            versions: vec![Version {
                owner: Some(Owner {
                    uid: 1000,
                    gid: u32::MAX,
                }),
                ..rec.versions[1].clone()
            }],
            ..rec.clone()
        };
        let bytes = owned.encode();
        assert_eq!(
            bytes[bytes.len() - 17..bytes.len() - 8],
            [1, 0, 0, 3, 0xE8, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(Record::decode(&bytes), Some(owned));
        let mut bad_owner_flag = bytes.clone();
        bad_owner_flag[bytes.len() - 17] = 2;
        assert_eq!(Record::decode(&bad_owner_flag), None);
        // A regular file's device and link count follow its attributes;
        // their flag is 0 or 1.
        let linked = Record {
            versions: vec![Version {
                hard_links: Some(HardLinks {
                    device: 0x0102_0304_0506_0708,
                    nlink: 2,
                }),
                ..rec.versions[1].clone()
            }],
            ..rec.clone()
        };
        let bytes = linked.encode();
        assert_eq!(
            bytes[bytes.len() - 22..bytes.len() - 5],
            [1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 2]
        );
        assert_eq!(Record::decode(&bytes), Some(linked));
        let mut bad_links_flag = bytes.clone();
        bad_links_flag[bytes.len() - 22] = 2;
        assert_eq!(Record::decode(&bad_links_flag), None);
        // Extended attributes: sorted, each name once, names not empty.
        let x = |name: &[u8], value: &[u8]| Xattr::new(name.to_vec(), value.to_vec());
        let attributed = Record {
            versions: vec![Version {
                xattrs: vec![
                    x(b"security.capability", &[1, 0, 0, 2]).expect("xattr"),
                    x(b"user.empty", b"").expect("xattr"),
                ],
                ..rec.versions[1].clone()
            }],
            ..rec.clone()
        };
        let bytes = attributed.encode();
        assert_eq!(Record::decode(&bytes), Some(attributed.clone()));
        let swapped = Record {
            versions: vec![Version {
                xattrs: attributed.versions[0]
                    .xattrs
                    .iter()
                    .rev()
                    .cloned()
                    .collect(),
                ..attributed.versions[0].clone()
            }],
            ..attributed.clone()
        };
        assert_eq!(Record::decode(&swapped.encode()), None);
        let twice = Record {
            versions: vec![Version {
                xattrs: vec![attributed.versions[0].xattrs[0].clone(); 2],
                ..attributed.versions[0].clone()
            }],
            ..attributed
        };
        assert_eq!(Record::decode(&twice.encode()), None);
        assert!(x(b"", b"v").is_none());
        assert!(x(b"user.a\0b", b"v").is_none());
        assert!(x(&[b'u'; 256], b"v").is_none());
        assert!(x(b"user.big", &vec![0; Xattr::MAX_VALUE + 1]).is_none());
        assert!(x(b"user.big", &vec![0; Xattr::MAX_VALUE]).is_some());
        // A gone name keeps its versions and the time it went.
        let gone = Record {
            gone_since: Some(1_800_000_000),
            absences: Vec::new(),
            ..rec.clone()
        };
        let bytes = gone.encode();
        assert_eq!(Record::decode(&bytes), Some(gone));
        let mut bad_gone = bytes.clone();
        let at = bytes.len() - 13;
        bad_gone[at] = 2;
        assert_eq!(Record::decode(&bad_gone), None);
        // Absences come last, each from <= to.
        let back = Record {
            absences: vec![Absence { from: 5, to: 9 }, Absence { from: 20, to: 20 }],
            ..rec
        };
        let bytes = back.encode();
        assert_eq!(Record::decode(&bytes), Some(back));
        let mut backwards = bytes.clone();
        let to_at = bytes.len() - 1;
        backwards[to_at] = 19;
        assert_eq!(Record::decode(&backwards), None);
    }

    #[test]
    fn a_record_at_a_time_gives_the_version_then_unless_the_name_was_gone() {
        let v = |number, time| Version {
            time,
            ..version(number, None)
        };
        let mut rec = Record {
            name: "t/a".into(),
            next_version: 3,
            versions: vec![v(1, 100), v(2, 200)],
            gone_since: Some(300),
            absences: Vec::new(),
        };
        let at = |rec: &Record, t| rec.at(t).map(|v| v.number);
        assert_eq!(at(&rec, 99), None, "not put yet");
        assert_eq!(at(&rec, 100), Some(1));
        assert_eq!(at(&rec, 250), Some(2));
        assert_eq!(at(&rec, 300), None, "gone");
        // Back at 400 (with the same content: no new version): gone only
        // in between.
        rec.come_back(400);
        assert_eq!(rec.absences, [Absence { from: 300, to: 400 }]);
        assert!(!rec.is_gone());
        assert_eq!(at(&rec, 299), Some(2));
        assert_eq!(at(&rec, 350), None);
        assert_eq!(at(&rec, 400), Some(2));
        // A clock that went back never makes an absence end before it began.
        rec.gone_since = Some(500);
        rec.come_back(450);
        assert_eq!(rec.absences[1], Absence { from: 500, to: 500 });
        // Coming back when not gone changes nothing.
        rec.come_back(600);
        assert_eq!(rec.absences.len(), 2);
    }

    #[test]
    fn every_cut_and_every_byte_change_decodes_or_fails_without_panic() {
        let rec = Record {
            name: "bin/run".into(),
            next_version: 3,
            versions: vec![
                Version {
                    mode: Some(FileMode::from_st_mode(0o755)),
                    ..version(1, None)
                },
                Version {
                    kind: EntryKind::Directory,
                    owner: Some(Owner { uid: 1, gid: 2 }),
                    xattrs: vec![
                        Xattr::new(b"security.a".to_vec(), vec![1, 2]).expect("xattr"),
                        Xattr::new(b"user.b".to_vec(), Vec::new()).expect("xattr"),
                    ],
                    ..version(2, None)
                },
                Version {
                    hard_links: Some(HardLinks {
                        device: 6,
                        nlink: 7,
                    }),
                    ..version(
                        3,
                        Some(Stamp::Recent(FileStamp {
                            mtime_s: 1,
                            mtime_ns: 2,
                            ctime_s: 3,
                            ctime_ns: 4,
                            inode: 5,
                        })),
                    )
                },
            ],
            gone_since: Some(5),
            absences: vec![Absence { from: 1, to: 2 }],
        };
        let bytes = rec.encode();
        for cut in 0..bytes.len() {
            assert_eq!(Record::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut changed = bytes.clone();
                changed[at] ^= 1 << bit;
                // Either malformed or a record that encodes to exactly these
                // bytes: nothing is read past or around a field.
                if let Some(other) = Record::decode(&changed) {
                    assert_eq!(other.encode(), changed, "byte {at} bit {bit}");
                }
            }
        }
    }

    const STAMP: FileStamp = FileStamp {
        mtime_s: 10,
        mtime_ns: 20,
        ctime_s: 30,
        ctime_ns: 40,
        inode: 50,
    };

    /// Where the gone flag of `rec` (one version) starts in its encoding.
    fn gone_flag_at(rec: &Record, bytes: &[u8]) -> usize {
        assert_eq!(rec.versions.len(), 1);
        let gone_len = if rec.is_gone() { 9 } else { 1 };
        bytes.len() - 4 - 16 * rec.absences.len() - gone_len
    }

    /// `rec` as format 8 wrote it: format 9's head without its kind byte
    /// and page list.
    fn format_8_bytes(rec: &Record) -> Vec<u8> {
        let mut bytes = rec.encode();
        assert_eq!(bytes.drain(1..6).collect::<Vec<_>>(), [0; 5]);
        bytes[0] = FORMAT_NO_PAGES;
        bytes
    }

    /// `rec` (one version without a device and link count) as format 7
    /// wrote it: format 8 without the links flag, the byte before the gone
    /// flag.
    fn format_7_bytes(rec: &Record) -> Vec<u8> {
        assert!(rec.versions[0].hard_links.is_none());
        let mut bytes = format_8_bytes(rec);
        let at = gone_flag_at(rec, &bytes) - 1;
        assert_eq!(bytes.remove(at), 0);
        bytes[0] = FORMAT_NO_LINKS;
        bytes
    }

    /// `rec` (one version without attributes) as format 6 wrote it: format
    /// 7 without the attribute count, the two bytes before the gone flag.
    fn format_6_bytes(rec: &Record) -> Vec<u8> {
        assert!(rec.versions[0].xattrs.is_empty());
        let mut bytes = format_7_bytes(rec);
        let at = gone_flag_at(rec, &bytes) - 2;
        assert_eq!(bytes.drain(at..at + 2).collect::<Vec<_>>(), [0, 0]);
        bytes[0] = FORMAT_NO_XATTRS;
        bytes
    }

    /// `rec` (one version without an owner) as format 5 wrote it: format 6
    /// without the owner flag, the byte before the gone flag.
    fn format_5_bytes(rec: &Record) -> Vec<u8> {
        assert!(rec.versions[0].owner.is_none());
        let mut bytes = format_6_bytes(rec);
        let at = gone_flag_at(rec, &bytes) - 1;
        assert_eq!(bytes.remove(at), 0);
        bytes[0] = FORMAT_NO_OWNER;
        bytes
    }

    #[test]
    fn format_7_records_still_read_and_have_no_devices_or_link_counts() {
        // Written out field by field as format 7 laid them out, not by the
        // encoder: a settled stamp, bits 0644, no owner, one attribute.
        let digest = [0xAB; 16];
        let mut v7 = vec![7];
        v7.extend_from_slice(&1u32.to_be_bytes()); // name_len
        v7.extend_from_slice(b"f");
        v7.extend_from_slice(&2u32.to_be_bytes()); // next_version
        v7.extend_from_slice(&1u32.to_be_bytes()); // versions
        v7.extend_from_slice(&1u32.to_be_bytes()); // number
        v7.push(24);
        v7.extend_from_slice(&digest);
        v7.extend_from_slice(&99u64.to_be_bytes()); // the ref's length
        v7.extend_from_slice(&99u64.to_be_bytes()); // size
        v7.extend_from_slice(&1_700_000_000u64.to_be_bytes()); // time
        v7.push(0); // file
        v7.push(1); // settled
        v7.extend_from_slice(&10i64.to_be_bytes());
        v7.extend_from_slice(&20u32.to_be_bytes());
        v7.extend_from_slice(&30i64.to_be_bytes());
        v7.extend_from_slice(&40u32.to_be_bytes());
        v7.extend_from_slice(&50u64.to_be_bytes());
        v7.extend_from_slice(&[1, 0o644u16.to_be_bytes()[0], 0o644u16.to_be_bytes()[1]]);
        v7.push(0); // no owner
        v7.extend_from_slice(&1u16.to_be_bytes());
        v7.push(6);
        v7.extend_from_slice(b"user.a");
        v7.extend_from_slice(&1u32.to_be_bytes());
        v7.push(b'x');
        v7.push(0); // not gone
        v7.extend_from_slice(&0u32.to_be_bytes()); // absences
        let rec = Record {
            name: "f".into(),
            next_version: 2,
            versions: vec![Version {
                content_ref: ContentRef::new(&digest, 99),
                mode: Some(FileMode::from_st_mode(0o644)),
                xattrs: vec![Xattr::new(b"user.a".to_vec(), b"x".to_vec()).expect("xattr")],
                ..version(1, Some(Stamp::Settled(STAMP)))
            }],
            gone_since: None,
            absences: Vec::new(),
        };
        assert_eq!(Record::decode(&v7), Some(rec.clone()));
        // Written again, it is format 9: a head without pages, then format
        // 8's fields: the same fields and a links flag of 0 after the
        // attributes.
        let v8 = rec.encode();
        assert_eq!(v8[0], FORMAT);
        assert_eq!(format_7_bytes(&rec), v7);
        // A links flag is malformed before format 8.
        let linked = Record {
            versions: vec![Version {
                hard_links: Some(HardLinks {
                    device: 1,
                    nlink: 2,
                }),
                ..rec.versions[0].clone()
            }],
            ..rec
        };
        assert_eq!(Record::decode(&linked.encode()), Some(linked.clone()));
        let mut bytes = format_8_bytes(&linked);
        assert_eq!(Record::decode(&bytes), Some(linked));
        bytes[0] = FORMAT_NO_LINKS;
        assert_eq!(Record::decode(&bytes), None);
    }

    #[test]
    fn format_6_records_still_read_and_have_no_attributes() {
        let rec = Record {
            name: "a".into(),
            next_version: 2,
            versions: vec![Version {
                owner: Some(Owner { uid: 5, gid: 6 }),
                ..version(1, Some(Stamp::Settled(STAMP)))
            }],
            gone_since: None,
            absences: vec![Absence { from: 3, to: 4 }],
        };
        assert_eq!(Record::decode(&format_6_bytes(&rec)), Some(rec.clone()));
        // An attribute count is malformed before format 7.
        let mut bytes = format_7_bytes(&rec);
        bytes[0] = FORMAT_NO_XATTRS;
        assert_eq!(Record::decode(&bytes), None);
    }

    /// `rec` (without absences) as format 4 wrote it: format 5 without the
    /// absence count at the end.
    fn format_4_bytes(rec: &Record) -> Vec<u8> {
        assert!(rec.absences.is_empty());
        let mut bytes = format_5_bytes(rec);
        assert_eq!(bytes.split_off(bytes.len() - 4), [0; 4]);
        bytes[0] = FORMAT_SETTLED_STAMPS;
        bytes
    }

    #[test]
    fn format_5_records_still_read_and_have_no_owners() {
        let rec = Record {
            name: "a".into(),
            next_version: 2,
            versions: vec![version(1, Some(Stamp::Recent(STAMP)))],
            gone_since: Some(9),
            absences: vec![Absence { from: 1, to: 2 }],
        };
        let v5 = format_5_bytes(&rec);
        assert_eq!(Record::decode(&v5), Some(rec.clone()));
        // An owner flag is malformed before format 6.
        let owned = Record {
            versions: vec![Version {
                owner: Some(Owner { uid: 0, gid: 0 }),
                ..version(1, None)
            }],
            ..rec
        };
        let mut bytes = owned.encode();
        assert_eq!(Record::decode(&bytes), Some(owned));
        bytes[0] = FORMAT_NO_OWNER;
        assert_eq!(Record::decode(&bytes), None);
    }

    #[test]
    fn format_4_records_still_read_and_have_no_recent_stamps() {
        let stamp = STAMP;
        let settled = Record {
            name: "a".into(),
            next_version: 2,
            versions: vec![version(1, Some(Stamp::Settled(stamp)))],
            gone_since: None,
            absences: Vec::new(),
        };
        let v4 = format_4_bytes(&settled);
        assert_eq!(Record::decode(&v4), Some(settled.clone()));
        // Absences came with format 5: a format 4 record ends at its gone
        // flag.
        let mut longer = v4.clone();
        longer.extend_from_slice(&[0; 4]);
        assert_eq!(Record::decode(&longer), None);
        let recent = Record {
            versions: vec![version(1, Some(Stamp::Recent(stamp)))],
            ..settled
        };
        assert_eq!(Record::decode(&format_4_bytes(&recent)), None);
    }

    #[test]
    fn a_recent_stamp_keeps_times_but_recognizes_nothing() {
        let stamp = STAMP;
        assert!(Stamp::Settled(stamp).recognizes(&stamp));
        assert!(!Stamp::Recent(stamp).recognizes(&stamp));
        assert!(!Stamp::Settled(stamp).recognizes(&FileStamp { inode: 51, ..stamp }));
        assert_eq!(Stamp::Recent(stamp).file_stamp(), &stamp);
        let record = |s| Record {
            name: "a".into(),
            next_version: 2,
            versions: vec![version(1, Some(s))],
            gone_since: None,
            absences: Vec::new(),
        };
        let len = 99;
        assert!(
            record(Stamp::Settled(stamp))
                .unchanged_since(EntryKind::File, len, &stamp)
                .is_some()
        );
        assert!(
            record(Stamp::Recent(stamp))
                .unchanged_since(EntryKind::File, len, &stamp)
                .is_none()
        );
    }

    #[test]
    fn format_3_records_still_read() {
        let rec = Record {
            name: "a".into(),
            next_version: 2,
            versions: vec![version(1, None)],
            gone_since: Some(7),
            absences: Vec::new(),
        };
        let mut v3 = format_4_bytes(&rec);
        // Format 3: leading 3, no mode flag after the stamp flag (the byte
        // before the gone flag and its time).
        v3[0] = FORMAT_NO_MODE;
        let at = v3.len() - 10;
        assert_eq!(v3.remove(at), 0);
        assert_eq!(Record::decode(&v3), Some(rec.clone()));
        // Directories came with format 4: kind 2 is malformed before it.
        let dir = Record {
            versions: vec![Version {
                kind: EntryKind::Directory,
                content_ref: ContentRef::new(&[1; 16], 0),
                ..version(1, None)
            }],
            ..rec
        };
        let v4 = format_4_bytes(&dir);
        assert_eq!(Record::decode(&v4), Some(dir));
        let mut v3 = v4.clone();
        v3[0] = FORMAT_NO_MODE;
        v3.remove(at);
        assert_eq!(Record::decode(&v3), None);
    }

    #[test]
    fn format_2_records_still_read() {
        let rec = Record {
            name: "a".into(),
            next_version: 2,
            versions: vec![version(1, None)],
            gone_since: None,
            absences: Vec::new(),
        };
        let mut v2 = format_4_bytes(&rec);
        // Format 2: leading 2, and no mode flag nor gone flag at the end.
        v2[0] = FORMAT_NO_GONE;
        assert_eq!(v2.pop(), Some(0));
        assert_eq!(v2.pop(), Some(0));
        assert_eq!(Record::decode(&v2), Some(rec));
    }

    #[test]
    fn format_1_records_still_read() {
        let rec = Record {
            name: "a".into(),
            next_version: 2,
            versions: vec![version(1, None)],
            gone_since: None,
            absences: Vec::new(),
        };
        let mut v1 = format_4_bytes(&rec);
        // Format 1: leading 1, no stamp or mode flag after the kind, no gone
        // flag.
        v1[0] = FORMAT_NO_STAMPS;
        assert_eq!(v1.pop(), Some(0));
        assert_eq!(v1.pop(), Some(0));
        assert_eq!(v1.pop(), Some(0));
        assert_eq!(Record::decode(&v1), Some(rec));
    }

    #[test]
    fn records_are_bound_to_their_key() {
        let c = CatalogCrypto::new(&SecretKey::from_bytes([9; 32]));
        let rec = Record {
            name: "a".into(),
            next_version: 1,
            versions: vec![],
            gone_since: None,
            absences: Vec::new(),
        };
        let (ka, kb) = (c.key_of("a"), c.key_of("b"));
        let sealed = c.seal(&ka, &rec);
        assert!(c.open_head(&ka, &sealed).is_ok());
        assert!(c.open_head(&kb, &sealed).is_err());
        assert!(is_catalog_key(&ka) && !is_catalog_key(&ka[1..]));
    }

    #[test]
    fn pages_are_bound_to_their_name_and_id_and_are_never_heads() {
        let c = CatalogCrypto::new(&SecretKey::from_bytes([9; 32]));
        let record = |name: &str| Record {
            name: name.into(),
            next_version: 3 * PAGE_VERSIONS as u32 + 2,
            versions: (1..=3 * PAGE_VERSIONS as u32 + 1)
                .map(|n| version(n, None))
                .collect(),
            gone_since: None,
            absences: Vec::new(),
        };
        let written = |name: &str| c.entries(&c.key_of(name), &Layout::default(), &record(name));
        let (a, b) = (written("a"), written("b"));
        // 97 versions: two pages of 32 (the oldest 64) and a head of 33.
        assert_eq!(a.len(), 3);
        let (a0, a1, head) = (&a[0], &a[1], &a[2]);
        assert_eq!(a0.0, c.page_key("a", 0));
        assert_eq!(a1.0, c.page_key("a", 1));
        assert_eq!(head.0, c.key_of("a"));
        let value = |e: &(Vec<u8>, Option<Vec<u8>>)| e.1.clone().expect("written");
        for (key, _) in &a {
            assert!(is_catalog_key(key));
        }
        // No name's key is a page's: the page key's input has a NUL.
        assert_ne!(c.page_key("a", 0), c.key_of("a\0page\0"));
        let page = c.open_page(&a0.0, &value(a0), "a", 0).expect("opens");
        assert_eq!(page.versions.len(), PAGE_VERSIONS);
        assert_eq!(page.versions[0].number, 1);
        // A page under another page's key, another name's, or a head's
        // does not authenticate; a head under a page's key neither.
        assert!(c.open_entry(&a1.0, &value(a0)).is_err());
        assert!(c.open_entry(&b[0].0, &value(a0)).is_err());
        assert!(c.open_entry(&head.0, &value(a0)).is_err());
        assert!(c.open_entry(&a0.0, &value(head)).is_err());
        // Opened where the other is wanted, each is refused.
        assert!(c.open_head(&a0.0, &value(a0)).is_err());
        assert!(c.open_page(&head.0, &value(head), "a", 0).is_err());
        assert!(c.open_page(&a0.0, &value(a0), "a", 1).is_err());
        assert!(c.open_page(&a0.0, &value(a0), "b", 0).is_err());
        // The head lists both pages, and whole, the record is as written.
        let Entry::Head(h) = c.open_entry(&head.0, &value(head)).expect("opens") else {
            panic!("a head");
        };
        assert_eq!(
            h.pages,
            [
                PageRef {
                    id: 0,
                    versions: 32
                },
                PageRef {
                    id: 1,
                    versions: 32
                }
            ]
        );
        let pages = [a0, a1]
            .iter()
            .enumerate()
            .map(|(id, e)| c.open_page(&e.0, &value(e), "a", id as u32).ok())
            .collect();
        let (whole, layout) = h.clone().assemble(pages).expect("whole");
        assert_eq!(whole, record("a"));
        // A page missing, or one page given for another, is damage.
        let first = c.open_page(&a0.0, &value(a0), "a", 0).ok();
        assert!(h.clone().assemble(vec![first.clone(), None]).is_err());
        assert!(h.assemble(vec![first.clone(), first]).is_err());
        // A page is written once: adding a version rewrites the head only.
        let mut more = record("a");
        more.versions.push(version(98, None));
        more.next_version += 1;
        let again = c.entries(&c.key_of("a"), &layout, &more);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, c.key_of("a"));
        // Removing a version of a page rewrites that page; all of its
        // versions, deletes it.
        let mut fewer = record("a");
        fewer.versions.remove(3);
        let cut = c.entries(&c.key_of("a"), &layout, &fewer);
        assert_eq!(cut.len(), 2);
        assert_eq!(cut[0].0, a0.0);
        assert!(cut[0].1.is_some());
        fewer.versions.drain(..PAGE_VERSIONS - 1);
        let cut = c.entries(&c.key_of("a"), &layout, &fewer);
        assert_eq!(cut.len(), 2);
        assert_eq!(cut[0], (a0.0.clone(), None));
        // No versions: the head and every page go.
        fewer.versions.clear();
        let gone = c.entries(&c.key_of("a"), &layout, &fewer);
        assert_eq!(gone.len(), 3);
        assert!(gone.iter().all(|(_, v)| v.is_none()));
    }

    #[test]
    fn name_version_suffix() {
        assert_eq!(parse_name_version("a@2"), ("a", Some(2)));
        assert_eq!(parse_name_version("a@b"), ("a@b", None));
        assert_eq!(parse_name_version("me@host/x@10"), ("me@host/x", Some(10)));
        assert_eq!(parse_name_version("@5"), ("@5", None));
    }
}
