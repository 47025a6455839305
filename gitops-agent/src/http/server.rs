//! The HTTP server, built to survive hostile clients.
//!
//! `axum::serve` keeps every connection as long as the client likes, so 10,000 idle or
//! slowloris connections would use up the agent's file descriptors and stop webhooks,
//! the poller's git fetches, Terraform's pipes and the database. Here:
//!
//! - the number of connections is capped, and the cap leaves file descriptors for the
//!   rest of the agent (the soft `RLIMIT_NOFILE` minus [`RESERVED_FDS`]);
//! - one peer address may hold only a share of the cap, so a single attacker cannot
//!   crowd out GitHub's deliveries;
//! - a request's headers must arrive within `header_read_timeout` (slowloris), a whole
//!   request must be answered within `request_timeout` (body included), and a
//!   connection lives at most `max_connection_age`, idle or not.
//!
//! When the cap is reached the server stops accepting until a connection ends: new
//! connections wait in the kernel's backlog instead of being refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// File descriptors kept for everything but HTTP connections: the databases, git,
/// Terraform's pipes and work files, the GitHub client.
pub const RESERVED_FDS: usize = 256;

/// The server's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// The most connections one peer address may hold at once.
    pub max_per_peer: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            max_per_peer: 512,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connection_age: Duration::from_secs(300),
        }
    }
}

impl Limits {
    /// These limits, with the connection cap lowered to what the process's file
    /// descriptor limit allows after [`RESERVED_FDS`].
    pub fn within_fd_limit(mut self) -> Limits {
        if let Ok((soft, _)) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        {
            let available = usize::try_from(soft)
                .unwrap_or(usize::MAX)
                .saturating_sub(RESERVED_FDS);
            self.max_connections = self.max_connections.min(available.max(16));
        }
        self.max_per_peer = self.max_per_peer.min(self.max_connections);
        self
    }
}

/// Connections held per peer address; a slot is given back when its guard drops.
#[derive(Clone, Default)]
struct Peers(Arc<Mutex<HashMap<IpAddr, usize>>>);

struct PeerSlot {
    peers: Peers,
    ip: IpAddr,
}

impl Peers {
    fn take(&self, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let held = map.entry(ip).or_insert(0);
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = map.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight
/// finish for up to `drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    let app = app.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Peers::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before accept:
                    // wait a moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(peer_slot) = peers.take(peer.ip(), limits.max_per_peer) else {
            tracing::debug!(%peer, "peer holds its share of connections; closing this one");
            continue;
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        let age = limits.max_connection_age;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(age, connection).await;
            drop(peer_slot);
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
}
