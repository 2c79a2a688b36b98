//! `seccs kms` against a real key server on loopback (HTTPS, its own CA):
//! a streamed decryption writes nothing unless the whole stream
//! authenticates, to standard output or to a file.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A `seccs kms serve` child, killed on drop.
struct Server {
    child: Child,
    url: String,
    /// What it said at start, up to its fingerprint.
    banner: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a key server in `dir` on a free loopback port and waits (at most
/// 60 s) for the address it prints.
fn serve(dir: &Path) -> Result<Server, Box<dyn std::error::Error>> {
    serve_with(dir, "127.0.0.1:0", &[])
}

/// Starts a key server in `dir` listening on `listen`, with `extra`
/// arguments, and waits (at most 60 s) for what it prints at start.
fn serve_with(
    dir: &Path,
    listen: &str,
    extra: &[&str],
) -> Result<Server, Box<dyn std::error::Error>> {
    let mut serve = Command::new(env!("CARGO_BIN_EXE_seccs"));
    serve
        .args(["kms", "serve", "--listen", listen])
        .args(extra)
        .arg("--dir")
        .arg(dir);
    serve_by(serve)
}

/// Starts the key server `serve` runs, and waits (at most 60 s) for what
/// it prints at start.
fn serve_by(serve: Command) -> Result<Server, Box<dyn std::error::Error>> {
    serve_watched(serve).map(|(server, _)| server)
}

/// [`serve_by`], watching what the server says on standard error.
fn serve_watched(
    mut serve: Command,
) -> Result<(Server, common::StderrWatch), Box<dyn std::error::Error>> {
    let mut child = serve.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let mut said = common::StderrWatch::of(&mut child);
    // On a timeout the server is dropped, which kills it.
    let mut server = Server {
        child,
        url: String::new(),
        banner: Vec::new(),
    };
    // The address is announced on standard error, the fingerprint last.
    said.wait_after(
        0,
        |l| l.starts_with("SHA-256 fingerprint"),
        Duration::from_secs(60),
    )?;
    server.banner = said.said().to_vec();
    server.url = server
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("seccs kms listening on "))
        .ok_or("no address announced")?
        .to_owned();
    Ok((server, said))
}

/// `seccs kms serve` on a free loopback port in `dir`, run through
/// `wrapper` (a command that runs the rest; none when empty).
fn serve_command(dir: &Path, wrapper: &[&str]) -> Command {
    let mut serve = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(env!("CARGO_BIN_EXE_seccs"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_seccs")),
    };
    serve
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir);
    serve
}

/// Under an open-file limit that leaves room for fewer connections than
/// the cap, the server fits the cap to the limit and says so: connections
/// beyond it are closed as they come, rather than left waiting unaccepted
/// once the descriptors run out, and once they end a request is served.
#[test]
fn the_connection_cap_fits_the_open_file_limit() -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Read;
    use std::net::TcpStream;
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve_by(serve_command(&srv_dir, &["prlimit", "--nofile=128", "--"]))?;
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains("at most 64 connections at once")),
        "{:?}",
        server.banner
    );
    let addr: std::net::SocketAddr = server.url.trim_start_matches("https://").parse()?;
    // More than the limit has descriptors for.
    let held: Vec<TcpStream> = (0..160)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .collect::<Result<_, _>>()?;
    let mut beyond = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    beyond.set_read_timeout(Some(Duration::from_secs(5)))?;
    let read = beyond.read(&mut [0u8; 1]);
    assert!(
        matches!(&read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "a connection beyond the cap is closed at once: {read:?}"
    );
    drop(held);
    let out = kms(&server, &srv_dir, "new").output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    Ok(())
}

/// What a server prints and logs at start names its files by absolute
/// paths, so that a client started elsewhere can be given them, though
/// its `--dir` was relative.
#[test]
fn the_start_banner_names_files_by_absolute_paths() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let mut serve = Command::new(env!("CARGO_BIN_EXE_seccs"));
    serve
        .current_dir(tmp.path())
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--dir", "kd"]);
    let server = serve_by(serve)?;
    let tls = tmp.path().join("kd/tls");
    for line in [
        format!("certificate: {}", tls.join("server.pem").display()),
        format!("CA file (for --ca): {}", tls.join("ca.pem").display()),
    ] {
        assert!(server.banner.contains(&line), "{line}: {:?}", server.banner);
    }
    let keys = format!("dir={}", tmp.path().join("kd/keys").display());
    assert!(
        server.banner.iter().any(|l| l.contains(&keys)),
        "{keys}: {:?}",
        server.banner
    );
    Ok(())
}

/// `seccs kms SUBCOMMAND` against `server`, whose directory is `dir`.
fn kms(server: &Server, dir: &Path, subcommand: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seccs"));
    c.args(["kms", subcommand])
        .arg("--server")
        .arg(&server.url)
        .arg("--ca")
        .arg(dir.join("tls/ca.pem"))
        .env_remove("SECCS_KMS_URL");
    c
}

/// Runs `cmd` with `input` on its standard input.
fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<Output, Box<dyn std::error::Error>> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    // The child may exit before reading everything (a broken pipe is fine).
    let _ = writer.join();
    Ok(out)
}

/// `out` if its command succeeded, else an error carrying its stderr.
fn succeeded(out: Output) -> Result<Output, Box<dyn std::error::Error>> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)).into())
    }
}

/// A key server in `dir/srv` and a KEK of it saved as `dir/kek`.
fn serve_with_kek(
    dir: &Path,
) -> Result<(Server, std::path::PathBuf, std::path::PathBuf), Box<dyn std::error::Error>> {
    let srv_dir = dir.join("srv");
    let server = serve(&srv_dir)?;
    let kek = new_kek(&server, &srv_dir, &dir.join("kek"))?;
    Ok((server, srv_dir, kek))
}

/// `seccs kms new --out kek`, which must succeed; returns `kek`.
fn new_kek(
    server: &Server,
    srv_dir: &Path,
    kek: &Path,
) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    succeeded(kms(server, srv_dir, "new").arg("--out").arg(kek).output()?)?;
    Ok(kek.to_owned())
}

#[test]
fn a_cut_stream_decrypts_to_nothing_on_stdout_or_in_a_file() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;

    // 1 MiB: sixteen 64 KiB segments.
    let plain: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let plain_path = tmp.path().join("plain");
    std::fs::write(&plain_path, &plain)?;
    let sealed_path = tmp.path().join("sealed");
    succeeded(
        kms(&server, &srv_dir, "encrypt")
            .arg("--kek")
            .arg(&kek)
            .arg("--in")
            .arg(&plain_path)
            .arg("--out")
            .arg(&sealed_path)
            .output()?,
    )?;
    let sealed = std::fs::read(&sealed_path)?;

    // Whole: standard output gets the plaintext.
    let whole = succeeded(run_with_stdin(
        kms(&server, &srv_dir, "decrypt").arg("--kek").arg(&kek),
        &sealed,
    )?)?;
    assert_eq!(whole.stdout, plain);

    // Cut after several whole segments: nothing on standard output, and no
    // output file.
    let cut = &sealed[..sealed.len() * 3 / 5];
    let out = run_with_stdin(
        kms(&server, &srv_dir, "decrypt").arg("--kek").arg(&kek),
        cut,
    )?;
    assert!(!out.status.success(), "a cut stream decrypted");
    assert!(
        out.stdout.is_empty(),
        "{} bytes reached stdout",
        out.stdout.len()
    );
    let target = tmp.path().join("out");
    let out = run_with_stdin(
        kms(&server, &srv_dir, "decrypt")
            .arg("--kek")
            .arg(&kek)
            .arg("--out")
            .arg(&target),
        cut,
    )?;
    assert!(!out.status.success(), "a cut stream decrypted");
    assert!(!target.exists(), "a partial output file was left");
    Ok(())
}

/// The output file is `-o`, `--output` or `--out` on every command that
/// writes one, as `seccs get` spells it.
#[test]
fn every_output_file_takes_the_spellings_get_takes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, _kek) = serve_with_kek(tmp.path())?;
    let kek = tmp.path().join("kek-o");
    succeeded(kms(&server, &srv_dir, "new").arg("-o").arg(&kek).output()?)?;
    assert_eq!(std::fs::metadata(&kek)?.len(), 32);
    let plain = tmp.path().join("plain");
    std::fs::write(&plain, b"spelled three ways")?;
    let sealed = tmp.path().join("sealed");
    succeeded(
        kms(&server, &srv_dir, "encrypt")
            .arg("--kek")
            .arg(&kek)
            .arg("--in")
            .arg(&plain)
            .arg("-o")
            .arg(&sealed)
            .output()?,
    )?;
    let back = tmp.path().join("back");
    succeeded(
        kms(&server, &srv_dir, "decrypt")
            .arg("--kek")
            .arg(&kek)
            .arg("--in")
            .arg(&sealed)
            .arg("--output")
            .arg(&back)
            .output()?,
    )?;
    assert_eq!(std::fs::read(&back)?, b"spelled three ways");
    let store = tmp.path().join("store");
    let seccs = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seccs"));
        c.arg("--store").arg(&store);
        c
    };
    succeeded(seccs().arg("init").output()?)?;
    succeeded(seccs().args(["put", "--name", "p"]).arg(&plain).output()?)?;
    let got = tmp.path().join("got");
    succeeded(seccs().args(["get", "p", "--out"]).arg(&got).output()?)?;
    assert_eq!(std::fs::read(&got)?, b"spelled three ways");
    Ok(())
}

/// `seccs kms ARGS…` (no server needed, or the server given in `args`).
fn seccs_kms(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seccs"));
    c.arg("kms").args(args).env_remove("SECCS_KMS_URL");
    c
}

/// Runs `kms serve` with `flags` on a loopback port and a directory not
/// yet made; checks that it is a usage error (exit 2) that made no
/// directory, and returns what it said.
fn serve_usage_error(flags: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let out = seccs_kms(&["serve"])
        .args(flags)
        .args(["--listen", "127.0.0.1:0", "--dir"])
        .arg(tmp.path().join("srv"))
        .output()?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!tmp.path().join("srv").exists());
    Ok(stderr(&out))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The number of KEK/DEK pairs the server holds, from `kms status`.
fn key_count(server: &Server, dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let out = succeeded(kms(server, dir, "status").output()?)?;
    let text = String::from_utf8(out.stdout)?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Finding 1: `--in FILE --out PATH` renamed a temporary file over PATH
/// whatever it was: a symbolic link (or `/dev/null`, a named pipe) was
/// replaced by a regular file.
#[test]
fn file_to_file_output_writes_through_a_link_and_into_a_pipe_without_replacing_them() -> TestResult
{
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let plain_path = tmp.path().join("plain");
    std::fs::write(&plain_path, &plain)?;

    let target = tmp.path().join("target");
    std::fs::write(&target, b"old")?;
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link)?;
    let encrypt = |out: &Path| {
        kms(&server, &srv_dir, "encrypt")
            .arg("--kek")
            .arg(&kek)
            .arg("--in")
            .arg(&plain_path)
            .arg("--out")
            .arg(out)
            .output()
    };
    succeeded(encrypt(&link)?)?;
    assert!(
        std::fs::symlink_metadata(&link)?.file_type().is_symlink(),
        "the link was replaced"
    );
    let back = tmp.path().join("back");
    succeeded(
        kms(&server, &srv_dir, "decrypt")
            .arg("--kek")
            .arg(&kek)
            .arg("--in")
            .arg(&target)
            .arg("--out")
            .arg(&back)
            .output()?,
    )?;
    assert!(
        std::fs::read(&back)? == plain,
        "the round trip changed the data"
    );

    // A named pipe stands for /dev/null here: written in place, kept.
    let fifo = tmp.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status()?;
    assert!(made.success(), "mkfifo failed: {made}");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo))
    };
    succeeded(encrypt(&fifo)?)?;
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)?.file_type().is_fifo(),
        "the named pipe was replaced by a file"
    );
    // The pipe is still there and was opened for writing, so the reader
    // has its data and ended.
    let sealed = reader.join().map_err(|_| "reader panicked")??;
    assert!(sealed.len() > plain.len());
    let out = succeeded(run_with_stdin(
        kms(&server, &srv_dir, "decrypt").arg("--kek").arg(&kek),
        &sealed,
    )?)?;
    assert!(out.stdout == plain, "what the pipe got does not decrypt");
    Ok(())
}

/// Finding 3: `kms new --out PATH` created the key on the server before
/// finding that PATH could not be written, leaving a key no one holds.
/// `kms new --out FILE` where FILE's 32 bytes do not fit (the file size
/// limit, as a full disk) fails before the server creates a key: the
/// KEK's bytes are reserved (written and synced) before it is asked, so
/// no key is made whose KEK is lost. No file is left.
#[test]
fn new_on_a_full_disk_fails_before_creating_a_key() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve(&srv_dir)?;
    let outdir = tmp.path().join("out");
    std::fs::create_dir(&outdir)?;
    let kek = outdir.join("kek");
    let new = kms(&server, &srv_dir, "new");
    let mut limited = Command::new("sh");
    limited
        .args(["-c", "trap '' XFSZ; exec prlimit --fsize=16 \"$@\"", "sh"])
        .arg(new.get_program())
        .args(new.get_args())
        .arg("--out")
        .arg(&kek)
        .env_remove("SECCS_KMS_URL");
    let out = limited.output()?;
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert!(!err.contains("the server created a key"), "{err}");
    assert_eq!(key_count(&server, &srv_dir)?, "KMS server holding 0 keys");
    assert_eq!(std::fs::read_dir(&outdir)?.count(), 0, "{err}");
    Ok(())
}

#[test]
fn new_refuses_a_taken_or_unreachable_out_path_before_creating_a_key() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve(&srv_dir)?;
    let taken = tmp.path().join("taken");
    std::fs::write(&taken, b"not a key to lose")?;
    let out = kms(&server, &srv_dir, "new")
        .arg("--out")
        .arg(&taken)
        .output()?;
    assert!(!out.status.success(), "an existing file was overwritten");
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&taken)?, b"not a key to lose");
    let unreachable = tmp.path().join("no/such/dir/kek");
    let out = kms(&server, &srv_dir, "new")
        .arg("--out")
        .arg(&unreachable)
        .output()?;
    assert!(!out.status.success(), "a KEK was saved nowhere");
    assert!(
        stderr(&out).contains(&tmp.path().join("no/such/dir").display().to_string()),
        "{}",
        stderr(&out)
    );
    assert_eq!(key_count(&server, &srv_dir)?, "KMS server holding 0 keys");
    let kek = new_kek(&server, &srv_dir, &tmp.path().join("kek"))?;
    assert_eq!(std::fs::read(&kek)?.len(), 32);
    assert_eq!(key_count(&server, &srv_dir)?, "KMS server holding 1 keys");
    Ok(())
}

/// `kms SUB --token-file DIR/token` against `server`.
fn managed(server: &Server, dir: &Path, sub: &str) -> Command {
    let mut c = kms(server, dir, sub);
    c.arg("--token-file").arg(dir.join("token"));
    c
}

/// An error about a named key or a KEK says which key and which server
/// (they said "key not found" or "a key of this name already exists"
/// alone), and a server that is not running is said to be the likely
/// cause of a refused connection.
#[test]
fn errors_name_the_key_and_the_server_and_a_server_not_running_is_said() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, _kek) = serve_with_kek(tmp.path())?;
    succeeded(
        managed(&server, &srv_dir, "create")
            .arg("orders")
            .output()?,
    )?;
    let out = managed(&server, &srv_dir, "create")
        .arg("orders")
        .output()?;
    assert!(!out.status.success());
    let said = format!(
        "the key server {} already has a named key orders",
        server.url
    );
    assert!(stderr(&out).contains(&said), "{}", stderr(&out));
    let missing = format!("the key server {} has no named key nope", server.url);
    for args in [
        &["info", "nope"][..],
        &["rotate", "nope"],
        &["datakey", "nope"],
    ] {
        let out = managed(&server, &srv_dir, args[0])
            .args(&args[1..])
            .output()?;
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains(&missing),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = run_with_stdin(
        managed(&server, &srv_dir, "encrypt").args(["--name", "nope"]),
        b"data",
    )?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&missing), "{}", stderr(&out));
    // A KEK the server never made.
    let stranger = tmp.path().join("stranger.kek");
    std::fs::write(&stranger, [7u8; 32])?;
    let out = kms(&server, &srv_dir, "key")
        .arg("--kek")
        .arg(&stranger)
        .output()?;
    assert!(!out.status.success());
    let said = format!(
        "the key server {} holds no key for the KEK in {}",
        server.url,
        stranger.display()
    );
    assert!(stderr(&out).contains(&said), "{}", stderr(&out));
    // No server at the address: a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let out = seccs_kms(&[
        "status",
        "--server",
        &format!("https://127.0.0.1:{port}"),
        "--ca",
    ])
    .arg(srv_dir.join("tls/ca.pem"))
    .output()?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no key server listens there: is `seccs kms serve` running"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    Ok(())
}

/// Findings 2, 4 and 6: named-key size limit, per-item errors and corrupt
/// key files, as the command line reports them.
#[test]
fn named_keys_refuse_oversized_input_and_explain_item_and_key_file_errors() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let mut server = serve(&srv_dir)?;
    succeeded(managed(&server, &srv_dir, "create").arg("k").output()?)?;

    // At the limit: encrypts, decrypts and rewraps under the default body
    // limit. One byte more: refused before any request.
    let max = 256 * 1024;
    let plain: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    let sealed = succeeded(run_with_stdin(
        managed(&server, &srv_dir, "encrypt").args(["--name", "k"]),
        &plain,
    )?)?
    .stdout;
    let rewrapped = succeeded(run_with_stdin(
        managed(&server, &srv_dir, "rewrap").arg("k"),
        &sealed,
    )?)?
    .stdout;
    for ct in [&sealed, &rewrapped] {
        let back = succeeded(run_with_stdin(
            managed(&server, &srv_dir, "decrypt").args(["--name", "k"]),
            ct,
        )?)?;
        assert!(back.stdout == plain, "the round trip changed the data");
    }
    let mut more = plain.clone();
    more.push(0);
    let out = run_with_stdin(
        managed(&server, &srv_dir, "encrypt").args(["--name", "k"]),
        &more,
    )?;
    assert!(!out.status.success(), "an oversized input was encrypted");
    assert!(
        stderr(&out).contains(
            "input is 262145 bytes; the server encrypts at most 256 KiB per item: use --kek for files"
        ),
        "{}",
        stderr(&out)
    );

    // Not a ciphertext: said so, not "server answered 200: malformed".
    let out = run_with_stdin(
        managed(&server, &srv_dir, "decrypt").args(["--name", "k"]),
        b"hello, not sealed",
    )?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a seccs kms ciphertext") && !stderr(&out).contains("200"),
        "{}",
        stderr(&out)
    );
    // A ciphertext of a newer version (its byte after the 4-byte magic):
    // that version is named, not "not a seccs kms ciphertext".
    let mut newer = sealed.clone();
    newer[4] = 3;
    let out = run_with_stdin(
        managed(&server, &srv_dir, "decrypt").args(["--name", "k"]),
        &newer,
    )?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ciphertext version 3, newer than this build reads (version 2)")
            && !stderr(&out).contains("not a seccs kms ciphertext")
            && !stderr(&out).contains("damaged"),
        "{}",
        stderr(&out)
    );
    // Below the minimum version: said so.
    succeeded(managed(&server, &srv_dir, "rotate").arg("k").output()?)?;
    succeeded(
        managed(&server, &srv_dir, "min-version")
            .args(["k", "2"])
            .output()?,
    )?;
    let out = run_with_stdin(
        managed(&server, &srv_dir, "decrypt").args(["--name", "k"]),
        &sealed,
    )?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("below its minimum decryption version"),
        "{}",
        stderr(&out)
    );

    // A corrupt key file on the server: said so, not "tampered with".
    drop(server);
    let path = srv_dir.join("named/k.key");
    let mut bytes = std::fs::read(&path)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes)?;
    server = serve(&srv_dir)?;
    let out = managed(&server, &srv_dir, "info").arg("k").output()?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the server's key file for k is corrupt")
            && !stderr(&out).contains("tampered"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

/// Finding 5: I/O errors printed their cause twice and no path; a port in
/// use did not say which address.
#[test]
fn io_errors_name_the_path_and_say_the_cause_once() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve(&srv_dir)?;
    let once = |out: &Output, path: &str, cause: &str| {
        let err = stderr(out);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(path), "no path in: {err}");
        assert_eq!(err.matches(cause).count(), 1, "{err}");
    };
    let missing_kek = tmp.path().join("missing-kek");
    let out = kms(&server, &srv_dir, "encrypt")
        .arg("--kek")
        .arg(&missing_kek)
        .output()?;
    once(
        &out,
        &missing_kek.display().to_string(),
        "No such file or directory",
    );
    // The KEK file is named once, as such, not again by its read.
    let err = stderr(&out);
    let named = format!("cannot read the KEK file {}", missing_kek.display());
    assert!(err.contains(&named), "{err}");
    assert_eq!(
        err.matches(&*missing_kek.display().to_string()).count(),
        1,
        "{err}"
    );

    let kek = new_kek(&server, &srv_dir, &tmp.path().join("kek"))?;
    let missing_in = tmp.path().join("missing-in");
    let out = kms(&server, &srv_dir, "encrypt")
        .arg("--kek")
        .arg(&kek)
        .arg("--in")
        .arg(&missing_in)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()?;
    once(
        &out,
        &missing_in.display().to_string(),
        "No such file or directory",
    );

    let addr = server.url.trim_start_matches("https://").to_owned();
    let out = seccs_kms(&["serve", "--listen", &addr, "--dir"])
        .arg(tmp.path().join("srv2"))
        .output()?;
    once(
        &out,
        &format!("cannot listen on {addr}"),
        "Address already in use",
    );
    Ok(())
}

/// An encryption to standard output is spooled (past 8 MiB in an
/// encrypted file in TMPDIR) until it is whole: a spool that cannot be
/// written is named with TMPDIR, not taken for standard output.
#[test]
fn a_spool_that_cannot_be_written_names_tmpdir_not_standard_output() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let plain = tmp.path().join("plain");
    std::fs::write(&plain, vec![7u8; 9 << 20])?;
    let nowhere = tmp.path().join("no-such-dir");
    let out = kms(&server, &srv_dir, "encrypt")
        .arg("--kek")
        .arg(&kek)
        .arg("--in")
        .arg(&plain)
        .env("TMPDIR", &nowhere)
        .output()?;
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(out.stdout.is_empty(), "nothing is written unless whole");
    assert!(!err.contains("cannot write standard output"), "{err}");
    assert!(
        err.contains("spool") && err.contains(&format!("{} (TMPDIR)", nowhere.display())),
        "{err}"
    );
    Ok(())
}

/// A stream written to `--out FILE` that cannot be written whole (here a
/// file size limit; a full disk alike) names FILE, as a failed read names
/// the input: it said only "stream I/O failed", naming no file. No output
/// file is left.
#[test]
fn a_stream_output_that_cannot_be_written_is_named() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let plain = tmp.path().join("plain");
    std::fs::write(&plain, vec![7u8; 4 << 20])?;
    let sealed = tmp.path().join("sealed");
    succeeded(
        kms(&server, &srv_dir, "encrypt")
            .arg("--kek")
            .arg(&kek)
            .arg("--in")
            .arg(&plain)
            .arg("--out")
            .arg(&sealed)
            .output()?,
    )?;
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir)?;
    for (subcommand, input) in [("encrypt", &plain), ("decrypt", &sealed)] {
        let written = out_dir.join(subcommand);
        // A file size limit of 1 MiB or less (in the shell's blocks), with
        // SIGXFSZ ignored so that a write past it fails (EFBIG).
        let mut limited = Command::new("sh");
        limited
            .args(["-c", "ulimit -f 1024; trap '' XFSZ; exec \"$@\"", "sh"])
            .arg(env!("CARGO_BIN_EXE_seccs"))
            .args(["kms", subcommand, "--server", &server.url, "--ca"])
            .arg(srv_dir.join("tls/ca.pem"))
            .arg("--kek")
            .arg(&kek)
            .arg("--in")
            .arg(input)
            .arg("--out")
            .arg(&written)
            .env_remove("SECCS_KMS_URL");
        let out = limited.output()?;
        let err = stderr(&out);
        assert!(!out.status.success(), "{subcommand}: {err}");
        let named = format!("cannot write {}", written.display());
        assert!(err.contains(&named), "{subcommand}: {err}");
        assert!(!err.contains("stream I/O failed"), "{subcommand}: {err}");
        assert_eq!(entries(&out_dir)?, Vec::<String>::new(), "{subcommand}");
    }
    Ok(())
}

/// `--in -` and `--out -` are standard input and output, as `put -` and
/// `get -o -` are: `--out -` made a file named `-`, and `--in -` failed.
#[test]
fn a_dash_is_standard_input_and_output() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let work = tmp.path().join("work");
    std::fs::create_dir(&work)?;
    let dashed = |subcommand: &str| {
        let mut c = kms(&server, &srv_dir, subcommand);
        c.arg("--kek")
            .arg(&kek)
            .args(["--in", "-", "--out", "-"])
            .current_dir(&work);
        c
    };
    let sealed = succeeded(run_with_stdin(&mut dashed("encrypt"), b"through dashes")?)?;
    assert!(!sealed.stdout.is_empty());
    let opened = succeeded(run_with_stdin(&mut dashed("decrypt"), &sealed.stdout)?)?;
    assert_eq!(opened.stdout, b"through dashes");
    assert_eq!(entries(&work)?, Vec::<String>::new());
    Ok(())
}

/// The entries of `dir`, by name.
fn entries(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir)? {
        names.push(e?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Whether this process ignores signal `n` (the `SigIgn` mask of
/// `/proc/self/status`), which a child it starts inherits.
fn ignored_here(n: i32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & (1u64 << (n - 1)) != 0)
}

/// Waits (at most 30 s) for `child` to open the file of an output in
/// `dir` (a file with no name, as `/proc/PID/fd` shows it): it is opened
/// once the key is fetched, and while the input stays open the command
/// waits for the rest.
fn wait_for_output_file(child: &std::process::Child, dir: &Path) -> TestResult {
    let dir = std::fs::canonicalize(dir)?;
    for _ in 0..600 {
        let open = std::fs::read_dir(format!("/proc/{}/fd", child.id()))?
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(&dir)));
        if open {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the output file was never opened".into())
}

/// Waits (at most 30 s) for a file to appear in `dir`.
fn wait_for_temporary_output(dir: &Path) -> TestResult {
    for _ in 0..600 {
        if !entries(dir)?.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the temporary output file never appeared".into())
}

/// `kill -SIGNAL` of `child`.
fn send(signal: &str, child: &std::process::Child) -> TestResult {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()?;
    if sent.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} failed").into())
    }
}

/// Waits for `child` to end, for at most `limit`; kills it and fails
/// after that.
fn wait_at_most(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus, Box<dyn std::error::Error>> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("the command did not end within {limit:?}").into())
}

#[test]
fn an_interrupt_half_way_leaves_no_temporary_output_file() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir)?;
    // A signal this test was started with ignored (a shell ignores SIGINT
    // in its background jobs) is ignored by the command too, as it should
    // be: only the others are sent.
    let signals: Vec<(&str, i32)> = [("INT", 2), ("TERM", 15)]
        .into_iter()
        .filter(|(_, n)| !ignored_here(*n))
        .collect();
    assert!(
        !signals.is_empty(),
        "SIGINT and SIGTERM are both ignored here"
    );
    for (signal, number) in signals {
        let mut child = kms(&server, &srv_dir, "encrypt")
            .arg("--kek")
            .arg(&kek)
            .arg("--out")
            .arg(out_dir.join("sealed"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin.write_all(&[7u8; 200_000])?;
        wait_for_output_file(&child, &out_dir)?;
        send(signal, &child)?;
        let status = wait_at_most(&mut child, Duration::from_secs(30))?;
        drop(stdin);
        assert_eq!(status.code(), Some(128 + number), "SIG{signal}");
        assert_eq!(entries(&out_dir)?, Vec::<String>::new(), "SIG{signal}");
    }
    Ok(())
}

/// `kms new --out DIR/kek` with DIR not writable created the key on the
/// server, then failed to save its KEK; `--out kek/` made a file `kek`.
#[test]
fn new_refuses_an_unwritable_directory_or_a_directory_path_before_creating_a_key() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve(&srv_dir)?;
    // Not even root can create a file in /proc.
    let out = kms(&server, &srv_dir, "new")
        .args(["--out", "/proc/seccs-kek"])
        .output()?;
    assert!(!out.status.success(), "a KEK was saved in /proc");
    assert!(
        stderr(&out).contains("cannot create a file in /proc"),
        "{}",
        stderr(&out)
    );
    for dir_path in ["kek/", "kek/."] {
        let out = kms(&server, &srv_dir, "new")
            .arg("--out")
            .arg(tmp.path().join(dir_path))
            .output()?;
        assert!(!out.status.success(), "{dir_path} was taken as a file");
        assert!(
            stderr(&out).contains("names a directory"),
            "{}",
            stderr(&out)
        );
        assert!(!tmp.path().join("kek").exists(), "{dir_path} made a file");
    }
    assert_eq!(key_count(&server, &srv_dir)?, "KMS server holding 0 keys");
    let names = entries(tmp.path())?;
    assert_eq!(names, ["srv"], "{names:?}");
    Ok(())
}

/// `kms new > /dev/full` made a key and lost its KEK with only "No space
/// left on device"; into a closed pipe, it even exited 0.
#[test]
fn new_says_the_key_is_lost_when_standard_output_fails() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve(&srv_dir)?;
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full")?;
    let out = kms(&server, &srv_dir, "new").stdout(full).output()?;
    assert!(!out.status.success(), "writing to /dev/full succeeded");
    let err = stderr(&out);
    assert!(
        err.contains(
            "the server created a key, but its KEK could not be written to standard output"
        ) && err.contains("No space left on device")
            && err.contains("--out"),
        "{err}"
    );
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let out = kms(&server, &srv_dir, "new").stdout(writer).output()?;
    assert!(
        !out.status.success(),
        "a KEK sent to a closed pipe was lost silently"
    );
    assert!(
        stderr(&out).contains("could not be written to standard output"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

/// `kms encrypt --kek K --in DIR` said "stream I/O failed: Is a directory
/// (os error 21): Is a directory (os error 21)", without the path.
#[test]
fn a_stream_input_that_cannot_be_read_is_named_and_its_cause_said_once() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let input = tmp.path().join("a-directory");
    std::fs::create_dir(&input)?;
    for (sub, out_name) in [("encrypt", "sealed"), ("decrypt", "plain")] {
        let out = kms(&server, &srv_dir, sub)
            .arg("--kek")
            .arg(&kek)
            .arg("--in")
            .arg(&input)
            .arg("--out")
            .arg(tmp.path().join(out_name))
            .output()?;
        let err = stderr(&out);
        assert!(!out.status.success(), "{sub}: {err}");
        assert!(
            err.contains(&format!("cannot read {}", input.display())),
            "{sub}: {err}"
        );
        assert_eq!(err.matches("Is a directory").count(), 1, "{sub}: {err}");
        assert!(!tmp.path().join(out_name).exists(), "{sub} left output");
    }
    Ok(())
}

#[test]
fn a_signal_ignored_at_start_stays_ignored_as_under_nohup() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir)?;
    let sealed = out_dir.join("sealed");
    // The shell ignores SIGHUP and execs seccs, which inherits that, as
    // `nohup` does.
    let mut child = Command::new("sh")
        .args(["-c", "trap '' HUP; exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_seccs"))
        .args(["kms", "encrypt", "--server", &server.url, "--ca"])
        .arg(srv_dir.join("tls/ca.pem"))
        .arg("--kek")
        .arg(&kek)
        .arg("--out")
        .arg(&sealed)
        .env_remove("SECCS_KMS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(&[7u8; 100_000])?;
    wait_for_output_file(&child, &out_dir)?;
    send("HUP", &child)?;
    // Had the signal not been ignored, the command would end now (129).
    for _ in 0..20 {
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stdin.write_all(&[7u8; 100_000])?;
    drop(stdin);
    let status = wait_at_most(&mut child, Duration::from_secs(30))?;
    assert!(status.success(), "{status:?}");
    assert_eq!(entries(&out_dir)?, ["sealed"]);
    Ok(())
}

/// The operations of `DIR/audit.log`, in order.
fn audit_ops(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let log = std::fs::read_to_string(dir.join("audit.log"))?;
    let mut ops = Vec::new();
    for line in log.lines() {
        let record: serde_json::Value = serde_json::from_str(line)?;
        ops.push(record["op"].as_str().unwrap_or_default().to_owned());
    }
    Ok(ops)
}

/// Starts `seccs kms serve` in `dir` through `wrapper` (a command that
/// sets how SIGHUP is handled, then runs the rest), and waits (at most
/// 30 s) for its `start` record: the server listens for its stop signals
/// before it writes that.
fn serve_through(dir: &Path, wrapper: &[&str]) -> Result<Child, Box<dyn std::error::Error>> {
    let mut child = serve_command(dir, wrapper)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    for _ in 0..600 {
        if audit_ops(dir).is_ok_and(|ops| ops.iter().any(|op| op == "start")) {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err("the server never started".into())
}

/// SIGHUP (a closed terminal) stops the key server as SIGTERM does, its
/// audit log ending with `stop`; a server started with SIGHUP ignored (as
/// under `nohup`) keeps running through one. Each is started with SIGHUP
/// set as it needs, whatever this test inherited (a run under `nohup`
/// ignores it).
#[test]
fn a_hangup_stops_the_server_unless_it_was_started_ignoring_it() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("srv");
    let mut child = serve_through(&dir, &["env", "--default-signal=HUP"])?;
    send("HUP", &child)?;
    let status = wait_at_most(&mut child, Duration::from_secs(30))?;
    assert!(status.success(), "{status:?}");
    assert_eq!(audit_ops(&dir)?.last().map(String::as_str), Some("stop"));

    let dir = tmp.path().join("nohup");
    let mut child = serve_through(&dir, &["sh", "-c", "trap '' HUP; exec \"$@\"", "sh"])?;
    send("HUP", &child)?;
    std::thread::sleep(Duration::from_millis(500));
    let running = child.try_wait()?.is_none();
    send("TERM", &child)?;
    let status = wait_at_most(&mut child, Duration::from_secs(30))?;
    assert!(running, "a SIGHUP ignored at start stopped the server");
    assert!(status.success(), "{status:?}");
    assert_eq!(audit_ops(&dir)?.last().map(String::as_str), Some("stop"));
    Ok(())
}

/// The signals `/proc/PID/status` says process `pid` ignores (`SigIgn`)
/// or catches (`SigCgt`), as a bit mask (bit n-1 for signal n).
fn signal_mask(pid: u32, field: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .ok_or("no such line")?;
    Ok(u64::from_str_radix(mask.trim(), 16)?)
}

/// A server started with SIGINT ignored (a shell's background job) keeps
/// it ignored, as its docs say: it sets no handler for it (which would
/// undo that), and a SIGINT does not stop it, while SIGTERM still does.
#[test]
fn an_interrupt_ignored_at_start_stays_ignored_by_the_server() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("srv");
    let mut child = serve_through(&dir, &["sh", "-c", "trap '' INT; exec \"$@\"", "sh"])?;
    // The server listens for its stop signals before its `start` record.
    let ignored = signal_mask(child.id(), "SigIgn:")?;
    let caught = signal_mask(child.id(), "SigCgt:")?;
    send("INT", &child)?;
    std::thread::sleep(Duration::from_millis(500));
    let running = child.try_wait()?.is_none();
    if running {
        send("TERM", &child)?;
    }
    let status = wait_at_most(&mut child, Duration::from_secs(30))?;
    assert!(ignored & (1 << 1) != 0, "SIGINT is no longer ignored");
    assert!(caught & (1 << 1) == 0, "SIGINT is caught");
    assert!(caught & (1 << 14) != 0, "SIGTERM is not caught");
    assert!(running, "a SIGINT ignored at start stopped the server");
    assert!(status.success(), "{status:?}");
    assert_eq!(audit_ops(&dir)?.last().map(String::as_str), Some("stop"));
    Ok(())
}

/// `kms new --out FILE` makes FILE's temporary file before it asks the
/// server; an interrupt while the server has not answered removes it.
#[test]
fn an_interrupted_new_leaves_no_temporary_kek_file() -> TestResult {
    let tmp = tempfile::tempdir()?;
    // A server that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("https://{}", silent.local_addr()?);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir)?;
    let signal = [("TERM", 15), ("INT", 2)]
        .into_iter()
        .find(|(_, n)| !ignored_here(*n))
        .ok_or("SIGINT and SIGTERM are both ignored here")?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_seccs"))
        .args([
            "kms",
            "new",
            "--server",
            &url,
            "--pin",
            &"0".repeat(64),
            "--out",
        ])
        .arg(out_dir.join("kek"))
        .env_remove("SECCS_KMS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_for_temporary_output(&out_dir)?;
    send(signal.0, &child)?;
    let status = wait_at_most(&mut child, Duration::from_secs(30))?;
    assert_eq!(status.code(), Some(128 + signal.1));
    assert_eq!(entries(&out_dir)?, Vec::<String>::new());
    drop(silent);
    Ok(())
}

/// `kms serve --dir` naming a file says which path is in the way.
#[test]
fn serve_on_a_file_names_the_path_in_the_way() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("afile");
    std::fs::write(&file, b"x")?;
    let out = Command::new(env!("CARGO_BIN_EXE_seccs"))
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&file)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&file.display().to_string()) && err.contains("not a directory"),
        "{err}"
    );
    Ok(())
}

/// A store whose key comes from the key service: it opens with the KEK, and
/// two stores made with one KEK get keys of their own (a salt in each
/// config), so the same content gets a different reference in each and
/// neither store's backend tells what the other holds.
#[test]
fn stores_keyed_by_the_key_service_get_keys_of_their_own() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let ca = srv_dir.join("tls/ca.pem");
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, b"kept under a key from the key service\n")?;
    let mut references = Vec::new();
    for name in ["a", "b"] {
        let store = tmp.path().join(name);
        let seccs = || {
            let mut c = Command::new(env!("CARGO_BIN_EXE_seccs"));
            c.arg("--store").arg(&store).env_remove("SECCS_KMS_URL");
            c
        };
        succeeded(
            seccs()
                .args(["init", "--key-from-kms", &server.url, "--kek"])
                .arg(&kek)
                .arg("--kms-ca")
                .arg(&ca)
                .output()?,
        )?;
        assert!(!store.join("key").exists(), "no key on this machine");
        let put = succeeded(seccs().arg("put").arg(&input).output()?)?;
        let reference = String::from_utf8(put.stdout)?.trim().to_owned();
        let back = succeeded(seccs().args(["get", &reference]).output()?)?;
        assert_eq!(back.stdout, std::fs::read(&input)?);
        references.push(reference);
    }
    assert_ne!(references[0], references[1]);

    // A KEK file others can read is warned about at each open.
    let store = tmp.path().join("a");
    let open_a = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seccs"));
        c.arg("--store").arg(&store).arg("ls");
        c
    };
    std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let out = succeeded(open_a().output()?)?;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("can be read by others (mode 644): make it 0600"),
        "{said}"
    );
    std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let out = succeeded(open_a().output()?)?;
    // Only the listing's own word that the store is empty, no warning.
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "seccs: no names in the store\n"
    );

    // An emptied salt is said to be empty, not "not hex".
    let config_path = store.join("config.toml");
    let config = std::fs::read_to_string(&config_path)?;
    let salted = config
        .lines()
        .map(|l| match l.trim_start().starts_with("salt") {
            true => "salt = \"\"".to_owned(),
            false => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(salted, config, "the config holds a salt");
    std::fs::write(&config_path, salted)?;
    let out = open_a().output()?;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("holds an empty key-service salt"), "{said}");

    // A salt line gone (the way a store made before salts reads) gives
    // another key; the KEK is not all the message blames.
    let unsalted = config
        .lines()
        .filter(|l| !l.trim_start().starts_with("salt"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config_path, unsalted)?;
    let out = open_a().output()?;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("does not belong to this store") && said.contains("lost its `salt` line"),
        "{said}"
    );
    Ok(())
}

/// A store keyed by the key service whose server is down says that no
/// server listens at the address the store's config.toml names, not to
/// check --server or SECCS_KMS_URL, which store commands do not read; the
/// `kms` commands still name those.
#[test]
fn a_store_whose_key_server_is_down_names_its_config_for_the_address() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let store = tmp.path().join("store");
    let seccs = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seccs"));
        c.arg("--store").arg(&store).env_remove("SECCS_KMS_URL");
        c
    };
    succeeded(
        seccs()
            .args(["init", "--key-from-kms", &server.url, "--kek"])
            .arg(&kek)
            .arg("--kms-ca")
            .arg(srv_dir.join("tls/ca.pem"))
            .output()?,
    )?;
    let url = server.url.clone();
    drop(server);
    let out = seccs().arg("ls").output()?;
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("no key server listens there"), "{said}");
    assert!(
        said.contains(&store.join("config.toml").display().to_string()),
        "{said}"
    );
    assert!(!said.contains("--server"), "{said}");
    assert!(!said.contains("SECCS_KMS_URL"), "{said}");
    let out = seccs_kms(&["new", "--server", &url, "--ca"])
        .arg(srv_dir.join("tls/ca.pem"))
        .output()?;
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains("do --server or SECCS_KMS_URL name its address?"),
        "{said}"
    );
    Ok(())
}

/// `kms serve --help` lists what the storage directory holds (the root key
/// seals `named/`; each DEK is sealed under its KEK), the token's rules,
/// `--new-needs-token` and its risk, and every route with whether it needs
/// the token (L2, L3, L9, L18, M2).
#[test]
fn serve_help_lists_the_storage_directory_and_the_routes() -> TestResult {
    let out = Command::new(env!("CARGO_BIN_EXE_seccs"))
        .args(["kms", "serve", "--help"])
        .output()?;
    let help = String::from_utf8(succeeded(out)?.stdout)?;
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for item in [
        "keys/",
        "named/",
        "root.key",
        "token",
        "audit.log",
        "tls/",
        "the key that seals `named/`",
        "sealed under its own KEK",
        "at least 16 bytes",
        "a changed token needs a restart",
        "--new-needs-token",
        "until its disk is full",
        "at least 1024",
        "POST /v1/keys/NAME/encrypt",
        "GET /v1/status",
        "--audit-sync <interval|each>",
        "synced to disk as --audit-sync says",
        "at most once a second",
        "concurrent requests share one sync",
        "--audit-sync-interval <SECONDS>",
        "above 0, at most 60",
        "SIGUSR1 (`kill -USR1 PID`) reopens DIR/audit.log",
        "Do not use copytruncate",
        "postrotate kill -USR1",
    ] {
        assert!(flat.contains(item), "{item}: {help}");
    }
    // Each /v1/keys route says it needs the token.
    let routes: Vec<&str> = help.lines().filter(|l| l.contains("/v1/keys")).collect();
    assert_eq!(routes.len(), 10, "{help}");
    for line in routes {
        assert!(line.contains("(token)"), "{line}");
    }
    Ok(())
}

/// L1 and L15: `--token` warns that the command line is public; every
/// command that needs the management token says so.
#[test]
fn client_help_says_which_commands_need_the_token() -> TestResult {
    let help = |args: &[&str]| -> Result<String, Box<dyn std::error::Error>> {
        let out = seccs_kms(args).output()?;
        let text = String::from_utf8(succeeded(out)?.stdout)?;
        Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    let status = help(&["list", "--help"])?;
    assert!(
        status.contains("visible to other users") && status.contains("--token-file"),
        "{status}"
    );
    // `status` and `key` never send the token: they take none, rather
    // than take one and ignore it.
    for sub in ["status", "key"] {
        let text = help(&[sub, "--help"])?;
        assert!(!text.contains("--token"), "{sub}: {text}");
        let out = seccs_kms(&[sub, "--token", "t", "--kek", "k"]).output()?;
        assert_eq!(out.status.code(), Some(2), "{sub}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("unexpected argument '--token'"),
            "{sub}: {}",
            stderr(&out)
        );
    }
    for sub in [
        "create",
        "list",
        "info",
        "rotate",
        "state",
        "min-version",
        "rewrap",
        "datakey",
    ] {
        let text = help(&[sub, "--help"])?;
        assert!(text.contains("(management token)"), "{sub}: {text}");
    }
    for sub in ["encrypt", "decrypt"] {
        let text = help(&[sub, "--help"])?;
        assert!(
            text.contains("named key (management token"),
            "{sub}: {text}"
        );
    }
    let text = help(&["new", "--help"])?;
    assert!(text.contains("--new-needs-token"), "{text}");
    Ok(())
}

/// L17: a body limit with no room for a request is a usage error.
#[test]
fn a_body_limit_below_1_kib_is_a_usage_error() -> TestResult {
    let err = serve_usage_error(&["--max-body", "0"])?;
    assert!(err.contains("at least 1024"), "{err}");
    Ok(())
}

/// M2: `--new-needs-token` makes `kms new` need the management token.
#[test]
fn new_needs_the_token_when_the_server_is_started_so() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve_with(&srv_dir, "127.0.0.1:0", &["--new-needs-token"])?;
    let out = kms(&server, &srv_dir, "new").output()?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not authorised"), "{}", stderr(&out));
    let out = succeeded(managed(&server, &srv_dir, "new").output()?)?;
    assert_eq!(String::from_utf8(out.stdout)?.trim().len(), 64);
    Ok(())
}

/// M3: a server on another loopback address makes a certificate that names
/// it, so `--ca` works there.
#[test]
fn the_ca_file_works_at_the_listen_address() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve_with(&srv_dir, "127.0.0.2:0", &[])?;
    assert!(
        server.url.starts_with("https://127.0.0.2:"),
        "{}",
        server.url
    );
    assert!(
        server.banner.iter().all(|l| !l.starts_with("warning")),
        "{:?}",
        server.banner
    );
    succeeded(kms(&server, &srv_dir, "status").output()?)?;
    drop(server);
    // The same certificate at another address: said at start.
    let server = serve_with(&srv_dir, "127.0.0.3:0", &[])?;
    let banner = server.banner.join("\n");
    assert!(
        banner.contains("warning: the certificate does not name 127.0.0.3")
            && banner.contains("--pin")
            && banner.contains(&format!("remove {}", srv_dir.join("tls").display())),
        "{banner}"
    );
    Ok(())
}

/// M1: a key directory that lost root.key while it holds named keys is
/// refused at start, by the file that is missing.
#[test]
fn serve_refuses_a_directory_that_lost_its_root_key() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve(&srv_dir)?;
    succeeded(managed(&server, &srv_dir, "create").arg("k").output()?)?;
    drop(server);
    std::fs::remove_file(srv_dir.join("root.key"))?;
    let mut child = seccs_kms(&["serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&srv_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let status = wait_at_most(&mut child, Duration::from_secs(60))?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err)?;
    }
    assert!(!status.success());
    assert!(
        err.contains("root.key is missing") && err.contains("restore root.key from a backup"),
        "{err}"
    );
    assert!(!srv_dir.join("root.key").exists());
    Ok(())
}

/// A server whose `tls/ca.pem` is gone while its certificate and key
/// stayed still starts (its clients can trust it by `--pin`), and says at
/// start that clients and stores given the CA file will fail and what to
/// do instead.
#[test]
fn serve_warns_when_its_ca_file_is_missing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    drop(serve(&srv_dir)?);
    let ca = srv_dir.join("tls/ca.pem");
    std::fs::remove_file(&ca)?;
    let server = serve(&srv_dir)?;
    let ca = std::path::absolute(&ca)?;
    let warning = server
        .banner
        .iter()
        .find(|l| l.starts_with("warning:") && l.contains(&ca.display().to_string()))
        .ok_or_else(|| format!("no warning naming {}: {:?}", ca.display(), server.banner))?;
    for needed in ["is missing", "--ca", "--kms-ca", "--pin", "backup"] {
        assert!(warning.contains(needed), "{needed}: {warning}");
    }
    assert!(
        !server.banner.iter().any(|l| l.starts_with("CA file")),
        "{:?}",
        server.banner
    );
    Ok(())
}

/// L19, L13, L11 and L7: a KEK file others can read is used with a
/// warning; a server URL holding a password is refused without showing
/// it; a token file with a line break inside, or one that never ends, is
/// refused in words.
#[test]
fn client_inputs_are_checked_and_warned_about() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let out = succeeded(
        kms(&server, &srv_dir, "key")
            .arg("--kek")
            .arg(&kek)
            .output()?,
    )?;
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644))?;
    let out = succeeded(
        kms(&server, &srv_dir, "key")
            .arg("--kek")
            .arg(&kek)
            .output()?,
    )?;
    let err = stderr(&out);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(
        err.contains("can be read by others (mode 644)") && err.contains("0600"),
        "{err}"
    );

    let out = seccs_kms(&[
        "status",
        "--server",
        "https://me:s3cret@127.0.0.1:1",
        "--pin",
    ])
    .arg("ab".repeat(32))
    .output()?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("may not hold a user name or password")
            && !stderr(&out).contains("s3cret"),
        "{}",
        stderr(&out)
    );

    let token = tmp.path().join("token");
    std::fs::write(&token, "0123456789\nabcdefghij\n")?;
    let out = kms(&server, &srv_dir, "list")
        .arg("--token-file")
        .arg(&token)
        .output()?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot go in an HTTP header"),
        "{}",
        stderr(&out)
    );
    let out = kms(&server, &srv_dir, "list")
        .args(["--token-file", "/dev/zero"])
        .output()?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/dev/zero is larger than 4096 bytes"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

/// A token file with nothing in it but whitespace (a token not yet
/// copied in, a file emptied) is refused before any request, naming the
/// file, as is SECCS_KMS_TOKEN set to spaces: sent, the empty token drew
/// the server's "missing or wrong bearer token ... --token-file", though
/// --token-file was given. No server runs at the URL, so an error about
/// reaching it would mean the token was sent.
#[test]
fn an_empty_token_is_refused_naming_where_it_came_from() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let token = tmp.path().join("token file");
    let pin = "ab".repeat(32);
    let base = ["list", "--server", "https://127.0.0.1:1", "--pin", &pin];
    for empty in ["", "\n", "  \t\n"] {
        std::fs::write(&token, empty)?;
        let out = seccs_kms(&base)
            .arg("--token-file")
            .arg(&token)
            .env_remove("SECCS_KMS_TOKEN")
            .env_remove("SECCS_KMS_TOKEN_FILE")
            .output()?;
        assert!(!out.status.success(), "{empty:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{} holds no token", token.display())),
            "{empty:?}: {err}"
        );
    }
    let out = seccs_kms(&base)
        .env("SECCS_KMS_TOKEN", "   ")
        .env_remove("SECCS_KMS_TOKEN_FILE")
        .output()?;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("the token is empty"), "{err}");
    Ok(())
}

/// `--ca`/`--pin` and `--token`/`--token-file` exclude each other, and each
/// is also read from the environment: an option given on the command line
/// wins over a variable set for the other, and two variables set at once
/// are refused in words.
#[test]
fn an_option_on_the_command_line_wins_over_the_environment() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve(&srv_dir)?;
    let pin = server
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint (for --pin): "))
        .ok_or("no fingerprint announced")?
        .to_owned();
    let ca = srv_dir.join("tls/ca.pem");
    let bare = |sub: &str| {
        let mut c = seccs_kms(&[sub, "--server", &server.url]);
        for var in [
            "SECCS_KMS_CA",
            "SECCS_KMS_PIN",
            "SECCS_KMS_TOKEN",
            "SECCS_KMS_TOKEN_FILE",
        ] {
            c.env_remove(var);
        }
        c
    };
    succeeded(
        bare("status")
            .args(["--pin", &pin])
            .env("SECCS_KMS_CA", tmp.path().join("no-such-ca.pem"))
            .output()?,
    )?;
    succeeded(
        bare("status")
            .arg("--ca")
            .arg(&ca)
            .env("SECCS_KMS_PIN", "00".repeat(32))
            .output()?,
    )?;
    succeeded(bare("status").env("SECCS_KMS_PIN", &pin).output()?)?;
    let out = bare("status")
        .env("SECCS_KMS_PIN", &pin)
        .env("SECCS_KMS_CA", &ca)
        .output()?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("SECCS_KMS_CA and SECCS_KMS_PIN are both set"),
        "{}",
        stderr(&out)
    );
    let token = srv_dir.join("token");
    succeeded(
        bare("list")
            .arg("--ca")
            .arg(&ca)
            .arg("--token-file")
            .arg(&token)
            .env("SECCS_KMS_TOKEN", "not-the-token-but-long-enough")
            .output()?,
    )?;
    succeeded(
        bare("list")
            .arg("--ca")
            .arg(&ca)
            .env("SECCS_KMS_TOKEN_FILE", &token)
            .output()?,
    )?;
    let out = bare("list")
        .arg("--ca")
        .arg(&ca)
        .env("SECCS_KMS_TOKEN", "not-the-token-but-long-enough")
        .output()?;
    assert!(
        !out.status.success(),
        "a wrong token from the environment is used"
    );
    // An empty --token is a mistake, not a token that wins over the
    // environment's.
    let out = bare("list")
        .arg("--ca")
        .arg(&ca)
        .args(["--token", ""])
        .env("SECCS_KMS_TOKEN_FILE", &token)
        .output()?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));
    Ok(())
}

/// Usage mistakes are told by what would be right: which key options an
/// encryption takes, which states a key can be moved to.
#[test]
fn usage_errors_name_the_choices() -> TestResult {
    for (args, said) in [
        (&["encrypt"][..], "<--kek <FILE>|--name <NAME>>"),
        (&["decrypt"], "<--kek <FILE>|--name <NAME>>"),
        (
            &["state", "k1", "bogus"],
            "[possible values: pre-activation, active, suspended, deactivated, compromised, \
             destroyed]",
        ),
    ] {
        let out = seccs_kms(args).output()?;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(said), "{args:?}: {}", stderr(&out));
    }
    Ok(())
}

/// `--audit-sync each` is taken (the server starts and gives out a key,
/// its record synced before the answer); an unknown mode is refused
/// naming the modes there are.
#[test]
fn serve_takes_audit_sync_each_and_names_the_modes_of_a_wrong_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    let srv_dir = dir.path().join("srv");
    let server = serve_with(&srv_dir, "127.0.0.1:0", &["--audit-sync", "each"])?;
    let out = succeeded(kms(&server, &srv_dir, "new").output()?)?;
    let kek = String::from_utf8(out.stdout)?;
    assert_eq!(kek.trim().len(), 64, "{kek}");
    drop(server);
    let log = std::fs::read_to_string(srv_dir.join("audit.log"))?;
    assert!(log.contains("\"op\":\"new\""), "{log}");
    let out = seccs_kms(&["serve", "--audit-sync", "sometimes", "--dir"])
        .arg(dir.path().join("other"))
        .output()?;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("invalid value 'sometimes' for '--audit-sync <interval|each>'")
            && err.contains("\"sometimes\" is no audit sync mode: use one of interval, each"),
        "{err}"
    );
    assert!(
        !dir.path().join("other").exists(),
        "a refused start made its directory"
    );
    Ok(())
}

/// `status`, `key` and `encrypt --kek` send no token, and read none: a
/// `SECCS_KMS_TOKEN_FILE` that names a missing file (set for the other
/// commands) stops none of them, while a command that sends the token
/// still says the file is missing.
#[test]
fn commands_that_send_no_token_read_no_token_file() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let missing = tmp.path().join("no-such-token");
    let status = kms(&server, &srv_dir, "status")
        .env("SECCS_KMS_TOKEN_FILE", &missing)
        .output()?;
    let text = String::from_utf8(succeeded(status)?.stdout)?;
    assert!(text.starts_with("KMS server holding 1 keys"), "{text}");
    succeeded(
        kms(&server, &srv_dir, "key")
            .arg("--kek")
            .arg(&kek)
            .env("SECCS_KMS_TOKEN_FILE", &missing)
            .output()?,
    )?;
    succeeded(run_with_stdin(
        kms(&server, &srv_dir, "encrypt")
            .arg("--kek")
            .arg(&kek)
            .env("SECCS_KMS_TOKEN_FILE", &missing),
        b"data",
    )?)?;
    let list = kms(&server, &srv_dir, "list")
        .env("SECCS_KMS_TOKEN_FILE", &missing)
        .output()?;
    assert!(!list.status.success());
    assert!(
        stderr(&list).contains(&missing.display().to_string()),
        "{}",
        stderr(&list)
    );
    Ok(())
}

/// An `--out` that cannot be written is refused before the server is
/// asked: with `--name`, the server decrypts nothing (its log holds no
/// decrypt), and with `--kek` the DEK is not fetched (no `key` record).
#[test]
fn an_unwritable_output_is_refused_before_the_server_is_asked() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    succeeded(managed(&server, &srv_dir, "create").arg("k").output()?)?;
    let sealed = succeeded(run_with_stdin(
        managed(&server, &srv_dir, "encrypt").args(["--name", "k"]),
        b"secret",
    )?)?
    .stdout;
    let before = audit_ops(&srv_dir)?;
    let nowhere = tmp.path().join("missing-dir").join("out");
    let out = run_with_stdin(
        managed(&server, &srv_dir, "decrypt")
            .args(["--name", "k", "--out"])
            .arg(&nowhere),
        &sealed,
    )?;
    assert!(!out.status.success(), "decrypted into a missing directory");
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let out = run_with_stdin(
        kms(&server, &srv_dir, "encrypt")
            .arg("--kek")
            .arg(&kek)
            .arg("--out")
            .arg(&nowhere),
        b"data",
    )?;
    assert!(!out.status.success(), "encrypted into a missing directory");
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    // Nothing was asked of the server in between.
    assert_eq!(audit_ops(&srv_dir)?, before);
    Ok(())
}

/// `kms check DIR` finds damaged key files without a server: each is
/// named with its path, and it exits non-zero; a sound directory passes.
#[test]
fn check_names_each_damaged_key_file_and_fails() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, _kek) = serve_with_kek(tmp.path())?;
    succeeded(managed(&server, &srv_dir, "create").arg("k").output()?)?;
    new_kek(&server, &srv_dir, &tmp.path().join("kek2"))?;
    drop(server);
    let sound = succeeded(seccs_kms(&["check"]).arg(&srv_dir).output()?)?;
    let text = String::from_utf8(sound.stdout)?;
    assert_eq!(text, "2 DEK file(s), 1 named key file(s): 0 bad\n");

    // A root key cut short is damage found (exit 1), named as such: the
    // named keys cannot be checked without it, the DEK files still are.
    let root = srv_dir.join("root.key");
    let root_bytes = std::fs::read(&root)?;
    std::fs::write(&root, &root_bytes[..6])?;
    let out = seccs_kms(&["check", "--json"]).arg(&srv_dir).output()?;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["dek_files"], 2, "{report}");
    assert_eq!(report["bad"], 1, "{report}");
    assert_eq!(
        report["findings"][0]["path"].as_str(),
        root.to_str(),
        "{report}"
    );
    std::fs::write(&root, &root_bytes)?;
    succeeded(seccs_kms(&["check"]).arg(&srv_dir).output()?)?;

    let flip_last = |path: &Path| -> std::io::Result<()> {
        let mut bytes = std::fs::read(path)?;
        if let Some(last) = bytes.last_mut() {
            *last ^= 1;
        }
        std::fs::write(path, bytes)
    };
    let named = srv_dir.join("named/k.key");
    flip_last(&named)?;
    let mut deks: Vec<_> = std::fs::read_dir(srv_dir.join("keys"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    deks.sort();
    let cut = deks.first().ok_or("no DEK file")?;
    let bytes = std::fs::read(cut)?;
    std::fs::write(cut, &bytes[..bytes.len() / 2])?;
    let out = seccs_kms(&["check"]).arg(&srv_dir).output()?;
    assert!(!out.status.success(), "damaged key files passed");
    let text = String::from_utf8(out.stdout.clone())?;
    assert!(
        text.contains(&format!("{}: ", named.display()))
            && text.contains(&format!("{}: ", cut.display()))
            && text.ends_with("2 DEK file(s), 1 named key file(s): 2 bad\n"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("2 key file(s) in") && stderr(&out).contains("damaged"),
        "{}",
        stderr(&out)
    );

    // The same as one JSON document: the counts and each finding with
    // its path, kind and reason; still a failure.
    let out = seccs_kms(&["check", "--json"]).arg(&srv_dir).output()?;
    assert_eq!(out.status.code(), Some(1), "damaged key files are a report");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["dek_files"], 2, "{report}");
    assert_eq!(report["named_key_files"], 1, "{report}");
    assert_eq!(report["bad"], 2, "{report}");
    let findings = report["findings"].as_array().ok_or("no findings")?;
    assert_eq!(findings.len(), 2, "{report}");
    let finding = |kind: &str| {
        findings
            .iter()
            .find(|f| f["kind"] == kind)
            .ok_or(format!("no {kind} finding in {report}"))
    };
    let dek = finding("dek")?;
    assert_eq!(dek["path"].as_str(), cut.to_str(), "{report}");
    assert!(
        dek["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{report}"
    );
    let bad_named = finding("named")?;
    assert_eq!(bad_named["path"].as_str(), named.to_str(), "{report}");
    assert!(
        bad_named["reason"]
            .as_str()
            .is_some_and(|r| r.contains("authentication failed")),
        "{report}"
    );
    assert!(
        stderr(&out).contains("2 key file(s) in"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&named)?;
    std::fs::remove_file(cut)?;
    let sound = succeeded(seccs_kms(&["check", "--json"]).arg(&srv_dir).output()?)?;
    let report: serde_json::Value = serde_json::from_slice(&sound.stdout)?;
    assert_eq!(
        report,
        serde_json::json!({"dek_files": 1, "named_key_files": 0, "bad": 0, "newer": 0, "findings": []})
    );

    // A link in place of keys/ is an error, not followed: a check that
    // cannot run (exit 2), whose JSON is the error alone.
    let keys = srv_dir.join("keys");
    let moved = tmp.path().join("keys-elsewhere");
    std::fs::rename(&keys, &moved)?;
    std::os::unix::fs::symlink(&moved, &keys)?;
    let out = seccs_kms(&["check", "--json"]).arg(&srv_dir).output()?;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a link in place of keys/ passed"
    );
    let said: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(said.get("findings").is_none(), "{said}");
    assert!(
        said["error"]
            .as_str()
            .is_some_and(|e| e.contains("is a symbolic link, not a directory")),
        "{said}"
    );
    assert!(
        stderr(&out).contains(&format!(
            "{} is a symbolic link, not a directory",
            keys.display()
        )),
        "{}",
        stderr(&out)
    );
    Ok(())
}

/// `kms check DIR` tells a key file of a newer format (its version byte,
/// after the 8-byte magic, above this build's) from a damaged one: it is
/// named as newer, counted apart, and the advice is a newer seccs, not a
/// backup; with damaged files too, each gets its own advice.
#[test]
fn check_tells_key_files_of_a_newer_format_from_damaged_ones() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, _kek) = serve_with_kek(tmp.path())?;
    succeeded(managed(&server, &srv_dir, "create").arg("k").output()?)?;
    new_kek(&server, &srv_dir, &tmp.path().join("kek2"))?;
    drop(server);
    let named = srv_dir.join("named/k.key");
    let mut deks: Vec<_> = std::fs::read_dir(srv_dir.join("keys"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    deks.sort();
    let [first, second] = deks.as_slice() else {
        return Err(format!("two DEK files expected: {deks:?}").into());
    };
    for path in [&named, first] {
        let mut bytes = std::fs::read(path)?;
        bytes[8] = 2;
        std::fs::write(path, bytes)?;
    }
    let out = seccs_kms(&["check"]).arg(&srv_dir).output()?;
    assert!(!out.status.success(), "key files of a newer format passed");
    let text = String::from_utf8(out.stdout.clone())?;
    for path in [&named, first] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{}: ", path.display()))
                    && l.contains("version 2, newer than this build reads (version 1)")),
            "{text}"
        );
    }
    assert!(
        text.ends_with("2 DEK file(s), 1 named key file(s): 0 bad, 2 of a newer format\n"),
        "{text}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("2 key file(s) in")
            && err.contains("name a format newer than this build reads")
            && err.contains("use a newer seccs"),
        "{err}"
    );
    assert!(
        !err.contains("damaged") && !err.contains("restore"),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_slice(
        &seccs_kms(&["check", "--json"])
            .arg(&srv_dir)
            .output()?
            .stdout,
    )?;
    assert_eq!(
        (report["bad"].clone(), report["newer"].clone()),
        (0.into(), 2.into()),
        "{report}"
    );

    // One damaged besides: each said with its own advice.
    let bytes = std::fs::read(second)?;
    std::fs::write(second, &bytes[..bytes.len() / 2])?;
    let out = seccs_kms(&["check"]).arg(&srv_dir).output()?;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("1 key file(s) in")
            && err.contains("are damaged: restore them from a backup; 2 more key file(s) in")
            && err.contains("name a format newer than this build reads"),
        "{err}"
    );
    Ok(())
}

/// A server whose audit log cannot be written does not start: the error
/// names the log and the cause. The log is a regular file the server may
/// open, on a file system that refuses to make it longer: a shell sets the
/// largest file the server may write (`ulimit -f`, the RLIMIT_FSIZE of
/// what it runs) below the log's length, and ignores SIGXFSZ, which the
/// server then inherits, so that a write past it fails with EFBIG ("File
/// too large") as on a full disk, instead of killing the process. Every
/// other file the server makes at start is far below the limit.
#[test]
fn a_server_whose_audit_log_cannot_be_written_does_not_start() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("srv");
    std::fs::create_dir(&dir)?;
    let log = dir.join("audit.log");
    // 1 MiB: at or past the limit, whether the shell counts `ulimit -f`
    // in blocks of 512 bytes (POSIX) or 1,024 (bash).
    let full = vec![b'\n'; 1 << 20];
    std::fs::write(&log, &full)?;
    let mut child = serve_command(&dir, &FILE_SIZE_LIMITED)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let status = wait_at_most(&mut child, Duration::from_secs(60))?;
    let mut said = String::new();
    if let Some(mut err) = child.stderr.take() {
        std::io::Read::read_to_string(&mut err, &mut said)?;
    }
    assert!(
        !status.success(),
        "a server without a writable audit log started: {said}"
    );
    assert!(
        said.contains(&format!("cannot write {}", log.display())),
        "{said}"
    );
    assert!(said.contains("File too large"), "{said}");
    // Nothing was added to it, not even part of a record.
    assert_eq!(std::fs::read(&log)?, full);
    // With room, the same directory serves.
    std::fs::write(&log, b"")?;
    let server = serve(&dir)?;
    drop(server);
    Ok(())
}

/// The operations of `DIR/audit.log` once `done` holds of them, polled
/// (at most 10 s).
fn audit_ops_once(
    dir: &Path,
    done: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ops = audit_ops(dir).unwrap_or_default();
        if done(&ops) {
            return Ok(ops);
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("{}/audit.log never got there: {ops:?}", dir.display()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// logrotate's way without `copytruncate`: the audit log is moved away,
/// then SIGUSR1 has the server open a new one at its path. The moved file
/// holds the first request's record and ends with `reopened`; the new one
/// begins with `reopen` and holds the second request's record; the server
/// answered throughout and stops as before, its `stop` in the new file.
#[test]
fn sigusr1_reopens_an_audit_log_moved_away_at_its_path() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let mut server = serve_with(&srv_dir, "127.0.0.1:0", &["--audit-sync-interval", "0.25"])?;
    succeeded(kms(&server, &srv_dir, "new").output()?)?;
    let moved_dir = tmp.path().join("rotated");
    std::fs::create_dir(&moved_dir)?;
    std::fs::rename(srv_dir.join("audit.log"), moved_dir.join("audit.log"))?;
    send("USR1", &server.child)?;
    audit_ops_once(&srv_dir, |ops| ops.first().is_some_and(|op| op == "reopen"))?;
    succeeded(kms(&server, &srv_dir, "new").output()?)?;
    let new = audit_ops_once(&srv_dir, |ops| ops.iter().any(|op| op == "new"))?;
    assert_eq!(new, ["reopen", "new"]);
    let old = audit_ops(&moved_dir)?;
    assert_eq!(old, ["start", "new", "reopened"]);
    send("TERM", &server.child)?;
    let status = wait_at_most(&mut server.child, Duration::from_secs(30))?;
    assert!(status.success(), "{status:?}");
    assert_eq!(audit_ops(&srv_dir)?, ["reopen", "new", "stop"]);
    Ok(())
}

/// `--audit-sync-interval` takes seconds above 0 and at most 60; 0 is a
/// usage error naming the flag and the range, before a directory is made.
#[test]
fn serve_refuses_an_audit_sync_interval_of_zero() -> TestResult {
    let err = serve_usage_error(&["--audit-sync-interval", "0"])?;
    assert!(
        err.contains("--audit-sync-interval \"0\"") && err.contains("above 0 and at most 60"),
        "{err}"
    );
    Ok(())
}

/// Starts `seccs kms serve` in `dir` as
/// [`a_server_whose_audit_log_cannot_be_written_does_not_start`] does,
/// through [`FILE_SIZE_LIMITED`], and watches what it says on standard
/// error.
fn serve_with_a_file_size_limit(
    dir: &Path,
) -> Result<(Server, common::StderrWatch), Box<dyn std::error::Error>> {
    serve_watched(serve_command(dir, &FILE_SIZE_LIMITED))
}

/// A wrapper that runs the rest with a file size limit of 512 KiB or
/// 1 MiB (however the shell counts `ulimit -f`), SIGXFSZ ignored, so that
/// a write past it fails with EFBIG as on a full disk.
const FILE_SIZE_LIMITED: [&str; 3] = [
    "sh",
    "-c",
    r#"trap '' XFSZ; ulimit -f 1024 && exec "$0" "$@""#,
];

/// Waits (at most 20 s) until the server has said a line, after its first
/// `from`, that holds every one of `words`.
fn said_after(
    said: &mut common::StderrWatch,
    from: usize,
    words: &[&str],
) -> Result<String, String> {
    said.wait_after(
        from,
        |l| words.iter().all(|w| l.contains(w)),
        Duration::from_secs(20),
    )
    .map_err(|e| format!("the server never said {words:?}: {e}"))
}

/// The audit log fills up while the server runs (a write past the file
/// size limit fails with EFBIG, as one on a full disk fails with ENOSPC):
/// a key is then refused 503, the client says why and prints no key, and
/// the server logs the failed write with its cause. A rotation onto a
/// path whose file cannot take a record either (the disk still full)
/// fails, is logged with its cause, adds not a byte to that file, and
/// keys stay refused. Once the path is free, SIGUSR1 opens a new log and
/// keys are given again, each recorded there.
#[test]
fn keys_are_refused_while_the_audit_log_cannot_be_written_and_given_again_after_a_reopen()
-> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("srv");
    let (server, mut said) = serve_with_a_file_size_limit(&dir)?;
    let kek = new_kek(&server, &dir, &tmp.path().join("kek"))?;
    let key = || kms(&server, &dir, "key").arg("--kek").arg(&kek).output();
    let dek = succeeded(key()?)?.stdout;
    assert_eq!(String::from_utf8(dek.clone())?.trim().len(), 64);
    // The log grows to the limit with a record of its own.
    let log = dir.join("audit.log");
    let size = std::fs::metadata(&log)?.len();
    let pad = usize::try_from((1u64 << 20).saturating_sub(size))?;
    let filler = format!("{{\"op\":\"filler\",\"pad\":\"{}\"}}\n", "x".repeat(pad));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)?
        .write_all(filler.as_bytes())?;
    let full = std::fs::read(&log)?;

    let from = said.said().len();
    let refused = key()?;
    assert!(
        !refused.status.success(),
        "a key was given without its record"
    );
    assert!(refused.stdout.is_empty(), "{:?}", refused.stdout);
    let err = stderr(&refused);
    assert!(err.contains("503: Audit log cannot be written"), "{err}");
    said_after(
        &mut said,
        from,
        &["audit log write failed", "File too large"],
    )?;
    assert_eq!(std::fs::read(&log)?, full, "part of a record was left");

    // Rotated onto a file that cannot take the new log's first record.
    let moved = dir.join("audit.log.1");
    std::fs::rename(&log, &moved)?;
    let blocked = std::fs::File::create(&log)?;
    blocked.set_len(1 << 20)?;
    drop(blocked);
    let from = said.said().len();
    send("USR1", &server.child)?;
    said_after(
        &mut said,
        from,
        &["audit log not reopened", "File too large"],
    )?;
    assert_eq!(std::fs::metadata(&log)?.len(), 1 << 20);
    let still = key()?;
    assert!(
        !still.status.success(),
        "a key was given without its record"
    );
    let err = stderr(&still);
    assert!(err.contains("503: Audit log cannot be written"), "{err}");

    // The path freed, the next SIGUSR1 opens a new log.
    std::fs::remove_file(&log)?;
    let from = said.said().len();
    send("USR1", &server.child)?;
    said_after(&mut said, from, &["audit log reopened"])?;
    assert_eq!(succeeded(key()?)?.stdout, dek);
    assert_eq!(
        audit_ops_once(&dir, |ops| ops.len() >= 2)?,
        ["reopen", "key"]
    );
    // Nothing was added to the full file, nor cut from it.
    assert_eq!(std::fs::read(&moved)?, full);
    Ok(())
}

/// A KEK the server holds no key for is said to be that, naming the
/// server and the KEK file, by `encrypt --kek` and by `init
/// --key-from-kms` as by `kms key`; not only "key not found".
#[test]
fn a_kek_the_server_does_not_hold_is_named_with_the_server() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, _kek) = serve_with_kek(tmp.path())?;
    let stranger = tmp.path().join("stranger.kek");
    std::fs::write(&stranger, [7u8; 32])?;
    std::fs::set_permissions(
        &stranger,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    let said = format!(
        "the key server {} holds no key for the KEK in {}",
        server.url,
        stranger.display()
    );
    let out = run_with_stdin(
        kms(&server, &srv_dir, "encrypt")
            .arg("--kek")
            .arg(&stranger),
        b"data",
    )?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&said), "{}", stderr(&out));
    let store = tmp.path().join("store");
    let out = Command::new(env!("CARGO_BIN_EXE_seccs"))
        .arg("--store")
        .arg(&store)
        .args(["init", "--key-from-kms", &server.url, "--kek"])
        .arg(&stranger)
        .arg("--kms-ca")
        .arg(srv_dir.join("tls/ca.pem"))
        .output()?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&said), "{}", stderr(&out));
    assert!(!store.exists(), "nothing of the store is made");
    Ok(())
}

/// `init --key-from-kms` trusts the server by SECCS_KMS_CA or
/// SECCS_KMS_PIN as the `seccs kms` commands do, and the store opens
/// with it afterwards.
#[test]
fn init_from_the_key_service_reads_the_ca_and_pin_variables() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let pin = server
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint (for --pin): "))
        .ok_or("no fingerprint announced")?
        .to_owned();
    let seccs = |name: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seccs"));
        c.arg("--store")
            .arg(tmp.path().join(name))
            .env_remove("SECCS_KMS_CA")
            .env_remove("SECCS_KMS_PIN");
        c
    };
    let init = |name: &str| {
        let mut c = seccs(name);
        c.args(["init", "--key-from-kms", &server.url, "--kek"])
            .arg(&kek);
        c
    };
    succeeded(
        init("by-ca")
            .env("SECCS_KMS_CA", srv_dir.join("tls/ca.pem"))
            .output()?,
    )?;
    succeeded(init("by-pin").env("SECCS_KMS_PIN", &pin).output()?)?;
    for name in ["by-ca", "by-pin"] {
        succeeded(seccs(name).arg("ls").output()?)?;
    }
    // Both set: refused, as by the kms commands.
    let out = init("both")
        .env("SECCS_KMS_CA", srv_dir.join("tls/ca.pem"))
        .env("SECCS_KMS_PIN", &pin)
        .output()?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("SECCS_KMS_CA and SECCS_KMS_PIN are both set"),
        "{}",
        stderr(&out)
    );
    let help = succeeded(seccs("x").args(["init", "--help"]).output()?)?;
    let help = String::from_utf8(help.stdout)?;
    assert!(
        help.contains("SECCS_KMS_CA") && help.contains("SECCS_KMS_PIN"),
        "{help}"
    );
    Ok(())
}

/// `kms check` on a directory that holds no key directory (no keys/,
/// named/ or root.key: a wrong path) is refused, not counted as clean.
#[test]
fn check_refuses_a_directory_that_is_not_a_key_directory() -> TestResult {
    let tmp = tempfile::tempdir()?;
    for json in [false, true] {
        let mut c = seccs_kms(&["check"]);
        c.arg(tmp.path());
        if json {
            c.arg("--json");
        }
        let out = c.output()?;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("holds no key directory"),
            "{}",
            stderr(&out)
        );
        // With --json, standard output says why as one JSON object.
        match json {
            false => assert!(out.stdout.is_empty()),
            true => {
                let said: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                assert_eq!(said["exit"], 2, "{said}");
                assert!(
                    said["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("holds no key directory")),
                    "{said}"
                );
            }
        }
    }
    Ok(())
}

/// `kms decrypt --kek` of something that is not a whole stream names the
/// input it read; an unreadable token file is said to be the token file.
#[test]
fn a_bad_stream_names_its_input_and_a_missing_token_file_is_named() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, kek) = serve_with_kek(tmp.path())?;
    let junk = tmp.path().join("junk.bin");
    std::fs::write(&junk, b"not a stream at all, just some bytes")?;
    let out = kms(&server, &srv_dir, "decrypt")
        .arg("--kek")
        .arg(&kek)
        .arg("--in")
        .arg(&junk)
        .output()?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&junk.display().to_string()),
        "{}",
        stderr(&out)
    );
    let out = run_with_stdin(
        kms(&server, &srv_dir, "decrypt").arg("--kek").arg(&kek),
        b"not a stream",
    )?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("standard input"), "{}", stderr(&out));
    let missing = tmp.path().join("no-token");
    let out = kms(&server, &srv_dir, "list")
        .env("SECCS_KMS_TOKEN_FILE", &missing)
        .env_remove("SECCS_KMS_TOKEN")
        .output()?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "cannot read the token file (SECCS_KMS_TOKEN_FILE) {}",
            missing.display()
        )),
        "{}",
        stderr(&out)
    );
    Ok(())
}

/// The names in `dir` that begin with `prefix`.
fn names_with(dir: &Path, prefix: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// A first start killed while it writes its certificate leaves no `tls/`,
/// where it left part of one that every later start refused until it was
/// removed by hand; the next start removes what the killed one left and
/// makes a whole certificate. The kill is the file size limit (SIGXFSZ)
/// at the third file: the CA and the key are under 1 KiB, the chain over.
#[test]
fn a_first_start_killed_while_it_writes_its_certificate_leaves_no_tls_directory() -> TestResult {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let mut limited = Command::new("prlimit");
    limited
        .arg("--fsize=1024")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_seccs"))
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&srv_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut killed = common::Killed(limited.spawn()?);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = killed.0.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            return Err("the server under a file size limit kept running".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Killed by the limit (SIGXFSZ), not stopped by an error of its own.
    assert!(status.signal().is_some(), "{status:?}");
    assert!(!srv_dir.join("tls").exists(), "a partial tls/ was left");
    // It was killed midway: the CA and the key were written.
    let left = names_with(&srv_dir, "tls.new-")?;
    let [left] = left.as_slice() else {
        return Err(format!("{left:?} left").into());
    };
    assert!(srv_dir.join(left).join("ca.pem").is_file());
    assert!(srv_dir.join(left).join("server.key").is_file());
    drop(killed);

    let server = serve(&srv_dir)?;
    succeeded(kms(&server, &srv_dir, "status").output()?)?;
    let made = names_with(&srv_dir.join("tls"), "")?;
    assert_eq!(made, ["ca.pem", "server.key", "server.pem"]);
    assert_eq!(names_with(&srv_dir, "tls.new-")?, Vec::<String>::new());
    Ok(())
}

/// What `/proc/PID` says of a running seccs: its "Max core file size"
/// limits (soft, hard), the owner of its `/proc/PID/status` and its real
/// user id.
fn dump_state(pid: u32) -> Result<(String, u32, u32), Box<dyn std::error::Error>> {
    use std::os::unix::fs::MetadataExt;
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let core = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max core file size"))
        .ok_or("no core line in /proc/PID/limits")?;
    let core = core
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let status_path = format!("/proc/{pid}/status");
    let owner = std::fs::metadata(&status_path)?.uid();
    let status = std::fs::read_to_string(&status_path)?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .ok_or("no Uid line")?
        .parse()?;
    Ok((core, owner, uid))
}

/// A key server (as every seccs process) turns core dumps off for good
/// (soft and hard limit 0) and is not dumpable, so that neither a crash
/// nor another process of its user (`gcore`, `/proc/PID/mem`) gets its
/// keys; `SECCS_ALLOW_CORE_DUMPS=1` leaves both as they were. Before, the
/// hard limit was unlimited and another process of the user read the
/// KEKs out of the server's memory.
///
/// The kernel shows a non-dumpable process's `/proc/PID` files as root's:
/// that is seen only on a process that is not root's, so as root the
/// server runs as `nobody` (from a copy of the binary that `nobody` can
/// run, in a directory `nobody` owns).
#[test]
fn a_server_allows_no_core_dump_and_no_attaching() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let tmp = tempfile::tempdir()?;
    let root = rustix::process::geteuid().is_root();
    let mut bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_seccs"));
    if root {
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
        let copy = tmp.path().join("seccs");
        std::fs::copy(&bin, &copy)?;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
        bin = copy;
    }
    for allowed in [false, true] {
        let dir = tmp.path().join(format!("srv-{allowed}"));
        std::fs::create_dir(&dir)?;
        let mut serve = Command::new(&bin);
        serve
            .args(["kms", "serve", "--listen", "127.0.0.1:0", "--dir"])
            .arg(&dir);
        if root {
            std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY))?;
            serve.uid(NOBODY).gid(NOBODY).env("HOME", &dir);
        }
        if allowed {
            serve.env("SECCS_ALLOW_CORE_DUMPS", "1");
        } else {
            serve.env_remove("SECCS_ALLOW_CORE_DUMPS");
        }
        let server = serve_by(serve)?;
        let (core, owner, uid) = dump_state(server.child.id())?;
        assert_ne!(uid, 0, "the server runs as root");
        if allowed {
            assert_eq!(owner, uid, "dumpable although allowed");
        } else {
            assert_eq!(core, "0 0", "core dumps are not off for good");
            assert_eq!(
                owner, 0,
                "the server is dumpable (its /proc files are its user's)"
            );
        }
    }
    Ok(())
}

/// `kms serve --key FILE` warns when FILE, the TLS private key, can be
/// read by others, as a KEK file others can read is warned about: it was
/// taken without a word. A key of mode 0600 gets no warning.
#[test]
fn a_tls_key_others_can_read_is_warned_about() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir()?;
    // A certificate and its key, as the server makes its own.
    let made = tmp.path().join("made");
    drop(serve(&made)?);
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::copy(made.join("tls/server.pem"), &cert)?;
    std::fs::copy(made.join("tls/server.key"), &key)?;
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode))?;
        let dir = tmp.path().join(format!("srv-{mode:o}"));
        let server = serve_with(
            &dir,
            "127.0.0.1:0",
            &[
                "--cert",
                &cert.to_string_lossy(),
                "--key",
                &key.to_string_lossy(),
            ],
        )?;
        let said = server.banner.join("\n");
        let warning = format!(
            "the TLS private key file {} can be read by others",
            key.display()
        );
        assert_eq!(said.contains(&warning), warned, "mode {mode:o}: {said}");
        if warned {
            assert!(
                said.contains("mode 644") && said.contains("chmod 600"),
                "{said}"
            );
        }
    }
    Ok(())
}

/// An exported but empty SECCS_KMS_URL counts as unset, as the other
/// SECCS_KMS_* variables do: the default address is used (it stopped
/// every client command with "bad URL"); a set one is read.
#[test]
fn an_empty_kms_url_variable_is_unset() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve(&srv_dir)?;
    let ca = srv_dir.join("tls/ca.pem");
    succeeded(
        seccs_kms(&["status", "--ca"])
            .arg(&ca)
            .env("SECCS_KMS_URL", &server.url)
            .output()?,
    )?;
    let out = seccs_kms(&["status", "--ca"])
        .arg(&ca)
        .env("SECCS_KMS_URL", "")
        .output()?;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("127.0.0.1:8080") && !err.contains("bad URL") && !err.contains("not a URL"),
        "{err}"
    );
    let help = String::from_utf8(succeeded(seccs_kms(&["status", "--help"]).output()?)?.stdout)?;
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("SECCS_KMS_URL") && help.contains("https://127.0.0.1:8080"),
        "{help}"
    );
    Ok(())
}

/// A server URL that is not one is named with where it came from (the
/// option or the variable), and `init --key-from-kms` checks it before it
/// reads the KEK file; plain http, which `init` never takes, is refused
/// with what `init` accepts rather than a `kms` flag.
#[test]
fn a_server_url_that_is_not_one_is_named_with_its_option() -> TestResult {
    let pin = "ab".repeat(32);
    for (url, why) in [
        ("notaurl", "relative URL without a base"),
        ("https://[::1", "invalid IPv6 address"),
    ] {
        let out = seccs_kms(&["status", "--server", url, "--pin", &pin]).output()?;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let said = format!("--server {url}: not a URL ({why}); give https://HOST:PORT");
        assert!(stderr(&out).contains(&said), "{}", stderr(&out));
        let out = seccs_kms(&["status", "--pin", &pin])
            .env("SECCS_KMS_URL", url)
            .output()?;
        let said = format!("SECCS_KMS_URL {url}: not a URL ({why})");
        assert!(stderr(&out).contains(&said), "{}", stderr(&out));
    }
    let out = seccs_kms(&[
        "status",
        "--server",
        "https://me:s3cret@[::1",
        "--pin",
        &pin,
    ])
    .output()?;
    assert!(
        stderr(&out).contains("not a URL") && !stderr(&out).contains("s3cret"),
        "{}",
        stderr(&out)
    );

    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir()?;
    let kek = tmp.path().join("kek");
    std::fs::write(&kek, [7u8; 32])?;
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644))?;
    let store = tmp.path().join("store");
    let init = |url: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seccs"));
        c.arg("--store")
            .arg(&store)
            .args(["init", "--key-from-kms", url, "--kms-pin", &pin, "--kek"])
            .arg(&kek);
        c
    };
    let out = init("notaurl").output()?;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--key-from-kms notaurl: not a URL (relative URL without a base)"),
        "{err}"
    );
    assert!(
        !err.contains("warning") && !err.contains("configuration"),
        "{err}"
    );
    // With the KEK file missing too, the URL is still said first.
    let out = Command::new(env!("CARGO_BIN_EXE_seccs"))
        .arg("--store")
        .arg(&store)
        .args([
            "init",
            "--key-from-kms",
            "notaurl",
            "--kms-pin",
            &pin,
            "--kek",
        ])
        .arg(tmp.path().join("nokek"))
        .output()?;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--key-from-kms notaurl: not a URL"), "{err}");
    assert!(!err.contains("KEK"), "{err}");
    let out = init("http://127.0.0.1:1").output()?;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(!err.contains("--insecure-loopback-http"), "{err}");
    assert!(
        err.contains("https://HOST:PORT") && err.contains("--kms-ca"),
        "{err}"
    );
    assert!(!store.exists());
    Ok(())
}

/// A file that cannot be read, or a key directory that is not one, is
/// named with the option or variable that gave it and what it was for;
/// a directory given as the TLS key is said to be one before any warning
/// about its mode.
#[test]
fn unreadable_files_are_named_with_their_option() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir()?;
    let serve_given = |cert: &Path, key: &Path| {
        seccs_kms(&["serve", "--listen", "127.0.0.1:0", "--dir"])
            .arg(tmp.path().join("srv"))
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .output()
    };
    let out = serve_given(Path::new("/nonexistent"), Path::new("/nonexistent"))?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read the TLS certificate file (--cert) /nonexistent"),
        "{}",
        stderr(&out)
    );
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree)?;
    std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o755))?;
    let out = serve_given(&tree, &tree)?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("can be read by others") && stderr(&out).contains("directory"),
        "{}",
        stderr(&out)
    );

    let pin = "ab".repeat(32);
    let out = seccs_kms(&[
        "status",
        "--server",
        "https://127.0.0.1:1",
        "--ca",
        "/nonexistent",
    ])
    .env_remove("SECCS_KMS_CA")
    .output()?;
    assert!(
        stderr(&out).contains("cannot read the CA file (--ca) /nonexistent"),
        "{}",
        stderr(&out)
    );
    let out = seccs_kms(&["status", "--server", "https://127.0.0.1:1"])
        .env("SECCS_KMS_CA", "/nonexistent")
        .env_remove("SECCS_KMS_PIN")
        .output()?;
    assert!(
        stderr(&out).contains("cannot read the CA file (SECCS_KMS_CA) /nonexistent"),
        "{}",
        stderr(&out)
    );
    let list = || {
        let mut c = seccs_kms(&["list", "--server", "https://127.0.0.1:1", "--pin", &pin]);
        c.env_remove("SECCS_KMS_TOKEN")
            .env_remove("SECCS_KMS_TOKEN_FILE");
        c
    };
    let out = list()
        .env("SECCS_KMS_TOKEN_FILE", "/nonexistent")
        .output()?;
    assert!(
        stderr(&out).contains("cannot read the token file (SECCS_KMS_TOKEN_FILE) /nonexistent"),
        "{}",
        stderr(&out)
    );
    let out = list().args(["--token-file", "/nonexistent"]).output()?;
    assert!(
        stderr(&out).contains("cannot read the token file (--token-file) /nonexistent"),
        "{}",
        stderr(&out)
    );

    let file = tmp.path().join("f1");
    std::fs::write(&file, "")?;
    let missing = tmp.path().join("kd");
    for (dir, said) in [(&missing, "does not exist"), (&file, "is not a directory")] {
        let out = seccs_kms(&["check"]).arg(dir).output()?;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let said = format!("{} {said}", dir.display());
        assert!(stderr(&out).contains(&said), "{}", stderr(&out));
    }
    Ok(())
}

/// A key name the server would refuse is refused before it is asked,
/// echoed with the characters allowed; `min-version` above the latest
/// version says that version does not exist; `rewrap` of what is not a
/// ciphertext names its input.
#[test]
fn named_key_errors_say_the_name_version_and_file() -> TestResult {
    let pin = "ab".repeat(32);
    for (command, name) in [
        ("create", "bad name"),
        ("create", ""),
        ("info", "bad name"),
        ("rotate", ".hidden"),
        ("datakey", "k 2"),
    ] {
        // No server listens there: an error about reaching it would mean
        // the server was asked.
        let out = seccs_kms(&[command, "--server", "https://127.0.0.1:1", "--pin", &pin])
            .args(["--token", "0123456789abcdef", name])
            .output()?;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let said = format!("invalid key name {name:?}");
        assert!(
            stderr(&out).contains(&said) && stderr(&out).contains("A-Z a-z 0-9 - _ ."),
            "{}",
            stderr(&out)
        );
    }
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, _kek) = serve_with_kek(tmp.path())?;
    succeeded(managed(&server, &srv_dir, "create").arg("k1").output()?)?;
    let out = managed(&server, &srv_dir, "min-version")
        .args(["k1", "99"])
        .output()?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("k1 has no version 99 (its latest is 1)"),
        "{}",
        stderr(&out)
    );
    let f1 = tmp.path().join("f1");
    std::fs::write(&f1, "not a ciphertext")?;
    let out = managed(&server, &srv_dir, "rewrap")
        .args(["k1", "--in"])
        .arg(&f1)
        .output()?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot rewrap {}", f1.display())),
        "{}",
        stderr(&out)
    );
    Ok(())
}

/// `kms status --json` prints one JSON document and nothing else; without
/// it the status is text. `kms list --json` prints the names as a JSON
/// array.
#[test]
fn status_and_list_print_json_on_request() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (server, srv_dir, _kek) = serve_with_kek(tmp.path())?;
    let out = succeeded(kms(&server, &srv_dir, "status").arg("--json").output()?)?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(status.is_object(), "{status}");
    let out = succeeded(kms(&server, &srv_dir, "status").output()?)?;
    let text = String::from_utf8(out.stdout)?;
    assert!(!text.contains('{'), "{text}");
    succeeded(managed(&server, &srv_dir, "create").arg("k1").output()?)?;
    let out = succeeded(managed(&server, &srv_dir, "list").arg("--json").output()?)?;
    let names: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(names, serde_json::json!(["k1"]));
    let out = succeeded(managed(&server, &srv_dir, "list").output()?)?;
    assert_eq!(String::from_utf8(out.stdout)?, "k1\n");
    Ok(())
}

/// `kms serve --help` names RUST_LOG, and the client commands' value
/// placeholders say what they take, as the store commands' do.
#[test]
fn kms_help_names_rust_log_and_its_placeholders() -> TestResult {
    let help = |args: &[&str]| -> Result<String, Box<dyn std::error::Error>> {
        let out = seccs_kms(args).output()?;
        Ok(String::from_utf8(succeeded(out)?.stdout)?)
    };
    let serve = help(&["serve", "--help"])?;
    for item in [
        "RUST_LOG",
        "--cert <FILE>",
        "--key <FILE>",
        "--max-body <BYTES>",
        "--listen <ADDR>",
        "--dir <DIR>",
    ] {
        assert!(serve.contains(item), "{item}: {serve}");
    }
    let key = help(&["key", "--help"])?;
    for item in [
        "--server <URL>",
        "--ca <FILE>",
        "--pin <SHA256>",
        "--kek <FILE>",
    ] {
        assert!(key.contains(item), "{item}: {key}");
    }
    let list = help(&["list", "--help"])?;
    for item in ["--token <TOKEN>", "--token-file <FILE>"] {
        assert!(list.contains(item), "{item}: {list}");
    }
    for (sub, item) in [
        ("min-version", "<VERSION>"),
        ("new", "--out <FILE>"),
        ("create", "<NAME>"),
    ] {
        let text = help(&[sub, "--help"])?;
        assert!(text.contains(item), "{sub} {item}: {text}");
    }
    Ok(())
}
