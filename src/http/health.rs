//! `/readyz` (docs/HTTP.md): whether every service has an instance to call;
//! and `/metrics`.
//! Like `/healthz`, never authenticated and never rate limited: a load
//! balancer polls it, and it must not spend anyone's budget.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::gateway::Gateway;

/// `200 {"status":"ready"}`, or `503 {"status":"unavailable","services":[…]}`
/// naming (sorted) every service whose instances are all ejected or
/// failing their health check.
pub async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    let unready = gateway.upstream.unready_services();
    if unready.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "services": unready })),
        )
            .into_response()
    }
}

/// `/metrics` (docs/HTTP.md): Prometheus text, when `[telemetry].metrics`.
pub async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    if !gateway.config.telemetry.metrics {
        return (
            StatusCode::NOT_FOUND,
            "metrics are off ([telemetry].metrics = false)",
        )
            .into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::metrics::render(&gateway.upstream),
    )
        .into_response()
}
