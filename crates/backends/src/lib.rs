//! Network backends for the seccs content store: Redis, PostgreSQL and S3.
//!
//! Each backend implements the synchronous [`seccs_store::backend::Backend`]
//! trait and lives in its own module behind a cargo feature of the same name
//! (all three on by default):
//!
//! | feature | type | URL |
//! |---|---|---|
//! | `redis` | [`RedisBackend`] | `redis://HOST:PORT/DB[?prefix=P]`, `rediss://…` for TLS |
//! | `postgres` | [`PostgresBackend`] | `postgres://USER@HOST:PORT/DB[?table=T&sslmode=…]` |
//! | `s3` | [`S3Backend`] | `s3://BUCKET/PREFIX?endpoint=URL&region=R` |
//!
//! [`open`] picks the backend from the URL's scheme and connects;
//! [`create`] does the same after preparing the server side (PostgreSQL
//! creates its table). Credentials never belong in the URL a store records in
//! its config: they come from the environment (`REDIS_USERNAME` /
//! `REDIS_PASSWORD`, `PGUSER` / `PGPASSWORD`, `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` or `~/.aws/credentials`). A password written in a
//! URL's user info is accepted for interactive use; [`redact`] strips it before
//! a URL is stored or printed. It must be percent-encoded: a user info that
//! holds a '/', '#', '?' or '@' (or any '@' after the password), which a URL
//! parser would read in part as a host, path or query, is refused with an
//! error that quotes none of the URL after its scheme, and [`redact`] shows
//! such a URL as its scheme alone. An '@' in the path or query of a URL
//! with no user info (`s3://bucket/photos@2024/`) is no user info, and is
//! taken as it is.
//!
//! Every backend counts its round trips to the server ([`RoundTrips`]): a
//! batch costs a constant number of them (one Lua script, run atomically, on
//! Redis, one transaction of at most a handful of array statements per 32 MiB
//! on PostgreSQL), whatever the number of nodes; S3 has no batch request and
//! instead keeps many requests of one stage in flight.
//!
//! A process that writes opens its backend with [`open_exclusive`]: only
//! such a handle holds the store's writer lease (or lock), so that a second
//! writer process is refused rather than racing on reference counts. A
//! handle from [`open`] or [`create`] holds none and suits readers.
//!
//! Every call blocks. PostgreSQL and S3 drive an asynchronous client on a
//! tokio runtime of their own, so on a thread inside another tokio runtime
//! (an async task, a `spawn_blocking` closure), where blocking on theirs
//! would panic, each of their calls is refused with an error, and dropping
//! them there is safe: from async code, call a backend on a thread of its
//! own (`std::thread::spawn`).
//!
//! ```no_run
//! use seccs_store::backend::Backend;
//!
//! # fn main() -> Result<(), seccs_store::backend::BackendError> {
//! let backend = seccs_backends::open_exclusive("redis://127.0.0.1:6379/0?prefix=photos:", false)?;
//! let mut batch = seccs_store::backend::Batch::new();
//! batch.put(b"key".to_vec(), b"value".to_vec(), 1);
//! backend.apply(&batch)?;
//! assert_eq!(backend.get(b"key")?.map(|e| e.count), Some(1));
//! # Ok(())
//! # }
//! ```

use seccs_store::backend::{Backend, BackendError};

mod batch;
#[cfg(any(feature = "redis", feature = "s3", feature = "postgres"))]
mod lease_state;
#[cfg(any(feature = "s3", feature = "postgres"))]
mod own_runtime;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "s3")]
mod s3;

#[cfg(feature = "postgres")]
pub use postgres::{PostgresBackend, PostgresConfig};
#[cfg(feature = "redis")]
pub use redis::{RedisBackend, RedisConfig};
#[cfg(feature = "s3")]
pub use s3::{S3Backend, S3Config, S3Credentials};

pub use batch::RoundTrips;

/// Opens the backend a URL names and checks that it answers. The handle
/// holds no writer lease: another process may write beside it, so a process
/// that writes uses [`open_exclusive`].
///
/// The scheme selects the backend: `redis`/`rediss`, `postgres`/`postgresql`,
/// `s3`. A scheme whose feature is not compiled in, or any malformed part of
/// the URL, is a [`BackendError::Config`] error naming what is wrong.
pub fn open(url: &str) -> Result<Box<dyn Backend>, BackendError> {
    connect(url, Prepare::No, Access::Shared)
}

/// Like [`open`], after preparing the server side for a new store: PostgreSQL
/// creates the store's table if it does not exist; Redis and S3 need nothing
/// beyond a reachable server (and bucket).
pub fn create(url: &str) -> Result<Box<dyn Backend>, BackendError> {
    connect(url, Prepare::Yes, Access::Shared)
}

/// Like [`open`] (or [`create`], with `prepare`), and makes this process the
/// store's only writer for as long as the backend lives: a second process
/// that opens the same table or prefix exclusively gets
/// [`BackendError::Locked`], never a share of the counts. Redis holds a
/// renewed lease key, PostgreSQL a session advisory lock, S3 a lease object
/// kept with conditional writes (see each backend's docs).
pub fn open_exclusive(url: &str, prepare: bool) -> Result<Box<dyn Backend>, BackendError> {
    let prepare = if prepare { Prepare::Yes } else { Prepare::No };
    connect(url, prepare, Access::Exclusive)
}

/// [`connect_to`], refusing to prepare a new store where the backend
/// found a risk to its entries ([`Backend::risks`]): an existing store
/// still opens (its contents stay readable), and the caller shows them.
fn connect(url: &str, prepare: Prepare, access: Access) -> Result<Box<dyn Backend>, BackendError> {
    let backend = connect_to(url, prepare, access)?;
    if prepare == Prepare::Yes
        && let Some(risk) = backend.risks().first()
    {
        return Err(BackendError::Config(format!(
            "{risk}; a store is not made on such a server"
        )));
    }
    Ok(backend)
}

/// Whether [`connect_to`] prepares the server side first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prepare {
    Yes,
    No,
}

/// Whether [`connect_to`] takes the store's writer lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Shared,
    Exclusive,
}

/// Whether `url` names a network backend of this crate (by its scheme),
/// whether or not that backend's feature is compiled in.
pub fn is_backend_url(url: &str) -> bool {
    matches!(
        scheme(url).as_deref(),
        Some("redis" | "rediss" | "postgres" | "postgresql" | "s3")
    )
}

/// `url` without a password in its user info, and with the value of any
/// query parameter whose name suggests a secret (`password`, `secret`,
/// `token`, …) replaced, for configs and messages: no backend takes such a
/// parameter, but the error that says so shows the URL. Returns the input
/// unchanged if it does not parse as a URL.
pub fn redact(url: &str) -> String {
    // A URL whose user info cannot be read as written (see
    // `check_user_info`) may hold a password anywhere after its scheme.
    if check_user_info(url).is_err() {
        return format!("{}://…", scheme(url).unwrap_or_default());
    }
    // The password is found on the text first: a password holding '/',
    // '#', '?' or '@' unescaped is read by a parser as part of a port,
    // path, query or fragment. What is left is parsed for the query, where
    // a value may hold '@' (`?password=S3cr@t`).
    let shown = seccs_core::redact::url_password(url);
    match ::url::Url::parse(&shown) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Setting the password of a URL that already has one (so has
                // a host) cannot fail.
                let _ = parsed.set_password(None);
            }
            let secret = |name: &str| {
                let name = name.to_ascii_lowercase();
                ["pass", "pwd", "secret", "token", "credential"]
                    .iter()
                    .any(|s| name.contains(s))
            };
            let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
            if pairs.iter().any(|(name, _)| secret(name)) {
                let mut query = parsed.query_pairs_mut();
                query.clear();
                for (name, value) in &pairs {
                    let value = if secret(name) { "REDACTED" } else { value };
                    query.append_pair(name, value);
                }
            }
            parsed.to_string()
        }
        Err(_) => shown,
    }
}

/// The query parameters of `url`, each name at most once: a name given
/// twice would leave one of its values unused while messages show the
/// other.
fn query_pairs_once(url: &::url::Url) -> Result<Vec<(String, String)>, String> {
    let mut seen = std::collections::HashSet::new();
    url.query_pairs()
        .into_owned()
        .map(|(name, value)| match seen.insert(name.clone()) {
            true => Ok((name, value)),
            false => Err(format!("parameter {name:?} is given twice")),
        })
        .collect()
}

fn scheme(url: &str) -> Option<String> {
    url.split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
}

#[cfg_attr(
    not(all(feature = "redis", feature = "postgres", feature = "s3")),
    allow(unused_variables)
)]
fn connect_to(
    url: &str,
    prepare: Prepare,
    access: Access,
) -> Result<Box<dyn Backend>, BackendError> {
    let Some(scheme) = scheme(url) else {
        return Err(BackendError::Config(format!(
            "backend URL {:?} has no scheme (expected redis://, postgres:// or s3://)",
            redact(url)
        )));
    };
    // Each parser checks the user info first too; checking it here as well
    // keeps a URL whose backend is not compiled in from reaching a message.
    check_user_info(url).map_err(BackendError::Config)?;
    match scheme.as_str() {
        #[cfg(feature = "redis")]
        "redis" | "rediss" => {
            let config = RedisConfig::parse(url)?.with_env_credentials();
            Ok(Box::new(match access {
                Access::Shared => RedisBackend::connect(config)?,
                Access::Exclusive => RedisBackend::connect_exclusive(config)?,
            }))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let config = PostgresConfig::parse(url)?.with_env_credentials();
            if prepare == Prepare::Yes {
                PostgresBackend::create_table(&config)?;
            }
            Ok(Box::new(match access {
                Access::Shared => PostgresBackend::connect(config)?,
                Access::Exclusive => PostgresBackend::connect_exclusive(config)?,
            }))
        }
        #[cfg(feature = "s3")]
        "s3" => {
            let config = S3Config::parse(url)?;
            let backend = match access {
                Access::Shared => S3Backend::connect(config, None)?,
                Access::Exclusive => S3Backend::connect_exclusive(config, None)?,
            };
            if prepare == Prepare::Yes {
                backend.check()?;
            }
            Ok(Box::new(backend))
        }
        #[allow(unreachable_patterns)]
        "redis" | "rediss" | "postgres" | "postgresql" | "s3" => Err(BackendError::Config(
            format!("the {scheme} backend is not compiled into this build (cargo feature)"),
        )),
        other => Err(BackendError::Config(format!(
            "unknown backend scheme {other:?} (expected redis, rediss, postgres or s3)"
        ))),
    }
}

/// Installs ring as rustls's process-wide crypto provider unless another
/// provider was installed first (then that one is used).
#[cfg(any(feature = "redis", feature = "s3", feature = "postgres"))]
pub(crate) fn install_crypto_provider() {
    // An error only says a provider is already installed, which is what we
    // want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Looks up an environment variable, treating unset and non-UTF-8 alike.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Refuses a URL whose user info, as its text shows it, is not what a URL
/// parser reads as the user info, or holds a character a URL must have
/// percent-encoded there, or a password with an '@' anywhere after it. A
/// password holding an unescaped '/', '#', '?' or '@' is read in part as a
/// host, port, path or query, and the error about that part would quote it;
/// this check runs before any such error and never quotes the user info
/// (not even the user name, as the split between user and password is what
/// is in doubt).
pub(crate) fn check_user_info(url: &str) -> Result<(), String> {
    let Some((user_info, after)) = seccs_core::redact::url_user_info(url) else {
        return Ok(());
    };
    // An '@' in the path or query of a URL with no user info at all
    // (`s3://bucket/photos@2024/`, `postgres://h/db@x`), as the parser
    // reads it: no password to be in doubt about, and nothing to refuse.
    // Not when a ':' comes before the path: `u:1234/S3CR3T@h` reads as a
    // host and port too, with the rest of a password in the path.
    // A URL that does not parse fails with the parser's error, which
    // quotes none of it.
    let parsed = ::url::Url::parse(url).ok();
    let authority = user_info.split(['/', '?', '#']).next().unwrap_or(user_info);
    let in_path = user_info.contains(['/', '?', '#'])
        && !authority.contains(':')
        && parsed
            .as_ref()
            .is_some_and(|parsed| parsed.username().is_empty() && parsed.password().is_none());
    if in_path {
        return Ok(());
    }
    // RFC 3986 user info: unreserved and sub-delims characters, ':' and
    // `%XX` escapes.
    let bytes = user_info.as_bytes();
    let plain = bytes.iter().enumerate().all(|(i, &b)| match b {
        b'%' => bytes
            .get(i + 1..i + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)),
        b'-' | b'.' | b'_' | b'~' | b':' => true,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => true,
        b => b.is_ascii_alphanumeric(),
    });
    // An '@' after a password leaves its end in doubt: in
    // `u:ab@cd?S3CR3T=1@h` the parser, as the text, reads `S3CR3T=1@h` as a
    // query, though it may be the rest of the password. Such an '@' (in a
    // query value) is refused too; percent-encoded there, it reads the same.
    let password_then_at = user_info.contains(':') && after.contains('@');
    let as_parsed = match parsed {
        None => true,
        Some(parsed) => {
            let (user, password) = match user_info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (user_info, None),
            };
            let decoded = |s: &str| percent_decode(s);
            decoded(parsed.username()) == decoded(user)
                && parsed.password().filter(|p| !p.is_empty()).map(decoded)
                    == password.filter(|p| !p.is_empty()).map(decoded)
        }
    };
    if plain && as_parsed && !password_then_at {
        return Ok(());
    }
    // Where the user info ends is what is in doubt, so no part of the URL
    // after the scheme is shown: any of it may be the password.
    let scheme = scheme(url).unwrap_or_default();
    Err(format!(
        "the user info of the {scheme}:// URL cannot be read as written: percent-encode \
         the password and any '@' after it ('/' as %2F, '#' as %23, '?' as %3F, '@' as %40, \
         ':' in a user name as %3A, any other character that is not a letter, digit or one \
         of -._~!$&'()*+,;= as %XX), or give it in the environment"
    ))
}

/// Decodes `%XX` escapes in a URL's user name or password; `None` if an
/// escape is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_the_password_only() {
        assert_eq!(
            redact("redis://alice:secret@127.0.0.1:6379/0?prefix=x"),
            "redis://alice@127.0.0.1:6379/0?prefix=x"
        );
        assert_eq!(redact("s3://b/p"), "s3://b/p");
        // Passwords that hold what ends a user info, or that fail to parse.
        for url in [
            "redis://:SECRETab@127.0.0.1:badport/0?prefix=u:",
            "redis://:SECRETa/b@127.0.0.1:16380/0?prefix=u:",
            "redis://:SECRETa#b@127.0.0.1:16380/0?prefix=u:",
            "redis://:SECRETab@[::1:16380/0?prefix=u:",
            "redis://user:1234/SECRET@127.0.0.1:16380/0",
            "postgres://seccs:SECRETa/b@127.0.0.1:15433/seccs?table=u",
            "postgres://seccs:SECRETab@127.0.0.1:99999/seccs?table=u",
            "postgres://seccs:SECRETab@/seccs?table=u",
            "postgres://seccs:SECRET%zz@127.0.0.1:15433/seccs?table=u",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("SECRET"), "{url} shown as {shown}");
            let err = open(url).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(!err.contains("SECRET"), "{url}: {err}");
        }
        assert_eq!(
            redact("redis://h/0?prefix=q:&password=S3cr3t&apiToken=t"),
            "redis://h/0?prefix=q%3A&password=REDACTED&apiToken=REDACTED"
        );
        // A query value holding '@' is no user info: the secret in it is
        // still hidden, and the URL is shown as it is.
        let shown = redact("redis://h/0?password=S3cr@t");
        assert!(!shown.contains("S3cr"), "{shown}");
        assert_eq!(
            redact("redis://127.0.0.1:6379/0?prefix=me@work"),
            "redis://127.0.0.1:6379/0?prefix=me@work"
        );
    }

    /// An '@' in a query value is not taken for the end of a password: the
    /// URL is not refused as one whose password cannot be read (with no
    /// server listening, opening it fails later, for another reason).
    #[test]
    fn an_at_sign_in_a_query_value_is_no_password() {
        let err = open("redis://127.0.0.1:1/0?prefix=me@work")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.contains("cannot be read"), "{err}");
        assert!(!err.contains("127.0.0.1@work"), "{err}");
    }

    #[test]
    fn a_password_holding_a_question_mark_and_an_equals_sign_is_never_shown() {
        let url = "redis://u:pa?ss=x@127.0.0.1:1/0";
        assert!(!redact(url).contains("pa?ss"), "{}", redact(url));
        let err = open(url).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("cannot be read"), "{err}");
        assert!(!err.contains("pa?ss"), "{err}");
    }

    /// A password holding '@' with a '/', '?', ':' or '.' after it is read
    /// by the URL parser in part as the host, port, path or query: the URL
    /// is refused, saying to percent-encode the password, and no message
    /// quotes any of it, whatever the scheme.
    #[test]
    fn a_password_the_parser_would_split_is_refused_unquoted() {
        for url in [
            "redis://u:ab@cd/S3CR3T@127.0.0.1:6391/0",
            "redis://u:ab@cd?S3CR3T=1@127.0.0.1:6391/0",
            "redis://u:ab@S3CR3T.invalid/x@127.0.0.1:6391/0",
            "redis://u:ab@cd:S3CR3T/x@127.0.0.1:6391/0",
            "rediss://u:ab@cd/S3CR3T@127.0.0.1:6391/0",
            "postgres://u:ab@cd/S3CR3T@127.0.0.1:5432/db",
            "postgres://u:ab@cd?S3CR3T=1@127.0.0.1:5432/db",
            "postgresql://u:ab@cd:S3CR3T/x@127.0.0.1:5432/db",
            "s3://u:ab@cd/S3CR3T@bucket/prefix?region=x",
            "s3://u:ab@cd?S3CR3T=1@bucket/prefix",
            "redis://u:S3CR3T pw@127.0.0.1:6391/0",
            // A password of digits and '/' reads as a port and a path.
            "redis://u:1234/S3CR3T@127.0.0.1:6391/0",
            "postgres://u:1234/S3CR3T@127.0.0.1:5432/db",
        ] {
            let err = open(url).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("percent-encode the password"), "{url}: {err}");
            assert!(!err.contains("S3CR3T"), "{url}: {err}");
            // As the command line shows the URL beside the error.
            assert!(!redact(url).contains("S3CR3T"), "{url}: {}", redact(url));
            let err = match url.split_once(':').map(|(scheme, _)| scheme) {
                Some("redis" | "rediss") => RedisConfig::parse(url).err(),
                Some("s3") => S3Config::parse(url).err(),
                _ => PostgresConfig::parse(url).err(),
            };
            let err = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("percent-encode the password"), "{url}: {err}");
            assert!(!err.contains("S3CR3T"), "{url}: {err}");
        }
        // The same passwords percent-encoded are read as written.
        for url in [
            "redis://u:ab%40cd%2FS3CR3T@127.0.0.1:6391/0",
            "redis://u:ab%40cd%3FS3CR3T=1@127.0.0.1:6391/0",
            "postgres://u:ab%40cd:S3CR3T%2Fx@127.0.0.1:5432/db",
            "redis://u:a;b=c!@127.0.0.1:6391/0",
            "redis://u:pw@127.0.0.1:6391/0?prefix=me%40work",
            "redis://127.0.0.1:6391/0?prefix=me@work",
            // An '@' in the path of a URL with no user info, as stores
            // were made with before this check.
            "s3://bucket/photos@2024/?endpoint=http://127.0.0.1:9&region=x",
            "postgres://db-host/db@x",
            // No password: a user name, read as a host, is not a secret.
            "redis://S3CR3T/x@127.0.0.1:6391/0",
        ] {
            assert_eq!(check_user_info(url), Ok(()), "{url}");
        }
        let config = S3Config::parse("s3://bucket/photos@2024/?endpoint=http://127.0.0.1:9");
        assert!(config.is_ok(), "{:?}", config.err());
        let config = RedisConfig::parse("redis://u:ab%40cd%2FS3CR3T@127.0.0.1:6391/0");
        assert!(config.is_ok(), "{:?}", config.err());
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        for url in [
            "redis://127.0.0.1:1/0?prefix=p:&prefix=q:",
            "postgres://u@127.0.0.1/db?table=a&table=b",
            "s3://bucket/p?region=a&region=b",
        ] {
            let err = open(url).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("is given twice"), "{url}: {err}");
        }
    }

    #[test]
    fn unknown_scheme_is_a_config_error() {
        let err = open("ftp://127.0.0.1/").err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("unknown backend scheme")),
            "{err:?}"
        );
        let err = open("no-scheme").err().map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("no scheme")));
        assert!(is_backend_url("s3://bucket/p"));
        assert!(!is_backend_url("/var/lib/seccs"));
    }
}
