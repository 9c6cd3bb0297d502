//! TLS at both edges, with rustls (docs/CONFIG.md `[server].tls`, a service's
//! `tls` table):
//!
//! - [`files`]: PEM certificates and keys read and checked at load, every
//!   problem naming the config key and the file, so `check` reports them;
//! - [`server`]: HTTPS for clients — HTTP/1.1 and HTTP/2 by ALPN, the
//!   certificate looked up per handshake so a reload rotates it for new
//!   connections while existing ones keep theirs;
//! - [`client`]: the upstream side — system roots by default, a private CA
//!   instead, a client certificate for mutual TLS.
//!
//! Everything uses the `ring` provider, the one reqwest is built with.

pub mod client;
pub mod files;
pub mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use client::ServiceTlsConfig;
pub use files::TlsFileError;
pub use server::{ServerTls, ServerTlsConfig, TlsListener};

/// The crypto provider for every TLS config Conflux builds. Passed
/// explicitly rather than installed process-wide: a library should not
/// set a global its embedder may want to choose.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
