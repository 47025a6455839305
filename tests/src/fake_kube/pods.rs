//! The ReplicaSet controller's and the kubelet's part of a rollout, as a client sees
//! them: the Deployment's ReplicaSet for its current template (`<name>-<hash>`, owned
//! by the Deployment, labelled `pod-template-hash`), its Pods with the template's
//! labels and annotations, and the Events a cluster records.
//!
//! What the pods do follows the cluster: a namespace's Pod Security level refuses
//! them (the ReplicaSet's `ReplicaFailure`/`FailedCreate` condition, which the
//! Deployment mirrors, and a `FailedCreate` Event with the admission's message); an
//! image made unpullable ([`FakeKube::make_image_unpullable`](super::FakeKube)) leaves
//! them `Pending` in `ImagePullBackOff`; [`RolloutMode::CrashLoop`] makes them
//! `CrashLoopBackOff`; otherwise they run, and are ready unless the rollout fails.

use serde_json::{json, Value};

use super::admission;
use super::kinds;
use super::store::{now, RolloutMode, Store};

/// The kubelet's refusal of a root image under `runAsNonRoot`.
const ROOT_REFUSED: &str = "container has runAsNonRoot and image will run as root";

/// What became of a rollout's new pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// They run (ready unless the mode says otherwise).
    Run,
    /// Admission refused them: the message.
    Refused(String),
    /// The image cannot be pulled.
    ImagePull(String),
    /// The container exits as soon as it starts.
    CrashLoop,
    /// The image runs as root and the pod says `runAsNonRoot`: the kubelet will not
    /// start it (`CreateContainerConfigError`).
    RootRefused,
}

/// Whether a container of `pod` that runs `image` as root would be refused: it must
/// run as non-root and names no non-root user.
fn refuses_root(pod: &Value, container: &Value) -> bool {
    let at = |v: &Value, p: &str| v.pointer(p).cloned();
    let non_root = at(container, "/securityContext/runAsNonRoot")
        .or_else(|| at(pod, "/securityContext/runAsNonRoot"))
        == Some(json!(true));
    let user = at(container, "/securityContext/runAsUser")
        .or_else(|| at(pod, "/securityContext/runAsUser"))
        .and_then(|u| u.as_i64());
    non_root && user.is_none_or(|u| u == 0)
}

/// The Deployment a rollout materializes, as the controller read it.
pub struct Rollout<'a> {
    pub namespace: &'a str,
    pub deployment: &'a Value,
    pub replica_set: &'a str,
    pub hash: &'a str,
    pub desired: i64,
    pub mode: RolloutMode,
}

fn owner(kind: &str, api_version: &str, object: &Value) -> Value {
    json!([{
        "apiVersion": api_version, "kind": kind,
        "name": object.pointer("/metadata/name"), "uid": object.pointer("/metadata/uid"),
        "controller": true, "blockOwnerDeletion": true
    }])
}

fn owned_by(object: &Value, uid: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)))
}

/// Records an Event about `object`, as the controllers and the kubelet do.
pub fn event(
    store: &mut Store,
    namespace: &str,
    object: &Value,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let Some(kind) = kinds::find("", "v1", "events") else {
        return;
    };
    let n = store.next_serial();
    let involved = object.pointer("/metadata/name").and_then(Value::as_str);
    let name = format!("{}.{n:016x}", involved.unwrap_or("object"));
    let time = now();
    let e = json!({
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {
            "apiVersion": object.get("apiVersion"), "kind": object.get("kind"),
            "name": involved, "namespace": namespace, "uid": object.pointer("/metadata/uid"),
            "resourceVersion": object.pointer("/metadata/resourceVersion")
        },
        "reason": reason, "message": message, "type": type_, "count": 1,
        "firstTimestamp": time, "lastTimestamp": time,
        "source": {"component": match reason {
            "FailedCreate" | "SuccessfulCreate" => "replicaset-controller",
            "ScalingReplicaSet" => "deployment-controller",
            _ => "kubelet",
        }}
    });
    let _ = store.put_internal(kind, namespace, &name, e);
}

/// A pod name's random part, as the ReplicaSet controller makes it.
fn suffix(n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn pod_status(outcome: &Outcome, ready: bool, containers: &[Value]) -> Value {
    let time = now();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let name = c.get("name").cloned().unwrap_or(Value::Null);
            let image = c.get("image").cloned().unwrap_or(Value::Null);
            let (state, restarts, last) = match outcome {
                Outcome::ImagePull(image) => (
                    json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{image}\"")}}),
                    0,
                    json!({}),
                ),
                Outcome::CrashLoop => (
                    json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off 40s restarting failed container={} pod=", name.as_str().unwrap_or_default())}}),
                    3,
                    json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": time, "finishedAt": time}}),
                ),
                Outcome::RootRefused => (
                    json!({"waiting": {"reason": "CreateContainerConfigError", "message": ROOT_REFUSED}}),
                    0,
                    json!({}),
                ),
                _ => (json!({"running": {"startedAt": time}}), 0, json!({})),
            };
            json!({"name": name, "image": image, "imageID": "", "ready": ready,
                   "started": matches!(outcome, Outcome::Run), "restartCount": restarts,
                   "state": state, "lastState": last})
        })
        .collect();
    let phase = match outcome {
        Outcome::ImagePull(_) | Outcome::RootRefused => "Pending",
        _ => "Running",
    };
    let ready_status = if ready { "True" } else { "False" };
    json!({
        "phase": phase, "startTime": time, "podIP": "10.244.0.10", "hostIP": "172.18.0.2",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": time},
            {"type": "Initialized", "status": "True", "lastTransitionTime": time},
            {"type": "ContainersReady", "status": ready_status, "lastTransitionTime": time},
            {"type": "Ready", "status": ready_status, "lastTransitionTime": time}
        ],
        "containerStatuses": statuses
    })
}

/// Creates or updates the ReplicaSet of `r`'s template and its pods; returns what the
/// pods do.
pub fn materialize(store: &mut Store, r: &Rollout<'_>) -> Outcome {
    let (Some(rs_kind), Some(pod_kind), Some(ns_kind)) = (
        kinds::find("apps", "v1", "replicasets"),
        kinds::find("", "v1", "pods"),
        Some(kinds::namespaces()),
    ) else {
        return Outcome::Run;
    };
    let d = r.deployment;
    let mut template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    template["metadata"]["labels"]["pod-template-hash"] = json!(r.hash);
    let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
    selector["matchLabels"]["pod-template-hash"] = json!(r.hash);
    let revision = d
        .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .cloned()
        .unwrap_or(json!("1"));
    let existing = store.get(rs_kind, r.namespace, r.replica_set).ok();
    let mut rs = existing
        .clone()
        .unwrap_or_else(|| json!({"metadata": {"name": r.replica_set, "namespace": r.namespace}}));
    rs["metadata"]["labels"] = template["metadata"]["labels"].clone();
    rs["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": revision});
    rs["metadata"]["ownerReferences"] = owner("Deployment", "apps/v1", d);
    rs["spec"] = json!({"replicas": r.desired, "selector": selector, "template": template});
    let Ok((rs, _)) = store.put_internal(rs_kind, r.namespace, r.replica_set, rs) else {
        return Outcome::Run;
    };
    if existing.is_none() {
        event(
            store,
            r.namespace,
            d,
            "Normal",
            "ScalingReplicaSet",
            &format!(
                "Scaled up replica set {} from 0 to {}",
                r.replica_set, r.desired
            ),
        );
    }
    let pod_spec = template.get("spec").cloned().unwrap_or(json!({}));
    let containers = pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let level = store
        .get(ns_kind, "", r.namespace)
        .ok()
        .and_then(|ns| admission::enforced(&ns));
    let unpullable = containers.iter().find_map(|c| {
        c.get("image")
            .and_then(Value::as_str)
            .filter(|i| store.unpullable_images.contains(*i))
            .map(str::to_owned)
    });
    let violations = level
        .as_deref()
        .map(|l| admission::violations(l, &pod_spec))
        .unwrap_or_default();
    let outcome = if let (Some(level), false) = (level.as_deref(), violations.is_empty()) {
        let name = format!("{}-{}", r.replica_set, suffix(store.next_serial()));
        Outcome::Refused(admission::forbidden(&name, level, &violations))
    } else if let Some(image) = unpullable {
        Outcome::ImagePull(image)
    } else if containers.iter().any(|c| {
        c.get("image")
            .and_then(Value::as_str)
            .is_some_and(|i| store.root_images.contains(i))
            && refuses_root(&pod_spec, c)
    }) {
        Outcome::RootRefused
    } else if r.mode == RolloutMode::CrashLoop {
        Outcome::CrashLoop
    } else {
        Outcome::Run
    };
    let uid = rs
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let pods: Vec<String> = store
        .names(pod_kind, r.namespace)
        .into_iter()
        .filter(|(_, p)| owned_by(p, &uid))
        .map(|(n, _)| n)
        .collect();
    let ready = outcome == Outcome::Run && r.mode != RolloutMode::Fail;
    let mut rs_status =
        json!({"replicas": 0, "observedGeneration": rs.pointer("/metadata/generation")});
    if let Outcome::Refused(message) = &outcome {
        let time = now();
        rs_status["conditions"] = json!([{"type": "ReplicaFailure", "status": "True",
            "reason": "FailedCreate", "message": message, "lastTransitionTime": time}]);
        event(
            store,
            r.namespace,
            &rs,
            "Warning",
            "FailedCreate",
            &format!("Error creating: {message}"),
        );
    } else {
        let missing = (r.desired - pods.len() as i64).max(0);
        for _ in 0..missing {
            let name = format!("{}-{}", r.replica_set, suffix(store.next_serial()));
            let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
            meta["name"] = json!(name);
            meta["namespace"] = json!(r.namespace);
            meta["ownerReferences"] = owner("ReplicaSet", "apps/v1", &rs);
            let pod = json!({
                "metadata": meta,
                "spec": pod_spec,
                "status": pod_status(&outcome, ready, &containers)
            });
            if let Ok((pod, _)) = store.put_internal(pod_kind, r.namespace, &name, pod) {
                event(
                    store,
                    r.namespace,
                    &rs,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {name}"),
                );
                match &outcome {
                    Outcome::ImagePull(image) => event(
                        store,
                        r.namespace,
                        &pod,
                        "Warning",
                        "Failed",
                        &format!("Failed to pull image \"{image}\": not found"),
                    ),
                    Outcome::RootRefused => event(
                        store,
                        r.namespace,
                        &pod,
                        "Warning",
                        "Failed",
                        &format!("Error: {ROOT_REFUSED}"),
                    ),
                    Outcome::CrashLoop => event(
                        store,
                        r.namespace,
                        &pod,
                        "Warning",
                        "BackOff",
                        "Back-off restarting failed container",
                    ),
                    _ => {}
                }
            }
        }
        let count = pods.len() as i64 + missing;
        rs_status["replicas"] = json!(count);
        rs_status["fullyLabeledReplicas"] = json!(count);
        if ready {
            rs_status["readyReplicas"] = json!(count);
            rs_status["availableReplicas"] = json!(count);
        }
    }
    store.set_status(rs_kind, r.namespace, r.replica_set, rs_status);
    outcome
}

/// Once a rollout completed: the Deployment's other ReplicaSets scale to zero and
/// their pods go.
pub fn retire_old(store: &mut Store, namespace: &str, deployment_uid: &str, current: &str) {
    let (Some(rs_kind), Some(pod_kind)) = (
        kinds::find("apps", "v1", "replicasets"),
        kinds::find("", "v1", "pods"),
    ) else {
        return;
    };
    for (name, rs) in store.names(rs_kind, namespace) {
        if name == current || !owned_by(&rs, deployment_uid) {
            continue;
        }
        let uid = rs
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for (pod, p) in store.names(pod_kind, namespace) {
            if owned_by(&p, &uid) {
                store.purge(pod_kind, namespace, &pod);
            }
        }
        if rs.pointer("/spec/replicas") != Some(&json!(0)) {
            let mut scaled = rs.clone();
            scaled["spec"]["replicas"] = json!(0);
            let _ = store.put_internal(rs_kind, namespace, &name, scaled);
            store.set_status(rs_kind, namespace, &name, json!({"replicas": 0}));
        }
    }
}
