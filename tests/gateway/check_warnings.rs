//! docs/PLAN.md: `conflux check` warns, as `FILE:LINE:COL: warning: …`, of a
//! field that calls a service once per item of a list above it without
//! `batch` (naming the field and the list), and of a mapping no query can
//! reach; warnings leave the exit code 0.

use crate::support::{position, run_binary};

const SDL: &str = r#"
type Query { orders: [Order!]!  order(id: ID!): Order }
type Order { id: ID!  productId: String  product: Product  customer: Customer  note: String }
type Product { id: ID!  name: String }
type Customer { id: ID!  name: String }
type Orphan { id: ID!  extra: String }
"#;

const TOML: &str = r#"
[services.shop]
url = "http://127.0.0.1:9"

[resolvers]
"Query.orders" = { service = "shop", get = "/orders" }
"Query.order" = { service = "shop", get = "/orders/{args.id}" }
"Order.product" = { service = "shop", get = "/products/{parent.productId}" }
"Order.customer" = { service = "shop", get = "/customers", batch = { key = "{parent.customerId}", get = "/customers?ids={keys}", match = "id" } }
"Order.note" = { service = "shop", get = "/notes" }
"Orphan.extra" = { service = "shop", get = "/extra/{parent.id}" }
"#;

fn check(toml: &str) -> crate::support::check::BinaryRun {
    run_binary(
        &["check", "--config", "services.toml"],
        toml,
        &[("schema/schema.graphql", SDL)],
    )
}

#[test]
fn a_per_item_call_under_a_list_and_an_unreachable_mapping_are_warned_of() {
    let run = check(TOML);
    assert_eq!(
        run.code,
        Some(0),
        "warnings keep check at 0: {}",
        run.stderr
    );
    let warnings: Vec<&str> = run
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains(": warning: "))
        .collect();
    assert_eq!(
        warnings,
        [
            format!(
                "services.toml:{}: warning: `Order.product` calls service `shop` once per item of \
                 the list `Query.orders` (N+1 calls); give it a `batch` to fetch every item's value in one call",
                position(TOML, "\"Order.product\"")
            ),
            format!(
                "services.toml:{}: warning: `Orphan.extra` is mapped, but no query reaches type \
                 `Orphan` (no field of a root type leads to it)",
                position(TOML, "\"Orphan.extra\"")
            ),
        ],
        "batched `Order.customer` and parent-free `Order.note` are fine:\n{}",
        run.stderr
    );
}

#[test]
fn a_batched_shape_has_no_warning() {
    let toml = TOML
        .replace(
            r#""Order.product" = { service = "shop", get = "/products/{parent.productId}" }"#,
            r#""Order.product" = { service = "shop", get = "/products/{parent.productId}", batch = { key = "{parent.productId}", get = "/products?ids={keys}", match = "id" } }"#,
        )
        .replace(
            r#""Orphan.extra" = { service = "shop", get = "/extra/{parent.id}" }"#,
            "",
        );
    let run = check(&toml);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}

#[test]
fn an_error_still_fails_check_beside_the_warnings() {
    let toml = TOML.replace(r#"get = "/notes""#, r#"get = "/notes/{args.nope}""#);
    let run = check(&toml);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("has no argument `nope`"),
        "{}",
        run.stderr
    );
}
