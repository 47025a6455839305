//! Field ownership for server-side apply: which manager owns which fields, conflicts,
//! and removal of the fields a manager stops applying.
//!
//! A simplified `fieldsV1`: a field is a path of map keys and list-element keys. Lists
//! that the API declares as maps (`containers` by `name`, container `ports` by
//! `containerPort` and `protocol`, …) have one path per element plus paths inside it;
//! every other list is atomic, one field. Leaves are scalars, atomic lists and empty maps.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    /// A map key.
    Field(String),
    /// A list element, by its key fields rendered as canonical JSON (`{"name":"web"}`).
    Key(String),
}

pub type Path = Vec<Seg>;
pub type FieldSet = BTreeSet<Path>;

/// The key fields of the elements of the list under `list_field`, if it is a keyed list.
fn element_key(list_field: &str, element: &Value) -> Option<String> {
    let obj = element.as_object()?;
    let pick = |names: &[&str], defaults: &[(&str, Value)]| -> Option<String> {
        let mut key = BTreeMap::new();
        for n in names {
            let v = obj.get(*n).cloned().or_else(|| {
                defaults
                    .iter()
                    .find(|(d, _)| d == n)
                    .map(|(_, v)| v.clone())
            })?;
            key.insert((*n).to_owned(), v);
        }
        serde_json::to_string(&key).ok()
    };
    let tcp = [("protocol", Value::String("TCP".into()))];
    match list_field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => pick(&["name"], &[]),
        "volumeMounts" => pick(&["mountPath"], &[]),
        "conditions" => pick(&["type"], &[]),
        "ports" if obj.contains_key("containerPort") => pick(&["containerPort", "protocol"], &tcp),
        "ports" if obj.contains_key("port") => pick(&["port", "protocol"], &tcp),
        _ => None,
    }
}

fn is_keyed_list(list_field: &str, items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|e| element_key(list_field, e).is_some())
}

fn collect(value: &Map<String, Value>, prefix: &Path, out: &mut FieldSet) {
    for (k, v) in value {
        let mut path = prefix.clone();
        path.push(Seg::Field(k.clone()));
        match v {
            Value::Object(m) if !m.is_empty() => collect(m, &path, out),
            Value::Array(items) if is_keyed_list(k, items) => {
                for item in items {
                    if let (Some(key), Some(obj)) = (element_key(k, item), item.as_object()) {
                        let mut element = path.clone();
                        element.push(Seg::Key(key));
                        out.insert(element.clone());
                        collect(obj, &element, out);
                    }
                }
            }
            _ => {
                out.insert(path);
            }
        }
    }
}

/// The fields set in `object`, without identity (`apiVersion`, `kind`, `metadata.name`,
/// `metadata.namespace`) and server-owned metadata.
pub fn field_set(object: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(m) = object.as_object() {
        collect(m, &Vec::new(), &mut out);
    }
    let ignored = ["apiVersion", "kind", "status"];
    out.retain(|p| {
        let first = match p.first() {
            Some(Seg::Field(f)) => f.as_str(),
            _ => "",
        };
        if ignored.contains(&first) {
            return false;
        }
        if first == "metadata" {
            let second = match p.get(1) {
                Some(Seg::Field(f)) => f.as_str(),
                _ => "",
            };
            return matches!(
                second,
                "labels" | "annotations" | "finalizers" | "ownerReferences"
            );
        }
        true
    });
    out
}

/// The value at `path`, if present.
pub fn value_at<'a>(object: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    let mut current = object;
    let mut last_field = "";
    for seg in path {
        match seg {
            Seg::Field(f) => {
                current = current.as_object()?.get(f)?;
                last_field = f;
            }
            Seg::Key(k) => {
                current = current
                    .as_array()?
                    .iter()
                    .find(|e| element_key(last_field, e).as_deref() == Some(k.as_str()))?;
            }
        }
    }
    Some(current)
}

/// Removes the field or list element at `path`, if present.
pub fn remove_at(object: &mut Value, path: &[Seg]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let list_field = match parent_path.last() {
        Some(Seg::Field(f)) => f.clone(),
        _ => String::new(),
    };
    let Some(parent) = value_at_mut(object, parent_path) else {
        return;
    };
    match last {
        Seg::Field(f) => {
            if let Some(m) = parent.as_object_mut() {
                m.remove(f);
            }
        }
        Seg::Key(k) => {
            if let Some(items) = parent.as_array_mut() {
                items.retain(|e| element_key(&list_field, e).as_deref() != Some(k.as_str()));
            }
        }
    }
}

fn value_at_mut<'a>(object: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut current = object;
    let mut last_field = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) => {
                current = current.as_object_mut()?.get_mut(f)?;
                last_field = f.clone();
            }
            Seg::Key(k) => {
                current = current
                    .as_array_mut()?
                    .iter_mut()
                    .find(|e| element_key(&last_field, e).as_deref() == Some(k.as_str()))?;
            }
        }
    }
    Some(current)
}

/// Merges `applied` into `live`: maps by key, keyed lists by element key (elements only
/// in `live` stay, after the applied ones), everything else replaced.
pub fn merge(live: &mut Value, applied: &Value) {
    let (Some(l), Some(a)) = (live.as_object_mut(), applied.as_object()) else {
        *live = applied.clone();
        return;
    };
    for (k, av) in a {
        match (l.get_mut(k), av) {
            (Some(lv @ Value::Object(_)), Value::Object(_)) => merge(lv, av),
            (Some(Value::Array(litems)), Value::Array(aitems))
                if is_keyed_list(k, aitems)
                    && litems.iter().all(|e| element_key(k, e).is_some()) =>
            {
                let mut result = Vec::new();
                let mut rest = std::mem::take(litems);
                for ai in aitems {
                    let key = element_key(k, ai);
                    match rest.iter().position(|li| element_key(k, li) == key) {
                        Some(i) => {
                            let mut li = rest.remove(i);
                            merge(&mut li, ai);
                            result.push(li);
                        }
                        None => result.push(ai.clone()),
                    }
                }
                result.extend(rest);
                *litems = result;
            }
            _ => {
                l.insert(k.clone(), av.clone());
            }
        }
    }
}

/// One manager's entry: its operation (`Apply` or `Update`) and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub fields: FieldSet,
    pub time: String,
}

/// A conflict: another manager owns a field with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub path: String,
}

/// A path as the API server prints it in conflict messages: `.spec.replicas`,
/// `.spec.template.spec.containers[name="web"].image`.
pub fn display(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Seg::Key(k) => {
                let parsed: BTreeMap<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
        }
    }
    s
}

/// Server-side apply of `applied` (already stripped of server-owned fields) by `manager`
/// onto `live` (None when creating). Returns the new object, or the conflicts when
/// `force` is false and another manager owns a field with a different value.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    managers: &mut Vec<Entry>,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let new_fields = field_set(applied);
    let empty = Value::Object(Map::new());
    let live_value = live.unwrap_or(&empty);
    let mut conflicts = Vec::new();
    for entry in managers.iter() {
        if entry.manager == manager && entry.operation == "Apply" {
            continue;
        }
        for path in entry.fields.intersection(&new_fields) {
            if matches!(path.last(), Some(Seg::Key(_))) {
                continue;
            }
            if value_at(live_value, path) != value_at(applied, path) {
                conflicts.push(Conflict {
                    manager: entry.manager.clone(),
                    path: display(path),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    // Forced: the conflicting fields become this manager's alone.
    for entry in managers.iter_mut() {
        if entry.manager == manager && entry.operation == "Apply" {
            continue;
        }
        let taken: Vec<Path> = entry
            .fields
            .intersection(&new_fields)
            .filter(|p| !matches!(p.last(), Some(Seg::Key(_))))
            .filter(|p| value_at(live_value, p) != value_at(applied, p))
            .cloned()
            .collect();
        for p in taken {
            entry.fields.remove(&p);
        }
    }
    let old_fields = managers
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut result = live_value.clone();
    // Fields this manager stopped applying, that nobody else owns (within), go.
    let others: FieldSet = managers
        .iter()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut dropped: Vec<&Path> = old_fields.difference(&new_fields).collect();
    // Deepest first, so an element's fields go before the element.
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in dropped {
        let owned_by_others = others.iter().any(|o| o.starts_with(path));
        if !owned_by_others {
            remove_at(&mut result, path);
        }
    }
    merge(&mut result, applied);
    set_entry(managers, manager, "Apply", new_fields, now);
    Ok(result)
}

/// Records a non-apply write (create, update, merge patch) by `manager`: the fields
/// whose values it changed become its own and no one else's.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    managers: &mut Vec<Entry>,
    now: &str,
) {
    let empty = Value::Object(Map::new());
    let old = old.unwrap_or(&empty);
    let changed: FieldSet = field_set(new)
        .into_iter()
        .filter(|p| value_at(old, p) != value_at(new, p))
        .collect();
    // Fields that no longer exist belong to nobody.
    let present = field_set(new);
    for entry in managers.iter_mut() {
        entry.fields.retain(|p| present.contains(p));
        if !(entry.manager == manager && entry.operation == "Update") {
            entry.fields.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        let mut fields = managers
            .iter()
            .find(|e| e.manager == manager && e.operation == "Update")
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        fields.extend(changed);
        set_entry(managers, manager, "Update", fields, now);
    }
    managers.retain(|e| !e.fields.is_empty());
}

fn set_entry(
    managers: &mut Vec<Entry>,
    manager: &str,
    operation: &str,
    fields: FieldSet,
    now: &str,
) {
    match managers
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == operation)
    {
        Some(e) => {
            if e.fields != fields {
                e.fields = fields;
                e.time = now.to_owned();
            }
        }
        None => managers.push(Entry {
            manager: manager.to_owned(),
            operation: operation.to_owned(),
            fields,
            time: now.to_owned(),
        }),
    }
    managers.retain(|e| !e.fields.is_empty());
}

/// The `fieldsV1` tree of a field set: `{"f:spec":{"f:replicas":{}}}`, with `"."` for a
/// list element itself.
pub fn fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        insert_path(&mut root, path);
    }
    Value::Object(root)
}

fn insert_path(node: &mut Map<String, Value>, path: &[Seg]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let key = match first {
        Seg::Field(f) => format!("f:{f}"),
        Seg::Key(k) => format!("k:{k}"),
    };
    let child = node.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(child) = child {
        if rest.is_empty() {
            if matches!(first, Seg::Key(_)) {
                child.insert(".".to_owned(), Value::Object(Map::new()));
            }
        } else {
            insert_path(child, rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i64, env: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "1"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx", "env": env}
            ]}}}
        })
    }

    #[test]
    fn keyed_lists_have_element_paths_and_atomic_lists_are_leaves() {
        let fields = field_set(&deployment(1, json!([{"name": "A", "value": "1"}])));
        let shown: Vec<String> = fields.iter().map(|p| display(p)).collect();
        assert!(shown.contains(&".spec.replicas".to_owned()));
        assert!(shown.contains(&".spec.template.spec.containers[name=\"web\"]".to_owned()));
        assert!(shown.contains(
            &".spec.template.spec.containers[name=\"web\"].env[name=\"A\"].value".to_owned()
        ));
        assert!(shown.contains(&".metadata.labels.a".to_owned()));
        assert!(!shown.iter().any(|s| s.starts_with(".metadata.name")));
    }

    #[test]
    fn conflicts_with_another_manager_unless_forced_and_same_values_share() {
        let mut managers = Vec::new();
        let v1 = apply(
            None,
            &deployment(1, json!([])),
            "a",
            false,
            &mut managers,
            "t",
        )
        .unwrap();
        // Same value: shared, no conflict.
        apply(
            Some(&v1),
            &deployment(1, json!([])),
            "b",
            false,
            &mut managers,
            "t",
        )
        .unwrap();
        let conflicts = apply(
            Some(&v1),
            &deployment(3, json!([])),
            "b",
            false,
            &mut managers,
            "t",
        )
        .unwrap_err();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert!(conflicts
            .iter()
            .all(|c| c.manager == "a" && c.path == ".spec.replicas"));
        let v2 = apply(
            Some(&v1),
            &deployment(3, json!([])),
            "b",
            true,
            &mut managers,
            "t",
        )
        .unwrap();
        assert_eq!(v2.pointer("/spec/replicas"), Some(&json!(3)));
        let a = managers.iter().find(|e| e.manager == "a").unwrap();
        assert!(!a.fields.iter().any(|p| display(p) == ".spec.replicas"));
    }

    #[test]
    fn fields_a_manager_stops_applying_are_removed_unless_others_own_them() {
        let mut managers = Vec::new();
        let v1 = apply(
            None,
            &deployment(
                1,
                json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
            ),
            "a",
            false,
            &mut managers,
            "t",
        )
        .unwrap();
        let v2 = apply(
            Some(&v1),
            &deployment(1, json!([{"name": "B", "value": "2"}])),
            "a",
            false,
            &mut managers,
            "t",
        )
        .unwrap();
        let env = v2.pointer("/spec/template/spec/containers/0/env").unwrap();
        assert_eq!(env, &json!([{"name": "B", "value": "2"}]));

        // A label added by another manager survives a's next apply without it.
        let mut with_label = v2.clone();
        with_label["metadata"]["labels"]["team"] = json!("x");
        record_update(Some(&v2), &with_label, "kubectl", &mut managers, "t");
        let v3 = apply(
            Some(&with_label),
            &deployment(1, json!([])),
            "a",
            false,
            &mut managers,
            "t",
        )
        .unwrap();
        assert_eq!(v3.pointer("/metadata/labels/team"), Some(&json!("x")));
    }

    #[test]
    fn fields_v1_renders_nested_keys() {
        let fields = field_set(&deployment(1, json!([])));
        let tree = fields_v1(&fields);
        assert!(tree.pointer("/f:spec/f:replicas").is_some());
        assert!(tree
            .pointer("/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"web\"}/.")
            .is_some());
    }
}
