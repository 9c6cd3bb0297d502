//! JWT authentication at the edge (docs/CONFIG.md `[auth]`, docs/AUTH.md): a token is
//! verified once per HTTP request, before anything executes; the verified
//! claims then drive the directive checks (`access`), `{claims.…}`
//! templates and `claims_headers`.

pub mod access;
mod jwks;

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::Value;

use crate::config::AuthConfig;
use jwks::Jwks;

/// Verified claims of the request's token.
pub type Claims = Arc<Value>;

/// Why a request is refused before execution (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token, and `required = true`.
    Missing,
    /// A token was presented and is not valid. The reason is for logs only.
    Invalid(String),
}

/// Verifies tokens for one configuration.
pub struct Authenticator {
    config: AuthConfig,
    hmac: Option<Arc<DecodingKey>>,
    /// Keys from `public_key_file`, one per algorithm family it parses as
    /// (a short list: `AlgorithmFamily` is not hashable).
    pem_keys: Vec<(AlgorithmFamily, Arc<DecodingKey>)>,
    jwks: Option<Arc<Jwks>>,
}

/// A PEM public key for `family`.
pub fn key_from_pem(
    family: AlgorithmFamily,
    pem: &[u8],
) -> jsonwebtoken::errors::Result<DecodingKey> {
    match family {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
        AlgorithmFamily::Hmac => Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into()),
    }
}

impl Authenticator {
    /// Builds the verifier; starts fetching the JWKS in the background when
    /// one is configured (serving starts even if the IdP is down).
    pub fn new(config: &AuthConfig, http: reqwest::Client) -> Authenticator {
        let hmac = config
            .secret
            .as_ref()
            .map(|secret| Arc::new(DecodingKey::from_secret(secret.as_bytes())));
        let mut pem_keys: Vec<(AlgorithmFamily, Arc<DecodingKey>)> = Vec::new();
        if let Some(file) = &config.public_key_pem {
            for algorithm in &config.algorithms {
                let family = algorithm.family();
                if pem_keys.iter().any(|(f, _)| *f == family) {
                    continue;
                }
                if let Ok(key) = key_from_pem(family, &file.pem) {
                    pem_keys.push((family, Arc::new(key)));
                }
            }
        }
        let jwks = config
            .jwks_url
            .as_ref()
            .map(|url| Jwks::start(url.clone(), config.jwks_min_refetch, http));
        Authenticator {
            config: config.clone(),
            hmac,
            pem_keys,
            jwks,
        }
    }

    pub fn required(&self) -> bool {
        self.config.required
    }

    /// The request's verified claims; `Ok(None)` for an anonymous request.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Claims>, AuthError> {
        match bearer_token(headers) {
            Some(token) => self.verify(token).await.map(Some),
            None if self.config.required => Err(AuthError::Missing),
            None => Ok(None),
        }
    }

    async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let invalid = |reason: String| AuthError::Invalid(reason);
        // `alg: none` and unknown algorithms fail here: jsonwebtoken has no
        // such variant, so the header does not parse.
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("bad header: {e}")))?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(invalid(format!(
                "algorithm {:?} is not allowed",
                header.alg
            )));
        }
        let keys = self.keys_for(header.alg, header.kid.as_deref()).await?;
        let validation = self.validation(header.alg);
        // Usually one key; more only when a JWKS publishes several keys of
        // one kid usable with this algorithm (RFC 7517 §4.5 allows it):
        // a token signed by any of them is the IdP's.
        let mut last_error = String::from("no key for the token's algorithm");
        for key in keys {
            match jsonwebtoken::decode::<Value>(token, &key, &validation) {
                Ok(data) => {
                    self.check_issuer_and_audience(&data.claims)
                        .map_err(|reason| invalid(reason.to_owned()))?;
                    return Ok(Arc::new(data.claims));
                }
                Err(err) => last_error = err.to_string(),
            }
        }
        Err(invalid(last_error))
    }

    /// The keys that may have signed a token of `algorithm` with `kid`.
    async fn keys_for(
        &self,
        algorithm: Algorithm,
        kid: Option<&str>,
    ) -> Result<Vec<Arc<DecodingKey>>, AuthError> {
        let family = algorithm.family();
        if family == AlgorithmFamily::Hmac {
            return self
                .hmac
                .clone()
                .map(|key| vec![key])
                .ok_or_else(|| AuthError::Invalid("no secret for HS*".to_owned()));
        }
        if let (Some(kid), Some(jwks)) = (kid, &self.jwks) {
            let keys = jwks.keys(kid, algorithm).await;
            if keys.is_empty() {
                return Err(AuthError::Invalid(format!(
                    "no key of id `{kid}` for {algorithm:?}"
                )));
            }
            return Ok(keys);
        }
        if let Some((_, key)) = self.pem_keys.iter().find(|(f, _)| *f == family) {
            return Ok(vec![key.clone()]);
        }
        if let Some(jwks) = &self.jwks {
            if let Some(key) = jwks.only_key(algorithm) {
                return Ok(vec![key]);
            }
        }
        Err(AuthError::Invalid(
            "no key for the token's algorithm".to_owned(),
        ))
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        // jsonwebtoken checks `aud` and `iss` only when the token has them,
        // unless they are required: "checked when set" (docs/CONFIG.md
        // `[auth]`) means a token without them is refused.
        match &self.config.audience {
            Some(audience) => {
                validation.set_audience(audience);
                validation.required_spec_claims.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.config.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        validation
    }

    /// `iss` and `aud` again, on the claims as decoded, by their JWT shapes
    /// (RFC 7519 §4.1.1, §4.1.3): jsonwebtoken also takes an `iss` array
    /// holding the issuer. With `issuer` set, `iss` must be that string;
    /// with `audience` set, `aud` must be a string, or an array of strings
    /// only, naming one of the audiences.
    fn check_issuer_and_audience(&self, claims: &Value) -> Result<(), &'static str> {
        if let Some(issuer) = &self.config.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err("`iss` is not the configured issuer");
            }
        }
        if let Some(audiences) = &self.config.audience {
            let names_an_audience = |aud: &str| audiences.iter().any(|a| a == aud);
            let accepted = match claims.get("aud") {
                Some(Value::String(aud)) => names_an_audience(aud),
                Some(Value::Array(items)) => {
                    items.iter().all(Value::is_string)
                        && items
                            .iter()
                            .filter_map(Value::as_str)
                            .any(names_an_audience)
                }
                _ => false,
            };
            if !accepted {
                return Err("`aud` does not name a configured audience");
            }
        }
        Ok(())
    }
}

/// The token of `Authorization: Bearer <token>`. Another scheme is not a
/// token: the request is anonymous (docs/HTTP.md).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The claim at a dotted path, as header text.
pub fn claim_text(claims: &Value, path: &str) -> Option<String> {
    let mut value = claims;
    for segment in path.split('.') {
        value = value.get(segment)?;
    }
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        Value::Array(items) => Some(
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        other => Some(other.to_string()),
    }
}
