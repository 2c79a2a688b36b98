//! The seccs content store (sec-cs): deduplicating, encrypted, authenticated
//! storage of contents on top of any key-value store.
//!
//! - [`Store`]: put, get, delete contents; the one type most users need.
//!   [`Store::open`] refuses a key that is not the store's;
//!   [`Store::new_unchecked`], as its name says, does not check.
//! - [`dir::StoreDir`]: a store kept on disk (its config, key check and
//!   lock); [`dir::StoreDir::open_store`] opens its [`Store`] and refuses a
//!   key that is not the store's by the check value it recorded.
//! - [`catalog`]: the encrypted names ([`Store::put_named`],
//!   [`Store::resolve`], [`Store::list`]).
//! - [`ContentRef`]: a content's reference, root digest ‖ length.
//! - [`Params`]: chunk size and [`WrapperKind`], fixed when a store is created.
//! - [`mirror`]: makes one store an exact copy of another under the same
//!   key, on any backend (`seccs copy`).
//! - [`backend::Backend`]: the key-value interface; [`backend::MemoryBackend`]
//!   and [`backend::EmbeddedBackend`] are built in, network backends live in
//!   `seccs-backends`.
//!
//! ```
//! use std::sync::Arc;
//! use seccs_core::SecretKey;
//! use seccs_store::{Params, Store, WrapperKind, backend::MemoryBackend};
//!
//! let key = SecretKey::generate()?;
//! let params = Params::new(256, WrapperKind::AesSiv)?;
//! let store = Store::open(Arc::new(MemoryBackend::new()), params, &key)?;
//!
//! let content = vec![7u8; 100_000];
//! let r = store.put(&content)?;
//! assert_eq!(store.get(&r)?, content);
//! store.delete(&r)?;
//! assert_eq!(store.usage()?.entries, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Names from the Python package
//! | Python `seccs` | here |
//! |---|---|
//! | `SecCSLite(chunk_size, database, crypto_wrapper)` | [`Store::open`] with [`Params`] |
//! | `put_content` | [`Store::put`] |
//! | `put_content_and_check_if_new` | [`Store::put_and_check_if_new`] |
//! | `get_content` | [`Store::get`] (and [`Store::get_to`], [`Store::get_range`]) |
//! | `delete_content` | [`Store::delete`] |
//! | `crypto_wrapper.AES_SIV_256` etc. | [`WrapperKind`] |
//! | `UnsupportedChunkSizeError` | [`StoreError::UnsupportedChunkSize`] |
//!
//! The Python `ignore_rc` option (put or delete without touching reference
//! counts) is not offered: with exact counts it can only produce a store that
//! either leaks nodes or loses them on the next delete, which is what made the
//! Python package fail to return to zero entries.

pub mod backend;
pub mod bench;
pub mod catalog;
pub mod chunker;
pub mod descriptor;
pub mod dir;
mod error;
pub mod file_name;
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
pub mod mirror;
mod node;
mod params;
mod put;
mod store;
mod verify;
pub mod wrapper;

pub use error::{Result, StoreError};
pub use params::{Compression, ContentRef, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, Params, ZstdLevel};
pub use put::PutOutcome;
pub use store::{DeleteReport, Listing, Store, StoreStats, check_name};
pub use verify::{Finding, GcReport, VerifyReport};
pub use wrapper::WrapperKind;
