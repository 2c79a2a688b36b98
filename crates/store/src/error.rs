//! The error type of the content store.

use crate::backend::BackendError;

/// What can go wrong in the content store.
///
/// [`StoreError::Integrity`] is its own variant: a node that fails to
/// authenticate, is missing, or does not fit its place in the tree is never
/// returned as data, and never reported as an I/O error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Stored data failed to authenticate or does not fit the tree
    /// (tampered, truncated, swapped, or missing node).
    #[error("integrity error: {0}")]
    Integrity(String),
    /// What was asked for is not in the store: a content reference, a
    /// name, or a version of one. The text says which, whole.
    #[error("{0}")]
    NotFound(String),
    /// A content reference that is not well formed, or that names a node
    /// this store holds (authentic) with a length that is not its
    /// content's: a mistyped or altered reference, not damage to the
    /// store.
    #[error("invalid content reference: {0}")]
    InvalidRef(String),
    /// A name's version that is a directory, read as a content
    /// ([`crate::Store::get_named`]), or put with a content
    /// ([`crate::Store::put_named`]): a directory has none of its own.
    #[error("{0}")]
    IsDirectory(String),
    /// A name's version that a writer removed (`rm`, `rm --keep`) while
    /// it was read, by a reader that holds no writer lease: nodes of it
    /// went missing, and the catalog, read again, no longer holds it
    /// ([`crate::Store::get_version_range`]). Not damage: what was read of
    /// it is to be thrown away.
    #[error("{}@{number} was removed while it was read", .name.escape_debug())]
    VersionRemoved {
        /// The name.
        name: String,
        /// The version's number.
        number: u32,
    },
    /// A content read by its reference alone ([`crate::Store::get_range`])
    /// that a writer removed (`rm REF`, or `rm`/`gc` of the last name that
    /// held it) while it was read: a node of it went missing, and its root,
    /// looked up again, is gone too. Not damage: what was read of it is to
    /// be thrown away.
    #[error("content {reference} was removed while it was read")]
    ContentRemoved {
        /// The reference, in hex.
        reference: String,
    },
    /// A range that does not lie within its content.
    #[error("range {offset}:{len} (offset:length) is outside the content's {size} bytes")]
    RangeOutside {
        /// Where the range starts.
        offset: u64,
        /// Its length.
        len: u64,
        /// The content's length.
        size: u64,
    },
    /// File metadata the catalog cannot hold.
    #[error("invalid file metadata: {0}")]
    InvalidMeta(String),
    /// A name the catalog cannot hold.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// A chunk size below twice the reference size (the Python package's
    /// `UnsupportedChunkSizeError`).
    #[error(
        "unsupported chunk size {chunk_size}: must be at least {min} (twice the {reference_len}-byte reference size)"
    )]
    UnsupportedChunkSize {
        /// The chunk size asked for.
        chunk_size: usize,
        /// The smallest allowed.
        min: usize,
        /// The reference size of the chosen wrapper.
        reference_len: usize,
    },
    /// A chunk size so large that leaves (up to 8 S each) would no longer
    /// fit the memory bound of streaming puts and gets.
    #[error("unsupported chunk size {chunk_size}: must be at most {max}")]
    ChunkSizeTooLarge {
        /// The chunk size asked for.
        chunk_size: usize,
        /// The largest allowed.
        max: usize,
    },
    /// Reading the content to store, or writing a content out, failed.
    // The cause is part of the message, not also the error's source, so
    // that both a plain `{}` and a report of the chain (anyhow's `{:#}`)
    // say it, once. (It was the source alone: a caller that printed the
    // error said "I/O error" and nothing of why.)
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    /// The store's directory, configuration or key file is unusable.
    #[error("{0}")]
    Config(String),
    /// The key given is not the store's: its check value differs from the
    /// one recorded when the store was made, or (for a store made before
    /// check values) it opens none of the store's catalog records. Nothing
    /// was read or written with it.
    #[error("{0}")]
    WrongKey(String),
    /// A command that works in atomic batches (removing many names) failed
    /// after some of its batches were applied: those stay done, the rest is
    /// untouched, and the same command run again finishes the job. The
    /// cause is the error's source.
    #[error("{done} before it stopped (the rest is untouched; the same command again finishes it)")]
    PartlyDone {
        /// What the applied batches did, as a phrase ("removed 512 of 900
        /// names (600 versions)").
        done: String,
        /// Why the command stopped.
        #[source]
        cause: Box<StoreError>,
    },

    /// A command on many names ([`crate::Store::remove_names`],
    /// [`crate::Store::keep_newest`]) did what it does to every name but
    /// those whose catalog record fails to authenticate (or to parse):
    /// their versions cannot be read, so they were left as they are, and
    /// the names beside them in a batch were not held up. What was done
    /// stays done. [`crate::Store::mark_gone`] instead marks none of its
    /// names when one record is bad (`done` says so). [`crate::Store::gc`]
    /// of a store whose key was checked removes such records.
    ///
    /// Names whose record authenticates but was written by a newer seccs
    /// (see [`StoreError::NewerFormat`]) are left too, and listed apart in
    /// `newer`: they are not damaged, and gc leaves them.
    #[error("{}", damaged_records_said(.done, .names, .newer))]
    DamagedRecords {
        /// What was done, as a phrase ("removed 511 of 512 names (511
        /// versions)").
        done: String,
        /// The names left because their records fail to authenticate, as
        /// given.
        names: Vec<String>,
        /// The names left because a newer seccs wrote their records, as
        /// given.
        newer: Vec<String>,
    },

    /// A catalog record that authenticates under the store's key (so it is
    /// neither damaged nor forged) but whose format byte is above any this
    /// build reads: a newer seccs wrote it. Nothing of it can be read here
    /// (its name, its versions, what they reference), so nothing that uses
    /// it is done: it is never removed, and nothing it may reference is
    /// freed. A seccs that reads its format reads it.
    #[error(
        "{what}: written by a newer seccs (format {found}; this build reads formats {oldest} \
         to {newest}), so this build cannot read it and leaves it as it is; use a newer seccs"
    )]
    NewerFormat {
        /// What it is, as a phrase ("the catalog record of \"a\"", "2
        /// catalog records (their names cannot be read by this build)").
        what: String,
        /// The (highest) format byte found.
        found: u8,
        /// The oldest format this build reads.
        oldest: u8,
        /// The newest format this build reads.
        newest: u8,
    },

    /// [`crate::Store::delete`] of a content that only names' versions
    /// hold: undoing a put would take it from them. Remove the versions
    /// ([`crate::Store::remove_name`]) instead.
    #[error(
        "{reference} was put only as {}: remove a name's version instead (deleting a \
         reference undoes a put without a name)",
        .names.join(", ")
    )]
    HeldByNames {
        /// The reference, in hex.
        reference: String,
        /// The versions that hold it, as `NAME@N`.
        names: Vec<String>,
    },
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl StoreError {
    pub(crate) fn integrity(detail: impl Into<String>) -> Self {
        Self::Integrity(detail.into())
    }

    /// This error about one name, `name`: a catalog record of a newer
    /// format is said to be that name's (an open of a record by its key
    /// alone cannot tell whose it is). Other errors are returned as they
    /// are.
    pub(crate) fn of_name(self, name: &str) -> Self {
        match self {
            Self::NewerFormat {
                found,
                oldest,
                newest,
                ..
            } => Self::NewerFormat {
                what: format!("the catalog record of {}", crate::store::quoted_name(name)),
                found,
                oldest,
                newest,
            },
            other => other,
        }
    }

    /// The I/O error this is, if it is one ([`StoreError::Io`]), for a
    /// caller that acts on its kind (a closed pipe): the I/O error is part
    /// of the message rather than the error's source.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The message of [`StoreError::DamagedRecords`].
fn damaged_records_said(done: &str, names: &[String], newer: &[String]) -> String {
    let listed = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut said = done.to_string();
    if !names.is_empty() {
        said += &format!(
            "; left {} name(s) whose catalog record fails to authenticate, so that their \
             versions cannot be read (seccs gc removes such records{}): {}",
            names.len(),
            if newer.is_empty() {
                ""
            } else {
                ", once no record a newer seccs wrote is left"
            },
            listed(names)
        );
    }
    if !newer.is_empty() {
        said += &format!(
            "; left {} name(s) whose catalog record a newer seccs wrote (authentic, in a \
             format this build cannot read; use a newer seccs): {}",
            newer.len(),
            listed(newer)
        );
    }
    said
}

/// Shorthand for results of the content store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
