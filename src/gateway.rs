//! Start-up as a pipeline — config → schema → bindings → executable schema —
//! each step returning every problem it found; and `serve`, which runs the
//! HTTP app on a bound listener until a shutdown signal.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::reload::LiveGateway;

use crate::admission::documents::{DocumentCache, DOCUMENT_CACHE_BYTES};
use crate::admission::persisted::PersistedQueries;
use crate::admission::rate_limit::RateLimiter;
use crate::auth::Authenticator;
use crate::config::{self, CacheConfig, Config, Diagnostic, Diagnostics, RateKey};
use crate::fetch::cache::ResponseCache;
use crate::fetch::Fetcher;
use crate::schema::{self, SchemaModel};
use crate::upstream::UpstreamClient;

/// Everything a running gateway needs, built once from one configuration.
pub struct Gateway {
    pub config: Config,
    pub sdl: SchemaModel,
    pub schema: async_graphql::dynamic::Schema,
    /// Every field's binding.
    pub bindings: Arc<crate::schema::Bindings>,
    /// Plans of the operations seen, for the planned executor.
    pub plans: crate::execute::planned::Plans,
    pub upstream: Arc<UpstreamClient>,
    /// Token verification, when `[auth]` is configured.
    pub auth: Option<Arc<Authenticator>>,
    pub admission: Admission,
    /// Cache, coalescing and the upstream client, shared by all requests.
    pub fetcher: Arc<Fetcher>,
}

/// What refuses work before execution (see `admission`).
pub struct Admission {
    pub documents: DocumentCache,
    pub persisted: PersistedQueries,
    pub rate_limiter: Option<RateLimiter>,
    pub rate_key: RateKey,
}

/// Loads and validates everything (what `conflux check` runs). Call it
/// inside a tokio runtime to have a configured JWKS fetched in the
/// background from the start.
pub fn load(path: &Path) -> Result<Gateway, Diagnostics> {
    let (mut config, mut diagnostics) = config::load(path)?;
    let sdl = match schema::sdl::load(&config.schema_files) {
        Ok(sdl) => sdl,
        Err(sdl_problems) => {
            diagnostics.extend(sdl_problems);
            return Err(diagnostics);
        }
    };
    let bindings = match schema::binding::bind(&mut config, &sdl) {
        Ok(bindings) => bindings,
        Err(binding_problems) => {
            diagnostics.extend(binding_problems);
            return Err(diagnostics);
        }
    };
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }
    let options = schema::build::SchemaOptions {
        introspection: config.server.introspection,
    };
    let schema = schema::build::build(&sdl, &bindings, &options)?;
    let upstream = UpstreamClient::new(&config.services).map_err(|err| {
        Diagnostics(vec![Diagnostic {
            location: None,
            file: None,
            message: format!("cannot build the HTTP client: {err}"),
        }])
    })?;
    let auth = config
        .auth
        .as_ref()
        .map(|auth| Arc::new(Authenticator::new(auth, reqwest::Client::new())));
    let upstream = Arc::new(upstream);
    let cache = match &config.cache {
        CacheConfig::Memory { max_entries } => ResponseCache::memory(*max_entries),
        CacheConfig::Redis { url } => ResponseCache::redis(url).map_err(|err| {
            Diagnostics(vec![Diagnostic {
                location: None,
                file: None,
                message: format!("[cache]: {err}"),
            }])
        })?,
    };
    let rate_limiter = match &config.rate_limit {
        Some(rate_limit) => Some(RateLimiter::new(rate_limit).map_err(|err| {
            Diagnostics(vec![Diagnostic {
                location: None,
                file: None,
                message: format!("[rate_limit]: {err}"),
            }])
        })?),
        None => None,
    };
    let persisted = &config.persisted_queries;
    let admission = Admission {
        documents: DocumentCache::new(DOCUMENT_CACHE_BYTES),
        persisted: PersistedQueries::new(
            persisted.apq,
            persisted.only_safelisted,
            persisted.safelist.clone(),
        ),
        rate_limiter,
        rate_key: config.rate_limit.as_ref().map_or(RateKey::Ip, |r| r.key),
    };
    let plans = crate::execute::planned::Plans::new(crate::execute::planned::PlanSchema::new(&sdl));
    Ok(Gateway {
        config,
        sdl,
        schema,
        bindings: Arc::new(bindings),
        plans,
        auth,
        admission,
        fetcher: Arc::new(Fetcher::new(upstream.clone(), Some(cache))),
        upstream,
    })
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish. Without a config path there is nothing to
/// reload from (tests, embedding).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_live(listener, LiveGateway::new(gateway, None), shutdown).await
}

/// Serves whatever configuration `live` holds at each request's arrival.
pub async fn serve_live(
    listener: TcpListener,
    live: Arc<LiveGateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // `[server].tls` at start makes the listener HTTPS for its life; the
    // certificate is looked up in the live config at each handshake, so a
    // reload that read new files rotates it for new connections.
    let tls = live.gateway().config.server.tls.clone().map(|initial| {
        let live = live.clone();
        crate::tls::ServerTls::new(&initial, move || {
            let gateway = live.gateway();
            let tls = gateway.config.server.tls.as_ref()?;
            Some(tls.certified_key.clone())
        })
    });
    // Each request is handed to the router current when it arrives, and
    // keeps it (and its `Gateway`) until it is answered.
    let app = axum::Router::new().fallback_service(tower::service_fn(
        move |request: axum::extract::Request| {
            let router = live.router();
            async move { router.oneshot(request).await }
        },
    ));
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    match tls {
        Some(tls) => {
            axum::serve(tls.listen(listener)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
