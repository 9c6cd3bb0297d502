//! An in-process gateway on port 0, built from SDL and TOML text:
//!
//! ```ignore
//! let gateway = TestGateway::builder()
//!     .schema(SDL)
//!     .config(r#"[services.users]
//!                url = "{users}""#)
//!     .upstream("users", &users)
//!     .start()
//!     .await;
//! ```

use std::ops::Deref;
use std::sync::Arc;

use tokio::sync::oneshot;
use wiremock::MockServer;

use super::client::Client;
use super::temp::TempDir;

/// A gateway serving on 127.0.0.1 until dropped. Derefs to its [`Client`].
pub struct TestGateway {
    client: Client,
    _dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestGateway {
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }
}

impl Deref for TestGateway {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

#[derive(Default)]
pub struct GatewayBuilder {
    schema_files: Vec<(String, String)>,
    config: String,
    upstreams: Vec<(String, String)>,
}

impl GatewayBuilder {
    /// The whole schema, as `schema/schema.graphql`.
    pub fn schema(self, sdl: &str) -> Self {
        self.schema_file("schema.graphql", sdl)
    }

    /// One more file of the `schema/` directory (the default `schema`).
    pub fn schema_file(self, name: &str, sdl: &str) -> Self {
        self.file(&format!("schema/{name}"), sdl)
    }

    /// Any file beside `services.toml`, at this relative path.
    pub fn file(mut self, relative: &str, text: &str) -> Self {
        self.schema_files
            .push((relative.to_owned(), text.to_owned()));
        self
    }

    /// `services.toml`; `{NAME}` is replaced by the URL of upstream NAME.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = toml.to_owned();
        self
    }

    /// Service `name` is this mock server.
    pub fn upstream(self, name: &str, server: &MockServer) -> Self {
        let uri = server.uri();
        self.upstream_url(name, &uri)
    }

    /// Service `name` is at `url`.
    pub fn upstream_url(mut self, name: &str, url: &str) -> Self {
        self.upstreams.push((name.to_owned(), url.to_owned()));
        self
    }

    pub async fn start(self) -> TestGateway {
        match self.try_start().await {
            Ok(gateway) => gateway,
            Err(problems) => panic!("the gateway did not load:\n{problems}"),
        }
    }

    /// Loads and serves; `Err` holds the diagnostics, one per line.
    pub async fn try_start(self) -> Result<TestGateway, String> {
        let dir = TempDir::new();
        let mut config = self.config.clone();
        for (name, url) in &self.upstreams {
            let placeholder = format!("{{{name}}}");
            assert!(
                config.contains(&placeholder),
                "the config has no `{placeholder}` for upstream `{name}`"
            );
            config = config.replace(&placeholder, url);
        }
        let config_path = dir.write("services.toml", &config);
        for (relative, sdl) in &self.schema_files {
            dir.write(relative, sdl);
        }
        let gateway = conflux::gateway::load(&config_path)
            .map_err(|problems| dir.relative(&problems.to_string()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(conflux::gateway::serve(
            listener,
            Arc::new(gateway),
            async move {
                let _ = stop.await;
            },
        ));
        Ok(TestGateway {
            client: Client::new(format!("http://{addr}")),
            _dir: dir,
            shutdown: Some(shutdown),
        })
    }
}
