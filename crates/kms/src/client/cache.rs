//! The DEK cache of the local facility.
//!
//! Entries expire after a configurable time measured by an injectable
//! [`Clock`] (tests move a [`ManualClock`]). An expired entry is removed —
//! and its DEK and prepared cipher zeroized by their `Drop` — at the next
//! cache operation after it expires (every lookup checks the earliest
//! expiry). Only successfully fetched DEKs are ever inserted.
//!
//! Seed flaw fixed here: keas.kmi's local facility stored whatever body the
//! server answered, so a `404 Key not found` page was cached for an hour and
//! used as a DEK. The client only turns a `200` with exactly 32 bytes into a
//! DEK, and errors never reach this cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use seccs_core::SecretKey;

use crate::ciphertext::MessageCipher;

/// A monotonic time source.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time elapsed since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to (for tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut n = self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *n += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A cached DEK with its prepared message cipher.
pub struct CachedKey {
    dek: SecretKey,
    cipher: MessageCipher,
}

impl std::fmt::Debug for CachedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedKey").finish_non_exhaustive()
    }
}

impl CachedKey {
    /// Prepares `dek` for use.
    pub fn new(dek: SecretKey) -> Self {
        let cipher = MessageCipher::new(&dek, 0);
        Self { dek, cipher }
    }

    /// The DEK.
    pub fn dek(&self) -> &SecretKey {
        &self.dek
    }

    /// The message cipher keyed from the DEK.
    pub fn cipher(&self) -> &MessageCipher {
        &self.cipher
    }
}

struct Entry {
    key: Arc<CachedKey>,
    expires: Duration,
}

#[derive(Default)]
struct Map {
    entries: HashMap<[u8; 32], Entry>,
    next_expiry: Option<Duration>,
}

/// DEKs by an opaque 32-byte id (a hash of the KEK and the server).
#[derive(Debug)]
pub struct DekCache {
    ttl: Duration,
    clock: Arc<dyn Clock>,
    map: RwLock<Map>,
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// The longest a DEK stays cached: an hour. A longer TTL is taken as an
/// hour (an expiry is the clock's time plus the TTL, which must not
/// overflow, and a key should not outlive its revocation by long).
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

impl DekCache {
    /// A cache whose entries live `ttl` by `clock`, at most
    /// [`MAX_CACHE_TTL`]. A zero `ttl` caches nothing.
    pub fn new(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            ttl: ttl.min(MAX_CACHE_TTL),
            clock,
            map: RwLock::new(Map::default()),
        }
    }

    /// The cached key for `id`, if present and not expired.
    pub fn get(&self, id: &[u8; 32]) -> Option<Arc<CachedKey>> {
        let now = self.clock.now();
        {
            let map = self
                .map
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if map.next_expiry.is_none_or(|t| now < t) {
                return map.entries.get(id).map(|e| Arc::clone(&e.key));
            }
        }
        self.purge_expired();
        let map = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entries.get(id).map(|e| Arc::clone(&e.key))
    }

    /// Caches `key` under `id`.
    pub fn insert(&self, id: [u8; 32], key: Arc<CachedKey>) {
        self.insert_for(id, key, self.ttl);
    }

    /// Caches `key` under `id` for `ttl`, at most the cache's own TTL: a
    /// cache shared by callers that each keep keys for their own time. A
    /// zero `ttl` caches nothing.
    pub fn insert_for(&self, id: [u8; 32], key: Arc<CachedKey>, ttl: Duration) {
        let ttl = ttl.min(self.ttl);
        if ttl.is_zero() {
            return;
        }
        // A clock so far along that it cannot add the TTL keeps nothing
        // rather than panic.
        let Some(expires) = self.clock.now().checked_add(ttl) else {
            return;
        };
        self.purge_expired();
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entries.insert(id, Entry { key, expires });
        map.next_expiry = Some(map.next_expiry.map_or(expires, |t| t.min(expires)));
    }

    /// Removes (and so zeroizes, once no caller holds them) every expired
    /// entry.
    pub fn purge_expired(&self) {
        let now = self.clock.now();
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entries.retain(|_, e| now < e.expires);
        map.next_expiry = map.entries.values().map(|e| e.expires).min();
    }

    /// Removes every entry.
    pub fn clear(&self) {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entries.clear();
        map.next_expiry = None;
    }

    /// How many entries are held (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entries
            .len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_by_the_injected_clock() {
        let clock = Arc::new(ManualClock::new());
        let cache = DekCache::new(Duration::from_secs(60), clock.clone());
        cache.insert(
            [1; 32],
            Arc::new(CachedKey::new(SecretKey::from_bytes([5; 32]))),
        );
        assert!(cache.get(&[1; 32]).is_some());
        clock.advance(Duration::from_secs(59));
        assert!(cache.get(&[1; 32]).is_some());
        clock.advance(Duration::from_secs(1));
        assert!(cache.get(&[1; 32]).is_none());
        assert_eq!(cache.len(), 0, "expired entry was dropped, not kept");
    }

    /// A TTL of `Duration::MAX` is taken as an hour: the expiry, now plus
    /// the TTL, overflowed and panicked at the first insert.
    #[test]
    fn a_ttl_past_an_hour_is_taken_as_an_hour() {
        let clock = Arc::new(ManualClock::new());
        clock.advance(Duration::from_secs(5));
        let cache = DekCache::new(Duration::MAX, clock.clone());
        cache.insert(
            [1; 32],
            Arc::new(CachedKey::new(SecretKey::from_bytes([5; 32]))),
        );
        assert!(cache.get(&[1; 32]).is_some());
        clock.advance(MAX_CACHE_TTL - Duration::from_secs(1));
        assert!(cache.get(&[1; 32]).is_some());
        clock.advance(Duration::from_secs(1));
        assert!(cache.get(&[1; 32]).is_none());
        let config =
            super::super::ClientConfig::new("https://127.0.0.1:1").with_cache_ttl(Duration::MAX);
        assert_eq!(config.cache_ttl, MAX_CACHE_TTL);
    }

    #[test]
    fn an_entry_lives_its_own_ttl_at_most_the_caches() {
        let clock = Arc::new(ManualClock::new());
        let cache = DekCache::new(Duration::from_secs(60), clock.clone());
        let key = || Arc::new(CachedKey::new(SecretKey::from_bytes([5; 32])));
        cache.insert_for([1; 32], key(), Duration::from_secs(1));
        cache.insert_for([2; 32], key(), Duration::from_secs(600));
        cache.insert_for([3; 32], key(), Duration::ZERO);
        assert!(cache.get(&[3; 32]).is_none());
        clock.advance(Duration::from_secs(1));
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[2; 32]).is_some());
        clock.advance(Duration::from_secs(59));
        assert!(cache.get(&[2; 32]).is_none());
    }
}
