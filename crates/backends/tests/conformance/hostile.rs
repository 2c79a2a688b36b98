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

/// Reads one HTTP request (its head and body); `None` when the peer is gone.
fn read_http_request(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let mut len = 0usize;
    for _ in 0..256 {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        if header == "\r\n" {
            let mut body = vec![0u8; len.min(1 << 24)];
            reader.read_exact(&mut body).ok()?;
            return Some(request_line);
        }
        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    None
}

/// A fake S3 service answering every request 200 with the same listing
/// page: `key` under `stores/one/`, "truncated, continue at `same`".
fn fake_s3_listing(key: &'static str) -> TestResult<u16> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <Name>bucket</Name><Prefix>stores/one/</Prefix><KeyCount>1</KeyCount>\
         <MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>\
         <NextContinuationToken>same</NextContinuationToken>\
         <Contents><Key>{key}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>\
         <ETag>\"e\"</ETag><Size>9</Size><StorageClass>STANDARD</StorageClass></Contents>\
         </ListBucketResult>"
    );
    fake_server(move |reader, writer| {
        read_http_request(reader)?;
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nETag: \"e1\"\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        writer.write_all(reply.as_bytes()).ok()
    })
}

fn s3_on_fake(port: u16) -> TestResult<seccs_backends::S3Config> {
    Ok(seccs_backends::S3Config::parse(&format!(
        "s3://bucket/stores/one?endpoint=http://127.0.0.1:{port}"
    ))?)
}

fn fake_credentials() -> Option<seccs_backends::S3Credentials> {
    Some(seccs_backends::S3Credentials {
        access_key_id: "AK".into(),
        secret_access_key: "SK".into(),
    })
}

/// A service whose listing always says "truncated, continue at `same`"
/// (OpenDAL would ask for the next page for ever): the walk, the usage and
/// the search for nested stores end with an error naming the repeated
/// token, in seconds.
#[test]
fn s3_a_listing_that_repeats_its_continuation_token_ends_with_an_error() -> TestResult {
    use seccs_backends::S3Backend;
    let port = fake_s3_listing("stores/one/00ff")?;
    let backend = S3Backend::connect(s3_on_fake(port)?, fake_credentials())?;
    let (results, took) = within(Duration::from_secs(30), move || {
        [
            backend.walk(&[], &mut |_, _| Ok(()), None),
            backend.usage().map(drop),
            backend.nested_stores().map(drop),
        ]
    })?;
    assert!(took < Duration::from_secs(10), "{took:?}");
    for result in results {
        assert!(
            matches!(&result, Err(BackendError::Corrupt { detail, .. })
                if detail.contains("continuation token \"same\" a second time")),
            "{result:?}"
        );
    }
    Ok(())
}

/// A listing naming an object outside the store's prefix (`x` for
/// `stores/one`) made the S3 client slice out of range: connecting now
/// fails with an error naming the object, without a panic.
#[test]
fn s3_a_listed_key_outside_the_prefix_is_an_error_not_a_panic() -> TestResult {
    use seccs_backends::S3Backend;
    let port = fake_s3_listing("x")?;
    let config = s3_on_fake(port)?;
    let connected =
        std::panic::catch_unwind(move || S3Backend::connect(config, fake_credentials()).map(drop));
    let connected = connected.map_err(|_| "connect panicked")?;
    assert!(
        matches!(&connected, Err(BackendError::Corrupt { detail, .. })
            if detail.contains("object \"x\", outside the store's prefix")),
        "{connected:?}"
    );
    Ok(())
}

/// A service that ignores `If-None-Match` (it answers 200 to every PUT)
/// would give the "exclusive" lease to every process: taking it is
/// refused with an error saying the service lacks conditional writes.
#[test]
fn s3_a_service_ignoring_conditional_writes_cannot_give_the_writer_lease() -> TestResult {
    use seccs_backends::S3Backend;
    let port = fake_s3_listing("stores/one/00ff")?;
    let config = s3_on_fake(port)?;
    let (taken, took) = within(Duration::from_secs(30), move || {
        S3Backend::connect_exclusive(config, fake_credentials()).map(drop)
    })?;
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        matches!(&taken, Err(BackendError::Config(m))
            if m.contains("does not support conditional writes")),
        "{taken:?}"
    );
    Ok(())
}

/// Reads one HTTP request and returns its head (request line and
/// headers, lowercased) and its body; `None` when the peer is gone.
fn read_http_head_and_body(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    let mut len = 0usize;
    for _ in 0..256 {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            let mut body = vec![0u8; len.min(1 << 24)];
            reader.read_exact(&mut body).ok()?;
            return Some((head, body));
        }
        let line = line.to_ascii_lowercase();
        if let Some(v) = line.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
    }
    None
}

/// A write that hangs (the service takes its request and never answers)
/// is abandoned once the writer lease can no longer be trusted, about 20 s
/// after its last renewal, rather than after the HTTP client's 300 s:
/// it cannot land long after another process took the lease over.
#[test]
fn s3_a_write_that_outlasts_the_lease_trust_is_abandoned() -> TestResult {
    use seccs_backends::S3Backend;
    use seccs_store::backend::Batch;
    let port = fake_server(|reader, writer| {
        static LEASE_CREATED: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
        // The lease as last written, for the taker's read of it.
        static LEASE: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
        let (head, body) = read_http_head_and_body(reader)?;
        let first = head.lines().next().unwrap_or_default().to_owned();
        let reply = if first.starts_with("get ") && first.contains("writer-lease") {
            let lease = String::from_utf8_lossy(&LEASE.lock().ok()?).into_owned();
            format!(
                "HTTP/1.1 200 OK\r\nETag: \"l1\"\r\nContent-Length: {}\r\n\r\n{lease}",
                lease.len()
            )
        } else if first.starts_with("get ") {
            let body = "<ListBucketResult><Name>bucket</Name><IsTruncated>false</IsTruncated>\
                        <KeyCount>0</KeyCount></ListBucketResult>";
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else if first.contains("writer-lease") {
            let create = head.contains("if-none-match");
            if create && LEASE_CREATED.swap(true, std::sync::atomic::Ordering::SeqCst) {
                "HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n".to_owned()
            } else {
                *LEASE.lock().ok()? = body;
                "HTTP/1.1 200 OK\r\nETag: \"l1\"\r\nContent-Length: 0\r\n\r\n".to_owned()
            }
        } else if first.starts_with("put ") {
            // Holds the request far longer than the lease can be trusted.
            std::thread::sleep(Duration::from_secs(50));
            "HTTP/1.1 200 OK\r\nETag: \"e1\"\r\nContent-Length: 0\r\n\r\n".to_owned()
        } else {
            "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
        };
        writer.write_all(reply.as_bytes()).ok()
    })?;
    let backend = S3Backend::connect_exclusive(s3_on_fake(port)?, fake_credentials())?;
    let mut batch = Batch::new();
    batch.put(vec![0xab], b"value".to_vec(), 1);
    let (applied, took) = within(Duration::from_secs(45), move || backend.apply(&batch))?;
    assert!(took < Duration::from_secs(25), "{took:?}");
    assert!(
        matches!(&applied, Err(BackendError::Locked { detail, .. })
            if detail.contains("did not finish while this process's writer lease")),
        "{applied:?}"
    );
    Ok(())
}
