//! Webhooks (`[webhooks.NAME]`, `POST /webhooks/NAME`): a service that can
//! call out pushes an event; its signature is checked, and its body becomes
//! the value of every subscription of that webhook whose `filter` matches.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::connector::request::render_value;
use crate::connector::template::{Scope, Template};
use crate::execute::calls::{FieldAnswer, Held};
use crate::upstream::json::{self, key_text, Json};

/// The header carrying `sha256=<lowercase hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "x-conflux-signature";

/// One event received by some instance.
pub struct Delivery {
    pub webhook: String,
    pub body: Json,
}

/// Whether `header` signs `body` with `secret`. The MAC is compared in
/// constant time (`hmac`'s `verify_slice`), so a caller cannot find a
/// valid signature byte by byte from response times.
pub fn signed(secret: &str, body: &[u8], header: Option<&[u8]>) -> bool {
    let Some(hex_part) = header.and_then(|h| h.strip_prefix(b"sha256=")) else {
        return false;
    };
    // Lowercase hex only, as docs/SUBSCRIPTIONS.md says: one spelling per
    // signature.
    if hex_part.len() != 64
        || !hex_part
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return false;
    }
    let Ok(given) = hex::decode(hex_part) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The signature header's value for `body` (what a service sends; tests
/// and docs use it).
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether a delivery's body matches a subscription's `filter`: each
/// entry's value at its path equals what the template gives for this
/// subscription (compared as text, so `"7"` matches `7`). An entry whose
/// template has no value (an argument not given) does not filter.
pub fn matches(filter: &[(Vec<String>, Template)], body: &Json, scope: &dyn Scope) -> bool {
    filter.iter().all(|(path, template)| {
        let Some(wanted) = render_value(template, scope).filter(|v| !v.is_null()) else {
            return true;
        };
        json::at(body, path).is_some_and(|found| key_text(found) == key_text(&wanted.to_json()))
    })
}

/// A delivery as the subscription field's answer.
pub fn answer(body: &Json) -> Arc<FieldAnswer> {
    Arc::new(FieldAnswer::Value {
        held: Held::Owned(body.clone()),
        stale: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_its_body_and_secret() {
        let body = br#"{"orderId":"o1"}"#;
        let header = signature("s3cret", body);
        assert!(signed("s3cret", body, Some(header.as_bytes())));
        assert!(!signed("other", body, Some(header.as_bytes())));
        assert!(!signed(
            "s3cret",
            br#"{"orderId":"o2"}"#,
            Some(header.as_bytes())
        ));
        assert!(!signed("s3cret", body, None));
        assert!(!signed(
            "s3cret",
            body,
            Some(header.to_uppercase().as_bytes())
        ));
        assert!(!signed("s3cret", body, Some(&header.as_bytes()[..70])));
    }
}
