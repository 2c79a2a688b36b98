//! `verify` and `gc`: check the whole store against its own rules, and
//! repair what can be repaired without losing anything a name reaches.
//!
//! Verify reads every entry once. Each node is authenticated at the height it
//! claims to have (a node's height is not stored; it is the one height at
//! which it authenticates, found by trying the few possible ones, leaves
//! first). From the superchunks' child lists and the catalog's versions it
//! recomputes what every count must at least be: one per stored parent
//! listing the node, one per named version whose root it is. A count above
//! that is a put of a content without a name, which is legitimate; a count
//! below it is wrong, and would let a later delete remove a node still in
//! use. A node with count zero is an orphan (left by an interrupted put on a
//! backend without transactions).

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::{Batch, Op};
use crate::catalog;
use crate::error::{Result, StoreError};
use crate::node;
use crate::store::{Releaser, Store};

mod node_table;

use node_table::{NodeId, NodeTable, Stored};

/// How many keys verify looks up at once, as a read would.
const LOOKUPS_AT_ONCE: usize = 65_536;

/// How many orphans gc reads again at once, for the children of those
/// that are superchunks.
const ORPHANS_READ_AT_ONCE: usize = 1024;

/// A problem verify found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    /// A node's value does not authenticate at any height.
    Tampered {
        /// The node's key (hex).
        node: String,
    },
    /// A node listed by a parent (or a named root) is not stored.
    Missing {
        /// The missing node (hex).
        node: String,
    },
    /// An entry the backend holds but cannot decode (its stored form is
    /// damaged, not only its sealed value).
    Unreadable {
        /// The entry's key (hex): a node's digest, or a key of no kind the
        /// store writes.
        key: String,
        /// What the backend said.
        detail: String,
    },
    /// A catalog record does not authenticate or parse, or (`bad_pages`)
    /// authenticates with pages that do not: under the store's
    /// own key (proven when it was opened, [`Store::key_checked`]), it is
    /// corrupt or forged, and what it held (a name, its versions) cannot
    /// be read, and [`Store::gc`] removes it. Under a key not proven to be
    /// the store's it may be another key's record, and gc leaves it
    /// ([`GcReport::records_left`]). (A catalog entry the backend cannot
    /// decode at all is [`Finding::Unreadable`].)
    BadRecord {
        /// The record's key (hex).
        key: String,
        /// Whether the record itself authenticates, and what is damaged is
        /// a page it lists: missing, or not the one it lists (lost, or an
        /// older copy put back). Its name is then one of
        /// [`VerifyReport::broken_names`].
        bad_pages: bool,
    },
    /// A page of a catalog record (a name's older versions) that
    /// authenticates, but that no name's record lists: left by a removal
    /// that did not finish, or by a record removed as damaged. Nothing
    /// reads it, and [`Store::gc`] removes it; the contents its versions
    /// held keep their counts, as puts without a name.
    OrphanPage {
        /// The page's key (hex).
        key: String,
    },
    /// A catalog record that authenticates under the store's key but was
    /// written by a newer seccs, in a format this build does not read: not
    /// damage. Its name and versions cannot be read here, so the store
    /// cannot be fully checked by this build (the nodes it references are
    /// not known), and [`Store::gc`] changes nothing while one is there.
    NewerRecord {
        /// The record's key (hex): its name cannot be read.
        key: String,
        /// Its format byte.
        format: u8,
        /// The newest format this build reads.
        newest: u8,
    },
    /// A node's stored count is below what its parents and names need.
    WrongCount {
        /// The node (hex).
        node: String,
        /// The stored count.
        stored: u64,
        /// The least correct count.
        expected: u64,
    },
    /// A named root that authenticates, but at another height than the
    /// store's chunk size gives its length: the content cannot be read with
    /// these parameters (`config.toml`'s chunk size is not the one the store
    /// was made with).
    WrongHeight {
        /// The root (hex).
        node: String,
        /// The height it authenticates at.
        found: u8,
        /// The height the store's parameters give its length.
        expected: u8,
    },
    /// A node with count zero: nothing refers to it.
    Orphan {
        /// The node (hex).
        node: String,
    },
}

/// One line for a person; `--json` gives the same fields as JSON.
impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Tampered { node } => {
                write!(f, "tampered: node {node} does not authenticate")
            }
            Finding::Missing { node } => write!(f, "missing: node {node} is not stored"),
            // The backend's detail names the entry.
            Finding::Unreadable { detail, .. } => write!(f, "unreadable: {detail}"),
            Finding::BadRecord {
                key,
                bad_pages: false,
            } => write!(
                f,
                "bad-record: catalog record {key} does not authenticate under the store's key \
                 (corrupt or forged): the name and versions it held cannot be read \
                 (`seccs gc` removes it)"
            ),
            Finding::BadRecord {
                key,
                bad_pages: true,
            } => write!(
                f,
                "bad-record: catalog record {key} authenticates, but a page of older versions \
                 it lists is missing or is not the one it lists (lost, or an older copy put \
                 back): its name, listed below, cannot be read (`seccs gc` removes the record \
                 with its pages)"
            ),
            Finding::OrphanPage { key } => write!(
                f,
                "orphan-page: catalog page {key} authenticates but no name's record lists it \
                 (`seccs gc` removes it)"
            ),
            Finding::NewerRecord {
                key,
                format,
                newest,
            } => write!(
                f,
                "newer-record: catalog record {key} authenticates under the store's key but was \
                 written by a newer seccs (format {format}; this build reads 1 to {newest}): \
                 this build cannot read its name or versions, so it cannot fully check the \
                 store, and `seccs gc` leaves the store as it is; use a newer seccs"
            ),
            Finding::WrongCount {
                node,
                stored,
                expected,
            } => write!(
                f,
                "wrong-count: node {node} has count {stored}, needs at least {expected}"
            ),
            Finding::WrongHeight {
                node,
                found,
                expected,
            } => write!(
                f,
                "wrong-height: root {node} authenticates at height {found}, its length gives \
                 {expected} (a chunk size other than the store's?)"
            ),
            Finding::Orphan { node } => {
                write!(
                    f,
                    "orphan: node {node} has count zero (`seccs gc` removes it)"
                )
            }
        }
    }
}

/// What verify found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Nodes checked.
    pub nodes: u64,
    /// Catalog names checked.
    pub names: u64,
    /// Every problem.
    pub findings: Vec<Finding>,
    /// Names whose content cannot be read back whole.
    pub broken_names: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.broken_names.is_empty()
    }
}

/// What gc did, and what it left because no repair keeps every readable
/// content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Entries removed (orphans and the nodes only they referred to; not
    /// counting [`GcReport::records_removed`]).
    pub removed: u64,
    /// Catalog records removed because they failed to authenticate under
    /// the store's key (hex keys; each was verify's
    /// [`Finding::BadRecord`]). Only a store whose key was proven when it
    /// was opened ([`Store::key_checked`]) removes them. The contents they
    /// held keep their counts, as puts without a name.
    pub records_removed: Vec<String>,
    /// Catalog records that fail to authenticate (hex keys; each is
    /// verify's [`Finding::BadRecord`], also in [`GcReport::remaining`]),
    /// left because the key was not proven to be the store's when the
    /// store was opened ([`Store::key_checked`]): such a record may be
    /// another key's, not damage. Where the key opened other records, it
    /// may be a wrong key that once wrote into the backend, and these the
    /// records of the store's own. Open the store with its key proven (a
    /// store directory, a backend with the store's marker) to have gc
    /// remove damaged ones.
    pub records_left: Vec<String>,
    /// Catalog entries removed because the backend cannot decode them at
    /// all (hex keys; each was verify's [`Finding::Unreadable`]), such as a
    /// Redis value too short for its count: nothing can read them, under
    /// any key. Only a store whose key was proven when it was opened
    /// removes them, as it does [`GcReport::records_removed`]; the
    /// contents they held keep their counts, as puts without a name. An
    /// entry that a walk reads whole but a lookup cannot (damage that only
    /// lookups meet) is left: its name's versions can still be listed.
    pub unreadable_records_removed: Vec<String>,
    /// Pages of catalog records that no name's record listed, removed (hex
    /// keys; each was verify's [`Finding::OrphanPage`]). They authenticate
    /// under the store's key, so removing them needs no proof of it. The
    /// contents their versions held keep their counts, as puts without a
    /// name.
    pub pages_removed: Vec<String>,
    /// Counts raised to what parents and names need.
    pub counts_fixed: u64,
    /// Catalog records (hex keys) that authenticate but that a newer seccs
    /// wrote (verify's [`Finding::NewerRecord`]). While there is one, gc
    /// changes nothing: the nodes such a record references cannot be told
    /// here, and an orphan or a low count may be its. They are also in
    /// [`GcReport::remaining`].
    pub newer_records: Vec<String>,
    /// Verify's findings that gc does not repair: tampered, missing and
    /// unreadable nodes, roots at the wrong height, and bad or unreadable
    /// catalog records of a store whose key was not proven. gc never
    /// deletes a counted node it cannot read, since a wrong chunk size
    /// makes sound nodes look the same, nor a record that a wrong key could
    /// make look bad.
    pub remaining: Vec<Finding>,
    /// Names whose content cannot be read back whole (see
    /// [`VerifyReport::broken_names`]).
    pub broken_names: Vec<String>,
    /// Why the backend could not free the space of what was removed, if it
    /// could not (its error: on the embedded backend, a damaged block the
    /// compaction reads, or a full disk, said with what to do). Everything else in the report was applied before;
    /// the space stays taken until a gc on an undamaged store frees it.
    pub space_not_reclaimed: Option<String>,
    /// Why the space of removed entries was not given back now though it
    /// comes back later by itself (a PostgreSQL role that may not VACUUM
    /// its table): said once, and gc still succeeds.
    pub space_later: Option<String>,
}

impl GcReport {
    /// Whether the store is clean after gc (records it removed were
    /// repaired) and its space was reclaimed.
    pub fn is_clean(&self) -> bool {
        self.remaining.is_empty()
            && self.broken_names.is_empty()
            && self.space_not_reclaimed.is_none()
    }
}

/// How many bytes of nodes a walk gathers before it opens them (a few
/// nodes in this crate's tests, so that their walks open many groups).
const OPEN_AT_ONCE_BYTES: usize = if cfg!(test) { 4096 } else { 4 << 20 };

/// Nodes met by a walk, waiting to be opened (see [`Store::scan`]).
struct Opening {
    parallel: bool,
    /// Key, sealed value and count of each.
    pending: Vec<(Vec<u8>, Vec<u8>, u64)>,
    /// Their keys' and values' bytes.
    bytes: usize,
}

impl Opening {
    /// Adds a node met by the walk, opening the group once it is large.
    fn add(
        &mut self,
        store: &Store,
        nodes: &mut NodeTable,
        key: &[u8],
        entry: &crate::backend::Entry,
    ) -> std::result::Result<(), node_table::TooManyNodes> {
        self.bytes += key.len() + entry.value.len();
        self.pending
            .push((key.to_vec(), entry.value.clone(), entry.count));
        if self.bytes >= OPEN_AT_ONCE_BYTES {
            self.open(store, nodes)?;
        }
        Ok(())
    }

    /// Opens every node gathered, at whichever height it authenticates,
    /// and holds it in `nodes` with the children it lists, in walk order.
    fn open(
        &mut self,
        store: &Store,
        nodes: &mut NodeTable,
    ) -> std::result::Result<(), node_table::TooManyNodes> {
        let open = |(key, value, _): &(Vec<u8>, Vec<u8>, u64)| store.open_at_any_height(key, value);
        let found: Vec<_> = match self.parallel {
            true => self.pending.par_iter().map(open).collect(),
            false => self.pending.iter().map(open).collect(),
        };
        for ((key, _, count), found) in self.pending.drain(..).zip(found) {
            let (height, as_root, children) = match found {
                Some((h, r, c)) => (Some(h), r, c),
                None => (None, false, Vec::new()),
            };
            let stored = Stored {
                count,
                height,
                as_root,
            };
            nodes.hold(&key, stored, children.iter().map(|c| c.digest.as_slice()))?;
        }
        self.bytes = 0;
        Ok(())
    }
}

/// A catalog record verify reports as bad, and gc removes.
struct BadRecordKey {
    key: Vec<u8>,
    /// For a head that authenticates, but whose pages do not: the name it
    /// is the record of (broken while the record is there).
    name: Option<String>,
}

/// What a walk of the backend found.
struct Scan {
    /// Every node held, and every digest listed by a superchunk or a
    /// name.
    nodes: NodeTable,
    /// Every readable catalog record.
    records: Vec<catalog::Record>,
    /// The keys of the readable records, for [`Store::check_lookups`].
    record_keys: Vec<Vec<u8>>,
    /// Records that do not authenticate or parse, and heads whose pages
    /// are missing or are not the ones they list.
    bad_records: Vec<BadRecordKey>,
    /// The keys of the pages of those heads that were found: removed with
    /// them, reported with them.
    bad_record_pages: Vec<Vec<u8>>,
    /// The keys of pages that no head lists.
    orphan_pages: Vec<Vec<u8>>,
    /// The keys and formats of records that authenticate but that a newer
    /// seccs wrote.
    newer_records: Vec<(Vec<u8>, u8)>,
    /// Entries the backend holds but cannot decode: key and why.
    damaged: Vec<(Vec<u8>, String)>,
}

/// What [`Store::parents_listing`] found.
#[derive(Default)]
pub(crate) struct ParentsListing {
    /// How many times readable superchunks list the digest.
    pub(crate) parents: u64,
    /// Entries (or ranges of them) the backend could not decode.
    pub(crate) damaged: Vec<Vec<u8>>,
    /// Superchunks that authenticate at no height, or whose children do
    /// not decode.
    pub(crate) unopened: Vec<Vec<u8>>,
}

impl Store {
    /// How many times stored superchunks list `digest` as a child; the
    /// keys of the entries (or ranges of them) that the backend could not
    /// decode; and the keys of superchunks that authenticate at no height
    /// or whose list of children does not decode. Neither of the last two
    /// was taken to list `digest`, though any of them may. Reads every
    /// superchunk (a value's first byte, its kind, is in the clear and
    /// says which entries are), and no leaf. Damage that may be to catalog
    /// records is left out: the listing of the names reports it.
    pub(crate) fn parents_listing(&self, digest: &[u8]) -> Result<ParentsListing> {
        let digest_len = self.wrapper().digest_len();
        let max_height = self.params().height(u64::MAX);
        let mut listing = ParentsListing::default();
        self.backend().walk(
            &[],
            &mut |key, entry| {
                if catalog::is_catalog_key(key) || entry.value.first() != Some(&node::SUPERCHUNK) {
                    return Ok(());
                }
                let children = (1..=max_height).find_map(|height| {
                    let opened = self.open_node(height, false, key, &entry.value).ok()?;
                    Some(node::decode_children(opened, digest_len))
                });
                match children {
                    Some(Some(children)) => {
                        listing.parents +=
                            children.iter().filter(|c| c.digest == digest).count() as u64;
                    }
                    _ => listing.unopened.push(key.to_vec()),
                }
                Ok(())
            },
            // One entry the backend cannot decode must not stop every
            // delete: it is skipped, and the delete reports it.
            Some(&mut |key, _| {
                if !catalog::damage_may_hold_records(key, digest_len) {
                    listing.damaged.push(key.to_vec());
                }
            }),
        )?;
        Ok(listing)
    }

    /// Opens a stored node at whichever height and root-ness it
    /// authenticates at (leaves first), as verify reads every node: its
    /// height, whether it opened only as a root, and its children; `None`
    /// when it authenticates at no height, or is a superchunk whose list
    /// of children does not decode (tampered).
    pub(crate) fn open_at_any_height(
        &self,
        key: &[u8],
        value: &[u8],
    ) -> Option<(u8, bool, Vec<node::Child>)> {
        let digest_len = self.wrapper().digest_len();
        let max_height = self.params().height(u64::MAX);
        for height in 0..=max_height {
            for is_root in [false, true] {
                if let Ok(opened) = self.open_node(height, is_root, key, value) {
                    let children = if height == 0 {
                        Some(Vec::new())
                    } else {
                        node::decode_children(opened, digest_len)
                    };
                    return children.map(|children| (height, is_root, children));
                }
            }
        }
        None
    }

    /// One walk of every entry: catalog records opened as met, nodes a
    /// group at a time (on the threads of the writer lock's pool with
    /// `parallel`).
    fn scan(&self, parallel: bool) -> Result<Scan> {
        let mut nodes = NodeTable::new();
        let mut opening = Opening {
            parallel,
            pending: Vec::new(),
            bytes: 0,
        };
        let mut heads = Vec::new();
        let mut pages = HashMap::new();
        let mut record_keys = Vec::new();
        let mut bad_records = Vec::new();
        let mut newer_records = Vec::new();
        let mut damaged = Vec::new();
        let mut on_damage = |key: &[u8], e: crate::backend::BackendError| {
            damaged.push((key.to_vec(), e.to_string()));
        };
        let mut overflow = false;
        let walked = self.backend().walk(
            &[],
            &mut |key, entry| {
                if catalog::is_catalog_key(key) {
                    match self.catalog().open_entry(key, &entry.value) {
                        Ok(catalog::Entry::Head(head)) => {
                            heads.push((key.to_vec(), head));
                            record_keys.push(key.to_vec());
                        }
                        Ok(catalog::Entry::Page(page)) => {
                            pages.insert(key.to_vec(), page);
                            record_keys.push(key.to_vec());
                        }
                        Err(StoreError::NewerFormat { found, .. }) => {
                            newer_records.push((key.to_vec(), found));
                        }
                        Err(_) => bad_records.push(BadRecordKey {
                            key: key.to_vec(),
                            name: None,
                        }),
                    }
                    return Ok(());
                }
                if opening.add(self, &mut nodes, key, entry).is_err() {
                    overflow = true;
                    return Err(crate::backend::BackendError::other(
                        "verify",
                        "too many nodes",
                    ));
                }
                Ok(())
            },
            Some(&mut on_damage),
        );
        if overflow {
            return Err(too_many_nodes());
        }
        walked?;
        opening
            .open(self, &mut nodes)
            .map_err(|_| too_many_nodes())?;
        let assembled = self.assemble(heads, &mut pages);
        let records: Vec<catalog::Record> = assembled.records.into_iter().map(|(_, r)| r).collect();
        for version in records.iter().flat_map(|r| &r.versions) {
            nodes
                .intern(version.content_ref.digest())
                .map_err(|_| too_many_nodes())?;
        }
        let mut bad_record_pages = Vec::new();
        for head in assembled.damaged {
            bad_records.push(BadRecordKey {
                key: head.key,
                name: Some(head.name),
            });
            bad_record_pages.extend(head.pages_found);
        }
        let mut orphan_pages: Vec<Vec<u8>> = pages.into_keys().collect();
        orphan_pages.sort();
        let mut scan = Scan {
            nodes,
            records,
            record_keys,
            bad_records,
            bad_record_pages,
            orphan_pages,
            newer_records,
            damaged,
        };
        self.check_lookups(&mut scan)?;
        Ok(scan)
    }

    /// Looks up every entry the walk found as a read would (see
    /// [`Backend::check_lookups`](crate::backend::Backend::check_lookups)):
    /// a node a lookup cannot read is damaged, as a read of it would fail.
    fn check_lookups(&self, scan: &mut Scan) -> Result<()> {
        let mut keys = scan
            .nodes
            .held_nodes()
            .map(|(id, _)| scan.nodes.key(id))
            .chain(scan.record_keys.iter().map(Vec::as_slice));
        let mut failed = Vec::new();
        // A group at a time: a list of every key would cost as much memory
        // again as the node table's keys.
        loop {
            let group: Vec<&[u8]> = keys.by_ref().take(LOOKUPS_AT_ONCE).collect();
            if group.is_empty() {
                break;
            }
            self.backend().check_lookups(&group, &mut |key, e| {
                failed.push((key.to_vec(), e.to_string()));
            })?;
        }
        drop(keys);
        for (key, detail) in failed {
            scan.nodes.forget(&key);
            scan.damaged.push((key, detail));
        }
        Ok(())
    }

    /// Walks every entry, authenticates every node and record, recomputes
    /// reference counts, and reports every problem.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.lock_writer().run(|pool| {
            let scan = self.scan(pool && self.is_parallel())?;
            Ok(self.examine(&scan))
        })
    }

    /// Verify's rules applied to one walk of the backend.
    fn examine(&self, scan: &Scan) -> VerifyReport {
        let Scan {
            nodes,
            records,
            bad_records,
            orphan_pages,
            newer_records,
            damaged,
            ..
        } = scan;
        let mut report = VerifyReport {
            nodes: nodes.held() as u64,
            names: records.len() as u64,
            ..Default::default()
        };
        let hex = seccs_core::hexenc::encode;
        let mut broken: HashSet<NodeId> = HashSet::new();
        for (key, detail) in damaged {
            // A catalog entry the backend cannot decode is unreadable like
            // any other entry (it breaks no node); one it reads whole but
            // that fails to authenticate is a bad record.
            report.findings.push(Finding::Unreadable {
                key: hex(key),
                detail: detail.clone(),
            });
            // One that nothing lists and that lists nothing breaks nothing.
            if !catalog::is_catalog_key(key)
                && let Some(id) = nodes.id(key)
            {
                broken.insert(id);
            }
        }
        for record in bad_records {
            report.findings.push(Finding::BadRecord {
                key: hex(&record.key),
                bad_pages: record.name.is_some(),
            });
        }
        for key in orphan_pages {
            report.findings.push(Finding::OrphanPage { key: hex(key) });
        }
        for (key, format) in newer_records {
            report.findings.push(Finding::NewerRecord {
                key: hex(key),
                format: *format,
                newest: catalog::FORMAT,
            });
        }
        let needed = needed_counts(nodes, records);
        for (id, node) in nodes.held_nodes() {
            if node.height.is_none() {
                report.findings.push(Finding::Tampered {
                    node: hex(nodes.key(id)),
                });
                broken.insert(id);
            }
        }
        // A backend may report damage by the prefix of a range it cannot
        // read (a damaged block of the embedded store): a node under one is
        // stored but unreadable, reported so already, not also missing.
        let unreadable_ranges: Vec<&[u8]> = damaged
            .iter()
            .map(|(key, _)| key.as_slice())
            .filter(|key| !catalog::is_catalog_key(key))
            .collect();
        for (id, &need) in needed.iter().enumerate() {
            let id = id as NodeId;
            if need == 0 {
                continue;
            }
            let digest = nodes.key(id);
            match nodes.stored(id) {
                // Reported as unreadable already.
                None if broken.contains(&id) => {}
                None if unreadable_ranges.iter().any(|r| digest.starts_with(r)) => {
                    broken.insert(id);
                }
                None => {
                    report.findings.push(Finding::Missing { node: hex(digest) });
                    broken.insert(id);
                }
                Some(n) if n.count < need => report.findings.push(Finding::WrongCount {
                    node: hex(digest),
                    stored: n.count,
                    expected: need,
                }),
                Some(_) => {}
            }
        }
        // A read finds a root at the height its length gives; verify finds
        // every node at whichever height it authenticates at, so it checks
        // that the two agree.
        for record in records {
            for v in &record.versions {
                let Some(id) = nodes.id(v.content_ref.digest()) else {
                    continue;
                };
                let expected = self.params().height(v.content_ref.len());
                if let Some(found) = nodes.stored(id).and_then(|n| n.height)
                    && found != expected
                    && broken.insert(id)
                {
                    report.findings.push(Finding::WrongHeight {
                        node: hex(nodes.key(id)),
                        found,
                        expected,
                    });
                }
            }
        }
        // With a wrapper that distinguishes roots, a read opens a named
        // version's root as a root and every child as not one: a node that
        // authenticates only the other way (a root listed as a child, or a
        // store written by a wrapper that does not distinguish roots) fails
        // that read.
        if self.params().wrapper().distinguishes_root() {
            let named_roots = records
                .iter()
                .flat_map(|r| &r.versions)
                .filter_map(|v| nodes.id(v.content_ref.digest()))
                .filter(|&id| {
                    nodes
                        .stored(id)
                        .is_some_and(|n| n.height.is_some() && !n.as_root)
                });
            let children = nodes
                .edges()
                .map(|(_, child)| child)
                .filter(|&id| nodes.stored(id).is_some_and(|n| n.as_root));
            let misplaced: Vec<NodeId> = named_roots.chain(children).collect();
            for id in misplaced {
                if broken.insert(id) {
                    report.findings.push(Finding::Tampered {
                        node: hex(nodes.key(id)),
                    });
                }
            }
        }
        for (id, node) in nodes.held_nodes() {
            // A node that parents or names need has a wrong count, found
            // above; only one nothing needs is an orphan, for gc to remove.
            if node.count == 0 && needed[id as usize] == 0 {
                report.findings.push(Finding::Orphan {
                    node: hex(nodes.key(id)),
                });
            }
        }
        // A broken node breaks every ancestor.
        if !broken.is_empty() {
            let parents = nodes.parents();
            let mut stack: Vec<NodeId> = broken.iter().copied().collect();
            while let Some(id) = stack.pop() {
                for parent in parents.of(id) {
                    if broken.insert(parent) {
                        stack.push(parent);
                    }
                }
            }
        }
        for record in records {
            if record.versions.iter().any(|v| {
                nodes
                    .id(v.content_ref.digest())
                    .is_some_and(|id| broken.contains(&id))
            }) {
                report.broken_names.push(record.name.clone());
            }
        }
        // Its record is known, but not every version of it can be read.
        report
            .broken_names
            .extend(bad_records.iter().filter_map(|r| r.name.clone()));
        report.broken_names.sort();
        report.findings.sort_by_key(|f| format!("{f:?}"));
        report
    }

    /// Raises counts that are too low, then removes orphans (count zero) and
    /// the nodes only they referred to, then lets the backend give the
    /// space of removed entries back
    /// ([`reclaim_space`](crate::backend::Backend::reclaim_space)). Never
    /// removes a node that a name reaches: such a node's count is at least
    /// one after the first step. An orphan that does not authenticate goes
    /// too (nothing counts it), but the children it listed cannot be told,
    /// so they keep their counts. What gc cannot repair is returned in
    /// [`GcReport::remaining`].
    ///
    /// In a store whose key was proven to be the store's when it was
    /// opened ([`Store::key_checked`]: by the backend's marker or by opening
    /// every record in [`Store::open`], by the check value in
    /// [`crate::dir::StoreDir::open_store`]), gc also removes the catalog
    /// records that fail to authenticate, and lists them in
    /// [`GcReport::records_removed`]: under the store's own key such a
    /// record is corrupt or forged, and nothing can ever read it (AES-SIV
    /// cannot be repaired). What it held cannot be told, so the contents
    /// its versions held keep their counts, as puts without a name
    /// (`verify` cannot tell them from such puts; `delete` of a reference
    /// undoes them). Such a store also removes the catalog entries that
    /// the backend cannot decode at all (verify's `unreadable`), listed in
    /// [`GcReport::unreadable_records_removed`]. A store whose key was not
    /// proven leaves both, and lists the records it left in
    /// [`GcReport::records_left`]: under a wrong key every record looks
    /// bad, and a key that opens some records but not others may be a
    /// wrong one that once wrote into the store's backend, the records it
    /// does not open the store's own.
    ///
    /// A store with a catalog record that a newer seccs wrote (verify's
    /// [`Finding::NewerRecord`]) is left as it is, whole: gc removes no
    /// record, node or orphan and changes no count, and lists the records
    /// in [`GcReport::newer_records`]. Such a record's versions reference
    /// nodes this build cannot tell, so any orphan or count may be its.
    pub fn gc(&self) -> Result<GcReport> {
        self.collect(true)
    }

    /// [`Store::gc`]; bad catalog records are removed only with
    /// `remove_bad_records` (recovery after a crash, which nobody reads
    /// the report of, leaves them to a gc that says so).
    pub(crate) fn collect(&self, remove_bad_records: bool) -> Result<GcReport> {
        self.lock_writer()
            .run(|pool| self.collect_locked(remove_bad_records, pool && self.is_parallel()))
    }

    /// [`Store::collect`], under the writer lock (`parallel`: in its pool).
    fn collect_locked(&self, remove_bad_records: bool, parallel: bool) -> Result<GcReport> {
        // A damaged entry is left as it is: gc cannot tell what it held.
        let mut scan = self.scan(parallel)?;
        let mut report = GcReport::default();
        if !scan.newer_records.is_empty() {
            // Nothing is changed: what verify finds is what is left.
            report.newer_records = scan
                .newer_records
                .iter()
                .map(|(key, _)| seccs_core::hexenc::encode(key))
                .collect();
            let found = self.examine(&scan);
            report.remaining = found.findings;
            report.broken_names = found.broken_names;
            return Ok(report);
        }
        if remove_bad_records && self.key_checked() {
            // A catalog entry the walk could not decode holds nothing
            // anything can read; one it read whole (a lookup failed) does.
            let readable: HashSet<&[u8]> = scan.record_keys.iter().map(Vec::as_slice).collect();
            let (undecodable, damaged): (Vec<_>, Vec<_>) = std::mem::take(&mut scan.damaged)
                .into_iter()
                .partition(|(key, _)| {
                    catalog::is_catalog_key(key) && !readable.contains(key.as_slice())
                });
            scan.damaged = damaged;
            let undecodable: Vec<Vec<u8>> = undecodable.into_iter().map(|(key, _)| key).collect();
            let mut batch = Batch::new();
            for key in scan
                .bad_records
                .iter()
                .map(|r| &r.key)
                .chain(&scan.bad_record_pages)
                .chain(&undecodable)
            {
                batch.delete(key.clone());
            }
            if !batch.is_empty() {
                self.backend().apply_owned(batch)?;
            }
            let hex = |keys: Vec<Vec<u8>>| -> Vec<String> {
                keys.iter().map(|k| seccs_core::hexenc::encode(k)).collect()
            };
            // Their names go with them: none is broken now.
            let removed = std::mem::take(&mut scan.bad_records);
            report.records_removed = hex(removed.into_iter().map(|r| r.key).collect());
            scan.bad_record_pages.clear();
            report.unreadable_records_removed = hex(undecodable);
        } else if remove_bad_records {
            report.records_left = scan
                .bad_records
                .iter()
                .map(|r| seccs_core::hexenc::encode(&r.key))
                .collect();
        }
        if !scan.orphan_pages.is_empty() {
            // Authentic, and listed by no record: nothing can reach it,
            // whoever's key this store was opened with.
            let mut batch = Batch::new();
            for key in &scan.orphan_pages {
                batch.delete(key.clone());
            }
            self.backend().apply_owned(batch)?;
            report.pages_removed = std::mem::take(&mut scan.orphan_pages)
                .iter()
                .map(|k| seccs_core::hexenc::encode(k))
                .collect();
        }
        let needed = needed_counts(&scan.nodes, &scan.records);
        let mut batch = Batch::new();
        for (id, node) in scan.nodes.held_nodes() {
            let need = needed[id as usize];
            if node.count < need {
                batch.set_count(scan.nodes.key(id).to_vec(), need);
                report.counts_fixed += 1;
            }
        }
        if !batch.is_empty() {
            self.backend().apply_owned(batch)?;
        }
        let mut releaser = Releaser::tolerant();
        let mut batch = Batch::new();
        let orphans: Vec<(NodeId, Stored)> = scan
            .nodes
            .held_nodes()
            .filter(|&(id, node)| needed[id as usize].max(node.count) == 0)
            .collect();
        for group in orphans.chunks(ORPHANS_READ_AT_ONCE) {
            for &(id, _) in group {
                batch.delete(scan.nodes.key(id).to_vec());
            }
            self.release_children(&mut releaser, &scan.nodes, group)?;
        }
        batch.append(releaser.into_batch());
        let deleted: HashSet<&[u8]> = batch
            .ops()
            .iter()
            .filter_map(|op| match op {
                Op::Delete { key } => Some(key.as_slice()),
                _ => None,
            })
            .collect();
        report.removed = deleted.len() as u64;
        // What verify would find now: the same walk without what was
        // removed, and with every count at least what is needed.
        for key in &deleted {
            scan.nodes.forget(key);
        }
        for (id, &need) in needed.iter().enumerate() {
            scan.nodes.raise_count(id as NodeId, need);
        }
        if !batch.is_empty() {
            self.backend().apply_owned(batch)?;
        }
        let after = self.examine(&scan);
        report.remaining = after.findings;
        report.broken_names = after.broken_names;
        // Entries removed by `rm` before, and those removed just now, may
        // still hold disk space in backends that free it lazily. The
        // batches above are applied by now, so a failure here (damage the
        // compaction reads) goes into the report rather than replacing it.
        let reclaimed = self.backend().reclaim_space();
        if let Ok(note) = reclaimed.as_ref() {
            report.space_later = note.clone();
        }
        if let Err(e) = reclaimed {
            let full = matches!(e, crate::backend::BackendError::StorageFull { .. });
            report.space_not_reclaimed = Some(if full {
                // gc is the command meant to give room back: on a disk the
                // store has to itself, "free room" alone leaves no way out.
                format!(
                    "{e}. The space gc would give back is held by data no name needs (removed \
                     entries, and what a put stopped by a full disk wrote), and giving it back \
                     rewrites what stays, which needs room first; if nothing else on that disk \
                     can go, copy the store with `cp -a` to a disk with room and run gc there. \
                     The store is consistent meanwhile"
                )
            } else {
                e.to_string()
            });
        }
        Ok(report)
    }

    /// Drops the references that superchunks among `orphans` hold to their
    /// children, as their removal does. A walk keeps no child lengths, so
    /// each is read again; one that no longer opens as it did releases
    /// nothing (its children keep their counts: a leak, never a loss).
    fn release_children(
        &self,
        releaser: &mut Releaser,
        nodes: &NodeTable,
        orphans: &[(NodeId, Stored)],
    ) -> Result<()> {
        let superchunks: Vec<(NodeId, u8)> = orphans
            .iter()
            .filter_map(|&(id, node)| match node.height {
                Some(height @ 1..) => Some((id, height)),
                _ => None,
            })
            .collect();
        let keys: Vec<&[u8]> = superchunks.iter().map(|&(id, _)| nodes.key(id)).collect();
        let entries = self.backend().get_many(&keys)?;
        for ((key, (_, height)), entry) in keys.iter().zip(superchunks).zip(entries) {
            let Some(entry) = entry else { continue };
            if let Some((found, _, children)) = self.open_at_any_height(key, &entry.value)
                && found == height
            {
                let children = children.into_iter().map(|c| (c.digest, c.len)).collect();
                self.release(releaser, children, height - 1, false)?;
            }
        }
        Ok(())
    }
}

/// What each key's count must at least be, by index: the held parents
/// listing it plus the named versions rooted at it.
fn needed_counts(nodes: &NodeTable, records: &[catalog::Record]) -> Vec<u64> {
    let mut needed = vec![0u64; nodes.len()];
    for (_, child) in nodes.edges() {
        needed[child as usize] += 1;
    }
    for v in records.iter().flat_map(|r| &r.versions) {
        // Every named root was given an index when the walk ended.
        if let Some(id) = nodes.id(v.content_ref.digest()) {
            needed[id as usize] += 1;
        }
    }
    needed
}

/// verify's and gc's error for a store of more node keys than they index.
fn too_many_nodes() -> StoreError {
    StoreError::Io(std::io::Error::new(
        std::io::ErrorKind::OutOfMemory,
        format!(
            "the store holds more than {} node keys, more than verify and gc can index",
            NodeId::MAX
        ),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use seccs_core::SecretKey;

    use crate::backend::{Backend, Batch, MemoryBackend};
    use crate::catalog::EntryKind;
    use crate::error::StoreError;
    use crate::params::ContentRef;
    use crate::{Finding, Params, Store, WrapperKind};

    /// Bytes that differ from seed to seed, and from chunk to chunk, so a
    /// content is many nodes.
    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ seed)
            .collect()
    }

    /// A store holding `keep/g` (two versions) and `other`, with
    /// `keep/g`'s record sealed again, under the store's own catalog key,
    /// as format 10 (a newer seccs's), and the root of its newest version
    /// at count zero: an orphan to this build, which cannot read that the
    /// record references it.
    struct Newer {
        store: Store,
        backend: Arc<MemoryBackend>,
        /// The record's backend key.
        key: Vec<u8>,
        /// The record as this build wrote it, before it was made format 10.
        plaintext: Vec<u8>,
        /// The root put at count zero.
        root: ContentRef,
        /// The contents of `keep/g`'s two versions and of `other`.
        contents: [Vec<u8>; 3],
    }

    fn store_with_a_newer_record() -> Newer {
        let params = Params::new(256, WrapperKind::AesSiv).expect("params");
        let backend = Arc::new(MemoryBackend::new());
        let store = Store::open(backend.clone(), params, &SecretKey::from_bytes([3; 32]))
            .expect("a new store");
        let contents = [bytes(20_000, 1), bytes(20_000, 2), bytes(9_000, 3)];
        for content in &contents[..2] {
            store
                .put_named(&mut content.as_slice(), "keep/g", EntryKind::File)
                .expect("put keep/g");
        }
        store
            .put_named(&mut contents[2].as_slice(), "other", EntryKind::File)
            .expect("put other");
        let key = store.catalog().key_of("keep/g");
        let record = store.lookup("keep/g").expect("lookup").expect("a record");
        let root = record.latest().expect("a version").content_ref.clone();
        let plaintext = record.encode();
        let mut newer = plaintext.clone();
        newer[0] = 10;
        let sealed = store.catalog().seal_bytes(&key, &newer);
        assert!(backend.tamper(&key, sealed));
        let mut batch = Batch::new();
        batch.set_count(root.digest().to_vec(), 0);
        backend.apply(&batch).expect("count");
        Newer {
            store,
            backend,
            key,
            plaintext,
            root,
            contents,
        }
    }

    /// Every entry with its value and count, in key order.
    fn snapshot(backend: &MemoryBackend) -> Vec<(Vec<u8>, Vec<u8>, Option<u64>)> {
        let mut keys = backend.keys();
        keys.sort();
        keys.into_iter()
            .map(|k| {
                let count = backend
                    .get_counts(&[k.as_slice()])
                    .expect("count")
                    .pop()
                    .flatten();
                let value = backend.get_raw(&k);
                (k, value, count)
            })
            .collect()
    }

    /// The message of an authentic record of a newer format: naming what,
    /// never damage, never "restore" or "gc removes".
    fn says_newer(e: &StoreError, what: &str) {
        let said = e.to_string();
        assert!(
            matches!(e, StoreError::NewerFormat { found: 10, .. }),
            "{e:?}"
        );
        assert!(said.contains(what), "{said}");
        assert!(
            said.contains("written by a newer seccs (format 10; this build reads formats 1 to 9)"),
            "{said}"
        );
        for wrong in [
            "authenticate",
            "corrupt",
            "forged",
            "damaged",
            "malformed",
            "restore",
        ] {
            assert!(!said.contains(wrong), "{said}");
        }
    }

    /// verify reports an authentic record of a newer format as such (not
    /// as corrupt or forged), and gc then removes nothing and changes no
    /// count: neither the record nor a node it may reference (here its
    /// newest version's root, at count zero, an orphan to this build).
    #[test]
    fn a_record_of_a_newer_format_is_reported_as_newer_and_gc_changes_nothing() {
        let newer = store_with_a_newer_record();
        let (store, backend) = (&newer.store, &newer.backend);
        let hex = seccs_core::hexenc::encode(&newer.key);

        let report = store.verify().expect("verify");
        assert!(!report.is_clean(), "{report:?}");
        assert!(
            !report
                .findings
                .iter()
                .any(|f| matches!(f, Finding::BadRecord { .. })),
            "{report:?}"
        );
        let found: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| matches!(f, Finding::NewerRecord { .. }))
            .collect();
        assert_eq!(
            found,
            [&Finding::NewerRecord {
                key: hex.clone(),
                format: 10,
                newest: 9
            }],
            "{report:?}"
        );
        let said = found[0].to_string();
        assert!(
            said.contains("written by a newer seccs (format 10"),
            "{said}"
        );
        assert!(said.contains("cannot fully check"), "{said}");
        assert!(
            !said.contains("corrupt") && !said.contains("removes it"),
            "{said}"
        );

        let before = snapshot(backend);
        let gc = store.gc().expect("gc");
        assert_eq!(gc.newer_records, [hex], "{gc:?}");
        assert!(gc.records_removed.is_empty(), "{gc:?}");
        assert_eq!((gc.removed, gc.counts_fixed), (0, 0), "{gc:?}");
        assert!(!gc.is_clean(), "{gc:?}");
        assert_eq!(snapshot(backend), before, "gc changed the store");
        // A crash recovery (gc without its report) leaves it whole too.
        store.recover().expect("recover");
        assert_eq!(snapshot(backend), before, "recovery changed the store");

        // What a seccs that reads the record would find is all there: the
        // record in this build's format again, and the root's count back,
        // every version reads back and the store verifies clean.
        let sealed = store.catalog().seal_bytes(&newer.key, &newer.plaintext);
        assert!(backend.tamper(&newer.key, sealed));
        let mut batch = Batch::new();
        batch.set_count(newer.root.digest().to_vec(), 1);
        backend.apply(&batch).expect("count");
        for (number, content) in [(1, &newer.contents[0]), (2, &newer.contents[1])] {
            let v = store
                .resolve_named("keep/g", Some(number))
                .expect("version");
            assert_eq!(&store.get(&v.content_ref).expect("get"), content);
        }
        assert!(store.verify().expect("verify").is_clean());
    }

    /// Reading, putting and removing the name, listing names, and deleting
    /// a content by reference each say the record was written by a newer
    /// seccs, and none of them changes the store.
    #[test]
    fn a_record_of_a_newer_format_is_named_as_newer_by_every_command() {
        let newer = store_with_a_newer_record();
        let (store, backend) = (&newer.store, &newer.backend);
        let named = "the catalog record of \"keep/g\"";
        let before = snapshot(backend);

        says_newer(&store.lookup("keep/g").expect_err("lookup"), named);
        says_newer(&store.resolve("keep/g").expect_err("resolve"), named);
        says_newer(&store.resolve("keep/g@1").expect_err("resolve @1"), named);
        says_newer(&store.remove_name("keep/g", None).expect_err("rm"), named);
        says_newer(
            &store
                .put_named(&mut &b"new"[..], "keep/g", EntryKind::File)
                .expect_err("put"),
            named,
        );
        let listing = store.list_readable("").expect("list");
        assert_eq!((listing.damaged, listing.newer), (0, 1), "{listing:?}");
        assert_eq!(listing.records.len(), 1, "{listing:?}");
        says_newer(&store.list("").expect_err("ls"), "a catalog record");
        let other = store.resolve("other").expect("other").content_ref;
        says_newer(
            &store.delete(&other).expect_err("delete"),
            "catalog record(s), which may hold",
        );
        let removed = store.remove_names(&["keep/g".into(), "other".into()]);
        match removed {
            Err(StoreError::DamagedRecords { names, newer, .. }) => {
                assert!(names.is_empty(), "{names:?}");
                assert_eq!(newer, ["keep/g"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(store.lookup("other").expect("lookup").is_none());
        // Only other's record and nodes went.
        let after = snapshot(backend);
        assert!(before.iter().any(|(k, _, _)| *k == newer.key));
        assert!(after.iter().any(|(k, _, _)| *k == newer.key));
        assert_eq!(
            store.key_opens_catalog().expect("key check"),
            Some(true),
            "an authentic record of a newer format opens under the key"
        );
    }

    /// Beside a record a newer seccs wrote, a damaged one is said to be
    /// removed by gc only once the newer one is gone: gc removes nothing
    /// until then.
    #[test]
    fn a_damaged_record_beside_a_newer_one_is_not_promised_to_gc() {
        let newer = store_with_a_newer_record();
        let (store, backend) = (&newer.store, &newer.backend);
        assert!(backend.tamper(&store.catalog().key_of("other"), vec![0; 40]));
        let said = store
            .remove_names(&["keep/g".into(), "other".into()])
            .expect_err("rm")
            .to_string();
        assert!(
            said.contains(
                "seccs gc removes such records, once no record a newer seccs wrote is left"
            ),
            "{said}"
        );
        let report = store.gc().expect("gc");
        assert_eq!(report.newer_records.len(), 1, "{report:?}");
        assert!(report.records_removed.is_empty(), "{report:?}");
        assert_eq!(
            backend.get_raw(&store.catalog().key_of("other")),
            vec![0; 40]
        );
    }

    /// A store whose key is proven, holding `names`, each with `versions`
    /// versions (version i of NAME holds "NAME i").
    fn paged_store(names: &[&str], versions: u32) -> (Store, Arc<MemoryBackend>) {
        let params = Params::new(256, WrapperKind::AesSiv).expect("params");
        let backend = Arc::new(MemoryBackend::new());
        let store = Store::open(backend.clone(), params, &SecretKey::from_bytes([4; 32]))
            .expect("a new store");
        for name in names {
            for i in 1..=versions {
                store
                    .put_named(&mut format!("{name} {i}").as_bytes(), name, EntryKind::File)
                    .expect("put");
            }
        }
        (store, backend)
    }

    #[test]
    fn a_page_no_record_lists_is_reported_and_removed_by_gc() {
        let (store, backend) = paged_store(&["p"], 70);
        let page = store.catalog().page_key("p", 0);
        let sealed = backend.get_raw(&page);
        store.remove_name("p", None).expect("rm");
        assert_eq!(backend.usage().expect("usage").entries, 0);
        let mut batch = Batch::new();
        batch.put(page.clone(), sealed, 1);
        backend.apply(&batch).expect("put back");
        let report = store.verify().expect("verify");
        assert_eq!(
            report.findings,
            [Finding::OrphanPage {
                key: seccs_core::hexenc::encode(&page)
            }]
        );
        assert_eq!(report.names, 0);
        assert!(store.list("").expect("ls").is_empty());
        let gc = store.gc().expect("gc");
        assert_eq!(gc.pages_removed, [seccs_core::hexenc::encode(&page)]);
        assert!(gc.is_clean(), "{gc:?}");
        assert_eq!(backend.usage().expect("usage").entries, 0);
    }

    #[test]
    fn a_page_swapped_with_another_names_or_with_a_head_fails_to_authenticate() {
        let (store, backend) = paged_store(&["a", "b"], 70);
        let catalog = store.catalog();
        let (pa, pb) = (catalog.page_key("a", 0), catalog.page_key("b", 0));
        let (va, vb) = (backend.get_raw(&pa), backend.get_raw(&pb));
        assert!(backend.tamper(&pa, vb.clone()));
        assert!(backend.tamper(&pb, va.clone()));
        for name in ["a", "b"] {
            assert!(
                matches!(store.lookup(name), Err(StoreError::Integrity(_))),
                "{name}"
            );
        }
        let bad = |report: &crate::VerifyReport| -> Vec<String> {
            let mut keys: Vec<String> = report
                .findings
                .iter()
                .filter_map(|f| match f {
                    Finding::BadRecord { key, .. } => Some(key.clone()),
                    _ => None,
                })
                .collect();
            keys.sort();
            keys
        };
        let hex = |k: &[u8]| seccs_core::hexenc::encode(k);
        let mut want = vec![
            hex(&pa),
            hex(&pb),
            hex(&catalog.key_of("a")),
            hex(&catalog.key_of("b")),
        ];
        want.sort();
        assert_eq!(bad(&store.verify().expect("verify")), want);
        // A head's value under its own page's key, and the page put back
        // under the other name's: neither authenticates.
        assert!(backend.tamper(&pa, backend.get_raw(&catalog.key_of("a"))));
        assert!(backend.tamper(&pb, vb));
        assert!(matches!(store.lookup("a"), Err(StoreError::Integrity(_))));
        assert_eq!(
            store
                .lookup("b")
                .expect("b whole")
                .map(|r| r.versions.len()),
            Some(70)
        );
        let report = store.verify().expect("verify");
        assert_eq!(bad(&report), {
            let mut w = vec![hex(&pa), hex(&catalog.key_of("a"))];
            w.sort();
            w
        });
        // gc removes the damaged record with its pages; b is untouched.
        let gc = store.gc().expect("gc");
        assert_eq!(gc.records_removed.len(), 2, "{gc:?}");
        assert!(store.lookup("a").expect("lookup").is_none());
        assert!(store.verify().expect("verify").is_clean());
        assert_eq!(store.stats().expect("stats").pages.entries, 1);
    }

    /// A put stopped before its count was written leaves a whole tree
    /// whose root nothing counts: gc removes the root, then every node
    /// that only it held, level by level, and what others hold stays.
    #[test]
    fn gc_removes_an_orphaned_tree_whole_and_keeps_what_a_name_shares_with_it() {
        let params = Params::new(256, WrapperKind::AesSiv).expect("params");
        let backend = Arc::new(MemoryBackend::new());
        let store = Store::open(backend.clone(), params, &SecretKey::from_bytes([5; 32]))
            .expect("a new store");
        let kept = bytes(30_000, 7);
        store
            .put_named(&mut kept.as_slice(), "kept", EntryKind::File)
            .expect("put kept");
        let alone = backend.usage().expect("usage").entries;
        // Shares its first 30,000 bytes, and so some nodes, with `kept`.
        let mut orphaned = kept.clone();
        orphaned.extend(bytes(40_000, 8));
        let root = store.put(&orphaned).expect("put");
        assert!(params.height(root.len()) >= 2, "a tree of several levels");
        let mut batch = Batch::new();
        batch.set_count(root.digest().to_vec(), 0);
        backend.apply(&batch).expect("count");
        let report = store.verify().expect("verify");
        assert_eq!(
            report.findings,
            [Finding::Orphan {
                node: seccs_core::hexenc::encode(root.digest())
            }]
        );
        let gc = store.gc().expect("gc");
        assert!(gc.is_clean(), "{gc:?}");
        assert!(gc.removed > 2, "the root and what only it held: {gc:?}");
        assert_eq!(backend.usage().expect("usage").entries, alone);
        assert!(store.verify().expect("verify").is_clean());
        let mut read = Vec::new();
        store.get_named("kept", None, &mut read).expect("get kept");
        assert_eq!(read, kept);
    }

    #[test]
    fn a_page_put_back_as_it_was_before_a_removal_is_named_a_bad_page_of_a_name() {
        let (store, backend) = paged_store(&["p", "q"], 70);
        let page = store.catalog().page_key("p", 0);
        let before = backend.get_raw(&page);
        store.remove_name("p", Some(1)).expect("rm p@1");
        assert_ne!(backend.get_raw(&page), before, "the page was rewritten");
        // The older copy authenticates as this very page, but it is not
        // the page the record now lists.
        assert!(backend.tamper(&page, before));
        assert!(matches!(store.lookup("p"), Err(StoreError::Integrity(_))));
        let report = store.verify().expect("verify");
        let head = seccs_core::hexenc::encode(&store.catalog().key_of("p"));
        assert_eq!(
            report.findings,
            [Finding::BadRecord {
                key: head.clone(),
                bad_pages: true
            }]
        );
        assert_eq!(report.broken_names, ["p"]);
        let line = report.findings[0].to_string();
        assert!(
            line.contains(&format!("catalog record {head} authenticates")),
            "{line}"
        );
        assert!(!line.contains("does not authenticate"), "{line}");
        // A record that does not authenticate says so, and names nothing.
        let q = store.catalog().key_of("q");
        let mut sealed = backend.get_raw(&q);
        sealed[40] ^= 1;
        assert!(backend.tamper(&q, sealed));
        let report = store.verify().expect("verify");
        let q_finding = Finding::BadRecord {
            key: seccs_core::hexenc::encode(&q),
            bad_pages: false,
        };
        assert!(report.findings.contains(&q_finding), "{report:?}");
        assert!(q_finding.to_string().contains("does not authenticate"));
        assert_eq!(report.broken_names, ["p"]);
        // gc removes the record with its pages, and its name with it: no
        // name is left broken.
        let gc = store.gc().expect("gc");
        assert!(gc.records_removed.contains(&head), "{gc:?}");
        assert!(gc.broken_names.is_empty(), "{gc:?}");
        assert!(gc.is_clean(), "{gc:?}");
        assert!(store.lookup("p").expect("lookup").is_none());
        assert!(store.verify().expect("verify").is_clean());
    }

    #[test]
    fn a_format_8_record_of_many_versions_reads_and_is_written_paged_when_it_changes() {
        let (store, backend) = paged_store(&["old"], 100);
        let record = store.lookup("old").expect("lookup").expect("there");
        // The record as format 8 kept it: every version inline, no pages.
        let mut v8 = record.encode();
        assert_eq!(v8.drain(1..6).collect::<Vec<_>>(), [0; 5]);
        v8[0] = 8;
        let key = store.catalog().key_of("old");
        assert!(backend.tamper(&key, store.catalog().seal_bytes(&key, &v8)));
        let mut batch = Batch::new();
        for id in 0..2 {
            batch.delete(store.catalog().page_key("old", id));
        }
        backend.apply(&batch).expect("pages gone");
        assert_eq!(store.stats().expect("stats").pages.entries, 0);
        assert_eq!(store.lookup("old").expect("lookup"), Some(record));
        assert!(store.verify().expect("verify").is_clean());
        store
            .put_named(&mut &b"old 101"[..], "old", EntryKind::File)
            .expect("put");
        // 101 inline would be more than 64: two pages of 32 move out.
        assert_eq!(store.stats().expect("stats").pages.entries, 2);
        let record = store.lookup("old").expect("lookup").expect("there");
        assert_eq!(
            record.versions.iter().map(|v| v.number).collect::<Vec<_>>(),
            (1..=101).collect::<Vec<_>>()
        );
        assert!(store.verify().expect("verify").is_clean());
    }
}
