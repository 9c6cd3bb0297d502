//! A response delivered as a sequence of payloads, each one complete JSON
//! object: the parts of an incrementally delivered (`@defer`) response
//! after the first. The engine sends them as they are ready; the HTTP layer
//! frames each one (multipart/mixed) without looking inside.
//!
//! The channel is small: a client that reads slowly holds the producer
//! back instead of the gateway queueing parts for it, and a client that
//! goes away is noticed ([`PayloadSender::gone`]) so that the work still
//! running for it is dropped, its upstream calls cancelled.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

/// Payloads waiting to be sent, at most.
const IN_FLIGHT: usize = 4;

/// The payloads of one response, in order.
pub struct Payloads(mpsc::Receiver<Vec<u8>>);

/// Where the engine sends a response's payloads.
pub struct PayloadSender(mpsc::Sender<Vec<u8>>);

/// A sender and the stream of what it sends.
pub fn channel() -> (PayloadSender, Payloads) {
    let (sender, receiver) = mpsc::channel(IN_FLIGHT);
    (PayloadSender(sender), Payloads(receiver))
}

impl PayloadSender {
    /// Sends one payload once there is room; `false` when the client has
    /// gone.
    pub async fn send(&self, payload: Vec<u8>) -> bool {
        self.0.send(payload).await.is_ok()
    }

    /// Resolves when nobody reads the payloads any more (the client closed
    /// its connection, or the response was dropped).
    pub async fn gone(&self) {
        self.0.closed().await
    }
}

impl futures::Stream for Payloads {
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        self.0.poll_recv(cx)
    }
}
