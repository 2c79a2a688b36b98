//! seccs share network: files secret-shared t-of-n across servers that talk
//! through a broker (a rewrite of the Python `secshrnet`, with its flaws fixed).
//!
//! - [`Client`]: save, load, list and remove files; [`server::start`] and
//!   [`server::serve`]: the servers that keep the records.
//! - [`Broker`]: publish, subscribe, presence; [`broker::RedisBroker`],
//!   [`broker::NatsBroker`] and [`broker::MemoryBroker`].
//! - [`sharing`]: password layer, data key split with Shamir's scheme, and the
//!   ciphertext erasure-coded so each server stores about 1/t of it; a
//!   save codes its recovery fragments again as it sends them ([`tail`]),
//!   never holding them whole.
//! - [`keyfile`]: a content store's key kept on the network.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), seccs_net::Error> {
//! use std::sync::Arc;
//! use seccs_net::{Client, ClientOptions, Password, broker::MemoryBroker, server};
//!
//! let broker = Arc::new(MemoryBroker::new());
//! let roots = tempfile::tempdir().map_err(|e| seccs_net::Error::Config(e.to_string()))?;
//! let mut servers = Vec::new();
//! for i in 0..3 {
//!     let root = roots.path().join(i.to_string());
//!     servers.push(server::start(broker.clone(), &root, None, std::time::Duration::from_secs(5)).await?);
//! }
//! // The default password KDF (Argon2id, 64 MiB, 3 passes), as the CLI uses.
//! let options = ClientOptions::default().with_timeout(std::time::Duration::from_secs(5));
//! let client = Client::new(broker, options).await?;
//! let password = Password::new("correct horse");
//! let saved = client.save("notes/today", b"hello", &password).await?;
//! assert_eq!((saved.stored_on, saved.threshold), (3, 2));
//! assert!(saved.warnings.is_empty());
//! let loaded = client.load("notes/today", None, &password).await?;
//! assert_eq!(loaded.data, b"hello");
//! # Ok(()) }
//! ```
//!
//! # The seed's flaws, and where each is fixed
//!
//! | seed flaw | fixed in |
//! |---|---|
//! | every server stores the full ciphertext | [`sharing`] (Reed-Solomon fragments, ≈ 1/t each) |
//! | a tag whose base64 contains `/` crashes a server thread | [`store`] (hex SHA-256 file names) |
//! | no request ids | [`message`] ([`message::RequestId`] on every request and reply) |
//! | a fixed 5-second wait, no check of acknowledgements | [`client`] (timeout, `min_acks`, rollback) |
//! | no delete, no versions | [`client`] (`TAG@N`, [`Client::remove`]) |
//! | a lying or corrupt share goes unnoticed | [`record`] (authenticated manifest with hashes) |
//! | protobuf packets trusted as they come | [`packet`], [`message`] (bounded codec, dropped when bad) |
//! | heartbeats and reconnection broken | [`broker`] (ping, resubscribe with backoff) |
//! | a large file overflows the broker's output buffer | [`packet`] (256 KiB frames, acknowledged window) |

#![forbid(unsafe_code)]

pub mod broker;
pub mod client;
mod codec;
pub mod config;
pub mod crypto;
mod endpoint;
mod error;
mod fragments;
pub mod keyfile;
pub mod message;
pub mod packet;
pub mod record;
pub mod server;
pub mod sharing;
pub mod store;
pub mod tail;

pub use broker::Broker;
pub use client::{
    CheckReport, Client, ClientOptions, LoadReport, NotStored, RemoveReport, SaveReport,
};
pub use config::Config;
pub use crypto::{Kdf, Password};
pub use error::{BrokerError, DecodeError, Error};

/// Splits `TAG@N` into the tag and version N; a tag without a numeric `@N`
/// suffix is returned whole with no version.
pub fn parse_tag_version(s: &str) -> (&str, Option<u64>) {
    if let Some((tag, v)) = s.rsplit_once('@')
        && !tag.is_empty()
        && !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = v.parse()
    {
        return (tag, Some(n));
    }
    (s, None)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tag_at_version_parses_only_numeric_suffixes() {
        use super::parse_tag_version as p;
        assert_eq!(p("a@3"), ("a", Some(3)));
        assert_eq!(p("a@b@12"), ("a@b", Some(12)));
        assert_eq!(p("mail@example.org"), ("mail@example.org", None));
        assert_eq!(p("@5"), ("@5", None));
        assert_eq!(p("a@"), ("a@", None));
    }
}
