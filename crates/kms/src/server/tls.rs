//! The server's certificate: given as PEM files, or created on first start.
//!
//! Without `--cert`/`--key`, the server creates under `DIR/tls/` a private
//! CA (`ca.pem`; its private key is discarded once the server certificate
//! is signed, so nobody can issue more certificates under it) and a server
//! certificate for `localhost`, `127.0.0.1` and `::1` (`server.pem`,
//! `server.key`, mode 0600). Clients trust `ca.pem` (`--ca`) or pin the
//! SHA-256 fingerprint of the server certificate (`--pin`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};

use crate::KmsError;
use crate::atomic;

/// Where the certificate came from and how clients can trust it.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// The server certificate chain (PEM) in use.
    pub cert_path: PathBuf,
    /// The CA file clients can trust, when the server created its own.
    pub ca_path: Option<PathBuf>,
    /// SHA-256 of the server certificate (DER), lowercase hex: the pin.
    pub fingerprint: String,
    /// Whether this start created the certificate.
    pub created: bool,
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn tls_err(e: impl std::fmt::Display) -> KmsError {
    KmsError::Tls(e.to_string())
}

/// Creates the CA and server certificate in `tls_dir` unless present.
fn ensure_self_signed(tls_dir: &Path) -> Result<bool, KmsError> {
    let (cert, key) = (tls_dir.join("server.pem"), tls_dir.join("server.key"));
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    atomic::create_private_dir(tls_dir)?;
    let ca_key = rcgen::KeyPair::generate().map_err(tls_err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "seccs kms local CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(tls_err)?;
    let leaf_key = rcgen::KeyPair::generate().map_err(tls_err)?;
    let mut leaf = rcgen::CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(tls_err)?;
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "seccs kms server");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &ca).map_err(tls_err)?;
    let chain = format!("{}{}", leaf_cert.pem(), ca.pem());
    atomic::write_atomic(tls_dir, "ca.pem", ca.pem().as_bytes())?;
    atomic::write_atomic(tls_dir, "server.key", leaf_key.serialize_pem().as_bytes())?;
    atomic::write_atomic(tls_dir, "server.pem", chain.as_bytes())?;
    Ok(true)
}

/// Loads (or, without explicit files, creates in `DIR/tls/`) the server's
/// certificate and builds a rustls configuration with the ring provider.
pub fn server_config(
    dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<(Arc<rustls::ServerConfig>, CertInfo), KmsError> {
    let (cert_path, key_path, ca_path, created) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf(), None, false),
        (None, None) => {
            let tls_dir = dir.join("tls");
            let created = ensure_self_signed(&tls_dir)?;
            (
                tls_dir.join("server.pem"),
                tls_dir.join("server.key"),
                Some(tls_dir.join("ca.pem")),
                created,
            )
        }
        _ => {
            return Err(KmsError::Config(
                "--cert and --key must be given together".into(),
            ));
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(tls_err)?
        .collect::<Result<_, _>>()
        .map_err(tls_err)?;
    let leaf = certs
        .first()
        .ok_or_else(|| KmsError::Tls(format!("no certificate in {}", cert_path.display())))?;
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(tls_err)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((
        Arc::new(config),
        CertInfo {
            cert_path,
            ca_path,
            fingerprint,
            created,
        },
    ))
}
