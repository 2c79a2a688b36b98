//! What the key service's integration tests share: a runtime, a loopback
//! server's config with a management token, its stop, and a raw HTTPS
//! client that trusts the server's CA file.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use seccs_kms::KmsError;
use seccs_kms::server::{RunningServer, ServerConfig};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// The management token of the test servers (at least 16 bytes).
pub const TOKEN: &str = "test-token-0123456789";

/// A server on any free loopback port of `dir`, with [`TOKEN`].
pub fn loopback_config(dir: &Path) -> ServerConfig {
    let mut c = ServerConfig::new(dir);
    c.listen = "127.0.0.1:0".parse().expect("literal address");
    c.token = Some(TOKEN.into());
    c
}

pub fn stop(rt: &tokio::runtime::Runtime, server: RunningServer) -> Result<(), KmsError> {
    rt.block_on(server.shutdown(Duration::from_secs(5)))
}

/// A raw reqwest client trusting the server's CA file, for byte-level
/// checks, whose connections come from the loopback address `local` (the
/// system's choice when `None`) and give up after `timeout`.
pub fn raw_client_from(
    server: &RunningServer,
    local: Option<std::net::IpAddr>,
    timeout: Duration,
) -> Result<reqwest::Client, Box<dyn std::error::Error>> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
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
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .local_address(local)
        .timeout(timeout)
        .build()?)
}
