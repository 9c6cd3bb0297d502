//! HTTPS for the gateway's clients (`[server].tls`): HTTP/1.1 and HTTP/2
//! negotiated by ALPN, on the one listen address.
//!
//! The certificate is looked up at every handshake instead of being baked
//! into the rustls config: a reload that read new certificate files
//! rotates it for new connections, and connections already open keep the
//! keys they agreed on — nothing is dropped.
//!
//! Handshakes run in their own tasks, beside the accept loop, so a slow or
//! silent client never holds up the next one; only finished handshakes are
//! handed to the HTTP server.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::serve::{Listener, ListenerExt, TapIo};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::files::{self, TlsFile, TlsFileError};

/// A client gets this long to finish its handshake (a port scanner or a
/// stalled client would otherwise hold a task and a socket forever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for the HTTP server to take them.
const HANDSHAKEN_BACKLOG: usize = 128;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain-HTTP request to the HTTPS port gets before the connection
/// is closed: a reason a person can read, as a GraphQL error body.
const PLAIN_HTTP_BODY: &str = r#"{"errors":[{"message":"this address serves HTTPS only: use an https:// URL","extensions":{"code":"BAD_REQUEST"}}]}"#;

/// `[server].tls`, read and checked at load.
#[derive(Debug, Clone)]
pub struct ServerTlsConfig {
    /// `cert_file`, resolved against the config's directory.
    pub cert_file: PathBuf,
    /// `key_file`, resolved likewise.
    pub key_file: PathBuf,
    /// The chain and its key as read at load: what new connections get.
    pub certified_key: Arc<CertifiedKey>,
}

impl ServerTlsConfig {
    /// Reads and checks both files; every problem, each naming its file.
    pub fn load(cert_file: PathBuf, key_file: PathBuf) -> Result<Self, Vec<TlsFileError>> {
        let pair = files::key_pair(
            TlsFile {
                key: "cert_file",
                path: &cert_file,
            },
            TlsFile {
                key: "key_file",
                path: &key_file,
            },
        )?;
        Ok(ServerTlsConfig {
            cert_file,
            key_file,
            certified_key: pair.certified,
        })
    }
}

/// The TLS side of the gateway's listener. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

/// A TLS listener as the gateway's server loop (`gateway::serve_live`)
/// takes it: an axum `Listener`. The tap sets `TCP_NODELAY`.
pub type HttpsListener = TapIo<TlsListener, fn(&mut TlsStream<TcpStream>)>;

impl ServerTls {
    /// `current` is asked for the certificate at every handshake: the
    /// gateway passes a look-up into its live configuration, so reloading
    /// the configuration is all a rotation takes. When it has none (a
    /// reload removed `[server].tls`; turning TLS off needs a restart),
    /// the last certificate it gave — `initial` at first — keeps serving.
    pub fn new(
        initial: &ServerTlsConfig,
        current: impl Fn() -> Option<Arc<CertifiedKey>> + Send + Sync + 'static,
    ) -> ServerTls {
        let resolver = CurrentCertificate {
            current: Box::new(current),
            last: ArcSwap::new(initial.certified_key.clone()),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        // rustls takes the first of these the client also offers: HTTP/2
        // when it can, HTTP/1.1 otherwise; no ALPN at all is fine too
        // (the HTTP server tells the versions apart by the first bytes).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }
    }

    /// Accepts TLS on `listener` (call within a tokio runtime).
    pub fn listen(&self, listener: TcpListener) -> io::Result<HttpsListener> {
        let nodelay: fn(&mut TlsStream<TcpStream>) = set_nodelay;
        Ok(TlsListener::new(listener, self.acceptor.clone())?.tap_io(nodelay))
    }
}

/// Responses leave as TLS records in one flush; Nagle would hold the last
/// partial segment back until the client's delayed ACK.
fn set_nodelay(stream: &mut TlsStream<TcpStream>) {
    let _ = stream.get_ref().0.set_nodelay(true);
}

/// The certificate resolver: asks the live configuration each time.
struct CurrentCertificate {
    current: Box<dyn Fn() -> Option<Arc<CertifiedKey>> + Send + Sync>,
    last: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentCertificate").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match (self.current)() {
            Some(key) => {
                if !Arc::ptr_eq(&self.last.load(), &key) {
                    self.last.store(key.clone());
                    tracing::info!("TLS certificate reloaded: new connections get the new one");
                }
                Some(key)
            }
            None => Some(self.last.load_full()),
        }
    }
}

/// A listener that hands out TLS connections whose handshake is done.
/// Dropping it (serving stopped) stops accepting and closes the socket.
pub struct TlsListener {
    local_addr: SocketAddr,
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::AbortHandle,
}

impl TlsListener {
    /// Starts accepting on `listener`, each connection through `acceptor`.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let (ready, handshaken) = mpsc::channel(HANDSHAKEN_BACKLOG);
        let accepting = tokio::spawn(accept_loop(listener, acceptor, ready)).abort_handle();
        Ok(TlsListener {
            local_addr,
            handshaken,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                accept_error(err).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&acceptor, stream, peer)).await
            {
                Ok(Some(tls)) => {
                    // Fails only when serving stopped: the connection closes.
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(None) => {}
                Err(_elapsed) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Like axum's loop: a connection that died before it was accepted is
/// routine; anything else (out of file descriptors) is logged, then a
/// pause so the loop does not spin.
async fn accept_error(err: io::Error) {
    if matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The TLS handshake; `None` when the client went away, spoke plain HTTP
/// or failed the handshake (logged at debug: scanners do this all day).
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] != TLS_HANDSHAKE_RECORD => {
            tracing::debug!(%peer, "plain HTTP on the HTTPS port; answered 400");
            refuse_plain_http(stream).await;
            return None;
        }
        Ok(1) => {}
        _ => return None,
    }
    match acceptor.accept(stream).await {
        Ok(tls) => Some(tls),
        Err(err) => {
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            None
        }
    }
}

/// Answers 400 and closes. What the client sent is read first and the
/// close waits (briefly) for the client's: closing with unread data would
/// reset the connection and could destroy the answer before it is read.
async fn refuse_plain_http(mut stream: TcpStream) {
    let mut discard = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut discard)).await;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    );
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut discard).await, Ok(n) if n > 0) {}
    })
    .await;
}
