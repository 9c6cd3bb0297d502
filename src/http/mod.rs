//! The HTTP surface (docs/HTTP.md): `/graphql` (POST, GET, GraphiQL),
//! `/graphiql/*` assets, `/healthz`, `/readyz`, and `/` pointing at them.

mod cors;
mod graphiql;
mod graphql;
mod health;
mod media;
mod multipart;
mod operation;
mod outcome;
mod request;
mod root;
mod sse;
mod webhooks;
mod ws;

use std::sync::Arc;

use axum::routing::{any, get};
use axum::Router;

use crate::gateway::Gateway;
use crate::telemetry::trace::RequestTrace;

/// What the HTTP layer knows about the client of one request.
pub struct Client {
    pub headers: axum::http::HeaderMap,
    /// The TCP peer's address (the rate limit's `ip` key).
    pub ip: String,
    pub media: media::ResponseMedia,
    /// Takes incremental delivery (`@defer` over multipart/mixed).
    pub incremental: bool,
    pub trace: RequestTrace,
    /// `conflux-debug: 1` with `[server].debug = true`: answer the waterfall.
    pub debug: bool,
    /// `conflux-explain: 1` with `[server].debug = true`: answer the plan,
    /// run nothing (docs/PLAN.md).
    pub explain: bool,
    /// `[rate_limit] cost = "upstream_calls"`: the client's bucket, charged
    /// each operation's predicted calls once it is planned.
    pub rate_key: Option<String>,
}

/// The whole app; tests and `serve` use the same router.
pub fn app(gateway: Arc<Gateway>) -> Router {
    let cors = cors::layer(&gateway.config.server.cors_origins);
    let router = Router::new()
        .route("/", get(root::index))
        .route("/graphql", any(graphql::handle))
        .route("/graphiql/{file}", get(graphiql::asset))
        .route("/webhooks/{name}", any(webhooks::receive))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(gateway);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}
