//! API errors as `metav1.Status` bodies, with the codes and reasons the real API server
//! uses, so clients take the same paths they would against a cluster.

use serde_json::{json, Value};

use super::kinds::Kind;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

fn details(kind: &Kind, name: &str) -> Value {
    json!({"name": name, "group": kind.group, "kind": kind.plural})
}

impl ApiError {
    pub fn not_found(kind: &Kind, name: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", kind.qualified()),
            details: details(kind, name),
        }
    }

    pub fn already_exists(kind: &Kind, name: &str) -> ApiError {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", kind.qualified()),
            details: details(kind, name),
        }
    }

    /// A stale `resourceVersion` or a failed precondition.
    pub fn conflict(kind: &Kind, name: &str, why: &str) -> ApiError {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                kind.qualified()
            ),
            details: details(kind, name),
        }
    }

    /// Server-side apply conflicts: `(manager, path)` pairs.
    pub fn apply_conflict(kind: &Kind, name: &str, conflicts: &[(String, String)]) -> ApiError {
        let lines: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": {p}"))
            .collect();
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": p}))
            .collect();
        let mut d = details(kind, name);
        d["causes"] = Value::Array(causes);
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                lines.join(", ")
            ),
            details: d,
        }
    }

    /// 422, with one cause per `(field, message)`.
    pub fn invalid(kind: &Kind, name: &str, causes: &[(String, String)]) -> ApiError {
        let text: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let mut d = details(kind, name);
        d["kind"] = Value::String(kind.kind.to_owned());
        d["causes"] = causes
            .iter()
            .map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f}))
            .collect();
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{} \"{name}\" is invalid: {}", kind.kind, text.join(", ")),
            details: d,
        }
    }

    pub fn forbidden(kind: &Kind, name: &str, why: &str) -> ApiError {
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!("{} \"{name}\" is forbidden: {why}", kind.qualified()),
            details: details(kind, name),
        }
    }

    /// 410: a watch from a resourceVersion older than the server remembers.
    pub fn gone(message: &str) -> ApiError {
        ApiError {
            code: 410,
            reason: "Expired",
            message: message.to_owned(),
            details: Value::Null,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            code: 401,
            reason: "Unauthorized",
            message: "Unauthorized".to_owned(),
            details: Value::Null,
        }
    }

    pub fn not_found_path(path: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ({path})"),
            details: Value::Null,
        }
    }

    pub fn method_not_allowed(method: &str) -> ApiError {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!(
                "the server does not allow this method on the requested resource ({method})"
            ),
            details: Value::Null,
        }
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?}; the fake serves no JSON patch)"),
            details: Value::Null,
        }
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code
        });
        if !self.details.is_null() {
            s["details"] = self.details.clone();
        }
        s
    }
}
