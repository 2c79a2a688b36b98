//! Endpoints: one host's channel, with framing, acknowledgements and routing.
//!
//! An endpoint subscribes to its own channel and runs one receive task, which
//! decodes [`Frame`]s, reassembles multi-frame messages (bounded in number,
//! size and age), acknowledges data frames, routes acknowledgements to the
//! sending task, routes replies to the request that awaits them (by request
//! id) and hands requests to the server. Anything malformed, oversized or
//! unexpected is logged and dropped; nothing a peer sends can stop the task.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

use crate::broker::{Broker, Subscription};
use crate::error::{DecodeError, Error};
use crate::message::{Message, RequestId};
use crate::packet::{
    AckFrame, DataFrameRef, DroppedFrame, Frame, FrameRef, MAX_FRAME_PAYLOAD, MAX_FRAMES,
    MessageId, WINDOW, encode_data_parts,
};
use crate::tail::{Tail, message_range};

/// Partially received messages an endpoint keeps at once. A frame that
/// opens one more takes the slot of the one that has received the fewest
/// bytes ([`Receiver::least_received`]) instead of being dropped: a sender
/// names itself in its frames, so a cap per sender cannot keep one broker
/// client (which names as many senders as it likes) from filling every
/// slot with messages it never completes. Such a flood costs a message in
/// progress its slot only when every other slot holds more bytes than it,
/// so the flood must send more bytes than the honest messages it pushes
/// out; it can still slow them down, as any client of the broker can. A
/// frame that is dropped (a short inner frame, one over the byte budget)
/// takes no slot, and only a message's first frame (a full one, unless the
/// message has one frame) takes another's: a later frame of a message
/// pushed out would take a slot it never completes in.
const MAX_PARTIALS: usize = 64;
/// Partially received messages an endpoint keeps at once from one sender
/// channel, so that one sender that names itself truly cannot take every
/// slot; one that does not is held by [`MAX_PARTIALS`]'s eviction.
const MAX_PARTIALS_PER_SENDER: usize = 8;
/// The largest message's payload bytes.
const MAX_MESSAGE_BYTES: usize = MAX_FRAMES as usize * MAX_FRAME_PAYLOAD;
/// Payload bytes an endpoint holds at once in partial messages and in
/// received messages not yet handled (two messages of the largest size),
/// beyond those it awaits as replies ([`Endpoint::expect_replies`]); a
/// frame beyond it pushes out messages that have received fewer bytes than
/// its own ([`Receiver::make_room`]) or is dropped unacknowledged, a
/// single-frame message beyond it is dropped.
const MAX_HELD_BYTES: usize = 2 * MAX_MESSAGE_BYTES;
/// A warning of one kind is logged at most once per this interval; the
/// next one says how many were suppressed.
const WARN_INTERVAL: Duration = Duration::from_secs(1);
/// A partial message with no new frame for this long is dropped.
const PARTIAL_TTL: Duration = Duration::from_secs(60);
/// Retransmissions of unacknowledged frames before a send fails.
const MAX_RETRANSMITS: u32 = 3;
/// Times a send starts again from its first frame because the receiver
/// dropped what it held of the message, before the send fails.
const MAX_RESTARTS: u32 = 3;
const QUEUE: usize = 1024;

/// A decoded message and the channel it came from.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub from: String,
    pub message: Message,
    /// The message's bytes in the endpoint's budget, released on drop: keep
    /// it until the message is handled.
    pub held: Held,
}

/// Bytes of a received message counted in its endpoint's budget until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    bytes: usize,
    queued: Arc<AtomicUsize>,
}

impl Held {
    /// Counts `bytes` in `queued`.
    fn new(bytes: usize, queued: &Arc<AtomicUsize>) -> Self {
        queued.fetch_add(bytes, Ordering::Relaxed);
        Self {
            bytes,
            queued: queued.clone(),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Per-kind rate limit of warnings caused by what peers send.
#[derive(Default)]
struct Warnings {
    last: HashMap<&'static str, (Instant, u64)>,
}

impl Warnings {
    /// Whether a warning of `kind` at `now` is logged, and if so how many of
    /// its kind were suppressed since the last one logged.
    fn allow(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(kind) {
            Some((last, suppressed)) if now.saturating_duration_since(*last) < WARN_INTERVAL => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                self.last.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

/// Logs a warning caused by a peer, at most once per [`WARN_INTERVAL`] per
/// kind (the message literal), with the count of those suppressed.
macro_rules! peer_warn {
    ($rx:expr, $($field:ident = $value:expr,)* $msg:literal) => {
        if let Some(suppressed) = $rx.warnings.allow($msg, Instant::now()) {
            tracing::warn!(channel = $rx.channel, $($field = $value,)* suppressed, $msg);
        }
    };
}

type Routes<K, V> = Arc<Mutex<HashMap<K, V>>>;

fn lock<K, V>(m: &Mutex<HashMap<K, V>>) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
    // Every critical section is a single map operation: a poisoned map is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called with the number of payload bytes newly acknowledged.
pub(crate) type Progress<'a> = Option<&'a (dyn Fn(u64) + Send + Sync)>;

/// One host's view of the broker.
pub(crate) struct Endpoint {
    broker: Arc<dyn Broker>,
    channel: String,
    acks: Routes<MessageId, mpsc::UnboundedSender<Receipt>>,
    replies: Routes<RequestId, mpsc::Sender<Incoming>>,
    /// Payload bytes set aside for the replies awaited now, one message of
    /// the largest size each, on top of [`MAX_HELD_BYTES`].
    awaited: Arc<AtomicUsize>,
    ack_timeout: Duration,
    closing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Stop>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

/// Why a receive task stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// Its endpoint is shutting down.
    Closing,
    /// The subscription ended while the endpoint was in use.
    Lost,
}

/// Replies to one request; unregistered, and the room set aside for them
/// given back, on drop.
pub(crate) struct Replies {
    rx: mpsc::Receiver<Incoming>,
    id: RequestId,
    routes: Routes<RequestId, mpsc::Sender<Incoming>>,
    awaited: Arc<AtomicUsize>,
}

impl Replies {
    pub(crate) async fn recv(&mut self) -> Option<Incoming> {
        self.rx.recv().await
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        lock(&self.routes).remove(&self.id);
        self.awaited.fetch_sub(MAX_MESSAGE_BYTES, Ordering::Relaxed);
    }
}

/// What a receiver says of a message being sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receipt {
    /// It holds data frame `.0`.
    Acked(u32),
    /// It let go of what it held of the message (its slot went to another
    /// message): every frame must be sent again.
    Dropped,
}

struct AckGuard<'a> {
    id: MessageId,
    routes: &'a Routes<MessageId, mpsc::UnboundedSender<Receipt>>,
}

impl Drop for AckGuard<'_> {
    fn drop(&mut self) {
        lock(self.routes).remove(&self.id);
    }
}

/// A message being reassembled. Frames received in order are appended to
/// `bytes` as they arrive, so the message is copied once on receipt; a frame
/// ahead of a gap waits in `ahead` until the gap is filled. Memory grows only
/// with the bytes received, never with the count a sender claims.
struct Partial {
    count: u32,
    bytes: Vec<u8>,
    /// Frames `0..in_order` are in `bytes`.
    in_order: u32,
    ahead: BTreeMap<u32, Vec<u8>>,
    have: Vec<bool>,
    received: u32,
    /// Payload bytes received so far.
    held: usize,
    last: Instant,
}

impl Partial {
    fn new(count: u32) -> Self {
        Self {
            count,
            bytes: Vec::new(),
            in_order: 0,
            ahead: BTreeMap::new(),
            have: vec![false; count as usize],
            received: 0,
            held: 0,
            last: Instant::now(),
        }
    }

    fn place(&mut self, index: u32, payload: &[u8]) {
        self.held += payload.len();
        if index != self.in_order {
            self.ahead.insert(index, payload.to_vec());
            return;
        }
        self.bytes.extend_from_slice(payload);
        self.in_order += 1;
        while let Some(next) = self.ahead.remove(&self.in_order) {
            self.bytes.extend_from_slice(&next);
            self.in_order += 1;
        }
    }
}

impl Endpoint {
    /// Subscribes to `channel`. When `requests` is given, incoming requests go
    /// there (a server); otherwise they are dropped (a client).
    pub(crate) async fn open(
        broker: Arc<dyn Broker>,
        channel: String,
        requests: Option<mpsc::Sender<Incoming>>,
        ack_timeout: Duration,
    ) -> Result<Self, Error> {
        let sub = broker.subscribe(&channel).await?;
        let acks: Routes<MessageId, _> = Arc::default();
        let replies: Routes<RequestId, _> = Arc::default();
        let awaited: Arc<AtomicUsize> = Arc::default();
        let closing = Arc::new(AtomicBool::new(false));
        let rx = Receiver {
            broker: broker.clone(),
            channel: channel.clone(),
            acks: acks.clone(),
            replies: replies.clone(),
            requests,
            partials: HashMap::new(),
            max_held: MAX_HELD_BYTES,
            awaited: awaited.clone(),
            queued: Arc::default(),
            closing: closing.clone(),
            warnings: Warnings::default(),
        };
        let task = tokio::spawn(rx.run(sub));
        Ok(Self {
            broker,
            channel,
            acks,
            replies,
            awaited,
            ack_timeout,
            closing,
            task,
        })
    }

    /// This endpoint's channel.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// How long a send waits for acknowledgements before it retransmits.
    pub(crate) fn ack_timeout(&self) -> Duration {
        self.ack_timeout
    }

    /// The broker.
    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// Routes replies to request `id` to the returned receiver, and sets
    /// aside room for one message of the largest size until it is dropped.
    ///
    /// A client asks several servers at once (a load asks t of them, a
    /// check every one), and their replies arrive interleaved over the
    /// broker: held in a budget of fixed size, replies larger than its share
    /// would each stop part way, none ever whole. With room for every reply
    /// awaited, what the endpoint may hold grows only with what its owner
    /// asked for, which it holds anyway once the replies are in.
    pub(crate) fn expect_replies(&self, id: RequestId) -> Replies {
        let (tx, rx) = mpsc::channel(16);
        lock(&self.replies).insert(id, tx);
        self.awaited.fetch_add(MAX_MESSAGE_BYTES, Ordering::Relaxed);
        Replies {
            rx,
            id,
            routes: self.replies.clone(),
            awaited: self.awaited.clone(),
        }
    }

    /// Sends `message` to `to`, in acknowledged frames when it is large.
    pub(crate) async fn send(
        &self,
        to: &str,
        message: &Message,
        progress: Progress<'_>,
    ) -> Result<(), Error> {
        let (head, record) = message.encode_parts();
        self.send_parts(to, &head, &record, progress).await
    }

    /// Sends the encoded message that is `head` then `tail` to `to`, in
    /// acknowledged frames when it is large, each framed from where its
    /// bytes lie (or from bytes the tail makes for it).
    pub(crate) async fn send_parts(
        &self,
        to: &str,
        head: &[u8],
        tail: &dyn Tail,
        progress: Progress<'_>,
    ) -> Result<(), Error> {
        let total = head.len() + tail.len();
        let count = total.div_ceil(MAX_FRAME_PAYLOAD).max(1);
        if count > MAX_FRAMES as usize {
            return Err(DecodeError::TooLong("message").into());
        }
        let mut id = [0u8; 16];
        seccs_core::random_bytes(&mut id)?;
        let message_id = MessageId(id);
        let frame = |i: usize| message_frame(message_id, &self.channel, (head, tail), i);
        if count == 1 {
            self.broker.publish(to, frame(0)?).await?;
            if let Some(p) = progress {
                p(total as u64);
            }
            return Ok(());
        }
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        lock(&self.acks).insert(message_id, ack_tx);
        let _guard = AckGuard {
            id: message_id,
            routes: &self.acks,
        };
        let mut acked = vec![false; count];
        // Frames counted in the progress once, whatever is sent again.
        let mut reported = vec![false; count];
        // Nobody reading `to` when the first frame goes out (a sender
        // channel named in a forged request) ends the send at once: waiting
        // for its acknowledgements would hold the sender, a server's request
        // slot among them, for timeouts. Only the first publish is asked:
        // a receiver whose subscription is lost for a moment later on (Redis
        // closes one that falls too far behind, and it subscribes again)
        // still gets the frames sent again.
        if self.broker.publish_counted(to, frame(0)?).await? == Some(0) {
            return Err(Error::NotListening(to.to_owned()));
        }
        let (mut n_acked, mut next, mut retransmits, mut restarts) = (0usize, 1usize, 0u32, 0u32);
        while n_acked < count {
            while next < count && next - n_acked < WINDOW {
                self.broker.publish(to, frame(next)?).await?;
                next += 1;
            }
            match timeout(self.ack_timeout, ack_rx.recv()).await {
                Ok(Some(Receipt::Acked(i))) => {
                    let i = i as usize;
                    if i < next && !acked[i] {
                        acked[i] = true;
                        n_acked += 1;
                        if let Some(p) = progress
                            && !std::mem::replace(&mut reported[i], true)
                        {
                            let len = (total - i * MAX_FRAME_PAYLOAD).min(MAX_FRAME_PAYLOAD);
                            p(len as u64);
                        }
                    }
                }
                Ok(Some(Receipt::Dropped)) => {
                    // The frames it acknowledged are gone with its slot:
                    // the message is sent again from its first frame, which
                    // is where the receiver lets a message take a slot.
                    restarts += 1;
                    if restarts > MAX_RESTARTS {
                        return Err(Error::Dropped {
                            server: to.to_owned(),
                            times: restarts,
                        });
                    }
                    tracing::debug!(to, "the receiver dropped the message; sending it again");
                    acked.fill(false);
                    (n_acked, next, retransmits) = (0, 0, 0);
                }
                Ok(None) => return Err(crate::error::BrokerError::Closed.into()),
                Err(_) => {
                    retransmits += 1;
                    if retransmits > MAX_RETRANSMITS {
                        return Err(Error::Timeout(format!("acknowledgements from {to}")));
                    }
                    tracing::debug!(to, "no ack in {:?}; retransmitting", self.ack_timeout);
                    for (i, done) in acked.iter().enumerate().take(next) {
                        if !done {
                            self.broker.publish(to, frame(i)?).await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Data frame `i` of the message that is `head` then `tail`, cut in frames
/// of [`MAX_FRAME_PAYLOAD`] bytes, its payload framed from where the bytes
/// lie (or from bytes the tail makes for it).
fn message_frame(
    message_id: MessageId,
    sender: &str,
    (head, tail): (&[u8], &dyn Tail),
    i: usize,
) -> Result<Vec<u8>, Error> {
    let total = head.len() + tail.len();
    let count = total.div_ceil(MAX_FRAME_PAYLOAD).max(1);
    let start = i * MAX_FRAME_PAYLOAD;
    let end = (start + MAX_FRAME_PAYLOAD).min(total);
    let (in_head, in_tail) = message_range(head, tail, start..end)?;
    Ok(encode_data_parts(
        message_id,
        sender,
        i as u32,
        count as u32,
        [in_head, &in_tail],
    ))
}

/// The receive task's state.
struct Receiver {
    broker: Arc<dyn Broker>,
    channel: String,
    acks: Routes<MessageId, mpsc::UnboundedSender<Receipt>>,
    replies: Routes<RequestId, mpsc::Sender<Incoming>>,
    requests: Option<mpsc::Sender<Incoming>>,
    partials: HashMap<(String, MessageId), Partial>,
    /// Payload bytes partial messages and messages not yet handled may hold
    /// together, beyond those set aside in `awaited`.
    max_held: usize,
    /// Payload bytes set aside for replies awaited ([`Endpoint::awaited`]).
    awaited: Arc<AtomicUsize>,
    /// Payload bytes of messages delivered and not yet handled.
    queued: Arc<AtomicUsize>,
    /// Set when the endpoint is dropped.
    closing: Arc<AtomicBool>,
    warnings: Warnings,
}

impl Receiver {
    /// Payload bytes held by partial messages and by messages not yet handled.
    fn held(&self) -> usize {
        let partial: usize = self.partials.values().map(|p| p.held).sum();
        partial.saturating_add(self.queued.load(Ordering::Relaxed))
    }

    /// Payload bytes that may be held now.
    fn limit(&self) -> usize {
        self.max_held
            .saturating_add(self.awaited.load(Ordering::Relaxed))
    }

    /// The partial message to drop when a new one needs its slot: the one
    /// that has received the fewest payload bytes, and of those the one
    /// that has waited longest for a new frame. A sender that never
    /// completes its messages holds a slot only while none holds less: a
    /// flood of frames that each open a message (whatever the senders they
    /// name) takes the slots of its own earlier ones, and a message whose
    /// frames keep coming holds more bytes than any of them after its
    /// second frame. See [`MAX_PARTIALS`].
    fn least_received(&self) -> Option<(String, MessageId)> {
        self.partials
            .iter()
            .min_by_key(|(_, p)| (p.held, p.last))
            .map(|(k, _)| k.clone())
    }

    /// The messages in progress to drop so that `over` more payload bytes
    /// fit, when a frame of message `key`, which would then hold `mine`
    /// bytes, does not: those that have received the fewest bytes, each
    /// fewer than `mine`, other than `key` and those in `taken`; `None` when
    /// they do not free enough.
    ///
    /// Without it, messages that arrive side by side and together outgrow
    /// the budget (records of several large saves sent to one server at
    /// once) would each stop part way, their frames dropped and sent again
    /// until their senders give up, and none would ever be whole. With it,
    /// the message that has received the most always goes on, and those
    /// dropped are sent again from their first frame once there is room.
    /// As with slots ([`MAX_PARTIALS`]), a flood pushes out only messages
    /// that have received fewer bytes than it has sent.
    fn make_room(
        &self,
        key: &(String, MessageId),
        taken: &[(String, MessageId)],
        over: usize,
        mine: usize,
    ) -> Option<Vec<(String, MessageId)>> {
        let mut candidates: Vec<_> = self
            .partials
            .iter()
            .filter(|(k, p)| *k != key && !taken.contains(k) && p.held < mine)
            .map(|(k, p)| (p.held, p.last, k))
            .collect();
        candidates.sort_by_key(|(held, last, _)| (*held, *last));
        let mut freed = 0usize;
        let mut out = Vec::new();
        for (held, _, k) in candidates {
            if freed >= over {
                break;
            }
            freed = freed.saturating_add(held);
            out.push(k.clone());
        }
        (freed >= over).then_some(out)
    }

    async fn run(mut self, mut sub: Subscription) -> Stop {
        let mut gc = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                payload = sub.recv() => match payload {
                    Some(bytes) => self.handle(&bytes).await,
                    None => {
                        // At shutdown the broker's tasks end before this one is
                        // dropped: let an abort or a runtime shutdown land first.
                        tokio::task::yield_now().await;
                        if self.closing.load(Ordering::Relaxed) {
                            tracing::debug!(channel = self.channel, "subscription closed");
                            return Stop::Closing;
                        }
                        tracing::error!(channel = self.channel, "subscription ended");
                        return Stop::Lost;
                    }
                },
                _ = gc.tick() => self.partials.retain(|_, p| p.last.elapsed() < PARTIAL_TTL),
            }
        }
    }

    async fn handle(&mut self, bytes: &[u8]) {
        let frame = match FrameRef::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                peer_warn!(
                    self,
                    len = bytes.len(),
                    error = tracing::field::display(&e),
                    "dropping malformed frame"
                );
                return;
            }
        };
        match frame {
            FrameRef::Ack(a) => {
                self.route_receipt(a.message_id, Receipt::Acked(a.index));
            }
            FrameRef::Dropped(d) => self.route_receipt(d.message_id, Receipt::Dropped),
            FrameRef::Data(d) if d.count == 1 => {
                if self.held().saturating_add(d.payload.len()) > self.limit() {
                    peer_warn!(
                        self,
                        from = d.sender,
                        "receive buffers full; message dropped"
                    );
                    return;
                }
                self.deliver(d.sender.to_owned(), d.payload.to_vec());
            }
            FrameRef::Data(d) => self.handle_part(d).await,
        }
    }

    /// Hands what a receiver said of message `id` to the send awaiting it.
    fn route_receipt(&self, id: MessageId, receipt: Receipt) {
        match lock(&self.acks).get(&id) {
            Some(tx) => {
                let _ = tx.send(receipt);
            }
            None => tracing::debug!(channel = self.channel, "dropping unexpected {receipt:?}"),
        }
    }

    async fn handle_part(&mut self, d: DataFrameRef<'_>) {
        let key = (d.sender.to_owned(), d.message_id);
        // The slot a frame that opens a message takes when all are held;
        // taken only once the frame is kept.
        let mut victim = None;
        if !self.partials.contains_key(&key) {
            let from_sender = self.partials.keys().filter(|k| k.0 == d.sender).count();
            if from_sender >= MAX_PARTIALS_PER_SENDER {
                peer_warn!(
                    self,
                    from = d.sender,
                    "too many partial messages from one sender; frame dropped"
                );
                return;
            }
            if d.index + 1 < d.count && d.payload.len() != MAX_FRAME_PAYLOAD {
                peer_warn!(self, from = d.sender, "short inner frame; message dropped");
                return;
            }
            if self.partials.len() >= MAX_PARTIALS {
                // A later frame of a message whose slot was taken (its first
                // frames acknowledged, never sent again) would never
                // complete, and would take a third message's slot, and so on
                // down the slots: only a first frame takes one. It is dropped
                // unacknowledged, as before slots were taken, and sent again.
                if d.index > 0 {
                    peer_warn!(
                        self,
                        from = d.sender,
                        "too many partial messages; frame dropped"
                    );
                    return;
                }
                victim = self.least_received();
            }
        }
        // A frame that is dropped anyway pushes no other message out.
        if let Some(partial) = self.partials.get(&key) {
            if partial.count != d.count {
                peer_warn!(self, from = d.sender, "frame count changed; frame dropped");
                return;
            }
            if !partial.have[d.index as usize]
                && d.index + 1 < d.count
                && d.payload.len() != MAX_FRAME_PAYLOAD
            {
                self.partials.remove(&key);
                peer_warn!(self, from = d.sender, "short inner frame; message dropped");
                return;
            }
        }
        let mut victims: Vec<(String, MessageId)> = victim.iter().cloned().collect();
        let freed: usize = victims
            .iter()
            .filter_map(|v| self.partials.get(v))
            .map(|p| p.held)
            .sum();
        let held = self.held().saturating_sub(freed);
        let (new_bytes, mine) = match self.partials.get(&key) {
            Some(p) if p.have.get(d.index as usize) == Some(&true) => (0, p.held),
            Some(p) => (d.payload.len(), p.held.saturating_add(d.payload.len())),
            None => (d.payload.len(), d.payload.len()),
        };
        let limit = self.limit();
        let over = held.saturating_add(new_bytes).saturating_sub(limit);
        if over > 0 {
            match self.make_room(&key, &victims, over, mine) {
                Some(more) => victims.extend(more),
                None => {
                    peer_warn!(
                        self,
                        from = d.sender,
                        held = held,
                        limit = limit,
                        "receive buffers full; frame dropped"
                    );
                    return;
                }
            }
        }
        for dropped in victims {
            let Some(evicted) = self.partials.remove(&dropped) else {
                continue;
            };
            if victim.as_ref() == Some(&dropped) {
                peer_warn!(
                    self,
                    from = dropped.0,
                    held = evicted.held,
                    "too many partial messages; the one least received dropped"
                );
            } else {
                peer_warn!(
                    self,
                    from = dropped.0,
                    held = evicted.held,
                    "receive buffers full; a message less received dropped"
                );
            }
            // Its sender would otherwise learn of it only when its request
            // times out, its frames all acknowledged.
            let notice = Frame::Dropped(DroppedFrame {
                message_id: dropped.1,
                sender: self.channel.clone(),
            });
            if let Err(e) = self.broker.publish(&dropped.0, notice.encode()).await {
                peer_warn!(
                    self,
                    error = tracing::field::display(&e),
                    "could not tell a sender its message was dropped"
                );
            }
        }
        let partial = self
            .partials
            .entry(key.clone())
            .or_insert_with(|| Partial::new(d.count));
        if !partial.have[d.index as usize] {
            partial.place(d.index, d.payload);
            partial.have[d.index as usize] = true;
            partial.received += 1;
            // Only new bytes keep a partial message alive: repeating a
            // frame does not.
            partial.last = Instant::now();
        }
        let complete = partial.received == partial.count;
        let ack = Frame::Ack(AckFrame {
            message_id: d.message_id,
            sender: self.channel.clone(),
            index: d.index,
        });
        if let Err(e) = self.broker.publish(d.sender, ack.encode()).await {
            peer_warn!(
                self,
                error = tracing::field::display(&e),
                "could not send ack"
            );
        }
        if complete && let Some(p) = self.partials.remove(&key) {
            self.deliver(key.0, p.bytes);
        }
    }

    /// Decodes a complete message and hands it on, counting its bytes in the
    /// budget until it has been handled.
    fn deliver(&mut self, from: String, bytes: Vec<u8>) {
        let held = Held::new(bytes.len(), &self.queued);
        let message = match Message::decode_owned(bytes) {
            Ok(m) => m,
            Err(e) => {
                peer_warn!(
                    self,
                    from = from,
                    error = tracing::field::display(&e),
                    "dropping malformed message"
                );
                return;
            }
        };
        let incoming = Incoming {
            from,
            message,
            held,
        };
        if incoming.message.body.is_request() {
            match &self.requests {
                Some(tx) => {
                    if tx.try_send(incoming).is_err() {
                        peer_warn!(self, "request queue full; request dropped");
                    }
                }
                None => {
                    peer_warn!(self, from = incoming.from, "dropping unexpected request");
                }
            }
        } else {
            let tx = lock(&self.replies)
                .get(&incoming.message.request_id)
                .cloned();
            match tx {
                Some(tx) => {
                    if tx.try_send(incoming).is_err() {
                        peer_warn!(self, "reply queue full; reply dropped");
                    }
                }
                None => tracing::debug!(
                    channel = self.channel,
                    from = incoming.from,
                    "dropping unexpected reply"
                ),
            }
        }
    }
}

pub(crate) const REQUEST_QUEUE: usize = QUEUE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Body;

    #[test]
    fn frames_cut_from_head_and_record_carry_exactly_the_encoded_message() -> Result<(), Error> {
        let message = Message {
            request_id: RequestId([9; 16]),
            body: Body::Store {
                tag: "a/b".into(),
                version: 3,
                record: (0..3 * MAX_FRAME_PAYLOAD + 5).map(|i| i as u8).collect(),
            },
        };
        let (head, record) = message.encode_parts();
        let total = head.len() + record.len();
        let count = total.div_ceil(MAX_FRAME_PAYLOAD);
        let mut joined = Vec::new();
        for i in 0..count {
            let bytes = message_frame(MessageId([1; 16]), "seccs:client:x", (&head, &record), i)?;
            match FrameRef::decode(&bytes)? {
                FrameRef::Data(d) => joined.extend_from_slice(d.payload),
                other => panic!("a data frame decoded as {other:?}"),
            }
        }
        assert_eq!(joined, message.encode());
        assert_eq!(Message::decode_owned(joined)?, message);
        Ok(())
    }

    fn receiver(requests: Option<mpsc::Sender<Incoming>>, max_held: usize) -> Receiver {
        Receiver {
            broker: Arc::new(crate::broker::MemoryBroker::new()),
            channel: "seccs:server:test".into(),
            acks: Arc::default(),
            replies: Arc::default(),
            requests,
            partials: HashMap::new(),
            max_held,
            awaited: Arc::default(),
            queued: Arc::default(),
            closing: Arc::default(),
            warnings: Warnings::default(),
        }
    }

    fn data_frame(id: u8, index: u32, count: u32, payload: &[u8]) -> Vec<u8> {
        encode_data_parts(
            MessageId([id; 16]),
            "seccs:client:peer",
            index,
            count,
            [payload, &[]],
        )
    }

    #[tokio::test]
    async fn a_claimed_frame_count_allocates_nothing_beyond_the_bytes_received() {
        let mut rx = receiver(None, MAX_HELD_BYTES);
        // The last frame of a claimed 1 GiB message, four times: 240 bytes sent.
        for id in 0..4 {
            rx.handle(&data_frame(id, MAX_FRAMES - 1, MAX_FRAMES, &[7; 60]))
                .await;
        }
        assert_eq!(rx.partials.len(), 4);
        assert_eq!(rx.held(), 4 * 60);
        let allocated: usize = rx
            .partials
            .values()
            .map(|p| p.bytes.capacity() + p.ahead.values().map(Vec::capacity).sum::<usize>())
            .sum();
        assert!(
            allocated <= 4 * 60,
            "{allocated} bytes allocated for 240 received"
        );
    }

    #[tokio::test]
    async fn frames_beyond_the_byte_limit_are_dropped_and_messages_within_it_arrive()
    -> Result<(), DecodeError> {
        let (tx, mut requests) = mpsc::channel(4);
        let mut rx = receiver(Some(tx), 3 * MAX_FRAME_PAYLOAD);
        let full = vec![1u8; MAX_FRAME_PAYLOAD];
        // Three inner frames of three messages that never complete fill the limit.
        for id in 0..3 {
            rx.handle(&data_frame(id, 0, 4, &full)).await;
        }
        assert_eq!(rx.held(), 3 * MAX_FRAME_PAYLOAD);
        rx.handle(&data_frame(3, 0, 2, &full)).await;
        assert_eq!(
            rx.held(),
            3 * MAX_FRAME_PAYLOAD,
            "the frame past the limit is dropped"
        );
        assert!(
            !rx.partials
                .contains_key(&("seccs:client:peer".to_owned(), MessageId([3; 16])))
        );
        // Once the stale partials go, a message out of order fits and is delivered.
        rx.partials.clear();
        let message = Message {
            request_id: RequestId([5; 16]),
            body: Body::Store {
                tag: "t".into(),
                version: 1,
                record: vec![3; MAX_FRAME_PAYLOAD + 10],
            },
        };
        let bytes = message.encode();
        let (first, second) = bytes.split_at(MAX_FRAME_PAYLOAD);
        rx.handle(&data_frame(9, 1, 2, second)).await;
        rx.handle(&data_frame(9, 0, 2, first)).await;
        // Delivered, its bytes count until the request has been handled.
        assert!(rx.partials.is_empty());
        assert_eq!(rx.held(), bytes.len());
        match requests.try_recv() {
            Ok(inc) => assert_eq!(inc.message, message),
            Err(e) => panic!("the message was not delivered: {e}"),
        }
        assert_eq!(rx.held(), 0);
        Ok(())
    }

    fn two_frame_store(id: u8) -> (Message, Vec<u8>) {
        let message = Message {
            request_id: RequestId([id; 16]),
            body: Body::Store {
                tag: "t".into(),
                version: 1,
                record: vec![id; MAX_FRAME_PAYLOAD + 10],
            },
        };
        let bytes = message.encode();
        (message, bytes)
    }

    async fn send_two_frames(rx: &mut Receiver, id: u8, bytes: &[u8]) {
        let (first, second) = bytes.split_at(MAX_FRAME_PAYLOAD);
        rx.handle(&data_frame(id, 0, 2, first)).await;
        rx.handle(&data_frame(id, 1, 2, second)).await;
    }

    #[tokio::test]
    async fn messages_waiting_to_be_handled_count_in_the_byte_budget() {
        let (tx, mut requests) = mpsc::channel(16);
        let mut rx = receiver(Some(tx), 3 * MAX_FRAME_PAYLOAD);
        // Two complete messages wait in the queue; the third does not fit.
        for id in 0..3 {
            let (_, bytes) = two_frame_store(id);
            send_two_frames(&mut rx, id, &bytes).await;
        }
        let first = requests.try_recv();
        let second = requests.try_recv();
        assert!(first.is_ok() && second.is_ok());
        assert!(
            requests.try_recv().is_err(),
            "a message past the budget was queued"
        );
        // Taken but not yet handled, they still count; handled, they do not.
        let (message, bytes) = two_frame_store(9);
        send_two_frames(&mut rx, 9, &bytes).await;
        assert!(requests.try_recv().is_err());
        drop((first, second));
        assert_eq!(rx.queued.load(Ordering::Relaxed), 0);
        send_two_frames(&mut rx, 9, &bytes).await;
        match requests.try_recv() {
            Ok(inc) => assert_eq!(inc.message, message),
            Err(e) => panic!("the message was not delivered: {e}"),
        }
    }

    #[tokio::test]
    async fn one_sender_neither_takes_every_partial_slot_nor_keeps_one_alive_by_repeating_a_frame()
    -> Result<(), &'static str> {
        let mut rx = receiver(None, MAX_HELD_BYTES);
        for id in 0..20 {
            rx.handle(&data_frame(id, 1, 2, b"x")).await;
        }
        assert_eq!(rx.partials.len(), MAX_PARTIALS_PER_SENDER);
        let other = encode_data_parts(MessageId([99; 16]), "seccs:client:other", 1, 2, [b"y", &[]]);
        rx.handle(&other).await;
        assert_eq!(rx.partials.len(), MAX_PARTIALS_PER_SENDER + 1);
        // A frame it already has does not refresh a partial message's age.
        let key = ("seccs:client:peer".to_owned(), MessageId([0; 16]));
        let old = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .ok_or("no earlier instant")?;
        rx.partials.get_mut(&key).ok_or("no partial")?.last = old;
        rx.handle(&data_frame(0, 1, 2, b"x")).await;
        assert!(rx.partials.get(&key).ok_or("no partial")?.last == old);
        Ok(())
    }

    /// A frame that opens a message from `sender` and never completes it.
    fn flood_frame(sender: &str, id: u32, payload: &[u8]) -> Vec<u8> {
        let mut message_id = [0xf1; 16];
        message_id[..4].copy_from_slice(&id.to_le_bytes());
        encode_data_parts(MessageId(message_id), sender, 1, 2, [payload, &[]])
    }

    /// The first frame (a full one) of a message of two from `sender`.
    fn first_frame(sender: &str, id: u32) -> Vec<u8> {
        let mut message_id = [0xf1; 16];
        message_id[..4].copy_from_slice(&id.to_le_bytes());
        let full = vec![0u8; MAX_FRAME_PAYLOAD];
        encode_data_parts(MessageId(message_id), sender, 0, 2, [&full, &[]])
    }

    #[tokio::test]
    async fn a_flood_of_partial_messages_from_invented_senders_does_not_keep_a_message_out()
    -> Result<(), String> {
        let (tx, mut requests) = mpsc::channel(4);
        let mut rx = receiver(Some(tx), MAX_HELD_BYTES);
        let (message, bytes) = two_frame_store(42);
        let (first, second) = bytes.split_at(MAX_FRAME_PAYLOAD);
        let full = vec![0u8; MAX_FRAME_PAYLOAD];
        // Eight messages from each of 40 invented senders fill every slot,
        // small ones and ones as large as an honest frame alike.
        for i in 0..320u32 {
            let sender = format!("seccs:client:forged{}", i / 8);
            let payload: &[u8] = if i % 2 == 0 { b"x" } else { &full };
            rx.handle(&flood_frame(&sender, i, payload)).await;
        }
        assert_eq!(rx.partials.len(), MAX_PARTIALS);
        // An honest message opens, the flood goes on, and it completes.
        rx.handle(&data_frame(42, 0, 2, first)).await;
        for i in 320..640u32 {
            let sender = format!("seccs:client:forged{}", i / 8);
            rx.handle(&flood_frame(&sender, i, b"x")).await;
        }
        rx.handle(&data_frame(42, 1, 2, second)).await;
        match requests.try_recv() {
            Ok(inc) => assert_eq!(inc.message, message),
            Err(e) => return Err(format!("the honest message was kept out: {e}")),
        }
        assert_eq!(rx.partials.len(), MAX_PARTIALS - 1);
        assert!(rx.held() <= MAX_PARTIALS * MAX_FRAME_PAYLOAD);
        Ok(())
    }

    #[tokio::test]
    async fn the_partial_message_dropped_for_a_new_one_is_the_least_received_and_stalest()
    -> Result<(), &'static str> {
        let mut rx = receiver(None, MAX_HELD_BYTES);
        let full = vec![0u8; MAX_FRAME_PAYLOAD];
        for i in 0..MAX_PARTIALS as u32 {
            let sender = format!("seccs:client:s{}", i / 4);
            let payload: &[u8] = if i == 5 { b"xy" } else { &full };
            rx.handle(&flood_frame(&sender, i, payload)).await;
        }
        // The one with the fewest bytes goes; of those with as few, the one
        // that waited longest for a frame.
        let key = |i: u32| {
            let mut id = [0xf1; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            (format!("seccs:client:s{}", i / 4), MessageId(id))
        };
        rx.handle(&first_frame("seccs:client:late", 100)).await;
        assert!(
            !rx.partials.contains_key(&key(5)),
            "the least received stayed"
        );
        let old = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .ok_or("no earlier instant")?;
        rx.partials.get_mut(&key(9)).ok_or("no partial")?.last = old;
        rx.handle(&first_frame("seccs:client:late", 101)).await;
        assert!(!rx.partials.contains_key(&key(9)), "the stalest stayed");
        for kept in [0, 8, 10, 63] {
            assert!(rx.partials.contains_key(&key(kept)), "{kept} was dropped");
        }
        assert_eq!(rx.partials.len(), MAX_PARTIALS);
        Ok(())
    }

    /// A receiver whose every slot holds the first frame (of two) of a
    /// message in progress from one of 16 senders, and the keys of those.
    async fn full_of_messages_in_progress(max_held: usize) -> (Receiver, Vec<(String, MessageId)>) {
        let mut rx = receiver(None, max_held);
        let full = vec![0u8; MAX_FRAME_PAYLOAD];
        let mut keys = Vec::new();
        for i in 0..MAX_PARTIALS as u32 {
            let sender = format!("seccs:client:s{}", i / 4);
            rx.handle(&flood_frame(&sender, i, &full)).await;
            let mut id = [0xf1; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            keys.push((sender, MessageId(id)));
        }
        (rx, keys)
    }

    #[tokio::test]
    async fn a_frame_that_is_not_kept_takes_no_slot() -> Result<(), String> {
        let (mut rx, keys) = full_of_messages_in_progress(MAX_HELD_BYTES).await;
        assert_eq!(rx.partials.len(), MAX_PARTIALS);
        // A first frame of two, of one byte, which no message has: dropped.
        let short = encode_data_parts(
            MessageId([0xf2; 16]),
            "seccs:client:late",
            0,
            2,
            [b"x", &[]],
        );
        rx.handle(&short).await;
        assert_eq!(rx.partials.len(), MAX_PARTIALS);
        for key in &keys {
            if !rx.partials.contains_key(key) {
                return Err(format!(
                    "{key:?} was pushed out by a frame that was dropped"
                ));
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_frame_over_the_byte_budget_takes_no_slot() -> Result<(), String> {
        let max_held = (MAX_PARTIALS + 1) * MAX_FRAME_PAYLOAD;
        let (mut rx, keys) = full_of_messages_in_progress(max_held).await;
        // Messages delivered and not yet handled hold a frame and a byte:
        // even with a slot's bytes freed, a new frame does not fit.
        rx.queued.store(MAX_FRAME_PAYLOAD + 1, Ordering::Relaxed);
        rx.handle(&first_frame("seccs:client:late", 100)).await;
        for key in &keys {
            if !rx.partials.contains_key(key) {
                return Err(format!(
                    "{key:?} was pushed out by a frame that was dropped"
                ));
            }
        }
        // Without the queued bytes it fits, in the stalest one's slot.
        rx.queued.store(0, Ordering::Relaxed);
        let old = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .ok_or("no earlier instant")?;
        rx.partials.get_mut(&keys[0]).ok_or("no partial")?.last = old;
        rx.handle(&first_frame("seccs:client:late", 101)).await;
        assert_eq!(rx.partials.len(), MAX_PARTIALS);
        assert!(!rx.partials.contains_key(&keys[0]));
        Ok(())
    }

    #[tokio::test]
    async fn a_later_frame_of_a_message_pushed_out_takes_no_other_slot() -> Result<(), String> {
        // 65 honest messages of three frames from 65 senders, their frames
        // interleaved: the 65th's first frame pushes out the stalest, whose
        // first frame was acknowledged and is never sent again.
        let (tx, mut requests) = mpsc::channel(128);
        let mut rx = receiver(Some(tx), MAX_HELD_BYTES);
        let (messages, mut notices) = messages_of_three_frames(&rx, MAX_PARTIALS as u8 + 1).await?;
        for index in 0..3u32 {
            for i in 0..messages.len() {
                rx.handle(&frame_of(&messages, i, index)).await;
            }
        }
        let mut delivered = 0;
        while requests.try_recv().is_ok() {
            delivered += 1;
        }
        // One message lost its slot; its later frames took no other's.
        if delivered != MAX_PARTIALS {
            return Err(format!("{delivered} of 65 messages delivered"));
        }
        assert!(rx.partials.is_empty(), "{} left", rx.partials.len());
        // Its sender, and only it, was told, by the receiver.
        let mut told = Vec::new();
        for (i, notices) in notices.iter_mut().enumerate() {
            while let Ok(Some(bytes)) = timeout(Duration::from_millis(1), notices.recv()).await {
                if let Ok(FrameRef::Dropped(d)) = FrameRef::decode(&bytes) {
                    assert_eq!(d.sender, rx.channel);
                    told.push((i, d.message_id));
                }
            }
        }
        assert_eq!(told.len(), 1, "told: {told:?}");
        assert_eq!(told[0].1, MessageId([told[0].0 as u8; 16]));
        Ok(())
    }

    /// `n` encoded store messages of three frames each, from senders
    /// `seccs:client:c0`.., and those senders' channels subscribed on
    /// `rx`'s broker (where the receiver's notices reach them).
    async fn messages_of_three_frames(
        rx: &Receiver,
        n: u8,
    ) -> Result<(Vec<Vec<u8>>, Vec<Subscription>), String> {
        let mut channels = Vec::new();
        for i in 0..n {
            channels.push(
                rx.broker
                    .subscribe(&format!("seccs:client:c{i}"))
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let messages = (0..n)
            .map(|i| {
                Message {
                    request_id: RequestId([i; 16]),
                    body: Body::Store {
                        tag: "t".into(),
                        version: 1,
                        record: vec![i; 2 * MAX_FRAME_PAYLOAD + 10],
                    },
                }
                .encode()
            })
            .collect();
        Ok((messages, channels))
    }

    /// Frame `index` of message `i` of [`messages_of_three_frames`].
    fn frame_of(messages: &[Vec<u8>], i: usize, index: u32) -> Vec<u8> {
        let bytes = &messages[i];
        let at = index as usize * MAX_FRAME_PAYLOAD;
        let payload = &bytes[at..(at + MAX_FRAME_PAYLOAD).min(bytes.len())];
        encode_data_parts(
            MessageId([i as u8; 16]),
            &format!("seccs:client:c{i}"),
            index,
            3,
            [payload, &[]],
        )
    }

    /// The senders (by number) told that their message was dropped.
    async fn told_dropped(channels: &mut [Subscription]) -> Vec<usize> {
        let mut told = Vec::new();
        for (i, channel) in channels.iter_mut().enumerate() {
            while let Ok(Some(bytes)) = timeout(Duration::from_millis(1), channel.recv()).await {
                if let Ok(FrameRef::Dropped(_)) = FrameRef::decode(&bytes) {
                    told.push(i);
                }
            }
        }
        told
    }

    #[tokio::test]
    async fn messages_that_outgrow_the_budget_together_are_whole_one_after_another()
    -> Result<(), String> {
        // Three messages of three frames side by side, in a budget of six
        // frames: after two rounds it is full, and no message is whole.
        let (tx, mut requests) = mpsc::channel(8);
        let mut rx = receiver(Some(tx), 6 * MAX_FRAME_PAYLOAD);
        let (messages, mut channels) = messages_of_three_frames(&rx, 3).await?;
        let mut delivered = Vec::new();
        for index in 0..3 {
            for i in 0..3 {
                rx.handle(&frame_of(&messages, i, index)).await;
                // Handled at once, as a server stores a record.
                while let Ok(inc) = requests.try_recv() {
                    delivered.push(inc.message.request_id);
                }
            }
        }
        // The first to need room went on, and the one that had received the
        // least (of those that had received less) was dropped, and told.
        let told = told_dropped(&mut channels).await;
        if delivered.is_empty() {
            return Err("no message was whole: the budget stalled them all".into());
        }
        assert_eq!(told, [1], "told: {told:?}");
        assert_eq!(delivered, [RequestId([0; 16]), RequestId([2; 16])]);
        // Its sender sends it again from its first frame, and it is whole
        // (its last frame came once more after it was dropped, and is
        // merged in). The frame sent once more after that holds its frame's
        // bytes until it goes stale, as any repeated frame does.
        for index in 0..3 {
            rx.handle(&frame_of(&messages, 1, index)).await;
        }
        while let Ok(inc) = requests.try_recv() {
            delivered.push(inc.message.request_id);
        }
        assert_eq!(delivered.len(), 3);
        assert_eq!(delivered[2], RequestId([1; 16]));
        assert!(rx.held() <= MAX_FRAME_PAYLOAD, "{} bytes held", rx.held());
        Ok(())
    }

    #[tokio::test]
    async fn a_frame_that_would_push_out_a_message_further_along_is_dropped() -> Result<(), String>
    {
        // Two messages in a budget of three frames: the first has two, the
        // second's first frame does not fit and may not push the first out.
        let mut rx = receiver(None, 3 * MAX_FRAME_PAYLOAD);
        let (messages, mut channels) = messages_of_three_frames(&rx, 3).await?;
        rx.handle(&frame_of(&messages, 0, 0)).await;
        rx.handle(&frame_of(&messages, 0, 1)).await;
        rx.queued.store(1, Ordering::Relaxed);
        rx.handle(&frame_of(&messages, 1, 0)).await;
        assert_eq!(rx.partials.len(), 1);
        assert_eq!(
            rx.partials.values().map(|p| p.held).sum::<usize>(),
            2 * MAX_FRAME_PAYLOAD
        );
        assert!(told_dropped(&mut channels).await.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_frame_dropped_for_its_count_pushes_no_message_out() -> Result<(), String> {
        // Message 0 holds two frames and message 1 one, in a budget of
        // three: a frame of message 0 that is dropped anyway (it names
        // another count) must not make room first.
        let mut rx = receiver(None, 3 * MAX_FRAME_PAYLOAD);
        let (messages, mut channels) = messages_of_three_frames(&rx, 3).await?;
        rx.handle(&frame_of(&messages, 0, 0)).await;
        rx.handle(&frame_of(&messages, 0, 1)).await;
        rx.handle(&frame_of(&messages, 1, 0)).await;
        let other_count = encode_data_parts(
            MessageId([0; 16]),
            "seccs:client:c0",
            2,
            4,
            [&vec![0u8; MAX_FRAME_PAYLOAD][..], &[]],
        );
        rx.handle(&other_count).await;
        assert_eq!(rx.partials.len(), 2, "message 1 was pushed out");
        assert!(told_dropped(&mut channels).await.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn replies_awaited_have_room_of_their_own() -> Result<(), String> {
        let broker: Arc<dyn Broker> = Arc::new(crate::broker::MemoryBroker::new());
        let endpoint = Endpoint::open(
            broker,
            "seccs:client:me".into(),
            None,
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| e.to_string())?;
        let awaited: Vec<Replies> = (0..3u8)
            .map(|i| endpoint.expect_replies(RequestId([i; 16])))
            .collect();
        assert_eq!(
            endpoint.awaited.load(Ordering::Relaxed),
            3 * MAX_MESSAGE_BYTES
        );
        drop(awaited);
        assert_eq!(endpoint.awaited.load(Ordering::Relaxed), 0);
        // A client awaiting three replies larger than its budget's share
        // (records fetched from three servers at once) takes them all,
        // side by side, and drops none.
        let (tx, mut replies) = mpsc::channel(8);
        let mut rx = receiver(Some(tx), 6 * MAX_FRAME_PAYLOAD);
        rx.awaited
            .store(3 * 3 * MAX_FRAME_PAYLOAD, Ordering::Relaxed);
        let (messages, mut channels) = messages_of_three_frames(&rx, 3).await?;
        for index in 0..3 {
            for i in 0..3 {
                rx.handle(&frame_of(&messages, i, index)).await;
            }
        }
        let mut delivered = 0;
        while replies.try_recv().is_ok() {
            delivered += 1;
        }
        assert_eq!(delivered, 3);
        assert!(told_dropped(&mut channels).await.is_empty());
        Ok(())
    }

    /// A three-frame message, and a peer's channel subscribed on `broker`
    /// where an endpoint sends it (the test plays that peer by hand).
    async fn sender_and_peer(
        broker: &Arc<dyn Broker>,
    ) -> Result<(Endpoint, Message, Subscription), String> {
        let sender = Endpoint::open(
            broker.clone(),
            "seccs:client:a".into(),
            None,
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| e.to_string())?;
        let peer = broker
            .subscribe("seccs:server:x")
            .await
            .map_err(|e| e.to_string())?;
        let message = Message {
            request_id: RequestId([1; 16]),
            body: Body::Store {
                tag: "t".into(),
                version: 1,
                record: vec![5; 2 * MAX_FRAME_PAYLOAD + 10],
            },
        };
        Ok((sender, message, peer))
    }

    /// The next data frame `peer` receives: its message id and index.
    async fn next_data(peer: &mut Subscription) -> Result<(MessageId, u32), String> {
        let bytes = timeout(Duration::from_secs(10), peer.recv())
            .await
            .map_err(|_| "no frame came")?
            .ok_or("the subscription ended")?;
        match FrameRef::decode(&bytes).map_err(|e| e.to_string())? {
            FrameRef::Data(d) => Ok((d.message_id, d.index)),
            other => Err(format!("expected a data frame, got {other:?}")),
        }
    }

    async fn say(broker: &Arc<dyn Broker>, frame: Frame) -> Result<(), String> {
        broker
            .publish("seccs:client:a", frame.encode())
            .await
            .map_err(|e| e.to_string())
    }

    fn ack(id: MessageId, index: u32) -> Frame {
        Frame::Ack(AckFrame {
            message_id: id,
            sender: "seccs:server:x".into(),
            index,
        })
    }

    fn dropped(id: MessageId) -> Frame {
        Frame::Dropped(DroppedFrame {
            message_id: id,
            sender: "seccs:server:x".into(),
        })
    }

    #[tokio::test]
    async fn a_sender_told_its_message_was_dropped_sends_it_again_from_the_first_frame()
    -> Result<(), String> {
        let broker: Arc<dyn Broker> = Arc::new(crate::broker::MemoryBroker::new());
        let (sender, message, mut peer) = sender_and_peer(&broker).await?;
        let send = sender.send("seccs:server:x", &message, None);
        let peer_side = async {
            let mut first = Vec::new();
            for _ in 0..3 {
                first.push(next_data(&mut peer).await?);
            }
            let id = first[0].0;
            assert_eq!(first.iter().map(|f| f.1).collect::<Vec<_>>(), [0, 1, 2]);
            // Frame 0 acknowledged, then its slot taken: the receiver says
            // so, and everything comes again, at once (the acknowledgement
            // timeout is a minute), from frame 0.
            say(&broker, ack(id, 0)).await?;
            say(&broker, dropped(id)).await?;
            for expected in 0..3 {
                assert_eq!(next_data(&mut peer).await?, (id, expected));
            }
            for index in 0..3 {
                say(&broker, ack(id, index)).await?;
            }
            Ok::<_, String>(())
        };
        let (sent, played) = tokio::join!(
            timeout(Duration::from_secs(20), send),
            timeout(Duration::from_secs(20), peer_side)
        );
        played.map_err(|_| "the peer's side timed out")??;
        sent.map_err(|_| "the send did not end")?
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    #[tokio::test]
    async fn a_message_dropped_again_and_again_fails_its_send_saying_so() -> Result<(), String> {
        let broker: Arc<dyn Broker> = Arc::new(crate::broker::MemoryBroker::new());
        let (sender, message, mut peer) = sender_and_peer(&broker).await?;
        let send = sender.send("seccs:server:x", &message, None);
        let peer_side = async {
            for _ in 0..=MAX_RESTARTS {
                let mut id = None;
                for _ in 0..3 {
                    id = Some(next_data(&mut peer).await?.0);
                }
                say(&broker, dropped(id.ok_or("no frame")?)).await?;
            }
            Ok::<_, String>(())
        };
        let (sent, played) = tokio::join!(
            timeout(Duration::from_secs(20), send),
            timeout(Duration::from_secs(20), peer_side)
        );
        played.map_err(|_| "the peer's side timed out")??;
        match sent.map_err(|_| "the send did not end")? {
            Err(Error::Dropped { server, times }) => {
                assert_eq!(server, "seccs:server:x");
                assert_eq!(times, MAX_RESTARTS + 1);
                Ok(())
            }
            other => Err(format!("expected Dropped, got {other:?}")),
        }
    }

    #[test]
    fn warnings_of_one_kind_are_logged_once_per_interval_with_the_count_suppressed() {
        let mut w = Warnings::default();
        let t0 = Instant::now();
        assert_eq!(w.allow("junk", t0), Some(0));
        for _ in 0..5 {
            assert_eq!(w.allow("junk", t0 + WARN_INTERVAL / 2), None);
        }
        assert_eq!(w.allow("other", t0), Some(0));
        assert_eq!(w.allow("junk", t0 + WARN_INTERVAL), Some(5));
        assert_eq!(w.allow("junk", t0 + WARN_INTERVAL), None);
    }

    #[tokio::test]
    async fn junk_frames_are_dropped_and_rate_limit_their_warning() {
        let mut rx = receiver(None, MAX_HELD_BYTES);
        for _ in 0..100 {
            rx.handle(b"junk").await;
        }
        let suppressed = rx.warnings.last.values().map(|(_, n)| *n).sum::<u64>();
        assert_eq!(suppressed, 99, "one warning logged for 100 junk frames");
    }

    #[tokio::test]
    async fn a_subscription_that_ends_at_shutdown_is_not_an_error() {
        for (closing, expected) in [(true, Stop::Closing), (false, Stop::Lost)] {
            let (tx, sub_rx) = mpsc::channel(1);
            let rx = receiver(None, MAX_HELD_BYTES);
            rx.closing.store(closing, Ordering::Relaxed);
            drop(tx);
            assert_eq!(rx.run(Subscription::new(sub_rx, None)).await, expected);
        }
    }
}
