//! Demo "shop" REST microservices (users, orders, products, reviews) that the
//! gateway's demo and benchmarks run against.
//!
//! All data is generated deterministically at startup (no randomness, no
//! files), so every run and every machine sees the same answers. The file is
//! self-contained so other examples can include it with
//! `#[path = "../shop/services.rs"] mod services;`.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Service names in the order used by [`spawn`] and [`routers`].
#[allow(dead_code)] // only the shop binary prints these
pub const SERVICE_NAMES: [&str; 4] = ["users", "orders", "products", "reviews"];

#[derive(Debug, Clone, Copy, Default)]
pub struct ShopOptions {
    /// Artificial delay before every API answer, to simulate a real service.
    pub latency: Duration,
}

/// Binds users, orders, products and reviews (in that order), serves each on
/// its own tokio task and returns the actual bound addresses (port 0 → ephemeral).
pub async fn spawn(
    host: IpAddr,
    ports: [u16; 4],
    opts: ShopOptions,
) -> std::io::Result<[SocketAddr; 4]> {
    // Bind everything first so a port conflict fails the call before any
    // service starts serving.
    let mut listeners = Vec::with_capacity(4);
    for port in ports {
        listeners.push(tokio::net::TcpListener::bind(SocketAddr::new(host, port)).await?);
    }
    let mut addrs = [SocketAddr::new(host, 0); 4];
    for (i, listener) in listeners.iter().enumerate() {
        addrs[i] = listener.local_addr()?;
    }
    for ((listener, router), name) in listeners.into_iter().zip(routers(opts)).zip(SERVICE_NAMES) {
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                eprintln!("shop {name} service stopped: {err}");
            }
        });
    }
    Ok(addrs)
}

/// The four service routers: users, orders, products, reviews.
pub fn routers(opts: ShopOptions) -> [Router; 4] {
    [
        users_router(opts),
        orders_router(opts),
        products_router(opts),
        reviews_router(opts),
    ]
}

// ---------------------------------------------------------------------------
// Data sizes and shared helpers
// ---------------------------------------------------------------------------

const USER_COUNT: usize = 200;
const PRODUCT_COUNT: usize = 100;
const ORDERS_PER_USER: usize = 5;
const REVIEW_COUNT: usize = 500;
/// Upper bound for every `limit` query parameter (benchmarks ask for big answers).
const MAX_LIMIT: usize = 5000;
const CURRENCY: &str = "EUR";

/// JSON error answer: `{"error": "..."}`.
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: "not found".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// `Query` whose rejection is a JSON 400 instead of axum's plain-text one.
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// `Path<String>` whose rejection is a JSON 400 (e.g. invalid UTF-8 in the id).
struct ApiPath(String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// Per-service request counter plus the simulated latency.
struct Meter {
    requests: AtomicU64,
    latency: Duration,
}

/// Counts and delays every API request (not `/health` or `/_stats`, which are
/// for tooling and must not skew benchmark numbers).
async fn track(State(meter): State<Arc<Meter>>, req: Request, next: Next) -> Response {
    meter.requests.fetch_add(1, Ordering::Relaxed);
    if !meter.latency.is_zero() {
        tokio::time::sleep(meter.latency).await;
    }
    next.run(req).await
}

async fn stats(State(meter): State<Arc<Meter>>) -> Json<Value> {
    Json(json!({ "requests": meter.requests.load(Ordering::Relaxed) }))
}

async fn fallback() -> ApiError {
    ApiError::not_found()
}

/// Adds the metering layer to the API routes, then the tooling routes.
fn finish(api: Router, opts: ShopOptions) -> Router {
    let meter = Arc::new(Meter {
        requests: AtomicU64::new(0),
        latency: opts.latency,
    });
    api.route_layer(middleware::from_fn_with_state(meter.clone(), track))
        .route("/health", get(|| async { "ok" }))
        .route("/_stats", get(stats).with_state(meter))
        .fallback(fallback)
}

/// Parses `"u17"` into the 0-based index 16 when it is within `1..=count`.
/// Strict on purpose: `"u017"` or `"u+17"` would otherwise alias `"u17"`.
fn parse_id(id: &str, prefix: char, count: usize) -> Option<usize> {
    let digits = id.strip_prefix(prefix)?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    (1..=count).contains(&n).then(|| n - 1)
}

/// Comma-separated id list; blanks are ignored so `ids=a,,b,` works.
fn split_ids(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_limit(raw: Option<&str>, default: usize) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if n <= MAX_LIMIT => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "limit must be an integer between 0 and {MAX_LIMIT}"
        ))),
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Money {
    amount: f64,
    currency: &'static str,
}

impl Money {
    /// Prices are kept in integer cents so totals are exact before conversion.
    fn from_cents(cents: u64) -> Self {
        Self {
            amount: cents as f64 / 100.0,
            currency: CURRENCY,
        }
    }
}

/// Product price in cents, a pure function of the product index so the
/// orders service can price orders without calling the products service.
fn price_cents(product: usize) -> u64 {
    1990 + ((product as u64 * 37) % 40) * 250
}

/// Converts days since 1970-01-01 to a civil (year, month, day) date.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year,
    // then split into 400-year eras (146097 days each).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 UTC timestamp for seconds since the Unix epoch.
fn timestamp(secs: i64) -> String {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

const FIRST_NAMES: [&str; 20] = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Donald",
    "Katherine",
    "John",
    "Hedy",
    "Tim",
    "Sophie",
    "Niklaus",
    "Annie",
    "Bjarne",
];
// 11 is coprime with 20, so (i % 20, i % 11) is unique for the first 220 users.
const LAST_NAMES: [&str; 11] = [
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson",
    "Allen", "Dijkstra", "Perlman",
];
const MIDDLE_NAMES: [&str; 7] = [
    "Augusta", "Mathison", "Brewster", "Benedict", "Heafield", "Marie", "Jane",
];

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    name: String,
    email: String,
    profile: Profile,
    member_since: String,
    tier: &'static str,
}

/// Deliberately snake_case keys, so the gateway has something to rename.
#[derive(Debug, Clone, Serialize)]
struct Profile {
    full_name: String,
    avatar_url: String,
}

fn user_name(i: usize) -> String {
    format!(
        "{} {}",
        FIRST_NAMES[i % FIRST_NAMES.len()],
        LAST_NAMES[i % LAST_NAMES.len()]
    )
}

fn generate_user(i: usize) -> User {
    let n = i + 1;
    let first = FIRST_NAMES[i % FIRST_NAMES.len()];
    let last = LAST_NAMES[i % LAST_NAMES.len()];
    let middle = MIDDLE_NAMES[i % MIDDLE_NAMES.len()];
    // First names repeat after 20 users, so later emails carry the number.
    let email = if i < FIRST_NAMES.len() {
        format!("{}@example.com", first.to_lowercase())
    } else {
        format!("{}{n}@example.com", first.to_lowercase())
    };
    let tier = match (i * 7) % 10 {
        0 | 1 => "GOLD",
        2..=4 => "SILVER",
        _ => "STANDARD",
    };
    User {
        id: format!("u{n}"),
        name: user_name(i),
        email,
        profile: Profile {
            full_name: format!("{first} {middle} {last}"),
            avatar_url: format!("https://img.example/u{n}.png"),
        },
        member_since: format!(
            "{:04}-{:02}-{:02}",
            2018 + (i + 3) % 7,
            (i * 5 + 2) % 12 + 1,
            (i * 11 + 3) % 28 + 1
        ),
        tier,
    }
}

#[derive(Deserialize)]
struct UsersQuery {
    ids: Option<String>,
    limit: Option<String>,
}

fn users_router(opts: ShopOptions) -> Router {
    let users: Arc<Vec<User>> = Arc::new((0..USER_COUNT).map(generate_user).collect());
    let api = Router::new()
        .route("/users", get(list_users))
        .route("/users/{id}", get(get_user))
        .with_state(users);
    finish(api, opts)
}

async fn get_user(
    State(users): State<Arc<Vec<User>>>,
    ApiPath(id): ApiPath,
) -> Result<Json<User>, ApiError> {
    parse_id(&id, 'u', users.len())
        .map(|i| Json(users[i].clone()))
        .ok_or_else(ApiError::not_found)
}

async fn list_users(
    State(users): State<Arc<Vec<User>>>,
    ApiQuery(query): ApiQuery<UsersQuery>,
) -> Result<Json<Vec<User>>, ApiError> {
    if let Some(ids) = &query.ids {
        // Batch lookup: order of the ids, unknown ones skipped.
        let found = split_ids(ids)
            .filter_map(|id| parse_id(id, 'u', users.len()))
            .map(|i| users[i].clone())
            .collect();
        return Ok(Json(found));
    }
    let limit = parse_limit(query.limit.as_deref(), 20)?;
    Ok(Json(users.iter().take(limit).cloned().collect()))
}

// ---------------------------------------------------------------------------
// Orders
// ---------------------------------------------------------------------------

/// 2024-01-01T00:00:00Z; order `k` is created `k * ORDER_SPACING_SECS` later,
/// so ids and `createdAt` grow together and "newest first" is well defined.
const ORDERS_EPOCH: i64 = 1_704_067_200;
const ORDER_SPACING_SECS: i64 = 4 * 3600 + 7 * 60;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    id: String,
    user_id: String,
    product_id: String,
    quantity: u64,
    status: &'static str,
    created_at: String,
    total: Money,
}

fn make_order(
    index: usize,
    user: usize,
    product: usize,
    quantity: u64,
    status: &'static str,
) -> Order {
    Order {
        id: format!("o{}", index + 1),
        user_id: format!("u{}", user + 1),
        product_id: format!("p{}", product + 1),
        quantity,
        status,
        created_at: timestamp(ORDERS_EPOCH + index as i64 * ORDER_SPACING_SECS),
        total: Money::from_cents(price_cents(product) * quantity),
    }
}

fn generate_orders() -> Vec<Order> {
    let count = USER_COUNT * ORDERS_PER_USER;
    let mut orders = Vec::with_capacity(count);
    // products[user][round]: each user's picks, so later rounds can re-order
    // an earlier product (users typically have 3-5 distinct products).
    let mut picks = vec![[0usize; ORDERS_PER_USER]; USER_COUNT];
    for index in 0..count {
        let (user, round) = (index % USER_COUNT, index / USER_COUNT);
        let fresh = (user * 31 + round * 17) % PRODUCT_COUNT;
        let product = if round == 4 && user % 7 == 0 {
            picks[user][1]
        } else if round >= 2 && (user * 3 + round) % 5 == 0 {
            picks[user][round - 2]
        } else {
            fresh
        };
        picks[user][round] = product;
        let status = if index % 13 == 5 {
            "CANCELLED"
        } else if index < 700 {
            "DELIVERED"
        } else if index < 900 {
            "SHIPPED"
        } else {
            "PENDING"
        };
        // Mixes user and round so one user's orders differ in quantity.
        let quantity = 1 + ((user * 3 + round * 5) % 4) as u64;
        orders.push(make_order(index, user, product, quantity, status));
    }
    orders
}

/// Orders live behind a lock because `POST /orders` appends; the index in the
/// vector is always the numeric id minus one.
type OrderStore = Arc<RwLock<Vec<Order>>>;

#[derive(Deserialize)]
struct OrdersQuery {
    #[serde(rename = "userId")]
    user_id: Option<String>,
    limit: Option<String>,
    /// `NEWEST` (the default) or `OLDEST`.
    sort: Option<String>,
    /// Only orders in this status (`PENDING`, `SHIPPED`, `DELIVERED`, `CANCELLED`).
    status: Option<String>,
    /// Only orders of at least this many items.
    #[serde(rename = "minQuantity")]
    min_quantity: Option<String>,
}

const ORDER_STATUSES: [&str; 4] = ["PENDING", "SHIPPED", "DELIVERED", "CANCELLED"];

/// The conditions of `GET /orders` besides `limit`, checked once per request.
struct OrderFilter<'a> {
    oldest_first: bool,
    user_id: Option<&'a str>,
    status: Option<&'static str>,
    min_quantity: u64,
}

impl<'a> OrderFilter<'a> {
    fn parse(query: &'a OrdersQuery) -> Result<Self, ApiError> {
        let oldest_first = match query.sort.as_deref() {
            None | Some("NEWEST") => false,
            Some("OLDEST") => true,
            Some(_) => return Err(ApiError::bad_request("sort must be NEWEST or OLDEST")),
        };
        let status =
            match query.status.as_deref() {
                None => None,
                Some(raw) => Some(ORDER_STATUSES.into_iter().find(|s| *s == raw).ok_or_else(
                    || {
                        ApiError::bad_request(
                            "status must be PENDING, SHIPPED, DELIVERED or CANCELLED",
                        )
                    },
                )?),
            };
        let min_quantity = match query.min_quantity.as_deref() {
            None => 0,
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request("minQuantity must be a non-negative integer"))?,
        };
        Ok(Self {
            oldest_first,
            user_id: query.user_id.as_deref(),
            status,
            min_quantity,
        })
    }

    fn keeps(&self, order: &Order) -> bool {
        self.user_id.is_none_or(|id| order.user_id == id)
            && self.status.is_none_or(|s| order.status == s)
            && order.quantity >= self.min_quantity
    }

    /// The orders it keeps, newest (highest id) or oldest first.
    fn apply<'o>(&'o self, orders: &'o [Order]) -> Box<dyn Iterator<Item = &'o Order> + 'o> {
        if self.oldest_first {
            Box::new(orders.iter().filter(|o| self.keeps(o)))
        } else {
            Box::new(orders.iter().rev().filter(|o| self.keeps(o)))
        }
    }
}

#[derive(Serialize)]
struct OrderPage {
    items: Vec<Order>,
    total: usize,
}

fn orders_router(opts: ShopOptions) -> Router {
    let store: OrderStore = Arc::new(RwLock::new(generate_orders()));
    let api = Router::new()
        .route("/orders", get(list_orders).post(create_order))
        .route("/orders/{id}", get(get_order))
        .with_state(store);
    finish(api, opts)
}

async fn get_order(
    State(store): State<OrderStore>,
    ApiPath(id): ApiPath,
) -> Result<Json<Order>, ApiError> {
    // A poisoned lock only means a writer panicked; the Vec is still valid.
    let orders = store.read().unwrap_or_else(|e| e.into_inner());
    parse_id(&id, 'o', orders.len())
        .map(|i| Json(orders[i].clone()))
        .ok_or_else(ApiError::not_found)
}

async fn list_orders(
    State(store): State<OrderStore>,
    ApiQuery(query): ApiQuery<OrdersQuery>,
) -> Result<Response, ApiError> {
    let limit = parse_limit(query.limit.as_deref(), 10)?;
    let filter = OrderFilter::parse(&query)?;
    let orders = store.read().unwrap_or_else(|e| e.into_inner());
    // Newest first is reverse id order. A linear scan over ~1000 orders is
    // cheap enough that an index per user is not worth it.
    let mut kept = filter.apply(&orders);
    let items: Vec<Order> = kept.by_ref().take(limit).cloned().collect();
    Ok(if filter.user_id.is_some() {
        let total = items.len() + kept.count();
        Json(OrderPage { items, total }).into_response()
    } else {
        Json(items).into_response()
    })
}

async fn create_order(
    State(store): State<OrderStore>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let user = body
        .get("userId")
        .and_then(Value::as_str)
        .and_then(|id| parse_id(id, 'u', USER_COUNT))
        .ok_or_else(|| ApiError::bad_request("userId must be an existing user id like \"u1\""))?;
    let product = body
        .get("productId")
        .and_then(Value::as_str)
        .and_then(|id| parse_id(id, 'p', PRODUCT_COUNT))
        .ok_or_else(|| {
            ApiError::bad_request("productId must be an existing product id like \"p1\"")
        })?;
    let quantity = body
        .get("quantity")
        .and_then(Value::as_u64)
        .filter(|q| (1..=1000).contains(q))
        .ok_or_else(|| ApiError::bad_request("quantity must be an integer between 1 and 1000"))?;

    let mut orders = store.write().unwrap_or_else(|e| e.into_inner());
    // Continuing the generated sequence keeps ids and timestamps deterministic.
    let order = make_order(orders.len(), user, product, quantity, "PENDING");
    orders.push(order.clone());
    let location = format!("/orders/{}", order.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(order),
    )
        .into_response())
}

// ---------------------------------------------------------------------------
// Products (and search)
// ---------------------------------------------------------------------------

const ADJECTIVES: [&str; 8] = [
    "Classic", "Compact", "Deluxe", "Vintage", "Modern", "Solar", "Rustic", "Quantum",
];
/// (noun, category, base weight in grams). 11 is coprime with the 8
/// adjectives, so the 75 physical names are unique.
const PHYSICAL_NOUNS: [(&str, &str, u64); 11] = [
    ("Cookbook", "BOOKS", 650),
    ("Headphones", "ELECTRONICS", 250),
    ("Desk Lamp", "HOME", 1200),
    ("Puzzle", "TOYS", 500),
    ("Backpack", "OUTDOOR", 800),
    ("Atlas", "BOOKS", 900),
    ("Keyboard", "ELECTRONICS", 700),
    ("Kettle", "HOME", 1100),
    ("Kite", "TOYS", 300),
    ("Tent", "OUTDOOR", 2500),
    ("Novel", "BOOKS", 350),
];
/// (noun, category, base download size in MB). 5 is coprime with 8, so the
/// 25 digital names are unique too.
const DIGITAL_NOUNS: [(&str, &str, u64); 5] = [
    ("E-Book", "BOOKS", 5),
    ("Album", "MUSIC", 120),
    ("Photo Editor", "SOFTWARE", 850),
    ("Strategy Game", "GAMES", 4200),
    ("Audiobook", "BOOKS", 600),
];
const FEATURED: [usize; 4] = [0, 6, 12, 41]; // p1, p7, p13, p42

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Product {
    id: String,
    name: String,
    description: String,
    price: Money,
    category: &'static str,
    in_stock: bool,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight_grams: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    download_size_mb: Option<u64>,
}

fn generate_product(i: usize) -> Product {
    let n = i + 1;
    let digital = n.is_multiple_of(4);
    // Index within its own kind, so each kind cycles through its noun list.
    let k = if digital { i / 4 } else { i - i / 4 };
    let adjective = ADJECTIVES[k % ADJECTIVES.len()];
    let (noun, category, base) = if digital {
        DIGITAL_NOUNS[k % DIGITAL_NOUNS.len()]
    } else {
        PHYSICAL_NOUNS[k % PHYSICAL_NOUNS.len()]
    };
    let name = format!("{adjective} {noun}");
    let description = if digital {
        format!("The {name}, delivered as an instant download.")
    } else {
        format!("The {name}, shipped from our warehouse.")
    };
    let variation = (k as u64 * 37) % 5;
    Product {
        id: format!("p{n}"),
        name,
        description,
        price: Money::from_cents(price_cents(i)),
        category,
        in_stock: n % 7 != 3,
        kind: if digital { "digital" } else { "physical" },
        weight_grams: (!digital).then_some(base + variation * 10),
        download_size_mb: digital.then_some(base + variation * 5),
    }
}

struct Catalog {
    products: Vec<Product>,
    /// (id, name) of every user: a local copy of the users service's
    /// generator, so search needs no upstream call.
    users: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct ProductsQuery {
    ids: Option<String>,
    limit: Option<String>,
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

#[derive(Serialize)]
struct UserHit<'a> {
    kind: &'static str,
    id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum SearchHit<'a> {
    Product(&'a Product),
    User(UserHit<'a>),
}

const SEARCH_LIMIT: usize = 10;

fn products_router(opts: ShopOptions) -> Router {
    let catalog = Arc::new(Catalog {
        products: (0..PRODUCT_COUNT).map(generate_product).collect(),
        users: (0..USER_COUNT)
            .map(|i| (format!("u{}", i + 1), user_name(i)))
            .collect(),
    });
    // `/products/featured` is a static segment, which matchit prefers over `{id}`.
    let api = Router::new()
        .route("/products", get(list_products))
        .route("/products/featured", get(featured_products))
        .route("/products/{id}", get(get_product))
        .route("/search", get(search))
        .with_state(catalog);
    finish(api, opts)
}

async fn get_product(
    State(catalog): State<Arc<Catalog>>,
    ApiPath(id): ApiPath,
) -> Result<Json<Product>, ApiError> {
    parse_id(&id, 'p', catalog.products.len())
        .map(|i| Json(catalog.products[i].clone()))
        .ok_or_else(ApiError::not_found)
}

async fn list_products(
    State(catalog): State<Arc<Catalog>>,
    ApiQuery(query): ApiQuery<ProductsQuery>,
) -> Result<Json<Vec<Product>>, ApiError> {
    if let Some(ids) = &query.ids {
        // Batch lookup: order of the ids, unknown ones skipped.
        let found = split_ids(ids)
            .filter_map(|id| parse_id(id, 'p', catalog.products.len()))
            .map(|i| catalog.products[i].clone())
            .collect();
        return Ok(Json(found));
    }
    let limit = parse_limit(query.limit.as_deref(), 20)?;
    Ok(Json(catalog.products.iter().take(limit).cloned().collect()))
}

async fn featured_products(State(catalog): State<Arc<Catalog>>) -> Json<Vec<Product>> {
    Json(
        FEATURED
            .iter()
            .map(|&i| catalog.products[i].clone())
            .collect(),
    )
}

async fn search(
    State(catalog): State<Arc<Catalog>>,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Response, ApiError> {
    let needle = query
        .q
        .ok_or_else(|| ApiError::bad_request("missing query parameter q"))?
        .to_lowercase();
    let mut products = catalog
        .products
        .iter()
        .filter(|p| p.name.to_lowercase().contains(&needle))
        .map(SearchHit::Product);
    let mut users = catalog
        .users
        .iter()
        .filter(|(_, name)| name.to_lowercase().contains(&needle))
        .map(|(id, name)| {
            SearchHit::User(UserHit {
                kind: "user",
                id,
                name,
            })
        });
    // Alternate product, user, product, … so a broad query still shows both
    // kinds within the 10-hit cap.
    let mut hits = Vec::with_capacity(SEARCH_LIMIT);
    while hits.len() < SEARCH_LIMIT {
        let before = hits.len();
        hits.extend(products.next());
        if hits.len() < SEARCH_LIMIT {
            hits.extend(users.next());
        }
        if hits.len() == before {
            break;
        }
    }
    Ok(Json(hits).into_response())
}

// ---------------------------------------------------------------------------
// Reviews
// ---------------------------------------------------------------------------

const RATINGS: [u8; 10] = [5, 4, 4, 3, 5, 2, 4, 5, 1, 3];
const REVIEW_BODIES: [[&str; 3]; 5] = [
    [
        "Broke after a week.",
        "Not what the pictures suggested.",
        "Would not buy again.",
    ],
    [
        "Works, but barely.",
        "Disappointing for the price.",
        "Arrived late and scuffed.",
    ],
    [
        "Does the job.",
        "Average quality, fair price.",
        "Fine, nothing special.",
    ],
    [
        "Very good, a few rough edges.",
        "Solid value for money.",
        "Would recommend with minor caveats.",
    ],
    [
        "Absolutely love it!",
        "Exceeded my expectations.",
        "Best purchase this year.",
    ],
];

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    id: String,
    product_id: String,
    user_id: String,
    rating: u8,
    body: &'static str,
}

/// Reviews per product: a 0..=10 pattern (some products get none), topped up
/// so the total is exactly `REVIEW_COUNT`.
fn review_counts() -> Vec<usize> {
    let mut counts: Vec<usize> = (0..PRODUCT_COUNT).map(|i| (i * 7 + 3) % 11).collect();
    let mut missing = REVIEW_COUNT.saturating_sub(counts.iter().sum());
    // One pass is enough: the pattern sums to 498, only 2 short of 500.
    for count in counts.iter_mut() {
        if missing == 0 {
            break;
        }
        if (1..10).contains(count) {
            *count += 1;
            missing -= 1;
        }
    }
    counts
}

struct ReviewBook {
    reviews: Vec<Review>,
    /// Indices into `reviews` for each product, ascending.
    by_product: Vec<Vec<usize>>,
}

fn generate_reviews() -> ReviewBook {
    let counts = review_counts();
    let mut reviews = Vec::new();
    let mut by_product = vec![Vec::new(); PRODUCT_COUNT];
    // Round-robin id assignment interleaves products, so a batched answer is
    // not grouped by product and the gateway really has to match on productId.
    for round in 0..=counts.iter().copied().max().unwrap_or(0) {
        for (product, &count) in counts.iter().enumerate() {
            if round >= count {
                continue;
            }
            let index = reviews.len();
            let rating = RATINGS[(index * 7 + product) % RATINGS.len()];
            let bodies = &REVIEW_BODIES[usize::from(rating) - 1];
            reviews.push(Review {
                id: format!("r{}", index + 1),
                product_id: format!("p{}", product + 1),
                user_id: format!("u{}", (index * 37 + product * 11) % USER_COUNT + 1),
                rating,
                body: bodies[(index + round) % bodies.len()],
            });
            by_product[product].push(index);
        }
    }
    ReviewBook {
        reviews,
        by_product,
    }
}

#[derive(Deserialize)]
struct ReviewsQuery {
    #[serde(rename = "productId")]
    product_id: Option<String>,
    #[serde(rename = "productIds")]
    product_ids: Option<String>,
}

fn reviews_router(opts: ShopOptions) -> Router {
    let book = Arc::new(generate_reviews());
    let api = Router::new()
        .route("/reviews", get(list_reviews))
        .with_state(book);
    finish(api, opts)
}

async fn list_reviews(
    State(book): State<Arc<ReviewBook>>,
    ApiQuery(query): ApiQuery<ReviewsQuery>,
) -> Result<Json<Vec<Review>>, ApiError> {
    if query.product_id.is_none() && query.product_ids.is_none() {
        return Err(ApiError::bad_request(
            "query parameter productId or productIds is required",
        ));
    }
    // Both forms may be combined; a set dedups and yields id (= index) order.
    let wanted = query
        .product_id
        .iter()
        .chain(query.product_ids.iter())
        .flat_map(|raw| split_ids(raw))
        .filter_map(|id| parse_id(id, 'p', PRODUCT_COUNT));
    let indices: BTreeSet<usize> = wanted
        .flat_map(|product| book.by_product[product].iter().copied())
        .collect();
    Ok(Json(
        indices
            .into_iter()
            .map(|i| book.reviews[i].clone())
            .collect(),
    ))
}
