//! The whole demo in one command: the four shop services and Conflux on the
//! repository's `services.toml`.
//!
//! ```text
//! cargo run --example demo
//! ```
//! then open http://127.0.0.1:4000/graphql in a browser.

#[path = "../shop/services.rs"]
mod services;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use services::ShopOptions;

const FLAGSHIP_QUERY: &str = r#"{
  user(id: "u1") {
    name
    orders(first: 3) { id status product { name reviews { rating author { name } } } }
  }
  featuredProducts { name price { amount currency } }
}"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal only, not into a pipe or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let host: IpAddr = [127, 0, 0, 1].into();
    let addrs = services::spawn(
        host,
        [7001, 7002, 7003, 7004],
        ShopOptions {
            latency: Duration::from_millis(2),
        },
    )
    .await?;
    for (name, addr) in ["users", "orders", "products", "reviews"].iter().zip(addrs) {
        eprintln!("  {name:<9} http://{addr}");
    }

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("services.toml");
    let gateway = match conflux::gateway::load(&config) {
        Ok(gateway) => gateway,
        Err(problems) => {
            eprint!("{problems}");
            std::process::exit(1);
        }
    };
    let listener = tokio::net::TcpListener::bind(&gateway.config.server.listen).await?;
    let local = listener.local_addr()?;
    eprintln!("\nConflux is serving the shop.\n  GraphiQL:  http://{local}/graphql  (open in a browser)\n");
    eprintln!("Try this query (6 upstream calls, the minimum: user, orders, one product batch, one review batch, one author batch, featured):\n{FLAGSHIP_QUERY}\n");
    eprintln!(
        "or: curl -s http://{local}/graphql -H 'content-type: application/json' -d '{}'\n",
        serde_json::json!({ "query": FLAGSHIP_QUERY })
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    conflux::gateway::serve(listener, Arc::new(gateway), shutdown).await?;
    Ok(())
}
