//! The load driver: keep-alive HTTP/1.1 clients (hyper's connection-level client, one
//! connection per task: cheap enough not to dominate a 2-core machine), the loop that
//! runs them for a time or a count, and its tally.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use palyra_actors::SecretString;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Unrecorded run of each side before a scenario's slices: first connections, page
/// faults and caches should not land in the first recorded slice.
pub const WARMUP: Duration = Duration::from_millis(500);

/// A request slower than this counts as an error and its connection is dropped, so a
/// stuck server cannot hang the run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What one client does per iteration.
pub trait Work: Send + Sync + 'static {
    /// One iteration: `Ok(true)` when every answer had the expected status.
    fn iterate(&self, client: &mut Client) -> impl Future<Output = Result<bool, BoxError>> + Send;
}

/// `GET /` on the baseline; 200 expected.
#[derive(Debug)]
pub struct GetOk;

impl Work for GetOk {
    async fn iterate(&self, client: &mut Client) -> Result<bool, BoxError> {
        let response = client.send(client.get("/", None)?).await?;
        Ok(response.status() == StatusCode::OK)
    }
}

/// One keep-alive HTTP/1.1 connection, reopened when the server closes it.
pub struct Client {
    addr: SocketAddr,
    host: HeaderValue,
    /// None after a failure: the next request opens a new connection.
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Self, BoxError> {
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            sender: Some(open(addr).await?),
        })
    }

    pub fn get(
        &self,
        path: &str,
        extra: Option<(HeaderName, &HeaderValue)>,
    ) -> Result<Request<Full<Bytes>>, BoxError> {
        self.request(Method::GET, path, extra, None)
    }

    pub fn post(
        &self,
        path: &str,
        extra: Option<(HeaderName, &HeaderValue)>,
        json: Bytes,
    ) -> Result<Request<Full<Bytes>>, BoxError> {
        self.request(Method::POST, path, extra, Some(json))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        extra: Option<(HeaderName, &HeaderValue)>,
        json: Option<Bytes>,
    ) -> Result<Request<Full<Bytes>>, BoxError> {
        // hyper's connection-level client adds no Host header; HTTP/1.1 requires one.
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if let Some((name, value)) = extra {
            builder = builder.header(name, value);
        }
        let body = match json {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                json
            }
            None => Bytes::new(),
        };
        Ok(builder.body(Full::new(body))?)
    }

    /// Drops the connection (gone, or in an unknown state after a timeout); the next
    /// request opens a new one.
    pub fn reset(&mut self) {
        self.sender = None;
    }

    /// Sends one request and reads the whole answer (so the connection can be reused).
    /// On any failure the connection is dropped; the next request opens a new one.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, BoxError> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => open(self.addr).await?,
        };
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        self.sender = Some(sender);
        Ok(Response::from_parts(parts, body))
    }
}

async fn open(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    // Requests are small and written at once; Nagle would only add delay.
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection's I/O driver; it ends when the sender is dropped or the peer closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// `Authorization: Bearer <admin token>`, marked sensitive.
pub fn bearer_header(token: &SecretString) -> Result<HeaderValue, BoxError> {
    let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))?;
    bearer.set_sensitive(true);
    Ok(bearer)
}

/// When a drive stops.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// After this long (requests in flight then still finish and count).
    For(Duration),
    /// After this many iterations in all.
    Count(u64),
}

/// Outcome of a drive, or of several added up.
#[derive(Debug, Default)]
pub struct Tally {
    /// Iterations whose answers all had the expected status.
    pub ok: u64,
    /// Unexpected statuses, transport failures and timeouts.
    pub errors: u64,
    /// Latency of each ok iteration, in nanoseconds; sorted by `finish`.
    pub latencies_ns: Vec<u64>,
    pub elapsed: Duration,
}

impl Tally {
    pub fn absorb(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latencies_ns.extend(other.latencies_ns);
        self.elapsed += other.elapsed;
    }

    pub fn finish(&mut self) {
        self.latencies_ns.sort_unstable();
    }

    /// Ok iterations per second of wall time.
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile in milliseconds (`q` in 0..=1); needs `finish` first.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        nearest_rank_ms(&self.latencies_ns, q)
    }
}

/// Nearest-rank percentile in milliseconds of sorted nanoseconds (`q` in 0..=1).
pub fn nearest_rank_ms(sorted_ns: &[u64], q: f64) -> f64 {
    let n = sorted_ns.len();
    if n == 0 {
        return 0.0;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted_ns[rank - 1] as f64 / 1e6
}

/// Runs `clients` concurrent clients, one connection each, until `limit`.
pub async fn drive<W: Work>(
    addr: SocketAddr,
    work: &Arc<W>,
    clients: usize,
    limit: Limit,
) -> Result<Tally, BoxError> {
    // Connect first, so that connection set-up is not timed.
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(Client::connect(addr).await?);
    }
    let start = Instant::now();
    let tickets = match limit {
        Limit::Count(n) => Some(Arc::new(AtomicU64::new(n))),
        Limit::For(_) => None,
    };
    let deadline = match limit {
        Limit::For(d) => Some(start + d),
        Limit::Count(_) => None,
    };
    let mut tasks = JoinSet::new();
    for mut client in connected {
        let work = Arc::clone(work);
        let tickets = tickets.clone();
        tasks.spawn(async move {
            let mut tally = Tally {
                latencies_ns: Vec::with_capacity(8192),
                ..Tally::default()
            };
            loop {
                let more = match (&tickets, deadline) {
                    (Some(t), _) => t
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok(),
                    (None, Some(deadline)) => Instant::now() < deadline,
                    (None, None) => false,
                };
                if !more {
                    break;
                }
                let began = Instant::now();
                match tokio::time::timeout(REQUEST_TIMEOUT, work.iterate(&mut client)).await {
                    Ok(Ok(true)) => {
                        tally.ok += 1;
                        let ns = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        tally.latencies_ns.push(ns);
                    }
                    Ok(Ok(false)) => tally.errors += 1,
                    Ok(Err(_)) | Err(_) => {
                        tally.errors += 1;
                        // The connection is gone (or unknown after a timeout): drop it,
                        // and do not spin if the server is down.
                        client.reset();
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        total.absorb(joined?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}
