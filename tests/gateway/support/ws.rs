//! A `graphql-transport-ws` client for the subscription tests: the real
//! WebSocket handshake (tokio-tungstenite) and the protocol's JSON
//! messages, read one at a time with a bound on the wait.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server did next.
#[derive(Debug, PartialEq)]
pub enum Received {
    Message(Value),
    /// The server closed the socket with this code.
    Closed(Option<u16>),
    /// Nothing within the wait.
    Nothing,
}

impl WsClient {
    /// Connects to `base`'s `/graphql` with the `graphql-transport-ws`
    /// subprotocol and these extra upgrade headers.
    pub async fn connect(base: &str, headers: &[(&str, &str)]) -> WsClient {
        let url = format!("{}/graphql", base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().expect("a ws request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().expect("a header"),
        );
        for (name, value) in headers {
            request.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                value.parse().expect("a value"),
            );
        }
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the upgrade is accepted");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap_or_default().to_owned()),
            Some("graphql-transport-ws".to_owned())
        );
        WsClient { socket }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    /// `connection_init` (with `payload` when given), expecting the ack.
    pub async fn init(&mut self, payload: Option<Value>) {
        let mut init = json!({"type": "connection_init"});
        if let Some(payload) = payload {
            init["payload"] = payload;
        }
        self.send(init).await;
        assert_eq!(
            self.receive(Duration::from_secs(5)).await,
            Received::Message(json!({"type": "connection_ack"}))
        );
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}))
            .await;
    }

    /// The next protocol message, skipping the server's keepalive `ping`s
    /// unless `pings` asks for them.
    pub async fn receive(&mut self, within: Duration) -> Received {
        self.receive_inner(within, false).await
    }

    pub async fn receive_with_pings(&mut self, within: Duration) -> Received {
        self.receive_inner(within, true).await
    }

    async fn receive_inner(&mut self, within: Duration, pings: bool) -> Received {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Received::Nothing,
                Ok(next) => next,
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("JSON messages");
                    if !pings && value["type"] == "ping" {
                        continue;
                    }
                    return Received::Message(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Received::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }
}
