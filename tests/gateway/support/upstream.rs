//! The REST services behind the gateway: wiremock servers, what they
//! received, and a few responders.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A 200 answer with this JSON body.
pub fn json_reply(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// Mounts `METHOD path` → `response` on `server`.
pub async fn serve(server: &MockServer, verb: &str, route: &str, response: ResponseTemplate) {
    Mock::given(method(verb))
        .and(path(route))
        .respond_with(response)
        .mount(server)
        .await;
}

/// Mounts `METHOD path` → `response`, expecting exactly `times` calls
/// (checked when the server is dropped).
pub async fn serve_times(
    server: &MockServer,
    verb: &str,
    route: &str,
    response: ResponseTemplate,
    times: u64,
) {
    Mock::given(method(verb))
        .and(path(route))
        .respond_with(response)
        .expect(times)
        .mount(server)
        .await;
}

/// Every request the server received, in arrival order.
pub async fn received(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
}

/// The decoded query parameters of a received request, in order.
pub fn query_pairs(request: &Request) -> Vec<(String, String)> {
    request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// One header of a received request, as text.
pub fn header(request: &Request, name: &str) -> Option<String> {
    request
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap_or_default().to_owned())
}

/// The received body as JSON; panics when it is not.
pub fn body_json(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap_or_else(|err| {
        panic!(
            "the upstream body is not JSON ({err}): {}",
            String::from_utf8_lossy(&request.body)
        )
    })
}

/// `METHOD /path?a=1&b=2` of each received request, for readable
/// asserts: the path as sent, the query parameters decoded and sorted (the
/// docs set no order and allows any valid encoding).
pub fn request_lines(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let mut pairs = query_pairs(r);
            pairs.sort();
            if pairs.is_empty() {
                format!("{} {}", r.method, r.url.path())
            } else {
                let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} {}?{}", r.method, r.url.path(), query.join("&"))
            }
        })
        .collect()
}

/// A URL where nothing listens: a port bound then released.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// When each request arrived (body included), with the answer to give.
#[derive(Clone)]
pub struct Arrivals {
    log: Arc<Mutex<Vec<(Instant, Request)>>>,
    response: ResponseTemplate,
}

impl Arrivals {
    pub fn answering(response: ResponseTemplate) -> Arrivals {
        Arrivals {
            log: Arc::new(Mutex::new(Vec::new())),
            response,
        }
    }

    /// Arrival instants and requests, in arrival order.
    pub fn log(&self) -> Vec<(Instant, Request)> {
        self.log.lock().expect("arrivals lock").clone()
    }
}

impl Respond for Arrivals {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.log
            .lock()
            .expect("arrivals lock")
            .push((Instant::now(), request.clone()));
        self.response.clone()
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
