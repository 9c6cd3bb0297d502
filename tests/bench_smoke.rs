//! The load benchmark (bench/run) kept from rotting, without timing
//! anything: the shop services, the floor and Conflux on the benchmark's
//! config all run in-process here, and every workload must get the same
//! JSON from both servers with the same number of upstream calls. That is
//! what bench/run checks before it measures; a release build and the load
//! itself are left to bench/run.

#[path = "../examples/shop/services.rs"]
mod services;

#[allow(dead_code)] // the floor binary uses more of it
#[path = "../examples/floor/aggregator.rs"]
mod aggregator;

#[allow(dead_code)]
#[path = "../examples/floor/harness.rs"]
mod harness;

use std::path::Path;
use std::sync::Arc;

use aggregator::{Upstreams, LARGE_ITEMS, WORKLOADS};
use services::ShopOptions;
use tokio::net::TcpListener;

/// A directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "conflux-bench-smoke-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflux_and_the_floor_answer_every_workload_alike() {
    let addrs = services::spawn([127, 0, 0, 1].into(), [0; 4], ShopOptions::default())
        .await
        .expect("start the shop services");
    let urls = addrs.map(|addr| format!("http://{addr}"));
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client");
    harness::seed(&http, &urls[1])
        .await
        .expect("seed the large workload's orders");

    // Conflux on the config bench/run gives it.
    let dir = TempDir::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("services.toml");
    let config = harness::bench_config(&source, &urls).expect("the bench config");
    let config_path = dir.0.join("services.toml");
    std::fs::write(&config_path, config).expect("write the bench config");
    let gateway = match conflux::gateway::load(&config_path) {
        Ok(gateway) => gateway,
        Err(problems) => panic!("the bench config does not load:\n{problems}"),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let conflux_url = format!("http://{}/graphql", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(conflux::gateway::serve(
        listener,
        Arc::new(gateway),
        async move {
            let _ = stopped.await;
        },
    ));

    // The floor.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let floor_url = format!("http://{}/graphql", listener.local_addr().expect("addr"));
    let router = aggregator::router(Upstreams::new(urls.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await });

    for workload in &WORKLOADS {
        // The first and last variants; the large one only once (a debug
        // build takes a while over 2,500 items).
        let variants: Vec<usize> = if workload.name == "large" {
            vec![0]
        } else {
            vec![0, workload.variants - 1]
        };
        let found = harness::compare(&http, &conflux_url, &floor_url, &urls, workload, &variants)
            .await
            .unwrap_or_else(|problem| panic!("{problem}"));
        assert_eq!(
            found.conflux_calls, found.floor_calls,
            "{}: Conflux made {} upstream calls, the floor {}",
            workload.name, found.conflux_calls, found.floor_calls
        );
        if workload.name == "large" {
            assert_eq!(found.items, LARGE_ITEMS, "the large answer's orders");
            assert!(
                found.bytes > 512 * 1024,
                "the large answer is {} bytes, expected about 0.55 MiB",
                found.bytes
            );
        }
    }
    let _ = stop.send(());
}
