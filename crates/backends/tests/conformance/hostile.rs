//! Backends facing a server that answers wrongly, on purpose or by a bug:
//! every answer is untrusted, so each of these must end in an error in a
//! few seconds, never a panic, a hang or memory that grows without bound.
//! The servers are small fakes on loopback that answer every request the
//! same way.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use seccs_store::backend::{Backend, BackendError};

use crate::support::TestResult;

/// How long a fake serves, and how many connections and requests it takes:
/// bounds on a test that fails, far beyond what a passing one needs.
const SERVE_FOR: Duration = Duration::from_secs(60);
const MAX_CONNECTIONS: usize = 64;
const MAX_REQUESTS: usize = 1_000_000;

/// Starts a fake server on loopback: `answer` reads one request from the
/// connection and writes its reply, or returns `None` when the peer is gone.
fn fake_server(
    answer: impl Fn(&mut BufReader<TcpStream>, &mut TcpStream) -> Option<()> + Send + Sync + 'static,
) -> TestResult<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let answer = std::sync::Arc::new(answer);
    let started = Instant::now();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(MAX_CONNECTIONS) {
            let Ok(conn) = conn else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(SERVE_FOR));
                let Ok(read_half) = conn.try_clone() else {
                    return;
                };
                let (mut reader, mut writer) = (BufReader::new(read_half), conn);
                for _ in 0..MAX_REQUESTS {
                    if started.elapsed() > SERVE_FOR || answer(&mut reader, &mut writer).is_none() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// Runs `f` on a thread and waits at most `limit` for what it returns.
fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> TestResult<(T, Duration)> {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    let value = rx
        .recv_timeout(limit)
        .map_err(|_| format!("still running after {limit:?}"))?;
    Ok((value, started.elapsed()))
}

/// One RESP command's arguments.
fn read_resp_command(r: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::new();
    for _ in 0..n.min(64) {
        let mut l = String::new();
        r.read_line(&mut l).ok()?;
        let len: usize = l.trim().strip_prefix('$')?.parse().ok()?;
        let mut b = vec![0u8; len.min(1 << 20) + 2];
        r.read_exact(&mut b).ok()?;
        b.truncate(len);
        args.push(String::from_utf8_lossy(&b).into_owned());
    }
    Some(args)
}

/// A Redis server whose `SCAN` always answers cursor 1 and no keys (an
/// empty database by `DBSIZE`): a walk ends with an error in seconds
/// instead of following the cursor for ever.
#[test]
fn redis_a_scan_whose_cursor_repeats_ends_the_walk_with_an_error() -> TestResult {
    use seccs_backends::{RedisBackend, RedisConfig};
    let port = fake_server(|reader, writer| {
        let args = read_resp_command(reader)?;
        let command = args.first()?.to_ascii_uppercase();
        let reply: &[u8] = match command.as_str() {
            "PING" => b"+PONG\r\n",
            "CONFIG" => b"*0\r\n",
            "DBSIZE" => b":0\r\n",
            "SCAN" => b"*2\r\n$1\r\n1\r\n*0\r\n",
            _ => b"+OK\r\n",
        };
        writer.write_all(reply).ok()
    })?;
    let backend =
        RedisBackend::connect(RedisConfig::parse(&format!("redis://127.0.0.1:{port}/0"))?)?;
    let (walked, took) = within(Duration::from_secs(30), move || {
        backend.walk(&[], &mut |_, _| Ok(()), None)
    })?;
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        matches!(&walked, Err(BackendError::Corrupt { detail, .. })
            if detail.contains("SCAN does not finish") && detail.contains("cursor 1")),
        "{walked:?}"
    );
    Ok(())
}
