//! Coalescing (docs/CONFIG.md `coalesce`): identical GETs in flight at the same
//! moment from different client requests are sent once and the answer
//! shared. "Identical" is the whole request as sent, headers included, so
//! two users' calls carrying their own identity never merge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

use crate::connector::request::{RequestIdentity, UpstreamRequest};
use crate::upstream::{UpstreamAnswer, UpstreamClient, UpstreamError};

pub type SendResult = Result<Arc<UpstreamAnswer>, UpstreamError>;
type Call = Shared<BoxFuture<'static, SendResult>>;
type Key = (String, Arc<RequestIdentity>);

struct InFlight {
    /// Tells this call from a later identical one under the same key.
    id: u64,
    call: Call,
    /// Clients awaiting the call; at zero the call is abandoned.
    waiters: usize,
}

#[derive(Default)]
pub struct Coalescer {
    in_flight: Mutex<foldhash::HashMap<Key, InFlight>>,
    next_id: AtomicU64,
}

impl Coalescer {
    /// Sends `request`, or joins the identical one already in flight.
    pub async fn send(
        self: &Arc<Self>,
        upstream: &Arc<UpstreamClient>,
        service: &str,
        request: UpstreamRequest,
    ) -> SendResult {
        let key: Key = (service.to_owned(), request.identity());
        let call = {
            let mut in_flight = self.lock();
            let entry = in_flight.entry(key.clone()).or_insert_with(|| {
                let coalescer = self.clone();
                let upstream = upstream.clone();
                let finished = key.clone();
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let call = async move {
                    let result = upstream.send(&finished.0, &request).await.map(Arc::new);
                    coalescer.forget(&finished, id);
                    result
                }
                .boxed()
                .shared();
                InFlight {
                    id,
                    call,
                    waiters: 0,
                }
            });
            entry.waiters += 1;
            (entry.call.clone(), entry.id)
        };
        let (call, id) = call;
        let _waiter = Waiter {
            coalescer: self,
            key,
            id,
        };
        call.await
    }

    fn forget(&self, key: &Key, id: u64) {
        let mut in_flight = self.lock();
        if in_flight.get(key).is_some_and(|entry| entry.id == id) {
            in_flight.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<Key, InFlight>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls in flight now (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }
}

/// When the last client waiting on a call goes away (its request timed out
/// or disconnected), the call leaves the map and is dropped: cancelled.
struct Waiter<'a> {
    coalescer: &'a Coalescer,
    key: Key,
    id: u64,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.coalescer.lock();
        if let Some(entry) = in_flight.get_mut(&self.key).filter(|e| e.id == self.id) {
            entry.waiters -= 1;
            if entry.waiters == 0 {
                in_flight.remove(&self.key);
            }
        }
    }
}
