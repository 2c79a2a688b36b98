//! `seccs init --attach`: a store whose directory was lost is opened again
//! from its backend (or its kept `db/`) and its key, and a directory is
//! left as it was when the key or the backend is not the store's.

mod common;

use common::{fails, ok, ok_err, random_bytes, redis_command, run};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn seccs(store: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seccs"));
    c.arg("--store")
        .arg(store)
        .env_remove("SECCS_STORE")
        .env_remove("SECCS_KMS_CA")
        .env_remove("SECCS_KMS_PIN");
    c
}

/// What a store was given: (name, version, bytes).
type Contents = Vec<(String, u32, Vec<u8>)>;

/// Puts into `store` two versions of `docs/a`, one of `docs/b` and of `c`
/// (one large enough for several levels of nodes); returns them.
fn fill(store: &Path, work: &Path) -> Contents {
    let mut kept = Contents::new();
    let puts: [(&str, usize, u64); 4] = [
        ("docs/a", 30_000, 1),
        ("docs/a", 12_000, 2),
        ("docs/b", 300_000, 3),
        ("c", 100, 4),
    ];
    for (name, len, seed) in puts {
        let bytes = random_bytes(len, seed);
        let file = work.join(format!("in-{seed}"));
        std::fs::write(&file, &bytes).expect("write input");
        ok(seccs(store)
            .arg("put")
            .arg(&file)
            .args(["--name", name, "-q"]));
        let version = kept.iter().filter(|(n, _, _)| n == name).count() as u32 + 1;
        kept.push((name.to_owned(), version, bytes));
    }
    kept
}

/// Every name and version of `kept` reads back from `store` byte for byte,
/// and `verify` finds nothing.
fn reads_back(store: &Path, kept: &Contents) {
    for (name, version, bytes) in kept {
        let out = run(seccs(store).args(["get", &format!("{name}@{version}")]));
        assert!(
            out.status.success(),
            "{name}@{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == *bytes, "{name}@{version} differs");
    }
    ok(seccs(store).arg("verify"));
}

/// The line of `field` in a config.toml's text, if there is one.
fn config_line(text: &str, field: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(&format!("{field} = ")))
        .map(str::to_owned)
}

fn config_of(store: &Path) -> String {
    std::fs::read_to_string(store.join("config.toml")).expect("config.toml")
}

/// A copy of `key` at `to`, mode 0600, as an operator keeps it.
fn keep_key(key: &Path, to: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(key, to).expect("copy key");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    to.to_owned()
}

/// A Redis store whose directory is lost, and whose backend keeps no
/// descriptor (a store made before descriptors), is attached to a new one
/// with its kept key and the parameters given: every name and version
/// reads back, verify is clean and records the parameters, and the
/// attached config knows the backend was marked, so that a server that
/// loses the store later is said to have lost it.
#[test]
fn a_redis_store_whose_directory_was_lost_is_attached_and_reads_back_whole() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);
    let url = format!("redis://127.0.0.1:{port}/0?prefix=p:");
    let lost = tmp.path().join("lost");
    ok(seccs(&lost).args(["init", "--backend", &url, "--wrapper", "aes-siv-dr"]));
    let kept = fill(&lost, tmp.path());
    let key = keep_key(&lost.join("key"), &tmp.path().join("kept.key"));
    let lost_config = config_of(&lost);
    std::fs::remove_dir_all(&lost).expect("rm store dir");
    let descriptor: &[u8] = b"p:\0seccs:store-descriptor";
    assert!(redis_command(port, &[b"DEL", descriptor]).starts_with(b":1"));

    // Before --attach, init names it as the way out.
    let fresh = tmp.path().join("fresh");
    let err = fails(seccs(&fresh).args(["init", "--backend", &url]));
    assert!(
        err.contains("already holds a store") && err.contains("`seccs init --attach`"),
        "{err}"
    );

    let store = tmp.path().join("attached");
    let told = ok_err(
        seccs(&store)
            .args([
                "init",
                "--attach",
                "--backend",
                &url,
                "--wrapper",
                "aes-siv-dr",
            ])
            .arg("--key-file")
            .arg(&key),
    );
    assert!(told.contains("run `seccs verify` now"), "{told}");
    assert!(!store.join("key").exists(), "no key is made");
    let config = config_of(&store);
    assert!(config.contains("backend_marked = true"), "{config}");
    let check = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("key_check = "))
            .map(str::to_owned)
    };
    assert!(check(&config).is_some() && check(&config) == check(&lost_config));
    assert!(
        !config.contains("params_check"),
        "not before verify: {config}"
    );
    reads_back(&store, &kept);
    let verified = config_of(&store);
    let params = |text: &str| config_line(text, "params_check");
    assert!(
        params(&verified).is_some() && params(&verified) == params(&lost_config),
        "a clean verify records the store's own parameters: {verified}"
    );
    assert!(redis_command(port, &[b"EXISTS", descriptor]).starts_with(b":0"));
    ok(seccs(&store).arg("verify"));
    assert!(
        redis_command(port, &[b"EXISTS", descriptor]).starts_with(b":1"),
        "once they are, the next writer keeps the descriptor again"
    );

    // The server loses the store: said as lost, not read as empty.
    assert!(redis_command(port, &[b"FLUSHALL"]).starts_with(b"+OK"));
    let err = fails(seccs(&store).arg("ls"));
    assert!(
        err.contains("holds none of this store's data, though it did"),
        "{err}"
    );
}

/// A Redis store made with parameters of its own is attached from its
/// backend and key alone: its chunk size, wrapper and compression come
/// from the descriptor its backend keeps, recorded as confirmed at once.
/// A parameter given that is not the store's is refused; a descriptor
/// changed on the backend is not used, and said so, and the store is
/// attached with the parameters given, as one without a descriptor.
#[test]
fn a_store_is_attached_with_the_parameters_its_backends_descriptor_records() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);
    let url = format!("redis://127.0.0.1:{port}/0?prefix=d:");
    let made_with = [
        "--chunk-size",
        "2048",
        "--wrapper",
        "aes-siv-dr",
        "--compression",
        "none",
    ];
    let lost = tmp.path().join("lost");
    ok(seccs(&lost)
        .args(["init", "--backend", &url])
        .args(made_with));
    let kept = fill(&lost, tmp.path());
    let key = keep_key(&lost.join("key"), &tmp.path().join("kept.key"));
    let lost_config = config_of(&lost);
    std::fs::remove_dir_all(&lost).expect("rm store dir");

    let store = tmp.path().join("attached");
    let attach = |given: &[&str]| {
        let mut c = seccs(&store);
        c.args(["init", "--attach", "--backend", &url, "--key-file"])
            .arg(&key)
            .args(given);
        c
    };
    let err = fails(&mut attach(&["--wrapper", "aes-siv"]));
    assert!(
        err.contains("--wrapper aes-siv (the store's is aes-siv-dr)"),
        "{err}"
    );
    assert!(!store.join("config.toml").exists(), "{err}");

    let told = ok_err(&mut attach(&["--chunk-size", "2048"]));
    assert!(
        told.contains("chunk size 2048, wrapper aes-siv-dr and compression none as its backend's descriptor records them"),
        "{told}"
    );
    let config = config_of(&store);
    for field in ["chunk_size", "wrapper", "compression", "params_check"] {
        let line = |text: &str| config_line(text, field);
        assert!(
            line(&config).is_some() && line(&config) == line(&lost_config),
            "{field}: {config}"
        );
    }
    reads_back(&store, &kept);

    // Changed on the backend: its MAC no longer holds.
    let descriptor: &[u8] = b"d:\0seccs:store-descriptor";
    let text = redis_command(port, &[b"GET", descriptor]);
    let changed = String::from_utf8_lossy(&text).replace("chunk_size 2048", "chunk_size 4096");
    let body = changed
        .split_once("\r\n")
        .map(|(_, body)| body.trim_end_matches("\r\n").to_owned())
        .expect("a bulk reply");
    assert!(
        body.starts_with("seccs-store-descriptor 1\nchunk_size 4096\n"),
        "{body}"
    );
    let original = String::from_utf8_lossy(&text)
        .split_once("\r\n")
        .map(|(_, body)| body.trim_end_matches("\r\n").as_bytes().to_vec())
        .expect("a bulk reply");
    assert!(redis_command(port, &[b"SET", descriptor, body.as_bytes()]).starts_with(b"+OK"));
    std::fs::remove_dir_all(&store).expect("rm attached dir");
    // Not used; and without every parameter given, the defaults are not
    // taken for the store's.
    let err = fails(&mut attach(&["--chunk-size", "2048"]));
    assert!(
        err.contains("keeps a store descriptor that the key given does not authenticate")
            && err.contains("though the key is the store's (its marker says so)")
            && err.contains("(all three)"),
        "{err}"
    );
    assert!(!store.join("config.toml").exists(), "{err}");
    let told = ok_err(&mut attach(&made_with));
    assert!(
        told.contains("keeps a store descriptor that the key given does not authenticate")
            && told.contains("run `seccs verify` now"),
        "{told}"
    );
    // Another directory attached meanwhile with parameters that are not
    // the store's: taken as given while no descriptor says otherwise.
    let wrong = tmp.path().join("wrong");
    ok_err(
        seccs(&wrong)
            .args(["init", "--attach", "--backend", &url, "--key-file"])
            .arg(&key)
            .args([
                "--chunk-size",
                "4096",
                "--wrapper",
                "aes-siv",
                "--compression",
                "zstd:3",
            ]),
    );
    // The store's own descriptor back: the wrong parameters are refused
    // before anything is written with them, the right ones confirmed by
    // the next writer, with no verify.
    assert!(redis_command(port, &[b"SET", descriptor, &original]).starts_with(b"+OK"));
    let file = tmp.path().join("late.txt");
    std::fs::write(&file, b"late").expect("write");
    let err = fails(seccs(&wrong).arg("put").arg(&file).args(["--name", "late"]));
    assert!(
        err.contains("its backend's descriptor, authenticated by the key, records chunk_size = 2048 and wrapper = \"aes-siv-dr\""),
        "{err}"
    );
    assert!(!config_of(&store).contains("params_check"));
    ok(seccs(&store).arg("put").arg(&file).args(["--name", "late"]));
    let confirmed = config_of(&store);
    let params = |text: &str| config_line(text, "params_check");
    assert!(
        params(&confirmed).is_some() && params(&confirmed) == params(&lost_config),
        "{confirmed}"
    );
    reads_back(&store, &kept);
    assert!(
        redis_command(port, &[b"GET", descriptor])
            .windows(15)
            .any(|w| w == b"chunk_size 2048"),
        "the store's own descriptor is kept"
    );

    // A key of another type where the descriptor is (nothing seccs
    // writes) reads as no descriptor, and the next writer replaces it.
    assert!(redis_command(port, &[b"DEL", descriptor]).starts_with(b":1"));
    assert!(redis_command(port, &[b"RPUSH", descriptor, b"a"]).starts_with(b":1"));
    ok(seccs(&store).arg("verify"));
    assert!(
        redis_command(port, &[b"GET", descriptor])
            .windows(15)
            .any(|w| w == b"chunk_size 2048"),
        "replaced"
    );
}

/// A wrong key, a backend prefix that holds no store and a key file that
/// is not there are refused, each saying why, and leave the directory as
/// it was: no config.toml, and no directory where there was none.
#[test]
fn attach_refuses_a_wrong_key_or_an_unmarked_backend_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);
    let url = |prefix: &str| format!("redis://127.0.0.1:{port}/0?prefix={prefix}");
    let lost = tmp.path().join("lost");
    ok(seccs(&lost).args(["init", "--backend", &url("p:")]));
    let kept = fill(&lost, tmp.path());
    let key = keep_key(&lost.join("key"), &tmp.path().join("kept.key"));
    std::fs::remove_dir_all(&lost).expect("rm store dir");
    let other = tmp.path().join("other");
    ok(seccs(&other).arg("init"));
    let wrong = other.join("key");

    let store = tmp.path().join("attached");
    let attach = |backend: &str, key: &Path| {
        let mut c = seccs(&store);
        c.args(["init", "--attach", "--backend", backend, "--key-file"])
            .arg(key);
        c
    };
    let err = fails(&mut attach(&url("p:"), &wrong));
    assert!(
        err.contains("holds another store's marker: this key is not that store's"),
        "{err}"
    );
    assert!(!store.exists(), "nothing made: {err}");
    // A typo in the prefix is no empty store.
    let err = fails(&mut attach(&url("q:"), &key));
    assert!(
        err.contains("holds no store marker: nothing to attach to"),
        "{err}"
    );
    assert!(!store.exists(), "nothing made: {err}");
    // A directory there already keeps what it held, and gets no config.
    std::fs::create_dir(&store).expect("mkdir");
    let err = fails(&mut attach(&url("p:"), &wrong));
    assert!(err.contains("this key is not that store's"), "{err}");
    assert!(!store.join("config.toml").exists());
    let missing = tmp.path().join("no-such.key");
    let err = fails(&mut attach(&url("p:"), &missing));
    assert!(
        err.contains("does not exist") && err.contains("never makes one"),
        "{err}"
    );
    assert!(!missing.exists(), "the key is never written");
    assert!(!store.join("config.toml").exists());
    // The right key then attaches the same directory.
    ok(&mut attach(&url("p:"), &key));
    reads_back(&store, &kept);
    // And a directory that holds a store is no place to attach one.
    let err = fails(&mut attach(&url("p:"), &key));
    assert!(err.contains("already holds a store"), "{err}");
}

/// An embedded store of which only `db/` and the key were kept is opened
/// again: init (without --attach) names the way, a wrong key is refused
/// leaving no config.toml, and the right one, with the store's own chunk
/// size and wrapper, reads every name and version back.
#[test]
fn an_embedded_store_kept_as_its_db_and_key_is_attached_and_reads_back_whole() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    let params = [
        "--chunk-size",
        "8192",
        "--wrapper",
        "hmac-sha-256",
        "--compression",
        "zstd:3",
    ];
    ok(seccs(&store).arg("init").args(params));
    let kept = fill(&store, tmp.path());
    std::fs::remove_file(store.join("config.toml")).expect("rm config");

    let err = fails(seccs(&store).arg("init"));
    assert!(
        err.contains("no config.toml") && err.contains("`seccs init --attach`"),
        "{err}"
    );
    let other = tmp.path().join("other");
    ok(seccs(&other).arg("init").args(params));
    let err = fails(
        seccs(&store)
            .args(["init", "--attach", "--key-file"])
            .arg(other.join("key"))
            .args(params),
    );
    assert!(err.contains("does not open this store"), "{err}");
    assert!(!store.join("config.toml").exists(), "{err}");
    // Without the parameters, the descriptor the other key cannot
    // authenticate is not taken for the store's, nor are the defaults.
    let err = fails(
        seccs(&store)
            .args(["init", "--attach", "--key-file"])
            .arg(other.join("key")),
    );
    assert!(err.contains("either the key is not this store's"), "{err}");
    assert!(!store.join("config.toml").exists(), "{err}");

    let told = ok_err(seccs(&store).args(["init", "--attach"]).args(params));
    assert!(told.contains("attached the store"), "{told}");
    assert!(config_of(&store).contains("key_check = "));
    reads_back(&store, &kept);
    assert!(config_of(&store).contains("params_check = "));
}

/// An embedded directory without a kept database has nothing to attach.
#[test]
fn an_embedded_attach_without_a_database_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("store");
    ok(seccs(&store).arg("init"));
    std::fs::remove_file(store.join("config.toml")).expect("rm config");
    std::fs::remove_dir_all(store.join("db")).expect("rm db");
    let err = fails(seccs(&store).args(["init", "--attach"]));
    assert!(
        err.contains("holds no database: nothing to attach to"),
        "{err}"
    );
    assert!(!store.join("config.toml").exists());
}

/// A `seccs kms serve` child, killed on drop, and its URL.
struct KeyServer {
    child: std::process::Child,
    url: String,
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a key server in `dir` on a free loopback port, and waits (60 s
/// at most) for the address it prints.
fn key_server(dir: &Path) -> KeyServer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_seccs"))
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("seccs kms serve");
    let mut watch = common::StderrWatch::of(&mut child);
    let mut server = KeyServer {
        child,
        url: String::new(),
    };
    let line = watch
        .wait_after(
            0,
            |l| l.starts_with("seccs kms listening on "),
            Duration::from_secs(60),
        )
        .expect("the key server's address");
    server.url = line
        .trim_start_matches("seccs kms listening on ")
        .to_owned();
    watch
        .wait_after(
            0,
            |l| l.starts_with("SHA-256 fingerprint"),
            Duration::from_secs(60),
        )
        .expect("the key server's fingerprint");
    server
}

/// A store keyed by the key service, whose config.toml (and with it the
/// salt its key is derived with) was lost, is attached with the salt its
/// backend's descriptor records. Where the backend keeps no descriptor, it
/// is attached with --kms-salt; without the salt, or with another, it is
/// refused and the directory gets no config.toml.
#[test]
fn a_key_service_store_is_attached_with_its_salt() {
    let tmp = tempfile::tempdir().expect("tmp");
    let srv = tmp.path().join("srv");
    let server = key_server(&srv);
    let ca = srv.join("tls/ca.pem");
    let kek = tmp.path().join("kek");
    ok(Command::new(env!("CARGO_BIN_EXE_seccs"))
        .args(["kms", "new", "--server", &server.url, "--ca"])
        .arg(&ca)
        .arg("--out")
        .arg(&kek)
        .env_remove("SECCS_KMS_URL"));
    let store = tmp.path().join("store");
    let kms = |c: &mut Command| {
        c.args(["--key-from-kms", &server.url, "--kek"])
            .arg(&kek)
            .arg("--kms-ca")
            .arg(&ca);
    };
    let mut init = seccs(&store);
    init.arg("init");
    kms(&mut init);
    ok(&mut init);
    let kept = fill(&store, tmp.path());
    let salt = config_of(&store)
        .lines()
        .find_map(|l| Some(l.strip_prefix("salt = \"")?.strip_suffix('"')?.to_owned()))
        .expect("a salt in config.toml");
    std::fs::remove_file(store.join("config.toml")).expect("rm config");

    let attach = |salt: Option<&str>| {
        let mut c = seccs(&store);
        c.args(["init", "--attach"]);
        kms(&mut c);
        if let Some(salt) = salt {
            c.args(["--kms-salt", salt]);
        }
        c
    };
    let told = ok_err(&mut attach(None));
    assert!(
        told.contains("as its backend's descriptor records them"),
        "{told}"
    );
    assert!(
        config_of(&store).contains(&format!("salt = \"{salt}\"")),
        "the descriptor's salt"
    );
    reads_back(&store, &kept);

    // A store made before descriptors keeps none.
    std::fs::remove_file(store.join("config.toml")).expect("rm config");
    std::fs::remove_file(store.join("db/seccs-store-descriptor")).expect("rm descriptor");
    let err = fails(&mut attach(None));
    assert!(err.contains("needs --kms-salt HEX"), "{err}");
    let err = fails(&mut attach(Some("abc")));
    assert!(err.contains("is not 32 hex digits"), "{err}");
    let other_salt = "00".repeat(16);
    assert_ne!(other_salt, salt);
    let err = fails(&mut attach(Some(&other_salt)));
    assert!(err.contains("does not open this store"), "{err}");
    assert!(!store.join("config.toml").exists(), "{err}");

    ok(&mut attach(Some(&salt.to_uppercase())));
    assert!(
        config_of(&store).contains(&format!("salt = \"{salt}\"")),
        "kept as config.toml keeps it"
    );
    reads_back(&store, &kept);
}

/// A Redis store made before markers (entries, no marker) is attached once
/// its key opens its catalog records, and marked then, as its first open
/// by a writer would mark it; another key is refused, writing nothing.
#[test]
fn a_redis_store_made_before_markers_is_attached_by_its_records_and_marked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_redis, port) = common::redis_server(tmp.path(), &[]);
    let url = format!("redis://127.0.0.1:{port}/0?prefix=old:");
    let marker: &[u8] = b"old:\0seccs:store-marker";
    let lost = tmp.path().join("lost");
    ok(seccs(&lost).args(["init", "--backend", &url]));
    let kept = fill(&lost, tmp.path());
    let key = keep_key(&lost.join("key"), &tmp.path().join("kept.key"));
    std::fs::remove_dir_all(&lost).expect("rm store dir");
    assert!(redis_command(port, &[b"DEL", marker]).starts_with(b":1"));
    // Nor a descriptor, as a build before either made none.
    let descriptor: &[u8] = b"old:\0seccs:store-descriptor";
    assert!(redis_command(port, &[b"DEL", descriptor]).starts_with(b":1"));

    let other = tmp.path().join("other");
    ok(seccs(&other).arg("init"));
    let store = tmp.path().join("attached");
    let attach = |key: &Path| {
        let mut c = seccs(&store);
        c.args(["init", "--attach", "--backend", &url, "--key-file"])
            .arg(key);
        c
    };
    let err = fails(&mut attach(&other.join("key")));
    assert!(err.contains("does not open this store"), "{err}");
    assert!(!store.exists(), "{err}");
    assert!(redis_command(port, &[b"EXISTS", marker]).starts_with(b":0"));

    ok(&mut attach(&key));
    assert!(redis_command(port, &[b"EXISTS", marker]).starts_with(b":1"));
    assert!(config_of(&store).contains("backend_marked = true"));
    reads_back(&store, &kept);
}
