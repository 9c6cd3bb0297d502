//! The HTTP client to the REST services: one pooled `reqwest::Client` for
//! the process, instances picked round-robin, GET retries on another
//! instance within the call's time budget, and every failure classified
//! with its source and whether it may be retried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use indexmap::IndexMap;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::ServiceConfig;
use crate::connector::request::UpstreamRequest;
use crate::error::{ErrorCode, FieldError};

/// How an upstream call failed. Retries and error codes decide from this,
/// not from strings.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamFailure {
    /// The service answered a non-2xx status other than 404.
    Status(u16),
    /// No answer within the call's timeout.
    Timeout,
    /// The connection could not be made.
    Unavailable,
    /// 2xx, but the body was not JSON.
    BadResponse,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamError {
    pub service: Arc<str>,
    pub failure: UpstreamFailure,
}

impl UpstreamError {
    /// The client-facing error: names the service and status, never the
    /// URL or the upstream's body.
    pub fn to_field_error(&self) -> FieldError {
        let service = &*self.service;
        let (code, message, status) = match &self.failure {
            UpstreamFailure::Status(status) => (
                ErrorCode::UpstreamError,
                format!("service `{service}` answered HTTP {status}"),
                Some(*status),
            ),
            UpstreamFailure::Timeout => (
                ErrorCode::UpstreamTimeout,
                format!("service `{service}` did not answer in time"),
                None,
            ),
            UpstreamFailure::Unavailable => (
                ErrorCode::UpstreamUnavailable,
                format!("service `{service}` is unavailable"),
                None,
            ),
            UpstreamFailure::BadResponse => (
                ErrorCode::UpstreamBadResponse,
                format!("service `{service}` answered with a body that is not JSON"),
                None,
            ),
        };
        let mut error = FieldError::new(code, message).from_service(service);
        error.status = status;
        error
    }
}

/// What a call produced: JSON, or a 404 (which the field decides about).
#[derive(Debug, Clone)]
pub enum UpstreamAnswer {
    Json(Value),
    NotFound,
}

/// Per-service runtime state beside its configuration.
struct ServiceHandle {
    config: Arc<ServiceConfig>,
    /// Round-robin position over `config.urls`.
    next: AtomicUsize,
}

/// Sends upstream requests. Built once per configuration; cheap to share.
pub struct UpstreamClient {
    http: reqwest::Client,
    services: IndexMap<String, ServiceHandle>,
}

impl UpstreamClient {
    pub fn new(services: &IndexMap<String, Arc<ServiceConfig>>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let services = services
            .iter()
            .map(|(name, config)| {
                (
                    name.clone(),
                    ServiceHandle {
                        config: config.clone(),
                        next: AtomicUsize::new(0),
                    },
                )
            })
            .collect();
        Ok(UpstreamClient { http, services })
    }

    pub fn service(&self, name: &str) -> Option<&Arc<ServiceConfig>> {
        self.services.get(name).map(|handle| &handle.config)
    }

    /// Sends `request` to `service`, retrying idempotent calls on another
    /// instance after a connect error or a 502/503/504, as long as the
    /// call's time budget lasts.
    pub async fn send(
        &self,
        service: &str,
        request: &UpstreamRequest,
    ) -> Result<UpstreamAnswer, UpstreamError> {
        let handle = self.services.get(service).ok_or_else(|| UpstreamError {
            service: Arc::from(service),
            failure: UpstreamFailure::Unavailable,
        })?;
        let config = &handle.config;
        let deadline = Instant::now() + request.timeout;
        let retryable_method = matches!(request.method, Method::GET | Method::HEAD);
        let mut attempt = 0;
        loop {
            let index = handle.next.fetch_add(1, Ordering::Relaxed) % config.urls.len().max(1);
            let base = config
                .urls
                .get(index)
                .map(String::as_str)
                .unwrap_or_default();
            let result = self.attempt(config, base, request, deadline).await;
            let retry = matches!(
                &result,
                Err(UpstreamFailure::Unavailable | UpstreamFailure::Status(502..=504))
            );
            if retry && retryable_method && attempt < config.retries && Instant::now() < deadline {
                attempt += 1;
                tracing::debug!(service, attempt, "retrying upstream call");
                continue;
            }
            return result.map_err(|failure| UpstreamError {
                service: Arc::from(service),
                failure,
            });
        }
    }

    async fn attempt(
        &self,
        config: &ServiceConfig,
        base: &str,
        request: &UpstreamRequest,
        deadline: Instant,
    ) -> Result<UpstreamAnswer, UpstreamFailure> {
        let url = format!("{base}{}", request.path_and_query);
        let mut builder = self
            .http
            .request(request.method.clone(), &url)
            .headers(request.headers.clone())
            .timeout(deadline.saturating_duration_since(Instant::now()));
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let service = config.name.as_str();
        let response = builder
            .send()
            .await
            .map_err(|err| classify(service, &err))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(UpstreamAnswer::NotFound);
        }
        if !status.is_success() {
            tracing::debug!(
                service,
                status = status.as_u16(),
                "upstream answered an error status"
            );
            return Err(UpstreamFailure::Status(status.as_u16()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| classify(service, &err))?;
        if body.is_empty() {
            return Ok(UpstreamAnswer::Json(Value::Null));
        }
        serde_json::from_slice(&body)
            .map(UpstreamAnswer::Json)
            .map_err(|err| {
                tracing::warn!(service, error = %err, "upstream body is not JSON");
                UpstreamFailure::BadResponse
            })
    }
}

fn classify(service: &str, err: &reqwest::Error) -> UpstreamFailure {
    if err.is_timeout() {
        tracing::debug!(service, "upstream call timed out");
        UpstreamFailure::Timeout
    } else {
        // Logged here with the cause; the client only sees the code.
        tracing::warn!(service, error = %err, "upstream call failed");
        UpstreamFailure::Unavailable
    }
}
