//! The one way Conflux connects to Redis (the response cache, APQ, the
//! rate limiter, subscriptions' broker): a lazily connecting manager that
//! reconnects by itself, with short timeouts so that a Redis outage costs a
//! request at most `TIMEOUT` before the caller falls back.

use std::time::Duration;

use redis::aio::ConnectionManager;

/// Connect and response timeout of every Redis command.
pub const TIMEOUT: Duration = Duration::from_millis(250);

/// A connection manager for `url`; `Err` says why the URL is unusable.
/// Nothing is sent until the first command.
pub fn connect(url: &str) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let settings = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(1);
    client
        .get_connection_manager_lazy(settings)
        .map_err(|e| e.to_string())
}
