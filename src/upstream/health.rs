//! Active health: with `health = { path, interval_ms }`, one background
//! task per instance asks `GET <instance><path>` every interval. A check
//! fails on a non-2xx answer, no answer within 2 s, or a connect error; a
//! failing instance gets no call until a check passes. An instance is
//! usable before its first check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::instance::Instance;
use crate::config::HealthCheckConfig;

/// How long one check may take (docs/CONFIG.md).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The last health check's verdict on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HealthStatus {
    /// Not checked yet, or the service has no `health`: usable.
    Unknown = 0,
    Passing = 1,
    Failing = 2,
}

impl HealthStatus {
    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => HealthStatus::Passing,
            2 => HealthStatus::Failing,
            _ => HealthStatus::Unknown,
        }
    }
}

/// What one instance's checker needs; no reference back to the client, so
/// dropping the client stops everything.
pub struct Checker {
    instance: Arc<Instance>,
    http: reqwest::Client,
    config: HealthCheckConfig,
    /// The service's static `headers` (an API key may guard `/health` too).
    headers: HeaderMap,
}

impl Checker {
    pub fn new(
        instance: Arc<Instance>,
        http: reqwest::Client,
        config: HealthCheckConfig,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Self {
        Checker {
            instance,
            http,
            config,
            headers: headers.iter().cloned().collect(),
        }
    }

    /// Checks now, then every interval, forever. A slow check delays the
    /// next one rather than piling up behind it.
    async fn run(self) {
        let url = format!("{}{}", self.instance.url, self.config.path);
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let passed = self.check(&url).await;
            self.instance.record_health(passed);
        }
    }

    async fn check(&self, url: &str) -> bool {
        let answer = self
            .http
            .get(url)
            .headers(self.headers.clone())
            .timeout(CHECK_TIMEOUT)
            .send()
            .await;
        match answer {
            Ok(response) => {
                let passed = response.status().is_success();
                // Read the body so the connection goes back to the pool.
                let body = response.bytes().await;
                if !passed {
                    tracing::debug!(
                        service = %self.instance.service,
                        instance = %self.instance.label,
                        "health check answered an error status"
                    );
                }
                passed && body.is_ok()
            }
            Err(err) => {
                tracing::debug!(
                    service = %self.instance.service,
                    instance = %self.instance.label,
                    error = %err,
                    "health check got no answer"
                );
                false
            }
        }
    }
}

/// The running checker tasks. Dropping this aborts them all (`JoinSet`
/// does), so they live exactly as long as the client that owns it.
#[derive(Default)]
pub struct HealthChecks {
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl HealthChecks {
    /// Spawns one task per checker, once: later calls do nothing, so
    /// serving the same gateway twice does not double the checks.
    pub fn start(&self, checkers: impl IntoIterator<Item = Checker>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if tasks.is_some() {
            return;
        }
        let mut set = JoinSet::new();
        for checker in checkers {
            set.spawn(checker.run());
        }
        *tasks = Some(set);
    }
}

impl std::fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = self
            .tasks
            .lock()
            .map(|tasks| tasks.as_ref().map_or(0, JoinSet::len))
            .unwrap_or(0);
        f.debug_struct("HealthChecks")
            .field("running", &running)
            .finish()
    }
}
