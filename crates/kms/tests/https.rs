//! The key service over real HTTPS on 127.0.0.1 (ephemeral ports).

mod common;

use common::{TOKEN, TestResult, runtime, stop};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use seccs_core::SecretKey;
use seccs_kms::KmsError;
use seccs_kms::client::{ClientConfig, KmsClient, LocalFacility, ManualClock, fetch_store_key};
use seccs_kms::lifecycle::KeyState;
use seccs_kms::server::{RunningServer, ServerConfig, start};

fn config(dir: &Path) -> ServerConfig {
    let mut c = common::loopback_config(dir);
    c.max_body = 64 * 1024;
    c
}

fn boot(rt: &tokio::runtime::Runtime, dir: &Path) -> Result<RunningServer, KmsError> {
    rt.block_on(start(config(dir)))
}

fn client_config(server: &RunningServer) -> Result<ClientConfig, KmsError> {
    ClientConfig::new(server.url())
        .with_pin(&server.cert().fingerprint)
        .map(|c| c.with_token(TOKEN))
}

/// A raw reqwest client trusting the server's CA file, for byte-level checks.
fn raw_client(server: &RunningServer) -> Result<reqwest::Client, Box<dyn std::error::Error>> {
    raw_client_from(server, None)
}

/// A raw client whose connections come from the loopback address `local`
/// (the system's choice when `None`).
fn raw_client_from(
    server: &RunningServer,
    local: Option<std::net::IpAddr>,
) -> Result<reqwest::Client, Box<dyn std::error::Error>> {
    common::raw_client_from(server, local, Duration::from_secs(10))
}

/// The audit log of the server in `dir`: its text, and each line as the
/// JSON record it must be.
fn audit_records(
    dir: &Path,
) -> Result<(String, Vec<serde_json::Value>), Box<dyn std::error::Error>> {
    let log = std::fs::read_to_string(dir.join("audit.log"))?;
    let records = log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    Ok((log, records))
}

/// Runs `test` with a client of a fresh server (64 KiB bodies, as
/// [`boot`] makes it), then stops the server.
fn with_client<F, Fut>(test: F) -> TestResult
where
    F: FnOnce(KmsClient) -> Fut,
    Fut: std::future::Future<Output = TestResult>,
{
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let cfg = client_config(&server)?;
    rt.block_on(async { test(KmsClient::new(&cfg)?).await })?;
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn seed_routes_answer_byte_for_byte() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let http = raw_client(&server)?;
    let url = server.url();
    let kek = rt.block_on(async {
        let r = http.get(format!("{url}/")).send().await?;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.bytes().await?.as_ref(), b"KMS server holding 0 keys");

        let r = http.post(format!("{url}/new")).send().await?;
        assert_eq!(r.status(), 200);
        let kek = r.bytes().await?;
        assert_eq!(kek.len(), 32);

        let r = http
            .post(format!("{url}/key"))
            .header("content-type", "text/plain")
            .body(kek.to_vec())
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await?.len(), 32);

        let r = http
            .post(format!("{url}/key"))
            .body(vec![7u8; 32])
            .send()
            .await?;
        assert_eq!(r.status(), 404);
        assert_eq!(r.bytes().await?.as_ref(), b"Key not found");

        let r = http
            .post(format!("{url}/key"))
            .body(b"not a key".to_vec())
            .send()
            .await?;
        assert_eq!(r.status(), 400);
        assert_eq!(r.bytes().await?.as_ref(), b"Malformed key");

        for (method, path) in [("GET", "/key"), ("GET", "/new"), ("POST", "/")] {
            let method = reqwest::Method::from_bytes(method.as_bytes())?;
            let r = http.request(method, format!("{url}{path}")).send().await?;
            assert_eq!(r.status(), 405, "{path}");
            assert!(r.headers().contains_key("allow"), "{path}");
            assert!(r.bytes().await?.is_empty(), "{path}");
        }

        let r = http.get(format!("{url}/")).send().await?;
        assert_eq!(r.bytes().await?.as_ref(), b"KMS server holding 1 keys");
        Ok::<_, Box<dyn std::error::Error>>(kek)
    })?;
    stop(&rt, server)?;
    // A DEK file altered on disk: its KEK is answered 500, not a DEK.
    let mut deks = Vec::new();
    let mut dirs = vec![dir.path().to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "dek") {
                deks.push(path);
            }
        }
    }
    assert_eq!(deks.len(), 1, "{deks:?}");
    let mut bytes = std::fs::read(&deks[0])?;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&deks[0], &bytes)?;
    let server = boot(&rt, dir.path())?;
    let http = raw_client(&server)?;
    let url = server.url();
    rt.block_on(async {
        let r = http
            .post(format!("{url}/key"))
            .body(kek.to_vec())
            .send()
            .await?;
        assert_eq!(r.status(), 500);
        assert_eq!(r.bytes().await?.as_ref(), b"Key file failed authentication");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn seed_wget_and_curl_flows_work() -> TestResult {
    // Both clients are needed: scripts/install-deps installs them, and a
    // machine without one fails here rather than passing untested.
    for tool in ["wget", "curl"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is needed (scripts/install-deps installs it)");
    }
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let port = server.addr().port();
    let kek = work.path().join("kek.dat");
    let dek = work.path().join("dek.dat");
    {
        let st = Command::new("wget")
            .args(["-q", "--no-check-certificate", "--post-data="])
            .arg(format!("https://127.0.0.1:{port}/new"))
            .arg("-O")
            .arg(&kek)
            .status()?;
        assert!(st.success());
        assert_eq!(std::fs::read(&kek)?.len(), 32);
        let st = Command::new("wget")
            .args([
                "-q",
                "--no-check-certificate",
                "--header=Content-Type: text/plain",
            ])
            .arg(format!("--post-file={}", kek.display()))
            .arg(format!("https://127.0.0.1:{port}/key"))
            .arg("-O")
            .arg(&dek)
            .status()?;
        assert!(st.success());
        assert_eq!(std::fs::read(&dek)?.len(), 32);
    }
    {
        let out = Command::new("curl")
            .args(["-sk", "-X", "POST"])
            .arg(format!("https://127.0.0.1:{port}/new"))
            .output()?;
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), 32);
        std::fs::write(&kek, &out.stdout)?;
        let out = Command::new("curl")
            .args(["-sk", "-H", "Content-Type: text/plain", "--data-binary"])
            .arg(format!("@{}", kek.display()))
            .arg(format!("https://127.0.0.1:{port}/key"))
            .output()?;
        assert_eq!(out.stdout.len(), 32);
        let out = Command::new("curl")
            .args(["-sk", "--data-binary", "0123456789abcdef0123456789abcdef"])
            .arg(format!("https://127.0.0.1:{port}/key"))
            .output()?;
        assert_eq!(out.stdout, b"Key not found");
        let out = Command::new("curl")
            .args(["-sk"])
            .arg(format!("https://127.0.0.1:{port}/"))
            .output()?;
        assert!(out.stdout.starts_with(b"KMS server holding "));
    }
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn pinned_fingerprint_and_ca_file_are_trusted_a_wrong_pin_fails() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let pinned = LocalFacility::new(&client_config(&server)?)?;
    let kek = pinned.generate()?;
    let ca = server.cert().ca_path.clone().ok_or("no CA file")?;
    let by_ca = LocalFacility::new(&ClientConfig::new(server.url()).with_ca_file(ca))?;
    assert_eq!(by_ca.dek(&kek)?, pinned.dek(&kek)?);
    let wrong = LocalFacility::new(&ClientConfig::new(server.url()).with_pin(&"ab".repeat(32))?)?;
    match wrong.dek(&kek) {
        Err(KmsError::Transport(msg)) => {
            let presented = &server.cert().fingerprint;
            assert!(
                msg.contains("not the pinned one") && msg.contains(presented.as_str()),
                "{msg}"
            );
        }
        other => panic!("a wrong pin must fail the handshake: {other:?}"),
    }
    assert!(matches!(wrong.generate(), Err(KmsError::Transport(_))));
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn plain_http_is_refused_seed_https_over_http_flaw() -> TestResult {
    assert!(matches!(
        ClientConfig::new("http://kms.example.com:8080").validate(),
        Err(KmsError::Config(_))
    ));
    let mut loopback = ClientConfig::new("http://127.0.0.1:8080");
    assert!(matches!(loopback.validate(), Err(KmsError::Config(_))));
    loopback.allow_loopback_http = true;
    assert!(loopback.validate().is_ok());
    let mut remote = ClientConfig::new("http://10.1.2.3:8080");
    remote.allow_loopback_http = true;
    assert!(remote.validate().is_err());
    assert!(
        ClientConfig::new("https://127.0.0.1:1").validate().is_err(),
        "https needs a trust anchor"
    );
    // An https client never speaks plain HTTP: a plain-HTTP listener fails the handshake.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 32\r\n\r\n0123456789abcdef0123456789abcdef",
            );
        }
    });
    let c = LocalFacility::new(
        &ClientConfig::new(format!("https://127.0.0.1:{port}")).with_pin(&"00".repeat(32))?,
    )?;
    // Said in words, not as rustls' "corrupt message of type
    // InvalidContentType".
    match c.dek(&SecretKey::generate()?) {
        Err(KmsError::Transport(msg)) => assert!(
            msg.contains("the server does not speak TLS on that port (plain HTTP?)"),
            "{msg}"
        ),
        other => panic!("an https client read plain HTTP: {other:?}"),
    }
    // The other way round, a loopback http:// client of the real (TLS)
    // server is told what it is talking to.
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let mut plain = ClientConfig::new(format!("http://{}", server.addr()));
    plain.allow_loopback_http = true;
    match LocalFacility::new(&plain)?.generate() {
        Err(KmsError::Transport(msg)) => {
            assert!(msg.contains("does the server speak TLS?"), "{msg}");
        }
        other => panic!("plain HTTP to a TLS server must fail: {other:?}"),
    }
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn dek_cache_hits_then_expires_by_the_injected_clock() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let clock = Arc::new(ManualClock::new());
    let cfg = client_config(&server)?.with_cache_ttl(Duration::from_secs(600));
    let local = LocalFacility::with_clock(&cfg, clock.clone())?;
    let kek = local.generate()?;
    let ct = local.encrypt(&kek, b"hello", b"ctx")?;
    stop(&rt, server)?;
    // The server is gone: only the cache can answer.
    let plain: zeroize::Zeroizing<Vec<u8>> = local.decrypt(&kek, &ct, b"ctx")?;
    assert_eq!(&plain[..], b"hello");
    clock.advance(Duration::from_secs(599));
    assert!(local.dek(&kek).is_ok());
    clock.advance(Duration::from_secs(1));
    assert!(matches!(local.dek(&kek), Err(KmsError::Transport(_))));
    assert!(local.cache().is_empty());
    Ok(())
}

#[test]
fn errors_and_404s_are_never_cached_seed_404_as_dek_flaw() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let local = LocalFacility::new(&client_config(&server)?)?;
    let unknown = SecretKey::generate()?;
    for _ in 0..2 {
        assert!(matches!(local.dek(&unknown), Err(KmsError::NotFound)));
        assert!(local.cache().is_empty());
    }
    assert!(matches!(
        local.encrypt(&unknown, b"x", b""),
        Err(KmsError::NotFound)
    ));
    let kek = local.generate()?;
    local.dek(&kek)?;
    assert_eq!(local.cache().len(), 1);
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn keys_and_certificate_persist_across_server_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let fp = server.cert().fingerprint.clone();
    let cfg = client_config(&server)?.with_cache_ttl(Duration::ZERO);
    let local = LocalFacility::new(&cfg)?;
    let kek = local.generate()?;
    let dek = local.dek(&kek)?;
    stop(&rt, server)?;
    let server = boot(&rt, dir.path())?;
    assert_eq!(server.cert().fingerprint, fp);
    assert!(!server.cert().created);
    let local = LocalFacility::new(&client_config(&server)?)?;
    assert_eq!(local.dek(&kek)?, dek);
    let store_key = fetch_store_key(&client_config(&server)?, &kek)?;
    assert_eq!(store_key, dek);
    stop(&rt, server)?;
    Ok(())
}

/// A store key is cached for the caller's TTL, not an hour whatever it
/// asked: past it, the key is fetched again, which fails once the server
/// is gone.
#[test]
fn a_store_key_is_cached_no_longer_than_the_callers_ttl() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let ttl = Duration::from_secs(1);
    let mut cfg = client_config(&server)?.with_cache_ttl(ttl);
    cfg.timeout = Duration::from_secs(5);
    let kek = LocalFacility::new(&cfg)?.generate()?;
    let fetched = std::time::Instant::now();
    let dek = fetch_store_key(&cfg, &kek)?;
    stop(&rt, server)?;
    // Within the TTL, the cached key, as before (unless the stop took
    // longer on a loaded machine).
    if fetched.elapsed() < ttl / 2 {
        assert_eq!(fetch_store_key(&cfg, &kek)?, dek);
    }
    std::thread::sleep(ttl.saturating_sub(fetched.elapsed()) + Duration::from_millis(200));
    assert!(
        fetch_store_key(&cfg, &kek).is_err(),
        "a store key was served from the cache past its TTL"
    );
    Ok(())
}

/// One server per key directory: each keeps the directory's keys in
/// memory, so a second one would not see the first one's named keys and
/// could overwrite one, losing what it encrypted.
#[test]
fn a_second_server_on_the_same_directory_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    match boot(&rt, dir.path()) {
        Err(KmsError::DirInUse(message)) => assert!(
            message.contains("in use by another key server")
                && message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        ),
        Err(other) => panic!("expected the directory in use, got {other}"),
        Ok(_) => panic!("a second server started on the same directory"),
    }
    stop(&rt, server)?;
    let server = boot(&rt, dir.path())?;
    stop(&rt, server)?;
    Ok(())
}

/// The files under `dir`, recursively, as paths relative to it.
fn files_under(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let shown = path.strip_prefix(dir).unwrap_or(&path);
                found.push(shown.display().to_string());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The server keeps using the key directory it checked at start: one
/// renamed away and replaced, by another directory or by a link to one
/// (with `keys/` and `named/` of its own ready), gets none of the keys,
/// named keys or audit records made after; they go to the directory the
/// server checked, wherever it now is. Flaw fixed: the server opened its
/// files by path after checking the directory, so the replacement got the
/// new keys unchecked and the checked directory missed them.
#[test]
fn a_key_directory_replaced_after_start_is_never_written_into() -> TestResult {
    let base = tempfile::tempdir()?;
    let rt = runtime()?;
    for (round, by_link) in [false, true].into_iter().enumerate() {
        let dir = base.path().join(format!("keys-{round}"));
        let server = boot(&rt, &dir)?;
        let cfg = client_config(&server)?;
        let moved = base.path().join(format!("moved-{round}"));
        std::fs::rename(&dir, &moved)?;
        let other = base.path().join(format!("other-{round}"));
        for sub in ["keys", "named"] {
            std::fs::create_dir_all(other.join(sub))?;
        }
        if by_link {
            std::os::unix::fs::symlink(&other, &dir)?;
        } else {
            std::fs::rename(&other, &dir)?;
        }
        let replacement = if by_link { other } else { dir.clone() };
        let kek = rt.block_on(async {
            let client = KmsClient::new(&cfg)?;
            let kek = client.new_kek().await?;
            client.create_key("orders", KeyState::Active).await?;
            client.rotate("orders").await?;
            Ok::<_, KmsError>(kek)
        })?;
        std::fs::rename(moved.join("audit.log"), moved.join("audit.log.1"))?;
        rt.block_on(server.reopen_audit_log())?;
        stop(&rt, server)?;
        assert_eq!(
            files_under(&replacement)?,
            Vec::<String>::new(),
            "by link: {by_link}"
        );
        let kept = files_under(&moved)?;
        let dek_file = format!("keys/{}.dek", seccs_kms::keyfile::KeyId::of(&kek));
        for name in [
            dek_file.as_str(),
            "named/orders.key",
            "audit.log",
            "audit.log.1",
        ] {
            assert!(kept.iter().any(|f| f == name), "{name} not in {kept:?}");
        }
        // The moved directory is whole: a server started on it gives the
        // DEK of the KEK made after the move.
        let server = boot(&rt, &moved)?;
        let local = LocalFacility::new(&client_config(&server)?)?;
        assert_eq!(local.dek(&kek)?.expose_secret().len(), 32);
        stop(&rt, server)?;
    }
    Ok(())
}

/// A key directory whose secrets others could read (a copy, a restore
/// from a backup) is made private again when a server starts on it.
#[test]
fn a_server_takes_others_access_to_its_secrets_away() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let kms = dir.path().join("kms");
    let rt = runtime()?;
    stop(&rt, boot(&rt, &kms)?)?;
    let mode = |p: &Path| -> std::io::Result<u32> {
        Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
    };
    let chmod = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    chmod(&kms, 0o755)?;
    for sub in ["keys", "named", "tls"] {
        chmod(&kms.join(sub), 0o777)?;
    }
    for file in ["root.key", "tls/server.key", "audit.log"] {
        chmod(&kms.join(file), 0o666)?;
    }
    stop(&rt, boot(&rt, &kms)?)?;
    for sub in ["", "keys", "named", "tls"] {
        assert_eq!(mode(&kms.join(sub))?, 0o700, "{sub}/");
    }
    for file in ["root.key", "tls/server.key", "audit.log"] {
        assert_eq!(mode(&kms.join(file))?, 0o600, "{file}");
    }
    Ok(())
}

#[test]
fn sixty_four_concurrent_clients_lose_no_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let cfg = client_config(&server)?;
    let pairs = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let client = KmsClient::new(&cfg)?;
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..3 {
                    let kek = client.new_kek().await?;
                    let dek = client.dek(&kek).await?;
                    out.push((kek, dek));
                }
                Ok::<_, KmsError>(out)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.map_err(|e| e.to_string())??);
        }
        Ok::<_, Box<dyn std::error::Error>>(all)
    })?;
    assert_eq!(pairs.len(), 192);
    stop(&rt, server)?;
    let server = boot(&rt, dir.path())?;
    let client = rt.block_on(async { KmsClient::new(&client_config(&server)?) })?;
    rt.block_on(async {
        assert_eq!(client.status_text().await?, "KMS server holding 192 keys");
        let keks: Vec<SecretKey> = pairs.iter().map(|(k, _)| k.clone()).collect();
        let deks = client.deks(&keks).await?;
        for ((_, want), got) in pairs.iter().zip(deks) {
            assert_eq!(&got?, want);
        }
        Ok::<_, KmsError>(())
    })?;
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn malformed_and_oversized_bodies_get_400_and_413_and_the_server_keeps_serving() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let http = raw_client(&server)?;
    let url = server.url();
    rt.block_on(async {
        let r = http.post(format!("{url}/key")).body("short").send().await?;
        assert_eq!(r.status(), 400);
        let r = http
            .post(format!("{url}/v1/key"))
            .body("{not json")
            .send()
            .await?;
        assert_eq!(r.status(), 400);
        let r = http
            .post(format!("{url}/v1/new"))
            .body(r#"{"count": 0}"#)
            .send()
            .await?;
        assert_eq!(r.status(), 400);
        let r = http
            .post(format!("{url}/key"))
            .body(vec![0u8; 200 * 1024])
            .send()
            .await?;
        assert_eq!(r.status(), 413);
        // The server reads and drops the oversized body before its 413, so
        // the client reads the answer rather than a reset under its write.
        // The server keeps serving: a fresh client on a new connection.
        let http = raw_client(&server)?;
        let r = http
            .post(format!("{url}/v1/keys"))
            .body(r#"{"name":"x"}"#)
            .send()
            .await?;
        assert_eq!(r.status(), 401, "management needs the bearer token");
        let r = http.get(format!("{url}/")).send().await?;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await?.as_ref(), b"KMS server holding 0 keys");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    Ok(())
}

/// The create, info and lifecycle routes answer 200 (a create too, not
/// 201) with the key's info, in the fields and units the route docs give.
#[test]
fn named_key_answers_are_the_keys_info_with_200() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let http = raw_client(&server)?;
    let url = server.url();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    rt.block_on(async {
        let answers = [
            ("POST", "/v1/keys", r#"{"name":"k"}"#),
            ("GET", "/v1/keys/k", ""),
            ("POST", "/v1/keys/k/rotate", ""),
            ("POST", "/v1/keys/k/config", r#"{"min_decrypt_version":2}"#),
            ("POST", "/v1/keys/k/state", r#"{"state":"suspended"}"#),
        ];
        for (method, path, body) in answers {
            let method = reqwest::Method::from_bytes(method.as_bytes())?;
            let r = http
                .request(method, format!("{url}{path}"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            assert_eq!(r.status(), 200, "{path}");
            let info: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
            let mut fields: Vec<&str> = info
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            fields.sort_unstable();
            let expected = [
                "latest_version",
                "min_decrypt_version",
                "name",
                "state",
                "transitions",
                "versions",
            ];
            assert_eq!(fields, expected, "{path}: {info}");
            assert_eq!(info["name"], "k");
            for v in info["versions"].as_array().into_iter().flatten() {
                let created = v["created"].as_u64().unwrap_or_default();
                assert!(
                    created >= before && created < before + 600,
                    "{path}: {info}"
                );
                assert_eq!(v["destroyed"], false, "{path}: {info}");
            }
            for t in info["transitions"].as_array().into_iter().flatten() {
                let at = t["at"].as_u64().unwrap_or_default();
                assert!(at >= before && at < before + 600, "{path}: {info}");
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn named_key_lifecycle_rotation_and_rewrap_over_https() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let cfg = client_config(&server)?;
    rt.block_on(async {
        let c = KmsClient::new(&cfg)?;
        let info = c.create_key("orders", KeyState::PreActivation).await?;
        assert_eq!(info.state, KeyState::PreActivation);
        // Pre-activation keys protect nothing.
        let r = c.encrypt("orders", &[(b"x", b"")]).await;
        assert!(r.is_err());
        c.set_state("orders", KeyState::Active).await?;
        let v1 = c
            .encrypt("orders", &[(b"one", b"ctx"), (b"two", b"ctx")])
            .await?;
        let v1: Vec<Vec<u8>> = v1.into_iter().collect::<Result<_, _>>()?;
        let info = c.rotate("orders").await?;
        assert_eq!(info.latest_version, 2);
        let items: Vec<(&[u8], &[u8])> = v1.iter().map(|ct| (ct.as_slice(), &b"ctx"[..])).collect();
        let re: Vec<Vec<u8>> = c
            .rewrap("orders", &items)
            .await?
            .into_iter()
            .collect::<Result<_, _>>()?;
        c.set_min_decrypt_version("orders", 2).await?;
        let old = c.decrypt("orders", &items).await?;
        assert!(
            old.iter().all(|r| r.is_err()),
            "version 1 is below the minimum"
        );
        let items2: Vec<(&[u8], &[u8])> =
            re.iter().map(|ct| (ct.as_slice(), &b"ctx"[..])).collect();
        let back = c.decrypt("orders", &items2).await?;
        assert_eq!(back[0].as_deref().map_err(|e| e.to_string())?, b"one");
        let mut bad = re[0].clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let tampered = c.decrypt("orders", &[(bad.as_slice(), b"ctx")]).await?;
        assert!(matches!(tampered[0], Err(KmsError::Tampered)));
        let dks = c.datakeys("orders", 2, b"d").await?;
        assert_eq!(dks.len(), 2);
        c.set_state("orders", KeyState::Deactivated).await?;
        assert!(c.encrypt("orders", &[(b"x", b"")]).await.is_err());
        assert!(
            c.decrypt("orders", &items2).await?[0].is_ok(),
            "deactivated keys still decrypt"
        );
        assert!(c.set_state("orders", KeyState::Active).await.is_err());
        c.set_state("orders", KeyState::Destroyed).await?;
        assert!(c.decrypt("orders", &items2).await.is_err());
        let info = c.key_info("orders").await?;
        assert!(info.versions.iter().all(|v| v.destroyed));
        let states: Vec<KeyState> = info.transitions.iter().map(|t| t.state).collect();
        assert_eq!(
            states,
            [
                KeyState::PreActivation,
                KeyState::Active,
                KeyState::Deactivated,
                KeyState::Destroyed
            ]
        );
        let anon = KmsClient::new(&ClientConfig {
            token: None,
            ..cfg.clone()
        })?;
        assert!(matches!(
            anon.list_keys().await,
            Err(KmsError::Unauthorized)
        ));
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let audit = std::fs::read_to_string(dir.path().join("audit.log"))?;
    assert!(audit.lines().count() >= 10);
    assert!(audit.contains("\"op\":\"rotate\""));
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn local_file_encryption_keeps_exact_length_and_rejects_tampering_seed_padding_flaw() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let local = LocalFacility::new(&client_config(&server)?)?;
    let kek = local.generate()?;
    let plain = work.path().join("p");
    let sealed = work.path().join("s");
    let back = work.path().join("b");
    let data: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&plain, &data)?;
    local.encrypt_file(&kek, b"f", &plain, &sealed)?;
    local.decrypt_file(&kek, b"f", &sealed, &back)?;
    assert_eq!(std::fs::read(&back)?, data);
    let mut bytes = std::fs::read(&sealed)?;
    bytes[1000] ^= 1;
    std::fs::write(&sealed, &bytes)?;
    let out = work.path().join("never");
    assert!(matches!(
        local.decrypt_file(&kek, b"f", &sealed, &out),
        Err(KmsError::Tampered)
    ));
    assert!(!out.exists(), "a failed decryption leaves no output");
    let ct = local.encrypt(&kek, b"secret", b"")?;
    let mut bad = ct.clone();
    bad[20] ^= 1;
    assert!(matches!(
        local.decrypt(&kek, &bad, b""),
        Err(KmsError::Tampered)
    ));
    stop(&rt, server)?;
    Ok(())
}

/// A server with the default body limit (1 MiB), as `seccs kms serve` runs.
fn boot_default_limit(rt: &tokio::runtime::Runtime, dir: &Path) -> Result<RunningServer, KmsError> {
    let mut c = config(dir);
    c.max_body = ServerConfig::new(dir).max_body;
    rt.block_on(start(c))
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn file_outputs_never_replace_a_pipe_or_a_link_and_errors_name_the_path() -> TestResult {
    let dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let local = LocalFacility::new(&client_config(&server)?)?;
    let kek = local.generate()?;
    let plain = work.path().join("p");
    std::fs::write(&plain, plaintext(10_000))?;

    let fifo = work.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status()?;
    assert!(made.success(), "mkfifo failed: {made}");
    let err = local.encrypt_file(&kek, b"", &plain, &fifo).err();
    assert!(
        matches!(&err, Some(KmsError::NotRegularFile(p)) if p == &fifo),
        "{err:?}"
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo)?.file_type().is_fifo());

    let target = work.path().join("target");
    std::fs::write(&target, b"keep")?;
    let link = work.path().join("link");
    std::os::unix::fs::symlink(&target, &link)?;
    let err = local.encrypt_file(&kek, b"", &plain, &link).err();
    assert!(
        matches!(&err, Some(KmsError::NotRegularFile(p)) if p == &link),
        "{err:?}"
    );
    assert!(std::fs::symlink_metadata(&link)?.file_type().is_symlink());
    assert_eq!(std::fs::read(&target)?, b"keep");
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("not a regular file"), "{text}");

    // A missing input names its path, and the cause is the source only:
    // `{:#}` prints it once.
    let missing = work.path().join("missing");
    let err = local
        .encrypt_file(&kek, b"", &missing, &work.path().join("out"))
        .err()
        .ok_or("a missing input was encrypted")?;
    assert!(matches!(err, KmsError::File { .. }), "{err:?}");
    let mut chain = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    assert!(chain.contains(&missing.display().to_string()), "{chain}");
    assert_eq!(
        chain.matches("No such file or directory").count(),
        1,
        "{chain}"
    );
    assert_eq!(
        std::fs::read_dir(work.path())?.count(),
        4,
        "p, fifo, target and link only: no temporary file left"
    );
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn a_port_in_use_is_named_in_the_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let other = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let mut c = config(other.path());
    c.listen = server.addr();
    let err = rt
        .block_on(start(c))
        .err()
        .ok_or("a second server bound the port")?;
    assert!(matches!(err, KmsError::Listen { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot listen on {}", server.addr())
    );
    let source = std::error::Error::source(&err).ok_or("no cause")?;
    assert!(
        source.to_string().contains("Address already in use"),
        "{source}"
    );
    // Refused before anything was made for it; so is a certificate that
    // cannot be read, by its path.
    assert_eq!(std::fs::read_dir(other.path())?.count(), 0);
    let mut c = config(other.path());
    c.cert = Some(other.path().join("missing.pem"));
    c.key = Some(other.path().join("missing.key"));
    let err = rt
        .block_on(start(c))
        .err()
        .ok_or("a server started without its certificate")?;
    assert!(err.to_string().contains("missing.pem"), "{err}");
    assert_eq!(std::fs::read_dir(other.path())?.count(), 0);
    stop(&rt, server)?;
    Ok(())
}

/// Seed of finding 2: with the default 1 MiB body limit, plaintexts of
/// 524,233 to 524,270 bytes were encrypted, and their ciphertexts then
/// refused (413) for decrypt and rewrap.
#[test]
fn the_largest_named_plaintext_round_trips_and_one_byte_more_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot_default_limit(&rt, dir.path())?;
    let cfg = client_config(&server)?;
    let http = raw_client(&server)?;
    let url = server.url();
    rt.block_on(async {
        let c = KmsClient::new(&cfg)?;
        c.create_key("big", KeyState::Active).await?;
        let max = seccs_kms::api::MAX_ITEM_PLAINTEXT;
        assert_eq!(max, 256 * 1024);
        let data = plaintext(max);
        let ctx = vec![b'c'; 1000];
        let ct = c
            .encrypt("big", &[(&data, &ctx)])
            .await?
            .pop()
            .ok_or("no result")??;
        c.rotate("big").await?;
        let re = c
            .rewrap("big", &[(&ct, &ctx)])
            .await?
            .pop()
            .ok_or("no result")??;
        for sealed in [&ct, &re] {
            let back = c
                .decrypt("big", &[(sealed, &ctx)])
                .await?
                .pop()
                .ok_or("no result")??;
            assert!(back == data, "the round trip changed the data");
        }

        // One byte more: refused by the client before any request...
        let more = plaintext(max + 1);
        let err = c.encrypt("big", &[(&more, b"")]).await.err();
        assert!(
            matches!(err, Some(KmsError::PlaintextTooLarge { len, max: m }) if len == max + 1 && m == max),
            "{err:?}"
        );
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("at most 262144 bytes (256 KiB) per item"), "{text}");
        // ...and by the server, with a 413 that says why, for it and for
        // the sizes that used to encrypt and not decrypt.
        for len in [max + 1, 524_233, 524_270] {
            let body = serde_json::json!({
                "items": [{"data": hex::encode(plaintext(len)), "context": ""}]
            });
            let r = http
                .post(format!("{url}/v1/keys/big/encrypt"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body)?)
                .send()
                .await?;
            assert_eq!(r.status(), 413, "{len} bytes");
            let e: seccs_kms::api::ErrorBody = serde_json::from_slice(&r.bytes().await?)?;
            assert_eq!(e.error, "too-large");
            assert!(e.message.contains(&format!("input is {len} bytes")), "{}", e.message);
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    Ok(())
}

/// Under a smaller body limit, what the server encrypts it can decrypt: a
/// batch whose ciphertexts would not fit one decrypt request is refused.
#[test]
fn an_encryption_whose_ciphertext_would_not_fit_a_decrypt_request_is_refused() -> TestResult {
    // 64 KiB bodies: `{"items":[{"data":"HEX","context":""}]}` is 36 bytes
    // and the hex of a ciphertext 108 longer than its plaintext's, so 32,696
    // bytes is the largest plaintext whose decrypt request fits.
    with_client(|c| async move {
        c.create_key("k", KeyState::Active).await?;
        let fits = plaintext(32_696);
        let ct = c
            .encrypt("k", &[(&fits, b"")])
            .await?
            .pop()
            .ok_or("no result")??;
        let back = c
            .decrypt("k", &[(&ct, b"")])
            .await?
            .pop()
            .ok_or("no result")??;
        assert!(back == fits);
        c.rewrap("k", &[(&ct, b"")])
            .await?
            .pop()
            .ok_or("no result")??;
        let over = plaintext(32_697);
        let err = c.encrypt("k", &[(&over, b"")]).await.err();
        let text = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
        assert!(matches!(err, Some(KmsError::TooLarge(_))), "{err:?}");
        assert!(text.contains("decrypt request"), "{text}");
        Ok(())
    })
}

#[test]
fn per_item_errors_are_typed_with_clear_messages() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let cfg = client_config(&server)?;
    rt.block_on(async {
        let c = KmsClient::new(&cfg)?;
        c.create_key("k", KeyState::Active).await?;
        let ct = c
            .encrypt("k", &[(b"x", b"")])
            .await?
            .pop()
            .ok_or("no result")??;
        let not_ct = c.decrypt("k", &[(b"plain text, not sealed", b"")]).await?;
        let err = not_ct.into_iter().next().ok_or("no result")?.err();
        assert!(matches!(err, Some(KmsError::NotCiphertext)), "{err:?}");
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("not a seccs kms ciphertext"), "{text}");
        let err = c
            .rewrap("k", &[(b"sk", b"")])
            .await?
            .pop()
            .ok_or("no result")?
            .err();
        assert!(matches!(err, Some(KmsError::NotCiphertext)), "{err:?}");
        // A ciphertext whose version byte (after the 4-byte magic) is a
        // newer one is said to be that version, not "not a ciphertext".
        let mut newer = ct.clone();
        newer[4] = 3;
        for op in ["decrypt", "rewrap"] {
            let results = match op {
                "decrypt" => c.decrypt("k", &[(&newer, b"")]).await?,
                _ => c.rewrap("k", &[(&newer, b"")]).await?,
            };
            let err = results.into_iter().next().ok_or("no result")?.err();
            assert!(
                matches!(
                    err,
                    Some(KmsError::UnsupportedVersion {
                        what: "ciphertext",
                        version: 3,
                        reads: 2
                    })
                ),
                "{op}: {err:?}"
            );
            let text = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                text.contains("ciphertext version 3, newer than this build reads (version 2)"),
                "{op}: {text}"
            );
            assert!(!text.contains("not a seccs kms ciphertext"), "{op}: {text}");
        }

        c.rotate("k").await?;
        c.set_min_decrypt_version("k", 2).await?;
        let err = c
            .decrypt("k", &[(&ct, b"")])
            .await?
            .pop()
            .ok_or("no result")?
            .err();
        assert!(
            matches!(err, Some(KmsError::VersionBelowMinimum)),
            "{err:?}"
        );
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("below its minimum decryption version"),
            "{text}"
        );
        assert!(!text.contains("server answered"), "{text}");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn a_corrupt_named_key_file_is_reported_as_such_not_as_tampered_data() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let cfg = client_config(&server)?;
    let ct = rt.block_on(async {
        let c = KmsClient::new(&cfg)?;
        c.create_key("orders", KeyState::Active).await?;
        let ct = c
            .encrypt("orders", &[(b"x", b"")])
            .await?
            .pop()
            .ok_or("no result")??;
        Ok::<_, Box<dyn std::error::Error>>(ct)
    })?;
    stop(&rt, server)?;
    let path = dir.path().join("named/orders.key");
    let mut bytes = std::fs::read(&path)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes)?;
    let server = boot(&rt, dir.path())?;
    let cfg = client_config(&server)?;
    rt.block_on(async {
        let c = KmsClient::new(&cfg)?;
        let errors = [
            c.key_info("orders").await.err(),
            c.decrypt("orders", &[(&ct, b"")]).await.err(),
            c.set_state("orders", KeyState::Suspended).await.err(),
        ];
        for err in errors {
            assert!(
                matches!(&err, Some(KmsError::CorruptKeyFile { name }) if name == "orders"),
                "{err:?}"
            );
            let text = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains("key file for orders is corrupt"), "{text}");
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    Ok(())
}

#[test]
fn save_kek_never_replaces_anything() -> TestResult {
    let work = tempfile::tempdir()?;
    let kek = SecretKey::generate()?;
    let path = work.path().join("kek");
    seccs_kms::client::save_kek(&path, &kek)?;
    assert_eq!(seccs_kms::client::load_kek(&path)?, kek);
    let other = SecretKey::generate()?;
    let err = seccs_kms::client::save_kek(&path, &other).err();
    assert!(matches!(err, Some(KmsError::FileExists(_))), "{err:?}");
    assert_eq!(seccs_kms::client::load_kek(&path)?, kek);
    // A dangling link is a taken name too: nothing is created through it.
    let link = work.path().join("link");
    let nowhere = work.path().join("nowhere");
    std::os::unix::fs::symlink(&nowhere, &link)?;
    let err = seccs_kms::client::save_kek(&link, &other).err();
    assert!(matches!(err, Some(KmsError::FileExists(_))), "{err:?}");
    assert!(!nowhere.exists());
    assert!(std::fs::symlink_metadata(&link)?.file_type().is_symlink());
    // A missing directory is refused and named.
    let err = seccs_kms::client::check_kek_destination(&work.path().join("no/kek"))
        .err()
        .ok_or("a missing directory was accepted")?;
    assert!(
        err.to_string()
            .contains(&work.path().join("no").display().to_string()),
        "{err}"
    );
    let names: Vec<String> = std::fs::read_dir(work.path())?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    Ok(())
}

/// A data key under a smaller body limit: its wrapped form must fit one
/// decrypt request, or the server could never unwrap it.
#[test]
fn a_data_key_whose_wrapped_form_would_not_fit_a_decrypt_request_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    // 1024-byte bodies (the least a server takes):
    // `{"items":[{"data":"HEX","context":"CTX"}]}` is 36 bytes, the hex of
    // a wrapped key 2 × (32 + 54) and the context's hex twice its length,
    // so 408 bytes is the longest context that fits.
    let mut cfg = config(dir.path());
    cfg.max_body = 1024;
    let server = rt.block_on(start(cfg))?;
    let cfg = client_config(&server)?;
    rt.block_on(async {
        let c = KmsClient::new(&cfg)?;
        c.create_key("a", KeyState::Active).await?;
        let fits = vec![b'c'; 408];
        let (key, wrapped) = c.datakeys("a", 1, &fits).await?.pop().ok_or("no key")?;
        let back = c
            .decrypt("a", &[(&wrapped, &fits)])
            .await?
            .pop()
            .ok_or("no result")??;
        assert!(
            back == key.expose_secret(),
            "the wrapped key did not unwrap"
        );
        let over = vec![b'c'; 409];
        let err = c.datakeys("a", 1, &over).await.err();
        let text = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
        assert!(matches!(err, Some(KmsError::TooLarge(_))), "{err:?}");
        assert!(
            text.contains("decrypt request") && text.contains("shorter context"),
            "{text}"
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    Ok(())
}

/// A too-large refusal said "the server refused the request as too large"
/// twice: once from the server's message, once from the client's error.
#[test]
fn a_too_large_refusal_says_so_once() -> TestResult {
    with_client(|c| async move {
        c.create_key("k", KeyState::Active).await?;
        let err = c.encrypt("k", &[(&plaintext(32_697), b"")]).await.err();
        assert!(matches!(err, Some(KmsError::TooLarge(_))), "{err:?}");
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(text.matches("too large").count(), 1, "{text}");
        assert!(text.contains("decrypt request"), "{text}");
        Ok(())
    })
}

/// `kms new --out` checked only that the directory existed, so a directory
/// no one may write to was found out after the server had made the key;
/// and `kek/` silently made a file `kek`.
#[test]
fn a_kek_destination_that_cannot_be_written_or_names_a_directory_is_refused() -> TestResult {
    let work = tempfile::tempdir()?;
    let kek = SecretKey::generate()?;
    // Not even root can create a file in /proc.
    let unwritable = Path::new("/proc/seccs-kek");
    let err = seccs_kms::client::check_kek_destination(unwritable)
        .err()
        .ok_or("a KEK destination in /proc was accepted")?;
    assert!(matches!(err, KmsError::File { .. }), "{err:?}");
    assert!(err.to_string().contains("/proc"), "{err}");
    let err = seccs_kms::client::KekFile::create(unwritable).err();
    assert!(matches!(err, Some(KmsError::File { .. })), "{err:?}");

    for dir_path in ["kek/", "kek/."] {
        let path = work.path().join(dir_path);
        let err = seccs_kms::client::check_kek_destination(&path)
            .err()
            .ok_or("a directory path was accepted")?;
        assert!(err.to_string().contains("names a directory"), "{err}");
        let err = seccs_kms::client::save_kek(&path, &kek).err();
        assert!(matches!(err, Some(KmsError::Config(_))), "{err:?}");
    }

    // A prepared file is written once; dropped unwritten, it leaves nothing.
    let path = work.path().join("kek");
    let file = seccs_kms::client::KekFile::create(&path)?;
    assert!(!path.exists(), "the KEK file appeared before its KEK");
    file.write(&kek)?;
    assert_eq!(seccs_kms::client::load_kek(&path)?, kek);
    drop(seccs_kms::client::KekFile::create(
        &work.path().join("other"),
    )?);
    let names: Vec<String> = std::fs::read_dir(work.path())?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["kek"], "{names:?}");
    Ok(())
}

/// A server on `ip`, port any, in `dir`, with the test token.
fn boot_on(rt: &tokio::runtime::Runtime, dir: &Path, ip: &str) -> Result<RunningServer, KmsError> {
    let mut c = config(dir);
    c.listen = std::net::SocketAddr::new(ip.parse().map_err(|_| KmsError::Malformed("ip"))?, 0);
    rt.block_on(start(c))
}

/// M1: a directory that lost root.key while named/ holds keys is refused
/// (a new root key would cut them off, and seal new ones under another
/// root key); one that never had a named key gets a root key as before.
#[test]
fn a_missing_root_key_with_named_keys_stops_the_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let cfg = client_config(&server)?;
    rt.block_on(async {
        KmsClient::new(&cfg)?
            .create_key("orders", KeyState::Active)
            .await
    })?;
    stop(&rt, server)?;
    let root = dir.path().join("root.key");
    let saved = std::fs::read(&root)?;
    std::fs::remove_file(&root)?;
    let err = boot(&rt, dir.path()).err().ok_or("the server started")?;
    assert!(
        matches!(err, KmsError::MissingRootKey { count: 1, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("root.key is missing")
            && text.contains("named")
            && text.contains("restore root.key from a backup"),
        "{text}"
    );
    assert!(!root.exists(), "a new root key was made");
    // Restored: the named key opens again.
    std::fs::write(&root, saved)?;
    let server = boot(&rt, dir.path())?;
    let cfg = client_config(&server)?;
    let info = rt.block_on(async { KmsClient::new(&cfg)?.key_info("orders").await })?;
    assert_eq!(info.name, "orders");
    stop(&rt, server)?;
    Ok(())
}

/// M1: a tls/ directory that lost the server's key (or certificate) is
/// refused, rather than a new CA and certificate made that no client trusts.
#[test]
fn a_partly_missing_certificate_stops_the_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let fingerprint = server.cert().fingerprint.clone();
    stop(&rt, server)?;
    let tls = dir.path().join("tls");
    for lost in ["server.key", "server.pem"] {
        let path = tls.join(lost);
        let saved = std::fs::read(&path)?;
        std::fs::remove_file(&path)?;
        let err = boot(&rt, dir.path()).err().ok_or("the server started")?;
        let text = err.to_string();
        assert!(
            matches!(err, KmsError::IncompleteCertificate { .. })
                && text.contains(&format!("{} is missing", path.display()))
                && text.contains("restore the missing file from a backup")
                && text.contains(&format!("remove {}", tls.display())),
            "{text}"
        );
        assert!(!path.exists(), "{lost} was made anew");
        std::fs::write(&path, saved)?;
    }
    // Restored: the same certificate. Removed whole: a new one.
    let server = boot(&rt, dir.path())?;
    assert_eq!(server.cert().fingerprint, fingerprint);
    stop(&rt, server)?;
    std::fs::remove_dir_all(&tls)?;
    let server = boot(&rt, dir.path())?;
    assert!(server.cert().created);
    assert_ne!(server.cert().fingerprint, fingerprint);
    stop(&rt, server)?;
    Ok(())
}

/// M3: the certificate a server makes names the address it listens on, so
/// its CA file works there; a certificate made for another address is
/// reported at start.
#[test]
fn a_made_certificate_names_the_listen_address() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot_on(&rt, dir.path(), "127.0.0.2")?;
    assert_eq!(server.cert().unnamed_listen_ip, None);
    let ca = server.cert().ca_path.clone().ok_or("no CA file")?;
    let by_ca = ClientConfig::new(server.url()).with_ca_file(&ca);
    let status = rt.block_on(async { KmsClient::new(&by_ca)?.status_text().await })?;
    assert!(status.starts_with("KMS server holding"), "{status}");
    stop(&rt, server)?;
    // The same certificate at another address: said so, and --ca fails
    // there with words, not rustls' names.
    let server = boot_on(&rt, dir.path(), "127.0.0.3")?;
    assert_eq!(
        server.cert().unnamed_listen_ip,
        Some("127.0.0.3".parse::<std::net::IpAddr>()?)
    );
    let by_ca = ClientConfig::new(server.url()).with_ca_file(&ca);
    match rt.block_on(async { KmsClient::new(&by_ca)?.status_text().await }) {
        Err(KmsError::Transport(msg)) => assert!(
            msg.contains("does not name the host of the URL") && msg.contains("--pin"),
            "{msg}"
        ),
        other => panic!("a certificate for another address was trusted: {other:?}"),
    }
    stop(&rt, server)?;
    Ok(())
}

/// M2: with `new_needs_token`, `/new` and `/v1/new` take the management
/// token; without it (the default, as keas.kmi) they take none.
#[test]
fn new_needs_the_token_when_the_server_says_so() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let mut c = config(dir.path());
    c.new_needs_token = true;
    let server = rt.block_on(start(c))?;
    let http = raw_client(&server)?;
    let url = server.url();
    rt.block_on(async {
        let r = http.post(format!("{url}/new")).send().await?;
        assert_eq!(r.status(), 401);
        assert_eq!(r.bytes().await?.as_ref(), b"Unauthorized");
        let r = http
            .post(format!("{url}/new"))
            .bearer_auth("wrong-token-0123456789")
            .send()
            .await?;
        assert_eq!(r.status(), 401);
        let r = http
            .post(format!("{url}/v1/new"))
            .body(r#"{"count": 2}"#)
            .send()
            .await?;
        assert_eq!(r.status(), 401);
        let r = http
            .post(format!("{url}/new"))
            .bearer_auth(TOKEN)
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await?.len(), 32);
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let with_token = client_config(&server)?;
    let mut without = with_token.clone();
    without.token = None;
    rt.block_on(async {
        assert_eq!(KmsClient::new(&with_token)?.new_keks(2).await?.len(), 2);
        KmsClient::new(&with_token)?.new_kek().await?;
        assert!(matches!(
            KmsClient::new(&without)?.new_kek().await,
            Err(KmsError::Unauthorized)
        ));
        assert!(matches!(
            KmsClient::new(&without)?.new_keks(1).await,
            Err(KmsError::Unauthorized)
        ));
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    Ok(())
}

/// L8: the bearer scheme's name is case-insensitive (RFC 7235).
#[test]
fn a_lowercase_bearer_scheme_is_accepted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let http = raw_client(&server)?;
    let url = server.url();
    rt.block_on(async {
        for scheme in ["bearer", "BEARER", "Bearer"] {
            let r = http
                .get(format!("{url}/v1/keys"))
                .header("authorization", format!("{scheme} {TOKEN}"))
                .send()
                .await?;
            assert_eq!(r.status(), 200, "{scheme}");
        }
        let r = http
            .get(format!("{url}/v1/keys"))
            .header("authorization", format!("Basic {TOKEN}"))
            .send()
            .await?;
        assert_eq!(r.status(), 401);
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    Ok(())
}

/// L9 and L17: a management token under 16 bytes, or a body limit with no
/// room for a request, is refused at start with the reason.
#[test]
fn a_short_token_or_a_tiny_body_limit_is_refused_at_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let mut c = config(dir.path());
    c.token = Some("x".into());
    let err = rt
        .block_on(start(c))
        .err()
        .ok_or("a 1-byte token was taken")?;
    assert!(err.to_string().contains("at least 16"), "{err}");
    // The token file too, a trailing newline not counted.
    let mut c = config(dir.path());
    c.token = None;
    std::fs::write(dir.path().join("token"), "0123456789abcde\n")?;
    let err = rt
        .block_on(start(c.clone()))
        .err()
        .ok_or("a 15-byte token file was taken")?;
    assert!(
        err.to_string().contains("token") && err.to_string().contains("15 bytes"),
        "{err}"
    );
    std::fs::write(dir.path().join("token"), "0123456789abcdef\n")?;
    stop(&rt, rt.block_on(start(c))?)?;
    let mut c = config(dir.path());
    c.max_body = 0;
    let err = rt
        .block_on(start(c))
        .err()
        .ok_or("a 0-byte body limit was taken")?;
    assert!(err.to_string().contains("at least 1024"), "{err}");
    Ok(())
}

/// L7: files that never end (a device) are refused at a bound, by name,
/// not read until memory runs out.
#[test]
fn files_read_whole_are_bounded() -> TestResult {
    let zero = Path::new("/dev/zero");
    if !zero.exists() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let too_large = |e: &KmsError| e.to_string().contains("/dev/zero is larger than");
    // A certificate given: a regular file over the bound (a device is
    // refused as one: see tests/hardening.rs).
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'a'; (4 << 20) + 1])?;
    let mut c = config(&dir.path().join("unmade"));
    c.cert = Some(big.clone());
    c.key = Some(big.clone());
    let err = rt.block_on(start(c)).err().ok_or("started")?;
    assert!(
        err.to_string()
            .contains(&format!("{} is larger than", big.display())),
        "{err}"
    );
    let err = seccs_kms::client::load_kek(zero).err().ok_or("a KEK")?;
    assert!(too_large(&err), "{err}");
    let err = seccs_kms::client::read_token_file(zero)
        .err()
        .ok_or("a token")?;
    assert!(too_large(&err), "{err}");
    let cfg = ClientConfig::new("https://127.0.0.1:1").with_ca_file(zero);
    let err = KmsClient::new(&cfg).err().ok_or("a CA")?;
    assert!(too_large(&err), "{err}");
    // The server's own token file.
    let kms = dir.path().join("kms");
    stop(&rt, boot(&rt, &kms)?)?;
    // A regular file over the bound (a link to /dev/zero is refused as
    // a link: see tests/hardening.rs).
    std::fs::write(kms.join("token"), vec![b'a'; 5000])?;
    let mut c = config(&kms);
    c.token = None;
    let err = rt.block_on(start(c)).err().ok_or("started")?;
    assert!(
        err.to_string().contains("token is larger than 4096 bytes"),
        "{err}"
    );
    Ok(())
}

/// A self-signed certificate made as a CA (as `openssl req -x509` makes
/// one), for `names`: its PEM and its key's.
fn self_signed_ca_leaf(names: &[&str]) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A server reads its certificate's dates, so that a certificate that
/// expired can be said at start: a client that trusts it by a CA is
/// refused with words, one that pins it is served (a pin is trusted
/// whatever its dates); a certificate the server makes is valid now.
#[test]
fn a_certificates_dates_are_read_and_an_expired_one_is_refused_by_ca_clients() -> TestResult {
    let dir = tempfile::tempdir()?;
    let files = tempfile::tempdir()?;
    let rt = runtime()?;
    let now = seccs_kms::audit::unix_now();
    let made = boot(&rt, dir.path())?;
    let validity = made.cert().validity.ok_or("no validity read")?;
    assert!(validity.not_before <= now && now < validity.not_after);
    stop(&rt, made)?;

    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = params.self_signed(&key)?;
    let (cert, key_file) = (files.path().join("c.pem"), files.path().join("c.key"));
    std::fs::write(&cert, expired.pem())?;
    std::fs::write(&key_file, key.serialize_pem())?;
    let mut c = config(dir.path());
    c.cert = Some(cert.clone());
    c.key = Some(key_file);
    let server = rt.block_on(start(c))?;
    assert_eq!(
        server.cert().validity,
        Some(seccs_kms::server::Validity {
            not_before: 1_577_836_800,
            not_after: 1_609_459_200,
        })
    );
    let by_ca = ClientConfig::new(server.url()).with_ca_file(&cert);
    match rt.block_on(async { KmsClient::new(&by_ca)?.status_text().await }) {
        Err(KmsError::Transport(msg)) => assert!(msg.contains("has expired"), "{msg}"),
        other => panic!("an expired certificate was trusted by its CA: {other:?}"),
    }
    let pinned = ClientConfig::new(server.url()).with_pin(&server.cert().fingerprint)?;
    let status = rt.block_on(async { KmsClient::new(&pinned)?.status_text().await })?;
    assert!(status.starts_with("KMS server holding"), "{status}");
    stop(&rt, server)?;
    Ok(())
}

/// L11: TLS failures of client and server configuration are said in words.
#[test]
fn tls_mistakes_are_said_in_words() -> TestResult {
    let dir = tempfile::tempdir()?;
    let files = tempfile::tempdir()?;
    let rt = runtime()?;
    let (cert_a, key_a) = self_signed_ca_leaf(&["localhost", "127.0.0.1"])?;
    let (_, key_b) = self_signed_ca_leaf(&["localhost"])?;
    let path = |name: &str| files.path().join(name);
    std::fs::write(path("a.pem"), &cert_a)?;
    std::fs::write(path("a.key"), &key_a)?;
    std::fs::write(path("b.key"), &key_b)?;
    std::fs::write(path("empty.pem"), "")?;
    let start_with = |cert: &str, key: &str| {
        let mut c = config(dir.path());
        c.cert = Some(path(cert));
        c.key = Some(path(key));
        rt.block_on(start(c))
    };
    // Server: a key of another certificate, a file with no key, no certificate.
    let err = start_with("a.pem", "b.key").err().ok_or("started")?;
    assert!(err.to_string().contains("do not belong together"), "{err}");
    let err = start_with("a.pem", "a.pem").err().ok_or("started")?;
    assert!(
        err.to_string().contains(&format!(
            "{} holds no PEM private key",
            path("a.pem").display()
        )),
        "{err}"
    );
    let err = start_with("empty.pem", "a.key").err().ok_or("started")?;
    assert!(
        err.to_string().contains(&format!(
            "{} holds no PEM certificate",
            path("empty.pem").display()
        )),
        "{err}"
    );
    // Client: the server's self-signed certificate given as --ca.
    let server = start_with("a.pem", "a.key")?;
    let cfg = ClientConfig::new(server.url()).with_ca_file(path("a.pem"));
    match rt.block_on(async { KmsClient::new(&cfg)?.status_text().await }) {
        Err(KmsError::Transport(msg)) => assert!(
            msg.contains("a CA certificate used as its own")
                && msg.contains("--pin")
                && !msg.contains("CaUsedAsEndEntity"),
            "{msg}"
        ),
        other => panic!("expected a handshake failure: {other:?}"),
    }
    stop(&rt, server)?;
    // A token that cannot go in a header.
    let err = ClientConfig::new("https://127.0.0.1:1")
        .with_pin(&"ab".repeat(32))?
        .with_token("abcdefgh\nijklmnop")
        .validate()
        .err()
        .ok_or("a token with a line break was taken")?;
    assert!(
        err.to_string()
            .contains("the token holds a character that cannot go in an HTTP header"),
        "{err}"
    );
    Ok(())
}

/// L13: a server URL is its root: user info (which would be kept and sent
/// as Basic auth), a path, a query or a fragment is refused, and the
/// refusal never repeats a password.
#[test]
fn a_server_url_with_more_than_its_root_is_refused() -> TestResult {
    for (url, said) in [
        (
            "https://user:s3cret@127.0.0.1:8080",
            "a user name or password",
        ),
        ("https://user@127.0.0.1:8080", "a user name or password"),
        ("https://127.0.0.1:8080/kms", "a path"),
        ("https://127.0.0.1:8080/?a=b", "a query"),
        ("https://127.0.0.1:8080/#frag", "a fragment"),
    ] {
        let err = ClientConfig::new(url)
            .with_pin(&"ab".repeat(32))?
            .validate()
            .err()
            .ok_or(url)?;
        let text = err.to_string();
        assert!(
            text.contains(said) && !text.contains("s3cret"),
            "{url}: {text}"
        );
        assert!(
            fetch_store_key(
                &ClientConfig::new(url).with_pin(&"ab".repeat(32))?,
                &SecretKey::generate()?
            )
            .is_err()
        );
    }
    for url in ["https://127.0.0.1:8080", "https://127.0.0.1:8080/"] {
        ClientConfig::new(url)
            .with_pin(&"ab".repeat(32))?
            .validate()?;
    }
    Ok(())
}

/// Each audit record names the client that asked, by the address and
/// port its connection came from: a client on 127.0.0.2 is recorded as
/// 127.0.0.2, whether it was served or refused for a wrong token.
#[test]
fn audit_records_name_the_clients_address() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let http = raw_client_from(&server, Some([127, 0, 0, 2].into()))?;
    let url = server.url();
    rt.block_on(async {
        let r = http.post(format!("{url}/new")).send().await?;
        assert_eq!(r.status(), 200);
        let r = http.get(format!("{url}/v1/keys")).send().await?;
        assert_eq!(r.status(), 401);
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    let (log, records) = audit_records(dir.path())?;
    let ops: Vec<&str> = records.iter().filter_map(|r| r["op"].as_str()).collect();
    assert_eq!(ops, ["start", "new", "auth", "stop"], "{log}");
    // The server's own start and stop have no peer.
    for record in [&records[0], &records[3]] {
        assert!(record["peer"].is_null(), "{log}");
    }
    for record in &records[1..3] {
        let peer: std::net::SocketAddr = record["peer"].as_str().ok_or("no peer")?.parse()?;
        assert_eq!(peer.ip(), std::net::IpAddr::from([127, 0, 0, 2]), "{log}");
        assert_ne!(peer.port(), 0, "{log}");
    }
    Ok(())
}

/// The audit log holds every refused request, whether a handler reached
/// it or not (a malformed body, one too large, an unknown route, a wrong
/// token: with its method and path), what a change changed to, the
/// listing and reading of keys, and a client's key name only escaped and
/// cut short.
#[test]
fn audit_records_say_every_refusal_and_what_a_change_changed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let http = raw_client(&server)?;
    let url = server.url();
    let bearer = format!("Bearer {TOKEN}");
    let long_name = format!("x\u{1b}[31m{}", "n".repeat(5_000));
    rt.block_on(async {
        let post = |path: &str, body: String| {
            http.post(format!("{url}{path}"))
                .header("authorization", &bearer)
                .body(body)
                .send()
        };
        assert_eq!(
            post("/v1/keys", r#"{"name":"k"}"#.into()).await?.status(),
            200
        );
        let r = post("/v1/keys/k/state", r#"{"state":"suspended"}"#.into()).await?;
        assert_eq!(r.status(), 200);
        let r = http
            .get(format!("{url}/v1/keys"))
            .header("authorization", &bearer)
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        let r = http
            .get(format!("{url}/v1/keys/k"))
            .header("authorization", &bearer)
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        assert_eq!(post("/v1/keys", "x".into()).await?.status(), 400);
        assert_eq!(post("/v1/key", "0".repeat(70_000)).await?.status(), 413);
        assert_eq!(
            http.get(format!("{url}/v1/keys")).send().await?.status(),
            401
        );
        assert_eq!(
            http.get(format!("{url}/nowhere")).send().await?.status(),
            404
        );
        let encoded: String = long_name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let r = post(
            &format!("/v1/keys/{encoded}/encrypt"),
            r#"{"items":[]}"#.into(),
        )
        .await?;
        assert_eq!(r.status(), 404);
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    let (log, records) = audit_records(dir.path())?;
    let said: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["op"].as_str().unwrap_or("?"),
                r["key"].as_str().unwrap_or("?"),
                r["result"].as_str().unwrap_or("?"),
                r["detail"].as_str().unwrap_or("-")
            )
        })
        .collect();
    let expected = [
        "start - ok -",
        "create k ok active",
        "state k ok suspended",
        "list - ok -",
        "info k ok -",
        "refused - 400 POST /v1/keys",
        "refused - 413 POST /v1/key",
        "auth - unauthorized GET /v1/keys",
        "refused - 404 GET /nowhere",
    ];
    assert_eq!(said[..expected.len()], expected, "{log}");
    let last = &records[expected.len()];
    assert_eq!(last["op"], "encrypt", "{log}");
    let key = last["key"].as_str().ok_or("no key")?;
    assert!(
        key.starts_with("x\\u{1b}[31mnnn") && key.ends_with('…'),
        "{key}"
    );
    assert!(
        key.len() <= seccs_kms::audit::MAX_FIELD + 3,
        "{}",
        key.len()
    );
    assert_eq!(
        said.last().map(String::as_str),
        Some("stop - ok -"),
        "{log}"
    );
    Ok(())
}

/// An `audit.log` that is a link to `/dev/full` (which fails every write,
/// as a full disk) is refused as a link before a record is tried. That a
/// server whose log is a regular file it cannot write does not start is
/// tested end to end in crates/cli/tests/kms_cli.rs (a file size limit
/// below the log's length).
#[test]
fn a_server_whose_audit_log_cannot_be_written_does_not_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::os::unix::fs::symlink("/dev/full", dir.path().join("audit.log"))?;
    let rt = runtime()?;
    let Err(e) = boot(&rt, dir.path()) else {
        return Err("a server without a writable audit log started".into());
    };
    // A link to /dev/full is refused as a link, before a record is
    // tried (the files of the key directory are regular files only).
    assert!(
        matches!(&e, KmsError::NotAFile { what: "a symbolic link", path } if path.ends_with("audit.log")),
        "{e}"
    );
    Ok(())
}

/// The server speaks HTTP/1 only, as its ALPN says: the HTTP/2 preface
/// sent over an HTTP/1.1 handshake is refused and the connection closed
/// (it used to be served as HTTP/2, with none of HTTP/1's timeouts), and a
/// client that offers only HTTP/1.0 (`curl --http1.0`) is served.
#[test]
fn http2_is_refused_and_http10_served() -> TestResult {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    use std::io::{Read, Write};
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let ca = server.cert().ca_path.clone().ok_or("no CA file")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let talk = |alpn: &[u8], request: &[u8]| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        tls.alpn_protocols = vec![alpn.to_vec()];
        let conn =
            rustls::ClientConnection::new(Arc::new(tls), ServerName::try_from("127.0.0.1")?)?;
        let tcp = std::net::TcpStream::connect(server.addr())?;
        tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        stream.write_all(request)?;
        let mut answer = Vec::new();
        // Until the server closes the connection (bounded by the timeout).
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(format!("{e} after {} bytes", answer.len()).into()),
        }
        Ok(answer)
    };
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let answer = talk(b"http/1.1", preface)?;
    let text = String::from_utf8_lossy(&answer);
    // An HTTP/2 server would answer with a SETTINGS frame (type 4).
    assert!(answer.get(3) != Some(&4), "answered as HTTP/2: {answer:?}");
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
        "{text}"
    );
    let answer = talk(b"http/1.0", b"GET / HTTP/1.0\r\n\r\n")?;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(text.ends_with("KMS server holding 0 keys"), "{text}");
    stop(&rt, server)?;
    Ok(())
}

/// L12 and L16: a batch out of bounds says the limit, a body that is not
/// JSON says why once, and a batch whose every item failed is audited as
/// `failed`.
#[test]
fn batch_errors_state_the_limit_and_failed_batches_are_audited_as_failed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let http = raw_client(&server)?;
    let url = server.url();
    let cfg = client_config(&server)?;
    rt.block_on(async {
        let r = http
            .post(format!("{url}/v1/new"))
            .body(r#"{"count": 0}"#)
            .send()
            .await?;
        assert_eq!(r.status(), 400);
        let body = r.text().await?;
        assert!(body.contains("1024"), "{body}");
        let r = http.post(format!("{url}/v1/key")).body("x").send().await?;
        let body = r.text().await?;
        assert_eq!(
            body.matches("expected value at line 1 column 1").count(),
            1,
            "{body}"
        );
        let client = KmsClient::new(&cfg)?;
        client.create_key("k", KeyState::Active).await?;
        let items: [(&[u8], &[u8]); 2] = [(b"not sealed", b""), (b"nor this", b"")];
        let results = client.decrypt("k", &items).await?;
        assert!(results.iter().all(Result::is_err));
        let ct = client.encrypt("k", &[(b"x", b"")]).await?;
        let ct = ct.into_iter().next().ok_or("no result")??;
        let mixed: [(&[u8], &[u8]); 2] = [(&ct, b""), (b"nor this", b"")];
        client.decrypt("k", &mixed).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    stop(&rt, server)?;
    let log = std::fs::read_to_string(dir.path().join("audit.log"))?;
    let decrypts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""op":"decrypt""#))
        .collect();
    assert_eq!(decrypts.len(), 2, "{log}");
    assert!(decrypts[0].contains(r#""result":"failed""#), "{log}");
    assert!(decrypts[1].contains(r#""result":"partial""#), "{log}");
    Ok(())
}

/// The blocking API called on a thread inside a tokio runtime answers
/// `InsideAsyncRuntime` (it used to panic "Cannot start a runtime from
/// within a runtime"), cached key or not; dropping it there does not panic;
/// the same facility keeps working on a plain thread.
#[test]
fn blocking_calls_inside_a_runtime_are_refused_not_a_panic() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let cfg = client_config(&server)?;
    let local = LocalFacility::new(&cfg)?;
    let kek = local.generate()?;
    let ct = local.encrypt(&kek, b"hello", b"ctx")?;
    let blocking = seccs_kms::client::BlockingClient::new(&cfg)?;

    let refused = |r: Result<(), KmsError>| matches!(r, Err(KmsError::InsideAsyncRuntime(_)));
    // Inside an async task of a multi-threaded runtime, and in the root
    // future of a current-thread one (as #[tokio::test] runs).
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for inside in [&rt, &current] {
        let results = inside.block_on(async {
            vec![
                refused(local.generate().map(drop)),
                refused(local.dek(&kek).map(drop)),
                refused(local.decrypt(&kek, &ct, b"ctx").map(drop)),
                refused(local.encrypt(&kek, b"x", b"ctx").map(drop)),
                refused(blocking.run(|c| c.status_text()).map(drop)),
                refused(fetch_store_key(&cfg, &kek).map(drop)),
                refused(seccs_kms::server::serve_blocking(
                    config(&dir.path().join("other")),
                    |_| {},
                )),
            ]
        });
        assert!(results.iter().all(|r| *r), "{results:?}");
    }
    let shown = current
        .block_on(async { local.generate() })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(shown.contains("inside a tokio runtime"), "{shown}");
    assert!(shown.contains("std::thread::spawn"), "{shown}");
    // Made and dropped inside a runtime: no panic.
    current.block_on(async {
        let made_inside = LocalFacility::new(&cfg)?;
        drop(made_inside);
        drop(blocking);
        Ok::<_, KmsError>(())
    })?;
    // From async code, a thread of its own works.
    let local = Arc::new(local);
    let on_thread = Arc::clone(&local);
    let plain = current.block_on(async move {
        std::thread::spawn(move || on_thread.decrypt(&kek, &ct, b"ctx"))
            .join()
            .map_err(|_| "thread panicked")
    })??;
    assert_eq!(&plain[..], b"hello");
    // tokio gives spawn_blocking threads the runtime's context and no way
    // to tell them from its workers: refused too, as documented.
    let in_pool = Arc::clone(&local);
    let pooled =
        rt.block_on(async move { tokio::task::spawn_blocking(move || in_pool.generate()).await })?;
    assert!(matches!(pooled, Err(KmsError::InsideAsyncRuntime(_))));
    stop(&rt, server)?;
    Ok(())
}

/// The KEK ids of `keks` (hex), as the audit log names them.
fn key_ids(keks: &[String]) -> Result<Vec<String>, KmsError> {
    keks.iter()
        .map(|k| {
            seccs_kms::server::parse_kek(k.as_bytes())
                .map(|kek| seccs_kms::keyfile::KeyId::of(&kek).to_hex())
        })
        .collect()
}

/// A batch is recorded as one record per outcome, not one per KEK: a
/// batch of 1,024 KEKs the server does not hold (which wrote 2.2 times
/// its own length, one line per KEK) writes one short line listing a
/// few of their ids, and a batch that gives out keys lists each distinct
/// KEK id once with the count of items, as a batch of new KEKs does.
#[test]
fn a_batch_is_recorded_in_fewer_bytes_than_it_was_sent_in() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let mut cfg = config(dir.path());
    cfg.max_body = 1 << 20;
    let server = rt.block_on(start(cfg))?;
    let http = raw_client(&server)?;
    let url = server.url();
    let log_len = || std::fs::metadata(dir.path().join("audit.log")).map(|m| m.len());
    let unknown = |n: usize| -> Vec<String> { (0..n).map(|i| format!("{i:064x}")).collect() };
    let keks: Vec<String> = rt.block_on(async {
        let r = http
            .post(format!("{url}/v1/new"))
            .body(r#"{"count":100}"#)
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        let made: seccs_kms::api::NewResponse = serde_json::from_slice(&r.bytes().await?)?;
        Ok::<_, Box<dyn std::error::Error>>(made.keks)
    })?;
    let ids = key_ids(&keks)?;
    let post_batch = |keks: Vec<String>| {
        let body = serde_json::to_vec(&seccs_kms::api::KeyRequest { keks })?;
        let len = body.len() as u64;
        let before = log_len()?;
        let results = rt.block_on(async {
            let r = http.post(format!("{url}/v1/key")).body(body).send().await?;
            assert_eq!(r.status(), 200);
            let batch: seccs_kms::api::BatchResponse = serde_json::from_slice(&r.bytes().await?)?;
            Ok::<_, Box<dyn std::error::Error>>(batch.results)
        })?;
        Ok::<_, Box<dyn std::error::Error>>((results, len, log_len()? - before))
    };

    let (results, sent, grown) = post_batch(unknown(1024))?;
    assert!(
        results
            .iter()
            .all(|r| r.error.as_deref() == Some("not-found"))
    );
    assert!(grown * 20 < sent, "{grown} bytes of log for {sent} sent");

    // The made KEKs twice, unknown ones, and malformed ones.
    let mut mixed = [keks.clone(), keks.clone(), unknown(822)].concat();
    mixed.extend(["zz".to_owned(), "yy".to_owned()]);
    let (results, sent, grown) = post_batch(mixed)?;
    assert_eq!(results.iter().filter(|r| r.value.is_some()).count(), 200);
    assert!(grown * 4 < sent, "{grown} bytes of log for {sent} sent");
    stop(&rt, server)?;

    let (log, records) = audit_records(dir.path())?;
    let said = |op: &str, result: &str| -> Vec<&serde_json::Value> {
        records
            .iter()
            .filter(|r| r["op"] == op && r["result"] == result)
            .collect()
    };
    let listed = |r: &serde_json::Value| -> Vec<String> {
        r["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    };
    let mut sorted = ids.clone();
    sorted.sort();
    // Made without the management token: the first ids and the digest
    // of them all (see the next test).
    let new = said("new", "ok");
    assert_eq!(new.len(), 1, "{log}");
    assert_eq!(new[0]["count"], 100, "{log}");
    assert_eq!(new[0]["key"], "-", "{log}");
    let first = &sorted[..seccs_kms::audit::MAX_LISTED_MADE_UNPROVEN];
    assert_eq!(listed(new[0]), [first, &["…".to_owned()]].concat(), "{log}");
    let given = said("key", "ok");
    assert_eq!(given.len(), 1, "{log}");
    assert_eq!(given[0]["count"], 200, "{log}");
    assert_eq!(
        listed(given[0]),
        sorted,
        "every KEK given out is listed once"
    );
    let not_found = said("key", "not-found");
    let counts: Vec<u64> = not_found
        .iter()
        .filter_map(|r| r["count"].as_u64())
        .collect();
    assert_eq!(counts, [1024, 822], "{log}");
    for r in not_found {
        let keys = listed(r);
        assert_eq!(
            keys.len(),
            seccs_kms::audit::MAX_LISTED_REFUSED + 1,
            "{log}"
        );
        assert_eq!(keys.last().map(String::as_str), Some("…"), "{log}");
    }
    let malformed = said("key", "malformed");
    assert_eq!(malformed.len(), 1, "{log}");
    assert_eq!(malformed[0]["count"], 2, "{log}");
    assert_eq!(malformed[0]["key"], "-", "{log}");
    Ok(())
}

/// The SHA-256 (hex) of `ids` sorted, each followed by a line feed, as
/// `LC_ALL=C sort | sha256sum` gives it.
fn ids_digest(ids: &[String]) -> String {
    use sha2::Digest;
    let mut sorted = ids.to_vec();
    sorted.sort();
    let text: String = sorted.iter().map(|id| format!("{id}\n")).collect();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// A batch of 1,024 keys made without the management token (a request of
/// 14 bytes of body) writes a record of at most 2 KB: its count, the first
/// ids and the SHA-256 of all of them, which the ids of the KEKs given
/// out match. It wrote every id, about 68 KB, so that a client that showed
/// no credential made the server write about 480 times what it sent. With
/// the management token (`--new-needs-token`) every id is still listed.
#[test]
fn keys_made_without_the_token_are_recorded_in_a_bounded_record() -> TestResult {
    use seccs_kms::audit::MAX_LISTED_MADE_UNPROVEN;
    let rt = runtime()?;
    for needs_token in [false, true] {
        let dir = tempfile::tempdir()?;
        let mut cfg = config(dir.path());
        cfg.new_needs_token = needs_token;
        let server = rt.block_on(start(cfg))?;
        let http = raw_client(&server)?;
        let url = server.url();
        let log_len = || std::fs::metadata(dir.path().join("audit.log")).map(|m| m.len());
        let before = log_len()?;
        let keks = rt.block_on(async {
            let mut request = http.post(format!("{url}/v1/new")).body(r#"{"count":1024}"#);
            if needs_token {
                request = request.bearer_auth(TOKEN);
            }
            let r = request.send().await?;
            assert_eq!(r.status(), 200);
            let made: seccs_kms::api::NewResponse = serde_json::from_slice(&r.bytes().await?)?;
            Ok::<_, Box<dyn std::error::Error>>(made.keks)
        })?;
        let grown = log_len()? - before;
        stop(&rt, server)?;
        assert_eq!(keks.len(), 1024);
        let ids = key_ids(&keks)?;
        let (log, records) = audit_records(dir.path())?;
        let new: Vec<_> = records.iter().filter(|r| r["op"] == "new").collect();
        assert_eq!(new.len(), 1, "{log}");
        assert_eq!(new[0]["count"], 1024, "{log}");
        let listed: Vec<&str> = new[0]["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        if needs_token {
            assert_eq!(listed, sorted, "with the token, every id is listed");
            assert!(new[0].get("keys_sha256").is_none(), "{log}");
            assert!(grown > 60_000, "{grown}");
            continue;
        }
        assert!(grown < 2_000, "{grown} bytes of log for 1,024 keys made");
        assert_eq!(listed.len(), MAX_LISTED_MADE_UNPROVEN + 1, "{log}");
        assert_eq!(
            listed[..MAX_LISTED_MADE_UNPROVEN],
            sorted[..MAX_LISTED_MADE_UNPROVEN]
        );
        assert_eq!(listed.last(), Some(&"…"));
        assert_eq!(
            new[0]["keys_sha256"].as_str(),
            Some(ids_digest(&ids).as_str()),
            "{log}"
        );
        // Another set of ids does not match it.
        assert_ne!(
            new[0]["keys_sha256"].as_str(),
            Some(ids_digest(&ids[1..]).as_str())
        );
    }
    Ok(())
}

/// A flood of refusals of requests that show no credential (no token, an
/// unknown route, an unknown KEK, a malformed body) writes at most the
/// bucket's burst and what it refills while the flood lasts, then a
/// summary (written once the bucket has a token again, before the stop):
/// each request is still answered with its refusal, what is written one
/// by one and what the summaries count add up to every refusal of each
/// kind, and a key given out in the middle of the flood is recorded.
#[test]
fn a_flood_of_refusals_is_summarized_and_every_one_accounted_for() -> TestResult {
    use futures::StreamExt;
    use seccs_kms::audit::{REFUSAL_BURST, REFUSALS_PER_SECOND, SUMMARY_OP};
    const SENT: usize = 2_000;
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let began = std::time::Instant::now();
    let server = boot(&rt, dir.path())?;
    let http = raw_client(&server)?;
    let url = server.url();
    let bearer = format!("Bearer {TOKEN}");
    // Each kind as its record says it, and the status it is answered.
    let kinds = [
        ("auth unauthorized", 401),
        ("refused 404", 404),
        ("key not-found", 404),
        ("refused 400", 400),
    ];
    let send = |i: usize| {
        let http = &http;
        let url = &url;
        async move {
            let kind = i % kinds.len();
            let r = match kind {
                0 => http.get(format!("{url}/v1/keys")).send().await,
                1 => http.get(format!("{url}/nowhere/{i}")).send().await,
                2 => {
                    let kek = format!("{i:064x}");
                    http.post(format!("{url}/key")).body(kek).send().await
                }
                _ => http.post(format!("{url}/v1/key")).body("x").send().await,
            };
            (kind, r.map(|r| r.status().as_u16()))
        }
    };
    let kek = rt.block_on(async {
        let flood = |range: std::ops::Range<usize>| {
            futures::stream::iter(range)
                .map(send)
                .buffer_unordered(8)
                .collect::<Vec<_>>()
        };
        let mut answers = flood(0..SENT / 2).await;
        // A key given out, and a data key for the token, amid the flood.
        let r = http.post(format!("{url}/new")).send().await?;
        assert_eq!(r.status(), 200);
        let kek = r.bytes().await?.to_vec();
        let r = http
            .post(format!("{url}/key"))
            .body(kek.clone())
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        let r = http
            .post(format!("{url}/v1/keys"))
            .header("authorization", &bearer)
            .body(r#"{"name":"k"}"#)
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        let r = http
            .post(format!("{url}/v1/keys/k/datakey"))
            .header("authorization", &bearer)
            .body(r#"{"count":1}"#)
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        answers.extend(flood(SENT / 2..SENT).await);
        assert_eq!(answers.len(), SENT);
        for (kind, status) in answers {
            assert_eq!(status?, kinds[kind].1, "{}", kinds[kind].0);
        }
        Ok::<_, Box<dyn std::error::Error>>(kek)
    })?;
    // The summary is written once the bucket has a token again, without
    // another request or the stop (bounded: 5 s).
    let mut summarized_early = false;
    for _ in 0..50 {
        let log = std::fs::read_to_string(dir.path().join("audit.log"))?;
        if log.contains(&format!(r#""op":"{SUMMARY_OP}""#)) {
            summarized_early = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(summarized_early, "no summary before the stop");
    stop(&rt, server)?;
    let elapsed = began.elapsed();
    let (log, records) = audit_records(dir.path())?;

    let kek = SecretKey::from_slice(&kek)?;
    let id = seccs_kms::keyfile::KeyId::of(&kek).to_hex();
    for (op, key) in [("new", id.as_str()), ("key", &id), ("datakey", "k")] {
        assert!(
            records
                .iter()
                .any(|r| r["op"] == op && r["key"] == key && r["result"] == "ok"),
            "no {op} {key} in {log}"
        );
    }
    let summaries: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["op"] == SUMMARY_OP).collect();
    let mut summarized = 0;
    for (kind, _) in kinds {
        let written = records
            .iter()
            .filter(|r| {
                let said = format!(
                    "{} {}",
                    r["op"].as_str().unwrap_or("?"),
                    r["result"].as_str().unwrap_or("?")
                );
                said == kind && r["peer"].is_string()
            })
            .count() as u64;
        let counted: u64 = summaries
            .iter()
            .filter_map(|s| s["kinds"][kind].as_u64())
            .sum();
        assert_eq!(
            written + counted,
            (SENT / kinds.len()) as u64,
            "{kind}: {written} written, {counted} summarized"
        );
        summarized += counted;
    }
    let counts: u64 = summaries.iter().filter_map(|s| s["count"].as_u64()).sum();
    assert_eq!(counts, summarized, "a summary's count is its kinds' sum");
    assert!(summarized > 0, "the flood was written whole");
    // One line per token (a summary takes one too), and the summary at
    // stop, which takes none.
    let limited = records.iter().filter(|r| r["result"] != "ok").count() as u64;
    let refilled = u64::from(REFUSALS_PER_SECOND) * elapsed.as_secs().saturating_add(1);
    assert!(
        limited <= u64::from(REFUSAL_BURST) + refilled + 1,
        "{limited} lines of refusals in {elapsed:?}"
    );
    Ok(())
}

/// In the default mode, records given out become durable without another
/// request or a stop: the background sync covers them (counted by the
/// server's syncs, not timed), and a server that writes nothing syncs
/// nothing.
#[test]
fn by_default_audit_records_are_synced_in_the_background() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let server = boot(&rt, dir.path())?;
    let cfg = client_config(&server)?;
    rt.block_on(async {
        let client = KmsClient::new(&cfg)?;
        let kek = client.new_kek().await?;
        for _ in 0..5 {
            client.dek(&kek).await?;
        }
        Ok::<_, KmsError>(())
    })?;
    // `start`, a `new` and five `key` records at least.
    let (written, _) = server.audit_sync_status();
    assert!(written >= 7, "{written} records");
    // At most 20 s (the interval is 1 s) for the sync to cover them.
    let mut status = server.audit_sync_status().1;
    for _ in 0..400 {
        if status.synced >= written {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        status = server.audit_sync_status().1;
    }
    assert!(
        status.synced >= written,
        "{status:?}: not synced in the background"
    );
    assert!(status.syncs >= 1 && status.failures == 0, "{status:?}");
    // Idle: three intervals without records, and no sync more.
    std::thread::sleep(seccs_kms::server::AUDIT_SYNC_INTERVAL * 3);
    let (idle_written, idle) = server.audit_sync_status();
    assert_eq!(idle_written, written, "a record was written while idle");
    assert_eq!(idle.syncs, status.syncs, "a sync with nothing to sync");
    stop(&rt, server)?;
    Ok(())
}

/// With `--audit-sync each`, every key is answered after its record is
/// synced, with 16 clients at once.
#[test]
fn with_audit_sync_each_every_key_waits_for_its_sync() -> TestResult {
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let mut c = config(dir.path());
    c.audit_sync = seccs_kms::server::AuditSync::Each;
    let server = rt.block_on(start(c))?;
    let cfg = client_config(&server)?;
    let kek = rt.block_on(async { KmsClient::new(&cfg)?.new_kek().await })?;
    // The `new` was answered: its record is synced.
    let (written, status) = server.audit_sync_status();
    assert!(status.synced >= written, "{written}: {status:?}");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let client = KmsClient::new(&cfg)?;
            let kek = kek.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..8 {
                    client.dek(&kek).await?;
                }
                Ok::<_, KmsError>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    // Every answer waited for its record's sync, so all 128 are synced.
    let (all, status) = server.audit_sync_status();
    assert_eq!(all, written + 128);
    assert!(status.synced >= all, "{all}: {status:?}");
    assert_eq!(status.failures, 0);
    stop(&rt, server)?;
    Ok(())
}
