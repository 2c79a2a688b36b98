//! The JSON bodies of the `/v1/` API, shared by the server and the client.
//! Bytes travel as lowercase hex.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::lifecycle::KeyState;

/// Largest number of items in one batch request.
pub const MAX_BATCH: usize = 1024;

/// Largest plaintext of one item of `POST /v1/keys/{name}/encrypt`
/// (256 KiB): larger ones are refused with `413` (`too-large`) before any
/// is encrypted. Larger data is encrypted locally under a DEK (`seccs kms
/// encrypt --kek`). The server also refuses an encrypt batch whose
/// ciphertexts would not fit in one decrypt request under its body limit,
/// so what it encrypts it can always decrypt and rewrap.
pub const MAX_ITEM_PLAINTEXT: usize = 256 * 1024;

/// `POST /v1/new`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewRequest {
    /// How many KEK/DEK pairs to create (1 ..= [`MAX_BATCH`]).
    pub count: usize,
}

/// Answer to `POST /v1/new`.
#[derive(Clone, Serialize, Deserialize, Zeroize)]
pub struct NewResponse {
    /// The new KEKs, hex.
    pub keks: Vec<String>,
}

/// `POST /v1/key`.
#[derive(Clone, Serialize, Deserialize, Zeroize)]
pub struct KeyRequest {
    /// KEKs, hex.
    pub keks: Vec<String>,
}

/// One result of a batch: a value, or an error code.
#[derive(Clone, Serialize, Deserialize, Zeroize)]
pub struct Item {
    /// The value (hex), on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A second value (hex): the wrapped key of `datakey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped: Option<String>,
    /// The error code, on failure (`not-found`, `tampered`, `malformed`,
    /// `unsupported-version` (a ciphertext whose version byte is not 1:
    /// one a newer seccs wrote, which this build does not read), `state`,
    /// `version`). The batch itself is answered `200`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the error means, on failure (no key material).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Answer to every batch request.
#[derive(Clone, Serialize, Deserialize, Zeroize)]
pub struct BatchResponse {
    /// One result per requested item, in order.
    pub results: Vec<Item>,
}

/// `POST /v1/keys`: create a named key. Answered `200` (not `201`) with
/// the new key's [`KeyInfo`](crate::lifecycle::KeyInfo), as
/// `GET /v1/keys/{name}` and the `rotate`, `state` and `config` routes
/// answer theirs:
///
/// ```text
/// {"name": NAME, "state": STATE, "latest_version": N, "min_decrypt_version": M,
///  "versions": [{"version": V, "created": SECONDS, "destroyed": false}, ...],
///  "transitions": [{"state": STATE, "at": SECONDS}, ...]}
/// ```
///
/// STATE is one of `pre-activation`, `active`, `suspended`, `deactivated`,
/// `compromised`, `destroyed`; versions count from 1, one entry each in
/// order, `latest_version` the last; `created` and `at` are whole seconds
/// since the Unix epoch (UTC), as the server's clock read them;
/// `transitions` lists every state change oldest first, the first being
/// the creation's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    /// The name.
    pub name: String,
    /// `pre-activation` or `active` (default).
    #[serde(default)]
    pub state: Option<KeyState>,
}

/// `POST /v1/keys/{name}/state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateRequest {
    /// The state to enter.
    pub state: KeyState,
}

/// `POST /v1/keys/{name}/config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigRequest {
    /// The new minimum decryption version.
    pub min_decrypt_version: u32,
}

/// One item of an encrypt, decrypt or rewrap batch.
#[derive(Clone, Serialize, Deserialize, Zeroize)]
pub struct DataItem {
    /// Plaintext (encrypt) or ciphertext (decrypt, rewrap), hex.
    pub data: String,
    /// The encryption context, hex (default empty).
    #[serde(default)]
    pub context: String,
}

/// `POST /v1/keys/{name}/encrypt|decrypt|rewrap`.
#[derive(Clone, Serialize, Deserialize, Zeroize)]
pub struct DataRequest {
    /// The items.
    pub items: Vec<DataItem>,
}

/// `POST /v1/keys/{name}/datakey`. A context so long that the wrapped key
/// would not fit one decrypt request under the server's body limit is
/// refused with `413` (`too-large`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataKeyRequest {
    /// How many data keys.
    pub count: usize,
    /// The encryption context, hex (default empty).
    #[serde(default)]
    pub context: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    /// KEK/DEK pairs held.
    pub keys: usize,
    /// Named keys held.
    pub named_keys: usize,
}

/// `GET /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    /// The names of the named keys.
    pub names: Vec<String>,
}

/// The body of every `/v1/` error answer (all but a `431` for a header
/// block too large, refused before its path is read), with the answer's
/// content type `application/json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code: `not-found` (404: no such key, or no such route),
    /// `tampered` (422), `malformed` (400), `unsupported-version` (400: a
    /// ciphertext whose version byte is not 1, one a newer seccs wrote; in
    /// practice an item's code, see [`Item`]), `state`, `transition`,
    /// `version`, `exists`, `limit` (409: the key has as many versions or
    /// state changes as one key may), `name` (400), `unauthorized` (401),
    /// `too-large` (413: a body above the server's limit, or an item or
    /// batch whose answer would not fit one), `method-not-allowed` (405),
    /// `corrupt-key` (500), `audit` (503: the audit log cannot be written
    /// or synced), `timeout` (503: the request's deadline passed),
    /// `internal` (500).
    pub error: String,
    /// A human-readable message without key material.
    pub message: String,
}
