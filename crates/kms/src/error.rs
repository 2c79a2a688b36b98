//! The error type of `seccs-kms`.

use crate::lifecycle::{KeyState, Operation};

/// What can go wrong in the key service, its client and its formats.
///
/// A failed decryption never says why: wrong key, wrong context and a
/// modified ciphertext are all [`KmsError::Tampered`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// No key is held for this KEK or name (the seed's `Key not found`).
    #[error("key not found")]
    NotFound,
    /// A key file or ciphertext failed authentication: it was modified, or
    /// the KEK, key or encryption context is not the one it was sealed with.
    #[error("authentication failed: wrong key or context, or the data was tampered with")]
    Tampered,
    /// The bytes are not in a format this code knows (bad magic).
    #[error("unknown format: {0}")]
    UnknownFormat(&'static str),
    /// The bytes are in another version of a known format than this
    /// build reads: one above it was written by a newer seccs (the version
    /// byte is read before anything is authenticated, so the message
    /// claims no more than that, or an alteration).
    #[error("{}", unsupported_version_said(what, *.version, *.reads))]
    UnsupportedVersion {
        /// Which format.
        what: &'static str,
        /// The version found.
        version: u8,
        /// The version this build reads.
        reads: u8,
    },
    /// Structurally invalid input: wrong length, trailing bytes, bad field.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The key's lifecycle state does not allow the operation.
    #[error("key state {state} does not allow {op}")]
    StateForbids {
        /// The key's current state.
        state: KeyState,
        /// The refused operation.
        op: Operation,
    },
    /// A [`crate::lifecycle::Permit`] was used for another operation, or
    /// on another key, than the one it was issued for (whatever the key's
    /// state allows).
    #[error("the permit is for {permit} {whose}, not for {op}: ask this key for a permit for {op}")]
    WrongPermit {
        /// The operation the permit was issued for.
        permit: Operation,
        /// The operation tried.
        op: Operation,
        /// `"of this key"` or `"of another key"`.
        whose: &'static str,
    },
    /// A named key can only be created pre-activation or active.
    #[error("a named key is created in state pre-activation or active, not {0}")]
    InvalidInitialState(KeyState),
    /// The lifecycle does not allow moving between these states.
    #[error("key state {from} cannot change to {to}")]
    InvalidTransition {
        /// The key's current state.
        from: KeyState,
        /// The requested state.
        to: KeyState,
    },
    /// The ciphertext's key version is below the key's minimum decryption
    /// version, or names a version that does not exist or was destroyed.
    #[error("key version {version} may not be used (minimum {min}, latest {latest})")]
    VersionRefused {
        /// The version the ciphertext names.
        version: u32,
        /// The key's minimum decryption version.
        min: u32,
        /// The key's newest version.
        latest: u32,
    },
    /// A named key holds as many versions, or has moved between active and
    /// suspended as often, as one key may: the bounds keep its file small
    /// enough that it can always still be deactivated, marked compromised
    /// and destroyed.
    #[error("the key has {count} {what}, the most one key may: {advice}")]
    KeyLimit {
        /// `versions` or `state changes`.
        what: &'static str,
        /// How many it has.
        count: usize,
        /// What to do instead.
        advice: &'static str,
    },
    /// A named key of this name already exists.
    #[error("a key of this name already exists")]
    AlreadyExists,
    /// The server's audit log could not be written, so the server did not
    /// answer the request (HTTP 503): no key leaves the server without its
    /// record. A management change (create, rotate, state, config) is made
    /// before it is recorded; `made` says whether this one was. While the
    /// log's last sync has failed, a change is refused before it is made.
    #[error(
        "the server cannot write its audit log{}",
        if *made {
            ": the change was made, but its record is not in the log or may not be on disk (the \
             server's own log says so)"
        } else {
            ", so it answers no request that needs a record"
        }
    )]
    AuditUnwritable {
        /// Whether the change the request asked for was made.
        made: bool,
    },
    /// Another server holds the key directory.
    #[error("{0}")]
    DirInUse(String),
    /// A key name is empty, too long, or uses characters other than
    /// `A-Z a-z 0-9 - _ .` (names become file names).
    #[error("invalid key name")]
    InvalidName,
    /// The server refused the bearer token (HTTP 401/403).
    #[error(
        "not authorised: missing or wrong bearer token (this request needs the server's \
         management token: --token-file or SECCS_KMS_TOKEN)"
    )]
    Unauthorized,
    /// The client configuration is unsafe or incomplete (for example an
    /// `http://` URL to a non-loopback host, or no trust anchor).
    #[error("configuration: {0}")]
    Config(String),
    /// TLS setup failed (certificate or key files, pins).
    #[error("TLS: {0}")]
    Tls(String),
    /// Talking to the server failed (connection, timeout, TLS handshake,
    /// including a certificate that matches neither CA nor pin).
    #[error("transport: {0}")]
    Transport(String),
    /// The server's answer is longer than its route can legitimately
    /// return (a broken or hostile server, or not a key server): it was
    /// not read further.
    #[error(
        "the answer to {route} is larger than {limit} bytes, more than that route can return: \
         not read further (a broken server, or not a seccs key server at that URL)"
    )]
    AnswerTooLarge {
        /// The route asked (`POST /key`).
        route: &'static str,
        /// The most bytes read of its answer.
        limit: u64,
    },
    /// The key server's disk is full (it answered 507): it can make no
    /// key until its operator frees space.
    #[error("the key service's storage is full; tell its operator")]
    ServerStorageFull,
    /// The server answered with an unexpected status.
    #[error("server answered {status}: {body}")]
    Server {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The segmented stream format reported an error.
    #[error(transparent)]
    Stream(#[from] seccs_core::stream::StreamError),
    /// The system random number generator or another core routine failed.
    #[error(transparent)]
    Core(#[from] seccs_core::Error),
    /// Serialising or parsing JSON failed. The cause is in the text and
    /// is not a `source` too, so `{:#}` says it once.
    #[error("JSON: {0}")]
    Json(serde_json::Error),
    /// Bytes that may hold secrets (a value decrypted from an
    /// [`crate::Encrypted`], a server's answer carrying keys or
    /// plaintexts) are not the JSON expected. Only the kind of error and
    /// where it is are said: serde_json's own message quotes the value it
    /// met (`invalid type: string "4111…"`), which would put the secret in
    /// the error's text, and so in logs.
    #[error(
        "{what} is not the JSON expected: {category} error at line {line} column {column} \
         (its text is not shown: it may hold secrets)"
    )]
    SecretJson {
        /// What was parsed: `the decrypted value`, `the server's answer`.
        what: &'static str,
        /// The kind of error: `syntax`, `data` (a valid JSON of another
        /// shape or type), `end of input`, `I/O`.
        category: &'static str,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1.
        column: usize,
    },
    /// A file-system or socket operation failed (the cause is the source,
    /// not repeated here: `{:#}` would print it twice).
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    /// A file could not be opened, created, read or written.
    #[error("cannot {action} {}", path.display())]
    File {
        /// What was tried: `open`, `create`, `read`, `write`.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server cannot listen on its address (in use, not permitted).
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An output path exists and is not a regular file (a device, a named
    /// pipe, a symbolic link, a directory): it is not replaced.
    #[error("{} exists and is not a regular file: not replacing it", .0.display())]
    NotRegularFile(std::path::PathBuf),
    /// A file of the key directory is not a regular file (a symbolic link,
    /// a named pipe, a device, a directory): the server neither follows nor
    /// opens it.
    #[error(
        "{} is {what}, not a regular file: the key server opens the files of its directory \
         only as regular files, never through a link (put the file itself there)",
        path.display()
    )]
    NotAFile {
        /// The file.
        path: std::path::PathBuf,
        /// What it is instead: `a symbolic link`, `a named pipe`, ….
        what: &'static str,
    },
    /// A directory of the key directory (`keys/`, `named/`, `tls/`) is
    /// not a directory (a symbolic link, even to one; a file): the server
    /// neither follows nor uses it.
    #[error(
        "{} is {what}, not a directory: the key server uses the directories of its key \
         directory only as they are, never through a link (put the directory itself there)",
        path.display()
    )]
    NotADirectory {
        /// The directory.
        path: std::path::PathBuf,
        /// What it is instead: `a symbolic link`, `a regular file`, ….
        what: &'static str,
    },
    /// A certificate or private key given to the server (`--cert`,
    /// `--key`) is neither a regular file nor a pipe (a device; a socket;
    /// a directory).
    #[error(
        "{} is {what}, not a regular file: a certificate or key given to the key server \
         (--cert, --key) is read only from a regular file (a link to one is followed) or \
         a pipe",
        path.display()
    )]
    GivenNotAFile {
        /// The file given.
        path: std::path::PathBuf,
        /// What it is instead: `a named pipe`, `a device`, ….
        what: &'static str,
    },
    /// A certificate or private key given to the server is a pipe that
    /// gave nothing: a named pipe no process writes to (it is not waited
    /// for), or a command that wrote nothing.
    #[error(
        "{} is a pipe that gave nothing: no process writes to it, or the command behind it \
         wrote nothing (the key server does not wait for a writer)",
        path.display()
    )]
    GivenPipeEmpty {
        /// The file given.
        path: std::path::PathBuf,
    },
    /// A file read whole is larger than the key service reads: a device
    /// such as `/dev/zero`, or the wrong file.
    #[error("{} is larger than {limit} bytes: not the file expected", path.display())]
    FileTooLarge {
        /// The file.
        path: std::path::PathBuf,
        /// The most read of it.
        limit: u64,
    },
    /// The server's root key file is missing while `named/` holds keys
    /// sealed under it: a new root key would cut them all off.
    #[error(
        "{} is missing, but {} holds {count} named key(s) sealed under it: restore root.key \
         from a backup (the named keys cannot be opened without it); the server does not \
         start without it",
        path.display(),
        named.display()
    )]
    MissingRootKey {
        /// Where the root key belongs.
        path: std::path::PathBuf,
        /// The directory of named keys.
        named: std::path::PathBuf,
        /// How many named keys it holds.
        count: usize,
    },
    /// The server's root key file is not a root key (32 bytes).
    #[error(
        "{} is not a root key (it must hold exactly 32 bytes): restore it from a backup",
        .0.display()
    )]
    BadRootKey(std::path::PathBuf),
    /// One of the files of the server's generated certificate is missing
    /// while another is there: making a new certificate would change its
    /// fingerprint and CA, and every client's `--pin` or `--ca` with it.
    #[error(
        "{} is missing, but {} is there: restore the missing file from a backup, or remove \
         {} to make a new certificate (its fingerprint and CA change: give clients the new \
         --pin or --ca)",
        missing.display(),
        present.display(),
        dir.display()
    )]
    IncompleteCertificate {
        /// The file missing.
        missing: std::path::PathBuf,
        /// A file of the certificate that is there.
        present: std::path::PathBuf,
        /// The certificate's directory (`DIR/tls`).
        dir: std::path::PathBuf,
    },
    /// A file that must be new already exists.
    #[error("{} exists; not overwriting it", .0.display())]
    FileExists(std::path::PathBuf),
    /// A plaintext is larger than the server encrypts in one item.
    #[error(
        "input is {len} bytes; the server encrypts at most {max} bytes ({} KiB) per item",
        max / 1024
    )]
    PlaintextTooLarge {
        /// The plaintext's length.
        len: usize,
        /// The per-item limit, [`crate::api::MAX_ITEM_PLAINTEXT`].
        max: usize,
    },
    /// The server refused a request as too large (HTTP 413); the message
    /// says which limit.
    #[error("the server refused the request as too large: {0}")]
    TooLarge(String),
    /// A batch item is not a ciphertext of the key service (bad magic,
    /// unknown version, cut short): as answered by the server.
    #[error("input is not a seccs kms ciphertext (wrong file, or damaged)")]
    NotCiphertext,
    /// The server refused a batch item because the ciphertext's key
    /// version is below the key's minimum decryption version, or was
    /// destroyed (the server's [`KmsError::VersionRefused`]).
    #[error(
        "the ciphertext names a key version the key does not allow: below its minimum decryption version, destroyed, or never made (a damaged ciphertext); rewrap ciphertexts before raising the minimum"
    )]
    VersionBelowMinimum,
    /// A blocking call of the key service ([`crate::client::BlockingClient`],
    /// [`crate::client::LocalFacility`], [`crate::client::fetch_store_key`],
    /// [`crate::server::serve_blocking`]) was made on a thread inside a
    /// tokio runtime, where blocking would panic or stall the runtime.
    #[error(
        "{0} blocks, and was called on a thread inside a tokio runtime: from async code use \
         the async KmsClient, or call it on a thread of its own (std::thread::spawn); tokio's \
         spawn_blocking threads count as inside the runtime"
    )]
    InsideAsyncRuntime(&'static str),
    /// The server refused a batch item for a reason it names by `code`.
    #[error("the server refused the item: {message}")]
    ItemRefused {
        /// The server's error code.
        code: String,
        /// What it means.
        message: String,
    },
    /// The server's sealed file of a named key does not parse or does not
    /// authenticate under the server's root key: the key cannot be used
    /// until the file is restored.
    #[error(
        "the server's key file for {name} is corrupt (it does not parse or authenticate under the server's root key): restore it from a backup"
    )]
    CorruptKeyFile {
        /// The key name.
        name: String,
    },
}

impl From<serde_json::Error> for KmsError {
    fn from(e: serde_json::Error) -> Self {
        KmsError::Json(e)
    }
}

impl KmsError {
    /// The [`KmsError::SecretJson`] of `e`, an error of parsing `what`:
    /// its category and position, never its message.
    pub(crate) fn secret_json(what: &'static str, e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let category = match e.classify() {
            Category::Io => "I/O",
            Category::Syntax => "syntax",
            Category::Data => "data",
            Category::Eof => "end of input",
        };
        KmsError::SecretJson {
            what,
            category,
            line: e.line(),
            column: e.column(),
        }
    }
}

/// What [`KmsError::TooLarge`] says before its message.
const TOO_LARGE_PREFIX: &str = "the server refused the request as too large: ";

impl KmsError {
    /// The [`KmsError::TooLarge`] of a server's `too-large` answer: its
    /// message is this error's text (see the server's answers), whose
    /// prefix is dropped so that the text does not say it twice.
    pub(crate) fn too_large_from_server(message: String) -> Self {
        match message.strip_prefix(TOO_LARGE_PREFIX) {
            Some(rest) => KmsError::TooLarge(rest.to_owned()),
            None => KmsError::TooLarge(message),
        }
    }

    /// Maps a stream error to [`KmsError::Tampered`] where it means tampering,
    /// so callers test one variant for "do not trust these bytes".
    pub(crate) fn from_stream(e: seccs_core::stream::StreamError) -> Self {
        use seccs_core::stream::StreamError as S;
        match e {
            S::Tampered => KmsError::Tampered,
            other => KmsError::Stream(other),
        }
    }
}

/// An error with each of its causes after it (`error: cause: cause`), as
/// `{:#}` of anyhow shows one: what the server's log says, since an
/// [`KmsError::Io`] alone says only "I/O error".
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said = self.0.to_string();
        write!(f, "{said}")?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            // An error carried through an I/O error (`io::Error::other`)
            // says the same as the I/O error holding it: said once.
            let text = c.to_string();
            if text != said {
                write!(f, ": {text}")?;
                said = text;
            }
            cause = c.source();
        }
        Ok(())
    }
}

impl KmsError {
    /// Whether this error comes of a full disk or an exhausted quota
    /// (`ENOSPC`, `EDQUOT`): the server answers it 507, which tells the
    /// client that the fix is its operator's.
    pub(crate) fn is_storage_full(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>()
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                )
            {
                return true;
            }
            cause = c.source();
        }
        false
    }
}

/// The message of [`KmsError::UnsupportedVersion`].
fn unsupported_version_said(what: &str, version: u8, reads: u8) -> String {
    if version > reads {
        format!(
            "{what} version {version}, newer than this build reads (version {reads}): written \
             by a newer seccs, unless altered; use a newer seccs"
        )
    } else {
        format!("unsupported {what} version {version} (this build reads version {reads})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_error_says_its_cause() {
        let e = KmsError::Io(std::io::Error::from_raw_os_error(28));
        let text = Chain(&e).to_string();
        assert!(
            text.starts_with("I/O error: No space left on device"),
            "{text}"
        );
    }

    #[test]
    fn an_error_carried_through_an_io_error_says_its_prefix_once() {
        let carried = std::io::Error::other(KmsError::Io(std::io::Error::from_raw_os_error(28)));
        let e = KmsError::Io(carried);
        let text = Chain(&e).to_string();
        assert_eq!(text, "I/O error: No space left on device (os error 28)");
    }

    /// A full disk and an exhausted quota are told apart from other I/O
    /// errors, also under a file error that names the path.
    #[test]
    fn a_full_disk_is_storage_full() {
        for errno in [28, 122] {
            let io = || std::io::Error::from_raw_os_error(errno);
            assert!(KmsError::Io(io()).is_storage_full(), "{errno}");
            let file = KmsError::File {
                action: "write",
                path: "keys/x.dek".into(),
                source: io(),
            };
            assert!(file.is_storage_full(), "{errno}");
        }
        assert!(!KmsError::Io(std::io::Error::from_raw_os_error(5)).is_storage_full());
        assert!(!KmsError::NotFound.is_storage_full());
    }

    #[test]
    fn a_json_error_says_its_cause_once() {
        let cause = serde_json::from_slice::<u8>(b"x").err();
        let Some(cause) = cause else {
            panic!("x parsed as JSON");
        };
        let e = KmsError::from(cause);
        assert_eq!(e.to_string(), "JSON: expected value at line 1 column 1");
        // Not a source too, so a chain (`{:#}`) does not say it again.
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn a_too_large_answer_carrying_the_prefix_says_it_once() {
        let sent = KmsError::TooLarge("above the limit".into()).to_string();
        assert!(sent.starts_with(TOO_LARGE_PREFIX), "{sent}");
        let received = KmsError::too_large_from_server(sent.clone()).to_string();
        assert_eq!(received, sent);
        let plain = KmsError::too_large_from_server("input is 9 bytes".into()).to_string();
        assert_eq!(plain, format!("{TOO_LARGE_PREFIX}input is 9 bytes"));
    }
}
