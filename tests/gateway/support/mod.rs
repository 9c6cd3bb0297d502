//! Test support: gateways started from SDL + TOML text, mock upstreams,
//! `check`, and an HTTP client whose answers are easy to assert on.

pub mod browser;
pub mod check;
pub mod client;
pub mod gateway;
pub mod multipart;
pub mod process;
pub mod redis;
pub mod sse;
pub mod temp;
pub mod upstream;
pub mod ws;

pub use check::{check, check_files, position, run_binary};
pub use client::{encode_params, error_codes, Reply};
pub use gateway::TestGateway;
pub use process::ProcessGateway;
pub use upstream::*;
