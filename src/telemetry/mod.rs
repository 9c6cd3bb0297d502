//! What operators see (SPEC §1 `--log-format`, §2 `/metrics`, §3
//! `[telemetry]`): request ids and W3C trace context, Prometheus metrics,
//! and the per-request log line.

pub mod metrics;
pub mod trace;
