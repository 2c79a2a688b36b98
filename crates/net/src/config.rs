//! The TOML configuration shared by servers and clients.
//!
//! ```toml
//! broker = "redis://127.0.0.1:6379"   # or "nats://127.0.0.1:4222", or "memory"
//! name = "basement-nas"               # optional: how a server calls itself
//! timeout_secs = 30                   # optional: wait for replies and acks
//! threshold = 3                       # optional: default is n/2 + 1 of the servers online
//! min_acks = 4                        # optional: acks a save needs (at least the threshold)
//! [kdf]                               # optional: Argon2id 64 MiB, 3 passes by default
//! algorithm = "argon2id"
//! memory_kib = 65536
//! iterations = 3
//! parallelism = 1
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::crypto::Kdf;
use crate::error::Error;

/// File name of the configuration inside a server's root.
pub const CONFIG_FILE: &str = "seccs-share.toml";

/// The configuration of a host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Broker URL: `redis://…`, `nats://…` or `memory`. The one required key.
    pub broker: String,
    /// A server's display name (default: its id).
    #[serde(default)]
    pub name: Option<String>,
    /// Seconds to wait for replies and acknowledgements.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Records needed to rebuild a file (default: n/2 + 1 of the servers online).
    #[serde(default)]
    pub threshold: Option<usize>,
    /// Acknowledgements a save needs (default: the threshold).
    #[serde(default)]
    pub min_acks: Option<usize>,
    /// The password KDF used for new saves.
    #[serde(default)]
    pub kdf: Kdf,
}

/// The longest reply timeout: a day. A deadline is the time now plus the
/// timeout, which must stay within what the clock can hold.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

fn default_timeout() -> u64 {
    30
}

impl Config {
    /// A configuration with only the broker set.
    pub fn new(broker: impl Into<String>) -> Self {
        Self {
            broker: broker.into(),
            name: None,
            timeout_secs: default_timeout(),
            threshold: None,
            min_acks: None,
            kdf: Kdf::default(),
        }
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let c: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        c.kdf.check()?;
        if !(1..=MAX_TIMEOUT_SECS).contains(&c.timeout_secs) {
            return Err(Error::Config(format!(
                "timeout_secs must be from 1 to {MAX_TIMEOUT_SECS} (a day), not {}",
                c.timeout_secs
            )));
        }
        if c.threshold == Some(0) {
            return Err(Error::Config("threshold must be at least 1".into()));
        }
        match (c.min_acks, c.threshold) {
            (Some(0), _) => {
                return Err(Error::Config("min_acks must be at least 1".into()));
            }
            (Some(m), Some(t)) if m < t => {
                return Err(Error::Config(format!(
                    "min_acks = {m} is below threshold = {t}: a save stored on fewer than \
                     threshold servers could not be loaded; raise min_acks or remove it"
                )));
            }
            _ => {}
        }
        Ok(c)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read config {}", path.display()), e))?;
        Self::parse(&text)
    }

    /// The reply timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeout past a day is refused at parse: a deadline of now plus
    /// 2^64 - 1 seconds overflowed the clock and panicked the client.
    #[test]
    fn a_timeout_is_from_one_second_to_a_day() -> Result<(), Error> {
        let with =
            |secs: u64| Config::parse(&format!("broker = \"memory\"\ntimeout_secs = {secs}"));
        assert_eq!(with(86_400)?.timeout(), Duration::from_secs(86_400));
        for secs in [0, 86_401, u64::MAX] {
            let Err(Error::Config(text)) = with(secs) else {
                panic!("timeout_secs = {secs} was taken");
            };
            assert!(text.contains("from 1 to 86400"), "{text}");
        }
        Ok(())
    }

    #[test]
    fn broker_is_the_one_required_key() -> Result<(), Error> {
        let c = Config::parse("broker = \"memory\"")?;
        assert_eq!(c, Config::new("memory"));
        assert!(Config::parse("").is_err());
        assert!(Config::parse("broker = \"memory\"\nbogus = 1").is_err());
        let s = Config::parse(
            "broker = \"memory\"\n[kdf]\nalgorithm = \"scrypt\"\nlog_n = 20\nr = 8\np = 1",
        )?;
        assert_eq!(s.kdf, Kdf::SEED_SCRYPT);
        Ok(())
    }

    #[test]
    fn min_acks_below_the_threshold_is_refused() -> Result<(), Error> {
        let c = Config::parse("broker = \"memory\"\nthreshold = 3\nmin_acks = 4")?;
        assert_eq!((c.threshold, c.min_acks), (Some(3), Some(4)));
        match Config::parse("broker = \"memory\"\nthreshold = 3\nmin_acks = 2") {
            Err(Error::Config(m)) => {
                assert!(m.contains("min_acks = 2 is below threshold = 3"), "{m}")
            }
            other => panic!("expected a config error, got {other:?}"),
        }
        assert!(Config::parse("broker = \"memory\"\nmin_acks = 0").is_err());
        Ok(())
    }
}
