//! `seccs bench copy`: a store mirrored into a new one as `seccs copy DEST`
//! mirrors it (every entry read, authenticated and written through the
//! embedded backend), against copying the store's files plainly (as
//! `cp -r` copies them) in the same process and on the same file system.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

/// Options of the copy bench.
#[derive(Debug, Clone, clap::Args)]
pub struct CopyBenchArgs {
    /// MiB of content in the store copied (random, so its leaves do not
    /// compress), from 1 to 16384.
    #[arg(long, default_value_t = 64, value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(1..=16_384))]
    size_mib: u64,
    /// Split the content into this many files of equal size, put as one
    /// directory (`seccs put DIR`), from 0 to 1000000: a store of many
    /// names, whose catalog copy walks (0: one file, one name).
    #[arg(long, default_value_t = 0, value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    files: u64,
    /// Rounds, from 1 to 100; each figure is the best round (a busy machine
    /// only ever makes a round slower).
    #[arg(long, default_value_t = 3, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Writes `mib` MiB of random bytes to `path`: one file, or with `files`
/// above 0 a directory of that many files of equal size (at least a byte
/// each), spread over subdirectories of at most 1000 files, as a source
/// tree is.
fn write_content(path: &Path, mib: u64, files: u64) -> Result<()> {
    let mut sequence = super::XorShift(0x2545_f491_4f6c_dd1d);
    let mut block = vec![0u8; 1 << 20];
    // `len` random bytes into `file`, a block at a time.
    let mut write = |file: &mut fs::File, mut len: u64| -> Result<()> {
        while len > 0 {
            let part = &mut block[..usize::try_from(len.min(1 << 20))?];
            for word in part.chunks_mut(8) {
                let bytes = sequence.next_u64().to_le_bytes();
                word.copy_from_slice(&bytes[..word.len()]);
            }
            file.write_all(part)?;
            len -= part.len() as u64;
        }
        Ok(())
    };
    let total = mib << 20;
    if files == 0 {
        return write(&mut fs::File::create(path)?, total);
    }
    for i in 0..files {
        let dir = path.join(format!("d{:04}", i / 1000));
        if i % 1000 == 0 {
            fs::create_dir_all(&dir)?;
        }
        let mut file = fs::File::create(dir.join(format!("f{i:07}")))?;
        write(&mut file, (total / files).max(1))?;
    }
    Ok(())
}

/// Copies every file under `from` to `to` plainly, directories made as
/// they come; returns the bytes copied.
fn copy_plainly(from: &Path, to: &Path) -> Result<u64> {
    fs::create_dir_all(to)?;
    let mut bytes = 0;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            bytes += copy_plainly(&entry.path(), &target)?;
        } else {
            bytes += fs::copy(entry.path(), &target)?;
        }
    }
    Ok(bytes)
}

/// Runs `seccs ARGS` from `dir` as a user would, its output dropped, and
/// fails with what it said on standard error if it fails.
fn seccs(dir: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new(std::env::current_exe()?)
        .args(args)
        .current_dir(dir)
        .env_remove("SECCS_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run seccs")?;
    ensure!(
        out.status.success(),
        "seccs {} failed: {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Runs the copy bench.
pub fn run(args: CopyBenchArgs) -> Result<()> {
    let say = |s: String| {
        if !args.json {
            errln!("{s}");
        }
    };
    let shape = match args.files {
        0 => "one file".to_owned(),
        n => format!("{n} files"),
    };
    say(format!(
        "seccs bench copy: a store of {} MiB of random content in {shape} on the embedded \
         backend, copied, then copied again unchanged",
        args.size_mib
    ));
    // Everything on one file system: the current directory's, where stores
    // usually are (a temporary directory may be in memory).
    let work = tempfile::Builder::new()
        .prefix(".seccs-bench-copy-")
        .tempdir_in(".")
        .context("cannot make a directory for the bench in the current directory")?;
    let content = work.path().join("content");
    write_content(&content, args.size_mib, args.files)?;
    // The store is made and filled as a user does it, by the command.
    let source = work.path().join("store");
    seccs(
        work.path(),
        &[
            "--store".as_ref(),
            source.as_os_str(),
            "put".as_ref(),
            content.as_os_str(),
            "-q".as_ref(),
        ],
    )?;
    match args.files {
        0 => fs::remove_file(&content)?,
        _ => fs::remove_dir_all(&content)?,
    }
    let (mut mirrored, mut again, mut plain) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let mut store_bytes = 0;
    for round in 1..=args.rounds {
        say(format!("round {round}/{}", args.rounds));
        let dest = work.path().join(format!("copy-{round}"));
        let copy = || -> Result<Duration> {
            let start = Instant::now();
            seccs(
                work.path(),
                &[
                    "--store".as_ref(),
                    source.as_os_str(),
                    "copy".as_ref(),
                    dest.as_os_str(),
                    "-q".as_ref(),
                ],
            )?;
            Ok(start.elapsed())
        };
        mirrored = mirrored.min(copy()?);
        // What a scheduled copy into an up-to-date mirror costs: the
        // source verified, every entry looked up in DEST, every name's
        // record of both stores read and compared, nothing written.
        again = again.min(copy()?);
        let start = Instant::now();
        store_bytes = copy_plainly(&source, &work.path().join(format!("plain-{round}")))?;
        plain = plain.min(start.elapsed());
        // The copy must be the store: verify reads every node back.
        seccs(
            work.path(),
            &["--store".as_ref(), dest.as_os_str(), "verify".as_ref()],
        )?;
        // A round's copies go before the next: at most two stores' worth
        // of disk beside the source.
        fs::remove_dir_all(&dest)?;
        fs::remove_dir_all(work.path().join(format!("plain-{round}")))?;
    }
    let mib = store_bytes as f64 / f64::from(1 << 20);
    let mib_s = |d: Duration| mib / d.as_secs_f64();
    let ratio = mirrored.as_secs_f64() / plain.as_secs_f64();
    let again_ratio = again.as_secs_f64() / plain.as_secs_f64();
    if args.json {
        let out = serde_json::json!({
            "size_mib": args.size_mib,
            "files": args.files,
            "store_bytes": store_bytes,
            "copy_mib_per_s": mib_s(mirrored),
            "plain_mib_per_s": mib_s(plain),
            "copy_time_ratio_to_plain": ratio,
            "unchanged_copy_seconds": again.as_secs_f64(),
            "unchanged_copy_time_ratio_to_plain": again_ratio,
        });
        outln!("{out}")?;
    } else {
        outln!("{:<46} {:>10} {:>9}", "measurement", "MiB/s", "seconds")?;
        let rows = [
            ("plain copy of the store's files (floor)", plain),
            ("seccs copy DEST", mirrored),
            ("seccs copy DEST again, nothing changed", again),
        ];
        for (name, d) in rows {
            outln!("{name:<46} {:>10.1} {:>9.3}", mib_s(d), d.as_secs_f64())?;
        }
        outln!("copy time / floor: {ratio:.2}×; unchanged copy time / floor: {again_ratio:.2}×")?;
    }
    Ok(())
}
