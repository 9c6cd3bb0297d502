//! `conflux`: args → logging → load (every problem at once) → serve.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc for small blocks, the system allocator for large ones (see
/// `conflux::allocator` for the measurements).
#[global_allocator]
static ALLOCATOR: conflux::allocator::Allocator = conflux::allocator::Allocator;
use conflux::gateway;
use conflux::reload::{self, LiveGateway};
use conflux::telemetry::json_log::JsonLines;
use conflux::telemetry::otlp;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

#[derive(Parser)]
#[command(
    name = "conflux",
    version,
    about = "A Backend-for-Frontend GraphQL gateway over REST services"
)]
struct Cli {
    /// Log format; default: text on a terminal, json otherwise. RUST_LOG filters.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, default_value = "services.toml")]
        config: PathBuf,
        /// Overrides [server].listen, e.g. 0.0.0.0:4000.
        #[arg(long)]
        listen: Option<String>,
        /// Watch services.toml and every file it names; reload on change.
        /// (SIGHUP reloads with or without this flag.)
        #[arg(long)]
        hot_reload: bool,
    },
    /// Validate config and schema; print every problem as FILE:LINE:COL: message.
    Check {
        #[arg(long, default_value = "services.toml")]
        config: PathBuf,
        /// Also lint every mapping of service NAME against the OpenAPI
        /// document SPEC (repeatable).
        #[arg(long = "openapi", value_name = "NAME=SPEC", value_parser = parse_openapi_arg)]
        openapi: Vec<(String, PathBuf)>,
    },
    /// Write a small project to start from: one service, its schema and
    /// mappings, with comments (in DIR, default the current folder).
    Init {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Write a project generated from an API description.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Print the upstream calls a GraphQL document would make, without
    /// making any (docs/PLAN.md).
    Explain {
        #[arg(long, default_value = "services.toml")]
        config: PathBuf,
        /// The operation to explain, when the document has several.
        #[arg(long)]
        operation: Option<String>,
        /// The variables, as a JSON object.
        #[arg(long)]
        variables: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: ExplainFormat,
        /// The document's file, or `-` for stdin.
        document: PathBuf,
    },
    /// Print the merged schema as served, with Conflux's directives.
    PrintSchema {
        #[arg(long, default_value = "services.toml")]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExplainFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum ImportSource {
    /// From an OpenAPI 3.0/3.1 document (JSON or YAML): services.toml and
    /// schema/NAME.graphql in DIR; refuses to overwrite without --force.
    Openapi {
        /// The OpenAPI document.
        spec: PathBuf,
        /// The service's name in services.toml (and the schema file's).
        #[arg(long)]
        service: String,
        /// The service's base URL (with the API's base path, if any).
        #[arg(long)]
        url: String,
        /// Where to write the project (created when missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

fn parse_openapi_arg(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, spec)) if !name.is_empty() && !spec.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(spec)))
        }
        _ => Err(format!(
            "`{text}`: expected NAME=SPEC, e.g. petstore=petstore.yaml"
        )),
    }
}

fn main() -> ExitCode {
    conflux::allocator::configure();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Loading builds clients (Redis, JWKS) that belong to a runtime, for
    // `check` as much as for `serve`.
    let _context = runtime.enter();
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logging(cli.log_format, None);
    }
    match cli.command {
        Command::Check { config, openapi } => check(&config, &openapi),
        Command::Init { dir } => init(&dir),
        Command::Import {
            source:
                ImportSource::Openapi {
                    spec,
                    service,
                    url,
                    out,
                    force,
                },
        } => import_openapi(&spec, &service, &url, &out, force),
        Command::Explain {
            config,
            operation,
            variables,
            format,
            document,
        } => runtime.block_on(explain(&config, operation, variables, format, &document)),
        Command::PrintSchema { config } => match gateway::load(&config) {
            Ok(loaded) => {
                print!("{}", conflux::schema::print::print(&loaded.sdl));
                ExitCode::SUCCESS
            }
            Err(problems) => {
                eprint!("{problems}");
                ExitCode::FAILURE
            }
        },
        Command::Serve {
            config,
            listen,
            hot_reload,
        } => {
            let loaded = match gateway::load(&config) {
                Ok(loaded) => loaded,
                Err(problems) => {
                    eprint!("{problems}");
                    return ExitCode::FAILURE;
                }
            };
            // After loading: whether spans go to an OTLP collector is config.
            let tracer = init_logging(
                cli.log_format,
                loaded.config.telemetry.otlp_endpoint.as_deref(),
            );
            let code = runtime.block_on(serve(loaded, config, listen, hot_reload));
            if let Some(tracer) = tracer {
                // Flushes the spans still queued for export.
                let _ = tracer.shutdown();
            }
            code
        }
    }
}

/// `conflux check`: every problem of the configuration, then the OpenAPI
/// lints; warnings alone keep the exit code 0.
fn check(config: &std::path::Path, openapi: &[(String, PathBuf)]) -> ExitCode {
    let mut failed = false;
    match gateway::load(config) {
        Ok(loaded) => {
            for warning in conflux::schema::reach::warnings(&loaded.sdl, &loaded.bindings) {
                eprintln!("{warning}");
            }
        }
        Err(problems) => {
            eprint!("{problems}");
            failed = true;
        }
    }
    for (service, spec) in openapi {
        match conflux::openapi::lint::check(config, service, spec) {
            Ok(findings) => {
                for finding in findings {
                    eprintln!("{finding}");
                    failed |= finding.severity == conflux::openapi::lint::Severity::Error;
                }
            }
            Err(problem) => {
                eprintln!("{problem}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        eprintln!("{}: ok", config.display());
        ExitCode::SUCCESS
    }
}

/// `conflux explain`: the predicted calls on stdout; problems on stderr,
/// exit 1.
async fn explain(
    config: &std::path::Path,
    operation: Option<String>,
    variables: Option<String>,
    format: ExplainFormat,
    document: &std::path::Path,
) -> ExitCode {
    use std::io::Read;
    let text = if document.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map(|_| text)
            .map_err(|err| format!("cannot read the document from stdin: {err}"))
    } else {
        std::fs::read_to_string(document)
            .map_err(|err| format!("cannot read `{}`: {err}", document.display()))
    };
    let text = match text {
        Ok(text) => text,
        Err(problem) => {
            eprintln!("{problem}");
            return ExitCode::FAILURE;
        }
    };
    let variables = match variables
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
    {
        None => None,
        Some(Ok(value)) if value.is_object() => Some(value),
        Some(Ok(_)) => {
            eprintln!("--variables: expected a JSON object");
            return ExitCode::FAILURE;
        }
        Some(Err(err)) => {
            eprintln!("--variables: not JSON: {err}");
            return ExitCode::FAILURE;
        }
    };
    let loaded = match gateway::load(config) {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprint!("{problems}");
            return ExitCode::FAILURE;
        }
    };
    let shown = if document.as_os_str() == "-" {
        "<stdin>".to_owned()
    } else {
        document.display().to_string()
    };
    match conflux::explain::explain(&loaded, &shown, text, operation, variables).await {
        Ok(prediction) => {
            match format {
                ExplainFormat::Text => print!("{}", prediction.to_text()),
                ExplainFormat::Json => match serde_json::to_string_pretty(&prediction) {
                    Ok(json) => println!("{json}"),
                    Err(err) => {
                        eprintln!("cannot write the plan: {err}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `conflux init`: writes the project and says what to run next.
fn init(dir: &std::path::Path) -> ExitCode {
    match conflux::init::init(dir) {
        Ok(written) => {
            for path in &written {
                eprintln!("wrote {}", path.display());
            }
            let cd = if dir == std::path::Path::new(".") {
                String::new()
            } else {
                format!("cd {} && ", dir.display())
            };
            eprintln!(
                "next: {cd}conflux check && conflux serve, then open http://127.0.0.1:4000/graphql"
            );
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("{problem}");
            ExitCode::FAILURE
        }
    }
}

/// `conflux import openapi`: writes the project, lists on stderr what the
/// document holds that is not mapped, each with its JSON pointer.
fn import_openapi(
    spec: &std::path::Path,
    service: &str,
    url: &str,
    out: &std::path::Path,
    force: bool,
) -> ExitCode {
    match conflux::openapi::import(spec, service, url, out, force) {
        Ok(imported) => {
            for note in &imported.notes {
                eprintln!("{}: {note}", spec.display());
            }
            let written: Vec<String> = imported
                .written
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            eprintln!(
                "wrote {}: {} queries, {} mutations; {} parts of the document not mapped{}",
                written.join(" and "),
                imported.queries,
                imported.mutations,
                imported.notes.len(),
                if imported.notes.is_empty() {
                    ""
                } else {
                    " (listed above)"
                }
            );
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("{problem}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    loaded: gateway::Gateway,
    config: PathBuf,
    listen: Option<String>,
    hot_reload: bool,
) -> ExitCode {
    let address = listen.unwrap_or_else(|| loaded.config.server.listen.clone());
    let listener = match tokio::net::TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("cannot listen on {address}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(address);
    let scheme = if loaded.config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let graphiql = loaded.config.server.graphiql;
    let live = LiveGateway::new(Arc::new(loaded), Some(config));
    reload::reload_on_sighup(live.clone());
    // Announced once signals are handled: a SIGHUP right after this line
    // reloads instead of killing the process.
    tracing::info!(address = %local, graphiql, "conflux is serving {scheme}://{local}/graphql");
    // Kept alive while serving: dropping the watcher stops watching.
    let _watcher = if hot_reload {
        match reload::watch(live.clone()) {
            Ok(watcher) => {
                tracing::info!("watching the configuration files for changes");
                Some(watcher)
            }
            Err(err) => {
                eprintln!("cannot watch the configuration files: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    match gateway::serve_live(listener, live, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("in-flight requests drained; bye");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM; serving then stops accepting and drains.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}

/// Logs to stderr (json or text), plus OTLP span export when `otlp` names
/// a collector; returns the tracer provider to flush at exit.
fn init_logging(format: Option<LogFormat>, otlp: Option<&str>) -> Option<SdkTracerProvider> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stderr().is_terminal(),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into files.
        .with_ansi(std::io::stderr().is_terminal());
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = if json {
        fmt.json().event_format(JsonLines::default()).boxed()
    } else {
        fmt.boxed()
    };
    let registry = tracing_subscriber::registry().with(fmt).with(filter);
    let Some(endpoint) = otlp else {
        registry.init();
        return None;
    };
    match otlp::pipeline(endpoint) {
        Ok((layer, provider)) => {
            registry.with(layer).init();
            tracing::info!(endpoint, "exporting spans over OTLP/HTTP");
            Some(provider)
        }
        Err(err) => {
            registry.init();
            tracing::warn!(endpoint, error = %err, "OTLP export is off: the exporter could not be built");
            None
        }
    }
}
