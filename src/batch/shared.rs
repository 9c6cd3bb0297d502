//! Batches shared across client requests (docs/CONFIG.md `batch_window_ms`).
//! Within one operation, `Batches` collects a batched field's keys; what the
//! per-key cache cannot answer then comes here, where concurrent operations
//! making the same batched call pool their keys into shared calls.
//!
//! "The same batched call" is the request as it would be sent with no keys:
//! method, path, query, headers and body ([`GroupKey`]). A call carrying who
//! the user is (a forwarded `authorization`, a claims header) therefore
//! shares only with the same user's calls — the rule the response cache and
//! coalescing follow.
//!
//! A key already in a batch of the same call (in flight, or still collecting)
//! awaits that batch's answer; the others join the batch still collecting,
//! or open one. A new batch gathers other operations' keys only while
//! another batch of the same call is in flight: that is when there is
//! concurrent traffic to share with, so a lone request never waits. It
//! gathers the keys of the operations the gateway is working on at that
//! moment (see [`SharedBatches::gather`]), for at most `window`.
//!
//! The operation that opened a batch sends it with its own request builder
//! (every member's builds the same requests, their group keys being equal).
//! If that operation goes away before the answers are in, each member sends
//! its own keys instead: no member waits on a batch nobody sends.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};

use crate::connector::request::RequestIdentity;
use crate::upstream::json::{key_text, Json};

/// The service, and the batched request as built with no keys.
pub type GroupKey = (String, Arc<RequestIdentity>);

/// Batches of the gateway's batched calls, answered with `R`.
pub type BatchGroups<R> = SharedBatches<GroupKey, R>;

/// A sent batch: each call's keys (a JSON list) and what the call came to.
pub type Chunks<R> = Arc<Vec<(Json, R)>>;

type Outcome<R> = Shared<oneshot::Receiver<Chunks<R>>>;

pub struct SharedBatches<K, R> {
    groups: Mutex<foldhash::HashMap<K, Group<R>>>,
    next_id: AtomicU64,
}

impl<K, R> Default for SharedBatches<K, R> {
    fn default() -> Self {
        SharedBatches {
            groups: Mutex::default(),
            next_id: AtomicU64::new(0),
        }
    }
}

struct Group<R> {
    /// The batch still taking keys, if any.
    collecting: Option<Batch<R>>,
    /// Batches sent and not yet answered.
    in_flight: Vec<Batch<R>>,
}

impl<R> Default for Group<R> {
    fn default() -> Self {
        Group {
            collecting: None,
            in_flight: Vec::new(),
        }
    }
}

struct Batch<R> {
    id: u64,
    keys: Vec<Json>,
    texts: foldhash::HashSet<String>,
    /// Taken by the member that sends the batch.
    sender: Option<oneshot::Sender<Chunks<R>>>,
    outcome: Outcome<R>,
}

/// What a member registered: the batches it awaits (with its keys in each,
/// to send itself if that batch is abandoned), and the batch it opened.
struct Joined<R> {
    awaited: Vec<(u64, Outcome<R>, Vec<Json>)>,
    opened: Option<Opened>,
}

/// What a member's keys came to: the sent batches holding them, and, when
/// any of those may hold other requests' keys too, the member's own key texts
/// (`None`: every key in `chunks` is the member's).
pub struct SharedAnswer<R> {
    pub chunks: Vec<Chunks<R>>,
    pub mine: Option<foldhash::HashSet<String>>,
}

struct Opened {
    id: u64,
    /// Another batch of the call was in flight: wait for others' keys.
    wait: bool,
    /// How many of its keys are the opener's own.
    own: usize,
}

impl<K: Hash + Eq + Clone, R: Clone + Send + Sync + 'static> SharedBatches<K, R> {
    /// The answers for `keys` (distinct) of the batched call `group`:
    /// every sent batch holding any of them. `send` makes the calls for a
    /// set of keys; it runs for the batch this member opens, and for the
    /// keys of any batch its sender abandoned.
    pub async fn fetch<F, Fut>(
        &self,
        group: K,
        keys: Vec<Json>,
        window: Duration,
        send: F,
    ) -> SharedAnswer<R>
    where
        F: Fn(Vec<Json>) -> Fut,
        Fut: Future<Output = Vec<(Json, R)>>,
    {
        let joined = self.join(&group, keys);
        let mut found = Vec::with_capacity(joined.awaited.len() + 1);
        // The texts of this member's keys, made only when a batch it reads
        // may hold other requests' keys: an awaited batch, or the one it
        // opened when others joined it. Then it holds all of them.
        let mut mine: Option<foldhash::HashSet<String>> = None;
        // Whether a sent batch does hold keys of other requests.
        let mut foreign = false;
        let note = |mine: &mut Option<foldhash::HashSet<String>>, keys: &[Json]| {
            mine.get_or_insert_with(Default::default)
                .extend(keys.iter().map(key_text));
        };
        if let Some(opened) = joined.opened {
            // Takes the batch off the group however this member ends.
            let _leading = Leading {
                shared: self,
                group: &group,
                id: opened.id,
            };
            if opened.wait {
                self.gather(&group, opened.id, opened.own, window).await;
            }
            if let Some((keys, sender)) = self.start(&group, opened.id) {
                foreign |= keys.len() != opened.own;
                if foreign || !joined.awaited.is_empty() {
                    // The opener's keys come first in its batch.
                    note(&mut mine, &keys[..opened.own]);
                }
                let chunks = Arc::new(send(keys).await);
                // Members may be gone (their operations were cancelled).
                let _ = sender.send(chunks.clone());
                found.push(chunks);
            }
        }
        for (_, outcome, keys) in joined.awaited {
            note(&mut mine, &keys);
            match outcome.await {
                Ok(chunks) => {
                    foreign = true;
                    found.push(chunks)
                }
                // Its sender went away before the answers were in.
                Err(_) => found.push(Arc::new(send(keys).await)),
            }
        }
        SharedAnswer {
            chunks: found,
            mine: mine.filter(|_| foreign),
        }
    }

    fn join(&self, group: &K, keys: Vec<Json>) -> Joined<R> {
        let mut groups = self.lock();
        let entry = groups.entry(group.clone()).or_default();
        let mut awaited: Vec<(u64, Outcome<R>, Vec<Json>)> = Vec::new();
        let mut fresh: Vec<(String, Json)> = Vec::with_capacity(keys.len());
        for key in keys {
            let text = key_text(&key);
            let holder = entry
                .in_flight
                .iter()
                .chain(entry.collecting.iter())
                .find(|batch| batch.texts.contains(&text));
            match holder {
                Some(batch) => match awaited.iter_mut().find(|(id, ..)| *id == batch.id) {
                    Some((_, _, mine)) => mine.push(key),
                    None => awaited.push((batch.id, batch.outcome.clone(), vec![key])),
                },
                None => fresh.push((text, key)),
            }
        }
        if fresh.is_empty() {
            return Joined {
                awaited,
                opened: None,
            };
        }
        if let Some(collecting) = &mut entry.collecting {
            let mut mine = Vec::with_capacity(fresh.len());
            for (text, key) in fresh {
                if collecting.texts.insert(text) {
                    collecting.keys.push(key.clone());
                }
                mine.push(key);
            }
            match awaited.iter_mut().find(|(id, ..)| *id == collecting.id) {
                Some((_, _, earlier)) => earlier.extend(mine),
                None => awaited.push((collecting.id, collecting.outcome.clone(), mine)),
            }
            return Joined {
                awaited,
                opened: None,
            };
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        let own = fresh.len();
        let (batch_texts, keys) = fresh.into_iter().unzip();
        entry.collecting = Some(Batch {
            id,
            keys,
            texts: batch_texts,
            sender: Some(sender),
            outcome: receiver.shared(),
        });
        Joined {
            awaited,
            opened: Some(Opened {
                id,
                wait: !entry.in_flight.is_empty(),
                own,
            }),
        }
    }

    /// Lets the operations the gateway is working on add their keys to the
    /// collecting batch `id` before it is sent: each pass lets every other
    /// ready task run once (and the runtime read what has arrived), and
    /// another pass follows while the last one added keys, until `window`
    /// has passed. Waiting the whole window instead added its length (1-2 ms
    /// on tokio's millisecond timer) to every shared batch's latency under
    /// load for no fewer calls: without it the benchmark's batched workloads
    /// at 32 clients answer 8-17 % more queries per second, at the same
    /// calls per query (bench/README.md).
    async fn gather(&self, group: &K, id: u64, own: usize, window: Duration) {
        let deadline = tokio::time::Instant::now() + window;
        let mut seen = own;
        loop {
            tokio::task::yield_now().await;
            match self.collecting_keys(group, id) {
                Some(keys) if keys > seen && tokio::time::Instant::now() < deadline => seen = keys,
                _ => return,
            }
        }
    }

    /// How many keys the batch `id` holds while it is still collecting.
    fn collecting_keys(&self, group: &K, id: u64) -> Option<usize> {
        let groups = self.lock();
        let batch = groups.get(group)?.collecting.as_ref()?;
        (batch.id == id).then_some(batch.keys.len())
    }

    /// Closes the batch `id` to new keys and hands its keys and sender to
    /// the member sending it; later members still find its keys in flight.
    fn start(&self, group: &K, id: u64) -> Option<(Vec<Json>, oneshot::Sender<Chunks<R>>)> {
        let mut groups = self.lock();
        let entry = groups.get_mut(group)?;
        if entry.collecting.as_ref().is_none_or(|batch| batch.id != id) {
            return None;
        }
        let mut batch = entry.collecting.take()?;
        let keys = std::mem::take(&mut batch.keys);
        let sender = batch.sender.take()?;
        entry.in_flight.push(batch);
        Some((keys, sender))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<K, Group<R>>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn groups(&self) -> usize {
        self.lock().len()
    }
}

/// Removes the batch its member opened once that member is done with it,
/// answered or cancelled; the group goes with its last batch.
struct Leading<'a, K: Hash + Eq, R> {
    shared: &'a SharedBatches<K, R>,
    group: &'a K,
    id: u64,
}

impl<K: Hash + Eq, R> Drop for Leading<'_, K, R> {
    fn drop(&mut self) {
        let mut groups = self.shared.groups.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = groups.get_mut(self.group) else {
            return;
        };
        if entry
            .collecting
            .as_ref()
            .is_some_and(|batch| batch.id == self.id)
        {
            entry.collecting = None;
        }
        entry.in_flight.retain(|batch| batch.id != self.id);
        if entry.collecting.is_none() && entry.in_flight.is_empty() {
            groups.remove(self.group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::json::from_serde;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    type Shared = SharedBatches<&'static str, String>;
    const GROUP: &str = "GET /products?ids=";

    fn keys(texts: &[&str]) -> Vec<Json> {
        texts.iter().map(|t| from_serde(&json!(t))).collect()
    }

    /// Answers every key with its text, counting calls and keys sent.
    fn sender<'a>(
        calls: &'a AtomicUsize,
        sent: &'a Mutex<Vec<Vec<String>>>,
    ) -> impl Fn(Vec<Json>) -> futures::future::BoxFuture<'a, Vec<(Json, String)>> + 'a {
        move |keys: Vec<Json>| {
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                sent.lock()
                    .unwrap()
                    .push(keys.iter().map(key_text).collect());
                // Long enough for the other members to arrive meanwhile.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let answer = keys.iter().map(key_text).collect::<Vec<_>>().join(",");
                vec![(Json::from(keys), answer)]
            }
            .boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_members_pool_keys_into_one_call() {
        let shared = Shared::default();
        let (calls, sent) = (AtomicUsize::new(0), Mutex::new(Vec::new()));
        let window = Duration::from_millis(5);
        // The first batch goes at once (nothing in flight); the next two,
        // asked together while it is in flight, share one call.
        let first = shared.fetch(GROUP, keys(&["a", "b"]), window, sender(&calls, &sent));
        let later = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            futures::join!(
                shared.fetch(GROUP, keys(&["b", "c"]), window, sender(&calls, &sent)),
                shared.fetch(GROUP, keys(&["d", "a"]), window, sender(&calls, &sent)),
            )
        };
        let (first, (second, third)) = futures::join!(first, later);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            *sent.lock().unwrap(),
            vec![vec!["a", "b"], vec!["c", "d"]],
            "keys in flight are awaited, not sent again"
        );
        assert_eq!(first.chunks.len(), 1);
        assert!(first.mine.is_none(), "a's batch held only a's keys");
        let mine = |answer: &SharedAnswer<String>| {
            let mut texts: Vec<String> = answer.mine.clone().expect("shared").into_iter().collect();
            texts.sort();
            texts
        };
        assert_eq!(mine(&second), vec!["b", "c"]);
        assert_eq!(mine(&third), vec!["a", "d"]);
        let answers = |found: &SharedAnswer<String>| {
            let mut all: Vec<String> = found
                .chunks
                .iter()
                .flat_map(|c| c.iter().map(|(_, r)| r.clone()))
                .collect();
            all.sort();
            all
        };
        assert_eq!(answers(&second), vec!["a,b", "c,d"]);
        assert_eq!(answers(&third), vec!["a,b", "c,d"]);
        assert_eq!(shared.groups(), 0, "nothing is kept once answered");
    }

    #[tokio::test(start_paused = true)]
    async fn different_groups_never_share() {
        let shared = Shared::default();
        let (calls, sent) = (AtomicUsize::new(0), Mutex::new(Vec::new()));
        let other = "GET /products?user=2&ids=";
        let window = Duration::from_millis(5);
        futures::join!(
            shared.fetch(GROUP, keys(&["a"]), window, sender(&calls, &sent)),
            shared.fetch(other, keys(&["a"]), window, sender(&calls, &sent)),
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_whose_sender_goes_away_is_sent_by_its_members() {
        let shared = Shared::default();
        let (calls, sent) = (AtomicUsize::new(0), Mutex::new(Vec::new()));
        let window = Duration::from_millis(5);
        // Keeps a batch in flight, so that the next ones gather.
        let busy = shared.fetch(GROUP, keys(&["x"]), window, sender(&calls, &sent));
        let rest = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            // Sends a batch, and is cancelled before its answer is in.
            let opener = shared.fetch(GROUP, keys(&["a"]), window, sender(&calls, &sent));
            let member = async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                shared
                    .fetch(GROUP, keys(&["a", "b"]), window, sender(&calls, &sent))
                    .await
            };
            let (cancelled, found) = futures::join!(
                tokio::time::timeout(Duration::from_millis(2), opener),
                member
            );
            assert!(cancelled.is_err(), "the opener was cancelled");
            found
        };
        let (_, found) = futures::join!(busy, rest);
        assert!(
            found.mine.is_none(),
            "the member's answers hold only its keys"
        );
        let mut answers: Vec<String> = found.chunks.iter().map(|c| c[0].1.clone()).collect();
        answers.sort();
        assert_eq!(answers, vec!["a", "b"], "the member sent a itself");
        assert_eq!(
            *sent.lock().unwrap(),
            vec![vec!["x"], vec!["a"], vec!["b"], vec!["a"]],
            "b went in a batch of its own, a again once its sender was gone"
        );
        assert_eq!(shared.groups(), 0);
    }

    /// Under concurrent traffic a batch is sent once the operations in
    /// progress have added their keys, not after the whole window: one asked
    /// later makes its own call.
    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_keys_being_added_not_for_the_window() {
        let shared = Shared::default();
        let started = tokio::time::Instant::now();
        let sent_at = Mutex::new(Vec::new());
        let send = |keys: Vec<Json>| {
            sent_at.lock().unwrap().push((
                started.elapsed(),
                keys.iter().map(key_text).collect::<Vec<_>>(),
            ));
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                vec![(Json::from(keys), String::new())]
            }
            .boxed()
        };
        let window = Duration::from_secs(1);
        let ms = Duration::from_millis;
        futures::join!(
            // In flight from 0 to 50 ms.
            shared.fetch(GROUP, keys(&["x"]), window, send),
            async {
                tokio::time::sleep(ms(1)).await;
                futures::join!(
                    shared.fetch(GROUP, keys(&["a"]), window, send),
                    shared.fetch(GROUP, keys(&["b"]), window, send),
                )
            },
            async {
                tokio::time::sleep(ms(2)).await;
                shared.fetch(GROUP, keys(&["c"]), window, send).await
            },
        );
        assert_eq!(
            *sent_at.lock().unwrap(),
            vec![
                (ms(0), vec!["x".to_owned()]),
                (ms(1), vec!["a".to_owned(), "b".to_owned()]),
                (ms(2), vec!["c".to_owned()]),
            ]
        );
    }
}
