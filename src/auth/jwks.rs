//! A JWKS endpoint's keys: fetched at start-up, selected by `kid`, refetched
//! when an unknown `kid` arrives — at most once per `min_refetch`, so a
//! flood of made-up kids cannot hammer the IdP — and kept serving when a
//! refetch fails.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{AlgorithmFamily, DecodingKey};
use tokio::time::Instant;

pub struct Jwks {
    url: String,
    min_refetch: Duration,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, Arc<DecodingKey>>>,
    /// Key families by kid, to pick the only key of a family for tokens
    /// without a `kid`.
    families: RwLock<Vec<(String, AlgorithmFamily)>>,
    /// When the last fetch started; one fetch at a time.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    /// Creates the set and fetches it in the background until it succeeds.
    pub fn start(url: String, min_refetch: Duration, http: reqwest::Client) -> Arc<Jwks> {
        let jwks = Arc::new(Jwks {
            url,
            min_refetch,
            http,
            keys: RwLock::new(HashMap::new()),
            families: RwLock::new(Vec::new()),
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

    /// The key for `kid`, refetching the set once if it is unknown and the
    /// last fetch is older than `min_refetch`. The request waits for it.
    pub async fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        let mut last_fetch = self.last_fetch.lock().await;
        // Another request may have refetched while this one waited.
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        if last_fetch.is_some_and(|at| at.elapsed() < self.min_refetch) {
            return None;
        }
        *last_fetch = Some(Instant::now());
        self.fetch().await;
        self.cached(kid)
    }

    /// The single key of `family`, for tokens that carry no `kid`.
    pub fn only_key(&self, family: AlgorithmFamily) -> Option<Arc<DecodingKey>> {
        let families = self.families.read().unwrap_or_else(|e| e.into_inner());
        let mut matching = families.iter().filter(|(_, f)| *f == family);
        let (kid, _) = matching.next()?;
        if matching.next().is_some() {
            return None;
        }
        self.cached(kid)
    }

    fn cached(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned()
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
        let mut keys = HashMap::new();
        let mut families = Vec::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    families.push((kid.clone(), key.family()));
                    keys.insert(kid.clone(), Arc::new(key));
                }
                Err(err) => tracing::warn!(kid, error = %err, "JWKS key skipped"),
            }
        }
        tracing::info!(url = %self.url, keys = keys.len(), "JWKS loaded");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        *self.families.write().unwrap_or_else(|e| e.into_inner()) = families;
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
        response.json::<JwkSet>().await.map_err(|e| e.to_string())
    }
}
