//! The GraphQL schema constructs a gateway serves: interfaces and unions
//! resolved by `[types.X]`, enums, input objects, lists, non-null,
//! argument defaults, descriptions and deprecations, and a schema split
//! across files.

use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use crate::support::*;

const ABSTRACT_SDL: &str = r#"
type Query {
  nodes: [Node!]!
  search(text: String!): [SearchResult]
}
interface Node { id: ID! }
type User implements Node { id: ID! name: String }
type Product implements Node { id: ID! title: String kind: ProductKind }
enum ProductKind { physical digital }
union SearchResult = User | Product
"#;

const ABSTRACT_TOML: &str = r#"
[services.catalog]
url = "{catalog}"

[types.Node]
discriminator = "type"
map = { user = "User", product = "Product" }

[types.SearchResult]
discriminator = "kind"
map = { physical = "Product", digital = "Product", person = "User" }

[resolvers]
"Query.nodes"  = { service = "catalog", get = "/nodes" }
"Query.search" = { service = "catalog", get = "/search", query = { q = "{args.text}" } }
"#;

async fn abstract_gateway(catalog: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(ABSTRACT_SDL)
        .config(ABSTRACT_TOML)
        .upstream("catalog", catalog)
        .start()
        .await
}

#[tokio::test]
async fn an_interface_value_takes_its_type_from_the_discriminator() {
    let catalog = MockServer::start().await;
    serve(
        &catalog,
        "GET",
        "/nodes",
        json_reply(json!([
            {"type": "user", "id": "u1", "name": "Ann"},
            {"type": "product", "id": "p1", "title": "Lamp"}
        ])),
    )
    .await;
    let gateway = abstract_gateway(&catalog).await;

    let reply = gateway
        .post("{ nodes { __typename id ... on User { name } ... on Product { title } } }")
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"nodes": [
            {"__typename": "User", "id": "u1", "name": "Ann"},
            {"__typename": "Product", "id": "p1", "title": "Lamp"}
        ]}})
    );
}

#[tokio::test]
async fn a_union_value_takes_its_type_from_the_discriminator_map() {
    let catalog = MockServer::start().await;
    serve(
        &catalog,
        "GET",
        "/search",
        json_reply(json!([
            {"kind": "physical", "id": "p1", "title": "Lamp"},
            {"kind": "person", "id": "u1", "name": "Ann"},
            {"kind": "digital", "id": "p2", "title": "E-book"}
        ])),
    )
    .await;
    let gateway = abstract_gateway(&catalog).await;

    let reply = gateway
        .post(
            r#"{ search(text: "a") { __typename ... on User { name } ... on Product { id title kind } } }"#,
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"search": [
            {"__typename": "Product", "id": "p1", "title": "Lamp", "kind": "physical"},
            {"__typename": "User", "name": "Ann"},
            {"__typename": "Product", "id": "p2", "title": "E-book", "kind": "digital"}
        ]}})
    );
    assert_eq!(
        request_lines(&received(&catalog).await),
        ["GET /search?q=a"]
    );
}

#[tokio::test]
async fn an_unmapped_discriminator_value_is_a_field_error_on_that_item() {
    let catalog = MockServer::start().await;
    serve(
        &catalog,
        "GET",
        "/search",
        json_reply(json!([
            {"kind": "person", "id": "u1", "name": "Ann"},
            {"kind": "alien", "id": "x1"}
        ])),
    )
    .await;
    let gateway = abstract_gateway(&catalog).await;

    let reply = gateway
        .post(r#"{ search(text: "a") { __typename ... on User { name } } }"#)
        .await;

    let body = reply.json();
    assert_eq!(reply.status, 200);
    let codes = error_codes(&body);
    assert_eq!(codes, ["UPSTREAM_BAD_RESPONSE"], "{body}");
    assert_eq!(
        body["data"],
        json!({"search": [{"__typename": "User", "name": "Ann"}, null]}),
        "only the nullable item that failed is null"
    );
    assert_eq!(body["errors"][0]["path"], json!(["search", 1]));
}

// ---- enums, input objects, lists, non-null ----------------------------------

const VALUES_SDL: &str = r#"
type Query {
  users(ids: [ID!]!, tier: Tier): [User!]
  grid: [[Int!]!]
  latest(limit: Int = 10, order: String = "desc"): [User!]!
}
type Mutation {
  place(input: OrderInput!): Receipt
}
enum Tier { STANDARD GOLD }
input OrderInput {
  sku: ID!
  quantity: Int = 1
  gift: GiftInput
}
input GiftInput { message: String! wrap: Boolean = false }
type User { id: ID! name: String! tier: Tier }
type Receipt { id: ID! }
"#;

const VALUES_TOML: &str = r#"
[services.shop]
url = "{shop}"

[resolvers]
"Query.users"    = { service = "shop", get = "/users", query = { ids = "{args.ids}", tier = "{args.tier}" } }
"Query.grid"     = { service = "shop", get = "/grid" }
"Query.latest"   = { service = "shop", get = "/latest", query = { limit = "{args.limit}", order = "{args.order}" } }
"Mutation.place" = { service = "shop", post = "/orders", body = "{args.input}" }
"#;

async fn values_gateway(shop: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(VALUES_SDL)
        .config(VALUES_TOML)
        .upstream("shop", shop)
        .start()
        .await
}

#[tokio::test]
async fn enum_and_list_arguments_reach_the_upstream_and_enum_values_come_back() {
    let shop = MockServer::start().await;
    serve(
        &shop,
        "GET",
        "/users",
        json_reply(json!([
            {"id": "1", "name": "Ann", "tier": "GOLD"},
            {"id": "2", "name": "Bo", "tier": "STANDARD"}
        ])),
    )
    .await;
    let gateway = values_gateway(&shop).await;

    let reply = gateway
        .post(r#"{ users(ids: ["1", "2"], tier: GOLD) { id name tier } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"users": [
            {"id": "1", "name": "Ann", "tier": "GOLD"},
            {"id": "2", "name": "Bo", "tier": "STANDARD"}
        ]}})
    );
    assert_eq!(
        request_lines(&received(&shop).await),
        ["GET /users?ids=1,2&tier=GOLD"]
    );
}

#[tokio::test]
async fn nested_lists_come_back_as_nested_lists() {
    let shop = MockServer::start().await;
    serve(&shop, "GET", "/grid", json_reply(json!([[1, 2], [], [3]]))).await;
    let gateway = values_gateway(&shop).await;

    let reply = gateway.post("{ grid }").await;

    assert_eq!(reply.json(), json!({"data": {"grid": [[1, 2], [], [3]]}}));
}

#[tokio::test]
async fn a_null_item_in_a_list_of_non_null_items_nulls_the_list() {
    let shop = MockServer::start().await;
    serve(
        &shop,
        "GET",
        "/users",
        json_reply(json!([{"id": "1", "name": "Ann"}, null])),
    )
    .await;
    let gateway = values_gateway(&shop).await;

    let reply = gateway.post(r#"{ users(ids: ["1", "2"]) { id } }"#).await;

    let body = reply.json();
    assert_eq!(body["data"], json!({"users": null}), "{body}");
    assert_eq!(error_codes(&body).len(), 1, "{body}");
    assert_eq!(
        body["errors"][0]["path"],
        json!(["users", 1]),
        "the error points at the null item"
    );
}

#[tokio::test]
async fn argument_defaults_reach_the_upstream() {
    let shop = MockServer::start().await;
    serve(&shop, "GET", "/latest", json_reply(json!([]))).await;
    let gateway = values_gateway(&shop).await;

    let defaults = gateway.post("{ latest { id } }").await;
    let given = gateway.post("{ latest(limit: 3) { id } }").await;

    assert_eq!(defaults.json(), json!({"data": {"latest": []}}));
    assert_eq!(given.json(), json!({"data": {"latest": []}}));
    assert_eq!(
        request_lines(&received(&shop).await),
        [
            "GET /latest?limit=10&order=desc",
            "GET /latest?limit=3&order=desc"
        ]
    );
}

#[tokio::test]
async fn input_objects_reach_the_upstream_with_their_field_defaults() {
    let shop = MockServer::start().await;
    Mock::given(any())
        .respond_with(json_reply(json!({"id": "r1"})))
        .mount(&shop)
        .await;
    let gateway = values_gateway(&shop).await;

    let from_variables = gateway
        .post_vars(
            "mutation($input: OrderInput!) { place(input: $input) { id } }",
            json!({"input": {"sku": "s1", "gift": {"message": "hi"}}}),
        )
        .await;
    let from_literal = gateway
        .post(r#"mutation { place(input: {sku: "s1", gift: {message: "hi"}}) { id } }"#)
        .await;

    assert_eq!(
        from_variables.json(),
        json!({"data": {"place": {"id": "r1"}}})
    );
    assert_eq!(
        from_literal.json(),
        json!({"data": {"place": {"id": "r1"}}})
    );
    let requests = received(&shop).await;
    assert_eq!(request_lines(&requests), ["POST /orders", "POST /orders"]);
    let expected = json!({"sku": "s1", "quantity": 1, "gift": {"message": "hi", "wrap": false}});
    assert_eq!(
        (body_json(&requests[0]), body_json(&requests[1])),
        (expected.clone(), expected),
        "(input given as a variable, input given as a literal)"
    );
}

#[tokio::test]
async fn a_missing_required_argument_is_a_validation_error_and_calls_nothing() {
    let shop = MockServer::start().await;
    Mock::given(any())
        .respond_with(json_reply(json!([])))
        .expect(0)
        .mount(&shop)
        .await;
    let gateway = values_gateway(&shop).await;

    let reply = gateway
        .post_with_headers(
            "{ users { id } }",
            &[("accept", "application/graphql-response+json")],
        )
        .await;

    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_codes(), ["GRAPHQL_VALIDATION_FAILED"]);
}

// ---- descriptions and deprecations ------------------------------------------

const DOCUMENTED_SDL: &str = r#"
"The entry points."
type Query {
  "One user by id."
  user("The user's id." id: ID!): User
  search(filter: Filter): [User!]!
}

"A customer."
type User {
  id: ID!
  "Display name."
  name: String
  handle: String @deprecated(reason: "Use `name`.")
  legacy: String @deprecated
  tier: Tier
}

"""
Membership levels,
over two lines.
"""
enum Tier {
  STANDARD
  "The best."
  GOLD @deprecated(reason: "No more gold.")
}

"What to search."
input Filter {
  "Part of the name."
  text: String
}
"#;

async fn documented_gateway(users: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(DOCUMENTED_SDL)
        .config(
            r#"
[services.users]
url = "{users}"

[resolvers]
"Query.user"   = { service = "users", get = "/users/{args.id}" }
"Query.search" = { service = "users", get = "/users", query = { q = "{args.filter.text}" } }
"#,
        )
        .upstream("users", users)
        .start()
        .await
}

#[tokio::test]
async fn descriptions_are_visible_through_introspection() {
    let users = MockServer::start().await;
    let gateway = documented_gateway(&users).await;

    let reply = gateway
        .post(
            r#"{
  query: __type(name: "Query") { description fields(includeDeprecated: true) { name description args { name description } } }
  user: __type(name: "User") { description fields(includeDeprecated: true) { name description } }
  tier: __type(name: "Tier") { description enumValues(includeDeprecated: true) { name description } }
  filter: __type(name: "Filter") { description inputFields { name description } }
}"#,
        )
        .await;

    let body = reply.json();
    assert_eq!(body.get("errors"), None, "{body}");
    let data = &body["data"];
    assert_eq!(data["query"]["description"], json!("The entry points."));
    let user_field = field_named(&data["query"]["fields"], "user");
    assert_eq!(user_field["description"], json!("One user by id."));
    assert_eq!(
        user_field["args"],
        json!([{"name": "id", "description": "The user's id."}])
    );
    assert_eq!(data["user"]["description"], json!("A customer."));
    assert_eq!(
        field_named(&data["user"]["fields"], "name")["description"],
        json!("Display name.")
    );
    assert_eq!(
        field_named(&data["user"]["fields"], "id")["description"],
        json!(null)
    );
    assert_eq!(
        data["tier"]["description"],
        json!("Membership levels,\nover two lines.")
    );
    assert_eq!(
        data["tier"]["enumValues"],
        json!([
            {"name": "STANDARD", "description": null},
            {"name": "GOLD", "description": "The best."}
        ])
    );
    assert_eq!(data["filter"]["description"], json!("What to search."));
    assert_eq!(
        data["filter"]["inputFields"],
        json!([{"name": "text", "description": "Part of the name."}])
    );
}

#[tokio::test]
async fn deprecations_are_visible_through_introspection_and_only_they_are_hidden_by_default() {
    let users = MockServer::start().await;
    let gateway = documented_gateway(&users).await;

    let reply = gateway
        .post(
            r#"{
  all: __type(name: "User") { fields(includeDeprecated: true) { name isDeprecated deprecationReason } }
  current: __type(name: "User") { fields { name } }
  tier: __type(name: "Tier") { enumValues(includeDeprecated: true) { name isDeprecated deprecationReason } }
  currentTiers: __type(name: "Tier") { enumValues { name } }
}"#,
        )
        .await;

    let body = reply.json();
    assert_eq!(body.get("errors"), None, "{body}");
    let data = &body["data"];
    assert_eq!(
        data["all"]["fields"],
        json!([
            {"name": "id", "isDeprecated": false, "deprecationReason": null},
            {"name": "name", "isDeprecated": false, "deprecationReason": null},
            {"name": "handle", "isDeprecated": true, "deprecationReason": "Use `name`."},
            {"name": "legacy", "isDeprecated": true, "deprecationReason": "No longer supported"},
            {"name": "tier", "isDeprecated": false, "deprecationReason": null}
        ])
    );
    assert_eq!(
        data["current"]["fields"],
        json!([{"name": "id"}, {"name": "name"}, {"name": "tier"}]),
        "only deprecated fields are hidden without includeDeprecated"
    );
    assert_eq!(
        data["tier"]["enumValues"],
        json!([
            {"name": "STANDARD", "isDeprecated": false, "deprecationReason": null},
            {"name": "GOLD", "isDeprecated": true, "deprecationReason": "No more gold."}
        ])
    );
    assert_eq!(
        data["currentTiers"]["enumValues"],
        json!([{"name": "STANDARD"}])
    );
}

#[tokio::test]
async fn introspection_lists_the_fields_of_the_root_type() {
    let users = MockServer::start().await;
    let gateway = documented_gateway(&users).await;

    let reply = gateway
        .post("{ __schema { queryType { name fields { name } } } }")
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"__schema": {"queryType": {
            "name": "Query",
            "fields": [{"name": "user"}, {"name": "search"}]
        }}}}),
        "what GraphiQL and every client code generator read"
    );
}

fn field_named<'a>(fields: &'a Value, name: &str) -> &'a Value {
    fields
        .as_array()
        .and_then(|all| all.iter().find(|f| f["name"] == json!(name)))
        .unwrap_or_else(|| panic!("no field `{name}` in {fields}"))
}

// ---- a schema split across files --------------------------------------------

const USERS_PART: &str = r#"
type Query {
  user(id: ID!): User
}
type User { id: ID! name: String }
"#;

const PRODUCTS_PART: &str = r#"
extend type Query {
  product(id: ID!): Product
}
type Product { id: ID! title: String maker: User }
"#;

const SPLIT_TOML: &str = r#"
[services.shop]
url = "{shop}"

[resolvers]
"Query.user"    = { service = "shop", get = "/users/{args.id}" }
"Query.product" = { service = "shop", get = "/products/{args.id}" }
"Product.maker" = { service = "shop", get = "/users/{parent.makerId}" }
"#;

async fn mount_shop(shop: &MockServer) {
    serve(
        shop,
        "GET",
        "/users/u1",
        json_reply(json!({"id": "u1", "name": "Ann"})),
    )
    .await;
    serve(
        shop,
        "GET",
        "/products/p1",
        json_reply(json!({"id": "p1", "title": "Lamp", "makerId": "u1"})),
    )
    .await;
}

#[tokio::test]
async fn a_schema_directory_of_two_files_is_served_as_one_schema() {
    let shop = MockServer::start().await;
    mount_shop(&shop).await;
    let gateway = TestGateway::builder()
        .schema_file("users.graphql", USERS_PART)
        .schema_file("products.graphql", PRODUCTS_PART)
        .config(SPLIT_TOML)
        .upstream("shop", &shop)
        .start()
        .await;

    let reply = gateway
        .post(r#"{ user(id: "u1") { name } product(id: "p1") { title maker { name } } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {
            "user": {"name": "Ann"},
            "product": {"title": "Lamp", "maker": {"name": "Ann"}}
        }})
    );
}

#[tokio::test]
async fn a_schema_list_of_files_in_different_folders_is_served_as_one_schema() {
    let shop = MockServer::start().await;
    mount_shop(&shop).await;
    let gateway = TestGateway::builder()
        .file("api/users.graphql", USERS_PART)
        .file("more/products.graphql", PRODUCTS_PART)
        .config(&format!(
            "schema = [\"api/users.graphql\", \"more\"]\n{SPLIT_TOML}"
        ))
        .upstream("shop", &shop)
        .start()
        .await;

    let reply = gateway
        .post(r#"{ user(id: "u1") { name } product(id: "p1") { title } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"name": "Ann"}, "product": {"title": "Lamp"}}})
    );
}
