//! The simulated controllers: the deployment controller that fills in a Deployment's
//! status as a rollout goes, the namespace controller that empties and removes a
//! terminating Namespace, and the garbage collector's end of a foreground deletion.
//!
//! The deployment controller makes the ReplicaSet and pods of the current template
//! ([`pods`]), then plays out the counts and conditions a real rollout reports
//! (`maxSurge` 1, `maxUnavailable` 0), one step per [`Timing::step`], following the
//! Deployment's [`RolloutMode`] and what its pods do; a completed rollout retires the
//! older ReplicaSets' pods.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::kinds;
use super::pods::{self, Outcome};
use super::store::{now, Effect, RolloutMode, ROLLOUT_ANNOTATION};
use super::Shared;

/// How long the simulated controllers take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// One step of a rollout.
    pub step: Duration,
    /// From a Namespace's deletion to its contents and itself being gone.
    pub namespace_termination: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            step: Duration::from_millis(50),
            namespace_termination: Duration::from_millis(300),
        }
    }
}

/// Starts whatever the write that had `effect` sets in motion.
pub fn react(shared: &Arc<Shared>, effect: Effect) {
    let shared = shared.clone();
    match effect {
        Effect::None => {}
        Effect::DeploymentChanged { namespace, name } => {
            tokio::spawn(async move { rollout(shared, namespace, name).await });
        }
        Effect::NamespaceTerminating { name } => {
            tokio::spawn(async move {
                tokio::time::sleep(shared.timing.namespace_termination).await;
                shared.lock().finalize_namespace(&name);
                shared.notify();
            });
        }
        Effect::ForegroundDeletion { namespace, name } => {
            tokio::spawn(async move {
                tokio::time::sleep(shared.timing.step).await;
                if let Some(kind) = kinds::find("apps", "v1", "deployments") {
                    shared.lock().purge(kind, &namespace, &name);
                    shared.notify();
                }
            });
        }
    }
}

struct Snapshot {
    uid: String,
    generation: i64,
    desired: i64,
    previous_available: i64,
    replica_set: String,
    /// The `pod-template-hash`.
    hash: String,
    mode: RolloutMode,
    /// The Deployment as read.
    deployment: Value,
}

fn snapshot(shared: &Shared, namespace: &str, name: &str) -> Option<Snapshot> {
    let store = shared.lock();
    let kind = kinds::find("apps", "v1", "deployments")?;
    let d = store.get(kind, namespace, name).ok()?;
    let template = d.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let hash = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        template.to_string().hash(&mut h);
        format!("{:010x}", h.finish() & 0xff_ffff_ffff)
    };
    let mode = d
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ROLLOUT_ANNOTATION))
        .and_then(|m| m.as_str())
        .and_then(RolloutMode::parse)
        .or_else(|| {
            store
                .rollout_modes
                .get(&(namespace.to_owned(), name.to_owned()))
                .copied()
        })
        .unwrap_or_default();
    Some(Snapshot {
        uid: d.pointer("/metadata/uid")?.as_str()?.to_owned(),
        generation: d.pointer("/metadata/generation")?.as_i64()?,
        desired: d
            .pointer("/spec/replicas")
            .and_then(|r| r.as_i64())
            .unwrap_or(1),
        previous_available: d
            .pointer("/status/availableReplicas")
            .and_then(|r| r.as_i64())
            .unwrap_or(0),
        replica_set: format!("{name}-{hash}"),
        hash,
        mode,
        deployment: d,
    })
}

/// One status, as the real controller writes it (zero counts left out).
fn status(
    s: &Snapshot,
    replicas: i64,
    updated: i64,
    available: i64,
    progressing: (&str, &str, String),
) -> Value {
    let time = now();
    let (available_status, available_reason, available_message) = if available >= s.desired {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    let mut st = json!({
        "observedGeneration": s.generation,
        "conditions": [
            {"type": "Available", "status": available_status, "reason": available_reason,
             "message": available_message, "lastUpdateTime": time, "lastTransitionTime": time},
            {"type": "Progressing", "status": progressing.0, "reason": progressing.1,
             "message": progressing.2, "lastUpdateTime": time, "lastTransitionTime": time}
        ]
    });
    let mut put = |k: &str, v: i64| {
        if v != 0 {
            st[k] = json!(v);
        }
    };
    put("replicas", replicas);
    put("updatedReplicas", updated);
    put("readyReplicas", available);
    put("availableReplicas", available);
    put("unavailableReplicas", (replicas - available).max(0));
    st
}

/// The statuses a rollout goes through, in order, given what its pods do.
fn plan(s: &Snapshot, outcome: &Outcome) -> Vec<Value> {
    let rs = &s.replica_set;
    let done = || {
        status(
            s,
            s.desired,
            s.desired,
            s.desired,
            (
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{rs}\" has successfully progressed."),
            ),
        )
    };
    let progressing = || {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs}\" is progressing."),
        )
    };
    let old = s.previous_available;
    match outcome {
        Outcome::Run => {}
        // The ReplicaSet cannot create pods; the Deployment mirrors its condition.
        Outcome::Refused(message) => {
            let mut st = status(s, old, 0, old, progressing());
            if let Some(conditions) = st["conditions"].as_array_mut() {
                let time = now();
                conditions.push(json!({"type": "ReplicaFailure", "status": "True",
                    "reason": "FailedCreate", "message": message,
                    "lastUpdateTime": time, "lastTransitionTime": time}));
            }
            return vec![st];
        }
        // The pods exist but never become available (until a deadline of minutes).
        Outcome::ImagePull(_) | Outcome::CrashLoop | Outcome::RootRefused => {
            return vec![status(s, old + s.desired, s.desired, old, progressing())];
        }
    }
    match s.mode {
        RolloutMode::Normal | RolloutMode::CrashLoop => vec![done()],
        _ if s.desired == 0 => vec![done()],
        RolloutMode::Slow => {
            let mut steps = vec![status(s, old, 0, old, progressing())];
            for updated in 1..=s.desired {
                let old_left = (old - updated).max(0);
                steps.push(status(
                    s,
                    updated + old_left,
                    updated,
                    updated + old_left,
                    progressing(),
                ));
            }
            steps.push(done());
            steps
        }
        RolloutMode::Fail => {
            let stuck = |p| status(s, old + 1, 1, old, p);
            vec![
                stuck(progressing()),
                stuck(progressing()),
                stuck(progressing()),
                stuck((
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{rs}\" has timed out progressing."),
                )),
            ]
        }
    }
}

async fn rollout(shared: Arc<Shared>, namespace: String, name: String) {
    let Some(s) = snapshot(&shared, &namespace, &name) else {
        return;
    };
    let outcome = {
        let mut store = shared.lock();
        pods::materialize(
            &mut store,
            &pods::Rollout {
                namespace: &namespace,
                deployment: &s.deployment,
                replica_set: &s.replica_set,
                hash: &s.hash,
                desired: s.desired,
                mode: s.mode,
            },
        )
    };
    shared.notify();
    let steps = plan(&s, &outcome);
    let completes = steps.last().is_some_and(|st| {
        st.pointer("/conditions/1/reason") == Some(&json!("NewReplicaSetAvailable"))
    });
    for st in steps {
        tokio::time::sleep(shared.timing.step).await;
        // A newer generation (or a deletion) ends this rollout; its own task takes over.
        let current =
            shared
                .lock()
                .set_deployment_status(&namespace, &name, &s.uid, s.generation, st);
        shared.notify();
        if !current {
            return;
        }
    }
    if completes {
        pods::retire_old(&mut shared.lock(), &namespace, &s.uid, &s.replica_set);
        shared.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(mode: RolloutMode, desired: i64, old: i64) -> Snapshot {
        Snapshot {
            uid: "u".into(),
            generation: 2,
            desired,
            previous_available: old,
            replica_set: "web-abc".into(),
            hash: "abc".into(),
            mode,
            deployment: Value::Null,
        }
    }

    #[test]
    fn normal_rollouts_complete_in_one_step() {
        let steps = plan(&snap(RolloutMode::Normal, 3, 1), &Outcome::Run);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0]["availableReplicas"], json!(3));
        assert_eq!(steps[0]["observedGeneration"], json!(2));
    }

    #[test]
    fn slow_rollouts_surge_one_at_a_time_and_never_drop_below_old_availability() {
        let steps = plan(&snap(RolloutMode::Slow, 3, 3), &Outcome::Run);
        assert_eq!(steps.len(), 5);
        for st in &steps {
            assert!(st["availableReplicas"].as_i64().unwrap_or(0) >= 3, "{st}");
        }
        assert_eq!(steps[1]["updatedReplicas"], json!(1));
    }

    #[test]
    fn failing_rollouts_end_in_progress_deadline_exceeded() {
        let steps = plan(&snap(RolloutMode::Fail, 2, 2), &Outcome::Run);
        let last = steps.last().unwrap();
        assert_eq!(
            last["conditions"][1]["reason"],
            json!("ProgressDeadlineExceeded")
        );
        assert_eq!(last["conditions"][1]["status"], json!("False"));
        assert_eq!(last["availableReplicas"], json!(2));
    }
}
