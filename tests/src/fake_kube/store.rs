//! The object store and the API's write semantics: create, update, merge patch,
//! server-side apply and delete, with `resourceVersion`, `generation`, `uid`,
//! `managedFields`, validation and defaulting.
//!
//! Objects are JSON, stored per (resource, namespace, name). Every change bumps one
//! global `resourceVersion`; a write that changes nothing changes nothing, as with the
//! real server (a no-op apply keeps the resourceVersion).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Map, Value};

use super::errors::ApiError;
use super::fields::{self, Entry};
use super::kinds::{self, Kind};
use super::schema::{self, Validation};
use super::selector::{field_selector_matches, labels_of, Selector};
use super::strategic;
use super::validate;
use super::watch::{Change, History};

/// (qualified resource, namespace or "", name).
pub type Key = (String, String, String);

/// How a Deployment's next rollouts behave in the simulated controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RolloutMode {
    /// Completes after one controller step.
    #[default]
    Normal,
    /// One replica per step, with observable progress in between.
    Slow,
    /// New replicas never become available; `Progressing` turns False with
    /// `ProgressDeadlineExceeded` after a few steps.
    Fail,
    /// New pods' containers exit at once: `CrashLoopBackOff`, and no deadline within
    /// a test's time (the real one is ten minutes).
    CrashLoop,
}

impl RolloutMode {
    pub fn parse(s: &str) -> Option<RolloutMode> {
        match s {
            "normal" => Some(RolloutMode::Normal),
            "slow" => Some(RolloutMode::Slow),
            "fail" => Some(RolloutMode::Fail),
            "crashloop" => Some(RolloutMode::CrashLoop),
            _ => None,
        }
    }
}

/// The annotation on a Deployment that selects its [`RolloutMode`].
pub const ROLLOUT_ANNOTATION: &str = "fake.slipway.dev/rollout";
const ROLLOUT_POINTER: &str = "/metadata/annotations/fake.slipway.dev~1rollout";

#[derive(Debug, Clone)]
pub struct Stored {
    pub object: Value,
    pub managers: Vec<Entry>,
}

/// What a write did, for the controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    /// A Deployment's spec changed (or it was created): run the controller.
    DeploymentChanged {
        namespace: String,
        name: String,
    },
    /// A Namespace began terminating: run the namespace finalizer.
    NamespaceTerminating {
        name: String,
    },
    /// A Deployment is being deleted in the foreground: finish it after a while.
    ForegroundDeletion {
        namespace: String,
        name: String,
    },
}

/// The body of a PATCH that is not an apply.
#[derive(Debug, Clone, Copy)]
pub enum Patch<'a> {
    /// `application/merge-patch+json`.
    Merge(&'a Value),
    /// `application/strategic-merge-patch+json`.
    Strategic(&'a Value),
}

/// Clone: a dry run works on a copy and throws it away.
#[derive(Default, Clone)]
pub struct Store {
    pub objects: BTreeMap<Key, Stored>,
    resource_version: u64,
    uids: u64,
    cluster_ips: u32,
    /// Rollout modes set through the fake's own API, by (namespace, name).
    pub rollout_modes: HashMap<(String, String), RolloutMode>,
    /// Counts of requests by verb, for tests and the benchmark.
    pub requests: BTreeMap<String, u64>,
    /// Every authorized request as RBAC sees it, for deriving the permissions a client
    /// needs.
    pub access: BTreeSet<Access>,
    /// The User-Agent of every authenticated request (empty when there was none).
    pub user_agents: BTreeSet<String>,
    /// How the write being served is validated against the schema (set per request).
    pub validation: Validation,
    /// The `Warning` headers the write being served earned.
    pub warnings: Vec<String>,
    /// Recent changes, for watches.
    pub history: History,
    /// Images no pod can pull (`ImagePullBackOff`).
    pub unpullable_images: BTreeSet<String>,
    /// Images whose user is root (refused under `runAsNonRoot`).
    pub root_images: BTreeSet<String>,
    /// For names the controllers make up.
    serial: u64,
}

/// One request in RBAC's terms: API group, resource (`deployments/status` for a
/// subresource) and verb (`get`, `list`, `watch`, `create`, `update`, `patch`,
/// `delete`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub group: String,
    pub resource: String,
    pub verb: String,
}

pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    rfc3339(secs)
}

/// Seconds since the epoch as RFC 3339 UTC (civil-from-days, Howard Hinnant's algorithm).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn key(kind: &Kind, namespace: &str, name: &str) -> Key {
    (kind.qualified(), namespace.to_owned(), name.to_owned())
}

/// The spec-like part of an object: everything but metadata and status.
fn spec_part(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// Removes what clients may not set from a request body.
fn strip_server_fields(body: &mut Value, kind: &Kind) {
    if let Some(meta) = body.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for f in [
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "deletionTimestamp",
            "selfLink",
        ] {
            meta.remove(f);
        }
    }
    if kind.status {
        if let Some(m) = body.as_object_mut() {
            m.remove("status");
        }
    }
}

impl Store {
    fn next_resource_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    pub fn current_resource_version(&self) -> String {
        self.resource_version.to_string()
    }

    pub fn resource_version_number(&self) -> u64 {
        self.resource_version
    }

    /// Remembers a change for watches, at the current resourceVersion (a deleted
    /// object is reported with that resourceVersion, as the real server does).
    fn record(&mut self, resource: String, namespace: &str, kind: &'static str, object: &Value) {
        let mut object = object.clone();
        if kind == "DELETED" {
            object["metadata"]["resourceVersion"] = json!(self.current_resource_version());
        }
        self.history.push(Change {
            resource_version: self.resource_version,
            resource,
            namespace: namespace.to_owned(),
            kind,
            object,
        });
    }

    fn new_uid(&mut self) -> String {
        self.uids += 1;
        // Shaped like a UUID; unique for the server's life.
        format!("5f1a7e00-0000-4000-8000-{:012x}", self.uids)
    }

    pub fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&key(kind, namespace, name))
            .map(|s| s.object.clone())
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    pub fn list(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Value, ApiError> {
        let selector = match label_selector {
            Some(s) => Selector::parse(s).map_err(ApiError::bad_request)?,
            None => Selector::default(),
        };
        let qualified = kind.qualified();
        let mut items = Vec::new();
        for ((k, ns, _), stored) in &self.objects {
            if *k != qualified || namespace.is_some_and(|n| n != ns) {
                continue;
            }
            if !selector.matches(&labels_of(&stored.object)) {
                continue;
            }
            if let Some(fs) = field_selector {
                if !field_selector_matches(fs, &stored.object).map_err(ApiError::bad_request)? {
                    continue;
                }
            }
            items.push(stored.object.clone());
        }
        Ok(json!({
            "apiVersion": kind.api_version(),
            "kind": format!("{}List", kind.kind),
            "metadata": {"resourceVersion": self.current_resource_version()},
            "items": items
        }))
    }

    /// Namespaced writes need an existing namespace; creates need one not terminating.
    fn check_namespace(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        creating: bool,
    ) -> Result<(), ApiError> {
        if !kind.namespaced {
            return Ok(());
        }
        let ns = self
            .objects
            .get(&key(kinds::namespaces(), "", namespace))
            .ok_or_else(|| ApiError::not_found(kinds::namespaces(), namespace))?;
        if creating && ns.object.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::forbidden(
                kind,
                name,
                &format!("unable to create new content in namespace {namespace} because it is being terminated"),
            ));
        }
        Ok(())
    }

    /// Stores `object` as the new state of `(kind, namespace, name)`: identity, defaults,
    /// validation, generation, resourceVersion and managedFields.
    fn commit(
        &mut self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        mut object: Value,
        managers: Vec<Entry>,
    ) -> Result<(Value, Effect), ApiError> {
        let k = key(kind, namespace, name);
        let old = self.objects.get(&k).cloned();
        let old_object = old.as_ref().map(|s| &s.object);
        {
            let Some(obj) = object.as_object_mut() else {
                return Err(ApiError::bad_request("the object must be a JSON object"));
            };
            obj.insert("apiVersion".into(), json!(kind.api_version()));
            obj.insert("kind".into(), json!(kind.kind));
            let meta = obj
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            let Some(meta) = meta.as_object_mut() else {
                return Err(ApiError::bad_request("metadata must be an object"));
            };
            meta.insert("name".into(), json!(name));
            if kind.namespaced {
                meta.insert("namespace".into(), json!(namespace));
            } else {
                meta.remove("namespace");
            }
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
            ] {
                match old_object.and_then(|o| o.pointer(&format!("/metadata/{f}"))) {
                    Some(v) => {
                        meta.insert(f.into(), v.clone());
                    }
                    None => {
                        meta.remove(f);
                    }
                }
            }
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        self.warnings.extend(schema::check(
            kind,
            namespace,
            name,
            &mut object,
            self.validation,
        )?);
        if old.is_none() {
            let uid = self.new_uid();
            object["metadata"]["uid"] = json!(uid);
            object["metadata"]["creationTimestamp"] = json!(now());
        }
        let cluster_ip = if kind.kind == "Service" {
            self.cluster_ips += 1;
            format!(
                "10.96.{}.{}",
                (self.cluster_ips / 250) % 250,
                self.cluster_ips % 250 + 1
            )
        } else {
            String::new()
        };
        validate::apply_defaults(kind, &mut object, &cluster_ip);
        let causes = validate::validate(kind, name, &object, old_object);
        if !causes.is_empty() {
            return Err(ApiError::invalid(kind, name, &causes));
        }
        if kind.generation {
            let generation = match old_object {
                None => 1,
                Some(o) => {
                    let g = o
                        .pointer("/metadata/generation")
                        .and_then(|g| g.as_i64())
                        .unwrap_or(1);
                    if spec_part(o) != spec_part(&object) {
                        g + 1
                    } else {
                        g
                    }
                }
            };
            object["metadata"]["generation"] = json!(generation);
        }
        let rendered: Vec<Value> = managers
            .iter()
            .map(|e| {
                json!({
                    "manager": e.manager, "operation": e.operation,
                    "apiVersion": kind.api_version(), "time": e.time,
                    "fieldsType": "FieldsV1", "fieldsV1": fields::fields_v1(&e.fields)
                })
            })
            .collect();
        if !rendered.is_empty() {
            object["metadata"]["managedFields"] = Value::Array(rendered);
        }
        // Unchanged: keep the resourceVersion, store nothing.
        if let Some(o) = old_object {
            let mut without_rv = o.clone();
            if let Some(m) = without_rv
                .get_mut("metadata")
                .and_then(|m| m.as_object_mut())
            {
                m.remove("resourceVersion");
            }
            if without_rv == object {
                return Ok((o.clone(), Effect::None));
            }
        }
        object["metadata"]["resourceVersion"] = json!(self.next_resource_version());
        let effect = if kind.kind == "Deployment"
            && object.pointer("/metadata/deletionTimestamp").is_none()
            && (old_object.is_none()
                || old_object.and_then(|o| o.pointer("/metadata/generation"))
                    != object.pointer("/metadata/generation")
                || old_object.and_then(|o| o.pointer(ROLLOUT_POINTER))
                    != object.pointer(ROLLOUT_POINTER))
        {
            Effect::DeploymentChanged {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }
        } else {
            Effect::None
        };
        self.record(
            kind.qualified(),
            namespace,
            if old.is_none() { "ADDED" } else { "MODIFIED" },
            &object,
        );
        self.objects.insert(
            k,
            Stored {
                object: object.clone(),
                managers,
            },
        );
        Ok((object, effect))
    }

    pub fn create(
        &mut self,
        kind: &Kind,
        namespace: &str,
        mut body: Value,
        manager: &str,
    ) -> Result<(Value, Effect), ApiError> {
        strip_server_fields(&mut body, kind);
        if let Some(m) = body.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            m.remove("resourceVersion");
        }
        let name = body
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            return Err(ApiError::invalid(
                kind,
                "",
                &[(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        }
        if let Some(ns) = body.pointer("/metadata/namespace").and_then(|n| n.as_str()) {
            if kind.namespaced && ns != namespace {
                return Err(ApiError::bad_request(format!("the namespace of the provided object ({ns}) does not match the namespace sent on the request ({namespace})")));
            }
        }
        self.check_namespace(kind, namespace, &name, true)?;
        if self.objects.contains_key(&key(kind, namespace, &name)) {
            return Err(ApiError::already_exists(kind, &name));
        }
        let mut managers = Vec::new();
        fields::record_update(None, &body, manager, &mut managers, &now());
        self.commit(kind, namespace, &name, body, managers)
    }

    /// PUT: replace the object (or, for `status`, only its status), with optimistic
    /// concurrency on `metadata.resourceVersion`.
    pub fn replace(
        &mut self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        mut body: Value,
        manager: &str,
        status: bool,
    ) -> Result<(Value, Effect), ApiError> {
        let stored = self
            .objects
            .get(&key(kind, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        if let Some(body_name) = body.pointer("/metadata/name").and_then(|n| n.as_str()) {
            if body_name != name {
                return Err(ApiError::bad_request(format!("the name of the object ({body_name}) does not match the name on the URL ({name})")));
            }
        }
        let current_rv = stored.object.pointer("/metadata/resourceVersion").cloned();
        match body.pointer("/metadata/resourceVersion") {
            Some(rv) if Some(rv) != current_rv.as_ref() => {
                return Err(ApiError::conflict(kind, name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
            _ => {}
        }
        self.check_namespace(kind, namespace, name, false)?;
        let new = if status {
            let mut o = stored.object.clone();
            o["status"] = body.get("status").cloned().unwrap_or(Value::Null);
            o
        } else {
            strip_server_fields(&mut body, kind);
            if kind.status {
                if let Some(s) = stored.object.get("status") {
                    body["status"] = s.clone();
                }
            }
            body
        };
        let mut managers = stored.managers.clone();
        if !status {
            fields::record_update(Some(&stored.object), &new, manager, &mut managers, &now());
        }
        self.commit(kind, namespace, name, new, managers)
    }

    /// A JSON merge patch (RFC 7386) or a strategic merge patch ([`strategic`]).
    pub fn merge_patch(
        &mut self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        patch: Patch<'_>,
        manager: &str,
        status: bool,
    ) -> Result<(Value, Effect), ApiError> {
        let (patch, strategic) = match patch {
            Patch::Merge(p) => (p, false),
            Patch::Strategic(p) => (p, true),
        };
        let merge = |target: &mut Value, patch: &Value| -> Result<(), ApiError> {
            if strategic {
                *target = strategic::apply(kind.kind, target, patch)?;
            } else {
                merge_patch_value(target, patch);
            }
            Ok(())
        };
        let stored = self
            .objects
            .get(&key(kind, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        if let Some(rv) = patch.pointer("/metadata/resourceVersion") {
            if Some(rv) != stored.object.pointer("/metadata/resourceVersion") {
                return Err(ApiError::conflict(kind, name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        let mut new = stored.object.clone();
        if status {
            if let Some(s) = patch.get("status") {
                let mut patched =
                    json!({"status": new.get("status").cloned().unwrap_or(json!({}))});
                merge(&mut patched, &json!({ "status": s }))?;
                new["status"] = patched["status"].take();
            }
        } else {
            let mut patch = patch.clone();
            strip_server_fields(&mut patch, kind);
            merge(&mut new, &patch)?;
        }
        let mut managers = stored.managers.clone();
        if !status {
            fields::record_update(Some(&stored.object), &new, manager, &mut managers, &now());
        }
        self.commit(kind, namespace, name, new, managers)
    }

    /// Server-side apply: creates the object if needed, tracks `manager`'s fields,
    /// refuses conflicts unless `force`, removes fields `manager` no longer applies.
    pub fn server_side_apply(
        &mut self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        mut body: Value,
        manager: &str,
        force: bool,
    ) -> Result<(Value, Effect), ApiError> {
        if body
            .get("kind")
            .and_then(|k| k.as_str())
            .is_some_and(|k| k != kind.kind)
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the applied object does not match the URL ({})",
                kind.kind
            )));
        }
        if let Some(body_name) = body.pointer("/metadata/name").and_then(|n| n.as_str()) {
            if body_name != name {
                return Err(ApiError::bad_request(format!("the name of the object ({body_name}) does not match the name on the URL ({name})")));
            }
        }
        let stored = self.objects.get(&key(kind, namespace, name)).cloned();
        if let (Some(rv), Some(s)) = (body.pointer("/metadata/resourceVersion"), &stored) {
            if Some(rv) != s.object.pointer("/metadata/resourceVersion") {
                return Err(ApiError::conflict(kind, name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        strip_server_fields(&mut body, kind);
        if let Some(m) = body.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            m.remove("resourceVersion");
            m.remove("namespace");
        }
        self.check_namespace(kind, namespace, name, stored.is_none())?;
        let mut managers = stored
            .as_ref()
            .map(|s| s.managers.clone())
            .unwrap_or_default();
        let live = stored.as_ref().map(|s| &s.object);
        let mut new = fields::apply(live, &body, manager, force, &mut managers, &now()).map_err(
            |conflicts| {
                let pairs: Vec<(String, String)> =
                    conflicts.into_iter().map(|c| (c.manager, c.path)).collect();
                ApiError::apply_conflict(kind, name, &pairs)
            },
        )?;
        if kind.status {
            match live.and_then(|l| l.get("status")) {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        self.commit(kind, namespace, name, new, managers)
    }

    /// DELETE with optional preconditions. Namespaces begin terminating; Deployments
    /// deleted in the foreground linger until the controller finishes them.
    pub fn delete(
        &mut self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        options: &Value,
    ) -> Result<(Value, Effect), ApiError> {
        let k = key(kind, namespace, name);
        let stored = self
            .objects
            .get(&k)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        let object = &stored.object;
        if let Some(uid) = options
            .pointer("/preconditions/uid")
            .and_then(|u| u.as_str())
        {
            if object.pointer("/metadata/uid").and_then(|u| u.as_str()) != Some(uid) {
                return Err(ApiError::conflict(
                    kind,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        object
                            .pointer("/metadata/uid")
                            .and_then(|u| u.as_str())
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        if let Some(rv) = options
            .pointer("/preconditions/resourceVersion")
            .and_then(|u| u.as_str())
        {
            if object
                .pointer("/metadata/resourceVersion")
                .and_then(|u| u.as_str())
                != Some(rv)
            {
                return Err(ApiError::conflict(
                    kind,
                    name,
                    "Precondition failed: ResourceVersion in precondition does not match",
                ));
            }
        }
        let terminating = object.pointer("/metadata/deletionTimestamp").is_some();
        if kind.kind == "Namespace" {
            if terminating {
                return Err(ApiError::conflict(kind, name, "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system."));
            }
            let mut new = object.clone();
            new["metadata"]["deletionTimestamp"] = json!(now());
            new["status"] = json!({
                "phase": "Terminating",
                "conditions": [{"type": "NamespaceDeletionContentFailure", "status": "False", "reason": "ContentDeleted", "message": "All content successfully deleted, may be waiting on finalization"}]
            });
            new["metadata"]["resourceVersion"] = json!(self.next_resource_version());
            self.record(kind.qualified(), namespace, "MODIFIED", &new);
            self.objects.insert(
                k,
                Stored {
                    object: new.clone(),
                    managers: stored.managers,
                },
            );
            return Ok((
                new,
                Effect::NamespaceTerminating {
                    name: name.to_owned(),
                },
            ));
        }
        let foreground =
            options.get("propagationPolicy").and_then(|p| p.as_str()) == Some("Foreground");
        if kind.kind == "Deployment" && foreground {
            if terminating {
                return Ok((object.clone(), Effect::None));
            }
            let mut new = object.clone();
            new["metadata"]["deletionTimestamp"] = json!(now());
            new["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
            new["metadata"]["resourceVersion"] = json!(self.next_resource_version());
            self.record(kind.qualified(), namespace, "MODIFIED", &new);
            self.objects.insert(
                k,
                Stored {
                    object: new.clone(),
                    managers: stored.managers,
                },
            );
            return Ok((
                new,
                Effect::ForegroundDeletion {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                },
            ));
        }
        self.objects.remove(&k);
        self.next_resource_version();
        self.record(kind.qualified(), namespace, "DELETED", &stored.object);
        self.collect_garbage(&stored.object);
        Ok((stored.object, Effect::None))
    }

    /// Removes an object outright (the end of a foreground deletion or namespace
    /// finalization).
    pub fn purge(&mut self, kind: &Kind, namespace: &str, name: &str) {
        if let Some(gone) = self.objects.remove(&key(kind, namespace, name)) {
            self.next_resource_version();
            self.record(kind.qualified(), namespace, "DELETED", &gone.object);
            self.collect_garbage(&gone.object);
        }
    }

    /// Deletes everything in `namespace`, then the namespace itself.
    pub fn finalize_namespace(&mut self, namespace: &str) {
        let contents: Vec<Key> = self
            .objects
            .keys()
            .filter(|(_, ns, _)| ns == namespace)
            .cloned()
            .collect();
        for k in contents {
            if let Some(gone) = self.objects.remove(&k) {
                self.next_resource_version();
                self.record(k.0.clone(), namespace, "DELETED", &gone.object);
            }
        }
        self.purge(kinds::namespaces(), "", namespace);
    }

    /// Writes a Deployment's status as the controller does (not a client write: no
    /// managed fields). Returns false when the object is gone or changed generation.
    pub fn set_deployment_status(
        &mut self,
        namespace: &str,
        name: &str,
        uid: &str,
        generation: i64,
        status: Value,
    ) -> bool {
        let Some(kind) = kinds::find("apps", "v1", "deployments") else {
            return false;
        };
        let k = key(kind, namespace, name);
        let Some(stored) = self.objects.get(&k) else {
            return false;
        };
        let o = &stored.object;
        if o.pointer("/metadata/uid").and_then(|u| u.as_str()) != Some(uid)
            || o.pointer("/metadata/generation").and_then(|g| g.as_i64()) != Some(generation)
        {
            return false;
        }
        if o.get("status") == Some(&status) {
            return true;
        }
        let mut new = o.clone();
        new["status"] = status;
        new["metadata"]["resourceVersion"] = json!(self.next_resource_version());
        self.record(kind.qualified(), namespace, "MODIFIED", &new);
        if let Some(s) = self.objects.get_mut(&k) {
            s.object = new;
        }
        true
    }

    /// A number never handed out before, for generated names.
    pub fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Creates or replaces an object as a controller does: no client, no managed
    /// fields of its own, status included.
    pub fn put_internal(
        &mut self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        object: Value,
    ) -> Result<(Value, Effect), ApiError> {
        let managers = self
            .objects
            .get(&key(kind, namespace, name))
            .map(|s| s.managers.clone())
            .unwrap_or_default();
        self.commit(kind, namespace, name, object, managers)
    }

    /// The objects of `kind` in `namespace`, by name.
    pub fn names(&self, kind: &Kind, namespace: &str) -> Vec<(String, Value)> {
        let qualified = kind.qualified();
        self.objects
            .iter()
            .filter(|((k, ns, _), _)| *k == qualified && ns == namespace)
            .map(|((_, _, n), s)| (n.clone(), s.object.clone()))
            .collect()
    }

    /// Writes an object's status as its controller does.
    pub fn set_status(&mut self, kind: &Kind, namespace: &str, name: &str, status: Value) {
        let k = key(kind, namespace, name);
        let Some(stored) = self.objects.get(&k) else {
            return;
        };
        if stored.object.get("status") == Some(&status) {
            return;
        }
        let mut new = stored.object.clone();
        new["status"] = status;
        new["metadata"]["resourceVersion"] = json!(self.next_resource_version());
        self.record(kind.qualified(), namespace, "MODIFIED", &new);
        if let Some(s) = self.objects.get_mut(&k) {
            s.object = new;
        }
    }

    /// The garbage collector: removes what `owner` owned (and what that owned).
    fn collect_garbage(&mut self, owner: &Value) {
        let Some(uid) = owner.pointer("/metadata/uid").cloned() else {
            return;
        };
        let owned: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, s)| {
                s.object
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in owned {
            if let Some(gone) = self.objects.remove(&k) {
                self.next_resource_version();
                self.record(k.0.clone(), &k.1, "DELETED", &gone.object);
                self.collect_garbage(&gone.object);
            }
        }
    }

    /// Counts a request by verb.
    pub fn count(&mut self, verb: &str) {
        *self.requests.entry(verb.to_owned()).or_default() += 1;
    }
}

/// RFC 7386: `null` removes, objects merge, anything else replaces.
pub fn merge_patch_value(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Some(t) = target.as_object_mut() {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch_value(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns_kind() -> &'static Kind {
        kinds::namespaces()
    }

    fn deploy_kind() -> &'static Kind {
        kinds::find("apps", "v1", "deployments").unwrap()
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}}
        })
    }

    fn store_with_namespace() -> Store {
        let mut s = Store::default();
        s.create(ns_kind(), "", json!({"metadata": {"name": "dev"}}), "test")
            .unwrap();
        s
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn generation_counts_spec_changes_and_resource_version_every_change() {
        let mut s = store_with_namespace();
        let (d1, _) = s
            .server_side_apply(deploy_kind(), "dev", "web", deployment(1, "a"), "m", false)
            .unwrap();
        assert_eq!(d1.pointer("/metadata/generation"), Some(&json!(1)));
        // No-op: same resourceVersion.
        let (same, effect) = s
            .server_side_apply(deploy_kind(), "dev", "web", deployment(1, "a"), "m", false)
            .unwrap();
        assert_eq!(
            same.pointer("/metadata/resourceVersion"),
            d1.pointer("/metadata/resourceVersion")
        );
        assert_eq!(effect, Effect::None);
        // Metadata only: new resourceVersion, same generation.
        let mut labelled = deployment(1, "a");
        labelled["metadata"]["labels"] = json!({"x": "y"});
        let (d2, _) = s
            .server_side_apply(deploy_kind(), "dev", "web", labelled.clone(), "m", false)
            .unwrap();
        assert_ne!(
            d2.pointer("/metadata/resourceVersion"),
            d1.pointer("/metadata/resourceVersion")
        );
        assert_eq!(d2.pointer("/metadata/generation"), Some(&json!(1)));
        labelled["spec"]["replicas"] = json!(2);
        let (d3, effect) = s
            .server_side_apply(deploy_kind(), "dev", "web", labelled, "m", false)
            .unwrap();
        assert_eq!(d3.pointer("/metadata/generation"), Some(&json!(2)));
        assert!(matches!(effect, Effect::DeploymentChanged { .. }));
        assert_eq!(d3.pointer("/metadata/uid"), d1.pointer("/metadata/uid"));
    }

    #[test]
    fn stale_updates_and_duplicate_creates_conflict() {
        let mut s = store_with_namespace();
        let (d, _) = s
            .create(deploy_kind(), "dev", deployment(1, "a"), "m")
            .unwrap();
        let e = s
            .create(deploy_kind(), "dev", deployment(1, "a"), "m")
            .unwrap_err();
        assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
        let mut stale = d.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        stale["spec"]["replicas"] = json!(4);
        let e = s
            .replace(deploy_kind(), "dev", "web", stale, "m", false)
            .unwrap_err();
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        let mut fresh = d.clone();
        fresh["spec"]["replicas"] = json!(4);
        s.replace(deploy_kind(), "dev", "web", fresh, "m", false)
            .unwrap();
    }

    #[test]
    fn missing_and_terminating_namespaces() {
        let mut s = store_with_namespace();
        let e = s
            .create(deploy_kind(), "nope", deployment(1, "a"), "m")
            .unwrap_err();
        assert_eq!(e.code, 404);
        s.create(deploy_kind(), "dev", deployment(1, "a"), "m")
            .unwrap();
        let (_, effect) = s.delete(ns_kind(), "", "dev", &json!({})).unwrap();
        assert!(matches!(effect, Effect::NamespaceTerminating { .. }));
        let mut other = deployment(1, "a");
        other["metadata"]["name"] = json!("api");
        let e = s.create(deploy_kind(), "dev", other, "m").unwrap_err();
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert!(e.message.contains("being terminated"));
        let e = s.delete(ns_kind(), "", "dev", &json!({})).unwrap_err();
        assert_eq!(e.code, 409);
        s.finalize_namespace("dev");
        assert_eq!(s.get(deploy_kind(), "dev", "web").unwrap_err().code, 404);
        assert_eq!(s.get(ns_kind(), "", "dev").unwrap_err().code, 404);
    }

    #[test]
    fn invalid_objects_are_422_and_uid_preconditions_409() {
        let mut s = store_with_namespace();
        let mut bad = deployment(1, "a");
        bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        let e = s.create(deploy_kind(), "dev", bad, "m").unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        s.create(deploy_kind(), "dev", deployment(1, "a"), "m")
            .unwrap();
        let e = s
            .delete(
                deploy_kind(),
                "dev",
                "web",
                &json!({"preconditions": {"uid": "other"}}),
            )
            .unwrap_err();
        assert_eq!(e.code, 409);
    }
}
