//! The key service against what a hostile or broken peer, or a careless
//! operator, does: over real TLS on 127.0.0.1 (ephemeral ports).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod common;

use common::{TOKEN, TestResult, runtime, stop};
use seccs_core::SecretKey;
use seccs_kms::KmsError;
use seccs_kms::client::{ClientConfig, KmsClient};
use seccs_kms::server::{RunningServer, ServerConfig, start};

fn config(dir: &Path) -> ServerConfig {
    common::loopback_config(dir)
}

/// The most a hostile server's endless answer sends, so that the test
/// ends even against a client that reads it all.
const HOSTILE_MAX: u64 = 256 << 20;
/// The size of each piece of it.
const HOSTILE_CHUNK: usize = 64 << 10;

/// A TLS server on loopback that answers every request `200` with a body
/// far longer than any route of a key server returns: without a declared
/// length (chunked, up to [`HOSTILE_MAX`]) on every route but
/// `/v1/status`, which declares 100 KiB. Returns its address, its
/// certificate's fingerprint, and the count of bytes it sent.
async fn hostile_server() -> Result<(SocketAddr, String, Arc<AtomicU64>), Box<dyn std::error::Error>>
{
    use axum::body::Body;
    let sent = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&sent);
    let endless = move || {
        let counted = Arc::clone(&counted);
        let pieces = (0..HOSTILE_MAX / HOSTILE_CHUNK as u64).map(move |_| {
            counted.fetch_add(HOSTILE_CHUNK as u64, Ordering::SeqCst);
            Ok::<_, std::io::Error>(vec![b'a'; HOSTILE_CHUNK])
        });
        Body::from_stream(futures::stream::iter(pieces))
    };
    let app = axum::Router::new()
        .route(
            "/v1/status",
            axum::routing::get(|| async { vec![b'{'; 100 << 10] }),
        )
        .fallback(move || {
            let body = endless();
            async move { body }
        });
    let (addr, fingerprint) = serve_tls(app)?;
    Ok((addr, fingerprint, sent))
}

/// Serves `app` over TLS on an ephemeral loopback port, with a new
/// self-signed certificate; returns the address and the certificate's
/// fingerprint.
fn serve_tls(app: axum::Router) -> Result<(SocketAddr, String), Box<dyn std::error::Error>> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let der = made.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der())?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![der.clone().into()], key)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
    )?;
    tokio::spawn(server.serve(app.into_make_service()));
    Ok((addr, seccs_kms::server::tls::fingerprint(&der)))
}

/// A server that answers every batch with one result too few or too many
/// (and `POST /v1/new` with no KEK) makes each batch call fail: results
/// are matched to items by order, so a result left out or added would give
/// later items another's result.
#[test]
fn a_batch_answer_with_another_number_of_results_is_refused() -> TestResult {
    let rt = runtime()?;
    rt.block_on(async {
        use axum::routing::post;
        let none = || async { r#"{"results":[]}"# };
        let app = axum::Router::new()
            .route("/v1/key", post(none))
            .route("/v1/keys/k/datakey", post(none))
            .route("/v1/new", post(|| async { r#"{"keks":[]}"# }))
            .route(
                "/v1/keys/k/encrypt",
                post(|| async { r#"{"results":[{"value":"00"},{"value":"01"}]}"# }),
            );
        let (addr, fingerprint) = serve_tls(app)?;
        let cfg = ClientConfig::new(format!("https://{addr}"))
            .with_pin(&fingerprint)?
            .with_token(TOKEN);
        let client = KmsClient::new(&cfg)?;
        let miscounted = |e: Option<KmsError>| match e {
            Some(e @ KmsError::Malformed(_)) => {
                assert!(e.to_string().contains("another number of results"), "{e}");
                Ok(())
            }
            other => Err(format!("taken, or another error: {other:?}")),
        };
        let kek = SecretKey::from_bytes([7u8; 32]);
        miscounted(client.deks(std::slice::from_ref(&kek)).await.err())?;
        miscounted(client.new_keks(1).await.err())?;
        miscounted(client.datakeys("k", 1, b"").await.err())?;
        let items: [(&[u8], &[u8]); 1] = [(b"secret", b"")];
        miscounted(client.encrypt("k", &items).await.err())?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// A server whose answers never end, or declare a length beyond what the
/// route can return, makes each call fail naming the route and the bound,
/// having read little more than the bound.
#[test]
fn an_answer_longer_than_its_route_can_return_is_refused_unread() -> TestResult {
    let rt = runtime()?;
    rt.block_on(async {
        let (addr, fingerprint, sent) = hostile_server().await?;
        let cfg = ClientConfig::new(format!("https://{addr}"))
            .with_pin(&fingerprint)?
            .with_token(TOKEN);
        let client = KmsClient::new(&cfg)?;
        let kek = SecretKey::from_bytes([7u8; 32]);
        let refused = client.dek(&kek).await.err().ok_or("an endless DEK was read")?;
        assert!(
            matches!(
                refused,
                KmsError::AnswerTooLarge {
                    route: "POST /key",
                    limit: 65536
                }
            ),
            "{refused}"
        );
        assert_eq!(
            refused.to_string(),
            "the answer to POST /key is larger than 65536 bytes, more than that route can \
             return: not read further (a broken server, or not a seccs key server at that URL)"
        );
        let refused = client.new_kek().await.err().ok_or("an endless KEK was read")?;
        assert!(matches!(refused, KmsError::AnswerTooLarge { .. }), "{refused}");
        let refused = client.list_keys().await.err().ok_or("an endless list was read")?;
        assert!(
            matches!(refused, KmsError::AnswerTooLarge { route: "GET /v1/keys", limit } if limit == 32 << 20),
            "{refused}"
        );
        let refused = client
            .deks(std::slice::from_ref(&kek))
            .await
            .err()
            .ok_or("an endless batch was read")?;
        assert!(
            matches!(refused, KmsError::AnswerTooLarge { route: "POST /v1/key", limit } if limit < 128 << 10),
            "{refused}"
        );
        let items: [(&[u8], &[u8]); 1] = [(b"secret", b"")];
        let refused = client.encrypt("k", &items).await.err().ok_or("an endless batch was read")?;
        assert!(
            matches!(refused, KmsError::AnswerTooLarge { route: "POST /v1/keys/NAME/encrypt", .. }),
            "{refused}"
        );
        // Each endless answer was cut off near its bound (the list's is
        // the largest), not read to its end.
        let total = sent.load(Ordering::SeqCst);
        assert!(total < HOSTILE_MAX / 2, "{total} bytes were sent");
        // A declared length beyond the bound is refused before its body.
        let refused = client.status().await.err().ok_or("an oversized status was read")?;
        assert!(
            matches!(refused, KmsError::AnswerTooLarge { route: "GET /v1/status", limit: 65536 }),
            "{refused}"
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// A header block larger than the server reads, in one header of 1 MB
/// or in 200 small ones, is answered 431 (the client, still sending the
/// large one when the answer comes, reads it rather than a reset), and
/// the server goes on serving.
#[test]
fn a_header_block_too_large_is_answered_431() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = rt.block_on(start(config(dir.path())))?;
    let client = raw_client(&server)?;
    let url = server.url();
    rt.block_on(async {
        let big = client
            .get(&url)
            .header("x-large", "a".repeat(1 << 20))
            .send()
            .await?;
        assert_eq!(big.status().as_u16(), 431);
        let mut many = client.get(&url);
        for i in 0..200 {
            many = many.header(format!("x-h{i}"), "v");
        }
        assert_eq!(many.send().await?.status().as_u16(), 431);
        let fine = client.get(&url).send().await?;
        assert_eq!(fine.status().as_u16(), 200);
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    Ok(())
}

/// Makes a named pipe at `path`.
fn mkfifo(path: &Path) -> std::io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .map_err(std::io::Error::from)
}

/// The start of a server on `dir`, within 20 s (a start that waits for
/// a named pipe's reader would never end).
fn start_within(
    rt: &tokio::runtime::Runtime,
    config: ServerConfig,
) -> Result<Result<RunningServer, KmsError>, Box<dyn std::error::Error>> {
    Ok(rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), start(config)).await })?)
}

/// The start of a server on a thread of its own, within 20 s: a start
/// that blocks its thread opening the named pipe `fifo` (which a timeout
/// inside the runtime cannot end) is released by a writer opening it,
/// and is a failure.
fn start_on_thread_within(
    config: ServerConfig,
    fifo: &Path,
) -> Result<Result<RunningServer, KmsError>, Box<dyn std::error::Error>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let started = runtime().map(|rt| {
            let r = rt.block_on(start(config));
            if let Ok(server) = r {
                // Stopped here, on its runtime: the test fails anyway.
                let _ = stop(&rt, server);
                return Err(KmsError::Config("the server started".into()));
            }
            r
        });
        let _ = tx.send(started);
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(started) => {
            let _ = thread.join();
            Ok(started?)
        }
        Err(_) => {
            // A writer that opens and closes the pipe at once (without
            // waiting, should no reader be there) releases the start,
            // which then reads it empty; then the test fails.
            drop(rustix::fs::open(
                fifo,
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK,
                rustix::fs::Mode::empty(),
            ));
            let _ = thread.join();
            Err("the start waited on a named pipe".into())
        }
    }
}

/// An `audit.log` or `token` that is a named pipe or a symbolic link
/// stops the start at once, saying what it is; a link's target is left
/// as it was.
#[test]
fn an_audit_log_or_token_that_is_not_a_regular_file_stops_the_start() -> TestResult {
    let rt = runtime()?;
    let elsewhere = tempfile::tempdir()?;
    let target = elsewhere.path().join("target");
    std::fs::write(&target, "a-token-of-someone-else-0123456789\n")?;
    for (file, kind) in [
        ("audit.log", "pipe"),
        ("audit.log", "link"),
        ("token", "pipe"),
        ("token", "link"),
    ] {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(file);
        let what = if kind == "pipe" {
            mkfifo(&path)?;
            "a named pipe"
        } else {
            std::os::unix::fs::symlink(&target, &path)?;
            "a symbolic link"
        };
        let mut cfg = config(dir.path());
        // The token read from DIR/token, where it is tried.
        if file == "token" {
            cfg.token = None;
        }
        let refused = start_within(&rt, cfg)?.err().ok_or("the server started")?;
        assert!(
            matches!(&refused, KmsError::NotAFile { path: p, what: w } if *p == path && *w == what),
            "{file} as a {kind}: {refused}"
        );
        assert!(
            refused.to_string().contains("not a regular file"),
            "{refused}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&target)?,
        "a-token-of-someone-else-0123456789\n"
    );
    Ok(())
}

/// A `--dir` that is a symbolic link to a directory others may read has
/// its target made private, as a directory named directly has.
#[test]
fn a_key_directory_named_through_a_link_is_made_private() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let rt = runtime()?;
    let base = tempfile::tempdir()?;
    let real = base.path().join("real");
    std::fs::create_dir(&real)?;
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755))?;
    let link = base.path().join("link");
    std::os::unix::fs::symlink(&real, &link)?;
    let server = rt.block_on(start(config(&link)))?;
    stop(&rt, server)?;
    let mode = std::fs::metadata(&real)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
    assert!(std::fs::symlink_metadata(&link)?.file_type().is_symlink());
    Ok(())
}

/// Removing `DIR/lock` while a server runs does not let a second one
/// start on the directory; once the first stops, one starts.
#[test]
fn removing_the_lock_file_does_not_free_the_key_directory() -> TestResult {
    let rt = runtime()?;
    let dir = tempfile::tempdir()?;
    let first = rt.block_on(start(config(dir.path())))?;
    std::fs::remove_file(dir.path().join("lock"))?;
    match rt.block_on(start(config(dir.path()))) {
        Err(KmsError::DirInUse(message)) => assert!(
            message.contains("in use by another key server (another process)"),
            "{message}"
        ),
        Err(other) => panic!("expected the directory in use, got {other}"),
        Ok(_) => panic!("a second server started once the lock file was removed"),
    }
    stop(&rt, first)?;
    let again = rt.block_on(start(config(dir.path())))?;
    stop(&rt, again)?;
    Ok(())
}

/// A `--cert` and `--key` that do not belong together fail the start
/// before the key directory is made.
#[test]
fn a_certificate_and_another_key_fail_the_start_before_anything_is_made() -> TestResult {
    let rt = runtime()?;
    let base = tempfile::tempdir()?;
    let one = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let (cert, key) = (base.path().join("cert.pem"), base.path().join("key.pem"));
    std::fs::write(&cert, one.cert.pem())?;
    std::fs::write(&key, other.signing_key.serialize_pem())?;
    let dir = base.path().join("kms");
    let mut cfg = config(&dir);
    cfg.cert = Some(cert);
    cfg.key = Some(key);
    let refused = rt.block_on(start(cfg)).err().ok_or("the server started")?;
    assert!(
        refused.to_string().contains("do not belong together"),
        "{refused}"
    );
    assert!(!dir.exists(), "the failed start made {}", dir.display());
    Ok(())
}

/// A symbolic link in place of `keys/`, `named/` or `tls/` (to a real
/// directory), of `DIR/lock`, or of the certificate or key in `tls/`
/// stops the start, saying what it is, and the link's target is left as
/// it was: each was followed before (the lock's target was truncated and
/// written over with the holder's name).
#[test]
fn links_in_place_of_the_directories_lock_or_tls_files_stop_the_start() -> TestResult {
    let rt = runtime()?;
    let elsewhere = tempfile::tempdir()?;
    let target_dir = elsewhere.path().join("dir");
    std::fs::create_dir(&target_dir)?;
    let target_file = elsewhere.path().join("file");
    std::fs::write(&target_file, "precious\n")?;
    for sub in ["keys", "named", "tls"] {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(sub);
        std::os::unix::fs::symlink(&target_dir, &path)?;
        let refused = start_within(&rt, config(dir.path()))?
            .err()
            .ok_or("the server started")?;
        assert!(
            matches!(&refused, KmsError::NotADirectory { path: p, what: "a symbolic link" } if *p == path),
            "{sub}: {refused}"
        );
        assert!(refused.to_string().contains("not a directory"), "{refused}");
        // Refused before anything was made in it or beside it.
        assert_eq!(std::fs::read_dir(&target_dir)?.count(), 0, "{sub}");
        assert!(!dir.path().join("token").exists(), "{sub}");
    }
    // The lock file: the error names it and says what it is.
    let dir = tempfile::tempdir()?;
    let lock = dir.path().join("lock");
    std::os::unix::fs::symlink(&target_file, &lock)?;
    let refused = start_within(&rt, config(dir.path()))?
        .err()
        .ok_or("the server started")?;
    let cause = std::error::Error::source(&refused).ok_or("no cause")?;
    let said = format!("{refused}: {cause}");
    assert!(
        said.contains(&format!("cannot open {}", lock.display()))
            && said.contains("it is a symbolic link, not a regular file"),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&target_file)?, "precious\n");
    // The certificate and the key the server made in tls/.
    for file in ["server.pem", "server.key"] {
        let dir = tempfile::tempdir()?;
        stop(&rt, rt.block_on(start(config(dir.path())))?)?;
        let path = dir.path().join("tls").join(file);
        let moved = elsewhere.path().join(file);
        std::fs::rename(&path, &moved)?;
        std::os::unix::fs::symlink(&moved, &path)?;
        let refused = start_within(&rt, config(dir.path()))?
            .err()
            .ok_or("the server started")?;
        assert!(
            matches!(&refused, KmsError::NotAFile { path: p, what: "a symbolic link" } if *p == path),
            "{file}: {refused}"
        );
    }
    Ok(())
}

/// A `--cert` or `--key` is read from a regular file, a link to one (as
/// certbot keeps them) or a pipe (process substitution); a named pipe no
/// process writes to is refused at once (the start waited forever for a
/// writer), and a device is refused as one.
#[test]
fn a_given_certificate_or_key_is_read_from_a_file_or_a_pipe_and_never_waited_for() -> TestResult {
    let rt = runtime()?;
    let base = tempfile::tempdir()?;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let (cert, key) = (base.path().join("cert.pem"), base.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem())?;
    let key_pem = made.signing_key.serialize_pem();
    std::fs::write(&key, &key_pem)?;
    let fifo = base.path().join("fifo");
    mkfifo(&fifo)?;
    // A named pipe no process writes to is read as empty at once (it held
    // the start forever before), and refused as such.
    for (given_cert, given_key) in [(fifo.clone(), key.clone()), (cert.clone(), fifo.clone())] {
        let dir = base.path().join("kms");
        let mut cfg = config(&dir);
        cfg.cert = Some(given_cert);
        cfg.key = Some(given_key);
        let refused = start_on_thread_within(cfg, &fifo)?
            .err()
            .ok_or("the server started")?;
        assert!(
            matches!(&refused, KmsError::GivenPipeEmpty { path } if path == &fifo),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("no process writes to it"),
            "{refused}"
        );
        assert!(!dir.exists(), "the failed start made {}", dir.display());
    }
    // A device is refused as one, never read.
    let zero = Path::new("/dev/zero");
    if zero.exists() {
        let dir = base.path().join("kms");
        let mut cfg = config(&dir);
        cfg.cert = Some(zero.to_path_buf());
        cfg.key = Some(key.clone());
        let refused = start_on_thread_within(cfg, &fifo)?
            .err()
            .ok_or("the server started")?;
        assert!(
            matches!(&refused, KmsError::GivenNotAFile { path, what } if path == zero && *what == "a device"),
            "{refused}"
        );
        assert!(!dir.exists(), "the failed start made {}", dir.display());
    }
    // A pipe, as `--key <(pass show …)` gives one (`/dev/fd/N`), is read
    // whole: here its writer has written the key and gone.
    let (reader, mut writer) = std::io::pipe()?;
    std::io::Write::write_all(&mut writer, key_pem.as_bytes())?;
    drop(writer);
    let mut cfg = config(&base.path().join("kms"));
    cfg.cert = Some(cert.clone());
    cfg.key = Some(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&reader)).into());
    let server = start_within(&rt, cfg)??;
    stop(&rt, server)?;
    drop(reader);
    // A link to a regular file, as certbot keeps them, is followed.
    let (cert_link, key_link) = (base.path().join("live.pem"), base.path().join("live.key"));
    std::os::unix::fs::symlink(&cert, &cert_link)?;
    std::os::unix::fs::symlink(&key, &key_link)?;
    let mut cfg = config(&base.path().join("kms2"));
    cfg.cert = Some(cert_link);
    cfg.key = Some(key_link);
    let server = start_within(&rt, cfg)??;
    stop(&rt, server)?;
    Ok(())
}

/// A raw client trusting the server's CA file, for byte-level checks.
fn raw_client(server: &RunningServer) -> Result<reqwest::Client, Box<dyn std::error::Error>> {
    common::raw_client_from(server, None, Duration::from_secs(20))
}

/// A TLS connection to `server` on loopback, trusting its CA file.
fn tls_stream(
    server: &RunningServer,
) -> Result<
    rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    Box<dyn std::error::Error>,
> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let ca = server.cert().ca_path.clone().ok_or("no CA file")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(tls), ServerName::try_from("127.0.0.1")?)?;
    let tcp = std::net::TcpStream::connect(server.addr())?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(20)))?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Waits, up to a minute, until `server` has no connection open; whether
/// it came to that.
fn connections_end(server: &RunningServer) -> bool {
    for _ in 0..600 {
        if server.connections() == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A client that sends requests whose answers are far larger than the
/// socket buffers, and never reads them, has its connection closed once
/// the server's writes make no progress for the write timeout (before,
/// the connection was held for as long as the client kept it).
#[test]
fn a_client_that_never_reads_its_answers_is_disconnected() -> TestResult {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let mut cfg = config(dir.path());
    cfg.write_timeout = Duration::from_secs(1);
    let server = rt.block_on(start(cfg))?;
    let mut stream = tls_stream(&server)?;
    let request = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let mut requests = request("/v1/keys", r#"{"name":"k"}"#);
    // About 250 KB of answer each: 16 MB in all, far beyond what the
    // socket buffers on either side hold.
    for _ in 0..64 {
        requests.push_str(&request("/v1/keys/k/datakey", r#"{"count":1024}"#));
    }
    stream.write_all(requests.as_bytes())?;
    stream.flush()?;
    assert!(
        connections_end(&server),
        "a connection whose answers are never read is still open"
    );
    drop(stream);
    stop(&rt, server)?;
    Ok(())
}

/// Beyond the connection cap, a connection is closed before its TLS
/// handshake; once one ends, a new one is served.
#[test]
fn connections_beyond_the_cap_are_closed() -> TestResult {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let mut cfg = config(dir.path());
    cfg.max_connections = 1;
    let server = rt.block_on(start(cfg))?;
    let mut first = tls_stream(&server)?;
    first.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut answer = [0u8; 12];
    first.read_exact(&mut answer)?;
    assert_eq!(&answer, b"HTTP/1.1 200");
    let mut second = tls_stream(&server)?;
    let refused = second
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .and_then(|()| second.read(&mut answer));
    assert!(
        matches!(refused, Ok(0) | Err(_)),
        "a connection beyond the cap was served: {refused:?}"
    );
    drop((first, second));
    assert!(connections_end(&server));
    // Its place is given back as its task ends, about when the count
    // drops: tried a few times.
    let mut served = false;
    for _ in 0..50 {
        let third = tls_stream(&server).and_then(|mut third| {
            third.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
            third.read_exact(&mut answer)?;
            Ok(())
        });
        if third.is_ok() {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served, "no connection was served once the others ended");
    assert_eq!(&answer, b"HTTP/1.1 200");
    stop(&rt, server)?;
    Ok(())
}

/// Every refusal of a `/v1/` path is JSON, as documented: a body too
/// large, an unknown route, a method the route does not take, a request
/// past its deadline.
#[test]
fn refusals_of_v1_paths_are_json() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let mut cfg = config(dir.path());
    cfg.request_timeout = Duration::from_secs(2);
    let server = rt.block_on(start(cfg))?;
    let client = raw_client(&server)?;
    let url = server.url();
    let is_error = |status: u16, code: &str, r: (u16, Option<String>, String)| {
        let (got, content_type, body) = r;
        assert_eq!(got, status, "{body}");
        assert_eq!(content_type.as_deref(), Some("application/json"), "{body}");
        let parsed: seccs_kms::api::ErrorBody = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("not an error body ({e}): {body}"));
        assert_eq!(parsed.error, code, "{body}");
        assert!(!parsed.message.is_empty());
    };
    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok::<_, reqwest::Error>((status, content_type, r.text().await?))
    };
    rt.block_on(async {
        let big = vec![b' '; (1 << 20) + 1];
        let r = client
            .post(format!("{url}/v1/key"))
            .body(big)
            .send()
            .await?;
        is_error(413, "too-large", answer(r).await?);
        let r = client.get(format!("{url}/v1/nothing")).send().await?;
        is_error(404, "not-found", answer(r).await?);
        let r = client.get(format!("{url}/v1/new")).send().await?;
        is_error(405, "method-not-allowed", answer(r).await?);
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    // Without a declared length: cut off by the body limit.
    let mut chunked = b"POST /v1/key HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
        Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..20 {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend_from_slice(&[b' '; 0x10000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    is_error(413, "too-large", raw_answer(&server, &chunked)?);
    // A body that never comes: the deadline answers.
    let never = b"POST /v1/new HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
        Content-Length: 20\r\n\r\n";
    is_error(503, "timeout", raw_answer(&server, never)?);
    stop(&rt, server)?;
    Ok(())
}

/// Sends `request` over a connection of its own to `server` and reads the
/// answer until the server closes it: its status, its content type and
/// its body.
fn raw_answer(
    server: &RunningServer,
    request: &[u8],
) -> Result<(u16, Option<String>, String), Box<dyn std::error::Error>> {
    use std::io::{Read, Write};
    let mut stream = tls_stream(server)?;
    stream.write_all(request)?;
    let mut text = Vec::new();
    match stream.read_to_end(&mut text) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.into()),
    }
    let text = String::from_utf8_lossy(&text);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no answer")?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .ok_or("no status line")?
        .parse()?;
    let content_type = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-type: ")
            .map(str::to_owned)
    });
    Ok((status, content_type, body.to_owned()))
}
