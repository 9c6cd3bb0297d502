//! The HTTP surface (SPEC §2): `/graphql` (POST, GET, GraphiQL),
//! `/graphiql/*` assets, `/healthz`, `/readyz`.

mod cors;
mod graphiql;
mod graphql;
mod health;
mod media;

use std::sync::Arc;

use axum::routing::{any, get};
use axum::Router;

use crate::gateway::Gateway;

/// The whole app; tests and `serve` use the same router.
pub fn app(gateway: Arc<Gateway>) -> Router {
    let cors = cors::layer(&gateway.config.server.cors_origins);
    let router = Router::new()
        .route("/graphql", any(graphql::handle))
        .route("/graphiql/{file}", get(graphiql::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(health::readyz))
        .with_state(gateway);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}
