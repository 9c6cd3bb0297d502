//! What the benchmark needs besides the floor itself, shared by `bench/run`
//! (through the `floor` binary's subcommands) and `tests/bench_smoke.rs`:
//! seeding the large answer's orders, the benchmark's Conflux config, and
//! the check that Conflux and the floor answer every workload alike.

use std::path::Path;

use serde_json::Value;

use crate::aggregator::{body, workload, Workload, LARGE_ITEMS, LARGE_USER};

/// Orders the large workload needs: its last variant asks for this many.
pub fn large_orders() -> usize {
    LARGE_ITEMS + workload("large").map_or(1, |w| w.variants) - 1
}

/// Places orders for [`LARGE_USER`] through the orders service's
/// `POST /orders` until they have [`large_orders`] (the demo data has 5
/// per user). Products cycle through p1..p100, so the large answer's product
/// batch carries all 100 products. Runs 32 calls at a time, so the ids an
/// order gets vary between runs, but the set of answers does not.
pub async fn seed(http: &reqwest::Client, orders_url: &str) -> Result<usize, String> {
    let orders_url = orders_url.trim_end_matches('/');
    let page: Value = http
        .get(format!("{orders_url}/orders?userId={LARGE_USER}&limit=0"))
        .send()
        .await
        .map_err(|err| format!("orders service: {err}"))?
        .json()
        .await
        .map_err(|err| format!("orders service: {err}"))?;
    let have = page["total"].as_u64().unwrap_or(0) as usize;
    let missing = large_orders().saturating_sub(have);
    let url = format!("{orders_url}/orders");
    let posts = (0..missing).map(|k| {
        let body = serde_json::json!({
            "userId": LARGE_USER,
            "productId": format!("p{}", k % 100 + 1),
            "quantity": k % 4 + 1,
        });
        let request = http.post(&url).json(&body).send();
        async move {
            let response = request
                .await
                .map_err(|err| format!("POST /orders: {err}"))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("POST /orders: status {}", response.status()))
            }
        }
    });
    use futures::stream::{StreamExt, TryStreamExt};
    futures::stream::iter(posts)
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(missing)
}

/// Conflux's config for the benchmark: the repository's `services.toml`
/// (at `source`) with the schema path made absolute, the four services at
/// `urls` (users, orders, products, reviews) and `[limits] max_complexity`
/// raised to 1,000,000 — the default 10,000 refuses the large workload
/// (2,500 items × 14 fields). Nothing else changes.
pub fn bench_config(source: &Path, urls: &[String; 4]) -> Result<String, String> {
    let text = std::fs::read_to_string(source)
        .map_err(|err| format!("cannot read {}: {err}", source.display()))?;
    let mut doc: toml::Table = text
        .parse()
        .map_err(|err| format!("{}: {err}", source.display()))?;
    let dir = source
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = dir
        .canonicalize()
        .map_err(|err| format!("cannot resolve {}: {err}", dir.display()))?;
    let absolute = |relative: &str| toml::Value::String(dir.join(relative).display().to_string());
    let schema = match doc.get("schema") {
        None => absolute("schema"),
        Some(toml::Value::String(path)) => absolute(path),
        Some(toml::Value::Array(paths)) => toml::Value::Array(
            paths
                .iter()
                .map(|p| p.as_str().map(absolute).unwrap_or_else(|| p.clone()))
                .collect(),
        ),
        Some(other) => other.clone(),
    };
    doc.insert("schema".into(), schema);

    let services = doc
        .get_mut("services")
        .and_then(toml::Value::as_table_mut)
        .ok_or("services.toml has no [services]")?;
    for (name, url) in ["users", "orders", "products", "reviews"].iter().zip(urls) {
        let service = services
            .get_mut(*name)
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| format!("services.toml has no [services.{name}]"))?;
        service.remove("urls");
        service.insert("url".into(), toml::Value::String(url.clone()));
    }

    let limits = doc
        .entry("limits")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or("[limits] is not a table")?;
    let complexity = limits
        .get("max_complexity")
        .and_then(toml::Value::as_integer)
        .unwrap_or(0);
    limits.insert(
        "max_complexity".into(),
        toml::Value::Integer(complexity.max(1_000_000)),
    );
    toml::to_string(&doc).map_err(|err| format!("cannot write the bench config: {err}"))
}

/// The sum of the four services' `/_stats` request counters.
pub async fn upstream_calls(http: &reqwest::Client, services: &[String]) -> Result<u64, String> {
    let mut total = 0;
    for base in services {
        let url = format!("{}/_stats", base.trim_end_matches('/'));
        let stats: Value = http
            .get(&url)
            .send()
            .await
            .map_err(|err| format!("GET {url}: {err}"))?
            .json()
            .await
            .map_err(|err| format!("GET {url}: {err}"))?;
        total += stats["requests"]
            .as_u64()
            .ok_or_else(|| format!("GET {url}: no `requests` count"))?;
    }
    Ok(total)
}

/// One answer of one server to one workload.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// Upstream calls it caused (the `/_stats` delta around the request).
    pub calls: u64,
}

/// Sends variant `k` of `workload` once to `graphql_url` (a `/graphql`
/// URL), alone.
pub async fn ask(
    http: &reqwest::Client,
    graphql_url: &str,
    services: &[String],
    workload: &Workload,
    k: usize,
) -> Result<Answer, String> {
    let before = upstream_calls(http, services).await?;
    let response = http
        .post(graphql_url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body(workload, k))
        .send()
        .await
        .map_err(|err| format!("POST {graphql_url}: {err}"))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|err| format!("POST {graphql_url}: {err}"))?;
    let after = upstream_calls(http, services).await?;
    Ok(Answer {
        status,
        body,
        calls: after - before,
    })
}

/// Both servers' answers to one workload, found alike.
#[derive(Debug)]
pub struct Compared {
    pub workload: &'static str,
    /// The variants compared; the figures below are the first one's.
    pub variants: Vec<usize>,
    /// Size of Conflux's answer body.
    pub bytes: usize,
    /// Items in the answer's longest list.
    pub items: usize,
    pub conflux_calls: u64,
    pub floor_calls: u64,
    /// The bodies are byte-for-byte equal (else only equal as JSON).
    pub same_bytes: bool,
}

/// The variants `bench/run` compares: the first, second, middle and last.
pub fn sample(workload: &Workload) -> Vec<usize> {
    let n = workload.variants;
    let mut variants = vec![0, 1.min(n - 1), n / 2, n - 1];
    variants.dedup();
    variants
}

/// Asks Conflux and the floor for these `variants` of `workload`, one
/// request at a time, and compares each pair: both 200, data without
/// errors, equal JSON. `Err` says how they differ. Unequal upstream call
/// counts are reported, not refused.
pub async fn compare(
    http: &reqwest::Client,
    conflux_url: &str,
    floor_url: &str,
    services: &[String],
    workload: &'static Workload,
    variants: &[usize],
) -> Result<Compared, String> {
    let mut found: Option<Compared> = None;
    for &k in variants {
        let one = compare_one(http, conflux_url, floor_url, services, workload, k).await?;
        if let Some(first) = &mut found {
            first.same_bytes &= one.same_bytes;
        } else {
            found = Some(one);
        }
    }
    let mut found = found.ok_or("no variant to compare")?;
    found.variants = variants.to_vec();
    Ok(found)
}

async fn compare_one(
    http: &reqwest::Client,
    conflux_url: &str,
    floor_url: &str,
    services: &[String],
    workload: &'static Workload,
    k: usize,
) -> Result<Compared, String> {
    let name = workload.name;
    let conflux = ask(http, conflux_url, services, workload, k).await?;
    let floor = ask(http, floor_url, services, workload, k).await?;
    for (server, answer) in [("conflux", &conflux), ("floor", &floor)] {
        if answer.status != 200 {
            return Err(format!(
                "{name} (variant {k}): {server} answered {}: {}",
                answer.status,
                preview(&answer.body)
            ));
        }
    }
    let parsed = |server: &str, answer: &Answer| -> Result<Value, String> {
        let value: Value = serde_json::from_str(&answer.body)
            .map_err(|err| format!("{name}: {server}'s answer is not JSON: {err}"))?;
        if value.get("errors").is_some() || value.get("data").is_none_or(Value::is_null) {
            return Err(format!(
                "{name} (variant {k}): {server} answered with errors: {}",
                preview(&answer.body)
            ));
        }
        Ok(value)
    };
    let conflux_json = parsed("conflux", &conflux)?;
    let floor_json = parsed("floor", &floor)?;
    if conflux_json != floor_json {
        return Err(format!(
            "{name} (variant {k}): Conflux and the floor answer differently\n  conflux: {}\n  floor:   {}\n  first difference at byte {}",
            preview(&conflux.body),
            preview(&floor.body),
            first_difference(&conflux.body, &floor.body)
        ));
    }
    Ok(Compared {
        workload: name,
        variants: vec![k],
        bytes: conflux.body.len(),
        items: longest_list(&conflux_json),
        conflux_calls: conflux.calls,
        floor_calls: floor.calls,
        same_bytes: conflux.body == floor.body,
    })
}

fn longest_list(value: &Value) -> usize {
    match value {
        Value::Array(items) => items
            .iter()
            .map(longest_list)
            .max()
            .unwrap_or(0)
            .max(items.len()),
        Value::Object(map) => map.values().map(longest_list).max().unwrap_or(0),
        _ => 0,
    }
}

fn first_difference(a: &str, b: &str) -> usize {
    a.bytes()
        .zip(b.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

fn preview(text: &str) -> String {
    const MAX: usize = 400;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}
