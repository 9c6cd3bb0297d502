//! One batch's calls (docs/CONFIG.md `batch`): keys with a fresh per-key
//! cache entry are answered from it; the rest go `max` keys per call, the
//! calls made concurrently, every item grouped under the text of its
//! `match` field and cached per key. The cache is read, written and stood
//! in from through `fetch` (`Fetcher::lookup`, `Fetcher::store`,
//! `Lookup::stand_in`), the same functions a single call uses.

use std::sync::Arc;

use futures::future::join_all;
use sonic_rs::JsonValueTrait;

use super::shared::Chunks;
use super::{BatchItems, BatchOutcome};
use crate::connector::errors::Failed;
use crate::connector::request::{self, ClientContext, UpstreamRequest};
use crate::connector::template::{Looked, Placeholder, Root, Scope};
use crate::error::{ErrorCode, FieldError};
use crate::execute::operation::{CallLabel, OperationState};
use crate::fetch::{Fetched, Lifetime, Lookup};
use crate::schema::binding::BoundBatch;
use crate::upstream::json::{self, key_text, Json};
use crate::upstream::{CacheDirectives, UpstreamAnswer};

/// Fetches the batch of `keys` for the field bound as `batch`; `scope` and
/// `client` fill the call's other placeholders and headers; `field` names
/// the field in the debug waterfall.
pub async fn fetch(
    batch: &BoundBatch,
    keys: Vec<Json>,
    scope: &(dyn Scope + Sync),
    client: &ClientContext<'_>,
    state: &OperationState,
    field: Option<Arc<str>>,
) -> BatchOutcome {
    let spec = &batch.spec;
    // `keys`: a JSON list, which `{keys}` renders.
    let build = |keys: &Json, client: &ClientContext| -> Result<UpstreamRequest, FieldError> {
        let scope = WithKeys { inner: scope, keys };
        request::build(&spec.call, &batch.service, &scope, client, batch.timeout).map_err(|p| {
            FieldError::new(
                ErrorCode::MissingValue,
                format!("the batched call needs a value for `{p}`"),
            )
        })
    };
    // Requests built only for their identity (cache keys, the sharing
    // group) are never sent: no trace context is made for them.
    let identity_only = ClientContext {
        headers: client.headers,
        claims: client.claims,
        trace: (client.trace.0, false),
    };
    let mut grouped = BatchItems::default();
    grouped.by_key.reserve(keys.len());
    // Per-key cache entries, by key text, are keyed by the call that would
    // fetch that one key alone, so they carry the same identity (headers
    // included).
    let mut cache_keys: Vec<(String, String)> = Vec::new();
    let mut stand_ins: foldhash::HashMap<String, Json> = foldhash::HashMap::default();
    let mut missing = Vec::with_capacity(keys.len());
    // Whether the calls carry who the user is (any one key's call does
    // when the whole batch's does).
    let mut personal = false;
    match batch.cache {
        Some(_) => {
            for key in keys {
                let single = build(&Json::from(vec![key.clone()]), &identity_only)?;
                personal |= single.personal;
                // `b`: a batch's per-key entries are not a mutation's to
                // invalidate (docs/CACHING.md).
                let cache_key = format!("b{}", single.identity().fingerprint(&batch.service.name));
                let text = key_text(&key);
                match state.fetcher.lookup(&cache_key).await {
                    Lookup::Fresh(entry) if entry.value.as_ref().is_some_and(|v| v.is_array()) => {
                        state.note_lifetime(Lifetime::of_entry(&entry, single.personal));
                        let items = entry.value.as_ref().and_then(json::items);
                        grouped
                            .by_key
                            .insert(text, items.unwrap_or_default().to_vec());
                        continue;
                    }
                    lookup => {
                        if let Some(value) = lookup.stand_in().and_then(|e| e.value.clone()) {
                            stand_ins.insert(text.clone(), value);
                        }
                    }
                }
                cache_keys.push((text, cache_key));
                missing.push(key);
            }
        }
        None => missing = keys,
    }
    if missing.is_empty() {
        return Ok(Arc::new(grouped));
    }
    // The calls for a set of keys, `max` keys each, made concurrently.
    let field = &field;
    // Each call's keys are moved into the list its `{keys}` renders, which
    // the answer keeps: they are not copied.
    let send = |keys: Vec<Json>| async move {
        let calls = chunked(keys, spec.max).into_iter().map(|chunk| async {
            let result = match build(&chunk, client) {
                // The per-key entries are the cache here, not the whole call.
                Ok(request) => state
                    .fetch(
                        &batch.service,
                        request,
                        None,
                        CallLabel {
                            path: spec.call.path_text.clone(),
                            batch_size: Some(json::items(&chunk).map_or(0, <[Json]>::len)),
                            field: field.clone(),
                        },
                    )
                    .await
                    .map_err(|err| spec.call.answers.failed(&err, scope)),
                Err(err) => Err(Failed::Error(err)),
            };
            (chunk, result)
        });
        join_all(calls).await
    };
    // docs/CONFIG.md `batch_window_ms`: pooled with other client requests'
    // keys of the same call; never for a service whose answers carry
    // headers for the client (one user's `Set-Cookie` must not reach
    // another).
    let service = &batch.service;
    let shared = !service.batch_window.is_zero() && service.forward_response_headers.is_empty();
    // With sharing, a sent batch may hold other requests' keys too (`mine`
    // is then this request's): only this request's are read from it.
    let (sent, mine): (Vec<Chunks<Result<Fetched, Failed>>>, _) = if shared {
        let group = (
            service.name.clone(),
            build(&Json::new_array(), &identity_only)?.identity(),
        );
        let answer = state
            .fetcher
            .shared_batches
            .fetch(group, missing, service.batch_window, send)
            .await;
        (answer.chunks, answer.mine)
    } else {
        (vec![Arc::new(send(missing).await)], None)
    };
    let is_mine = |text: &str| mine.as_ref().is_none_or(|mine| mine.contains(text));
    let mut directives = CacheDirectives::default();
    for (chunk, answer) in sent.iter().flat_map(|chunks| chunks.iter()) {
        let chunk = json::items(chunk).unwrap_or_default();
        if mine.is_some() && !chunk.iter().any(|key| is_mine(&key_text(key))) {
            continue;
        }
        let fetched = match answer {
            Ok(fetched) => fetched,
            // docs/SHAPING.md `null_on`: like a 404, none of its keys matched.
            Err(Failed::Null(_)) => continue,
            Err(Failed::Error(err)) => {
                // docs/CONFIG.md `stale_if_error_s`: when every key of the failed
                // call has a stale entry, those stand in, marked stale.
                let texts: Vec<String> =
                    chunk.iter().map(key_text).filter(|t| is_mine(t)).collect();
                if texts.iter().all(|t| stand_ins.contains_key(t)) {
                    state.note_lifetime(Lifetime::NO_STORE);
                    for text in texts {
                        let entry = stand_ins.remove(&text);
                        if let Some(items) = entry.as_ref().and_then(json::items) {
                            grouped.by_key.insert(text.clone(), items.to_vec());
                        }
                        grouped.stale.insert(text);
                    }
                    continue;
                }
                return Err(err.clone());
            }
        };
        state.note_lifetime(match batch.cache {
            Some(policy) => Lifetime::of_answer(&fetched.answer, policy, personal),
            None => Lifetime::NO_STORE,
        });
        match &*fetched.answer {
            // A 404 for a batch: none of its keys matched.
            UpstreamAnswer::NotFound => continue,
            UpstreamAnswer::Json {
                cache, forwarded, ..
            } => {
                directives = directives.strictest(*cache);
                // An answer with headers for the client is not cached.
                directives.no_store |= !forwarded.is_empty();
            }
        }
        let Some(items) = selected(&fetched.answer, spec.call.select.as_deref()) else {
            return Err(FieldError::new(
                ErrorCode::UpstreamBadResponse,
                format!(
                    "service `{}` answered a batch with something other than a list",
                    batch.service.name
                ),
            )
            .from_service(&batch.service.name));
        };
        for item in items {
            if let Some(text) = json::at(item, &spec.match_field).map(json::key_text) {
                if is_mine(&text) {
                    grouped.by_key.entry(text).or_default().push(item.clone());
                }
            }
        }
    }
    if let Some(policy) = batch.cache {
        for (text, cache_key) in cache_keys {
            if grouped.stale.contains(&text) {
                continue;
            }
            let items = grouped.by_key.get(&text).cloned().unwrap_or_default();
            let answer = UpstreamAnswer::Json {
                value: Json::from(items),
                cache: directives,
                forwarded: Vec::new(),
            };
            state.fetcher.store(cache_key, &answer, policy).await;
        }
    }
    Ok(Arc::new(grouped))
}

/// `keys` as lists of at most `max` keys, in order.
fn chunked(keys: Vec<Json>, max: usize) -> Vec<Json> {
    let mut keys = keys.into_iter().peekable();
    let mut lists = Vec::new();
    while keys.peek().is_some() {
        lists.push(Json::from(
            keys.by_ref().take(max.max(1)).collect::<Vec<_>>(),
        ));
    }
    lists
}

/// The list of items at `select` in a batch's answer.
fn selected<'a>(answer: &'a UpstreamAnswer, select: Option<&[String]>) -> Option<&'a [Json]> {
    let value = answer.json()?;
    let list = match select {
        Some(path) => json::at(value, path).unwrap_or(&json::NULL),
        None => value,
    };
    json::items(list)
}

/// A field's scope plus `{keys}` for one batched call.
struct WithKeys<'a> {
    inner: &'a (dyn Scope + Sync),
    keys: &'a Json,
}

impl Scope for WithKeys<'_> {
    fn lookup(&self, placeholder: &Placeholder) -> Option<Looked<'_>> {
        match placeholder.root {
            Root::Keys => Some(Looked::Upstream(self.keys)),
            _ => self.inner.lookup(placeholder),
        }
    }
}
