//! Finding, creating and opening the content store the command line works on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use seccs_core::SecretKey;
use seccs_store::StoreError;
use seccs_store::backend::{Backend, BackendError};
use seccs_store::dir::{self, EMBEDDED, KeySource, StoreConfig, StoreDir, Unfinished};
use seccs_store::{Params, Store};

/// Options that pick the store; shared by every store command.
///
/// They may be given before the command (`seccs --store DIR put …`) or
/// after it (`seccs put --store DIR …`); the one after wins. They are not
/// clap's global options, since those would be listed in, and accepted by,
/// the commands that use no store (`kms`, `share`, `bench`).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Store options")]
pub struct StoreLocation {
    /// The store directory. Defaults to $SECCS_STORE (when set and not
    /// empty), else `seccs` in the platform's data directory
    /// (~/.local/share/seccs on Linux).
    // SECCS_STORE is read in `path`, not by clap: clap takes an exported but
    // empty variable for a missing value and fails every command, even one
    // given --store.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// When another process holds the store (a put, a gc), wait up to
    /// TIME for it to finish instead of failing at once with "store is
    /// in use", as a scheduled job that may meet another wants. init (and
    /// copy making DEST) waits the same way for a network backend still
    /// held by the writer lease of an init killed part way, which lapses
    /// within 30 s. TIME is seconds (`90`, `0.5`) or a number with a unit:
    /// `500ms`, `30s`, `10m`, `2h`; at most a day; 0 (the default) fails
    /// at once. On a network backend (Redis, PostgreSQL, S3) the commands
    /// that only read (get, ls, diff, stat) never wait: they run beside a
    /// writer.
    #[arg(long, value_name = "TIME", value_parser = parse_lock_wait)]
    pub lock_wait: Option<Duration>,
    /// For a store whose key is on the share network (`init
    /// --key-from-share`): the share password is the first line of FILE
    /// (keep it 0600; one others can read is used, with a warning).
    /// Defaults to $SECCS_SHARE_PASSWORD_FILE (when set and not empty);
    /// without either, SECCS_SHARE_PASSWORD, else a prompt. Prefer a file
    /// for unattended jobs: SECCS_SHARE_PASSWORD stays in the environment
    /// of the command, and of everything its shell starts, for the whole
    /// run.
    // SECCS_SHARE_PASSWORD_FILE is read in `share_password_file`, not by
    // clap, for the reason SECCS_STORE is.
    #[arg(long, value_name = "FILE")]
    pub share_password_file: Option<PathBuf>,
}

/// The longest `--lock-wait`: a day.
const MAX_LOCK_WAIT: Duration = Duration::from_secs(86_400);

/// `--lock-wait`: a number of seconds, or of the unit after it (`ms`,
/// `s`, `m`, `h`), decimals taken, at most [`MAX_LOCK_WAIT`].
fn parse_lock_wait(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a time to wait: give seconds (90, 0.5) or a number with a unit \
             (500ms, 30s, 10m, 2h)"
        )
    };
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        _ => return Err(bad()),
    };
    // Digits and at most one point: `f64` alone would take `inf`, `NaN`,
    // `1e3` and a sign.
    if !number.chars().any(|c| c.is_ascii_digit()) || number.matches('.').count() > 1 {
        return Err(bad());
    }
    let seconds = number.parse::<f64>().map_err(|_| bad())? * scale;
    // Below a millisecond, a wait would end before the first retry (and
    // below a nanosecond it would be none at all).
    if seconds > 0.0 && seconds < 0.001 {
        return Err(format!(
            "{text:?} is shorter than a millisecond: give 0 not to wait"
        ));
    }
    match Duration::try_from_secs_f64(seconds) {
        Ok(wait) if wait <= MAX_LOCK_WAIT => Ok(wait),
        _ => Err(format!(
            "{text:?} is longer than a day, the longest --lock-wait"
        )),
    }
}

/// A wait as `--lock-wait` gives it, in seconds.
fn seconds(wait: Duration) -> String {
    // Every digit a wait of whole nanoseconds has: never rounded up to a
    // longer wait than was given.
    let shown = format!("{}.{:09}", wait.as_secs(), wait.subsec_nanos());
    let shown = shown.trim_end_matches('0').trim_end_matches('.');
    format!("{shown} s")
}

/// How often a waiting command tries the store's lock again.
const LOCK_RETRY: Duration = Duration::from_millis(250);

impl StoreLocation {
    /// These options as given before the command, overridden by those given
    /// after it.
    pub fn overridden_by(&self, after: &StoreLocation) -> StoreLocation {
        StoreLocation {
            store: after.store.clone().or_else(|| self.store.clone()),
            lock_wait: after.lock_wait.or(self.lock_wait),
            share_password_file: after
                .share_password_file
                .clone()
                .or_else(|| self.share_password_file.clone()),
        }
    }

    /// Whether any of these options was given.
    pub fn is_given(&self) -> bool {
        self.store.is_some() || self.lock_wait.is_some() || self.share_password_file.is_some()
    }

    /// The file a share-keyed store's password is read from:
    /// --share-password-file, else a non-empty $SECCS_SHARE_PASSWORD_FILE.
    pub fn share_password_file(&self) -> Option<crate::share::PasswordFile> {
        crate::share::password_file_or_env(
            self.share_password_file.as_deref(),
            "--share-password-file",
        )
    }

    /// The store directory to use: --store, else a non-empty $SECCS_STORE,
    /// else the platform's default.
    pub fn path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.store {
            return Ok(p.clone());
        }
        // An empty value counts as unset, as for most variables naming a path.
        if let Some(p) = std::env::var_os("SECCS_STORE").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        Ok(dirs::data_dir()
            .context("no data directory on this platform; pass --store DIR")?
            .join("seccs"))
    }
}

/// How a new store is made.
#[derive(Debug, Clone)]
pub struct NewStore {
    pub params: Params,
    pub backend: String,
    pub key: KeySource,
    /// Where a share-keyed store's password is read from, if from a file.
    pub share_password_file: Option<crate::share::PasswordFile>,
    /// The key of the store being copied (`seccs copy`), used instead of
    /// a new one: written to the new key file, or, where the key comes
    /// from the key service or the share network, taken as it is (`key`
    /// names the source store's key source, which gives this key).
    pub existing_key: Option<SecretKey>,
    /// How long to wait for a network backend another process holds (the
    /// writer lease of an init or copy killed part way lapses within
    /// 30 s), or for the lock of a stopped init's directory (`--lock-wait`).
    pub lock_wait: Option<Duration>,
}

/// Creates a store directory, its key file (for file keys) and its backend.
///
/// config.toml is written first, marked unfinished and holding what an
/// undo needs (the key source, the backend URL without its password, the
/// key's check value); then the key file, the key saved on the share
/// network, the backend's store marker and the embedded database, in that
/// order; last config.toml is rewritten without the mark, the commit
/// point. A failure undoes what was made ([`Made::undo`]); a stop between
/// (SIGKILL, power loss) leaves the mark, every open refuses the store,
/// and the next `create` at `path` removes what the stopped one made
/// ([`resume`]) and makes the store afresh.
pub fn create(path: &Path, new: NewStore) -> Result<(StoreDir, SecretKey)> {
    // A URL said wrong before anything, a stopped init's leftovers
    // included, is touched.
    check_backend_name(&new.backend)?;
    let by = match new.existing_key {
        Some(_) => Unfinished::Copy,
        None => Unfinished::Init,
    };
    // What a stopped init or copy left is removed first, under the
    // store's lock (refused as in use while that init still runs).
    let mut lock = LockWait::new(new.lock_wait.unwrap_or_default());
    let adopted = match StoreDir::unfinished(path) {
        Some(_) => resume(path, &new, &mut lock)?,
        None => None,
    };
    check_new_place(path, &new.backend)?;
    // Nor for a key file that cannot be written: it is never overwritten.
    if let KeySource::File { path: key_path } = &new.key {
        let key_path = path.join(key_path);
        if key_path.symlink_metadata().is_ok() {
            bail!(
                "key file {} already exists; not overwriting it (give --key-file a new path, or \
                 move the old key away if no store needs it)",
                key_path.display()
            );
        }
    }
    // The backend first: an unreachable server or a bad URL leaves nothing
    // behind, so the corrected command can run again.
    // Kept open (its writer lease held) until the store is made and marked.
    let network = if new.backend == EMBEDDED {
        None
    } else {
        Some(lock.retry(|| create_network_backend(&new.backend))?)
    };
    let backend_url = if new.backend == EMBEDDED {
        new.backend.clone()
    } else {
        seccs_backends::redact(&new.backend)
    };
    let config = StoreConfig::new(new.params, backend_url, new.key.clone()).unfinished_by(by);
    // What this init makes, undone if it fails: a store left half made
    // would refuse the next init.
    let mut made = Made::before(path);
    let result = make(path, &new, adopted, config, network.as_deref(), &mut made);
    match result {
        Ok(done) => Ok(done),
        Err(e) => Err(made.undo(path, network.as_deref(), e)),
    }
}

/// Removes what a stopped [`create`] made at `path`, whose config.toml
/// marks the store unfinished, and says so on stderr: the embedded
/// database (only if it holds no entry), the store marker on its network
/// backend (only if it is the recorded key's and the backend holds no
/// entry), the key file (only if it holds the recorded key), and last
/// config.toml.
/// All under the store's lock: while the stopped init still runs, this
/// fails as the store being in use. Anything that may hold data is
/// refused, and nothing is removed after it.
///
/// A key the stopped init saved on the share network is kept, and
/// returned to be used again when `new` names the same tag and it is the
/// recorded key: a tag is saved to once, so removing it would leave the
/// same init unable to run again. It is loaded before anything is removed
/// ([`saved_share_key`]).
///
/// The store's lock, and a network backend's writer lease, are waited for
/// as `lock` says.
fn resume(path: &Path, new: &NewStore, lock: &mut LockWait) -> Result<Option<SecretKey>> {
    let dir = lock.retry(|| Ok(StoreDir::open_unfinished(path)?))?;
    let config = dir.config().clone();
    let by = config.unfinished.unwrap_or(Unfinished::Init);
    let recorded = config.key_check.clone().unwrap_or_default();
    let adopted = saved_share_key(path, &config, new, &recorded)?;
    let mut removed = Vec::new();
    // What may hold data first: a database or backend that holds entries
    // is refused before anything is removed, the key file above all.
    if dir.remove_unfinished_db()? {
        removed.push(format!("the database {}", path.join("db").display()));
    }
    if config.backend != EMBEDDED {
        // The URL given when it names the recorded backend: it may hold the
        // password that config.toml leaves out.
        let url = match seccs_backends::redact(&new.backend) == config.backend {
            true => new.backend.as_str(),
            false => config.backend.as_str(),
        };
        if lock.retry(|| remove_unfinished_marker(path, url, &recorded))? {
            removed.push(format!("the store marker on backend {}", config.backend));
        }
    }
    if let Some(key_path) = dir.remove_unfinished_key_file()? {
        removed.push(format!("the key file {}", key_path.display()));
    }
    if adopted.is_some()
        && let KeySource::Share { tag, .. } = &config.key
    {
        errln!(
            "seccs: the store key the stopped init saved on the share network as {tag:?} is \
             used again (a tag is saved to once)"
        );
    }
    dir.discard_unfinished()?;
    let what = match removed.is_empty() {
        true => "config.toml, all it had made".to_owned(),
        false => format!("{} and config.toml", removed.join(", ")),
    };
    errln!(
        "seccs: {} held a store whose `{}` was stopped before it finished; removed what it \
         made ({what}), and making the store afresh",
        path.display(),
        by.command()
    );
    Ok(adopted)
}

/// The store key a stopped init (whose config.toml is `config`, at
/// `path`) saved on the share network, when `new` saves its key under the
/// same tag (and is no copy, whose key is the source's) and the tag holds
/// the key `recorded` checks; `None` where the tag holds no key (the init
/// stopped before saving it), or another one (the new save then says the
/// tag is taken). Fails where the tag cannot be read (a wrong password,
/// servers offline), so that the caller changes nothing: a new key could
/// not be saved under a tag that holds one, and once the stopped init's
/// config.toml is removed nothing says the key there is this store's.
fn saved_share_key(
    path: &Path,
    config: &StoreConfig,
    new: &NewStore,
    recorded: &str,
) -> Result<Option<SecretKey>> {
    let (
        KeySource::Share { tag, .. },
        KeySource::Share {
            tag: new_tag,
            config: share,
        },
    ) = (&config.key, &new.key)
    else {
        return Ok(None);
    };
    if tag != new_tag || new.existing_key.is_some() {
        return Ok(None);
    }
    let share_config = crate::share::load_config_file(share, "--share-config")?;
    let password = crate::share::password_from(new.share_password_file.as_ref(), false)?;
    match seccs_net::keyfile::load_key(&share_config, tag, &password) {
        // Check values are public (config.toml is readable by all).
        Ok(key) if dir::key_check(&key) == recorded => Ok(Some(key)),
        Ok(_) | Err(seccs_net::Error::NotFound(_)) => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "{} holds a store whose `{}` was stopped before it finished, after it may have \
             saved the store key on the share network as {tag:?}, which cannot be loaded: \
             nothing was changed. Run the same command again with the share password it was \
             given, once the share servers are online, to use that key; or give another tag",
            path.display(),
            config.unfinished.unwrap_or(Unfinished::Init).command()
        ))),
    }
}

/// Removes the store marker a stopped init wrote on the backend at `url`
/// for the store at `path`: only if it is `recorded` (that init's key's
/// check value) and the backend holds no entry. Returns whether it removed
/// one; refuses a marked backend that holds entries.
fn remove_unfinished_marker(path: &Path, url: &str, recorded: &str) -> Result<bool> {
    let shown = seccs_backends::redact(url);
    let backend: Arc<dyn Backend> = Arc::from(
        seccs_backends::open_exclusive(url, true)
            .with_context(|| format!("cannot open backend {shown}"))?,
    );
    crate::interrupt::release_on_interrupt(&backend);
    let marker = backend
        .read_marker()
        .with_context(|| format!("cannot read backend {shown}"))?;
    if marker.as_deref() != Some(recorded.as_bytes()) {
        // None, or another store's: the new store's init says so.
        return Ok(false);
    }
    let entries = backend
        .usage()
        .with_context(|| format!("cannot read backend {shown}"))?
        .entries;
    if entries > 0 {
        bail!(
            "{} holds a store whose init was stopped before it finished, but its backend {shown} \
             holds {entries} entries besides its marker: not removing them. Give the new store \
             another table or prefix, or empty that one if nothing there is needed; nothing was \
             changed",
            path.display()
        );
    }
    backend
        .remove_marker()
        .with_context(|| format!("cannot remove the store marker on backend {shown}"))?;
    Ok(true)
}

/// What a failing [`create`] made and undoes: never anything that was
/// there before it started.
struct Made {
    /// The store directory was not there.
    dir: bool,
    /// Its lock file was not there.
    lock: bool,
    /// Its database directory was not there.
    db: bool,
    /// The store directory made, its config.toml written (marked
    /// unfinished), its lock held.
    store_dir: Option<StoreDir>,
    /// The key file written.
    key_file: Option<PathBuf>,
    /// The key saved on the share network: its tag, version and config.
    share_key: Option<(String, u64, seccs_net::Config)>,
}

impl Made {
    fn before(path: &Path) -> Self {
        Self {
            dir: path.symlink_metadata().is_err(),
            lock: path.join("lock").symlink_metadata().is_err(),
            db: path.join("db").symlink_metadata().is_err(),
            store_dir: None,
            key_file: None,
            share_key: None,
        }
    }

    /// Removes what was made, config.toml last, and returns `e` saying so
    /// (and what could not be removed). Where something cannot be removed,
    /// config.toml stays, marked unfinished: the next init there removes
    /// it.
    fn undo(self, path: &Path, network: Option<&dyn Backend>, e: anyhow::Error) -> anyhow::Error {
        let made_any = self.key_file.is_some()
            || self.share_key.is_some()
            || self.store_dir.is_some()
            || (self.lock && path.join("lock").symlink_metadata().is_ok())
            || (self.dir && path.symlink_metadata().is_ok());
        if !made_any {
            return e;
        }
        let mut left = Vec::new();
        let mut keep_config = false;
        if self.store_dir.is_some() {
            // Under the store's lock, still held: the database begun is
            // this init's.
            if self.db {
                let _ = std::fs::remove_dir_all(path.join("db"));
            }
            // The backend held no marker and no entry when this init began
            // (`create_network_backend`), so a marker there now is this
            // init's, and would make the next init here refuse the place
            // as another store's.
            if let Some(backend) = network
                && let Err(rm) = backend.remove_marker()
            {
                keep_config = true;
                left.push(format!(
                    "the store marker it may have written on its backend is left (cannot remove \
                     it: {rm}); running the same init again removes it"
                ));
            }
        }
        if let Some(key_file) = &self.key_file
            && let Err(rm) = std::fs::remove_file(key_file)
        {
            keep_config = true;
            left.push(format!(
                "the key file {} it wrote is left (cannot remove it: {rm}); running the same \
                 init again removes it",
                key_file.display()
            ));
        }
        let mut notes = Vec::new();
        if let Some((tag, version, config)) = &self.share_key {
            match remove_share_key(config, tag, *version) {
                // A store key's tag is never used twice.
                Ok(()) => notes.push(format!(
                    "; the store key saved as {tag}@{version} is removed from the share network, \
                     and a store key needs a tag never used: run init again with another tag"
                )),
                Err(rm) => left.push(format!(
                    "the store key saved on the share network as {tag}@{version} is left ({rm:#}); \
                 remove it with `seccs share rm {tag}@{version}`"
                )),
            }
        }
        if let Some(store_dir) = self.store_dir {
            if !keep_config {
                let _ = std::fs::remove_file(path.join("config.toml"));
            }
            drop(store_dir);
        }
        remove_made_place(path, self.lock, self.dir);
        if left.is_empty() {
            e.context(format!(
                "cannot make a store at {} (what init made there is removed again{})",
                path.display(),
                notes.concat()
            ))
        } else {
            e.context(format!(
                "cannot make a store at {}; {}{}",
                path.display(),
                left.join("; "),
                notes.concat()
            ))
        }
    }
}

/// Refuses a backend named neither `embedded` nor by a backend URL, before
/// anything is touched.
pub(crate) fn check_backend_name(backend: &str) -> Result<()> {
    if backend != EMBEDDED && !seccs_backends::is_backend_url(backend) {
        bail!(
            "{backend:?} is not a backend: use `embedded` or a redis://, postgres:// or s3:// URL"
        );
    }
    Ok(())
}

/// After a failed init (or attach) at `path`, once its config.toml is gone
/// and its lock released: removes the lock file where it made it
/// (`lock_made`) and the directory where it made it (`dir_made`, and only
/// when empty: whatever else is there is not its own).
pub(crate) fn remove_made_place(path: &Path, lock_made: bool, dir_made: bool) {
    // Taken first, so that no other process holding it loses it; made by
    // this command, so no store is there.
    if lock_made
        && let Ok(held) = seccs_core::lockfile::lock_dir(path)
        && !StoreDir::exists(path)
    {
        let _ = std::fs::remove_file(path.join("lock"));
        drop(held);
    }
    if dir_made {
        let _ = std::fs::remove_dir(path);
    }
}

/// Removes `tag@version` from the share network of `config`, failing
/// unless every server that holds it removed it.
fn remove_share_key(config: &seccs_net::Config, tag: &str, version: u64) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let client = seccs_net::client::Client::connect(config).await?;
        let r = client.remove_report(tag, Some(version)).await?;
        match r.saved_to {
            Some(n) if n > r.removed_from => bail!(
                "{} of the {n} servers it was saved to removed it",
                r.removed_from
            ),
            None if r.removed_from == 0 => bail!("no server online held it"),
            _ => Ok(()),
        }
    })
}

/// The part of [`create`] that makes things, each noted in `made`; uses
/// `adopted` (a key a stopped init saved on the share network) as the
/// store's key when given.
fn make(
    path: &Path,
    new: &NewStore,
    adopted: Option<SecretKey>,
    config: StoreConfig,
    network: Option<&dyn Backend>,
    made: &mut Made,
) -> Result<(StoreDir, SecretKey)> {
    let existing = new.existing_key.clone().or(adopted);
    // The key first, in memory only: config.toml records its check value
    // before anything holds it, so that the next init can tell what a
    // stopped one made.
    let key = match (&new.key, &existing) {
        // The source's key source gives this key already (or the share
        // network holds it): nothing to save or fetch.
        (_, Some(key)) => key.clone(),
        (KeySource::File { .. } | KeySource::Share { .. }, None) => SecretKey::generate()?,
        (KeySource::Kms { .. }, None) => load_key_source(
            path,
            &new.key,
            "does --key-from-kms name its address?".to_owned(),
            KmsUrlFrom {
                origin: "--key-from-kms",
                https_advice: "give https://HOST:PORT, trusted by --kms-ca FILE or --kms-pin SHA256",
            },
        )?,
    };
    let mut store_dir = StoreDir::create(path, config.with_key_check(&key))?;
    let rest = (|| -> Result<()> {
        match (&new.key, &existing) {
            (KeySource::File { path: key_path }, _) => {
                let key_path = path.join(key_path);
                dir::write_key_file(&key_path, &key)?;
                made.key_file = Some(key_path);
            }
            (KeySource::Share { tag, config }, None) => {
                let share_config = crate::share::load_config_file(config, "--share-config")?;
                let password = crate::share::password_from(new.share_password_file.as_ref(), true)?;
                let report = seccs_net::keyfile::save_key(&share_config, tag, &key, &password)
                    .with_context(|| {
                        format!("cannot save the store key to the share network as {tag:?}")
                    })?;
                made.share_key = Some((tag.clone(), report.version, share_config));
                errln!(
                    "seccs: store key saved on the share network as {tag:?} ({} of {} servers, any {} recover it)",
                    report.stored_on,
                    report.servers,
                    report.threshold
                );
                // Only with a threshold set in the share config: the default is
                // refused with no server to spare.
                if let Some(warning) =
                    crate::share::no_spare_warning(report.stored_on, report.threshold)
                {
                    errln!("seccs: warning: the store key was {warning}, and the store with it");
                }
            }
            _ => {}
        }
        if let Some(backend) = network {
            // Marked now, so that a second store cannot be made on the same
            // table or prefix before this one's first write.
            store_dir.check_backend_marker(backend, &key)?;
            // So that a store whose directory is lost can be attached
            // from its backend and key alone.
            store_dir.keep_backend_descriptor(backend, &key)?;
        }
        if new.backend == EMBEDDED {
            // Made now, with the store: opening a store later never makes
            // one, so a database that went missing is not taken for an
            // empty store.
            let db = store_dir.open_embedded()?;
            store_dir.keep_backend_descriptor(db.as_ref(), &key)?;
        }
        // The commit point: from here on the store is made.
        store_dir.finish()?;
        Ok(())
    })();
    match rest {
        Ok(()) => Ok((store_dir, key)),
        Err(e) => {
            made.store_dir = Some(store_dir);
            Err(e)
        }
    }
}

/// Fails unless `path` can be made a directory: the nearest of it and its
/// ancestors that exists is a directory. Each step goes one component up,
/// so the walk ends.
fn check_creatable(path: &Path) -> Result<()> {
    let mut at = path;
    loop {
        match std::fs::metadata(at) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => bail!(
                "cannot make a store at {}: {} is not a directory",
                path.display(),
                at.display()
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                match at.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                    _ => return Ok(()),
                }
            }
            Err(e) => bail!(
                "cannot make a store at {}: {}: {e}",
                path.display(),
                at.display()
            ),
        }
    }
}

/// An open store and the directory lock that keeps it ours.
pub struct OpenStore {
    pub dir: StoreDir,
    pub store: Store,
}

/// Opens the store `loc` names for a command that may write; with
/// `create_if_missing`, makes a default one first and says where on stderr.
/// A store another process holds is waited for as `--lock-wait` says.
pub fn open(loc: &StoreLocation, create_if_missing: bool) -> Result<OpenStore> {
    Ok(open_as(loc, create_if_missing, Access::Write)?.0)
}

/// [`open`] without making a store, also returning the store's key: for
/// `seccs copy`, which makes or opens another store with it.
pub fn open_keeping_key(loc: &StoreLocation) -> Result<(OpenStore, SecretKey)> {
    open_as(loc, false, Access::Write)
}

/// Opens the store `loc` names for a command that only reads (`get`, `ls`,
/// `diff`, `stat`). A network store is opened without its directory's lock
/// and without the backend's writer lease, so that it runs beside a writer
/// (here or on another machine) and beside other readers, and writes
/// nothing (see [`StoreDir::open_for_reading`]); a store on the embedded
/// backend, one process at a time, is opened as [`open`] opens it.
pub fn open_to_read(loc: &StoreLocation) -> Result<OpenStore> {
    Ok(open_as(loc, false, Access::Read)?.0)
}

/// What a command does with the store it opens.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

fn open_as(
    loc: &StoreLocation,
    create_if_missing: bool,
    access: Access,
) -> Result<(OpenStore, SecretKey)> {
    let path = &loc.path()?;
    let mut lock = LockWait::new(loc.lock_wait.unwrap_or_default());
    // A path that is there and is not a directory (a file given to
    // --store by mistake) is refused by the open, as a file and not as a
    // place a store cannot be made.
    let not_a_dir = std::fs::metadata(path).is_ok_and(|m| !m.is_dir());
    let default_store = NewStore {
        params: Params::default(),
        backend: EMBEDDED.into(),
        key: KeySource::File {
            path: PathBuf::from("key"),
        },
        share_password_file: None,
        existing_key: None,
        lock_wait: loc.lock_wait,
    };
    // A default store whose making a killed command stopped is made
    // afresh by the next, as the same init run again would.
    let makes = !StoreDir::exists(path) || is_unfinished_as(path, &default_store);
    let (dir, key) = if create_if_missing && !not_a_dir && makes {
        let (dir, key) = create(path, default_store)?;
        errln!(
            "seccs: created a new store at {} on the embedded backend (key file {}); for \
             another backend, run `seccs init --backend URL` first",
            crate::tree::shown_path(path),
            crate::tree::shown_path(&path.join("key"))
        );
        (dir, key)
    } else {
        let dir = lock.retry(|| {
            Ok(match access {
                Access::Read => StoreDir::open_for_reading(path)?,
                Access::Write => StoreDir::open(path)?,
            })
        })?;
        let key = load_key(&dir, loc.share_password_file().as_ref())?;
        (dir, key)
    };
    let mut dir = dir;
    let source = key_source_shown(&dir);
    // A key-service store made with a salt whose config.toml lost it
    // derives another key: said, since the KEK is not to blame then.
    let no_salt = match &dir.config().key {
        KeySource::Kms { salt: None, .. } => {
            "; or, for a store made with a key-service salt, a config.toml that lost its `salt` \
             line (only the config.toml the store was made with holds it)"
        }
        _ => "",
    };
    let wrong_key = |e: seccs_store::StoreError| match e {
        seccs_store::StoreError::WrongKey(_) => anyhow::Error::new(e).context(format!(
            "the key from {source} does not belong to this store: a wrong or replaced key \
             file, another KEK, or another version of a shared key?{no_salt}"
        )),
        e => e.into(),
    };
    // Before the backend is touched (a network backend takes a lease).
    dir.check_key(&key).map_err(wrong_key)?;
    let backend = lock.retry(|| open_backend(&dir))?;
    let store = dir.open_store(backend, &key).map_err(wrong_key)?;
    Ok((OpenStore { dir, store }, key))
}

/// Opens the existing store at `path` as a writer (its lock and writer
/// lease, waited for up to `lock_wait`) with `key`, a key the
/// caller has (`seccs copy`'s source key): `check` sees the store's
/// config first, before its backend is touched, and refuses what it
/// must; then the key is checked against the store's check values.
pub fn open_with_key(
    path: &Path,
    key: &SecretKey,
    lock_wait: Option<Duration>,
    check: impl Fn(&StoreDir) -> Result<()>,
) -> Result<OpenStore> {
    open_with_key_as(path, key, lock_wait, check, Access::Write)
}

/// [`open_with_key`] as a writer, or as a reader whose store writes
/// nothing ([`open_with_key_to_inspect`]).
fn open_with_key_as(
    path: &Path,
    key: &SecretKey,
    lock_wait: Option<Duration>,
    check: impl Fn(&StoreDir) -> Result<()>,
    access: Access,
) -> Result<OpenStore> {
    let mut lock = LockWait::new(lock_wait.unwrap_or_default());
    let mut dir = lock.retry(|| {
        Ok(match access {
            Access::Read => StoreDir::open_for_reading(path)?,
            Access::Write => StoreDir::open(path)?,
        })
    })?;
    check(&dir)?;
    dir.check_key(key)?;
    let backend = lock.retry(|| open_backend(&dir))?;
    let store = match access {
        Access::Read => dir.open_store_to_inspect(backend, key)?,
        Access::Write => dir.open_store(backend, key)?,
    };
    Ok(OpenStore { dir, store })
}

/// What [`create`] checks of a new store's place before it makes
/// anything, touching nothing: `backend` is `embedded` or a backend URL,
/// and `path` holds no store (nor the data of one that lost its
/// config.toml) and can be made. The backend itself is not reached.
pub fn check_new_place(path: &Path, backend: &str) -> Result<()> {
    check_backend_name(backend)?;
    // Nor over the data of a store that lost its config.toml, which the
    // new store would take for its own.
    StoreDir::check_new(path)?;
    // Nothing is made anywhere (a backend, a key on the share network or
    // the key service) for a store whose directory cannot be.
    check_creatable(path)
}

/// Opens the existing store at `path` with `key` to look at it and leave
/// it exactly as it was (`seccs copy --dry-run`'s DEST): as
/// [`open_with_key`] checks it, but as a reader (a network store without
/// its directory's lock or its writer lease; an embedded one, which its
/// database allows one process at a time, with its lock), and the store
/// opened writes nothing ([`StoreDir::open_store_to_inspect`]).
pub fn open_with_key_to_inspect(
    path: &Path,
    key: &SecretKey,
    lock_wait: Option<Duration>,
    check: impl Fn(&StoreDir) -> Result<()>,
) -> Result<OpenStore> {
    open_with_key_as(path, key, lock_wait, check, Access::Read)
}

/// Whether the store at `path` is unfinished, stopped by an init (or a
/// command making a default store) that was making it as `new` would:
/// the same backend, key source and parameters.
fn is_unfinished_as(path: &Path, new: &NewStore) -> bool {
    let Some(stopped) = StoreDir::unfinished_config(path) else {
        return false;
    };
    let wanted = StoreConfig::new(new.params, new.backend.clone(), new.key.clone());
    stopped.unfinished == Some(Unfinished::Init) && stopped.made_with(&wanted)
}

/// Opens the store [`create`] just made, with its key, as a writer.
pub fn open_made(mut dir: StoreDir, key: &SecretKey) -> Result<OpenStore> {
    let backend = open_backend(&dir)?;
    let store = dir.open_store(backend, key)?;
    Ok(OpenStore { dir, store })
}

/// For `verify` and `gc`, which read every entry under the store's
/// prefix: the stores whose prefix nests with this network store's (made
/// by a build before `init` refused that), said on stderr once, and
/// returned for the command's last line. The check costs a walk of the
/// marker keys under the prefix (a Redis `SCAN`, an S3 listing), as much as
/// a listing of the entries, so commands that read only a few entries do
/// not run it. A backend that cannot be asked (a Redis user allowed its
/// own prefix only) leaves the check out: verify's findings still stand.
pub fn nested_stores_said(opened: &OpenStore) -> Option<String> {
    let url = &opened.dir.config().backend;
    if url == EMBEDDED {
        return None;
    }
    let nested = opened.store.backend().nested_stores().ok()?;
    let first = nested.first()?;
    let more = match nested.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    let shown = seccs_backends::redact(url);
    errln!(
        "seccs: warning: backend {shown} nests with {first}{more} (stores left so by a build \
         from before `init` refused that): the store with the shorter prefix walks the other's \
         entries as its own, so its verify and gc report each of the other store's nodes as tampered (\"does \
         not authenticate\"), and its findings of nodes that do not authenticate are most likely \
         that store's, not damage. To part them, `seccs copy NEWDIR --backend URL` one store \
         to a prefix that does not nest with the other's (`photos:` beside `videos:`; it copies \
         only the entries that authenticate under its key, and names the other store's); or \
         keep both and read those findings as the other store's nodes"
    );
    Some(format!(
        "; this store's prefix nests with {first}{more} (see the warning above): findings of \
         nodes that do not authenticate are most likely that store's"
    ))
}

/// Where a store's key came from, for messages (a key file by the path it
/// is read from, not as config.toml may hold it, relative to the store).
fn key_source_shown(dir: &StoreDir) -> String {
    match &dir.config().key {
        KeySource::File { path } => format!("the key file {}", dir.resolve(path).display()),
        KeySource::Kms {
            server, kek_file, ..
        } => format!("the key service {server} (KEK file {})", kek_file.display()),
        KeySource::Share { tag, .. } => format!("the share network (tag {tag:?})"),
    }
}

/// The key of the store in `dir`; a share-keyed store's password is read
/// from `share_password_file` when one is given.
fn load_key(
    dir: &StoreDir,
    share_password_file: Option<&crate::share::PasswordFile>,
) -> Result<SecretKey> {
    match &dir.config().key {
        KeySource::File { path } => {
            let path = dir.resolve(path);
            // Its errors name the path only, not what the file is.
            let key = dir::read_store_key_file(&path, dir.path())
                .context("cannot read the store's key file")?;
            // Used, since a store may be shared read-only on purpose, but
            // said: whoever reads the key reads the store.
            if let Some(mode) = dir::key_file_readable_by_others(&path) {
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    errln!(
                        "seccs: warning: the store's key file {} can be read by others (mode \
                         {mode:o}): whoever reads it can read everything in the store; unless \
                         that is meant, make it 0600 (`chmod 600 {}`)",
                        path.display(),
                        path.display()
                    );
                }
            }
            Ok(key)
        }
        KeySource::Kms { .. } => load_key_source(
            dir.path(),
            &dir.config().key,
            format!(
                "does `server` under [key] in the store's config.toml ({}) name its address?",
                dir.path().join("config.toml").display()
            ),
            KmsUrlFrom {
                origin: "the key server (`server` under [key] in the store's config.toml)",
                https_advice: "a store's key server is reached over https only",
            },
        ),
        KeySource::Share { tag, config } => {
            // Named by the store's config.toml, not by an option.
            let share_config = crate::share::load_config_file(
                &dir.resolve(config),
                "`config` under [key] in the store's config.toml",
            )?;
            let password = crate::share::password_from(share_password_file, false)?;
            seccs_net::keyfile::load_key(&share_config, tag, &password).with_context(|| {
                format!("cannot load the store key {tag:?} from the share network")
            })
        }
    }
}

/// Where a store's key-server URL came from, for the errors about it.
pub(crate) struct KmsUrlFrom {
    /// The option or file that gave it.
    pub(crate) origin: &'static str,
    /// What to give instead of a plain-http URL.
    pub(crate) https_advice: &'static str,
}

/// Fetches the DEK from the key service with the KEK file, and derives the
/// store key from it with the store's salt (a store made before salts uses
/// the DEK itself). `address_hint` asks, when no server listens at its
/// URL, whether where the URL came from names the right address.
pub(crate) fn load_key_source(
    store_path: &Path,
    source: &KeySource,
    address_hint: String,
    url_from: KmsUrlFrom,
) -> Result<SecretKey> {
    let KeySource::Kms {
        server,
        kek_file,
        ca,
        pin,
        salt,
    } = source
    else {
        bail!("not a key-service key source");
    };
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            store_path.join(p)
        }
    };
    // No cache: a command opens its store once, and a cached DEK would stay
    // in memory for the whole run (up to an hour), though only the store
    // key derived from it is needed.
    // The URL is checked before the KEK file is read, so that a wrong one
    // is said first and alone, named by where it came from.
    crate::kms::check_server_url(server, url_from.origin)?;
    if seccs_kms::client::parse_url(server).is_ok_and(|u| u.scheme() == "http") {
        bail!(
            "{} {}: plain http is refused for a store's key, even on loopback: {}",
            url_from.origin,
            seccs_core::redact::url_password(server),
            url_from.https_advice
        );
    }
    let mut config = seccs_kms::client::ClientConfig::new(server.clone())
        .with_address_hint(address_hint)
        .with_cache_ttl(Duration::ZERO);
    if let Some(ca) = ca {
        config = config.with_ca_file(resolve(ca));
    }
    if let Some(pin) = pin {
        config = config.with_pin(pin)?;
    }
    let kek_path = resolve(kek_file);
    let kek = crate::kms::load_kek(&kek_path)?;
    let dek = seccs_kms::client::fetch_store_key(&config, &kek)
        .map_err(|e| crate::kms::no_key_for_kek(e, server, &kek_path))
        .with_context(|| {
            format!(
                "cannot fetch the store key from {}",
                seccs_core::redact::url_password(server)
            )
        })?;
    match salt {
        None => Ok(dek),
        Some(salt) => {
            if salt.is_empty() {
                bail!(
                    "the store's config holds an empty key-service salt: it was made with one, \
                     and its key cannot be derived without it (restore config.toml from a copy)"
                );
            }
            let salt = seccs_core::hexenc::decode(salt)
                .ok()
                .context("the store's config holds a key-service salt that is not hex")?;
            Ok(seccs_core::kdf::derive_salted(
                &dek,
                dir::KMS_STORE_KEY_LABEL,
                &salt,
            ))
        }
    }
}

/// Waiting for a store another process holds, up to `--lock-wait` from the
/// first try: the directory lock and then a network backend's writer lease
/// share the one wait.
struct LockWait {
    wait: Duration,
    deadline: Instant,
    said: bool,
}

impl LockWait {
    fn new(wait: Duration) -> Self {
        Self {
            wait,
            deadline: Instant::now() + wait,
            said: false,
        }
    }

    /// Runs `open` until it succeeds, fails for another reason than the
    /// store being held, or the wait is over (saying once that it waits).
    fn retry<T>(&mut self, mut open: impl FnMut() -> Result<T>) -> Result<T> {
        loop {
            match open() {
                Err(e) if is_locked(&e) => {
                    let now = Instant::now();
                    if now >= self.deadline {
                        return Err(match !self.wait.is_zero() {
                            true => anyhow::anyhow!("{e:#}, still after {}", seconds(self.wait)),
                            false => {
                                anyhow::anyhow!("{e:#} (--lock-wait TIME waits for it to finish)")
                            }
                        });
                    }
                    if !self.said {
                        errln!(
                            "seccs: {e:#}; waiting up to {} for it to finish",
                            seconds(self.wait)
                        );
                        self.said = true;
                    }
                    std::thread::sleep(LOCK_RETRY.min(self.deadline - now));
                }
                other => return other,
            }
        }
    }
}

/// Who holds a store that an open found in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockHolder {
    /// Another handle of this very process (on the same backend, however
    /// its URL is spelled): waiting for it never ends.
    ThisProcess,
    /// Another process, or a holder that cannot be told.
    Another,
}

/// Who holds the store, where `e` is (or is caused by) "store is in use".
pub(crate) fn lock_holder(e: &anyhow::Error) -> Option<LockHolder> {
    e.chain().find_map(|cause| {
        let backend = cause.downcast_ref::<BackendError>().or_else(|| {
            match cause.downcast_ref::<StoreError>() {
                Some(StoreError::Backend(b)) => Some(b),
                _ => None,
            }
        });
        match backend {
            Some(BackendError::Locked {
                by_this_process: true,
                ..
            }) => Some(LockHolder::ThisProcess),
            Some(BackendError::Locked { .. }) => Some(LockHolder::Another),
            _ => None,
        }
    })
}

/// Whether opening failed only because another process holds the store
/// (one worth waiting for: never this process itself).
fn is_locked(e: &anyhow::Error) -> bool {
    lock_holder(e) == Some(LockHolder::Another)
}

fn open_backend(dir: &StoreDir) -> Result<Arc<dyn Backend>> {
    let url = &dir.config().backend;
    if url == EMBEDDED {
        return Ok(dir.open_embedded()?);
    }
    let access = match dir.is_reader() {
        true => Access::Read,
        false => Access::Write,
    };
    open_network_backend(url, access)
}

/// Opens a network backend by URL: a writer holds its writer lease (given
/// back on an interrupt), a reader reads beside whoever holds it.
pub(crate) fn open_network_backend(url: &str, access: Access) -> Result<Arc<dyn Backend>> {
    let opened = match access {
        Access::Read => seccs_backends::open(url),
        Access::Write => seccs_backends::open_exclusive(url, false),
    };
    let backend: Arc<dyn Backend> = Arc::from(
        opened.with_context(|| format!("cannot open backend {}", seccs_backends::redact(url)))?,
    );
    if access == Access::Write {
        crate::interrupt::release_on_interrupt(&backend);
    }
    for risk in backend.risks() {
        errln!("seccs: warning: {risk}");
    }
    Ok(backend)
}

/// Creates the backend at `url` (a PostgreSQL table), opened as this
/// process's, and checks that it holds nothing yet: a second store on the
/// same table or prefix would read the first one's entries as tampered, and
/// its `gc` would count them.
fn create_network_backend(url: &str) -> Result<Arc<dyn Backend>> {
    let shown = seccs_backends::redact(url);
    let backend: Arc<dyn Backend> = Arc::from(
        seccs_backends::open_exclusive(url, true)
            .with_context(|| format!("cannot create backend {shown}"))?,
    );
    crate::interrupt::release_on_interrupt(&backend);
    if backend
        .read_marker()
        .with_context(|| format!("cannot read backend {shown}"))?
        .is_some()
    {
        bail!(
            "backend {shown} already holds a store (its marker): give each store its own table \
             or prefix; {ATTACH_HINT}"
        );
    }
    let nested = backend
        .nested_stores()
        .with_context(|| format!("cannot read backend {shown}"))?;
    if let Some(first) = nested.first() {
        let more = match nested.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        bail!(
            "backend {shown} nests with {first}{more}: one store's prefix would hold the other's \
             entries, and each would read them as its own; give this store a prefix that neither \
             starts another store's nor starts with one (`photos:` beside `videos:`, not \
             `photos:2024:` inside `photos:`)"
        );
    }
    let held = match backend.usage() {
        Ok(usage) => usage.entries,
        Err(seccs_store::backend::BackendError::Corrupt { .. }) => bail!(
            "backend {shown} holds keys that are not a store's entries (another application's, \
             or another store under a longer prefix?): give this store its own database, table \
             or prefix"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read backend {shown}")),
    };
    if held > 0 {
        bail!(
            "backend {shown} already holds {held} entries: another store's, or this store's from \
             a directory made before; give each store its own table or prefix (a prefix that no \
             other store's prefix starts with, such as one ending in `:`); {ATTACH_HINT}"
        );
    }
    Ok(backend)
}

/// The way out named where init refuses a backend that holds a store.
const ATTACH_HINT: &str = "if this is your store whose directory was lost, `seccs init --attach` \
                           with its key opens it again";

/// Opens a network backend by URL for `seccs bench --backend`, creating it
/// first (a PostgreSQL table) when it does not exist yet.
pub fn network_backend_for_bench(url: &str) -> Result<Arc<dyn Backend>> {
    match open_network_backend(url, Access::Write) {
        Ok(backend) => Ok(backend),
        Err(_) => create_network_backend(url),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_lock_wait, seconds};

    #[test]
    fn a_lock_wait_is_seconds_or_a_number_with_a_unit_up_to_a_day() {
        for (text, wait) in [
            ("0", Duration::ZERO),
            ("90", Duration::from_secs(90)),
            ("0.5", Duration::from_millis(500)),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("1.5m", Duration::from_secs(90)),
            ("24h", Duration::from_secs(86_400)),
        ] {
            assert_eq!(parse_lock_wait(text), Ok(wait), "{text}");
        }
        for text in [
            "",
            "m",
            ".",
            "1.2.3",
            "1e3",
            "inf",
            "NaN",
            "+5",
            "5 s",
            "5d",
            "86401",
            "0.0004",
            "0.5ms",
            "0.0000000001",
        ] {
            assert!(parse_lock_wait(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_wait_is_said_in_seconds_with_no_trailing_zeros() {
        assert_eq!(seconds(Duration::from_secs(120)), "120 s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5 s");
        assert_eq!(seconds(Duration::from_millis(1_250)), "1.25 s");
        assert_eq!(seconds(Duration::from_micros(1_500)), "0.0015 s");
        assert_eq!(seconds(Duration::ZERO), "0 s");
    }
}
