//! Conflux: a Backend-for-Frontend GraphQL gateway over REST services,
//! configured with SDL files and one `services.toml`, never coded per API.
//!
//! # Layout
//! The modules follow a request's path; ARCHITECTURE.md gives the tour.
//!
//! - [`config`]: `services.toml` → validated [`config::Config`]; every problem with `FILE:LINE:COL`.
//! - [`schema`]: SDL files → merged model → field bindings → async-graphql dynamic schema.
//! - [`connector`]: templates → upstream request; upstream JSON → values of the field's type.
//! - [`upstream`]: the HTTP client per service: instances, balancing, breaker, health checks, retries, concurrency cap; the tree upstream JSON is parsed into (`upstream::json`).
//! - [`admission`]: what refuses work before execution: limits, rate limits, persisted queries; the document cache.
//! - [`auth`]: JWT verification (secret, PEM, JWKS) and the `@authenticated`/`@requiresScopes` rules.
//! - [`batch`]: keys of a batched field collected across the operation, one call per batch.
//! - [`fetch`]: response cache (memory or Redis), cross-client coalescing, stale-if-error.
//! - [`execute`]: per-operation state (call de-duplication), input coercion, and the one
//!   engine every operation runs on (`execute::planned`), with the call semantics it uses.
//! - [`explain`]: `conflux explain`: the calls a document would make, predicted from its plan.
//! - [`http`]: the axum router: `/graphql` (POST, GET, GraphiQL, SSE, graphql-ws), `/webhooks/NAME`, `/healthz`, `/readyz`, `/metrics`.
//! - [`init`]: `conflux init`, a small commented project to start from.
//! - [`openapi`]: `conflux import openapi` (a project from an OpenAPI document) and `check --openapi` (mappings linted against one).
//! - [`subscribe`]: `Subscription` fields fed by shared pollers and signed webhooks (Redis broker across instances), with their limits.
//! - [`reload`]: the live configuration, swapped atomically on SIGHUP or a file change.
//! - [`telemetry`]: request ids, W3C trace context, Prometheus metrics.
//! - [`tls`]: HTTPS for clients (certificate rotated on reload) and TLS/mTLS to the services, with rustls.
//! - [`gateway`]: start-up as a pipeline: load → bind → build; and `serve`.
//! - [`allocator`]: mimalloc for small blocks, the system allocator for large ones.
//! - [`error`]: stable error codes and the one conversion of a field failure to a GraphQL error.

pub mod admission;
pub mod allocator;
pub mod auth;
pub mod batch;
pub mod config;
pub mod connector;
pub mod error;
pub mod execute;
pub mod explain;
pub mod fetch;
pub mod gateway;
pub mod http;
pub mod init;
pub mod openapi;
pub mod redis_connection;
pub mod reload;
pub mod schema;
pub mod subscribe;
pub mod telemetry;
pub mod tls;
pub mod upstream;
