//! Mints a demo token for `cargo run --example demo`:
//!
//! ```text
//! cargo run --example token -- [--sub u1] [--scope "users:email"] [--ttl-s 3600]
//! ```
//!
//! HS256, signed with `JWT_SECRET` (default: the demo's `conflux-demo-secret`),
//! issuer `conflux-demo`. Use it as `Authorization: Bearer <token>`.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

fn main() {
    let mut sub = "u1".to_owned();
    let mut scope = "users:email".to_owned();
    let mut ttl_s: u64 = 3600;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--sub", Some(v)) => sub = v,
            ("--scope", Some(v)) => scope = v,
            ("--ttl-s", Some(v)) => match v.parse() {
                Ok(v) => ttl_s = v,
                Err(_) => fail("--ttl-s takes a number of seconds"),
            },
            _ => fail("usage: token [--sub ID] [--scope \"a b\"] [--ttl-s N]"),
        }
    }
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| "conflux-demo-secret".to_owned());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = json!({
        "sub": sub,
        "scope": scope,
        "iss": "conflux-demo",
        "iat": now,
        "exp": now + ttl_s,
    });
    match encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    ) {
        Ok(token) => println!("{token}"),
        Err(err) => fail(&format!("cannot sign: {err}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2);
}
