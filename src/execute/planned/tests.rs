//! The planner's output for representative documents, as text snapshots:
//! one line per planned field — response key, what it reads or calls, the
//! batched fields below a call — indented by nesting. A change to how
//! documents are planned shows up here as a changed snapshot. (The resolve
//! and write phases run against real upstreams in `tests/gateway/`.)

use std::fmt::Write as _;
use std::path::PathBuf;

use async_graphql::parser::types::DocumentOperations;

use super::plan::{self, FieldKind, GivenArg, ObjectPlan, OperationPlan, SubPlan};
use crate::gateway::Gateway;
use crate::schema::binding::BoundSource;

const SDL: &str = r#"
type Query {
  user(id: ID!): User
  orders(status: Status, filter: Filter, first: Int = 5): [Order!]!
  search(text: String!): [Result!]!
}
type Mutation { place(input: PlaceInput!): Order  cancel(id: ID!): Order }
enum Status { OPEN CLOSED }
input Filter { status: Status  tags: [String!]  min: Int = 1 }
input PlaceInput { productId: ID!  quantity: Int = 1 }
union Result = User | Order
type User { id: ID!  name: String  orders: [Order!]! }
type Order { id: ID!  status: Status  product: Product }
type Product { id: ID!  name: String }
"#;

const TOML: &str = r#"
schema = "schema.graphql"

[services.shop]
url = "http://127.0.0.1:9"

[types.Result]
discriminator = "kind"
map = { user = "User", order = "Order" }

[resolvers]
"Query.user" = { service = "shop", get = "/users/{args.id}" }
"Query.orders" = { service = "shop", get = "/orders", query = { status = "{args.status}", first = "{args.first}" } }
"Query.search" = { service = "shop", get = "/search", query = { q = "{args.text}" } }
"Mutation.place" = { service = "shop", post = "/orders", body = "{args.input}" }
"Mutation.cancel" = { service = "shop", delete = "/orders/{args.id}" }
"User.orders" = { service = "shop", get = "/orders", query = { user = "{parent.id}" } }
"Order.product" = { service = "shop", get = "/products/{parent.productId}", batch = { key = "{parent.productId}", get = "/products?ids={keys}", match = "id" } }
"#;

/// A gateway loaded from the files above, in a directory of its own.
fn gateway() -> Gateway {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "conflux-plan-tests-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("schema.graphql"), SDL).expect("write schema");
    std::fs::write(dir.join("services.toml"), TOML).expect("write config");
    let loaded = crate::gateway::load(&dir.join("services.toml"));
    let _ = std::fs::remove_dir_all(&dir);
    loaded.unwrap_or_else(|problems| panic!("the test config loads: {problems}"))
}

fn plan_of(gateway: &Gateway, query: &str, variables: serde_json::Value) -> OperationPlan {
    plan_with(gateway, query, variables, true)
}

/// `incremental`: planned for a client that takes incremental delivery.
fn plan_with(
    gateway: &Gateway,
    query: &str,
    variables: serde_json::Value,
    incremental: bool,
) -> OperationPlan {
    let document = async_graphql::parser::parse_query(query).expect("parses");
    let DocumentOperations::Single(operation) = &document.operations else {
        panic!("one operation");
    };
    let variables = gateway
        .plans
        .coerce_variables(&operation.node, Some(variables))
        .expect("valid variables");
    plan::plan(
        &gateway.plans.schema,
        &gateway.bindings,
        &document,
        &operation.node,
        &variables,
        incremental,
    )
    .unwrap_or_else(|plan::Unplannable(why)| panic!("plans: {why}"))
}

/// The plan as indented lines.
fn snapshot(plan: &OperationPlan) -> String {
    let mut out = String::new();
    if plan.serial {
        out.push_str("serial\n");
    }
    object(&mut out, &plan.root, 0, plan);
    out
}

fn object(out: &mut String, plan: &ObjectPlan, depth: usize, whole: &OperationPlan) {
    for field in &plan.fields {
        let indent = "  ".repeat(depth);
        let line = match &field.kind {
            FieldKind::Typename => {
                let _ = writeln!(out, "{indent}{}", field.key);
                continue;
            }
            FieldKind::Introspection => "introspection".to_owned(),
            FieldKind::Field { binding, feeds, .. } => {
                let source = match &binding.source {
                    BoundSource::ParentKey(key) => format!("key {key}"),
                    BoundSource::From(path) => format!("from {}", path.join(".")),
                    BoundSource::Call(call) => format!("call {}", call.spec.path_text),
                    BoundSource::Merge(calls) => format!("merge of {}", calls.len()),
                    BoundSource::Batch(batch) => format!("batch {}", batch.id),
                    BoundSource::Value(_) => "value".to_owned(),
                };
                let mut line = source;
                if !feeds.is_empty() {
                    let feeds: Vec<&str> = feeds.iter().map(|f| &**f).collect();
                    let _ = write!(line, "; feeds {}", feeds.join(", "));
                }
                if let Some(Some(args)) = whole.args.get(field.id) {
                    let given: Vec<String> = args
                        .given
                        .iter()
                        .map(|(name, value)| match value {
                            GivenArg::Const(value) => format!("{name}={value}"),
                            GivenArg::Variable(value) => format!("{name}=${value}"),
                        })
                        .collect();
                    if !given.is_empty() {
                        let _ = write!(line, "; args {}", given.join(" "));
                    }
                }
                line
            }
        };
        let _ = writeln!(out, "{indent}{}: {line}", field.key);
        if let FieldKind::Field { sub, .. } = &field.kind {
            match sub {
                SubPlan::Leaf => {}
                SubPlan::Object(plan) => object(out, plan, depth + 1, whole),
                SubPlan::Abstract(plans) => {
                    for plan in plans {
                        let _ = writeln!(out, "{indent}  on {}", plan.type_name);
                        object(out, plan, depth + 2, whole);
                    }
                }
            }
        }
    }
    for deferred in &plan.deferred {
        let indent = "  ".repeat(depth);
        let label = deferred.label.as_deref().unwrap_or("-");
        let _ = writeln!(out, "{indent}defer {label}");
        object(out, &deferred.plan, depth + 1, whole);
    }
}

#[test]
fn deferred_fragments_are_planned_apart_or_inline() {
    let gateway = gateway();
    let query = r#"{ user(id: "1") { id ... @defer(label: "o") { orders { id ...P @defer } } name } }
                   fragment P on Order { product { name } }"#;
    let deferring = plan_with(&gateway, query, serde_json::json!({}), true);
    assert!(deferring.defers);
    // The fields around a deferred fragment feed no batch of its own.
    assert_eq!(
        snapshot(&deferring),
        "\
user: call /users/{args.id}; args id=\"1\"
  id: key id
  name: key name
  defer o
    orders: call /orders
      id: key id
      defer -
        product: batch Order.product
          name: key name
"
    );
    let inline = plan_with(&gateway, query, serde_json::json!({}), false);
    assert!(!inline.defers);
    assert_eq!(
        snapshot(&inline),
        "\
user: call /users/{args.id}; feeds Order.product; args id=\"1\"
  id: key id
  orders: call /orders; feeds Order.product
    id: key id
    product: batch Order.product
      name: key name
  name: key name
"
    );
    let off = plan_with(
        &gateway,
        r#"query($d: Boolean!) { user(id: "1") { ... @defer(if: $d) { id } } }"#,
        serde_json::json!({"d": false}),
        true,
    );
    assert!(!off.defers && off.depends_on_variables);
}

#[test]
fn fragments_aliases_and_directives_are_collected_once() {
    let gateway = gateway();
    let plan = plan_of(
        &gateway,
        r#"query($skip: Boolean!) {
             me: user(id: "1") { ...U name @skip(if: $skip) }
             user(id: "2") { id @include(if: false) ... on User { name } }
           }
           fragment U on User { id orders { id product { name } } name }"#,
        serde_json::json!({"skip": true}),
    );
    assert!(plan.depends_on_variables, "@skip reads a variable");
    assert_eq!(
        snapshot(&plan),
        "\
me: call /users/{args.id}; feeds Order.product; args id=\"1\"
  id: key id
  orders: call /orders; feeds Order.product
    id: key id
    product: batch Order.product
      name: key name
  name: key name
user: call /users/{args.id}; args id=\"2\"
  name: key name
"
    );
}

#[test]
fn abstract_types_get_a_plan_per_possible_type() {
    let gateway = gateway();
    let plan = plan_of(
        &gateway,
        r#"{ search(text: "a") { __typename ... on User { name } ... on Order { id status } } }"#,
        serde_json::json!({}),
    );
    assert_eq!(
        snapshot(&plan),
        "\
search: call /search; args text=\"a\"
  on User
    __typename
    name: key name
  on Order
    __typename
    id: key id
    status: key status
"
    );
}

#[test]
fn literal_arguments_are_coerced_once_and_variables_per_request() {
    let gateway = gateway();
    let plan = plan_of(
        &gateway,
        r#"query($f: Filter) { a: orders(status: OPEN, filter: {tags: "x"}) { id } b: orders(filter: $f) { id } }"#,
        serde_json::json!({"f": {"status": "CLOSED"}}),
    );
    assert_eq!(
        snapshot(&plan),
        "\
a: call /orders; args status=OPEN filter={tags: [\"x\"], min: 1}
  id: key id
b: call /orders; args filter=$$f
  id: key id
"
    );
    // Per request: the variable's coerced value, the SDL default for the
    // argument left out.
    let document =
        async_graphql::parser::parse_query("query($f: Filter) { b: orders(filter: $f) { id } }")
            .expect("parses");
    let DocumentOperations::Single(operation) = &document.operations else {
        panic!("one operation");
    };
    let variables = gateway
        .plans
        .coerce_variables(
            &operation.node,
            Some(serde_json::json!({"f": {"status": "CLOSED"}})),
        )
        .expect("valid variables");
    let b = plan.args[plan.root.fields[1].id]
        .as_ref()
        .expect("a call's arguments");
    let values = b.values(&operation.node, &variables, &plan.inputs);
    let values: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(values, ["filter={status: CLOSED, min: 1}", "first=5"]);
}

#[test]
fn a_mutation_plans_serially_and_introspection_stands_apart() {
    let gateway = gateway();
    let mutation = plan_of(
        &gateway,
        r#"mutation { place(input: {productId: "p1"}) { id product { name } } cancel(id: "o1") { __typename } }"#,
        serde_json::json!({}),
    );
    assert_eq!(
        snapshot(&mutation),
        "\
serial
place: call /orders; feeds Order.product; args input={productId: \"p1\", quantity: 1}
  id: key id
  product: batch Order.product
    name: key name
cancel: call /orders/{args.id}; args id=\"o1\"
  __typename
"
    );
    assert!(mutation.introspection.is_none());

    let query = plan_of(
        &gateway,
        r#"query($t: String!, $u: ID!) { t: __type(name: $t) { ...T } user(id: $u) { id } }
           fragment T on __Type { name }"#,
        serde_json::json!({"t": "User", "u": "1"}),
    );
    assert_eq!(
        snapshot(&query),
        "t: introspection\nuser: call /users/{args.id}; args id=$$u\n  id: key id\n"
    );
    let introspection = query.introspection.as_ref().expect("an introspection part");
    assert!(!introspection.is_constant(), "it reads `$t`");
    let document = &introspection.document;
    let DocumentOperations::Single(operation) = &document.operations else {
        panic!("one operation");
    };
    let variables: Vec<&str> = operation
        .node
        .variable_definitions
        .iter()
        .map(|d| d.node.name.node.as_str())
        .collect();
    assert_eq!(variables, ["t"], "only the variables it uses");
    let fragments: Vec<&str> = document.fragments.keys().map(|n| n.as_str()).collect();
    assert_eq!(fragments, ["T"], "only the fragments it uses");
}
