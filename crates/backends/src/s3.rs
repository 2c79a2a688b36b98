//! The S3 backend (AWS S3 and compatible object stores), through OpenDAL.
//!
//! # Layout
//!
//! One object per entry, named by the entry's key in lowercase hex under the
//! store's prefix. An object holds the count as 8 bytes big-endian followed by
//! the stored bytes, so a count is read with a ranged `GET` of 8 bytes; S3
//! cannot rewrite part of an object, so a count update reads the object and
//! writes it back.
//!
//! Two objects under the prefix are not entries (their names are not hex),
//! and every walk and [`Backend::usage`] skips them by name; any other
//! object that is not a lowercase hex name right under the prefix is a
//! stray, which a walk reports as damaged (or fails on, when it takes no
//! report) and [`Backend::usage`] fails on:
//!
//! - `PREFIX/store-marker`, the store marker ([`Backend::read_marker`]):
//!   the 32 lowercase hex characters of config.toml's `key_check` (the
//!   store key's check value), as ASCII, nothing else (no count header, no
//!   line ending), written once by `init` or the first writer of a store
//!   made before markers.
//! - `PREFIX/store-descriptor`, the store's descriptor
//!   ([`Backend::read_descriptor`]; its format is
//!   `seccs_store::descriptor`'s), written by the first writer to open the
//!   store with its parameters confirmed.
//! - `PREFIX/writer-lease`, the writer lease (see the `lease` module), held
//!   only while a process has the store open for writing: the ASCII text
//!   `TOKEN pid PID on HOST until MILLIS` (TOKEN 32 random lowercase hex
//!   characters, PID the holder's process id in decimal, HOST its host
//!   name, MILLIS when it expires in milliseconds since the Unix epoch, 30 s
//!   after its last renewal; the holder renews it every 5 s).
//!
//! (Without a prefix, the names are `store-marker`, `store-descriptor` and
//! `writer-lease` at the bucket's root.)
//!
//! # Batches without transactions
//!
//! S3 has no multi-object transaction ([`Backend::is_transactional`] is
//! false). A batch is applied stage by stage (see
//! [`seccs_store::backend`]): every request of a stage is issued concurrently
//! (up to `concurrency` in flight, 64 by default) and all must have succeeded
//! before the next stage starts. The store puts children in earlier stages than
//! their parents and deletes in the reverse order, so a crash or a failed
//! request leaves at worst orphans, never a node that refers to a missing one;
//! `seccs verify` reports and `seccs gc` removes them. Reads of many keys are
//! likewise issued concurrently.
//!
//! # Connection
//!
//! `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&concurrency=N]`. Without
//! `endpoint`, AWS's endpoint for the region is used; `region` defaults to
//! `us-east-1`. Requests use path-style addressing. Credentials come from
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) or
//! the shared credentials file (`~/.aws/credentials`, `AWS_PROFILE`), never
//! from the URL; the instance metadata service is never queried. TLS uses
//! rustls with the ring provider.
//!
//! OpenDAL is asynchronous: the backend owns a small tokio runtime and blocks
//! on it. A call on a thread inside another tokio runtime, where that
//! would panic, is refused with an error: call the backend from a thread of
//! its own.
//!
//! # One writer
//!
//! [`S3Backend::connect_exclusive`] also takes the store's writer lease, an
//! object beside the entries kept with conditional writes (see the `lease`
//! module): a second process that opens the prefix exclusively gets
//! [`BackendError::Locked`] naming the holder, and writes stop if the lease
//! cannot be renewed: every write request checks it as it starts and is
//! abandoned if it has not finished while the lease can be trusted, so a
//! stage that runs for minutes starts none after the lease is lost and a
//! slow request does not land long after. The
//! service must support `If-None-Match: *` and `If-Match` on `PUT` (AWS S3
//! does since 2024); taking the lease checks that it refuses a second
//! create of the lease object, and refuses a service that does not. `seccs`
//! opens every store this way.

use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use opendal::layers::HttpClientLayer;
use opendal::raw::{HttpBody, HttpClient, HttpFetch};
use opendal::{ErrorKind, Metadata, Operator, options};
use seccs_store::backend::{Backend, BackendError, Batch, Damaged, Entry, Usage, Visitor};

use crate::batch::{Effect, RoundTrips, coalesce};

mod lease;

use lease::{LEASE_OBJECT, Lease};

use crate::own_runtime::OwnRuntime;

/// The store marker's object (see [`Backend::read_marker`]): not hex, so
/// never an entry's name, and listings skip it.
const MARKER_OBJECT: &str = "store-marker";
/// The store descriptor's object (see [`Backend::read_descriptor`]): not
/// hex either, and listings skip it.
const DESCRIPTOR_OBJECT: &str = "store-descriptor";

const NAME: &str = "s3";
const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_CONCURRENCY: usize = 64;

/// Where an S3-backed store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    region: String,
    concurrency: usize,
}

impl S3Config {
    /// Parses `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&concurrency=N]`.
    /// Unknown parameters, credentials in the URL (its endpoint too) and
    /// malformed endpoints are errors.
    pub fn parse(url: &str) -> Result<Self, BackendError> {
        let bad = |what: String| BackendError::Config(format!("s3 URL: {what}"));
        crate::check_user_info(url).map_err(bad)?;
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("{e}")))?;
        if parsed.scheme() != "s3" {
            return Err(bad(format!("scheme {:?} is not s3", parsed.scheme())));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    .into(),
            ));
        }
        if parsed.port().is_some() {
            return Err(bad(
                "a bucket has no port: give the server as ?endpoint=".into()
            ));
        }
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("no bucket".into()))?
            .to_owned();
        let valid_bucket = bucket.len() >= 3
            && bucket.len() <= 63
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(bad(format!(
                "bucket {bucket:?} must be 3-63 lowercase letters, digits, '-' or '.'"
            )));
        }
        let prefix = parsed.path().trim_matches('/').to_owned();
        if prefix.split('/').any(|part| part == "." || part == "..")
            || prefix.contains("//")
            || prefix.contains('%')
        {
            return Err(bad(format!("prefix {prefix:?} is not a plain path")));
        }
        let mut config = Self {
            bucket,
            prefix,
            endpoint: None,
            region: DEFAULT_REGION.to_owned(),
            concurrency: DEFAULT_CONCURRENCY,
        };
        for (name, value) in crate::query_pairs_once(&parsed).map_err(bad)? {
            match name.as_ref() {
                "endpoint" => {
                    let endpoint = url::Url::parse(&value)
                        .ok()
                        .filter(|e| matches!(e.scheme(), "http" | "https") && e.has_host())
                        .ok_or_else(|| bad(format!("endpoint {value:?} is not an http(s) URL")))?;
                    if !endpoint.username().is_empty() || endpoint.password().is_some() {
                        // Said without the value: it holds a secret.
                        return Err(bad(
                            "credentials do not belong in the endpoint (a store records its \
                             URL): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                                .into(),
                        ));
                    }
                    config.endpoint = Some(endpoint.as_str().trim_end_matches('/').to_owned());
                }
                "region" if !value.is_empty() => config.region = value,
                "concurrency" => {
                    config.concurrency = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .ok_or_else(|| bad(format!("concurrency {value:?} is not 1-1024")))?;
                }
                other => {
                    return Err(bad(format!(
                        "unknown or empty parameter {other:?} (known: endpoint, region, concurrency)"
                    )));
                }
            }
        }
        Ok(config)
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix (folder) of the store's objects, without slashes around.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The service's endpoint: the one given, else AWS's for the region (as
    /// OpenDAL picks it).
    fn endpoint_shown(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        }
    }
}

/// An access key pair given directly rather than through the environment.
#[derive(Clone)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A content store's entries as objects in an S3 bucket.
pub struct S3Backend {
    // Dropped first, while the runtime it releases the lease on still runs.
    lease: Option<Lease>,
    op: Operator,
    /// At the bucket's root: finds the markers of stores in the folders
    /// above this one's.
    bucket_op: Operator,
    runtime: OwnRuntime,
    concurrency: usize,
    config: S3Config,
    /// What each listing builds its own operator from (see `list_each`).
    credentials: Option<S3Credentials>,
    http: reqwest::Client,
    round_trips: RoundTrips,
    in_flight: std::sync::atomic::AtomicU64,
    max_in_flight: std::sync::atomic::AtomicU64,
    /// The marker every batch must find (see
    /// [`Backend::guard_writes_with_marker`]).
    marker_guard: std::sync::Mutex<Option<Vec<u8>>>,
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a S3Backend);

impl<'a> InFlight<'a> {
    fn new(backend: &'a S3Backend) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        backend.round_trips.add(1);
        let now = backend.in_flight.fetch_add(1, Relaxed) + 1;
        backend.max_in_flight.fetch_max(now, Relaxed);
        Self(backend)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    /// Builds the client and checks that the bucket answers. Credentials
    /// come from `credentials`, else from the environment or the shared
    /// credentials file.
    pub fn connect(
        config: S3Config,
        credentials: Option<S3Credentials>,
    ) -> Result<Self, BackendError> {
        crate::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("seccs-s3")
            .enable_all()
            .build()
            .map(|runtime| OwnRuntime::new(runtime, NAME))
            .map_err(|e| BackendError::other(NAME, format!("cannot start the I/O runtime: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(config.concurrency)
            .build()
            .map_err(|e| BackendError::other(NAME, format!("cannot build the HTTP client: {e}")))?;
        let client = HttpClient::with(http.clone());
        let op = operator(
            &config,
            credentials.as_ref(),
            &format!("/{}", config.prefix),
            client.clone(),
        )?;
        let bucket_op = operator(&config, credentials.as_ref(), "/", client)?;
        let backend = Self {
            lease: None,
            op,
            bucket_op,
            runtime,
            concurrency: config.concurrency,
            config,
            credentials,
            http,
            round_trips: RoundTrips::default(),
            in_flight: Default::default(),
            max_in_flight: Default::default(),
            marker_guard: std::sync::Mutex::new(None),
        };
        backend.check()?;
        Ok(backend)
    }

    /// Like [`S3Backend::connect`], and takes the store's writer lease: fails
    /// with [`BackendError::Locked`] if another process holds it. The lease
    /// is renewed in the background and released on drop; a write after it
    /// could not be renewed fails with the same error.
    pub fn connect_exclusive(
        config: S3Config,
        credentials: Option<S3Credentials>,
    ) -> Result<Self, BackendError> {
        let mut backend = Self::connect(config, credentials)?;
        backend.lease = Some(Lease::acquire(&backend.op, backend.runtime.handle()?)?);
        Ok(backend)
    }

    /// Runs `work` on the backend's runtime (refused on a thread inside
    /// another runtime: see `own_runtime`).
    fn run<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        self.runtime.block_on(work)?
    }

    /// Checks that the bucket exists and the credentials may list it (a
    /// listing of one object under the prefix).
    pub fn check(&self) -> Result<(), BackendError> {
        self.run(self.list_each("", Some(1), |_, _| Ok(false)))
            .map_err(|e| match e {
                BackendError::Config(m) if m.contains("NoSuchBucket") => {
                    BackendError::Config(format!(
                        "bucket {:?} does not exist at {}: create it first",
                        self.config.bucket,
                        self.config.endpoint_shown()
                    ))
                }
                e => e,
            })
    }

    /// Lists the objects whose names, relative to the store's prefix, start
    /// with `start`, handing `each` every name and its metadata until it
    /// returns `false`; `limit` is the page size asked for. Nothing is kept
    /// but what `each` keeps.
    async fn list_each(
        &self,
        start: &str,
        limit: Option<usize>,
        mut each: impl FnMut(&str, &Metadata) -> Result<bool, BackendError>,
    ) -> Result<(), BackendError> {
        let mut listing = self.listing(start, limit).await?;
        while let Some((name, entry)) = listing.next().await? {
            if !each(&name, entry.metadata())? {
                break;
            }
        }
        Ok(())
    }

    /// Starts listing the objects whose names, relative to the store's
    /// prefix, start with `start`; `limit` is the page size asked for. The
    /// listing asks for a page only when the names of the one before are
    /// all taken (see [`Listing::next`]).
    ///
    /// The service is not trusted: the listing is made from the bucket's
    /// root, so that OpenDAL never cuts the store's prefix off a name the
    /// service made up (a name shorter than the prefix made it slice out
    /// of range), and a name outside the prefix is an error (see
    /// [`Listing::next`]); and each listing has an HTTP client of its own
    /// that stops a listing that does not end (see [`ListingPages`]).
    async fn listing(&self, start: &str, limit: Option<usize>) -> Result<Listing, BackendError> {
        self.round_trips.add(1);
        let pages = std::sync::Arc::new(std::sync::Mutex::new(ListingPages::default()));
        let fetch = ListingFetch {
            http: self.http.clone(),
            pages: pages.clone(),
        };
        let op = operator(
            &self.config,
            self.credentials.as_ref(),
            "/",
            HttpClient::with(fetch),
        )?;
        let root = if self.config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.config.prefix)
        };
        let lister = op
            .lister_options(
                &format!("{root}{start}"),
                options::ListOptions {
                    recursive: true,
                    limit,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| listing_failed(&pages, e))?;
        Ok(Listing {
            state: ListingState::Open(lister),
            root,
            prefix: self.config.prefix.clone(),
            pages,
        })
    }

    /// The next at most `size` objects of `listing` (entries whose key
    /// starts with `prefix`, and strays), each entry's object read
    /// (`None` if it was deleted since it was listed), and whether the
    /// listing has ended.
    async fn next_window(
        &self,
        listing: &mut Listing,
        prefix: &[u8],
        size: usize,
    ) -> Result<Window, BackendError> {
        let mut listed = Vec::with_capacity(size.min(1024));
        let mut last = false;
        while listed.len() < size {
            let Some((name, entry)) = listing.next().await? else {
                last = true;
                break;
            };
            listed.extend(Listed::of(&name, entry.metadata(), prefix));
        }
        let objects = futures::stream::iter(listed)
            .map(|listed| async move {
                Ok(match listed {
                    Listed::Entry { key, .. } => {
                        let raw = self.read(&key).await?;
                        WindowObject::Entry(key, raw)
                    }
                    Listed::Stray(name) => WindowObject::Stray(name),
                })
            })
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        Ok(Window { objects, last })
    }

    /// Requests sent to the server so far.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.get()
    }

    /// The most requests that were in flight at once so far.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn decode(key: &[u8], raw: &[u8]) -> Result<Entry, BackendError> {
        let Some((count, value)) = raw.split_first_chunk::<8>() else {
            return Err(BackendError::Corrupt {
                backend: NAME.into(),
                detail: format!("object {} is shorter than its count", hex::encode(key)),
            });
        };
        Ok(Entry {
            value: value.to_vec(),
            count: u64::from_be_bytes(*count),
        })
    }

    async fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let _request = InFlight::new(self);
        match self.op.read(&hex::encode(key)).await {
            Ok(buf) => Ok(Some(buf.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    /// Runs one write request under the writer lease (if this backend
    /// holds one): it does not start once the lease is lost or stale
    /// ([`BackendError::Locked`]), and it is abandoned, with the same
    /// error, if it has not finished by the end of the time the lease can
    /// be trusted (`TRUST_FOR` after its last renewal, see `lease_state`).
    /// The lease is checked before every write request, not once a stage:
    /// a stage of many requests can run for minutes, and one slow request
    /// could otherwise land long after another process took the lease over
    /// (the HTTP client alone would wait 300 s). An abandoned request's
    /// connection is closed, so a body not yet received whole is never
    /// stored; one the service already had may still be applied just
    /// after the deadline, within the lease's remaining margin (TTL minus
    /// `TRUST_FOR`).
    async fn under_lease<T>(
        &self,
        request: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let Some(lease) = &self.lease else {
            return request.await;
        };
        let trusted_for = lease.trusted_for()?;
        tokio::time::timeout(trusted_for, request)
            .await
            .map_err(|_| BackendError::Locked {
                detail: format!(
                    "s3: a write did not finish while this process's writer lease could be \
                     trusted ({} s more when it started), so it was abandoned: another process \
                     may hold the lease by now",
                    trusted_for.as_secs()
                ),
                by_this_process: false,
            })?
    }

    async fn write(&self, key: &[u8], value: &[u8], count: u64) -> Result<(), BackendError> {
        let mut object = Vec::with_capacity(8 + value.len());
        object.extend_from_slice(&count.to_be_bytes());
        object.extend_from_slice(value);
        let _request = InFlight::new(self);
        self.op
            .write(&hex::encode(key), object)
            .await
            .map(drop)
            .map_err(map_err)
    }

    /// Fails with [`BackendError::StoreLost`] unless the marker object holds
    /// `expected`.
    async fn check_marker(&self, expected: &[u8]) -> Result<(), BackendError> {
        let found = self.fetch_marker().await?;
        if found.as_deref() == Some(expected) {
            return Ok(());
        }
        Err(BackendError::StoreLost {
            backend: NAME.into(),
            detail: format!(
                "the store's marker {} under prefix {:?}: the bucket or prefix was emptied or \
                 replaced while this command wrote, and S3 has no transactions, so this batch \
                 may have been written into it",
                if found.is_some() {
                    "was replaced"
                } else {
                    "is gone"
                },
                self.config.prefix
            ),
        })
    }

    /// The marker object's value, if there is one.
    async fn fetch_marker(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.fetch_beside_entries(MARKER_OBJECT).await
    }

    /// Writes the object `name` beside the entries (the marker or the
    /// descriptor), under the writer lease.
    fn write_beside_entries(&self, name: &str, value: &[u8]) -> Result<(), BackendError> {
        self.run(self.under_lease(async {
            let _request = InFlight::new(self);
            self.op
                .write(name, value.to_vec())
                .await
                .map(drop)
                .map_err(map_err)
        }))
    }

    /// The value of the object `name` beside the entries (the marker or
    /// the descriptor), if there is one: its first
    /// [`MAX_BESIDE_ENTRIES`](seccs_store::backend::MAX_BESIDE_ENTRIES) + 1
    /// bytes.
    async fn fetch_beside_entries(&self, name: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let _request = InFlight::new(self);
        let limit = seccs_store::backend::MAX_BESIDE_ENTRIES + 1;
        // Streamed and cut at the limit: a ranged read of an object shorter
        // than the range fails, and a whole read of one far longer would
        // take it all into memory.
        let opened = async { self.op.reader(name).await?.into_bytes_stream(..).await };
        let mut stream = match opened.await {
            Ok(stream) => stream,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(map_err(e)),
        };
        let mut value = Vec::new();
        while value.len() < limit {
            // The stream's errors are opendal's, as `std::io::Error`s.
            let chunk = match stream.try_next().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => {
                    let said = e.to_string();
                    return Err(
                        match e.into_inner().map(|e| e.downcast::<opendal::Error>()) {
                            Some(Ok(e)) => map_err(*e),
                            _ => BackendError::other(
                                NAME,
                                format_args!("cannot read {name}: {said}"),
                            ),
                        },
                    );
                }
            };
            let room = limit - value.len();
            value.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        Ok(Some(value))
    }

    /// One key's effect; the lease is checked before each of its requests.
    async fn apply_effect(&self, key: &[u8], effect: Effect<'_>) -> Result<(), BackendError> {
        match effect {
            Effect::Put { value, count } => self.under_lease(self.write(key, value, count)).await,
            Effect::SetCount { count } => {
                // Not worth reading when the write could not start.
                self.under_lease(async { Ok(()) }).await?;
                match self.read(key).await? {
                    Some(raw) => {
                        let entry = Self::decode(key, &raw)?;
                        self.under_lease(self.write(key, &entry.value, count)).await
                    }
                    None => Ok(()),
                }
            }
            Effect::Delete => {
                self.under_lease(async {
                    let _request = InFlight::new(self);
                    self.op.delete(&hex::encode(key)).await.map_err(map_err)
                })
                .await
            }
        }
    }
}

impl Backend for S3Backend {
    fn name(&self) -> &str {
        NAME
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
        self.run(
            futures::stream::iter(keys)
                .map(|key| async move {
                    match self.read(key).await? {
                        Some(raw) => Self::decode(key, &raw).map(Some),
                        None => Ok(None),
                    }
                })
                .buffered(self.concurrency)
                .try_collect(),
        )
    }

    fn get_counts(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        self.run(
            futures::stream::iter(keys)
                .map(|key| async move {
                    let read = {
                        let _request = InFlight::new(self);
                        self.op
                            .read_options(
                                &hex::encode(key),
                                options::ReadOptions {
                                    range: (0..8).into(),
                                    ..Default::default()
                                },
                            )
                            .await
                    };
                    match read {
                        Ok(buf) => {
                            let raw = buf.to_vec();
                            Self::decode(key, &raw).map(|e| Some(e.count))
                        }
                        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                        // An object shorter than the range fails the ranged
                        // read ("too little data", or 416 when empty): read
                        // it whole to tell such damage (corrupt, which the
                        // store's removals step past) from a failed request.
                        Err(e) => match self.read(key).await {
                            Ok(Some(raw)) => Self::decode(key, &raw).map(|e| Some(e.count)),
                            Ok(None) => Ok(None),
                            Err(_) => Err(map_err(e)),
                        },
                    }
                })
                .buffered(self.concurrency)
                .try_collect(),
        )
    }

    fn apply(&self, batch: &Batch) -> Result<(), BackendError> {
        let guard = self
            .marker_guard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let writes = async {
            for stage in batch.stages() {
                // Each request runs under the lease (see `under_lease`):
                // none starts once it is lost, none outlives its trust.
                let effects = coalesce(stage);
                futures::stream::iter(effects.into_iter().map(Ok))
                    .try_for_each_concurrent(self.concurrency, |(key, effect)| {
                        self.apply_effect(key, effect)
                    })
                    .await?;
            }
            Ok(())
        };
        // S3 has no transactions, so the marker cannot gate the writes as
        // on Redis and PostgreSQL; read beside them (no added latency), it
        // still stops the command at the batch that found the store gone.
        let check = async {
            match &guard {
                Some(expected) => self.check_marker(expected).await,
                None => Ok(()),
            }
        };
        self.run(async { futures::try_join!(check, writes) })
            .map(drop)
    }

    fn guard_writes_with_marker(&self, value: &[u8]) {
        *self
            .marker_guard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value.to_vec());
    }

    fn is_transactional(&self) -> bool {
        false
    }

    fn release(&self) {
        if let Some(lease) = &self.lease {
            lease.release_now();
        }
    }

    fn keeps_marker(&self) -> bool {
        true
    }

    fn read_marker(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.run(self.fetch_marker())
    }

    fn nested_stores(&self) -> Result<Vec<String>, BackendError> {
        let describe = |prefix: &str| {
            if prefix.is_empty() {
                "the store at the bucket's root".to_owned()
            } else {
                format!("the store at prefix {prefix:?}")
            }
        };
        let mut found = Vec::new();
        // Stores whose prefix this one's lies in: a marker in each folder
        // above it.
        let prefix = self.config.prefix.as_str();
        let outer: Vec<&str> = if prefix.is_empty() {
            Vec::new()
        } else {
            std::iter::once("")
                .chain(prefix.match_indices('/').map(|(at, _)| &prefix[..at]))
                .collect()
        };
        for folder in outer {
            let path = if folder.is_empty() {
                MARKER_OBJECT.to_owned()
            } else {
                format!("{folder}/{MARKER_OBJECT}")
            };
            self.round_trips.add(1);
            match self.runtime.block_on(self.bucket_op.stat(&path))? {
                Ok(_) => found.push(describe(folder)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        // Stores whose prefix lies in this one's: markers in folders below.
        let suffix = format!("/{MARKER_OBJECT}");
        self.run(self.list_each("", None, |path, _| {
            if let Some(folder) = path.strip_suffix(&suffix) {
                found.push(describe([prefix, folder].join("/").trim_start_matches('/')));
            }
            Ok(true)
        }))?;
        Ok(found)
    }

    fn keeps_descriptor(&self) -> bool {
        true
    }

    fn read_descriptor(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.run(self.fetch_beside_entries(DESCRIPTOR_OBJECT))
    }

    fn write_descriptor(&self, value: &[u8]) -> Result<(), BackendError> {
        self.write_beside_entries(DESCRIPTOR_OBJECT, value)
    }

    fn write_marker(&self, value: &[u8]) -> Result<(), BackendError> {
        self.write_beside_entries(MARKER_OBJECT, value)
    }

    fn remove_marker(&self) -> Result<(), BackendError> {
        // S3's DELETE of a missing object succeeds: removing twice is fine.
        self.run(self.under_lease(async {
            let _request = InFlight::new(self);
            self.op.delete(MARKER_OBJECT).await.map_err(map_err)
        }))
    }

    /// Visits every entry whose key starts with `prefix`, as the listing
    /// goes: a window of listed objects (`concurrency` × 4) is read, then
    /// visited, then the next is listed, so that memory stays bounded by
    /// the window and one page of the listing rather than by the store. An
    /// object too short to hold its count, or one whose name is not an
    /// entry's, goes to `damaged` when there is one (by its name's bytes),
    /// and the walk goes on; otherwise it ends the walk with the error, once
    /// the listing reaches it. An object deleted since it was listed is
    /// skipped.
    fn walk(
        &self,
        prefix: &[u8],
        visit: &mut Visitor<'_>,
        mut damaged: Option<&mut Damaged<'_>>,
    ) -> Result<(), BackendError> {
        let size = self.concurrency * 4;
        // Object names are the keys in hex, two digits a byte, so the names
        // of the keys under `prefix` are exactly the names that start with
        // its hex: the service filters the listing (`ListObjectsV2` with a
        // prefix), and `Listed::of` checks that it did.
        let mut listing = self.run(self.listing(&hex::encode(prefix), None))?;
        loop {
            // The window is listed and read inside the runtime and visited
            // outside it: `visit` may call back into this backend, which
            // blocks on the runtime again (and a nested `block_on` panics).
            let window = self.run(self.next_window(&mut listing, prefix, size))?;
            for object in window.objects {
                let (key, raw) = match object {
                    WindowObject::Stray(name) => {
                        match damaged.as_mut() {
                            Some(damaged) => damaged(name.as_bytes(), stray_error(&name)),
                            None => return Err(stray_error(&name)),
                        }
                        continue;
                    }
                    // An object deleted since the listing is simply gone.
                    WindowObject::Entry(_, None) => continue,
                    WindowObject::Entry(key, Some(raw)) => (key, raw),
                };
                match (Self::decode(&key, &raw), damaged.as_mut()) {
                    (Ok(entry), _) => visit(&key, &entry)?,
                    (Err(e), Some(damaged)) => damaged(&key, e),
                    (Err(e), None) => return Err(e),
                }
            }
            if window.last {
                return Ok(());
            }
        }
    }

    /// Adds up the listing as it comes, keeping nothing of it; an object
    /// that is not an entry is an error: a place holding one is not only
    /// this store's.
    fn usage(&self) -> Result<Usage, BackendError> {
        let mut usage = Usage::default();
        self.run(self.list_each("", None, |path, meta| {
            match Listed::of(path, meta, &[]) {
                Some(Listed::Stray(name)) => return Err(stray_error(&name)),
                Some(Listed::Entry { key, len }) => {
                    // An object too short for its count is still an
                    // entry here (a damaged one, which `verify`
                    // reports): the place is not empty.
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    usage.add(key.len(), len.saturating_sub(8));
                }
                None => {}
            }
            Ok(true)
        }))?;
        Ok(usage)
    }
}

/// A window of a walk (see [`S3Backend::next_window`]).
struct Window {
    objects: Vec<WindowObject>,
    /// Whether the listing has ended with this window.
    last: bool,
}

/// An object of a [`Window`].
enum WindowObject {
    /// An entry's key and its object, if it was still there.
    Entry(Vec<u8>, Option<Vec<u8>>),
    /// The name of an object that is not an entry.
    Stray(String),
}

/// An object a listing under the store's prefix found.
enum Listed {
    /// An entry's key and its object's length.
    Entry { key: Vec<u8>, len: u64 },
    /// The name of an object that is not an entry (not a key in hex right
    /// under the prefix): another application's, or debris.
    Stray(String),
}

impl Listed {
    /// The object listed as `path` (under the store's prefix), if it is an
    /// entry whose key starts with `prefix` or a stray.
    fn of(path: &str, meta: &Metadata, prefix: &[u8]) -> Option<Self> {
        if !meta.is_file() || matches!(path, LEASE_OBJECT | MARKER_OBJECT | DESCRIPTOR_OBJECT) {
            return None;
        }
        // An entry's object sits right under the prefix, named by its key
        // in lowercase hex: the only name its reads and writes use. Another
        // spelling of the same key (uppercase digits) would list the entry
        // twice yet never be read, so it is a stray.
        let key = match hex::decode(path) {
            Ok(key) if is_lowercase_hex(path) => key,
            _ => return Some(Self::Stray(path.to_owned())),
        };
        // The service is not trusted to have filtered.
        key.starts_with(prefix).then(|| Self::Entry {
            key,
            len: meta.content_length(),
        })
    }
}

/// One listing under the store's prefix, taken an object at a time (see
/// [`S3Backend::listing`]): it holds one page of names at most, and can be
/// taken from across several `block_on`s.
struct Listing {
    state: ListingState,
    /// The store's prefix with a slash after it (empty for none): what
    /// every listed path must start with.
    root: String,
    /// The store's prefix as the configuration says it.
    prefix: String,
    pages: std::sync::Arc<std::sync::Mutex<ListingPages>>,
}

/// Where a [`Listing`] is.
enum ListingState {
    Open(opendal::Lister),
    Ended,
    /// It failed, or OpenDAL panicked: it cannot go on, and must not look
    /// ended.
    Failed,
}

impl Listing {
    /// The next object: its name relative to the store's prefix, and what
    /// was listed of it; `None` once the listing has ended.
    async fn next(&mut self) -> Result<Option<(String, opendal::Entry)>, BackendError> {
        let lister = match &mut self.state {
            ListingState::Open(lister) => lister,
            ListingState::Ended => return Ok(None),
            ListingState::Failed => {
                return Err(listing_error("taken from again after it failed".into()));
            }
        };
        // OpenDAL still asserts, in debug builds, that a listed name is not
        // the root itself ("/" here). A panic in `next` is caught and ends
        // the listing: the lister that panicked and the operator behind it
        // are this listing's alone and dropped unused right after, and
        // nothing shared was being changed (the page counter's lock is not
        // held while OpenDAL runs).
        let next = std::panic::AssertUnwindSafe(lister.next())
            .catch_unwind()
            .await;
        let entry = match next {
            Ok(Some(Ok(entry))) => entry,
            Ok(None) => {
                self.state = ListingState::Ended;
                return Ok(None);
            }
            Ok(Some(Err(e))) => {
                self.state = ListingState::Failed;
                return Err(listing_failed(&self.pages, e));
            }
            Err(_) => {
                self.state = ListingState::Failed;
                return Err(listing_error(
                    "the service listed a name the S3 client cannot handle".into(),
                ));
            }
        };
        let Some(name) = entry.path().strip_prefix(self.root.as_str()) else {
            self.state = ListingState::Failed;
            return Err(listing_error(format!(
                "the service listed object {:?}, outside the store's prefix {:?}",
                entry.path(),
                self.prefix
            )));
        };
        Ok(Some((name.to_owned(), entry)))
    }
}

/// The error for a listing that failed with `e`: why [`ListingPages`]
/// stopped it, if it did.
fn listing_failed(pages: &std::sync::Mutex<ListingPages>, e: opendal::Error) -> BackendError {
    let stopped = pages
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .stopped
        .clone();
    match stopped {
        Some(why) => listing_error(why),
        None => map_err(e),
    }
}

/// Whether `name` is written only with digits and lowercase `a`-`f`, the
/// spelling `hex::encode` gives an entry's object.
fn is_lowercase_hex(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The error for an object under the store's prefix that is not an entry.
fn stray_error(name: &str) -> BackendError {
    BackendError::Corrupt {
        backend: NAME.into(),
        detail: format!("object {name:?} under the store's prefix is not an entry"),
    }
}

/// An OpenDAL operator on the bucket at `root`, sending its requests
/// through `client`.
fn operator(
    config: &S3Config,
    credentials: Option<&S3Credentials>,
    root: &str,
    client: HttpClient,
) -> Result<Operator, BackendError> {
    let mut builder = opendal::services::S3::default()
        .bucket(&config.bucket)
        .root(root)
        .region(&config.region)
        .disable_ec2_metadata();
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint(endpoint);
    }
    if let Some(creds) = credentials {
        builder = builder
            .access_key_id(&creds.access_key_id)
            .secret_access_key(&creds.secret_access_key)
            .disable_config_load();
    }
    Ok(Operator::new(builder)
        .map_err(map_err)?
        .layer(HttpClientLayer::new(client))
        .finish())
}

/// The error for a listing the service answered wrongly.
fn listing_error(detail: String) -> BackendError {
    BackendError::Corrupt {
        backend: NAME.into(),
        detail: format!("listing the store's objects: {detail}"),
    }
}

/// Pages a listing may take before the service is taken to be looping:
/// a page holds up to 1,000 objects, so this is a store of over four
/// billion entries (16 TiB of 4 KiB nodes), beyond any store this backend
/// serves well. What a listing keeps of its pages (a 16-byte digest of
/// each continuation token) stays under 64 MiB.
const MAX_LIST_PAGES: usize = 1 << 22;

/// The page requests of one listing, as they leave the HTTP client: the
/// service is not trusted to end a listing (OpenDAL asks for the next page
/// for as long as the answer says it is truncated), so a continuation
/// token it gave before, or more than [`MAX_LIST_PAGES`] pages, stops the
/// listing.
#[derive(Default)]
struct ListingPages {
    pages: usize,
    /// Digests of the tokens asked for so far (two independent SipHash
    /// keys, so that a collision is out of reach even for the service).
    tokens: std::collections::HashSet<u128>,
    keys: (std::hash::RandomState, std::hash::RandomState),
    /// Why the listing was stopped, once it was.
    stopped: Option<String>,
}

impl ListingPages {
    /// Admits one more page request to `uri`, or says why not.
    fn admit(&mut self, uri: &http::Uri) -> Result<(), String> {
        if let Some(why) = &self.stopped {
            return Err(why.clone());
        }
        self.pages += 1;
        let token = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .find(|(name, _)| name == "continuation-token" || name == "marker")
            .map(|(_, token)| token.into_owned());
        let why = if self.pages > MAX_LIST_PAGES {
            format!("the listing went on past {MAX_LIST_PAGES} pages")
        } else if let Some(token) = token.filter(|t| !t.is_empty()) {
            use std::hash::BuildHasher;
            let digest = (u128::from(self.keys.0.hash_one(&token)) << 64)
                | u128::from(self.keys.1.hash_one(&token));
            if self.tokens.insert(digest) {
                return Ok(());
            }
            format!(
                "the service gave continuation token {:?} a second time after {} pages",
                token.escape_debug().to_string(),
                self.pages - 1
            )
        } else if self.pages > 1 {
            "the service asked for another page without a continuation token".to_owned()
        } else {
            return Ok(());
        };
        self.stopped = Some(why.clone());
        Err(why)
    }
}

/// The HTTP client of one listing: sends each request on through `http`
/// once [`ListingPages`] admits it.
struct ListingFetch {
    http: reqwest::Client,
    pages: std::sync::Arc<std::sync::Mutex<ListingPages>>,
}

impl HttpFetch for ListingFetch {
    async fn fetch(
        &self,
        req: http::Request<opendal::Buffer>,
    ) -> opendal::Result<http::Response<HttpBody>> {
        let admitted = self
            .pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(req.uri());
        match admitted {
            Ok(()) => HttpFetch::fetch(&self.http, req).await,
            Err(why) => Err(opendal::Error::new(ErrorKind::Unexpected, why)),
        }
    }
}

fn map_err(err: opendal::Error) -> BackendError {
    let detail = describe(&err);
    match err.kind() {
        ErrorKind::PermissionDenied => BackendError::Auth {
            backend: NAME.into(),
            detail,
        },
        _ if is_no_such_bucket(&err) => {
            BackendError::Config("s3: the bucket does not exist (NoSuchBucket)".into())
        }
        ErrorKind::ConfigInvalid => BackendError::Config(format!("s3: {detail}")),
        ErrorKind::NotFound => BackendError::Config(format!("s3 bucket not found: {detail}")),
        _ if err.is_temporary() || is_connect_error(&err) => {
            BackendError::unavailable(NAME, detail)
        }
        _ => BackendError::other(NAME, detail),
    }
}

/// Whether the service said the bucket does not exist (OpenDAL makes S3's
/// `NoSuchBucket` a configuration error and keeps the code in its message).
fn is_no_such_bucket(err: &opendal::Error) -> bool {
    err.kind() == ErrorKind::ConfigInvalid && err.message().contains("NoSuchBucket")
}

/// An OpenDAL error as its kind, operation, message and source, without its
/// context: OpenDAL's own display adds the request's URI and a dump of the
/// response's status and every header.
fn describe(err: &opendal::Error) -> String {
    let shown = err.to_string();
    // The display starts "KIND (STATUS) at OPERATION", then has the context,
    // the message and the source, each after its own separator.
    let head = [", context: {", " => ", ", source: "]
        .iter()
        .filter_map(|separator| shown.find(separator))
        .min()
        .unwrap_or(shown.len());
    let mut out = shown[..head].to_owned();
    if !err.message().is_empty() {
        out.push_str(" => ");
        out.push_str(err.message());
    }
    if let Some(source) = std::error::Error::source(err) {
        out.push_str(", source: ");
        out.push_str(&source.to_string());
    }
    out
}

/// Whether the request never reached a server (refused, reset, timed out).
fn is_connect_error(err: &opendal::Error) -> bool {
    let mut source = std::error::Error::source(err);
    for _ in 0..16 {
        let Some(s) = source else { return false };
        if let Some(e) = s.downcast_ref::<reqwest::Error>()
            && (e.is_connect() || e.is_timeout() || e.is_request())
        {
            return true;
        }
        if s.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_prefix_and_endpoint() -> Result<(), BackendError> {
        let c = S3Config::parse(
            "s3://my-bucket/stores/one/?endpoint=http://127.0.0.1:9000&region=eu-west-1&concurrency=8",
        )?;
        assert_eq!(c.bucket(), "my-bucket");
        assert_eq!(c.prefix(), "stores/one");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!((c.region.as_str(), c.concurrency), ("eu-west-1", 8));
        let c = S3Config::parse("s3://bucket")?;
        assert_eq!((c.prefix(), c.region.as_str()), ("", DEFAULT_REGION));
        Ok(())
    }

    /// Credentials in the endpoint would be saved with the store's URL and
    /// shown in messages: refused, without repeating them.
    #[test]
    fn refuses_credentials_in_the_endpoint() {
        for url in [
            "s3://bucket/p?endpoint=http://AK:SECRET@127.0.0.1:9000",
            "s3://bucket/p?endpoint=https://SECRET@minio:9000",
        ] {
            let err = S3Config::parse(url).err();
            assert!(
                matches!(&err, Some(BackendError::Config(m))
                    if m.contains("AWS_SECRET_ACCESS_KEY") && !m.contains("SECRET@")),
                "{url}: {err:?}"
            );
        }
    }

    #[test]
    fn rejects_malformed_urls() {
        for url in [
            "s3://AK:SK@bucket/p",
            "s3://Bucket_Upper/p",
            "s3://bucket/p?endpoint=ftp://x",
            "s3://bucket/p?endpoint=127.0.0.1:9000",
            "s3://bucket/p?regoin=x",
            "s3://bucket/a%2Fb",
            "s3://bucket:9000/p",
            "s3://bucket/p?concurrency=0",
            "s3:///p",
        ] {
            let err = S3Config::parse(url).err();
            assert!(
                matches!(&err, Some(BackendError::Config(m)) if m.starts_with("s3 URL")),
                "{url}: {err:?}"
            );
        }
    }
}
