//! Test harness: real broker processes on free loopback ports, and networks of
//! share servers running as tasks.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use seccs_net::broker::{Broker, MemoryBroker, NatsBroker, RedisBroker};
use seccs_net::server::{self, ServerHandle};
use seccs_net::{Client, ClientOptions, Kdf};

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A broker process, killed on drop.
pub struct Proc {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until the broker `proc` started answers `probe` with `expect`.
/// `Ok(false)`: it ended first, as a broker does whose port another
/// process took between [`free_port`] and its start.
fn wait_ready(proc: &mut Proc, probe: &[u8], expect: &[u8]) -> std::io::Result<bool> {
    for _ in 0..200 {
        if proc.child.try_wait()?.is_some() {
            return Ok(false);
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", proc.port)) {
            s.set_read_timeout(Some(Duration::from_millis(500)))?;
            if !probe.is_empty() {
                s.write_all(probe)?;
            }
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf)
                && buf[..n].starts_with(expect)
            {
                return Ok(true);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(std::io::Error::other(format!(
        "broker on port {} never became ready",
        proc.port
    )))
}

/// Starts a broker with `start(port)` on `port`, or on a free port when
/// `None`, trying other free ports (three in all) while the one picked
/// was taken before the broker bound it.
fn start_broker(
    port: Option<u16>,
    probe: &[u8],
    expect: &[u8],
    mut start: impl FnMut(u16, &std::path::Path) -> std::io::Result<Child>,
) -> std::io::Result<Proc> {
    for _ in 0..3 {
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let dir = tempfile::tempdir()?;
        let child = start(port, dir.path())?;
        let mut proc = Proc { child, port, dir };
        if wait_ready(&mut proc, probe, expect)? {
            return Ok(proc);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(std::io::Error::other(match port {
        Some(p) => format!("the broker on port {p} ended at start, three times: the port is taken"),
        None => "three brokers in a row ended at start: their ports were taken".to_owned(),
    }))
}

/// Starts `redis-server` on `port` (a free one when `None`).
pub fn redis(port: Option<u16>) -> std::io::Result<Proc> {
    start_broker(port, b"PING\r\n", b"+PONG", |port, dir| {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    })
}

/// Where `nats-server` is: on the `PATH`, or where Debian's package puts
/// it (`/usr/sbin`, which a user's `PATH` there lacks).
fn nats_server() -> std::path::PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| "nats-server".into())
}

/// Starts `nats-server` on a free port.
pub fn nats() -> std::io::Result<Proc> {
    start_broker(None, b"", b"INFO", |port, dir| {
        Command::new(nats_server())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    })
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Memory,
    Redis,
    Nats,
}

/// Servers on one broker.
pub struct Net {
    pub broker: Arc<dyn Broker>,
    pub roots: tempfile::TempDir,
    pub servers: Vec<Option<ServerHandle>>,
    pub proc: Option<Proc>,
    pub url: String,
}

pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Client options for tests: every wait at most `timeout`, the fast KDF,
/// the default threshold and acknowledgements.
pub fn fast_options(timeout: Duration) -> ClientOptions {
    ClientOptions {
        timeout,
        kdf: Kdf::INSECURE_FAST,
        threshold: None,
        min_acks: None,
    }
}

pub async fn broker_for(
    kind: Kind,
) -> Result<(Arc<dyn Broker>, Option<Proc>, String), Box<dyn std::error::Error + Send + Sync>> {
    Ok(match kind {
        Kind::Memory => (Arc::new(MemoryBroker::new()), None, "memory".into()),
        Kind::Redis => {
            let p = redis(None)?;
            let url = format!("redis://127.0.0.1:{}", p.port);
            (Arc::new(RedisBroker::connect(&url).await?), Some(p), url)
        }
        Kind::Nats => {
            let p = nats()?;
            let url = format!("nats://127.0.0.1:{}", p.port);
            (Arc::new(NatsBroker::connect(&url).await?), Some(p), url)
        }
    })
}

impl Net {
    pub async fn new(
        kind: Kind,
        n: usize,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let (broker, proc, url) = broker_for(kind).await?;
        let roots = tempfile::tempdir()?;
        let mut net = Net {
            broker,
            roots,
            servers: Vec::new(),
            proc,
            url,
        };
        for i in 0..n {
            let h = server::start(
                net.broker.clone(),
                &net.root(i),
                Some(format!("s{i}")),
                TIMEOUT,
            )
            .await?;
            net.servers.push(Some(h));
        }
        Ok(net)
    }

    pub fn root(&self, i: usize) -> std::path::PathBuf {
        self.roots.path().join(format!("server{i}"))
    }

    pub fn channel(&self, i: usize) -> String {
        self.servers[i]
            .as_ref()
            .map(|h| h.channel().to_owned())
            .unwrap_or_default()
    }

    pub async fn client(&self, threshold: Option<usize>) -> Result<Client, seccs_net::Error> {
        self.client_waiting(TIMEOUT, threshold).await
    }

    /// A client whose every wait lasts at most `timeout`.
    pub async fn client_waiting(
        &self,
        timeout: Duration,
        threshold: Option<usize>,
    ) -> Result<Client, seccs_net::Error> {
        Client::new(
            self.broker.clone(),
            ClientOptions {
                threshold,
                ..fast_options(timeout)
            },
        )
        .await
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(h) = self.servers[i].take() {
            h.kill();
        }
    }

    /// Starts server `i` again on its root (so with its channel).
    pub async fn restart(&mut self, i: usize) -> TestResult {
        let h = server::start(
            self.broker.clone(),
            &self.root(i),
            Some(format!("s{i}")),
            TIMEOUT,
        )
        .await?;
        self.servers[i] = Some(h);
        Ok(())
    }

    /// Waits (bounded) until exactly `n` servers are present.
    pub async fn wait_servers(&self, client: &Client, n: usize) -> TestResult {
        for _ in 0..100 {
            if client.servers().await.map(|s| s.len()).unwrap_or(0) == n {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("never saw {n} servers").into())
    }
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A broker client posing as a share server named `SERVER_PREFIX` + `id`
/// (32 hex digits): it answers each request it gets with the body `answer`
/// gives for it, a frame each, for at most `requests` requests or a
/// minute without one. Returns its channel and its task.
pub async fn posing_server(
    broker: Arc<dyn Broker>,
    id: &str,
    requests: u32,
    answer: impl Fn(seccs_net::message::Body) -> seccs_net::message::Body + Send + 'static,
) -> Result<(String, tokio::task::JoinHandle<()>), Box<dyn std::error::Error + Send + Sync>> {
    posing_server_waiting(broker, id, requests, move |body| {
        std::future::ready(answer(body))
    })
    .await
}

/// [`posing_server`] whose answers may wait before they are sent.
pub async fn posing_server_waiting<F, A>(
    broker: Arc<dyn Broker>,
    id: &str,
    requests: u32,
    answer: F,
) -> Result<(String, tokio::task::JoinHandle<()>), Box<dyn std::error::Error + Send + Sync>>
where
    F: Fn(seccs_net::message::Body) -> A + Send + 'static,
    A: std::future::Future<Output = seccs_net::message::Body> + Send,
{
    posing_server_answering(broker, id, requests, move |body| {
        let answered = answer(body);
        async move { Some(answered.await) }
    })
    .await
}

/// [`posing_server_waiting`] that leaves a request unanswered where
/// `answer` gives `None` (as a server of an older build does a request it
/// does not know); such a request counts among the `requests` too.
pub async fn posing_server_answering<F, A>(
    broker: Arc<dyn Broker>,
    id: &str,
    requests: u32,
    answer: F,
) -> Result<(String, tokio::task::JoinHandle<()>), Box<dyn std::error::Error + Send + Sync>>
where
    F: Fn(seccs_net::message::Body) -> A + Send + 'static,
    A: std::future::Future<Output = Option<seccs_net::message::Body>> + Send,
{
    use seccs_net::message::Message;
    use seccs_net::packet::{DataFrame, Frame, MessageId};
    let me = format!("{}{id}", server::SERVER_PREFIX);
    let mut sub = broker.subscribe(&me).await?;
    let channel = me.clone();
    let task = tokio::spawn(async move {
        for i in 0..requests {
            let Ok(Some(bytes)) = tokio::time::timeout(Duration::from_secs(60), sub.recv()).await
            else {
                return;
            };
            let Ok(Frame::Data(d)) = Frame::decode(&bytes) else {
                continue;
            };
            let Ok(m) = Message::decode(&d.payload) else {
                continue;
            };
            let Some(body) = answer(m.body).await else {
                continue;
            };
            let mut message_id = [0x1e; 16];
            message_id[..4].copy_from_slice(&i.to_le_bytes());
            let frame = Frame::Data(DataFrame {
                message_id: MessageId(message_id),
                sender: me.clone(),
                index: 0,
                count: 1,
                payload: Message {
                    request_id: m.request_id,
                    body,
                }
                .encode(),
            });
            let _ = broker.publish(&d.sender, frame.encode()).await;
        }
    });
    Ok((channel, task))
}

/// A broker client posing as share server `id`: it answers every request
/// for versions with `highest` and `saves`, refuses every store as a
/// version taken, and holds nothing, for at most `requests` requests.
pub async fn lying_server(
    broker: Arc<dyn Broker>,
    id: &str,
    requests: u32,
    highest: u64,
    saves: Vec<seccs_net::message::SaveEntry>,
) -> Result<(String, tokio::task::JoinHandle<()>), Box<dyn std::error::Error + Send + Sync>> {
    use seccs_net::message::{Body, conflict_reason};
    posing_server(broker, id, requests, move |body| match body {
        Body::Versions { .. } => Body::VersionsHeld {
            highest,
            saves: saves.clone(),
        },
        Body::Store { version, .. } => Body::Refused {
            reason: conflict_reason(version),
        },
        Body::Fetch { .. } => Body::Fetched { record: None },
        Body::List { .. } => Body::Listed {
            entries: Vec::new(),
        },
        Body::Delete { .. } | Body::Rollback { .. } => Body::Deleted { removed: 0 },
        _ => Body::Refused {
            reason: "no".into(),
        },
    })
    .await
}

/// Sends `body` to `server` in one frame, as a client of `broker` named
/// for this call, and returns the server's answer (waited for at most 10 s,
/// among at most 16 frames).
pub async fn ask_raw(
    broker: &Arc<dyn Broker>,
    server: &str,
    body: seccs_net::message::Body,
) -> Result<seccs_net::message::Body, Box<dyn std::error::Error + Send + Sync>> {
    use seccs_net::message::{Message, RequestId};
    use seccs_net::packet::{DataFrame, Frame, FrameRef, MessageId};
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let me = format!("seccs:client:raw-test-{n}");
    let mut replies = broker.subscribe(&me).await?;
    let request_id = RequestId::random()?;
    let mut message_id = [0x4d; 16];
    message_id[..4].copy_from_slice(&n.to_le_bytes());
    let frame = Frame::Data(DataFrame {
        message_id: MessageId(message_id),
        sender: me,
        index: 0,
        count: 1,
        payload: Message { request_id, body }.encode(),
    });
    broker.publish(server, frame.encode()).await?;
    for _ in 0..16 {
        let bytes = tokio::time::timeout(Duration::from_secs(10), replies.recv())
            .await?
            .ok_or("subscription ended")?;
        if let Ok(FrameRef::Data(d)) = FrameRef::decode(&bytes)
            && let Ok(m) = Message::decode(d.payload)
            && m.request_id == request_id
        {
            return Ok(m.body);
        }
    }
    Err("no answer".into())
}
