//! Talking to a running gateway over HTTP: requests as sentences, answers
//! as [`Reply`] (status, headers, body text, JSON).

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

/// An HTTP client bound to one gateway's base URL (`http://127.0.0.1:PORT`).
#[derive(Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
}

/// What the gateway answered.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|err| {
            panic!(
                "the body is not JSON ({err}); status {}, body: {}",
                self.status,
                preview(&self.text)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    }

    /// The media type of the response, without parameters, lower-cased.
    pub fn media_type(&self) -> String {
        self.header("content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }

    /// `extensions.code` of every error, in order.
    pub fn error_codes(&self) -> Vec<String> {
        error_codes(&self.json())
    }
}

/// `extensions.code` of every error of one GraphQL response.
pub fn error_codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e["extensions"]["code"]
                        .as_str()
                        .unwrap_or("<none>")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn preview(text: &str) -> String {
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &text[..end], text.len())
    } else {
        text.to_owned()
    }
}

impl Client {
    pub fn new(base: String) -> Client {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("build an HTTP client");
        Client { base, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST /graphql `{"query": query}`.
    pub async fn post(&self, query: &str) -> Reply {
        self.post_json(json!({ "query": query })).await
    }

    /// POST /graphql `{"query": query, "variables": variables}`.
    pub async fn post_vars(&self, query: &str, variables: Value) -> Reply {
        self.post_json(json!({ "query": query, "variables": variables }))
            .await
    }

    /// POST /graphql with any JSON body.
    pub async fn post_json(&self, body: Value) -> Reply {
        self.post_raw(body.to_string(), &[]).await
    }

    /// POST /graphql `{"query": query}` with extra request headers.
    pub async fn post_with_headers(&self, query: &str, headers: &[(&str, &str)]) -> Reply {
        self.post_raw(json!({ "query": query }).to_string(), headers)
            .await
    }

    /// POST /graphql with these bytes; `content-type: application/json`
    /// unless `headers` gives one.
    pub async fn post_raw(&self, body: impl Into<Vec<u8>>, headers: &[(&str, &str)]) -> Reply {
        let mut all: Vec<(&str, &str)> = Vec::new();
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            all.push(("content-type", "application/json"));
        }
        all.extend_from_slice(headers);
        self.request(Method::POST, "/graphql", &all, Some(body.into()))
            .await
    }

    /// GET /graphql?{query_string}, the query string sent as written.
    pub async fn get(&self, query_string: &str) -> Reply {
        self.get_with_headers(query_string, &[]).await
    }

    pub async fn get_with_headers(&self, query_string: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(
            Method::GET,
            &format!("/graphql?{query_string}"),
            headers,
            None,
        )
        .await
    }

    /// GET /graphql with these parameters, each percent-encoded.
    pub async fn get_params(&self, params: &[(&str, &str)]) -> Reply {
        self.get(&encode_params(params)).await
    }

    /// Any method on any path.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        match self.try_request(method.clone(), path, headers, body).await {
            Ok(reply) => reply,
            Err(err) => panic!(
                "{method} {}: no answer from the gateway: {err}",
                preview(path)
            ),
        }
    }

    /// Like [`Client::request`], but a failed exchange is an `Err`.
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self.http.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        Ok(Reply {
            status,
            headers,
            text,
        })
    }
}

/// `a=1&b=x%20y`: parameters percent-encoded as a browser would.
pub fn encode_params(params: &[(&str, &str)]) -> String {
    let url = reqwest::Url::parse_with_params("http://x/", params).expect("valid params");
    url.query().unwrap_or_default().to_owned()
}

/// Sends `request` (raw bytes) on a new TCP connection to `addr` and
/// returns the status of the answer, or `None` when the connection was
/// closed without one. For requests an HTTP client refuses to build.
pub async fn raw_http_status(addr: &str, request: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    // The server may answer and close before reading everything: a failed
    // write is not a failed exchange.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(2).any(|w| w == b"\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    read.ok()?;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next()?;
    status_line.split_whitespace().nth(1)?.parse().ok()
}
