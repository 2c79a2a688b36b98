//! Message tails: the bytes a message carries after its encoded head, as a
//! sender reads them, one frame's worth at a time.
//!
//! Most tails lie in memory whole (a slice). A save's recovery fragments do
//! not: they are coded again from the ciphertext for each frame that
//! carries them ([`crate::sharing::SavedFragment`]), so that a save never
//! holds them whole beside the file.

use std::borrow::Cow;
use std::ops::Range;

use crate::error::Error;

/// The bytes of a message after its head, read by range.
pub trait Tail: Sync {
    /// How many bytes the tail has.
    fn len(&self) -> usize;

    /// Whether the tail has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `range` of the tail (within `0..self.len()`), borrowed where
    /// they lie or made for the call.
    fn bytes(&self, range: Range<usize>) -> Result<Cow<'_, [u8]>, Error>;
}

impl Tail for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn bytes(&self, range: Range<usize>) -> Result<Cow<'_, [u8]>, Error> {
        Ok(Cow::Borrowed(&self[range]))
    }
}

/// Bytes `range` of the message that is `head` then `tail`: the part in the
/// head, then the part in the tail.
pub(crate) fn message_range<'a>(
    head: &'a [u8],
    tail: &'a dyn Tail,
    range: Range<usize>,
) -> Result<(&'a [u8], Cow<'a, [u8]>), Error> {
    let h = head.len();
    let in_head = &head[range.start.min(h)..range.end.min(h)];
    let in_tail = tail.bytes(range.start.max(h) - h..range.end.max(h) - h)?;
    Ok((in_head, in_tail))
}
