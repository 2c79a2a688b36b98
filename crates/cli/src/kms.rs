//! `seccs kms …`: the key service. A thin layer over `seccs-kms`.

use std::ffi::OsString;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use seccs_kms::KmsError;
use seccs_kms::api::MAX_ITEM_PLAINTEXT;
use seccs_kms::client::{self, BlockingClient, ClientConfig, LocalFacility};
use seccs_kms::lifecycle::KeyState;
use seccs_kms::server::{self, AuditSync, ServerConfig};

/// Arguments of `seccs kms`.
#[derive(Debug, Args)]
pub struct KmsArgs {
    #[command(subcommand)]
    command: KmsCommand,
}

impl KmsArgs {
    /// Whether the command prints JSON (check, status, list --json).
    pub fn json(&self) -> bool {
        match &self.command {
            KmsCommand::Check { json, .. }
            | KmsCommand::Status { json, .. }
            | KmsCommand::List { json, .. } => *json,
            _ => false,
        }
    }
}

/// How to reach and trust the key server: all that `status` and `key`
/// take, which never send the management token.
#[derive(Debug, Args)]
struct Trust {
    /// The key server, https://HOST:PORT (http:// only on loopback, with
    /// --insecure-loopback-http). Also read from SECCS_KMS_URL (an empty
    /// one is unset); without either, https://127.0.0.1:8080.
    // SECCS_KMS_URL is read in `server`, not by clap: clap takes an
    // exported but empty variable for a value, and every command failed
    // on the empty URL.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Trust the CA certificates in this PEM file (the server's
    /// DIR/tls/ca.pem). Also read from SECCS_KMS_CA, unless --pin is given
    /// (SECCS_KMS_CA and SECCS_KMS_PIN both set are refused; an empty
    /// variable is unset; the same holds for the two token variables).
    #[arg(long, value_name = "FILE", conflicts_with = "pin")]
    ca: Option<PathBuf>,
    /// Trust exactly the server certificate with this SHA-256 fingerprint.
    /// Also read from SECCS_KMS_PIN, unless --ca is given.
    #[arg(long, value_name = "SHA256")]
    pin: Option<String>,
    /// Allow plain http:// to a loopback address (never to another host).
    #[arg(long)]
    insecure_loopback_http: bool,
}

/// How to reach and trust the key server, and the management token for
/// the commands that may send it.
#[derive(Debug, Args)]
struct Conn {
    #[command(flatten)]
    trust: Trust,
    /// The management bearer token (the server's DIR/token). On the command
    /// line it is visible to other users of this machine (`ps`,
    /// /proc/PID/cmdline): prefer --token-file or the SECCS_KMS_TOKEN
    /// environment variable (read unless --token-file is given).
    #[arg(
        long,
        value_name = "TOKEN",
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    token: Option<String>,
    /// Read the management bearer token from this file (at most 4 KiB; the
    /// whitespace around it is dropped). Also read from
    /// SECCS_KMS_TOKEN_FILE, unless --token is given. Read only by the
    /// commands that send the token: not by encrypt and decrypt with --kek
    /// (status and key take no token).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
}

/// Whether a command sends the management token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// It may (named keys; `new`, which a server may hold to it): the
    /// token is read from wherever it is given.
    Sent,
    /// It never does (`status`, `key`, `encrypt|decrypt --kek`): no token
    /// is read, so a token file named for other commands
    /// (`SECCS_KMS_TOKEN_FILE`) that is missing or unreadable stops
    /// nothing.
    Unused,
}

/// The key server used when neither --server nor SECCS_KMS_URL names one.
const DEFAULT_SERVER: &str = "https://127.0.0.1:8080";

impl Trust {
    /// The key server's URL: --server, else a non-empty SECCS_KMS_URL,
    /// else [`DEFAULT_SERVER`]; with where it came from, for messages.
    fn server(&self) -> anyhow::Result<(String, &'static str)> {
        if let Some(s) = &self.server {
            return Ok((s.clone(), "--server"));
        }
        match std::env::var_os("SECCS_KMS_URL").filter(|v| !v.is_empty()) {
            Some(v) => Ok((utf8(v, "SECCS_KMS_URL")?, "SECCS_KMS_URL")),
            None => Ok((DEFAULT_SERVER.to_owned(), "the default server")),
        }
    }

    /// The key server's URL, as errors about it name it (a password in it
    /// hidden).
    fn server_shown(&self) -> String {
        let url = self
            .server()
            .map_or_else(|_| "SECCS_KMS_URL".to_owned(), |(url, _)| url);
        seccs_core::redact::url_password(&url)
    }

    /// The client config without a token, not yet validated.
    fn config(&self) -> anyhow::Result<ClientConfig> {
        let (server, origin) = self.server()?;
        check_server_url(&server, origin)?;
        let mut c = ClientConfig::new(server);
        let (ca, pin) = either_option(
            (
                self.ca.clone().map(Into::into),
                self.pin.clone().map(Into::into),
            ),
            ("SECCS_KMS_CA", "SECCS_KMS_PIN"),
        )?;
        if let Some(ca) = ca {
            let action = if self.ca.is_some() {
                "read the CA file (--ca)"
            } else {
                "read the CA file (SECCS_KMS_CA)"
            };
            c = c.with_ca_file_named(PathBuf::from(ca), action);
        }
        if let Some(pin) = pin {
            c = c.with_pin(&utf8(pin, "SECCS_KMS_PIN")?)?;
        }
        c.allow_loopback_http = self.insecure_loopback_http;
        Ok(c)
    }

    /// A client for a command that never sends the management token.
    fn client(&self) -> anyhow::Result<BlockingClient> {
        let c = self.config()?;
        c.validate()?;
        Ok(BlockingClient::new(&c)?)
    }
}

impl Conn {
    fn config(&self, token_use: Token) -> anyhow::Result<ClientConfig> {
        let mut c = self.trust.config()?;
        let (token, token_file) = match token_use {
            Token::Unused => (None, None),
            Token::Sent => either_option(
                (
                    self.token.clone().map(Into::into),
                    self.token_file.clone().map(Into::into),
                ),
                ("SECCS_KMS_TOKEN", "SECCS_KMS_TOKEN_FILE"),
            )?,
        };
        if let Some(t) = token {
            c = c.with_token(utf8(t, "SECCS_KMS_TOKEN")?.trim());
        }
        if let Some(f) = token_file {
            let path = Path::new(&f);
            let origin = if self.token_file.is_some() {
                "--token-file"
            } else {
                "SECCS_KMS_TOKEN_FILE"
            };
            let token = client::read_token_file(path).map_err(|e| {
                file_error(
                    e,
                    format!("cannot read the token file ({origin}) {}", path.display()),
                )
            })?;
            c = c.with_token(token);
        }
        c.validate()?;
        Ok(c)
    }

    /// A client for a command that may send the management token.
    fn client(&self) -> anyhow::Result<BlockingClient> {
        Ok(BlockingClient::new(&self.config(Token::Sent)?)?)
    }
}

/// Refuses `url`, given by `origin` (`--server`, `SECCS_KMS_URL`,
/// `--key-from-kms`), unless it parses as a URL, naming both: the
/// library's "bad URL" named neither. A password in it is not repeated.
pub(crate) fn check_server_url(url: &str, origin: &str) -> anyhow::Result<()> {
    if let Err(why) = client::parse_url(url) {
        let shown = match url {
            "" => "\"\"".to_owned(),
            url => seccs_core::redact::url_password(url),
        };
        anyhow::bail!("{origin} {shown}: not a URL ({why}); give https://HOST:PORT");
    }
    Ok(())
}

/// Of two options that exclude each other (`--ca` and `--pin`, `--token`
/// and `--token-file`), each also read from an environment variable: the
/// one given on the command line wins over both variables, so that a
/// default exported for every command never stops one given the other
/// option. Two variables set at once are refused, as two options are.
pub(crate) fn either_option(
    given: (Option<OsString>, Option<OsString>),
    vars: (&str, &str),
) -> anyhow::Result<(Option<OsString>, Option<OsString>)> {
    let from_env = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    match given {
        (None, None) => match (from_env(vars.0), from_env(vars.1)) {
            (Some(_), Some(_)) => anyhow::bail!(
                "{} and {} are both set, and only one may be: unset one, or give its option \
                 on the command line",
                vars.0,
                vars.1
            ),
            either => Ok(either),
        },
        given => Ok(given),
    }
}

/// `value`, from the option or the environment variable `var`, as text.
pub(crate) fn utf8(value: OsString, var: &str) -> anyhow::Result<String> {
    value
        .into_string()
        .map_err(|_| anyhow::anyhow!("{var} is not valid UTF-8"))
}

/// Where data comes from and goes to.
#[derive(Debug, Args)]
struct Io {
    /// Input file (default, or `-`: standard input).
    #[arg(long = "in", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Output file (default, or `-`: standard output). Nothing is written unless
    /// the whole input was processed: a regular file appears by a synced
    /// rename; standard output, a device or a named pipe is fed from an
    /// encrypted spool at the end (never replaced); a symbolic link is
    /// written through. Its temporary file is made before the server is
    /// asked, so an output that cannot be written is refused first.
    /// `-o` and `--output` as `seccs get` spells it.
    #[arg(
        long = "out",
        short = 'o',
        visible_alias = "output",
        value_name = "FILE"
    )]
    output: Option<PathBuf>,
    /// The encryption context (associated data); decryption needs the same.
    #[arg(long, default_value = "")]
    context: String,
}

impl Io {
    /// The input file; `None` for standard input (no `--in`, or `--in -`,
    /// as `put -` reads standard input).
    fn input(&self) -> Option<&Path> {
        self.input.as_deref().filter(|p| *p != Path::new("-"))
    }

    /// The output file; `None` for standard output (no `--out`, or
    /// `--out -`, as `get -o -` writes standard output).
    fn output(&self) -> Option<&Path> {
        self.output.as_deref().filter(|p| *p != Path::new("-"))
    }
}

/// How to rotate the audit log, for `seccs kms serve --help`.
const ROTATION_HELP: &str = "\
Rotating audit.log: move it away, then send SIGUSR1 (`kill -USR1 PID`); the server
finishes the moved file with a `reopened` line and opens a new DIR/audit.log, first line
`reopen`. No record is lost or split. Do not use copytruncate, which loses the records
written between its copy and its truncate. A logrotate entry (nocreate: the server makes
the new file, mode 0600; delaycompress: the moved file gets its last line just after
postrotate; the PID here from systemd):
  /var/lib/seccs-kms/audit.log {
      daily
      rotate 30
      compress
      delaycompress
      missingok
      notifempty
      nocreate
      postrotate
          kill -USR1 \"$(systemctl show -p MainPID --value seccs-kms)\"
      endscript
  }";

/// What `seccs kms serve --help` says after the options: rotation, routes.
fn serve_after_help() -> String {
    format!("{ROTATION_HELP}\n\n{}", server::ROUTES_HELP)
}

/// `--audit-sync`: `interval` or `each`.
fn parse_audit_sync(text: &str) -> Result<AuditSync, String> {
    text.parse()
        .map_err(|e: seccs_kms::audit::UnknownAuditSync| e.to_string())
}

/// `--audit-sync-interval`: seconds, above 0 and at most 60.
fn parse_audit_sync_interval(text: &str) -> Result<Duration, String> {
    server::parse_audit_sync_interval(text).map_err(|e| e.to_string())
}

/// `--max-body`: a number of bytes, at least [`server::MIN_MAX_BODY`].
fn parse_max_body(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    if n < server::MIN_MAX_BODY {
        return Err(format!(
            "{n} bytes leaves no room for a request: give at least {}",
            server::MIN_MAX_BODY
        ));
    }
    Ok(n)
}

#[derive(Debug, Subcommand)]
enum KmsCommand {
    /// Run the key server over HTTPS until SIGINT, SIGTERM or SIGHUP (one
    /// ignored at start, as SIGHUP under nohup, stays ignored). SIGUSR1
    /// (`kill -USR1 PID`) reopens DIR/audit.log: rotate it by moving it
    /// away, then sending SIGUSR1 (see the logrotate example below).
    ///
    /// At start it refuses a directory that lost root.key while named/
    /// holds keys, or lost part of the certificate in tls/ (restore them
    /// from a backup), or where audit.log, token, root.key, lock, a key
    /// file or the certificate or key in tls/ is a symbolic link or a
    /// named pipe (its files are opened only as regular files), or keys/,
    /// named/ or tls/ is a link (used only as directories), or --cert or
    /// --key is a device or a named pipe no process writes to (a link to a
    /// file is followed, and a pipe such as --key <(pass show ...) is read);
    /// it takes group and other access away from the
    /// directory (a link's target, if --dir names one) and what it holds,
    /// logging each change, and logs each DEK file that does not parse
    /// (`seccs kms check DIR` checks them all). One server runs per
    /// directory: it locks the directory itself (removing DIR/lock, which
    /// names the holder, frees nothing). --cert and --key are checked
    /// before anything is made.
    ///
    /// It logs to standard error; RUST_LOG sets what is logged (by
    /// default `info`; e.g. RUST_LOG=debug, or RUST_LOG=warn for warnings
    /// and errors only).
    #[command(after_long_help = serve_after_help())]
    Serve {
        /// Storage directory, made 0700 if missing: `keys/` (DEK files,
        /// each sealed under its own KEK, which only clients hold),
        /// `named/` (named keys), `root.key` (the key that seals `named/`:
        /// back it up with them, keep it as secret as the keys; without it
        /// they cannot be opened), `token` (the management token: at least
        /// 16 bytes, made when missing, read at start only, so a changed
        /// token needs a restart), `audit.log` (one JSON line per
        /// operation, or per outcome of a batch: time, client address,
        /// operation, key id or name, result; never key material; a
        /// request whose record cannot be written is answered 503, with no
        /// key; refusals of requests without a credential beyond 100 at
        /// once, then 2 a second, are counted in a summary line; synced to
        /// disk as --audit-sync says; rotated by moving it away and
        /// sending SIGUSR1, after which the moved file ends with a
        /// `reopened` line and a new audit.log begins with a `reopen`
        /// line; a reopen that fails keeps the file in use and is logged),
        /// and `tls/` (the certificate made when --cert is not given).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Address to listen on. A certificate made here names it, with
        /// localhost, 127.0.0.1 and ::1.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Certificate chain (PEM); without it a certificate is created in DIR/tls.
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<PathBuf>,
        /// Private key (PEM) of --cert.
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
        /// Largest request body in bytes (larger: 413); at least 1024.
        #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = parse_max_body)]
        max_body: usize,
        /// Require the management token on POST /new and POST /v1/new.
        /// Without it (keas.kmi's behaviour, the default) anyone who can
        /// reach the server can create keys, a file each, until its disk is
        /// full; `seccs kms new` then needs --token-file.
        #[arg(long)]
        new_needs_token: bool,
        /// When audit.log is synced to disk. `interval` (the default): at
        /// most once a second, when records were written, so a power cut
        /// or kernel crash loses at most about the last second of records.
        /// `each`: an answer that gives out or changes keys waits until its
        /// record is on disk; concurrent requests share one sync, but each
        /// such answer takes a sync's latency more, and the disk's syncs
        /// bound their rate. In both modes a sync that fails is logged and
        /// such answers are 503 until a sync succeeds.
        #[arg(long, default_value = "interval", value_name = "interval|each",
              value_parser = parse_audit_sync)]
        audit_sync: AuditSync,
        /// How often, at most, the `interval` mode syncs audit.log, in
        /// seconds (decimals such as 0.25 are taken): above 0, at most 60.
        /// Shorter bounds what a crash can lose to less, at the cost of
        /// more syncs of a busy disk. It is also how long a failed sync
        /// waits before it is tried again, in both modes.
        #[arg(long, default_value = "1", value_name = "SECONDS",
              value_parser = parse_audit_sync_interval)]
        audit_sync_interval: Duration,
    },
    /// Check every key file of a key directory, without a server (it may
    /// run meanwhile): each named key (named/) must authenticate under
    /// root.key; each DEK file (keys/) must have the form of one (it is
    /// sealed under its KEK, which only clients hold, so its
    /// authenticity is checked when a client asks for it). Prints each
    /// bad file, with its path and why, and exits non-zero if there is
    /// one. A server reads them all at start too and logs each bad one.
    Check {
        /// The key directory (the one given to `serve --dir`).
        dir: PathBuf,
        /// Print one JSON document instead: {"dek_files", "named_key_files",
        /// "bad", "newer" (the counts: damaged files, and files of a format
        /// newer than this build reads), "findings": [{"path", "kind"
        /// ("dek" or "named"), "reason", "newer" (true for a file of a
        /// newer format)}]}. It still exits non-zero when a file is bad or
        /// newer (exit 1); a directory that cannot be checked at all (no
        /// root.key while named/ holds keys, a link in place of keys/ or
        /// named/) exits 2 with {"error", "exit"} instead.
        #[arg(long)]
        json: bool,
    },
    /// Create a KEK/DEK pair on the server; writes the KEK (the caller keeps
    /// it). Management token only if the server runs with --new-needs-token.
    New {
        #[command(flatten)]
        conn: Conn,
        /// Write the KEK (32 raw bytes, mode 0600) to this new file instead of
        /// printing it as hex. `-o` and `--output` as `seccs get` spells it.
        #[arg(long, short = 'o', visible_alias = "output", value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Fetch the DEK of a KEK (printed as hex).
    Key {
        #[command(flatten)]
        conn: Trust,
        /// The KEK file (32 raw bytes or 64 hex digits).
        #[arg(long, value_name = "FILE")]
        kek: PathBuf,
    },
    /// Encrypt a file or stream: locally under the DEK of --kek (segmented
    /// stream format), or on the server under the named key --name
    /// (management token).
    #[command(group(clap::ArgGroup::new("key").required(true).args(["kek", "name"])))]
    Encrypt {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        io: Io,
        /// Encrypt locally with the DEK of this KEK file.
        #[arg(long, value_name = "FILE", conflicts_with = "name")]
        kek: Option<PathBuf>,
        /// Encrypt on the server with this named key (management token;
        /// input ≤ 256 KiB, larger input is refused: use --kek for files).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Decrypt what `encrypt` produced (same --kek or --name and --context;
    /// --name needs the management token).
    #[command(group(clap::ArgGroup::new("key").required(true).args(["kek", "name"])))]
    Decrypt {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        io: Io,
        /// Decrypt locally with the DEK of this KEK file.
        #[arg(long, value_name = "FILE", conflicts_with = "name")]
        kek: Option<PathBuf>,
        /// Decrypt on the server with this named key (management token).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Show the server's status (seed status line and key counts; no token).
    Status {
        #[command(flatten)]
        conn: Trust,
        /// Print only one JSON document, {"keys", "named_keys"} (the counts
        /// of KEK/DEK pairs and of named keys), instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create a named key (management token).
    Create {
        #[command(flatten)]
        conn: Conn,
        /// The key name (A-Z a-z 0-9 - _ .).
        name: String,
        /// Create it in pre-activation instead of active.
        #[arg(long)]
        pre_activation: bool,
    },
    /// List named keys (management token).
    List {
        #[command(flatten)]
        conn: Conn,
        /// Print the names as one JSON array of strings instead of one a
        /// line.
        #[arg(long)]
        json: bool,
    },
    /// Show a named key's versions, state and transition times, as JSON
    /// (management token).
    Info {
        #[command(flatten)]
        conn: Conn,
        /// The key name.
        name: String,
    },
    /// Add a version to a named key; new ciphertexts use it (management
    /// token).
    Rotate {
        #[command(flatten)]
        conn: Conn,
        /// The key name.
        name: String,
    },
    /// Move a named key to a lifecycle state: pre-activation, active,
    /// suspended, deactivated, compromised, destroyed (erases the material)
    /// (management token).
    State {
        #[command(flatten)]
        conn: Conn,
        /// The key name.
        name: String,
        /// The new state.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(
            KeyState::ALL.map(KeyState::as_str)
        ))]
        state: String,
    },
    /// Refuse decryption with versions below N (management token).
    MinVersion {
        #[command(flatten)]
        conn: Conn,
        /// The key name.
        name: String,
        /// The minimum decryption version (1 or more, at most the key's
        /// latest).
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        version: u32,
    },
    /// Re-encrypt a ciphertext to the newest version of a named key without
    /// revealing the plaintext (management token).
    Rewrap {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        io: Io,
        /// The key name.
        name: String,
    },
    /// Generate a data key: prints JSON with the key and its wrapped form
    /// (hex) (management token).
    Datakey {
        #[command(flatten)]
        conn: Conn,
        /// The key name.
        name: String,
        /// The encryption context of the wrapped form.
        #[arg(long, default_value = "")]
        context: String,
    },
}

/// The most of an input `encrypt|decrypt|rewrap --name` reads: far above
/// what one item holds, so the refusal can say how large the input is,
/// and yet bounded (a device such as /dev/zero).
const MAX_NAMED_INPUT: u64 = 16 << 20;

fn read_input(io: &Io) -> anyhow::Result<Vec<u8>> {
    match crate::input::read_bounded(io.input(), MAX_NAMED_INPUT)? {
        crate::input::Bounded::Whole(data) => Ok(data),
        crate::input::Bounded::Over { .. } => anyhow::bail!(
            "{} is larger than {} MiB; the server takes at most {} KiB per item: use --kek \
             for files",
            io.input()
                .map_or("standard input".to_owned(), |p| p.display().to_string()),
            MAX_NAMED_INPUT >> 20,
            MAX_ITEM_PLAINTEXT / 1024
        ),
    }
}

/// `e`, from reading a file the caller names in `context` ("cannot read
/// the KEK file F"): the library's own error for a file it cannot open
/// names the path again, so only its cause follows the context.
fn file_error(e: KmsError, context: String) -> anyhow::Error {
    match e {
        KmsError::File { source, .. } => anyhow::Error::new(source).context(context),
        e => anyhow::Error::new(e).context(context),
    }
}

/// The KEK in the file at `path`, with a warning when others may read
/// it. An error names the file once, as "the KEK file".
pub(crate) fn load_kek(path: &Path) -> anyhow::Result<seccs_core::SecretKey> {
    let kek = client::load_kek(path)
        .map_err(|e| file_error(e, format!("cannot read the KEK file {}", path.display())))?;
    // Once: a command reads one KEK file.
    if let Some(mode) = client::kek_file_mode_exposed(path) {
        errln!("seccs: warning: {}", client::kek_file_warning(path, mode));
    }
    Ok(kek)
}

/// `e`, said as the key server's answer when it is [`KmsError::NotFound`]:
/// the server at `server` holds no key for the KEK in `kek_file` (a bare
/// "key not found" names neither).
pub(crate) fn no_key_for_kek(e: KmsError, server: &str, kek_file: &Path) -> anyhow::Error {
    match e {
        KmsError::NotFound => anyhow::anyhow!(
            "the key server {} holds no key for the KEK in {} (a KEK of another server, or one \
             whose key was removed)",
            seccs_core::redact::url_password(server),
            kek_file.display()
        ),
        e => e.into(),
    }
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

fn local_stream(conn: &Conn, io: &Io, kek_file: &Path, encrypt: bool) -> anyhow::Result<()> {
    let local = LocalFacility::new(&conn.config(Token::Unused)?)?;
    let kek = load_kek(kek_file)?;
    let ctx = io.context.as_bytes();
    let mut input = Input {
        inner: match io.input() {
            Some(p) => Box::new(
                std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
            ),
            None => Box::new(std::io::stdin().lock()),
        },
        failed: false,
    };
    let source = match io.input() {
        Some(p) => p.display().to_string(),
        None => "standard input".to_owned(),
    };
    // A stream is authenticated segment by segment and whole only at its
    // end (truncation): nothing reaches the output before. Every output,
    // file or not, goes through `write_output`: a regular file appears by
    // a synced rename; a device, a named pipe or a link's target is
    // written in place, never replaced.
    let written = match io.output() {
        Some(p) => p.display().to_string(),
        None => "standard output".to_owned(),
    };
    // A failed write (a full disk) names the output, as a failed read names
    // the input.
    crate::output::write_output(io.output(), |output| {
        crate::output::naming_write_errors(output, &written, |mut output| {
            let r = if encrypt {
                local.encrypt_stream(&kek, ctx, &mut input, &mut output)
            } else {
                local.decrypt_stream(&kek, ctx, &mut input, &mut output)
            };
            if input.failed {
                r.with_context(|| format!("cannot read {source}"))?;
            } else {
                // A stream that is not one (cut, altered, another file)
                // names the input it came from.
                r.map_err(|e| match e {
                    KmsError::NotFound => no_key_for_kek(e, &conn.trust.server_shown(), kek_file),
                    e if encrypt => e.into(),
                    e => anyhow::Error::new(e).context(format!("cannot decrypt {source}")),
                })?;
            }
            Ok(())
        })
    })
}

/// The input of a stream, remembering whether a read failed, so that its
/// error can name the input rather than only say "stream I/O failed".
struct Input {
    inner: Box<dyn Read>,
    failed: bool,
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf);
        if let Err(e) = &r
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            self.failed = true;
        }
        r
    }
}

/// An error of a request about the named key `name` on `server`: one
/// that is about the name says which key and which server, where the
/// client's own words ("key not found") named neither.
fn about_named(name: &str, server: &str, err: KmsError) -> anyhow::Error {
    match err {
        KmsError::NotFound => anyhow::anyhow!(
            "the key server {server} has no named key {name} (`seccs kms list` lists them)"
        ),
        KmsError::AlreadyExists => {
            anyhow::anyhow!("the key server {server} already has a named key {name}")
        }
        e => e.into(),
    }
}

impl KmsCommand {
    /// The named key the command acts on, if any.
    fn key_name(&self) -> Option<&str> {
        match self {
            Self::Create { name, .. }
            | Self::Info { name, .. }
            | Self::Rotate { name, .. }
            | Self::State { name, .. }
            | Self::MinVersion { name, .. }
            | Self::Rewrap { name, .. }
            | Self::Datakey { name, .. } => Some(name),
            Self::Encrypt { name, .. } | Self::Decrypt { name, .. } => name.as_deref(),
            _ => None,
        }
    }
}

/// Refuses a key name the server would refuse, before it is asked,
/// saying the name and the rule (the server's "name: invalid key name"
/// said neither).
fn check_key_name(name: &str) -> anyhow::Result<()> {
    seccs_kms::lifecycle::check_name(name).map_err(|_| {
        anyhow::anyhow!(
            "invalid key name {name:?}: a key name is 1 to 128 characters of A-Z a-z 0-9 - _ . \
             and does not start with ."
        )
    })
}

fn named_one(conn: &Conn, name: &str, op: &str, io: &Io) -> anyhow::Result<()> {
    let c = conn.client()?;
    let data = read_input(io)?;
    if op == "encrypt" && data.len() > MAX_ITEM_PLAINTEXT {
        anyhow::bail!(
            "input is {} bytes; the server encrypts at most {} KiB per item: use --kek for files",
            data.len(),
            MAX_ITEM_PLAINTEXT / 1024
        );
    }
    let items: [(&[u8], &[u8]); 1] = [(&data, io.context.as_bytes())];
    // The output is made ready (its temporary file created beside it)
    // before the server is asked: an output that cannot be written is
    // refused before the server decrypts or encrypts anything for it.
    crate::output::write_output(io.output(), |out| {
        let mut results = c
            .run(|k| async move {
                match op {
                    "encrypt" => k.encrypt(name, &items).await,
                    "decrypt" => k.decrypt(name, &items).await,
                    _ => k.rewrap(name, &items).await,
                }
            })
            .map_err(|e| about_named(name, &conn.trust.server_shown(), e))?;
        // An item the server refused (not a ciphertext, a version not
        // allowed) names the input it came from.
        let result = results
            .pop()
            .context("the server answered no result")?
            .map_err(|e| {
                let source = io
                    .input()
                    .map_or("standard input".to_owned(), |p| p.display().to_string());
                anyhow::Error::new(e).context(format!("cannot {op} {source}"))
            })?;
        out.write_all(&result)?;
        Ok(())
    })
}

/// One bad key file, as `kms check --json` lists it.
#[derive(Debug, serde::Serialize)]
struct CheckFinding {
    /// The file (lossy where it is not UTF-8).
    path: String,
    /// `dek` (in `keys/`) or `named` (in `named/`).
    kind: &'static str,
    /// Why it is bad, with its causes.
    reason: String,
    /// Whether it names a format newer than this build reads (not damage:
    /// a newer seccs wrote it, unless it was altered).
    newer: bool,
}

/// What `kms check --json` prints.
#[derive(Debug, serde::Serialize)]
struct CheckReport {
    /// DEK files checked.
    dek_files: usize,
    /// Named key files checked.
    named_key_files: usize,
    /// How many are damaged (do not parse or authenticate).
    bad: usize,
    /// How many name a format newer than this build reads; `bad + newer`
    /// is `findings.len()`.
    newer: usize,
    /// Each bad file.
    findings: Vec<CheckFinding>,
}

/// `err` with its causes, as an error line says them.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut said = err.to_string();
    let mut cause = err.source();
    // Bounded: an error's chain is a few causes long.
    for _ in 0..8 {
        let Some(c) = cause else { break };
        said.push_str(&format!(": {c}"));
        cause = c.source();
    }
    said
}

/// `kms check DIR`: every key file of `dir`, each bad one said on
/// standard output (one line each, or one JSON document with `json`),
/// and an error if there is one.
fn check(dir: &Path, json: bool) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => anyhow::bail!(
            "{} is not a directory: give the key directory `seccs kms serve --dir` uses",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("{} does not exist", dir.display())
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot examine {}", dir.display())));
        }
    }
    // A wrong path (a parent, a store) would else be counted clean.
    if ["keys", "named", "root.key"]
        .iter()
        .all(|part| dir.join(part).symlink_metadata().is_err())
    {
        anyhow::bail!(
            "{} holds no key directory (none of keys/, named/, root.key): give the directory \
             `seccs kms serve --dir` uses",
            dir.display()
        );
    }
    let (deks, bad_deks) = seccs_kms::facility::Facility::check_files(&dir.join("keys"))?;
    let (named, bad_named) = seccs_kms::keyring::KeyRing::check_files(dir)?;
    let findings = bad_deks
        .iter()
        .map(|found| ("dek", found))
        .chain(bad_named.iter().map(|found| ("named", found)));
    let newer = findings
        .clone()
        .filter(|(_, (_, why))| is_newer(why))
        .count();
    let bad = bad_deks.len() + bad_named.len() - newer;
    if json {
        let report = CheckReport {
            dek_files: deks,
            named_key_files: named,
            bad,
            newer,
            findings: findings
                .map(|(kind, (path, why))| CheckFinding {
                    path: path.to_string_lossy().into_owned(),
                    kind,
                    reason: with_causes(why),
                    newer: is_newer(why),
                })
                .collect(),
        };
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        for (_, (path, why)) in findings {
            outln!("{}: {}", path.display(), with_causes(why))?;
        }
        let newer_said = match newer {
            0 => String::new(),
            n => format!(", {n} of a newer format"),
        };
        outln!("{deks} DEK file(s), {named} named key file(s): {bad} bad{newer_said}")?;
    }
    // A file of a newer format is not damage, and no backup is needed for
    // it: said apart from the damaged ones.
    let newer_advice = |more: &str| {
        format!(
            "{newer} {more}key file(s) in {} name a format newer than this build reads \
             (written by a newer seccs, unless altered): use a newer seccs",
            dir.display()
        )
    };
    match (bad, newer) {
        (0, 0) => Ok(()),
        (0, _) => problems!("{}", newer_advice("")),
        (_, 0) => problems!(
            "{bad} key file(s) in {} are damaged: restore them from a backup",
            dir.display()
        ),
        (_, _) => problems!(
            "{bad} key file(s) in {} are damaged: restore them from a backup; {}",
            dir.display(),
            newer_advice("more ")
        ),
    }
}

/// Whether `why` a key file is bad is that it names a version newer than
/// this build reads.
fn is_newer(why: &seccs_kms::KmsError) -> bool {
    matches!(
        why,
        seccs_kms::KmsError::UnsupportedVersion { version, reads, .. } if version > reads
    )
}

/// What `kms serve` says once it listens: where, and how clients trust it.
/// Files are named by absolute paths (not resolving links), as a `--dir`
/// given relative would not name them for a client started elsewhere.
fn announce(s: &server::RunningServer, dir: &Path) {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let dir = &absolute(dir);
    let cert = s.cert();
    errln!("seccs kms listening on {}", s.url());
    if s.max_connections() < server::MAX_CONNECTIONS {
        errln!(
            "warning: at most {} connections at once (not {}): the open-file limit leaves no \
             room for more; raise it (`ulimit -n`, systemd's LimitNOFILE=) for more",
            s.max_connections(),
            server::MAX_CONNECTIONS
        );
    }
    errln!("certificate: {}", absolute(&cert.cert_path).display());
    if let Some(warning) = cert
        .validity
        .and_then(|v| validity_warning(v, seccs_kms::audit::unix_now()))
    {
        errln!("warning: {warning}");
    }
    match (&cert.ca_path, cert.unnamed_listen_ip) {
        (Some(ca), None) => errln!("CA file (for --ca): {}", absolute(ca).display()),
        (Some(ca), Some(ip)) => {
            errln!(
                "CA file (for --ca, by a name the certificate holds): {}",
                absolute(ca).display()
            );
            errln!(
                "warning: the certificate does not name {ip}, the address this server listens \
                 on, so a client of https://{} cannot trust it by --ca: use --pin with the \
                 fingerprint below, or stop the server and remove {} to make a certificate \
                 that names it (clients then need the new --ca or --pin)",
                s.addr(),
                dir.join("tls").display()
            );
        }
        (None, Some(ip)) => errln!(
            "warning: the certificate does not name {ip}, the address this server listens on: \
             clients that connect to it must use --pin with the fingerprint below"
        ),
        (None, None) => {}
    }
    if let Some(ca) = &cert.missing_ca {
        errln!(
            "warning: the CA file {} is missing while the certificate stays: clients and stores \
             set up with it (--ca, --kms-ca) will fail; give them --pin with the fingerprint \
             below, or stop the server and restore the CA file from a backup",
            absolute(ca).display()
        );
    }
    if cert.ca_path.is_some() && s.addr().ip().is_unspecified() {
        errln!(
            "note: listening on every address; the certificate names localhost, 127.0.0.1 and \
             ::1 (and the address it was made for): a client that connects by another address \
             must use --pin"
        );
    }
    errln!("SHA-256 fingerprint (for --pin): {}", cert.fingerprint);
    if let Some(t) = s.token_path() {
        errln!("management token file: {}", absolute(t).display());
    }
}

/// How close to its end a certificate's validity is said at start.
const EXPIRY_WARNED: u64 = 30 * 86_400;

/// What `kms serve` warns of its certificate's validity at `now`: clients
/// that trust it by a CA refuse a certificate that expired or is not valid
/// yet, and soon one that ends within 30 days (a pin is trusted whatever
/// its dates, as SSH trusts a host key).
fn validity_warning(validity: server::Validity, now: u64) -> Option<String> {
    let server::Validity {
        not_before,
        not_after,
    } = validity;
    let at = crate::store::format_time;
    if now > not_after {
        Some(format!(
            "the certificate expired at {}: clients that trust it by a CA (--ca) refuse it \
             (pinned ones, --pin, do not check its dates); give a renewed one with --cert and \
             --key",
            at(not_after)
        ))
    } else if now < not_before {
        Some(format!(
            "the certificate is not valid before {} (is this machine's clock right?): clients \
             that trust it by a CA (--ca) refuse it until then",
            at(not_before)
        ))
    } else if not_after - now < EXPIRY_WARNED {
        let days = (not_after - now) / 86_400;
        Some(format!(
            "the certificate expires at {}, in {days} day(s): clients that trust it by a CA \
             (--ca) refuse it from then on; renew it before",
            at(not_after)
        ))
    } else {
        None
    }
}

/// Runs `seccs kms`.
pub fn run(args: KmsArgs) -> anyhow::Result<()> {
    if let Some(name) = args.command.key_name() {
        check_key_name(name)?;
    }
    match args.command {
        KmsCommand::Serve {
            dir,
            listen,
            cert,
            key,
            max_body,
            new_needs_token,
            audit_sync,
            audit_sync_interval,
        } => {
            crate::init_tracing("info");
            let mut cfg = ServerConfig::new(&dir);
            cfg.listen = listen;
            cfg.cert = cert;
            cfg.key = key;
            cfg.max_body = max_body;
            cfg.new_needs_token = new_needs_token;
            cfg.audit_sync = audit_sync;
            cfg.audit_sync_interval = audit_sync_interval;
            // A soft limit of 1,024 (a common default) would hold the
            // server to fewer than a thousand connections; what cannot be
            // raised the server fits its cap to, and says so.
            crate::harden::raise_open_file_limit(
                (cfg.max_connections as u64).saturating_add(server::DESCRIPTORS_KEPT),
            );
            server::serve_blocking(cfg, |s| announce(s, &dir))?;
        }
        KmsCommand::Check { dir, json } => check(&dir, json)?,
        KmsCommand::New { conn, out } => {
            // The KEK file's temporary file is created before the server
            // creates the key, so a destination that cannot be written
            // (taken, read-only, missing, a directory path) leaves no key
            // that no one holds the KEK of. It is made and registered in
            // one step, so that an interrupt while the server is asked
            // removes it too.
            let (file, _registered) = match out.as_deref() {
                Some(out) => {
                    let (file, registered) = crate::interrupt::make_registered(
                        || client::KekFile::create(out),
                        |f| f.temporary_path(),
                    )?;
                    (Some(file), Some(registered))
                }
                None => (None, None),
            };
            let kek = conn.client()?.run(|c| c.new_kek())?;
            match file {
                Some(file) => {
                    let path = file.path().to_owned();
                    file.write(&kek).with_context(|| {
                        format!(
                            "the server created a key, but its KEK could not be saved to {}",
                            path.display()
                        )
                    })?;
                    errln!("KEK written to {}", path.display());
                }
                None => {
                    // Not an I/O error any more: a closed pipe here loses a
                    // key, it is not the benign end of `… | head`.
                    dataln!("{}", seccs_core::hexenc::encode(kek.expose_secret())).map_err(
                        |e| {
                            anyhow::anyhow!(
                                "the server created a key, but its KEK could not be written to standard output ({e}): that key is lost; create another with --out FILE"
                            )
                        },
                    )?;
                }
            }
        }
        KmsCommand::Key {
            conn,
            kek: kek_file,
        } => {
            let kek = load_kek(&kek_file)?;
            let dek = conn
                .client()?
                .run(|c| c.dek(&kek))
                .map_err(|e| no_key_for_kek(e, &conn.server_shown(), &kek_file))?;
            dataln!("{}", seccs_core::hexenc::encode(dek.expose_secret()))?;
        }
        KmsCommand::Encrypt {
            conn,
            io,
            kek,
            name,
        } => match (kek, name) {
            (Some(kek), _) => local_stream(&conn, &io, &kek, true)?,
            (None, Some(name)) => named_one(&conn, &name, "encrypt", &io)?,
            (None, None) => anyhow::bail!("give --kek FILE or --name NAME"),
        },
        KmsCommand::Decrypt {
            conn,
            io,
            kek,
            name,
        } => match (kek, name) {
            (Some(kek), _) => local_stream(&conn, &io, &kek, false)?,
            (None, Some(name)) => named_one(&conn, &name, "decrypt", &io)?,
            (None, None) => anyhow::bail!("give --kek FILE or --name NAME"),
        },
        KmsCommand::Status { conn, json } => {
            let c = conn.client()?;
            // Text and JSON apart: the text line before the JSON made the
            // output neither, and `| json.tool` failed.
            if json {
                outln!("{}", serde_json::to_string(&c.run(|k| k.status())?)?)?;
            } else {
                outln!("{}", c.run(|k| k.status_text())?)?;
                outln!("named keys: {}", c.run(|k| k.status())?.named_keys)?;
            }
        }
        KmsCommand::Create {
            conn,
            name,
            pre_activation,
        } => {
            let state = if pre_activation {
                KeyState::PreActivation
            } else {
                KeyState::Active
            };
            let info = conn.client()?.run(|k| k.create_key(&name, state));
            print_json(&info.map_err(|e| about_named(&name, &conn.trust.server_shown(), e))?)?;
        }
        KmsCommand::List { conn, json } => {
            let names = conn.client()?.run(|k| k.list_keys())?;
            if json {
                outln!("{}", serde_json::to_string(&names)?)?;
            } else {
                for n in names {
                    outln!("{n}")?;
                }
            }
        }
        KmsCommand::Info { conn, name } => {
            let info = conn.client()?.run(|k| k.key_info(&name));
            print_json(&info.map_err(|e| about_named(&name, &conn.trust.server_shown(), e))?)?;
        }
        KmsCommand::Rotate { conn, name } => {
            let info = conn.client()?.run(|k| k.rotate(&name));
            print_json(&info.map_err(|e| about_named(&name, &conn.trust.server_shown(), e))?)?;
        }
        KmsCommand::State { conn, name, state } => {
            let state: KeyState = state.parse()?;
            let info = conn.client()?.run(|k| k.set_state(&name, state));
            print_json(&info.map_err(|e| about_named(&name, &conn.trust.server_shown(), e))?)?;
        }
        KmsCommand::MinVersion {
            conn,
            name,
            version,
        } => {
            let c = conn.client()?;
            let info = c.run(|k| k.set_min_decrypt_version(&name, version));
            let info = match info {
                // The server's "key version 99 may not be used (minimum 1,
                // latest 1)" said nothing of why: a version above the
                // latest does not exist (0 is refused as a usage error).
                Err(KmsError::Server { status: 409, body }) if body.starts_with("version:") => {
                    match c.run(|k| k.key_info(&name)) {
                        Ok(info) if version > info.latest_version => anyhow::bail!(
                            "the key server {} refused: key {name} has no version {version} \
                             (its latest is {}): give a version it has",
                            conn.trust.server_shown(),
                            info.latest_version
                        ),
                        _ => Err(KmsError::Server { status: 409, body }),
                    }
                }
                other => other,
            };
            print_json(&info.map_err(|e| about_named(&name, &conn.trust.server_shown(), e))?)?;
        }
        KmsCommand::Rewrap { conn, io, name } => {
            named_one(&conn, &name, "rewrap", &io)?;
        }
        KmsCommand::Datakey {
            conn,
            name,
            context,
        } => {
            let mut keys = conn
                .client()?
                .run(|k| k.datakeys(&name, 1, context.as_bytes()))
                .map_err(|e| about_named(&name, &conn.trust.server_shown(), e))?;
            let (key, wrapped) = keys.pop().context("the server answered no data key")?;
            print_json(&serde_json::json!({
                "plaintext": seccs_core::hexenc::encode(key.expose_secret()),
                "ciphertext": seccs_core::hexenc::encode(&wrapped),
            }))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate outside its validity, or near its end, is said at
    /// start with its date; one well inside it is not.
    #[test]
    fn a_certificate_outside_or_near_the_end_of_its_validity_is_warned_of() {
        let validity = server::Validity {
            not_before: 1_000_000_000,
            not_after: 2_000_000_000,
        };
        let said = |now| validity_warning(validity, now);
        let expired = said(2_000_000_001).unwrap_or_default();
        assert!(
            expired.contains("expired at 2033-05-18 03:33:20Z"),
            "{expired}"
        );
        let early = said(999_999_999).unwrap_or_default();
        assert!(early.contains("not valid before 2001-09-09"), "{early}");
        let soon = said(2_000_000_000 - 10 * 86_400).unwrap_or_default();
        assert!(soon.contains("in 10 day(s)"), "{soon}");
        assert_eq!(said(1_500_000_000), None);
        assert_eq!(said(2_000_000_000 - EXPIRY_WARNED), None);
    }
}
