//! Strategic merge patch, as `kubectl apply` (client-side), `kubectl diff` and
//! `kubectl patch` send it, for the kinds the fake serves.
//!
//! It differs from a JSON merge patch in lists: a list with a patch merge key
//! (`containers` by `name`, container `ports` by `containerPort`, …) merges element by
//! element, and `metadata.finalizers` merges as a set; other lists are replaced. The
//! directives kubectl emits are honoured: `$patch` (`replace`, `delete`, `merge`),
//! `$setElementOrder/<list>`, `$retainKeys` and `$deleteFromPrimitiveList/<list>`. A
//! directive it does not know is a 400, never a guess. The merge keys are those of the
//! Go types' `patchMergeKey` tags.

use serde_json::{Map, Value};

use super::errors::ApiError;

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// Elements are objects matched by this key.
    MergeKey(&'static str),
    /// Elements are scalars kept as a set.
    Set,
    Replace,
}

/// The strategy for the list at `path` (field names from the root, no indices).
fn strategy(kind: &str, path: &[String]) -> ListStrategy {
    let n = path.len();
    let field = path.last().map(String::as_str).unwrap_or_default();
    let parent = if n >= 2 { path[n - 2].as_str() } else { "" };
    match (parent, field) {
        ("metadata", "finalizers") => ListStrategy::Set,
        ("metadata", "ownerReferences") => ListStrategy::MergeKey("uid"),
        ("containers" | "initContainers" | "ephemeralContainers", "ports") => {
            ListStrategy::MergeKey("containerPort")
        }
        ("containers" | "initContainers" | "ephemeralContainers", "env") => {
            ListStrategy::MergeKey("name")
        }
        ("containers" | "initContainers" | "ephemeralContainers", "volumeMounts") => {
            ListStrategy::MergeKey("mountPath")
        }
        ("containers" | "initContainers" | "ephemeralContainers", "volumeDevices") => {
            ListStrategy::MergeKey("devicePath")
        }
        ("containers" | "initContainers" | "ephemeralContainers", "resizePolicy") => {
            ListStrategy::MergeKey("resourceName")
        }
        (
            "spec",
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "volumes"
            | "imagePullSecrets"
            | "resourceClaims",
        ) => ListStrategy::MergeKey("name"),
        ("spec", "hostAliases") => ListStrategy::MergeKey("ip"),
        ("spec", "topologySpreadConstraints") => ListStrategy::MergeKey("topologyKey"),
        ("spec", "ports") if kind == "Service" && n == 2 => ListStrategy::MergeKey("port"),
        ("status", "conditions") => ListStrategy::MergeKey("type"),
        _ => ListStrategy::Replace,
    }
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request(message)
}

/// Applies `patch` to `target` (an object of `kind`).
pub fn apply(kind: &str, target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let Some(p) = patch.as_object() else {
        return Err(bad("a strategic merge patch must be a JSON object".into()));
    };
    let mut out = target.as_object().cloned().unwrap_or_default();
    merge_map(kind, &mut out, p, &mut Vec::new())?;
    Ok(Value::Object(out))
}

/// A patch value with its directives taken out, for a field the target lacks.
fn strip(kind: &str, value: &Value, path: &mut Vec<String>) -> Result<Value, ApiError> {
    match value {
        Value::Object(p) => {
            let mut out = Map::new();
            merge_map(kind, &mut out, p, path)?;
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                if item.get("$patch").is_some() {
                    continue;
                }
                out.push(strip(kind, item, path)?);
            }
            Ok(Value::Array(out))
        }
        other => Ok(other.clone()),
    }
}

fn merge_map(
    kind: &str,
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), ApiError> {
    match patch.get("$patch").and_then(Value::as_str) {
        None | Some("merge") => {}
        Some("replace") => {
            let mut fresh = Map::new();
            let rest: Map<String, Value> = patch
                .iter()
                .filter(|(k, _)| k.as_str() != "$patch")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            merge_map(kind, &mut fresh, &rest, path)?;
            *target = fresh;
            return Ok(());
        }
        Some(other) => {
            return Err(bad(format!(
                "unknown patch type {other:?} in the strategic merge patch at {:?}",
                path.join(".")
            )))
        }
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, value) in patch {
        if key == "$patch" {
            continue;
        }
        if let Some(list) = key.strip_prefix("$setElementOrder/") {
            let order = value.as_array().cloned().unwrap_or_default();
            orders.push((list.to_owned(), order));
            continue;
        }
        if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = target.get_mut(list) {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if key == "$retainKeys" {
            continue;
        }
        if key.starts_with('$') {
            return Err(bad(format!(
                "unknown directive {key:?} in the strategic merge patch"
            )));
        }
        path.push(key.clone());
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(p) => {
                if p.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target.remove(key);
                } else {
                    let mut child = match target.remove(key) {
                        Some(Value::Object(m)) => m,
                        _ => Map::new(),
                    };
                    merge_map(kind, &mut child, p, path)?;
                    target.insert(key.clone(), Value::Object(child));
                }
            }
            Value::Array(items) => {
                let merged = merge_list(kind, target.get(key), items, path)?;
                target.insert(key.clone(), merged);
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
        path.pop();
    }
    for (list, order) in orders {
        path.push(list.clone());
        let s = strategy(kind, path);
        path.pop();
        if let Some(Value::Array(items)) = target.get_mut(&list) {
            reorder(items, &order, s);
        }
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        target.retain(|k, _| keep.iter().any(|r| r.as_str() == Some(k)));
    }
    Ok(())
}

fn merge_list(
    kind: &str,
    target: Option<&Value>,
    items: &[Value],
    path: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let current = target
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // `{"$patch": "replace"}` among the elements: the list becomes the rest.
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return strip(kind, &Value::Array(items.to_vec()), path);
    }
    match strategy(kind, path) {
        ListStrategy::Replace => strip(kind, &Value::Array(items.to_vec()), path),
        ListStrategy::Set => {
            let mut out = current;
            for i in items {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
            Ok(Value::Array(out))
        }
        ListStrategy::MergeKey(merge_key) => {
            let mut out = current;
            for item in items {
                let Some(p) = item.as_object() else {
                    return Err(bad(format!(
                        "{}: the elements of a list merged by {merge_key:?} must be objects",
                        path.join(".")
                    )));
                };
                let Some(id) = p.get(merge_key) else {
                    return Err(bad(format!(
                        "{}: an element has no merge key {merge_key:?}",
                        path.join(".")
                    )));
                };
                let at = out.iter().position(|e| e.get(merge_key) == Some(id));
                if p.get("$patch").and_then(Value::as_str) == Some("delete") {
                    out.retain(|e| e.get(merge_key) != Some(id));
                    continue;
                }
                match at {
                    Some(i) => {
                        let mut element = out[i].as_object().cloned().unwrap_or_default();
                        merge_map(kind, &mut element, p, path)?;
                        out[i] = Value::Object(element);
                    }
                    None => out.push(strip(kind, item, path)?),
                }
            }
            Ok(Value::Array(out))
        }
    }
}

/// `$setElementOrder`: the listed elements in that order, the others after them in
/// their own order.
fn reorder(items: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let same = |a: &Value, b: &Value| match strategy {
        ListStrategy::MergeKey(k) => a.get(k).is_some() && a.get(k) == b.get(k),
        _ => a == b,
    };
    let mut rest = std::mem::take(items);
    for o in order {
        if let Some(i) = rest.iter().position(|e| same(e, o)) {
            items.push(rest.remove(i));
        }
    }
    items.extend(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
        "spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "busybox"}
        ]}}}})
    }

    #[test]
    fn containers_merge_by_name_and_ports_by_container_port() {
        let patch = json!({"metadata": {"labels": {"b": null, "c": "3"}, "finalizers": ["y"]},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
                "containers": [{"name": "web", "image": "nginx:2", "env": [{"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 81}]}]}}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "c": "3"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["name"], json!("side"));
        assert_eq!(c[1]["image"], json!("nginx:2"));
        assert_eq!(
            c[1]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(
            c[1]["ports"],
            json!([{"containerPort": 80}, {"containerPort": 81}])
        );
    }

    #[test]
    fn directives_delete_replace_and_unknown_ones_are_refused() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "z": "9"}}});
        let out = apply("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"z": "9"}));
        let patch = json!({"metadata": {"$foo": 1}});
        assert_eq!(
            apply("Deployment", &deployment(), &patch).unwrap_err().code,
            400
        );
        // A list without a merge key is replaced.
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "args": ["b"]}]}}}});
        let base = apply("Deployment", &deployment(), &json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "args": ["a", "c"]}]}}}})).unwrap();
        let out = apply("Deployment", &base, &patch).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["b"])
        );
    }
}
