//! The plumbing every simulator shares: a hyper HTTP/1 server on loopback that can go
//! down (its port closes: connections are refused), delay answers, and drop a connection
//! without answering.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// A request as the simulator's logic sees it.
#[derive(Debug, Clone)]
pub struct SimRequest {
    pub method: Method,
    pub path: String,
    /// The raw query string (without `?`), empty when there is none.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl SimRequest {
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// What the simulator does with a request.
pub enum Reply {
    /// Answer (after `delay`, which comes *after* any state change: a slow answer to a
    /// request that already took effect).
    Respond {
        response: Response<Full<Bytes>>,
        delay: Duration,
        /// Held back until this opens, as well.
        gate: Option<Gate>,
    },
    /// Close the connection without answering: the response is lost.
    Drop,
}

impl Reply {
    pub fn json(status: StatusCode, body: &serde_json::Value, delay: Duration) -> Reply {
        Self::bytes(status, Bytes::from(body.to_string()), Vec::new(), delay)
    }

    pub fn bytes(
        status: StatusCode,
        body: Bytes,
        headers: Vec<(String, String)>,
        delay: Duration,
    ) -> Reply {
        let mut b = Response::builder()
            .status(status)
            .header("content-type", "application/json");
        for (k, v) in headers {
            b = b.header(k, v);
        }
        match b.body(Full::new(body)) {
            Ok(response) => Reply::Respond {
                response,
                delay,
                gate: None,
            },
            Err(_) => Reply::Drop,
        }
    }
}

impl Reply {
    /// The same reply, held back until `gate` opens (if given).
    pub fn gated(self, gate: Option<Gate>) -> Reply {
        match self {
            Reply::Respond {
                response, delay, ..
            } => Reply::Respond {
                response,
                delay,
                gate,
            },
            Reply::Drop => Reply::Drop,
        }
    }
}

/// Holds answers back until a test opens it, so that a test orders events ("the till has
/// refused the scan, now the consume's answer arrives") instead of racing two latencies.
#[derive(Clone, Debug)]
pub struct Gate(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Gate {
        Gate(std::sync::Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Gate {
    /// Lets every held answer (and every later one) through.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn passed(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: SimRequest) -> Reply;
}

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response deliberately dropped")
    }
}
impl std::error::Error for Dropped {}

pub struct SimServer {
    addr: SocketAddr,
    handler: Arc<dyn Handler>,
    /// The accept loop; `None` while the server is down.
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl SimServer {
    /// Starts on a free loopback port.
    pub async fn start(handler: Arc<dyn Handler>) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = SimServer {
            addr,
            handler,
            accept: Mutex::new(None),
        };
        server.serve(listener);
        Ok(server)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Down: the port is closed and every open connection cut, so calls fail to connect.
    /// Up again: the same port reopens.
    pub async fn set_down(&self, down: bool) -> std::io::Result<()> {
        if down {
            let task = self.lock().take();
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
            return Ok(());
        }
        if self.lock().is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    pub fn is_down(&self) -> bool {
        self.lock().is_none()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.accept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serve(&self, listener: TcpListener) {
        let handler = self.handler.clone();
        let task = tokio::spawn(async move {
            // Dropping this set (when the task is aborted) cuts every connection.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let handler = handler.clone();
                        conns.spawn(async move {
                            let svc = service_fn(move |req: Request<Incoming>| {
                                let handler = handler.clone();
                                async move { serve_one(handler, req).await }
                            });
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        *self.lock() = Some(task);
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(t) = self.lock().take() {
            t.abort();
        }
    }
}

async fn serve_one(
    handler: Arc<dyn Handler>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let sim_req = SimRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
    };
    match handler.handle(sim_req) {
        Reply::Respond {
            response,
            delay,
            gate,
        } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(g) = gate {
                g.passed().await;
            }
            Ok(response)
        }
        Reply::Drop => Err(Dropped),
    }
}
