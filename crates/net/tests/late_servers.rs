//! Servers that get a save's requests late: a server paused (SIGSTOP) or
//! slow past the client's timeout is held its requests by the broker and
//! handles them when it runs again, after the client rolled the save back.
//! A save reported as rolled back must never become a version, in whatever
//! order the late server handles the store and the rollback.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Kind, Net, TestResult};
use seccs_net::broker::{BoxFuture, Broker, BrokerError, Subscription};
use seccs_net::message::{Body, Message, RequestId};
use seccs_net::packet::FrameRef;
use seccs_net::store::RecordStore;
use seccs_net::{Client, ClientOptions, Error, Kdf, Password};

fn pw() -> Password {
    Password::new("correct horse battery staple")
}

/// The broker as a client sees it while some servers are paused: what the
/// client publishes to a paused server is held, as the broker holds it for
/// a stopped process, and delivered when the server runs again.
struct Pausing {
    inner: Arc<dyn Broker>,
    state: Mutex<Paused>,
}

#[derive(Default)]
struct Paused {
    channels: HashSet<String>,
    held: Vec<(String, Vec<u8>)>,
    /// Channels whose next request for versions is lost.
    lose_probe: HashSet<String>,
    /// Whether requests for versions reach paused channels all the same
    /// (the servers were paused just after they answered a save's probe).
    probes_pass: bool,
}

impl Pausing {
    fn new(inner: Arc<dyn Broker>) -> Self {
        Self {
            inner,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Paused> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pause(&self, channel: String) {
        self.state().channels.insert(channel);
    }

    /// Pauses `channel` for every request but those for versions: the
    /// server answers a save's probe, then is paused.
    fn pause_after_probe(&self, channel: String) {
        let mut state = self.state();
        state.channels.insert(channel);
        state.probes_pass = true;
    }

    /// Loses the next request for versions published to `channel`, as a
    /// broker or a server that drops one message would.
    fn lose_probe(&self, channel: String) {
        self.state().lose_probe.insert(channel);
    }

    /// Whether every probe to be lost was.
    fn probes_lost(&self) -> bool {
        self.state().lose_probe.is_empty()
    }

    /// Ends every pause; returns what was held, in the order published.
    fn unpause(&self) -> Vec<(String, Vec<u8>)> {
        let mut state = self.state();
        state.channels.clear();
        state.probes_pass = false;
        std::mem::take(&mut state.held)
    }
}

impl Broker for Pausing {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            {
                let mut state = self.state();
                let probe = || matches!(message_of(&payload), Ok((_, m)) if matches!(m.body, Body::Versions { .. }));
                if state.channels.contains(channel) && !(state.probes_pass && probe()) {
                    state.held.push((channel.to_owned(), payload));
                    return Ok(());
                }
                if state.lose_probe.contains(channel) && probe() {
                    state.lose_probe.remove(channel);
                    return Ok(());
                }
            }
            self.inner.publish(channel, payload).await
        })
    }

    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Subscription, BrokerError>> {
        self.inner.subscribe(channel)
    }

    fn channels<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        self.inner.channels(prefix)
    }
}

/// Three servers, and a client that reaches them through a [`Pausing`]
/// broker with a reply timeout of `timeout_secs`, once it sees all three.
/// The tests wait it out where servers are paused, and in it the servers
/// not paused must answer, on a machine that may be busy: a few seconds.
async fn three_servers_behind_a_pausing_broker(
    kind: Kind,
    timeout_secs: u64,
) -> Result<(Net, Arc<Pausing>, Client), Box<dyn std::error::Error + Send + Sync>> {
    let net = Net::new(kind, 3).await?;
    let broker = Arc::new(Pausing::new(net.broker.clone()));
    let client = Client::new(
        broker.clone(),
        ClientOptions {
            timeout: Duration::from_secs(timeout_secs),
            kdf: Kdf::INSECURE_FAST,
            threshold: None,
            min_acks: None,
        },
    )
    .await?;
    net.wait_servers(&client, 3).await?;
    Ok((net, broker, client))
}

/// The sender and message of a single-frame message.
fn message_of(frame: &[u8]) -> Result<(String, Message), String> {
    match FrameRef::decode(frame) {
        Ok(FrameRef::Data(d)) if d.count == 1 => Message::decode(d.payload)
            .map(|m| (d.sender.to_owned(), m))
            .map_err(|e| format!("undecodable message: {e}")),
        other => Err(format!("not a single-frame message: {other:?}")),
    }
}

/// Servers online that do not answer (paused, overloaded) are not servers
/// that hold nothing: a listing, the servers' status and a load each fail
/// saying that none answered, where they said "nothing" or "no server
/// holds it" before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_do_not_answer_are_not_servers_that_hold_nothing() -> TestResult {
    let (net, broker, client) = three_servers_behind_a_pausing_broker(Kind::Memory, 3).await?;
    client.save("kept", b"held by all three", &pw()).await?;
    for i in 0..3 {
        broker.pause(net.channel(i));
    }
    let said = |r: Result<String, Error>| match r {
        Err(e @ Error::NoAnswer { asked: 3, .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("none of the 3 share servers online answered"),
                "{text}"
            );
            Ok(())
        }
        other => Err(format!("expected NoAnswer, got {other:?}")),
    };
    said(client.list("").await.map(|l| format!("{l:?}")))?;
    said(client.server_status().await.map(|s| format!("{s:?}")))?;
    said(
        client
            .load("kept", None, &pw())
            .await
            .map(|r| format!("{:?}", r.version)),
    )?;
    broker.unpause();
    let loaded = client.load("kept", None, &pw()).await?;
    assert_eq!(loaded.data, b"held by all three");
    // A prefix that no server could decode is refused before it is sent,
    // not said as servers that do not answer.
    let long = "p".repeat(seccs_net::message::MAX_TAG_LEN + 1);
    match client.list(&long).await {
        Err(e @ Error::InvalidTag(_)) => {
            assert!(e.to_string().contains("longer than 8 KiB"), "{e}")
        }
        other => return Err(format!("expected InvalidTag, got {other:?}").into()),
    }
    Ok(())
}

/// A save to 3 servers of which `paused` are paused fails and is rolled
/// back; the paused servers then run again and get the save's requests
/// (in the order sent, or reversed: the rollback before the store). Once
/// each has answered all of them, no server holds the save. When all are
/// paused, they are paused after answering the save's probe: a save whose
/// probe none answers fails before it stores anything (see
/// `a_save_whose_probe_no_server_answered_fails_and_stores_nothing` in
/// versions.rs).
async fn a_save_rolled_back_never_becomes_a_version(
    kind: Kind,
    paused: usize,
    reverse: bool,
) -> TestResult {
    let (net, broker, client) = three_servers_behind_a_pausing_broker(kind, 4).await?;
    for i in 0..paused {
        if paused == 3 {
            broker.pause_after_probe(net.channel(i));
        } else {
            broker.pause(net.channel(i));
        }
    }
    match client.save("q2", b"a save that failed", &pw()).await {
        Err(e @ Error::SaveIncomplete { .. }) => {
            assert!(e.to_string().contains("the save was rolled back"), "{e}");
        }
        other => return Err(format!("expected SaveIncomplete, got {other:?}").into()),
    }

    // The requests the paused servers missed, each awaiting an answer.
    let mut held = broker.unpause();
    let mut pending = HashSet::<(String, RequestId)>::new();
    let mut client_channel = String::new();
    for (to, frame) in &held {
        let (from, message) = message_of(frame)?;
        client_channel = from;
        pending.insert((to.clone(), message.request_id));
    }
    if reverse {
        held.reverse();
    }
    // The answers go to the client's channel; a second subscriber sees them.
    let mut answers = net.broker.subscribe(&client_channel).await?;
    for (to, frame) in held {
        net.broker.publish(&to, frame).await?;
    }
    for _ in 0..1000 {
        if pending.is_empty() {
            break;
        }
        let frame = tokio::time::timeout(Duration::from_secs(30), answers.recv())
            .await
            .map_err(|_| {
                format!(
                    "no answer to {} requests of the paused servers",
                    pending.len()
                )
            })?
            .ok_or("subscription ended")?;
        if let Ok((from, message)) = message_of(&frame) {
            pending.remove(&(from, message.request_id));
        }
    }
    assert!(pending.is_empty(), "{} requests unanswered", pending.len());

    // Every server has handled every request of the save: none holds it.
    for i in 0..3 {
        let records = RecordStore::open(&net.root(i))?.list("")?;
        assert!(
            records.is_empty(),
            "server {i} (paused: {}) kept the rolled-back save: {records:?}",
            i < paused
        );
    }
    assert!(client.list("q2").await?.is_empty());
    assert!(matches!(
        client.load("q2", None, &pw()).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        client.load("q2", Some(1), &pw()).await,
        Err(Error::NotFound(_))
    ));
    // The tag is free: the next save is its version 1.
    let saved = client.save("q2", b"a save that worked", &pw()).await?;
    assert_eq!((saved.version, saved.stored_on), (1, 3));
    let loaded = client.load("q2", None, &pw()).await?;
    assert_eq!(loaded.data, b"a save that worked");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_two_of_three_paused_get_the_store_then_the_rollback() -> TestResult {
    a_save_rolled_back_never_becomes_a_version(Kind::Memory, 2, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_all_paused_get_the_rollback_then_the_store() -> TestResult {
    a_save_rolled_back_never_becomes_a_version(Kind::Memory, 3, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_of_three_paused_get_the_rollback_then_the_store() -> TestResult {
    a_save_rolled_back_never_becomes_a_version(Kind::Redis, 2, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_all_paused_get_the_store_then_the_rollback() -> TestResult {
    a_save_rolled_back_never_becomes_a_version(Kind::Redis, 3, false).await
}

/// A server whose answer to a save's probe is lost (a dropped message, a
/// server slow for a moment) is unknown, not a server that refuses: with a
/// server claiming the tag far up (a faulty or forged one), the save is
/// not pushed above that claim when the other servers answer its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_missed_the_probe_does_not_count_as_refusing() -> TestResult {
    let (net, broker, client) = three_servers_behind_a_pausing_broker(Kind::Memory, 4).await?;
    let (liar, task) =
        common::lying_server(net.broker.clone(), &"5f".repeat(16), 64, 5000, Vec::new()).await?;
    net.wait_servers(&client, 4).await?;
    broker.lose_probe(net.channel(2));
    let saved = client.save("doc", b"kept low", &pw()).await?;
    assert!(broker.probes_lost(), "the probe was not lost");
    assert_eq!((saved.version, saved.stored_on), (1, 3));
    assert!(
        saved
            .warnings
            .iter()
            .any(|w| w.contains(&format!("{liar} reports doc up to version 5000"))),
        "{:?}",
        saved.warnings
    );
    let loaded = client.load("doc", None, &pw()).await?;
    assert_eq!((loaded.version, &loaded.data[..]), (1, &b"kept low"[..]));
    task.abort();
    Ok(())
}
