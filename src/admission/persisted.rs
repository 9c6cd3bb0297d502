//! Persisted queries (docs/CONFIG.md `[persisted_queries]`, docs/ERRORS.md): Apollo's
//! automatic persisted queries protocol and an operator's safelist.
//!
//! A request carries `extensions.persistedQuery = {version: 1, sha256Hash}`,
//! with or without `query`. Hash-only requests are looked up; a query with
//! a hash is verified and registered, so later clients send only the hash.

use std::collections::HashMap;
use std::sync::Arc;

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
    pub fn new(apq: bool, only_safelisted: bool, safelist: HashMap<String, String>) -> Self {
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
        }
    }

    /// The document to run for a request's `query` and `extensions`.
    pub fn resolve(
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
                    self.registered.insert(hash, query.clone());
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
                self.registered
                    .get(&hash)
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

    #[test]
    fn apq_asks_for_the_query_then_remembers_it() {
        let pq = PersistedQueries::new(true, false, HashMap::new());
        let query = "{ me { id } }";
        let hash = sha256_hex(query);
        assert_eq!(
            pq.resolve(None, Some(&ext(&hash))),
            Err(PersistedRefusal::not_found())
        );
        assert_eq!(
            pq.resolve(Some(query.into()), Some(&ext(&hash))).as_deref(),
            Ok(query)
        );
        assert_eq!(pq.resolve(None, Some(&ext(&hash))).as_deref(), Ok(query));
        assert_eq!(
            pq.resolve(Some("{ other }".into()), Some(&ext(&hash))),
            Err(PersistedRefusal::mismatch())
        );
    }

    #[test]
    fn only_safelisted_refuses_everything_else() {
        let query = "{ a }";
        let list = HashMap::from([(sha256_hex(query), query.to_owned())]);
        let pq = PersistedQueries::new(false, true, list);
        assert_eq!(pq.resolve(Some(query.into()), None).as_deref(), Ok(query));
        assert_eq!(
            pq.resolve(None, Some(&ext(&sha256_hex(query)))).as_deref(),
            Ok(query)
        );
        assert_eq!(
            pq.resolve(Some("{ b }".into()), None),
            Err(PersistedRefusal::not_allowed())
        );
        assert_eq!(
            pq.resolve(None, Some(&ext("00"))),
            Err(PersistedRefusal::not_allowed())
        );
    }
}
