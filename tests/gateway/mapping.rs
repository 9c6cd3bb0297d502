//! docs/CONFIG.md "Resolver mappings" and "Templates": every row of the mapping
//! table except `batch`, checked on what the client gets AND on what the
//! upstream received.

use std::time::Instant;

use serde_json::json;
use wiremock::matchers::{any, method};
use wiremock::{Mock, MockServer};

use crate::support::*;

const USERS_SDL: &str = r#"
type Query {
  user(id: ID!): User
  maybeUser(id: ID): User
  strictUser(id: ID): User!
}
type User {
  id: ID!
  name: String!
  email: String
}
"#;

const USERS_TOML: &str = r#"
[services.users]
url = "{users}"

[resolvers]
"Query.user"       = { service = "users", get = "/users/{args.id}" }
"Query.maybeUser"  = { service = "users", get = "/users/{args.id}" }
"Query.strictUser" = { service = "users", get = "/users/{args.id}" }
"#;

async fn users_gateway(users: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(USERS_SDL)
        .config(USERS_TOML)
        .upstream("users", users)
        .start()
        .await
}

#[tokio::test]
async fn get_fills_the_path_from_an_argument_and_returns_the_upstream_json() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/7",
        json_reply(json!({"id": "7", "name": "Ann", "email": "ann@example.com"})),
    )
    .await;
    let gateway = users_gateway(&users).await;

    let reply = gateway.post(r#"{ user(id: "7") { id name email } }"#).await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"id": "7", "name": "Ann", "email": "ann@example.com"}}})
    );
    let requests = received(&users).await;
    assert_eq!(request_lines(&requests), ["GET /users/7"]);
    assert!(requests[0].body.is_empty(), "a GET carries no body");
}

// ---- post / put / patch / delete --------------------------------------------

const WRITE_SDL: &str = r#"
type Query { user(id: ID!): User }
type Mutation {
  createUser(input: NewUser!): User
  replaceUser(id: ID!, name: String!): User
  renameUser(id: ID!, name: String!): User
  deleteUser(id: ID!): Boolean
}
input NewUser { name: String! email: String }
type User { id: ID! name: String! email: String }
"#;

const WRITE_TOML: &str = r#"
[services.users]
url = "{users}"

[resolvers]
"Query.user"          = { service = "users", get = "/users/{args.id}" }
"Mutation.createUser"  = { service = "users", post = "/users", body = "{args.input}" }
"Mutation.replaceUser" = { service = "users", put = "/users/{args.id}", body = { name = "{args.name}" } }
"Mutation.renameUser"  = { service = "users", patch = "/users/{args.id}", body = { name = "{args.name}" } }
"Mutation.deleteUser"  = { service = "users", delete = "/users/{args.id}", select = "deleted" }
"#;

async fn write_gateway(users: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(WRITE_SDL)
        .config(WRITE_TOML)
        .upstream("users", users)
        .start()
        .await
}

#[tokio::test]
async fn post_sends_the_input_object_as_a_json_body() {
    let users = MockServer::start().await;
    serve(
        &users,
        "POST",
        "/users",
        json_reply(json!({"id": "u9", "name": "Bo", "email": "bo@example.com"})),
    )
    .await;
    let gateway = write_gateway(&users).await;

    let reply = gateway
        .post(r#"mutation { createUser(input: {name: "Bo", email: "bo@example.com"}) { id name email } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"createUser": {"id": "u9", "name": "Bo", "email": "bo@example.com"}}})
    );
    let requests = received(&users).await;
    assert_eq!(request_lines(&requests), ["POST /users"]);
    assert_eq!(
        body_json(&requests[0]),
        json!({"name": "Bo", "email": "bo@example.com"})
    );
    let content_type = header(&requests[0], "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type:?}"
    );
}

#[tokio::test]
async fn put_sends_its_verb_path_and_table_body() {
    let users = MockServer::start().await;
    serve(
        &users,
        "PUT",
        "/users/u9",
        json_reply(json!({"id": "u9", "name": "Cy"})),
    )
    .await;
    let gateway = write_gateway(&users).await;

    let reply = gateway
        .post(r#"mutation { replaceUser(id: "u9", name: "Cy") { id name } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"replaceUser": {"id": "u9", "name": "Cy"}}})
    );
    let requests = received(&users).await;
    assert_eq!(request_lines(&requests), ["PUT /users/u9"]);
    assert_eq!(body_json(&requests[0]), json!({"name": "Cy"}));
}

#[tokio::test]
async fn patch_sends_its_verb_path_and_table_body() {
    let users = MockServer::start().await;
    serve(
        &users,
        "PATCH",
        "/users/u9",
        json_reply(json!({"id": "u9", "name": "Di"})),
    )
    .await;
    let gateway = write_gateway(&users).await;

    let reply = gateway
        .post(r#"mutation { renameUser(id: "u9", name: "Di") { name } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"renameUser": {"name": "Di"}}})
    );
    let requests = received(&users).await;
    assert_eq!(request_lines(&requests), ["PATCH /users/u9"]);
    assert_eq!(body_json(&requests[0]), json!({"name": "Di"}));
}

#[tokio::test]
async fn delete_sends_its_verb_without_a_body_and_selects_from_the_answer() {
    let users = MockServer::start().await;
    serve(
        &users,
        "DELETE",
        "/users/u9",
        json_reply(json!({"deleted": true})),
    )
    .await;
    let gateway = write_gateway(&users).await;

    let reply = gateway.post(r#"mutation { deleteUser(id: "u9") }"#).await;

    assert_eq!(reply.json(), json!({"data": {"deleteUser": true}}));
    let requests = received(&users).await;
    assert_eq!(request_lines(&requests), ["DELETE /users/u9"]);
    assert!(requests[0].body.is_empty());
}

// ---- query ------------------------------------------------------------------

#[tokio::test]
async fn query_parameters_are_filled_and_absent_or_null_ones_left_out() {
    let search = MockServer::start().await;
    serve(
        &search,
        "GET",
        "/search",
        json_reply(json!({"hits": ["a"]})),
    )
    .await;
    let gateway = TestGateway::builder()
        .schema(
            "type Query { search(text: String, limit: Int, tag: String, page: Int): [String!] }",
        )
        .config(
            r#"
[services.search]
url = "{search}"

[resolvers]
"Query.search" = { service = "search", get = "/search?page={args.page}&fixed=1", query = { q = "{args.text}", limit = "{args.limit}", tag = "{args.tag}" }, select = "hits" }
"#,
        )
        .upstream("search", &search)
        .start()
        .await;

    let full = gateway
        .post(r#"{ search(text: "lamp", limit: 5, tag: "new", page: 2) }"#)
        .await;
    let sparse = gateway.post(r#"{ search(text: "lamp", tag: null) }"#).await;

    assert_eq!(full.json(), json!({"data": {"search": ["a"]}}));
    assert_eq!(sparse.json(), json!({"data": {"search": ["a"]}}));
    let requests = received(&search).await;
    assert_eq!(requests.len(), 2, "{:?}", request_lines(&requests));
    let mut first = query_pairs(&requests[0]);
    first.sort();
    assert_eq!(
        first,
        [
            ("fixed".to_owned(), "1".to_owned()),
            ("limit".to_owned(), "5".to_owned()),
            ("page".to_owned(), "2".to_owned()),
            ("q".to_owned(), "lamp".to_owned()),
            ("tag".to_owned(), "new".to_owned()),
        ]
    );
    let mut second = query_pairs(&requests[1]);
    second.sort();
    assert_eq!(
        second,
        [
            ("fixed".to_owned(), "1".to_owned()),
            ("q".to_owned(), "lamp".to_owned()),
        ],
        "limit (absent), tag (null) and page (absent, after `?`) are left out"
    );
}

// ---- headers ----------------------------------------------------------------

#[tokio::test]
async fn call_headers_are_templates_over_arguments_and_client_headers() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/7",
        json_reply(json!({"id": "7", "name": "Ann"})),
    )
    .await;
    let gateway = TestGateway::builder()
        .schema(USERS_SDL)
        .config(
            r#"
[services.users]
url = "{users}"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}", headers = { "x-user-id" = "{args.id}", "x-tenant" = "{headers.X-Tenant}", "x-both" = "t={headers.x-tenant};u={args.id}" } }
"Query.maybeUser" = { service = "users", get = "/users/{args.id}" }
"Query.strictUser" = { service = "users", get = "/users/{args.id}" }
"#,
        )
        .upstream("users", &users)
        .start()
        .await;

    let reply = gateway
        .post_with_headers(
            r#"{ user(id: "7") { name } }"#,
            &[("X-TENANT", "acme"), ("x-other", "private")],
        )
        .await;

    assert_eq!(reply.json(), json!({"data": {"user": {"name": "Ann"}}}));
    let requests = received(&users).await;
    assert_eq!(request_lines(&requests), ["GET /users/7"]);
    assert_eq!(header(&requests[0], "x-user-id").as_deref(), Some("7"));
    assert_eq!(header(&requests[0], "x-tenant").as_deref(), Some("acme"));
    assert_eq!(
        header(&requests[0], "x-both").as_deref(),
        Some("t=acme;u=7")
    );
    assert_eq!(
        header(&requests[0], "x-other"),
        None,
        "a client header not named anywhere must not reach the upstream"
    );
}

// ---- body -------------------------------------------------------------------

const BODY_SDL: &str = r#"
type Query { ping: String }
type Mutation {
  createThing(input: ThingInput!, limit: Int): Thing
  createRaw(input: ThingInput!): Thing
  greet(name: String!): Thing
}
input ThingInput { name: String! size: Int tags: [String!] dims: Dims }
input Dims { w: Float h: Float }
type Thing { id: ID! }
"#;

const BODY_TOML: &str = r#"
[services.things]
url = "{things}"

[resolvers]
"Query.ping"         = { service = "things", get = "/ping" }
"Mutation.createRaw" = { service = "things", post = "/raw", body = "{args.input}" }
"Mutation.greet"     = { service = "things", post = "/greet", body = "hello {args.name}!" }

[resolvers."Mutation.createThing"]
service = "things"
post = "/things"
body = { thing = "{args.input}", limit = "{args.limit}", label = "max {args.limit}", name = "{args.input.name}", width = "{args.input.dims.w}", fixed = 3, flag = true, rows = [["{args.input.name}", "{args.limit}"], ["x", "{args.input.tags}"]], meta = { deep = { size = "{args.input.size}" } } }
"#;

async fn body_gateway(things: &MockServer) -> TestGateway {
    Mock::given(any())
        .respond_with(json_reply(json!({"id": "t1"})))
        .mount(things)
        .await;
    TestGateway::builder()
        .schema(BODY_SDL)
        .config(BODY_TOML)
        .upstream("things", things)
        .start()
        .await
}

#[tokio::test]
async fn a_table_body_nests_tables_and_arrays_and_single_placeholders_keep_their_json_type() {
    let things = MockServer::start().await;
    let gateway = body_gateway(&things).await;

    let reply = gateway
        .post(
            r#"mutation { createThing(input: {name: "box", size: 4, tags: ["a", "b"], dims: {w: 1.5, h: 2.5}}, limit: 10) { id } }"#,
        )
        .await;

    assert_eq!(reply.json(), json!({"data": {"createThing": {"id": "t1"}}}));
    let requests = received(&things).await;
    assert_eq!(request_lines(&requests), ["POST /things"]);
    assert_eq!(
        body_json(&requests[0]),
        json!({
            "thing": {"name": "box", "size": 4, "tags": ["a", "b"], "dims": {"w": 1.5, "h": 2.5}},
            "limit": 10,
            "label": "max 10",
            "name": "box",
            "width": 1.5,
            "fixed": 3,
            "flag": true,
            "rows": [["box", 10], ["x", ["a", "b"]]],
            "meta": {"deep": {"size": 4}}
        })
    );
}

#[tokio::test]
async fn a_body_that_is_one_placeholder_sends_the_input_object_itself() {
    let things = MockServer::start().await;
    let gateway = body_gateway(&things).await;

    let reply = gateway
        .post(r#"mutation { createRaw(input: {name: "box", size: 4}) { id } }"#)
        .await;

    assert_eq!(reply.json(), json!({"data": {"createRaw": {"id": "t1"}}}));
    let requests = received(&things).await;
    assert_eq!(request_lines(&requests), ["POST /raw"]);
    assert_eq!(body_json(&requests[0]), json!({"name": "box", "size": 4}));
}

#[tokio::test]
async fn a_body_template_string_with_text_sends_a_json_string() {
    let things = MockServer::start().await;
    let gateway = body_gateway(&things).await;

    let reply = gateway
        .post(r#"mutation { greet(name: "Ann") { id } }"#)
        .await;

    assert_eq!(reply.json(), json!({"data": {"greet": {"id": "t1"}}}));
    let requests = received(&things).await;
    assert_eq!(request_lines(&requests), ["POST /greet"]);
    assert_eq!(body_json(&requests[0]), json!("hello Ann!"));
}

// ---- select / from / same-name key ------------------------------------------

#[tokio::test]
async fn select_takes_a_dotted_path_and_indexes_arrays() {
    let catalog = MockServer::start().await;
    let listing = json!({
        "items": [{"name": "first", "price": 1}, {"name": "second", "price": 2}],
        "meta": {"count": 2}
    });
    serve(&catalog, "GET", "/a", json_reply(listing.clone())).await;
    serve(&catalog, "GET", "/b", json_reply(listing.clone())).await;
    serve(&catalog, "GET", "/c", json_reply(listing)).await;
    let gateway = TestGateway::builder()
        .schema(
            r#"
type Query { firstName: String secondItem: Item count: Int }
type Item { name: String price: Int }
"#,
        )
        .config(
            r#"
[services.catalog]
url = "{catalog}"

[resolvers]
"Query.firstName"  = { service = "catalog", get = "/a", select = "items.0.name" }
"Query.secondItem" = { service = "catalog", get = "/b", select = "items.1" }
"Query.count"      = { service = "catalog", get = "/c", select = "meta.count" }
"#,
        )
        .upstream("catalog", &catalog)
        .start()
        .await;

    let reply = gateway
        .post("{ firstName secondItem { name price } count }")
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {
            "firstName": "first",
            "secondItem": {"name": "second", "price": 2},
            "count": 2
        }})
    );
}

const PROFILE_SDL: &str = r#"
type Query { user(id: ID!): User }
type User {
  id: ID!
  name: String
  email: String
  phone: String
  fullName: String
  city: String
  nickname: String
}
"#;

const PROFILE_TOML: &str = r#"
[services.users]
url = "{users}"

[resolvers]
"Query.user"    = { service = "users", get = "/users/{args.id}" }
"User.fullName" = { from = "profile.full_name" }
"User.city"     = { from = "profile.address.city" }
"User.nickname" = { from = "profile.nick" }
"#;

#[tokio::test]
async fn from_reads_a_dotted_path_of_the_parent_without_a_call() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({
            "id": "1",
            "name": "Ann",
            "profile": {"full_name": "Ann Lee", "address": {"city": "Oslo"}}
        })),
    )
    .await;
    let gateway = TestGateway::builder()
        .schema(PROFILE_SDL)
        .config(PROFILE_TOML)
        .upstream("users", &users)
        .start()
        .await;

    let reply = gateway
        .post(r#"{ user(id: "1") { fullName city nickname } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"fullName": "Ann Lee", "city": "Oslo", "nickname": null}}})
    );
    assert_eq!(
        request_lines(&received(&users).await),
        ["GET /users/1"],
        "`from` makes no call of its own"
    );
}

#[tokio::test]
async fn a_field_without_mapping_reads_the_key_of_the_same_name() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(
            json!({"id": "1", "name": "Ann", "email": "ann@example.com", "fullName": "ignored"}),
        ),
    )
    .await;
    let gateway = TestGateway::builder()
        .schema(PROFILE_SDL)
        .config(PROFILE_TOML)
        .upstream("users", &users)
        .start()
        .await;

    let reply = gateway
        .post(r#"{ user(id: "1") { id name email phone } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"id": "1", "name": "Ann", "email": "ann@example.com", "phone": null}}})
    );
}

// ---- merge ------------------------------------------------------------------

const MERGE_SDL: &str = r#"
type Query { product(id: ID!): Product }
type Product {
  id: ID!
  name: String
  price: Price
  source: String
  tags: [String!]
}
type Price { amount: Float currency: String }
"#;

const MERGE_TOML: &str = r#"
[services.catalog]
url = "{catalog}"

[services.pricing]
url = "{pricing}"

[resolvers]
"Query.product" = { merge = [ { service = "catalog", get = "/items/{args.id}" }, { service = "pricing", get = "/prices/{args.id}" } ] }
"#;

async fn merge_gateway(catalog: &MockServer, pricing: &MockServer) -> TestGateway {
    TestGateway::builder()
        .schema(MERGE_SDL)
        .config(MERGE_TOML)
        .upstream("catalog", catalog)
        .upstream("pricing", pricing)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_calls_in_parallel_and_deep_merges_objects_later_ones_winning() {
    let catalog = MockServer::start().await;
    let pricing = MockServer::start().await;
    serve_times(
        &catalog,
        "GET",
        "/items/p1",
        json_reply(json!({
            "id": "p1",
            "name": "Lamp",
            "price": {"amount": 1.0, "currency": "EUR"},
            "source": "catalog",
            "tags": ["a", "b"]
        }))
        .set_delay(ms(300)),
        1,
    )
    .await;
    serve_times(
        &pricing,
        "GET",
        "/prices/p1",
        json_reply(json!({"price": {"amount": 25.5}, "source": "pricing", "tags": ["c"]}))
            .set_delay(ms(300)),
        1,
    )
    .await;
    let gateway = merge_gateway(&catalog, &pricing).await;

    let started = Instant::now();
    let reply = gateway
        .post(r#"{ product(id: "p1") { id name price { amount currency } source tags } }"#)
        .await;
    let elapsed = started.elapsed();

    assert_eq!(
        reply.json(),
        json!({"data": {"product": {
            "id": "p1",
            "name": "Lamp",
            "price": {"amount": 25.5, "currency": "EUR"},
            "source": "pricing",
            "tags": ["c"]
        }}})
    );
    assert!(
        elapsed < ms(550),
        "two 300 ms calls in parallel took {elapsed:?}"
    );
}

#[tokio::test]
async fn a_merge_call_answering_a_non_object_is_upstream_bad_response() {
    let catalog = MockServer::start().await;
    let pricing = MockServer::start().await;
    serve(
        &catalog,
        "GET",
        "/items/p1",
        json_reply(json!({"id": "p1", "name": "Lamp"})),
    )
    .await;
    serve(&pricing, "GET", "/prices/p1", json_reply(json!([1, 2]))).await;
    let gateway = merge_gateway(&catalog, &pricing).await;

    let reply = gateway.post(r#"{ product(id: "p1") { id name } }"#).await;

    let body = reply.json();
    assert_eq!(body["data"], json!({"product": null}));
    assert_eq!(error_codes(&body), ["UPSTREAM_BAD_RESPONSE"]);
    assert_eq!(body["errors"][0]["path"], json!(["product"]));
    assert_eq!(body["errors"][0]["extensions"]["service"], json!("pricing"));
}

#[tokio::test]
async fn a_404_from_one_merge_call_makes_the_field_null_without_error() {
    let catalog = MockServer::start().await;
    let pricing = MockServer::start().await;
    serve(
        &catalog,
        "GET",
        "/items/p1",
        json_reply(json!({"id": "p1", "name": "Lamp"})),
    )
    .await;
    serve(
        &pricing,
        "GET",
        "/prices/p1",
        wiremock::ResponseTemplate::new(404),
    )
    .await;
    let gateway = merge_gateway(&catalog, &pricing).await;

    let reply = gateway.post(r#"{ product(id: "p1") { id name } }"#).await;

    assert_eq!(reply.json(), json!({"data": {"product": null}}));
}

// ---- templates: args (dotted), parent ---------------------------------------

#[tokio::test]
async fn args_placeholders_are_dotted_into_input_objects() {
    let catalog = MockServer::start().await;
    Mock::given(any())
        .respond_with(json_reply(json!([{"name": "Desk lamp"}])))
        .mount(&catalog)
        .await;
    let gateway = TestGateway::builder()
        .schema(
            r#"
type Query { items(filter: Filter!): [Item!]! }
input Filter { category: String! price: Range }
input Range { min: Int max: Int }
type Item { name: String }
"#,
        )
        .config(
            r#"
[services.catalog]
url = "{catalog}"

[resolvers]
"Query.items" = { service = "catalog", get = "/categories/{args.filter.category}/items", query = { min = "{args.filter.price.min}", max = "{args.filter.price.max}" } }
"#,
        )
        .upstream("catalog", &catalog)
        .start()
        .await;

    let reply = gateway
        .post(r#"{ items(filter: {category: "lamps", price: {min: 10}}) { name } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"items": [{"name": "Desk lamp"}]}})
    );
    assert_eq!(
        request_lines(&received(&catalog).await),
        ["GET /categories/lamps/items?min=10"]
    );
}

const PARENT_SDL: &str = r#"
type Query { user(id: ID!): User }
type User {
  id: ID!
  name: String
  team: Team
  orders(status: String): [Order!]!
  manager: User
}
type Team { id: ID! name: String }
type Order { id: ID! }
"#;

const PARENT_TOML: &str = r#"
[services.users]
url = "{users}"

[resolvers]
"Query.user"   = { service = "users", get = "/users/{args.id}" }
"User.team"    = { service = "users", get = "/teams/{parent.membership.teamId}" }
"User.orders"  = { service = "users", get = "/users/{parent.id}/orders", query = { status = "{args.status}", region = "{parent.membership.region}" } }
"User.manager" = { service = "users", get = "/users/{parent.managerId}" }
"#;

#[tokio::test]
async fn parent_placeholders_read_the_parent_json_and_a_missing_path_value_makes_no_call() {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/u1",
        json_reply(json!({
            "id": "u1",
            "name": "Ann",
            "membership": {"teamId": "t1", "region": "eu"}
        })),
    )
    .await;
    serve(
        &users,
        "GET",
        "/teams/t1",
        json_reply(json!({"id": "t1", "name": "Core"})),
    )
    .await;
    serve(
        &users,
        "GET",
        "/users/u1/orders",
        json_reply(json!([{"id": "o1"}])),
    )
    .await;
    let gateway = TestGateway::builder()
        .schema(PARENT_SDL)
        .config(PARENT_TOML)
        .upstream("users", &users)
        .start()
        .await;

    let reply = gateway
        .post(r#"{ user(id: "u1") { name team { name } orders(status: "open") { id } manager { name } } }"#)
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {
            "name": "Ann",
            "team": {"name": "Core"},
            "orders": [{"id": "o1"}],
            "manager": null
        }}})
    );
    let mut lines = request_lines(&received(&users).await);
    lines.sort();
    assert_eq!(
        lines,
        [
            "GET /teams/t1",
            "GET /users/u1",
            "GET /users/u1/orders?region=eu&status=open"
        ],
        "no call for `manager`: its parent has no managerId"
    );
}

// ---- percent-encoding -------------------------------------------------------

#[tokio::test]
async fn values_are_percent_encoded_so_an_id_stays_one_path_segment() {
    let users = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json_reply(json!({"id": "x", "name": "Odd"})))
        .mount(&users)
        .await;
    let gateway = users_gateway(&users).await;
    let id = "a/b c?d#e%f&g";

    let reply = gateway
        .post_vars(
            "query($id: ID!) { user(id: $id) { name } }",
            json!({"id": id}),
        )
        .await;

    assert_eq!(reply.json(), json!({"data": {"user": {"name": "Odd"}}}));
    let requests = received(&users).await;
    assert_eq!(requests.len(), 1, "{:?}", request_lines(&requests));
    let url = &requests[0].url;
    assert_eq!(url.query(), None, "`?` must not start a query string");
    assert_eq!(url.fragment(), None, "`#` must not start a fragment");
    let segments: Vec<&str> = url.path_segments().expect("a path").collect();
    assert_eq!(segments.len(), 2, "path {:?}", url.path());
    assert_eq!(segments[0], "users");
    let decoded = percent_encoding::percent_decode_str(segments[1])
        .decode_utf8()
        .expect("utf-8");
    assert_eq!(decoded, id);
}

#[tokio::test]
async fn query_string_values_are_percent_encoded_so_a_value_stays_one_parameter() {
    let search = MockServer::start().await;
    Mock::given(any())
        .respond_with(json_reply(json!({"hits": []})))
        .mount(&search)
        .await;
    let gateway = TestGateway::builder()
        .schema("type Query { search(text: String!): [String!] }")
        .config(
            r#"
[services.search]
url = "{search}"

[resolvers]
"Query.search" = { service = "search", get = "/search", query = { q = "{args.text}" }, select = "hits" }
"#,
        )
        .upstream("search", &search)
        .start()
        .await;
    let text = "x&y=z#w+v %2F é";

    let reply = gateway
        .post_vars(
            "query($t: String!) { search(text: $t) }",
            json!({"t": text}),
        )
        .await;

    assert_eq!(reply.json(), json!({"data": {"search": []}}));
    let requests = received(&search).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.path(), "/search");
    assert_eq!(requests[0].url.fragment(), None);
    assert_eq!(
        query_pairs(&requests[0]),
        [("q".to_owned(), text.to_owned())]
    );
}

// ---- a path placeholder without a value -------------------------------------

#[tokio::test]
async fn a_missing_path_value_makes_no_call_and_a_nullable_field_null() {
    let users = MockServer::start().await;
    Mock::given(any())
        .respond_with(json_reply(json!({"id": "1", "name": "Ann"})))
        .expect(0)
        .mount(&users)
        .await;
    let gateway = users_gateway(&users).await;

    let absent = gateway.post("{ maybeUser { id } }").await;
    let null = gateway.post("{ maybeUser(id: null) { id } }").await;

    assert_eq!(absent.json(), json!({"data": {"maybeUser": null}}));
    assert_eq!(null.json(), json!({"data": {"maybeUser": null}}));
}

#[tokio::test]
async fn a_missing_path_value_on_a_non_null_field_is_missing_value() {
    let users = MockServer::start().await;
    Mock::given(any())
        .respond_with(json_reply(json!({"id": "1", "name": "Ann"})))
        .expect(0)
        .mount(&users)
        .await;
    let gateway = users_gateway(&users).await;

    let reply = gateway.post("{ strictUser { id } }").await;

    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(
        body["data"],
        json!(null),
        "a non-null root field nulls data"
    );
    assert_eq!(error_codes(&body), ["MISSING_VALUE"]);
    assert_eq!(body["errors"][0]["path"], json!(["strictUser"]));
}

// ---- forward_headers, service headers with ${VAR} ---------------------------

#[tokio::test]
async fn only_forward_headers_reach_the_upstream() {
    let users = MockServer::start().await;
    let teams = MockServer::start().await;
    Mock::given(any())
        .respond_with(json_reply(
            json!({"id": "1", "name": "Ann", "teamId": "t1"}),
        ))
        .mount(&users)
        .await;
    Mock::given(any())
        .respond_with(json_reply(json!({"id": "t1"})))
        .mount(&teams)
        .await;
    let gateway = TestGateway::builder()
        .schema(
            r#"
type Query { user(id: ID!): User }
type User { id: ID! name: String team: Team }
type Team { id: ID! }
"#,
        )
        .config(
            r#"
[services.users]
url = "{users}"
forward_headers = ["authorization", "Accept-Language"]

[services.teams]
url = "{teams}"

[resolvers]
"Query.user" = { service = "users", get = "/users/{args.id}" }
"User.team"  = { service = "teams", get = "/teams/{parent.teamId}" }
"#,
        )
        .upstream("users", &users)
        .upstream("teams", &teams)
        .start()
        .await;

    let reply = gateway
        .post_with_headers(
            r#"{ user(id: "1") { name team { id } } }"#,
            &[
                ("Authorization", "Bearer abc"),
                ("accept-language", "fr-CH"),
                ("x-secret", "s3cret"),
                ("cookie", "session=1"),
            ],
        )
        .await;

    assert_eq!(
        reply.json(),
        json!({"data": {"user": {"name": "Ann", "team": {"id": "t1"}}}})
    );
    let to_users = received(&users).await;
    assert_eq!(to_users.len(), 1);
    assert_eq!(
        header(&to_users[0], "authorization").as_deref(),
        Some("Bearer abc")
    );
    assert_eq!(
        header(&to_users[0], "accept-language").as_deref(),
        Some("fr-CH")
    );
    assert_eq!(header(&to_users[0], "x-secret"), None);
    assert_eq!(header(&to_users[0], "cookie"), None);
    let to_teams = received(&teams).await;
    assert_eq!(to_teams.len(), 1);
    for name in ["authorization", "accept-language", "x-secret", "cookie"] {
        assert_eq!(
            header(&to_teams[0], name),
            None,
            "`{name}` reached a service that does not forward it"
        );
    }
}

#[tokio::test]
async fn service_headers_are_sent_with_environment_variables_filled_in() {
    let variable = format!("CONFLUX_IT_API_KEY_{}", std::process::id());
    std::env::set_var(&variable, "key-from-env");
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
    )
    .await;
    let config = format!(
        r#"
[services.users]
url = "{{users}}"
headers = {{ "x-api-key" = "${{{variable}}}", "x-client" = "conflux-${{CONFLUX_IT_NEVER_SET_VARIABLE:-default}}" }}

[resolvers]
"Query.user" = {{ service = "users", get = "/users/{{args.id}}" }}
"Query.maybeUser" = {{ service = "users", get = "/users/{{args.id}}" }}
"Query.strictUser" = {{ service = "users", get = "/users/{{args.id}}" }}
"#
    );
    let gateway = TestGateway::builder()
        .schema(USERS_SDL)
        .config(&config)
        .upstream("users", &users)
        .start()
        .await;

    let reply = gateway.post(r#"{ user(id: "1") { name } }"#).await;

    assert_eq!(reply.json(), json!({"data": {"user": {"name": "Ann"}}}));
    let requests = received(&users).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(
        header(&requests[0], "x-api-key").as_deref(),
        Some("key-from-env")
    );
    assert_eq!(
        header(&requests[0], "x-client").as_deref(),
        Some("conflux-default")
    );
}
