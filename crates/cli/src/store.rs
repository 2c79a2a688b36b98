//! The content store's commands: `init`, `put`, `get`, `rm`, `stat`.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use seccs_store::dir::{EMBEDDED, KeySource};
use seccs_store::{ContentRef, DEFAULT_CHUNK_SIZE, Params, WrapperKind};

use crate::open::{self, NewStore, StoreLocation};

/// `seccs init`: create a store.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Target chunk size S in bytes (at least twice the reference size: 48
    /// for aes-siv, 80 for the SHA-256 based wrappers).
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE, value_name = "N")]
    chunk_size: usize,
    /// How nodes are sealed: aes-siv (encrypted, default), aes-siv-dr,
    /// hmac-sha-256, hmac-sha-256-dr (authenticated, not encrypted), sha-256
    /// (integrity only).
    #[arg(long, default_value = "aes-siv", value_name = "NAME")]
    wrapper: WrapperKind,
    /// Where to write the new store key (mode 0600). Default: DIR/key.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Where the encrypted nodes live: `embedded` (default, in DIR/db), or a
    /// URL such as redis://127.0.0.1:6379/0, postgres://USER@HOST/DB,
    /// s3://BUCKET/PREFIX?endpoint=URL&region=R. Credentials come from the
    /// environment, never from the config.
    #[arg(long, default_value = EMBEDDED, value_name = "URL")]
    backend: String,
}

/// `seccs put`: store a file.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The file to store, or `-` for standard input.
    file: PathBuf,
}

/// `seccs get`: read a content back.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The content reference (hex, as `seccs put` printed it).
    reference: String,
    /// Write to FILE instead of standard output. FILE appears only when the
    /// whole content was read and authenticated.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Read only LEN bytes from OFFSET.
    #[arg(long, value_name = "OFFSET:LEN", value_parser = parse_range)]
    range: Option<(u64, u64)>,
}

/// `seccs rm`: undo one put.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The content reference.
    reference: String,
}

/// `seccs stat`: what the backend holds.
#[derive(Debug, Args)]
pub struct StatArgs {
    /// Print JSON: {"entries", "bytes", "nodes", ...}.
    #[arg(long)]
    json: bool,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (o, l) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not OFFSET:LEN"))?;
    let o = o.parse().map_err(|_| format!("{o:?} is not an offset"))?;
    let l = l.parse().map_err(|_| format!("{l:?} is not a length"))?;
    Ok((o, l))
}

fn parse_ref(s: &str) -> Result<ContentRef> {
    s.parse::<ContentRef>()
        .with_context(|| format!("{s:?} is not a content reference"))
}

/// Runs `seccs init`.
pub fn init(loc: &StoreLocation, args: InitArgs) -> Result<()> {
    let path = loc.path()?;
    let params = Params::new(args.chunk_size, args.wrapper)?;
    let key_path = args.key_file.clone().unwrap_or_else(|| PathBuf::from("key"));
    let key_shown = if key_path.is_absolute() {
        key_path.clone()
    } else {
        path.join(&key_path)
    };
    open::create(
        &path,
        NewStore {
            params,
            backend: args.backend.clone(),
            key: KeySource::File { path: key_path },
        },
    )?;
    eprintln!(
        "seccs: created a store at {} (chunk size {}, wrapper {}, backend {}); key file {}",
        path.display(),
        args.chunk_size,
        args.wrapper,
        args.backend,
        key_shown.display()
    );
    Ok(())
}

/// Runs `seccs put`.
pub fn put(loc: &StoreLocation, args: PutArgs) -> Result<()> {
    let opened = open::open(&loc.path()?, true)?;
    let outcome = if args.file.as_os_str() == "-" {
        opened.store.put_reader(&mut io::stdin().lock())?
    } else {
        let mut file = File::open(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        opened
            .store
            .put_reader(&mut file)
            .with_context(|| format!("cannot store {}", args.file.display()))?
    };
    println!("{}", outcome.content_ref);
    Ok(())
}

/// Runs `seccs get`.
pub fn get(loc: &StoreLocation, args: GetArgs) -> Result<()> {
    let r = parse_ref(&args.reference)?;
    let opened = open::open(&loc.path()?, false)?;
    let (offset, len) = args.range.unwrap_or((0, r.len()));
    match &args.output {
        None => {
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
            opened.store.get_range(&r, offset, len, &mut out)?;
            out.flush()?;
        }
        Some(path) => write_file_atomically(path, |out| {
            opened.store.get_range(&r, offset, len, out)?;
            Ok(())
        })?,
    }
    Ok(())
}

/// Writes a file through a temporary file in the same directory, renamed into
/// place only if `fill` succeeds: a failed read leaves no partial file.
pub fn write_file_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, tmp);
    fill(&mut out)?;
    let tmp = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Runs `seccs rm`.
pub fn rm(loc: &StoreLocation, args: RmArgs) -> Result<()> {
    let r = parse_ref(&args.reference)?;
    let opened = open::open(&loc.path()?, false)?;
    opened.store.delete(&r)?;
    Ok(())
}

/// Runs `seccs stat`.
pub fn stat(loc: &StoreLocation, args: StatArgs) -> Result<()> {
    let opened = open::open(&loc.path()?, false)?;
    let usage = opened.store.usage()?;
    let config = opened.dir.config();
    if args.json {
        let v = serde_json::json!({
            "entries": usage.entries,
            "bytes": usage.bytes,
            "nodes": usage.entries,
            "chunk_size": config.chunk_size,
            "wrapper": config.wrapper,
            "backend": config.backend,
        });
        println!("{v}");
    } else {
        println!("store      {}", opened.dir.path().display());
        println!("backend    {}", config.backend);
        println!("wrapper    {}", config.wrapper);
        println!("chunk size {}", config.chunk_size);
        println!("entries    {}", usage.entries);
        println!("nodes      {}", usage.entries);
        println!("bytes      {}", usage.bytes);
    }
    Ok(())
}

/// Reads all of standard input (for commands that need it whole).
#[allow(dead_code)]
fn read_stdin() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    io::stdin().read_to_end(&mut buf)?;
    if buf.is_empty() {
        bail!("standard input is empty");
    }
    Ok(buf)
}
