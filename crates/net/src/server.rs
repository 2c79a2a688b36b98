//! Servers: keep records for clients and answer store, fetch, list, info and
//! delete requests.
//!
//! A server subscribes to `seccs:server:<id>`, where the id is kept in its
//! root so that it survives restarts. Each request is handled in its own task
//! (at most [`MAX_CONCURRENT`] at once), so a large transfer never blocks the
//! receive loop, and a request that fails is answered with a refusal, never
//! with a crash. Shutdown stops taking requests and lets the ones in flight
//! finish for up to [`SHUTDOWN_GRACE`].
//!
//! One server runs per root: [`start`] takes an exclusive lock on
//! `ROOT/lock` (which names the holder's pid) and holds it until the
//! [`ServerHandle`] is dropped; a second server on the root is refused,
//! naming the holder.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::endpoint::{Endpoint, Incoming, REQUEST_QUEUE};
use crate::error::{BrokerError, Error};
use crate::message::{
    Body, MAX_LISTED_ENTRIES, MAX_VERSION, Message, NOT_A_VERSION_REASON, ROLLED_BACK_REASON,
    ServerInfo, conflict_reason,
};
use crate::record::Record;
use crate::store::{PutOutcome, RecordFile, RecordStore, create_private_dir_all, write_atomic};
use crate::tail::Tail;

/// Channel prefix of servers.
pub const SERVER_PREFIX: &str = "seccs:server:";
/// Requests a server handles at once.
pub const MAX_CONCURRENT: usize = 8;
/// How long shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    channel: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
    /// The root's lock, released when the handle is dropped.
    _lock: seccs_core::lockfile::DirLock,
}

impl ServerHandle {
    /// The server's channel, by which clients name it.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Stops taking requests, finishes those in flight, and unsubscribes.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    }

    /// Stops at once, as a crash would (for tests of failures).
    pub fn kill(self) {
        self.task.abort();
    }

    /// Waits until the server stops by itself (its broker is gone for good).
    pub async fn wait(mut self) -> Result<(), Error> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    }
}

/// Takes the lock of `root` (an exclusive `flock` on `root/lock`, which
/// says who holds it), or fails naming the holder.
fn lock_root(root: &Path) -> Result<seccs_core::lockfile::DirLock, Error> {
    use seccs_core::lockfile::{self, LockError};
    lockfile::lock_dir(root).map_err(|e| match e {
        LockError::Held { holder, .. } => Error::RootInUse {
            root: root.to_owned(),
            holder,
        },
        LockError::Io {
            action,
            path,
            source,
        } => Error::io(format!("{action} {}", path.display()), source),
    })
}

fn load_or_create_id(root: &Path) -> Result<String, Error> {
    let path = root.join("server-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() == 32 && s.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(s.trim().to_owned())
        }
        Ok(_) => Err(Error::Config(format!(
            "{} is not a server id",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut id = [0u8; 16];
            seccs_core::random_bytes(&mut id)?;
            let id = hex::encode(id);
            write_atomic(&path, id.as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

/// Starts a server on `broker` keeping its records under `root`.
pub async fn start(
    broker: Arc<dyn Broker>,
    root: &Path,
    name: Option<String>,
    ack_timeout: Duration,
) -> Result<ServerHandle, Error> {
    // A root the server makes is private like everything in it; one the
    // operator made keeps its mode.
    if root.exists() && !root.is_dir() {
        return Err(Error::Config(format!(
            "{} is not a directory: a server's root is a directory (made when missing)",
            root.display()
        )));
    }
    create_private_dir_all(root)?;
    let lock = lock_root(root)?;
    let store = RecordStore::open(root)?;
    // The lock is held: no store of this root is in progress.
    let leftovers = store.remove_leftover_temporaries();
    if leftovers > 0 {
        tracing::info!(
            root = %root.display(),
            leftovers,
            "removed temporary files an earlier run left"
        );
    }
    let id = load_or_create_id(root)?;
    let channel = format!("{SERVER_PREFIX}{id}");
    let name = name.unwrap_or_else(|| id[..8].to_owned());
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let endpoint = Arc::new(Endpoint::open(broker, channel.clone(), Some(tx), ack_timeout).await?);
    tracing::info!(channel, name, root = %root.display(), "share server started");
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(endpoint, rx, stop_rx, store, name));
    Ok(ServerHandle {
        channel,
        shutdown: Some(stop_tx),
        task,
        _lock: lock,
    })
}

async fn run(
    endpoint: Arc<Endpoint>,
    mut requests: mpsc::Receiver<Incoming>,
    mut stop: oneshot::Receiver<()>,
    store: RecordStore,
    name: String,
) -> Result<(), Error> {
    let limit = Arc::new(Semaphore::new(MAX_CONCURRENT));
    let mut tasks = JoinSet::new();
    let result = loop {
        tokio::select! {
            _ = &mut stop => break Ok(()),
            req = requests.recv() => match req {
                Some(inc) => {
                    // Waiting for a slot watches `stop` too: every slot may be
                    // held for an acknowledgement timeout, longer than the grace.
                    let permit = tokio::select! {
                        _ = &mut stop => break Ok(()),
                        permit = limit.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => break Ok(()),
                        },
                    };
                    let (ep, st, nm) = (endpoint.clone(), store.clone(), name.clone());
                    tasks.spawn(async move {
                        handle(&ep, &st, &nm, inc).await;
                        drop(permit);
                    });
                }
                None => break Err(Error::Broker(BrokerError::Closed)),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    let grace = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    });
    if grace.await.is_err() {
        tasks.abort_all();
    }
    tracing::info!(channel = endpoint.channel(), "share server stopped");
    result
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("worker", std::io::Error::other(e.to_string())))?
}

/// What a request is answered with.
enum Reply {
    /// A message whole in memory.
    Body(Body),
    /// A `Fetched` reply carrying a record held, framed from its file as
    /// each frame is sent ([`RecordFile`]), never read whole.
    Record(RecordFile),
}

async fn answer(store: &RecordStore, name: &str, body: Body) -> Result<Reply, Error> {
    if let Body::Fetch { tag, version } = body {
        let st = store.clone();
        return Ok(
            match blocking(move || st.open_record(&tag, version)).await? {
                Some(file) => Reply::Record(file),
                None => Reply::Body(Body::Fetched { record: None }),
            },
        );
    }
    answer_body(store, name, body).await.map(Reply::Body)
}

/// The answer to a request other than a fetch.
async fn answer_body(store: &RecordStore, name: &str, body: Body) -> Result<Body, Error> {
    Ok(match body {
        Body::Store {
            tag,
            version,
            record,
        } => {
            if tag.is_empty() {
                return Ok(Body::Refused {
                    reason: "empty tag".into(),
                });
            }
            if version == 0 {
                return Ok(Body::Refused {
                    reason: NOT_A_VERSION_REASON.into(),
                });
            }
            if version > MAX_VERSION {
                return Ok(Body::Refused {
                    reason: format!(
                        "version {version} is above the largest a server stores ({MAX_VERSION})"
                    ),
                });
            }
            // Hashing megabytes and writing them: off the runtime's workers.
            let st = store.clone();
            blocking(move || {
                Ok(match Record::check(&record) {
                    Ok(m) if m.version != version => Body::Refused {
                        reason: "record version mismatch".into(),
                    },
                    Err(e) => Body::Refused {
                        reason: format!("invalid record: {e}"),
                    },
                    // A save rolled back is refused even when its store
                    // request comes late (this server was paused or slow).
                    Ok(m) => match st.put_save(&tag, version, &record, &m.file_id)? {
                        PutOutcome::Stored | PutOutcome::Unchanged => Body::Stored,
                        // A client takes both as "try a higher version".
                        PutOutcome::Conflict | PutOutcome::VersionUsed => Body::Refused {
                            reason: conflict_reason(version),
                        },
                        PutOutcome::RolledBack => Body::Refused {
                            reason: ROLLED_BACK_REASON.into(),
                        },
                        PutOutcome::NotAVersion => Body::Refused {
                            reason: NOT_A_VERSION_REASON.into(),
                        },
                    },
                })
            })
            .await?
        }
        Body::List { prefix } => {
            let st = store.clone();
            let entries = blocking(move || st.list(&prefix)).await?;
            // A client drops a longer listing undecoded.
            if entries.len() > MAX_LISTED_ENTRIES {
                return Ok(Body::Refused {
                    reason: format!(
                        "{} tags start with the prefix, more than a listing carries \
                         ({MAX_LISTED_ENTRIES}); list a longer prefix",
                        entries.len()
                    ),
                });
            }
            Body::Listed { entries }
        }
        Body::Versions { tag } => {
            let st = store.clone();
            blocking(move || {
                Ok(Body::VersionsHeld {
                    highest: st.highest(&tag),
                    saves: st.saves(&tag),
                })
            })
            .await?
        }
        Body::Info => {
            let st = store.clone();
            let (records, stored_bytes, free_bytes) = blocking(move || {
                let (r, b) = st.stats()?;
                Ok((r, b, st.free_space()))
            })
            .await?;
            Body::InfoReply(ServerInfo {
                name: name.to_owned(),
                free_bytes,
                records,
                stored_bytes,
            })
        }
        Body::Delete { tag, version } => {
            let st = store.clone();
            Body::Deleted {
                removed: blocking(move || st.delete(&tag, version)).await?,
            }
        }
        Body::Rollback {
            tag,
            version,
            file_id,
        } => {
            let st = store.clone();
            Body::Deleted {
                removed: blocking(move || st.delete_save(&tag, version, &file_id)).await?,
            }
        }
        _ => Body::Refused {
            reason: "not a request".into(),
        },
    })
}

async fn handle(endpoint: &Endpoint, store: &RecordStore, name: &str, inc: Incoming) {
    // The request's bytes stay counted in the endpoint's budget until it is
    // answered.
    let Incoming {
        from,
        message,
        held: _held,
    } = inc;
    let reply = match answer(store, name, message.body).await {
        Ok(Reply::Body(Body::Refused { reason })) => {
            tracing::warn!(from, "request refused: {reason}");
            Reply::Body(Body::Refused { reason })
        }
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(from, "request failed: {e}");
            Reply::Body(Body::Refused {
                reason: e.to_string(),
            })
        }
    };
    let request_id = message.request_id;
    let wait = endpoint.ack_timeout();
    // A reply to a channel nobody reads (a forged sender) ends at its first
    // frame where the broker tells (Redis, in-process). Where it cannot
    // (NATS), a reply holds its request slot for one acknowledgement
    // timeout in all, not one per retransmission: it frees the slot as soon
    // as a requester that does acknowledge would have given up waiting.
    let sent = match reply {
        Reply::Body(body) => {
            let message = Message { request_id, body };
            tokio::time::timeout(wait, endpoint.send(&from, &message, None)).await
        }
        Reply::Record(file) => {
            let head = Message::encode_fetched_head(request_id, file.len());
            tokio::time::timeout(wait, endpoint.send_parts(&from, &head, &file, None)).await
        }
    };
    match sent {
        Ok(Ok(())) => {}
        // A forged sender channel: the reply is given up at its first frame.
        Ok(Err(Error::NotListening(_))) => {
            tracing::debug!(from, "nobody reads the requester's channel; reply dropped");
        }
        Ok(Err(e)) => tracing::warn!(from, "could not reply: {e}"),
        Err(_) => tracing::warn!(
            from,
            "reply not acknowledged within {:?}; dropped",
            endpoint.ack_timeout()
        ),
    }
}

/// Runs a server from a configuration until `shutdown` completes (or the
/// broker is gone for longer than the outage limit), then stops gracefully.
pub async fn serve(
    config: &crate::Config,
    root: &Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let broker = crate::broker::connect(&config.broker).await?;
    let mut handle = start(broker, root, config.name.clone(), config.timeout()).await?;
    tracing::info!(
        channel = handle.channel(),
        "serving; SIGINT (Ctrl-C), SIGTERM or SIGHUP stops it, unless ignored at its start"
    );
    tokio::select! {
        () = shutdown => {}
        r = &mut handle.task => {
            return match r {
                Ok(r) => r,
                Err(_) => Ok(()),
            };
        }
    }
    handle.shutdown().await
}
