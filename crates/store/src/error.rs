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
    #[error(
        "{done}; left {} name(s) whose catalog record fails to authenticate, so that their \
         versions cannot be read (seccs gc removes such records): {}",
        .names.len(),
        .names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
    )]
    DamagedRecords {
        /// What was done, as a phrase ("removed 511 of 512 names (511
        /// versions)").
        done: String,
        /// The names left, as given.
        names: Vec<String>,
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

/// Shorthand for results of the content store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
