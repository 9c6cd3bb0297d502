//! Hostile clients against the real binary: connections that send half a
//! request (or nothing) and bodies that stall are closed by the server
//! within the read timeouts of docs/CONFIG.md `[server]`, over plain HTTP
//! and TLS; and `serve --hot-reload` reloads once per change, not again
//! because a reload read the files.
//!
//! The clients are raw TCP (and TLS) streams, to send what an HTTP client
//! never would. Every bound is generous: two shared cores.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use wiremock::MockServer;

use crate::support::client::Client;
use crate::support::process::Serving;
use crate::support::temp::TempDir;
use crate::support::*;

const SDL: &str = "type Query { user(id: ID!): User }\ntype User { id: ID! name: String }\n";

/// `services.toml` with `server_keys` in `[server]`; `{users}` is the
/// users service. Answers are cached for a minute.
fn config(server_keys: &str, users: &str) -> String {
    format!(
        r#"
[server]
{server_keys}

[services.users]
url = "{users}"

[resolvers]
"Query.user" = {{ service = "users", get = "/users/{{args.id}}", cache_ttl_s = 60 }}
"#
    )
}

const USER_QUERY: &str = r#"{ user(id: "1") { name } }"#;

/// A users service answering `/users/1` with Ann.
async fn users() -> MockServer {
    let users = MockServer::start().await;
    serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({"id": "1", "name": "Ann"})),
    )
    .await;
    users
}

/// `conflux serve` on `config` (and [`SDL`], and `files`) in a fresh
/// directory, with `args`.
struct Gateway {
    serving: Serving,
    client: Client,
    dir: TempDir,
}

impl Gateway {
    async fn start(config: &str, files: &[(&str, &str)], args: &[&str]) -> Gateway {
        let dir = TempDir::new();
        dir.write("services.toml", config);
        dir.write("schema/schema.graphql", SDL);
        for (relative, text) in files {
            dir.write(relative, text);
        }
        let serving = Serving::start(dir.path(), "info", args).await;
        Gateway {
            client: Client::new(format!("http://{}", serving.addr)),
            serving,
            dir,
        }
    }

    fn addr(&self) -> &str {
        &self.serving.addr
    }

    /// Stderr lines containing `text`.
    fn count_lines(&self, text: &str) -> usize {
        self.serving
            .lines()
            .iter()
            .filter(|line| line.contains(text))
            .count()
    }

    /// `/healthz` answers and a query runs.
    async fn assert_serving(&mut self) {
        assert!(self.serving.is_running(), "the gateway process died");
        let health = self
            .client
            .request(Method::GET, "/healthz", &[], None)
            .await;
        assert_eq!(health.status, 200);
        let reply = self.client.post(USER_QUERY).await;
        assert_eq!(reply.json(), json!({"data": {"user": {"name": "Ann"}}}));
    }
}

/// Reads what the server sends until it closes the connection (end of
/// stream, or a reset); `Err` with what it sent when it is still open
/// after `limit`.
async fn read_until_closed<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Result<Vec<u8>, Vec<u8>> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    match closed {
        Ok(()) => Ok(received),
        Err(_still_open) => Err(received),
    }
}

/// Connects and sends `bytes` (nothing when empty), then stops.
async fn half_sent(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    stream
}

/// What hostile clients send before they stop.
const HALF_SENT: [(&str, &[u8]); 5] = [
    ("nothing", b""),
    ("half a request line", b"GET /graphql?query=%7B%20user"),
    (
        "half the headers",
        b"POST /graphql HTTP/1.1\r\nHost: gateway\r\nContent-Type: appl",
    ),
    ("a part of the HTTP/2 preface", b"PRI * HTTP/2.0\r\n"),
    (
        "the HTTP/2 preface without SETTINGS",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ),
];

#[tokio::test]
async fn half_sent_requests_are_closed_by_the_server_within_the_default_header_timeout() {
    let users = users().await;
    let mut gateway = Gateway::start(&config("", &users.uri()), &[], &[]).await;
    let mut connections = Vec::new();
    for (what, bytes) in HALF_SENT {
        connections.push((what, half_sent(gateway.addr(), bytes).await));
    }
    let started = Instant::now();

    // The default is 10 s; all of them were opened at once.
    let mut open = Vec::new();
    for (what, stream) in &mut connections {
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        if read_until_closed(stream, left).await.is_err() {
            open.push(*what);
        }
    }

    assert_eq!(open, Vec::<&str>::new(), "still open after 30 s");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "closed after {:?}: sooner than the 10 s default allows",
        started.elapsed()
    );
    gateway.assert_serving().await;
}

#[tokio::test]
async fn a_keep_alive_connection_that_half_sends_its_next_request_is_closed() {
    let users = users().await;
    let mut gateway = Gateway::start(&config("", &users.uri()), &[], &[]).await;
    let mut stream = half_sent(
        gateway.addr(),
        b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n",
    )
    .await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).ends_with("ok") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer to the first request")
            .expect("read");
        assert!(n > 0, "closed before answering the first request");
        answer.extend_from_slice(&buf[..n]);
    }

    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gat")
        .await
        .expect("send the second half request");

    assert!(
        read_until_closed(&mut stream, Duration::from_secs(30))
            .await
            .is_ok(),
        "the half-sent second request held the connection for 30 s"
    );
    gateway.assert_serving().await;
}

#[tokio::test]
async fn many_half_sent_connections_do_not_stop_serving_and_header_read_timeout_ms_bounds_them() {
    let users = users().await;
    let mut gateway = Gateway::start(
        &config("header_read_timeout_ms = 2000", &users.uri()),
        &[],
        &[],
    )
    .await;
    let mut connections = Vec::new();
    for i in 0..60 {
        let (_, bytes) = HALF_SENT[i % HALF_SENT.len()];
        connections.push(half_sent(gateway.addr(), bytes).await);
    }
    let started = Instant::now();

    gateway.assert_serving().await;
    let mut still_open = 0;
    for stream in &mut connections {
        let left = Duration::from_secs(9).saturating_sub(started.elapsed());
        if read_until_closed(stream, left).await.is_err() {
            still_open += 1;
        }
    }

    // Closed at about 2 s: well before the 10 s default would.
    assert_eq!(still_open, 0, "connections open 9 s after a 2 s timeout");
    gateway.assert_serving().await;
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408_and_the_connection_closed() {
    let users = users().await;
    let mut gateway = Gateway::start(&config("", &users.uri()), &[], &[]).await;
    let body = json!({ "query": USER_QUERY }).to_string();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len() + 100
    );
    let mut stream = half_sent(gateway.addr(), head.as_bytes()).await;
    stream
        .write_all(body.as_bytes())
        .await
        .expect("send part of the body");
    let started = Instant::now();

    // The default is 30 s.
    let answer = read_until_closed(&mut stream, Duration::from_secs(60))
        .await
        .unwrap_or_else(|sent| {
            panic!(
                "still open after 60 s; sent: {}",
                String::from_utf8_lossy(&sent)
            )
        });

    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "answer after {:?}: {answer}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(20),
        "answered after {:?}: sooner than the 30 s default allows",
        started.elapsed()
    );
    let json_body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json_body: Value = serde_json::from_str(json_body)
        .unwrap_or_else(|err| panic!("not a JSON body ({err}): {answer}"));
    assert_eq!(error_codes(&json_body), vec!["BAD_REQUEST"], "{answer}");
    assert_eq!(received(&users).await.len(), 0, "a stalled body ran");
    gateway.assert_serving().await;
}

#[test]
fn check_refuses_read_timeouts_of_zero_at_their_values() {
    let toml = config(
        "header_read_timeout_ms = 0\nbody_read_timeout_ms = 0",
        "http://127.0.0.1:9",
    );

    let checked = check(&toml, SDL);

    assert!(!checked.ok, "a zero timeout would close every connection");
    for (key, needle) in [
        ("header_read_timeout_ms", "0\nbody"),
        ("body_read_timeout_ms", "0\n\n[services"),
    ] {
        let line = checked.line_at(&format!("services.toml:{}: ", position(&toml, needle)));
        assert!(
            line.contains(key) && line.contains("greater than 0"),
            "{line}"
        );
    }
}

// ---------------------------------------------------------------------------
// TLS

/// A self-signed certificate for `localhost` and `127.0.0.1`: (cert, key) PEM.
fn self_signed() -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

/// A TLS client trusting `cert_pem` only, offering `alpn`.
fn tls_connector(cert_pem: &str, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let der = pem::parse(cert_pem).expect("PEM").into_contents();
    roots.add(der.into()).expect("a root certificate");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A finished TLS handshake, then `bytes`, then silence.
async fn half_sent_over_tls(
    addr: &str,
    connector: &tokio_rustls::TlsConnector,
    bytes: &[u8],
) -> impl AsyncRead + AsyncWrite + Unpin {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a server name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(bytes).await.expect("send");
    tls.flush().await.expect("flush");
    tls
}

#[tokio::test]
async fn over_tls_half_sent_requests_and_silent_http2_connections_are_closed() {
    let users = users().await;
    let (cert, key) = self_signed();
    let gateway = Gateway::start(
        &config(
            r#"tls = { cert_file = "gateway.pem", key_file = "gateway.key" }"#,
            &users.uri(),
        ),
        &[("gateway.pem", &cert), ("gateway.key", &key)],
        &[],
    )
    .await;
    let http1 = tls_connector(&cert, b"http/1.1");
    let http2 = tls_connector(&cert, b"h2");
    let mut connections = vec![
        (
            "HTTP/1.1, half the headers",
            Box::new(
                half_sent_over_tls(gateway.addr(), &http1, b"POST /graphql HTTP/1.1\r\nHo").await,
            ) as Box<dyn AsyncRead + Unpin>,
        ),
        (
            "HTTP/2, nothing after the handshake",
            Box::new(half_sent_over_tls(gateway.addr(), &http2, b"").await),
        ),
        (
            "HTTP/2, the preface without SETTINGS",
            Box::new(
                half_sent_over_tls(gateway.addr(), &http2, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                    .await,
            ),
        ),
    ];
    let started = Instant::now();

    let mut open = Vec::new();
    for (what, stream) in &mut connections {
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        if read_until_closed(stream, left).await.is_err() {
            open.push(*what);
        }
    }

    assert_eq!(open, Vec::<&str>::new(), "still open after 30 s");
    let mut probe = half_sent_over_tls(
        gateway.addr(),
        &http1,
        b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answer = read_until_closed(&mut probe, Duration::from_secs(10))
        .await
        .expect("an answer, then close");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

// ---------------------------------------------------------------------------
// Hot reload

/// `touch FILE`: a new modification time, the content unchanged.
fn touch(path: &Path) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the file to touch");
    file.set_modified(SystemTime::now())
        .expect("set the modification time");
}

/// Waits (at most `limit`) until `count` reaches `at_least`.
async fn wait_for_count(what: &str, limit: Duration, at_least: usize, count: impl Fn() -> usize) {
    let deadline = Instant::now() + limit;
    while count() < at_least {
        assert!(
            Instant::now() < deadline,
            "{what}: {} after {limit:?}, expected {at_least}",
            count()
        );
        tokio::time::sleep(ms(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_is_one_reload_and_reading_the_files_triggers_none() {
    const RELOADED: &str = "configuration reloaded";
    let users = users().await;
    let mut gateway = Gateway::start(&config("", &users.uri()), &[], &["--hot-reload"]).await;
    wait_for_count("watching", Duration::from_secs(30), 1, || {
        gateway.count_lines("watching the configuration files")
    })
    .await;
    let config_file = gateway.dir.path().join("services.toml");
    let schema_file = gateway.dir.path().join("schema/schema.graphql");

    touch(&config_file);
    wait_for_count(
        "reloads after one touch",
        Duration::from_secs(15),
        1,
        || gateway.count_lines(RELOADED),
    )
    .await;
    // The reload read services.toml and the schema: that is no change.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        gateway.count_lines(RELOADED),
        1,
        "reloads 5 s after one touch"
    );

    // A cached answer stays cached: no reload empties the cache meanwhile.
    gateway.assert_serving().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    gateway.assert_serving().await;
    assert_eq!(
        request_lines(&received(&users).await),
        vec!["GET /users/1"],
        "the second query is served from the cache"
    );

    touch(&schema_file);
    wait_for_count(
        "reloads after a second touch",
        Duration::from_secs(15),
        2,
        || gateway.count_lines(RELOADED),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        gateway.count_lines(RELOADED),
        2,
        "reloads 5 s after two touches"
    );
    gateway.assert_serving().await;
}
