//! One harness per backend: how to start its server, open it, reach behind
//! it, and stop and restart it.

use std::sync::Arc;

use seccs_backends::{
    PostgresBackend, PostgresConfig, RedisBackend, RedisConfig, S3Backend, S3Config, S3Credentials,
};
use seccs_store::backend::{Backend, BackendError, EmbeddedBackend, MemoryBackend};

use crate::support::{self, TestResult};

/// A backend under test and its round-trip counter, if it has one.
pub struct Opened {
    pub backend: Arc<dyn Backend>,
    pub round_trips: Option<Box<dyn Fn() -> u64 + Send + Sync>>,
}

impl Opened {
    fn counted<B: Backend + 'static>(backend: Arc<B>, count: fn(&B) -> u64) -> Self {
        let counter = Arc::clone(&backend);
        Self {
            backend,
            round_trips: Some(Box::new(move || count(&counter))),
        }
    }

    /// Round trips so far (0 for backends without a counter).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.as_ref().map_or(0, |f| f())
    }
}

pub trait Harness: Sized {
    /// Whether the backend talks to a server (network cases run only there).
    const NETWORK: bool;

    /// Cases of the model-based test: fewer where every step costs requests
    /// to a server (S3 has no batch read, so most of all there).
    const MODEL_CASES: u32 = if Self::NETWORK { 24 } else { 64 };

    /// A fresh, empty store on a fresh server.
    fn start() -> TestResult<Self>;

    /// A server whose data survives [`Harness::kill`] and
    /// [`Harness::restart`].
    fn start_persistent() -> TestResult<Self> {
        Self::start()
    }

    /// The backend (a new connection where there is a server).
    fn open(&self) -> TestResult<Opened>;

    /// Opening with wrong credentials (None where there are none).
    fn open_with_wrong_credentials(&self) -> Option<Result<Opened, BackendError>> {
        None
    }

    /// Replaces the stored value of `key` directly in the server, keeping
    /// its count.
    fn tamper(&self, opened: &Opened, key: &[u8], value: &[u8]) -> TestResult;

    /// Stops the server abruptly.
    fn kill(&mut self) -> TestResult {
        Ok(())
    }

    /// Starts it again on the same port and data.
    fn restart(&mut self) -> TestResult {
        Ok(())
    }

    /// The write requests the server served since the last call, each with
    /// the object key it names, where the harness sees them (S3).
    fn take_writes(&self) -> Option<Vec<support::ServedWrite>> {
        None
    }
}

/// Rewrites an entry through the backend itself, for local backends whose
/// storage has no other door.
fn tamper_through(opened: &Opened, key: &[u8], value: &[u8]) -> TestResult {
    let count = opened
        .backend
        .get(key)?
        .ok_or("tampered key is missing")?
        .count;
    let mut batch = seccs_store::backend::Batch::new();
    batch.put(key.to_vec(), value.to_vec(), count);
    opened.backend.apply(&batch)?;
    Ok(())
}

// ---------------------------------------------------------------- memory

pub struct Memory(Arc<MemoryBackend>);

impl Harness for Memory {
    const NETWORK: bool = false;

    fn start() -> TestResult<Self> {
        Ok(Self(Arc::new(MemoryBackend::new())))
    }

    fn open(&self) -> TestResult<Opened> {
        Ok(Opened {
            backend: self.0.clone(),
            round_trips: None,
        })
    }

    fn tamper(&self, _: &Opened, key: &[u8], value: &[u8]) -> TestResult {
        if self.0.tamper(key, value.to_vec()) {
            Ok(())
        } else {
            Err("tampered key is missing".into())
        }
    }
}

// -------------------------------------------------------------- embedded

pub struct Embedded {
    backend: Arc<EmbeddedBackend>,
    _dir: tempfile::TempDir,
}

impl Harness for Embedded {
    const NETWORK: bool = false;

    fn start() -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let backend = Arc::new(EmbeddedBackend::open(&dir.path().join("db"))?);
        Ok(Self { backend, _dir: dir })
    }

    fn open(&self) -> TestResult<Opened> {
        // One process opens an embedded database once: share the instance.
        Ok(Opened {
            backend: self.backend.clone(),
            round_trips: None,
        })
    }

    fn tamper(&self, opened: &Opened, key: &[u8], value: &[u8]) -> TestResult {
        tamper_through(opened, key, value)
    }
}

// ----------------------------------------------------------------- redis

pub struct Redis {
    server: support::RedisServer,
    prefix: String,
}

impl Redis {
    /// Stores bytes at `key` that the backend cannot decode (shorter than
    /// the count it keeps before each value), as damage on the server would.
    pub fn damage(&self, key: &[u8]) -> TestResult {
        self.set_raw(key, b"abc")
    }

    /// `key` under the store's prefix, as the server holds it.
    fn prefixed(&self, key: &[u8]) -> Vec<u8> {
        let mut full = self.prefix.as_bytes().to_vec();
        full.extend_from_slice(key);
        full
    }

    /// Stores `value` as it is (no count before it) at `key`.
    pub fn set_raw(&self, key: &[u8], value: &[u8]) -> TestResult {
        redis::cmd("SET")
            .arg(self.prefixed(key))
            .arg(value)
            .query::<()>(&mut self.server.raw()?)?;
        Ok(())
    }

    /// Makes `key` (under the store's prefix) a hash, as no store writes it.
    pub fn set_hash(&self, key: &[u8]) -> TestResult {
        redis::cmd("HSET")
            .arg(self.prefixed(key))
            .arg("f")
            .arg("v")
            .query::<()>(&mut self.server.raw()?)?;
        Ok(())
    }

    /// Empties the server, as a restart without persistence would.
    pub fn flush_all(&self) -> TestResult {
        redis::cmd("FLUSHALL").query::<()>(&mut self.server.raw()?)?;
        Ok(())
    }

    fn config(&self) -> TestResult<RedisConfig> {
        Ok(RedisConfig::parse(&format!(
            "{}?prefix={}",
            self.server.url(),
            self.prefix
        ))?)
    }
}

impl Harness for Redis {
    const NETWORK: bool = true;

    fn start() -> TestResult<Self> {
        Ok(Self {
            server: support::RedisServer::start()?,
            prefix: "store1:".into(),
        })
    }

    fn start_persistent() -> TestResult<Self> {
        Ok(Self {
            server: support::RedisServer::start_persistent()?,
            prefix: "store1:".into(),
        })
    }

    fn open(&self) -> TestResult<Opened> {
        let config = self
            .config()?
            .with_credentials(None, Some(support::REDIS_PASSWORD));
        Ok(Opened::counted(
            Arc::new(RedisBackend::connect(config)?),
            RedisBackend::round_trips,
        ))
    }

    fn open_with_wrong_credentials(&self) -> Option<Result<Opened, BackendError>> {
        let config = match self.config() {
            Ok(c) => c.with_credentials(None, Some("not-the-password")),
            Err(e) => return Some(Err(BackendError::Config(e.to_string()))),
        };
        Some(RedisBackend::connect(config).map(|b| Opened {
            backend: Arc::new(b),
            round_trips: None,
        }))
    }

    fn tamper(&self, _: &Opened, key: &[u8], value: &[u8]) -> TestResult {
        let mut conn = self.server.raw()?;
        let mut full = self.prefix.as_bytes().to_vec();
        full.extend_from_slice(key);
        let raw: Vec<u8> = redis::cmd("GET").arg(&full).query(&mut conn)?;
        let mut stored = raw.get(..8).ok_or("tampered key is missing")?.to_vec();
        stored.extend_from_slice(value);
        redis::cmd("SET")
            .arg(&full)
            .arg(stored)
            .query::<()>(&mut conn)?;
        Ok(())
    }

    fn kill(&mut self) -> TestResult {
        self.server.kill()
    }

    fn restart(&mut self) -> TestResult {
        self.server.restart()
    }
}

// -------------------------------------------------------------- postgres

pub struct Postgres {
    server: support::PostgresServer,
}

const PG_TABLE: &str = "store_nodes";

impl Postgres {
    /// Gives the entry at `key` a count the backend cannot decode (a
    /// negative one), as damage on the server would.
    pub fn damage(&self, key: &[u8]) -> TestResult {
        let n = self.server.client()?.execute(
            &format!("UPDATE {PG_TABLE} SET count = -5 WHERE key = $1"),
            &[&key],
        )?;
        match n {
            1 => Ok(()),
            _ => Err("damaged key is missing".into()),
        }
    }

    /// Lets the table hold a NULL value and count, as a table altered by
    /// hand may, and sets both NULL at `key`.
    pub fn null_row(&self, key: &[u8]) -> TestResult {
        let mut client = self.server.client()?;
        client.batch_execute(&format!(
            "ALTER TABLE {PG_TABLE} ALTER COLUMN value DROP NOT NULL, \
             ALTER COLUMN count DROP NOT NULL"
        ))?;
        let n = client.execute(
            &format!("UPDATE {PG_TABLE} SET value = NULL, count = NULL WHERE key = $1"),
            &[&key],
        )?;
        match n {
            1 => Ok(()),
            _ => Err("damaged key is missing".into()),
        }
    }
}

impl Harness for Postgres {
    const NETWORK: bool = true;

    fn start() -> TestResult<Self> {
        let harness = Self {
            server: support::PostgresServer::start()?,
        };
        // Create the table once, as `seccs init` does.
        PostgresBackend::create(PostgresConfig::parse(&harness.server.url(PG_TABLE))?)?;
        Ok(harness)
    }

    fn open(&self) -> TestResult<Opened> {
        let config = PostgresConfig::parse(&self.server.url(PG_TABLE))?;
        Ok(Opened::counted(
            Arc::new(PostgresBackend::connect(config)?),
            PostgresBackend::round_trips,
        ))
    }

    fn open_with_wrong_credentials(&self) -> Option<Result<Opened, BackendError>> {
        let config = match PostgresConfig::parse(&self.server.auth_url("wrong-password", PG_TABLE))
        {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        Some(PostgresBackend::connect(config).map(|b| Opened {
            backend: Arc::new(b),
            round_trips: None,
        }))
    }

    fn tamper(&self, _: &Opened, key: &[u8], value: &[u8]) -> TestResult {
        let mut client = self.server.client()?;
        let n = client.execute(
            &format!("UPDATE {PG_TABLE} SET value = $2 WHERE key = $1"),
            &[&key, &value],
        )?;
        if n == 1 {
            Ok(())
        } else {
            Err("tampered key is missing".into())
        }
    }

    fn kill(&mut self) -> TestResult {
        self.server.kill()
    }

    fn restart(&mut self) -> TestResult {
        self.server.restart()
    }
}

// -------------------------------------------------------------------- s3

pub struct S3 {
    server: support::S3Server,
}

const S3_PREFIX: &str = "stores/one";

pub fn s3_credentials(secret: &str) -> S3Credentials {
    S3Credentials {
        access_key_id: support::S3_ACCESS_KEY.into(),
        secret_access_key: secret.into(),
    }
}

impl Harness for S3 {
    const NETWORK: bool = true;
    const MODEL_CASES: u32 = 8;

    fn start() -> TestResult<Self> {
        Ok(Self {
            server: support::S3Server::start()?,
        })
    }

    fn open(&self) -> TestResult<Opened> {
        let config = S3Config::parse(&self.server.url(S3_PREFIX))?;
        let backend = S3Backend::connect(config, Some(s3_credentials(support::S3_SECRET_KEY)))?;
        Ok(Opened::counted(Arc::new(backend), S3Backend::round_trips))
    }

    fn open_with_wrong_credentials(&self) -> Option<Result<Opened, BackendError>> {
        let config = match S3Config::parse(&self.server.url(S3_PREFIX)) {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        Some(
            S3Backend::connect(config, Some(s3_credentials("wrong-secret"))).map(|b| Opened {
                backend: Arc::new(b),
                round_trips: None,
            }),
        )
    }

    fn tamper(&self, _: &Opened, key: &[u8], value: &[u8]) -> TestResult {
        let path = self.server.object_dir(S3_PREFIX).join(hex::encode(key));
        let raw = std::fs::read(&path)?;
        let mut stored = raw.get(..8).ok_or("tampered object is short")?.to_vec();
        stored.extend_from_slice(value);
        std::fs::write(&path, stored)?;
        Ok(())
    }

    fn kill(&mut self) -> TestResult {
        self.server.kill()
    }

    fn restart(&mut self) -> TestResult {
        self.server.restart()
    }

    fn take_writes(&self) -> Option<Vec<support::ServedWrite>> {
        Some(self.server.take_writes())
    }
}
