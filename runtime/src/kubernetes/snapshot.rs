//! One read of every Slipway Deployment and Secret, shared by the reads of one round.
//!
//! `terraform plan` refreshes every application at once. Read one by one, that is a
//! LIST and a GET per application; read from a snapshot, it is one LIST of Deployments
//! and one of Secrets (`app.kubernetes.io/managed-by=slipway`, all namespaces) per plan,
//! however many applications there are.
//!
//! Where a snapshot's life ends: the runtime lives in the platform (`runtime serve
//! --backend kubernetes`), for many Terraform runs, so a time bound alone would let the
//! next run read the cluster as it was before a change made between the two (a `kubectl
//! scale` that a drift plan must show). A round of reads is therefore one client: the
//! platform calls [`Runtime::begin_reads`](crate::Runtime::begin_reads) at each client's
//! greeting, which drops the snapshot, so no read of a run is served from before the
//! run began. Scoping by client connection instead would need the connection's identity
//! in every call and a snapshot per client; dropping at the greeting costs a concurrent
//! run at most one more pair of LISTs, never one per application. Every write of this
//! runtime drops it too, so a read never misses this process's own change, and
//! [`FRESH_FOR`] bounds how stale a long-lived client (the MCP server) can read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::Client;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::apply::api_error;
use super::mapping::{LABEL_APPLICATION_ID, LABEL_MANAGED_BY, MANAGED_BY};
use super::ownership::owner_id;
use crate::RuntimeError;

/// How long a snapshot answers reads at most: long enough for the refresh of a whole
/// plan, short for a client that stays connected.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// Every Slipway Deployment, and every Slipway Secret by namespace and name.
#[derive(Default)]
pub struct Snapshot {
    deployments: Vec<Deployment>,
    secrets: BTreeMap<(String, String), Secret>,
}

impl Snapshot {
    /// The Deployment of application `id`.
    pub fn deployment(&self, id: &str) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| owner_id(&d.metadata, LABEL_APPLICATION_ID) == Some(id))
    }

    /// The Secret `name` in `namespace`.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.get(&(namespace.to_owned(), name.to_owned()))
    }
}

/// The current snapshot, if any, and when it was taken.
#[derive(Default)]
pub struct Snapshots {
    slot: Mutex<Option<(Instant, Arc<Snapshot>)>>,
}

impl Snapshots {
    /// A fresh snapshot: the current one, or a new one read now. Reads that arrive
    /// while one is being taken wait for it instead of taking their own.
    pub async fn get(&self, client: &Client) -> Result<Arc<Snapshot>, RuntimeError> {
        let mut slot = self.slot.lock().await;
        if let Some((taken, snapshot)) = slot.as_ref() {
            if taken.elapsed() < FRESH_FOR {
                return Ok(snapshot.clone());
            }
        }
        let snapshot = Arc::new(take(client).await?);
        *slot = Some((Instant::now(), snapshot.clone()));
        Ok(snapshot)
    }

    /// Drops the snapshot: this runtime is about to change, or has changed, objects, or
    /// a new round of reads begins.
    pub async fn invalidate(&self) {
        *self.slot.lock().await = None;
    }

    /// Runs a write with the snapshot dropped before it (no read of this plan's is
    /// served from before the write) and after it (nor one taken during it).
    pub async fn around<T>(&self, write: impl std::future::Future<Output = T>) -> T {
        self.invalidate().await;
        let outcome = write.await;
        self.invalidate().await;
        outcome
    }
}

async fn take(client: &Client) -> Result<Snapshot, RuntimeError> {
    let ours = ListParams::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let deployments: Api<Deployment> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::all(client.clone());
    let (deployments, secrets) = tokio::join!(deployments.list(&ours), secrets.list(&ours));
    let deployments = deployments.map_err(|e| api_error(e, "list Slipway's Deployments"))?;
    let secrets = secrets.map_err(|e| api_error(e, "list Slipway's Secrets"))?;
    Ok(Snapshot {
        deployments: deployments.items,
        secrets: secrets
            .items
            .into_iter()
            .map(|s| {
                let key = (
                    s.metadata.namespace.clone().unwrap_or_default(),
                    s.metadata.name.clone().unwrap_or_default(),
                );
                (key, s)
            })
            .collect(),
    })
}
