//! Watches: `GET …?watch=1` streams `{"type": "ADDED"|"MODIFIED"|"DELETED", "object":
//! …}` lines as the store changes, from a `resourceVersion` on (or, without one, the
//! current objects as `ADDED` first), until `timeoutSeconds` or the server stops.
//!
//! The store keeps the last [`HISTORY`] changes; a watch from before them gets the
//! real server's `410 Gone` as an `ERROR` event, so clients re-list as they must.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use serde_json::{json, Value};

use super::errors::ApiError;
use super::kinds::Kind;
use super::selector::{field_selector_matches, labels_of, Selector};
use super::table;
use super::Shared;

/// How many changes the store remembers for watches.
pub const HISTORY: usize = 10_000;

/// The longest a watch stays open without `timeoutSeconds` (the real server picks
/// 30 to 60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Change {
    pub resource_version: u64,
    /// `deployments.apps`.
    pub resource: String,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
}

/// The changes the store remembers, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    changes: VecDeque<Change>,
}

impl History {
    pub fn push(&mut self, change: Change) {
        if self.changes.len() == HISTORY {
            self.changes.pop_front();
        }
        self.changes.push_back(change);
    }
}

/// What a watch request asked for.
pub struct Request {
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// `None`: start with the current objects.
    pub resource_version: Option<u64>,
    pub timeout: Option<Duration>,
    /// Objects as one-row Tables (`kubectl get -w`).
    pub table: bool,
}

struct Stream {
    shared: Arc<Shared>,
    request: Request,
    selector: Selector,
    since: u64,
    pending: VecDeque<Value>,
    deadline: Instant,
    done: bool,
}

/// One watch event, its object printed as a Table when the client asked for tables.
fn event(request: &Request, type_: &str, object: &Value) -> Value {
    if request.table {
        json!({"type": type_, "object": table::table(request.kind, std::slice::from_ref(object), None)})
    } else {
        json!({"type": type_, "object": object})
    }
}

impl Stream {
    fn matches(&self, resource: &str, namespace: &str, object: &Value) -> bool {
        resource == self.request.kind.qualified()
            && self
                .request
                .namespace
                .as_deref()
                .is_none_or(|n| n == namespace)
            && self.selector.matches(&labels_of(object))
            && self
                .request
                .field_selector
                .as_deref()
                .is_none_or(|fs| field_selector_matches(fs, object).unwrap_or(false))
    }

    /// Moves what changed since `self.since` into `pending`.
    fn collect(&mut self) {
        let store = self.shared.lock();
        let history = &store.history.changes;
        if let Some(oldest) = history.front() {
            if oldest.resource_version > self.since + 1 && self.since > 0 {
                let gone = ApiError::gone(&format!(
                    "too old resource version: {} ({})",
                    self.since,
                    oldest.resource_version - 1
                ));
                self.pending
                    .push_back(json!({"type": "ERROR", "object": gone.status()}));
                self.done = true;
                return;
            }
        }
        let mut latest = self.since;
        let mut found = Vec::new();
        for change in history.iter().filter(|c| c.resource_version > self.since) {
            latest = change.resource_version;
            if self.matches(&change.resource, &change.namespace, &change.object) {
                found.push(event(&self.request, change.kind, &change.object));
            }
        }
        drop(store);
        self.since = latest;
        self.pending.extend(found);
    }
}

/// Checks the request and starts the stream (an initial list first when no
/// `resourceVersion` was given).
pub fn start(shared: &Arc<Shared>, request: Request) -> Result<Body, ApiError> {
    let selector = match request.label_selector.as_deref() {
        Some(s) => Selector::parse(s).map_err(ApiError::bad_request)?,
        None => Selector::default(),
    };
    let mut pending = VecDeque::new();
    let since = match request.resource_version {
        Some(rv) => rv,
        None => {
            let store = shared.lock();
            let list = store.list(
                request.kind,
                request.namespace.as_deref(),
                request.label_selector.as_deref(),
                request.field_selector.as_deref(),
            )?;
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                pending.push_back(event(&request, "ADDED", &item));
            }
            store.resource_version_number()
        }
    };
    let deadline = Instant::now() + request.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let stream = Stream {
        shared: shared.clone(),
        request,
        selector,
        since,
        pending,
        deadline,
        done: false,
    };
    let body = futures::stream::unfold(stream, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                let line = Bytes::from(format!("{event}\n"));
                return Some((Ok::<_, std::convert::Infallible>(line), s));
            }
            if s.done || Instant::now() >= s.deadline || s.shared.is_closed() {
                return None;
            }
            let shared = s.shared.clone();
            // Registered before looking, so that a change made meanwhile wakes it.
            let notified = shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            s.collect();
            if s.pending.is_empty() && !s.done {
                // A missed wake-up only delays the next look.
                let wait = s
                    .deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(200));
                let _ = tokio::time::timeout(wait, notified).await;
            }
        }
    });
    Ok(Body::from_stream(body))
}
