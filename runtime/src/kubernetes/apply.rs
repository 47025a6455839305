//! Writing objects: server-side apply under one field manager, and API errors as
//! [`RuntimeError`]s.
//!
//! Server-side apply sends only the fields Slipway sets (k8s-openapi leaves unset
//! `Option`s out of the JSON), so fields that other controllers own (an HPA's replicas
//! aside, which Slipway does own) stay theirs; fields Slipway stops sending are removed
//! by the API server. `force` takes over conflicting fields: what Slipway sends is the
//! Terraform configuration, which wins over a `kubectl edit` by design, and the
//! provenance annotations record the change.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::Api;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::RuntimeError;

/// The field manager for everything Slipway writes.
pub const FIELD_MANAGER: &str = "slipway";

/// Server-side applies `object` as `name` with [`FIELD_MANAGER`], forcing conflicts.
/// `what` names the object for the error (`Deployment dev/web`).
pub async fn apply<K>(api: &Api<K>, name: &str, object: &K, what: &str) -> Result<K, RuntimeError>
where
    K: Clone + DeserializeOwned + Serialize + Debug,
{
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map_err(|e| api_error(e, &format!("apply {what}")))
}

/// Reads `name`, or `None` when it does not exist.
pub async fn get<K>(api: &Api<K>, name: &str, what: &str) -> Result<Option<K>, RuntimeError>
where
    K: Clone + DeserializeOwned + Debug,
{
    api.get_opt(name)
        .await
        .map_err(|e| api_error(e, &format!("read {what}")))
}

/// A kube error as a runtime error, saying what Slipway was doing. API server messages
/// name objects and fields, never the values of a Secret's data, so they are kept.
pub fn api_error(error: kube::Error, action: &str) -> RuntimeError {
    match error {
        kube::Error::Api(status) => {
            let message = format!(
                "cannot {action}: the API server answered {} {}: {}",
                status.code, status.reason, status.message
            );
            match status.code {
                404 => RuntimeError::NotFound(message),
                409 => RuntimeError::Conflict(message),
                422 | 400 => RuntimeError::Invalid(message),
                401 => RuntimeError::Unavailable(format!(
                    "{message}. The kubeconfig's credentials were refused; refresh them (for example log in again) and retry."
                )),
                403 if status.message.contains("being terminated") => {
                    RuntimeError::Conflict(format!(
                        "{message}. The environment's namespace is being deleted; wait for it to finish, then apply again."
                    ))
                }
                403 => RuntimeError::Other(format!(
                    "{message}. Slipway's service account or user needs permission for this; see the kubernetes runtime's RBAC notes."
                )),
                _ => RuntimeError::Other(message),
            }
        }
        kube::Error::HyperError(e) => RuntimeError::Unavailable(format!("cannot {action}: {e}")),
        kube::Error::Service(e) => RuntimeError::Unavailable(format!("cannot {action}: {e}")),
        other => RuntimeError::Other(format!("cannot {action}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut s = kube::core::Status::failure(message, reason);
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn api_errors_keep_their_kind_and_say_what_was_being_done() {
        let e = api_error(
            status(404, "NotFound", "deployments \"web\" not found"),
            "read Deployment dev/web",
        );
        assert!(matches!(&e, RuntimeError::NotFound(m) if m.contains("read Deployment dev/web")));
        assert!(matches!(
            api_error(status(409, "Conflict", "x"), "a"),
            RuntimeError::Conflict(_)
        ));
        assert!(matches!(
            api_error(status(422, "Invalid", "x"), "a"),
            RuntimeError::Invalid(_)
        ));
        let e = api_error(
            status(
                403,
                "Forbidden",
                "unable to create new content in namespace dev because it is being terminated",
            ),
            "apply Deployment dev/web",
        );
        assert!(matches!(&e, RuntimeError::Conflict(m) if m.contains("being deleted")));
    }
}
