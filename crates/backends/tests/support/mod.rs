//! Real servers for the tests: each starts on a free loopback port in its own
//! temporary directory, waits a bounded time for readiness, and is stopped
//! when dropped (also when a test fails and unwinds).
//!
//! - Redis: `redis-server` with `--save "" --appendonly no`, or with an
//!   append-only file fsynced on every write for the tests that kill and
//!   restart it.
//! - PostgreSQL: `initdb` and `pg_ctl` from `/usr/lib/postgresql/*/bin`, as
//!   the `postgres` (else `nobody`) user when the tests run as root; trust
//!   authentication on loopback except for one password-protected role.
//! - S3: `s3s-fs`, an S3 server over a directory, its writes to each object
//!   made one at a time (`serial_s3`, as the example server), in process on its own
//!   tokio runtime, with one access key; it records when it got and when
//!   it had served each PUT and DELETE, and when it got each request of
//!   any kind, so a test can check the order in which a backend's requests
//!   reached it.

#![allow(dead_code)]

use std::error::Error;
use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod serial_s3;

pub type TestResult<T = ()> = Result<T, Box<dyn Error + Send + Sync>>;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A loopback port that was free a moment ago.
pub fn free_port() -> TestResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `ready` every 20 ms until it holds or `READY_TIMEOUT` passes.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) -> TestResult {
    let start = Instant::now();
    while start.elapsed() < READY_TIMEOUT {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} not ready after {READY_TIMEOUT:?}").into())
}

fn run(cmd: &mut Command) -> TestResult {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

// ---------------------------------------------------------------- Redis

pub const REDIS_PASSWORD: &str = "seccs-redis-test-password";

/// A `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    persistent: bool,
}

impl RedisServer {
    /// An in-memory server (nothing written to disk).
    pub fn start() -> TestResult<Self> {
        Self::start_with(false)
    }

    /// A server whose append-only file is fsynced on every write, so it
    /// keeps its data across [`RedisServer::kill`] and
    /// [`RedisServer::restart`].
    pub fn start_persistent() -> TestResult<Self> {
        Self::start_with(true)
    }

    /// A server on a free port; on another one while the port picked was
    /// taken before the server bound it (three ports at most).
    fn start_with(persistent: bool) -> TestResult<Self> {
        let mut server = Self {
            child: None,
            port: free_port()?,
            dir: tempfile::Builder::new().prefix("seccs-redis").tempdir()?,
            persistent,
        };
        for _ in 0..2 {
            match server.spawn() {
                Err(e) if server.ended_at_start() => {
                    eprintln!("{e}; trying another port");
                    server.port = free_port()?;
                }
                started => return started.map(|()| server),
            }
        }
        server.spawn().map(|()| server)
    }

    /// Whether the server last spawned has ended.
    fn ended_at_start(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_some()))
    }

    fn spawn(&mut self) -> TestResult {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--requirepass", REDIS_PASSWORD, "--protected-mode", "no"])
            .args(["--logfile", "redis.log"]);
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server (scripts/install-deps installs it): {e}")
            })?;
        self.child = Some(child);
        let addr = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", self.port);
        let client = redis::Client::open(addr.as_str())?;
        wait_until("redis-server", || {
            self.ended_at_start()
                || client
                    .get_connection_with_timeout(Duration::from_millis(200))
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
        })?;
        match self.ended_at_start() {
            true => Err(format!("redis-server on port {} ended at start", self.port).into()),
            false => Ok(()),
        }
    }

    /// `redis://127.0.0.1:PORT/0`, without credentials.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A raw connection for tests that reach behind the backend.
    pub fn raw(&self) -> TestResult<redis::Connection> {
        let addr = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", self.port);
        Ok(redis::Client::open(addr.as_str())?
            .get_connection_with_timeout(Duration::from_secs(5))?)
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) -> TestResult {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) -> TestResult {
        self.kill()?;
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ----------------------------------------------------------- PostgreSQL

/// The role with a password (every other role logs in by trust).
pub const PG_AUTH_USER: &str = "seccs_auth";
pub const PG_AUTH_PASSWORD: &str = "seccs-pg-test-password";

/// A PostgreSQL cluster run by `pg_ctl`.
pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<String>,
    running: bool,
    /// Server options beyond the defaults (TLS).
    extra_opts: String,
}

fn pg_bin() -> TestResult<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("PostgreSQL is not installed (scripts/install-deps installs it): {e}")
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .ok_or_else(|| "no /usr/lib/postgresql/*/bin/initdb".into())
}

/// Uid and gid of a user, from `id`.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(user).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

impl PostgresServer {
    pub fn start() -> TestResult<Self> {
        let bin = pg_bin()?;
        let dir = tempfile::Builder::new().prefix("seccs-pg").tempdir()?;
        let is_root = std::fs::metadata("/proc/self")?.uid() == 0;
        let run_as = if is_root {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|u| user_ids(u).is_some())
                .ok_or("running as root and neither postgres nor nobody exists")?;
            let (uid, gid) = user_ids(user).ok_or("user vanished")?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
            Some(user.to_owned())
        } else {
            None
        };
        let mut server = Self {
            dir,
            bin,
            port: free_port()?,
            run_as,
            running: false,
            extra_opts: String::new(),
        };
        let data = server.data();
        server.run_pg(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "seccs",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 host all {PG_AUTH_USER} 127.0.0.1/32 scram-sha-256\n\
                 host all all 127.0.0.1/32 trust\n"
            ),
        )?;
        server.start_server()?;
        let mut client = server.client()?;
        client.batch_execute(&format!(
            "CREATE ROLE {PG_AUTH_USER} LOGIN PASSWORD '{PG_AUTH_PASSWORD}';\
             GRANT ALL ON SCHEMA public TO {PG_AUTH_USER};"
        ))?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> TestResult {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(&exe);
                cmd
            }
            None => Command::new(&exe),
        };
        cmd.args(args).current_dir(self.dir.path());
        run(&mut cmd)
    }

    fn start_server(&mut self) -> TestResult {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
             -c shared_buffers=16MB -c max_connections=30 -c max_wal_size=256MB{}",
            self.port,
            path_str(self.dir.path())?,
            self.extra_opts
        );
        self.run_pg(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "30",
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-o",
                &opts,
            ],
        )?;
        self.running = true;
        Ok(())
    }

    /// `postgres://seccs@127.0.0.1:PORT/postgres?table=TABLE&sslmode=disable`.
    pub fn url(&self, table: &str) -> String {
        self.url_as("seccs", table)
    }

    /// The same database as another role (every role but the
    /// password-protected one logs in by trust).
    pub fn url_as(&self, role: &str, table: &str) -> String {
        format!(
            "postgres://{role}@127.0.0.1:{}/postgres?table={table}&sslmode=disable",
            self.port
        )
    }

    /// The same database as the password-protected role.
    pub fn auth_url(&self, password: &str, table: &str) -> String {
        format!(
            "postgres://{PG_AUTH_USER}:{password}@127.0.0.1:{}/postgres?table={table}&sslmode=disable",
            self.port
        )
    }

    /// A raw client for tests that reach behind the backend.
    pub fn client(&self) -> TestResult<postgres::Client> {
        Ok(postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("seccs")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(5))
            .connect(postgres::NoTls)?)
    }

    /// Stops the server the way a crash does (`pg_ctl stop -m immediate`:
    /// no checkpoint, recovery from the WAL on the next start).
    pub fn kill(&mut self) -> TestResult {
        if self.running {
            self.running = false;
            let data = self.data();
            self.run_pg(
                "pg_ctl",
                &["stop", "-m", "immediate", "-w", "-D", path_str(&data)?],
            )?;
        }
        Ok(())
    }

    /// Restarts the server with TLS on: `chain_pem` is its certificate
    /// chain, `key_pem` its key.
    pub fn enable_tls(&mut self, chain_pem: &str, key_pem: &str) -> TestResult {
        use std::os::unix::fs::PermissionsExt;
        let cert = self.dir.path().join("server.crt");
        let key = self.dir.path().join("server.key");
        std::fs::write(&cert, chain_pem)?;
        std::fs::write(&key, key_pem)?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        if let Some(user) = &self.run_as {
            let (uid, gid) = user_ids(user).ok_or("user vanished")?;
            std::os::unix::fs::chown(&cert, Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&key, Some(uid), Some(gid))?;
        }
        self.extra_opts = format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            path_str(&cert)?,
            path_str(&key)?
        );
        self.restart()
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) -> TestResult {
        self.kill()?;
        self.start_server()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn path_str(path: &Path) -> TestResult<&str> {
    path.to_str()
        .ok_or_else(|| format!("non-UTF-8 path {}", path.display()).into())
}

// ------------------------------------------------------------------- S3

pub const S3_ACCESS_KEY: &str = "seccs-test-access";
pub const S3_SECRET_KEY: &str = "seccs-test-secret-0123456789";
pub const S3_BUCKET: &str = "seccs-test";

/// An in-process `s3s-fs` server on its own runtime.
pub struct S3Server {
    runtime: Option<tokio::runtime::Runtime>,
    port: u16,
    root: tempfile::TempDir,
    gate: Arc<Gate>,
    writes: Arc<Mutex<Vec<ServedWrite>>>,
    requests: Arc<Mutex<Vec<ServedRequest>>>,
}

/// A request the server got, of any kind.
#[derive(Debug, Clone)]
pub struct ServedRequest {
    /// `GET`, `PUT`, `HEAD`...
    pub method: String,
    /// The path after the bucket (the object key, or empty for the bucket
    /// itself).
    pub object: String,
    /// The query string (`list-type=2&prefix=...` for a listing).
    pub query: String,
    /// When the server got it.
    pub started: Instant,
}

impl ServedRequest {
    /// Whether this asked for a page of a listing of the bucket's objects.
    pub fn is_listing(&self) -> bool {
        self.method == "GET" && self.object.is_empty() && self.query.contains("list-type=")
    }
}

/// A PUT or DELETE request the server served, as it saw it.
#[derive(Debug, Clone)]
pub struct ServedWrite {
    /// `PUT` or `DELETE`.
    pub method: String,
    /// The object key, the bucket left out.
    pub object: String,
    /// When the server got it.
    pub started: Instant,
    /// When it had served it (the object written or removed), before the
    /// answer went back.
    pub finished: Instant,
}

/// The longest a request is held back (see [`S3Server::hold`]).
const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// The request the server holds back, if any: every request passes through
/// it (as the service's access check) before it is served.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// The operation (`PutObject`, `HeadObject`...) and object key of the
    /// next request to hold.
    target: Option<(String, String)>,
    /// Refuse that request with this error instead of holding it.
    refuse: Option<s3s::S3ErrorCode>,
    /// Whether that request arrived (and is held, or was refused).
    reached: bool,
    /// Whether it may go on.
    open: bool,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The service's access check: the [`Gate`] (shared with the server, which
/// outlives a restart's service).
struct GateAccess(Arc<Gate>);

impl s3s::access::S3Access for GateAccess {
    // `async fn check` as `async_trait` expands it (the crate is not a
    // dependency here).
    fn check<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        cx: &'life1 mut s3s::access::S3AccessContext<'life2>,
    ) -> Pin<Box<dyn Future<Output = s3s::S3Result<()>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        // As the default check: only signed requests.
        if cx.credentials().is_none() {
            return Box::pin(async { Err(s3s::s3_error!(AccessDenied, "Signature is required")) });
        }
        let held = {
            let mut state = self.0.lock();
            let matches = match (&state.target, cx.s3_path()) {
                (Some((op, object)), s3s::path::S3Path::Object { key, .. }) => {
                    op == cx.s3_op().name() && **object == **key
                }
                _ => false,
            };
            if matches {
                state.target = None;
                state.reached = true;
                if let Some(code) = state.refuse.take() {
                    return Box::pin(async move { Err(s3s::S3Error::new(code)) });
                }
            }
            matches
        };
        let gate = self.0.clone();
        Box::pin(async move {
            let start = Instant::now();
            while held && !gate.lock().open && start.elapsed() < HOLD_LIMIT {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(())
        })
    }
}

/// A request held back at the server until this is let go (or dropped, or
/// [`HOLD_LIMIT`] passed): see [`S3Server::hold`].
pub struct Held {
    gate: Arc<Gate>,
}

impl Held {
    /// Waits at most `limit` for the request to arrive.
    pub fn wait_reached(&self, limit: Duration) -> TestResult {
        let start = Instant::now();
        while !self.gate.lock().reached {
            if start.elapsed() > limit {
                return Err(format!("the held request did not come within {limit:?}").into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Lets the held request (or the one still awaited) go on.
    pub fn let_go(&self) {
        let mut state = self.gate.lock();
        state.target = None;
        state.refuse = None;
        state.open = true;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.let_go();
    }
}

impl S3Server {
    pub fn start() -> TestResult<Self> {
        let root = tempfile::Builder::new().prefix("seccs-s3").tempdir()?;
        std::fs::create_dir(root.path().join(S3_BUCKET))?;
        let mut server = Self {
            runtime: None,
            port: free_port()?,
            root,
            gate: Arc::default(),
            writes: Arc::default(),
            requests: Arc::default(),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> TestResult {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3s-fs")
            .enable_all()
            .build()?;
        let fs = s3s_fs::FileSystem::new(self.root.path()).map_err(|e| format!("s3s-fs: {e:?}"))?;
        let mut builder = s3s::service::S3ServiceBuilder::new(serial_s3::SerialFs::new(fs));
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
        ));
        builder.set_access(GateAccess(self.gate.clone()));
        let s3 = builder.build();
        // Every PUT and DELETE is recorded when it comes and once served,
        // and every request when it comes.
        let writes = self.writes.clone();
        let requests = self.requests.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let s3 = s3.clone();
                let writes = writes.clone();
                let method = req.method().as_str().to_owned();
                let object = req
                    .uri()
                    .path()
                    .strip_prefix(&format!("/{S3_BUCKET}/"))
                    .map(str::to_owned);
                let started = Instant::now();
                requests
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(ServedRequest {
                        method: method.clone(),
                        object: object.clone().unwrap_or_default(),
                        query: req.uri().query().unwrap_or_default().to_owned(),
                        started,
                    });
                async move {
                    let answer = hyper::service::Service::call(&s3, req).await;
                    if let Some(object) = object
                        && (method == "PUT" || method == "DELETE")
                    {
                        writes
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(ServedWrite {
                                method,
                                object,
                                started,
                                finished: Instant::now(),
                            });
                    }
                    answer
                }
            });
        let port = self.port;
        // The port may linger for a moment after a kill: retry the bind.
        let listener = runtime.block_on(async {
            let start = Instant::now();
            loop {
                match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => return Ok(l),
                    Err(e) if start.elapsed() > READY_TIMEOUT => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })?;
        runtime.spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            // Ends when the runtime shuts down.
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        self.runtime = Some(runtime);
        wait_until("s3s-fs", || TcpStream::connect(("127.0.0.1", port)).is_ok())
    }

    /// `s3://BUCKET/PREFIX?endpoint=http://127.0.0.1:PORT&region=us-east-1`.
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "s3://{S3_BUCKET}/{prefix}?endpoint=http://127.0.0.1:{}&region=us-east-1",
            self.port
        )
    }

    /// Holds back the next `operation` (`PutObject`, `HeadObject`...) on
    /// the object `name` under `prefix` before it is served, until the
    /// returned [`Held`] is let go: the test can change the bucket, or the
    /// client's state, between a request and the next.
    pub fn hold(&self, operation: &str, prefix: &str, name: &str) -> Held {
        self.gate_next(operation, prefix, name, None)
    }

    /// Refuses the next `operation` on the object `name` under `prefix`
    /// with `code` (as another service would answer it), unserved; the
    /// returned [`Held`] says when it came.
    pub fn refuse(
        &self,
        operation: &str,
        prefix: &str,
        name: &str,
        code: s3s::S3ErrorCode,
    ) -> Held {
        self.gate_next(operation, prefix, name, Some(code))
    }

    fn gate_next(
        &self,
        operation: &str,
        prefix: &str,
        name: &str,
        refuse: Option<s3s::S3ErrorCode>,
    ) -> Held {
        let object = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        *self.gate.lock() = GateState {
            target: Some((operation.to_owned(), object)),
            refuse,
            reached: false,
            open: false,
        };
        Held {
            gate: self.gate.clone(),
        }
    }

    /// The PUT and DELETE requests served since the last call, in the
    /// order they were served.
    pub fn take_writes(&self) -> Vec<ServedWrite> {
        std::mem::take(&mut *self.writes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Every request the server got since the last call, in the order it
    /// got them.
    pub fn take_requests(&self) -> Vec<ServedRequest> {
        std::mem::take(&mut *self.requests.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The directory holding the objects of `prefix`.
    pub fn object_dir(&self, prefix: &str) -> PathBuf {
        self.root.path().join(S3_BUCKET).join(prefix)
    }

    /// Stops serving at once: in-flight requests are cut.
    pub fn kill(&mut self) -> TestResult {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        Ok(())
    }

    /// Serves the same directory on the same port again.
    pub fn restart(&mut self) -> TestResult {
        self.kill()?;
        self.spawn()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // Joins the server's threads (bounded) rather than detaching them as
        // `shutdown_background` does: a run of the conformance suite once
        // died of SIGSEGV in `pthread_detach` on the test's own thread while
        // S3 tests tore down.
        let _ = self.kill();
    }
}

impl S3Server {
    /// Cuts the object of `key` under `prefix` to its first 3 bytes, shorter
    /// than the count the backend keeps before each value, as damage in the
    /// bucket would.
    pub fn damage(&self, prefix: &str, key: &[u8]) -> TestResult {
        let path = self.object_dir(prefix).join(hex::encode(key));
        let raw = std::fs::read(&path)?;
        std::fs::write(&path, raw.get(..3).ok_or("damaged object is short")?)?;
        Ok(())
    }
}
