//! `seccs bench`: measures each part against its floor in one process.

use clap::{Args, Subcommand};

/// Arguments of `seccs bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    part: Option<BenchPart>,
}

#[derive(Debug, Subcommand)]
enum BenchPart {}

/// Runs `seccs bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.part {
        None => anyhow::bail!("store bench not built yet"),
        Some(part) => match part {},
    }
}
