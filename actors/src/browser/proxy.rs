//! The egress proxy of one browser: the only way its pages, frames, workers and
//! sockets reach anything. An HTTP/1.1 forward proxy on 127.0.0.1 (absolute-form
//! requests, CONNECT tunnels, WebSocket upgrades over either) that resolves each
//! host once, checks every address with [`UrlPolicy`], and connects to an address it
//! checked, so a DNS answer that changes between a check and a connection
//! (rebinding) reaches nothing. Only the browser's own processes may use it
//! (`peer.rs`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, PROXY_AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use url::Url;

use super::error::BrowserError;
use super::interceptor::{PageWatch, ProxyRefusal, lock};
use super::isolation::Isolation;
use super::peer;
use super::policy::UrlPolicy;

/// How long connecting to one destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections one browser may hold open to its proxy at once.
const MAX_CONNECTIONS: usize = 256;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A running proxy; dropping it ends it and every connection through it.
#[derive(Debug)]
pub(super) struct EgressProxy {
    pub(super) port: u16,
    /// The browser's process group, once it is started; connections from any other
    /// process are dropped.
    browser: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EgressProxy {
    /// Tells the proxy which process group is the browser's.
    pub(super) fn serve_browser(&self, pid: u32) {
        self.browser.store(pid, Ordering::Release);
    }
}

/// What every connection of one proxy shares.
struct Context {
    urls: UrlPolicy,
    /// The session's page watch: a refused request is noted there, so a navigation
    /// it failed answers `destination_refused`.
    watch: Arc<Mutex<PageWatch>>,
    isolation: Arc<Isolation>,
    local: SocketAddr,
    browser: Arc<AtomicU32>,
}

/// Why the proxy answers a request with no response (the browser sees a network
/// error): the connection is closed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Dropped(String);

/// Binds a proxy on 127.0.0.1 for one browser.
pub(super) async fn start(
    urls: UrlPolicy,
    watch: Arc<Mutex<PageWatch>>,
    isolation: Arc<Isolation>,
) -> Result<EgressProxy, BrowserError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| BrowserError::Unavailable(format!("cannot bind the browser's proxy: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| BrowserError::Unavailable(format!("the browser's proxy: {e}")))?;
    let browser = Arc::new(AtomicU32::new(0));
    let context = Arc::new(Context {
        urls,
        watch,
        isolation,
        local,
        browser: Arc::clone(&browser),
    });
    Ok(EgressProxy {
        port: local.port(),
        browser,
        task: tokio::spawn(accept(listener, context)),
    })
}

/// Accepts connections; the set of connection tasks ends with this task.
async fn accept(listener: TcpListener, context: Arc<Context>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if connections.len() >= MAX_CONNECTIONS {
                    tracing::warn!("a browser holds too many proxy connections; one dropped");
                    continue;
                }
                connections.spawn(serve(stream, peer, Arc::clone(&context)));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, context: Arc<Context>) {
    let group = context.browser.load(Ordering::Acquire);
    let local = context.local;
    let ours = tokio::task::spawn_blocking(move || peer::is_browser_socket(peer, local, group))
        .await
        .unwrap_or(false);
    if !ours {
        tracing::warn!(%peer, "a connection to a browser's egress proxy from another process dropped");
        return;
    }
    let service = hyper::service::service_fn(move |request| {
        let context = Arc::clone(&context);
        async move { handle(request, &context).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

async fn handle(
    request: Request<Incoming>,
    context: &Context,
) -> Result<Response<ProxyBody>, Dropped> {
    if request.method() == Method::CONNECT {
        return Ok(tunnel(request, context).await);
    }
    forward(request, context).await
}

/// A CONNECT tunnel (https:, wss:, and ws: through a proxy): refused with 403, which
/// the page sees as a failed connection.
async fn tunnel(request: Request<Incoming>, context: &Context) -> Response<ProxyBody> {
    let Some(authority) = request.uri().authority().map(ToString::to_string) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(url) = Url::parse(&format!("https://{authority}/")) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let upstream = match context.connect(&url).await {
        Ok(upstream) => upstream,
        Err(status_code) => return status(status_code),
    };
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(request).await {
            let mut upgraded = TokioIo::new(upgraded);
            let mut upstream = upstream;
            let _ = tokio::io::copy_bidirectional(&mut upgraded, &mut upstream).await;
        }
    });
    Response::new(empty())
}

/// A request in absolute form (`GET http://host/path`), forwarded in origin form on
/// a connection of its own; a WebSocket upgrade is joined to the upstream's.
async fn forward(
    mut request: Request<Incoming>,
    context: &Context,
) -> Result<Response<ProxyBody>, Dropped> {
    let uri = request.uri().clone();
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Ok(status(StatusCode::BAD_REQUEST));
    }
    let url = Url::parse(&uri.to_string()).map_err(|e| Dropped(e.to_string()))?;
    // A refused or unreachable destination gets no response at all: the page sees a
    // network error, never a page of ours it could take for the site's.
    let upstream = context
        .connect(&url)
        .await
        .map_err(|s| Dropped(format!("{url}: {s}")))?;
    let origin_form = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| Dropped(e.to_string()))?;
    *request.uri_mut() = origin_form;
    let headers = request.headers_mut();
    headers.remove(PROXY_AUTHORIZATION);
    headers.remove("proxy-connection");
    if !headers.contains_key(hyper::header::HOST)
        && let Ok(host) = HeaderValue::from_str(uri.authority().map_or("", |a| a.as_str()))
    {
        headers.insert(hyper::header::HOST, host);
    }
    let client_upgrade = hyper::upgrade::on(&mut request);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(upstream))
        .await
        .map_err(|e| Dropped(e.to_string()))?;
    tokio::spawn(connection.with_upgrades());
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|e| Dropped(e.to_string()))?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) {
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(upstream),
                )
                .await;
            }
        });
    }
    Ok(response.map(BodyExt::boxed))
}

impl Context {
    /// Checks the destination (the name, then every address it resolves to) and
    /// connects to one of the checked addresses. A refusal is 403, a destination
    /// that does not answer 502.
    async fn connect(&self, url: &Url) -> Result<TcpStream, StatusCode> {
        let checked = match self.urls.check_name(url) {
            Ok(()) => self.urls.destination(url).await,
            Err(e) => Err(e),
        };
        let addresses = match checked {
            Ok(addresses) => addresses,
            Err(refusal) => {
                self.refuse(url, refusal);
                return Err(StatusCode::FORBIDDEN);
            }
        };
        let port = url.port_or_known_default().unwrap_or(443);
        for ip in addresses {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((ip, port))).await
            {
                return Ok(stream);
            }
        }
        Err(StatusCode::BAD_GATEWAY)
    }

    /// Counts and notes a refused request; the log names the origin only (paths and
    /// queries can carry tokens).
    fn refuse(&self, url: &Url, refusal: BrowserError) {
        self.isolation.count_refused();
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(0);
        tracing::info!(origin = %format!("{host}:{port}"), "browser request refused by the egress proxy");
        lock(&self.watch).proxy_refused = Some(ProxyRefusal {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            error: refusal,
        });
    }
}

fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

fn status(code: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = code;
    response
}
