//! What operators see (docs/OPERATIONS.md
//! `[telemetry]`): request ids and W3C trace context, Prometheus metrics,
//! the per-request log line, and OTLP span export.

pub mod json_log;
pub mod metrics;
pub mod otlp;
pub mod throttle;
pub mod trace;
