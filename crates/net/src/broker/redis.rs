//! Redis pub/sub: the broker of real deployments.
//!
//! Publishing goes through a `ConnectionManager`, which reconnects by itself;
//! a publish refused during a broker restart (so surely not sent) is retried
//! a few times with a short backoff, and one that may have reached the broker
//! (a timeout, a dropped connection) is not, so that it is delivered at most
//! once. A command waits up to [`RESPONSE_TIMEOUT`] for its answer: the
//! client's default, 500 ms, also counts the queueing behind other commands
//! and the upload of a frame of up to 256 KiB, which a slow link exceeds. Each subscription has its own connection, driven by a task
//! that pings every [`HEARTBEAT`] and subscribes again after any failure.

use std::time::Duration;

use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

use super::{BoxFuture, Broker, BrokerError, SUBSCRIPTION_BUFFER, Subscription, check_channel};

/// How often a subscription pings the broker.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PUBLISH_ATTEMPTS: u32 = 6;
/// How long a command waits for the broker's answer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a subscription keeps reconnecting before it gives up.
pub const DEFAULT_OUTAGE_LIMIT: Duration = Duration::from_secs(600);

/// A Redis pub/sub broker.
#[derive(Clone)]
pub struct RedisBroker {
    client: redis::Client,
    conn: ConnectionManager,
    outage_limit: Duration,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker").finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Connects to `url` (`redis://HOST:PORT[/DB]`).
    pub async fn connect(url: &str) -> Result<Self, BrokerError> {
        let client = redis::Client::open(url)?;
        let failed = |reason: String| BrokerError::Connect {
            url: redact(url),
            reason,
        };
        let timed_out = || failed(format!("timed out after {CONNECT_TIMEOUT:?}"));
        // One plain connection first: its error says why (connection
        // refused, unknown host, authentication), where the connection
        // manager would keep retrying until the timeout.
        // With the same answer timeout as the manager's: the client's
        // default (500 ms) would refuse a link that slow before it is used.
        let probe = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        timeout(
            CONNECT_TIMEOUT,
            client.get_multiplexed_async_connection_with_config(&probe),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| failed(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = timeout(
            CONNECT_TIMEOUT,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| failed(e.to_string()))?;
        Ok(Self {
            client,
            conn,
            outage_limit: DEFAULT_OUTAGE_LIMIT,
        })
    }

    /// Sets how long subscriptions keep reconnecting during an outage.
    pub fn with_outage_limit(mut self, limit: Duration) -> Self {
        self.outage_limit = limit;
        self
    }
}

async fn subscribe_once(
    client: &redis::Client,
    channel: &str,
) -> Result<(PubSubSink, PubSubStream), BrokerError> {
    let fut = async {
        let mut ps = client.get_async_pubsub().await?;
        ps.subscribe(channel).await?;
        Ok::<_, BrokerError>(ps.split())
    };
    timeout(CONNECT_TIMEOUT, fut)
        .await
        .map_err(|_| BrokerError::Closed)?
}

async fn pump(
    client: redis::Client,
    channel: String,
    tx: mpsc::Sender<Vec<u8>>,
    first: (PubSubSink, PubSubStream),
    outage_limit: Duration,
) {
    let mut conn = Some(first);
    loop {
        if let Some((mut sink, mut stream)) = conn.take() {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.tick().await;
            loop {
                tokio::select! {
                    msg = stream.next() => match msg {
                        Some(m) => {
                            if tx.send(m.get_payload_bytes().to_vec()).await.is_err() {
                                return;
                            }
                        }
                        None => break,
                    },
                    _ = tick.tick() => {
                        match timeout(HEARTBEAT, sink.ping::<redis::Value>()).await {
                            Ok(Ok(_)) => {}
                            _ => break,
                        }
                    }
                    () = tx.closed() => return,
                }
            }
            tracing::warn!(channel, "redis subscription lost; reconnecting");
        }
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            if tx.is_closed() {
                return;
            }
            if started.elapsed() > outage_limit {
                tracing::error!(channel, "redis unreachable for {outage_limit:?}; giving up");
                return;
            }
            sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            match subscribe_once(&client, &channel).await {
                Ok(c) => {
                    tracing::info!(channel, "redis subscription restored");
                    conn = Some(c);
                    break;
                }
                Err(e) => tracing::debug!(channel, "redis reconnect failed: {e}"),
            }
        }
    }
}

/// `url` without its password, whatever the password holds (a `/`, `#`
/// or `@` in it included).
pub(crate) fn redact(url: &str) -> String {
    seccs_core::redact::url_password(url)
}

fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

impl Broker for RedisBroker {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move { self.publish_counted(channel, payload).await.map(drop) })
    }

    fn publish_counted<'a>(
        &'a self,
        channel: &'a str,
        payload: Vec<u8>,
    ) -> BoxFuture<'a, Result<Option<u64>, BrokerError>> {
        Box::pin(async move {
            let mut delay = Duration::from_millis(50);
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut conn = self.conn.clone();
                // PUBLISH answers how many subscribers received the message.
                let res: Result<i64, _> = redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(&payload[..])
                    .query_async(&mut conn)
                    .await;
                match res {
                    Ok(n) => return Ok(Some(u64::try_from(n).unwrap_or(0))),
                    // Only a refused connection says the command was never
                    // sent; after any other error it may have run.
                    Err(e) if attempt >= PUBLISH_ATTEMPTS || !e.is_connection_refusal() => {
                        return Err(e.into());
                    }
                    Err(e) => {
                        tracing::debug!("redis publish failed ({e}); retrying");
                        sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(1));
                    }
                }
            }
        })
    }

    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Subscription, BrokerError>> {
        Box::pin(async move {
            check_channel(channel)?;
            let first = subscribe_once(&self.client, channel).await?;
            let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
            let task = tokio::spawn(pump(
                self.client.clone(),
                channel.to_owned(),
                tx,
                first,
                self.outage_limit,
            ));
            Ok(Subscription::new(rx, Some(task)))
        })
    }

    fn channels<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        Box::pin(async move {
            let mut delay = Duration::from_millis(50);
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut conn = self.conn.clone();
                let res: Result<Vec<String>, _> = redis::cmd("PUBSUB")
                    .arg("CHANNELS")
                    .arg(glob_escape(prefix))
                    .query_async(&mut conn)
                    .await;
                match res {
                    Ok(mut v) => {
                        v.sort();
                        return Ok(v);
                    }
                    Err(e) if attempt >= PUBLISH_ATTEMPTS => return Err(e.into()),
                    Err(_) => {
                        sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(1));
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_characters_in_a_prefix_are_escaped() {
        assert_eq!(super::glob_escape("a*b?[c]"), "a\\*b\\?\\[c\\]*");
    }

    #[test]
    fn passwords_in_a_url_are_not_shown() {
        assert_eq!(
            super::redact("redis://:secret@127.0.0.1:6379/0"),
            "redis://@127.0.0.1:6379/0"
        );
        assert_eq!(
            super::redact("redis://u:se/cr#et@127.0.0.1:6379/0"),
            "redis://u@127.0.0.1:6379/0"
        );
        assert_eq!(super::redact("redis://127.0.0.1:1"), "redis://127.0.0.1:1");
    }
}
