//! The local API's connections, bounded: a till has a few hundred file descriptors, and a
//! careless (or hostile) program on it must not be able to take them all by opening
//! connections that send nothing, half a request's headers, or half its body.
//!
//! - At most [`Limits::max_connections`] at once; beyond that a connection is answered 503
//!   at once and closed.
//! - A connection that sends nothing for `idle_timeout` is closed, and so is one whose
//!   request headers take longer than that.
//! - A request (its body included) gets `request_timeout` to be read and answered; the
//!   response itself may then stream for as long as it likes (the event stream).
//! - No idle keep-alive: a connection closes after its response, so the cap counts requests
//!   being served, not connections left open.
//! - A failed `accept` is logged once a second at most, and "too many open files" is named
//!   as what it is.

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
}

/// What a listener hands over: a stream that can say when it has bytes to read.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// Where connections come from: a TCP or a unix-socket listener.
pub trait Listener: Send + 'static {
    type Conn: Conn;
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Conn>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<Self::Conn> {
        tokio::net::TcpListener::accept(self).await.map(|(c, _)| c)
    }
}

impl Listener for tokio::net::UnixListener {
    type Conn = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<Self::Conn> {
        tokio::net::UnixListener::accept(self).await.map(|(c, _)| c)
    }
}

impl Conn for tokio::net::TcpStream {
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        tokio::net::TcpStream::readable(self)
    }
}

impl Conn for tokio::net::UnixStream {
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        tokio::net::UnixStream::readable(self)
    }
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 58\r\n\r\n{\"error\":\"too many connections to the API; try again soon\"}";

/// Serves `app` on the connections `listener` accepts, within `limits`, until `stop` turns
/// true; then lets requests in flight finish (their connections close after them).
pub async fn run<L: Listener>(
    app: Router,
    limits: Limits,
    listener: L,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut last_complaint: Option<tokio::time::Instant> = None;
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stopped(&mut stop) => return,
        };
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                if last_complaint.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    last_complaint = Some(tokio::time::Instant::now());
                    let emfile = e.raw_os_error() == Some(24);
                    tracing::error!(
                        event = "http_accept_failed",
                        error = %e,
                        "{}",
                        if emfile {
                            "the API cannot accept a connection: this process has no file descriptor left (EMFILE); raise LimitNOFILE or close idle connections"
                        } else {
                            "the API cannot accept a connection"
                        }
                    );
                }
                // Out of descriptors or the like: give it a moment instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.write_all(BUSY)).await;
            });
            continue;
        };
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_one(conn, app, limits, stop).await;
            drop(slot);
        });
    }
}

async fn serve_one<C: Conn>(conn: C, app: Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    // Nothing sent at all: not a client worth a slot.
    if !matches!(
        tokio::time::timeout(limits.idle_timeout, conn.readable()).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut app = app.clone();
        async move {
            let req = req.map(Body::new);
            match tokio::time::timeout(limits.request_timeout, app.call(req)).await {
                Ok(r) => r,
                Err(_) => Ok(timed_out()),
            }
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(conn), service);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => {}
        _ = stopped(&mut stop) => {
            served.as_mut().graceful_shutdown();
            let _ = served.await;
        }
    }
}

/// Resolves once `stop` turns true (without holding its value across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn timed_out() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({ "error": "the request was not sent in time" })),
    )
        .into_response()
}

/// Binds `listen` and serves `app` on it until `stop` turns true. A unix socket's folder is
/// made, a socket left by a previous run removed, and with `socket_mode` the socket gets
/// that mode whatever the umask. `what` names the server in the log.
pub async fn bind(
    listen: &crate::config::http::Listen,
    socket_mode: Option<u32>,
    app: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
    what: &'static str,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use crate::config::http::Listen;
    match listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let local = listener.local_addr()?;
            tracing::info!(event = "http_listening", server = what, address = %format!("http://{local}"), "{what} listening");
            Ok(tokio::spawn(run(app, limits, listener, stop)))
        }
        Listen::Unix(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // A socket left by a previous run would make bind fail.
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)?;
            if let Some(mode) = socket_mode {
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            }
            tracing::info!(event = "http_listening", server = what, address = %format!("unix:{}", path.display()), "{what} listening");
            Ok(tokio::spawn(run(app, limits, listener, stop)))
        }
    }
}
