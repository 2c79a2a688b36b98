//! The append-only audit log: one JSON line per operation, with the time,
//! the client's address, the operation, the key (a KEK's id — SHA-256 of
//! the KEK — or a key name), the result, and a detail where there is more
//! to say. Never key material: the record type has no field that could
//! hold any.
//!
//! The file is opened in append mode (records are written one at a time,
//! so they never interleave) with mode 0600, and is never rewritten by the
//! server: only the part of a record whose write failed part way (a full
//! disk) is cut back off, so that every line is a whole record. The server
//! records its own `start` (refusing to start when that record cannot be
//! written) and `stop`, with no peer.

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
    /// The key: hex SHA-256 of a KEK, or a named key's name (as the
    /// client sent it: escaped and cut to [`MAX_FIELD`] bytes).
    pub key: &'a str,
    /// `ok`, or the error's kind (for a refusal no handler recorded, the
    /// HTTP status).
    pub result: &'a str,
    /// What more the operation says: the state a key was moved to, the
    /// minimum decryption version set, or for a refusal the request's
    /// method and path (escaped and cut as `key` is). Left out when there
    /// is nothing more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

/// The most bytes of a field a client chose (a key name, a path) that a
/// record keeps: a name or path longer than any valid one is cut, so that
/// a client cannot write a megabyte line.
pub const MAX_FIELD: usize = 256;

/// `text` as a record keeps a field a client chose: characters other than
/// printable ASCII (control characters, and others a terminal or a log
/// viewer would act on) escaped (`\u{1b}`), and cut to [`MAX_FIELD`] bytes
/// with `…` after.
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    let kept = |c: char| c.is_ascii_graphic() || c == ' ';
    if text.len() <= MAX_FIELD && text.chars().all(kept) {
        return text.into();
    }
    let mut out = String::new();
    for c in text.chars() {
        let len = if kept(c) { 1 } else { c.escape_unicode().len() };
        if out.len() + len > MAX_FIELD {
            out.push('…');
            break;
        }
        if kept(c) {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out.into()
}

/// The audit log of one server.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<File>,
}

/// Appends `line` through `out` (a writer of `file`, opened to append)
/// whole or not at all: a write cut short (a full disk) is cut back off
/// `file`, since the next record would be glued onto its part and neither
/// would parse.
fn append_whole(out: &mut impl Write, file: &File, line: &[u8]) -> std::io::Result<()> {
    let mut written = 0;
    let result = loop {
        if written == line.len() {
            break Ok(());
        }
        match out.write(&line[written..]) {
            Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    if result.is_err() && written > 0 {
        let len = file.metadata()?.len();
        file.set_len(len.saturating_sub(written as u64))?;
    }
    result
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

    /// Appends one record of an operation a client at `peer` asked for.
    ///
    /// A record that cannot be written is an error the caller must act on:
    /// the server answers such a request with 503 and no key (see
    /// [`crate::KmsError::AuditUnwritable`]), as an audit log that may miss
    /// records is no audit log.
    pub fn record(
        &self,
        peer: Option<SocketAddr>,
        op: &str,
        key: &str,
        result: &str,
    ) -> std::io::Result<()> {
        self.record_with(peer, op, key, result, None)
    }

    /// [`Self::record`] with a detail (see [`AuditEvent::detail`]).
    pub fn record_with(
        &self,
        peer: Option<SocketAddr>,
        op: &str,
        key: &str,
        result: &str,
        detail: Option<&str>,
    ) -> std::io::Result<()> {
        let key = shown(key);
        let detail = detail.map(shown);
        let event = AuditEvent {
            time: unix_now(),
            peer,
            op,
            key: &key,
            result,
            detail: detail.as_deref(),
        };
        let mut line = serde_json::to_vec(&event)?;
        line.push(b'\n');
        let guard = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file: &File = &guard;
        let written = append_whole(&mut { file }, file, &line);
        if let Err(e) = &written {
            tracing::error!(error = %e, op, key = %key, result, "audit log write failed");
        }
        written
    }

    /// Syncs the log to disk (called at shutdown).
    pub fn sync(&self) -> std::io::Result<()> {
        self.file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer with room for `room` more bytes of `file`, then none, as a
    /// disk that fills up part way through a record.
    struct FillingUp<'a> {
        file: &'a File,
        room: usize,
    }

    impl Write for FillingUp<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            (&mut &*self.file).write(&buf[..n])
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn fields_a_client_chose_are_escaped_and_cut() {
        assert_eq!(shown("named-key_1.v2"), "named-key_1.v2");
        assert_eq!(
            shown("x\u{1b}[31m\u{9b}\u{2028}\u{202e}"),
            "x\\u{1b}[31m\\u{9b}\\u{2028}\\u{202e}"
        );
        let name = "n".repeat(900_000);
        let long = shown(&name);
        assert_eq!(long.len(), MAX_FIELD + '…'.len_utf8());
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_record_cut_short_by_a_full_disk_is_cut_back_off() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path)?;
        log.record(None, "start", "-", "ok")?;
        let whole = std::fs::read(&path)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        let mut full = FillingUp {
            file: &file,
            room: 10,
        };
        let err = append_whole(&mut full, &file, b"{\"op\":\"key\",\"result\":\"ok\"}\n")
            .err()
            .ok_or_else(|| std::io::Error::other("a full disk took the record"))?;
        assert_eq!(err.raw_os_error(), Some(28));
        assert_eq!(
            std::fs::read(&path)?,
            whole,
            "no part of the record is left"
        );
        // The next record is a line of its own.
        log.record(None, "stop", "-", "ok")?;
        let text = std::fs::read_to_string(&path)?;
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .map_err(|e| std::io::Error::other(format!("{line}: {e}")))?;
        }
        assert_eq!(text.lines().count(), 2);
        Ok(())
    }
}
