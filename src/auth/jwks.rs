//! A JWKS endpoint's keys: fetched at start-up, selected by `kid` and the
//! token's `alg` (the key's type, and the JWK's own `alg` when it names
//! one), refetched when no key matches — at most once per `min_refetch`, so a
//! flood of made-up kids cannot hammer the IdP — and kept serving when a
//! refetch fails.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use tokio::time::Instant;

/// The largest JWKS document read (docs/SECURITY.md).
const MAX_JWKS_BYTES: usize = 1024 * 1024;

pub struct Jwks {
    url: String,
    min_refetch: Duration,
    http: reqwest::Client,
    /// The set's usable keys, in its order. Several may share a `kid`
    /// (RFC 7517 §4.5: e.g. an RSA and an EC key for one purpose), so a
    /// key is chosen by kid and the token's algorithm together.
    keys: RwLock<Vec<PublishedKey>>,
    /// When the last fetch started; one fetch at a time.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// One key of the set, with what it may verify.
struct PublishedKey {
    kid: String,
    /// From the key's type (`kty`): RSA keys verify RS*/PS*, EC keys ES*,
    /// OKP keys EdDSA.
    family: AlgorithmFamily,
    /// The JWK's `alg`, when it has one: then only that algorithm.
    algorithm: Option<Algorithm>,
    key: Arc<DecodingKey>,
}

impl PublishedKey {
    fn verifies(&self, algorithm: Algorithm) -> bool {
        self.family == algorithm.family() && self.algorithm.is_none_or(|only| only == algorithm)
    }
}

impl Jwks {
    /// Creates the set and fetches it in the background until it succeeds.
    pub fn start(url: String, min_refetch: Duration, http: reqwest::Client) -> Arc<Jwks> {
        let jwks = Arc::new(Jwks {
            url,
            min_refetch,
            http,
            keys: RwLock::new(Vec::new()),
            last_fetch: tokio::sync::Mutex::new(None),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let background = jwks.clone();
            runtime.spawn(async move {
                loop {
                    *background.last_fetch.lock().await = Some(Instant::now());
                    if background.fetch().await {
                        break;
                    }
                    tokio::time::sleep(background.min_refetch.max(Duration::from_secs(1))).await;
                }
            });
        }
        jwks
    }

    /// The keys of id `kid` that verify `algorithm`, refetching the set
    /// once if there is none and the last fetch is older than
    /// `min_refetch`. The request waits for it.
    pub async fn keys(&self, kid: &str, algorithm: Algorithm) -> Vec<Arc<DecodingKey>> {
        let found = self.cached(kid, algorithm);
        if !found.is_empty() {
            return found;
        }
        let mut last_fetch = self.last_fetch.lock().await;
        // Another request may have refetched while this one waited.
        let found = self.cached(kid, algorithm);
        if !found.is_empty() {
            return found;
        }
        if last_fetch.is_some_and(|at| at.elapsed() < self.min_refetch) {
            return Vec::new();
        }
        *last_fetch = Some(Instant::now());
        self.fetch().await;
        self.cached(kid, algorithm)
    }

    /// The single key that verifies `algorithm`, for tokens that carry no
    /// `kid`; `None` when there are several (which one is meant is unknown).
    pub fn only_key(&self, algorithm: Algorithm) -> Option<Arc<DecodingKey>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let mut matching = keys.iter().filter(|k| k.verifies(algorithm));
        let only = matching.next()?;
        if matching.next().is_some() {
            return None;
        }
        Some(only.key.clone())
    }

    fn cached(&self, kid: &str, algorithm: Algorithm) -> Vec<Arc<DecodingKey>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|k| k.kid == kid && k.verifies(algorithm))
            .map(|k| k.key.clone())
            .collect()
    }

    /// Replaces the keys with the endpoint's; on failure the old keys stay.
    async fn fetch(&self) -> bool {
        let set = match self.download().await {
            Ok(set) => set,
            Err(reason) => {
                tracing::warn!(url = %self.url, %reason, "JWKS fetch failed; keeping the previous keys");
                return false;
            }
        };
        let keys: Vec<PublishedKey> = set.keys.iter().filter_map(published_key).collect();
        tracing::info!(url = %self.url, keys = keys.len(), "JWKS loaded");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        true
    }

    async fn download(&self) -> Result<JwkSet, String> {
        let response = self
            .http
            .get(&self.url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        // Read in chunks up to a bound: a key set is a few kilobytes, and a
        // hostile or broken endpoint must not make the gateway buffer more.
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the key set is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice::<JwkSet>(&body).map_err(|e| e.to_string())
    }
}

/// A JWK as a verification key; `None` (logged) for one without a `kid`,
/// one that does not parse, or one whose `alg` is no signature algorithm
/// Conflux knows (e.g. `RSA-OAEP`, an encryption key).
fn published_key(jwk: &Jwk) -> Option<PublishedKey> {
    let kid = jwk.common.key_id.as_ref()?;
    let algorithm = match jwk.common.key_algorithm {
        None => None,
        Some(named) => match Algorithm::try_from(named) {
            Ok(algorithm) => Some(algorithm),
            Err(_) => {
                tracing::warn!(kid, alg = %named, "JWKS key skipped: not a signature algorithm");
                return None;
            }
        },
    };
    match DecodingKey::from_jwk(jwk) {
        Ok(key) => Some(PublishedKey {
            kid: kid.clone(),
            family: key.family(),
            algorithm,
            key: Arc::new(key),
        }),
        Err(err) => {
            tracing::warn!(kid, error = %err, "JWKS key skipped");
            None
        }
    }
}
