//! Measurements behind `seccs bench kms`, each against its floor in the same
//! run where one exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use serde::Serialize;

use crate::KmsError;
use crate::audit::AuditSync;
use crate::client::{ClientConfig, KmsClient, LocalFacility};
use crate::facility::Facility;
use crate::server::{ServerConfig, start};

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct KmsBenchReport {
    /// Durable KEK/DEK generations per second (group commit, 64 threads).
    pub keygen_per_s: f64,
    /// Cached local encryptions of 64-byte messages per second, one thread.
    pub encrypt_per_s: f64,
    /// `POST /key` over HTTPS per second, 16 concurrent clients, loopback.
    pub https_req_per_s: f64,
    /// The same against a server run with [`AuditSync::Each`] (each key
    /// waits for its audit record's sync, shared by concurrent requests),
    /// measured right after it in the same run.
    pub https_req_per_s_audit_each: f64,
    /// `https_req_per_s_audit_each / https_req_per_s`.
    pub audit_each_ratio: f64,
    /// File encryption MiB/s.
    pub file_mib_per_s: f64,
    /// Raw AES-256-GCM MiB/s over the same bytes in 64 KiB segments.
    pub raw_aes_gcm_mib_per_s: f64,
    /// `file_mib_per_s / raw_aes_gcm_mib_per_s`.
    pub file_ratio: f64,
}

/// How long and how much to measure.
#[derive(Debug, Clone, Copy)]
pub struct KmsBenchParams {
    /// Time spent on each timed measurement.
    pub duration: Duration,
    /// Size of the file encrypted for `file_ratio`.
    pub file_bytes: usize,
}

impl Default for KmsBenchParams {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(2),
            file_bytes: 128 << 20,
        }
    }
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Runs every measurement in a scratch directory.
/// Blocking: on a thread inside a tokio runtime it fails with
/// [`KmsError::InsideAsyncRuntime`].
pub fn run(params: KmsBenchParams) -> Result<KmsBenchReport, KmsError> {
    crate::client::ensure_not_in_runtime("the KMS benchmark")?;
    let scratch = std::env::temp_dir().join(format!("seccs-kms-bench-{}", std::process::id()));
    crate::atomic::create_private_dir(&scratch)?;
    let r = run_in(&scratch, params);
    let _ = std::fs::remove_dir_all(&scratch);
    r
}

fn run_in(dir: &std::path::Path, params: KmsBenchParams) -> Result<KmsBenchReport, KmsError> {
    let keygen_per_s = keygen(&dir.join("keygen"), params.duration)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let server = rt.block_on(start(server_config(
        &dir.join("server"),
        AuditSync::Interval,
    )))?;
    let client_cfg = ClientConfig::new(server.url()).with_pin(&server.cert().fingerprint)?;

    let local = LocalFacility::new(&client_cfg)?;
    let kek = local.generate()?;
    let msg = [0x5au8; 64];
    local.encrypt(&kek, &msg, b"ctx")?;
    let start_t = Instant::now();
    let mut n = 0u64;
    while start_t.elapsed() < params.duration {
        for _ in 0..1000 {
            std::hint::black_box(local.encrypt(&kek, &msg, b"ctx")?);
        }
        n += 1000;
    }
    let encrypt_per_s = rate(n, start_t.elapsed());

    let https_req_per_s = rt.block_on(https(&client_cfg, &kek, params.duration))?;
    let https_req_per_s_audit_each = {
        let each = rt.block_on(start(server_config(
            &dir.join("server-each"),
            AuditSync::Each,
        )))?;
        let each_cfg = ClientConfig::new(each.url()).with_pin(&each.cert().fingerprint)?;
        let kek = KmsClient::new(&each_cfg)?;
        let kek = rt.block_on(kek.new_kek())?;
        let r = rt.block_on(https(&each_cfg, &kek, params.duration));
        rt.block_on(each.shutdown(Duration::from_secs(5)))?;
        r?
    };

    let (file_mib_per_s, raw_aes_gcm_mib_per_s) = file(dir, &local, &kek, params.file_bytes)?;
    rt.block_on(server.shutdown(Duration::from_secs(5)))?;
    Ok(KmsBenchReport {
        keygen_per_s,
        encrypt_per_s,
        https_req_per_s,
        https_req_per_s_audit_each,
        audit_each_ratio: https_req_per_s_audit_each / https_req_per_s.max(1e-9),
        file_mib_per_s,
        raw_aes_gcm_mib_per_s,
        file_ratio: file_mib_per_s / raw_aes_gcm_mib_per_s.max(1e-9),
    })
}

/// A server on any free loopback port, its audit log synced as `audit_sync`.
fn server_config(dir: &std::path::Path, audit_sync: AuditSync) -> ServerConfig {
    let mut cfg = ServerConfig::new(dir);
    cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.audit_sync = audit_sync;
    cfg
}

fn keygen(dir: &std::path::Path, duration: Duration) -> Result<f64, KmsError> {
    let facility = Facility::open(dir)?;
    let count = AtomicU64::new(0);
    let start_t = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|_| {
                s.spawn(|| -> Result<(), KmsError> {
                    while start_t.elapsed() < duration {
                        facility.generate()?;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| KmsError::Io(std::io::Error::other("bench thread panicked")))??;
        }
        Ok::<_, KmsError>(())
    })?;
    Ok(rate(count.load(Ordering::Relaxed), start_t.elapsed()))
}

async fn https(
    cfg: &ClientConfig,
    kek: &seccs_core::SecretKey,
    duration: Duration,
) -> Result<f64, KmsError> {
    let count = Arc::new(AtomicU64::new(0));
    let start_t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = KmsClient::new(cfg)?;
        let kek = kek.clone();
        let count = Arc::clone(&count);
        tasks.push(tokio::spawn(async move {
            while start_t.elapsed() < duration {
                client.dek(&kek).await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, KmsError>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| KmsError::Io(std::io::Error::other(e.to_string())))??;
    }
    Ok(rate(count.load(Ordering::Relaxed), start_t.elapsed()))
}

fn file(
    dir: &std::path::Path,
    local: &LocalFacility,
    kek: &seccs_core::SecretKey,
    bytes: usize,
) -> Result<(f64, f64), KmsError> {
    let mut data = vec![0u8; bytes];
    seccs_core::random_bytes(&mut data[..4096])?;
    for i in 4096..bytes {
        data[i] = data[i % 4096] ^ (i >> 12) as u8;
    }
    let plain = dir.join("plain");
    let sealed = dir.join("sealed");
    std::fs::write(&plain, &data)?;
    let mib = bytes as f64 / (1 << 20) as f64;
    // Encrypts `plain` into `sealed` as `encrypt_file` does, without its
    // fsync and rename: this measures encryption, not the disk.
    let encrypt = || -> Result<u64, KmsError> {
        let mut input = std::fs::File::open(&plain)?;
        let mut output = std::io::BufWriter::new(std::fs::File::create(&sealed)?);
        let n = local.encrypt_stream(kek, b"bench", &mut input, &mut output)?;
        std::io::Write::flush(&mut output)?;
        Ok(n)
    };
    // Warm the page cache and the cipher.
    encrypt()?;
    let mut best_file = f64::MAX;
    let mut best_raw = f64::MAX;
    let key = seccs_core::SecretKey::generate()?;
    let aead = Aes256Gcm::new_from_slice(key.expose_secret())
        .map_err(|_| KmsError::Malformed("bench key"))?;
    for _ in 0..3 {
        std::fs::remove_file(&sealed)?;
        let t = Instant::now();
        encrypt()?;
        best_file = best_file.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for (i, seg) in data.chunks_mut(1 << 16).enumerate() {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let tag = aead
                .encrypt_inout_detached(&nonce.into(), &[], seg.into())
                .map_err(|_| KmsError::Malformed("bench segment"))?;
            std::hint::black_box(tag);
        }
        best_raw = best_raw.min(t.elapsed().as_secs_f64());
    }
    Ok((mib / best_file.max(1e-9), mib / best_raw.max(1e-9)))
}
