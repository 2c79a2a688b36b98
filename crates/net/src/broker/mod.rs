//! Brokers: how hosts reach each other without opening a port.
//!
//! A [`Broker`] publishes bytes to a channel, subscribes to a channel, and
//! lists the channels that have a subscriber, by prefix (presence: a server is
//! online while its channel has a subscriber). One implementation per file:
//! [`RedisBroker`] (pub/sub, the real deployment), [`NatsBroker`] (a second
//! real broker that can be clustered), and [`MemoryBroker`] (one process).
//!
//! Seed flaw fixed here: *heartbeats and reconnection are broken*. The seed's
//! heartbeat thread replaced the Redis connection pool but never subscribed
//! again, so a server went deaf after a broker restart. Here a subscription is
//! a task that pings the broker, and on any failure reconnects with backoff and
//! subscribes again, for as long as its [`Subscription`] is alive (bounded by
//! an outage limit, after which the subscription ends and the server stops
//! with an error instead of hanging).

mod memory;
mod nats;
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

pub use self::memory::MemoryBroker;
pub use self::nats::NatsBroker;
pub use self::redis::RedisBroker;
pub use crate::error::BrokerError;

/// A boxed future, so that [`Broker`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Messages a subscription buffers before the broker side waits.
pub(crate) const SUBSCRIPTION_BUFFER: usize = 1024;

/// Publish/subscribe with presence.
pub trait Broker: Send + Sync {
    /// Publishes `payload` to `channel`. Delivery is at most once: a publish
    /// that may have reached the broker is never sent again, so an error
    /// does not say that the payload was not delivered.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// [`Broker::publish`], saying how many subscribers of `channel` the
    /// broker handed the payload to, or `None` when it cannot tell.
    ///
    /// `Some(0)` says that nobody reads the channel: a sender that would
    /// wait for acknowledgements gives up at once instead (a forged sender
    /// channel would otherwise hold the sender for its whole timeout).
    /// Redis's `PUBLISH` and the in-process broker tell, and NATS tells
    /// "nobody" through a request's "no responders"; this default, which
    /// cannot tell, is for a broker that wraps another's publish.
    fn publish_counted<'a>(
        &'a self,
        channel: &'a str,
        payload: Vec<u8>,
    ) -> BoxFuture<'a, Result<Option<u64>, BrokerError>> {
        Box::pin(async move { self.publish(channel, payload).await.map(|()| None) })
    }

    /// Subscribes to `channel`; the subscription is live when this returns and
    /// ends when the [`Subscription`] is dropped.
    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Subscription, BrokerError>>;

    /// The channels starting with `prefix` that have at least one subscriber.
    fn channels<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>>;
}

/// The receiving end of a subscription.
pub struct Subscription {
    rx: mpsc::Receiver<Vec<u8>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(
        rx: mpsc::Receiver<Vec<u8>>,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        Self { rx, task }
    }

    /// The next payload, or `None` once the subscription has ended for good.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Connects to the broker named by `url`: `redis://HOST:PORT[/DB]`,
/// `nats://HOST:PORT`, or `memory` (one broker shared by the whole process).
pub async fn connect(url: &str) -> Result<Arc<dyn Broker>, BrokerError> {
    if url == "memory" {
        Ok(MemoryBroker::global())
    } else if url.starts_with("redis://") || url.starts_with("redis+unix://") {
        Ok(Arc::new(RedisBroker::connect(url).await?))
    } else if url.starts_with("nats://") {
        Ok(Arc::new(NatsBroker::connect(url).await?))
    } else {
        Err(BrokerError::UnsupportedUrl(
            seccs_core::redact::url_password(url),
        ))
    }
}

pub(crate) fn check_channel(name: &str) -> Result<(), BrokerError> {
    if crate::packet::valid_channel(name) {
        Ok(())
    } else {
        Err(BrokerError::InvalidChannel)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn an_unsupported_url_is_shown_without_its_password() {
        for url in [
            "rediss://:hunter2@host:6380",
            "tls://user:hunter2@host:4222",
            "reddis://:hunter2@127.0.0.1:6379/0",
        ] {
            let Err(e) = super::connect(url).await else {
                panic!("{url} was accepted");
            };
            let shown = e.to_string();
            assert!(shown.contains("unsupported broker URL"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        }
    }
}
