//! A connection's outbound side: a bounded queue drained by one writer task.
//!
//! Channels fan out by `try_send`-ing shared, pre-encoded frames into each subscriber's queue.
//! A queue that is full means the peer cannot keep up: the connection is closed with
//! `slow_consumer` (it resumes by offset) instead of slowing the publisher or anyone else.

use crate::auth::Principal;
use crate::metrics::Metrics;
use dashmap::DashMap;
use futures_util::task::AtomicWaker;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use switchboard_protocol::frame::encode_text_parts;
use switchboard_protocol::websocket::WsFrame;
use switchboard_protocol::{CloseCode, ErrorCode, ErrorReply, Message, Payload, events};
use tokio::sync::mpsc;

/// What the writer task writes.
pub enum Outbound {
    /// One frame.
    Frame(WsFrame),
    /// Frames that must stay together and in order (a join reply and its replay).
    Batch(Vec<WsFrame>),
}

/// The handle channels and handlers hold to reach a connection.
pub struct ConnHandle {
    /// Unique per server run.
    pub id: u64,
    tx: mpsc::Sender<Outbound>,
    close: OnceLock<(u16, String)>,
    /// The usage counters of the key this connection authenticated with (set once).
    pub usage: OnceLock<Arc<crate::usage::Counters>>,
    /// Wake the connection's reader and writer tasks on a close request. Each task re-registers
    /// on every wake-up, which costs a few atomics (a `Notify` waiter would take a lock).
    wakers: [AtomicWaker; 2],
    metrics: Arc<Metrics>,
}

/// The two tasks of a connection, for [`ConnHandle::poll_closing`].
#[derive(Debug, Clone, Copy)]
pub enum Task {
    /// The task reading and dispatching client frames.
    Reader = 0,
    /// The task writing the outbound queue to the socket.
    Writer = 1,
}

impl ConnHandle {
    /// A handle and the receiving end of its queue (for the writer task).
    pub fn new(
        id: u64,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        (
            Arc::new(ConnHandle {
                id,
                tx,
                close: OnceLock::new(),
                wakers: Default::default(),
                usage: OnceLock::new(),
                metrics,
            }),
            rx,
        )
    }

    /// Queues a frame without waiting; a full queue closes the connection as a slow consumer.
    pub fn push(&self, frame: WsFrame) -> bool {
        self.try_queue(Outbound::Frame(frame))
    }

    /// Queues frames that must arrive together, without waiting.
    pub fn push_batch(&self, frames: Vec<WsFrame>) -> bool {
        self.try_queue(Outbound::Batch(frames))
    }

    fn try_queue(&self, out: Outbound) -> bool {
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.close.get().is_none() {
                    self.metrics.slow_consumers.inc();
                }
                self.close(
                    CloseCode::SlowConsumer.code(),
                    "slow_consumer: the connection fell behind; reconnect and resume by offset",
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a frame, waiting for room (request replies: back-pressure on this client only).
    pub async fn send(&self, out: Outbound) -> bool {
        self.tx.send(out).await.is_ok()
    }

    /// Asks the connection to close with `code`; the first request wins.
    pub fn close(&self, code: u16, reason: &str) {
        if self.close.set((code, reason.to_owned())).is_ok() {
            self.wakers.iter().for_each(AtomicWaker::wake);
        }
    }

    /// The close requested, if any.
    pub fn close_requested(&self) -> Option<&(u16, String)> {
        self.close.get()
    }

    /// `Ready` once a close was requested; until then, the request wakes `task`.
    pub fn poll_closing(&self, task: Task, cx: &mut Context<'_>) -> Poll<()> {
        self.wakers[task as usize].register(cx.waker());
        match self.close.get() {
            Some(_) => Poll::Ready(()),
            None => Poll::Pending,
        }
    }
}

/// A text frame from parts.
pub fn text_frame(
    join_ref: Option<&str>,
    reference: Option<&str>,
    topic: &str,
    event: &str,
    payload: &str,
) -> WsFrame {
    WsFrame::text(encode_text_parts(join_ref, reference, topic, event, payload).as_bytes())
}

/// The authenticated connections, so that revoking a key or a tenant reaches the sockets
/// using it at once.
#[derive(Default)]
pub struct Live {
    conns: DashMap<u64, (Arc<ConnHandle>, Principal)>,
}

impl Live {
    /// Registers an authenticated connection (again, after a re-authentication).
    pub fn insert(&self, conn: &Arc<ConnHandle>, principal: &Principal) {
        self.conns
            .insert(conn.id, (conn.clone(), principal.clone()));
    }

    /// Forgets a connection that ended.
    pub fn remove(&self, id: u64) {
        self.conns.remove(&id);
    }

    /// Closes every connection whose principal matches with `key_revoked`; returns how many.
    pub fn revoke(&self, matches: impl Fn(&Principal) -> bool, why: &str) -> usize {
        let mut closed = 0;
        for entry in self.conns.iter() {
            let (conn, principal) = entry.value();
            if matches(principal) {
                conn.push(socket_error(ErrorCode::KeyRevoked, why));
                conn.close(CloseCode::KeyRevoked.code(), "key_revoked");
                closed += 1;
            }
        }
        closed
    }
}

/// A successful reply.
pub fn reply_ok(
    join_ref: Option<&str>,
    reference: Option<&str>,
    topic: &str,
    response: &impl serde::Serialize,
) -> WsFrame {
    #[derive(serde::Serialize)]
    struct Reply<'a, T> {
        status: &'static str,
        response: &'a T,
    }
    let body = serde_json::to_string(&Reply {
        status: "ok",
        response,
    })
    .expect("replies serialize");
    text_frame(join_ref, reference, topic, events::REPLY, &body)
}

/// An error reply.
pub fn reply_error(
    join_ref: Option<&str>,
    reference: Option<&str>,
    topic: &str,
    error: &ErrorReply,
) -> WsFrame {
    #[derive(serde::Serialize)]
    struct Reply<'a> {
        status: &'static str,
        response: &'a ErrorReply,
    }
    let body = serde_json::to_string(&Reply {
        status: "error",
        response: error,
    })
    .expect("replies serialize");
    text_frame(join_ref, reference, topic, events::REPLY, &body)
}

/// A socket-level error push on the `phoenix` topic.
pub fn socket_error(code: ErrorCode, message: &str) -> WsFrame {
    let body = serde_json::to_string(&ErrorReply::new(code, message)).expect("errors serialize");
    text_frame(
        None,
        None,
        switchboard_protocol::PHOENIX_TOPIC,
        events::SOCKET_ERROR,
        &body,
    )
}

/// Encodes a `message` event once: text with JSON, or a binary broadcast with attachments.
pub fn message_frame(topic: &str, message: &Message) -> WsFrame {
    if message.attachments.is_empty() {
        let body = serde_json::to_string(message).expect("messages serialize");
        text_frame(None, None, topic, events::MESSAGE, &body)
    } else {
        let frame = switchboard_protocol::Frame::new(
            None,
            None,
            topic,
            events::MESSAGE,
            Payload::Binary(message.encode_envelope()),
        );
        WsFrame::binary(
            &frame
                .encode_server_binary()
                .expect("topic and event fit in 255 bytes"),
        )
    }
}
