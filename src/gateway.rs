//! Start-up as a pipeline — config → schema → bindings → executable schema —
//! each step returning every problem it found; and `serve`, which runs the
//! HTTP app on a bound listener until a shutdown signal.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::config::{self, Config, Diagnostic, Diagnostics};
use crate::schema::{self, SchemaModel};
use crate::upstream::UpstreamClient;

/// Everything a running gateway needs, built once from one configuration.
pub struct Gateway {
    pub config: Config,
    pub sdl: SchemaModel,
    pub schema: async_graphql::dynamic::Schema,
    pub upstream: Arc<UpstreamClient>,
    /// Token verification, when `[auth]` is configured.
    pub auth: Option<Arc<Authenticator>>,
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
    Ok(Gateway {
        config,
        sdl,
        schema,
        upstream: Arc::new(upstream),
        auth,
    })
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = crate::http::app(gateway);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
