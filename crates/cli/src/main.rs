//! `seccs`: the command-line entry point. It parses, calls a part's crate,
//! prints, and exits; no format or crypto code lives here.

/// `println!` that returns the error (a full disk) for the caller to
/// report, where `println!` would panic. It writes a report line: a closed
/// pipe ends the report, not the command (see `output::ReportOut`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!($crate::output::report_out(), $($arg)*)
    }};
}

/// `outln!` for a line that is the command's result, not a report of it (a
/// content's reference, a key): a closed pipe is an error, for the caller
/// to turn into what losing that line means.
macro_rules! dataln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// Like `eprintln!`, but a standard error that cannot be written (a closed
/// pipe) is no reason to panic: there is nowhere left to say anything, and
/// the exit code still tells.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

#[macro_use]
mod exit;

mod attach;
mod bench;
mod copy;
mod diff;
mod exclude;
mod harden;
mod input;
mod interrupt;
mod kms;
mod open;
mod output;
mod progress;
mod share;
mod sparse;
mod store;
mod tree;
mod xattr;

use clap::{Parser, Subcommand};

/// seccs keeps data confidential and intact on storage and machines you do not trust.
#[derive(Debug, Parser)]
#[command(
    name = "seccs",
    version,
    about,
    long_about = None,
    after_help = "Every seccs process turns core dumps off (RLIMIT_CORE 0, soft and hard) and, \
                  on Linux, makes itself non-dumpable, so that neither a crash nor another \
                  process of the same user (gdb, gcore, /proc/PID/mem) gets the keys in its \
                  memory; root still can. SECCS_ALLOW_CORE_DUMPS=1 leaves both allowed, to \
                  debug a crash.\n\n\
                  Exit status: 0 when the command did all it was asked; 1 when it ran to its end \
                  and reports problems (damage found by verify, gc, copy, kms check or share \
                  check; files a put or restore could not take while it did the rest; a copy \
                  refused for versions only DEST holds); 2 when it could not run or stopped part \
                  way (a store it cannot open, a wrong key, an unreachable backend, a full \
                  disk: with --json, standard output then gets {\"error\": MESSAGE, \"exit\": \
                  2}) or was given wrong arguments (a usage error); 128 + N when stopped by \
                  signal N."
)]
struct Cli {
    #[command(flatten)]
    location: open::StoreLocation,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a content store (chunk size, wrapper, backend, key file), or
    /// with --attach open again one whose directory was lost.
    Init(store::InitArgs),
    /// Store a file, standard input (-) or a directory tree; prints content
    /// references.
    ///
    /// Where --store holds no store yet, `put` first makes one as `init`
    /// does with its defaults (the embedded backend, a new key file in the
    /// store directory) and says so; run `init` first for any other
    /// backend or key (a key service, the share network).
    Put(store::PutArgs),
    /// Read a content back (by reference, NAME or NAME@N), or restore a tree
    /// (PREFIX/ -o DIR).
    Get(store::GetArgs),
    /// Remove one put of a content, a name or one of its versions, every name
    /// under a prefix, or the names whose files are gone.
    Rm(store::RmArgs),
    /// List stored names (newest versions; --all for every version).
    Ls(store::LsArgs),
    /// Show what changed under a prefix between two times (+ added,
    /// - removed, M modified, T changed type, U metadata only).
    Diff(diff::DiffArgs),
    /// Show what the backend holds: entries, bytes, nodes.
    Stat(store::StatArgs),
    /// Check every node, catalog record and reference count.
    Verify(store::VerifyArgs),
    /// Remove orphaned nodes, fix reference counts, and give the disk space
    /// of removed contents back.
    Gc(store::GcArgs),
    /// Make another store (DEST) an exact mirror of this one, on any
    /// backend: to move a store, or to keep a copy of it up to date.
    #[command(long_about = copy::LONG_ABOUT)]
    Copy(copy::CopyArgs),
    /// The key service: KEK/DEK facility, HTTPS server, local encryption.
    Kms(kms::KmsArgs),
    /// The share network: files split t-of-n across servers.
    Share(share::ShareArgs),
    /// Measure each part against its floor in one process.
    Bench(bench::BenchArgs),
}

impl Command {
    /// Whether the command was asked for JSON on standard output (and so
    /// gets a JSON document saying why where it cannot run).
    fn json(&self) -> bool {
        match self {
            Command::Ls(a) => a.json,
            Command::Stat(a) => a.json,
            Command::Verify(a) => a.json,
            Command::Gc(a) => a.json,
            Command::Diff(a) => a.json,
            Command::Copy(a) => a.json,
            Command::Kms(a) => a.json(),
            Command::Share(a) => a.json(),
            Command::Bench(a) => a.json(),
            Command::Init(_) | Command::Put(_) | Command::Get(_) | Command::Rm(_) => false,
        }
    }
}

/// Logs to standard error at `default` (or `RUST_LOG`), coloured only on
/// a terminal: a log file gets no escape sequences.
fn init_tracing(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() {
    harden::harden_process();
    let cli = Cli::parse();
    let before = &cli.location;
    let json = cli.command.json();
    let result = match cli.command {
        Command::Init(args) => store::init(&before.overridden_by(&args.location), args),
        Command::Put(args) => store::put(&before.overridden_by(&args.location), args),
        Command::Get(args) => store::get(&before.overridden_by(&args.location), args),
        Command::Rm(args) => store::rm(&before.overridden_by(&args.location), args),
        Command::Ls(args) => store::ls(&before.overridden_by(&args.location), args),
        Command::Diff(args) => diff::run(&before.overridden_by(&args.location), args),
        Command::Stat(args) => store::stat(&before.overridden_by(&args.location), args),
        Command::Verify(args) => store::verify(&before.overridden_by(&args.location), args),
        Command::Gc(args) => store::gc(&before.overridden_by(&args.location), args),
        Command::Copy(args) => copy::run(&before.overridden_by(&args.location), args),
        Command::Kms(_) | Command::Share(_) | Command::Bench(_) if before.is_given() => {
            Err(anyhow::anyhow!(
                "--store, --lock-wait and --share-password-file are options of the store \
                 commands (init, put, get, rm, ls, diff, stat, verify, gc, copy); `kms`, `share` and \
                 `bench` use no store (`share save` and `share load` take --password-file)"
            ))
        }
        Command::Kms(args) => kms::run(args),
        Command::Share(args) => share::run(args),
        Command::Bench(args) => bench::run(args),
    };
    if let Err(err) = result {
        // A closed pipe (`seccs get REF | head`) is not an error.
        // (The store's I/O error holds its cause in its message, not as
        // its source.)
        if err
            .chain()
            .filter_map(|e| {
                e.downcast_ref::<std::io::Error>().or_else(|| {
                    e.downcast_ref::<seccs_store::StoreError>()
                        .and_then(seccs_store::StoreError::io_error)
                })
            })
            .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        {
            std::process::exit(0);
        }
        if json && let Some(document) = exit::json_failure(&err) {
            let _ = dataln!("{document}");
        }
        errln!("seccs: {err:#}");
        std::process::exit(exit::status(&err));
    }
}
