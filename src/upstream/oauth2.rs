//! `[services.X].oauth2` (docs/SHAPING.md "OAuth2 to services"): an access
//! token from the OAuth 2.0 client-credentials grant (RFC 6749 §4.4, the
//! client authenticated with HTTP Basic), sent as `Authorization: Bearer`
//! on every call to the service.
//!
//! One fetch at a time whatever the traffic: the token is behind an async
//! mutex held across the fetch, so calls arriving meanwhile wait for that
//! fetch and use its token. A token is renewed when it is within
//! [`RENEW_MARGIN`] of its expiry, and once after the service answers 401
//! (the call is then sent again once, with the new token). The secret and
//! the token are [`Secret`]s: their `Debug` and `Display` print
//! `[redacted]`, so no log line, metric or error can carry them.

use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::failure::UpstreamFailure;

/// A value that must never be shown: a client secret, an access token.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value itself, for the one place it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The validated `oauth2` table.
#[derive(Debug, Clone)]
pub struct OAuth2Config {
    pub token_url: reqwest::Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
}

/// A token is renewed this long before it expires (or at a tenth of its
/// lifetime before, when that is shorter).
pub const RENEW_MARGIN: Duration = Duration::from_secs(30);

/// Lifetime assumed when the token endpoint gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// The most of a token endpoint's answer read.
const MAX_TOKEN_BODY: usize = 64 * 1024;

/// A service's current token and how to get the next one.
pub struct Tokens {
    config: OAuth2Config,
    client: reqwest::Client,
    current: Mutex<Option<Token>>,
}

struct Token {
    header: HeaderValue,
    /// When it is renewed: its expiry less the margin.
    renew_at: Instant,
    /// Counts fetches, so a 401 renews the token the call used and not
    /// one another call renewed meanwhile.
    generation: u64,
}

/// The header to send, and which token it is.
pub struct Bearer {
    pub header: HeaderValue,
    pub generation: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<f64>,
}

impl Tokens {
    /// `client`: the service's own reqwest client (its TLS settings, no
    /// redirects followed).
    pub fn new(config: OAuth2Config, client: reqwest::Client) -> Self {
        Tokens {
            config,
            client,
            current: Mutex::new(None),
        }
    }

    /// The token to send, fetched first when there is none or it is due
    /// for renewal; at most until `deadline`.
    pub async fn bearer(&self, deadline: Instant) -> Result<Bearer, UpstreamFailure> {
        let mut current = self.lock(deadline).await?;
        if let Some(token) = current.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(token.bearer());
        }
        let generation = current.as_ref().map_or(0, |t| t.generation) + 1;
        let token = self.fetch(generation, deadline).await?;
        let bearer = token.bearer();
        *current = Some(token);
        Ok(bearer)
    }

    /// After a 401 to a call that sent token `used`: a new token, unless
    /// another call renewed it meanwhile (then that one).
    pub async fn renew(&self, used: u64, deadline: Instant) -> Result<Bearer, UpstreamFailure> {
        let mut current = self.lock(deadline).await?;
        if let Some(token) = current.as_ref().filter(|t| t.generation != used) {
            return Ok(token.bearer());
        }
        let token = self.fetch(used + 1, deadline).await?;
        let bearer = token.bearer();
        *current = Some(token);
        Ok(bearer)
    }

    async fn lock(
        &self,
        deadline: Instant,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Token>>, UpstreamFailure> {
        tokio::time::timeout_at(deadline, self.current.lock())
            .await
            .map_err(|_| UpstreamFailure::Timeout)
    }

    async fn fetch(&self, generation: u64, deadline: Instant) -> Result<Token, UpstreamFailure> {
        let started = Instant::now();
        let result = tokio::time::timeout_at(deadline, self.request()).await;
        let token = match result {
            Ok(Ok(answer)) => answer,
            Ok(Err(problem)) => {
                // Never the secret, the token or the endpoint's body.
                tracing::warn!(token_url = %self.config.token_url, problem, "oauth2 token fetch failed");
                return Err(UpstreamFailure::Unavailable);
            }
            Err(_) => {
                tracing::warn!(token_url = %self.config.token_url, "oauth2 token fetch timed out");
                return Err(UpstreamFailure::Unavailable);
            }
        };
        let Ok(mut header) = HeaderValue::from_str(&format!("Bearer {}", token.access_token))
        else {
            tracing::warn!(token_url = %self.config.token_url, "oauth2 token is not a valid header value");
            return Err(UpstreamFailure::Unavailable);
        };
        header.set_sensitive(true);
        let lifetime = token
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(DEFAULT_LIFETIME, |s| Duration::from_secs_f64(s.min(1e9)));
        let margin = RENEW_MARGIN.min(lifetime / 10);
        tracing::debug!(token_url = %self.config.token_url, lifetime_s = lifetime.as_secs_f64(), "oauth2 token fetched");
        Ok(Token {
            header,
            renew_at: started + lifetime - margin,
            generation,
        })
    }

    /// One token request; `Err` says what went wrong, for the log.
    async fn request(&self) -> Result<TokenAnswer, String> {
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if !self.config.scopes.is_empty() {
            form.push(("scope", self.config.scopes.join(" ")));
        }
        let body = form
            .iter()
            .map(|(name, value)| {
                format!(
                    "{}={}",
                    crate::connector::request::form_encode(name),
                    crate::connector::request::form_encode(value)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let mut response = self
            .client
            .post(self.config.token_url.clone())
            .basic_auth(
                form_credential(&self.config.client_id),
                Some(form_credential(self.config.client_secret.expose())),
            )
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| format!("request failed: {}", without_url(err)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("token endpoint answered HTTP {}", status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| format!("cannot read the answer: {}", without_url(err)))?
        {
            if body.len() + chunk.len() > MAX_TOKEN_BODY {
                return Err("token endpoint answer over 64 KiB".to_owned());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice::<TokenAnswer>(&body)
            .map_err(|_| "token endpoint answer has no `access_token` string".to_owned())
    }
}

impl Token {
    fn bearer(&self) -> Bearer {
        Bearer {
            header: self.header.clone(),
            generation: self.generation,
        }
    }
}

/// RFC 6749 §2.3.1: the client id and secret are form-encoded before they
/// go into the Basic credentials.
fn form_credential(value: &str) -> String {
    crate::connector::request::form_encode(value).to_string()
}

/// reqwest's error text without the URL (which holds no secret here, but
/// the message stays the same shape as the other upstream failures).
fn without_url(err: reqwest::Error) -> String {
    err.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("s3cr3t".to_owned());
        assert_eq!(format!("{secret} {secret:?}"), "[redacted] [redacted]");
        let config = OAuth2Config {
            token_url: reqwest::Url::parse("http://idp/token").expect("url"),
            client_id: "id".to_owned(),
            client_secret: secret,
            scopes: vec![],
        };
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}
