//! Waiting for a Deployment's rollout the way `kubectl rollout status` does.
//!
//! [`rollout_status`] is the decision, a pure function over the Deployment; [`wait`] polls
//! the API server until it says done or failed, or the resource's timeout passes. Polling
//! GETs rather than a watch: one request a second per application is cheap, works
//! through every proxy, and needs no resumable stream.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition};
use kube::Api;

use super::apply::api_error;
use crate::runtime::RuntimeError;

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutStatus {
    /// Every desired replica runs the current template and is available.
    Complete,
    /// Still going; the message says what it waits for, in kubectl's words.
    Waiting(String),
    /// It will not finish by itself; the message names the failing condition.
    Failed(String),
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

/// kubectl's rollout status: the controller must have observed the current generation
/// before anything else counts; then `ProgressDeadlineExceeded` is a failure; then it
/// waits for updated, then for old replicas to go, then for updated ones to be available.
pub fn rollout_status(d: &Deployment) -> RolloutStatus {
    let generation = d.metadata.generation.unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or_default() < generation {
        return RolloutStatus::Waiting(
            "waiting for the deployment controller to observe the new spec".to_owned(),
        );
    }
    if let Some(c) = condition(d, "Progressing") {
        if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return RolloutStatus::Failed(describe(c));
        }
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

/// Polls `namespace/name` until its rollout completes (returning the Deployment), fails
/// or `timeout` passes (both [`RuntimeError::RolloutFailed`], naming the condition).
pub async fn wait(
    api: &Api<Deployment>,
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
                RuntimeError::RolloutFailed(format!(
                    "Deployment {namespace}/{name} was deleted while its rollout was in progress"
                ))
            })?;
        match rollout_status(&d) {
            RolloutStatus::Complete => return Ok(d),
            RolloutStatus::Failed(why) => {
                return Err(RuntimeError::RolloutFailed(format!(
                    "the rollout of Deployment {namespace}/{name} failed: {why}. Check the pods with `kubectl -n {namespace} describe deployment {name}`; the Deployment keeps the failed template until the next apply."
                )))
            }
            RolloutStatus::Waiting(what) => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Err(RuntimeError::RolloutFailed(format!(
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
        assert!(matches!(rollout_status(&d), RolloutStatus::Waiting(m) if m.contains("observe")));
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
        match rollout_status(&d) {
            RolloutStatus::Failed(m) => {
                assert!(m.contains("Progressing is False"), "{m}");
                assert!(m.contains("ProgressDeadlineExceeded"), "{m}");
            }
            other => panic!("expected failure, got {other:?}"),
        }
    }

    #[test]
    fn waits_for_updated_then_old_then_available_in_that_order() {
        let d = deployment(2, 3, status(2, 4, 1, 3), vec![]);
        assert_eq!(
            rollout_status(&d),
            RolloutStatus::Waiting("1 of 3 new replicas have been updated".into())
        );
        let d = deployment(2, 3, status(2, 4, 3, 3), vec![]);
        assert_eq!(
            rollout_status(&d),
            RolloutStatus::Waiting("1 old replicas are pending termination".into())
        );
        let d = deployment(2, 3, status(2, 3, 3, 2), vec![]);
        assert_eq!(
            rollout_status(&d),
            RolloutStatus::Waiting("2 of 3 updated replicas are available".into())
        );
        let d = deployment(
            2,
            3,
            status(2, 3, 3, 3),
            vec![("Progressing", "True", "NewReplicaSetAvailable")],
        );
        assert_eq!(rollout_status(&d), RolloutStatus::Complete);
    }

    #[test]
    fn scaled_to_zero_is_complete_once_observed() {
        let d = deployment(3, 0, status(3, 0, 0, 0), vec![]);
        assert_eq!(rollout_status(&d), RolloutStatus::Complete);
    }

    #[test]
    fn missing_replicas_defaults_to_one_like_the_api_server() {
        let mut d = deployment(1, 1, status(1, 0, 0, 0), vec![]);
        if let Some(s) = d.spec.as_mut() {
            s.replicas = None;
        }
        assert!(matches!(rollout_status(&d), RolloutStatus::Waiting(_)));
    }
}
