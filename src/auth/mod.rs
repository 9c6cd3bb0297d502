//! JWT authentication at the edge (SPEC §3 `[auth]`, §4): a token is
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
    hmac: Option<DecodingKey>,
    /// Keys from `public_key_file`, one per algorithm family it parses as
    /// (a short list: `AlgorithmFamily` is not hashable).
    pem_keys: Vec<(AlgorithmFamily, DecodingKey)>,
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
            .map(|secret| DecodingKey::from_secret(secret.as_bytes()));
        let mut pem_keys: Vec<(AlgorithmFamily, DecodingKey)> = Vec::new();
        if let Some(file) = &config.public_key_pem {
            for algorithm in &config.algorithms {
                let family = algorithm.family();
                if pem_keys.iter().any(|(f, _)| *f == family) {
                    continue;
                }
                if let Ok(key) = key_from_pem(family, &file.pem) {
                    pem_keys.push((family, key));
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
        let key = self.key_for(header.alg, header.kid.as_deref()).await?;
        let validation = self.validation(header.alg);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|data| Arc::new(data.claims))
            .map_err(|e| invalid(format!("{e}")))
    }

    async fn key_for(
        &self,
        algorithm: Algorithm,
        kid: Option<&str>,
    ) -> Result<DecodingKey, AuthError> {
        let family = algorithm.family();
        if family == AlgorithmFamily::Hmac {
            return self
                .hmac
                .clone()
                .ok_or_else(|| AuthError::Invalid("no secret for HS*".to_owned()));
        }
        if let (Some(kid), Some(jwks)) = (kid, &self.jwks) {
            return jwks
                .key(kid)
                .await
                .map(|key| (*key).clone())
                .ok_or_else(|| AuthError::Invalid(format!("unknown key id `{kid}`")));
        }
        if let Some((_, key)) = self.pem_keys.iter().find(|(f, _)| *f == family) {
            return Ok(key.clone());
        }
        if let Some(jwks) = &self.jwks {
            if let Some(key) = jwks.only_key(family) {
                return Ok((*key).clone());
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
        match &self.config.audience {
            Some(audience) => validation.set_audience(audience),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.config.issuer {
            validation.set_issuer(&[issuer]);
        }
        validation
    }
}

/// The token of `Authorization: Bearer <token>`. Another scheme is not a
/// token: the request is anonymous (SPEC §2).
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
