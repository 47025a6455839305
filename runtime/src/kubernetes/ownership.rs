//! Whose object is this? Slipway changes and deletes only objects it labelled itself,
//! for the same environment or application id.
//!
//! Server-side apply with `force` would happily take over any object with the right
//! name, so every write first reads the object and checks here. An object without
//! Slipway's label was made by someone else (a person, Helm, another tool): Slipway never
//! adopts or deletes it, and the error says how to bring it under Terraform deliberately.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::mapping::{annotated_id, id_label, LABEL_MANAGED_BY, MANAGED_BY};
use crate::RuntimeError;

/// Which Slipway object an existing Kubernetes object must be.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `Namespace`, `Deployment`, …, for messages.
    pub kind: &'a str,
    /// The id label and annotation key: environment or application id.
    pub id_key: &'a str,
    pub id: &'a str,
    /// The Terraform resource type that would import it.
    pub resource: &'a str,
}

fn display_name(meta: &ObjectMeta) -> String {
    let name = meta.name.clone().unwrap_or_default();
    match &meta.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name,
    }
}

/// Whether the object carries `app.kubernetes.io/managed-by=slipway`.
pub fn is_managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .map(String::as_str)
        == Some(MANAGED_BY)
}

/// The id the object belongs to, when it is Slipway's.
pub fn owner_id<'a>(meta: &'a ObjectMeta, id_key: &str) -> Option<&'a str> {
    if !is_managed(meta) {
        return None;
    }
    annotated_id(meta, id_key)
}

/// Ok when `meta` is Slipway's object for `expected.id`; otherwise a conflict that says
/// whose it is and how to import it.
pub fn check(meta: &ObjectMeta, expected: Expected<'_>) -> Result<(), RuntimeError> {
    let Expected {
        kind,
        id_key,
        id,
        resource,
    } = expected;
    let what = format!("{kind} {}", display_name(meta));
    if !is_managed(meta) {
        return Err(RuntimeError::Conflict(format!(
            "{what} already exists and is not managed by Slipway (it has no label {LABEL_MANAGED_BY}={MANAGED_BY}). Slipway never adopts or deletes objects it did not create: choose another name, or delete or rename that object yourself. If it is a Slipway object whose labels were removed, restore them (`kubectl label` {LABEL_MANAGED_BY}={MANAGED_BY} {id_key}=<id label>) and bring it under Terraform with `terraform import {resource}.<name> <id>`."
        )));
    }
    let label = meta.labels.as_ref().and_then(|l| l.get(id_key));
    let owner = annotated_id(meta, id_key);
    if owner == Some(id) && label.map(String::as_str) == Some(id_label(id).as_str()) {
        return Ok(());
    }
    match owner {
        Some(other) => Err(RuntimeError::Conflict(format!(
            "{what} belongs to another Slipway {resource} (id {other}). Choose another name, or manage that one from this configuration with `terraform import {resource}.<name> {other}`."
        ))),
        None => Err(RuntimeError::Conflict(format!(
            "{what} is labelled {LABEL_MANAGED_BY}={MANAGED_BY} but has no {id_key} annotation, so Slipway cannot tell whose it is and will not change it. Delete it, or restore the annotation and `terraform import {resource}.<name> <id>`."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::kubernetes::mapping::LABEL_APPLICATION_ID;

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("dev".into()),
            labels: map(labels),
            annotations: map(annotations),
            ..ObjectMeta::default()
        }
    }

    fn expected(id: &str) -> Expected<'_> {
        Expected {
            kind: "Deployment",
            id_key: LABEL_APPLICATION_ID,
            id,
            resource: "slipway_application",
        }
    }

    #[test]
    fn our_own_object_passes() {
        let m = meta(
            &[
                (LABEL_MANAGED_BY, MANAGED_BY),
                (LABEL_APPLICATION_ID, "web-1"),
            ],
            &[(LABEL_APPLICATION_ID, "web-1")],
        );
        check(&m, expected("web-1")).unwrap();
        assert_eq!(owner_id(&m, LABEL_APPLICATION_ID), Some("web-1"));
    }

    #[test]
    fn an_unlabelled_object_is_refused_with_a_pointer_to_import() {
        let m = meta(&[("app", "web")], &[]);
        let e = check(&m, expected("web-1")).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, RuntimeError::Conflict(_)));
        assert!(msg.contains("Deployment dev/web"), "{msg}");
        assert!(msg.contains("not managed by Slipway"), "{msg}");
        assert!(msg.contains("terraform import"), "{msg}");
        assert_eq!(owner_id(&m, LABEL_APPLICATION_ID), None);
    }

    #[test]
    fn another_applications_object_names_its_id() {
        let m = meta(
            &[
                (LABEL_MANAGED_BY, MANAGED_BY),
                (LABEL_APPLICATION_ID, "web-2"),
            ],
            &[(LABEL_APPLICATION_ID, "web-2")],
        );
        let msg = check(&m, expected("web-1")).unwrap_err().to_string();
        assert!(msg.contains("id web-2"), "{msg}");
        assert!(
            msg.contains("terraform import slipway_application.<name> web-2"),
            "{msg}"
        );
    }
}
