//! Waiting for a Deployment's rollout the way `kubectl rollout status` does, and
//! naming the cause of one that cannot finish as soon as the cluster shows it.
//!
//! [`rollout_status`] is the decision, a pure function over the Deployment and the pods
//! of its current template; [`wait`] polls the API server until it says done or failed,
//! or the resource's timeout passes. A rollout fails at once, with a typed
//! [`Failure`], when the Deployment reports `ProgressDeadlineExceeded` or a
//! `ReplicaFailure` (the ReplicaSet cannot create pods, e.g. Pod Security admission
//! refused them: `FailedCreate`), or when a new pod is stuck in a state that does not
//! clear by itself (`ImagePullBackOff`, `CrashLoopBackOff`, …): the decision reads
//! reasons, never message text. Polling GETs rather than a watch: one request a second
//! per application is cheap, works through every proxy, and needs no resumable stream.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;

use super::apply::api_error;
use super::mapping::ANNOTATION_TEMPLATE_DIGEST;
use crate::{RolloutCause, RuntimeError};

/// Container waiting reasons that do not clear without a change to the application.
const STUCK_REASONS: [&str; 5] = [
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Why a rollout will not finish by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The Deployment's `Progressing` condition gave up (`ProgressDeadlineExceeded`).
    ProgressDeadlineExceeded { message: String },
    /// The ReplicaSet cannot create pods (`ReplicaFailure`, reason `FailedCreate`):
    /// admission (Pod Security, quotas) refused them.
    ReplicaFailure { reason: String, message: String },
    /// A new pod's container waits in a state that does not clear by itself.
    Container {
        pod: String,
        container: String,
        /// `ImagePullBackOff`, `CrashLoopBackOff`, …
        reason: String,
        message: String,
        restarts: i32,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::ProgressDeadlineExceeded { message } => write!(
                f,
                "condition Progressing is False (reason ProgressDeadlineExceeded): {message}"
            ),
            Failure::ReplicaFailure { reason, message } => write!(
                f,
                "its ReplicaSet cannot create pods ({reason}): {message}. If Pod Security admission refused them, the image needs a lower level: set the provider's `pod_security`"
            ),
            Failure::Container {
                pod,
                container,
                reason,
                message,
                restarts,
            } => {
                write!(f, "container {container:?} of pod {pod} is in {reason}")?;
                if !message.is_empty() {
                    write!(f, " ({message})")?;
                }
                if *restarts > 0 {
                    write!(f, " after {restarts} restarts")?;
                }
                match reason.as_str() {
                    "ImagePullBackOff" | "InvalidImageName" => write!(
                        f,
                        ": check `image` (name and tag) and that the cluster can pull from its registry"
                    ),
                    "CrashLoopBackOff" => write!(
                        f,
                        ": it exits right after starting; see its output with `kubectl logs {pod} -c {container} --previous`"
                    ),
                    "CreateContainerConfigError" => write!(
                        f,
                        ": see `kubectl describe pod {pod}`. An image that runs as root cannot start under the `restricted` Pod Security level (runAsNonRoot): use an image with a non-root user, or set the provider's `pod_security` to \"baseline\""
                    ),
                    _ => write!(f, ": see `kubectl describe pod {pod}`"),
                }
            }
        }
    }
}

impl Failure {
    /// Whose fault it is, for the attribute a diagnostic points at.
    pub fn cause(&self) -> RolloutCause {
        match self {
            Failure::ProgressDeadlineExceeded { .. } => RolloutCause::Other,
            Failure::ReplicaFailure { .. } => RolloutCause::Admission,
            Failure::Container { reason, .. } => match reason.as_str() {
                "ImagePullBackOff" | "InvalidImageName" | "ErrImagePull" => RolloutCause::Image,
                "CrashLoopBackOff" | "CreateContainerError" => RolloutCause::Program,
                _ => RolloutCause::Admission,
            },
        }
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutStatus {
    /// Every desired replica runs the current template and is available.
    Complete,
    /// Still going; the message says what it waits for, in kubectl's words.
    Waiting(String),
    /// It will not finish by itself.
    Failed(Failure),
}

fn condition<'a>(d: &'a Deployment, type_: &str) -> Option<&'a DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn describe(c: &DeploymentCondition) -> String {
    let mut s = format!("condition {} is {}", c.type_, c.status);
    if let Some(reason) = &c.reason {
        s.push_str(&format!(" (reason {reason})"));
    }
    if let Some(message) = c.message.as_deref().filter(|m| !m.is_empty()) {
        s.push_str(&format!(": {message}"));
    }
    s
}

fn template_digest(meta: Option<&std::collections::BTreeMap<String, String>>) -> Option<&str> {
    meta?.get(ANNOTATION_TEMPLATE_DIGEST).map(String::as_str)
}

/// The first container of a pod of `d`'s current template that is stuck.
fn stuck_container(d: &Deployment, pods: &[Pod]) -> Option<Failure> {
    let current = template_digest(
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref()),
    );
    pods.iter()
        .filter(|p| template_digest(p.metadata.annotations.as_ref()) == current)
        .find_map(|p| {
            let statuses = p.status.as_ref()?;
            statuses
                .init_container_statuses
                .iter()
                .flatten()
                .chain(statuses.container_statuses.iter().flatten())
                .find_map(|c| {
                    let waiting = c.state.as_ref()?.waiting.as_ref()?;
                    let reason = waiting.reason.as_deref()?;
                    STUCK_REASONS.contains(&reason).then(|| Failure::Container {
                        pod: p.metadata.name.clone().unwrap_or_default(),
                        container: c.name.clone(),
                        reason: reason.to_owned(),
                        message: waiting.message.clone().unwrap_or_default(),
                        restarts: c.restart_count,
                    })
                })
        })
}

/// kubectl's rollout status, failing fast: the controller must have observed the
/// current generation before anything else counts; then `ProgressDeadlineExceeded`,
/// a `ReplicaFailure` and a stuck pod of the current template (`pods`: the
/// Deployment's) are failures; then it waits for updated, then for old replicas to
/// go, then for updated ones to be available.
pub fn rollout_status(d: &Deployment, pods: &[Pod]) -> RolloutStatus {
    let generation = d.metadata.generation.unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or_default() < generation {
        return RolloutStatus::Waiting(
            "waiting for the deployment controller to observe the new spec".to_owned(),
        );
    }
    if let Some(c) = condition(d, "Progressing") {
        if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return RolloutStatus::Failed(Failure::ProgressDeadlineExceeded {
                message: c.message.clone().unwrap_or_default(),
            });
        }
    }
    if let Some(c) = condition(d, "ReplicaFailure").filter(|c| c.status == "True") {
        return RolloutStatus::Failed(Failure::ReplicaFailure {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        });
    }
    if let Some(failure) = stuck_container(d, pods) {
        return RolloutStatus::Failed(failure);
    }
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or_default();
    let replicas = status.replicas.unwrap_or_default();
    let available = status.available_replicas.unwrap_or_default();
    if updated < desired {
        return RolloutStatus::Waiting(format!(
            "{updated} of {desired} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return RolloutStatus::Waiting(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return RolloutStatus::Waiting(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    RolloutStatus::Complete
}

/// Conditions as one line, for a timeout's diagnostic.
fn conditions_summary(d: &Deployment) -> String {
    let all: Vec<String> = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().map(describe).collect())
        .unwrap_or_default();
    if all.is_empty() {
        "no conditions reported".to_owned()
    } else {
        all.join("; ")
    }
}

/// The pods a Deployment selects, by its `matchLabels`.
async fn pods_of(pods: &Api<Pod>, d: &Deployment) -> Result<Vec<Pod>, kube::Error> {
    let selector: Vec<String> = d
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    if selector.is_empty() {
        return Ok(Vec::new());
    }
    Ok(pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await?
        .items)
}

/// Polls `namespace/name` until its rollout completes (returning the Deployment), fails
/// or `timeout` passes (both [`RuntimeError::RolloutFailed`], naming the cause). While
/// it waits, it also reads the Deployment's pods (`pods`), to see a stuck one.
pub async fn wait(
    api: &Api<Deployment>,
    pods: &Api<Pod>,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<Deployment, RuntimeError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = Duration::from_millis(100);
    loop {
        let d = api
            .get_opt(name)
            .await
            .map_err(|e| api_error(e, &format!("read Deployment {namespace}/{name}")))?
            .ok_or_else(|| {
                RuntimeError::rollout(
                    RolloutCause::Other,
                    format!(
                        "Deployment {namespace}/{name} was deleted while its rollout was in progress"
                    ),
                )
            })?;
        let status = match rollout_status(&d, &[]) {
            RolloutStatus::Waiting(_) => {
                let listed = pods_of(pods, &d).await.map_err(|e| {
                    api_error(
                        e,
                        &format!("list the pods of Deployment {namespace}/{name}"),
                    )
                })?;
                rollout_status(&d, &listed)
            }
            decided => decided,
        };
        match status {
            RolloutStatus::Complete => return Ok(d),
            RolloutStatus::Failed(why) => {
                return Err(RuntimeError::rollout(why.cause(), format!(
                    "the rollout of Deployment {namespace}/{name} failed: {why}. Check the pods with `kubectl -n {namespace} describe deployment {name}`; the Deployment keeps the failed template until the next apply."
                )))
            }
            RolloutStatus::Waiting(what) => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Err(RuntimeError::rollout(RolloutCause::Other, format!(
                        "the rollout of Deployment {namespace}/{name} did not finish within {timeout:?}: {what} ({}). Raise the resource's create/update timeout, or check the pods with `kubectl -n {namespace} describe deployment {name}`.",
                        conditions_summary(&d)
                    )));
                }
                tokio::time::sleep(interval.min(deadline - now)).await;
                interval = (interval * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn deployment(
        generation: i64,
        desired: i32,
        status: DeploymentStatus,
        conditions: Vec<(&str, &str, &str)>,
    ) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(desired),
                ..DeploymentSpec::default()
            }),
            status: Some(status),
            ..Deployment::default()
        };
        d.metadata.generation = Some(generation);
        if let Some(s) = d.status.as_mut() {
            s.conditions = Some(
                conditions
                    .into_iter()
                    .map(|(t, st, reason)| DeploymentCondition {
                        type_: t.into(),
                        status: st.into(),
                        reason: Some(reason.into()),
                        message: Some(format!("{t} says {reason}")),
                        ..DeploymentCondition::default()
                    })
                    .collect(),
            );
        }
        d
    }

    fn status(observed: i64, replicas: i32, updated: i32, available: i32) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            ..DeploymentStatus::default()
        }
    }

    #[test]
    fn unobserved_generation_waits_even_if_counts_look_done() {
        let d = deployment(2, 3, status(1, 3, 3, 3), vec![]);
        assert!(
            matches!(rollout_status(&d, &[]), RolloutStatus::Waiting(m) if m.contains("observe"))
        );
    }

    #[test]
    fn progress_deadline_exceeded_fails_and_names_the_condition() {
        let d = deployment(
            2,
            3,
            status(2, 4, 3, 1),
            vec![
                ("Available", "True", "MinimumReplicasAvailable"),
                ("Progressing", "False", "ProgressDeadlineExceeded"),
            ],
        );
        match rollout_status(&d, &[]) {
            RolloutStatus::Failed(f @ Failure::ProgressDeadlineExceeded { .. }) => {
                let m = f.to_string();
                assert!(m.contains("Progressing is False"), "{m}");
                assert!(
                    m.contains("Progressing says ProgressDeadlineExceeded"),
                    "{m}"
                );
            }
            other => panic!("expected failure, got {other:?}"),
        }
    }

    #[test]
    fn waits_for_updated_then_old_then_available_in_that_order() {
        let d = deployment(2, 3, status(2, 4, 1, 3), vec![]);
        assert_eq!(
            rollout_status(&d, &[]),
            RolloutStatus::Waiting("1 of 3 new replicas have been updated".into())
        );
        let d = deployment(2, 3, status(2, 4, 3, 3), vec![]);
        assert_eq!(
            rollout_status(&d, &[]),
            RolloutStatus::Waiting("1 old replicas are pending termination".into())
        );
        let d = deployment(2, 3, status(2, 3, 3, 2), vec![]);
        assert_eq!(
            rollout_status(&d, &[]),
            RolloutStatus::Waiting("2 of 3 updated replicas are available".into())
        );
        let d = deployment(
            2,
            3,
            status(2, 3, 3, 3),
            vec![("Progressing", "True", "NewReplicaSetAvailable")],
        );
        assert_eq!(rollout_status(&d, &[]), RolloutStatus::Complete);
    }

    #[test]
    fn scaled_to_zero_is_complete_once_observed() {
        let d = deployment(3, 0, status(3, 0, 0, 0), vec![]);
        assert_eq!(rollout_status(&d, &[]), RolloutStatus::Complete);
    }

    #[test]
    fn missing_replicas_defaults_to_one_like_the_api_server() {
        let mut d = deployment(1, 1, status(1, 0, 0, 0), vec![]);
        if let Some(s) = d.spec.as_mut() {
            s.replicas = None;
        }
        assert!(matches!(rollout_status(&d, &[]), RolloutStatus::Waiting(_)));
    }

    fn pod(digest: &str, reason: &str, restarts: i32) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("web-{digest}-x"), "annotations": {ANNOTATION_TEMPLATE_DIGEST: digest}},
            "status": {"containerStatuses": [{
                "name": "web", "image": "nginx", "imageID": "", "ready": false, "restartCount": restarts,
                "state": {"waiting": {"reason": reason, "message": "it says why"}}
            }]}
        }))
        .unwrap()
    }

    fn with_digest(mut d: Deployment, digest: &str) -> Deployment {
        let spec = d.spec.get_or_insert_with(DeploymentSpec::default);
        spec.template.metadata = Some(
            serde_json::from_value(
                serde_json::json!({"annotations": {ANNOTATION_TEMPLATE_DIGEST: digest}}),
            )
            .unwrap(),
        );
        d
    }

    #[test]
    fn a_replica_failure_fails_at_once_with_its_reason() {
        let d = deployment(
            2,
            3,
            status(2, 3, 0, 3),
            vec![
                ("Progressing", "True", "ReplicaSetUpdated"),
                ("ReplicaFailure", "True", "FailedCreate"),
            ],
        );
        assert_eq!(
            rollout_status(&d, &[]),
            RolloutStatus::Failed(Failure::ReplicaFailure {
                reason: "FailedCreate".into(),
                message: "ReplicaFailure says FailedCreate".into()
            })
        );
    }

    #[test]
    fn a_stuck_pod_of_the_current_template_fails_and_old_ones_do_not() {
        let d = with_digest(
            deployment(
                2,
                2,
                status(2, 3, 1, 2),
                vec![("Progressing", "True", "ReplicaSetUpdated")],
            ),
            "new",
        );
        // An old pod crash-looping does not fail the new rollout.
        let old = pod("old", "CrashLoopBackOff", 4);
        assert!(matches!(
            rollout_status(&d, std::slice::from_ref(&old)),
            RolloutStatus::Waiting(_)
        ));
        // A transient pull error waits for the kubelet's verdict.
        assert!(matches!(
            rollout_status(&d, &[pod("new", "ErrImagePull", 0)]),
            RolloutStatus::Waiting(_)
        ));
        match rollout_status(&d, &[old, pod("new", "ImagePullBackOff", 0)]) {
            RolloutStatus::Failed(Failure::Container { reason, pod, .. }) => {
                assert_eq!(reason, "ImagePullBackOff");
                assert_eq!(pod, "web-new-x");
            }
            other => panic!("{other:?}"),
        }
        match rollout_status(&d, &[pod("new", "CrashLoopBackOff", 3)]) {
            RolloutStatus::Failed(f @ Failure::Container { restarts: 3, .. }) => {
                assert!(f.to_string().contains("--previous"), "{f}");
            }
            other => panic!("{other:?}"),
        }
    }
}
