//! `seccs bench tempfile`: encrypted ephemeral files against the plain
//! `tempfile` crate, in one process, on the same directory.
//!
//! Both sides run the same code through `Read`/`Write`/`Seek` on an unnamed
//! temporary file: sequential write (1 MiB writes, then `flush`) and
//! sequential read (1 MiB reads) of `--size-mib`, then random 4 KiB reads and
//! writes at block-aligned offsets drawn from the same sequence. Neither side
//! syncs to disk: both measure the page cache, the encrypted side including
//! the write-back of its cache (`flush`), so the ratio is the cost of the
//! sealing and the block bookkeeping. Each figure is the best of three
//! rounds, alternating the two sides.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

/// Arguments of `seccs bench tempfile`.
#[derive(Debug, Args)]
pub struct TempfileBenchArgs {
    /// MiB written and read sequentially (the random test runs on a file of
    /// this size too), from 1 to 16777216 (16 TiB).
    #[arg(long, default_value_t = 256, value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    size_mib: u64,
    /// Number of random 4 KiB operations (half reads, half writes), from 1
    /// to 4294967296.
    #[arg(long, default_value_t = 40_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    random_ops: u64,
    /// Directory for the files (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

const CHUNK: usize = 1 << 20;
const RANDOM_IO: usize = 4096;
const ROUNDS: usize = 3;

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    seq_write: f64,
    seq_read: f64,
    rand_rw: f64,
}

impl Figures {
    fn best(self, o: Figures) -> Figures {
        Figures {
            seq_write: self.seq_write.max(o.seq_write),
            seq_read: self.seq_read.max(o.seq_read),
            rand_rw: self.rand_rw.max(o.rand_rw),
        }
    }
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
}

/// A fixed, reproducible sequence of block offsets.
struct Offsets(super::XorShift);

impl Offsets {
    fn next(&mut self, blocks: u64) -> u64 {
        (self.0.next_u64() >> 11) % blocks
    }
}

fn measure<F: Read + Write + Seek>(
    f: &mut F,
    args: &TempfileBenchArgs,
    data: &[u8],
) -> anyhow::Result<Figures> {
    let size = args.size_mib << 20;
    let start = Instant::now();
    let mut written = 0u64;
    while written < size {
        let n = (size - written).min(CHUNK as u64) as usize;
        f.write_all(&data[..n])?;
        written += n as u64;
    }
    f.flush()?;
    let seq_write = mib_s(size, start.elapsed().as_secs_f64());

    f.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut read = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        read += n as u64;
    }
    let seq_read = mib_s(read, start.elapsed().as_secs_f64());
    anyhow::ensure!(read == size, "read back {read} of {size} bytes");

    let blocks = (size / RANDOM_IO as u64).max(1);
    let mut offsets = Offsets(super::XorShift(0x9e37_79b9_7f4a_7c15));
    let mut one = [0u8; RANDOM_IO];
    let start = Instant::now();
    for i in 0..args.random_ops {
        f.seek(SeekFrom::Start(offsets.next(blocks) * RANDOM_IO as u64))?;
        if i % 2 == 0 {
            f.read_exact(&mut one)?;
        } else {
            f.write_all(&data[..RANDOM_IO])?;
        }
    }
    f.flush()?;
    let rand_rw = mib_s(
        args.random_ops * RANDOM_IO as u64,
        start.elapsed().as_secs_f64(),
    );
    Ok(Figures {
        seq_write,
        seq_read,
        rand_rw,
    })
}

/// Runs `seccs bench tempfile`.
pub fn run(args: TempfileBenchArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    // Refused before a round starts, naming the directory: a file made in
    // it would fail with the bare cause only.
    tempfile::tempfile_in(&dir).with_context(|| {
        let given = if args.dir.is_some() {
            "--dir "
        } else {
            "the temporary directory "
        };
        format!("cannot make a file in {given}{}", dir.display())
    })?;
    let mut data = vec![0u8; CHUNK];
    seccs_core::random_bytes(&mut data)?;

    let mut plain = Figures::default();
    let mut sealed = Figures::default();
    for round in 0..ROUNDS {
        if !args.json {
            errln!("round {}/{ROUNDS}", round + 1);
        }
        let mut f = tempfile::tempfile_in(&dir)?;
        plain = plain.best(measure(&mut f, &args, &data)?);
        drop(f);
        let mut f = seccs_tempfile::tempfile_in(&dir)?;
        sealed = sealed.best(measure(&mut f, &args, &data)?);
    }

    let ratio = |a: f64, b: f64| a / b.max(1e-9);
    let out = serde_json::json!({
        "size_mib": args.size_mib,
        "random_ops": args.random_ops,
        "block_size": seccs_tempfile::format::DEFAULT_BLOCK_SIZE,
        "plain_seq_write_mib_s": plain.seq_write,
        "plain_seq_read_mib_s": plain.seq_read,
        "plain_rand_rw_mib_s": plain.rand_rw,
        "seq_write_mib_s": sealed.seq_write,
        "seq_read_mib_s": sealed.seq_read,
        "rand_rw_mib_s": sealed.rand_rw,
        "seq_write_ratio": ratio(sealed.seq_write, plain.seq_write),
        "seq_read_ratio": ratio(sealed.seq_read, plain.seq_read),
        "rand_rw_ratio": ratio(sealed.rand_rw, plain.rand_rw),
    });
    if args.json {
        outln!("{out}")?;
    } else {
        outln!(
            "{:<28} {:>12} {:>12} {:>8}",
            "measurement",
            "plain MiB/s",
            "seccs MiB/s",
            "ratio"
        )?;
        for (name, p, s) in [
            ("sequential write", plain.seq_write, sealed.seq_write),
            ("sequential read", plain.seq_read, sealed.seq_read),
            ("random 4 KiB read+write", plain.rand_rw, sealed.rand_rw),
        ] {
            outln!("{name:<28} {p:>12.0} {s:>12.0} {:>8.2}", ratio(s, p))?;
        }
    }
    Ok(())
}
