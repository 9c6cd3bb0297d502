//! docs/CONFIG.md `urls`, `load_balancing`, `retries`, `health`, `circuit_breaker`,
//! `max_concurrency`, `timeout_ms`, and docs/HTTP.md `/readyz`: the gateway keeps
//! answering while instances die, hang, flap and come back.
//!
//! The upstreams are small axum servers on loopback ([`Instance`]) that a
//! test can kill — listener closed, every open connection cut — and
//! restart on the same port, hold (requests wait until released), slow
//! down, or make answer an error status, to its calls or to its health
//! checks. State is awaited by polling with a deadline ([`wait_for`]),
//! never by a fixed sleep.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::support::client::Client;
use crate::support::{error_codes, Reply, TestGateway};

// ---------------------------------------------------------------------------
// The gateway under test

const SDL: &str = r#"
type Query {
  item(id: ID!): Item
  quickItem(id: ID!): Item
}
type Item { id: ID! from: String! }
"#;

/// `[services.items]` with `service_keys`, and its two fields: `item`
/// (the service's timeout) and `quickItem` (`timeout_ms = 200`).
fn items_config(service_keys: &str) -> String {
    format!(
        r#"
[services.items]
{service_keys}

[resolvers]
"Query.item"      = {{ service = "items", get = "/items/{{args.id}}" }}
"Query.quickItem" = {{ service = "items", get = "/items/{{args.id}}", timeout_ms = 200 }}
"#
    )
}

/// A gateway over `instances`, each named `{NAME}` in `service_keys`.
async fn items_gateway(service_keys: &str, instances: &[&Instance]) -> TestGateway {
    let mut builder = TestGateway::builder()
        .schema(SDL)
        .config(&items_config(service_keys));
    for instance in instances {
        builder = builder.upstream_url(instance.name, &instance.url());
    }
    builder.start().await
}

/// `{ item(id: ID) { id from } }`.
async fn item(client: &Client, id: usize) -> Reply {
    client
        .post(&format!(r#"{{ item(id: "{id}") {{ id from }} }}"#))
        .await
}

/// The name of the instance that served `reply`, which must be full data.
fn served_by(reply: &Reply, id: usize) -> String {
    let body = reply.json();
    assert_eq!(reply.status, 200, "{body}");
    assert!(body.get("errors").is_none(), "errors: {body}");
    assert_eq!(body["data"]["item"]["id"], json!(id.to_string()), "{body}");
    body["data"]["item"]["from"]
        .as_str()
        .unwrap_or_else(|| panic!("no `from`: {body}"))
        .to_owned()
}

/// The one error code of a reply whose field failed.
fn only_error_code(reply: &Reply) -> String {
    let codes = reply.error_codes();
    assert_eq!(codes.len(), 1, "{}", reply.text);
    codes[0].clone()
}

async fn readyz(client: &Client) -> (u16, Value) {
    let reply = client
        .request(reqwest::Method::GET, "/readyz", &[], None)
        .await;
    (reply.status, reply.json())
}

/// Polls `probe` every 10 ms until it holds; panics after 10 s.
async fn wait_for<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if probe().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spawn_item(client: &Client, id: usize) -> JoinHandle<Reply> {
    let client = client.clone();
    tokio::spawn(async move { item(&client, id).await })
}

// ---------------------------------------------------------------------------
// Load balancing

#[tokio::test]
async fn round_robin_spreads_a_hundred_gets_evenly_over_three_instances() {
    let (a, b, c) = (
        Instance::start("a").await,
        Instance::start("b").await,
        Instance::start("c").await,
    );
    let gateway = items_gateway(r#"urls = ["{a}", "{b}", "{c}"]"#, &[&a, &b, &c]).await;
    for id in 0..100 {
        served_by(&item(&gateway, id).await, id);
    }
    let counts = [a.calls(), b.calls(), c.calls()];
    assert_eq!(counts.iter().sum::<usize>(), 100, "{counts:?}");
    let (min, max) = (counts.iter().min(), counts.iter().max());
    assert!(
        max.zip(min).is_some_and(|(max, min)| max - min <= 1),
        "uneven: {counts:?}"
    );
}

#[tokio::test]
async fn least_requests_prefers_an_idle_instance_over_a_slow_one() {
    let (slow, idle) = (Instance::start("slow").await, Instance::start("idle").await);
    slow.hold();
    let gateway = items_gateway(
        r#"urls = ["{slow}", "{idle}"]
load_balancing = "least_requests"
timeout_ms = 10000"#,
        &[&slow, &idle],
    )
    .await;
    // One query at a time, each sent once the previous one either reached
    // the held instance (and stays in flight there) or was answered.
    let mut held = Vec::new();
    for id in 0..20 {
        let (slow_before, idle_before) = (slow.calls(), idle.calls());
        let query = spawn_item(&gateway, id);
        wait_for("the query to reach an instance", || async {
            slow.calls() + idle.calls() == slow_before + idle_before + 1
        })
        .await;
        if idle.calls() > idle_before {
            assert_eq!(served_by(&query.await.expect("query task"), id), "idle");
        } else {
            held.push((id, query));
        }
    }
    // Once the slow instance has a call in flight, every pick of two
    // sees it busier than the idle one: round robin would have sent 10.
    assert!(slow.calls() <= 1, "slow got {} calls", slow.calls());
    assert!(idle.calls() >= 19, "idle got {} calls", idle.calls());
    slow.release();
    for (id, query) in held {
        assert_eq!(served_by(&query.await.expect("query task"), id), "slow");
    }
}

// ---------------------------------------------------------------------------
// Retries and timeouts

#[tokio::test]
async fn a_killed_instance_costs_no_failed_query_with_one_retry() {
    let (a, mut b) = (Instance::start("a").await, Instance::start("b").await);
    let gateway = items_gateway(
        r#"urls = ["{a}", "{b}"]
retries = 1"#,
        &[&a, &b],
    )
    .await;
    for id in 0..4 {
        served_by(&item(&gateway, id).await, id);
    }
    assert_eq!((a.calls(), b.calls()), (2, 2));

    b.kill().await;
    for id in 10..30 {
        assert_eq!(served_by(&item(&gateway, id).await, id), "a");
    }
    assert_eq!(b.calls(), 2, "b is dead");

    b.restart().await;
    let served: Vec<String> = {
        let mut served = Vec::new();
        for id in 30..40 {
            served.push(served_by(&item(&gateway, id).await, id));
        }
        served
    };
    assert!(served.iter().any(|name| name == "b"), "{served:?}");
}

#[tokio::test]
async fn a_slow_upstream_yields_upstream_timeout_within_its_timeout() {
    let slow = Instance::start("slow").await;
    slow.hold();
    let gateway = items_gateway(
        r#"url = "{slow}"
timeout_ms = 500
retries = 1"#,
        &[&slow],
    )
    .await;

    let started = Instant::now();
    let reply = item(&gateway, 1).await;
    let elapsed = started.elapsed();
    assert_eq!(only_error_code(&reply), "UPSTREAM_TIMEOUT");
    assert_eq!(reply.json()["data"], json!({ "item": null }));
    assert!(
        // Well under two attempts' worth (1 s): the retry fits in the
        // budget, it does not extend it. Generous for 2 shared cores.
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_millis(900),
        "answered after {elapsed:?}"
    );

    // A field's own `timeout_ms` overrides the service's.
    let started = Instant::now();
    let reply = gateway.post(r#"{ quickItem(id: "2") { id from } }"#).await;
    let elapsed = started.elapsed();
    assert_eq!(only_error_code(&reply), "UPSTREAM_TIMEOUT");
    assert!(
        // Under the service's own 500 ms.
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(450),
        "answered after {elapsed:?}"
    );
    slow.release();
}

#[tokio::test]
async fn a_retry_never_extends_the_call_past_its_timeout() {
    // The first instance answers 503 after 300 ms; the retry goes to the
    // second, which hangs: it gets the 200 ms left, not a fresh 500.
    let (failing, hanging) = (
        Instance::start("failing").await,
        Instance::start("hanging").await,
    );
    failing.answer(503);
    failing.delay(Duration::from_millis(300));
    hanging.hold();
    let gateway = items_gateway(
        r#"urls = ["{failing}", "{hanging}"]
timeout_ms = 500
retries = 3"#,
        &[&failing, &hanging],
    )
    .await;
    let started = Instant::now();
    let reply = item(&gateway, 1).await;
    let elapsed = started.elapsed();
    assert_eq!(only_error_code(&reply), "UPSTREAM_TIMEOUT");
    assert_eq!((failing.calls(), hanging.calls()), (1, 1));
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_millis(600),
        "answered after {elapsed:?}"
    );
    hanging.release();
}

// ---------------------------------------------------------------------------
// Passive health: the circuit breaker

#[tokio::test]
async fn a_flapping_instance_is_ejected_then_readmitted_after_one_trial() {
    let (a, b) = (Instance::start("a").await, Instance::start("b").await);
    b.answer(503);
    let gateway = items_gateway(
        r#"urls = ["{a}", "{b}"]
retries = 1
timeout_ms = 10000
circuit_breaker = { failures = 3, open_ms = 1500 }"#,
        &[&a, &b],
    )
    .await;

    // Every 503 is retried on `a`: no query fails while `b` is ejected.
    let mut id = 0;
    while b.calls() < 3 {
        id += 1;
        assert!(id < 50, "b never got 3 calls");
        assert_eq!(served_by(&item(&gateway, id).await, id), "a");
    }
    for _ in 0..10 {
        id += 1;
        assert_eq!(served_by(&item(&gateway, id).await, id), "a");
    }
    assert_eq!(b.calls(), 3, "ejected after 3 failures");

    // `b` recovers, but answers the trial only when released, so the
    // test can see that the trial is the only call it gets meanwhile.
    b.answer(200);
    b.hold();
    let trial = loop {
        id += 1;
        let query = spawn_item(&gateway, id);
        wait_for("the query to be answered or to be b's trial", || async {
            query.is_finished() || b.calls() == 4
        })
        .await;
        if b.calls() == 4 {
            break (id, query);
        }
        assert_eq!(served_by(&query.await.expect("query task"), id), "a");
    };
    for _ in 0..10 {
        id += 1;
        assert_eq!(served_by(&item(&gateway, id).await, id), "a");
    }
    assert_eq!(b.calls(), 4, "one trial at a time");

    b.release();
    let (trial_id, trial) = trial;
    assert_eq!(served_by(&trial.await.expect("trial task"), trial_id), "b");
    let mut by_b = 0;
    for _ in 0..10 {
        id += 1;
        if served_by(&item(&gateway, id).await, id) == "b" {
            by_b += 1;
        }
    }
    assert_eq!(by_b, 5, "b is back in the rotation");
}

#[tokio::test]
async fn with_every_instance_ejected_calls_fail_fast_without_a_network_attempt() {
    let (a, b) = (Instance::start("a").await, Instance::start("b").await);
    a.hold();
    b.hold();
    let gateway = items_gateway(
        r#"urls = ["{a}", "{b}"]
timeout_ms = 1000
circuit_breaker = { failures = 1, open_ms = 60000 }"#,
        &[&a, &b],
    )
    .await;
    assert_eq!(readyz(&gateway).await, (200, json!({ "status": "ready" })));

    // Two concurrent calls, one per instance, both time out: both ejected.
    let (first, second) = (spawn_item(&gateway, 1), spawn_item(&gateway, 2));
    for query in [first, second] {
        let reply = query.await.expect("query task");
        assert_eq!(only_error_code(&reply), "UPSTREAM_TIMEOUT");
    }
    assert_eq!((a.calls(), b.calls()), (1, 1));

    let started = Instant::now();
    let reply = item(&gateway, 3).await;
    let elapsed = started.elapsed();
    assert_eq!(only_error_code(&reply), "UPSTREAM_UNAVAILABLE");
    assert_eq!(reply.json()["data"], json!({ "item": null }));
    assert!(
        elapsed < Duration::from_millis(250),
        "not fast: {elapsed:?} of a 1000 ms timeout"
    );
    assert_eq!((a.calls(), b.calls()), (1, 1), "no network attempt");
    assert_eq!(
        readyz(&gateway).await,
        (
            503,
            json!({ "status": "unavailable", "services": ["items"] })
        )
    );
    a.release();
    b.release();
}

// ---------------------------------------------------------------------------
// max_concurrency

#[tokio::test]
async fn max_concurrency_caps_calls_in_flight_and_queues_the_rest() {
    let upstream = Instance::start("a").await;
    upstream.hold();
    let gateway = items_gateway(
        r#"url = "{a}"
timeout_ms = 10000
max_concurrency = 2"#,
        &[&upstream],
    )
    .await;

    let queries: Vec<_> = (0..6).map(|id| spawn_item(&gateway, id)).collect();
    wait_for("two calls in flight", || async {
        upstream.in_flight() == 2
    })
    .await;
    upstream.release();
    for (id, query) in queries.into_iter().enumerate() {
        assert_eq!(served_by(&query.await.expect("query task"), id), "a");
    }
    assert_eq!(upstream.calls(), 6, "every waiting call was sent");
    assert_eq!(upstream.max_in_flight(), 2);

    // Waiting for a place counts against the timeout: with both places
    // taken, a 200 ms field times out without reaching the upstream.
    upstream.hold();
    let taken: Vec<_> = (10..12).map(|id| spawn_item(&gateway, id)).collect();
    wait_for("two calls in flight", || async {
        upstream.in_flight() == 2
    })
    .await;
    let started = Instant::now();
    let reply = gateway.post(r#"{ quickItem(id: "20") { id from } }"#).await;
    let elapsed = started.elapsed();
    assert_eq!(only_error_code(&reply), "UPSTREAM_TIMEOUT");
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(300),
        "answered after {elapsed:?}"
    );
    assert_eq!(upstream.calls(), 8, "the waiting call never reached it");
    upstream.release();
    for query in taken {
        query.await.expect("query task");
    }
    assert_eq!(upstream.max_in_flight(), 2);
}

// ---------------------------------------------------------------------------
// Active health checks and /readyz

#[tokio::test]
async fn an_instance_failing_its_health_check_gets_no_traffic_until_it_passes() {
    let (a, b) = (Instance::start("a").await, Instance::start("b").await);
    let gateway = items_gateway(
        r#"urls = ["{a}", "{b}"]
health = { path = "/health", interval_ms = 50 }"#,
        &[&a, &b],
    )
    .await;
    wait_for("a first health check of b", || async {
        b.health_checks() >= 1
    })
    .await;

    b.answer_health(500);
    b.wait_for_recorded_checks().await;
    for id in 0..10 {
        assert_eq!(served_by(&item(&gateway, id).await, id), "a");
    }
    let b_calls = b.calls();

    b.answer_health(200);
    b.wait_for_recorded_checks().await;
    let mut by_b = 0;
    for id in 10..20 {
        if served_by(&item(&gateway, id).await, id) == "b" {
            by_b += 1;
        }
    }
    assert_eq!(by_b, 5, "b is back in the rotation");
    assert_eq!(b.calls(), b_calls + 5);
}

#[tokio::test]
async fn an_instance_is_usable_before_its_first_check_answers() {
    // The check hangs: the instance serves until the 2 s check timeout
    // makes it fail.
    let a = Instance::start("a").await;
    a.hang_health();
    let started = Instant::now();
    let gateway = items_gateway(
        r#"url = "{a}"
health = { path = "/health", interval_ms = 60000 }"#,
        &[&a],
    )
    .await;
    assert_eq!(served_by(&item(&gateway, 1).await, 1), "a");
    wait_for("the hanging check to fail", || async {
        readyz(&gateway).await.0 == 503
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "failed after {:?}, before the 2 s check timeout",
        started.elapsed()
    );
    assert_eq!(
        only_error_code(&item(&gateway, 2).await),
        "UPSTREAM_UNAVAILABLE"
    );
    assert_eq!(a.calls(), 1);
}

#[tokio::test]
async fn readyz_names_the_services_without_a_usable_instance_and_recovers() {
    let (users, orders) = (
        Instance::start("users").await,
        Instance::start("orders").await,
    );
    let gateway = TestGateway::builder()
        .schema(
            r#"
type Query { user(id: ID!): Item  order(id: ID!): Item }
type Item { id: ID! from: String! }
"#,
        )
        .config(
            r#"
[services.users]
url = "{users}"
health = { path = "/health", interval_ms = 50 }

[services.orders]
url = "{orders}"
health = { path = "/health", interval_ms = 50 }

[resolvers]
"Query.user"  = { service = "users", get = "/items/{args.id}" }
"Query.order" = { service = "orders", get = "/items/{args.id}" }
"#,
        )
        .upstream_url("users", &users.url())
        .upstream_url("orders", &orders.url())
        .start()
        .await;
    let ready = (200, json!({ "status": "ready" }));
    assert_eq!(readyz(&gateway).await, ready);

    users.answer_health(503);
    orders.answer_health(503);
    let both = (
        503,
        json!({ "status": "unavailable", "services": ["orders", "users"] }),
    );
    wait_for("both services unready", || async {
        readyz(&gateway).await == both
    })
    .await;

    users.answer_health(200);
    let orders_only = (
        503,
        json!({ "status": "unavailable", "services": ["orders"] }),
    );
    wait_for("users ready again", || async {
        readyz(&gateway).await == orders_only
    })
    .await;

    orders.answer_health(200);
    wait_for("ready again", || async { readyz(&gateway).await == ready }).await;

    // Never authenticated, whatever the request carries.
    let reply = gateway
        .request(
            reqwest::Method::GET,
            "/readyz",
            &[("authorization", "Bearer not-a-token")],
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn health_checks_stop_when_the_gateway_is_dropped() {
    let a = Instance::start("a").await;
    let gateway = items_gateway(
        r#"url = "{a}"
health = { path = "/health", interval_ms = 20 }"#,
        &[&a],
    )
    .await;
    wait_for("a few health checks", || async { a.health_checks() >= 3 }).await;
    drop(gateway);
    // Stopped: no new check over ten intervals.
    wait_for("the checks to stop", || async {
        let before = a.health_checks();
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.health_checks() == before
    })
    .await;
}

#[tokio::test]
async fn impossible_balancing_health_and_breaker_values_are_refused() {
    let problems = TestGateway::builder()
        .schema(SDL)
        .config(&items_config(
            r#"url = "http://127.0.0.1:1"
load_balancing = "fastest"
health = { path = "health", interval_ms = 0 }
circuit_breaker = { failures = 0, open_ms = 0 }
max_concurrency = 0"#,
        ))
        .try_start()
        .await
        .err()
        .expect("the config is refused");
    for expected in [
        "unknown load_balancing `fastest`",
        "`health.path` must start with `/`",
        "`health.interval_ms` must be greater than 0",
        "`circuit_breaker.failures` must be greater than 0",
        "`circuit_breaker.open_ms` must be greater than 0",
        "`max_concurrency` must be greater than 0",
    ] {
        assert!(
            problems.contains(expected),
            "no `{expected}` in:\n{problems}"
        );
    }
}

// ---------------------------------------------------------------------------
// Soak

/// Four seconds of sixteen clients querying while one of two instances is
/// killed and restarted over and over: every answer is full data or a
/// well-formed GraphQL error, and open file descriptors and memory stay
/// bounded. Loopback only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_survives_an_instance_killed_and_restarted_repeatedly() {
    let (a, mut b) = (Instance::start("a").await, Instance::start("b").await);
    let gateway = items_gateway(
        r#"urls = ["{a}", "{b}"]
retries = 1
timeout_ms = 2000
circuit_breaker = { failures = 2, open_ms = 100 }
health = { path = "/health", interval_ms = 100 }"#,
        &[&a, &b],
    )
    .await;
    for id in 0..10 {
        served_by(&item(&gateway, id).await, id);
    }
    let fds_before = open_fds();
    let rss_before = resident_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicUsize::new(1000));
    let workers: Vec<JoinHandle<(usize, usize)>> = (0..16)
        .map(|_| {
            let (client, stop, next_id) = ((*gateway).clone(), stop.clone(), next_id.clone());
            tokio::spawn(async move {
                let (mut full, mut failed) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    if well_formed(&item(&client, id).await, id) {
                        full += 1;
                    } else {
                        failed += 1;
                    }
                }
                (full, failed)
            })
        })
        .collect();

    let mut fds_max = fds_before;
    let soak_end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < soak_end {
        b.kill().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.restart().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        fds_max = fds_max.max(open_fds());
    }
    stop.store(true, Ordering::Relaxed);
    let (mut full, mut failed) = (0, 0);
    for worker in workers {
        let (f, e) = worker.await.expect("a worker panicked");
        full += f;
        failed += e;
    }
    let total = full + failed;
    assert!(total >= 200, "only {total} queries in the soak");
    assert!(
        full * 10 >= total * 9,
        "{failed} of {total} queries failed despite the retry"
    );
    // Idle pooled connections (both ends live in this process) may stay;
    // a leak per query or per restart would be thousands.
    assert!(
        fds_max <= fds_before + 400,
        "open fds grew from {fds_before} to {fds_max} during the soak"
    );
    wait_for("open fds to settle", || async {
        open_fds() <= fds_before + 200
    })
    .await;
    // Loose on purpose (other tests share the process): catches memory
    // that grows with every query, not allocator noise.
    let rss_after = resident_kib();
    assert!(
        rss_after <= rss_before + 256 * 1024,
        "resident memory grew from {rss_before} KiB to {rss_after} KiB"
    );
}

/// Full data for `id`, or a GraphQL error the client can act on; panics
/// on anything else. `true` for full data.
fn well_formed(reply: &Reply, id: usize) -> bool {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    let Some(errors) = body.get("errors") else {
        assert_eq!(body["data"]["item"]["id"], json!(id.to_string()), "{body}");
        let from = &body["data"]["item"]["from"];
        assert!(from == "a" || from == "b", "{body}");
        return true;
    };
    assert_eq!(body["data"], json!({ "item": null }), "{body}");
    let errors = errors.as_array().expect("errors is a list");
    assert!(!errors.is_empty(), "{body}");
    for (error, code) in errors.iter().zip(error_codes(&body)) {
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert_eq!(error["path"], json!(["item"]), "{body}");
        assert!(
            ["UPSTREAM_UNAVAILABLE", "UPSTREAM_TIMEOUT", "UPSTREAM_ERROR"].contains(&code.as_str()),
            "{body}"
        );
    }
    false
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|entries| entries.count())
        .unwrap_or(0)
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The upstream instances

/// One REST instance on a loopback port: `GET /items/{id}` answers
/// `{"id": id, "from": NAME}`, `GET /health` answers 200. What it answers,
/// and when, is steered by the test.
struct Instance {
    name: &'static str,
    addr: SocketAddr,
    state: Arc<InstanceState>,
    /// `None` while killed.
    running: Option<Running>,
}

struct Running {
    server: JoinHandle<()>,
    /// `true` cuts every connection of this run.
    kill: watch::Sender<bool>,
}

struct InstanceState {
    name: &'static str,
    calls: AtomicUsize,
    health_checks: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// The status of `/items` answers.
    status: AtomicU16,
    health_status: AtomicU16,
    /// Health checks get no answer at all.
    hang_health: AtomicBool,
    /// Milliseconds before each `/items` answer.
    delay_ms: AtomicU64,
    /// While `true`, `/items` calls wait.
    hold: watch::Sender<bool>,
}

#[derive(Clone)]
struct Run {
    state: Arc<InstanceState>,
    killed: watch::Receiver<bool>,
}

impl Instance {
    async fn start(name: &'static str) -> Instance {
        let state = Arc::new(InstanceState {
            name,
            calls: AtomicUsize::new(0),
            health_checks: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            hang_health: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            hold: watch::channel(false).0,
        });
        let listener = bind("127.0.0.1:0".parse().expect("an address"));
        let addr = listener.local_addr().expect("a local address");
        let running = Some(Running::serve(listener, state.clone()));
        Instance {
            name,
            addr,
            state,
            running,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the port and cuts every open connection, mid-answer or idle.
    async fn kill(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.kill.send(true);
            running.server.abort();
            let _ = running.server.await;
        }
    }

    /// Listens again on the same port.
    async fn restart(&mut self) {
        assert!(self.running.is_none(), "{} is running", self.name);
        let listener = bind(self.addr);
        self.running = Some(Running::serve(listener, self.state.clone()));
    }

    fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    fn health_checks(&self) -> usize {
        self.state.health_checks.load(Ordering::SeqCst)
    }

    fn hold(&self) {
        self.state.hold.send_replace(true);
    }

    fn release(&self) {
        self.state.hold.send_replace(false);
    }

    fn answer(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    fn delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).expect("a short delay");
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    fn answer_health(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }

    fn hang_health(&self) {
        self.state.hang_health.store(true, Ordering::SeqCst);
    }

    /// Waits until the gateway has recorded a check that saw the current
    /// health answer: a check counts itself before reading the answer, and
    /// checks of one instance run one after another, each recorded before
    /// the next is sent — so the second check from now proves the first.
    async fn wait_for_recorded_checks(&self) {
        let now = self.health_checks();
        wait_for("two more health checks", || async {
            self.health_checks() >= now + 2
        })
        .await;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.kill.send(true);
            running.server.abort();
        }
    }
}

impl Running {
    fn serve(listener: tokio::net::TcpListener, state: Arc<InstanceState>) -> Running {
        let (kill, killed) = watch::channel(false);
        let app = Router::new()
            .route("/items/{id}", get(answer_item))
            .route("/health", get(answer_health))
            .with_state(Run {
                state,
                killed: killed.clone(),
            });
        let listener = KillableListener { listener, killed };
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Running { server, kill }
    }
}

/// Binds `addr` with SO_REUSEADDR, so a restart gets the same port back
/// while the killed run's connections linger in TIME_WAIT.
fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(addr)
        .unwrap_or_else(|err| panic!("bind {addr}: {err}"));
    socket.listen(1024).expect("listen")
}

async fn answer_item(State(run): State<Run>, Path(id): Path<String>) -> Response {
    let state = &run.state;
    state.calls.fetch_add(1, Ordering::SeqCst);
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _in_flight = Decrement(&state.in_flight);
    let mut hold = state.hold.subscribe();
    let mut killed = run.killed.clone();
    let delay = Duration::from_millis(state.delay_ms.load(Ordering::SeqCst));
    let ready = async {
        let _ = hold.wait_for(|held| !held).await;
        tokio::time::sleep(delay).await;
    };
    tokio::select! {
        () = ready => {}
        _ = killed.wait_for(|killed| *killed) => {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let status = state.status.load(Ordering::SeqCst);
    if status != 200 {
        let status = StatusCode::from_u16(status).expect("a status");
        return (status, "failing on purpose").into_response();
    }
    Json(json!({ "id": id, "from": state.name })).into_response()
}

async fn answer_health(State(run): State<Run>) -> StatusCode {
    let state = &run.state;
    // Counted before the answer is read (see `wait_for_recorded_checks`).
    state.health_checks.fetch_add(1, Ordering::SeqCst);
    if state.hang_health.load(Ordering::SeqCst) {
        let _ = run.killed.clone().wait_for(|killed| *killed).await;
    }
    StatusCode::from_u16(state.health_status.load(Ordering::SeqCst)).expect("a status")
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A listener whose connections all fail at once when the run is killed:
/// a killed process's connections die with it, they do not finish their
/// answers the way a graceful shutdown would.
struct KillableListener {
    listener: tokio::net::TcpListener,
    killed: watch::Receiver<bool>,
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((stream, addr)) = self.listener.accept().await {
                let mut killed = self.killed.clone();
                let stream = KillableStream {
                    stream,
                    kill: Box::pin(async move {
                        let _ = killed.wait_for(|killed| *killed).await;
                    }),
                    killed: false,
                };
                return (stream, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

struct KillableStream {
    stream: TcpStream,
    kill: Pin<Box<dyn Future<Output = ()> + Send>>,
    killed: bool,
}

impl KillableStream {
    /// Also registers the task to be woken by the kill.
    fn is_killed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.killed && self.kill.as_mut().poll(cx).is_ready() {
            self.killed = true;
        }
        self.killed
    }
}

fn cut() -> io::Error {
    io::Error::from(io::ErrorKind::ConnectionReset)
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_killed(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_killed(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_killed(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
