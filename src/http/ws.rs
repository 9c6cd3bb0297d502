//! The `graphql-transport-ws` WebSocket protocol (docs/SUBSCRIPTIONS.md):
//! `GET /graphql` upgraded with that subprotocol carries subscriptions,
//! queries and mutations. `connection_init` (optionally with
//! `{"authorization": "Bearer …"}`; else the upgrade's `Authorization`
//! header) → `connection_ack`; `ping` → `pong`; `subscribe` → `next`…
//! `complete`, or `error` when the operation is refused; a client's
//! `complete` stops its operation. The server sends `ping` every
//! `keepalive_ms`.
//!
//! Close codes are the protocol's: 4400 a message that is not one of its
//! own, 4401 `subscribe` before the acknowledgement, 4403 an invalid token,
//! 4408 no `connection_init` in time, 4409 an id already running, 4429 a
//! second `connection_init`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, CONNECTION, UPGRADE};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::media::ResponseMedia;
use super::request::parse_request;
use super::{operation, Client, Peer};
use crate::auth::Claims;
use crate::gateway::Gateway;
use crate::subscribe::Subscriber;
use crate::telemetry::trace::RequestTrace;

pub const PROTOCOL: &str = "graphql-transport-ws";

/// How long a client has to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages waiting to be written to the socket, at most: a client that
/// reads slowly holds its operations back.
const OUTGOING: usize = 16;

/// Whether the request asks for a WebSocket.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let has = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    has(UPGRADE, "websocket") && has(CONNECTION, "upgrade")
}

/// Accepts the upgrade when the client speaks `graphql-transport-ws`.
pub async fn upgrade(gateway: Arc<Gateway>, client: Client, extensions: Extensions) -> Response {
    let mut request = axum::http::Request::new(());
    *request.headers_mut() = client.headers.clone();
    *request.extensions_mut() = extensions;
    let (mut parts, ()) = request.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let speaks = client
        .headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL);
    if !speaks {
        return (
            StatusCode::BAD_REQUEST,
            format!("the WebSocket subprotocol must be `{PROTOCOL}`"),
        )
            .into_response();
    }
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(client.ip, |info| Peer(Some(info.0.ip())));
    let headers = client.headers;
    ws.protocols([PROTOCOL])
        .on_upgrade(move |socket| serve(socket, gateway, headers, ip))
}

/// One connection: the protocol's state machine.
async fn serve(socket: WebSocket, gateway: Arc<Gateway>, headers: HeaderMap, ip: Peer) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<Message>(OUTGOING);
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut connection = Connection {
        gateway: gateway.clone(),
        out: out.clone(),
        headers,
        ip,
        claims: None,
        acknowledged: false,
        running: HashMap::new(),
    };
    let keepalive = gateway.config.subscriptions.keepalive;
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    let init_deadline = tokio::time::sleep(INIT_TIMEOUT);
    tokio::pin!(init_deadline);
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = pings.tick() => {
                let _ = out.send(text(json!({"type": "ping"}))).await;
                continue;
            }
            () = &mut init_deadline, if !connection.acknowledged => {
                connection.close(4408, "Connection initialisation timeout").await;
                break;
            }
        };
        let Some(Ok(message)) = message else { break };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => break,
            Message::Binary(_) => {
                connection
                    .close(4400, "binary messages are not part of the protocol")
                    .await;
                break;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
            connection.close(4400, "the message is not JSON").await;
            break;
        };
        if !connection.handle(message).await {
            break;
        }
        connection.running.retain(|_, task| !task.is_finished());
    }
    for (_, task) in connection.running.drain() {
        task.abort();
    }
    drop(connection);
    drop(out);
    let _ = writer.await;
}

struct Connection {
    gateway: Arc<Gateway>,
    out: mpsc::Sender<Message>,
    /// The upgrade request's headers, with the `connection_init` token.
    headers: HeaderMap,
    ip: Peer,
    claims: Option<Claims>,
    acknowledged: bool,
    /// Operations running, by the client's id.
    running: HashMap<String, JoinHandle<()>>,
}

impl Connection {
    /// Handles one message; `false` when the connection is closed.
    async fn handle(&mut self, message: Value) -> bool {
        let kind = message
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match kind {
            "connection_init" if self.acknowledged => {
                self.close(4429, "Too many initialisation requests").await;
                false
            }
            "connection_init" => self.init(message.get("payload")).await,
            "ping" => {
                let _ = self.out.send(text(json!({"type": "pong"}))).await;
                true
            }
            "pong" => true,
            "subscribe" if !self.acknowledged => {
                self.close(4401, "Unauthorized").await;
                false
            }
            "subscribe" => {
                let Some(id) = message.get("id").and_then(Value::as_str) else {
                    self.close(4400, "`subscribe` needs an `id`").await;
                    return false;
                };
                if self.running.get(id).is_some_and(|task| !task.is_finished()) {
                    self.close(4409, &format!("Subscriber for {id} already exists"))
                        .await;
                    return false;
                }
                let payload = message.get("payload").cloned().unwrap_or(Value::Null);
                let task = tokio::spawn(run_operation(
                    self.gateway.clone(),
                    self.client(),
                    self.claims.clone(),
                    id.to_owned(),
                    payload,
                    self.out.clone(),
                ));
                self.running.insert(id.to_owned(), task);
                true
            }
            "complete" => {
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    if let Some(task) = self.running.remove(id) {
                        task.abort();
                    }
                }
                true
            }
            _ => {
                self.close(4400, "unknown message type").await;
                false
            }
        }
    }

    /// `connection_init`: the token (its payload's `authorization`, else
    /// the upgrade's header) is verified now, once for the connection.
    async fn init(&mut self, payload: Option<&Value>) -> bool {
        let given = payload
            .and_then(|p| p.get("authorization").or_else(|| p.get("Authorization")))
            .and_then(Value::as_str);
        if let Some(token) = given {
            match HeaderValue::from_str(token) {
                Ok(value) => {
                    self.headers.insert(AUTHORIZATION, value);
                }
                Err(_) => {
                    self.close(4403, "Forbidden").await;
                    return false;
                }
            }
        }
        let mut client = self.client();
        match super::graphql::admit(&self.gateway, &mut client).await {
            Ok(claims) => {
                self.claims = claims;
                self.headers = client.headers;
                self.acknowledged = true;
                let _ = self.out.send(text(json!({"type": "connection_ack"}))).await;
                true
            }
            Err(refused) => {
                let (code, reason) = if refused.status() == StatusCode::TOO_MANY_REQUESTS {
                    (4429, "Too many requests")
                } else {
                    (4403, "Forbidden")
                };
                self.close(code, reason).await;
                false
            }
        }
    }

    fn client(&self) -> Client {
        Client {
            headers: self.headers.clone(),
            ip: self.ip,
            media: ResponseMedia::Json,
            incremental: false,
            trace: RequestTrace::from_headers(&self.headers),
            debug: false,
            // Neither the plan instead of the answer, nor a cost-based
            // rate limit, over a WebSocket: both are per HTTP request.
            explain: false,
            rate_key: None,
        }
    }

    async fn close(&self, code: u16, reason: &str) {
        let _ = self
            .out
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.to_owned().into(),
            })))
            .await;
    }
}

/// One `subscribe`: its results as `next` messages, then `complete`; or
/// one `error` when it is refused before running.
async fn run_operation(
    gateway: Arc<Gateway>,
    client: Client,
    claims: Option<Claims>,
    id: String,
    payload: Value,
    out: mpsc::Sender<Message>,
) {
    let request = match parse_request(payload) {
        Ok(request) => request,
        Err(message) => {
            let errors = json!([{ "message": message, "extensions": { "code": "BAD_REQUEST" } }]);
            let _ = out
                .send(text(json!({"type": "error", "id": id, "payload": errors})))
                .await;
            return;
        }
    };
    let subscriber = Subscriber {
        gateway: gateway.clone(),
        client: super::sse::client_key(&client, claims.as_ref()),
    };
    let mut outcome = operation::run_streamed(
        &gateway,
        &client,
        claims,
        request,
        false,
        false,
        Some(subscriber),
    )
    .await;
    if let Some(mut events) = outcome.events.take() {
        while let Some(payload) = events.next().await {
            if out.send(next_message(&id, &payload)).await.is_err() {
                return;
            }
        }
    } else if outcome.refusal.is_some() {
        let errors = serde_json::to_value(&outcome.errors).unwrap_or(Value::Null);
        let _ = out
            .send(text(json!({"type": "error", "id": id, "payload": errors})))
            .await;
        return;
    } else {
        match outcome.into_body() {
            Ok(body) => {
                if out.send(next_message(&id, &body)).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let _ = out.send(text(json!({"type": "complete", "id": id}))).await;
}

/// `{"type":"next","id":…,"payload":…}` around a result that is JSON text
/// already.
fn next_message(id: &str, payload: &[u8]) -> Message {
    let mut message = String::with_capacity(payload.len() + id.len() + 40);
    message.push_str("{\"type\":\"next\",\"id\":");
    message.push_str(&Value::String(id.to_owned()).to_string());
    message.push_str(",\"payload\":");
    message.push_str(&String::from_utf8_lossy(payload));
    message.push('}');
    Message::Text(message.into())
}

fn text(value: Value) -> Message {
    Message::Text(value.to_string().into())
}
