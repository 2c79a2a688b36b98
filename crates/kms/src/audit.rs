//! The append-only audit log: one JSON line per operation, with the time,
//! the client's address, the operation, the key (a KEK's id — SHA-256 of
//! the KEK — or a key name) and the result. Never key material: the record
//! type has no field that could hold any.
//!
//! The file is opened in append mode (each record is one `write` call, so
//! concurrent records never interleave) with mode 0600, and is never
//! truncated or rewritten by the server.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent<'a> {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// The client's address and port, as the server's socket saw it (a
    /// proxy in front of the server shows as the proxy); `null` where the
    /// server was not told it.
    pub peer: Option<SocketAddr>,
    /// The operation (`new`, `key`, `encrypt`, `state`, …).
    pub op: &'a str,
    /// The key: hex SHA-256 of a KEK, or a named key's name.
    pub key: &'a str,
    /// `ok`, or the error's kind.
    pub result: &'a str,
}

/// The audit log of one server.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating, mode 0600) the log at `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut opts = OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        Ok(Self {
            file: Mutex::new(opts.open(path)?),
        })
    }

    /// Appends one record of an operation a client at `peer` asked for. A
    /// failure to write is logged, not returned: the operation it records
    /// has already happened.
    pub fn record(&self, peer: Option<SocketAddr>, op: &str, key: &str, result: &str) {
        let event = AuditEvent {
            time: unix_now(),
            peer,
            op,
            key,
            result,
        };
        let mut line = match serde_json::to_vec(&event) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "audit record not serialisable");
                return;
            }
        };
        line.push(b'\n');
        let mut f = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = f.write_all(&line) {
            tracing::error!(error = %e, "audit log write failed");
        }
    }

    /// Syncs the log to disk (called at shutdown).
    pub fn sync(&self) -> std::io::Result<()> {
        self.file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .sync_all()
    }
}
