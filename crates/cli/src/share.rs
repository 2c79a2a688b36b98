//! `seccs share …`: the share network's servers and clients. A thin layer over
//! `seccs_net`: it parses, reads the password and files, calls the library,
//! and prints.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use seccs_net::{Client, Config, Password, config::CONFIG_FILE, parse_tag_version};

use crate::input::{Bounded, BoundedInput, Opened};

/// Arguments of `seccs share`.
#[derive(Debug, Args)]
#[command(after_long_help = CONFIG_HELP)]
pub struct ShareArgs {
    #[command(subcommand)]
    command: ShareCommand,
}

impl ShareArgs {
    /// Whether the command prints JSON (check, ls, serv --json).
    pub fn json(&self) -> bool {
        match &self.command {
            ShareCommand::Check { json, .. }
            | ShareCommand::Ls { json, .. }
            | ShareCommand::Serv { json, .. } => *json,
            _ => false,
        }
    }
}

/// `e` said as `shown`, still a report of problems where it was one (so
/// that the exit status stays what `e`'s was).
fn reworded(e: &anyhow::Error, shown: String) -> anyhow::Error {
    match crate::exit::status(e) {
        crate::exit::PROBLEMS => crate::exit::Problems::from(shown).into(),
        _ => anyhow::anyhow!(shown),
    }
}

/// The error of a check that failed: too few records to rebuild is the
/// check's gravest finding (exit 1), anything else a check that could not
/// run.
fn check_error(e: seccs_net::Error) -> anyhow::Error {
    match e {
        seccs_net::Error::NotEnoughShares { .. } => {
            crate::exit::Problems::from(e.to_string()).into()
        }
        e => e.into(),
    }
}

/// The config file's format, for `seccs share --help`.
const CONFIG_HELP: &str = "\
Config file (TOML; a server reads ROOT/seccs-share.toml, a client \
~/.seccs-share/seccs-share.toml, either may be given with --config):

  broker = \"redis://127.0.0.1:6379\"   # or nats://HOST:PORT, or memory (tests); required
  name = \"basement-nas\"               # a server's name in listings (default: its id)
  timeout_secs = 30                   # how long a client waits for replies and acks
  threshold = 3                       # records needed to rebuild (default: n/2 + 1 online)
  min_acks = 4                        # servers that must acknowledge a save (>= threshold)
  [kdf]                               # how a password becomes a key (default below)
  algorithm = \"argon2id\"              # or scrypt (log_n, r, p)
  memory_kib = 65536
  iterations = 3
  parallelism = 1

A store key (seccs init --key-from-share) needs at least 2 servers, a \
non-empty password and a KDF of at least argon2id 19456 KiB x2 or scrypt \
log_n 15, r 8. A KDF may take at most 1 GiB of memory and 4 GiB x passes \
(memory_kib x iterations <= 4194304). The password comes from --password-file, \
SECCS_SHARE_PASSWORD_FILE, SECCS_SHARE_PASSWORD (empty counts as unset) or a prompt; a save refuses an \
empty one. Anyone who can use the broker can list, delete or flood records: \
close it with a Redis password or ACL user, or NATS credentials. The prompt \
(seccs share client) keeps its history in ~/.seccs-share/history when run on a \
terminal.";

#[derive(Debug, Subcommand)]
enum ShareCommand {
    /// Run a share server that keeps records in ROOT, until SIGINT, SIGTERM
    /// or SIGHUP (one ignored at start, as SIGHUP under nohup, stays
    /// ignored).
    Serve {
        /// Config file (default: ROOT/seccs-share.toml).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where records are kept (default: ~/.seccs-share).
        #[arg(short, long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Open the interactive prompt (save, load, check, ls, serv, rm, help,
    /// exit).
    /// Commands may also come on standard input, one a line: then the exit
    /// status is 1 if any failed.
    Client {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        save: SaveArgs,
    },
    /// Save FILE (`-` for stdin) as a new version of TAG. The file is held in
    /// memory; each server's share must fit in one 1 GiB message, so a save
    /// carries up to about t GiB (t the threshold).
    ///
    /// With the default threshold (n/2 + 1 of the servers online), a save
    /// while servers are offline may need every server that took part (2 of
    /// 3 down to 2 of 2): it then warns that no server can be lost.
    Save {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        save: SaveArgs,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
        /// The tag.
        tag: String,
        /// The file, or `-` for stdin.
        file: PathBuf,
    },
    /// Load TAG (or TAG@N for version N) into FILE (`-` for stdout).
    ///
    /// TAG loads the newest version that at least t servers hold (t its
    /// save's threshold); newer versions that fewer hold are passed over
    /// with a warning. When that newest version cannot be rebuilt (a wrong
    /// password, altered records, servers gone), the load fails, naming it:
    /// ask for an older one with TAG@N, or use --or-older.
    Load {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        password: PasswordArgs,
        /// When the newest version cannot be rebuilt, load the newest that
        /// can, with a warning naming each newer one and why.
        #[arg(long)]
        or_older: bool,
        /// No progress spinner.
        #[arg(short, long)]
        quiet: bool,
        /// The tag, optionally with @VERSION.
        tag: String,
        /// The file to write, or `-` for stdout. An existing file is
        /// replaced, only once the load has succeeded; a file that cannot
        /// be written is refused before any server is asked.
        file: PathBuf,
    },
    /// Check TAG's newest version (TAG@N: version N; no TAG: every tag's
    /// newest) on every server online: fetch each server's record and check
    /// it against the save's authentic manifest.
    ///
    /// A load asks only t servers when they agree, so it does not see a
    /// record altered or lost on the others; a check does, and says for
    /// each server whether its record is authentic, left out (altered,
    /// forged), of another save, a copy of another's, missing, or not
    /// answered. The exit status is 0 when all n records the save made are
    /// authentic on servers online, and 1 when any is missing or bad (the
    /// file may still rebuild: the output says) or the version does not
    /// rebuild (the error says why); 2 when the check cannot run (the
    /// password does not open the tag, no server or broker answers), with
    /// --json then {"error", "exit"} last. Run it from cron to learn of a failing
    /// server before fewer than t are left. A save that needs all n of its
    /// servers (t = n, saved while the others were offline) is said to have
    /// no spare server: it may be whole, but losing any one loses it.
    Check {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        password: PasswordArgs,
        /// One JSON object per tag: tag, version, n, t, spare_servers
        /// (n - t: how many servers may be lost), whole, and the
        /// servers in each state (authentic, bad with reasons, superseded,
        /// repeated, without_record, silent with the failure), also when
        /// it is not whole; each server is {"channel", "name"} as `serv
        /// --json` gives it ("name" null when it did not answer the
        /// listing), with "reason" for bad and silent ones; a tag that does
        /// not rebuild is {"tag", "error"}, and so is, when every tag is
        /// checked, one the password does not open.
        #[arg(long)]
        json: bool,
        /// The tag, optionally with @VERSION. Without it, every tag listed
        /// is checked (its newest version), each of which must open with
        /// the password given; the exit status is 1 if any is not whole or
        /// does not rebuild, 2 if any could not be checked.
        tag: Option<String>,
    },
    /// List tags and their versions.
    Ls {
        #[command(flatten)]
        client: ClientArgs,
        /// Only tags starting with this.
        prefix: Option<String>,
        /// One JSON object per tag: tag, versions (version, servers,
        /// stored_bytes).
        #[arg(long)]
        json: bool,
    },
    /// List the servers online.
    Serv {
        #[command(flatten)]
        client: ClientArgs,
        /// One JSON object per server: channel, name, records,
        /// stored_bytes, free_bytes.
        #[arg(long)]
        json: bool,
    },
    /// Remove TAG (every version), or TAG@N (one version), from the
    /// servers online.
    ///
    /// Servers offline now are not reached: they keep what they hold, and
    /// it comes back when they return (run rm again then). The output says
    /// how many servers removed it, and warns when the version was saved to
    /// more servers than that.
    ///
    /// A tag that `seccs init --key-from-share` made holds a store's key:
    /// removing it (TAG, or TAG@1, the version the store loads) makes that
    /// store unopenable for good, and nothing asks first. (A later `save`
    /// to the tag adds a version the store does not use.)
    Rm {
        #[command(flatten)]
        client: ClientArgs,
        /// The tag, optionally with @VERSION.
        tag: String,
    },
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// Config file (default: ~/.seccs-share/seccs-share.toml).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Where the password of a save or load comes from (listings and
/// removals need none).
#[derive(Debug, Args)]
struct PasswordArgs {
    /// Read the password from the first line of this file (at most 64 KiB
    /// is read; anything after the first line is ignored, with a warning).
    /// Defaults to $SECCS_SHARE_PASSWORD_FILE (when set and not empty);
    /// without either, SECCS_SHARE_PASSWORD, else a prompt.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

/// How a save splits its file (a load, listing or removal reads the
/// threshold each record was saved with).
#[derive(Debug, Args)]
struct SaveArgs {
    /// Records needed to rebuild the file, from 1 to 255 (default: n/2 + 1
    /// of the servers online).
    #[arg(long, value_name = "N", value_parser = parse_threshold)]
    threshold: Option<usize>,
}

/// `--threshold`: from 1 to 255, the most servers a save can split to.
fn parse_threshold(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(t @ 1..=255) => Ok(t),
        _ => Err(format!("{text:?} is not a threshold: give from 1 to 255")),
    }
}

fn default_root() -> PathBuf {
    dirs::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".seccs-share")
}

/// Reads the config file `path`, or `root`'s. A missing one is said with
/// what it must hold: at least the broker line.
fn load_config(path: Option<&Path>, root: &Path) -> anyhow::Result<Config> {
    let path = path.map_or_else(|| root.join(CONFIG_FILE), Path::to_path_buf);
    load_config_file(&path, "--config")
}

/// Reads the share config file `path`, which `option` names. Its errors
/// name it once; a missing one is said with what it must hold: at least
/// the broker line. What share commands and a store's init both read.
pub fn load_config_file(path: &Path, option: &str) -> anyhow::Result<Config> {
    match Config::load(path) {
        Err(seccs_net::Error::Io { context, cause })
            if cause.kind() == std::io::ErrorKind::NotFound =>
        {
            anyhow::bail!(
                "{context}: {cause}: make it with at least the broker line, `broker = \"redis://127.0.0.1:6379\"` \
                 (or nats://HOST:PORT), or give another file with {option}; `seccs share --help` \
                 gives every setting"
            )
        }
        loaded => Ok(loaded?),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The password: `--password-file`, else a non-empty
/// `SECCS_SHARE_PASSWORD_FILE` (as store commands read it), else
/// `SECCS_SHARE_PASSWORD`, else a prompt without echo (twice when
/// `confirm`).
fn password(args: &PasswordArgs, confirm: bool) -> anyhow::Result<Password> {
    password_from(
        password_file_or_env(args.password_file.as_deref(), "--password-file").as_ref(),
        confirm,
    )
}

/// A share password's file, and where its name came from, so that an
/// error about it says which option or variable to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFile {
    /// The file.
    pub path: PathBuf,
    /// Where its name came from: "given with --password-file", "named by
    /// SECCS_SHARE_PASSWORD_FILE".
    named_by: String,
}

impl PasswordFile {
    /// The file `path`, given with `option`.
    pub fn given(path: &Path, option: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            named_by: format!("given with {option}"),
        }
    }

    /// The file as an error names it: its path and where that came from.
    fn shown(&self) -> String {
        format!("{} ({})", self.path.display(), self.named_by)
    }
}

/// The share password's file: `given` (the option `option`'s), else a
/// non-empty `SECCS_SHARE_PASSWORD_FILE`; what store and share commands
/// both read.
pub fn password_file_or_env(given: Option<&Path>, option: &str) -> Option<PasswordFile> {
    given
        .map(|path| PasswordFile::given(path, option))
        .or_else(|| {
            std::env::var_os("SECCS_SHARE_PASSWORD_FILE")
                .filter(|v| !v.is_empty())
                .map(|path| PasswordFile {
                    path: PathBuf::from(path),
                    named_by: "named by SECCS_SHARE_PASSWORD_FILE".into(),
                })
        })
}

/// The input a save of `file` (`-`: standard input) carries, opened, and
/// refused through `too_large` when its size is over `max` bytes; read it
/// with [`read_save_input`].
fn open_save_input(
    file: &Path,
    max: u64,
    too_large: impl Fn(String) -> anyhow::Error,
) -> anyhow::Result<BoundedInput> {
    let stdin = file == Path::new("-");
    match crate::input::open_bounded((!stdin).then_some(file), max)? {
        Opened::Within(input) => Ok(input),
        // Only a file has a size to be refused by.
        Opened::Over { size } => Err(too_large(format!("{} is {size}", file.display()))),
    }
}

/// What a save of `input` carries, refused through `too_large` when
/// reading it goes past `max` bytes.
fn read_save_input(
    input: BoundedInput,
    max: u64,
    too_large: impl Fn(String) -> anyhow::Error,
) -> anyhow::Result<Vec<u8>> {
    let name = input.name().to_owned();
    match input.read()? {
        Bounded::Whole(data) => Ok(data),
        Bounded::Over { .. } => Err(too_large(format!("{name} holds over {max}"))),
    }
}

/// The most of a password file read: a password is one line, and a device
/// (`/dev/zero`) or the wrong file named by mistake is refused at the bound
/// rather than read until memory runs out.
const MAX_PASSWORD_FILE: u64 = 64 << 10;

/// The bytes of the password file `path`, within [`MAX_PASSWORD_FILE`].
fn read_password_file(file: &PasswordFile) -> anyhow::Result<Password> {
    let path = &file.path;
    let cannot_read = || format!("cannot read the password file {}", file.shown());
    // Room for all that is read (the bound and the byte past it that shows
    // a file over it) at once, so that the buffer never grows: a growth
    // would leave the bytes read so far behind, unwiped, in the buffer it
    // frees.
    let mut bytes = Vec::with_capacity(MAX_PASSWORD_FILE as usize + 1);
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PASSWORD_FILE + 1).read_to_end(&mut bytes))
        .with_context(cannot_read);
    // Held as a password from the moment it is read, so it is zeroized,
    // whatever happens next.
    let bytes = Password::new(bytes);
    read?;
    if bytes.expose_secret().len() as u64 > MAX_PASSWORD_FILE {
        anyhow::bail!(
            "the password file {} is larger than {MAX_PASSWORD_FILE} bytes: not a password file",
            file.shown()
        );
    }
    Ok(bytes)
}

/// The share password from a file, else `SECCS_SHARE_PASSWORD` (empty
/// counts as unset, as an empty `SECCS_STORE` does), else a prompt without
/// echo (twice when `confirm`, which is for a save: then an empty password
/// is refused, wherever it came from).
pub fn password_from(file: Option<&PasswordFile>, confirm: bool) -> anyhow::Result<Password> {
    let refuse_empty = |from: String| {
        anyhow::anyhow!(
            "{from} is empty: a save needs a password (anyone on the broker could load what \
             an empty one guards)"
        )
    };
    if let Some(file) = file {
        let path = &file.path;
        // Held as a password from the moment it is read, so it is zeroized.
        let text = read_password_file(file)?;
        // As for a KEK file: the password is the credential, so a file
        // others can read is used but said, once (a command reads it once).
        if let Some(mode) = seccs_kms::client::kek_file_mode_exposed(path) {
            errln!(
                "seccs: warning: the password file {} can be read by others (mode {mode:o}): \
                 make it 0600 (`chmod 600`); whoever holds the password can load what it guards",
                path.display()
            );
        }
        let bytes = text.expose_secret();
        let end = bytes
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(bytes.len());
        let line = bytes[..end].strip_suffix(b"\r").unwrap_or(&bytes[..end]);
        // Only the first line is the password. More after its line ending
        // (another line, or bytes that are no text) is still ignored, so
        // that saves made with such a file still load, but said: a password
        // written over several lines, or the wrong file, would otherwise
        // pass unseen.
        if bytes.len() > end + 1 {
            errln!(
                "seccs: warning: the password file {} holds more than one line: only its first \
                 line is the password, the rest is ignored",
                path.display()
            );
        }
        if confirm && line.is_empty() {
            return Err(refuse_empty(format!(
                "the password file {} (its first line)",
                path.display()
            )));
        }
        return Ok(Password::new(line.to_vec()));
    }
    // A password is bytes: a value that is not UTF-8 is taken as it is,
    // not passed over for a prompt (nor turned into other bytes).
    if let Some(p) = std::env::var_os("SECCS_SHARE_PASSWORD")
        && !p.is_empty()
    {
        use std::os::unix::ffi::OsStringExt;
        return Ok(Password::new(p.into_vec()));
    }
    let no_terminal = "cannot ask for the share password (no terminal to ask on?): set \
                       SECCS_SHARE_PASSWORD, or give a password file where the command takes one";
    let first = Password::new(
        rpassword::prompt_password("Password: ")
            .context(no_terminal)?
            .into_bytes(),
    );
    if confirm {
        if first.expose_secret().is_empty() {
            return Err(refuse_empty("the password typed".into()));
        }
        let again = Password::new(
            rpassword::prompt_password("Password again: ")
                .context(no_terminal)?
                .into_bytes(),
        );
        anyhow::ensure!(
            first.expose_secret() == again.expose_secret(),
            "the passwords differ"
        );
    }
    Ok(first)
}

/// The interactive prompt's password, asked once and reused. A save uses a
/// cached password only if it was typed twice or opened a file since; any
/// other save asks again, twice. A password that failed to decrypt is
/// forgotten, so it is never reused, least of all for a save.
#[derive(Default)]
struct PasswordCache {
    password: Option<Password>,
    trusted: bool,
}

impl PasswordCache {
    /// The password for a save (`for_save`: it must be confirmed) or a load;
    /// `ask(confirm)` reads one.
    fn get(
        &mut self,
        for_save: bool,
        ask: impl FnOnce(bool) -> anyhow::Result<Password>,
    ) -> anyhow::Result<Password> {
        if let Some(p) = &self.password
            && (self.trusted || !for_save)
        {
            return Ok(p.clone());
        }
        let p = ask(for_save)?;
        self.password = Some(p.clone());
        self.trusted = for_save;
        Ok(p)
    }

    /// Records the outcome of a load with the cached password.
    fn loaded(&mut self, result: &anyhow::Result<()>) {
        match result {
            Ok(()) => self.trusted = self.password.is_some(),
            Err(e)
                if e.downcast_ref::<seccs_net::Error>()
                    .is_some_and(seccs_net::Error::is_decrypt) =>
            {
                *self = Self::default();
            }
            Err(_) => {}
        }
    }
}

/// Loads `spec` into `file` (`-`: standard output) on `rt`. A file's
/// temporary file is made beside it first, so that a FILE that cannot be
/// written (its directory missing or not writable, a directory) is refused
/// before any server is asked and the password's keys are derived; an
/// existing FILE is replaced only once the load has succeeded.
fn load_into(
    rt: &tokio::runtime::Runtime,
    session: &Session,
    spec: &str,
    file: &Path,
    pw: &Password,
    or_older: bool,
) -> anyhow::Result<()> {
    if file == Path::new("-") {
        let r = rt.block_on(session.load(spec, pw, or_older))?;
        return crate::output::write_bytes(None, &r.data);
    }
    let mut loaded = None;
    crate::output::write_file_atomically(file, |out| {
        let r = rt.block_on(session.load(spec, pw, or_older))?;
        out.write_all(&r.data)
            .with_context(|| format!("cannot write {}", crate::tree::shown_path(file)))?;
        loaded = Some((r.version, r.data.len()));
        Ok(())
    })?;
    if let Some((version, bytes)) = loaded {
        let (tag, _) = parse_tag_version(spec);
        errln!("loaded {tag}@{version} ({bytes} bytes)");
    }
    Ok(())
}

/// How long an error waits for the servers' names it shows.
const NAME_LOOKUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A client connected to the share network, which the commands run on.
struct Session {
    client: Client,
    /// No progress bar or spinner (`-q`), even on a terminal.
    quiet: bool,
}

impl Session {
    async fn open(args: &ClientArgs) -> anyhow::Result<Self> {
        let config = load_config(args.config.as_deref(), &default_root())?;
        let client = Client::connect(&config).await?;
        Ok(Self {
            client,
            quiet: false,
        })
    }

    /// A session whose saves use `save`'s threshold.
    async fn open_to_save(args: &ClientArgs, save: &SaveArgs) -> anyhow::Result<Self> {
        let mut session = Self::open(args).await?;
        if save.threshold.is_some() {
            session.client.options_mut().threshold = save.threshold;
        }
        Ok(session)
    }

    async fn save(&mut self, tag: &str, file: &Path, pw: &Password) -> anyhow::Result<()> {
        // A save holds the whole file in memory: refuse what it cannot carry
        // before reading it, not after.
        let max = self.client.max_save_len().await?;
        let too_large = |what: String| {
            anyhow::anyhow!(
                "{what} bytes, more than a save to the servers online carries ({max} bytes: each \
                 server's share must fit in one 1 GiB message); raise the threshold (--threshold) or \
                 split the file"
            )
        };
        let input = open_save_input(file, max, too_large)?;
        // The KDF runs before the file is read, so that its memory is free
        // again before the save holds the file; a mistyped tag is refused
        // before it runs.
        seccs_net::client::check_new_tag(tag)?;
        let keys = self.client.save_keys(pw).await?;
        let data = read_save_input(input, max, too_large)?;
        let bar = crate::progress::enabled(self.quiet).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        if let Some(bar) = &bar {
            let b = bar.clone();
            self.client.set_progress(Some(Arc::new(move |done, total| {
                b.set_length(total);
                b.set_position(done);
            })));
        }
        let result = self.client.save_owned_keyed(tag, data, &keys).await;
        self.client.set_progress(None);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let r = result?;
        for w in &r.warnings {
            errln!("warning: {w}");
        }
        // Each server that did not store it, by name, with its reason: one
        // that refused (its disk full) is online, and more servers online
        // would not help.
        let names = if r.not_stored.is_empty() {
            std::collections::HashMap::new()
        } else {
            tokio::time::timeout(NAME_LOOKUP_LIMIT, self.names())
                .await
                .unwrap_or_default()
        };
        for miss in &r.not_stored {
            errln!(
                "warning: {} did not store {tag}@{}: {}{}",
                relabel_text(&miss.server, &names),
                r.version,
                miss.why,
                if miss.answered {
                    " (the server's answer)"
                } else {
                    ""
                }
            );
        }
        outln!(
            "saved {tag}@{}: {} of {} server{} hold{} it, any {} rebuild{} it",
            r.version,
            r.stored_on,
            r.servers,
            plural(r.servers),
            if r.stored_on == 1 { "s" } else { "" },
            r.threshold,
            if r.threshold == 1 { "s" } else { "" }
        )?;
        // The servers that hold it, not those asked: one that failed to
        // store it is no spare.
        if let Some(warning) = no_spare_warning(r.stored_on, r.threshold) {
            let again = if r.not_stored.is_empty() {
                "save it again when more servers are online"
            } else if r.not_stored.iter().all(|m| m.answered) {
                "save it again once the servers named above can store it"
            } else {
                "save it again once the servers named above are online and can store it"
            };
            errln!(
                "warning: {tag}@{} was {warning}; {again}, or with a lower --threshold",
                r.version
            );
        }
        Ok(())
    }

    /// The configured name of each server online, by channel (none when
    /// the servers do not answer).
    async fn names(&self) -> std::collections::HashMap<String, String> {
        self.client
            .server_status()
            .await
            .map(|all| all.into_iter().map(|s| (s.channel, s.info.name)).collect())
            .unwrap_or_default()
    }

    /// `e`, with each server channel it names shown with the server's name.
    async fn relabel(&self, e: anyhow::Error) -> anyhow::Error {
        let text = format!("{e:#}");
        if !text.contains(seccs_net::server::SERVER_PREFIX) {
            return e;
        }
        // Names only dress an error up: after a failure (servers silent, the
        // broker gone) they are not worth another full timeout.
        let names = tokio::time::timeout(NAME_LOOKUP_LIMIT, self.names())
            .await
            .unwrap_or_default();
        let shown = relabel_text(&text, &names);
        if shown == text {
            e
        } else {
            reworded(&e, shown)
        }
    }

    /// Loads `spec` (TAG or TAG@N) and says on standard error what the
    /// load passed over or left out; writing it is [`load_into`]'s.
    async fn load(
        &self,
        spec: &str,
        pw: &Password,
        or_older: bool,
    ) -> anyhow::Result<seccs_net::LoadReport> {
        let (tag, version) = parse_tag_version(spec);
        if or_older && version.is_some() {
            anyhow::bail!(
                "--or-older loads the newest version of a tag that rebuilds; it does not apply \
                 to {spec}, one version"
            );
        }
        let spinner = crate::progress::enabled(self.quiet).then(|| {
            let s = ProgressBar::new_spinner();
            s.set_message(format!("loading {tag}"));
            s.enable_steady_tick(std::time::Duration::from_millis(100));
            s
        });
        let result = if or_older {
            self.client.load_or_older(tag, pw).await
        } else {
            self.client.load(tag, version, pw).await
        };
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        let r = result?;
        let names = if r.bad_servers.is_empty()
            && r.superseded_servers.is_empty()
            && r.repeated_servers.is_empty()
        {
            std::collections::HashMap::new()
        } else {
            self.names().await
        };
        let label = |channel: &str| relabel_text(channel, &names);
        for (passed, why) in &r.passed_over {
            errln!(
                "warning: {tag}@{passed} was passed over: {why} (a stray or half-saved record, \
                 or its servers are offline); loaded {tag}@{}",
                r.version
            );
        }
        for (newer, why) in &r.newer_failed {
            errln!(
                "warning: {tag}@{newer} could not be rebuilt ({why}); loaded the older {tag}@{}",
                r.version
            );
        }
        for (bad, why) in &r.bad_reasons {
            errln!(
                "warning: a record sent in the name of server {} was left out ({why}): a \
                 faulty server, or another client of the broker sending in its name",
                label(bad)
            );
        }
        for other in &r.superseded_servers {
            errln!(
                "note: server {} holds another save of {tag}@{} (made while the servers were \
                 partitioned, or left by a failed save), which too few servers hold to load; \
                 it was left out",
                label(other),
                r.version
            );
        }
        for copy in &r.repeated_servers {
            errln!(
                "note: server {} holds the same share of {tag}@{} as another server \
                 (a copy of its record); it was counted once",
                label(copy),
                r.version
            );
        }
        Ok(r)
    }

    async fn ls(&self, prefix: &str, json: bool) -> anyhow::Result<()> {
        let listing = self.client.list(prefix).await?;
        if listing.is_empty() && !json {
            // Said apart from the listing, so that a script reads nothing.
            match prefix {
                "" => errln!("note: the servers hold no tags"),
                prefix => errln!("note: no tags start with {prefix:?}"),
            }
        }
        for l in listing {
            if json {
                let versions: Vec<_> = l
                    .versions
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "version": v.version,
                            "servers": v.servers,
                            "stored_bytes": v.stored_bytes,
                        })
                    })
                    .collect();
                outln!(
                    "{}",
                    serde_json::json!({ "tag": l.tag, "versions": versions })
                )?;
                continue;
            }
            let versions: Vec<String> = l
                .versions
                .iter()
                .map(|v| {
                    format!(
                        "@{} on {} server{}",
                        v.version,
                        v.servers,
                        plural(v.servers)
                    )
                })
                .collect();
            // A tag is anyone's on the broker: escaped like a file name, so
            // it can neither forge a line nor reach the terminal.
            let tag = crate::tree::shown_name(&l.tag, seccs_store::catalog::EntryKind::File);
            outln!("{tag}\t{}", versions.join(", "))?;
        }
        Ok(())
    }

    /// Checks every server's record of `spec`, or of every tag's newest
    /// version when `None`; an error when any record a save made is
    /// missing or bad, or a version does not rebuild.
    async fn check(&self, spec: Option<&str>, pw: &Password, json: bool) -> anyhow::Result<()> {
        let names = self.names().await;
        let Some(spec) = spec else {
            return self.check_all(pw, json, &names).await;
        };
        let (tag, version) = parse_tag_version(spec);
        let r = match self.client.check(tag, version, pw).await {
            Ok(r) => r,
            Err(e) => {
                let e = check_error(e);
                if json && crate::exit::status(&e) == crate::exit::PROBLEMS {
                    let why = relabel_text(&e.to_string(), &names);
                    outln!("{}", serde_json::json!({ "tag": tag, "error": why }))?;
                }
                // Server names are put in by the caller's relabelling.
                return Err(e);
            }
        };
        show_check(tag, &r, json, &names)?;
        whole_or_why(tag, &r)
    }

    /// [`Self::check`] of each tag listed, going on past those that fail.
    async fn check_all(
        &self,
        pw: &Password,
        json: bool,
        names: &std::collections::HashMap<String, String>,
    ) -> anyhow::Result<()> {
        let tags = self.client.list("").await?;
        // Tags found not whole or not rebuilding (findings), and tags that
        // could not be checked (a password that opens another tag only,
        // servers gone): a check of the second kind did not run.
        let (mut failed, mut unchecked) = (0usize, 0usize);
        for listing in &tags {
            let tag = &listing.tag;
            let result = match self.client.check(tag, None, pw).await {
                Ok(r) => {
                    show_check(tag, &r, json, names)?;
                    // The report just printed says it is not whole
                    // ("whole": false); an error object after it would
                    // make two objects for the one tag.
                    if json {
                        if !r.is_whole() {
                            failed += 1;
                        }
                        continue;
                    }
                    whole_or_why(tag, &r)
                }
                Err(e) => Err(check_error(e)),
            };
            if let Err(e) = result {
                match crate::exit::status(&e) {
                    crate::exit::PROBLEMS => failed += 1,
                    _ => unchecked += 1,
                }
                let why = relabel_text(&format!("{e:#}"), names);
                if json {
                    outln!("{}", serde_json::json!({ "tag": tag, "error": why }))?;
                } else {
                    errln!("error: {}: {why}", shown_tag(tag));
                }
            }
        }
        let found = match failed {
            0 => String::new(),
            f => format!(
                "{f} of the {} tags checked {} not whole or did not rebuild",
                tags.len(),
                if f == 1 { "is" } else { "are" }
            ),
        };
        if unchecked > 0 {
            anyhow::bail!(
                "{unchecked} of the {} tags could not be checked (each said above){}",
                tags.len(),
                match found.is_empty() {
                    true => String::new(),
                    false => format!("; {found}"),
                }
            );
        }
        if failed > 0 {
            problems!("{found}");
        }
        if !json {
            errln!(
                "checked {} tag{}: every record of each newest version is authentic",
                tags.len(),
                plural(tags.len())
            );
        }
        Ok(())
    }

    async fn serv(&self, json: bool) -> anyhow::Result<()> {
        for s in self.client.server_status().await? {
            if json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "channel": s.channel,
                        "name": s.info.name,
                        "records": s.info.records,
                        "stored_bytes": s.info.stored_bytes,
                        "free_bytes": s.info.free_bytes,
                    })
                )?;
                continue;
            }
            // A server names itself: escaped, as a tag is.
            outln!(
                "{}\t{}\t{} records\t{} bytes stored\t{} bytes free",
                s.channel.escape_debug(),
                s.info.name.escape_debug(),
                s.info.records,
                s.info.stored_bytes,
                s.info.free_bytes
            )?;
        }
        Ok(())
    }

    async fn rm(&self, spec: &str) -> anyhow::Result<()> {
        let (tag, version) = parse_tag_version(spec);
        let r = self.client.remove_report(tag, version).await?;
        outln!(
            "removed {spec} from {} of the {} server{} online",
            r.removed_from,
            r.asked,
            if r.asked == 1 { "" } else { "s" }
        )?;
        match r.saved_to {
            Some(n) if n > r.removed_from => errln!(
                "warning: {spec} was saved to {n} servers and {} removed it: the other {}, \
                 offline now or not answering, may still hold it, and it comes back when \
                 they return (run rm again then)",
                r.removed_from,
                n - r.removed_from
            ),
            Some(_) => {}
            None => errln!(
                "note: servers offline now were not reached; what they hold of {spec} comes \
                 back when they return (run rm again then)"
            ),
        }
        Ok(())
    }
}

/// A tag as a terminal may show it: anyone on the broker names tags, so
/// one can neither forge a line nor send a control sequence.
fn shown_tag(tag: &str) -> String {
    crate::tree::shown_name(tag, seccs_store::catalog::EntryKind::File).to_string()
}

/// Prints what a check of `tag` found, as one JSON object or a line a
/// server.
fn show_check(
    tag: &str,
    r: &seccs_net::CheckReport,
    json: bool,
    names: &std::collections::HashMap<String, String>,
) -> anyhow::Result<()> {
    let label = |channel: &str| relabel_text(channel, names);
    if json {
        // A server as `serv --json` gives it, by channel and name (null
        // when it did not answer the listing), so that a script can join
        // the two.
        let server =
            |channel: &str| serde_json::json!({ "channel": channel, "name": names.get(channel) });
        let labels = |servers: &[String]| -> Vec<serde_json::Value> {
            servers.iter().map(|s| server(s)).collect()
        };
        let with_reasons = |servers: &[(String, String)]| -> Vec<serde_json::Value> {
            servers
                .iter()
                .map(|(s, why)| {
                    let mut one = server(s);
                    one["reason"] = serde_json::json!(why);
                    one
                })
                .collect()
        };
        outln!(
            "{}",
            serde_json::json!({
                "tag": tag,
                "version": r.version,
                "n": r.n,
                "t": r.t,
                "spare_servers": r.n.saturating_sub(r.t),
                "whole": r.is_whole(),
                "authentic": labels(&r.authentic),
                "bad": with_reasons(&r.bad),
                "superseded": labels(&r.superseded),
                "repeated": labels(&r.repeated),
                "without_record": labels(&r.without_record),
                "silent": with_reasons(&r.silent),
            })
        )?;
        return Ok(());
    }
    outln!(
        "{}@{}: {} of the {} records its save made are authentic on servers online ({} \
         rebuild it)",
        shown_tag(tag),
        r.version,
        r.authentic.len(),
        r.n,
        r.t
    )?;
    if let Some(warning) = no_spare_warning(r.n.into(), r.t.into()) {
        outln!("  no spare server: it was {warning}")?;
    }
    for s in &r.authentic {
        outln!("  authentic       {}", label(s))?;
    }
    for (s, why) in &r.bad {
        outln!("  bad             {} ({why})", label(s))?;
    }
    for s in &r.superseded {
        outln!("  another save    {}", label(s))?;
    }
    for s in &r.repeated {
        outln!("  copy of another {}", label(s))?;
    }
    for s in &r.without_record {
        outln!("  no record       {}", label(s))?;
    }
    for (s, why) in &r.silent {
        outln!("  no answer       {} ({why})", label(s))?;
    }
    Ok(())
}

/// Nothing when every record the check of `tag` found is authentic, and
/// all its save made are; else the error that says what is not.
fn whole_or_why(tag: &str, r: &seccs_net::CheckReport) -> anyhow::Result<()> {
    if r.is_whole() {
        return Ok(());
    }
    let bad = r.bad.len();
    problems!(
        "{}@{} is not whole: {} of the {} records its save made are authentic on the servers \
         online{}; it still rebuilds, as {} {} enough",
        shown_tag(tag),
        r.version,
        r.authentic.len(),
        r.n,
        match bad {
            0 => String::new(),
            b => format!(
                ", and {b} server{} hold{} a bad record",
                plural(b),
                if b == 1 { "s" } else { "" }
            ),
        },
        r.t,
        if r.t == 1 { "is" } else { "are" },
    )
}

/// What to say of a save to `n` servers that all `t` are needed to
/// rebuild: losing any one server's records loses the file. Nothing when
/// one or more could be lost, or when there was only one server.
pub fn no_spare_warning(n: usize, t: usize) -> Option<String> {
    (t >= n && n > 1).then(|| {
        format!(
            "saved to {n} servers and each one is needed to rebuild it: no server can be lost \
             (losing any one's records loses it)"
        )
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `text` with each server channel in `names` shown as `NAME (CHANNEL)`.
fn relabel_text(text: &str, names: &std::collections::HashMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (channel, name) in names {
        if out.contains(channel.as_str()) {
            // A server names itself: escaped, as a tag is.
            out = out.replace(
                channel.as_str(),
                &format!("{} ({channel})", name.escape_debug()),
            );
        }
    }
    out
}

const COMMANDS: &[&str] = &["save", "load", "check", "ls", "serv", "rm", "help", "exit"];
const HELP: &str = "save TAG FILE   save FILE as a new version of TAG
load TAG[@N] FILE  load TAG (or version N) into FILE
check TAG[@N]   check every server's record of TAG (or version N)
ls [PREFIX]     list tags and versions
serv            list servers online
rm TAG[@N]      remove TAG (or one version)
help            this text
exit            leave
Quote a tag or file with spaces as in a shell: save 'my notes' \"notes 2024.txt\"";

struct Completion;

impl rustyline::completion::Completer for Completion {
    type Candidate = String;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let head = &line[..pos];
        if head.contains(' ') {
            return Ok((pos, Vec::new()));
        }
        Ok((
            0,
            COMMANDS
                .iter()
                .filter(|c| c.starts_with(head))
                .map(|c| (*c).to_owned())
                .collect(),
        ))
    }
}
impl rustyline::hint::Hinter for Completion {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Completion {}
impl rustyline::validate::Validator for Completion {}
impl rustyline::Helper for Completion {}

/// The usage of an interactive command given the wrong arguments.
fn usage(command: &str) -> anyhow::Error {
    let line = HELP
        .lines()
        .find(|l| l.split_whitespace().next() == Some(command))
        .map_or(command, |l| l.split("  ").next().unwrap_or(l).trim());
    anyhow::anyhow!("usage: {line}")
}

fn interactive(args: &ClientArgs, pw: &PasswordArgs, save: &SaveArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let mut session = rt.block_on(Session::open_to_save(args, save))?;
    let mut rl = rustyline::Editor::<Completion, rustyline::history::DefaultHistory>::new()?;
    rl.set_helper(Some(Completion));
    // History only of what a person typed: never of a script on stdin.
    let terminal = std::io::stdin().is_terminal();
    let history = default_root().join("history");
    if terminal {
        let _ = rl.load_history(&history);
    }
    let mut passwords = PasswordCache::default();
    let mut failed = 0usize;
    loop {
        let line = match rl.readline("seccs-share> ") {
            Ok(l) => l,
            Err(
                rustyline::error::ReadlineError::Interrupted | rustyline::error::ReadlineError::Eof,
            ) => break,
            Err(e) => return Err(e.into()),
        };
        if line.trim().is_empty() {
            continue;
        }
        if terminal {
            let _ = rl.add_history_entry(line.as_str());
        }
        // Words as a shell splits them, so that a tag or a file with spaces
        // can be given quoted.
        let Some(words) = shlex::split(&line) else {
            failed += 1;
            errln!(
                "error: a quote is not closed: quote a tag or file with spaces as 'a b' or \"a b\""
            );
            continue;
        };
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let result = match words.as_slice() {
            ["save", _, "-"] => Err(anyhow::anyhow!(
                "save TAG -: standard input carries the commands here; give a file"
            )),
            ["save", tag, file] => passwords
                .get(true, |confirm| password(pw, confirm))
                .and_then(|p| {
                    rt.block_on(async {
                        let r = session.save(tag, Path::new(file), &p).await;
                        match r {
                            Err(e) => Err(session.relabel(e).await),
                            ok => ok,
                        }
                    })
                }),
            ["save", ..] => Err(usage("save")),
            ["load", tag, file] => passwords
                .get(false, |confirm| password(pw, confirm))
                .and_then(|p| {
                    let result = load_into(&rt, &session, tag, Path::new(file), &p, false);
                    passwords.loaded(&result);
                    match result {
                        Err(e) => Err(rt.block_on(session.relabel(e))),
                        ok => ok,
                    }
                }),
            ["load", ..] => Err(usage("load")),
            ["check", tag] => passwords
                .get(false, |confirm| password(pw, confirm))
                .and_then(|p| {
                    let result = rt.block_on(session.check(Some(tag), &p, false));
                    passwords.loaded(&result);
                    match result {
                        Err(e) => Err(rt.block_on(session.relabel(e))),
                        ok => ok,
                    }
                }),
            ["check", ..] => Err(usage("check")),
            ["ls"] => rt.block_on(session.ls("", false)),
            ["ls", prefix] => rt.block_on(session.ls(prefix, false)),
            ["ls", ..] => Err(usage("ls")),
            ["serv"] => rt.block_on(session.serv(false)),
            ["serv", ..] => Err(usage("serv")),
            ["rm", tag] => rt.block_on(session.rm(tag)),
            ["rm", ..] => Err(usage("rm")),
            ["help"] => {
                outln!("{HELP}")?;
                Ok(())
            }
            ["exit"] | ["quit"] => break,
            [command, ..] => Err(anyhow::anyhow!(
                "unknown command {}; type help",
                command.escape_debug()
            )),
            [] => Ok(()),
        };
        if let Err(e) = result {
            failed += 1;
            errln!("error: {e:#}");
        }
    }
    if terminal {
        if let Some(dir) = history.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = rl.save_history(&history);
    }
    // A script learns that a command failed from the exit status.
    if failed > 0 && !terminal {
        problems!(
            "{failed} command{} failed",
            if failed == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// Runs `seccs share`.
pub fn run(args: ShareArgs) -> anyhow::Result<()> {
    if !matches!(
        args.command,
        ShareCommand::Serve { .. } | ShareCommand::Client { .. }
    ) {
        // A client command's errors say what went wrong; `RUST_LOG=warn`
        // shows each server's answer as it comes.
        crate::init_tracing("error");
    }
    match args.command {
        ShareCommand::Serve { config, root } => {
            crate::init_tracing("info");
            let root = root.unwrap_or_else(default_root);
            let config = load_config(config.as_deref(), &root)?;
            let runtime = runtime()?;
            let stop = {
                let _inside = runtime.enter();
                seccs_core::signals::stop_signals(&mut |name, error| {
                    errln!("seccs: warning: cannot listen for {name} ({error})");
                })
            };
            runtime.block_on(seccs_net::server::serve(&config, &root, stop))?;
            Ok(())
        }
        ShareCommand::Client {
            client,
            password,
            save,
        } => {
            crate::init_tracing("error");
            interactive(&client, &password, &save)
        }
        ShareCommand::Save {
            client,
            password: from,
            save,
            quiet,
            tag,
            file,
        } => {
            let pw = password(&from, true)?;
            runtime()?.block_on(async {
                let mut session = Session::open_to_save(&client, &save).await?;
                session.quiet = quiet;
                match session.save(&tag, &file, &pw).await {
                    Err(e) => Err(session.relabel(e).await),
                    ok => ok,
                }
            })
        }
        ShareCommand::Load {
            client,
            password: from,
            or_older,
            quiet,
            tag,
            file,
        } => {
            let pw = password(&from, false)?;
            let rt = runtime()?;
            let mut session = rt.block_on(Session::open(&client))?;
            session.quiet = quiet;
            match load_into(&rt, &session, &tag, &file, &pw, or_older) {
                Err(e) => Err(rt.block_on(session.relabel(e))),
                ok => ok,
            }
        }
        ShareCommand::Ls {
            client,
            prefix,
            json,
        } => runtime()?.block_on(async {
            Session::open(&client)
                .await?
                .ls(prefix.as_deref().unwrap_or(""), json)
                .await
        }),
        ShareCommand::Check {
            client,
            password: from,
            json,
            tag,
        } => {
            let pw = password(&from, false)?;
            runtime()?.block_on(async {
                let session = Session::open(&client).await?;
                match session.check(tag.as_deref(), &pw, json).await {
                    Err(e) => Err(session.relabel(e).await),
                    ok => ok,
                }
            })
        }
        ShareCommand::Serv { client, json } => {
            runtime()?.block_on(async { Session::open(&client).await?.serv(json).await })
        }
        ShareCommand::Rm { client, tag } => {
            runtime()?.block_on(async { Session::open(&client).await?.rm(&tag).await })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Server names put into an error keep what it meant: a check's
    /// finding stays one (exit 1), a failure to run stays one (exit 2).
    #[test]
    fn an_error_reworded_with_server_names_keeps_its_exit_status() {
        let finding: anyhow::Error =
            crate::exit::Problems::from("only 1 valid share: seccs:server:ab bad".to_owned())
                .into();
        let shown = reworded(
            &finding,
            "only 1 valid share: srv1 (seccs:server:ab) bad".into(),
        );
        assert_eq!(crate::exit::status(&shown), crate::exit::PROBLEMS);
        assert_eq!(
            shown.to_string(),
            "only 1 valid share: srv1 (seccs:server:ab) bad"
        );
        let failure = anyhow::anyhow!("seccs:server:ab did not answer");
        let shown = reworded(&failure, "srv1 (seccs:server:ab) did not answer".into());
        assert_eq!(crate::exit::status(&shown), crate::exit::FAILED);
    }

    /// A save's input without a size (a device, a pipe) is read only up to
    /// the bound, then refused: `/dev/zero` was read until memory ran out.
    #[test]
    fn a_save_input_without_a_size_is_read_only_up_to_the_bound() -> anyhow::Result<()> {
        let refused = |what: String| anyhow::anyhow!("{what} bytes, too many");
        let read = |file: &Path, max| {
            open_save_input(file, max, refused).and_then(|i| read_save_input(i, max, refused))
        };
        let err = read(Path::new("/dev/zero"), 1000)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("/dev/zero holds over 1000 bytes, too many")
        );
        // A file is read whole within the bound, and refused by its size
        // past it, before it is read; how inputs are read is
        // `input::read_bounded`'s test.
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("small");
        std::fs::write(&file, b"twelve bytes")?;
        assert_eq!(read(&file, 12)?, b"twelve bytes");
        let err = open_save_input(&file, 11, refused)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!("{} is 12 bytes, too many", file.display()))
        );
        // One that cannot be opened is refused at the opening.
        let err = open_save_input(&dir.path().join("none"), 11, refused)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!("cannot read {}", dir.path().join("none").display()))
        );
        Ok(())
    }

    /// A password file is read only up to 64 KiB: a larger one (the wrong
    /// file, a device) is refused by name; one that cannot be read says
    /// it is the password file.
    #[test]
    fn a_password_file_is_bounded_and_named_in_its_errors() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let big = dir.path().join("big");
        let mut text = b"secret\n".to_vec();
        text.resize(64 << 10, b'x');
        std::fs::write(&big, &text)?;
        let given = |path: &Path| PasswordFile::given(path, "--password-file");
        assert_eq!(
            password_from(Some(&given(&big)), false)?.expose_secret(),
            b"secret"
        );
        text.push(b'x');
        std::fs::write(&big, &text)?;
        let err = password_from(Some(&given(&big)), false)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!(
                "the password file {} (given with --password-file) is larger than 65536 bytes: \
                 not a password file",
                big.display()
            ))
        );
        let zero = password_from(Some(&given(Path::new("/dev/zero"))), false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(zero.contains("larger than 65536 bytes"), "{zero}");
        let missing = dir.path().join("missing");
        let err = password_from(Some(&given(&missing)), false)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            err.starts_with(&format!(
                "cannot read the password file {} (given with --password-file): ",
                missing.display()
            )),
            "{err}"
        );
        Ok(())
    }

    /// Answers like a person at the prompt: `typed` each time, counting the
    /// prompts (two for a confirmed one).
    fn typed<'a>(
        text: &'a str,
        prompts: &'a mut usize,
    ) -> impl FnOnce(bool) -> anyhow::Result<Password> + 'a {
        move |confirm| {
            *prompts += if confirm { 2 } else { 1 };
            Ok(Password::new(text))
        }
    }

    fn decrypt_failure() -> anyhow::Result<()> {
        Err(seccs_net::Error::DecryptVersion {
            tag: "t".into(),
            version: 1,
            older: None,
        }
        .into())
    }

    #[test]
    fn a_password_that_failed_to_decrypt_is_forgotten_and_a_save_confirms_again()
    -> anyhow::Result<()> {
        let mut cache = PasswordCache::default();
        let mut prompts = 0;
        cache.get(false, typed("typo", &mut prompts))?;
        cache.loaded(&decrypt_failure());
        // The next save neither reuses the typo nor skips the confirmation.
        let p = cache.get(true, typed("right", &mut prompts))?;
        assert_eq!((p.expose_secret(), prompts), (&b"right"[..], 3));
        // A confirmed password is reused by saves and loads.
        cache.get(true, typed("unused", &mut prompts))?;
        cache.get(false, typed("unused", &mut prompts))?;
        assert_eq!(prompts, 3);
        Ok(())
    }

    #[test]
    fn server_channels_are_shown_with_their_names_where_known() {
        let names: std::collections::HashMap<String, String> =
            [("seccs:server:0123".to_owned(), "basement-nas".to_owned())].into();
        assert_eq!(
            relabel_text(
                "only 1 valid share (invalid records sent in the name of: seccs:server:0123 \
                 (bad), seccs:server:ffff (bad))",
                &names
            ),
            "only 1 valid share (invalid records sent in the name of: basement-nas \
             (seccs:server:0123) (bad), seccs:server:ffff (bad))"
        );
    }

    #[test]
    fn a_save_confirms_a_password_typed_once_unless_a_load_proved_it() -> anyhow::Result<()> {
        let mut cache = PasswordCache::default();
        let mut prompts = 0;
        cache.get(false, typed("once", &mut prompts))?;
        // A load that failed for another reason proves nothing.
        cache.loaded(&Err(anyhow::anyhow!("no share server is online")));
        cache.get(true, typed("once", &mut prompts))?;
        assert_eq!(prompts, 3, "typed once, so the save asked twice");

        let mut cache = PasswordCache::default();
        let mut prompts = 0;
        cache.get(false, typed("proven", &mut prompts))?;
        cache.loaded(&Ok(()));
        let p = cache.get(true, typed("unused", &mut prompts))?;
        assert_eq!((p.expose_secret(), prompts), (&b"proven"[..], 1));
        Ok(())
    }
}
