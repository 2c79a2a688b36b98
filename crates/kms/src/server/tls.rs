//! The server's certificate: given as PEM files, or created on first start.
//!
//! Without `--cert`/`--key`, the server creates under `DIR/tls/` a private
//! CA (`ca.pem`; its private key is discarded once the server certificate
//! is signed, so nobody can issue more certificates under it) and a server
//! certificate for `localhost`, `127.0.0.1`, `::1` and the address it
//! listens on (`server.pem`, `server.key`, mode 0600). Clients trust
//! `ca.pem` (`--ca`) or pin the SHA-256 fingerprint of the server
//! certificate (`--pin`).
//!
//! A directory where some of these files are missing and others are there
//! (a backup restored in part) is refused: a new certificate would change
//! the fingerprint and the CA that clients trust.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use sha2::{Digest, Sha256};

use crate::KmsError;
use crate::atomic;
use crate::dir::DirFd;
use crate::files::{self, MAX_PEM_FILE};

/// The files of `DIR/tls/`: the CA, the server's chain and its key.
const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "server.pem";
const KEY_FILE: &str = "server.key";

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
    /// The address the server listens on, when the certificate does not
    /// name it: a client that connects to that address cannot trust the
    /// certificate by a CA (`--ca`), only by its fingerprint (`--pin`).
    /// `None` when it names it, or the server listens on every address.
    pub unnamed_listen_ip: Option<IpAddr>,
    /// When the certificate says it is valid (clients refuse it outside
    /// that time); `None` when its validity cannot be read.
    pub validity: Option<Validity>,
}

/// The time a certificate is valid in, as it says, in seconds since the
/// Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Its first valid second.
    pub not_before: u64,
    /// Its last valid second.
    pub not_after: u64,
}

impl Validity {
    /// The validity of the DER certificate `der`.
    pub fn of(der: &[u8]) -> Option<Self> {
        use x509_cert::der::Decode;
        let cert = x509_cert::Certificate::from_der(der).ok()?;
        let validity = cert.tbs_certificate.validity;
        Some(Validity {
            not_before: validity.not_before.to_unix_duration().as_secs(),
            not_after: validity.not_after.to_unix_duration().as_secs(),
        })
    }
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn tls_err(e: impl std::fmt::Display) -> KmsError {
    KmsError::Tls(e.to_string())
}

/// Creates the CA and server certificate in `tls_dir` unless present; the
/// certificate names `listen` too, unless it is the unspecified address.
/// Refuses a directory that holds part of a certificate
/// ([`KmsError::IncompleteCertificate`]).
fn ensure_self_signed(tls_dir: &DirFd, listen: IpAddr) -> Result<bool, KmsError> {
    let present = |name: &str| -> Result<bool, KmsError> {
        tls_dir
            .kind_of(name)
            .map(|kind| kind.is_some())
            .map_err(|source| KmsError::File {
                action: "examine",
                path: tls_dir.join(name),
                source,
            })
    };
    let incomplete = |missing: &str, present: &str| KmsError::IncompleteCertificate {
        missing: tls_dir.join(missing),
        present: tls_dir.join(present),
        dir: tls_dir.path().to_owned(),
    };
    match (present(CERT_FILE)?, present(KEY_FILE)?) {
        (true, true) => return Ok(false),
        (true, false) => return Err(incomplete(KEY_FILE, CERT_FILE)),
        (false, true) => return Err(incomplete(CERT_FILE, KEY_FILE)),
        (false, false) if present(CA_FILE)? => return Err(incomplete(KEY_FILE, CA_FILE)),
        (false, false) => {}
    }
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
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let listen = listen.to_canonical().to_string();
    if !listen_is_any(&listen) && !names.contains(&listen) {
        names.push(listen);
    }
    let mut leaf = rcgen::CertificateParams::new(names).map_err(tls_err)?;
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "seccs kms server");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &ca).map_err(tls_err)?;
    let chain = format!("{}{}", leaf_cert.pem(), ca.pem());
    atomic::write_atomic(tls_dir, CA_FILE, ca.pem().as_bytes())?;
    atomic::write_atomic(tls_dir, KEY_FILE, leaf_key.serialize_pem().as_bytes())?;
    atomic::write_atomic(tls_dir, CERT_FILE, chain.as_bytes())?;
    Ok(true)
}

/// Whether `ip` (as text) is an unspecified address (`0.0.0.0`, `::`).
fn listen_is_any(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// Whether the certificate `leaf` names the address `ip`.
fn names_ip(leaf: &CertificateDer<'_>, ip: IpAddr) -> bool {
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(leaf) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &ServerName::IpAddress(ip.into())).is_ok()
}

/// Where the server's certificate comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CertSource<'a> {
    /// `--cert` and `--key`.
    Given { cert: &'a Path, key: &'a Path },
    /// The key directory's `tls/`, open (made on first start).
    Own(&'a DirFd),
}

/// Loads (or, for [`CertSource::Own`], creates in `DIR/tls/`) the server's
/// certificate and builds a rustls configuration with the ring provider.
/// `listen` is the address the server listens on: a certificate made here
/// names it, and [`CertInfo::unnamed_listen_ip`] tells whether the one in
/// use does.
pub(crate) fn server_config(
    source: CertSource<'_>,
    listen: IpAddr,
) -> Result<(Arc<rustls::ServerConfig>, CertInfo), KmsError> {
    // Given files are read as given (a link followed, a pipe read, never
    // waited for); the server's own only as regular files, never through
    // a link, in the directory it checked.
    let (cert_path, key_path, ca_path, created, pem, key_pem) = match source {
        CertSource::Given { cert, key } => (
            cert.to_path_buf(),
            key.to_path_buf(),
            None,
            false,
            files::read_given(cert, MAX_PEM_FILE)?,
            zeroize::Zeroizing::new(files::read_given(key, MAX_PEM_FILE)?),
        ),
        CertSource::Own(tls_dir) => {
            let created = ensure_self_signed(tls_dir, listen)?;
            // A CA file lost while the certificate stayed: --pin only.
            let ca = matches!(tls_dir.kind_of(CA_FILE), Ok(Some(_)));
            (
                tls_dir.join(CERT_FILE),
                tls_dir.join(KEY_FILE),
                ca.then(|| tls_dir.join(CA_FILE)),
                created,
                files::read_own(tls_dir, CERT_FILE, MAX_PEM_FILE)?,
                zeroize::Zeroizing::new(files::read_own(tls_dir, KEY_FILE, MAX_PEM_FILE)?),
            )
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            KmsError::Tls(format!(
                "{} is not a PEM certificate file ({e})",
                cert_path.display()
            ))
        })?;
    let leaf = certs.first().ok_or_else(|| {
        KmsError::Tls(format!("{} holds no PEM certificate", cert_path.display()))
    })?;
    let fingerprint = fingerprint(leaf);
    let validity = Validity::of(leaf);
    let unnamed_listen_ip = Some(listen.to_canonical())
        .filter(|ip| !ip.is_unspecified())
        .filter(|ip| !names_ip(leaf, *ip));
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            KmsError::Tls(format!("{} holds no PEM private key", key_path.display()))
        }
        e => KmsError::Tls(format!(
            "{} is not a PEM private key file ({e})",
            key_path.display()
        )),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => KmsError::Tls(format!(
                "the certificate {} and the key {} do not belong together (--cert and --key \
                 must be a certificate and its own private key)",
                cert_path.display(),
                key_path.display()
            )),
            e => KmsError::Tls(format!(
                "the certificate {} or the key {} cannot be used: {e}",
                cert_path.display(),
                key_path.display()
            )),
        })?;
    // HTTP/1.0 too: `curl --http1.0` offers only it, and the seed's
    // clients may be that old.
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    if let Some(ip) = unnamed_listen_ip {
        tracing::warn!(
            %ip,
            cert = %cert_path.display(),
            "the certificate does not name the address the server listens on: clients that \
             connect to it must trust the certificate by its fingerprint (--pin), not a CA \
             (--ca)"
        );
    }
    Ok((
        Arc::new(config),
        CertInfo {
            cert_path,
            ca_path,
            fingerprint,
            created,
            unnamed_listen_ip,
            validity,
        },
    ))
}
