//! docs/CONFIG.md `[server].tls` and a service's `tls` table (issue 9): HTTPS for
//! clients over HTTP/1.1 and HTTP/2 by ALPN, a certificate rotated by a
//! reload for new connections only, private CAs and mutual TLS to the
//! services, and `check` naming a bad TLS file.
//!
//! Certificates are made in each test with rcgen ([`Pki`]). HTTPS
//! upstreams are small axum servers behind Conflux's own [`TlsListener`]
//! ([`https_upstream`]); the gateway is started on port 0 in-process
//! ([`serve`]) or as the real binary ([`Binary`]) when a signal or its logs
//! are what is tested.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Path as UrlPath;
use axum::routing::get;
use axum::{Json, Router};
use conflux::reload::LiveGateway;
use conflux::tls::TlsListener;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::Version;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wiremock::MockServer;

use crate::support::check::Checked;
use crate::support::client::raw_http_status;
use crate::support::process::Serving;
use crate::support::temp::TempDir;
use crate::support::*;

const SDL: &str = "type Query {\n  user(id: ID!): User\n}\ntype User { id: ID! name: String }\n";

const QUERY: &str = "{ user(id: 1) { id name } }";

/// The `users` service, with `tls_keys` in its `tls` table (none when
/// empty), and `server_keys` in `[server]`.
fn config(server_keys: &str, users_url: &str, tls_keys: &str) -> String {
    let tls = if tls_keys.is_empty() {
        String::new()
    } else {
        format!("tls = {{ {tls_keys} }}\n")
    };
    format!(
        r#"
[server]
{server_keys}

[services.users]
url = "{users_url}"
retries = 0
{tls}
[resolvers]
"Query.user" = {{ service = "users", get = "/users/{{args.id}}" }}
"#
    )
}

const SERVER_TLS: &str =
    r#"tls = { cert_file = "certs/gateway.pem", key_file = "certs/gateway.key" }"#;

// ---------------------------------------------------------------------------
// Certificates

/// A throwaway certificate authority.
struct Pki {
    /// Its certificate, PEM: what a client trusts.
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate signed by a [`Pki`], with its key.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    /// The certificate, DER: what a TLS peer presents.
    der: Vec<u8>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = KeyPair::generate().expect("a CA key");
        let params = ca_params(name);
        let cert = params.self_signed(&key).expect("a self-signed CA");
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A CA signed by this one; its `ca_pem` is the intermediate's
    /// certificate, to append to a chain.
    fn intermediate(&self, name: &str) -> Pki {
        let key = KeyPair::generate().expect("an intermediate key");
        let params = ca_params(name);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("an intermediate CA");
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    fn server(&self, name: &str) -> Leaf {
        self.leaf(
            name,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &KeyPair::generate().expect("a key"),
        )
    }

    /// A client certificate (mutual TLS).
    fn client(&self, name: &str) -> Leaf {
        self.leaf(
            name,
            &["conflux.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &KeyPair::generate().expect("a key"),
        )
    }

    fn leaf(
        &self,
        name: &str,
        hosts: &[&str],
        usage: ExtendedKeyUsagePurpose,
        key: &KeyPair,
    ) -> Leaf {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(hosts).expect("valid host names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(key, &self.issuer).expect("a leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// The key inside a PKCS#8 `PrivateKeyInfo` — for RSA a PKCS#1
/// `RSAPrivateKey`, for EC a SEC1 `ECPrivateKey` —, as PEM with `label`.
fn unwrap_pkcs8(pkcs8_pem: &str, label: &str) -> String {
    let der = pem::parse(pkcs8_pem).expect("PEM").into_contents();
    // PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm SEQUENCE, key OCTET STRING, … }
    let (info, _) = der_item(&der, 0x30);
    let (_, rest) = der_item(info, 0x02);
    let (_, rest) = der_item(rest, 0x30);
    let (key, _) = der_item(rest, 0x04);
    pem::encode(&pem::Pem::new(label, key.to_vec()))
}

/// The DER item with `tag` at the start of `input`: (its content, what follows).
fn der_item(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(input[0], tag, "unexpected DER tag");
    let (length, header) = match input[1] {
        short if short < 0x80 => (short as usize, 2),
        long => {
            let count = (long & 0x7f) as usize;
            let length = input[2..2 + count]
                .iter()
                .fold(0usize, |acc, byte| acc << 8 | *byte as usize);
            (length, 2 + count)
        }
    };
    (&input[header..header + length], &input[header + length..])
}

// ---------------------------------------------------------------------------
// The gateway and its clients

/// A gateway serving in-process on 127.0.0.1 until dropped.
struct Served {
    addr: SocketAddr,
    live: Arc<LiveGateway>,
    _dir: TempDir,
    _stop: oneshot::Sender<()>,
}

/// Writes `files` beside `services.toml` = `toml` (and the schema), loads
/// and serves them; the live gateway reloads from that directory.
async fn serve(toml: &str, files: &[(&str, &str)]) -> Served {
    let dir = TempDir::new();
    let config = dir.write("services.toml", toml);
    dir.write("schema/schema.graphql", SDL);
    for (relative, text) in files {
        dir.write(relative, text);
    }
    let gateway = conflux::gateway::load(&config).unwrap_or_else(|problems| {
        panic!(
            "the gateway did not load:\n{}",
            dir.relative(&problems.to_string())
        )
    });
    let live = LiveGateway::new(Arc::new(gateway), Some(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(conflux::gateway::serve_live(
        listener,
        live.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    Served {
        addr,
        live,
        _dir: dir,
        _stop: stop,
    }
}

impl Served {
    fn https(&self) -> String {
        format!("https://127.0.0.1:{}/graphql", self.addr.port())
    }

    fn write(&self, relative: &str, text: &str) {
        self._dir.write(relative, text);
    }
}

#[derive(Clone, Copy)]
enum Protocol {
    /// ALPN `http/1.1` only.
    Http1,
    /// ALPN `h2` only.
    Http2,
    /// Both offered: the server picks.
    Any,
}

/// An HTTPS client trusting only `ca_pem`, reporting the peer's certificate.
fn https_client(ca_pem: &str, protocol: Protocol) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"))
        .tls_info(true);
    let builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_prior_knowledge(),
        Protocol::Any => builder,
    };
    builder.build().expect("an HTTPS client")
}

/// What one POST /graphql answered.
struct Answer {
    version: Version,
    body: Value,
    /// The certificate the server presented on this connection (DER).
    peer_certificate: Option<Vec<u8>>,
}

async fn post(client: &reqwest::Client, url: &str, query: &str) -> Result<Answer, reqwest::Error> {
    let response = client
        .post(url)
        .json(&json!({ "query": query }))
        .send()
        .await?;
    let version = response.version();
    let peer_certificate = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate().map(<[u8]>::to_vec));
    let body = response.json().await?;
    Ok(Answer {
        version,
        body,
        peer_certificate,
    })
}

/// A plain-HTTP users service answering `/users/{id}`.
async fn users_mock() -> MockServer {
    let users = MockServer::start().await;
    crate::support::serve(
        &users,
        "GET",
        "/users/1",
        json_reply(json!({ "id": "1", "name": "Ada" })),
    )
    .await;
    users
}

/// An HTTPS users service on 127.0.0.1 presenting `leaf`; with
/// `client_ca`, it requires a client certificate signed by that CA.
/// Serves until the test's runtime ends. Returns its base URL.
async fn https_upstream(leaf: &Leaf, client_ca: Option<&str>) -> String {
    let provider = conflux::tls::provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in pem::parse_many(ca_pem).expect("CA PEM") {
                roots
                    .add(cert.into_contents().into())
                    .expect("a trust anchor");
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = vec![leaf.der.clone().into()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(
        pem::parse(&leaf.key_pem).expect("key PEM").into_contents(),
    )
    .expect("a PKCS#8 key");
    let mut config = builder
        .with_single_cert(chain, key)
        .expect("a server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let listener =
        TlsListener::new(tcp, tokio_rustls::TlsAcceptor::from(Arc::new(config))).expect("listen");
    let app = Router::new().route(
        "/users/{id}",
        get(|UrlPath(id): UrlPath<String>| async move { Json(json!({ "id": id, "name": "Ada" })) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("https://127.0.0.1:{port}")
}

fn assert_ada(body: &Value) {
    assert_eq!(
        body,
        &json!({ "data": { "user": { "id": "1", "name": "Ada" } } }),
        "the answer"
    );
}

/// The field failed with UPSTREAM_UNAVAILABLE and no `status`.
fn assert_unavailable(body: &Value) {
    assert_eq!(body["data"]["user"], Value::Null, "{body}");
    assert_eq!(error_codes(body), ["UPSTREAM_UNAVAILABLE"], "{body}");
    assert!(
        body["errors"][0]["extensions"].get("status").is_none(),
        "a handshake failure has no status: {body}"
    );
}

// ---------------------------------------------------------------------------
// HTTPS for clients

#[tokio::test]
async fn https_over_http1_and_http2_answers_like_plain_http() {
    let users = users_mock().await;
    let pki = Pki::new("test CA");
    let leaf = pki.server("gateway");
    let plain = TestGateway::builder()
        .schema(SDL)
        .config(&config("", "{users}", ""))
        .upstream("users", &users)
        .start()
        .await;
    let expected = plain.post(QUERY).await.json();
    assert_ada(&expected);

    let https = serve(
        &config(SERVER_TLS, &users.uri(), ""),
        &[
            ("certs/gateway.pem", &leaf.cert_pem),
            ("certs/gateway.key", &leaf.key_pem),
        ],
    )
    .await;
    for (protocol, version) in [
        (Protocol::Http1, Version::HTTP_11),
        (Protocol::Http2, Version::HTTP_2),
        // Offered both, the gateway picks HTTP/2.
        (Protocol::Any, Version::HTTP_2),
    ] {
        let client = https_client(&pki.ca_pem, protocol);
        let answer = post(&client, &https.https(), QUERY)
            .await
            .expect("an HTTPS answer");
        assert_eq!(answer.version, version);
        assert_eq!(answer.body, expected, "over {version:?}");
        assert_eq!(answer.peer_certificate.as_deref(), Some(&leaf.der[..]));
    }
}

#[tokio::test]
async fn plain_http_to_the_https_port_fails_cleanly_and_serving_goes_on() {
    let users = users_mock().await;
    let pki = Pki::new("test CA");
    let leaf = pki.server("gateway");
    let https = serve(
        &config(SERVER_TLS, &users.uri(), ""),
        &[
            ("certs/gateway.pem", &leaf.cert_pem),
            ("certs/gateway.key", &leaf.key_pem),
        ],
    )
    .await;
    let addr = https.addr.to_string();
    let body = json!({ "query": QUERY }).to_string();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(
        raw_http_status(&addr, request.as_bytes()).await,
        Some(400),
        "a plain request is answered 400, then closed"
    );
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let reply = plain
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": QUERY }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(reply.status(), 400);
    let reply: Value = reply.json().await.expect("a JSON body");
    assert_eq!(error_codes(&reply), ["BAD_REQUEST"]);
    assert!(reply["errors"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("HTTPS")));

    // A broken TLS hello, then a client that says nothing: closed and
    // waited out, neither holds anything up.
    assert_eq!(
        raw_http_status(&addr, b"\x16\x03\x01\x00\x05hello").await,
        None
    );
    let silent = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");

    let client = https_client(&pki.ca_pem, Protocol::Any);
    let answer = post(&client, &https.https(), QUERY)
        .await
        .expect("still serving HTTPS");
    assert_ada(&answer.body);
    drop(silent);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let users = users_mock().await;
    let pki = Pki::new("test CA");
    let leaf = pki.server("gateway");
    let https = serve(
        &config(SERVER_TLS, &users.uri(), ""),
        &[
            ("certs/gateway.pem", &leaf.cert_pem),
            ("certs/gateway.key", &leaf.key_pem),
        ],
    )
    .await;
    let stranger = https_client(&Pki::new("another CA").ca_pem, Protocol::Any);
    assert!(post(&stranger, &https.https(), QUERY).await.is_err());
    let client = https_client(&pki.ca_pem, Protocol::Any);
    assert_ada(
        &post(&client, &https.https(), QUERY)
            .await
            .expect("served")
            .body,
    );
}

#[tokio::test]
async fn a_chain_with_an_intermediate_and_pkcs1_or_sec1_keys_are_served() {
    let users = users_mock().await;
    let root = Pki::new("root CA");
    let intermediate = root.intermediate("intermediate CA");

    let rsa_pkcs8 = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/auth/rsa.key.pem"),
    )
    .expect("the RSA test key");
    let rsa = KeyPair::from_pem(&rsa_pkcs8).expect("an RSA key");
    let ec = KeyPair::generate().expect("an EC key");
    let keys = [
        (&rsa, unwrap_pkcs8(&rsa_pkcs8, "RSA PRIVATE KEY")),
        (&ec, unwrap_pkcs8(&ec.serialize_pem(), "EC PRIVATE KEY")),
    ];
    for (key, key_pem) in keys {
        let leaf = intermediate.leaf(
            "gateway",
            &["127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            key,
        );
        let chain = format!("{}{}", leaf.cert_pem, intermediate.ca_pem);
        let https = serve(
            &config(SERVER_TLS, &users.uri(), ""),
            &[
                ("certs/gateway.pem", &chain),
                ("certs/gateway.key", &key_pem),
            ],
        )
        .await;
        // Trusting the root only: the intermediate comes from the chain.
        let client = https_client(&root.ca_pem, Protocol::Any);
        let answer = post(&client, &https.https(), QUERY)
            .await
            .unwrap_or_else(|err| panic!("{} key: {err:?}", key_pem.lines().next().unwrap_or("")));
        assert_ada(&answer.body);
    }
}

// ---------------------------------------------------------------------------
// Rotation

#[tokio::test]
async fn a_reload_rotates_the_certificate_for_new_connections_and_keeps_open_ones() {
    let users = users_mock().await;
    let pki = Pki::new("test CA");
    let first = pki.server("gateway one");
    let second = pki.server("gateway two");
    let https = serve(
        &config(SERVER_TLS, &users.uri(), ""),
        &[
            ("certs/gateway.pem", &first.cert_pem),
            ("certs/gateway.key", &first.key_pem),
        ],
    )
    .await;
    // Keeps its connection between requests (HTTP/1.1 keep-alive).
    let before = https_client(&pki.ca_pem, Protocol::Http1);
    let answer = post(&before, &https.https(), QUERY).await.expect("served");
    assert_eq!(answer.peer_certificate.as_deref(), Some(&first.der[..]));

    https.write("certs/gateway.pem", &second.cert_pem);
    https.write("certs/gateway.key", &second.key_pem);
    https.live.reload().await.expect("the new files are valid");

    let fresh = https_client(&pki.ca_pem, Protocol::Http2);
    let answer = post(&fresh, &https.https(), QUERY).await.expect("served");
    assert_eq!(
        answer.peer_certificate.as_deref(),
        Some(&second.der[..]),
        "a new connection gets the new certificate"
    );
    assert_ada(&answer.body);

    let answer = post(&before, &https.https(), QUERY)
        .await
        .expect("the open connection still works");
    assert_eq!(
        answer.peer_certificate.as_deref(),
        Some(&first.der[..]),
        "the open connection was kept, not re-established"
    );
    assert_ada(&answer.body);
}

#[tokio::test]
async fn a_reload_with_a_mismatched_key_keeps_the_old_certificate() {
    let users = users_mock().await;
    let pki = Pki::new("test CA");
    let first = pki.server("gateway one");
    let second = pki.server("gateway two");
    let https = serve(
        &config(SERVER_TLS, &users.uri(), ""),
        &[
            ("certs/gateway.pem", &first.cert_pem),
            ("certs/gateway.key", &first.key_pem),
        ],
    )
    .await;
    // Half a rotation: the new certificate, the old key.
    https.write("certs/gateway.pem", &second.cert_pem);
    let problems = https.live.reload().await.expect_err("refused");
    assert!(
        problems.to_string().contains("does not match"),
        "{problems}"
    );
    let client = https_client(&pki.ca_pem, Protocol::Any);
    let answer = post(&client, &https.https(), QUERY).await.expect("served");
    assert_eq!(answer.peer_certificate.as_deref(), Some(&first.der[..]));
}

#[test]
fn sighup_makes_the_running_binary_serve_the_new_certificate() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let users = runtime.block_on(users_mock());
    let pki = Pki::new("test CA");
    let first = pki.server("gateway one");
    let second = pki.server("gateway two");
    let binary = Binary::start(
        &runtime,
        &config(SERVER_TLS, &users.uri(), ""),
        &[
            ("certs/gateway.pem", &first.cert_pem),
            ("certs/gateway.key", &first.key_pem),
        ],
    );
    let url = format!("https://{}/graphql", binary.addr);
    let peer = |ca: &str| {
        let client = https_client(ca, Protocol::Any);
        runtime
            .block_on(post(&client, &url, QUERY))
            .map(|answer| answer.peer_certificate)
    };
    assert_eq!(peer(&pki.ca_pem).expect("served"), Some(first.der.clone()));

    binary.dir.write("certs/gateway.pem", &second.cert_pem);
    binary.dir.write("certs/gateway.key", &second.key_pem);
    binary.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match peer(&pki.ca_pem) {
            Ok(Some(der)) if der == second.der => break,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!(
                "still not the new certificate after SIGHUP ({:?}); logs:\n{}",
                other.map(|der| der.map(|d| d.len())),
                binary.logs()
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// TLS to the services

#[tokio::test]
async fn a_private_ca_upstream_works_with_ca_file_and_fails_without() {
    let pki = Pki::new("internal CA");
    let upstream = https_upstream(&pki.server("users"), None).await;
    let ca = [("certs/internal-ca.pem", pki.ca_pem.as_str())];

    let trusted = TestGateway::builder()
        .schema(SDL)
        .file(ca[0].0, ca[0].1)
        .config(&config(
            "",
            "{users}",
            r#"ca_file = "certs/internal-ca.pem""#,
        ))
        .upstream_url("users", &upstream)
        .start()
        .await;
    assert_ada(&trusted.post(QUERY).await.json());

    // The system's roots do not know the private CA.
    let untrusted = TestGateway::builder()
        .schema(SDL)
        .config(&config("", "{users}", ""))
        .upstream_url("users", &upstream)
        .start()
        .await;
    assert_unavailable(&untrusted.post(QUERY).await.json());

    // Another CA in `ca_file` replaces, it does not add.
    let other = Pki::new("other CA");
    let wrong_ca = TestGateway::builder()
        .schema(SDL)
        .file("certs/other-ca.pem", &other.ca_pem)
        .config(&config("", "{users}", r#"ca_file = "certs/other-ca.pem""#))
        .upstream_url("users", &upstream)
        .start()
        .await;
    assert_unavailable(&wrong_ca.post(QUERY).await.json());
}

#[tokio::test]
async fn an_https_answer_over_max_response_bytes_is_refused_and_one_within_is_read() {
    let pki = Pki::new("internal CA");
    let upstream = https_upstream(&pki.server("users"), None).await;
    let ca = [("certs/internal-ca.pem", pki.ca_pem.as_str())];
    // `{"id":"1","name":"Ada"}` is 23 bytes.
    for (limit, read) in [(23, true), (22, false)] {
        let toml = config("", "{users}", r#"ca_file = "certs/internal-ca.pem""#).replace(
            "retries = 0",
            &format!("retries = 0\nmax_response_bytes = {limit}"),
        );
        let gateway = TestGateway::builder()
            .schema(SDL)
            .file(ca[0].0, ca[0].1)
            .config(&toml)
            .upstream_url("users", &upstream)
            .start()
            .await;
        let body = gateway.post(QUERY).await.json();
        if read {
            assert_ada(&body);
            // reqwest resolves `%2E%2E` as a URL would: a value making a
            // dot-segment is not sent through it at all.
            let dots = gateway.post(r#"{ user(id: "..") { id } }"#).await.json();
            assert_eq!(dots["data"]["user"], Value::Null, "{dots}");
            assert_eq!(dots["errors"][0]["extensions"]["code"], "BAD_REQUEST");
        } else {
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "UPSTREAM_BAD_RESPONSE",
                "{body}"
            );
        }
    }
}

#[tokio::test]
async fn an_upstream_certificate_for_another_host_name_is_refused() {
    let pki = Pki::new("internal CA");
    let elsewhere = pki.leaf(
        "users",
        &["users.internal.example"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &KeyPair::generate().expect("a key"),
    );
    let upstream = https_upstream(&elsewhere, None).await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .file("certs/internal-ca.pem", &pki.ca_pem)
        .config(&config(
            "",
            "{users}",
            r#"ca_file = "certs/internal-ca.pem""#,
        ))
        .upstream_url("users", &upstream)
        .start()
        .await;
    assert_unavailable(&gateway.post(QUERY).await.json());
}

#[tokio::test]
async fn an_upstream_requiring_a_client_certificate_works_with_one_and_fails_without() {
    let pki = Pki::new("internal CA");
    let clients = Pki::new("client CA");
    let upstream = https_upstream(&pki.server("users"), Some(&clients.ca_pem)).await;
    let client = clients.client("conflux");

    let with_certificate = TestGateway::builder()
        .schema(SDL)
        .file("certs/internal-ca.pem", &pki.ca_pem)
        .file("certs/gw.pem", &client.cert_pem)
        .file("certs/gw.key", &client.key_pem)
        .config(&config(
            "",
            "{users}",
            r#"ca_file = "certs/internal-ca.pem", client_cert_file = "certs/gw.pem", client_key_file = "certs/gw.key""#,
        ))
        .upstream_url("users", &upstream)
        .start()
        .await;
    assert_ada(&with_certificate.post(QUERY).await.json());

    let without = TestGateway::builder()
        .schema(SDL)
        .file("certs/internal-ca.pem", &pki.ca_pem)
        .config(&config(
            "",
            "{users}",
            r#"ca_file = "certs/internal-ca.pem""#,
        ))
        .upstream_url("users", &upstream)
        .start()
        .await;
    assert_unavailable(&without.post(QUERY).await.json());

    // A certificate from a CA the service does not trust.
    let stranger = Pki::new("stranger CA").client("conflux");
    let untrusted_client = TestGateway::builder()
        .schema(SDL)
        .file("certs/internal-ca.pem", &pki.ca_pem)
        .file("certs/gw.pem", &stranger.cert_pem)
        .file("certs/gw.key", &stranger.key_pem)
        .config(&config(
            "",
            "{users}",
            r#"ca_file = "certs/internal-ca.pem", client_cert_file = "certs/gw.pem", client_key_file = "certs/gw.key""#,
        ))
        .upstream_url("users", &upstream)
        .start()
        .await;
    assert_unavailable(&untrusted_client.post(QUERY).await.json());
}

#[test]
fn a_refused_upstream_certificate_is_logged_with_the_reason() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let pki = Pki::new("internal CA");
    let upstream = runtime.block_on(https_upstream(&pki.server("users"), None));
    let binary = Binary::start(&runtime, &config("", &upstream, ""), &[]);
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let body: Value = runtime.block_on(async {
        client
            .post(format!("http://{}/graphql", binary.addr))
            .json(&json!({ "query": QUERY }))
            .send()
            .await
            .expect("an answer")
            .json()
            .await
            .expect("JSON")
    });
    assert_unavailable(&body);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !binary.logs().contains("UnknownIssuer") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = binary.logs();
    let line = logs
        .lines()
        .find(|line| line.contains("upstream call failed"))
        .unwrap_or_else(|| panic!("no upstream failure logged:\n{logs}"));
    assert!(
        line.contains("invalid peer certificate") && line.contains("UnknownIssuer"),
        "the log line says why: {line}"
    );
}

// ---------------------------------------------------------------------------
// `check`

/// The problem at the position of `needle` in `toml` mentions every word.
fn assert_problem(checked: &Checked, toml: &str, needle: &str, mentions: &[&str]) {
    assert!(!checked.ok, "check passed");
    let line = checked.line_at(&format!("services.toml:{}: ", position(toml, needle)));
    for word in mentions {
        assert!(
            line.contains(word),
            "`{line}` does not mention `{word}`; all lines:\n{}",
            checked.lines.join("\n")
        );
    }
}

#[test]
fn check_names_a_missing_certificate_file() {
    let leaf = Pki::new("test CA").server("gateway");
    let toml = config(
        r#"tls = { cert_file = "certs/missing.pem", key_file = "certs/gateway.key" }"#,
        "http://127.0.0.1:9",
        "",
    );
    let checked = check_files(
        &toml,
        &[
            ("schema/schema.graphql", SDL),
            ("certs/gateway.key", &leaf.key_pem),
        ],
    );
    assert_problem(
        &checked,
        &toml,
        "\"certs/missing.pem\"",
        &["cert_file", "certs/missing.pem", "cannot read"],
    );
    assert_eq!(checked.lines.len(), 1, "{:?}", checked.lines);
}

#[test]
fn check_names_files_that_are_not_pem() {
    let toml = config(SERVER_TLS, "http://127.0.0.1:9", "");
    let checked = check_files(
        &toml,
        &[
            ("schema/schema.graphql", SDL),
            ("certs/gateway.pem", "not a certificate\n"),
            ("certs/gateway.key", "\x01\x02 not a key either"),
        ],
    );
    assert_problem(
        &checked,
        &toml,
        "\"certs/gateway.pem\"",
        &["cert_file", "certs/gateway.pem", "PEM"],
    );
    assert_problem(
        &checked,
        &toml,
        "\"certs/gateway.key\"",
        &["key_file", "certs/gateway.key", "PEM private key"],
    );
}

#[test]
fn check_names_a_key_that_does_not_match_its_certificate() {
    let pki = Pki::new("test CA");
    let (leaf, other) = (pki.server("gateway"), pki.server("other"));
    let toml = config(SERVER_TLS, "http://127.0.0.1:9", "");
    let checked = check_files(
        &toml,
        &[
            ("schema/schema.graphql", SDL),
            ("certs/gateway.pem", &leaf.cert_pem),
            ("certs/gateway.key", &other.key_pem),
        ],
    );
    assert_problem(
        &checked,
        &toml,
        "\"certs/gateway.key\"",
        &["certs/gateway.key", "does not match", "certs/gateway.pem"],
    );
}

#[test]
fn check_names_bad_files_of_a_service_tls_table() {
    let pki = Pki::new("test CA");
    let (client, other) = (pki.client("gw"), pki.client("other"));
    let toml = config(
        "",
        "https://127.0.0.1:9",
        r#"ca_file = "certs/ca.pem", client_cert_file = "certs/gw.pem", client_key_file = "certs/gw.key""#,
    );
    let checked = check_files(
        &toml,
        &[
            ("schema/schema.graphql", SDL),
            ("certs/ca.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n"),
            ("certs/gw.pem", &client.cert_pem),
            ("certs/gw.key", &other.key_pem),
        ],
    );
    assert_problem(
        &checked,
        &toml,
        "\"certs/ca.pem\"",
        &["service `users`", "ca_file", "certs/ca.pem"],
    );
    assert_problem(
        &checked,
        &toml,
        "\"certs/gw.key\"",
        &[
            "service `users`",
            "certs/gw.key",
            "does not match",
            "certs/gw.pem",
        ],
    );
}

#[test]
fn check_wants_client_certificate_and_key_together() {
    let client = Pki::new("test CA").client("gw");
    let toml = config(
        "",
        "https://127.0.0.1:9",
        r#"client_cert_file = "certs/gw.pem""#,
    );
    let checked = check_files(
        &toml,
        &[
            ("schema/schema.graphql", SDL),
            ("certs/gw.pem", &client.cert_pem),
        ],
    );
    assert_problem(
        &checked,
        &toml,
        "{ client_cert_file",
        &["client_cert_file", "client_key_file"],
    );
}

#[test]
fn check_accepts_valid_tls_files() {
    let pki = Pki::new("test CA");
    let (leaf, client) = (pki.server("gateway"), pki.client("gw"));
    let toml = config(
        SERVER_TLS,
        "https://127.0.0.1:9",
        r#"ca_file = "certs/ca.pem", client_cert_file = "certs/gw.pem", client_key_file = "certs/gw.key""#,
    );
    let checked = check_files(
        &toml,
        &[
            ("schema/schema.graphql", SDL),
            ("certs/gateway.pem", &leaf.cert_pem),
            ("certs/gateway.key", &leaf.key_pem),
            ("certs/ca.pem", &pki.ca_pem),
            ("certs/gw.pem", &client.cert_pem),
            ("certs/gw.key", &client.key_pem),
        ],
    );
    assert!(checked.ok, "{:?}", checked.lines);
}

// ---------------------------------------------------------------------------
// The real binary

/// `conflux serve` in a child process, its stderr kept.
struct Binary {
    serving: Serving,
    /// `127.0.0.1:PORT`.
    addr: String,
    dir: TempDir,
}

impl Binary {
    fn start(runtime: &tokio::runtime::Runtime, toml: &str, files: &[(&str, &str)]) -> Binary {
        let dir = TempDir::new();
        dir.write("services.toml", toml);
        dir.write("schema/schema.graphql", SDL);
        for (relative, text) in files {
            dir.write(relative, text);
        }
        let serving = runtime.block_on(Serving::start(dir.path(), "info", &[]));
        Binary {
            addr: serving.addr.clone(),
            serving,
            dir,
        }
    }

    fn logs(&self) -> String {
        self.serving.lines().join("\n")
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.serving.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }
}
