//! The benchmark's floor — a hand-written aggregator for exactly the
//! benchmark's workloads (see `aggregator.rs`) — and the helpers `bench/run`
//! needs around it (see `harness.rs`).
//!
//! ```text
//! cargo run --release --example floor -- serve --listen 127.0.0.1:4100
//! ```
//!
//! The shop services are found like `services.toml` finds them: USERS_URL,
//! ORDERS_URL, PRODUCTS_URL, REVIEWS_URL (default 127.0.0.1:7001..7004).

mod aggregator;
mod harness;

use std::path::PathBuf;
use std::process::ExitCode;

use aggregator::{Upstreams, WORKLOADS};

const USAGE: &str = "\
usage: floor [COMMAND]

  serve [--listen ADDR]     serve POST /graphql for the workloads (default
                            command; ADDR defaults to 127.0.0.1:4100)
  list                      the workloads: name, then what it exercises
  bodies NAME               the JSON request bodies of workload NAME, one
                            per variant and line
  seed                      place the large workload's orders (idempotent)
  config SERVICES_TOML      print Conflux's benchmark config: that file with
                            the services at *_URL and max_complexity raised
  compare CONFLUX FLOOR [NAME,NAME…]
                            ask both /graphql URLs each workload once; one
                            line per workload; exit 1 when answers differ
  free-ports N              print N free loopback ports

Services: USERS_URL, ORDERS_URL, PRODUCTS_URL, REVIEWS_URL.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] | ["serve"] => serve("127.0.0.1:4100"),
        ["serve", "--listen", addr] => serve(addr),
        ["list"] => {
            for w in &WORKLOADS {
                println!("{}\t{} variants\t{}", w.name, w.variants, w.about);
            }
            Ok(())
        }
        ["bodies", name] => aggregator::workload(name)
            .map(|w| {
                for k in 0..w.variants {
                    println!("{}", aggregator::body(w, k));
                }
            })
            .ok_or_else(|| format!("unknown workload `{name}`")),
        ["seed"] => runtime().and_then(|rt| {
            rt.block_on(async {
                let orders = Upstreams::from_env().orders;
                let placed = harness::seed(&client(), &orders).await?;
                eprintln!("seeded {placed} orders");
                Ok(())
            })
        }),
        ["config", source] => {
            let up = Upstreams::from_env();
            harness::bench_config(
                &PathBuf::from(source),
                &[up.users, up.orders, up.products, up.reviews],
            )
            .map(|text| print!("{text}"))
        }
        ["compare", conflux, floor] => compare(conflux, floor, None),
        ["compare", conflux, floor, names] => compare(conflux, floor, Some(names)),
        ["free-ports", n] => free_ports(n),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("bad arguments\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("floor: {message}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|err| format!("cannot start tokio: {err}"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("build the HTTP client")
}

fn serve(addr: &str) -> Result<(), String> {
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
        let router = aggregator::router(Upstreams::from_env());
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|err| format!("serve: {err}"))
    })
}

fn compare(conflux: &str, floor: &str, names: Option<&str>) -> Result<(), String> {
    let workloads = match names {
        None => WORKLOADS.iter().collect::<Vec<_>>(),
        Some(names) => names
            .split(',')
            .map(|name| {
                aggregator::workload(name.trim())
                    .ok_or_else(|| format!("unknown workload `{name}`"))
            })
            .collect::<Result<_, _>>()?,
    };
    let up = Upstreams::from_env();
    let services = [up.users, up.orders, up.products, up.reviews];
    runtime()?.block_on(async {
        let http = client();
        for workload in workloads {
            let variants = harness::sample(workload);
            let found =
                harness::compare(&http, conflux, floor, &services, workload, &variants).await?;
            println!(
                "{} variants={} bytes={} items={} conflux_calls={} floor_calls={} same_bytes={}",
                found.workload,
                found
                    .variants
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                found.bytes,
                found.items,
                found.conflux_calls,
                found.floor_calls,
                found.same_bytes
            );
        }
        Ok(())
    })
}

fn free_ports(n: &str) -> Result<(), String> {
    let n: usize = n.parse().map_err(|_| format!("bad count `{n}`"))?;
    // All bound at once so they differ; released when printed.
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("cannot bind: {err}"))?;
    for listener in &listeners {
        let port = listener.local_addr().map_err(|err| err.to_string())?.port();
        println!("{port}");
    }
    Ok(())
}
