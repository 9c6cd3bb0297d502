//! The pure functions on Conflux's request path, one at a time, through the
//! library's public API: templates filled into URLs, parsing upstream JSON
//! (against serde_json, the baseline), JSON selection, leaves written into
//! the response, batch key text and grouping, the document cache, the
//! limits walk. `cargo bench --bench hot_paths`; one group: `cargo bench -- coerce`.
//!
//! The inputs are shaped like the demo shop's data (see bench/README.md for
//! the load benchmark that puts these figures in context: ~100 ns per field
//! is the budget for coming within 2x of a hand-written aggregator).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use conflux::admission::documents::{DocumentCache, DOCUMENT_CACHE_BYTES};
use conflux::admission::limits;
use conflux::connector::coerce::{write_leaf, EnumValues, OutputKind, ScalarKind};
use conflux::connector::template::{value_at, Looked, Placeholder, Root, Scope, Template};
use conflux::upstream::json::{self, key_text, Json};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};

const FLAGSHIP: &str = "query Flagship($user: ID!) { user(id: $user) { name orders(first: 3) { id status product { name reviews { rating author { name } } } } } featuredProducts { name price { amount currency } } }";

/// `{args.…}`, `{parent.…}` and `{keys}` from three JSON values.
struct TestScope {
    args: Value,
    parent: Value,
    keys: Value,
}

impl Scope for TestScope {
    fn lookup(&self, placeholder: &Placeholder) -> Option<Looked<'_>> {
        let root = match placeholder.root {
            Root::Args => &self.args,
            Root::Parent => &self.parent,
            Root::Keys => return Some(Looked::Input(Cow::Borrowed(&self.keys))),
            Root::Claims | Root::Headers | Root::Response => return None,
        };
        value_at(root, &placeholder.path).map(|v| Looked::Input(Cow::Borrowed(v)))
    }
}

fn user(n: usize) -> Value {
    json!({
        "id": format!("u{n}"), "name": "Ada Lovelace", "email": "ada@example.com",
        "profile": { "full_name": "Ada Augusta Lovelace", "avatar_url": "https://img.example/u1.png" },
        "memberSince": "2021-03-04", "tier": "GOLD"
    })
}

fn order(n: usize) -> Value {
    json!({
        "id": format!("o{n}"), "userId": "u200", "productId": format!("p{}", n % 100 + 1),
        "quantity": n % 4 + 1, "status": "DELIVERED", "createdAt": "2024-08-10T19:33:00Z",
        "total": { "amount": 309.6, "currency": "EUR" }
    })
}

fn path(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_owned).collect()
}

fn templates(c: &mut Criterion) {
    let mut group = c.benchmark_group("template");
    let scope = TestScope {
        args: json!({ "id": "u17", "first": 3, "text": "desk lamp" }),
        parent: order(7),
        keys: Value::Array((1..=100).map(|i| json!(format!("p{i}"))).collect()),
    };
    group.bench_function("parse /users/{args.id}", |b| {
        b.iter(|| Template::parse(black_box("/users/{args.id}")))
    });
    let by_id = Template::parse("/users/{args.id}").expect("template");
    group.bench_function("render_path /users/{args.id}", |b| {
        b.iter(|| by_id.render_path(black_box(&scope)).map(|s| s.len()))
    });
    let by_parent = Template::parse("/products/{parent.productId}").expect("template");
    group.bench_function("render_path /products/{parent.productId}", |b| {
        b.iter(|| by_parent.render_path(black_box(&scope)).map(|s| s.len()))
    });
    let text = Template::parse("{args.text}").expect("template");
    group.bench_function("render_query_value {args.text} (encoded)", |b| {
        b.iter(|| text.render_query_value(black_box(&scope)))
    });
    let keys = Template::parse("{keys}").expect("template");
    group.throughput(Throughput::Elements(100));
    group.bench_function("render_query_value {keys}, 100 keys", |b| {
        b.iter(|| keys.render_query_value(black_box(&scope)))
    });
    group.finish();
}

/// Upstream bodies become trees once per answer: sonic-rs's arena against
/// serde_json's `Value` (what Conflux used before), on the large workload's
/// page of 2,500 orders; and sonic-rs without `json::parse`'s nesting check,
/// which tells what the check costs.
fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let page = json!({ "items": (1..=2500).map(order).collect::<Vec<_>>(), "total": 2500 });
    let body = page.to_string().into_bytes();
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("2,500 orders: upstream json (sonic-rs)", |b| {
        b.iter(|| json::parse(black_box(&body)).is_ok())
    });
    group.bench_function("2,500 orders: sonic-rs alone (no nesting check)", |b| {
        b.iter(|| sonic_rs::from_slice::<json::Json>(black_box(&body)).is_ok())
    });
    group.bench_function("2,500 orders: serde_json::Value (baseline)", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&body)).is_ok())
    });
    group.finish();
}

fn selection(c: &mut Criterion) {
    let mut group = c.benchmark_group("json::at");
    let one_user = json::from_serde(&user(1));
    let page =
        json::from_serde(&json!({ "items": (1..=5).map(order).collect::<Vec<_>>(), "total": 5 }));
    let (name, full_name, items, indexed) = (
        path("name"),
        path("profile.full_name"),
        path("items"),
        path("items.3.total.amount"),
    );
    group.bench_function("name", |b| b.iter(|| json::at(black_box(&one_user), &name)));
    group.bench_function("profile.full_name", |b| {
        b.iter(|| json::at(black_box(&one_user), &full_name))
    });
    group.bench_function("items (select)", |b| {
        b.iter(|| json::at(black_box(&page), &items))
    });
    group.bench_function("items.3.total.amount", |b| {
        b.iter(|| json::at(black_box(&page), &indexed))
    });
    group.finish();
}

fn coercion(c: &mut Criterion) {
    let mut group = c.benchmark_group("coerce");
    let statuses: EnumValues = ["PENDING", "SHIPPED", "DELIVERED", "CANCELLED"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let kinds = [
        (
            "ID from string",
            json!("o1300"),
            OutputKind::Scalar(ScalarKind::Id),
        ),
        (
            "ID from integer",
            json!(1300),
            OutputKind::Scalar(ScalarKind::Id),
        ),
        (
            "String",
            json!("Classic Audiobook"),
            OutputKind::Scalar(ScalarKind::String),
        ),
        ("Int", json!(4), OutputKind::Scalar(ScalarKind::Int)),
        ("Float", json!(309.6), OutputKind::Scalar(ScalarKind::Float)),
        (
            "Boolean",
            json!(true),
            OutputKind::Scalar(ScalarKind::Boolean),
        ),
        (
            "enum",
            json!("DELIVERED"),
            OutputKind::Enum(Arc::new(statuses.clone())),
        ),
    ];
    let mut out = Vec::with_capacity(64);
    for (name, value, kind) in &kinds {
        let value = json::from_serde(value);
        group.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                write_leaf(&mut out, black_box(&value), kind).is_ok()
            })
        });
    }
    // The leaves of the large workload's 2,500 orders (id, status, quantity,
    // createdAt, total.amount, total.currency): 15,000 coercions.
    let orders: Vec<Json> = (1..=2500).map(|n| json::from_serde(&order(n))).collect();
    let at =
        |order: &Json, dotted: &str| json::at(order, &path(dotted)).cloned().unwrap_or_default();
    let leaves: Vec<[Json; 6]> = orders
        .iter()
        .map(|o| {
            [
                "id",
                "status",
                "quantity",
                "createdAt",
                "total.amount",
                "total.currency",
            ]
            .map(|p| at(o, p))
        })
        .collect();
    let id = OutputKind::Scalar(ScalarKind::Id);
    let string = OutputKind::Scalar(ScalarKind::String);
    let int = OutputKind::Scalar(ScalarKind::Int);
    let float = OutputKind::Scalar(ScalarKind::Float);
    let status = OutputKind::Enum(Arc::new(statuses));
    group.throughput(Throughput::Elements(15_000));
    group.bench_function("2,500 orders x 6 leaves", |b| {
        let kinds = [&id, &status, &int, &string, &float, &string];
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            let mut ok = 0usize;
            for order in black_box(&leaves) {
                for (leaf, kind) in order.iter().zip(kinds) {
                    ok += write_leaf(&mut out, leaf, kind).is_ok() as usize;
                }
            }
            ok
        })
    });
    group.finish();
}

fn batch_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch");
    let (text_key, number_key) = (
        json::from_serde(&json!("p42")),
        json::from_serde(&json!(42)),
    );
    group.bench_function("key_text string", |b| {
        b.iter(|| key_text(black_box(&text_key)))
    });
    group.bench_function("key_text number", |b| {
        b.iter(|| key_text(black_box(&number_key)))
    });
    // What a batched answer goes through: 500 reviews grouped by their
    // `match` key (productId), as `Product.reviews` does for 100 products.
    let reviews: Vec<Json> = (0..500)
        .map(|i| json::from_serde(&json!({ "id": format!("r{i}"), "productId": format!("p{}", i % 100 + 1), "userId": "u7", "rating": 4 })))
        .collect();
    group.throughput(Throughput::Elements(500));
    group.bench_function("group 500 items by key_text", |b| {
        b.iter_batched(
            || reviews.clone(),
            |items| {
                let mut grouped: HashMap<String, Vec<Json>> = HashMap::new();
                for item in items {
                    let key = key_text(json::get(&item, "productId").unwrap_or(&json::NULL));
                    grouped.entry(key).or_default().push(item);
                }
                grouped
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn documents(c: &mut Criterion) {
    let mut group = c.benchmark_group("documents");
    let query: Arc<str> = Arc::from(FLAGSHIP);
    let cache = DocumentCache::new(DOCUMENT_CACHE_BYTES);
    assert!(cache.parse(&query).is_ok(), "the flagship query parses");
    group.bench_function("parse, cached (flagship)", |b| {
        b.iter(|| cache.parse(black_box(&query)).is_ok())
    });
    let no_cache = DocumentCache::new(0);
    group.bench_function("parse, not cached (flagship)", |b| {
        b.iter(|| no_cache.parse(black_box(&query)).is_ok())
    });

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("services.toml");
    let limits = match conflux::config::load(&config) {
        Ok((config, _)) => config.limits,
        Err(problems) => panic!("services.toml does not load:\n{problems}"),
    };
    let document = match cache.parse(&query) {
        Ok(document) => document,
        Err(_) => panic!("the flagship query parses"),
    };
    let (_, operation) = document.operations.iter().next().expect("one operation");
    let variables = json!({ "user": "u1" });
    group.bench_function("limits::check (flagship)", |b| {
        b.iter(|| {
            limits::check(
                black_box(&document),
                &operation.node,
                Some(&variables),
                &limits,
                true,
            )
            .is_ok()
        })
    });
    group.finish();
}

criterion_group!(hot_paths, templates, parsing, selection, coercion, batch_keys, documents);
criterion_main!(hot_paths);
