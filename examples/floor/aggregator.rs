//! The floor: a hand-written aggregator serving exactly the benchmark's
//! workloads over the demo shop services, as fast as an honest hand-written
//! server can be (axum + reqwest + tokio, upstream JSON parsed into borrowed
//! structs, response JSON written straight into one buffer).
//!
//! "Honest" means it answers what Conflux answers, byte for byte, and makes
//! the same upstream calls with the same dependencies as `services.toml`
//! declares them: a call that needs a value from another call's answer
//! waits for it (the orders of the user that `/users/u1` returned, the
//! reviews of the products that the product batch returned), independent
//! calls go out together, and a batched field is one call per 100 keys. It
//! knows nothing Conflux could not know from the config (it never guesses a
//! product's id from an order's `productId`), and it neither caches nor
//! coalesces across requests.
//!
//! Self-contained so the smoke test can include it with `#[path]`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

/// One benchmark workload: a query against the demo schema, sent in
/// `variants` versions that differ only in their variables.
pub struct Workload {
    pub name: &'static str,
    pub query: &'static str,
    /// What it exercises, for `floor list` and the README.
    pub about: &'static str,
    /// Requests cycle through this many variable sets, so that concurrent
    /// clients mostly ask for different data (1: every request is identical).
    pub variants: usize,
}

/// The user whose orders make the large answer (the bench seeds them).
pub const LARGE_USER: &str = "u200";
/// Items in the large answer's first variant; variant k has k more.
pub const LARGE_ITEMS: usize = 2500;

pub const WORKLOADS: [Workload; 6] = [
    Workload {
        name: "flagship",
        query: "query Flagship($user: ID!) { user(id: $user) { name orders(first: 3) { id status product { name reviews { rating author { name } } } } } featuredProducts { name price { amount currency } } }",
        about: "the README's query: 4 dependent levels with 3 batched fields beside an independent root field (6 calls); users u1..u200",
        variants: 200,
    },
    Workload {
        name: "wide",
        query: "query Wide($u1: ID!, $u2: ID!, $ids: [ID!]!, $p1: ID!, $p2: ID!, $p3: ID!, $p4: ID!, $o1: ID!, $o2: ID!, $o3: ID!) { u1: user(id: $u1) { name tier } u2: user(id: $u2) { name tier } users(ids: $ids) { id name } p1: product(id: $p1) { name price { amount currency } } p2: product(id: $p2) { name price { amount currency } } p3: product(id: $p3) { name inStock } p4: product(id: $p4) { name kind } o1: order(id: $o1) { id status total { amount } } o2: order(id: $o2) { id status total { amount } } o3: order(id: $o3) { id quantity createdAt } }",
        about: "10 independent root fields over 3 services (10 parallel calls); 200 sets of ids",
        variants: 200,
    },
    Workload {
        name: "repeated",
        query: "{ featuredProducts { id name } }",
        about: "one small identical query from every client (1 call each without coalescing)",
        variants: 1,
    },
    Workload {
        name: "large",
        query: "query Large($first: Int!) { user(id: \"u200\") { name orders(first: $first) { id status quantity createdAt total { amount currency } product { id name category price { amount currency } } } } }",
        about: "2,500-2,755 orders with a batched product each, about 0.55 MiB of JSON (3 calls)",
        variants: 256,
    },
    Workload {
        name: "variables",
        query: "query Variables($user: ID!, $sort: OrderSort, $filter: OrderFilter) { user(id: $user) { name orders(first: 3, sort: $sort, filter: $filter) { id status quantity product { name reviews { rating author { name } } } } } }",
        about: "a user's orders with an enum and an input-object variable (sort: OLDEST, filter: { status: DELIVERED }, minQuantity from its default), 3 batched levels below (5 calls); users u1..u200",
        variants: 200,
    },
    Workload {
        name: "literals",
        query: "query Literals($user: ID!) { user(id: $user) { name orders(first: 3, sort: OLDEST, filter: { status: DELIVERED }) { id status quantity product { name reviews { rating author { name } } } } } }",
        about: "the variables workload with its enum and input object written inline (5 calls); users u1..u200",
        variants: 200,
    },
];

pub fn workload(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

/// The variables of variant `k` of `workload` (`None`: it has none).
pub fn variables(workload: &Workload, k: usize) -> Option<serde_json::Value> {
    let k = k % workload.variants;
    let user = |i: usize| format!("u{}", i % 200 + 1);
    let product = |i: usize| format!("p{}", i % 100 + 1);
    Some(match workload.name {
        "flagship" => serde_json::json!({ "user": user(k) }),
        "wide" => serde_json::json!({
            "u1": user(k), "u2": user(k + 100), "ids": [user(k + 50), user(k + 150)],
            "p1": product(k), "p2": product(k + 25), "p3": product(k + 50), "p4": product(k + 75),
            "o1": format!("o{}", k + 1), "o2": format!("o{}", k + 201), "o3": format!("o{}", k + 401),
        }),
        "large" => serde_json::json!({ "first": LARGE_ITEMS + k }),
        // `minQuantity` is left to the input type's default.
        "variables" => serde_json::json!({
            "user": user(k), "sort": "OLDEST", "filter": { "status": "DELIVERED" },
        }),
        "literals" => serde_json::json!({ "user": user(k) }),
        _ => return None,
    })
}

/// The JSON request body of variant `k`, the same for both servers.
pub fn body(workload: &Workload, k: usize) -> String {
    match variables(workload, k) {
        Some(variables) => serde_json::json!({ "query": workload.query, "variables": variables }),
        None => serde_json::json!({ "query": workload.query }),
    }
    .to_string()
}

/// Base URLs of users, orders, products, reviews (no trailing slash).
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub users: String,
    pub orders: String,
    pub products: String,
    pub reviews: String,
}

impl Upstreams {
    /// The environment variables `services.toml` reads, with its defaults.
    pub fn from_env() -> Upstreams {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Upstreams::new([
            var("USERS_URL", "http://127.0.0.1:7001"),
            var("ORDERS_URL", "http://127.0.0.1:7002"),
            var("PRODUCTS_URL", "http://127.0.0.1:7003"),
            var("REVIEWS_URL", "http://127.0.0.1:7004"),
        ])
    }

    pub fn new(urls: [String; 4]) -> Upstreams {
        let [users, orders, products, reviews] = urls.map(|u| u.trim_end_matches('/').to_owned());
        Upstreams {
            users,
            orders,
            products,
            reviews,
        }
    }
}

/// `POST /graphql` and `GET /healthz`.
pub fn router(upstreams: Upstreams) -> Router {
    // No cap on idle connections: at c=256 the wide workload has 1,000
    // calls in flight to one service, and a cap would close and reopen
    // connections all the time.
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build the HTTP client");
    let floor = Arc::new(Floor { http, upstreams });
    Router::new()
        .route("/graphql", post(graphql))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(floor)
}

struct Floor {
    http: reqwest::Client,
    upstreams: Upstreams,
}

#[derive(Deserialize)]
struct GraphqlRequest<'a> {
    #[serde(borrow)]
    query: Cow<'a, str>,
    #[serde(borrow, default)]
    variables: Variables<'a>,
}

/// Every workload's variables; each workload reads its own.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Variables<'a> {
    #[serde(borrow)]
    user: Option<Text<'a>>,
    #[serde(borrow)]
    u1: Option<Text<'a>>,
    #[serde(borrow)]
    u2: Option<Text<'a>>,
    #[serde(borrow)]
    ids: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    p1: Option<Text<'a>>,
    #[serde(borrow)]
    p2: Option<Text<'a>>,
    #[serde(borrow)]
    p3: Option<Text<'a>>,
    #[serde(borrow)]
    p4: Option<Text<'a>>,
    #[serde(borrow)]
    o1: Option<Text<'a>>,
    #[serde(borrow)]
    o2: Option<Text<'a>>,
    #[serde(borrow)]
    o3: Option<Text<'a>>,
    first: Option<u32>,
    sort: Option<Sort>,
    filter: Option<FilterVar>,
}

/// `OrderFilter` as a variable; `minQuantity` has a default in the input type.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterVar {
    #[serde(default)]
    status: Option<Status>,
    /// Absent: the input type's default; `null`: left out of the call.
    #[serde(default = "FilterVar::default_min_quantity")]
    min_quantity: Option<i32>,
}

impl FilterVar {
    /// `minQuantity: Int = 1` in schema/shop.graphql.
    fn default_min_quantity() -> Option<i32> {
        Some(1)
    }
}

/// What a user's orders are asked for beyond `first`: `sort` and the
/// `OrderFilter`'s fields, each query parameter left out when absent
/// (as services.toml's `User.orders` maps them).
struct OrdersArgs {
    sort: Option<Sort>,
    status: Option<Status>,
    min_quantity: Option<i32>,
}

impl OrdersArgs {
    /// The query parameters after `userId` and `limit`, in services.toml's order.
    fn query(&self) -> String {
        let mut out = String::new();
        if let Some(sort) = self.sort {
            let _ = write!(out, "&sort={}", sort.as_str());
        }
        if let Some(status) = self.status {
            let _ = write!(out, "&status={}", status.as_str());
        }
        if let Some(min) = self.min_quantity {
            let _ = write!(out, "&minQuantity={min}");
        }
        out
    }
}

fn var<'v, T>(name: &str, value: &'v Option<T>) -> Result<&'v T, String> {
    value
        .as_ref()
        .ok_or_else(|| format!("variable `${name}` is required"))
}

async fn graphql(State(floor): State<Arc<Floor>>, body: Bytes) -> Response {
    let request: GraphqlRequest<'_> = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return error_response(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let vars = &request.variables;
    let answer = match WORKLOADS
        .iter()
        .position(|w| w.query == request.query.as_ref())
    {
        Some(0) => match var("user", &vars.user) {
            Ok(user) => floor.flagship(user).await,
            Err(err) => Err(err),
        },
        Some(1) => floor.wide(vars).await,
        Some(2) => floor.repeated().await,
        Some(3) => match var("first", &vars.first) {
            Ok(first) => floor.large(*first).await,
            Err(err) => Err(err),
        },
        Some(4) => match var("user", &vars.user) {
            Ok(user) => {
                let filter = vars.filter.as_ref();
                let args = OrdersArgs {
                    sort: vars.sort,
                    status: filter.and_then(|f| f.status),
                    min_quantity: filter.and_then(|f| f.min_quantity),
                };
                floor.user_orders(user, &args).await
            }
            Err(err) => Err(err),
        },
        // The literals' values, read from the query text it matched.
        Some(5) => match var("user", &vars.user) {
            Ok(user) => {
                let args = OrdersArgs {
                    sort: Some(Sort::OLDEST),
                    status: Some(Status::DELIVERED),
                    min_quantity: FilterVar::default_min_quantity(),
                };
                floor.user_orders(user, &args).await
            }
            Err(err) => Err(err),
        },
        _ => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "the floor answers only the benchmark's workloads",
            )
        }
    };
    match answer {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(message) => error_response(StatusCode::BAD_GATEWAY, &message),
    }
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let mut out = Out::with_capacity(64 + message.len());
    out.raw("{\"errors\":[{\"message\":");
    out.str(message);
    out.raw("}]}");
    (status, [(header::CONTENT_TYPE, "application/json")], out.0).into_response()
}

// ---------------------------------------------------------------------------
// Upstream answers: only the keys the workloads read, borrowed from the body
// ---------------------------------------------------------------------------

type Text<'a> = Cow<'a, str>;

#[derive(Deserialize)]
struct UserOut<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(default)]
    tier: Option<Tier>,
}

#[derive(Deserialize, Clone, Copy)]
#[allow(clippy::upper_case_acronyms)]
enum Tier {
    STANDARD,
    SILVER,
    GOLD,
}

impl Tier {
    fn as_str(self) -> &'static str {
        match self {
            Tier::STANDARD => "STANDARD",
            Tier::SILVER => "SILVER",
            Tier::GOLD => "GOLD",
        }
    }
}

#[derive(Deserialize, Clone, Copy)]
#[allow(clippy::upper_case_acronyms)]
enum Sort {
    NEWEST,
    OLDEST,
}

impl Sort {
    fn as_str(self) -> &'static str {
        match self {
            Sort::NEWEST => "NEWEST",
            Sort::OLDEST => "OLDEST",
        }
    }
}

#[derive(Deserialize, Clone, Copy)]
#[allow(clippy::upper_case_acronyms)]
enum Status {
    PENDING,
    SHIPPED,
    DELIVERED,
    CANCELLED,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::PENDING => "PENDING",
            Status::SHIPPED => "SHIPPED",
            Status::DELIVERED => "DELIVERED",
            Status::CANCELLED => "CANCELLED",
        }
    }
}

#[derive(Deserialize)]
struct Money<'a> {
    amount: f64,
    #[serde(borrow)]
    currency: Text<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderOut<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    status: Status,
    #[serde(default)]
    quantity: Option<i32>,
    #[serde(borrow, default)]
    created_at: Option<Text<'a>>,
    #[serde(borrow)]
    total: Money<'a>,
    #[serde(borrow, default)]
    product_id: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct OrderPage<'a> {
    #[serde(borrow)]
    items: Vec<OrderOut<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductOut<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(borrow)]
    price: Money<'a>,
    #[serde(borrow, default)]
    category: Option<Text<'a>>,
    #[serde(default)]
    in_stock: Option<bool>,
    #[serde(default)]
    kind: Option<ProductKind>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ProductKind {
    Physical,
    Digital,
}

impl ProductKind {
    fn as_str(self) -> &'static str {
        match self {
            ProductKind::Physical => "physical",
            ProductKind::Digital => "digital",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    #[serde(borrow)]
    product_id: Text<'a>,
    rating: i32,
    #[serde(borrow, default)]
    user_id: Option<Text<'a>>,
}

fn parse<'a, T: Deserialize<'a>>(what: &str, body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|err| format!("{what}: bad upstream JSON: {err}"))
}

fn required(what: &str, body: Option<Bytes>) -> Result<Bytes, String> {
    body.ok_or_else(|| format!("{what}: upstream answered 404"))
}

fn field<'v, T>(what: &str, value: &'v Option<T>) -> Result<&'v T, String> {
    value
        .as_ref()
        .ok_or_else(|| format!("{what}: missing in the upstream answer"))
}

// ---------------------------------------------------------------------------
// The workloads
// ---------------------------------------------------------------------------

/// What must not be left bare in a URL value (RFC 3986 unreserved stays).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Most keys one batched call carries (`max = 100` in services.toml).
const BATCH_MAX: usize = 100;

/// Distinct keys in first-seen order.
fn distinct<'k>(keys: impl Iterator<Item = &'k str>) -> Vec<&'k str> {
    let mut seen = std::collections::HashSet::new();
    keys.filter(|k| seen.insert(*k)).collect()
}

fn enc(value: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(value, VALUE)
}

fn joined(keys: &[&str]) -> String {
    let mut out = String::new();
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}", enc(key));
    }
    out
}

impl Floor {
    /// The body of a 2xx answer; `None` for 404; `Err` otherwise.
    async fn get(&self, url: String) -> Result<Option<Bytes>, String> {
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|err| format!("GET {url}: {err}"))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("GET {url}: status {status}"));
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| format!("GET {url}: {err}"))?;
        Ok(Some(body))
    }

    /// A batched GET: one call per [`BATCH_MAX`] keys, all at once; the
    /// answers' bodies in key order. No call for no keys.
    async fn get_batched(&self, base: &str, keys: &[&str]) -> Result<Vec<Bytes>, String> {
        let calls = keys
            .chunks(BATCH_MAX)
            .map(|chunk| self.get(format!("{base}{}", joined(chunk))));
        let bodies = futures::future::try_join_all(calls).await?;
        bodies
            .into_iter()
            .map(|body| required(base, body))
            .collect()
    }

    async fn flagship(&self, user: &str) -> Result<Vec<u8>, String> {
        let featured_url = format!("{}/products/featured", self.upstreams.products);
        let (user, featured) = tokio::join!(self.flagship_user(user), self.get(featured_url));
        let user = user?;
        let featured = required("featuredProducts", featured?)?;
        let featured: Vec<ProductOut<'_>> = parse("featuredProducts", &featured)?;

        let mut out = Out::with_capacity(2048 + user.len());
        out.raw("{\"data\":{\"user\":");
        out.bytes(&user);
        out.raw(",\"featuredProducts\":[");
        for (i, product) in featured.iter().enumerate() {
            out.comma(i);
            out.raw("{\"name\":");
            out.str(&product.name);
            out.raw(",\"price\":");
            out.money(&product.price);
            out.raw("}");
        }
        out.raw("]}}");
        Ok(out.0)
    }

    /// `user(id: $user) { name orders(first: 3, sort: …, filter: …) { id status quantity product { name reviews { rating author { name } } } } }`
    async fn user_orders(&self, id: &str, args: &OrdersArgs) -> Result<Vec<u8>, String> {
        let user = self.orders_tree(id, &args.query(), true).await?;
        let mut out = Out::with_capacity(32 + user.len());
        out.raw("{\"data\":{\"user\":");
        out.bytes(&user);
        out.raw("}}");
        Ok(out.0)
    }

    /// `user(id) { name orders(first: 3) { id status product { name reviews { rating author { name } } } } }`
    async fn flagship_user(&self, id: &str) -> Result<Vec<u8>, String> {
        self.orders_tree(id, "", false).await
    }

    /// `user(id) { name orders(first: 3…) { id status [quantity] product { name reviews { rating author { name } } } } }`:
    /// `orders_query` follows `limit=3` in the orders call, `quantity` adds
    /// that field after `status`.
    async fn orders_tree(
        &self,
        id: &str,
        orders_query: &str,
        quantity: bool,
    ) -> Result<Vec<u8>, String> {
        let up = &self.upstreams;
        let Some(user) = self.get(format!("{}/users/{}", up.users, enc(id))).await? else {
            return Ok(b"null".to_vec());
        };
        let user: UserOut<'_> = parse("user", &user)?;
        let page = self
            .get(format!(
                "{}/orders?userId={}&limit=3{orders_query}",
                up.orders,
                enc(&user.id)
            ))
            .await?;
        let page = required("User.orders", page)?;
        let page: OrderPage<'_> = parse("User.orders", &page)?;
        let orders = page.items;

        // Order.product: one batch for every order's productId.
        let product_keys = distinct(orders.iter().filter_map(|o| o.product_id.as_deref()));
        let product_bodies = self
            .get_batched(&format!("{}/products?ids=", up.products), &product_keys)
            .await?;
        let mut products: HashMap<Text<'_>, ProductOut<'_>> = HashMap::new();
        for body in &product_bodies {
            for product in parse::<Vec<ProductOut<'_>>>("Order.product", body)? {
                products.entry(product.id.clone()).or_insert(product);
            }
        }
        let product_of =
            |order: &OrderOut<'_>| order.product_id.as_deref().and_then(|id| products.get(id));

        // Product.reviews: one batch keyed by the found products' ids.
        let review_keys = distinct(orders.iter().filter_map(product_of).map(|p| p.id.as_ref()));
        let review_bodies = self
            .get_batched(&format!("{}/reviews?productIds=", up.reviews), &review_keys)
            .await?;
        let mut reviews: HashMap<Text<'_>, Vec<ReviewOut<'_>>> = HashMap::new();
        for body in &review_bodies {
            for review in parse::<Vec<ReviewOut<'_>>>("Product.reviews", body)? {
                reviews
                    .entry(review.product_id.clone())
                    .or_default()
                    .push(review);
            }
        }
        let reviews_of = |product: &ProductOut<'_>| {
            reviews
                .get(product.id.as_ref())
                .map_or(&[][..], Vec::as_slice)
        };

        // Review.author: one batch for every review's userId.
        let author_keys = distinct(
            orders
                .iter()
                .filter_map(product_of)
                .flat_map(reviews_of)
                .filter_map(|r| r.user_id.as_deref()),
        );
        let author_bodies = self
            .get_batched(&format!("{}/users?ids=", up.users), &author_keys)
            .await?;
        let mut authors: HashMap<Text<'_>, UserOut<'_>> = HashMap::new();
        for body in &author_bodies {
            for author in parse::<Vec<UserOut<'_>>>("Review.author", body)? {
                authors.entry(author.id.clone()).or_insert(author);
            }
        }

        let mut out = Out::with_capacity(1024);
        out.raw("{\"name\":");
        out.str(&user.name);
        out.raw(",\"orders\":[");
        for (i, order) in orders.iter().enumerate() {
            out.comma(i);
            out.raw("{\"id\":");
            out.str(&order.id);
            out.raw(",\"status\":");
            out.str(order.status.as_str());
            if quantity {
                out.raw(",\"quantity\":");
                out.int(*field("Order.quantity", &order.quantity)?);
            }
            out.raw(",\"product\":");
            match product_of(order) {
                None => out.raw("null"),
                Some(product) => {
                    out.raw("{\"name\":");
                    out.str(&product.name);
                    out.raw(",\"reviews\":[");
                    for (j, review) in reviews_of(product).iter().enumerate() {
                        out.comma(j);
                        out.raw("{\"rating\":");
                        out.int(review.rating);
                        out.raw(",\"author\":");
                        match review.user_id.as_deref().and_then(|id| authors.get(id)) {
                            None => out.raw("null"),
                            Some(author) => {
                                out.raw("{\"name\":");
                                out.str(&author.name);
                                out.raw("}");
                            }
                        }
                        out.raw("}");
                    }
                    out.raw("]}");
                }
            }
            out.raw("}");
        }
        out.raw("]}");
        Ok(out.0)
    }

    async fn wide(&self, vars: &Variables<'_>) -> Result<Vec<u8>, String> {
        let up = &self.upstreams;
        let one = |base: &str, kind: &str, name: &str, value: &Option<Text<'_>>| {
            var(name, value).map(|id| self.get(format!("{base}/{kind}/{}", enc(id))))
        };
        let ids = var("ids", &vars.ids)?;
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        let (u1, u2, users, p1, p2, p3, p4, o1, o2, o3) = tokio::join!(
            one(&up.users, "users", "u1", &vars.u1)?,
            one(&up.users, "users", "u2", &vars.u2)?,
            self.get(format!("{}/users?ids={}", up.users, joined(&ids))),
            one(&up.products, "products", "p1", &vars.p1)?,
            one(&up.products, "products", "p2", &vars.p2)?,
            one(&up.products, "products", "p3", &vars.p3)?,
            one(&up.products, "products", "p4", &vars.p4)?,
            one(&up.orders, "orders", "o1", &vars.o1)?,
            one(&up.orders, "orders", "o2", &vars.o2)?,
            one(&up.orders, "orders", "o3", &vars.o3)?,
        );
        let mut out = Out::with_capacity(2048);
        out.raw("{\"data\":{");
        for (key, body) in [("\"u1\":", u1?), (",\"u2\":", u2?)] {
            out.raw(key);
            match body {
                None => out.raw("null"),
                Some(body) => {
                    let user: UserOut<'_> = parse("user", &body)?;
                    out.raw("{\"name\":");
                    out.str(&user.name);
                    out.raw(",\"tier\":");
                    match user.tier {
                        None => out.raw("null"),
                        Some(tier) => out.str(tier.as_str()),
                    }
                    out.raw("}");
                }
            }
        }
        let users = required("users", users?)?;
        out.raw(",\"users\":[");
        for (i, user) in parse::<Vec<UserOut<'_>>>("users", &users)?
            .iter()
            .enumerate()
        {
            out.comma(i);
            out.raw("{\"id\":");
            out.str(&user.id);
            out.raw(",\"name\":");
            out.str(&user.name);
            out.raw("}");
        }
        out.raw("]");
        for (key, body) in [(",\"p1\":", p1?), (",\"p2\":", p2?)] {
            out.raw(key);
            match body {
                None => out.raw("null"),
                Some(body) => {
                    let product: ProductOut<'_> = parse("product", &body)?;
                    out.raw("{\"name\":");
                    out.str(&product.name);
                    out.raw(",\"price\":");
                    out.money(&product.price);
                    out.raw("}");
                }
            }
        }
        out.raw(",\"p3\":");
        match p3? {
            None => out.raw("null"),
            Some(body) => {
                let product: ProductOut<'_> = parse("product", &body)?;
                out.raw("{\"name\":");
                out.str(&product.name);
                out.raw(",\"inStock\":");
                out.bool(*field("Product.inStock", &product.in_stock)?);
                out.raw("}");
            }
        }
        out.raw(",\"p4\":");
        match p4? {
            None => out.raw("null"),
            Some(body) => {
                let product: ProductOut<'_> = parse("product", &body)?;
                out.raw("{\"name\":");
                out.str(&product.name);
                out.raw(",\"kind\":");
                out.str(field("Product.kind", &product.kind)?.as_str());
                out.raw("}");
            }
        }
        for (key, body) in [(",\"o1\":", o1?), (",\"o2\":", o2?)] {
            out.raw(key);
            match body {
                None => out.raw("null"),
                Some(body) => {
                    let order: OrderOut<'_> = parse("order", &body)?;
                    out.raw("{\"id\":");
                    out.str(&order.id);
                    out.raw(",\"status\":");
                    out.str(order.status.as_str());
                    out.raw(",\"total\":{\"amount\":");
                    out.float(order.total.amount);
                    out.raw("}}");
                }
            }
        }
        out.raw(",\"o3\":");
        match o3? {
            None => out.raw("null"),
            Some(body) => {
                let order: OrderOut<'_> = parse("order", &body)?;
                out.raw("{\"id\":");
                out.str(&order.id);
                out.raw(",\"quantity\":");
                out.int(*field("Order.quantity", &order.quantity)?);
                out.raw(",\"createdAt\":");
                out.str(field("Order.createdAt", &order.created_at)?);
                out.raw("}");
            }
        }
        out.raw("}}");
        Ok(out.0)
    }

    async fn repeated(&self) -> Result<Vec<u8>, String> {
        let featured = self
            .get(format!("{}/products/featured", self.upstreams.products))
            .await?;
        let featured = required("featuredProducts", featured)?;
        let mut out = Out::with_capacity(512);
        out.raw("{\"data\":{\"featuredProducts\":[");
        for (i, product) in parse::<Vec<ProductOut<'_>>>("featuredProducts", &featured)?
            .iter()
            .enumerate()
        {
            out.comma(i);
            out.raw("{\"id\":");
            out.str(&product.id);
            out.raw(",\"name\":");
            out.str(&product.name);
            out.raw("}");
        }
        out.raw("]}}");
        Ok(out.0)
    }

    /// `user(id: "u200") { name orders(first: 2500) { id status quantity createdAt total { amount currency } product { id name category price { amount currency } } } }`
    async fn large(&self, first: u32) -> Result<Vec<u8>, String> {
        let up = &self.upstreams;
        let Some(user) = self.get(format!("{}/users/{LARGE_USER}", up.users)).await? else {
            return Ok(b"{\"data\":{\"user\":null}}".to_vec());
        };
        let user: UserOut<'_> = parse("user", &user)?;
        let page = self
            .get(format!(
                "{}/orders?userId={}&limit={first}",
                up.orders,
                enc(&user.id)
            ))
            .await?;
        let page = required("User.orders", page)?;
        let orders = parse::<OrderPage<'_>>("User.orders", &page)?.items;

        let product_keys = distinct(orders.iter().filter_map(|o| o.product_id.as_deref()));
        let product_bodies = self
            .get_batched(&format!("{}/products?ids=", up.products), &product_keys)
            .await?;
        // Each product's JSON is written once and copied into every order
        // that refers to it.
        let mut fragments = Out::with_capacity(product_keys.len() * 128);
        let mut products: HashMap<&str, std::ops::Range<usize>> = HashMap::new();
        let parsed: Vec<Vec<ProductOut<'_>>> = product_bodies
            .iter()
            .map(|body| parse("Order.product", body))
            .collect::<Result<_, _>>()?;
        for product in parsed.iter().flatten() {
            if products.contains_key(product.id.as_ref()) {
                continue;
            }
            let start = fragments.0.len();
            fragments.raw("{\"id\":");
            fragments.str(&product.id);
            fragments.raw(",\"name\":");
            fragments.str(&product.name);
            fragments.raw(",\"category\":");
            fragments.str(field("Product.category", &product.category)?);
            fragments.raw(",\"price\":");
            fragments.money(&product.price);
            fragments.raw("}");
            products.insert(product.id.as_ref(), start..fragments.0.len());
        }

        let mut out = Out::with_capacity(orders.len() * 240 + 64);
        out.raw("{\"data\":{\"user\":{\"name\":");
        out.str(&user.name);
        out.raw(",\"orders\":[");
        for (i, order) in orders.iter().enumerate() {
            out.comma(i);
            out.raw("{\"id\":");
            out.str(&order.id);
            out.raw(",\"status\":");
            out.str(order.status.as_str());
            out.raw(",\"quantity\":");
            out.int(*field("Order.quantity", &order.quantity)?);
            out.raw(",\"createdAt\":");
            out.str(field("Order.createdAt", &order.created_at)?);
            out.raw(",\"total\":");
            out.money(&order.total);
            out.raw(",\"product\":");
            match order.product_id.as_deref().and_then(|id| products.get(id)) {
                None => out.raw("null"),
                Some(range) => out.bytes(&fragments.0[range.clone()]),
            }
            out.raw("}");
        }
        out.raw("]}}}");
        Ok(out.0)
    }
}

// ---------------------------------------------------------------------------
// Response writing
// ---------------------------------------------------------------------------

/// A JSON response written by hand into one buffer.
struct Out(Vec<u8>);

impl Out {
    fn with_capacity(capacity: usize) -> Out {
        Out(Vec::with_capacity(capacity))
    }

    fn raw(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn comma(&mut self, index: usize) {
        if index > 0 {
            self.0.push(b',');
        }
    }

    /// A JSON string; copied as is unless something needs escaping.
    fn str(&mut self, text: &str) {
        if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.0.push(b'"');
            self.0.extend_from_slice(text.as_bytes());
            self.0.push(b'"');
        } else {
            serde_json::to_writer(&mut self.0, text).expect("writing to a Vec cannot fail");
        }
    }

    fn int(&mut self, value: i32) {
        let _ = std::io::Write::write_fmt(&mut self.0, format_args!("{value}"));
    }

    /// As serde_json writes an f64 (shortest round-trip form, `20.0` for 20).
    fn float(&mut self, value: f64) {
        serde_json::to_writer(&mut self.0, &value).expect("writing to a Vec cannot fail");
    }

    fn bool(&mut self, value: bool) {
        self.raw(if value { "true" } else { "false" });
    }

    fn money(&mut self, money: &Money<'_>) {
        self.raw("{\"amount\":");
        self.float(money.amount);
        self.raw(",\"currency\":");
        self.str(&money.currency);
        self.raw("}");
    }
}
