//! A real headless Chromium (Debian's `chromium`, installed by `tests/run`)
//! driven over the Chrome DevTools Protocol: a page opened at a URL, and
//! JavaScript evaluated in it. The protocol's WebSocket is spoken here
//! directly (text frames, masked as a client must), over tokio's TCP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::temp::TempDir;

pub struct Browser {
    child: Child,
    socket: TcpStream,
    next_id: u64,
    /// The page's session (`Target.attachToTarget`, flattened).
    session: String,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Chromium binary: `$CHROMIUM`, else `chromium` on the PATH.
fn binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

impl Browser {
    /// Starts Chromium headless with one blank page of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let profile = TempDir::new();
        let mut child = Command::new(binary())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start `{}` ({err}); tests/run installs chromium",
                    binary()
                )
            });
        let stderr = child.stderr.take().expect("stderr");
        let (found, announced) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(found) = found.take() {
                        let _ = found.send(url.to_owned());
                    }
                }
            }
        });
        let url = announced
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium announces its DevTools address");
        let rest = url.strip_prefix("ws://").expect("a ws:// URL");
        let (host, path) = rest.split_at(rest.find('/').expect("a path"));
        let socket = handshake(host, path).await;
        let mut browser = Browser {
            child,
            socket,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned();
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await;
        browser
    }

    /// Opens `url` in the page.
    pub async fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// Evaluates `expression` in the page (a promise awaited) and returns
    /// its value as JSON; panics with the exception when it throws.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let answer = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("the page's script failed: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Evaluates `condition` every 100 ms until it is true; panics after
    /// `within`.
    pub async fn wait_for(&mut self, condition: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.eval(condition).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let text = self.eval("document.body.innerText.slice(0, 3000)").await;
                panic!("the page never satisfied `{condition}`; it shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the page as it is.
    pub async fn screenshot(&mut self) -> String {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        shot["data"].as_str().expect("base64 PNG").to_owned()
    }

    /// Sends one command (to the page's session once attached) and returns
    /// its result, skipping the events that arrive meanwhile.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        send_text(&mut self.socket, message.to_string().as_bytes()).await;
        let reply = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let text = receive_text(&mut self.socket).await;
                let reply: Value = serde_json::from_slice(&text).expect("CDP sends JSON");
                if reply["id"] == id {
                    return reply;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method}"));
        if let Some(error) = reply.get("error") {
            panic!("{method} failed: {error}");
        }
        reply["result"].clone()
    }
}

/// Opens the WebSocket at `ws://host/path`.
async fn handshake(host: &str, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(host).await.expect("connect to DevTools");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket
        .write_all(request.as_bytes())
        .await
        .expect("send the upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = socket.read_u8().await.expect("read the upgrade answer");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
    socket
}

/// One masked text frame (RFC 6455 §5.2).
async fn send_text(socket: &mut TcpStream, payload: &[u8]) {
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    socket.write_all(&frame).await.expect("send a frame");
}

/// The next text message, its fragments joined; control frames skipped.
async fn receive_text(socket: &mut TcpStream) -> Vec<u8> {
    let mut message = Vec::new();
    loop {
        let first = socket.read_u8().await.expect("a frame");
        let second = socket.read_u8().await.expect("a frame length");
        let mut len = u64::from(second & 0x7f);
        if len == 126 {
            len = u64::from(socket.read_u16().await.expect("a length"));
        } else if len == 127 {
            len = socket.read_u64().await.expect("a length");
        }
        let mut payload = vec![0; usize::try_from(len).expect("a frame that fits")];
        socket.read_exact(&mut payload).await.expect("a payload");
        let opcode = first & 0x0f;
        if opcode >= 0x8 {
            continue;
        }
        message.extend_from_slice(&payload);
        if first & 0x80 != 0 {
            return message;
        }
    }
}
