//! A stateful fake Kubernetes API server, for testing the kubernetes runtime where no
//! cluster can run.
//!
//! It keeps the API's semantics that a client depends on: Namespaces, ConfigMaps,
//! Secrets, Services, Deployments and Ingresses stored as JSON with `uid`,
//! `resourceVersion`, `generation` and `creationTimestamp`; 404, 409 (AlreadyExists,
//! stale update, apply conflict), 422 and 403 (creating in a terminating namespace) as
//! `metav1.Status` bodies; server-side apply with per-manager field ownership; label and
//! field selectors; Namespaces that terminate and take their contents with them; and a
//! simulated deployment controller whose rollouts can be made slow or to fail
//! ([`RolloutMode`]). `dryRun=All` is honoured; strategic merge patches merge lists by
//! key ([`strategic`]) and JSON patches get a 415 rather than a wrong merge. Every authenticated request is logged in RBAC's terms
//! ([`FakeKube::access`]) with its User-Agent. Watches stream changes ([`watch`]);
//! unknown fields are refused or dropped as `fieldValidation` says ([`schema`]), and
//! `/openapi/v3` tells kubectl so ([`openapi`]); `kubectl get` gets server-side tables
//! ([`table`]). A Deployment's rollout makes its ReplicaSet, Pods and Events
//! ([`pods`]), under the namespace's Pod Security admission ([`admission`]).
//!
//! It listens on 127.0.0.1 over HTTPS (a CA of its own, [`tls`]) with a bearer token,
//! and writes a kubeconfig that carries the CA, so that anything that reads a kubeconfig
//! (kube-rs, the provider under Terraform, `kubectl`) reaches it and verifies it. `cargo run -p slipway-tests --bin fake-kube-apiserver` runs it by hand.

pub mod admission;
pub mod controller;
pub mod errors;
pub mod fields;
pub mod kinds;
pub mod openapi;
pub mod pods;
pub mod schema;
pub mod selector;
pub mod server;
pub mod store;
pub mod strategic;
pub mod table;
pub mod tls;
pub mod validate;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use tokio::sync::oneshot;

pub use controller::Timing;
pub use store::{Access, RolloutMode, ROLLOUT_ANNOTATION};

/// State shared by the handlers and the simulated controllers.
pub struct Shared {
    store: Mutex<store::Store>,
    pub timing: Timing,
    token: String,
    /// `127.0.0.1:PORT`, for discovery documents.
    address: String,
    /// Wakes watches when the store may have changed.
    pub changed: tokio::sync::Notify,
    /// Set when the server stops, so that open watches end.
    closed: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Tells the watches to look at the store again.
    pub fn notify(&self) {
        self.changed.notify_waiters();
    }

    pub fn lock(&self) -> MutexGuard<'_, store::Store> {
        // Every store operation leaves it consistent before it can panic.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// 0 picks a free port.
    pub port: u16,
    pub token: String,
    pub timing: Timing,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 0,
            token: "slipway-fake-token".to_owned(),
            timing: Timing::default(),
        }
    }
}

/// A running fake API server; it stops when dropped.
pub struct FakeKube {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// The CA that signed the server's certificate (PEM).
    ca_pem: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeKube {
    /// Starts a server on a free port with default timing.
    pub async fn start() -> std::io::Result<FakeKube> {
        FakeKube::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> std::io::Result<FakeKube> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port)).await?;
        let addr = listener.local_addr()?;
        let tls = tls::generate()?;
        let listener = tls::TlsListener::new(listener, tls.config)?;
        let shared = Arc::new(Shared {
            store: Mutex::default(),
            timing: options.timing,
            token: options.token,
            address: addr.to_string(),
            changed: tokio::sync::Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        {
            // Every cluster has these.
            let mut store = shared.lock();
            for ns in ["default", "kube-system", "kube-public"] {
                store
                    .create(
                        kinds::namespaces(),
                        "",
                        json!({"metadata": {"name": ns}}),
                        "kube-apiserver",
                    )
                    .map_err(|e| std::io::Error::other(e.message))?;
            }
        }
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                eprintln!("fake-kube-apiserver stopped: {e}");
            }
        });
        Ok(FakeKube {
            shared,
            addr,
            ca_pem: tls.ca_pem,
            shutdown: Some(tx),
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA to trust for [`url`](Self::url) (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// A kubeconfig whose current context (`fake`) reaches this server and trusts its
    /// CA.
    pub fn kubeconfig(&self) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: {}\n",
            self.url(),
            self.shared.token
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Makes the next rollouts of `namespace/name` behave as `mode` (an annotation
    /// `fake.slipway.dev/rollout` on the Deployment takes precedence).
    pub fn set_rollout_mode(&self, namespace: &str, name: &str, mode: RolloutMode) {
        self.shared
            .lock()
            .rollout_modes
            .insert((namespace.to_owned(), name.to_owned()), mode);
    }

    /// Makes `image` one that no pod can pull: new pods that run it stay `Pending` in
    /// `ImagePullBackOff`.
    pub fn make_image_unpullable(&self, image: &str) {
        self.shared
            .lock()
            .unpullable_images
            .insert(image.to_owned());
    }

    /// Makes `image` one that runs as root, as most official images do: a pod that
    /// must run as non-root (and names no user) cannot start it.
    pub fn make_image_root(&self, image: &str) {
        self.shared.lock().root_images.insert(image.to_owned());
    }

    /// The stored object, as a GET would return it.
    pub fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let kind = kinds::KINDS
            .iter()
            .find(|k| k.group == group && k.plural == plural)?;
        self.shared.lock().get(kind, namespace, name).ok()
    }

    /// Request counts by verb (`get`, `list`, `apply`, `patch`, `delete`, …).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.shared.lock().requests.clone()
    }

    /// The User-Agent of every request to the Kubernetes API (empty for none).
    pub fn user_agents(&self) -> BTreeSet<String> {
        self.shared.lock().user_agents.clone()
    }

    /// Every (group, resource, verb) that authenticated clients used, in RBAC's terms.
    pub fn access(&self) -> BTreeSet<Access> {
        self.shared.lock().access.clone()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.notify();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
