//! Pod Security admission: a namespace labelled `pod-security.kubernetes.io/enforce`
//! refuses pods that break its level, with the real admission's message, so that the
//! ReplicaSet controller's `FailedCreate` says what a cluster would.
//!
//! The checks are those of the Pod Security Standards that a Deployment's pod template
//! can break: `baseline` (privileged containers, host namespaces and paths, host
//! ports, added capabilities beyond the default set) and, for `restricted`, also
//! privilege escalation, capabilities not dropped, running as root and the seccomp
//! profile.

use serde_json::Value;

/// The capabilities `baseline` lets a container add.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The level a Namespace enforces, if any.
pub fn enforced(namespace: &Value) -> Option<String> {
    namespace
        .pointer("/metadata/labels")?
        .get("pod-security.kubernetes.io/enforce")?
        .as_str()
        .filter(|l| *l == "baseline" || *l == "restricted")
        .map(str::to_owned)
}

fn containers(pod: &Value) -> Vec<(&str, &Value)> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|list| pod.get(*list).and_then(Value::as_array))
        .flatten()
        .map(|c| (c.get("name").and_then(Value::as_str).unwrap_or_default(), c))
        .collect()
}

/// The names of the containers for which `breaks` holds.
fn offending<'a>(all: &[(&'a str, &Value)], breaks: impl Fn(&Value) -> bool) -> Vec<&'a str> {
    all.iter()
        .filter(|(_, c)| breaks(c))
        .map(|(n, _)| *n)
        .collect()
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn containers_word(names: &[&str]) -> &'static str {
    if names.len() == 1 {
        "container"
    } else {
        "containers"
    }
}

/// What `pod` (a PodSpec) breaks at `level`, each as the admission names it.
pub fn violations(level: &str, pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let all = containers(pod);
    let bool_at = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_bool);
    let privileged: Vec<&str> = offending(&all, |c| {
        bool_at(c, "/securityContext/privileged") == Some(true)
    });
    if !privileged.is_empty() {
        out.push(format!(
            "privileged ({} {} must not set securityContext.privileged=true)",
            containers_word(&privileged),
            quoted(&privileged)
        ));
    }
    let host: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|f| pod.get(*f).and_then(Value::as_bool) == Some(true))
        .collect();
    if !host.is_empty() {
        out.push(format!(
            "host namespaces ({})",
            host.iter()
                .map(|f| format!("{f}=true"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let host_path: Vec<&str> = pod
        .get("volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("hostPath").is_some())
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if !host_path.is_empty() {
        out.push(format!("hostPath volumes (volumes {})", quoted(&host_path)));
    }
    let added: Vec<&str> = offending(&all, |c| {
        c.pointer("/securityContext/capabilities/add")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter().any(|cap| {
                    let allowed = if level == "restricted" {
                        &["NET_BIND_SERVICE"][..]
                    } else {
                        BASELINE_CAPABILITIES
                    };
                    !cap.as_str().is_some_and(|c| allowed.contains(&c))
                })
            })
    });
    if !added.is_empty() {
        out.push(format!(
            "non-default capabilities ({} {} must not include capabilities beyond the default set in securityContext.capabilities.add)",
            containers_word(&added),
            quoted(&added)
        ));
    }
    if level != "restricted" {
        return out;
    }
    let escalating: Vec<&str> = offending(&all, |c| {
        bool_at(c, "/securityContext/allowPrivilegeEscalation") != Some(false)
    });
    if !escalating.is_empty() {
        out.push(format!(
            "allowPrivilegeEscalation != false ({} {} must set securityContext.allowPrivilegeEscalation=false)",
            containers_word(&escalating),
            quoted(&escalating)
        ));
    }
    let undropped: Vec<&str> = offending(&all, |c| {
        !c.pointer("/securityContext/capabilities/drop")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|cap| cap.as_str() == Some("ALL")))
    });
    if !undropped.is_empty() {
        out.push(format!(
            "unrestricted capabilities ({} {} must set securityContext.capabilities.drop=[\"ALL\"])",
            containers_word(&undropped),
            quoted(&undropped)
        ));
    }
    let pod_non_root = bool_at(pod, "/securityContext/runAsNonRoot");
    let root: Vec<&str> = offending(&all, |c| {
        match bool_at(c, "/securityContext/runAsNonRoot") {
            Some(v) => !v,
            None => pod_non_root != Some(true),
        }
    });
    if !root.is_empty() {
        out.push(format!(
            "runAsNonRoot != true (pod or {} {} must set securityContext.runAsNonRoot=true)",
            containers_word(&root),
            quoted(&root)
        ));
    }
    let good = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|t| t == "RuntimeDefault" || t == "Localhost")
    };
    let pod_seccomp = good(pod.pointer("/securityContext/seccompProfile/type"));
    let unconfined: Vec<&str> = all
        .iter()
        .filter(
            |(_, c)| match c.pointer("/securityContext/seccompProfile/type") {
                Some(t) => !good(Some(t)),
                None => !pod_seccomp,
            },
        )
        .map(|(n, _)| *n)
        .collect();
    if !unconfined.is_empty() {
        out.push(format!(
            "seccompProfile (pod or {} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            containers_word(&unconfined),
            quoted(&unconfined)
        ));
    }
    out
}

/// The admission's refusal of pod `name`.
pub fn forbidden(name: &str, level: &str, violations: &[String]) -> String {
    format!(
        "pods \"{name}\" is forbidden: violates PodSecurity \"{level}:latest\": {}",
        violations.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn restricted_names_every_missing_control() {
        let pod = json!({"containers": [{"name": "web", "image": "nginx"}]});
        let v = violations("restricted", &pod);
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[0].starts_with("allowPrivilegeEscalation != false (container \"web\""));
        assert!(violations("baseline", &pod).is_empty());
        let secure = json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "web", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        });
        assert!(violations("restricted", &secure).is_empty());
        let mut root = secure.clone();
        root["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
        assert_eq!(violations("restricted", &root).len(), 1);
        let host = json!({"hostNetwork": true, "containers": [{"name": "c"}]});
        assert_eq!(
            violations("baseline", &host),
            vec!["host namespaces (hostNetwork=true)".to_owned()]
        );
        assert_eq!(
            forbidden("web-1", "restricted", &["x".to_owned()]),
            "pods \"web-1\" is forbidden: violates PodSecurity \"restricted:latest\": x"
        );
    }
}
