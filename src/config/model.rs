//! The validated configuration Conflux runs on: every value parsed, every
//! template compiled, every path resolved. Built once by `config::load`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use indexmap::IndexMap;

use super::diagnostic::Location;
use crate::connector::template::{Placeholder, Template};

#[derive(Debug)]
pub struct Config {
    /// The config file, as given on the command line.
    pub path: PathBuf,
    /// Every schema file, directories expanded, in load order.
    pub schema_files: Vec<SchemaFile>,
    pub server: ServerConfig,
    pub limits: Limits,
    pub services: IndexMap<String, Arc<ServiceConfig>>,
    /// `[types.X]`: how a JSON object picks its concrete GraphQL type.
    pub types: IndexMap<String, TypeResolution>,
    pub mappings: Vec<FieldMapping>,
    /// Every `[resolvers]` key written, valid or not, so a root field whose
    /// entry has an error is not also reported as unmapped.
    pub mapped_fields: std::collections::HashSet<String>,
    /// `[auth]`: absent means no JWT at all.
    pub auth: Option<AuthConfig>,
    /// `[rate_limit]`: absent means no limit.
    pub rate_limit: Option<RateLimitConfig>,
    pub persisted_queries: PersistedQueriesConfig,
    pub cache: CacheConfig,
    pub telemetry: TelemetryConfig,
    /// Files besides the config and schema whose change means a reload
    /// (key files, the safelist, certificates).
    pub watched_files: Vec<PathBuf>,
    /// `[subscriptions]` (docs/SUBSCRIPTIONS.md).
    pub subscriptions: SubscriptionsConfig,
    /// `[webhooks.NAME]`, by name.
    pub webhooks: IndexMap<String, WebhookConfig>,
}

/// `[subscriptions]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionsConfig {
    /// Open subscriptions per client (its JWT subject, else its ip).
    pub max_per_client: u32,
    /// Open subscriptions on this instance.
    pub max_total: u32,
    /// SSE comment / graphql-ws `ping` interval.
    pub keepalive: Duration,
    /// `broker = "redis"`: webhooks received by any instance reach every
    /// instance's subscribers, over Redis pub/sub at this URL.
    pub redis_broker: Option<String>,
}

/// `[webhooks.NAME]`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The HMAC-SHA256 key of `x-conflux-signature`.
    pub secret: String,
}

/// What feeds a `Subscription` field's events.
#[derive(Debug)]
pub enum EventSpec {
    /// The mapping's call, made every `every`.
    Poll { every: Duration, emit: Emit },
    /// `webhook = NAME`: each delivery whose body matches `filter` (dotted
    /// path into the body → template over the field's arguments).
    Webhook {
        name: String,
        filter: Vec<(Vec<String>, Template)>,
    },
}

/// `emit` of a polled field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// The first answer, then each answer that differs from the last.
    Changes,
    /// Every poll's answer.
    Every,
}

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Serve `/metrics`.
    pub metrics: bool,
    /// Send W3C `traceparent`/`tracestate` upstream.
    pub propagate_trace_context: bool,
    /// OTLP/HTTP collector spans are exported to (`telemetry::otlp`).
    pub otlp_endpoint: Option<String>,
}

/// `[cache]`: where `cache_ttl_s` entries live.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheConfig {
    /// In this process, at most `max_entries` entries.
    Memory { max_entries: u64 },
    /// Shared by every gateway instance.
    Redis { url: String },
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// Tokens added per second (may be fractional).
    pub per_second: f64,
    /// Bucket size: requests allowed at once after idling.
    pub burst: u32,
    pub key: RateKey,
    pub backend: RateLimitBackend,
    /// What an operation takes from the bucket.
    pub cost: RateCost,
}

/// `[rate_limit].cost` (docs/PLAN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateCost {
    /// One token per request, checked before anything is read.
    Requests,
    /// Each operation's predicted upstream calls, taken once it is planned.
    UpstreamCalls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKey {
    /// The client's IP address (the TCP peer).
    Ip,
    /// The JWT `sub`; anonymous requests fall back to the IP.
    Subject,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RateLimitBackend {
    Memory,
    Redis { url: String },
}

#[derive(Debug, Clone)]
pub struct PersistedQueriesConfig {
    pub apq: bool,
    pub only_safelisted: bool,
    /// sha256 hex → document, from the `safelist` file.
    pub safelist: std::collections::HashMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// A request without a valid token gets 401 before anything runs.
    pub required: bool,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// HS* shared secret.
    pub secret: Option<String>,
    /// The PEM text of `public_key_file` (RS*/PS*/ES*/EdDSA), read at load.
    pub public_key_pem: Option<PublicKeyFile>,
    pub jwks_url: Option<String>,
    /// At most one JWKS refetch per this long.
    pub jwks_min_refetch: Duration,
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    pub leeway: Duration,
}

#[derive(Debug, Clone)]
pub struct PublicKeyFile {
    pub display: String,
    pub pem: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct SchemaFile {
    pub path: PathBuf,
    /// The path as shown in diagnostics (relative to the config's folder
    /// when it was written relative).
    pub display: Arc<str>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub graphiql: bool,
    pub introspection: bool,
    pub cors_origins: Vec<String>,
    pub debug: bool,
    /// `[server].tls`: serve HTTPS only; `None`: plain HTTP.
    pub tls: Option<crate::tls::ServerTlsConfig>,
    /// A connection's request line and headers must arrive within this
    /// (an idle keep-alive connection is closed after it too).
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this, from when the handler
    /// starts reading it.
    pub body_read_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_depth: u32,
    pub max_complexity: u64,
    pub max_aliases: u32,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// Predicted upstream calls an operation may make (docs/PLAN.md).
    pub max_upstream_calls: u64,
    /// Items predicted for a list without `first`/`limit`.
    pub assumed_list_length: u64,
}

#[derive(Debug)]
pub struct ServiceConfig {
    pub name: String,
    /// Base URLs without a trailing slash, ready to have a path appended.
    pub urls: Vec<String>,
    pub timeout: Duration,
    pub retries: u32,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub forward_headers: Vec<HeaderName>,
    /// Headers of this service's answers copied to the client's response
    /// (`set-cookie` appended, others last-wins); such an answer is never
    /// cached or shared by coalescing.
    pub forward_response_headers: Vec<HeaderName>,
    pub claims_headers: Vec<(HeaderName, String)>,
    pub max_concurrency: u32,
    pub coalesce: bool,
    /// How long a batched call waits for other client requests' keys of
    /// the same call while one is in flight (docs/CONFIG.md
    /// `batch_window_ms`); zero: batches are not shared across requests.
    pub batch_window: Duration,
    /// The largest answer body read from one call; past it the call is
    /// `UPSTREAM_BAD_RESPONSE` and the connection is dropped.
    pub max_response_bytes: usize,
    /// Which redirects an upstream answer may send a call on to.
    pub follow_redirects: FollowRedirects,
    /// How an instance is picked for each call.
    pub load_balancing: LoadBalancing,
    /// Active health checks; `None`: instances are only judged by calls.
    pub health: Option<HealthCheckConfig>,
    /// Passive ejection; `None`: a failing instance keeps its share.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// The `tls` table: a private CA, a client certificate; `None`: the
    /// system's roots.
    pub tls: Option<crate::tls::ServiceTlsConfig>,
    /// `errors`, `null_on`, `error_when` of the service: its calls' rules
    /// unless their mapping says otherwise (docs/SHAPING.md).
    pub answers: Arc<crate::connector::errors::AnswerRules>,
    /// `oauth2`: client credentials for a Bearer token on every call.
    pub oauth2: Option<crate::upstream::oauth2::OAuth2Config>,
}

/// `follow_redirects` of a service: a compromised or misconfigured
/// upstream must not be able to point the gateway at another host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FollowRedirects {
    /// Only to the scheme, host and port the call went to.
    #[default]
    SameOrigin,
    /// Anywhere; the headers the gateway added stay behind on another
    /// origin.
    Any,
    /// Never: a 3xx answer is the call's answer (`UPSTREAM_ERROR`).
    None,
}

/// `load_balancing` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    /// Power of two choices on in-flight calls.
    LeastRequests,
}

/// `health = { path, interval_ms }` of a service.
#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    /// Appended to each instance's base URL, like a call's path.
    pub path: String,
    pub interval: Duration,
}

/// `circuit_breaker = { failures, open_ms }` of a service.
#[derive(Debug, Clone, Copy)]
pub struct CircuitBreakerConfig {
    /// Consecutive failed calls that eject an instance (at least 1).
    pub failures: u32,
    /// How long an ejected instance gets no call before one trial.
    pub open: Duration,
}

#[derive(Debug, Clone)]
pub struct TypeResolution {
    pub discriminator: String,
    /// discriminator value → concrete type name.
    pub map: IndexMap<String, String>,
    pub location: Location,
}

/// One `[resolvers]` entry.
#[derive(Debug)]
pub struct FieldMapping {
    pub type_name: String,
    pub field_name: String,
    /// Where the entry's key is, for messages about the field.
    pub location: Location,
    /// `None` when the entry has a problem already reported: it is still
    /// checked against the schema (so `check` lists all of its problems),
    /// but binds nothing.
    pub source: Option<FieldSource>,
    /// Every placeholder of every template, with where it was written, so
    /// the binding step can check them against the schema.
    pub placeholders: Vec<(Location, Placeholder)>,
    pub timeout: Option<Duration>,
    pub cache_ttl: Option<Duration>,
    pub stale_if_error: Option<Duration>,
    pub stale_while_revalidate: Option<Duration>,
    /// `invalidates`: calls whose cached entries a successful mutation drops.
    pub invalidates: Vec<CallSpec>,
    /// `poll_ms` or `webhook`: a subscription field's events.
    pub event: Option<EventSpec>,
    /// `filter`, `limit`, `map`, `default` (docs/SHAPING.md); `None`: none.
    pub shape: Option<Arc<crate::connector::shape::Shape>>,
    /// Where each shaping key was written, for the schema checks of
    /// `filter`/`limit` on a non-list, and `map`/`default` values.
    pub shape_locations: ShapeLocations,
}

/// Where a mapping's shaping keys are, and their values as written.
#[derive(Debug, Default)]
pub struct ShapeLocations {
    pub filter: Option<Location>,
    pub limit: Option<Location>,
    pub map: Vec<(Location, toml::Value)>,
    pub default: Option<(Location, toml::Value)>,
}

#[derive(Debug)]
pub enum FieldSource {
    /// One upstream call.
    Call(CallSpec),
    /// Calls made in parallel, objects deep-merged, later ones winning.
    Merge(Vec<CallSpec>),
    /// No call: a dotted path into the parent's JSON.
    From(Vec<String>),
    /// Keys collected across the operation, fetched together.
    Batch(BatchSpec),
    /// No call per request: a subscription's webhook deliveries.
    Webhook,
    /// No call: `value`, a template over the request (docs/SHAPING.md).
    Value(Template),
}

/// One upstream request, as templates.
#[derive(Debug)]
pub struct CallSpec {
    pub service: String,
    pub method: Method,
    /// The path template as written (`/users/{args.id}`): what logs and
    /// the debug waterfall show, never the filled URL.
    pub path_text: Arc<str>,
    /// The path before any `?`, relative to the service URL.
    pub path: Template,
    /// Query parameters: those after `?` in the path template, then `query`.
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: Option<BodyTemplate>,
    /// Dotted path into the response.
    pub select: Option<Vec<String>>,
    /// `body_format = "form"`: the body as `application/x-www-form-urlencoded`.
    pub form_body: bool,
    /// `errors`, `null_on`, `error_when`: the service's with the mapping's
    /// over them.
    pub answers: Arc<crate::connector::errors::AnswerRules>,
}

#[derive(Debug)]
pub struct BatchSpec {
    /// Gives one parent's key.
    pub key: Template,
    /// The batched call: `{keys}` in its path, query or body.
    pub call: CallSpec,
    /// The field of each returned item that equals the key.
    pub match_field: Vec<String>,
    /// Keys per call.
    pub max: usize,
}

/// A JSON body whose strings are templates.
#[derive(Debug, Clone)]
pub enum BodyTemplate {
    /// A string; one placeholder alone keeps its JSON type.
    Text(Template),
    /// A number, boolean or date written in the TOML.
    Literal(serde_json::Value),
    Array(Vec<BodyTemplate>),
    Object(Vec<(String, BodyTemplate)>),
}
