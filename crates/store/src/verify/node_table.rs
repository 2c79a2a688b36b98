//! The nodes one walk of the backend found, held compactly. Verify and gc
//! keep an entry for every node of the store in memory at once, so each
//! costs tens of bytes, not hundreds: every key once, in one buffer, found
//! through a table of indices; no allocation per node; a superchunk's
//! children as pairs of indices, and their digests only once.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

/// A key's index in a [`NodeTable`], in the order keys were first met.
pub(super) type NodeId = u32;

/// What the backend holds under a node's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stored {
    /// Its stored reference count.
    pub(super) count: u64,
    /// The height it authenticates at; `None`: at none (tampered).
    pub(super) height: Option<u8>,
    /// Whether it authenticated only as a root (with a wrapper that
    /// distinguishes roots; never otherwise).
    pub(super) as_root: bool,
}

/// Every node key a walk met: the keys the backend holds (with what it
/// holds), and the keys that superchunks and names list, held or not.
pub(super) struct NodeTable {
    /// Every key, one after another.
    bytes: Vec<u8>,
    /// Where each key ends in `bytes`, by index.
    ends: Vec<usize>,
    /// What the backend holds under each key, by index; `None` for a key
    /// only listed (or no longer held).
    stored: Vec<Option<Stored>>,
    /// The indices, found by their key's hash.
    table: HashTable<NodeId>,
    hasher: RandomState,
    /// (parent, child) for each child of each held superchunk, a
    /// superchunk's children together.
    edges: Vec<(NodeId, NodeId)>,
    /// How many keys are held.
    held: usize,
}

/// More node keys than a [`NodeId`] counts: a store of billions of nodes.
#[derive(Debug)]
pub(super) struct TooManyNodes;

impl NodeTable {
    pub(super) fn new() -> Self {
        Self {
            bytes: Vec::new(),
            ends: Vec::new(),
            stored: Vec::new(),
            table: HashTable::new(),
            hasher: RandomState::new(),
            edges: Vec::new(),
            held: 0,
        }
    }

    /// How many keys the table knows, held or only listed.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// How many keys the backend holds.
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// The key of `id`.
    pub(super) fn key(&self, id: NodeId) -> &[u8] {
        key_at(&self.bytes, &self.ends, id)
    }

    /// What the backend holds under `id`.
    pub(super) fn stored(&self, id: NodeId) -> Option<Stored> {
        self.stored[id as usize]
    }

    /// The index of `key`, if the table knows it.
    pub(super) fn id(&self, key: &[u8]) -> Option<NodeId> {
        let (bytes, ends) = (&self.bytes, &self.ends);
        self.table
            .find(self.hasher.hash_one(key), |&id| {
                key_at(bytes, ends, id) == key
            })
            .copied()
    }

    /// The index of `key`, given one if the table does not know it yet.
    pub(super) fn intern(&mut self, key: &[u8]) -> Result<NodeId, TooManyNodes> {
        if let Some(id) = self.id(key) {
            return Ok(id);
        }
        let id = NodeId::try_from(self.ends.len()).map_err(|_| TooManyNodes)?;
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
        self.stored.push(None);
        let Self {
            bytes,
            ends,
            table,
            hasher,
            ..
        } = self;
        table.insert_unique(hasher.hash_one(key), id, |&id| {
            hasher.hash_one(key_at(bytes, ends, id))
        });
        Ok(id)
    }

    /// Records what the backend holds under `key`, and the children it
    /// lists. A key held already (a walk that met it twice, as a Redis
    /// SCAN may) is left as it was, its children not listed again.
    pub(super) fn hold<'a>(
        &mut self,
        key: &[u8],
        stored: Stored,
        children: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), TooManyNodes> {
        let id = self.intern(key)?;
        if self.stored[id as usize].is_some() {
            return Ok(());
        }
        self.stored[id as usize] = Some(stored);
        self.held += 1;
        for child in children {
            let child = self.intern(child)?;
            self.edges.push((id, child));
        }
        Ok(())
    }

    /// Takes `key` as no longer held: a lookup of it failed, or gc removed
    /// it. The children it listed are no longer counted as needed.
    pub(super) fn forget(&mut self, key: &[u8]) {
        if let Some(id) = self.id(key)
            && self.stored[id as usize].take().is_some()
        {
            self.held -= 1;
        }
    }

    /// Raises the stored count of `id`, if it is held, to `count`.
    pub(super) fn raise_count(&mut self, id: NodeId, count: u64) {
        if let Some(stored) = &mut self.stored[id as usize] {
            stored.count = stored.count.max(count);
        }
    }

    /// Every held key: index and what is held.
    pub(super) fn held_nodes(&self) -> impl Iterator<Item = (NodeId, Stored)> + '_ {
        self.stored
            .iter()
            .enumerate()
            .filter_map(|(id, stored)| stored.map(|s| (id as NodeId, s)))
    }

    /// Every (parent, child) pair whose parent is held.
    pub(super) fn edges(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.edges
            .iter()
            .copied()
            .filter(|&(parent, _)| self.stored[parent as usize].is_some())
    }

    /// The held parents of each key, by index: built when some node is
    /// broken, to break its ancestors too.
    pub(super) fn parents(&self) -> Parents {
        let mut by_child: Vec<(NodeId, NodeId)> = self.edges().map(|(p, c)| (c, p)).collect();
        by_child.sort_unstable();
        Parents { by_child }
    }
}

/// The held parents of keys ([`NodeTable::parents`]).
pub(super) struct Parents {
    /// (child, parent), sorted.
    by_child: Vec<(NodeId, NodeId)>,
}

impl Parents {
    /// The held parents of `child`.
    pub(super) fn of(&self, child: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let start = self.by_child.partition_point(|&(c, _)| c < child);
        self.by_child[start..]
            .iter()
            .take_while(move |&&(c, _)| c == child)
            .map(|&(_, parent)| parent)
    }
}

fn key_at<'a>(bytes: &'a [u8], ends: &[usize], id: NodeId) -> &'a [u8] {
    let id = id as usize;
    let start = match id {
        0 => 0,
        _ => ends[id - 1],
    };
    &bytes[start..ends[id]]
}

#[cfg(test)]
mod tests {
    use super::{NodeTable, Stored};

    fn stored(count: u64, height: u8) -> Stored {
        Stored {
            count,
            height: Some(height),
            as_root: false,
        }
    }

    #[test]
    fn each_key_gets_one_index_and_reads_back() {
        let mut table = NodeTable::new();
        let keys: Vec<Vec<u8>> = (0..1_000u32)
            .map(|i| i.to_be_bytes().repeat(1 + i as usize % 5))
            .collect();
        let ids: Vec<u32> = keys
            .iter()
            .map(|k| table.intern(k).expect("room"))
            .collect();
        for (key, &id) in keys.iter().zip(&ids) {
            assert_eq!(table.key(id), key.as_slice());
            assert_eq!(table.id(key), Some(id));
            assert_eq!(table.intern(key).expect("room"), id, "known already");
        }
        assert_eq!(table.len(), 1_000);
        assert_eq!(table.held(), 0);
        assert_eq!(table.id(b"not there"), None);
    }

    #[test]
    fn a_key_held_twice_lists_its_children_once_and_a_forgotten_parent_none() {
        let mut table = NodeTable::new();
        let children: [&[u8]; 2] = [b"c1", b"c2"];
        table.hold(b"p", stored(1, 1), children).expect("room");
        table.hold(b"p", stored(9, 1), children).expect("room");
        table.hold(b"c1", stored(1, 0), []).expect("room");
        assert_eq!(table.held(), 2, "c2 is listed, not held");
        let p = table.id(b"p").expect("p");
        assert_eq!(table.stored(p), Some(stored(1, 1)), "the first stays");
        assert_eq!(table.edges().count(), 2);
        let c2 = table.id(b"c2").expect("listed");
        assert_eq!(table.stored(c2), None);
        assert_eq!(table.parents().of(c2).collect::<Vec<_>>(), [p]);
        table.forget(b"p");
        assert_eq!(table.held(), 1);
        assert_eq!(table.edges().count(), 0);
        assert_eq!(table.parents().of(c2).count(), 0);
        table.forget(b"p");
        assert_eq!(table.held(), 1, "forgotten once");
    }
}
