//! Server-side printing: a `GET` (or watch) whose `Accept` asks for
//! `as=Table;g=meta.k8s.io;v=v1`, as `kubectl get` does, gets a `Table` with the
//! columns a cluster prints for the kind (`READY`, `UP-TO-DATE`, `AVAILABLE` for a
//! Deployment, …) and each row's metadata.

use serde_json::{json, Value};

use super::kinds::Kind;

/// Whether an `Accept` header asks for tables.
pub fn wanted(accept: &str) -> bool {
    accept.split(',').any(|a| {
        let params: Vec<&str> = a.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn int(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2025-01-01T00:00:00Z`).
fn epoch(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// kubectl's short duration (`45s`, `3m20s`, `2h`, `5d`).
fn age(ts: Option<&Value>) -> String {
    let Some(then) = ts.and_then(Value::as_str).and_then(epoch) else {
        return "<unknown>".to_owned();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(then);
    let s = (now - then).max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn count(o: &Value, fields: &[&str]) -> i64 {
    fields
        .iter()
        .filter_map(|f| o.get(*f).and_then(Value::as_object))
        .map(|m| m.len() as i64)
        .sum()
}

/// The columns and one row's cells for an object of `kind`.
fn columns(kind: &Kind, o: &Value) -> (Vec<&'static str>, Vec<Value>) {
    let name = json!(text(o.pointer("/metadata/name")));
    let created = age(o.pointer("/metadata/creationTimestamp"));
    match kind.kind {
        "Namespace" => (
            vec!["Name", "Status", "Age"],
            vec![
                name,
                json!(text(o.pointer("/status/phase"))),
                json!(created),
            ],
        ),
        "ConfigMap" => (
            vec!["Name", "Data", "Age"],
            vec![
                name,
                json!(count(o, &["data", "binaryData"])),
                json!(created),
            ],
        ),
        "Secret" => (
            vec!["Name", "Type", "Data", "Age"],
            vec![
                name,
                json!(text(o.get("type"))),
                json!(count(o, &["data"])),
                json!(created),
            ],
        ),
        "Service" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| format!("{}/{}", text(p.get("port")), text(p.get("protocol"))))
                        .collect()
                })
                .unwrap_or_default();
            (
                vec![
                    "Name",
                    "Type",
                    "Cluster-IP",
                    "External-IP",
                    "Port(s)",
                    "Age",
                ],
                vec![
                    name,
                    json!(text(o.pointer("/spec/type"))),
                    json!(text(o.pointer("/spec/clusterIP"))),
                    json!("<none>"),
                    json!(ports.join(",")),
                    json!(created),
                ],
            )
        }
        "Deployment" => (
            vec!["Name", "Ready", "Up-to-date", "Available", "Age"],
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(o, "/status/readyReplicas"),
                    int(o, "/spec/replicas")
                )),
                json!(int(o, "/status/updatedReplicas")),
                json!(int(o, "/status/availableReplicas")),
                json!(created),
            ],
        ),
        "ReplicaSet" => (
            vec!["Name", "Desired", "Current", "Ready", "Age"],
            vec![
                name,
                json!(int(o, "/spec/replicas")),
                json!(int(o, "/status/replicas")),
                json!(int(o, "/status/readyReplicas")),
                json!(created),
            ],
        ),
        "Pod" => {
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ready = statuses
                .iter()
                .filter(|c| c["ready"] == json!(true))
                .count();
            let restarts: i64 = statuses.iter().map(|c| int(c, "/restartCount")).sum();
            let waiting = statuses
                .iter()
                .find_map(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str));
            let status = waiting
                .map(str::to_owned)
                .unwrap_or_else(|| text(o.pointer("/status/phase")));
            (
                vec!["Name", "Ready", "Status", "Restarts", "Age"],
                vec![
                    name,
                    json!(format!("{ready}/{}", statuses.len())),
                    json!(status),
                    json!(restarts),
                    json!(created),
                ],
            )
        }
        "Event" => (
            vec!["Last Seen", "Type", "Reason", "Object", "Message"],
            vec![
                json!(age(o.get("lastTimestamp"))),
                json!(text(o.get("type"))),
                json!(text(o.get("reason"))),
                json!(format!(
                    "{}/{}",
                    text(o.pointer("/involvedObject/kind")).to_ascii_lowercase(),
                    text(o.pointer("/involvedObject/name"))
                )),
                json!(text(o.get("message"))),
            ],
        ),
        "Ingress" => {
            let hosts: Vec<String> = o
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .map(|rs| rs.iter().map(|r| text(r.get("host"))).collect())
                .unwrap_or_default();
            (
                vec!["Name", "Class", "Hosts", "Address", "Ports", "Age"],
                vec![
                    name,
                    json!(text(o.pointer("/spec/ingressClassName"))),
                    json!(if hosts.is_empty() {
                        "*".to_owned()
                    } else {
                        hosts.join(",")
                    }),
                    json!(""),
                    json!("80"),
                    json!(created),
                ],
            )
        }
        _ => (vec!["Name", "Age"], vec![name, json!(created)]),
    }
}

/// `objects` as a Table.
pub fn table(kind: &Kind, objects: &[Value], resource_version: Option<&Value>) -> Value {
    let names = columns(kind, &json!({})).0;
    let definitions: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"name": n, "type": "string", "format": if *n == "Name" { "name" } else { "" },
                   "description": "", "priority": 0})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "cells": columns(kind, o).1,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": o.get("metadata")}
            })
        })
        .collect();
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
                       "columnDefinitions": definitions, "rows": rows});
    if let Some(rv) = resource_version {
        t["metadata"]["resourceVersion"] = rv.clone();
    }
    t
}

/// A GET's answer (a list or one object) as a Table.
pub fn of_response(kind: &Kind, value: &Value) -> Value {
    match value.get("items").and_then(Value::as_array) {
        Some(items) => table(kind, items, value.pointer("/metadata/resourceVersion")),
        None => table(
            kind,
            std::slice::from_ref(value),
            value.pointer("/metadata/resourceVersion"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_kube::kinds;

    #[test]
    fn deployments_print_ready_up_to_date_and_available() {
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"replicas": 3}, "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let t = of_response(kinds::find("apps", "v1", "deployments").unwrap(), &d);
        assert_eq!(t["columnDefinitions"][1]["name"], json!("Ready"));
        assert_eq!(t["rows"][0]["cells"][1], json!("2/3"));
        assert!(t["rows"][0]["cells"][4].as_str().unwrap().ends_with('d'));
        assert_eq!(epoch("1970-01-02T00:00:01Z"), Some(86_401));
    }
}
