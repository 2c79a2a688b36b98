//! A `seccs init` (or a `seccs copy` making its DEST) stopped part way
//! (SIGKILL, power loss) leaves a store marked unfinished: every command
//! refuses it, saying what happened and what to do, and the same init
//! (or copy) run again removes what the stopped one made and makes the
//! store afresh.

mod common;

use common::{ok, ok_err, run, seccs};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd`, which must fail; returns its standard error.
fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Marks the finished store at `dir` as one `by` (`init` or `copy`) was
/// stopped making: config.toml as it is written first.
fn mark_unfinished(dir: &Path, by: &str) {
    let config = dir.join("config.toml");
    let text = std::fs::read_to_string(&config).expect("config.toml");
    std::fs::write(&config, format!("unfinished = \"{by}\"\n{text}")).expect("write config");
}

/// Every command refuses the unfinished store at `dir`, saying what to do.
fn refused_as_unfinished(dir: &Path, by: &str) {
    for args in [&["ls"][..], &["stat"], &["verify"]] {
        let err = fails(seccs(dir).args(args));
        assert!(
            err.contains(&format!(
                "holds a store whose `seccs {by}` was stopped before it finished"
            )) && err.contains(&format!("run the same `seccs {by}` again")),
            "{args:?}: {err}"
        );
    }
}

/// The store at `dir` works: a put, a get of it, a clean verify.
fn works(dir: &Path, tmp: &Path) {
    let file = tmp.join("data.bin");
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).expect("write input");
    ok(seccs(dir)
        .arg("put")
        .arg(&file)
        .args(["--name", "doc", "-q"]));
    let got = tmp.join("got.bin");
    ok(seccs(dir).args(["get", "doc", "-o"]).arg(&got));
    assert_eq!(std::fs::read(&got).expect("read output"), data);
    ok(seccs(dir).arg("verify"));
    std::fs::remove_file(&got).expect("remove output");
}

/// The states a stopped init leaves, in the order it makes things; each
/// built from a finished store by taking away what was not made yet.
#[derive(Debug, Clone, Copy)]
enum Left {
    /// config.toml only (stopped before the key file).
    Config,
    /// config.toml and the key file.
    Key,
    /// everything but config.toml's last write.
    All,
}

const LEFT: [Left; 3] = [Left::Config, Left::Key, Left::All];

#[test]
fn an_embedded_init_stopped_at_each_step_is_made_afresh_by_the_next() {
    let tmp = tempfile::tempdir().expect("tmp");
    for left in LEFT {
        let dir = tmp.path().join(format!("{left:?}"));
        ok(seccs(&dir).arg("init"));
        match left {
            Left::Config => {
                std::fs::remove_file(dir.join("key")).expect("rm key");
                std::fs::remove_dir_all(dir.join("db")).expect("rm db");
            }
            Left::Key => std::fs::remove_dir_all(dir.join("db")).expect("rm db"),
            Left::All => {}
        }
        mark_unfinished(&dir, "init");
        refused_as_unfinished(&dir, "init");
        let err = ok_err(seccs(&dir).arg("init"));
        assert!(
            err.contains("was stopped before it finished; removed what it made"),
            "{left:?}: {err}"
        );
        match left {
            Left::Config => assert!(!err.contains("the key file"), "{err}"),
            Left::Key => assert!(err.contains("the key file") && !err.contains("database")),
            Left::All => assert!(err.contains("the key file") && err.contains("database")),
        }
        let config = std::fs::read_to_string(dir.join("config.toml")).expect("config");
        assert!(!config.contains("unfinished"), "{config}");
        works(&dir, tmp.path());
    }
}

fn redis_url(port: u16, prefix: &str) -> String {
    format!("redis://127.0.0.1:{port}/0?prefix={prefix}:")
}

#[test]
fn a_redis_init_stopped_at_each_step_is_made_afresh_by_the_next() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);
    for left in LEFT {
        let dir = tmp.path().join(format!("{left:?}"));
        let url = redis_url(port, &format!("{left:?}"));
        ok(seccs(&dir).args(["init", "--backend", &url]));
        if !matches!(left, Left::All) {
            // Stopped before the marker: the server holds none.
            let out = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "FLUSHALL"])
                .output()
                .expect("redis-cli");
            assert!(out.status.success());
        }
        if matches!(left, Left::Config) {
            std::fs::remove_file(dir.join("key")).expect("rm key");
        }
        mark_unfinished(&dir, "init");
        refused_as_unfinished(&dir, "init");
        let err = ok_err(seccs(&dir).args(["init", "--backend", &url]));
        assert!(
            err.contains("was stopped before it finished; removed what it made"),
            "{left:?}: {err}"
        );
        assert_eq!(
            err.contains("the store marker on backend"),
            matches!(left, Left::All),
            "{left:?}: {err}"
        );
        works(&dir, tmp.path());
    }
}

/// What may be data is never removed: a database or a backend that holds
/// entries under an unfinished config.toml is refused, and kept.
#[test]
fn an_unfinished_store_whose_backend_holds_entries_is_refused_and_kept() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);
    let file = tmp.path().join("precious.txt");
    std::fs::write(&file, b"precious").expect("write");
    for backend in ["embedded".to_owned(), redis_url(port, "kept")] {
        let dir = tmp
            .path()
            .join(if backend == "embedded" { "e" } else { "r" });
        ok(seccs(&dir).args(["init", "--backend", &backend]));
        ok(seccs(&dir)
            .arg("put")
            .arg(&file)
            .args(["--name", "p", "-q"]));
        mark_unfinished(&dir, "init");
        let err = fails(seccs(&dir).args(["init", "--backend", &backend]));
        assert!(
            err.contains("entries") && err.contains("not removing"),
            "{err}"
        );
        assert!(dir.join("key").exists(), "the key file is kept");
        // Taken back by hand, the store is whole.
        let config = dir.join("config.toml");
        let text = std::fs::read_to_string(&config).expect("config");
        std::fs::write(&config, text.replace("unfinished = \"init\"\n", "")).expect("write");
        assert_eq!(ok(seccs(&dir).args(["get", "p"])), "precious");
    }
}

fn source_store(tmp: &Path) -> std::path::PathBuf {
    let source = tmp.join("source");
    ok(seccs(&source).args(["init", "--chunk-size", "256"]));
    for i in 0..5u32 {
        let file = tmp.join(format!("f{i}"));
        let data: Vec<u8> = (0..(3000 + i * 1000))
            .map(|j| (j * (i + 3) % 253) as u8)
            .collect();
        std::fs::write(&file, data).expect("write");
        ok(seccs(&source)
            .arg("put")
            .arg(&file)
            .args(["--name", &format!("f{i}"), "-q"]));
    }
    source
}

/// DEST reads as SOURCE does: the same names, the same contents.
fn mirrors(source: &Path, dest: &Path) {
    let ls = |s: &Path| ok(seccs(s).args(["ls"]));
    assert_eq!(ls(source), ls(dest));
    for i in 0..5 {
        let name = format!("f{i}");
        let get = |s: &Path| {
            let out = run(seccs(s).args(["get", &name]));
            assert!(out.status.success(), "get {name} from {}", s.display());
            out.stdout
        };
        assert_eq!(get(source), get(dest));
    }
    ok(seccs(dest).arg("verify"));
}

#[test]
fn a_copy_stopped_while_making_dest_is_made_afresh_by_the_next() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = source_store(tmp.path());
    let dest = tmp.path().join("dest");
    // Stopped after its key file, before the database: what a copy
    // writes into DEST comes after DEST is made.
    ok(seccs(&source).arg("copy").arg(&dest).arg("-q"));
    std::fs::remove_dir_all(dest.join("db")).expect("rm db");
    mark_unfinished(&dest, "copy");
    refused_as_unfinished(&dest, "copy");
    let err = ok_err(seccs(&source).arg("copy").arg(&dest).arg("-q"));
    assert!(
        err.contains("`seccs copy` was stopped before it finished; removed what it made"),
        "{err}"
    );
    mirrors(&source, &dest);

    // Killed at moments spread over a copy's run, then run again.
    let started = Instant::now();
    let timed = tmp.path().join("timed");
    ok(seccs(&source).arg("copy").arg(&timed).arg("-q"));
    let took = started.elapsed();
    for i in 0..6u32 {
        let dest = tmp.path().join(format!("killed-{i}"));
        let mut child = seccs(&source)
            .arg("copy")
            .arg(&dest)
            .arg("-q")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn copy");
        std::thread::sleep(took * i / 6);
        let _ = child.kill();
        let _ = child.wait();
        ok_err(seccs(&source).arg("copy").arg(&dest).arg("-q"));
        mirrors(&source, &dest);
    }
}

/// A bounded loop of inits killed at moments spread over an init's run:
/// after each, the store is either made, or refused as unfinished and made
/// by the next init; never left for the operator to clean up by hand.
#[test]
fn an_init_killed_at_any_moment_is_made_by_the_next() {
    let tmp = tempfile::tempdir().expect("tmp");
    let test_started = Instant::now();
    let started = Instant::now();
    ok_err(seccs(&tmp.path().join("timed")).arg("init"));
    let took = started.elapsed();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let (mut unfinished, mut finished, mut nothing) = (0, 0, 0);
    for i in 0..10u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Spread over the run, with a jitter of a tenth of it.
        let delay = took * i / 10 + Duration::from_micros(x % (took.as_micros() as u64 / 10 + 1));
        let dir = tmp.path().join(format!("killed-{i}"));
        let mut child = seccs(&dir)
            .arg("init")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn init");
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let config = std::fs::read_to_string(dir.join("config.toml")).unwrap_or_default();
        if config.contains("unfinished") {
            unfinished += 1;
            refused_as_unfinished(&dir, "init");
        } else if config.is_empty() {
            nothing += 1;
        } else {
            finished += 1;
            works(&dir, tmp.path());
            continue;
        }
        ok_err(seccs(&dir).arg("init"));
        works(&dir, tmp.path());
    }
    eprintln!(
        "init takes {took:?}; of 10 killed: {unfinished} unfinished, {finished} finished, \
         {nothing} not begun"
    );
    assert!(test_started.elapsed() < Duration::from_secs(60));
}

/// Takes the writer lease of the Redis prefix `prefix` as another process
/// would, for `millis` ms: what an init killed part way leaves behind.
fn hold_lease(port: u16, prefix: &str, millis: u64) {
    let lease = [prefix.as_bytes(), b":\0seccs:writer-lease"].concat();
    let said = common::redis_command(
        port,
        &[
            b"SET",
            &lease,
            b"a-killed-init",
            b"PX",
            millis.to_string().as_bytes(),
        ],
    );
    assert!(
        said.starts_with(b"+OK"),
        "{}",
        String::from_utf8_lossy(&said)
    );
}

/// A network backend still held by a killed init's writer lease: init
/// says it is in use and how to wait, leaving nothing; with --lock-wait
/// it waits for the lease to lapse and makes the store, a new one or the
/// resumed one a stopped init left.
#[test]
fn an_init_waits_for_a_lease_left_by_a_killed_one_when_told() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);

    let dir = tmp.path().join("new");
    let url = redis_url(port, "new");
    hold_lease(port, "new", 60_000);
    let err = fails(seccs(&dir).args(["init", "--backend", &url]));
    assert!(
        err.contains("in use") && err.contains("--lock-wait TIME waits for it to finish"),
        "{err}"
    );
    assert!(!dir.join("config.toml").exists(), "nothing left: {err}");
    hold_lease(port, "new", 1_500);
    let err = ok_err(seccs(&dir).args(["init", "--backend", &url, "--lock-wait", "20"]));
    assert!(err.contains("waiting up to 20 s for it to finish"), "{err}");
    works(&dir, tmp.path());

    // A stopped init's store, its backend still held.
    let dir = tmp.path().join("stopped");
    let url = redis_url(port, "stopped");
    ok(seccs(&dir).args(["init", "--backend", &url]));
    mark_unfinished(&dir, "init");
    hold_lease(port, "stopped", 60_000);
    let err = fails(seccs(&dir).args(["init", "--backend", &url]));
    assert!(err.contains("--lock-wait TIME waits"), "{err}");
    hold_lease(port, "stopped", 1_500);
    let err = ok_err(seccs(&dir).args(["--lock-wait", "20", "init", "--backend", &url]));
    assert!(
        err.contains("waiting up to 20 s for it to finish")
            && err.contains("removed what it made (the store marker on backend"),
        "{err}"
    );
    works(&dir, tmp.path());
}

/// A first `put` makes the store it is given when there is none, with
/// the defaults; killed while it makes it (or an init with the defaults
/// killed), the next `put` makes it afresh, as the same init run again
/// would. A store a stopped `init` was making with other settings is left
/// for that init, named.
#[test]
fn a_put_finds_the_default_store_a_killed_put_was_making_and_makes_it_afresh() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("store");
    let file = tmp.path().join("first.bin");
    std::fs::write(&file, b"first").expect("write input");
    // What a first put makes before it stores anything.
    ok(seccs(&dir).arg("init"));
    mark_unfinished(&dir, "init");
    let err = ok_err(
        seccs(&dir)
            .arg("put")
            .arg(&file)
            .args(["--name", "again", "-q"]),
    );
    assert!(
        err.contains("was stopped before it finished; removed what it made")
            && err.contains("created a new store at"),
        "{err}"
    );
    works(&dir, tmp.path());

    let other = tmp.path().join("other");
    ok(seccs(&other).args(["init", "--chunk-size", "8192"]));
    mark_unfinished(&other, "init");
    let err = fails(
        seccs(&other)
            .arg("put")
            .arg(&file)
            .args(["--name", "x", "-q"]),
    );
    assert!(err.contains("run the same `seccs init` again"), "{err}");
    let config = std::fs::read_to_string(other.join("config.toml")).expect("config");
    assert!(config.contains("chunk_size = 8192"), "kept: {config}");
}
