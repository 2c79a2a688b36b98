//! `seccs kms` against a real key server on loopback (HTTPS, its own CA):
//! a streamed decryption writes nothing unless the whole stream
//! authenticates, to standard output or to a file.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A `seccs kms serve` child, killed on drop.
struct Server {
    child: Child,
    url: String,
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_seccs"))
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // The address is announced on standard error.
    let stderr = child.stderr.take().ok_or("server has no stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("seccs kms listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let mut server = Server {
        child,
        url: String::new(),
    };
    // On a timeout the server is dropped, which kills it.
    server.url = rx.recv_timeout(Duration::from_secs(60))?;
    Ok(server)
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

#[test]
fn a_cut_stream_decrypts_to_nothing_on_stdout_or_in_a_file() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let srv_dir = tmp.path().join("srv");
    let server = serve(&srv_dir)?;
    let kek = tmp.path().join("kek");
    succeeded(
        kms(&server, &srv_dir, "new")
            .arg("--out")
            .arg(&kek)
            .output()?,
    )?;

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
