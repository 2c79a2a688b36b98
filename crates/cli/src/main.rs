//! `seccs`: the command-line entry point. It parses, calls a part's crate,
//! prints, and exits; no format or crypto code lives here.

mod bench;
mod kms;
mod share;

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
    /// The key service: KEK/DEK facility, HTTPS server, local encryption.
    Kms(kms::KmsArgs),
    /// The share network: files split t-of-n across servers.
    Share(share::ShareArgs),
    /// Measure each part against its floor in one process.
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Kms(args) => kms::run(args),
        Command::Share(args) => share::run(args),
        Command::Bench(args) => bench::run(args),
    };
    if let Err(err) = result {
        eprintln!("seccs: {err:#}");
        std::process::exit(1);
    }
}
