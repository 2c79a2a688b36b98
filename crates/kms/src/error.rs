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
    /// The bytes are in a newer version of a known format.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Which format.
        what: &'static str,
        /// The version found.
        version: u8,
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
    /// A named key of this name already exists.
    #[error("a key of this name already exists")]
    AlreadyExists,
    /// A key name is empty, too long, or uses characters other than
    /// `A-Z a-z 0-9 - _ .` (names become file names).
    #[error("invalid key name")]
    InvalidName,
    /// The server refused the bearer token (HTTP 401/403).
    #[error("not authorised: missing or wrong bearer token")]
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
    /// Serialising or parsing JSON failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A file-system or socket operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl KmsError {
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
