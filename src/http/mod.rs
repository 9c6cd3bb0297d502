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

/// The TCP peer's IP address, written only where a key or log line needs
/// it (nothing when the app runs without a socket).
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer(pub Option<std::net::IpAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            // Written by hand: the access log writes it for every request,
            // and std's goes through `write!` once per octet.
            Some(std::net::IpAddr::V4(ip)) => {
                let mut text = [0u8; 15];
                let mut len = 0;
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    let digits = [octet / 100, octet / 10 % 10, octet % 10];
                    let first = match octet {
                        100.. => 0,
                        10..=99 => 1,
                        _ => 2,
                    };
                    for digit in &digits[first..] {
                        text[len] = b'0' + digit;
                        len += 1;
                    }
                }
                // Only ASCII digits and dots were written.
                f.pad(std::str::from_utf8(&text[..len]).unwrap_or_default())
            }
            Some(ip) => ip.fmt(f),
            None => Ok(()),
        }
    }
}

/// What the HTTP layer knows about the client of one request.
pub struct Client {
    pub headers: axum::http::HeaderMap,
    /// The TCP peer's address (the rate limit's `ip` key).
    pub ip: Peer,
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

#[cfg(test)]
mod tests {
    use super::Peer;

    #[test]
    fn a_peer_is_written_as_std_writes_its_address() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "9.99.100.199",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let addr: std::net::IpAddr = ip.parse().expect("an address");
            assert_eq!(Peer(Some(addr)).to_string(), addr.to_string());
        }
        assert_eq!(Peer(None).to_string(), "");
    }
}
