//! Running the `seccs` binary from the CLI tests.

#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `cmd` to the end.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run seccs")
}

/// `seccs --store STORE`, with no store named by the environment.
pub fn seccs(store: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seccs"));
    c.arg("--store").arg(store).env_remove("SECCS_STORE");
    c
}

/// Runs `cmd`, which must fail with one error line; returns it.
pub fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} should fail");
    let err = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one error line, got: {err}"
    );
    assert!(err.starts_with("seccs: "), "{err}");
    err
}

/// Runs `cmd`, which must succeed; returns what it said on stderr.
pub fn ok_err(cmd: &mut Command) -> String {
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed: {err}");
    err
}

/// `len` bytes that do not compress, the same for the same `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    data
}

/// Writes [`random_bytes`] to `dir/name` (making its parent directories);
/// returns its path.
pub fn random_file(dir: &std::path::Path, name: &str, len: usize, seed: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, random_bytes(len, seed)).expect("write input");
    path
}

/// Runs `cmd`, which must succeed; returns its standard output.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A child process, killed on drop.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child's standard error, read line by line on a thread of its own
/// (to its end, so that the child never blocks on a full pipe), so that a
/// test can wait until the child has said something, rather than sleep
/// and hope it has, and still have all it said.
pub struct StderrWatch {
    lines: std::sync::mpsc::Receiver<String>,
    said: Vec<String>,
}

impl StderrWatch {
    /// Takes `child`'s standard error, which must be piped.
    pub fn of(child: &mut std::process::Child) -> Self {
        use std::io::BufRead;
        let stderr = child.stderr.take().expect("a piped standard error");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Read on once the watch is gone: the child may say more.
                let _ = send.send(line);
            }
        });
        Self {
            lines,
            said: Vec::new(),
        }
    }

    /// The lines said so far.
    pub fn said(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.said.push(line);
        }
        &self.said
    }

    /// Waits until a line after the first `from` is one that `wanted`
    /// takes, for `within` at most; returns it, or says what was said.
    pub fn wait_after(
        &mut self,
        from: usize,
        wanted: impl Fn(&str) -> bool,
        within: std::time::Duration,
    ) -> Result<String, String> {
        let deadline = std::time::Instant::now() + within;
        let mut seen = from;
        loop {
            if let Some(line) = self.said.iter().skip(seen).find(|l| wanted(l)) {
                return Ok(line.clone());
            }
            seen = seen.max(self.said.len());
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.said.push(line),
                Err(_) => {
                    return Err(format!(
                        "not said within {within:?} (or the child ended); said: {:#?}",
                        self.said
                    ));
                }
            }
        }
    }

    /// Waits until a line contains `needle`, for `within` at most.
    pub fn wait_for(&mut self, needle: &str, within: std::time::Duration) {
        if let Err(e) = self.wait_after(0, |l| l.contains(needle), within) {
            panic!("{needle:?} {e}");
        }
    }

    /// Everything said, once the child has closed its standard error
    /// (ended).
    pub fn whole(mut self) -> String {
        while let Ok(line) = self.lines.recv() {
            self.said.push(line);
        }
        self.said.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `redis-server` of its own on a free loopback port, keeping nothing on
/// disk, with `args` added; returns once it answers (within 10 s). A
/// server that ends at start (its port taken between [`free_port`] and
/// its start) is started again on another port, three times at most.
pub fn redis_server(dir: &std::path::Path, args: &[&str]) -> (Killed, u16) {
    for _ in 0..3 {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(args)
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        let mut proc = Killed(child);
        if answers_ping(&mut proc, port) {
            return (proc, port);
        }
    }
    panic!("three redis-servers in a row ended at start: their ports were taken");
}

/// Whether the server `proc` started on `port` answers PING; false when
/// it ends first. Panics when it does neither within 10 s.
fn answers_ping(proc: &mut Killed, port: u16) -> bool {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if proc.0.try_wait().expect("wait for redis-server").is_some() {
            return false;
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 64];
            // PING answers +PONG, or -NOAUTH when a password is required:
            // either way the server is up.
            if s.write_all(b"PING\r\n").is_ok()
                && let Ok(n) = s.read(&mut buf)
                && (buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server on port {port} never answered PING");
}

/// Sends one command to the Redis server on `port`; the start of its reply.
pub fn redis_command(port: u16, args: &[&[u8]]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    s.write_all(&request).expect("send");
    let mut reply = vec![0u8; 256];
    let n = s.read(&mut reply).expect("reply");
    reply.truncate(n);
    reply
}
