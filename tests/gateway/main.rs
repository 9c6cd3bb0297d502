//! Conflux integration tests, written against README.md and docs/ (CONFIG.md, ERRORS.md).
//! Every test starts its own gateway (in-process on port 0, or the real
//! binary) in front of wiremock upstreams.

mod support;

mod admission;
mod auth;
mod batching;
mod budget;
mod caching;
mod check;
mod check_warnings;
mod check_words;
mod client_caching;
mod config_schema;
mod defer;
mod defer_apollo;
mod execution;
mod explain;
mod first_contact;
mod graphiql_panel;
mod graphql_semantics;
mod hostile;
mod hostile_documents;
mod hostile_process;
mod hostile_upstreams;
mod http_surface;
mod init;
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
mod subscription_clients;
mod subscriptions;
mod subscriptions_process;
mod tls;
mod upstream_answers;
mod waterfall;
mod webhooks;
