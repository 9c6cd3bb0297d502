//! State that lives for one GraphQL operation: the client's headers, and
//! the calls already made, so identical GETs are sent once (SPEC §3).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::{PathSegment, ServerError};
use futures::future::{BoxFuture, FutureExt, Shared};
use http::HeaderMap;
use tokio::time::Instant;

use crate::auth::Claims;
use crate::batch::Batches;
use crate::config::ServiceConfig;
use crate::connector::request::{RequestIdentity, UpstreamRequest};
use crate::fetch::{CachePolicy, Fetched, Fetcher};
use crate::upstream::UpstreamError;

pub type CallResult = Result<Fetched, UpstreamError>;
type SharedCall = Shared<BoxFuture<'static, CallResult>>;

pub struct OperationState {
    pub fetcher: Arc<Fetcher>,
    /// The client request's headers, for `forward_headers` and `{headers.…}`.
    pub client_headers: HeaderMap,
    /// The verified token's claims; `None` for an anonymous request.
    pub claims: Option<Claims>,
    /// When `[limits].request_timeout_ms` runs out for this operation.
    pub deadline: Instant,
    /// Every GET of this operation by (service, request): a later identical
    /// call awaits the first one's answer instead of calling again.
    calls: Mutex<HashMap<(String, RequestIdentity), SharedCall>>,
    /// Keys of batched fields, collected across the operation.
    pub batches: Batches,
    /// Errors of list items nulled while shaping a field's value; the
    /// executor cannot see them, so they are added to the response after.
    item_errors: Mutex<Vec<ServerError>>,
    /// Paths (`search.1`) of object list items that are null. The dynamic
    /// executor would resolve an object's fields even on a null item, so
    /// `ResponseRules` answers these paths with null instead.
    null_items: Mutex<HashSet<String>>,
    has_null_items: AtomicBool,
    /// Paths served from stale cache entries (`extensions.conflux.stale`).
    stale_paths: Mutex<Vec<Vec<PathSegment>>>,
}

impl OperationState {
    pub fn new(
        fetcher: Arc<Fetcher>,
        client_headers: HeaderMap,
        claims: Option<Claims>,
        deadline: Instant,
    ) -> Self {
        OperationState {
            fetcher,
            client_headers,
            claims,
            deadline,
            calls: Mutex::new(HashMap::new()),
            batches: Batches::default(),
            item_errors: Mutex::new(Vec::new()),
            null_items: Mutex::new(HashSet::new()),
            has_null_items: AtomicBool::new(false),
            stale_paths: Mutex::new(Vec::new()),
        }
    }

    pub fn mark_null_item(&self, path: String) {
        self.has_null_items.store(true, Ordering::Release);
        self.null_items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path);
    }

    /// Whether the item at `path` was shaped to null; `path` is built only
    /// when some item was.
    pub fn is_null_item(&self, path: impl FnOnce() -> String) -> bool {
        self.has_null_items.load(Ordering::Acquire)
            && self
                .null_items
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&path())
    }

    pub fn report(&self, error: ServerError) {
        self.item_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(error);
    }

    pub fn take_item_errors(&self) -> Vec<ServerError> {
        std::mem::take(&mut *self.item_errors.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Sends `request` (through the cache and coalescing), or joins the
    /// identical GET this operation already made.
    pub async fn fetch(
        &self,
        service: &Arc<ServiceConfig>,
        request: UpstreamRequest,
        policy: Option<CachePolicy>,
    ) -> CallResult {
        if !request.is_deduplicable() {
            return self.fetcher.fetch(service, request, policy).await;
        }
        let call = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls
                .entry((service.name.clone(), request.identity()))
                .or_insert_with(|| {
                    let fetcher = self.fetcher.clone();
                    let service = service.clone();
                    async move { fetcher.fetch(&service, request, policy).await }
                        .boxed()
                        .shared()
                })
                .clone()
        };
        call.await
    }

    /// Records that the field at `path` was served from a stale cache entry.
    pub fn mark_stale(&self, path: Vec<PathSegment>) {
        self.stale_paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path);
    }

    pub fn take_stale_paths(&self) -> Vec<Vec<PathSegment>> {
        std::mem::take(&mut *self.stale_paths.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
