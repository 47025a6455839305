//! Field validation against the real schema: the types in k8s-openapi, which are
//! generated from the Kubernetes OpenAPI document.
//!
//! An object is decoded into its typed form and encoded again; a field of the request
//! that did not survive the round trip is one the schema does not declare. As the API
//! server does, the fake then refuses the request (`fieldValidation=Strict`, kubectl's
//! default, and always for server-side apply), or drops the field and answers with a
//! `Warning` header (`Warn`, the default for other clients) or silently (`Ignore`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::errors::ApiError;
use super::kinds::Kind;

/// The `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Directive {
    Strict,
    #[default]
    Warn,
    Ignore,
}

impl Directive {
    pub fn parse(value: Option<&str>) -> Result<Directive, ApiError> {
        match value {
            None | Some("") | Some("Warn") => Ok(Directive::Warn),
            Some("Strict") => Ok(Directive::Strict),
            Some("Ignore") => Ok(Directive::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other:?}: must be one of Ignore, Warn, or Strict"
            ))),
        }
    }
}

/// How the write that is being validated came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validation {
    /// Written by the fake itself (its controllers): nothing to check.
    #[default]
    Internal,
    /// A create, update or patch, with its directive.
    Write(Directive),
    /// Server-side apply: the typed patch must fit the schema.
    Apply,
}

/// The fields of `value` that `typed` lacks, as the API server names them
/// (`spec.template.spec.containers[0].foo`).
fn missing(value: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    fn push(path: &str, key: &str) -> String {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    }
    match (value, typed) {
        (Value::Object(v), Value::Object(t)) => {
            for (key, child) in v {
                if child.is_null() {
                    continue;
                }
                match t.get(key) {
                    Some(typed_child) => missing(child, typed_child, &push(path, key), out),
                    None => out.push(push(path, key)),
                }
            }
        }
        (Value::Array(v), Value::Array(t)) => {
            for (i, (child, typed_child)) in v.iter().zip(t).enumerate() {
                missing(child, typed_child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

fn typed(kind: &Kind, value: &Value) -> Result<Option<Value>, String> {
    use k8s_openapi::api::{apps, core, networking};
    Ok(Some(match kind.kind {
        "Namespace" => round_trip::<core::v1::Namespace>(value)?,
        "ConfigMap" => round_trip::<core::v1::ConfigMap>(value)?,
        "Secret" => round_trip::<core::v1::Secret>(value)?,
        "Service" => round_trip::<core::v1::Service>(value)?,
        "Pod" => round_trip::<core::v1::Pod>(value)?,
        "Event" => round_trip::<core::v1::Event>(value)?,
        "Deployment" => round_trip::<apps::v1::Deployment>(value)?,
        "ReplicaSet" => round_trip::<apps::v1::ReplicaSet>(value)?,
        "Ingress" => round_trip::<networking::v1::Ingress>(value)?,
        _ => return Ok(None),
    }))
}

/// The fields of `object` the schema does not declare, as dotted paths.
pub fn unknown_fields(kind: &Kind, object: &Value) -> Result<Vec<String>, String> {
    let Some(typed) = typed(kind, object)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    missing(object, &typed, "", &mut out);
    Ok(out)
}

/// Removes the field at a dotted path (`a.b[2].c`).
fn remove(object: &mut Value, path: &str) {
    let mut node = object;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let (name, indices) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (*part, ""),
        };
        let last = i + 1 == parts.len();
        if last && indices.is_empty() {
            if let Some(map) = node.as_object_mut() {
                map.remove(name);
            }
            return;
        }
        let Some(next) = node.get_mut(name) else {
            return;
        };
        node = next;
        for index in indices
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse::<usize>().ok())
        {
            let Some(next) = node.get_mut(index) else {
                return;
            };
            node = next;
        }
    }
}

/// Checks `object` (as it is about to be stored) under `validation`: refuses it, or
/// drops what the schema lacks and returns the warnings to send.
pub fn check(
    kind: &Kind,
    namespace: &str,
    name: &str,
    object: &mut Value,
    validation: Validation,
) -> Result<Vec<String>, ApiError> {
    if validation == Validation::Internal {
        return Ok(Vec::new());
    }
    let unknown = unknown_fields(kind, object).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            kind.kind, kind.version, kind.kind
        ))
    })?;
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let listed = || {
        unknown
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect::<Vec<_>>()
    };
    match validation {
        Validation::Apply => Err(ApiError::bad_request(format!(
            "failed to create typed patch object ({namespace}/{name}; {}, Kind={}): .{}: field not declared in schema",
            kind.api_version(),
            kind.kind,
            unknown[0]
        ))),
        Validation::Write(Directive::Strict) => Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            kind.kind,
            kind.version,
            kind.kind,
            listed().join(", ")
        ))),
        Validation::Write(directive) => {
            for path in &unknown {
                remove(object, path);
            }
            Ok(if directive == Directive::Warn {
                listed()
            } else {
                Vec::new()
            })
        }
        Validation::Internal => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_kube::kinds;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "b"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}}
        })
    }

    #[test]
    fn declared_fields_pass_and_unknown_ones_are_named() {
        let kind = kinds::find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            unknown_fields(kind, &deployment()).unwrap(),
            Vec::<String>::new()
        );
        let mut d = deployment();
        d["spec"]["replica"] = json!(2);
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
        let mut unknown = unknown_fields(kind, &d).unwrap();
        unknown.sort();
        assert_eq!(
            unknown,
            vec![
                "spec.replica".to_owned(),
                "spec.template.spec.containers[0].imagePullPolicyy".to_owned()
            ]
        );
        let e = check(
            kind,
            "dev",
            "web",
            &mut d.clone(),
            Validation::Write(Directive::Strict),
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert!(
            e.message.contains("strict decoding error: unknown field")
                && e.message.contains("unknown field \"spec.replica\""),
            "{}",
            e.message
        );
        let e = check(kind, "dev", "web", &mut d.clone(), Validation::Apply).unwrap_err();
        assert!(
            e.message.contains("field not declared in schema"),
            "{}",
            e.message
        );
        let warnings = check(
            kind,
            "dev",
            "web",
            &mut d,
            Validation::Write(Directive::Warn),
        )
        .unwrap();
        assert_eq!(warnings.len(), 2);
        assert_eq!(d, deployment());
    }

    #[test]
    fn wrong_types_are_bad_requests() {
        let kind = kinds::find("apps", "v1", "deployments").unwrap();
        let mut d = deployment();
        d["spec"]["replicas"] = json!("two");
        let e = check(
            kind,
            "dev",
            "web",
            &mut d,
            Validation::Write(Directive::Ignore),
        )
        .unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message.contains("cannot be handled as a Deployment"),
            "{}",
            e.message
        );
    }
}
