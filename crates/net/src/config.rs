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

/// The configuration of a host. Its `Debug` shows the broker URL without
/// its password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
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

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A broker URL may carry the broker's password; a Debug reaches logs.
        f.debug_struct("Config")
            .field("broker", &seccs_core::redact::url_password(&self.broker))
            .field("name", &self.name)
            .field("timeout_secs", &self.timeout_secs)
            .field("threshold", &self.threshold)
            .field("min_acks", &self.min_acks)
            .field("kdf", &self.kdf)
            .finish()
    }
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

    /// Parses TOML text. An error names the line and column, and never
    /// quotes the text: the line may hold the broker's password.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let c: Config = toml::from_str(text).map_err(|e| Error::Config(toml_error(text, &e)))?;
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

    /// Reads and parses a TOML file. What is wrong in it is said with the
    /// file named ([`Error::ConfigFile`]).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read config {}", path.display()), e))?;
        Self::parse(&text).map_err(|e| Error::ConfigFile {
            path: path.to_path_buf(),
            reason: match e {
                Error::Config(reason) => reason,
                // A KDF out of range, said by its own message.
                other => other.to_string(),
            },
        })
    }

    /// The reply timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// `error` said by its place in `text` and its message, without the
/// snippet of `text` toml's own `Display` quotes (the broker line, password
/// and all, when that line is what is wrong), and with any password of a
/// URL in `text` hidden should the message hold it.
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let mut message = error.message().trim_end().to_owned();
    for password in url_passwords(text) {
        message = message.replace(password, "…");
    }
    let place = error
        .span()
        .and_then(|span| text.get(..span.start))
        .map(|before| {
            let line_start = before.rfind('\n').map_or(0, |at| at + 1);
            let line = before.matches('\n').count() + 1;
            let column = before[line_start..].chars().count() + 1;
            format!("line {line}, column {column}: ")
        })
        .unwrap_or_default();
    format!("{place}{message}")
}

/// The passwords in the user info of the URLs `text` holds.
fn url_passwords(text: &str) -> Vec<&str> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '[' | ']' | '='))
        .filter_map(|word| seccs_core::redact::url_user_info(word))
        .filter_map(|(user_info, _)| user_info.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty())
        .collect()
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

    /// Neither Debug nor a parse error shows the broker's password: toml's
    /// error quoted the offending line, the broker line when that was it.
    #[test]
    fn the_broker_password_is_shown_nowhere() {
        let debug = format!("{:?}", Config::new("redis://:hunter2@127.0.0.1:6379"));
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("redis://@127.0.0.1:6379"), "{debug}");
        for text in [
            "broker = redis://:hunter2@127.0.0.1:6379\n",
            "broker = \"redis://:hunter2@127.0.0.1:6379\"\ntimeout_secs = \"30\"\n",
            "broker = \"redis://:hunter2@127.0.0.1:6379\"\nbogus = 1\n",
            "broker = \"redis://:hunter2@127.0.0.1:6379\ntimeout_secs = 30\n",
            "broker = \"redis://u:hunter2@127.0.0.1:6379\"\nbroker = \"x\"\n",
            "broker = [\"redis://:hunter2@127.0.0.1:6379\"]\n",
        ] {
            let Err(Error::Config(message)) = Config::parse(text) else {
                panic!("{text:?} was taken");
            };
            assert!(!message.contains("hunter2"), "{text:?}: {message}");
            assert!(message.starts_with("line "), "{text:?}: {message}");
        }
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
