//! Live configuration (docs/CLI.md `--hot-reload`, SIGHUP): the app serving
//! requests is rebuilt from a fully validated new configuration and swapped
//! in atomically. A request keeps the router (and so the `Gateway`) it
//! started with, so in-flight requests finish on the old configuration; an
//! invalid change is logged with `check`'s messages and changes nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use notify::event::{MetadataKind, ModifyKind};
use notify::{EventKind, Watcher};

use crate::config::Diagnostics;
use crate::gateway::{self, Gateway};

/// How long file events settle before a reload: editors write files in
/// several steps (truncate, write, rename).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// What serves right now.
struct Current {
    gateway: Arc<Gateway>,
    router: Router,
}

pub struct LiveGateway {
    /// The config file to reload from; `None` for a gateway built in code.
    config_path: Option<PathBuf>,
    current: ArcSwap<Current>,
    /// One reload at a time: a SIGHUP and a file event must not interleave.
    reloading: tokio::sync::Mutex<()>,
}

impl LiveGateway {
    pub fn new(gateway: Arc<Gateway>, config_path: Option<PathBuf>) -> Arc<LiveGateway> {
        if gateway.config.telemetry.metrics {
            // Process-wide, once: until then every metric call is a no-op.
            crate::telemetry::metrics::install();
        }
        gateway.upstream.start_health_checks();
        let router = crate::http::app(gateway.clone());
        Arc::new(LiveGateway {
            config_path,
            current: ArcSwap::from_pointee(Current { gateway, router }),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    pub fn router(&self) -> Router {
        self.current.load().router.clone()
    }

    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load().gateway.clone()
    }

    /// Loads and validates the configuration again; swaps it in when valid.
    pub async fn reload(&self) -> Result<(), Diagnostics> {
        let Some(path) = self.config_path.clone() else {
            return Ok(());
        };
        let _one_at_a_time = self.reloading.lock().await;
        let runtime = tokio::runtime::Handle::current();
        // Loading reads files and builds clients: keep it off the workers.
        let loaded = tokio::task::spawn_blocking(move || {
            let _context = runtime.enter();
            gateway::load(&path)
        })
        .await
        .unwrap_or_else(|err| {
            Err(Diagnostics(vec![crate::config::Diagnostic {
                location: None,
                file: None,
                message: format!("reload failed: {err}"),
            }]))
        });
        match loaded {
            Ok(mut gateway) => {
                // Subscriptions outlive the configuration that started
                // them; those whose field is gone end now.
                gateway.subscriptions = self.gateway().subscriptions.clone();
                let bindings = gateway.bindings.clone();
                gateway.subscriptions.retire(|field| {
                    bindings.get(field).is_some_and(|b| {
                        matches!(b.source, crate::schema::binding::BoundSource::Event(_))
                    })
                });
                let gateway = Arc::new(gateway);
                let had_tls = self.gateway().config.server.tls.is_some();
                if had_tls != gateway.config.server.tls.is_some() {
                    // The listener's protocol is fixed when it starts.
                    tracing::warn!("[server].tls was turned on or off: that takes a restart; certificates rotate on reload");
                }
                gateway.upstream.start_health_checks();
                let router = crate::http::app(gateway.clone());
                self.current.store(Arc::new(Current { gateway, router }));
                crate::telemetry::metrics::reload("success");
                tracing::info!("configuration reloaded");
                Ok(())
            }
            Err(problems) => {
                crate::telemetry::metrics::reload("failure");
                for problem in &problems.0 {
                    tracing::error!(problem = %problem, "reload refused: the old configuration keeps serving");
                }
                Err(problems)
            }
        }
    }

    /// Every file a change of which should reload: the config, every schema
    /// file and directory (a new file in it counts), TLS and key files, the
    /// safelist.
    fn watched_paths(&self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        if let Some(path) = &self.config_path {
            paths.push(path.clone());
        }
        let gateway = self.gateway();
        for file in &gateway.config.schema_files {
            paths.push(file.path.clone());
        }
        paths.extend(gateway.config.watched_files.iter().cloned());
        paths
    }
}

/// Reloads on every SIGHUP, with or without `--hot-reload` (docs/CLI.md).
pub fn reload_on_sighup(live: Arc<LiveGateway>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Registered before returning, so a SIGHUP from now on reloads
        // rather than killing the process.
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload by signal is off");
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = live.reload().await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = live;
}

/// Watches the configuration's files and reloads after changes settle.
/// The returned watcher must be kept alive for as long as watching should
/// go on.
pub fn watch(live: Arc<LiveGateway>) -> Result<notify::RecommendedWatcher, String> {
    let (events, mut changes) = tokio::sync::mpsc::unbounded_channel::<()>();
    let relevant = Arc::new(ArcSwap::from_pointee(relevant_paths(&live.watched_paths())));
    let filter = relevant.clone();
    let mut watcher =
        notify::recommended_watcher(move |result: notify::Result<notify::Event>| match result {
            Ok(event) => {
                if is_change(&event.kind)
                    && event
                        .paths
                        .iter()
                        .any(|path| is_relevant(&filter.load(), path))
                {
                    let _ = events.send(());
                }
            }
            Err(err) => tracing::warn!(error = %err, "watching the configuration files"),
        })
        .map_err(|e| e.to_string())?;
    // Directories, not files: an editor's save by atomic rename replaces the
    // file, and a watch on the old file would go quiet.
    for directory in watched_directories(&live.watched_paths()) {
        watcher
            .watch(&directory, notify::RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", directory.display()))?;
    }
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            // Settle: wait until no change has come for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_settled) => break,
                }
            }
            tracing::info!("configuration files changed: reloading");
            if live.reload().await.is_ok() {
                relevant.store(Arc::new(relevant_paths(&live.watched_paths())));
            }
            // Changes made during the reload were queued and reload again;
            // the reload's own reads were never queued (see `is_change`).
        }
    });
    Ok(watcher)
}

/// Whether a file event is a change: of content or metadata (`touch`), or
/// of names (created, removed, renamed). Not an access: inotify also
/// reports every open and close of a watched file, so a reload — which
/// opens and reads them all — counted as a change would reload again, and
/// again, forever (emptying the cache and resetting rate limits and
/// breakers each time).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        // A backend that cannot tell: better one reload too many than a
        // missed change.
        EventKind::Any => true,
        EventKind::Access(_) | EventKind::Other => false,
    }
}

/// Files and directories whose events matter, canonicalized when they exist.
fn relevant_paths(paths: &[PathBuf]) -> HashSet<PathBuf> {
    let mut relevant = HashSet::new();
    for path in paths {
        relevant.insert(absolute(path));
        if let Some(parent) = path.parent() {
            // A schema directory: a new .graphql file in it counts too.
            if path
                .extension()
                .is_some_and(|e| e == "graphql" || e == "graphqls" || e == "gql")
            {
                relevant.insert(absolute(parent));
            }
        }
    }
    relevant
}

fn is_relevant(relevant: &HashSet<PathBuf>, changed: &Path) -> bool {
    let changed = absolute(changed);
    relevant.contains(&changed)
        || changed.parent().is_some_and(|dir| {
            relevant.contains(dir)
                && changed
                    .extension()
                    .is_some_and(|e| e == "graphql" || e == "graphqls" || e == "gql")
        })
}

fn watched_directories(paths: &[PathBuf]) -> HashSet<PathBuf> {
    paths
        .iter()
        .filter_map(|path| absolute(path).parent().map(Path::to_path_buf))
        .collect()
}

fn absolute(path: &Path) -> PathBuf {
    if let Ok(canonical) = path.canonicalize() {
        return canonical;
    }
    // A file that does not exist (right now) is named by its canonical
    // directory, so it still compares equal once it appears.
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map(|dir| dir.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}
