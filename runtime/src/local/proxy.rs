//! The stable address of a public port: a TCP proxy on a port allocated once for the
//! application, balancing connections round-robin over its healthy replicas.
//!
//! Clients keep the proxy's address while replicas come and go (restarts, rolling
//! updates), so the endpoint survives both. A replica leaves the rotation the moment its
//! health flag drops or the rollout removes it; the rollout then waits for its open
//! connections to drain before stopping it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::kept::KeptFd;
use super::supervisor::ReplicaHealth;

/// How long a client connection waits for a healthy replica (say, while the only one
/// restarts) before it is closed.
const WAIT_FOR_BACKEND: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One replica's port behind a proxy.
#[derive(Debug)]
pub struct Backend {
    pub replica_id: String,
    pub addr: SocketAddr,
    pub health: Arc<ReplicaHealth>,
    /// Connections open (or being opened) to this backend.
    active: AtomicUsize,
}

impl Backend {
    pub fn new(replica_id: String, addr: SocketAddr, health: Arc<ReplicaHealth>) -> Arc<Backend> {
        Arc::new(Backend {
            replica_id,
            addr,
            health,
            active: AtomicUsize::new(0),
        })
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

#[derive(Debug, Default)]
struct Pool {
    backends: RwLock<Vec<Arc<Backend>>>,
    next: AtomicUsize,
}

/// Releases a backend's connection count when the connection ends.
struct Lease(Arc<Backend>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// Picks the next healthy backend, skipping `tried`, and counts the connection on it
    /// while still holding the lock, so that a backend removed afterwards is seen busy
    /// by the drain.
    fn lease(&self, tried: &[SocketAddr]) -> Option<Lease> {
        let backends = self.backends.read().ok()?;
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| &backends[(start + k) % n])
            .find(|b| b.health.is_healthy() && !tried.contains(&b.addr))
            .map(|b| {
                b.active.fetch_add(1, Ordering::AcqRel);
                Lease(b.clone())
            })
    }
}

/// A listening proxy. Dropping it closes the listener.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    pool: Arc<Pool>,
    task: JoinHandle<()>,
    /// The watchdog's copy of the listening socket, let go with the proxy.
    _kept: Option<KeptFd>,
}

impl Proxy {
    /// Listens on `127.0.0.1:port` (0: any free port).
    pub async fn bind(port: u16) -> std::io::Result<Proxy> {
        Self::serve(Self::listen(port).await?, None)
    }

    /// The listening socket for `127.0.0.1:port` (0: any free port).
    pub async fn listen(port: u16) -> std::io::Result<TcpListener> {
        TcpListener::bind(("127.0.0.1", port)).await
    }

    /// Proxies the connections `listener` accepts; `kept`: the watchdog's copy of it.
    pub fn serve(listener: TcpListener, kept: Option<KeptFd>) -> std::io::Result<Proxy> {
        let port = listener.local_addr()?.port();
        let pool = Arc::new(Pool::default());
        let task = tokio::spawn(accept_loop(listener, pool.clone()));
        Ok(Proxy {
            port,
            pool,
            task,
            _kept: kept,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn add(&self, backend: Arc<Backend>) {
        if let Ok(mut backends) = self.pool.backends.write() {
            backends.retain(|b| b.replica_id != backend.replica_id);
            backends.push(backend);
        }
    }

    /// Takes a replica out of the rotation; returns its backend so it can be drained.
    pub fn remove(&self, replica_id: &str) -> Option<Arc<Backend>> {
        let mut backends = self.pool.backends.write().ok()?;
        let pos = backends.iter().position(|b| b.replica_id == replica_id)?;
        Some(backends.remove(pos))
    }

    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.pool
            .backends
            .read()
            .map(|b| b.clone())
            .unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until a removed backend has no open connection, or `timeout` passes.
pub async fn drain(backend: &Backend, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while backend.active() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accept_loop(listener: TcpListener, pool: Arc<Pool>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(serve(client, pool.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(mut client: TcpStream, pool: Arc<Pool>) {
    let _ = client.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + WAIT_FOR_BACKEND;
    let mut tried: Vec<SocketAddr> = Vec::new();
    loop {
        let Some(lease) = pool.lease(&tried) else {
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            // Every healthy backend failed or none is healthy: try them all again soon.
            tried.clear();
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let addr = lease.0.addr;
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(mut upstream)) => {
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                drop(lease);
                return;
            }
            _ => {
                // Crashed since its last health check: try the next replica.
                tried.push(addr);
                drop(lease);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server(tag: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let _ = s.write_all(tag.as_bytes()).await;
                });
            }
        });
        addr
    }

    fn healthy() -> Arc<ReplicaHealth> {
        let h = Arc::new(ReplicaHealth::default());
        h.set(true);
        h
    }

    async fn fetch(port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn balances_over_healthy_backends_and_skips_dead_ones() {
        let proxy = Proxy::bind(0).await.unwrap();
        proxy.add(Backend::new("a".into(), echo_server("a").await, healthy()));
        proxy.add(Backend::new("b".into(), echo_server("b").await, healthy()));
        let unhealthy = Arc::new(ReplicaHealth::default());
        proxy.add(Backend::new("c".into(), echo_server("c").await, unhealthy));
        // A backend whose process died: nothing listens on its port.
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        proxy.add(Backend::new("d".into(), dead_addr, healthy()));
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(fetch(proxy.port()).await);
        }
        assert!(seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()));
        assert!(seen.iter().all(|s| s == "a" || s == "b"), "{seen:?}");
        let removed = proxy.remove("a").unwrap();
        // Connections that ended a moment ago are released asynchronously.
        drain(&removed, Duration::from_secs(10)).await;
        assert_eq!(removed.active(), 0);
        for _ in 0..4 {
            assert_eq!(fetch(proxy.port()).await, "b");
        }
        let port = proxy.port();
        drop(proxy);
        let mut closed = false;
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(closed, "a dropped proxy stops listening");
    }
}
