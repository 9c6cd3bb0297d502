//! Persisted queries (docs/CONFIG.md `[persisted_queries]`, docs/ERRORS.md): Apollo's
//! automatic persisted queries protocol and an operator's safelist.
//!
//! A request carries `extensions.persistedQuery = {version: 1, sha256Hash}`,
//! with or without `query`. Hash-only requests are looked up; a query with
//! a hash is verified and registered, so later clients send only the hash.
//!
//! With `[cache].backend = "redis"` registered documents go to Redis too
//! ([`SharedStore`]), so a hash registered on one instance is known to
//! every instance; with Redis unreachable each instance keeps serving from
//! its own store, and says so once per outage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cache::ByteBoundedCache;
use crate::error::ErrorCode;

/// What the APQ store may hold, in bytes: each registered document's text
/// and hash. Thousands of ordinary documents; 10,000 entries alone were no
/// bound (10,000 documents of 1 MB would be 10 GB). Rarely used ones go
/// first.
pub const APQ_STORE_BYTES: u64 = 8 * 1024 * 1024;

pub struct PersistedQueries {
    apq: bool,
    only_safelisted: bool,
    /// sha256 (lowercase hex) → document, from the `safelist` file.
    safelist: HashMap<String, Arc<str>>,
    /// Documents registered through APQ.
    registered: ByteBoundedCache<String, Arc<str>>,
    /// Every instance's registered documents, with `[cache].backend = "redis"`.
    shared: Option<SharedStore>,
}

/// How long a registered document stays in Redis after its last
/// registration.
const SHARED_TTL: Duration = Duration::from_secs(24 * 60 * 60);
use crate::redis_connection::TIMEOUT as REDIS_TIMEOUT;

/// Registered documents in Redis, under `conflux:apq:<sha256>`.
pub struct SharedStore {
    connection: redis::aio::ConnectionManager,
    /// Redis failed last time: said once, until it answers again.
    down: AtomicBool,
}

impl SharedStore {
    pub fn new(url: &str) -> Result<SharedStore, String> {
        let connection = crate::redis_connection::connect(url)?;
        Ok(SharedStore {
            connection,
            down: AtomicBool::new(false),
        })
    }

    async fn get(&self, hash: &str) -> Option<String> {
        let mut get = redis::cmd("GET");
        get.arg(format!("conflux:apq:{hash}"));
        self.run::<Option<String>>(get).await.flatten()
    }

    async fn put(&self, hash: &str, query: &str) {
        let mut set = redis::cmd("SET");
        set.arg(format!("conflux:apq:{hash}"))
            .arg(query)
            .arg("EX")
            .arg(SHARED_TTL.as_secs());
        self.run::<()>(set).await;
    }

    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Option<T> {
        let mut connection = self.connection.clone();
        let sent = command.query_async::<T>(&mut connection);
        let problem = match tokio::time::timeout(REDIS_TIMEOUT, sent).await {
            Ok(Ok(value)) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("persisted queries: Redis reachable again");
                }
                return Some(value);
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => "no answer in time".to_owned(),
        };
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reason = %problem,
                "persisted queries: Redis unreachable, using this instance's own store"
            );
        }
        None
    }
}

/// Why a request's document is refused, and whether HTTP says 200 (the
/// APQ "ask again" answers Apollo clients expect) or 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedRefusal {
    pub code: ErrorCode,
    pub message: &'static str,
    pub bad_request: bool,
}

impl PersistedRefusal {
    fn not_found() -> Self {
        // Apollo clients match on this exact message.
        PersistedRefusal {
            code: ErrorCode::PersistedQueryNotFound,
            message: "PersistedQueryNotFound",
            bad_request: false,
        }
    }

    fn not_supported() -> Self {
        PersistedRefusal {
            code: ErrorCode::PersistedQueryNotSupported,
            message: "PersistedQueryNotSupported",
            bad_request: false,
        }
    }

    fn mismatch() -> Self {
        PersistedRefusal {
            code: ErrorCode::PersistedQueryHashMismatch,
            message: "the query does not hash to the given sha256Hash",
            bad_request: true,
        }
    }

    fn not_allowed() -> Self {
        PersistedRefusal {
            code: ErrorCode::PersistedQueryNotAllowed,
            message: "only safelisted operations may run on this gateway",
            bad_request: true,
        }
    }

    fn no_query() -> Self {
        PersistedRefusal {
            code: ErrorCode::BadRequest,
            message: "the request has no `query`",
            bad_request: true,
        }
    }
}

/// The lowercase hex sha256 of a document, as APQ and safelists key it.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl PersistedQueries {
    /// `shared`: the Redis store, with `[cache].backend = "redis"`.
    pub fn new(
        apq: bool,
        only_safelisted: bool,
        safelist: HashMap<String, String>,
        shared: Option<SharedStore>,
    ) -> Self {
        PersistedQueries {
            apq,
            only_safelisted,
            safelist: safelist
                .into_iter()
                .map(|(hash, query)| (hash.to_ascii_lowercase(), Arc::from(query)))
                .collect(),
            registered: ByteBoundedCache::new(APQ_STORE_BYTES, |hash, query| {
                hash.len() + query.len()
            }),
            shared,
        }
    }

    /// A registered document: this instance's, else the shared store's
    /// (checked against its hash, then kept here too).
    async fn registered(&self, hash: &str) -> Option<Arc<str>> {
        if let Some(query) = self.registered.get(&hash.to_owned()) {
            return Some(query);
        }
        let query = self.shared.as_ref()?.get(hash).await?;
        if sha256_hex(&query) != hash {
            return None;
        }
        let query: Arc<str> = Arc::from(query);
        self.registered.insert(hash.to_owned(), query.clone());
        Some(query)
    }

    async fn register(&self, hash: String, query: Arc<str>) {
        if let Some(shared) = &self.shared {
            shared.put(&hash, &query).await;
        }
        self.registered.insert(hash, query);
    }

    /// The document to run for a request's `query` and `extensions`.
    pub async fn resolve(
        &self,
        query: Option<String>,
        extensions: Option<&Value>,
    ) -> Result<Arc<str>, PersistedRefusal> {
        let hash = extensions
            .and_then(|e| e.get("persistedQuery"))
            .and_then(|p| p.get("sha256Hash"))
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let carries_apq = extensions.is_some_and(|e| e.get("persistedQuery").is_some());
        match (query, hash) {
            (Some(query), Some(hash)) => {
                if sha256_hex(&query) != hash {
                    return Err(PersistedRefusal::mismatch());
                }
                let safelisted = self.safelist.contains_key(&hash);
                if self.only_safelisted && !safelisted {
                    return Err(PersistedRefusal::not_allowed());
                }
                if !self.apq && !safelisted {
                    return Err(PersistedRefusal::not_supported());
                }
                let query: Arc<str> = Arc::from(query);
                if self.apq && !safelisted {
                    Box::pin(self.register(hash, query.clone())).await;
                }
                Ok(query)
            }
            (None, Some(hash)) => {
                if let Some(query) = self.safelist.get(&hash) {
                    return Ok(query.clone());
                }
                if self.only_safelisted {
                    return Err(PersistedRefusal::not_allowed());
                }
                if !self.apq {
                    return Err(PersistedRefusal::not_supported());
                }
                Box::pin(self.registered(&hash))
                    .await
                    .ok_or_else(PersistedRefusal::not_found)
            }
            (Some(_), None) if carries_apq && !self.apq => Err(PersistedRefusal::not_supported()),
            (Some(query), None) => {
                if self.only_safelisted && !self.safelist.contains_key(&sha256_hex(&query)) {
                    return Err(PersistedRefusal::not_allowed());
                }
                Ok(Arc::from(query))
            }
            (None, None) if carries_apq && !self.apq => Err(PersistedRefusal::not_supported()),
            (None, None) => Err(PersistedRefusal::no_query()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ext(hash: &str) -> Value {
        json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
    }

    #[tokio::test]
    async fn apq_asks_for_the_query_then_remembers_it() {
        let pq = PersistedQueries::new(true, false, HashMap::new(), None);
        let query = "{ me { id } }";
        let hash = sha256_hex(query);
        assert_eq!(
            pq.resolve(None, Some(&ext(&hash))).await,
            Err(PersistedRefusal::not_found())
        );
        assert_eq!(
            pq.resolve(Some(query.into()), Some(&ext(&hash)))
                .await
                .as_deref(),
            Ok(query)
        );
        assert_eq!(
            pq.resolve(None, Some(&ext(&hash))).await.as_deref(),
            Ok(query)
        );
        assert_eq!(
            pq.resolve(Some("{ other }".into()), Some(&ext(&hash)))
                .await,
            Err(PersistedRefusal::mismatch())
        );
    }

    #[tokio::test]
    async fn only_safelisted_refuses_everything_else() {
        let query = "{ a }";
        let list = HashMap::from([(sha256_hex(query), query.to_owned())]);
        let pq = PersistedQueries::new(false, true, list, None);
        assert_eq!(
            pq.resolve(Some(query.into()), None).await.as_deref(),
            Ok(query)
        );
        assert_eq!(
            pq.resolve(None, Some(&ext(&sha256_hex(query))))
                .await
                .as_deref(),
            Ok(query)
        );
        assert_eq!(
            pq.resolve(Some("{ b }".into()), None).await,
            Err(PersistedRefusal::not_allowed())
        );
        assert_eq!(
            pq.resolve(None, Some(&ext("00"))).await,
            Err(PersistedRefusal::not_allowed())
        );
    }

    /// Log lines written while a test runs.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_this_instances_store_and_is_logged_once() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        let _logging = tracing::subscriber::set_default(subscriber);
        // A port nobody listens on any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let shared = SharedStore::new(&format!("redis://127.0.0.1:{port}")).expect("a valid URL");
        let pq = PersistedQueries::new(true, false, HashMap::new(), Some(shared));
        for n in 0..3 {
            let query = format!("{{ field{n} }}");
            let hash = sha256_hex(&query);
            assert_eq!(
                pq.resolve(Some(query.clone()), Some(&ext(&hash)))
                    .await
                    .as_deref(),
                Ok(query.as_str())
            );
            assert_eq!(
                pq.resolve(None, Some(&ext(&hash))).await.as_deref(),
                Ok(query.as_str())
            );
        }
        assert_eq!(
            pq.resolve(None, Some(&ext(&sha256_hex("{ never }")))).await,
            Err(PersistedRefusal::not_found())
        );
        let logged = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("text");
        assert_eq!(
            logged.matches("Redis unreachable").count(),
            1,
            "one line per outage, not per request:\n{logged}"
        );
    }
}
