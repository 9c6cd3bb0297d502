//! Batching: keys of one batched field, collected across the whole
//! operation, fetched in as few calls as `max` allows (docs/CONFIG.md `batch`).
//!
//! Why not async-graphql's `DataLoader` or the `dataloader` crate: both
//! decide when to fire with a timer or by spawning tasks, so keys that
//! arrive over several scheduler turns end up in many small batches, and a
//! single key pays the delay (measured: 9-200 calls where 2 suffice). The executor polls all siblings of a list in one task, so here
//! the first key of a batch yields once to that task: every sibling polled
//! in the same turn adds its key. Then the batch waits for every call still
//! in flight that can give it keys (its field's parents reached through
//! other calls: [`Batches::provide`]), so parents from different calls of
//! one operation share one batch. No sleep, no timer; a lone key costs one
//! scheduler turn.
//!
//! The binding decides that a field is batched (`BoundSource::Batch`); this
//! module collects keys and hands each batch to the caller's fetch, which
//! is [`fetch::fetch`]: the batch's calls and its per-key cache.

pub mod fetch;
pub mod shared;

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};

use crate::error::{ErrorCode, FieldError};
use crate::upstream::json::Json;

/// The items of one fetched batch, grouped by key text, in upstream order;
/// and the keys answered by stale cache entries (`stale_if_error_s`).
#[derive(Debug, Default)]
pub struct BatchItems {
    pub by_key: foldhash::HashMap<String, Vec<Json>>,
    pub stale: foldhash::HashSet<String>,
}

pub type Grouped = Arc<BatchItems>;
pub type BatchOutcome = Result<Grouped, FieldError>;
type SharedOutcome = Shared<oneshot::Receiver<BatchOutcome>>;

/// Identifies what may share a batch: the same batched field (and the same
/// arguments, in case its call templates use them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchId {
    pub field: Arc<str>,
    pub args: String,
}

struct PendingBatch {
    keys: Vec<Json>,
    sender: oneshot::Sender<BatchOutcome>,
    outcome: SharedOutcome,
}

/// Per-operation batch state.
#[derive(Default)]
pub struct Batches {
    inner: Mutex<State>,
    /// Woken when a call that could give keys ends.
    provided: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    /// Batches still collecting keys.
    pending: foldhash::HashMap<BatchId, PendingBatch>,
    /// Every key ever asked for, by batch id → the batch that fetches it,
    /// so a key is fetched once per operation however often it is asked
    /// for.
    known: foldhash::HashMap<BatchId, foldhash::HashMap<String, SharedOutcome>>,
    /// Calls in flight whose answers may hold parents of a batched field,
    /// by that field.
    providers: foldhash::HashMap<Arc<str>, usize>,
}

/// A call in flight that may give keys to the batched fields `fields`;
/// dropped when its answer is in (or it is cancelled).
pub struct Providing<'b> {
    batches: &'b Batches,
    fields: &'b [Arc<str>],
}

impl Drop for Providing<'_> {
    fn drop(&mut self) {
        if self.fields.is_empty() {
            return;
        }
        let mut state = self.batches.lock();
        for field in self.fields {
            if let Some(count) = state.providers.get_mut(field) {
                *count = count.saturating_sub(1);
            }
        }
        drop(state);
        self.batches.provided.notify_waiters();
    }
}

impl Batches {
    /// The batches answering `keys` (key text, key), registered at once: a
    /// whole list's keys cost one lock, not one each. Keys already asked
    /// for join their batch; the rest join the batch still collecting, or
    /// open one, which this caller fetches after yielding once.
    pub async fn load_many<F, Fut>(
        &self,
        id: &BatchId,
        keys: Vec<(String, Json)>,
        fetch: F,
    ) -> Result<Vec<Grouped>, FieldError>
    where
        F: FnOnce(Vec<Json>) -> Fut,
        Fut: Future<Output = BatchOutcome>,
    {
        let (outcomes, opened) = self.join(id, keys);
        if opened {
            tokio::task::yield_now().await;
            self.wait_for_providers(&id.field).await;
            let pending = self.lock().pending.remove(id);
            if let Some(pending) = pending {
                let result = fetch(pending.keys).await;
                // Receivers may be gone (the operation was cancelled).
                let _ = pending.sender.send(result);
            }
        }
        let mut found = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome.await {
                Ok(Ok(grouped)) => found.push(grouped),
                Ok(Err(err)) => return Err(err),
                Err(_) => {
                    return Err(FieldError::new(
                        ErrorCode::Internal,
                        "the batch was cancelled",
                    ))
                }
            }
        }
        Ok(found)
    }

    /// Counts a call that may give keys to the batched `fields` (those
    /// below it in the operation) until the returned guard is dropped: the
    /// caller drops it once the answer is in, right before walking it,
    /// so its keys join the batch in that same turn.
    pub fn provide<'b>(&'b self, fields: &'b [Arc<str>]) -> Providing<'b> {
        if !fields.is_empty() {
            let mut state = self.lock();
            for field in fields {
                *state.providers.entry(field.clone()).or_default() += 1;
            }
        }
        Providing {
            batches: self,
            fields,
        }
    }

    /// Until no call that could give `field` keys is in flight.
    async fn wait_for_providers(&self, field: &Arc<str>) {
        loop {
            // Registered before the check, so a wake-up between the two
            // is not lost.
            let provided = self.provided.notified();
            if self.lock().providers.get(field).copied().unwrap_or(0) == 0 {
                return;
            }
            provided.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `keys`: the distinct batches that will answer them, and
    /// whether a new batch was opened (its fetch is the caller's job). The
    /// batch's id is hashed once per call, not once per key: a list's keys
    /// usually come in one call.
    fn join(&self, id: &BatchId, mut keys: Vec<(String, Json)>) -> (Vec<SharedOutcome>, bool) {
        let mut state = self.lock();
        let State { pending, known, .. } = &mut *state;
        if !known.contains_key(id) {
            known.insert(id.clone(), foldhash::HashMap::default());
        }
        let known = known.get_mut(id).expect("inserted above");
        let mut outcomes: Vec<SharedOutcome> = Vec::new();
        let mut opened = false;
        let add = |outcome: &SharedOutcome, outcomes: &mut Vec<SharedOutcome>| {
            if !outcomes.iter().any(|o| o.ptr_eq(outcome)) {
                outcomes.push(outcome.clone());
            }
        };
        keys.retain(|(text, _)| match known.get(text) {
            Some(outcome) => {
                add(outcome, &mut outcomes);
                false
            }
            None => true,
        });
        if keys.is_empty() {
            return (outcomes, opened);
        }
        // The keys not asked for before join the batch collecting this id's
        // keys, or open it.
        if !pending.contains_key(id) {
            let (sender, receiver) = oneshot::channel();
            let batch = PendingBatch {
                keys: Vec::with_capacity(keys.len()),
                sender,
                outcome: receiver.shared(),
            };
            pending.insert(id.clone(), batch);
            opened = true;
        }
        let batch = pending.get_mut(id).expect("inserted above");
        add(&batch.outcome, &mut outcomes);
        for (key_text, key) in keys {
            if known.insert(key_text, batch.outcome.clone()).is_none() {
                batch.keys.push(key);
            }
        }
        (outcomes, opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::json::{from_serde, key_text};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn keys_from_siblings_polled_together_share_one_fetch() {
        let batches = Batches::default();
        let calls = AtomicUsize::new(0);
        let id = BatchId {
            field: Arc::from("Order.product"),
            args: String::new(),
        };
        let load = |key: &str| {
            let key = key.to_owned();
            let id = id.clone();
            let batches = &batches;
            let calls = &calls;
            async move {
                batches
                    .load_many(&id, vec![(key.clone(), from_serde(&json!(key)))], |keys| {
                        calls.fetch_add(1, Ordering::SeqCst);
                        async move {
                            assert_eq!(
                                keys,
                                vec![from_serde(&json!("a")), from_serde(&json!("b"))],
                                "deduplicated, first-seen order"
                            );
                            let by_key: foldhash::HashMap<String, Vec<Json>> = keys
                                .iter()
                                .map(|k| {
                                    (key_text(k), vec![from_serde(&json!({"id": key_text(k)}))])
                                })
                                .collect();
                            Ok(Arc::new(BatchItems {
                                by_key,
                                stale: Default::default(),
                            }))
                        }
                    })
                    .await
            }
        };
        let results = futures::future::join_all([load("a"), load("b"), load("a")]).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let found = results[2].as_ref().expect("ok");
        assert_eq!(found.len(), 1, "one batch answered every key");
        assert_eq!(found[0].by_key["a"], vec![from_serde(&json!({"id": "a"}))]);
    }
}
