//! `seccs bench tree`: a tree of many small files restored as
//! `seccs get PREFIX/ -o DIR` restores it, against writing the same files
//! plainly (as `tar -x` writes them, with no sync) in the same process and
//! on the same file system.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::exclude::Excludes;
use crate::open::StoreLocation;
use crate::tree::{Ownership, TreeGet};

/// Options of the tree bench.
#[derive(Debug, Clone, clap::Args)]
pub struct TreeBenchArgs {
    /// Files in the tree, of 200 to 700 bytes each, in 50 × 7 directories;
    /// from 1 to 1000000.
    #[arg(long, default_value_t = 5000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    files: u32,
    /// Rounds, from 1 to 100; each figure is the best round (a busy machine
    /// only ever makes a round slower).
    #[arg(long, default_value_t = 3, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The tree's files: relative path and content.
fn tree_files(count: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let mut sequence = super::XorShift(0x9e37_79b9_7f4a_7c15);
    let mut next = move || sequence.next_u64();
    (0..count)
        .map(|i| {
            let len = 200 + (next() % 501) as usize;
            // Text-like: lines of hex digits, compressible as source is.
            let content: Vec<u8> = (0..len)
                .map(|j| match j % 64 {
                    63 => b'\n',
                    _ => b"0123456789abcdef"[(next() % 16) as usize],
                })
                .collect();
            let path = PathBuf::from(format!("d{:02}/s{}/f{i}.txt", i % 50, i % 7));
            (path, content)
        })
        .collect()
}

/// Writes `files` under `dir` plainly: directories made, each file
/// created, written and closed; with `sync_each`, synced before it is
/// closed too.
fn write_plainly(dir: &Path, files: &[(PathBuf, Vec<u8>)], sync_each: bool) -> Result<Duration> {
    let start = Instant::now();
    for (path, content) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = fs::File::create(&path)?;
        file.write_all(content)?;
        if sync_each {
            file.sync_all()?;
        }
    }
    Ok(start.elapsed())
}

/// Runs the tree bench.
pub fn run(args: TreeBenchArgs) -> Result<()> {
    let say = |s: String| {
        if !args.json {
            errln!("{s}");
        }
    };
    let files = tree_files(args.files as usize);
    let bytes: usize = files.iter().map(|(_, c)| c.len()).sum();
    say(format!(
        "seccs bench tree: {} files, {bytes} bytes, restored from a store on the embedded backend",
        args.files
    ));
    // Everything on one file system: the current directory's, where a
    // restore usually goes (a temporary directory may be in memory).
    let work = tempfile::Builder::new()
        .prefix(".seccs-bench-tree-")
        .tempdir_in(".")
        .context("cannot make a directory for the bench in the current directory")?;
    let source = work.path().join("tree");
    write_plainly(&source, &files, false)?;
    // The tree is put as a user puts it, by the command itself.
    let store_dir = work.path().join("store");
    let put = Command::new(std::env::current_exe()?)
        .arg("--store")
        .arg(&store_dir)
        .args(["put", "tree", "-q"])
        .current_dir(work.path())
        .env_remove("SECCS_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run seccs put")?;
    ensure!(
        put.status.success(),
        "seccs put failed: {}",
        String::from_utf8_lossy(&put.stderr).trim()
    );
    let opened = crate::open::open(
        &StoreLocation {
            store: Some(store_dir),
            lock_wait: None,
            share_password_file: None,
        },
        false,
    )?;
    let exclude = Excludes::new(&[])?;
    let how = TreeGet {
        at: None,
        exclude: &exclude,
        ownership: Ownership::Restorer,
        progress: false,
        // The bench restores into directories of its own, beside its store.
        store_dir: None,
    };
    let (mut restore, mut plain, mut synced) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for round in 1..=args.rounds {
        say(format!("round {round}/{}", args.rounds));
        // Outputs stay until the end: a file system slows down creating
        // files right after as many were removed.
        let out = work.path().join(format!("restored-{round}"));
        let start = Instant::now();
        crate::tree::get_tree(&opened.store, "tree/", &out, &how)?;
        restore = restore.min(start.elapsed());
        plain = plain.min(write_plainly(
            &work.path().join(format!("plain-{round}")),
            &files,
            false,
        )?);
        synced = synced.min(write_plainly(
            &work.path().join(format!("synced-{round}")),
            &files,
            true,
        )?);
        // The restore must be the tree itself.
        for (path, content) in files.iter().step_by(97) {
            let got = fs::read(out.join("tree").join(path))?;
            ensure!(&got == content, "{} came back wrong", path.display());
        }
    }
    let per_s = |d: Duration| args.files as f64 / d.as_secs_f64();
    let ratio = restore.as_secs_f64() / plain.as_secs_f64();
    if args.json {
        let out = serde_json::json!({
            "files": args.files,
            "bytes": bytes,
            "restore_files_per_s": per_s(restore),
            "plain_files_per_s": per_s(plain),
            "plain_synced_each_files_per_s": per_s(synced),
            "restore_time_ratio_to_plain": ratio,
        });
        outln!("{out}")?;
    } else {
        outln!("{:<46} {:>10} {:>9}", "measurement", "files/s", "seconds")?;
        let rows = [
            ("plain writes, no sync (floor)", plain),
            ("plain writes, fsync each", synced),
            ("seccs get tree/ -o DIR", restore),
        ];
        for (name, d) in rows {
            outln!("{name:<46} {:>10.0} {:>9.3}", per_s(d), d.as_secs_f64())?;
        }
        outln!("restore time / floor: {ratio:.2}×")?;
    }
    Ok(())
}
