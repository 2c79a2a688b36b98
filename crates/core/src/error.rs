//! The error type of `seccs-core`.

/// What can go wrong in the shared foundations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// Key material had the wrong length.
    #[error("a key must be {expected} bytes, got {actual}")]
    KeyLength {
        /// The required length.
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// A hex string could not be decoded.
    #[error("invalid hex: {0}")]
    Hex(&'static str),
}
