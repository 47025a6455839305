//! Validation (422s) and defaulting, for the rules clients are likely to trip on: names,
//! labels, a Deployment's selector matching its template and never changing, containers
//! with images, Secret data in base64, Service ports.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::kinds::Kind;

type Causes = Vec<(String, String)>;

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// apimachinery's `IsDNS1123Subdomain`: at most 253 in all, with no limit on each
/// dot-separated part (unlike a DNS label), so `<63 characters>-secrets` is valid.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

fn check_name(kind: &Kind, name: &str, causes: &mut Causes) {
    let ok = match kind.kind {
        "Namespace" => is_dns_label(name),
        "Service" => is_dns_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
        _ => is_dns_subdomain(name),
    };
    if !ok {
        causes.push((
            "metadata.name".to_owned(),
            format!("Invalid value: \"{name}\": a lowercase RFC 1123 name must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
        ));
    }
}

fn check_labels(path: &str, labels: Option<&Value>, causes: &mut Causes) {
    let Some(map) = labels.and_then(|l| l.as_object()) else {
        return;
    };
    for (k, v) in map {
        if !is_label_key(k) {
            causes.push((path.to_owned(), format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.'")));
        }
        match v.as_str() {
            Some(s) if is_label_value(s) => {}
            _ => causes.push((
                path.to_owned(),
                format!("Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)"),
            )),
        }
    }
}

/// Checks `object` (as it would be stored) against `old` (for updates), returning the
/// causes of a 422.
pub fn validate(kind: &Kind, name: &str, object: &Value, old: Option<&Value>) -> Causes {
    let mut causes = Causes::new();
    check_name(kind, name, &mut causes);
    check_labels(
        "metadata.labels",
        object.pointer("/metadata/labels"),
        &mut causes,
    );
    match kind.kind {
        "Deployment" => validate_deployment(object, old, &mut causes),
        "Secret" => {
            if let Some(data) = object.get("data").and_then(|d| d.as_object()) {
                for (k, v) in data {
                    let ok = v.as_str().is_some_and(|s| {
                        base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                    });
                    if !ok {
                        causes.push((
                            format!("data[{k}]"),
                            "Invalid value: must be base64 encoded".to_owned(),
                        ));
                    }
                }
            }
        }
        "Service" => {
            if let Some(ports) = object.pointer("/spec/ports").and_then(|p| p.as_array()) {
                for (i, p) in ports.iter().enumerate() {
                    let port = p.get("port").and_then(|v| v.as_i64()).unwrap_or(0);
                    if !(1..=65535).contains(&port) {
                        causes.push((
                            format!("spec.ports[{i}].port"),
                            format!(
                                "Invalid value: {port}: must be between 1 and 65535, inclusive"
                            ),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    causes
}

fn validate_deployment(object: &Value, old: Option<&Value>, causes: &mut Causes) {
    let selector = object.pointer("/spec/selector");
    let match_labels = selector
        .and_then(|s| s.get("matchLabels"))
        .and_then(|m| m.as_object())
        .cloned()
        .unwrap_or_default();
    if match_labels.is_empty() {
        causes.push(("spec.selector".to_owned(), "Required value".to_owned()));
    }
    let template_labels = object
        .pointer("/spec/template/metadata/labels")
        .and_then(|l| l.as_object())
        .cloned()
        .unwrap_or_default();
    if match_labels
        .iter()
        .any(|(k, v)| template_labels.get(k) != Some(v))
    {
        causes.push((
            "spec.template.metadata.labels".to_owned(),
            "Invalid value: `selector` does not match template `labels`".to_owned(),
        ));
    }
    check_labels(
        "spec.template.metadata.labels",
        object.pointer("/spec/template/metadata/labels"),
        causes,
    );
    if let Some(old_selector) = old.and_then(|o| o.pointer("/spec/selector")) {
        if Some(old_selector) != selector {
            causes.push((
                "spec.selector".to_owned(),
                "Invalid value: field is immutable".to_owned(),
            ));
        }
    }
    let containers = object
        .pointer("/spec/template/spec/containers")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        causes.push((
            "spec.template.spec.containers".to_owned(),
            "Required value".to_owned(),
        ));
    }
    for (i, c) in containers.iter().enumerate() {
        if c.get("image")
            .and_then(|v| v.as_str())
            .is_none_or(str::is_empty)
        {
            causes.push((
                format!("spec.template.spec.containers[{i}].image"),
                "Required value".to_owned(),
            ));
        }
        if let Some(ports) = c.get("ports").and_then(|p| p.as_array()) {
            for (j, p) in ports.iter().enumerate() {
                if let Some(name) = p.get("name").and_then(|n| n.as_str()) {
                    if name.len() > 15 || !is_dns_label(name) {
                        causes.push((
                            format!("spec.template.spec.containers[{i}].ports[{j}].name"),
                            format!(
                                "Invalid value: \"{name}\": must be no more than 15 characters"
                            ),
                        ));
                    }
                }
            }
        }
        for probe_name in ["livenessProbe", "startupProbe"] {
            let Some(probe) = c.get(probe_name) else {
                continue;
            };
            if probe
                .get("successThreshold")
                .and_then(|v| v.as_i64())
                .is_some_and(|v| v != 1)
            {
                causes.push((
                    format!("spec.template.spec.containers[{i}].{probe_name}.successThreshold"),
                    "Invalid value: must be 1".to_owned(),
                ));
            }
        }
    }
}

fn set_default(object: &mut Value, pointer: &str, value: Value) {
    if object.pointer(pointer).is_some() {
        return;
    }
    let mut parts: Vec<&str> = pointer.split('/').skip(1).collect();
    let Some(last) = parts.pop() else {
        return;
    };
    let mut node = object;
    for p in parts {
        let Some(map) = node.as_object_mut() else {
            return;
        };
        node = map
            .entry(p.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(map) = node.as_object_mut() {
        map.insert(last.to_owned(), value);
    }
}

fn default_ports(ports: Option<&mut Value>, service: bool) {
    if let Some(ports) = ports.and_then(|p| p.as_array_mut()) {
        for p in ports {
            set_default(p, "/protocol", json!("TCP"));
            if service {
                if let Some(port) = p.get("port").cloned() {
                    set_default(p, "/targetPort", port);
                }
            }
        }
    }
}

/// Fills in what the API server defaults: owned by no manager, like the real thing.
/// `cluster_ip` is used for a Service that has none.
pub fn apply_defaults(kind: &Kind, object: &mut Value, cluster_ip: &str) {
    match kind.kind {
        "Namespace" => {
            if let Some(name) = object.pointer("/metadata/name").cloned() {
                set_default(
                    object,
                    "/metadata/labels/kubernetes.io~1metadata.name",
                    name,
                );
                // `~1` is not unescaped by set_default; fix the key up.
                if let Some(labels) = object
                    .pointer_mut("/metadata/labels")
                    .and_then(|l| l.as_object_mut())
                {
                    if let Some(v) = labels.remove("kubernetes.io~1metadata.name") {
                        labels.entry("kubernetes.io/metadata.name").or_insert(v);
                    }
                }
            }
            set_default(object, "/spec/finalizers", json!(["kubernetes"]));
            set_default(object, "/status/phase", json!("Active"));
        }
        "Secret" => set_default(object, "/type", json!("Opaque")),
        "Service" => {
            set_default(object, "/spec/type", json!("ClusterIP"));
            set_default(object, "/spec/sessionAffinity", json!("None"));
            set_default(object, "/spec/clusterIP", json!(cluster_ip));
            let ip = object
                .pointer("/spec/clusterIP")
                .cloned()
                .unwrap_or(Value::Null);
            set_default(object, "/spec/clusterIPs", json!([ip]));
            default_ports(object.pointer_mut("/spec/ports"), true);
        }
        "Deployment" => {
            set_default(object, "/spec/replicas", json!(1));
            set_default(object, "/spec/revisionHistoryLimit", json!(10));
            set_default(object, "/spec/progressDeadlineSeconds", json!(600));
            set_default(
                object,
                "/spec/strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            set_default(object, "/spec/template/spec/restartPolicy", json!("Always"));
            set_default(
                object,
                "/spec/template/spec/dnsPolicy",
                json!("ClusterFirst"),
            );
            set_default(
                object,
                "/spec/template/spec/terminationGracePeriodSeconds",
                json!(30),
            );
            if let Some(containers) = object
                .pointer_mut("/spec/template/spec/containers")
                .and_then(|c| c.as_array_mut())
            {
                for c in containers {
                    let latest = c.get("image").and_then(|i| i.as_str()).is_some_and(|i| {
                        i.ends_with(":latest") || !i.rsplit('/').next().unwrap_or(i).contains(':')
                    });
                    set_default(
                        c,
                        "/imagePullPolicy",
                        json!(if latest { "Always" } else { "IfNotPresent" }),
                    );
                    set_default(c, "/terminationMessagePath", json!("/dev/termination-log"));
                    set_default(c, "/terminationMessagePolicy", json!("File"));
                    default_ports(c.get_mut("ports"), false);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_kube::kinds;

    fn deployments() -> &'static Kind {
        kinds::find("apps", "v1", "deployments").unwrap()
    }

    #[test]
    fn deployment_selector_must_match_and_is_immutable() {
        let d = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "template": {"metadata": {"labels": {"a": "2"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        let causes = validate(deployments(), "web", &d, None);
        assert!(
            causes.iter().any(|(_, m)| m.contains("does not match")),
            "{causes:?}"
        );

        let ok = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "template": {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        assert!(validate(deployments(), "web", &ok, None).is_empty());
        let mut changed = ok.clone();
        changed["spec"]["selector"]["matchLabels"]["b"] = json!("2");
        changed["spec"]["template"]["metadata"]["labels"]["b"] = json!("2");
        let causes = validate(deployments(), "web", &changed, Some(&ok));
        assert!(causes
            .iter()
            .any(|(f, m)| f == "spec.selector" && m.contains("immutable")));
    }

    #[test]
    fn names_and_label_values_are_checked() {
        let ns = kinds::namespaces();
        assert!(!validate(ns, "Bad_Name", &json!({}), None).is_empty());
        let secrets = kinds::find("", "v1", "secrets").unwrap();
        assert!(validate(
            secrets,
            &format!("{}-secrets", "w".repeat(63)),
            &json!({}),
            None
        )
        .is_empty());
        assert!(!validate(secrets, &"w".repeat(254), &json!({}), None).is_empty());
        let long = json!({"metadata": {"labels": {"a": "x".repeat(64)}}});
        assert!(!validate(ns, "ok", &long, None).is_empty());
    }

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let mut d = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.2", "ports": [{"containerPort": 80}]}]}}}});
        apply_defaults(deployments(), &mut d, "10.96.0.1");
        assert_eq!(d.pointer("/spec/replicas"), Some(&json!(3)));
        assert_eq!(
            d.pointer("/spec/progressDeadlineSeconds"),
            Some(&json!(600))
        );
        assert_eq!(
            d.pointer("/spec/template/spec/containers/0/imagePullPolicy"),
            Some(&json!("IfNotPresent"))
        );
        assert_eq!(
            d.pointer("/spec/template/spec/containers/0/ports/0/protocol"),
            Some(&json!("TCP"))
        );
        let mut ns = json!({"metadata": {"name": "dev"}});
        apply_defaults(kinds::namespaces(), &mut ns, "");
        assert_eq!(
            ns.pointer("/metadata/labels/kubernetes.io~1metadata.name"),
            Some(&json!("dev"))
        );
    }
}
