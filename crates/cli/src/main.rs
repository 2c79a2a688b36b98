//! `seccs`: the command-line entry point. It parses, calls a part's crate,
//! prints, and exits; no format or crypto code lives here.

mod bench;

use clap::{Parser, Subcommand};

/// seccs keeps data confidential and intact on storage and machines you do not trust.
#[derive(Debug, Parser)]
#[command(name = "seccs", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure each part against its floor in one process.
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
    };
    if let Err(err) = result {
        eprintln!("seccs: {err:#}");
        std::process::exit(1);
    }
}
