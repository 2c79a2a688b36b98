//! `seccs bench` (no part): the content store against the raw AES-SIV floor.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use seccs_core::SecretKey;
use seccs_store::backend::{Backend, EmbeddedBackend, MemoryBackend};
use seccs_store::bench::{aes_siv_floor_mib_s, chunker_mib_s, mib_s};
use seccs_store::{ContentRef, Params, Store, WrapperKind};

/// `--chunk-size`: what a store sealed with AES-SIV takes, refused
/// outside it as a usage error, as the other figures are.
fn aes_siv_chunk_size() -> clap::builder::RangedU64ValueParser<usize> {
    let smallest = Params::min_chunk_size(WrapperKind::AesSiv);
    clap::builder::RangedU64ValueParser::new()
        .range(smallest as u64..=seccs_store::MAX_CHUNK_SIZE as u64)
}

/// Options of the store bench.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreBenchArgs {
    /// Chunk size S to measure (the bench seals with AES-SIV, so from
    /// its smallest chunk size up to the largest any store takes).
    #[arg(long, default_value_t = seccs_store::DEFAULT_CHUNK_SIZE, value_name = "N",
          value_parser = aes_siv_chunk_size())]
    chunk_size: usize,
    /// MiB of random data per measurement, from 1 to 16384 (it is held in
    /// memory).
    #[arg(long, default_value_t = 128, value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(1..=16384))]
    size_mib: u64,
    /// Rounds of the in-memory measurements, from 1 to 100; each figure is
    /// the best round (a busy machine only ever makes a round slower).
    #[arg(long, default_value_t = 3, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
    /// MiB of the streamed content (embedded backend), generated while it
    /// is put and counted while it is read back, never held in memory:
    /// far larger than any cache of the store. 0 skips it; at most 16777216
    /// (16 TiB).
    #[arg(long, default_value_t = 1024, value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(0..=1 << 24))]
    stream_mib: u64,
    /// Also measure a backend given by URL (redis://, postgres://, s3://).
    /// At a store's URL, writes are checked against its marker as the
    /// store's own commands check them (`guarded_by_marker` in the output);
    /// what the bench puts there it removes again.
    #[arg(long, value_name = "URL")]
    backend: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

struct Measured {
    put: f64,
    get: f64,
    nodes_per_s: f64,
}

fn measure(
    backend: Arc<dyn Backend>,
    params: Params,
    key: &SecretKey,
    data: &[u8],
    parallel: bool,
) -> Result<Measured> {
    let mut store = Store::new_unchecked(backend, params, key);
    store.set_parallel(parallel);
    // At a store's URL the backend holds that store's entries too: only
    // those the put adds are its node writes.
    let before = store.usage()?.entries;
    let start = Instant::now();
    let r: ContentRef = store.put(data)?;
    let put_secs = start.elapsed().as_secs_f64();
    let nodes = store.usage()?.entries.saturating_sub(before);
    let start = Instant::now();
    let mut sink = std::io::sink();
    store.get_to(&r, &mut sink)?;
    let get_secs = start.elapsed().as_secs_f64();
    store.delete(&r)?;
    Ok(Measured {
        put: mib_s(data.len() as u64, put_secs),
        get: mib_s(data.len() as u64, get_secs),
        nodes_per_s: nodes as f64 / put_secs,
    })
}

impl Measured {
    fn best(self, o: Measured) -> Measured {
        Measured {
            put: self.put.max(o.put),
            get: self.get.max(o.get),
            nodes_per_s: self.nodes_per_s.max(o.nodes_per_s),
        }
    }
}

/// Pseudo-random, incompressible bytes made as they are read (not for
/// secrets), so a streamed content needs no memory of its size.
struct Generated {
    sequence: super::XorShift,
    left: u64,
}

impl std::io::Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for word in buf[..n].chunks_mut(8) {
            let v = self.sequence.next_u64().to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Counts the bytes written to it and drops them.
struct Counted(u64);

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams `mib` MiB through a store on the embedded backend: put from a
/// generator, get into a counter.
fn measure_stream(params: Params, key: &SecretKey, mib: u64) -> Result<Measured> {
    let dir = tempfile::tempdir()?;
    let store = Store::new_unchecked(Arc::new(EmbeddedBackend::open(dir.path())?), params, key);
    let size = mib << 20;
    let mut source = Generated {
        sequence: super::XorShift(0x9e37_79b9_7f4a_7c15),
        left: size,
    };
    let start = Instant::now();
    let outcome = store.put_reader(&mut source)?;
    let put_secs = start.elapsed().as_secs_f64();
    let nodes = store.usage()?.entries;
    let mut sink = Counted(0);
    let start = Instant::now();
    store.get_to(&outcome.content_ref, &mut sink)?;
    let get_secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(sink.0 == size, "streamed {} of {size} bytes back", sink.0);
    Ok(Measured {
        put: mib_s(size, put_secs),
        get: mib_s(size, get_secs),
        nodes_per_s: nodes as f64 / put_secs,
    })
}

/// Runs the store bench.
pub fn run(args: StoreBenchArgs) -> Result<()> {
    let params = Params::new(args.chunk_size, WrapperKind::AesSiv)?;
    let key = SecretKey::generate()?;
    // Within usize: --size-mib is at most 16384.
    let size = usize::try_from(args.size_mib << 20)?;
    let mut data = vec![0u8; size];
    seccs_core::random_bytes(&mut data)?;
    let say = |s: String| {
        if !args.json {
            errln!("{s}");
        }
    };
    say(format!(
        "seccs bench: {} MiB of random data, S = {}",
        args.size_mib, args.chunk_size
    ));
    let mut floor = 0f64;
    let mut chunker = 0f64;
    let mut best: Option<(Measured, Measured, Measured)> = None;
    for round in 1..=args.rounds {
        say(format!("round {round}/{}", args.rounds));
        floor = floor.max(aes_siv_floor_mib_s(&data, args.chunk_size));
        chunker = chunker.max(chunker_mib_s(&data, &params, &key));
        let mem1 = measure(Arc::new(MemoryBackend::new()), params, &key, &data, false)?;
        let mem_all = measure(Arc::new(MemoryBackend::new()), params, &key, &data, true)?;
        let dir = tempfile::tempdir()?;
        let embedded = measure(
            Arc::new(EmbeddedBackend::open(dir.path())?),
            params,
            &key,
            &data,
            true,
        )?;
        best = Some(match best {
            None => (mem1, mem_all, embedded),
            Some((a, b, c)) => (a.best(mem1), b.best(mem_all), c.best(embedded)),
        });
    }
    let Some((mem1, mem_all, embedded)) = best else {
        anyhow::bail!("no round ran");
    };
    let stream = if args.stream_mib > 0 {
        say(format!(
            "streaming {} MiB through the embedded backend",
            args.stream_mib
        ));
        Some(measure_stream(params, &key, args.stream_mib)?)
    } else {
        None
    };
    let mut out = serde_json::json!({
        "chunk_size": args.chunk_size,
        "size_mib": args.size_mib,
        "threads": rayon::current_num_threads(),
        "floor_mib_s": floor,
        "chunker_mib_s": chunker,
        "put_mib_s": mem1.put,
        "get_mib_s": mem1.get,
        "put_ratio": mem1.put / floor,
        "get_ratio": mem1.get / floor,
        "put_mib_s_all_cores": mem_all.put,
        "get_mib_s_all_cores": mem_all.get,
        "put_ratio_all_cores": mem_all.put / floor,
        "all_cores_speedup": mem_all.put / mem1.put,
        "embedded_put_mib_s": embedded.put,
        "embedded_get_mib_s": embedded.get,
        "embedded_put_ratio": embedded.put / floor,
        "embedded_node_writes_per_s": embedded.nodes_per_s,
    });
    if let Some(st) = &stream {
        out["stream_mib"] = serde_json::json!(args.stream_mib);
        out["stream_put_mib_s"] = serde_json::json!(st.put);
        out["stream_get_mib_s"] = serde_json::json!(st.get);
        out["stream_put_ratio"] = serde_json::json!(st.put / floor);
        out["stream_get_ratio"] = serde_json::json!(st.get / floor);
    }
    if let Some(url) = &args.backend {
        let backend: Arc<dyn Backend> = crate::open::network_backend_for_bench(url)?;
        // A place that holds a store is written as that store's commands
        // write it: each batch checked against its marker in the same
        // atomic step. A place without one has nothing to check against.
        let marker = backend.read_marker()?;
        if let Some(marker) = &marker {
            backend.guard_writes_with_marker(marker);
        }
        let m = measure(backend, params, &key, &data, true)?;
        out["backend"] = serde_json::json!({
            "url": seccs_backends::redact(url),
            "guarded_by_marker": marker.is_some(),
            "put_mib_s": m.put,
            "get_mib_s": m.get,
            "put_ratio": m.put / floor,
            "node_writes_per_s": m.nodes_per_s,
        });
    }
    if args.json {
        outln!("{out}")?;
    } else {
        let r = |v: f64| v / floor;
        outln!("{:<34} {:>10} {:>8}", "measurement", "MiB/s", "× floor")?;
        let rows = [
            ("raw AES-SIV sealing (floor)", floor),
            ("chunker alone", chunker),
            ("put, memory, 1 thread", mem1.put),
            ("get, memory, 1 thread", mem1.get),
            ("put, memory, all cores", mem_all.put),
            ("get, memory, all cores", mem_all.get),
            ("put, embedded, all cores", embedded.put),
            ("get, embedded, all cores", embedded.get),
        ];
        for (name, v) in rows {
            outln!("{name:<34} {v:>10.0} {:>8.2}", r(v))?;
        }
        if let Some(st) = &stream {
            let put = format!("put, embedded, {} MiB streamed", args.stream_mib);
            let get = format!("get, embedded, {} MiB streamed", args.stream_mib);
            outln!("{put:<34} {:>10.0} {:>8.2}", st.put, r(st.put))?;
            outln!("{get:<34} {:>10.0} {:>8.2}", st.get, r(st.get))?;
        }
        outln!("all cores / 1 thread (put): {:.2}×", mem_all.put / mem1.put)?;
        outln!("embedded node writes/s: {:.0}", embedded.nodes_per_s)?;
        if let Some(b) = out.get("backend") {
            let url = args.backend.as_deref().map(seccs_backends::redact);
            outln!("backend {}: {b}", url.unwrap_or_default())?;
        }
    }
    Ok(())
}
