//! The error types of `seccs-net`.
//!
//! Tampering and a wrong password are their own variants, never I/O, and a
//! failed decryption never says why.

/// Why bytes from the network or the disk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the structure did.
    #[error("truncated input")]
    Truncated,
    /// The input does not start with the expected magic.
    #[error("bad magic")]
    BadMagic,
    /// The format version is not one this build understands.
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    /// The format version is above the ones this build reads. What holds
    /// it is not authenticated when it is read, so it says only what the
    /// bytes show: a newer seccs wrote it, unless it was altered.
    #[error(
        "its {what} names format {found}, newer than this build reads (up to {newest}): \
         written by a newer seccs, unless altered"
    )]
    NewerFormat {
        /// What names the format ("record", "manifest").
        what: &'static str,
        /// The format named.
        found: u8,
        /// The newest format this build reads.
        newest: u8,
    },
    /// A kind byte names no known packet, message or algorithm.
    #[error("unknown kind {0}")]
    UnknownKind(u8),
    /// A length field exceeds its bound.
    #[error("{0} is too long")]
    TooLong(&'static str),
    /// Bytes follow the end of the structure.
    #[error("trailing bytes")]
    Trailing,
    /// A field holds a value that is not allowed.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// What can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker URL is not one of `redis://…`, `nats://…` or `memory`
    /// (held without any password).
    #[error("unsupported broker URL {0:?} (expected redis://…, nats://… or memory)")]
    UnsupportedUrl(String),
    /// A channel name has characters that some broker cannot carry.
    #[error("invalid channel name")]
    InvalidChannel,
    /// The Redis client reported an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The NATS client reported an error.
    #[error("nats: {0}")]
    Nats(String),
    /// The broker connection is closed.
    #[error("broker connection closed")]
    Closed,
    /// The broker could not be reached at all.
    #[error("cannot connect to the broker at {url}: {reason}")]
    Connect {
        /// The broker URL, without any password.
        url: String,
        /// Why: connection refused, timed out, …
        reason: String,
    },
}

/// What can go wrong in the share network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// Bytes could not be decoded.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// A local file operation failed.
    // The cause is part of the message and not also a `source`, so that a
    // report that prints the chain (anyhow's `{:#}`) says it once.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// The configuration file is invalid.
    #[error("config: {0}")]
    Config(String),
    /// The configuration file `path` is invalid: [`Error::Config`] with
    /// the file named, as [`crate::Config::load`] says it.
    #[error("config {}: {reason}", path.display())]
    ConfigFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong in it.
        reason: String,
    },
    /// Another share server holds the lock of the root: nothing is wrong
    /// with the configuration, the root is taken.
    #[error(
        "{} is in use by another share server ({holder}): one server runs per root",
        root.display()
    )]
    RootInUse {
        /// The server's root directory.
        root: std::path::PathBuf,
        /// Who holds it, as the lock says (`pid N on HOST`), or "another
        /// process".
        holder: String,
    },
    /// A blocking call ([`crate::keyfile::load_key`],
    /// [`crate::keyfile::save_key`]) was made on a thread inside a tokio
    /// runtime, where starting its own runtime would panic.
    #[error(
        "{0} blocks, and was called on a thread inside a tokio runtime: from async code use \
         its async form ({0}_with and a Client), or call it on a thread of its own \
         (std::thread::spawn); tokio's spawn_blocking threads count as inside the runtime"
    )]
    InsideAsyncRuntime(&'static str),
    /// No server is subscribed to the broker.
    #[error("no share server is online")]
    NoServers,
    /// Servers are subscribed to the broker, but none answered: what they
    /// hold is unknown, not empty.
    #[error(
        "none of the {asked} share server{} online answered ({first}): paused, overloaded, \
         {}or not share servers",
        if *.asked == 1 { "" } else { "s" },
        if *.versions {
            "servers of an older build than this client, which do not answer its request for \
             a tag's versions (upgrade the servers before their clients), "
        } else {
            ""
        }
    )]
    NoAnswer {
        /// How many servers were asked.
        asked: usize,
        /// The first server's failure.
        first: String,
        /// Whether the request was the one for a tag's versions
        /// ([`crate::message::Body::Versions`]), which servers of an older
        /// build receive and never answer.
        versions: bool,
    },
    /// The threshold is impossible for the number of servers.
    #[error("threshold {threshold} is invalid for {servers} servers (need 1 <= t <= n <= 255)")]
    BadThreshold {
        /// The requested threshold.
        threshold: usize,
        /// The number of servers online.
        servers: usize,
    },
    /// The file is larger than a save with this threshold can carry: each
    /// server's share must fit in one message, and the file in one
    /// encryption.
    #[error(
        "the file is {len} bytes, more than a save with threshold {threshold} carries \
         ({max} bytes: each server's share must fit in one 1 GiB message, and the file in \
         one AES-GCM encryption of 64 GiB); raise the threshold or split the file"
    )]
    FileTooLarge {
        /// The file's length.
        len: u64,
        /// The largest length a save with this threshold carries.
        max: u64,
        /// The threshold of the save.
        threshold: usize,
    },
    /// Too few servers acknowledged a save within the timeout.
    #[error(
        "only {acked} of {servers} server{} stored the file, {needed} needed; {}{}",
        plural(*.servers),
        rollback_outcome(*.version, .not_rolled_back),
        reason_list(.reasons)
    )]
    SaveIncomplete {
        /// Servers that acknowledged.
        acked: usize,
        /// Acknowledgements needed.
        needed: usize,
        /// Servers asked.
        servers: usize,
        /// The version the save tried.
        version: u64,
        /// What the other servers said or why they failed, one per server.
        reasons: Vec<String>,
        /// Servers the rollback did not reach: one that acknowledged and
        /// did not confirm the removal, or one the rollback could not be
        /// sent to. Any record of the save they hold stays until that
        /// version is removed.
        not_rolled_back: Vec<String>,
    },
    /// Fewer servers are online than a save must be acknowledged by.
    #[error(
        "a save needs {needed} acknowledgement{} (min_acks) but only {servers} server{} {} online",
        plural(*.needed),
        plural(*.servers),
        if *.servers == 1 { "is" } else { "are" }
    )]
    NotEnoughServers {
        /// Acknowledgements needed.
        needed: usize,
        /// Servers online.
        servers: usize,
    },
    /// Concurrent saves of the tag took every version this save tried.
    #[error(
        "other saves of {tag:?} took each version this save tried ({attempts} attempts); \
         nothing was saved, try again"
    )]
    SaveConflict {
        /// The tag.
        tag: String,
        /// Versions tried.
        attempts: usize,
    },
    /// At least t servers (t the save's threshold) report the tag's highest
    /// version as the largest a server stores: no version follows it.
    #[error(
        "{tag:?} has reached version {max}, the largest a server stores, on {servers} (at \
         least {threshold} servers, this save's threshold): no later version can be saved. \
         Removing its versions does not free their numbers (each server keeps a tag's highest \
         version after its records are removed, so that a removed version is never given to another save); save \
         under another tag",
        max = crate::message::MAX_VERSION
    )]
    VersionExhausted {
        /// The tag.
        tag: String,
        /// The servers that report the largest version.
        servers: String,
        /// The save's threshold.
        threshold: usize,
    },
    /// Fewer than t servers claim the largest version of the tag, but the
    /// save needs them: without them too few servers would acknowledge it.
    #[error(
        "{tag:?} has no version left that this save can take: version {max}, the largest a \
         server stores, is claimed by {servers}, and without them too few servers would \
         acknowledge the save (a claim of fewer than {threshold} servers, this save's \
         threshold, is passed over only when the other servers are enough). Bring more \
         servers online, or look into those: a faulty or forged server can claim any version",
        max = crate::message::MAX_VERSION
    )]
    VersionsClaimed {
        /// The tag.
        tag: String,
        /// The servers that claim the largest version.
        servers: String,
        /// The save's threshold.
        threshold: usize,
    },
    /// No server holds the tag (or the requested version).
    #[error("no server holds {0:?}{hint}", hint = version_hint(.0))]
    NotFound(String),
    /// Too few honest servers answered to rebuild the file.
    #[error(
        "only {good} valid share{} of {tag}@{version}{}: {held} of the {asked} server{} \
         asked sent a record of it{}",
        plural(*.good),
        needed_text(*.needed),
        plural(*.asked),
        bad_list(.bad)
    )]
    NotEnoughShares {
        /// The tag.
        tag: String,
        /// The version asked for.
        version: u64,
        /// Valid records received (of the save best held).
        good: usize,
        /// The threshold of that save.
        needed: usize,
        /// Servers that sent a record of the version.
        held: usize,
        /// Servers asked (those online).
        asked: usize,
        /// Servers whose records were invalid, each with why.
        bad: Vec<String>,
    },
    /// Two saves of one version each rebuild: made while the servers were
    /// partitioned, or after a removal while servers were offline. Neither
    /// is chosen by a clock.
    #[error(
        "{tag}@{version} holds {} different saves that each rebuild ({}): made while the \
         servers were partitioned, or over a removal while servers were offline; \
         neither is chosen for you: stop the servers of the one you do not want, load \
         the other, and save it again",
        .saves.len(),
        save_list(.saves)
    )]
    AmbiguousVersion {
        /// The tag.
        tag: String,
        /// The version.
        version: u64,
        /// The servers of each save.
        saves: Vec<Vec<String>>,
    },
    /// The newest version of a tag (the newest that enough servers list)
    /// cannot be rebuilt, and an older one is not taken in its place.
    #[error(
        "{tag}@{version}, the newest version of {tag:?}, cannot be rebuilt: {reason}; \
         nothing older is loaded in its place{}",
        latest_hint(.tag, *.older)
    )]
    LatestUnavailable {
        /// The tag.
        tag: String,
        /// The newest version.
        version: u64,
        /// Why it failed.
        reason: String,
        /// Whether it failed to decrypt (a wrong password, most likely).
        decrypt: bool,
        /// The next older version listed, if any.
        older: Option<u64>,
    },
    /// A store key's tag was used before (removed since): servers offline
    /// at the removal may still hold its version 1.
    #[error(
        "{tag:?} was used on the share network before (up to version {highest}; removed \
         since, but servers offline then may still hold it): a store key needs a tag never \
         used; choose another tag"
    )]
    TagUsedBefore {
        /// The tag.
        tag: String,
        /// The highest version a server remembers.
        highest: u64,
    },
    /// The password is wrong, or every record was altered (indistinguishable).
    #[error("wrong password, or the records were altered")]
    Decrypt,
    /// Encryption failed: the input is longer than AES-GCM encrypts in one
    /// call (a file is held to [`crate::sharing::max_file_len`] first).
    #[error("cannot encrypt {0} bytes at once: more than AES-GCM takes")]
    Encrypt(u64),
    /// No record of one version opens with the password: the password is
    /// wrong, the records were altered, or that version was saved by someone
    /// else (with another password).
    #[error(
        "cannot decrypt {tag}@{version}: wrong password, or its records were altered or saved \
         with another password{}",
        older_hint(.tag, *.older)
    )]
    DecryptVersion {
        /// The tag.
        tag: String,
        /// The version that did not open.
        version: u64,
        /// The next older version listed, if any.
        older: Option<u64>,
    },
    /// A record is authentic but inconsistent: tampering.
    #[error("tampering detected: {0}")]
    Tampered(&'static str),
    /// A KDF parameter is outside the accepted bounds.
    #[error("invalid KDF parameters: {0}")]
    Kdf(&'static str),
    /// A request was refused by a server.
    #[error("server {server} refused: {message}")]
    Refused {
        /// The server's channel.
        server: String,
        /// What it said.
        message: String,
    },
    /// A peer did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// Nobody subscribed to the channel a multi-frame message was sent to,
    /// as the broker said when it took the message's first frame.
    #[error("nobody reads {0} on the broker: the message was not sent")]
    NotListening(String),
    /// A server kept letting go of a message it was receiving, its slots
    /// for messages in progress taken by others.
    #[error(
        "{server} dropped the message {times} times: it was receiving more messages at once \
         than it holds; try again when it is less busy"
    )]
    Dropped {
        /// The server's channel.
        server: String,
        /// Times it dropped the message.
        times: u32,
    },
    /// A tag is empty or too long.
    #[error("invalid tag: {0}")]
    InvalidTag(&'static str),
    /// A store key is saved only under a tag of its own: saving over one
    /// that exists would add a version that every store using the tag then
    /// loads instead of its own key.
    #[error(
        "{tag:?} already exists on the share network ({}); a store key needs a tag \
         no other file or key uses, now or before (a removed tag is refused too: a server \
         offline at the removal may still hold its version 1): choose another tag",
        version_list(.versions)
    )]
    TagExists {
        /// The tag.
        tag: String,
        /// The versions the servers list (never empty).
        versions: Vec<u64>,
    },
    /// A store key would be recoverable from a single server's records.
    #[error(
        "only {servers} share server{} answered and the threshold would be {threshold}: \
         at least 2 servers must hold shares for a store key, so that no single machine \
         holds it; start more share servers, or set threshold = 2 (or more) in the share config",
        if *.servers == 1 { "" } else { "s" }
    )]
    KeyThresholdTooLow {
        /// Servers online.
        servers: usize,
        /// The threshold the save would use.
        threshold: usize,
    },
    /// A store key saved under the default threshold would need every
    /// server online: losing any one's disk would lose the store.
    #[error(
        "only {servers} share servers answered, and the default threshold would need all \
         {servers} to rebuild the store key: losing any one server's disk would lose the store \
         for good; start more share servers (or wait for those offline), or set \
         threshold = {servers} in the share config to accept that no server can be lost"
    )]
    KeyNoSpareServer {
        /// Servers online.
        servers: usize,
    },
    /// A save (of a file or a store key) must have a password.
    #[error(
        "the password is empty, so anyone on the broker could load what is saved; \
         give a non-empty password (SECCS_SHARE_PASSWORD, --password-file or the prompt)"
    )]
    EmptyPassword,
    /// The client config's KDF is too cheap to save a store key with.
    #[error(
        "the share config's [kdf] {setting} = {value} is too weak to save a store key: \
         it must be at least {floor}; raise it, or remove the [kdf] section for the default \
         (argon2id, memory_kib = 65536, iterations = 3)"
    )]
    WeakKdf {
        /// The setting, as `algorithm key`.
        setting: &'static str,
        /// Its value.
        value: u64,
        /// The least value accepted.
        floor: u64,
    },
    /// A key file loaded from the network is not a key file.
    #[error("not a seccs key file")]
    NotAKeyFile,
    /// A store's key is kept as version 1 of its tag, which no server online
    /// holds, and the latest version (where an earlier build may have saved
    /// a key) is a file, not a key.
    #[error(
        "version 1 of {tag:?}, where the store's key is kept, is not on the share servers: \
         it was removed, or the servers that hold it are offline (the latest version, \
         {tag}@{latest}, is a file, not a key)"
    )]
    KeyVersionMissing {
        /// The tag.
        tag: String,
        /// The latest version, which loaded and is not a key.
        latest: u64,
    },
    /// The operating system's random number generator failed.
    #[error(transparent)]
    Core(#[from] seccs_core::Error),
}

fn bad_list(bad: &[String]) -> String {
    if bad.is_empty() {
        String::new()
    } else {
        // Replies are not signed by their servers: a record in a server's
        // name proves nothing about that server.
        format!(
            " (invalid records sent in the name of: {}; any client of the broker can send \
             in a server's name)",
            bad.join(", ")
        )
    }
}

fn needed_text(needed: usize) -> String {
    match needed {
        0 => " (no record received is valid, so the save's threshold is unknown)".into(),
        n => format!(", {n} needed (the save's threshold)"),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn save_list(saves: &[Vec<String>]) -> String {
    saves
        .iter()
        .map(|servers| format!("one on {}", servers.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn latest_hint(tag: &str, older: Option<u64>) -> String {
    match older {
        Some(v) => format!(
            "; ask for an older version ({tag}@{v}), or for the newest that rebuilds \
             (seccs share load --or-older {tag} FILE)"
        ),
        None => String::new(),
    }
}

fn rollback_outcome(version: u64, missed: &[String]) -> String {
    if missed.is_empty() {
        "the save was rolled back".into()
    } else {
        format!(
            "the rollback did not reach {} ({}): any record of version {version} that {} \
             stays until that version is removed",
            if missed.len() == 1 {
                "1 server".to_owned()
            } else {
                format!("{} servers", missed.len())
            },
            missed.join(", "),
            if missed.len() == 1 {
                "it holds"
            } else {
                "they hold"
            }
        )
    }
}

fn reason_list(reasons: &[String]) -> String {
    if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join("; "))
    }
}

fn version_list(versions: &[u64]) -> String {
    let v: Vec<String> = versions.iter().map(u64::to_string).collect();
    match v.len() {
        0 => "a server holds a version of it".into(),
        1 => format!("version {}", v.join("")),
        _ => format!("versions {}", v.join(", ")),
    }
}

fn older_hint(tag: &str, older: Option<u64>) -> String {
    match older {
        Some(v) => format!("; if that version is not yours, try {tag}@{v}"),
        None => String::new(),
    }
}

impl Error {
    /// Whether this is a failure to decrypt with the password given.
    pub fn is_decrypt(&self) -> bool {
        matches!(
            self,
            Error::Decrypt
                | Error::DecryptVersion { .. }
                | Error::LatestUnavailable { decrypt: true, .. }
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            cause: source,
        }
    }
}

/// For a tag that looks like a version was meant (`notes@latest`): a tag
/// may hold `@`, so it was read as the tag, and the reader is told how a
/// version is written.
fn version_hint(tag: &str) -> &'static str {
    match tag.rsplit_once('@') {
        Some((_, v))
            if !v.is_empty()
                && !v.bytes().all(|b| b.is_ascii_digit())
                && v.bytes().all(|b| b.is_ascii_alphanumeric())
                && v.len() < 16 =>
        {
            " (read as a tag, since a version is written TAG@N with N a number)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod not_found_tests {
    use super::Error;

    #[test]
    fn a_tag_that_looks_like_a_mistyped_version_says_how_versions_are_written() {
        let said = Error::NotFound("notes@abc".into()).to_string();
        assert!(
            said.contains("a version is written TAG@N with N a number"),
            "{said}"
        );
        let said = Error::NotFound("mail@example.org".into()).to_string();
        assert_eq!(said, "no server holds \"mail@example.org\"");
        let said = Error::NotFound("notes@3".into()).to_string();
        assert_eq!(said, "no server holds \"notes@3\"");
    }
}
