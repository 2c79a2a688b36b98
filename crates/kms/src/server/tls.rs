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
//! The three files appear together or not at all: they are written and
//! synced in a new directory `DIR/tls.new-<random>`, which one rename
//! makes `DIR/tls/` (in place of an empty `tls/`). A start that stops
//! before (killed, a full disk) leaves no `tls/`, and the next start
//! removes the directory it left and makes a certificate. Flaw fixed here:
//! the files were written into `tls/` one by one, and a first start that
//! stopped between them left part of a certificate, which every later
//! start refused until `tls/` was removed by hand.
//!
//! A `tls/` where some of these files are missing and others are there (a
//! backup restored in part) is refused: a new certificate would change
//! the fingerprint and the CA that clients trust. One that holds none of
//! them but other files is refused too, naming them.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::OFlags;
use seccs_core::file_kind::Kind;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use sha2::{Digest, Sha256};

use crate::KmsError;
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
    /// Where the CA file of the server's own certificate should be, when
    /// it is gone while the certificate and its key stayed: clients and
    /// stores given it (`--ca`, `--kms-ca`) fail, and only `--pin` trusts
    /// the server until it is restored.
    pub missing_ca: Option<PathBuf>,
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

/// The key directory's directory of the certificate it made.
pub(crate) const TLS_DIR: &str = "tls";

/// What the name of a directory a first start builds `tls/` in begins
/// with; 16 lowercase hexadecimal digits follow.
const NEW_DIR_PREFIX: &str = "tls.new-";

/// The certificate in the key directory `dir`'s `tls/` (`tls`, opened
/// by the caller, if there is one), made unless present; returns its
/// directory and whether it was made. A certificate made names `listen`
/// too, unless it is the unspecified address. Refuses a `tls/` that holds
/// part of a certificate ([`KmsError::IncompleteCertificate`]).
fn ensure_self_signed(
    dir: &DirFd,
    tls: Option<&DirFd>,
    listen: IpAddr,
) -> Result<(DirFd, bool), KmsError> {
    if let Some(tls_dir) = tls {
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
            (true, true) => return Ok((tls_dir.clone(), false)),
            (true, false) => return Err(incomplete(KEY_FILE, CERT_FILE)),
            (false, true) => return Err(incomplete(CERT_FILE, KEY_FILE)),
            (false, false) if present(CA_FILE)? => return Err(incomplete(KEY_FILE, CA_FILE)),
            (false, false) => {}
        }
        // An empty `tls/` is replaced by the one made; one that holds
        // something else is not ours to remove.
        let others = tls_dir.names()?;
        if !others.is_empty() {
            return Err(KmsError::Tls(format!(
                "{} holds no certificate but other files ({}): move them away, so that the \
                 server can make its certificate there",
                tls_dir.path().display(),
                others.join(", ")
            )));
        }
    }
    let made = make_certificate(listen)?;
    Ok((publish(dir, &made)?, true))
}

/// A certificate made: the CA's, the server's key and the server's chain
/// (PEM), each with the name of its file.
type Made = [(&'static str, zeroize::Zeroizing<String>); 3];

/// Makes a CA (its key dropped once it has signed) and a server
/// certificate for `localhost`, `127.0.0.1`, `::1` and `listen` (unless it
/// is the unspecified address).
fn make_certificate(listen: IpAddr) -> Result<Made, KmsError> {
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
    Ok([
        (CA_FILE, zeroize::Zeroizing::new(ca.pem())),
        (KEY_FILE, zeroize::Zeroizing::new(leaf_key.serialize_pem())),
        (CERT_FILE, zeroize::Zeroizing::new(chain)),
    ])
}

/// Makes `made` the key directory `dir`'s `tls/`, all of it or nothing:
/// its files are written and synced in a new directory `tls.new-<random>`
/// beside it (0700, files 0600), which one rename makes `tls/` (in place
/// of an empty one). Before, its three files were written into `tls/` one
/// by one, and a start that stopped between them (killed, a full disk)
/// left part of a certificate, which every later start refused until
/// `tls/` was removed by hand. A directory a failed start leaves is
/// removed here, or by the next start ([`remove_leftovers`]).
fn publish(dir: &DirFd, made: &Made) -> Result<DirFd, KmsError> {
    let mut random = [0u8; 8];
    seccs_core::random_bytes(&mut random)?;
    let name = format!("{NEW_DIR_PREFIX}{}", hex::encode(random));
    rustix::fs::mkdirat(
        dir.fd(),
        name.as_str(),
        rustix::fs::Mode::from_raw_mode(0o700),
    )
    .map_err(|e| KmsError::File {
        action: "create",
        path: dir.join(&name),
        source: e.into(),
    })?;
    let filled = fill(dir, &name, made);
    let tls = match filled {
        Ok(new) => new,
        Err(e) => {
            if let Err(error) = remove_new_dir(dir, &name) {
                tracing::warn!(path = %dir.join(&name).display(), %error, "cannot remove the certificate directory of a failed start");
            }
            return Err(e);
        }
    };
    dir.sync().map_err(|source| KmsError::File {
        action: "sync",
        path: dir.path().to_owned(),
        source,
    })?;
    Ok(tls)
}

/// Writes and syncs the files of `made` in the new directory `name` of
/// `dir`, then renames it to `tls`; returns it open.
fn fill(dir: &DirFd, name: &str, made: &Made) -> Result<DirFd, KmsError> {
    let new = dir.sub(name)?.ok_or_else(|| KmsError::File {
        action: "open",
        path: dir.join(name),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    for (file, text) in made {
        let written = new
            .open_file(
                file,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
                0o600,
            )
            .map_err(std::io::Error::from)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            });
        written.map_err(|source| KmsError::File {
            action: "write",
            path: new.join(file),
            source,
        })?;
    }
    new.sync().map_err(|source| KmsError::File {
        action: "sync",
        path: new.path().to_owned(),
        source,
    })?;
    // A rename replaces an empty directory, nothing else: a `tls/` that
    // gained a file meanwhile stops the start.
    dir.rename(name, TLS_DIR).map_err(|source| KmsError::File {
        action: "rename to tls",
        path: dir.join(name),
        source,
    })?;
    Ok(new.renamed(dir.join(TLS_DIR)))
}

/// Whether `name` is that of a directory [`publish`] makes.
fn is_new_dir_name(name: &str) -> bool {
    name.strip_prefix(NEW_DIR_PREFIX).is_some_and(|random| {
        random.len() == 16
            && random
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Removes the directory `name` of `dir` that [`publish`] made, and its
/// files; never through a link.
fn remove_new_dir(dir: &DirFd, name: &str) -> Result<(), KmsError> {
    let Some(new) = dir.sub(name)? else {
        return Ok(());
    };
    let removed = |action: &'static str, path: PathBuf| {
        move |source| KmsError::File {
            action,
            path,
            source,
        }
    };
    for file in new.names()? {
        new.remove(&file)
            .map_err(removed("remove", new.join(&file)))?;
    }
    dir.remove_dir(name)
        .map_err(removed("remove", dir.join(name)))?;
    dir.sync().map_err(removed("sync", dir.path().to_owned()))
}

/// Removes the directories `tls.new-<random>` of the key directory `dir`
/// that a first start left when it stopped before its certificate was
/// complete (one may hold the server's private key). Best effort: one
/// that cannot be removed, or that is not a directory (a link is never
/// followed), is said in the log and left.
pub(crate) fn remove_leftovers(dir: &DirFd) -> Result<(), KmsError> {
    for name in dir.names()? {
        if !is_new_dir_name(&name) {
            continue;
        }
        let removed = match dir.kind_of(&name) {
            Ok(Some(Kind::Directory)) => remove_new_dir(dir, &name),
            Ok(None) => Ok(()),
            Ok(Some(kind)) => Err(KmsError::NotADirectory {
                path: dir.join(&name),
                what: kind.in_words(),
            }),
            Err(source) => Err(KmsError::File {
                action: "examine",
                path: dir.join(&name),
                source,
            }),
        };
        if let Err(error) = removed {
            tracing::warn!(path = %dir.join(&name).display(), %error, "cannot remove the leftover of a first start");
        }
    }
    Ok(())
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
    /// The key directory's `tls/` (made on first start): the key
    /// directory, and its `tls/` if there is one, opened never through a
    /// link.
    Own {
        dir: &'a DirFd,
        tls: Option<&'a DirFd>,
    },
}

/// Warns when the private key file `key` (`--key`) can be read by group
/// or others, as a KEK file that others can read is warned about: the
/// server's own key in `tls/` is made 0600, and one given is never
/// changed.
fn warn_if_key_exposed(key: &std::path::Path) {
    if let Some(mode) = crate::client::kek_file_mode_exposed(key) {
        tracing::warn!(
            path = %key.display(),
            "the TLS private key file {} can be read by others (mode {mode:o}): make it 0600 \
             (`chmod 600`); whoever reads it can pose as this key server to its clients",
            key.display()
        );
    }
}

/// `e`, from reading a file given by an option: one that could not be
/// read says what the file is for and which option named it (`action`,
/// "read the TLS certificate file (--cert)"), where it said only "cannot
/// read PATH".
fn naming_option(e: KmsError, action: &'static str) -> KmsError {
    match e {
        KmsError::File { path, source, .. } => KmsError::File {
            action,
            path,
            source,
        },
        e => e,
    }
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
    let (cert_path, key_path, ca_path, missing_ca, created, pem, key_pem) = match source {
        CertSource::Given { cert, key } => {
            let pem = files::read_given(cert, MAX_PEM_FILE)
                .map_err(|e| naming_option(e, "read the TLS certificate file (--cert)"))?;
            let key_pem = zeroize::Zeroizing::new(
                files::read_given(key, MAX_PEM_FILE)
                    .map_err(|e| naming_option(e, "read the TLS private key file (--key)"))?,
            );
            // Once it is known to be a file (or a pipe): a directory is
            // said to be one, not warned of for its mode.
            warn_if_key_exposed(key);
            (
                cert.to_path_buf(),
                key.to_path_buf(),
                None,
                None,
                false,
                pem,
                key_pem,
            )
        }
        CertSource::Own { dir, tls } => {
            let (tls_dir, created) = ensure_self_signed(dir, tls, listen)?;
            let tls_dir = &tls_dir;
            // A CA file lost while the certificate stayed: --pin only,
            // which the start says.
            let ca = matches!(tls_dir.kind_of(CA_FILE), Ok(Some(_)));
            (
                tls_dir.join(CERT_FILE),
                tls_dir.join(KEY_FILE),
                ca.then(|| tls_dir.join(CA_FILE)),
                (!ca).then(|| tls_dir.join(CA_FILE)),
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
    if let Some(ca) = &missing_ca {
        tracing::warn!(
            ca = %ca.display(),
            cert = %cert_path.display(),
            "the CA file of the server's certificate is missing: clients and stores given it \
             (--ca, --kms-ca) fail; they can trust the server by its fingerprint (--pin), or \
             restore the CA file from a backup"
        );
    }
    Ok((
        Arc::new(config),
        CertInfo {
            cert_path,
            ca_path,
            missing_ca,
            fingerprint,
            created,
            unnamed_listen_ip,
            validity,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Result<Vec<String>, std::io::Error> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// An empty `tls/` (made by hand, or restored so) is replaced by a
    /// whole one, its files 0600 in a directory 0700.
    #[test]
    fn an_empty_tls_directory_is_replaced_by_a_whole_one() -> TestResult {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir()?;
        std::fs::create_dir(tmp.path().join(TLS_DIR))?;
        let dir = DirFd::open(tmp.path())?;
        let tls = dir.sub(TLS_DIR)?;
        let (made, created) = ensure_self_signed(&dir, tls.as_ref(), LOOPBACK)?;
        assert!(created);
        assert_eq!(made.path(), tmp.path().join(TLS_DIR));
        let tls = tmp.path().join(TLS_DIR);
        assert_eq!(names(&tls)?, [CA_FILE, KEY_FILE, CERT_FILE]);
        assert_eq!(names(tmp.path())?, [TLS_DIR]);
        assert_eq!(std::fs::metadata(&tls)?.permissions().mode() & 0o777, 0o700);
        for file in [CA_FILE, KEY_FILE, CERT_FILE] {
            let mode = std::fs::metadata(tls.join(file))?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        // Made once: the next start uses it as it is.
        let (_, created) = ensure_self_signed(&dir, dir.sub(TLS_DIR)?.as_ref(), LOOPBACK)?;
        assert!(!created);
        Ok(())
    }

    /// A `tls/` that holds no certificate but other files is not written
    /// into (nor removed): the start stops, naming them, and leaves
    /// nothing behind.
    #[test]
    fn a_tls_directory_with_other_files_is_refused() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let tls = tmp.path().join(TLS_DIR);
        std::fs::create_dir(&tls)?;
        std::fs::write(tls.join("notes"), b"mine")?;
        let dir = DirFd::open(tmp.path())?;
        let err = ensure_self_signed(&dir, dir.sub(TLS_DIR)?.as_ref(), LOOPBACK)
            .err()
            .ok_or("a certificate was made")?;
        assert!(err.to_string().contains("notes"), "{err}");
        assert_eq!(names(&tls)?, ["notes"]);
        assert_eq!(names(tmp.path())?, [TLS_DIR]);
        Ok(())
    }

    /// A first start whose certificate cannot be put in place once its
    /// files are written (here a `tls/` holding a file appeared after it
    /// was looked for, so the rename fails) fails, removes what it wrote
    /// and leaves `tls/` as it was.
    #[test]
    fn a_certificate_that_cannot_be_put_in_place_leaves_nothing() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = DirFd::open(tmp.path())?;
        let tls = tmp.path().join(TLS_DIR);
        std::fs::create_dir(&tls)?;
        std::fs::write(tls.join("notes"), b"mine")?;
        let err = ensure_self_signed(&dir, None, LOOPBACK)
            .err()
            .ok_or("a certificate was made")?;
        assert!(matches!(err, KmsError::File { .. }), "{err:?}");
        assert_eq!(names(&tls)?, ["notes"]);
        assert_eq!(names(tmp.path())?, [TLS_DIR]);
        Ok(())
    }

    #[test]
    fn only_names_of_new_directories_are_taken_for_leftovers() {
        assert!(is_new_dir_name("tls.new-0123456789abcdef"));
        for other in [
            "tls",
            "tls.new-",
            "tls.new-0123456789ABCDEF",
            "tls.new-0123456789abcdef0",
            "tls.new-0123456789abcde",
            "tls.new-0123456789abcdeg",
            "xtls.new-0123456789abcdef",
        ] {
            assert!(!is_new_dir_name(other), "{other}");
        }
    }
}
