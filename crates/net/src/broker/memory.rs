//! The in-process broker: channels are bounded tokio queues.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use super::{BoxFuture, Broker, BrokerError, SUBSCRIPTION_BUFFER, Subscription, check_channel};

type Channels = HashMap<String, Vec<mpsc::Sender<Vec<u8>>>>;

/// A broker inside one process, for single-machine use and protocol tests.
///
/// Like Redis, it drops a message for a subscriber whose queue is full rather
/// than blocking the publisher.
#[derive(Debug, Default, Clone)]
pub struct MemoryBroker {
    channels: Arc<Mutex<Channels>>,
}

impl MemoryBroker {
    /// A new, empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The broker that the URL `memory` names: one per process.
    pub fn global() -> Arc<dyn Broker> {
        static GLOBAL: OnceLock<Arc<MemoryBroker>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(MemoryBroker::new())).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        // A panic while holding this lock leaves the map consistent (every
        // operation is a single insert or retain), so poisoning is ignored.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Broker for MemoryBroker {
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
            let mut map = self.lock();
            let mut receivers = 0;
            if let Some(subs) = map.get_mut(channel) {
                subs.retain(|tx| !tx.is_closed());
                receivers = subs.len() as u64;
                // The last subscriber (usually the only one) takes the payload
                // itself; the others get copies.
                if let Some((last, others)) = subs.split_last() {
                    for tx in others {
                        deliver(channel, tx, payload.clone());
                    }
                    deliver(channel, last, payload);
                }
                if subs.is_empty() {
                    map.remove(channel);
                }
            }
            // Like Redis, a subscriber whose queue was full counts: it was
            // there, and acknowledges what it reads.
            Ok(Some(receivers))
        })
    }

    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Subscription, BrokerError>> {
        Box::pin(async move {
            check_channel(channel)?;
            let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER * 4);
            self.lock().entry(channel.to_owned()).or_default().push(tx);
            Ok(Subscription::new(rx, None))
        })
    }

    fn channels<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        Box::pin(async move {
            let mut map = self.lock();
            map.retain(|_, subs| {
                subs.retain(|tx| !tx.is_closed());
                !subs.is_empty()
            });
            let mut out: Vec<String> = map
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect();
            out.sort();
            Ok(out)
        })
    }
}

fn deliver(channel: &str, tx: &mpsc::Sender<Vec<u8>>, payload: Vec<u8>) {
    if tx.try_send(payload).is_err() {
        tracing::warn!(
            channel,
            "memory broker: subscriber queue full, message dropped"
        );
    }
}
