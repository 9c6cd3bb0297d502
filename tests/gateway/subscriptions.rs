//! docs/SUBSCRIPTIONS.md, polling (issue 21): `Subscription` fields fed by
//! `poll_ms`, over SSE, against wiremock upstreams that record when each
//! poll arrived. Poll counts and sharing are judged on those recorded
//! times (a shared poller's polls are `poll_ms` apart; two pollers' come
//! in pairs), never on a tight wall-clock window.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::sse::{subscribe, SseStream};
use crate::support::*;

const POLL_MS: u64 = 200;
const WAIT: Duration = Duration::from_secs(5);

const SDL: &str = r#"
type Query { order(id: ID!): Order }
type Subscription {
  order(id: ID!): Order
  everyOrder(id: ID!): Order
  myOrder: Order
}
type Order {
  id: ID!
  status: String
  product: Product
  secret: String @authenticated
}
type Product { id: ID! name: String }
"#;

const SECRET: &str = "subscriptions-test-secret";

fn config(subscriptions: &str) -> String {
    format!(
        r#"
[auth]
secret = "{SECRET}"
leeway_s = 0

[subscriptions]
{subscriptions}

[services.orders]
url = "{{orders}}"
retries = 0
forward_headers = ["authorization"]

[services.products]
url = "{{products}}"
retries = 0

[resolvers]
"Query.order" = {{ service = "orders", get = "/orders/{{args.id}}" }}
"Subscription.order" = {{ service = "orders", get = "/orders/{{args.id}}", poll_ms = {POLL_MS} }}
"Subscription.everyOrder" = {{ service = "orders", get = "/orders/{{args.id}}", poll_ms = {POLL_MS}, emit = "every" }}
"Subscription.myOrder" = {{ service = "orders", get = "/mine", poll_ms = {POLL_MS} }}
"Order.product" = {{ service = "products", get = "/products/{{parent.productId}}",
                    batch = {{ key = "{{parent.productId}}", get = "/products?ids={{keys}}", match = "id" }} }}
"#
    )
}

/// Answers from a script, one per request (the last one repeated), and
/// records when each request arrived.
#[derive(Clone)]
struct Scripted {
    answers: Arc<Vec<ResponseTemplate>>,
    next: Arc<AtomicUsize>,
    arrivals: Arc<Mutex<Vec<(Instant, Request)>>>,
}

impl Scripted {
    fn new(answers: Vec<ResponseTemplate>) -> Scripted {
        Scripted {
            answers: Arc::new(answers),
            next: Arc::default(),
            arrivals: Arc::default(),
        }
    }

    fn arrivals(&self) -> Vec<(Instant, Request)> {
        self.arrivals.lock().expect("arrivals").clone()
    }

    fn count(&self) -> usize {
        self.arrivals.lock().expect("arrivals").len()
    }
}

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.arrivals
            .lock()
            .expect("arrivals")
            .push((Instant::now(), request.clone()));
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        self.answers[index.min(self.answers.len() - 1)].clone()
    }
}

fn order(status: &str) -> ResponseTemplate {
    json_reply(json!({ "id": "o1", "status": status, "productId": "p1", "secret": "s" }))
}

async fn start(orders: &MockServer, products: &MockServer, subscriptions: &str) -> TestGateway {
    TestGateway::builder()
        .schema(SDL)
        .config(&config(subscriptions))
        .upstream("orders", orders)
        .upstream("products", products)
        .start()
        .await
}

async fn mount(server: &MockServer, route: &str, responder: Scripted) {
    Mock::given(method("GET"))
        .and(path(route))
        .respond_with(responder)
        .mount(server)
        .await;
}

fn token(sub: &str, expires_in_s: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    encode(
        &Header::default(),
        &json!({ "sub": sub, "exp": now + expires_in_s }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// The gaps between consecutive arrivals.
fn gaps(arrivals: &[(Instant, Request)]) -> Vec<Duration> {
    arrivals.windows(2).map(|w| w[1].0 - w[0].0).collect()
}

/// Reads `next` events until `count` arrived.
async fn events(stream: &mut SseStream, count: usize) -> Vec<Value> {
    let mut data = Vec::new();
    while data.len() < count {
        let event = stream
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("only {} events came: {data:?}", data.len()));
        assert_eq!(event.name, "next", "{event:?}");
        data.push(event.data);
    }
    data
}

/// Waits (bounded) until `server` has had `count` requests.
async fn wait_for_polls(responder: &Scripted, count: usize) {
    let deadline = Instant::now() + WAIT;
    while responder.count() < count {
        assert!(
            Instant::now() < deadline,
            "only {} polls came",
            responder.count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const ORDER_SUB: &str = "subscription($id: ID!) { order(id: $id) { id status } }";

#[tokio::test]
async fn a_poll_sends_the_first_answer_then_only_changes() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    let script = Scripted::new(vec![
        order("placed"),
        order("placed"),
        order("placed"),
        order("shipped"),
        order("shipped"),
    ]);
    mount(&orders, "/orders/o1", script.clone()).await;
    let gateway = start(&orders, &products, "").await;
    let mut stream = subscribe(&gateway.url(""), ORDER_SUB, json!({"id": "o1"}), &[]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.content_type, "text/event-stream");
    let got = events(&mut stream, 2).await;
    assert_eq!(
        got,
        vec![
            json!({"data": {"order": {"id": "o1", "status": "placed"}}}),
            json!({"data": {"order": {"id": "o1", "status": "shipped"}}}),
        ]
    );
    wait_for_polls(&script, 6).await;
    // Two more unchanged polls came and went: no third event.
    assert!(stream.next(Duration::from_millis(POLL_MS)).await.is_none());
    let arrivals = script.arrivals();
    // One poll per `poll_ms`: every gap is about `poll_ms`, none a burst.
    for gap in gaps(&arrivals) {
        assert!(
            gap >= Duration::from_millis(POLL_MS / 2),
            "gaps {:?}",
            gaps(&arrivals)
        );
    }
}

#[tokio::test]
async fn emit_every_sends_one_event_per_poll() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    let script = Scripted::new(vec![order("placed")]);
    mount(&orders, "/orders/o1", script.clone()).await;
    let gateway = start(&orders, &products, "").await;
    let query = "subscription { everyOrder(id: \"o1\") { status } }";
    let mut stream = subscribe(&gateway.url(""), query, json!({}), &[]).await;
    let got = events(&mut stream, 3).await;
    assert!(got
        .iter()
        .all(|e| *e == json!({"data": {"everyOrder": {"status": "placed"}}})));
    assert!(script.count() >= 3);
}

#[tokio::test]
async fn subscribers_of_the_same_request_share_one_poller_and_a_joiner_gets_the_current_answer() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    let script = Scripted::new(vec![order("placed")]);
    mount(&orders, "/orders/o1", script.clone()).await;
    let gateway = start(&orders, &products, "").await;
    let mut first = subscribe(&gateway.url(""), ORDER_SUB, json!({"id": "o1"}), &[]).await;
    events(&mut first, 1).await;
    wait_for_polls(&script, 2).await;
    let before_join = script.count();
    let mut second = subscribe(&gateway.url(""), ORDER_SUB, json!({"id": "o1"}), &[]).await;
    // The joiner's first event is the running poller's current answer,
    // without a poll of its own.
    let joined = events(&mut second, 1).await;
    assert_eq!(
        joined[0],
        json!({"data": {"order": {"id": "o1", "status": "placed"}}})
    );
    let polls_at_join = script.count();
    assert!(
        polls_at_join <= before_join + 1,
        "the joiner polled: {before_join} → {polls_at_join}"
    );
    wait_for_polls(&script, polls_at_join + 4).await;
    let arrivals = script.arrivals();
    for gap in gaps(&arrivals) {
        assert!(
            gap >= Duration::from_millis(POLL_MS / 2),
            "two pollers for one request: gaps {:?}",
            gaps(&arrivals)
        );
    }
}

#[tokio::test]
async fn different_identities_never_share_a_poller() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    // Each caller's own order: the upstream answers by the forwarded token.
    struct ByToken(Arc<Mutex<Vec<String>>>);
    impl Respond for ByToken {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let auth = header(request, "authorization").unwrap_or_default();
            self.0.lock().expect("seen").push(auth.clone());
            json_reply(json!({ "id": auth.len().to_string(), "status": auth }))
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("GET"))
        .and(path("/mine"))
        .respond_with(ByToken(seen.clone()))
        .mount(&orders)
        .await;
    let gateway = start(&orders, &products, "").await;
    let (alice, bob) = (
        format!("Bearer {}", token("alice", 600)),
        format!("Bearer {}", token("bob", 600)),
    );
    let query = "subscription { myOrder { status } }";
    let mut a = subscribe(
        &gateway.url(""),
        query,
        json!({}),
        &[("authorization", &alice)],
    )
    .await;
    let mut b = subscribe(
        &gateway.url(""),
        query,
        json!({}),
        &[("authorization", &bob)],
    )
    .await;
    assert_eq!(
        events(&mut a, 1).await[0],
        json!({"data": {"myOrder": {"status": alice}}})
    );
    assert_eq!(
        events(&mut b, 1).await[0],
        json!({"data": {"myOrder": {"status": bob}}})
    );
    let seen = seen.lock().expect("seen").clone();
    assert!(seen.contains(&alice) && seen.contains(&bob), "{seen:?}");
}

#[tokio::test]
async fn a_failed_poll_is_an_event_with_the_field_error_and_polling_goes_on() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    let script = Scripted::new(vec![
        order("placed"),
        ResponseTemplate::new(500),
        ResponseTemplate::new(500),
        order("shipped"),
    ]);
    mount(&orders, "/orders/o1", script.clone()).await;
    let gateway = start(&orders, &products, "").await;
    let mut stream = subscribe(&gateway.url(""), ORDER_SUB, json!({"id": "o1"}), &[]).await;
    let got = events(&mut stream, 3).await;
    assert_eq!(got[0]["data"]["order"]["status"], "placed");
    // Two failed polls in a row: one event, with the field error at its path.
    assert_eq!(got[1]["data"]["order"], Value::Null, "{}", got[1]);
    assert_eq!(got[1]["errors"][0]["extensions"]["code"], "UPSTREAM_ERROR");
    assert_eq!(got[1]["errors"][0]["path"], json!(["order"]));
    assert_eq!(got[2]["data"]["order"]["status"], "shipped");
    assert!(script.count() >= 4);
}

#[tokio::test]
async fn the_poller_stops_when_its_last_subscriber_leaves() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    let script = Scripted::new(vec![order("placed")]);
    mount(&orders, "/orders/o1", script.clone()).await;
    let gateway = start(&orders, &products, "").await;
    let mut stream = subscribe(&gateway.url(""), ORDER_SUB, json!({"id": "o1"}), &[]).await;
    events(&mut stream, 1).await;
    wait_for_polls(&script, 2).await;
    drop(stream);
    let left = Instant::now();
    tokio::time::sleep(Duration::from_millis(POLL_MS * 5)).await;
    // At most a poll already due when the client left; none after.
    let late: Vec<Duration> = script
        .arrivals()
        .iter()
        .filter(|(at, _)| *at > left)
        .map(|(at, _)| *at - left)
        .collect();
    assert!(
        late.iter()
            .all(|after| *after < Duration::from_millis(POLL_MS * 2))
            && late.len() <= 1,
        "polls after the client left: {late:?}"
    );
    let metrics = gateway
        .request(reqwest::Method::GET, "/metrics", &[], None)
        .await;
    assert!(
        metrics.text.contains("conflux_subscription_pollers"),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn each_event_resolves_nested_calls_batching_and_access_rules() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    mount(&orders, "/orders/o1", Scripted::new(vec![order("placed")])).await;
    let product_calls = Arrivals::answering(json_reply(json!([{ "id": "p1", "name": "Lamp" }])));
    Mock::given(method("GET"))
        .and(path("/products"))
        .respond_with(product_calls.clone())
        .mount(&products)
        .await;
    let gateway = start(&orders, &products, "").await;
    let query = "subscription { order(id: \"o1\") { status product { name } secret } }";
    let mut stream = subscribe(&gateway.url(""), query, json!({}), &[]).await;
    let got = events(&mut stream, 1).await;
    assert_eq!(
        got[0]["data"],
        json!({"order": {"status": "placed", "product": {"name": "Lamp"}, "secret": null}})
    );
    // `@authenticated` holds for an anonymous subscriber.
    assert_eq!(got[0]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert_eq!(got[0]["errors"][0]["path"], json!(["order", "secret"]));
    let calls = product_calls.log();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        query_pairs(&calls[0].1),
        vec![("ids".to_owned(), "p1".to_owned())]
    );
}

#[tokio::test]
async fn limits_refuse_with_too_many_subscriptions() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    mount(&orders, "/orders/o1", Scripted::new(vec![order("placed")])).await;
    let gateway = start(&orders, &products, "max_per_client = 1\nmax_total = 2").await;
    let mut first = subscribe(&gateway.url(""), ORDER_SUB, json!({"id": "o1"}), &[]).await;
    events(&mut first, 1).await;
    let refused = subscribe(&gateway.url(""), ORDER_SUB, json!({"id": "o1"}), &[]).await;
    assert_eq!(refused.status, 429);
    let body: Value = serde_json::from_str(&refused.text().await).expect("a JSON error body");
    assert_eq!(error_codes(&body), vec!["TOO_MANY_SUBSCRIPTIONS"]);
    // Another client (a subject) still may, up to max_total.
    let carol = format!("Bearer {}", token("carol", 600));
    let mut other = subscribe(
        &gateway.url(""),
        ORDER_SUB,
        json!({"id": "o1"}),
        &[("authorization", &carol)],
    )
    .await;
    assert_eq!(other.status, 200);
    events(&mut other, 1).await;
    let dave = format!("Bearer {}", token("dave", 600));
    let over_total = subscribe(
        &gateway.url(""),
        ORDER_SUB,
        json!({"id": "o1"}),
        &[("authorization", &dave)],
    )
    .await;
    assert_eq!(over_total.status, 429);
    // A place freed by a client that left is taken again.
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        let again = subscribe(&gateway.url(""), ORDER_SUB, json!({"id": "o1"}), &[]).await;
        if again.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn token_expiry_ends_the_subscription_with_unauthenticated() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    mount(&orders, "/orders/o1", Scripted::new(vec![order("placed")])).await;
    let gateway = start(&orders, &products, "").await;
    let bearer = format!("Bearer {}", token("erin", 2));
    let started = Instant::now();
    let mut stream = subscribe(
        &gateway.url(""),
        ORDER_SUB,
        json!({"id": "o1"}),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(stream.status, 200);
    let got = stream.until_complete(WAIT).await;
    let ended = started.elapsed();
    assert_eq!(got[0]["data"]["order"]["status"], "placed");
    let last = got.last().expect("events");
    assert_eq!(
        last["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{got:?}"
    );
    assert!(
        ended >= Duration::from_secs(1),
        "ended after {ended:?}, before the token expired"
    );
}

#[tokio::test]
async fn a_subscription_over_plain_http_is_400_subscriptions_not_supported() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    let script = Scripted::new(vec![order("placed")]);
    mount(&orders, "/orders/o1", script.clone()).await;
    let gateway = start(&orders, &products, "").await;
    for accept in [
        "application/json",
        "application/graphql-response+json",
        "*/*",
    ] {
        let reply = gateway
            .post_with_headers(
                "subscription { order(id: \"o1\") { status } }",
                &[("accept", accept)],
            )
            .await;
        assert_eq!(reply.status, 400, "{accept}: {}", reply.text);
        assert_eq!(reply.error_codes(), vec!["SUBSCRIPTIONS_NOT_SUPPORTED"]);
    }
    let get = gateway
        .get_params(&[("query", "subscription { order(id: \"o1\") { status } }")])
        .await;
    assert_eq!(get.status, 400, "{}", get.text);
    assert_eq!(script.count(), 0);
}

#[tokio::test]
async fn a_query_over_sse_is_one_next_then_complete() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    mount(&orders, "/orders/o1", Scripted::new(vec![order("placed")])).await;
    let gateway = start(&orders, &products, "").await;
    let mut stream = subscribe(
        &gateway.url(""),
        "{ order(id: \"o1\") { status } }",
        json!({}),
        &[],
    )
    .await;
    assert_eq!(stream.status, 200);
    let got = stream.until_complete(WAIT).await;
    assert_eq!(got, vec![json!({"data": {"order": {"status": "placed"}}})]);
}

#[tokio::test]
async fn an_idle_stream_gets_keepalive_comments() {
    let (orders, products) = (MockServer::start().await, MockServer::start().await);
    mount(&orders, "/orders/o1", Scripted::new(vec![order("placed")])).await;
    let gateway = start(&orders, &products, "keepalive_ms = 100").await;
    let mut stream = subscribe(&gateway.url(""), ORDER_SUB, json!({"id": "o1"}), &[]).await;
    events(&mut stream, 1).await;
    // Nothing changes: only comments come.
    assert!(stream.next(Duration::from_millis(600)).await.is_none());
    assert!(
        stream.comments >= 2,
        "{} keepalive comments",
        stream.comments
    );
}

#[tokio::test]
async fn subscription_config_problems_point_at_their_line() {
    let problems = TestGateway::builder()
        .schema(SDL)
        .config(&config("broker = \"kafka\""))
        .upstream("orders", &MockServer::start().await)
        .upstream("products", &MockServer::start().await)
        .try_start()
        .await
        .err()
        .expect("refused");
    assert!(problems.contains("services.toml:7:"), "{problems}");
    assert!(
        problems.contains("unknown subscriptions broker `kafka`"),
        "{problems}"
    );
    let missing = TestGateway::builder()
        .schema("type Query { a: Int }\ntype Subscription { b: Int }")
        .config("[services.s]\nurl = \"http://127.0.0.1:1\"\n[resolvers]\n\"Query.a\" = { service = \"s\", get = \"/a\" }\n\"Subscription.b\" = { service = \"s\", get = \"/b\" }\n")
        .try_start()
        .await
        .err()
        .expect("refused");
    assert!(
        missing.contains("needs `poll_ms` (with a call) or `webhook`"),
        "{missing}"
    );
}

mod over_graphql_ws {
    //! The same subscriptions over `graphql-transport-ws`.

    use super::*;
    use crate::support::ws::{Received, WsClient};

    fn message(received: Received) -> Value {
        match received {
            Received::Message(value) => value,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_subscription_streams_next_messages_and_stops_on_complete() {
        let (orders, products) = (MockServer::start().await, MockServer::start().await);
        let script = Scripted::new(vec![order("placed"), order("placed"), order("shipped")]);
        mount(&orders, "/orders/o1", script.clone()).await;
        let gateway = start(&orders, &products, "").await;
        let mut ws = WsClient::connect(&gateway.url(""), &[]).await;
        ws.init(None).await;
        ws.subscribe("s1", ORDER_SUB, json!({"id": "o1"})).await;
        let first = message(ws.receive(WAIT).await);
        assert_eq!(
            first,
            json!({"type": "next", "id": "s1", "payload": {"data": {"order": {"id": "o1", "status": "placed"}}}})
        );
        let second = message(ws.receive(WAIT).await);
        assert_eq!(second["payload"]["data"]["order"]["status"], "shipped");
        // The client's `complete` stops it: its poller too.
        ws.send(json!({"id": "s1", "type": "complete"})).await;
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        let stopped = script.count();
        tokio::time::sleep(Duration::from_millis(POLL_MS * 4)).await;
        assert!(
            script.count() <= stopped + 1,
            "polling went on: {stopped} → {}",
            script.count()
        );
        // ping → pong.
        ws.send(json!({"type": "ping"})).await;
        assert_eq!(message(ws.receive(WAIT).await), json!({"type": "pong"}));
    }

    #[tokio::test]
    async fn queries_and_mutations_are_one_next_then_complete() {
        let (orders, products) = (MockServer::start().await, MockServer::start().await);
        mount(&orders, "/orders/o1", Scripted::new(vec![order("placed")])).await;
        let gateway = start(&orders, &products, "").await;
        let mut ws = WsClient::connect(&gateway.url(""), &[]).await;
        ws.init(None).await;
        ws.subscribe("q1", "{ order(id: \"o1\") { status } }", json!({}))
            .await;
        assert_eq!(
            message(ws.receive(WAIT).await),
            json!({"type": "next", "id": "q1", "payload": {"data": {"order": {"status": "placed"}}}})
        );
        assert_eq!(
            message(ws.receive(WAIT).await),
            json!({"type": "complete", "id": "q1"})
        );
        // A document that does not validate is an `error` for its id.
        ws.subscribe("bad", "{ order(id: \"o1\") { nope } }", json!({}))
            .await;
        let error = message(ws.receive(WAIT).await);
        assert_eq!(error["type"], "error");
        assert_eq!(error["id"], "bad");
        assert_eq!(
            error["payload"][0]["extensions"]["code"],
            "GRAPHQL_VALIDATION_FAILED"
        );
    }

    #[tokio::test]
    async fn the_token_comes_from_connection_init_or_the_upgrade_and_a_bad_one_closes_4403() {
        let (orders, products) = (MockServer::start().await, MockServer::start().await);
        let seen = Arrivals::answering(json_reply(json!({ "id": "o9", "status": "mine" })));
        Mock::given(method("GET"))
            .and(path("/mine"))
            .respond_with(seen.clone())
            .mount(&orders)
            .await;
        let gateway = start(&orders, &products, "").await;
        let bearer = format!("Bearer {}", token("frank", 600));
        let mut from_init = WsClient::connect(&gateway.url(""), &[]).await;
        from_init.init(Some(json!({"authorization": bearer}))).await;
        from_init
            .subscribe("m", "subscription { myOrder { status } }", json!({}))
            .await;
        assert_eq!(
            message(from_init.receive(WAIT).await)["payload"]["data"]["myOrder"]["status"],
            "mine"
        );
        let other = format!("Bearer {}", token("grace", 600));
        let mut from_upgrade =
            WsClient::connect(&gateway.url(""), &[("authorization", &other)]).await;
        from_upgrade.init(None).await;
        from_upgrade
            .subscribe("m", "subscription { myOrder { status } }", json!({}))
            .await;
        assert_eq!(message(from_upgrade.receive(WAIT).await)["type"], "next");
        // Each identity's poller sent its own verified token
        // (`forward_headers`).
        let tokens: Vec<Option<String>> = seen
            .log()
            .iter()
            .map(|(_, r)| header(r, "authorization"))
            .collect();
        assert!(tokens.contains(&Some(bearer.clone())), "{tokens:?}");
        assert!(tokens.contains(&Some(other.clone())), "{tokens:?}");
        assert!(tokens.iter().all(Option::is_some), "{tokens:?}");
        let mut forged = WsClient::connect(&gateway.url(""), &[]).await;
        forged
            .send(json!({"type": "connection_init", "payload": {"authorization": "Bearer not.a.token"}}))
            .await;
        assert_eq!(forged.receive(WAIT).await, Received::Closed(Some(4403)));
        // `subscribe` before the acknowledgement: 4401.
        let mut early = WsClient::connect(&gateway.url(""), &[]).await;
        early.subscribe("x", ORDER_SUB, json!({"id": "o1"})).await;
        assert_eq!(early.receive(WAIT).await, Received::Closed(Some(4401)));
    }

    #[tokio::test]
    async fn a_refused_subscription_is_an_error_message_and_keepalive_pings_come() {
        let (orders, products) = (MockServer::start().await, MockServer::start().await);
        mount(&orders, "/orders/o1", Scripted::new(vec![order("placed")])).await;
        let gateway = start(&orders, &products, "max_per_client = 1\nkeepalive_ms = 150").await;
        let mut ws = WsClient::connect(&gateway.url(""), &[]).await;
        ws.init(None).await;
        ws.subscribe("a", ORDER_SUB, json!({"id": "o1"})).await;
        assert_eq!(message(ws.receive(WAIT).await)["type"], "next");
        ws.subscribe("b", ORDER_SUB, json!({"id": "o1"})).await;
        let refused = message(ws.receive(WAIT).await);
        assert_eq!(refused["type"], "error");
        assert_eq!(refused["id"], "b");
        assert_eq!(
            refused["payload"][0]["extensions"]["code"],
            "TOO_MANY_SUBSCRIPTIONS"
        );
        assert_eq!(
            message(ws.receive_with_pings(WAIT).await),
            json!({"type": "ping"})
        );
    }
}
