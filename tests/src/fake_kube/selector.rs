//! Label selectors in the query-string form the API server accepts:
//! `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a` and `!a`, comma-joined (AND).

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector(pub Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                current.push(c);
            }
            ')' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(s: &str) -> Result<Vec<String>, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set, found {s:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

fn check_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_owned())
}

impl Selector {
    /// Parses a selector; the error is the API server's kind of message.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(check_key(key)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(check_key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(check_key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(check_key(k)?, v.trim().to_owned())
            } else if let Some((k, set)) = part.split_once(" notin ") {
                Requirement::NotIn(check_key(k)?, parse_set(set)?)
            } else if let Some((k, set)) = part.split_once(" in ") {
                Requirement::In(check_key(k)?, parse_set(set)?)
            } else {
                Requirement::Exists(check_key(&part)?)
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            // As in Kubernetes, `!=` and `notin` also match objects without the key.
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

/// The labels of a JSON object.
pub fn labels_of(object: &serde_json::Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(|l| l.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A field selector with `=`, `==`, `!=`: `metadata.name`, `metadata.namespace`, and
/// what `kubectl describe` asks of Events (`involvedObject.*`, `reason`, `type`) and
/// Pods (`status.phase`, `spec.nodeName`).
pub fn field_selector_matches(selector: &str, object: &serde_json::Value) -> Result<bool, String> {
    for part in split_top_level(selector) {
        let (key, value, negate) = if let Some((k, v)) = part.split_once("!=") {
            (k, v, true)
        } else if let Some((k, v)) = part.split_once("==") {
            (k, v, false)
        } else if let Some((k, v)) = part.split_once('=') {
            (k, v, false)
        } else {
            return Err(format!("invalid field selector {part:?}"));
        };
        let key = key.trim();
        let pointer = match key {
            "metadata.name" | "metadata.namespace" | "status.phase" | "spec.nodeName"
            | "reason" | "type" => format!("/{}", key.replace('.', "/")),
            other => match other.strip_prefix("involvedObject.") {
                Some(
                    field @ ("kind" | "namespace" | "name" | "uid" | "apiVersion"
                    | "resourceVersion" | "fieldPath"),
                ) => format!("/involvedObject/{field}"),
                _ => return Err(format!("field label not supported: {other}")),
            },
        };
        let actual = object
            .pointer(&pointer)
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if (actual == value.trim()) == negate {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn equality_and_set_based_requirements() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let yes = [
            "app=web",
            "app==web",
            "app!=api",
            "app in (web, api)",
            "tier notin (back)",
            "app",
            "!missing",
            "app=web,tier in (front)",
            "",
        ];
        for s in yes {
            assert!(Selector::parse(s).unwrap().matches(&l), "{s}");
        }
        let no = [
            "app=api",
            "app notin (web)",
            "missing",
            "!app",
            "app=web,tier=back",
        ];
        for s in no {
            assert!(!Selector::parse(s).unwrap().matches(&l), "{s}");
        }
        assert!(Selector::parse("missing!=x").unwrap().matches(&l));
        assert!(Selector::parse("app in web").is_err());
    }

    #[test]
    fn field_selectors_on_name_and_namespace() {
        let o = serde_json::json!({"metadata": {"name": "a", "namespace": "n"}});
        assert!(field_selector_matches("metadata.name=a", &o).unwrap());
        assert!(!field_selector_matches("metadata.name!=a", &o).unwrap());
        assert!(field_selector_matches("metadata.namespace==n,metadata.name=a", &o).unwrap());
        assert!(field_selector_matches("spec.x=1", &o).is_err());
    }
}
