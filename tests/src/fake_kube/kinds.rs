//! The resource types the fake serves, and the discovery documents that describe them.

use serde_json::{json, Value};

/// A resource type: where it lives in the API and how the server treats it.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// Empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    /// What `kubectl get <short>` accepts (`deploy`, `svc`, …), from discovery.
    pub short_names: &'static [&'static str],
    pub kind: &'static str,
    pub namespaced: bool,
    /// Whether `metadata.generation` counts spec changes.
    pub generation: bool,
    /// Whether `status` is a subresource (ignored on writes to the main resource).
    pub status: bool,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, as error messages name a resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

pub static KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        kind: "Namespace",
        namespaced: false,
        generation: false,
        status: true,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        kind: "ConfigMap",
        namespaced: true,
        generation: false,
        status: false,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        short_names: &[],
        kind: "Secret",
        namespaced: true,
        generation: false,
        status: false,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        kind: "Service",
        namespaced: true,
        generation: false,
        status: true,
    },
    Kind {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        kind: "Deployment",
        namespaced: true,
        generation: true,
        status: true,
    },
    Kind {
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingresses",
        singular: "ingress",
        short_names: &["ing"],
        kind: "Ingress",
        namespaced: true,
        generation: true,
        status: true,
    },
    // Written by the simulated controllers; clients read them.
    Kind {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        kind: "ReplicaSet",
        namespaced: true,
        generation: true,
        status: true,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        kind: "Pod",
        namespaced: true,
        generation: false,
        status: true,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        kind: "Event",
        namespaced: true,
        generation: false,
        status: false,
    },
];

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

pub fn namespaces() -> &'static Kind {
    &KINDS[0]
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "34", "gitVersion": "v1.34.0-slipway-fake",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api`.
pub fn core_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]
    })
}

fn groups() -> Vec<&'static str> {
    let mut g: Vec<&str> = Vec::new();
    for k in KINDS {
        if !k.group.is_empty() && !g.contains(&k.group) {
            g.push(k.group);
        }
    }
    g
}

/// `/apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|g| {
            let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>` (the group's versions).
pub fn group(group: &str) -> Option<Value> {
    groups().contains(&group).then(|| {
        let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [gv.clone()], "preferredVersion": gv})
    })
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .flat_map(|k| {
            let mut main = json!({
                "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]
            });
            if !k.short_names.is_empty() {
                main["shortNames"] = json!(k.short_names);
            }
            // `kubectl get all` lists the workload kinds.
            if matches!(k.kind, "Deployment" | "Service" | "ReplicaSet" | "Pod") {
                main["categories"] = json!(["all"]);
            }
            let status = json!({
                "name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                "kind": k.kind, "verbs": ["get", "patch", "update"]
            });
            if k.status {
                vec![main, status]
            } else {
                vec![main]
            }
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}
