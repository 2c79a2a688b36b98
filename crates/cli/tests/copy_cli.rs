//! `seccs copy` as an operator runs it: a mirror that reads back as the
//! store it was copied from, on the embedded backend and on Redis, kept up
//! to date by reruns, refused where DEST cannot hold the store's entries,
//! finished by a rerun after a kill, and never a silent copy of damage.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ok, random_file, redis_command, run, seccs};
use seccs_store::backend::{Backend, Batch, EmbeddedBackend, Entry};

/// `seccs copy DEST` with `args`, which must succeed; its report.
fn copy(store: &Path, dest: &Path, args: &[&str]) -> serde_json::Value {
    let out = ok(seccs(store)
        .arg("copy")
        .arg(dest)
        .args(["-q", "--json"])
        .args(args));
    serde_json::from_str(&out).expect("a JSON report")
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).expect("json")
}

/// Every version `ls --all --json` lists, one JSON line each.
fn listing(store: &Path) -> Vec<serde_json::Value> {
    ok(seccs(store).args(["ls", "--all", "--json"]))
        .lines()
        .map(json)
        .collect()
}

/// `stat --json`'s totals and kinds (what names the store and its backend
/// left out).
fn counted(store: &Path) -> serde_json::Value {
    let v = json(&ok(seccs(store).args(["stat", "--json"])));
    serde_json::json!({
        "entries": v["entries"],
        "bytes": v["bytes"],
        "nodes": v["nodes"],
        "names": v["names"],
        "by_kind": v["by_kind"],
    })
}

/// Every entry of an embedded store no process holds, in key order.
fn entries(store: &Path) -> Vec<(Vec<u8>, Entry)> {
    let backend = EmbeddedBackend::open_existing(&store.join("db")).expect("open the database");
    let mut all = Vec::new();
    backend
        .for_each(&mut |key, entry| {
            all.push((key.to_vec(), entry.clone()));
            Ok(())
        })
        .expect("walk");
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// DEST reads as SOURCE does: the same versions listed, each file version
/// read back byte for byte, the same counts, and a clean verify.
fn reads_alike(source: &Path, dest: &Path) {
    let versions = listing(source);
    assert_eq!(listing(dest), versions, "ls --all --json");
    for v in &versions {
        if v["kind"] != "file" {
            continue;
        }
        let spec = format!("{}@{}", v["name"].as_str().expect("a name"), v["version"]);
        let get = |store: &Path| {
            let out = run(seccs(store).args(["get", &spec, "-o", "-"]));
            assert!(out.status.success(), "get {spec}");
            out.stdout
        };
        assert!(get(dest) == get(source), "{spec} reads back alike");
    }
    assert_eq!(counted(dest), counted(source), "stat --json");
    ok(seccs(dest).arg("verify"));
}

/// A store with files of several versions, a tree put twice, and a
/// version removed.
fn source_store(tmp: &Path) -> PathBuf {
    let store = tmp.join("source");
    ok(seccs(&store).args(["init", "--chunk-size", "256"]));
    for (seed, name) in [(1, "docs/a"), (2, "docs/a"), (3, "docs/b"), (4, "docs/a")] {
        let file = random_file(tmp, "in.bin", 40_000 + seed as usize * 1_000, seed);
        ok(seccs(&store)
            .arg("put")
            .arg(&file)
            .args(["--name", name, "-q"]));
    }
    let tree = tmp.join("tree");
    random_file(&tree, "x", 10_000, 10);
    random_file(&tree, "sub/y", 20_000, 11);
    ok(seccs(&store).current_dir(tmp).args(["put", "tree", "-q"]));
    random_file(&tree, "x", 12_000, 12);
    random_file(&tree, "z", 5_000, 13);
    ok(seccs(&store).current_dir(tmp).args(["put", "tree", "-q"]));
    ok(seccs(&store).args(["rm", "docs/a@2"]));
    store
}

#[test]
fn copy_makes_an_exact_mirror_and_reruns_keep_it_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = source_store(tmp.path());
    let dest = tmp.path().join("dest");
    let out = run(seccs(&source).arg("copy").arg(&dest).arg("-q"));
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("created a store at"), "{said}");
    let summary = String::from_utf8_lossy(&out.stdout);
    let n = entries(&source).len();
    assert!(
        summary.starts_with(&format!("copied {n} entries (")),
        "{summary}"
    );
    assert!(
        summary.contains("0 already present, 0 removed"),
        "{summary}"
    );
    assert_eq!(entries(&dest), entries(&source), "every entry as stored");
    reads_alike(&source, &dest);
    // DEST has its own copy of the key, private, and the source's
    // parameters.
    let key = std::fs::metadata(dest.join("key")).expect("DEST/key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read(dest.join("key")).expect("key"),
        std::fs::read(source.join("key")).expect("key")
    );
    let config = std::fs::read_to_string(dest.join("config.toml")).expect("config");
    assert!(config.contains("chunk_size = 256"), "{config}");

    // (b) A rerun copies nothing.
    let again = copy(&source, &dest, &[]);
    assert_eq!(again["copied"], 0, "{again}");
    assert_eq!(again["removed"], 0, "{again}");
    assert_eq!(again["bytes_written"], 0, "{again}");
    assert_eq!(again["present"], n, "{again}");
    // Without -q, and standard error no terminal: no progress either.
    let out = run(seccs(&source).arg("copy").arg(&dest));
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("copied 0 entries (0 bytes written)"),
        "{text}"
    );
    // One small content put by reference is one node: one entry, said so.
    let small = tmp.path().join("small");
    std::fs::write(&small, b"one leaf").expect("write");
    ok(seccs(&source).arg("put").arg(&small).arg("-q"));
    let dry = ok(seccs(&source)
        .arg("copy")
        .arg(&dest)
        .args(["-q", "--dry-run"]));
    assert!(
        dry.starts_with("dry run, nothing written: would copy 1 entry ("),
        "{dry}"
    );
    let text = ok(seccs(&source).arg("copy").arg(&dest).arg("-q"));
    assert!(text.starts_with("copied 1 entry ("), "{text}");

    // (c) More puts and removals: a rerun mirrors them, removals too.
    let file = random_file(tmp.path(), "in.bin", 60_000, 20);
    ok(seccs(&source)
        .arg("put")
        .arg(&file)
        .args(["--name", "docs/c", "-q"]));
    ok(seccs(&source).args(["rm", "docs/b"]));
    ok(seccs(&source).args(["rm", "tree/"]));
    let report = copy(&source, &dest, &[]);
    assert!(report["copied"].as_u64() > Some(0), "{report}");
    assert!(report["removed"].as_u64() > Some(0), "{report}");
    assert_eq!(entries(&dest), entries(&source));
    reads_alike(&source, &dest);
    let last = copy(&source, &dest, &[]);
    assert_eq!(last["copied"], 0, "{last}");
    assert_eq!(last["removed"], 0, "{last}");
}

#[test]
fn copy_moves_a_store_to_redis_and_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);
    let source = source_store(tmp.path());
    let on_redis = tmp.path().join("on-redis");
    let url = format!("redis://127.0.0.1:{port}/0?prefix=moved:");
    let first = copy(&source, &on_redis, &["--backend", &url]);
    assert_eq!(first["copied"], entries(&source).len(), "{first}");
    let config = std::fs::read_to_string(on_redis.join("config.toml")).expect("config");
    assert!(config.contains("redis://"), "{config}");
    reads_alike(&source, &on_redis);
    let again = copy(&source, &on_redis, &[]);
    assert_eq!(again["copied"], 0, "{again}");
    // And back to the embedded backend, entry for entry.
    let back = tmp.path().join("back");
    copy(&on_redis, &back, &[]);
    assert_eq!(entries(&back), entries(&source));
    reads_alike(&on_redis, &back);
}

#[test]
fn a_dest_of_another_key_or_chunk_size_is_refused_and_left_as_it_was() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = source_store(tmp.path());
    let file = random_file(tmp.path(), "other.bin", 30_000, 30);
    // Another key: a store of its own.
    let other = tmp.path().join("other");
    ok(seccs(&other).args(["init", "--chunk-size", "256"]));
    ok(seccs(&other)
        .arg("put")
        .arg(&file)
        .args(["--name", "mine", "-q"]));
    let before = entries(&other);
    let out = run(seccs(&source).arg("copy").arg(&other));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has another key"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(entries(&other), before, "left as it was");
    // The source's key, another chunk size.
    let resized = tmp.path().join("resized");
    copy(&source, &resized, &[]);
    let config_path = resized.join("config.toml");
    let config = std::fs::read_to_string(&config_path).expect("config");
    let changed: String = config
        .lines()
        .filter(|l| !l.starts_with("params_check"))
        .map(|l| match l.starts_with("chunk_size") {
            true => "chunk_size = 512\n".to_owned(),
            false => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&config_path, changed).expect("config");
    ok(seccs(&source).args(["rm", "docs/b"]));
    let before = entries(&resized);
    let out = run(seccs(&source).arg("copy").arg(&resized));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has chunk size 512, the store copied 256"),
        "{err}"
    );
    assert_eq!(entries(&resized), before, "left as it was");
    // --backend is for a new DEST only: a usage error.
    let out = run(seccs(&source)
        .arg("copy")
        .arg(&other)
        .args(["--backend", "embedded"]));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // Nor is the store copied into itself.
    let out = run(seccs(&source).arg("copy").arg(&source));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the store being copied"));
}

#[test]
fn an_entry_that_does_not_authenticate_is_reported_not_copied_and_the_rest_is() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = source_store(tmp.path());
    let all = entries(&source);
    // A bit flipped in one node's value.
    let (key, entry) = all
        .iter()
        .find(|(k, _)| !seccs_store::catalog::is_catalog_key(k))
        .expect("a node")
        .clone();
    {
        let backend = EmbeddedBackend::open_existing(&source.join("db")).expect("open");
        let mut value = entry.value.clone();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        let mut batch = Batch::new();
        batch.put(key.clone(), value, entry.count);
        backend.apply(&batch).expect("damage one value");
    }
    let dest = tmp.path().join("dest");
    let out = run(seccs(&source).arg("copy").arg(&dest).arg("-q"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let hex = seccs_core::hexenc::encode(&key);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "source damage: tampered: node {hex} does not authenticate"
        )),
        "{said}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not an exact mirror"), "{err}");
    let copied = entries(&dest);
    assert!(copied.iter().all(|(k, _)| *k != key), "not copied");
    assert_eq!(copied.len(), all.len() - 1, "the rest is");
    // --json names it too, and a rerun says it again.
    let out = run(seccs(&source).arg("copy").arg(&dest).args(["-q", "--json"]));
    assert_eq!(out.status.code(), Some(1));
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    let damage = report["source_damage"].as_array().expect("source_damage");
    assert!(
        damage.iter().any(|l| l
            .as_str()
            .is_some_and(|l| l.starts_with(&format!("tampered: node {hex}")))),
        "{report}"
    );
    assert_eq!(report["copied"], 0, "{report}");
}

#[test]
fn a_copy_killed_part_way_or_a_mirror_losing_entries_is_finished_by_a_rerun() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = source_store(tmp.path());
    let big = random_file(tmp.path(), "big.bin", 6 << 20, 40);
    ok(seccs(&source)
        .arg("put")
        .arg(&big)
        .args(["--name", "big", "-q"]));
    let dest = tmp.path().join("dest");
    let mut child = seccs(&source)
        .arg("copy")
        .arg(&dest)
        .arg("-q")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start copy");
    let mut watch = common::StderrWatch::of(&mut child);
    // Killed once it has made DEST and begun copying into it.
    watch.wait_for("created a store at", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dest.join("db").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(150));
    let _ = child.kill();
    let status = child.wait().expect("wait");
    // Killed part way or not, the rerun ends with an exact mirror.
    let _ = status;
    copy(&source, &dest, &[]);
    assert_eq!(entries(&dest), entries(&source));
    reads_alike(&source, &dest);

    // Entries lost from the mirror (nodes, a catalog record) and a count
    // changed there: the next copy puts them back.
    {
        let backend = EmbeddedBackend::open_existing(&dest.join("db")).expect("open");
        let all = entries_of(&backend);
        let mut batch = Batch::new();
        let record = all
            .iter()
            .find(|(k, _)| seccs_store::catalog::is_catalog_key(k))
            .expect("a record");
        batch.delete(record.0.clone());
        let nodes: Vec<_> = all
            .iter()
            .filter(|(k, _)| !seccs_store::catalog::is_catalog_key(k))
            .collect();
        for (k, _) in nodes.iter().step_by(7) {
            batch.delete(k.clone());
        }
        batch.set_count(nodes[1].0.clone(), nodes[1].1.count + 3);
        backend.apply(&batch).expect("lose entries");
    }
    let report = copy(&source, &dest, &[]);
    assert!(report["copied"].as_u64() > Some(1), "{report}");
    assert_eq!(entries(&dest), entries(&source));
    reads_alike(&source, &dest);
}

fn entries_of(backend: &EmbeddedBackend) -> Vec<(Vec<u8>, Entry)> {
    let mut all = Vec::new();
    backend
        .for_each(&mut |key, entry| {
            all.push((key.to_vec(), entry.clone()));
            Ok(())
        })
        .expect("walk");
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn copy_help_says_what_a_mirror_is_how_reruns_work_and_shows_a_move_to_redis() {
    let out = ok(Command::new(env!("CARGO_BIN_EXE_seccs")).args(["copy", "--help"]));
    for needle in [
        "exact mirror",
        "incremental",
        "only once copy exits 0",
        "writer lease",
        "--lock-wait",
        "authenticated",
        "copy /srv/seccs-redis",
        "--backend 'redis://",
        "wrong way round",
        "--dry-run",
        "would remove: NAME@N",
        "removed: NAME@N",
    ] {
        assert!(out.contains(needle), "{needle:?} in: {out}");
    }
}

/// copy holds the store it copies as a writer does: while a put holds it,
/// copy fails with "store is in use" (making no DEST), or with
/// --lock-wait waits and then copies what that put stored.
#[test]
fn copy_waits_for_a_writer_of_the_source_and_copies_what_it_wrote() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = tmp.path().join("source");
    ok(seccs(&source).arg("init"));
    let spawn_holder = || {
        seccs(&source)
            .args(["put", "-", "--name", "held"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn put")
    };
    let mut holder = common::Killed(spawn_holder());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if holder.0.try_wait().expect("try_wait").is_some() {
            // Our probe took the lock first, and the put gave up.
            holder = common::Killed(spawn_holder());
            continue;
        }
        let out = run(seccs(&source).arg("stat"));
        if String::from_utf8_lossy(&out.stderr).contains("in use") {
            break;
        }
        assert!(Instant::now() < deadline, "the put never held the store");
    }
    let dest = tmp.path().join("dest");
    let out = run(seccs(&source).arg("copy").arg(&dest).arg("-q"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store is in use"), "{err}");
    assert!(!dest.exists(), "no DEST made");
    let waiting = seccs(&source)
        .arg("copy")
        .arg(&dest)
        .args(["-q", "--json", "--lock-wait", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn copy");
    std::thread::sleep(Duration::from_millis(500));
    {
        use std::io::Write;
        let mut stdin = holder.0.stdin.take().expect("stdin");
        stdin.write_all(b"what the put stores").expect("write");
    }
    assert!(holder.0.wait().expect("wait").success(), "the put ends");
    let out = waiting.wait_with_output().expect("copy");
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("waiting up to 60 s"), "{err}");
    let got = run(seccs(&dest).args(["get", "held", "-o", "-"]));
    assert_eq!(got.stdout, b"what the put stores");
    assert_eq!(entries(&dest), entries(&source));
}

/// A store whose key comes from the key service is copied to a DEST whose
/// config names the same key source (server, KEK file, CA, salt): no key
/// file is written, and DEST opens with the key the service gives.
#[test]
fn a_copy_of_a_store_keyed_by_the_key_service_names_the_same_key_source() {
    let tmp = tempfile::tempdir().expect("tmp");
    let srv = tmp.path().join("srv");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_seccs"))
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&srv)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the key server");
    let mut said = common::StderrWatch::of(&mut serve);
    let _server = common::Killed(serve);
    said.wait_for("SHA-256 fingerprint", Duration::from_secs(60));
    let url = said
        .said()
        .iter()
        .find_map(|l| l.strip_prefix("seccs kms listening on "))
        .expect("the server's address")
        .to_owned();
    let ca = srv.join("tls/ca.pem");
    let kek = tmp.path().join("kek");
    ok(Command::new(env!("CARGO_BIN_EXE_seccs"))
        .args(["kms", "new", "--server", &url, "--ca"])
        .arg(&ca)
        .arg("--out")
        .arg(&kek)
        .env_remove("SECCS_KMS_URL"));
    let source = tmp.path().join("source");
    ok(seccs(&source)
        .args(["init", "--key-from-kms", &url, "--kek"])
        .arg(&kek)
        .arg("--kms-ca")
        .arg(&ca)
        .env_remove("SECCS_KMS_URL"));
    let file = random_file(tmp.path(), "in.bin", 50_000, 70);
    ok(seccs(&source)
        .arg("put")
        .arg(&file)
        .args(["--name", "f", "-q"]));
    let dest = tmp.path().join("dest");
    copy(&source, &dest, &[]);
    assert!(
        !dest.join("key").exists(),
        "no key file for a key kept elsewhere"
    );
    // The `[key]` table of a config.toml, its lines as written.
    let key_table = |store: &Path| -> String {
        let text = std::fs::read_to_string(store.join("config.toml")).expect("config");
        let (_, table) = text.split_once("[key]").expect("a [key] table");
        table.split("\n[").next().unwrap_or_default().to_owned()
    };
    let table = key_table(&source);
    assert!(table.contains("salt = "), "{table}");
    assert_eq!(key_table(&dest), table, "the same key source");
    let got = run(seccs(&dest).args(["get", "f", "-o", "-"]));
    assert!(got.status.success(), "{got:?}");
    assert_eq!(got.stdout, std::fs::read(&file).expect("input"));
    assert_eq!(entries(&dest), entries(&source));
}

/// A DEST on Redis whose prefix another store's nests in (left so by an
/// older build) is refused before anything is written: its walk would
/// take that store's entries for its own and remove them.
#[test]
fn a_dest_whose_prefix_nests_with_another_store_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);
    let source = source_store(tmp.path());
    let dest = tmp.path().join("dest");
    let url = format!("redis://127.0.0.1:{port}/0?prefix=n:");
    copy(&source, &dest, &["--backend", &url]);
    // Another store inside n:, as an older build let one be made.
    let marker = b"n:inner:\0seccs:store-marker";
    let entry = b"n:inner:an-entry-of-that-store";
    let check = [b'0'; 32];
    assert!(redis_command(port, &[b"SET", marker, &check]).starts_with(b"+OK"));
    assert!(redis_command(port, &[b"SET", entry, b"its value"]).starts_with(b"+OK"));
    ok(seccs(&source).args(["rm", "docs/b"]));
    let out = run(seccs(&source).arg("copy").arg(&dest).arg("-q"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nests with"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(
        redis_command(port, &[b"GET", entry]).starts_with(b"$9\r\nits value"),
        "the other store's entry is left"
    );
}

/// The value stored at `key` on the Redis server on `port`.
fn redis_get(port: u16, key: &[u8]) -> Vec<u8> {
    use std::io::{BufRead, Read, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut request = format!("*2\r\n$3\r\nGET\r\n${}\r\n", key.len()).into_bytes();
    request.extend_from_slice(key);
    request.extend_from_slice(b"\r\n");
    (&stream).write_all(&request).expect("send");
    let mut reader = std::io::BufReader::new(&stream);
    let mut header = String::new();
    reader.read_line(&mut header).expect("reply");
    let len: usize = header
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no value at that key: {header:?}"));
    let mut value = vec![0u8; len + 2];
    reader.read_exact(&mut value).expect("value");
    value.truncate(len);
    value
}

/// A Redis store whose values were changed behind its back (a bit flipped
/// in one, another cut too short for its count): a rerun of its offsite
/// copy names both, copies neither, and the copy keeps its sound entries,
/// so it still verifies clean.
#[test]
fn damage_to_a_redis_source_is_named_and_never_reaches_its_mirror() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);
    let source = tmp.path().join("on-redis");
    let url = format!("redis://127.0.0.1:{port}/0?prefix=s:");
    ok(seccs(&source).args(["init", "--chunk-size", "256", "--backend", &url]));
    for (seed, name) in [(1, "a"), (2, "b")] {
        let file = random_file(tmp.path(), "in.bin", 30_000, seed);
        ok(seccs(&source)
            .arg("put")
            .arg(&file)
            .args(["--name", name, "-q"]));
    }
    let mirror = tmp.path().join("mirror");
    copy(&source, &mirror, &[]);
    let before = entries(&mirror);
    let nodes: Vec<&Vec<u8>> = before
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !seccs_store::catalog::is_catalog_key(k))
        .collect();
    let flipped = [b"s:".as_slice(), nodes[0]].concat();
    let mut value = redis_get(port, &flipped);
    let last = value.len() - 1;
    value[last] ^= 0x01;
    assert!(redis_command(port, &[b"SET", &flipped, &value]).starts_with(b"+OK"));
    let cut = [b"s:".as_slice(), nodes[1]].concat();
    assert!(redis_command(port, &[b"SET", &cut, b"abc"]).starts_with(b"+OK"));
    let out = run(seccs(&source)
        .arg("copy")
        .arg(&mirror)
        .args(["-q", "--json"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json(&String::from_utf8_lossy(&out.stdout));
    let hex = seccs_core::hexenc::encode;
    // Verify names both before anything is copied: the copy only rescues.
    assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    let damage: Vec<&str> = report["source_damage"]
        .as_array()
        .expect("source_damage")
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(
        damage
            .iter()
            .any(|l| l.starts_with(&format!("tampered: node {}", hex(nodes[0])))),
        "{report}"
    );
    assert!(
        damage.iter().any(|l| l.starts_with("unreadable:")),
        "{report}"
    );
    assert_eq!(report["copied"], 0, "{report}");
    assert_eq!(report["removed"], 0, "{report}");
    assert_eq!(
        entries(&mirror),
        before,
        "the mirror keeps its sound entries"
    );
    ok(seccs(&mirror).arg("verify"));
}

/// A DEST on the source's own Redis prefix, the server named another way
/// (`localhost` for `127.0.0.1`), is refused as the store being copied,
/// not as a store in use by another handle, and nothing is written.
#[test]
fn a_dest_on_the_sources_backend_named_another_way_is_refused_as_itself() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);
    let source = tmp.path().join("on-redis");
    let url = format!("redis://127.0.0.1:{port}/0?prefix=s:");
    ok(seccs(&source).args(["init", "--chunk-size", "256", "--backend", &url]));
    let file = random_file(tmp.path(), "in.bin", 3_000, 1);
    ok(seccs(&source)
        .arg("put")
        .arg(&file)
        .args(["--name", "a", "-q"]));
    let keys_before = redis_command(port, &[b"DBSIZE"]);
    let dest = tmp.path().join("dest");
    let same = format!("redis://localhost:{port}/0?prefix=s:");
    let out = run(seccs(&source)
        .arg("copy")
        .arg(&dest)
        .args(["--backend", &same]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("its backend is the store being copied")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(redis_command(port, &[b"DBSIZE"]), keys_before);
    ok(seccs(&source).arg("verify"));
}

/// The stdout of `seccs copy DEST --dry-run` with `args`, which must exit
/// 0.
fn dry_run(store: &Path, dest: &Path, args: &[&str]) -> String {
    ok(seccs(store)
        .arg("copy")
        .arg(dest)
        .args(["-q", "--dry-run"])
        .args(args))
}

/// The `would …` lines of a dry run's output, and its summary line.
fn would_lines(out: &str) -> (Vec<&str>, &str) {
    let lines: Vec<&str> = out.lines().collect();
    let summary = lines
        .iter()
        .find(|l| l.starts_with("dry run, nothing written:"))
        .unwrap_or_else(|| panic!("a summary line in: {out}"));
    let would = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("would remove: ") || l.starts_with("would add: "))
        .collect();
    (would, summary)
}

/// Every file under `dir` (path, bytes), in path order.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(at) = todo.pop() {
        for item in std::fs::read_dir(&at).expect("read_dir") {
            let path = item.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                all.push((path.clone(), std::fs::read(&path).expect("read")));
            }
        }
    }
    all.sort();
    all
}

/// A mirror the store changed since (a whole name removed, a version
/// removed, a name put): a dry run lists exactly those names, writes
/// nothing to the mirror's database or its config and key files, and
/// counts what the copy then does; the copy names what went.
#[test]
fn a_dry_run_lists_the_names_a_copy_would_change_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = source_store(tmp.path());
    let dest = tmp.path().join("dest");
    copy(&source, &dest, &[]);
    ok(seccs(&source).args(["rm", "docs/b"]));
    ok(seccs(&source).args(["rm", "docs/a@1"]));
    let file = random_file(tmp.path(), "fresh.bin", 9_000, 40);
    ok(seccs(&source)
        .arg("put")
        .arg(&file)
        .args(["--name", "fresh", "-q"]));
    let (before, dir_before) = (entries(&dest), files_under(&dest));
    let out = dry_run(&source, &dest, &[]);
    let (would, summary) = would_lines(&out);
    assert_eq!(
        would,
        [
            "would remove: docs/a@1",
            "would remove: docs/b (the whole name, 1 version)",
            "would add: fresh (the whole name, 1 version)",
        ],
        "{out}"
    );
    assert!(
        summary.contains("2 name(s) would lose 2 version(s), 1 name(s) would gain 1 version(s)"),
        "{summary}"
    );
    assert_eq!(entries(&dest), before, "DEST's database is as it was");
    let dir_after: Vec<_> = files_under(&dest)
        .into_iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n != "lock"))
        .collect();
    let dir_before: Vec<_> = dir_before
        .into_iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n != "lock"))
        .collect();
    assert_eq!(
        dir_after.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        dir_before.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for (path, bytes) in &dir_before {
        if path.starts_with(dest.join("db")) {
            continue;
        }
        let now = &dir_after.iter().find(|(p, _)| p == path).expect("there").1;
        assert!(now == bytes, "{} unchanged", path.display());
    }
    let dry = copy(&source, &dest, &["--dry-run"]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["would_make"], serde_json::Value::Null, "{dry}");
    assert_eq!(
        dry["names_removed"],
        serde_json::json!([
            {"name": "docs/a", "versions": [1], "whole_name": false},
            {"name": "docs/b", "versions": [1], "whole_name": true},
        ]),
        "{dry}"
    );
    assert_eq!(
        dry["names_added"],
        serde_json::json!([{"name": "fresh", "versions": [1], "whole_name": true}]),
        "{dry}"
    );
    assert_eq!(entries(&dest), before, "nor by --json");
    // The copy does what the dry run said, and names what went.
    let out = ok(seccs(&source).arg("copy").arg(&dest).arg("-q"));
    let removed: Vec<&str> = out.lines().filter(|l| l.starts_with("removed: ")).collect();
    assert_eq!(removed, ["removed: docs/a@1", "removed: docs/b@1"], "{out}");
    let word = match dry["copied"].as_u64() {
        Some(1) => "entry",
        _ => "entries",
    };
    let said = format!(
        "copied {} {word} ({} bytes written), {} already present, {} removed",
        dry["copied"], dry["bytes_written"], dry["present"], dry["removed"]
    );
    assert_eq!(out.lines().next(), Some(said.as_str()), "{out}");
    reads_alike(&source, &dest);
    let last = copy(&source, &dest, &[]);
    assert_eq!(last["names_removed"], serde_json::json!([]), "{last}");
}

/// Where DEST does not exist, a dry run says what store copy would make
/// and what it would copy, and makes nothing: no directory, no key file.
#[test]
fn a_dry_run_into_a_missing_dest_makes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = source_store(tmp.path());
    let dest = tmp.path().join("new").join("dest");
    let out = dry_run(&source, &dest, &[]);
    assert!(out.contains("would make: a store at"), "{out}");
    assert!(out.contains("backend embedded"), "{out}");
    assert!(out.contains("chunk size 256"), "{out}");
    assert!(out.contains("a copy of this store's key in"), "{out}");
    let (would, _) = would_lines(&out);
    assert!(
        would.contains(&"would add: docs/b (the whole name, 1 version)"),
        "{out}"
    );
    assert!(would.iter().all(|l| l.starts_with("would add: ")), "{out}");
    assert!(!tmp.path().join("new").exists(), "nothing made");
    let dry = copy(&source, &dest, &["--dry-run"]);
    assert_eq!(dry["copied"], entries(&source).len(), "{dry}");
    assert_eq!(dry["would_make"]["backend"], "embedded", "{dry}");
    assert_eq!(dry["names_removed"], serde_json::json!([]), "{dry}");
    assert!(!tmp.path().join("new").exists(), "nothing made");
}

/// Run the wrong way round (the old mirror as the store copied, the newer
/// store as DEST), copy refuses to take away what was put into DEST after
/// the mirror's newest version: a dry run lists it and exits 1, the copy
/// lists it, writes nothing and exits 1, and only --remove-newer removes
/// it, naming what went.
#[test]
fn a_copy_the_wrong_way_round_keeps_the_newer_stores_versions_unless_told() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = source_store(tmp.path());
    let mirror = tmp.path().join("mirror");
    copy(&source, &mirror, &[]);
    // Versions are stamped in seconds: these are put after every version
    // of the mirror.
    std::thread::sleep(Duration::from_millis(1_100));
    for (seed, name) in [(50, "docs/b"), (51, "newer")] {
        let file = random_file(tmp.path(), "in.bin", 7_000, seed);
        ok(seccs(&source)
            .arg("put")
            .arg(&file)
            .args(["--name", name, "-q"]));
    }
    let before = entries(&source);
    let newer_lines = ["newer in DEST: docs/b@2", "newer in DEST: newer@1"];

    let out = run(seccs(&mirror)
        .arg("copy")
        .arg(&source)
        .args(["-q", "--dry-run"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let (would, _) = would_lines(&text);
    assert_eq!(
        would,
        [
            "would remove: docs/b@2",
            "would remove: newer (the whole name, 1 version)",
        ],
        "{text}"
    );
    let listed: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("newer in DEST: "))
        .collect();
    assert_eq!(listed, newer_lines, "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "holds 2 version(s) of 2 name(s) that the store copied does not hold, put after"
        ) && err.contains("copy would refuse to remove them")
            && err.contains("--remove-newer"),
        "{err}"
    );
    assert_eq!(entries(&source), before);

    let out = run(seccs(&mirror).arg("copy").arg(&source).arg("-q"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().collect::<Vec<_>>(), newer_lines, "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("copy would remove them, so it wrote nothing")
            && err.contains("wrong way round")
            && err.contains(&format!("save {} whole first", source.display()))
            && !err.contains("  "),
        "{err}"
    );
    // With --json, the refusal is a JSON object.
    let out = run(seccs(&mirror)
        .arg("copy")
        .arg(&source)
        .args(["-q", "--json"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let refused = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(refused["refused"], "newer-in-dest", "{refused}");
    assert_eq!(
        refused["newer_in_dest"],
        serde_json::json!([
            {"name": "docs/b", "versions": [2], "whole_name": false},
            {"name": "newer", "versions": [1], "whole_name": true},
        ]),
        "{refused}"
    );
    assert!(refused["since"].as_u64() > Some(1_700_000_000), "{refused}");
    assert_eq!(entries(&source), before, "nothing written");
    ok(seccs(&source).arg("verify"));

    // The dry run with --remove-newer says what the copy would then do,
    // and exits 0; the copy told to removes them and names what went.
    let out = dry_run(&mirror, &source, &["--remove-newer"]);
    assert!(out.contains("would remove: newer (the whole name"), "{out}");
    assert!(!out.contains("newer in DEST"), "{out}");
    let report = copy(&mirror, &source, &["--remove-newer"]);
    assert_eq!(
        report["names_removed"],
        serde_json::json!([
            {"name": "docs/b", "versions": [2], "whole_name": false},
            {"name": "newer", "versions": [1], "whole_name": true},
        ]),
        "{report}"
    );
    assert_eq!(entries(&source), entries(&mirror));
}

/// All keys of the Redis server on `port` and their `DUMP`s, in key order.
fn redis_everything(port: u16) -> Vec<(Vec<u8>, Vec<u8>)> {
    use std::io::{BufRead, Read, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut reader = std::io::BufReader::new(&stream);
    let send = |args: &[&[u8]]| {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        (&stream).write_all(&request).expect("send");
    };
    let bulk = |reader: &mut std::io::BufReader<&std::net::TcpStream>| {
        let mut header = String::new();
        reader.read_line(&mut header).expect("reply");
        let len: usize = header
            .trim_end()
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a bulk string: {header:?}"));
        let mut value = vec![0u8; len + 2];
        reader.read_exact(&mut value).expect("value");
        value.truncate(len);
        value
    };
    send(&[b"KEYS", b"*"]);
    let mut header = String::new();
    reader.read_line(&mut header).expect("reply");
    let n: usize = header
        .trim_end()
        .strip_prefix('*')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an array: {header:?}"));
    let keys: Vec<Vec<u8>> = (0..n).map(|_| bulk(&mut reader)).collect();
    let mut all = Vec::new();
    for key in keys {
        send(&[b"DUMP", &key]);
        let dumped = bulk(&mut reader);
        all.push((key, dumped));
    }
    all.sort();
    all
}

/// On Redis: a dry run into a mirror there lists the names, and the
/// server holds exactly what it held (no lease taken, nothing written);
/// a dry run into a missing DEST on Redis writes nothing there either.
#[test]
fn a_dry_run_into_a_mirror_on_redis_writes_nothing_there() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);
    let source = source_store(tmp.path());
    let dest = tmp.path().join("on-redis");
    let url = format!("redis://127.0.0.1:{port}/0?prefix=m:");
    copy(&source, &dest, &["--backend", &url]);
    ok(seccs(&source).args(["rm", "docs/b"]));
    let file = random_file(tmp.path(), "in.bin", 8_000, 60);
    ok(seccs(&source)
        .arg("put")
        .arg(&file)
        .args(["--name", "docs/a", "-q"]));
    let before = redis_everything(port);
    assert!(before.len() > 10, "the mirror is there");
    let out = dry_run(&source, &dest, &[]);
    let (would, _) = would_lines(&out);
    assert_eq!(
        would,
        [
            "would add: docs/a@4",
            "would remove: docs/b (the whole name, 1 version)",
        ],
        "{out}"
    );
    assert!(redis_everything(port) == before, "Redis holds what it held");
    let fresh = tmp.path().join("fresh");
    let other = format!("redis://127.0.0.1:{port}/0?prefix=f:");
    let out = dry_run(&source, &fresh, &["--backend", &other]);
    assert!(out.contains("would make: a store at"), "{out}");
    assert!(!fresh.exists());
    assert!(redis_everything(port) == before, "nor for a missing DEST");
}

/// A failover: the mirror is written to while the store is down, and the
/// store, back, is written to too (its newest version now after the
/// mirror's own). The mirror's directory recorded the store's newest at
/// the last copy, so the scheduled copy still refuses to remove what was
/// put into the mirror, and saving the mirror whole first keeps it.
#[test]
fn versions_put_into_a_mirror_during_a_failover_survive_a_write_to_the_store_after_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = source_store(tmp.path());
    let mirror = tmp.path().join("mirror");
    copy(&source, &mirror, &[]);
    let recorded = std::fs::read_to_string(mirror.join("last-copy")).expect("last-copy");
    assert!(recorded.starts_with("source_newest = "), "{recorded}");
    std::thread::sleep(Duration::from_millis(1_100));
    let during = random_file(tmp.path(), "during.bin", 7_000, 60);
    ok(seccs(&mirror)
        .arg("put")
        .arg(&during)
        .args(["--name", "failover", "-q"]));
    std::thread::sleep(Duration::from_millis(1_100));
    let after = random_file(tmp.path(), "after.bin", 300, 61);
    ok(seccs(&source)
        .arg("put")
        .arg(&after)
        .args(["--name", "heartbeat", "-q"]));
    let before = entries(&mirror);

    let out = run(seccs(&source).arg("copy").arg(&mirror).arg("-q"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim_end(), "newer in DEST: failover@1", "{text}");
    assert_eq!(entries(&mirror), before, "nothing written");

    // Saved whole first, as the refusal says, then removed when told.
    let saved = tmp.path().join("saved");
    ok(seccs(&mirror).arg("copy").arg(&saved).arg("-q"));
    copy(&source, &mirror, &["--remove-newer"]);
    assert_eq!(entries(&mirror), entries(&source));
    let kept = tmp.path().join("kept.bin");
    ok(seccs(&saved).args(["get", "failover", "-o"]).arg(&kept));
    assert_eq!(
        std::fs::read(&kept).expect("kept"),
        std::fs::read(&during).expect("during")
    );
    // The next copy tells versions put into the mirror by the heartbeat.
    let recorded_now = std::fs::read_to_string(mirror.join("last-copy")).expect("last-copy");
    assert_ne!(recorded_now, recorded);
}

/// Names in copy's lines are escaped as `ls` shows them: a name holding a
/// newline or a terminal escape can neither forge a line of the report
/// nor reach the terminal.
#[test]
fn names_in_copys_lines_are_escaped_as_ls_shows_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = source_store(tmp.path());
    let evil = "x\nremoved: docs/a@1\u{1b}[2J";
    let file = random_file(tmp.path(), "evil.bin", 3_000, 90);
    ok(seccs(&source)
        .arg("put")
        .arg(&file)
        .args(["--name", evil, "-q"]));
    // Not the store's newest, whose removal copy would refuse to mirror.
    ok(seccs(&source)
        .arg("put")
        .arg(&file)
        .args(["--name", "after", "-q"]));
    let dest = tmp.path().join("dest");
    copy(&source, &dest, &[]);
    ok(seccs(&source).args(["rm", evil]));
    let shown = r"x\nremoved: docs/a@1\u001b[2J";
    let dry = dry_run(&source, &dest, &[]);
    assert!(
        dry.lines()
            .any(|l| l == format!("would remove: {shown} (the whole name, 1 version)")),
        "{dry}"
    );
    let out = ok(seccs(&source).arg("copy").arg(&dest).arg("-q"));
    let removed: Vec<&str> = out.lines().filter(|l| l.starts_with("removed:")).collect();
    assert_eq!(removed, [format!("removed: {shown}@1")], "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
}

/// A directory's version is named in copy's lines as `ls --all` names it
/// (`NAME/@N`), so that the line can be typed back to `seccs get` or
/// `seccs rm`: in a dry run's `would add:` and `would remove:`, and in the
/// copy's `removed:`.
#[test]
fn a_directorys_versions_are_named_in_copys_lines_as_ls_names_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = source_store(tmp.path());
    let photos = tmp.path().join("photos");
    std::fs::create_dir(&photos).expect("mkdir");
    random_file(&photos, "a.bin", 2_000, 91);
    ok(seccs(&source)
        .current_dir(tmp.path())
        .args(["put", "photos", "-q"]));
    let dest = tmp.path().join("dest");
    copy(&source, &dest, &[]);

    // A name added to the directory moves its time: a second version of
    // the directory itself.
    random_file(&photos, "b.bin", 2_000, 92);
    ok(seccs(&source)
        .current_dir(tmp.path())
        .args(["put", "photos", "-q"]));
    let listed = ok(seccs(&source).args(["ls", "--all"]));
    assert!(
        listed.lines().any(|l| l.ends_with("  photos/@2")),
        "a second version of the directory: {listed}"
    );
    let dry = dry_run(&source, &dest, &[]);
    let (would, _) = would_lines(&dry);
    assert_eq!(
        would,
        [
            "would add: photos/@2",
            "would add: photos/b.bin (the whole name, 1 version)"
        ],
        "{dry}"
    );
    copy(&source, &dest, &[]);

    ok(seccs(&source).args(["rm", "photos/@1"]));
    let dry = dry_run(&source, &dest, &[]);
    assert_eq!(would_lines(&dry).0, ["would remove: photos/@1"], "{dry}");
    let out = ok(seccs(&source).arg("copy").arg(&dest).arg("-q"));
    let removed: Vec<&str> = out.lines().filter(|l| l.starts_with("removed:")).collect();
    assert_eq!(removed, ["removed: photos/@1"], "{out}");
}
