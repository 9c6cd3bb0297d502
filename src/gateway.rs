//! Start-up as a pipeline — config → schema → bindings → executable schema —
//! each step returning every problem it found; and `serve`, which runs the
//! HTTP app on a bound listener until a shutdown signal, each connection
//! bounded by the read timeouts of `[server]` (docs/CONFIG.md).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use crate::reload::LiveGateway;

use crate::admission::documents::{DocumentCache, DOCUMENT_CACHE_BYTES};
use crate::admission::persisted::{PersistedQueries, SharedStore};
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
    /// Open subscriptions, their pollers and webhook deliveries; handed on
    /// to the next gateway by a reload (`reload`).
    pub subscriptions: Arc<crate::subscribe::Hub>,
    /// The GraphQL requests' counters and histograms, by operation.
    pub request_metrics: crate::telemetry::metrics::RequestMetrics,
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
    let cache_problem = |err: String| {
        Diagnostics(vec![Diagnostic {
            location: None,
            file: None,
            message: format!("[cache]: {err}"),
        }])
    };
    let (cache, shared_apq) = match &config.cache {
        CacheConfig::Memory { max_entries } => (ResponseCache::memory(*max_entries), None),
        CacheConfig::Redis { url } => (
            ResponseCache::redis(url, longest_entry(&bindings)).map_err(cache_problem)?,
            Some(SharedStore::new(url).map_err(cache_problem)?),
        ),
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
            shared_apq,
        ),
        rate_limiter,
        rate_key: config.rate_limit.as_ref().map_or(RateKey::Ip, |r| r.key),
    };
    let config_subscriptions = config.subscriptions.clone();
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
        subscriptions: Arc::new(crate::subscribe::Hub::new(&config_subscriptions)),
        request_metrics: Default::default(),
    })
}

/// The longest any cache entry can be served: `cache_ttl_s` plus the longer
/// of `stale_if_error_s` and `stale_while_revalidate_s`, over every field.
fn longest_entry(bindings: &crate::schema::Bindings) -> Duration {
    use crate::schema::binding::BoundSource;
    let policies = bindings
        .values()
        .flat_map(|binding| match &binding.source {
            BoundSource::Call(call) => vec![call.cache],
            BoundSource::Merge(calls) => calls.iter().map(|call| call.cache).collect(),
            BoundSource::Batch(batch) => vec![batch.cache],
            BoundSource::ParentKey(_)
            | BoundSource::From(_)
            | BoundSource::Event(_)
            | BoundSource::Value(_) => Vec::new(),
        })
        .flatten();
    policies
        .map(|p| p.ttl + p.stale_if_error.max(p.stale_while_revalidate))
        .max()
        .unwrap_or_default()
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
    match tls {
        Some(tls) => serve_connections(tls.listen(listener)?, live, shutdown).await,
        None => serve_connections(listener, live, shutdown).await,
    }
    Ok(())
}

/// An HTTP/2 connection is pinged this often, and closed when a ping is
/// not answered within `HTTP2_PING_TIMEOUT`: a peer that went silent
/// (dead, or never speaking) does not hold it forever (docs/CONFIG.md,
/// `[server]`).
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(20);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Accepts connections until `shutdown` resolves, then lets each finish
/// the requests it has in flight.
async fn serve_connections<L>(
    mut listener: L,
    live: Arc<LiveGateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener<Addr = SocketAddr>,
{
    let (stop, stopping) = watch::channel(());
    // Every connection holds a clone; `recv` ends when the last is dropped.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Read at each connection: a reload changes it for new ones.
        let header_read_timeout = live.gateway().config.server.header_read_timeout;
        tokio::spawn(serve_connection(
            io,
            peer,
            live.clone(),
            header_read_timeout,
            stopping.clone(),
            open.clone(),
        ));
    }
    drop(listener);
    // Subscriptions complete (docs/SUBSCRIPTIONS.md), so that their
    // streams end and their connections can close.
    live.gateway().subscriptions.close();
    drop(stop);
    drop(open);
    let _ = all_closed.recv().await;
}

/// One connection, HTTP/1.1 or HTTP/2 (told apart by its first bytes).
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    live: Arc<LiveGateway>,
    header_read_timeout: Duration,
    mut stopping: watch::Receiver<()>,
    _open: mpsc::Sender<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let requests_seen = Arc::new(AtomicBool::new(false));
    // Told once, at the first request: the first-request timer is then no
    // longer polled at each of the connection's wake-ups.
    let first_seen = Arc::new(tokio::sync::Notify::new());
    let (seen, notify) = (requests_seen.clone(), first_seen.clone());
    // Each request is handed to the router current when it arrives, and
    // keeps it (and its `Gateway`) until it is answered.
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        if !seen.swap(true, Ordering::Relaxed) {
            notify.notify_one();
        }
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = live.router();
        async move { router.oneshot(request).await }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's header timeout needs a timer, and runs from when it starts
    // reading a request's head: for the first request, and between
    // requests of a keep-alive connection.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_PING_INTERVAL)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    // The first request's head must arrive within the header timeout as
    // well. hyper's own timer only starts once the protocol is known, and
    // the protocol only once the first bytes are in: a client sending
    // nothing, or a part of the HTTP/2 preface, would wait forever.
    let first_request = tokio::time::sleep(header_read_timeout);
    let mut first_request = std::pin::pin!(first_request);
    let mut waiting_for_first = true;
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                break;
            }
            () = &mut first_request, if waiting_for_first => {
                if !requests_seen.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "no request head within the header read timeout; closed");
                    break;
                }
                waiting_for_first = false;
            }
            () = first_seen.notified(), if waiting_for_first => {
                waiting_for_first = false;
            }
            _ = stopping.changed(), if !draining => {
                // Serving stops: finish what is in flight, take no more.
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}
