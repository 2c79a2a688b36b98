//! `seccs bench`: measures each part against its floor in one process and
//! prints ratios, so the figures hold on a noisy machine.

mod copy;
mod kms;
mod share;
mod store;
mod tempfile;
mod tree;

use clap::{Args, Subcommand};

/// xorshift64*: a fixed, reproducible sequence for the benches' data and
/// offsets (not for secrets).
struct XorShift(u64);

impl XorShift {
    /// The next value of the sequence.
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Arguments of `seccs bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    store: store::StoreBenchArgs,
    #[command(subcommand)]
    part: Option<BenchPart>,
}

#[derive(Debug, Subcommand)]
enum BenchPart {
    /// Ephemeral files against the plain `tempfile` crate.
    Tempfile(tempfile::TempfileBenchArgs),
    /// The key service: key generation, local encryption, HTTPS requests.
    Kms(kms::KmsBenchArgs),
    /// The share network: save and load past the KDF, stored bytes.
    Share(share::ShareBenchArgs),
    /// A tree of many small files restored, against writing them plainly.
    Tree(tree::TreeBenchArgs),
    /// A store mirrored by `seccs copy`, against copying its files plainly.
    Copy(copy::CopyBenchArgs),
}

impl BenchArgs {
    /// Whether the bench prints JSON (--json).
    pub fn json(&self) -> bool {
        match &self.part {
            None => self.store.json,
            Some(BenchPart::Tempfile(a)) => a.json,
            Some(BenchPart::Kms(a)) => a.json,
            Some(BenchPart::Share(a)) => a.json,
            Some(BenchPart::Tree(a)) => a.json,
            Some(BenchPart::Copy(a)) => a.json,
        }
    }
}

/// Runs `seccs bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.part {
        None => store::run(args.store),
        Some(BenchPart::Tempfile(a)) => tempfile::run(a),
        Some(BenchPart::Kms(a)) => kms::run(a),
        Some(BenchPart::Share(a)) => share::run(a),
        Some(BenchPart::Tree(a)) => tree::run(a),
        Some(BenchPart::Copy(a)) => copy::run(a),
    }
}
