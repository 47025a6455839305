//! HTTP: the API paths, verbs, content types and query parameters a Kubernetes client
//! uses, routed to the [`Store`](super::store::Store), plus the fake's own `/fake/` API.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::controller;
use super::errors::ApiError;
use super::kinds::{self, Kind};
use super::openapi;
use super::schema::{Directive, Validation};
use super::store::{Access, Effect, Patch, RolloutMode, Store};
use super::table;
use super::Shared;

/// Request bodies larger than this are refused (the real default is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

fn respond(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(e: &ApiError) -> Response {
    respond(e.code, &e.status())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

struct Target {
    kind: &'static Kind,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn resolve(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let owned = |s: &str| Some(s.to_owned());
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        if let Some(kind) = kinds::find(group, version, rest[2]).filter(|k| k.namespaced) {
            return match rest {
                [_, ns, _] => Some(Target {
                    kind,
                    namespace: owned(ns),
                    name: None,
                    subresource: None,
                }),
                [_, ns, _, name] => Some(Target {
                    kind,
                    namespace: owned(ns),
                    name: owned(name),
                    subresource: None,
                }),
                [_, ns, _, name, sub] => Some(Target {
                    kind,
                    namespace: owned(ns),
                    name: owned(name),
                    subresource: owned(sub),
                }),
                _ => None,
            };
        }
    }
    let kind = kinds::find(group, version, rest.first()?)?;
    match rest {
        [_] => Some(Target {
            kind,
            namespace: None,
            name: None,
            subresource: None,
        }),
        [_, name] if !kind.namespaced => Some(Target {
            kind,
            namespace: None,
            name: owned(name),
            subresource: None,
        }),
        [_, name, sub] if !kind.namespaced => Some(Target {
            kind,
            namespace: None,
            name: owned(name),
            subresource: owned(sub),
        }),
        _ => None,
    }
}

fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).or_else(|json_error| {
        // Apply bodies may be YAML.
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
        serde_saphyr::from_str::<Value>(text).map_err(|yaml_error| {
            ApiError::bad_request(format!(
                "the body is neither JSON ({json_error}) nor YAML ({yaml_error})"
            ))
        })
    })
}

/// The single handler: every request comes here.
pub async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = query_params(parts.uri.query());
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();

    if segments.first() == Some(&"fake") {
        let bytes = to_bytes(body, MAX_BODY).await.unwrap_or_default();
        return fake_api(&shared, &parts.method, &segments[1..], &bytes);
    }
    if segments != ["version"] {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if token != Some(shared.token.as_str()) {
            return error(&ApiError::unauthorized());
        }
    }
    let discovery = match segments.as_slice() {
        ["version"] => Some(kinds::version()),
        ["api"] => Some(kinds::core_versions(&shared.address)),
        ["apis"] => Some(kinds::group_list()),
        ["api", v] => kinds::resource_list("", v),
        ["apis", g] => kinds::group(g),
        ["apis", g, v] => kinds::resource_list(g, v),
        ["openapi", "v3"] => Some(openapi::index()),
        ["openapi", "v3", gv @ ..] => openapi::group_version(&gv.join("/")),
        _ => None,
    };
    if let Some(doc) = discovery {
        return respond(200, &doc);
    }
    let target = match segments.as_slice() {
        ["api", v, rest @ ..] => resolve("", v, rest),
        ["apis", g, v, rest @ ..] => resolve(g, v, rest),
        _ => None,
    };
    let Some(target) = target else {
        return error(&ApiError::not_found_path(&path));
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let manager = param("fieldManager").unwrap_or_else(|| {
        parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|m| !m.is_empty())
            .unwrap_or("unknown")
            .to_owned()
    });
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    shared.lock().user_agents.insert(user_agent);
    let table = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(table::wanted);
    if parts.method == Method::GET && target.name.is_none() && is_watch(&param) {
        return watch(&shared, &target, &param, table);
    }
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return error(&ApiError::bad_request("the request body is too large")),
    };
    let result = serve(
        &shared,
        Call {
            method: &parts.method,
            t: &target,
            content_type: &content_type,
            manager: &manager,
            param: &param,
            bytes: &bytes,
        },
    );
    shared.notify();
    match result {
        Ok(served) => {
            controller::react(&shared, served.effect);
            let value = if table && parts.method == Method::GET {
                table::of_response(target.kind, &served.value)
            } else {
                served.value
            };
            let mut response = respond(served.code, &value);
            for w in served.warnings {
                // RFC 7234's warn-code 299, as the API server sends it.
                let text = format!("299 - {}", Value::String(w));
                if let Ok(v) = header::HeaderValue::from_str(&text) {
                    response.headers_mut().append(header::WARNING, v);
                }
            }
            response
        }
        Err(e) => error(&e),
    }
}

fn is_watch(param: &dyn Fn(&str) -> Option<String>) -> bool {
    param("watch").is_some_and(|w| w == "true" || w == "1")
}

/// `GET <collection>?watch=1`: a stream of changes.
fn watch(
    shared: &Arc<Shared>,
    t: &Target,
    param: &dyn Fn(&str) -> Option<String>,
    table: bool,
) -> Response {
    {
        let mut store = shared.lock();
        store.access.insert(access(&Method::GET, t, param));
        store.count("watch");
    }
    let resource_version = match param("resourceVersion").filter(|v| !v.is_empty() && v != "0") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return error(&ApiError::bad_request(format!(
                    "invalid resourceVersion {v:?}"
                )))
            }
        },
    };
    let timeout = param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(std::time::Duration::from_secs);
    let request = super::watch::Request {
        kind: t.kind,
        namespace: t.namespace.clone(),
        label_selector: param("labelSelector"),
        field_selector: param("fieldSelector"),
        resource_version,
        timeout,
        table,
    };
    match super::watch::start(shared, request) {
        Ok(body) => {
            let mut response = Response::new(body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => error(&e),
    }
}

/// The request as RBAC authorizes it.
fn access(method: &Method, t: &Target, param: &dyn Fn(&str) -> Option<String>) -> Access {
    let watch = is_watch(param);
    let verb = match (method, t.name.is_some()) {
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, false) => "deletecollection",
        (&Method::DELETE, true) => "delete",
        (other, _) => other.as_str(),
    };
    let resource = match &t.subresource {
        Some(sub) => format!("{}/{sub}", t.kind.plural),
        None => t.kind.plural.to_owned(),
    };
    Access {
        group: t.kind.group.to_owned(),
        resource,
        verb: verb.to_ascii_lowercase(),
    }
}

/// One API request, as [`serve`] needs it.
#[derive(Clone, Copy)]
struct Call<'a> {
    method: &'a Method,
    t: &'a Target,
    content_type: &'a str,
    manager: &'a str,
    param: &'a dyn Fn(&str) -> Option<String>,
    bytes: &'a [u8],
}

fn serve(shared: &Arc<Shared>, call: Call<'_>) -> Result<Served, ApiError> {
    let Call {
        method, t, param, ..
    } = call;
    let kind = t.kind;
    let status_sub = match t.subresource.as_deref() {
        None => false,
        Some("status") if kind.status => true,
        Some(other) => {
            return Err(ApiError::not_found_path(&format!(
                "{}/{other}",
                kind.plural
            )))
        }
    };
    let mut guard = shared.lock();
    guard.access.insert(access(method, t, param));
    // `dryRun=All`: everything a write does, validation and defaulting included, on a
    // copy that is thrown away, so nothing is stored and no controller reacts.
    let dry_run = match param("dryRun").as_deref() {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid dryRun value {other:?}: the only valid value is \"All\""
            )))
        }
    };
    let mut scratch;
    let store: &mut Store = if dry_run && *method != Method::GET {
        scratch = guard.clone();
        &mut scratch
    } else {
        &mut guard
    };
    let apply = call.content_type == "application/apply-patch+yaml";
    store.validation = match (method, apply) {
        (&Method::POST | &Method::PUT | &Method::PATCH, true) => Validation::Apply,
        (&Method::POST | &Method::PUT | &Method::PATCH, false) => {
            Validation::Write(Directive::parse(param("fieldValidation").as_deref())?)
        }
        _ => Validation::Internal,
    };
    let before = match &t.name {
        Some(name) if dry_run => store
            .get(kind, t.namespace.as_deref().unwrap_or_default(), name)
            .ok()
            .and_then(|o| o.pointer("/metadata/resourceVersion").cloned()),
        _ => None,
    };
    let mut result = serve_on(store, call, status_sub);
    if dry_run {
        // Nothing was written, so the resourceVersion is the stored one (none for a
        // create), as the real server answers a dry run.
        if let Ok((_, value, _)) = &mut result {
            if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                match &before {
                    Some(rv) => meta.insert("resourceVersion".into(), rv.clone()),
                    None => meta.remove("resourceVersion"),
                };
            }
        }
    }
    store.validation = Validation::Internal;
    let warnings = std::mem::take(&mut store.warnings);
    result.map(|(code, value, effect)| Served {
        code,
        value,
        effect: if dry_run { Effect::None } else { effect },
        warnings,
    })
}

/// What a request did.
struct Served {
    code: u16,
    value: Value,
    effect: Effect,
    /// `Warning` headers (fields the schema lacks, dropped).
    warnings: Vec<String>,
}

fn serve_on(
    store: &mut Store,
    call: Call<'_>,
    status_sub: bool,
) -> Result<(u16, Value, Effect), ApiError> {
    let Call {
        method,
        t,
        content_type,
        manager,
        param,
        bytes,
    } = call;
    let kind = t.kind;
    let namespace = t.namespace.clone().unwrap_or_default();
    match (method, &t.name) {
        (&Method::GET, None) => {
            store.count("list");
            let list = store.list(
                kind,
                t.namespace.as_deref(),
                param("labelSelector").as_deref(),
                param("fieldSelector").as_deref(),
            )?;
            Ok((200, list, Effect::None))
        }
        (&Method::GET, Some(name)) => {
            store.count("get");
            Ok((200, store.get(kind, &namespace, name)?, Effect::None))
        }
        (&Method::POST, None) => {
            store.count("create");
            let body = parse_body(bytes)?;
            let (o, e) = store.create(kind, &namespace, body, manager)?;
            Ok((201, o, e))
        }
        (&Method::PUT, Some(name)) => {
            store.count("update");
            let body = parse_body(bytes)?;
            let (o, e) = store.replace(kind, &namespace, name, body, manager, status_sub)?;
            Ok((200, o, e))
        }
        (&Method::PATCH, Some(name)) => {
            let body = parse_body(bytes)?;
            match content_type {
                "application/apply-patch+yaml" => {
                    store.count("apply");
                    if status_sub {
                        return Err(ApiError::method_not_allowed(
                            "apply to the status subresource",
                        ));
                    }
                    let Some(manager) = param("fieldManager").filter(|m| !m.is_empty()) else {
                        return Err(ApiError::bad_request("PATCH, application/apply-patch+yaml: fieldManager is required for apply requests"));
                    };
                    let force = param("force").is_some_and(|f| f == "true");
                    let existed = store.get(kind, &namespace, name).is_ok();
                    if !existed {
                        // An apply that creates is authorized for `create` too.
                        let mut create = access(&Method::POST, t, param);
                        create.resource = kind.plural.to_owned();
                        store.access.insert(create);
                    }
                    let (o, e) =
                        store.server_side_apply(kind, &namespace, name, body, &manager, force)?;
                    Ok((if existed { 200 } else { 201 }, o, e))
                }
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    store.count("patch");
                    let patch = if content_type == "application/merge-patch+json" {
                        Patch::Merge(&body)
                    } else {
                        Patch::Strategic(&body)
                    };
                    let (o, e) =
                        store.merge_patch(kind, &namespace, name, patch, manager, status_sub)?;
                    Ok((200, o, e))
                }
                other => Err(ApiError::unsupported_media_type(other)),
            }
        }
        (&Method::DELETE, Some(name)) => {
            store.count("delete");
            let mut options = parse_body(bytes)?;
            if options.is_null() {
                options = json!({});
            }
            if let Some(p) = param("propagationPolicy") {
                options["propagationPolicy"] = json!(p);
            }
            let (o, e) = store.delete(kind, &namespace, name, &options)?;
            Ok((200, o, e))
        }
        (m, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

/// The fake's own API, for tests that drive it over HTTP (the Terraform end-to-end
/// tests run the server in another process):
/// `PUT /fake/rollout/<namespace>/<name>` with `{"mode": "normal"|"slow"|"fail"|
/// "crashloop"}`, `PUT /fake/unpullable` with `{"image": "NAME:TAG"}`, and
/// `GET /fake/requests` (request counts by verb).
fn fake_api(shared: &Arc<Shared>, method: &Method, rest: &[&str], bytes: &[u8]) -> Response {
    match (method, rest) {
        (&Method::PUT, ["rollout", ns, name]) => {
            let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
            let Some(mode) = body
                .get("mode")
                .and_then(|m| m.as_str())
                .and_then(RolloutMode::parse)
            else {
                return error(&ApiError::bad_request(
                    "expected {\"mode\": \"normal\"|\"slow\"|\"fail\"|\"crashloop\"}",
                ));
            };
            shared
                .lock()
                .rollout_modes
                .insert(((*ns).to_owned(), (*name).to_owned()), mode);
            respond(
                200,
                &json!({"namespace": ns, "name": name, "mode": body["mode"]}),
            )
        }
        (&Method::PUT, ["unpullable"]) => {
            let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
            let Some(image) = body.get("image").and_then(|i| i.as_str()) else {
                return error(&ApiError::bad_request("expected {\"image\": \"NAME:TAG\"}"));
            };
            shared.lock().unpullable_images.insert(image.to_owned());
            respond(200, &json!({"image": image, "pullable": false}))
        }
        (&Method::GET, ["requests"]) => respond(200, &json!(shared.lock().requests)),
        (&Method::GET, ["healthz"]) => respond(200, &json!({"ok": true})),
        _ => error(&ApiError::not_found_path(&format!(
            "/fake/{}",
            rest.join("/")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        let q = query_params(Some(
            "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dslipway%2Ca+in+(x)&force=true",
        ));
        assert_eq!(q[0].1, "app.kubernetes.io/managed-by=slipway,a in (x)");
        assert_eq!(q[1], ("force".to_owned(), "true".to_owned()));
    }

    #[test]
    fn paths_resolve_to_namespaced_and_cluster_resources() {
        let t = resolve(
            "apps",
            "v1",
            &["namespaces", "dev", "deployments", "web", "status"],
        )
        .unwrap();
        assert_eq!(t.kind.plural, "deployments");
        assert_eq!(t.namespace.as_deref(), Some("dev"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = resolve("", "v1", &["namespaces", "dev"]).unwrap();
        assert_eq!(
            (t.kind.plural, t.name.as_deref()),
            ("namespaces", Some("dev"))
        );
        let t = resolve("", "v1", &["namespaces", "dev", "status"]).unwrap();
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = resolve("apps", "v1", &["deployments"]).unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        assert!(resolve("apps", "v1", &["deployments", "web"]).is_none());
    }
}
