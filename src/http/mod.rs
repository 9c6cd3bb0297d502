//! The HTTP surface (SPEC §2): `/graphql` (POST, GET, GraphiQL),
//! `/graphiql/*` assets, `/healthz`.

mod graphiql;
mod graphql;
mod media;

use std::sync::Arc;

use axum::routing::{any, get};
use axum::Router;

use crate::gateway::Gateway;

/// The whole app; tests and `serve` use the same router.
pub fn app(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/graphql", any(graphql::handle))
        .route("/graphiql/{file}", get(graphiql::asset))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(gateway)
}
