//! How much of a server's answer the client reads.
//!
//! Every answer is read within a bound of what its route can legitimately
//! return, error answers included: a seed route or a status a few bytes,
//! a named key's metadata at most [`KEY_INFO_ANSWER`], a listing of names
//! [`LIST_ANSWER`], and a batch about twice its request (an encrypt
//! answer's ciphertexts are its plaintexts and a fixed overhead each, in
//! hex as the request) with [`ITEM_ROOM`] more per item. An answer that
//! declares a longer body, or sends more, is
//! [`KmsError::AnswerTooLarge`], naming the bound, and is not read
//! further.
//!
//! Flaw fixed here: the client read every answer whole with no bound, so a
//! broken or hostile server (or anything answering at the URL) could have
//! it allocate until the machine ran out of memory.

use zeroize::Zeroize;

use super::transport;
use crate::KmsError;

/// The bound of a short answer: the seed routes (a KEK, a DEK, the status
/// line), `GET /v1/status`, and the room of any answer for its JSON
/// framing and error message.
pub(crate) const SHORT_ANSWER: u64 = 64 << 10;
/// The bound of a named key's metadata: up to 4,096 versions and 4,096
/// state changes, a few hundred bytes each at most.
pub(crate) const KEY_INFO_ANSWER: u64 = 8 << 20;
/// The bound of a listing of named keys' names (the server sets no bound
/// on their number: about 100,000 names of the longest kind).
pub(crate) const LIST_ANSWER: u64 = 32 << 20;
/// The room of one batch item in its answer beyond twice its share of the
/// request: its JSON, an error code and message.
pub(crate) const ITEM_ROOM: u64 = 1024;

/// The bound of the answer to a batch request of `request_len` bytes and
/// `items` items.
pub(crate) fn batch_answer(request_len: usize, items: usize) -> u64 {
    let request = u64::try_from(request_len).unwrap_or(u64::MAX);
    let items = u64::try_from(items).unwrap_or(u64::MAX);
    SHORT_ANSWER
        .saturating_add(request.saturating_mul(2))
        .saturating_add(items.saturating_mul(ITEM_ROOM))
}

/// What an answer may hold, and the route it answers (for the error).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    /// The most bytes read.
    pub(crate) limit: u64,
    /// The route, as the error names it (`POST /key`).
    pub(crate) route: &'static str,
}

/// The body of `resp`, within `bound`: a declared length above it is
/// refused before anything is read, and a body that grows past it is
/// refused (and what was read of it wiped) as soon as it does.
pub(crate) async fn read_bounded(
    mut resp: reqwest::Response,
    bound: Bound,
) -> Result<Vec<u8>, KmsError> {
    let too_large = || KmsError::AnswerTooLarge {
        route: bound.route,
        limit: bound.limit,
    };
    let declared = resp.content_length();
    if declared.is_some_and(|len| len > bound.limit) {
        return Err(too_large());
    }
    // Room for a declared body at once, so that a key read is not copied
    // by the buffer growing.
    let room = declared.unwrap_or(0).min(bound.limit).min(SHORT_ANSWER);
    let mut body = Vec::with_capacity(usize::try_from(room).unwrap_or(0));
    // Bounded: each chunk adds bytes, and more than the bound ends it.
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        body.zeroize();
        transport(e)
    })? {
        if (body.len() as u64).saturating_add(chunk.len() as u64) > bound.limit {
            body.zeroize();
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_has_room_for_twice_its_request_and_each_item() {
        assert_eq!(batch_answer(0, 0), SHORT_ANSWER);
        assert_eq!(batch_answer(100, 2), SHORT_ANSWER + 200 + 2 * ITEM_ROOM);
        assert_eq!(batch_answer(usize::MAX, usize::MAX), u64::MAX);
    }
}
