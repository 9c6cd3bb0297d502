//! The raw, user-shaped model of `services.toml`: exactly what serde reads,
//! with source spans kept where a later check needs to point at a value.
//!
//! No `deny_unknown_fields` here: unknown keys are collected all at once by
//! `serde_ignored` in `config::load`, so `check` can report every one of them
//! with its location instead of stopping at the first.
//!
//! The same types give the JSON Schema of `services.toml`
//! (`docs/services.schema.json`, [`json_schema`]) that editors complete
//! from, and the known keys `check` suggests from: a key added here is in
//! both without another list to keep. The schema says
//! `additionalProperties: false` (`schemars(deny_unknown_fields)`), as
//! `check` does.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawConfig {
    /// A .graphql file, a directory of them, or a list of either.
    pub schema: Option<Spanned<OneOrMany>>,
    /// The listen address, GraphiQL, introspection, CORS, TLS, timeouts.
    pub server: RawServer,
    /// What a document may cost before it is refused.
    pub limits: RawLimits,
    /// JWT verification; without this table no token is read.
    pub auth: Option<Spanned<RawAuth>>,
    /// The REST services, by name: `[services.NAME]`.
    pub services: IndexMap<String, Spanned<RawService>>,
    /// The response cache's backend (memory or Redis).
    pub cache: RawCache,
    /// A token bucket per client; without this table no limit.
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    /// Automatic persisted queries and the safelist.
    pub persisted_queries: RawPersistedQueries,
    /// Metrics, trace context, OTLP export.
    pub telemetry: RawTelemetry,
    /// How a JSON object's type is told for an interface or union.
    pub types: IndexMap<String, Spanned<RawTypeResolution>>,
    /// `"Type.field" = { … }`: the call (or path) that answers each field.
    pub resolvers: IndexMap<String, Spanned<RawMapping>>,
    /// docs/SUBSCRIPTIONS.md: limits, keepalive, the webhook broker.
    pub subscriptions: RawSubscriptions,
    /// `[webhooks.NAME]`: the services that push events.
    pub webhooks: IndexMap<String, Spanned<RawWebhook>>,
}

#[derive(Debug, Deserialize, Clone, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Spanned<String>,
    pub graphiql: bool,
    pub introspection: bool,
    pub cors_origins: Vec<Spanned<String>>,
    pub debug: bool,
    pub tls: Option<Spanned<RawServerTls>>,
    pub header_read_timeout_ms: Spanned<u64>,
    pub body_read_timeout_ms: Spanned<u64>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: Spanned::new(0..0, "127.0.0.1:4000".to_owned()),
            graphiql: true,
            introspection: true,
            cors_origins: Vec::new(),
            debug: false,
            tls: None,
            header_read_timeout_ms: Spanned::new(0..0, 10_000),
            body_read_timeout_ms: Spanned::new(0..0, 30_000),
        }
    }
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawServerTls {
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawLimits {
    pub max_depth: u32,
    pub max_complexity: u64,
    pub max_aliases: u32,
    pub max_batch: u32,
    pub max_body_bytes: u64,
    pub request_timeout_ms: u64,
    /// Predicted upstream calls per operation, at most (docs/PLAN.md).
    pub max_upstream_calls: u64,
    /// Items a list without `first`/`limit` is predicted to have.
    pub assumed_list_length: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_depth: 15,
            max_complexity: 10_000,
            max_aliases: 50,
            max_batch: 10,
            max_body_bytes: 1_048_576,
            request_timeout_ms: 15_000,
            max_upstream_calls: 200,
            assumed_list_length: 10,
        }
    }
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawAuth {
    pub required: bool,
    pub algorithms: Option<Vec<Spanned<String>>>,
    pub secret: Option<Spanned<String>>,
    pub public_key_file: Option<Spanned<String>>,
    pub jwks_url: Option<Spanned<String>>,
    pub jwks_min_refetch_s: Option<u64>,
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    pub leeway_s: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawService {
    pub url: Option<Spanned<String>>,
    pub urls: Option<Vec<Spanned<String>>>,
    pub load_balancing: Spanned<String>,
    pub timeout_ms: u64,
    pub retries: u32,
    pub headers: IndexMap<String, Spanned<String>>,
    pub forward_headers: Vec<Spanned<String>>,
    pub forward_response_headers: Vec<Spanned<String>>,
    pub claims_headers: IndexMap<String, Spanned<String>>,
    pub health: Option<Spanned<RawHealth>>,
    pub circuit_breaker: Option<Spanned<RawCircuitBreaker>>,
    pub max_concurrency: u32,
    pub coalesce: bool,
    pub batch_window_ms: u64,
    pub max_response_bytes: u64,
    pub follow_redirects: Spanned<String>,
    pub tls: Option<Spanned<RawServiceTls>>,
    /// docs/SHAPING.md: defaults for this service's calls.
    pub errors: Option<Spanned<RawErrors>>,
    pub null_on: Option<Spanned<Vec<u16>>>,
    pub error_when: Option<Spanned<String>>,
    /// docs/SHAPING.md "OAuth2 to services".
    pub oauth2: Option<Spanned<RawOAuth2>>,
}

/// `errors = { message, code, extensions }` (docs/SHAPING.md).
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawErrors {
    pub message: Option<Spanned<String>>,
    pub code: Option<Spanned<String>>,
    pub extensions: IndexMap<String, Spanned<String>>,
}

/// `oauth2 = { token_url, client_id, client_secret, scopes }`.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawOAuth2 {
    pub token_url: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub client_secret: Option<Spanned<String>>,
    pub scopes: Vec<String>,
}

impl Default for RawService {
    fn default() -> Self {
        RawService {
            url: None,
            urls: None,
            load_balancing: Spanned::new(0..0, "round_robin".to_owned()),
            timeout_ms: 5000,
            retries: 1,
            headers: IndexMap::new(),
            forward_headers: Vec::new(),
            forward_response_headers: Vec::new(),
            claims_headers: IndexMap::new(),
            health: None,
            circuit_breaker: None,
            max_concurrency: 512,
            coalesce: true,
            batch_window_ms: 1,
            max_response_bytes: 16 * 1024 * 1024,
            follow_redirects: Spanned::new(0..0, "same-origin".to_owned()),
            tls: None,
            errors: None,
            null_on: None,
            error_when: None,
            oauth2: None,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawHealth {
    pub path: String,
    pub interval_ms: u64,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            path: "/health".to_owned(),
            interval_ms: 5000,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    pub failures: u32,
    pub open_ms: u64,
}

impl Default for RawCircuitBreaker {
    fn default() -> Self {
        RawCircuitBreaker {
            failures: 5,
            open_ms: 10_000,
        }
    }
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawServiceTls {
    pub ca_file: Option<Spanned<String>>,
    pub client_cert_file: Option<Spanned<String>>,
    pub client_key_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawCache {
    pub backend: Spanned<String>,
    pub max_entries: u64,
    pub redis_url: Option<Spanned<String>>,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            backend: Spanned::new(0..0, "memory".to_owned()),
            max_entries: 10_000,
            redis_url: None,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_second: f64,
    pub burst: u32,
    pub key: Spanned<String>,
    pub backend: Spanned<String>,
    pub redis_url: Option<Spanned<String>>,
    /// `requests` or `upstream_calls` (docs/PLAN.md).
    pub cost: Spanned<String>,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        RawRateLimit {
            per_second: 50.0,
            burst: 100,
            key: Spanned::new(0..0, "ip".to_owned()),
            backend: Spanned::new(0..0, "memory".to_owned()),
            redis_url: None,
            cost: Spanned::new(0..0, "requests".to_owned()),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawPersistedQueries {
    pub apq: bool,
    pub safelist: Option<Spanned<String>>,
    pub only_safelisted: bool,
}

impl Default for RawPersistedQueries {
    fn default() -> Self {
        RawPersistedQueries {
            apq: true,
            safelist: None,
            only_safelisted: false,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawTelemetry {
    pub metrics: bool,
    pub otlp_endpoint: Option<Spanned<String>>,
    pub propagate_trace_context: bool,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        RawTelemetry {
            metrics: true,
            otlp_endpoint: None,
            propagate_trace_context: true,
        }
    }
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawTypeResolution {
    pub discriminator: Option<Spanned<String>>,
    pub map: IndexMap<String, Spanned<String>>,
}

/// One upstream call: the shape shared by a mapping and each `merge` entry.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawCall {
    pub service: Option<Spanned<String>>,
    pub get: Option<Spanned<String>>,
    pub post: Option<Spanned<String>>,
    pub put: Option<Spanned<String>>,
    pub patch: Option<Spanned<String>>,
    pub delete: Option<Spanned<String>>,
    pub query: IndexMap<String, Spanned<String>>,
    pub headers: IndexMap<String, Spanned<String>>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub body: Option<Spanned<toml::Value>>,
    pub select: Option<Spanned<String>>,
}

/// A `[resolvers]` entry. Which keys may appear together is checked in
/// `config::validate`, where every bad combination gets its own message.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawMapping {
    pub service: Option<Spanned<String>>,
    pub get: Option<Spanned<String>>,
    pub post: Option<Spanned<String>>,
    pub put: Option<Spanned<String>>,
    pub patch: Option<Spanned<String>>,
    pub delete: Option<Spanned<String>>,
    pub query: IndexMap<String, Spanned<String>>,
    pub headers: IndexMap<String, Spanned<String>>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub body: Option<Spanned<toml::Value>>,
    pub select: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub merge: Option<Vec<Spanned<RawCall>>>,
    pub batch: Option<Spanned<RawBatch>>,
    pub cache_ttl_s: Option<u64>,
    pub stale_if_error_s: Option<u64>,
    pub stale_while_revalidate_s: Option<u64>,
    /// On a mutation: the calls whose cached entries it drops.
    pub invalidates: Option<Vec<Spanned<RawCall>>>,
    pub timeout_ms: Option<u64>,
    /// docs/SHAPING.md: what the answer means, and how it is shaped.
    pub errors: Option<Spanned<RawErrors>>,
    pub null_on: Option<Spanned<Vec<u16>>>,
    pub error_when: Option<Spanned<String>>,
    pub value: Option<Spanned<String>>,
    /// With `webhook`: the event filter of docs/SUBSCRIPTIONS.md instead.
    pub filter: Option<Spanned<IndexMap<String, Spanned<String>>>>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub limit: Option<Spanned<toml::Value>>,
    #[schemars(with = "Option<IndexMap<String, serde_json::Value>>")]
    pub map: Option<Spanned<IndexMap<String, Spanned<toml::Value>>>>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<Spanned<toml::Value>>,
    pub body_format: Option<Spanned<String>>,
    /// A subscription field fed by polling its call this often.
    pub poll_ms: Option<Spanned<u64>>,
    /// `"changes"` (default) or `"every"`: which polls become events.
    pub emit: Option<Spanned<String>>,
    /// A subscription field fed by `[webhooks.NAME]`.
    pub webhook: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawSubscriptions {
    pub max_per_client: u32,
    pub max_total: u32,
    pub keepalive_ms: Spanned<u64>,
    pub broker: Option<Spanned<String>>,
    pub redis_url: Option<Spanned<String>>,
}

impl Default for RawSubscriptions {
    fn default() -> Self {
        RawSubscriptions {
            max_per_client: 20,
            max_total: 10_000,
            keepalive_ms: Spanned::new(0..0, 15_000),
            broker: None,
            redis_url: None,
        }
    }
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawWebhook {
    pub secret: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RawBatch {
    pub key: Option<Spanned<String>>,
    pub get: Option<Spanned<String>>,
    pub post: Option<Spanned<String>>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub body: Option<Spanned<toml::Value>>,
    pub select: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub match_field: Option<Spanned<String>>,
    pub max: Option<u32>,
}

/// `toml::Spanned` (the value and where it is written), which the JSON
/// Schema sees through: its schema is `T`'s. Derefs to `toml::Spanned`, so
/// `span()` and `get_ref()` read as before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T>(toml::Spanned<T>);

impl<T> Spanned<T> {
    pub fn new(range: std::ops::Range<usize>, value: T) -> Self {
        Spanned(toml::Spanned::new(range, value))
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = toml::Spanned<T>;
    fn deref(&self) -> &toml::Spanned<T> {
        &self.0
    }
}

impl<T> AsRef<T> for Spanned<T> {
    fn as_ref(&self) -> &T {
        self.0.get_ref()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        toml::Spanned::<T>::deserialize(deserializer).map(Spanned)
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// The JSON Schema of `services.toml`, generated from the types above
/// (committed as `docs/services.schema.json`; a test keeps it equal).
pub fn json_schema() -> serde_json::Value {
    // Draft 7 (`definitions`), the draft editors' TOML tooling (Taplo) reads.
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<RawConfig>().to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert("title".into(), "services.toml".into());
        object.insert(
            "description".into(),
            "Conflux gateway configuration: every key in docs/CONFIG.md".into(),
        );
    }
    schema
}
