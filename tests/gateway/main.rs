//! Conflux integration tests, written against README.md and docs/ (CONFIG.md, ERRORS.md).
//! Every test starts its own gateway (in-process on port 0, or the real
//! binary) in front of wiremock upstreams.

mod support;

mod admission;
mod auth;
mod batching;
mod caching;
mod check;
mod client_caching;
mod defer;
mod defer_apollo;
mod execution;
mod graphql_semantics;
mod hostile;
mod hostile_documents;
mod hostile_process;
mod hostile_upstreams;
mod http_surface;
mod mapping;
mod oauth2;
mod one_engine;
mod openapi;
mod operations;
mod resilience;
mod schema_constructs;
mod shaping;
mod shaping_check;
mod sharing;
mod tls;
mod upstream_answers;
