//! Measures the two embedded key-value engines considered for the content
//! store's persistent default, `fjall` (LSM tree) and `redb` (copy-on-write
//! B-tree), on the store's own workload, and prints one table.
//!
//! The workload is what a put, a delete and a get do to the backend:
//!
//! - **insert**: many new entries (16-byte random keys, like AES-SIV digests;
//!   incompressible values of about 300 B or 4 KiB, like sealed nodes), one
//!   durable atomic batch of `BATCH` writes at a time (a put);
//! - **count update**: the counts of existing entries change, in durable
//!   batches (a put of content that is already stored, a delete);
//! - **get_many**: random existing keys read in groups of 256 (a get);
//! - **get_counts**: counts of random keys, half of them absent, in groups of
//!   256 (a put's existence check);
//! - **space**: bytes on disk divided by payload bytes (key + value + 8 per
//!   entry), with the database still open.
//!
//! Three layouts run: fjall with nodes and counts in two keyspaces (the
//! layout `EmbeddedBackend` used before it moved both into one keyspace of
//! tagged records, so that a bulk ingestion is atomic), fjall with the count packed in front of the
//! value in one keyspace, and redb with two tables. Every batch is committed
//! durably (fjall: journal `SyncAll`; redb: `Durability::Immediate`).
//!
//! Run: `cargo bench -p seccs-store --bench embedded_choice`. Environment:
//! `EMBEDDED_BENCH_KEYS` (default 200000 per value size),
//! `EMBEDDED_BENCH_BATCH` (default 4096), `EMBEDDED_BENCH_DIR` (default the
//! cargo target's tmp directory, on the same disk as the build).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

type Res<T> = Result<T, Box<dyn Error>>;

const READ_GROUP: usize = 256;

/// A deterministic generator (splitmix64): keys and incompressible values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

fn key(i: u64) -> [u8; 16] {
    let mut rng = Rng(i ^ 0x5ecc_5eed);
    let mut k = [0u8; 16];
    rng.fill(&mut k);
    k
}

/// One engine under test; every write call is one durable atomic batch.
trait Engine {
    fn put_batch(&mut self, entries: &[([u8; 16], Vec<u8>, u64)]) -> Res<()>;
    fn count_batch(&mut self, updates: &[([u8; 16], u64)]) -> Res<()>;
    /// Returns the number of value bytes read.
    fn get_many(&self, keys: &[[u8; 16]]) -> Res<usize>;
    /// Returns the number of keys found.
    fn get_counts(&self, keys: &[[u8; 16]]) -> Res<usize>;
}

struct FjallTwo {
    db: Database,
    nodes: Keyspace,
    counts: Keyspace,
}

impl FjallTwo {
    fn open(dir: &Path) -> Res<Self> {
        let db = Database::builder(dir).open()?;
        let nodes = db.keyspace("nodes", || {
            KeyspaceCreateOptions::default()
                .data_block_compression_policy(fjall::config::CompressionPolicy::disabled())
                .expect_point_read_hits(true)
        })?;
        let counts = db.keyspace("counts", KeyspaceCreateOptions::default)?;
        Ok(Self { db, nodes, counts })
    }
}

impl Engine for FjallTwo {
    fn put_batch(&mut self, entries: &[([u8; 16], Vec<u8>, u64)]) -> Res<()> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (k, v, c) in entries {
            batch.insert(&self.nodes, k.as_slice(), v.as_slice());
            batch.insert(&self.counts, k.as_slice(), c.to_be_bytes().as_slice());
        }
        batch.commit()?;
        Ok(())
    }

    fn count_batch(&mut self, updates: &[([u8; 16], u64)]) -> Res<()> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (k, c) in updates {
            // The backend checks that the entry exists (SetCount on a missing
            // key is a no-op); the check is part of the cost.
            if self.counts.contains_key(k)? {
                batch.insert(&self.counts, k.as_slice(), c.to_be_bytes().as_slice());
            }
        }
        batch.commit()?;
        Ok(())
    }

    fn get_many(&self, keys: &[[u8; 16]]) -> Res<usize> {
        let snapshot = self.db.snapshot();
        let mut bytes = 0;
        for k in keys {
            use fjall::Readable;
            let value = snapshot.get(&self.nodes, k)?;
            let count = snapshot.get(&self.counts, k)?;
            if let (Some(v), Some(_)) = (value, count) {
                bytes += v.len();
            }
        }
        Ok(bytes)
    }

    fn get_counts(&self, keys: &[[u8; 16]]) -> Res<usize> {
        let mut found = 0;
        for k in keys {
            if self.counts.get(k)?.is_some() {
                found += 1;
            }
        }
        Ok(found)
    }
}

struct FjallOne {
    db: Database,
    nodes: Keyspace,
}

impl FjallOne {
    fn open(dir: &Path) -> Res<Self> {
        let db = Database::builder(dir).open()?;
        let nodes = db.keyspace("nodes", || {
            KeyspaceCreateOptions::default()
                .data_block_compression_policy(fjall::config::CompressionPolicy::disabled())
        })?;
        Ok(Self { db, nodes })
    }
}

impl Engine for FjallOne {
    fn put_batch(&mut self, entries: &[([u8; 16], Vec<u8>, u64)]) -> Res<()> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (k, v, c) in entries {
            let mut packed = Vec::with_capacity(8 + v.len());
            packed.extend_from_slice(&c.to_be_bytes());
            packed.extend_from_slice(v);
            batch.insert(&self.nodes, k.as_slice(), packed);
        }
        batch.commit()?;
        Ok(())
    }

    fn count_batch(&mut self, updates: &[([u8; 16], u64)]) -> Res<()> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (k, c) in updates {
            if let Some(old) = self.nodes.get(k)? {
                let mut packed = old.to_vec();
                packed[..8].copy_from_slice(&c.to_be_bytes());
                batch.insert(&self.nodes, k.as_slice(), packed);
            }
        }
        batch.commit()?;
        Ok(())
    }

    fn get_many(&self, keys: &[[u8; 16]]) -> Res<usize> {
        let snapshot = self.db.snapshot();
        let mut bytes = 0;
        for k in keys {
            use fjall::Readable;
            if let Some(v) = snapshot.get(&self.nodes, k)? {
                bytes += v.len() - 8;
            }
        }
        Ok(bytes)
    }

    fn get_counts(&self, keys: &[[u8; 16]]) -> Res<usize> {
        let mut found = 0;
        for k in keys {
            if self.nodes.get(k)?.is_some() {
                found += 1;
            }
        }
        Ok(found)
    }
}

const REDB_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("nodes");
const REDB_COUNTS: TableDefinition<&[u8], u64> = TableDefinition::new("counts");

struct Redb {
    db: redb::Database,
}

impl Redb {
    fn open(dir: &Path) -> Res<Self> {
        std::fs::create_dir_all(dir)?;
        let db = redb::Database::create(dir.join("db.redb"))?;
        Ok(Self { db })
    }
}

impl Engine for Redb {
    fn put_batch(&mut self, entries: &[([u8; 16], Vec<u8>, u64)]) -> Res<()> {
        let txn = self.db.begin_write()?;
        {
            let mut nodes = txn.open_table(REDB_NODES)?;
            let mut counts = txn.open_table(REDB_COUNTS)?;
            for (k, v, c) in entries {
                nodes.insert(k.as_slice(), v.as_slice())?;
                counts.insert(k.as_slice(), *c)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn count_batch(&mut self, updates: &[([u8; 16], u64)]) -> Res<()> {
        let txn = self.db.begin_write()?;
        {
            let mut counts = txn.open_table(REDB_COUNTS)?;
            for (k, c) in updates {
                let exists = counts.get(k.as_slice())?.is_some();
                if exists {
                    counts.insert(k.as_slice(), *c)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn get_many(&self, keys: &[[u8; 16]]) -> Res<usize> {
        let txn = self.db.begin_read()?;
        let nodes = txn.open_table(REDB_NODES)?;
        let counts = txn.open_table(REDB_COUNTS)?;
        let mut bytes = 0;
        for k in keys {
            let value = nodes.get(k.as_slice())?;
            let count = counts.get(k.as_slice())?;
            if let (Some(v), Some(_)) = (value, count) {
                bytes += v.value().len();
            }
        }
        Ok(bytes)
    }

    fn get_counts(&self, keys: &[[u8; 16]]) -> Res<usize> {
        let txn = self.db.begin_read()?;
        let counts = txn.open_table(REDB_COUNTS)?;
        let mut found = 0;
        for k in keys {
            if counts.get(k.as_slice())?.is_some() {
                found += 1;
            }
        }
        Ok(found)
    }
}

/// Bytes allocated on disk under `path` (blocks, not logical lengths).
fn disk_bytes(path: &Path) -> Res<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        let mut total = 0;
        for entry in std::fs::read_dir(path)? {
            total += disk_bytes(&entry?.path())?;
        }
        Ok(total)
    } else {
        Ok(meta.blocks() * 512)
    }
}

struct Row {
    engine: &'static str,
    value_len: usize,
    keys: u64,
    insert_per_s: f64,
    insert_mib_s: f64,
    update_per_s: f64,
    read_per_s: f64,
    count_read_per_s: f64,
    space_amp: f64,
    disk_mib: f64,
}

struct Params {
    keys: u64,
    batch: usize,
    value_len: usize,
}

fn run(engine_name: &'static str, dir: &Path, p: &Params) -> Res<Row> {
    let mut engine: Box<dyn Engine> = match engine_name {
        "fjall (2 keyspaces)" => Box::new(FjallTwo::open(dir)?),
        "fjall (count in value)" => Box::new(FjallOne::open(dir)?),
        _ => Box::new(Redb::open(dir)?),
    };
    let mut rng = Rng(42);

    // Insert: one durable batch per `batch` new entries.
    let start = Instant::now();
    let mut next = 0u64;
    while next < p.keys {
        let n = (p.keys - next).min(p.batch as u64);
        let entries: Vec<([u8; 16], Vec<u8>, u64)> = (next..next + n)
            .map(|i| {
                let mut v = vec![0u8; p.value_len];
                rng.fill(&mut v);
                (key(i), v, 1)
            })
            .collect();
        engine.put_batch(&entries)?;
        next += n;
    }
    let insert_s = start.elapsed().as_secs_f64();
    let payload = p.keys * (16 + p.value_len as u64 + 8);

    // Count updates of random existing keys, durable per batch.
    let updates = p.keys / 4;
    let start = Instant::now();
    let mut done = 0u64;
    while done < updates {
        let n = (updates - done).min(p.batch as u64);
        let batch: Vec<([u8; 16], u64)> = (0..n)
            .map(|_| (key(rng.next() % p.keys), rng.next() % 100 + 2))
            .collect();
        engine.count_batch(&batch)?;
        done += n;
    }
    let update_s = start.elapsed().as_secs_f64();

    // Reads of random existing keys, in groups.
    let reads = (p.keys / 4).max(READ_GROUP as u64);
    let start = Instant::now();
    let mut read_bytes = 0usize;
    let mut done = 0u64;
    while done < reads {
        let group: Vec<[u8; 16]> = (0..READ_GROUP).map(|_| key(rng.next() % p.keys)).collect();
        read_bytes += engine.get_many(&group)?;
        done += READ_GROUP as u64;
    }
    let read_s = start.elapsed().as_secs_f64();
    if read_bytes != done as usize * p.value_len {
        return Err(format!("{engine_name}: read {read_bytes} bytes, expected more").into());
    }

    // Count reads, half of the keys absent.
    let start = Instant::now();
    let mut found = 0usize;
    let mut done = 0u64;
    while done < reads {
        let group: Vec<[u8; 16]> = (0..READ_GROUP)
            .map(|_| key(rng.next() % (2 * p.keys)))
            .collect();
        found += engine.get_counts(&group)?;
        done += READ_GROUP as u64;
    }
    let count_read_s = start.elapsed().as_secs_f64();
    if found == 0 {
        return Err(format!("{engine_name}: no count found").into());
    }

    let disk = disk_bytes(dir)?;
    drop(engine);
    Ok(Row {
        engine: engine_name,
        value_len: p.value_len,
        keys: p.keys,
        insert_per_s: p.keys as f64 / insert_s,
        insert_mib_s: payload as f64 / insert_s / (1 << 20) as f64,
        update_per_s: updates as f64 / update_s,
        read_per_s: done as f64 / read_s.max(f64::EPSILON),
        count_read_per_s: done as f64 / count_read_s.max(f64::EPSILON),
        space_amp: disk as f64 / payload as f64,
        disk_mib: disk as f64 / (1 << 20) as f64,
    })
}

fn env_num(name: &str, default: u64) -> Res<u64> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse()?),
        Err(_) => Ok(default),
    }
}

fn main() -> Res<()> {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let keys = env_num("EMBEDDED_BENCH_KEYS", 200_000)?;
    let batch = env_num("EMBEDDED_BENCH_BATCH", 4096)? as usize;
    let base: PathBuf = match std::env::var_os("EMBEDDED_BENCH_DIR") {
        Some(d) => d.into(),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    };
    std::fs::create_dir_all(&base)?;
    let engines = [
        "fjall (2 keyspaces)",
        "fjall (count in value)",
        "redb (2 tables)",
    ];
    let mut rows = Vec::new();
    for value_len in [300usize, 4096] {
        for engine in engines {
            let dir = tempfile::tempdir_in(&base)?;
            let p = Params {
                keys,
                batch,
                value_len,
            };
            let start = Instant::now();
            let row = run(engine, &dir.path().join("db"), &p)?;
            eprintln!(
                "{engine}, {value_len} B: done in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            rows.push(row);
        }
    }
    println!(
        "\nembedded engines: {keys} keys per value size, durable atomic batches of {batch} writes\n"
    );
    println!(
        "| engine | value | keys | insert/s | insert MiB/s | count updates/s | get_many reads/s | get_counts reads/s | disk MiB | disk / payload |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} B | {} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} |",
            r.engine,
            r.value_len,
            r.keys,
            r.insert_per_s,
            r.insert_mib_s,
            r.update_per_s,
            r.read_per_s,
            r.count_read_per_s,
            r.disk_mib,
            r.space_amp
        );
    }
    Ok(())
}
