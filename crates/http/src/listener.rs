//! The HTTP listener of a service: plain TCP, or TLS when a certificate and key are configured
//! (`HTTP_TLS_CERT_FILE`, `HTTP_TLS_KEY_FILE`).
//!
//! ```text
//! bind(addr, tls) ──► HttpListener ──► serve_on(listener, router, shutdown)
//!                        │ Tls: an accept task hands each connection to its own handshake
//!                        │      task (10 s bound); finished handshakes queue for axum
//!                        └ Plain: tokio's TcpListener
//! ```
//!
//! A failed or slow handshake (a plain-HTTP client, an untrusted client) costs only its own
//! task: it never holds up other connections.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use huleedu_service::settings::CommonSettings;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server certificate chain and key, loaded and checked at start-up.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// Why a certificate or key could not be used; names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {variable}={path:?}: {reason}")]
pub struct TlsSetupError {
    pub variable: &'static str,
    pub path: String,
    pub reason: String,
}

impl ServerTls {
    /// Load the files named by `HTTP_TLS_CERT_FILE` and `HTTP_TLS_KEY_FILE`.
    pub fn from_settings(cert: &Path, key: &Path) -> Result<Self, TlsSetupError> {
        Self::from_pem_files(cert, key, "HTTP_TLS_CERT_FILE", "HTTP_TLS_KEY_FILE")
    }

    /// Load a PEM certificate chain (`cert_var` names its setting) and its PEM private key.
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        cert_var: &'static str,
        key_var: &'static str,
    ) -> Result<Self, TlsSetupError> {
        let err = |variable: &'static str, path: &Path, reason: String| TlsSetupError {
            variable,
            path: path.display().to_string(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| {
                err(
                    cert_var,
                    cert,
                    format!("cannot read a PEM certificate: {e}"),
                )
            })?
            .collect::<Result<_, _>>()
            .map_err(|e| err(cert_var, cert, format!("not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(err(cert_var, cert, "no certificate in the file".into()));
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| err(key_var, key, format!("not a PEM private key: {e}")))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(cert_var, cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            err(
                key_var,
                key,
                format!("does not match the certificate or is unusable: {e}"),
            )
        })?;
        let mut config = config;
        // The servers speak HTTP/1.1 (axum's http1 feature).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// A bound HTTP listener: its address is known before serving (port 0 picks a free one).
#[derive(Debug)]
pub enum HttpListener {
    Plain(TcpListener),
    Tls(TlsListener),
}

/// Why the HTTP listener could not be set up; names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot listen on HTTP_ADDR={addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl HttpListener {
    /// The listener of a service: `HTTP_ADDR`, over TLS when `HTTP_TLS_CERT_FILE` and
    /// `HTTP_TLS_KEY_FILE` are set. Bound at start-up, so a taken port stops start-up.
    pub async fn from_settings(common: &CommonSettings) -> Result<Self, ListenError> {
        let tls = match &common.http_tls {
            Some(f) => Some(ServerTls::from_settings(&f.cert, &f.key)?),
            None => None,
        };
        let addr = common.http_addr;
        Self::bind(addr, tls)
            .await
            .map_err(|source| ListenError::Bind { addr, source })
    }

    /// Bind `addr`; with `tls`, connections are served over TLS.
    pub async fn bind(addr: SocketAddr, tls: Option<ServerTls>) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(addr).await?;
        Ok(match tls {
            None => HttpListener::Plain(tcp),
            Some(tls) => HttpListener::Tls(TlsListener::start(tcp, tls)?),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            HttpListener::Plain(l) => l.local_addr(),
            HttpListener::Tls(l) => Ok(l.addr),
        }
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        match self {
            HttpListener::Plain(_) => "http",
            HttpListener::Tls(_) => "https",
        }
    }
}

/// Serve `router` on `listener` until `shutdown` is cancelled (in-flight requests finish).
pub async fn serve_on(
    listener: HttpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, scheme = listener.scheme(), "HTTP server listening");
    let stop = async move { shutdown.cancelled().await };
    match listener {
        HttpListener::Plain(l) => axum::serve(l, router).with_graceful_shutdown(stop).await,
        HttpListener::Tls(l) => axum::serve(l, router).with_graceful_shutdown(stop).await,
    }
}

/// A service's HTTP server, serving in its own task ([`serve_on`]) from [`HttpServer::start`]
/// until [`HttpServer::stop`].
#[derive(Debug)]
pub struct HttpServer {
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: CancellationToken,
    /// How it ended, when it stopped by itself.
    ended: Option<Result<std::io::Result<()>, tokio::task::JoinError>>,
}

/// Why the HTTP server stopped by itself.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the HTTP server failed")]
    Failed(#[source] std::io::Error),
    #[error("the HTTP server task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl HttpServer {
    /// Serve `router` on `listener`.
    pub fn start(listener: HttpListener, router: Router) -> Self {
        let stop = CancellationToken::new();
        Self {
            task: tokio::spawn(serve_on(listener, router, stop.clone())),
            stop,
            ended: None,
        }
    }

    /// Wait until `shutdown` is cancelled, or the server stops by itself (an error: logged, and
    /// returned by [`HttpServer::stop`]) — either way the service then shuts down.
    pub async fn serve_until(&mut self, shutdown: &CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => tracing::info!("shutting down"),
            r = &mut self.task => {
                tracing::error!("HTTP server stopped unexpectedly; shutting down");
                self.ended = Some(r);
            }
        }
    }

    /// Stop accepting, let in-flight requests finish; the error if the server failed.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.stop.cancel();
        let ended = match self.ended {
            Some(r) => r,
            None => self.task.await,
        };
        match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServeError::Failed(e)),
            Err(e) => Err(ServeError::Task(e)),
        }
    }
}

/// TLS connections, handshaken off the accept loop.
#[derive(Debug)]
pub struct TlsListener {
    addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    stop: CancellationToken,
}

impl TlsListener {
    fn start(tcp: TcpListener, tls: ServerTls) -> std::io::Result<Self> {
        let addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = token.cancelled() => break,
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: breathe, then go on.
                            tracing::warn!(error = %e, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let acceptor = tls.acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { addr, ready, stop })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task ended (only when this listener is dropped): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
