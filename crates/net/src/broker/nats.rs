//! NATS: a second real broker, which can run as a cluster so that the broker
//! stops being a single point of failure.
//!
//! The NATS client reconnects and subscribes again by itself, for ever: so
//! each wait for the broker here is bounded ([`BROKER_TIMEOUT`]), and a
//! subscription ends once the connection has been down for longer than the
//! outage limit (as a Redis one does), so that a server stops with an error
//! instead of hanging. NATS has no
//! command that lists subjects with subscribers, so presence is a protocol:
//! every subscription made here also answers requests on [`PRESENCE_SUBJECT`]
//! with its channel name when the channel starts with the requested prefix,
//! and [`Broker::channels`] collects the answers for a short, bounded time.

use std::time::Duration;

use async_nats::client::RequestErrorKind;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

use super::{BoxFuture, Broker, BrokerError, SUBSCRIPTION_BUFFER, Subscription, check_channel};

/// The subject on which presence requests travel.
pub const PRESENCE_SUBJECT: &str = "_SECCS_PRESENCE";
/// How long a presence request waits for the next answer before it stops.
const PRESENCE_QUIET: Duration = Duration::from_millis(150);
/// How long a presence request waits at most.
const PRESENCE_MAX: Duration = Duration::from_secs(2);

/// How long a publish that asks whether anyone reads its channel waits
/// for NATS to say that nobody does ([`Broker::publish_counted`]); it says
/// so within a round trip.
const NO_RESPONDERS_WAIT: Duration = Duration::from_millis(200);
/// How long a request to the broker (a subscription, a flush, a publish
/// queued while the connection is down) may wait.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a subscription checks that its connection is up.
const STATE_CHECK: Duration = Duration::from_secs(1);

/// A NATS broker.
#[derive(Clone)]
pub struct NatsBroker {
    client: async_nats::Client,
    outage_limit: Duration,
}

impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker").finish_non_exhaustive()
    }
}

/// How long a first connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a first connection failed, in a person's words: the client's own
/// text for a refused connection is "IO error: Connection refused".
fn connect_reason(e: &async_nats::ConnectError) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    for _ in 0..8 {
        let Some(s) = source else { break };
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text.strip_prefix("IO error: ")
        .map(str::to_owned)
        .unwrap_or(text)
}

fn nats_err(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Nats(e.to_string())
}

impl NatsBroker {
    /// Connects to `url` (`nats://HOST:PORT`).
    /// A broker that cannot be reached fails with [`BrokerError::Connect`],
    /// naming the URL (without credentials) and why.
    pub async fn connect(url: &str) -> Result<Self, BrokerError> {
        let failed = |reason: String| BrokerError::Connect {
            url: super::redis::redact(url),
            reason,
        };
        let client = timeout(CONNECT_TIMEOUT, async_nats::connect(url))
            .await
            .map_err(|_| failed(format!("timed out after {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| failed(connect_reason(&e)))?;
        Ok(Self {
            client,
            outage_limit: super::redis::DEFAULT_OUTAGE_LIMIT,
        })
    }

    /// Sets how long the connection may be down before subscriptions end.
    pub fn with_outage_limit(mut self, limit: Duration) -> Self {
        self.outage_limit = limit;
        self
    }
}

/// `fut`, or an error once it has waited [`BROKER_TIMEOUT`] for the broker.
async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    timeout(BROKER_TIMEOUT, fut).await.map_err(|_| {
        BrokerError::Nats(format!(
            "no answer from the broker within {BROKER_TIMEOUT:?}"
        ))
    })?
}

impl Broker for NatsBroker {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            check_channel(channel)?;
            bounded(async {
                self.client
                    .publish(channel.to_owned(), payload.into())
                    .await
                    .map_err(nats_err)
            })
            .await
        })
    }

    /// Publishes as a NATS request: when nobody subscribes to `channel`,
    /// the server answers at once with "no responders" (`Some(0)`). A
    /// seccs subscriber never answers, so a channel that is read costs a
    /// wait of 0.2 s (`NO_RESPONDERS_WAIT`) and is `None` (the broker does not
    /// say how many read it); so is a verdict slower than that.
    fn publish_counted<'a>(
        &'a self,
        channel: &'a str,
        payload: Vec<u8>,
    ) -> BoxFuture<'a, Result<Option<u64>, BrokerError>> {
        Box::pin(async move {
            check_channel(channel)?;
            // An inbox of its own, unsubscribed when the request ends: the
            // client's shared inbox keeps a request that is never answered
            // registered for good.
            let request = async_nats::Request::new()
                .payload(payload.into())
                .inbox(self.client.new_inbox())
                .timeout(Some(NO_RESPONDERS_WAIT));
            bounded(async {
                match self.client.send_request(channel.to_owned(), request).await {
                    Ok(_) => Ok(None),
                    Err(e) => match e.kind() {
                        RequestErrorKind::NoResponders => Ok(Some(0)),
                        RequestErrorKind::TimedOut => Ok(None),
                        _ => Err(nats_err(e)),
                    },
                }
            })
            .await
        })
    }

    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Subscription, BrokerError>> {
        Box::pin(async move {
            check_channel(channel)?;
            let (mut sub, mut presence) = bounded(async {
                let sub = self
                    .client
                    .subscribe(channel.to_owned())
                    .await
                    .map_err(nats_err)?;
                let presence = self
                    .client
                    .subscribe(PRESENCE_SUBJECT)
                    .await
                    .map_err(nats_err)?;
                self.client.flush().await.map_err(nats_err)?;
                Ok((sub, presence))
            })
            .await?;
            let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
            let client = self.client.clone();
            let name = channel.to_owned();
            let outage_limit = self.outage_limit;
            let task = tokio::spawn(async move {
                let mut check = tokio::time::interval(STATE_CHECK);
                let mut down_since: Option<Instant> = None;
                loop {
                    tokio::select! {
                        _ = check.tick() => {
                            if client.connection_state() == async_nats::connection::State::Connected {
                                down_since = None;
                            } else if down_since.get_or_insert_with(Instant::now).elapsed() > outage_limit {
                                tracing::error!(channel = name, "nats unreachable for {outage_limit:?}; giving up");
                                return;
                            }
                        }
                        msg = sub.next() => match msg {
                            Some(m) => {
                                if tx.send(m.payload.to_vec()).await.is_err() {
                                    return;
                                }
                            }
                            None => return,
                        },
                        ask = presence.next() => match ask {
                            Some(m) => {
                                let wanted = String::from_utf8_lossy(&m.payload);
                                if let Some(reply) = m.reply
                                    && name.starts_with(wanted.as_ref())
                                    && let Err(e) = bounded(async {
                                        client.publish(reply, name.clone().into_bytes().into()).await.map_err(nats_err)
                                    }).await
                                {
                                    tracing::debug!("nats presence answer failed: {e}");
                                }
                            }
                            None => return,
                        },
                        () = tx.closed() => return,
                    }
                }
            });
            Ok(Subscription::new(rx, Some(task)))
        })
    }

    fn channels<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        Box::pin(async move {
            let inbox = self.client.new_inbox();
            let mut answers = bounded(async {
                let answers = self
                    .client
                    .subscribe(inbox.clone())
                    .await
                    .map_err(nats_err)?;
                self.client
                    .publish_with_reply(
                        PRESENCE_SUBJECT,
                        inbox,
                        prefix.to_owned().into_bytes().into(),
                    )
                    .await
                    .map_err(nats_err)?;
                self.client.flush().await.map_err(nats_err)?;
                Ok(answers)
            })
            .await?;
            let deadline = Instant::now() + PRESENCE_MAX;
            let mut out = Vec::new();
            while Instant::now() < deadline {
                match timeout(PRESENCE_QUIET, answers.next()).await {
                    Ok(Some(m)) => {
                        if let Ok(name) = std::str::from_utf8(&m.payload)
                            && name.starts_with(prefix)
                            && crate::packet::valid_channel(name)
                        {
                            out.push(name.to_owned());
                        }
                    }
                    _ => break,
                }
            }
            out.sort();
            out.dedup();
            Ok(out)
        })
    }
}
