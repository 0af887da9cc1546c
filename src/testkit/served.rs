//! An axum router served on 127.0.0.1:0 on its own thread and multi-thread runtime:
//! what it costs to answer is never taken from the runtime of the code under test, and
//! its CPU shows under its own thread names.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

/// A router being served; stopped by [`Served::stop`] or, without waiting, on drop.
#[derive(Debug)]
pub struct Served {
    addr: SocketAddr,
    /// TCP connections accepted: how well the client reuses its connections.
    connections: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    name: &'static str,
}

impl Served {
    /// Binds a loopback port and serves `app` on a thread named `name`, whose runtime's
    /// workers are named `{name}-worker`. The port accepts connections on return.
    pub fn start(name: &'static str, app: axum::Router) -> std::io::Result<Self> {
        Self::start_on(name, std::net::TcpListener::bind("127.0.0.1:0")?, app)
    }

    /// Like [`Self::start`], on a listener the caller bound (a port to come back on).
    pub fn start_on(
        name: &'static str,
        listener: std::net::TcpListener,
        app: axum::Router,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicU64::new(0));
        let accepted = Arc::clone(&connections);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name(format!("{name}-worker"))
                    .build()?;
                runtime.block_on(async move {
                    use axum::serve::ListenerExt as _;
                    let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(
                        move |_: &mut tokio::net::TcpStream| {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        },
                    );
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await
                })
            })?;
        Ok(Self {
            addr,
            connections,
            stop: Some(stop_tx),
            thread: Some(thread),
            name,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Graceful stop: waits for the thread; an error if serving failed or panicked.
    pub fn stop(mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(format!("{} failed: {e}", self.name)),
            Some(Err(_)) => Err(format!("{} panicked", self.name)),
        }
    }
}

impl Drop for Served {
    // Without `stop`: tell the server to stop and let its thread end on its own, so a
    // test or a failed measurement never waits here for a connection to finish.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
