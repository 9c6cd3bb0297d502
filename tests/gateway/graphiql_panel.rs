//! docs/PLAN.md "In GraphiQL": the page Conflux serves shows, beside the
//! response, one timeline bar per upstream call of a debug response and
//! the plan as a tree, in a real headless Chromium.
//!
//! `CONFLUX_SCREENSHOT=docs/plan-panel.png` also saves what the page looks
//! like then (the picture in docs/PLAN.md).

use std::time::Duration;

use serde_json::Value;

use super::budget::Shop;
use crate::support::browser::Browser;

const QUERY: &str = "{ users(first: 2) { name orders(first: 2) { id product { name } } } }";

/// Puts `query` in GraphiQL's editor and presses its run button.
fn run_query(query: &str) -> String {
    format!(
        r#"(() => {{
            const editor = document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror;
            editor.setValue({query});
            document.querySelector('.graphiql-execute-button').click();
            return true;
        }})()"#,
        query = Value::String(query.to_owned())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panel_shows_one_bar_per_upstream_call_and_the_plan_as_a_tree() {
    let shop = Shop::start("").await;
    let mut browser = Browser::start(1400, 800).await;
    browser
        .open(&format!("{}/graphql", shop.gateway.base))
        .await;
    let within = Duration::from_secs(20);
    browser
        .wait_for(
            "!!document.querySelector('.graphiql-query-editor .CodeMirror') \
             && !!document.getElementById('conflux-debug')",
            within,
        )
        .await;

    // The calls of a debug response, as a timeline.
    browser
        .eval("document.getElementById('conflux-debug').click(), true")
        .await;
    browser.eval(&run_query(QUERY)).await;
    browser
        .wait_for(
            "document.querySelectorAll('.conflux-bar').length > 0",
            within,
        )
        .await;
    let called = shop.calls_received().await;
    // 1 list of users, 2 orders calls, 4 products in batches of 2.
    assert_eq!(called, 5);
    let bars = browser
        .eval("[...document.querySelectorAll('.conflux-bar')].map(b => [b.dataset.field, b.dataset.service])")
        .await;
    assert_eq!(
        bars,
        serde_json::json!([
            ["users", "users"],
            ["users.orders", "orders"],
            ["users.orders", "orders"],
            ["users.orders.product", "products"],
            ["users.orders.product", "products"]
        ]),
        "one bar per upstream call"
    );
    let facts = browser
        .eval("document.querySelector('.conflux-call:last-child .conflux-facts').textContent")
        .await;
    let facts = facts.as_str().unwrap_or_default();
    assert!(
        facts.contains("batch of 2") && facts.contains("2xx"),
        "{facts}"
    );
    if let Ok(path) = std::env::var("CONFLUX_SCREENSHOT") {
        let png = decode_base64(&browser.screenshot().await);
        std::fs::write(&path, png).expect("write the screenshot");
    }

    // The plan alone, as a tree: nothing more is called.
    browser
        .eval(
            "document.getElementById('conflux-debug').click(), \
             document.getElementById('conflux-explain').click(), true",
        )
        .await;
    browser.eval(&run_query(QUERY)).await;
    browser
        .wait_for(
            "document.querySelectorAll('.conflux-plan-call').length > 0",
            within,
        )
        .await;
    let tree = browser
        .eval(
            "[...document.querySelectorAll('.conflux-plan-call')].map(c => \
             [c.querySelector('.conflux-field').textContent, \
              c.parentElement.closest('.conflux-plan-call')?.querySelector('.conflux-field').textContent ?? null, \
              c.querySelector('.conflux-count').textContent])",
        )
        .await;
    assert_eq!(
        tree,
        serde_json::json!([
            ["users", null, "× 1"],
            ["users.orders", "users", "× 2"],
            ["users.orders.product", "users.orders", "× 2"]
        ])
    );
    assert_eq!(
        shop.calls_received().await,
        called,
        "explaining calls nothing"
    );
}

/// Standard base64 (what CDP sends screenshots in).
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().fold(0u32, |n, d| n << 6 | d) << (6 * (4 - chunk.len()));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
