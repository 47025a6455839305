//! `/openapi/v3`: the index of group-version documents and, per group-version, the
//! operations a client inspects.
//!
//! `kubectl apply`/`create`/`diff` read these to decide whether the server validates
//! fields itself: when the PATCH operation for a kind lists the `fieldValidation` query
//! parameter, kubectl sends `fieldValidation=Strict` and leaves validation to the server
//! ([`schema`](super::schema)) instead of validating against a downloaded schema. kubectl
//! builds strategic merge patches for built-in kinds from the types compiled into it, so
//! no component schemas are needed; they are left out rather than approximated.

use serde_json::{json, Map, Value};

use super::kinds::{Kind, KINDS};

/// `api/v1`, `apis/apps/v1`: the keys of the index.
fn gv_path(kind: &Kind) -> String {
    if kind.group.is_empty() {
        format!("api/{}", kind.version)
    } else {
        format!("apis/{}/{}", kind.group, kind.version)
    }
}

/// The real server's hash changes with the document; this one never changes.
const HASH: &str = "5L1PWAYFAKE0000000000000000000000000000000000000000000000000000000";

/// `/openapi/v3`.
pub fn index() -> Value {
    let mut paths = Map::new();
    for kind in KINDS {
        let gv = gv_path(kind);
        paths.insert(
            gv.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={HASH}")}),
        );
    }
    json!({ "paths": paths })
}

fn query(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(kind: &Kind, id: &str, params: &[&str]) -> Value {
    json!({
        "operationId": id,
        "x-kubernetes-group-version-kind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
        "parameters": params.iter().map(|p| query(p)).collect::<Vec<_>>(),
        "responses": {"200": {"description": "OK"}}
    })
}

/// `/openapi/v3/<api/v1 | apis/GROUP/VERSION>`, or `None` for one not served.
pub fn group_version(gv: &str) -> Option<Value> {
    let kinds: Vec<&Kind> = KINDS.iter().filter(|k| gv_path(k) == gv).collect();
    if kinds.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for kind in kinds {
        let base = if kind.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}", kind.plural)
        } else {
            format!("/{gv}/{}", kind.plural)
        };
        let writes = ["dryRun", "fieldManager", "fieldValidation"];
        let mut patch_params = writes.to_vec();
        patch_params.push("force");
        paths.insert(
            base.clone(),
            json!({
                "get": operation(kind, &format!("list{}", kind.kind), &["labelSelector", "fieldSelector", "resourceVersion", "timeoutSeconds", "watch"]),
                "post": operation(kind, &format!("create{}", kind.kind), &writes),
            }),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": operation(kind, &format!("read{}", kind.kind), &[]),
                "put": operation(kind, &format!("replace{}", kind.kind), &writes),
                "patch": operation(kind, &format!("patch{}", kind.kind), &patch_params),
                "delete": operation(kind, &format!("delete{}", kind.kind), &["dryRun", "propagationPolicy"]),
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0-slipway-fake"},
        "paths": paths,
        "components": {"schemas": {}}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_declares_field_validation_on_patch() {
        let index = index();
        for kind in KINDS {
            let gv = gv_path(kind);
            assert!(index["paths"][&gv]["serverRelativeURL"].is_string());
            let doc = group_version(&gv).unwrap();
            let found = doc["paths"].as_object().unwrap().values().any(|p| {
                p["patch"]["x-kubernetes-group-version-kind"]["kind"] == json!(kind.kind)
                    && p["patch"]["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|q| q["name"] == json!("fieldValidation"))
            });
            assert!(found, "{}", kind.kind);
        }
        assert!(group_version("apis/batch/v1").is_none());
    }
}
