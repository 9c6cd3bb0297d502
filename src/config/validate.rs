//! Raw model → validated [`Config`]: every value parsed, every template
//! compiled, every problem collected with its location.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use indexmap::IndexMap;

use super::model::*;
use super::raw::*;
use super::{Diagnostics, Location, Source};
use crate::connector::errors::{AnswerOverrides, AnswerRules};
use crate::connector::shape::{from_toml, Shape};
use crate::connector::template::{Placeholder, Root, Template};
use crate::upstream::oauth2::{OAuth2Config, Secret};

/// Keys per batched call when `max` is not given.
const DEFAULT_BATCH_MAX: usize = 100;

pub(super) fn validate(
    raw: RawConfig,
    path: &Path,
    source: &Source<'_>,
    facts: &super::ParseFacts,
    diagnostics: Diagnostics,
) -> (Config, Diagnostics) {
    let key_offsets = &facts.key_offsets;
    let mut v = Validator {
        source,
        diagnostics,
        already_reported: &facts.failed_strings,
        response_allowed: false,
    };
    let base_dir = path.parent().unwrap_or(Path::new("")).to_path_buf();

    let schema_files = v.schema_files(raw.schema.as_ref(), &base_dir);
    let server = v.server(&raw.server, &base_dir);
    let limits = v.limits(&raw.limits);
    let auth = raw.auth.as_ref().and_then(|auth| v.auth(auth, &base_dir));
    let rate_limit = raw.rate_limit.as_ref().and_then(|r| v.rate_limit(r));
    let persisted_queries = v.persisted_queries(&raw.persisted_queries, &base_dir);
    let cache = match (raw.cache.backend.get_ref().as_str(), &raw.cache.redis_url) {
        ("redis", Some(url)) => {
            if redis::Client::open(url.get_ref().as_str()).is_err() {
                v.error(
                    url.span().start,
                    format!("invalid `redis_url` `{}`", url.get_ref()),
                );
            }
            CacheConfig::Redis {
                url: url.get_ref().clone(),
            }
        }
        _ => CacheConfig::Memory {
            max_entries: raw.cache.max_entries,
        },
    };
    v.one_of(&raw.cache.backend, &["memory", "redis"], "cache backend");
    if raw.cache.backend.get_ref() == "redis" && raw.cache.redis_url.is_none() {
        v.error(
            raw.cache.backend.span().start,
            "cache backend `redis` needs `redis_url`",
        );
    }
    let services: IndexMap<String, Arc<ServiceConfig>> = raw
        .services
        .iter()
        .filter_map(|(name, service)| {
            Some((name.clone(), Arc::new(v.service(name, service, &base_dir)?)))
        })
        .collect();
    let types = raw
        .types
        .iter()
        .filter_map(|(name, resolution)| Some((name.clone(), v.type_resolution(name, resolution)?)))
        .collect();
    let mappings = raw
        .resolvers
        .iter()
        .filter_map(|(key, mapping)| {
            let offset = key_offsets
                .get(key)
                .copied()
                .unwrap_or(mapping.span().start);
            v.mapping(key, offset, mapping, &services)
        })
        .collect();
    let mapped_fields = raw.resolvers.keys().cloned().collect();
    let subscriptions = v.subscriptions(&raw.subscriptions);
    let webhooks = v.webhooks(&raw.webhooks);
    for mapping in raw.resolvers.values() {
        if let Some(name) = &mapping.get_ref().webhook {
            if !webhooks.contains_key(name.get_ref()) {
                let known: Vec<&str> = webhooks.keys().map(String::as_str).collect();
                v.error(
                    name.span().start,
                    format!(
                        "unknown webhook `{}` (defined: {})",
                        name.get_ref(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
    }

    let config = Config {
        path: path.to_path_buf(),
        schema_files,
        server,
        limits,
        services,
        types,
        mappings,
        mapped_fields,
        auth,
        rate_limit,
        persisted_queries,
        cache,
        telemetry: TelemetryConfig {
            metrics: raw.telemetry.metrics,
            propagate_trace_context: raw.telemetry.propagate_trace_context,
            otlp_endpoint: raw
                .telemetry
                .otlp_endpoint
                .as_ref()
                .map(|e| e.get_ref().clone()),
        },
        watched_files: watched_files(&raw, &base_dir),
        subscriptions,
        webhooks,
    };
    (config, v.diagnostics)
}

/// Every file `services.toml` names besides the schema, for `--hot-reload`.
fn watched_files(raw: &RawConfig, base_dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut add = |file: &Option<Spanned<String>>| {
        if let Some(file) = file {
            files.push(base_dir.join(file.get_ref()));
        }
    };
    add(&raw.persisted_queries.safelist);
    if let Some(auth) = &raw.auth {
        add(&auth.get_ref().public_key_file);
    }
    if let Some(tls) = &raw.server.tls {
        add(&tls.get_ref().cert_file);
        add(&tls.get_ref().key_file);
    }
    for service in raw.services.values() {
        if let Some(tls) = &service.get_ref().tls {
            add(&tls.get_ref().ca_file);
            add(&tls.get_ref().client_cert_file);
            add(&tls.get_ref().client_key_file);
        }
    }
    files
}

struct Validator<'a> {
    source: &'a Source<'a>,
    diagnostics: Diagnostics,
    /// Offsets of strings with an unset `${VAR}`: one message is enough.
    already_reported: &'a std::collections::HashSet<usize>,
    /// `{response.…}` may be used: the templates of `errors` and
    /// `error_when` are being compiled (docs/SHAPING.md).
    response_allowed: bool,
}

impl Validator<'_> {
    fn error(&mut self, offset: usize, message: impl Into<String>) {
        if !self.already_reported.contains(&offset) {
            self.diagnostics
                .push(self.source.diagnostic(offset, message));
        }
    }

    fn location(&self, offset: usize) -> Location {
        self.source.location(offset)
    }

    fn one_of(&mut self, value: &Spanned<String>, allowed: &[&str], what: &str) {
        if !allowed.contains(&value.get_ref().as_str()) {
            self.error(
                value.span().start,
                format!(
                    "unknown {what} `{}` (expected one of: {})",
                    value.get_ref(),
                    allowed.join(", ")
                ),
            );
        }
    }

    fn schema_files(
        &mut self,
        raw: Option<&Spanned<OneOrMany>>,
        base_dir: &Path,
    ) -> Vec<SchemaFile> {
        let (entries, offset) = match raw {
            None => (vec!["schema".to_owned()], 0),
            Some(spanned) => match spanned.get_ref() {
                OneOrMany::One(one) => (vec![one.clone()], spanned.span().start),
                OneOrMany::Many(many) => (many.clone(), spanned.span().start),
            },
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = base_dir.join(&entry);
            if path.is_dir() {
                let mut found: Vec<PathBuf> = match std::fs::read_dir(&path) {
                    Ok(dir) => dir
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            matches!(
                                p.extension().and_then(|e| e.to_str()),
                                Some("graphql" | "graphqls" | "gql")
                            )
                        })
                        .collect(),
                    Err(err) => {
                        self.error(
                            offset,
                            format!("cannot read schema directory `{entry}`: {err}"),
                        );
                        continue;
                    }
                };
                found.sort();
                if found.is_empty() {
                    self.error(
                        offset,
                        format!("schema directory `{entry}` has no .graphql files"),
                    );
                }
                files.extend(found.into_iter().map(|path| SchemaFile {
                    display: Arc::from(path.display().to_string()),
                    path,
                }));
            } else if path.is_file() {
                files.push(SchemaFile {
                    display: Arc::from(path.display().to_string()),
                    path,
                });
            } else {
                self.error(offset, format!("schema path `{entry}` does not exist"));
            }
        }
        files
    }

    fn server(&mut self, raw: &RawServer, base_dir: &Path) -> ServerConfig {
        if raw.listen.get_ref().parse::<SocketAddr>().is_err() {
            self.error(
                raw.listen.span().start,
                format!(
                    "`listen` must be an address like 127.0.0.1:4000, found `{}`",
                    raw.listen.get_ref()
                ),
            );
        }
        let tls = raw
            .tls
            .as_ref()
            .and_then(|tls| self.server_tls(tls, base_dir));
        for origin in &raw.cors_origins {
            if origin.get_ref() != "*" && HeaderValue::from_str(origin.get_ref()).is_err() {
                self.error(origin.span().start, "invalid CORS origin");
            }
        }
        let mut timeout = |key: &str, raw: &Spanned<u64>| {
            let ms = *raw.get_ref();
            if ms == 0 {
                self.error(raw.span().start, format!("`{key}` must be greater than 0"));
            }
            Duration::from_millis(ms.max(1))
        };
        let header_read_timeout = timeout("header_read_timeout_ms", &raw.header_read_timeout_ms);
        let body_read_timeout = timeout("body_read_timeout_ms", &raw.body_read_timeout_ms);
        ServerConfig {
            listen: raw.listen.get_ref().clone(),
            graphiql: raw.graphiql,
            introspection: raw.introspection,
            cors_origins: raw
                .cors_origins
                .iter()
                .map(|o| o.get_ref().clone())
                .collect(),
            debug: raw.debug,
            tls,
            header_read_timeout,
            body_read_timeout,
        }
    }

    /// `[server].tls`: both files read and checked now, so `check` names
    /// a bad one and `serve` never meets it at the first handshake.
    fn server_tls(
        &mut self,
        raw: &Spanned<RawServerTls>,
        base_dir: &Path,
    ) -> Option<crate::tls::ServerTlsConfig> {
        let tls = raw.get_ref();
        let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
            self.error(
                raw.span().start,
                "[server].tls needs both `cert_file` and `key_file`",
            );
            return None;
        };
        let loaded = crate::tls::ServerTlsConfig::load(
            base_dir.join(cert.get_ref()),
            base_dir.join(key.get_ref()),
        );
        let keys = [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)];
        self.tls_files(loaded, "", &keys, raw.span().start)
    }

    /// A service's `tls` table, its files read and checked now.
    fn service_tls(
        &mut self,
        name: &str,
        raw: &Spanned<RawServiceTls>,
        base_dir: &Path,
    ) -> Option<crate::tls::ServiceTlsConfig> {
        let tls = raw.get_ref();
        let client = match (&tls.client_cert_file, &tls.client_key_file) {
            (Some(cert), Some(key)) => {
                Some((base_dir.join(cert.get_ref()), base_dir.join(key.get_ref())))
            }
            (None, None) => None,
            _ => {
                self.error(
                    raw.span().start,
                    format!("service `{name}`: `tls.client_cert_file` and `tls.client_key_file` go together"),
                );
                return None;
            }
        };
        let ca_file = tls.ca_file.as_ref().map(|ca| base_dir.join(ca.get_ref()));
        let loaded = crate::tls::ServiceTlsConfig::load(ca_file, client);
        let keys = [
            ("ca_file", &tls.ca_file),
            ("client_cert_file", &tls.client_cert_file),
            ("client_key_file", &tls.client_key_file),
        ];
        self.tls_files(
            loaded,
            &format!("service `{name}`: "),
            &keys,
            raw.span().start,
        )
    }

    /// Loaded TLS settings, or each problem reported at the value that
    /// names its file.
    fn tls_files<T>(
        &mut self,
        loaded: Result<T, Vec<crate::tls::TlsFileError>>,
        prefix: &str,
        keys: &[(&str, &Option<Spanned<String>>)],
        table_offset: usize,
    ) -> Option<T> {
        let problems = match loaded {
            Ok(settings) => return Some(settings),
            Err(problems) => problems,
        };
        for problem in problems {
            let offset = keys
                .iter()
                .find(|(key, _)| *key == problem.key)
                .and_then(|(_, value)| value.as_ref())
                .map_or(table_offset, |value| value.span().start);
            self.error(offset, format!("{prefix}{problem}"));
        }
        None
    }

    fn auth(&mut self, raw: &Spanned<RawAuth>, base_dir: &Path) -> Option<AuthConfig> {
        use jsonwebtoken::{Algorithm, AlgorithmFamily};
        let at = raw.span().start;
        let auth = raw.get_ref();
        let mut algorithms = Vec::new();
        match &auth.algorithms {
            None => algorithms.push(Algorithm::HS256),
            Some(names) if names.is_empty() => self.error(at, "`algorithms` cannot be empty"),
            Some(names) => {
                for name in names {
                    match name.get_ref().parse::<Algorithm>() {
                        Ok(algorithm) => algorithms.push(algorithm),
                        Err(_) => self.error(
                            name.span().start,
                            format!(
                                "unknown JWT algorithm `{}` (expected HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA)",
                                name.get_ref()
                            ),
                        ),
                    }
                }
            }
        }
        let wants_secret = algorithms
            .iter()
            .any(|a| a.family() == AlgorithmFamily::Hmac);
        let wants_public = algorithms
            .iter()
            .any(|a| a.family() != AlgorithmFamily::Hmac);
        if wants_secret && auth.secret.as_ref().is_none_or(|s| s.get_ref().is_empty()) {
            self.error(at, "HS* algorithms need a non-empty `secret`");
        }
        if wants_public && auth.public_key_file.is_none() && auth.jwks_url.is_none() {
            self.error(
                at,
                "RS*/PS*/ES*/EdDSA algorithms need `public_key_file` or `jwks_url`",
            );
        }
        let public_key_pem = auth.public_key_file.as_ref().and_then(|file| {
            let path = base_dir.join(file.get_ref());
            let display = path.display().to_string();
            let pem = match std::fs::read(&path) {
                Ok(pem) => pem,
                Err(err) => {
                    self.error(
                        file.span().start,
                        format!("cannot read public key file `{display}`: {err}"),
                    );
                    return None;
                }
            };
            let families: Vec<AlgorithmFamily> = algorithms
                .iter()
                .map(|a| a.family())
                .filter(|f| *f != AlgorithmFamily::Hmac)
                .collect();
            let parses = families
                .iter()
                .any(|family| crate::auth::key_from_pem(*family, &pem).is_ok());
            if !parses {
                self.error(
                    file.span().start,
                    format!("`{display}` is not a PEM public key for the configured algorithms"),
                );
                return None;
            }
            Some(PublicKeyFile { display, pem })
        });
        if let Some(url) = &auth.jwks_url {
            if reqwest::Url::parse(url.get_ref()).is_err() {
                self.error(
                    url.span().start,
                    format!("invalid `jwks_url` `{}`", url.get_ref()),
                );
            }
        }
        Some(AuthConfig {
            required: auth.required,
            algorithms,
            secret: auth.secret.as_ref().map(|s| s.get_ref().clone()),
            public_key_pem,
            jwks_url: auth.jwks_url.as_ref().map(|u| u.get_ref().clone()),
            jwks_min_refetch: Duration::from_secs(auth.jwks_min_refetch_s.unwrap_or(10)),
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            leeway: Duration::from_secs(auth.leeway_s.unwrap_or(30)),
        })
    }

    fn rate_limit(&mut self, raw: &Spanned<RawRateLimit>) -> Option<RateLimitConfig> {
        let at = raw.span().start;
        let limit = raw.get_ref();
        if !(limit.per_second.is_finite() && limit.per_second > 0.0) {
            self.error(at, "`per_second` must be a number greater than 0");
        }
        if limit.burst == 0 {
            self.error(at, "`burst` must be at least 1");
        }
        self.one_of(&limit.key, &["ip", "subject"], "rate limit key");
        self.one_of(&limit.backend, &["memory", "redis"], "rate limit backend");
        self.one_of(
            &limit.cost,
            &["requests", "upstream_calls"],
            "rate limit cost",
        );
        let backend = match (limit.backend.get_ref().as_str(), &limit.redis_url) {
            ("redis", Some(url)) => {
                if redis::Client::open(url.get_ref().as_str()).is_err() {
                    self.error(
                        url.span().start,
                        format!("invalid `redis_url` `{}`", url.get_ref()),
                    );
                }
                RateLimitBackend::Redis {
                    url: url.get_ref().clone(),
                }
            }
            ("redis", None) => {
                self.error(
                    limit.backend.span().start,
                    "rate limit backend `redis` needs `redis_url`",
                );
                return None;
            }
            _ => RateLimitBackend::Memory,
        };
        Some(RateLimitConfig {
            per_second: limit.per_second,
            burst: limit.burst,
            key: if limit.key.get_ref() == "subject" {
                RateKey::Subject
            } else {
                RateKey::Ip
            },
            backend,
            cost: if limit.cost.get_ref() == "upstream_calls" {
                RateCost::UpstreamCalls
            } else {
                RateCost::Requests
            },
        })
    }

    fn persisted_queries(
        &mut self,
        raw: &RawPersistedQueries,
        base_dir: &Path,
    ) -> PersistedQueriesConfig {
        let mut safelist = std::collections::HashMap::new();
        if let Some(file) = &raw.safelist {
            let path = base_dir.join(file.get_ref());
            let display = path.display().to_string();
            let parsed = std::fs::read_to_string(&path)
                .map_err(|err| format!("cannot read safelist `{display}`: {err}"))
                .and_then(|text| {
                    serde_json::from_str::<std::collections::HashMap<String, String>>(&text).map_err(|err| {
                        format!("safelist `{display}` must be a JSON object of sha256 → query: {err}")
                    })
                });
            match parsed {
                Ok(entries) => {
                    for (hash, query) in entries {
                        if crate::admission::persisted::sha256_hex(&query)
                            != hash.to_ascii_lowercase()
                        {
                            self.error(
                                file.span().start,
                                format!(
                                    "safelist `{display}`: `{hash}` is not the sha256 of its query"
                                ),
                            );
                        }
                        safelist.insert(hash, query);
                    }
                }
                Err(message) => self.error(file.span().start, message),
            }
        } else if raw.only_safelisted {
            self.error(
                0,
                "[persisted_queries] `only_safelisted = true` needs a `safelist` file",
            );
        }
        PersistedQueriesConfig {
            apq: raw.apq,
            only_safelisted: raw.only_safelisted,
            safelist,
        }
    }

    fn limits(&mut self, raw: &RawLimits) -> Limits {
        Limits {
            max_depth: raw.max_depth,
            max_complexity: raw.max_complexity,
            max_aliases: raw.max_aliases,
            max_batch: raw.max_batch as usize,
            max_body_bytes: usize::try_from(raw.max_body_bytes).unwrap_or(usize::MAX),
            request_timeout: Duration::from_millis(raw.request_timeout_ms),
            max_upstream_calls: raw.max_upstream_calls,
            assumed_list_length: raw.assumed_list_length,
        }
    }

    fn service(
        &mut self,
        name: &str,
        raw: &Spanned<RawService>,
        base_dir: &Path,
    ) -> Option<ServiceConfig> {
        let at = raw.span().start;
        let service = raw.get_ref();
        let mut urls = Vec::new();
        match (&service.url, &service.urls) {
            (Some(_), Some(_)) => self.error(
                at,
                format!("service `{name}` sets both `url` and `urls`; keep one"),
            ),
            (None, None) => self.error(at, format!("service `{name}` needs `url` or `urls`")),
            (Some(url), None) => urls.push(url),
            (None, Some(list)) if list.is_empty() => {
                self.error(at, format!("service `{name}` has an empty `urls` list"))
            }
            (None, Some(list)) => urls.extend(list.iter()),
        }
        let urls: Vec<String> = urls
            .into_iter()
            .filter_map(|url| self.base_url(url))
            .collect();
        self.one_of(
            &service.load_balancing,
            &["round_robin", "least_requests"],
            "load_balancing",
        );
        let load_balancing = match service.load_balancing.get_ref().as_str() {
            "least_requests" => LoadBalancing::LeastRequests,
            _ => LoadBalancing::RoundRobin,
        };
        self.one_of(
            &service.follow_redirects,
            &["same-origin", "any", "none"],
            "follow_redirects",
        );
        let follow_redirects = match service.follow_redirects.get_ref().as_str() {
            "any" => FollowRedirects::Any,
            "none" => FollowRedirects::None,
            _ => FollowRedirects::SameOrigin,
        };
        let health = service.health.as_ref().map(|health| {
            let at = health.span().start;
            let health = health.get_ref();
            if !health.path.starts_with('/') {
                self.error(
                    at,
                    format!("service `{name}`: `health.path` must start with `/`"),
                );
            }
            if health.interval_ms == 0 {
                self.error(
                    at,
                    format!("service `{name}`: `health.interval_ms` must be greater than 0"),
                );
            }
            HealthCheckConfig {
                path: health.path.clone(),
                interval: Duration::from_millis(health.interval_ms.max(1)),
            }
        });
        let circuit_breaker = service.circuit_breaker.as_ref().map(|breaker| {
            let at = breaker.span().start;
            let breaker = breaker.get_ref();
            if breaker.failures == 0 {
                self.error(
                    at,
                    format!("service `{name}`: `circuit_breaker.failures` must be greater than 0"),
                );
            }
            if breaker.open_ms == 0 {
                self.error(
                    at,
                    format!("service `{name}`: `circuit_breaker.open_ms` must be greater than 0"),
                );
            }
            CircuitBreakerConfig {
                failures: breaker.failures.max(1),
                open: Duration::from_millis(breaker.open_ms),
            }
        });
        if service.timeout_ms == 0 {
            self.error(
                at,
                format!("service `{name}`: `timeout_ms` must be greater than 0"),
            );
        }
        if service.max_response_bytes == 0 {
            self.error(
                at,
                format!("service `{name}`: `max_response_bytes` must be greater than 0"),
            );
        }
        if service.max_concurrency == 0 {
            self.error(
                at,
                format!("service `{name}`: `max_concurrency` must be greater than 0"),
            );
        }
        let tls = service
            .tls
            .as_ref()
            .and_then(|tls| self.service_tls(name, tls, base_dir));
        let headers = service
            .headers
            .iter()
            .filter_map(|(header, value)| {
                let name = self.header_name(header, value.span().start)?;
                match HeaderValue::from_str(value.get_ref()) {
                    Ok(value) => Some((name, value)),
                    Err(_) => {
                        self.error(
                            value.span().start,
                            format!("invalid value for header `{header}`"),
                        );
                        None
                    }
                }
            })
            .collect();
        let forward_headers = service
            .forward_headers
            .iter()
            .filter_map(|h| self.header_name(h.get_ref(), h.span().start))
            .collect();
        let forward_response_headers = service
            .forward_response_headers
            .iter()
            .filter_map(|h| self.header_name(h.get_ref(), h.span().start))
            .collect();
        let claims_headers = service
            .claims_headers
            .iter()
            .filter_map(|(header, claim)| {
                Some((
                    self.header_name(header, claim.span().start)?,
                    claim.get_ref().clone(),
                ))
            })
            .collect();
        let answers = self.service_answers(service);
        let oauth2 = service
            .oauth2
            .as_ref()
            .and_then(|oauth2| self.oauth2(name, oauth2));
        Some(ServiceConfig {
            answers,
            oauth2,
            name: name.to_owned(),
            urls,
            timeout: Duration::from_millis(service.timeout_ms),
            retries: service.retries,
            headers,
            forward_headers,
            forward_response_headers,
            claims_headers,
            max_concurrency: service.max_concurrency,
            coalesce: service.coalesce,
            batch_window: Duration::from_millis(service.batch_window_ms),
            max_response_bytes: usize::try_from(service.max_response_bytes).unwrap_or(usize::MAX),
            follow_redirects,
            load_balancing,
            health,
            circuit_breaker,
            tls,
        })
    }

    fn base_url(&mut self, url: &Spanned<String>) -> Option<String> {
        match reqwest::Url::parse(url.get_ref()) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    self.error(
                        url.span().start,
                        "a service URL cannot carry a query or fragment",
                    );
                    return None;
                }
                Some(parsed.as_str().trim_end_matches('/').to_owned())
            }
            Ok(_) => {
                self.error(
                    url.span().start,
                    format!("`{}` is not an http(s) URL", url.get_ref()),
                );
                None
            }
            Err(err) => {
                self.error(
                    url.span().start,
                    format!("invalid URL `{}`: {err}", url.get_ref()),
                );
                None
            }
        }
    }

    fn header_name(&mut self, name: &str, offset: usize) -> Option<HeaderName> {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                self.error(offset, format!("invalid header name `{name}`"));
                None
            }
        }
    }

    fn type_resolution(
        &mut self,
        name: &str,
        raw: &Spanned<RawTypeResolution>,
    ) -> Option<TypeResolution> {
        let at = raw.span().start;
        let resolution = raw.get_ref();
        let Some(discriminator) = &resolution.discriminator else {
            self.error(at, format!("[types.{name}] needs `discriminator`"));
            return None;
        };
        if resolution.map.is_empty() {
            self.error(at, format!("[types.{name}] needs a non-empty `map`"));
        }
        Some(TypeResolution {
            discriminator: discriminator.get_ref().clone(),
            map: resolution
                .map
                .iter()
                .map(|(value, ty)| (value.clone(), ty.get_ref().clone()))
                .collect(),
            location: self.location(at),
        })
    }

    fn mapping(
        &mut self,
        key: &str,
        at: usize,
        raw: &Spanned<RawMapping>,
        services: &IndexMap<String, Arc<ServiceConfig>>,
    ) -> Option<FieldMapping> {
        let Some((type_name, field_name)) = key.split_once('.') else {
            self.error(at, format!("resolver key `{key}` must be `Type.field`"));
            return None;
        };
        let mapping = raw.get_ref();
        let mut placeholders = Vec::new();
        let has_call = mapping.service.is_some() || method_of(&mapping.as_call()).is_some();
        let other_source = mapping.from.is_some()
            || mapping.merge.is_some()
            || mapping.batch.is_some()
            || has_call;
        let event = self.event(mapping, &mut placeholders);
        let source = if mapping.webhook.is_some() && !other_source && mapping.value.is_none() {
            Some(FieldSource::Webhook)
        } else if let Some(value) = &mapping.value {
            if other_source {
                self.error(
                    at,
                    format!(
                        "resolver `{key}` mixes `value` with `from`, `merge`, `batch` or a call; use one"
                    ),
                );
                None
            } else {
                self.template(value, &mut placeholders)
                    .map(FieldSource::Value)
            }
        } else if !other_source && mapping.has_shape() {
            // Only shaping keys: the parent's key of the field's name,
            // shaped.
            Some(FieldSource::From(vec![field_name.to_owned()]))
        } else {
            match (&mapping.from, &mapping.merge, &mapping.batch, has_call) {
                (Some(from), None, None, false) => Some(FieldSource::From(dotted(from.get_ref()))),
                (None, Some(calls), None, false) => {
                    if calls.is_empty() {
                        self.error(at, "`merge` needs at least one call");
                    }
                    let specs: Vec<CallSpec> = calls
                        .iter()
                        .filter_map(|call| {
                            self.call(
                                call.span().start,
                                &call.get_ref().as_call(),
                                services,
                                &mut placeholders,
                            )
                        })
                        .collect();
                    (specs.len() == calls.len()).then_some(FieldSource::Merge(specs))
                }
                (None, None, Some(batch), _) => {
                    self.batch(mapping, batch, services, &mut placeholders)
                }
                (None, None, None, true) => self
                    .call(
                        raw.span().start,
                        &mapping.as_call(),
                        services,
                        &mut placeholders,
                    )
                    .map(FieldSource::Call),
                (None, None, None, false) => {
                    self.error(
                    at,
                    format!(
                        "resolver `{}` needs a call (`service` + get/post/put/patch/delete), `from`, `merge` or `batch`",
                        key
                    ),
                );
                    None
                }
                _ => {
                    self.error(
                        at,
                        format!(
                            "resolver `{}` mixes `from`, `merge`, `batch` and a call; use one",
                            key
                        ),
                    );
                    None
                }
            }
        };
        let mut source = source;
        self.shape_calls(key, at, mapping, source.as_mut(), &mut placeholders);
        // A webhook field's `filter` chooses its events (docs/SUBSCRIPTIONS.md):
        // it shapes nothing.
        let (shape, shape_locations) = if mapping.webhook.is_some() {
            (None, ShapeLocations::default())
        } else {
            self.shape(mapping, &mut placeholders)
        };
        if mapping.stale_while_revalidate_s.is_some() && mapping.cache_ttl_s.is_none() {
            self.error(at, "`stale_while_revalidate_s` needs `cache_ttl_s`");
        }
        if mapping.stale_while_revalidate_s.is_some() && mapping.batch.is_some() {
            self.error(
                at,
                "`stale_while_revalidate_s` is not supported on a `batch` mapping yet",
            );
        }
        let invalidates = mapping
            .invalidates
            .iter()
            .flatten()
            .filter_map(|call| self.invalidated(call, services, &mut placeholders))
            .collect();
        Some(FieldMapping {
            type_name: type_name.to_owned(),
            field_name: field_name.to_owned(),
            location: self.location(at),
            source,
            placeholders,
            timeout: mapping.timeout_ms.map(Duration::from_millis),
            cache_ttl: mapping.cache_ttl_s.map(Duration::from_secs),
            stale_if_error: mapping.stale_if_error_s.map(Duration::from_secs),
            stale_while_revalidate: mapping.stale_while_revalidate_s.map(Duration::from_secs),
            invalidates,
            event,
            shape,
            shape_locations,
        })
    }

    /// `poll_ms` + `emit`, or `webhook` + `filter`: what feeds a
    /// subscription field (docs/SUBSCRIPTIONS.md). That the field is one of
    /// the subscription type's is checked against the schema when binding.
    fn event(
        &mut self,
        mapping: &RawMapping,
        placeholders: &mut Vec<(Location, Placeholder)>,
    ) -> Option<EventSpec> {
        if let Some(emit) = &mapping.emit {
            self.one_of(emit, &["changes", "every"], "`emit`");
            if mapping.poll_ms.is_none() {
                self.error(emit.span().start, "`emit` needs `poll_ms`");
            }
        }
        match (&mapping.poll_ms, &mapping.webhook) {
            (Some(poll), None) => {
                if *poll.get_ref() == 0 {
                    self.error(poll.span().start, "`poll_ms` must be at least 1");
                }
                let emit = match mapping.emit.as_ref().map(|e| e.get_ref().as_str()) {
                    Some("every") => Emit::Every,
                    _ => Emit::Changes,
                };
                Some(EventSpec::Poll {
                    every: Duration::from_millis((*poll.get_ref()).max(1)),
                    emit,
                })
            }
            (None, Some(name)) => {
                let has_other = mapping.service.is_some()
                    || method_of(&mapping.as_call()).is_some()
                    || mapping.from.is_some()
                    || mapping.merge.is_some()
                    || mapping.batch.is_some();
                if has_other {
                    self.error(
                        name.span().start,
                        "a `webhook` field makes no call: drop `service`, the method, `from`, `merge` and `batch`",
                    );
                }
                let filter = mapping
                    .filter
                    .iter()
                    .flat_map(|filter| filter.get_ref().iter())
                    .filter_map(|(path, value)| {
                        Some((dotted(path), self.template(value, placeholders)?))
                    })
                    .collect();
                Some(EventSpec::Webhook {
                    name: name.get_ref().clone(),
                    filter,
                })
            }
            (Some(poll), Some(_)) => {
                self.error(
                    poll.span().start,
                    "a subscription field is fed by `poll_ms` or by `webhook`, not both",
                );
                None
            }
            (None, None) => None,
        }
    }

    fn subscriptions(&mut self, subscriptions: &RawSubscriptions) -> SubscriptionsConfig {
        if *subscriptions.keepalive_ms.get_ref() == 0 {
            self.error(
                subscriptions.keepalive_ms.span().start,
                "`keepalive_ms` must be at least 1",
            );
        }
        let redis_broker = match (&subscriptions.broker, &subscriptions.redis_url) {
            (Some(broker), url) if broker.get_ref() == "redis" => match url {
                Some(url) => {
                    if redis::Client::open(url.get_ref().as_str()).is_err() {
                        self.error(
                            url.span().start,
                            format!("invalid `redis_url` `{}`", url.get_ref()),
                        );
                    }
                    Some(url.get_ref().clone())
                }
                None => {
                    self.error(
                        broker.span().start,
                        "subscriptions broker `redis` needs `redis_url`",
                    );
                    None
                }
            },
            (Some(broker), _) => {
                self.one_of(broker, &["redis"], "subscriptions broker");
                None
            }
            (None, Some(url)) => {
                self.error(
                    url.span().start,
                    "`redis_url` in [subscriptions] needs `broker = \"redis\"`",
                );
                None
            }
            (None, None) => None,
        };
        SubscriptionsConfig {
            max_per_client: subscriptions.max_per_client,
            max_total: subscriptions.max_total,
            keepalive: Duration::from_millis((*subscriptions.keepalive_ms.get_ref()).max(1)),
            redis_broker,
        }
    }

    fn webhooks(
        &mut self,
        raw: &IndexMap<String, Spanned<RawWebhook>>,
    ) -> IndexMap<String, WebhookConfig> {
        let mut webhooks = IndexMap::new();
        for (name, webhook) in raw {
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                self.error(
                    webhook.span().start,
                    format!("webhook name `{name}` may hold only letters, digits, `-` and `_` (it is a URL path segment)"),
                );
            }
            match &webhook.get_ref().secret {
                Some(secret) if secret.get_ref().is_empty() => {
                    self.error(secret.span().start, "a webhook `secret` cannot be empty")
                }
                Some(secret) => {
                    webhooks.insert(
                        name.clone(),
                        WebhookConfig {
                            secret: secret.get_ref().clone(),
                        },
                    );
                }
                None => self.error(
                    webhook.span().start,
                    format!("webhook `{name}` needs a `secret`"),
                ),
            }
        }
        webhooks
    }

    /// One `invalidates` entry: a service and a method with a path (and
    /// `query`); the headers and body of cached calls do not matter, so
    /// they cannot be given.
    fn invalidated(
        &mut self,
        raw: &Spanned<RawCall>,
        services: &IndexMap<String, Arc<ServiceConfig>>,
        placeholders: &mut Vec<(Location, Placeholder)>,
    ) -> Option<CallSpec> {
        let at = raw.span().start;
        let call = raw.get_ref();
        if call.body.is_some() || !call.headers.is_empty() || call.select.is_some() {
            self.error(
                at,
                "an `invalidates` entry names a method and URL only: `body`, `headers` and `select` do not apply",
            );
            return None;
        }
        self.call(at, &call.as_call(), services, placeholders)
    }

    fn batch(
        &mut self,
        mapping: &RawMapping,
        raw: &Spanned<RawBatch>,
        services: &IndexMap<String, Arc<ServiceConfig>>,
        placeholders: &mut Vec<(Location, Placeholder)>,
    ) -> Option<FieldSource> {
        let at = raw.span().start;
        let batch = raw.get_ref();
        // The single-key call beside `batch` is optional; when present it is
        // checked like any call, though batching always takes precedence.
        if method_of(&mapping.as_call()).is_some() {
            self.call(at, &mapping.as_call(), services, placeholders)?;
        }
        let key = match &batch.key {
            Some(key) => self.template(key, placeholders)?,
            None => {
                self.error(at, "`batch` needs `key`");
                return None;
            }
        };
        let Some(match_field) = &batch.match_field else {
            self.error(
                at,
                "`batch` needs `match` (the field of each item that equals the key)",
            );
            return None;
        };
        let call_parts = CallParts {
            service: mapping.service.as_ref(),
            get: batch.get.as_ref(),
            post: batch.post.as_ref(),
            put: None,
            patch: None,
            delete: None,
            query: &IndexMap::new(),
            headers: &mapping.headers,
            body: batch.body.as_ref(),
            select: batch.select.as_ref(),
        };
        if batch.get.is_none() && batch.post.is_none() {
            self.error(at, "`batch` needs `get` or `post` with `{keys}`");
            return None;
        }
        let call = self.call(at, &call_parts, services, placeholders)?;
        if batch.max == Some(0) {
            self.error(at, "`batch.max` must be at least 1");
        }
        Some(FieldSource::Batch(BatchSpec {
            key,
            call,
            match_field: dotted(match_field.get_ref()),
            max: batch
                .max
                .map_or(DEFAULT_BATCH_MAX, |max| max.max(1) as usize),
        }))
    }

    fn call(
        &mut self,
        at: usize,
        raw: &CallParts<'_>,
        services: &IndexMap<String, Arc<ServiceConfig>>,
        placeholders: &mut Vec<(Location, Placeholder)>,
    ) -> Option<CallSpec> {
        let service = match raw.service {
            Some(service) if services.contains_key(service.get_ref()) => {
                Some(service.get_ref().clone())
            }
            Some(service) => {
                let known: Vec<&str> = services.keys().map(String::as_str).collect();
                self.error(
                    service.span().start,
                    format!(
                        "unknown service `{}` (defined: {})",
                        service.get_ref(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                None
            }
            None => {
                self.error(at, "a call needs `service`");
                None
            }
        };
        let methods = raw.methods();
        let (method, path) = match methods.as_slice() {
            [(method, path)] => (method.clone(), *path),
            [] => {
                self.error(
                    at,
                    "a call needs one of `get`, `post`, `put`, `patch`, `delete`",
                );
                return None;
            }
            _ => {
                self.error(
                    at,
                    "a call takes exactly one of `get`, `post`, `put`, `patch`, `delete`",
                );
                return None;
            }
        };
        let (path_part, query_part) = match path.get_ref().split_once('?') {
            Some((path_part, query_part)) => (path_part, Some(query_part)),
            None => (path.get_ref().as_str(), None),
        };
        if !path_part.starts_with('/') {
            self.error(
                path.span().start,
                format!("path `{}` must start with `/`", path.get_ref()),
            );
        }
        let path_template = self.template_text(path_part, path.span().start, placeholders);
        let mut query = Vec::new();
        for pair in query_part
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if let Some(value) = self.template_text(value, path.span().start, placeholders) {
                query.push((name.to_owned(), value));
            }
        }
        for (name, value) in raw.query {
            if let Some(value) = self.template(value, placeholders) {
                query.push((name.clone(), value));
            }
        }
        let mut headers = Vec::new();
        for (name, value) in raw.headers {
            let header = self.header_name(name, value.span().start);
            let template = self.template(value, placeholders);
            if let (Some(header), Some(template)) = (header, template) {
                headers.push((header, template));
            }
        }
        let body = raw
            .body
            .and_then(|body| self.body(body.get_ref(), body.span().start, placeholders));
        if raw.body.is_some() && method == Method::GET {
            self.error(at, "a GET call cannot have a `body`");
        }
        let answers = service
            .as_ref()
            .and_then(|name| services.get(name))
            .map(|s| s.answers.clone())
            .unwrap_or_default();
        Some(CallSpec {
            service: service?,
            method,
            path_text: Arc::from(path.get_ref().as_str()),
            path: path_template?,
            query,
            headers,
            body,
            select: raw.select.map(|s| dotted(s.get_ref())),
            form_body: false,
            answers,
        })
    }

    fn body(
        &mut self,
        value: &toml::Value,
        offset: usize,
        placeholders: &mut Vec<(Location, Placeholder)>,
    ) -> Option<BodyTemplate> {
        Some(match value {
            toml::Value::String(text) => {
                BodyTemplate::Text(self.template_text(text, offset, placeholders)?)
            }
            toml::Value::Integer(n) => BodyTemplate::Literal((*n).into()),
            toml::Value::Float(f) => BodyTemplate::Literal(
                serde_json::Number::from_f64(*f)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
            ),
            toml::Value::Boolean(b) => BodyTemplate::Literal((*b).into()),
            toml::Value::Datetime(d) => BodyTemplate::Literal(d.to_string().into()),
            toml::Value::Array(items) => BodyTemplate::Array(
                items
                    .iter()
                    .map(|item| self.body(item, offset, placeholders))
                    .collect::<Option<_>>()?,
            ),
            toml::Value::Table(table) => BodyTemplate::Object(
                table
                    .iter()
                    .map(|(key, item)| Some((key.clone(), self.body(item, offset, placeholders)?)))
                    .collect::<Option<_>>()?,
            ),
        })
    }

    fn template(
        &mut self,
        text: &Spanned<String>,
        placeholders: &mut Vec<(Location, Placeholder)>,
    ) -> Option<Template> {
        self.template_text(text.get_ref(), text.span().start, placeholders)
    }

    fn template_text(
        &mut self,
        text: &str,
        offset: usize,
        placeholders: &mut Vec<(Location, Placeholder)>,
    ) -> Option<Template> {
        match Template::parse(text) {
            Ok(template) => {
                if !self.response_placeholders_fit(&template, offset) {
                    return None;
                }
                let location = self.location(offset);
                placeholders.extend(
                    template
                        .placeholders()
                        .map(|p| (location.clone(), p.clone())),
                );
                Some(template)
            }
            Err(message) => {
                self.error(offset, message);
                None
            }
        }
    }
}

/// docs/SHAPING.md: `errors`, `null_on`, `error_when`, `value`, `filter`,
/// `limit`, `map`, `default`, `body_format`, `oauth2`.
impl Validator<'_> {
    /// A service's `errors`, `null_on`, `error_when`: the defaults of its
    /// calls.
    fn service_answers(&mut self, service: &RawService) -> Arc<AnswerRules> {
        let mut placeholders = Vec::new();
        let overrides = self.answer_keys(
            service.errors.as_ref(),
            service.null_on.as_ref(),
            service.error_when.as_ref(),
            &mut placeholders,
        );
        let mut rules = AnswerRules::default().with(&overrides);
        for (location, placeholder) in placeholders {
            if placeholder.root == Root::Parent || placeholder.root == Root::Keys {
                // A service's templates serve every field: the parent's and
                // the batch's shapes differ from one to the next.
                self.diagnostics.push(super::Diagnostic::at(
                    location,
                    format!("`{placeholder}`: a service's `errors` and `error_when` can use `response`, `args`, `claims` and `headers` only"),
                ));
                rules = AnswerRules::default();
            }
        }
        Arc::new(rules)
    }

    fn answer_keys(
        &mut self,
        errors: Option<&Spanned<RawErrors>>,
        null_on: Option<&Spanned<Vec<u16>>>,
        error_when: Option<&Spanned<String>>,
        placeholders: &mut Vec<(Location, Placeholder)>,
    ) -> AnswerOverrides {
        self.response_allowed = true;
        let mut overrides = AnswerOverrides::default();
        if let Some(errors) = errors {
            let errors = errors.get_ref();
            overrides.errors.message = errors
                .message
                .as_ref()
                .and_then(|t| self.template(t, placeholders));
            overrides.errors.code = errors
                .code
                .as_ref()
                .and_then(|t| self.template(t, placeholders));
            for (name, template) in &errors.extensions {
                if let Some(compiled) = self.template(template, placeholders) {
                    overrides.errors.extensions.push((name.clone(), compiled));
                }
            }
        }
        overrides.error_when = error_when.and_then(|t| self.template(t, placeholders));
        self.response_allowed = false;
        if let Some(null_on) = null_on {
            for status in null_on.get_ref() {
                if !(100..=599).contains(status) {
                    self.error(
                        null_on.span().start,
                        format!("`null_on`: {status} is not an HTTP status"),
                    );
                }
            }
            overrides.null_on = Some(null_on.get_ref().clone());
        }
        overrides
    }

    /// Whether `template`'s `{response.…}` placeholders may be there, each
    /// problem reported.
    fn response_placeholders_fit(&mut self, template: &Template, offset: usize) -> bool {
        let mut fits = true;
        for placeholder in template.placeholders().filter(|p| p.root == Root::Response) {
            let problem = if self.response_allowed {
                crate::connector::errors::check_response_placeholder(placeholder).err()
            } else {
                Some(format!(
                    "`{placeholder}`: `{{response.…}}` is only available in `errors` and `error_when`"
                ))
            };
            if let Some(problem) = problem {
                self.error(offset, problem);
                fits = false;
            }
        }
        fits
    }

    /// A mapping's `errors`, `null_on`, `error_when` over its calls' service
    /// defaults, and `body_format`.
    fn shape_calls(
        &mut self,
        key: &str,
        at: usize,
        mapping: &RawMapping,
        source: Option<&mut FieldSource>,
        placeholders: &mut Vec<(Location, Placeholder)>,
    ) {
        let overrides = self.answer_keys(
            mapping.errors.as_ref(),
            mapping.null_on.as_ref(),
            mapping.error_when.as_ref(),
            placeholders,
        );
        let form = match &mapping.body_format {
            None => false,
            Some(format) => {
                self.one_of(format, &["json", "form"], "body_format");
                format.get_ref() == "form"
            }
        };
        let calls: Vec<&mut CallSpec> = match source {
            Some(FieldSource::Call(spec)) => vec![spec],
            Some(FieldSource::Merge(specs)) => specs.iter_mut().collect(),
            Some(FieldSource::Batch(batch)) => vec![&mut batch.call],
            _ => Vec::new(),
        };
        let has_call = !calls.is_empty()
            || mapping.service.is_some()
            || mapping.merge.is_some()
            || mapping.batch.is_some();
        if !has_call && (!overrides.is_empty() || mapping.body_format.is_some()) {
            self.error(
                at,
                format!("resolver `{key}`: `errors`, `null_on`, `error_when` and `body_format` apply to calls only"),
            );
        }
        if form {
            let body = mapping.body.as_ref().or(mapping
                .batch
                .as_ref()
                .and_then(|b| b.get_ref().body.as_ref()));
            match body {
                Some(body) => self.form_body(body),
                None => self.error(at, "`body_format = \"form\"` needs a `body` table"),
            }
        }
        for call in calls {
            if !overrides.is_empty() {
                call.answers = Arc::new(call.answers.with(&overrides));
            }
            call.form_body = form;
        }
    }

    /// A form body is a table of templates or scalars: a nested table or an
    /// array has no form encoding.
    fn form_body(&mut self, body: &Spanned<toml::Value>) {
        let Some(table) = body.get_ref().as_table() else {
            self.error(
                body.span().start,
                "`body_format = \"form\"`: `body` must be a table of templates",
            );
            return;
        };
        for (name, value) in table {
            if value.is_table() || value.is_array() {
                self.error(
                    body.span().start,
                    format!("`body_format = \"form\"`: `body.{name}` is nested (a form body is one level of name = value)"),
                );
            }
        }
    }

    /// `filter`, `limit`, `map`, `default`, compiled; their locations for
    /// the schema checks in `schema::binding`.
    fn shape(
        &mut self,
        mapping: &RawMapping,
        placeholders: &mut Vec<(Location, Placeholder)>,
    ) -> (Option<Arc<Shape>>, ShapeLocations) {
        let mut shape = Shape::default();
        let mut locations = ShapeLocations::default();
        if let Some(filter) = &mapping.filter {
            locations.filter = Some(self.location(filter.span().start));
            for (path, template) in filter.get_ref() {
                if let Some(template) = self.template(template, placeholders) {
                    shape.filter.push((dotted(path), template));
                }
            }
        }
        if let Some(limit) = &mapping.limit {
            locations.limit = Some(self.location(limit.span().start));
            let text = match limit.get_ref() {
                toml::Value::Integer(n) if *n >= 0 => Some(n.to_string()),
                toml::Value::String(text) => Some(text.clone()),
                _ => {
                    self.error(
                        limit.span().start,
                        "`limit` must be a non-negative integer or a template like \"{args.first}\"",
                    );
                    None
                }
            };
            shape.limit =
                text.and_then(|text| self.template_text(&text, limit.span().start, placeholders));
        }
        if let Some(map) = &mapping.map {
            for (from, to) in map.get_ref() {
                shape.map.push((from.clone(), from_toml(to.get_ref())));
                locations
                    .map
                    .push((self.location(to.span().start), to.get_ref().clone()));
            }
        }
        if let Some(default) = &mapping.default {
            shape.default = Some(from_toml(default.get_ref()));
            locations.default = Some((
                self.location(default.span().start),
                default.get_ref().clone(),
            ));
        }
        let shape = (!shape.is_empty()).then(|| Arc::new(shape));
        (shape, locations)
    }

    /// `[services.X].oauth2`: every key present, the token URL an http(s)
    /// URL. The secret is never in a message.
    fn oauth2(&mut self, name: &str, raw: &Spanned<RawOAuth2>) -> Option<OAuth2Config> {
        let at = raw.span().start;
        let oauth2 = raw.get_ref();
        let (Some(token_url), Some(client_id), Some(client_secret)) =
            (&oauth2.token_url, &oauth2.client_id, &oauth2.client_secret)
        else {
            self.error(
                at,
                format!(
                    "service `{name}`: `oauth2` needs `token_url`, `client_id` and `client_secret`"
                ),
            );
            return None;
        };
        let url = match reqwest::Url::parse(token_url.get_ref()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => {
                self.error(
                    token_url.span().start,
                    format!("service `{name}`: `oauth2.token_url` is not an http(s) URL"),
                );
                return None;
            }
        };
        Some(OAuth2Config {
            token_url: url,
            client_id: client_id.get_ref().clone(),
            client_secret: Secret::new(client_secret.get_ref().clone()),
            scopes: oauth2.scopes.clone(),
        })
    }
}

impl RawMapping {
    /// Any of `filter`, `limit`, `map`, `default`.
    fn has_shape(&self) -> bool {
        self.filter.is_some()
            || self.limit.is_some()
            || self.map.is_some()
            || self.default.is_some()
    }
}

/// The call keys of a mapping or a `merge` entry, borrowed.
struct CallParts<'a> {
    service: Option<&'a Spanned<String>>,
    get: Option<&'a Spanned<String>>,
    post: Option<&'a Spanned<String>>,
    put: Option<&'a Spanned<String>>,
    patch: Option<&'a Spanned<String>>,
    delete: Option<&'a Spanned<String>>,
    query: &'a IndexMap<String, Spanned<String>>,
    headers: &'a IndexMap<String, Spanned<String>>,
    body: Option<&'a Spanned<toml::Value>>,
    select: Option<&'a Spanned<String>>,
}

impl<'a> CallParts<'a> {
    fn methods(&self) -> Vec<(Method, &'a Spanned<String>)> {
        [
            (Method::GET, self.get),
            (Method::POST, self.post),
            (Method::PUT, self.put),
            (Method::PATCH, self.patch),
            (Method::DELETE, self.delete),
        ]
        .into_iter()
        .filter_map(|(method, path)| Some((method, path?)))
        .collect()
    }
}

fn method_of(call: &CallParts<'_>) -> Option<Method> {
    call.methods().first().map(|(method, _)| method.clone())
}

impl RawMapping {
    fn as_call(&self) -> CallParts<'_> {
        CallParts {
            service: self.service.as_ref(),
            get: self.get.as_ref(),
            post: self.post.as_ref(),
            put: self.put.as_ref(),
            patch: self.patch.as_ref(),
            delete: self.delete.as_ref(),
            query: &self.query,
            headers: &self.headers,
            body: self.body.as_ref(),
            select: self.select.as_ref(),
        }
    }
}

impl RawCall {
    fn as_call(&self) -> CallParts<'_> {
        CallParts {
            service: self.service.as_ref(),
            get: self.get.as_ref(),
            post: self.post.as_ref(),
            put: self.put.as_ref(),
            patch: self.patch.as_ref(),
            delete: self.delete.as_ref(),
            query: &self.query,
            headers: &self.headers,
            body: self.body.as_ref(),
            select: self.select.as_ref(),
        }
    }
}

fn dotted(path: &str) -> Vec<String> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
