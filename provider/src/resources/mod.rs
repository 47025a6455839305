//! The managed resources, and what they share: ids, durations, turning runtime errors
//! into diagnostics, and keeping "unset" and "empty" apart so plans stay empty.

pub mod application;
pub mod environment;
pub(crate) mod secrets;
pub(crate) mod variable_names;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tfplug::{AttributePath, Diagnostic, Diagnostics};

use crate::runtime::RuntimeError;

/// A new object id: the name (readable in `terraform state list`, logs and `ps`) and
/// eight random hex digits, so a replaced object never reuses its predecessor's id.
pub(crate) fn new_id(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    // RandomState is seeded from the OS per process; mixing in the time makes ids from
    // one process differ too.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(nanos);
    hasher.write(name.as_bytes());
    format!("{name}-{:08x}", hasher.finish() as u32)
}

/// A runtime error as a diagnostic. Runtime messages are written for users and never
/// contain secret values, so they are passed on as they are.
pub(crate) fn runtime_error(action: &str, error: RuntimeError) -> Diagnostic {
    let summary = match &error {
        RuntimeError::NotFound(_) => format!("Cannot {action}: not found"),
        RuntimeError::Conflict(_) => format!("Cannot {action}: conflict"),
        RuntimeError::Invalid(_) => format!("Cannot {action}: invalid"),
        RuntimeError::RolloutFailed { .. } => format!("Cannot {action}: the rollout failed"),
        RuntimeError::Unavailable(_) => format!("Cannot {action}: the runtime is unreachable"),
        RuntimeError::Refused(_) => format!("Cannot {action}: refused by the platform's policy"),
        RuntimeError::Unauthenticated(_) => {
            format!("Cannot {action}: the platform does not know who is calling")
        }
        RuntimeError::Other(_) => format!("Cannot {action}"),
    };
    Diagnostic::error(summary, error.to_string())
}

/// Parses a duration written like `30s`, `5m`, `1h30m` or `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("{text:?} is not a duration; write a number and a unit, like \"30s\", \"5m\", \"1h30m\" or \"500ms\".")
    };
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let step = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(step);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// The shortest text [`parse_duration`] reads back as `d`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Keeps the text the user wrote when it means what the runtime has (`"1m"` and
/// `"60s"` are the same), so a read does not turn into a diff.
pub(crate) fn duration_text(written: Option<&str>, actual: Duration) -> String {
    match written {
        Some(text) if parse_duration(text).ok() == Some(actual) => text.to_owned(),
        _ => format_duration(actual),
    }
}

/// A validator for attributes holding a duration.
pub(crate) fn duration_validator() -> impl tfplug::validator::Validator {
    tfplug::validator::from_fn("Invalid duration", |value| match value.as_str() {
        Some(text) => parse_duration(text).map(|_| ()),
        None => Err("expected a duration string like \"30s\"".to_owned()),
    })
}

/// A map read back from the runtime: empty stays unset when it was unset, so an
/// attribute the configuration leaves out does not show as a diff.
pub(crate) fn map_or_null(
    had: &Option<BTreeMap<String, String>>,
    actual: BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    if actual.is_empty() && had.as_ref().is_none_or(|m| m.is_empty()) {
        had.clone()
    } else {
        Some(actual)
    }
}

/// Names every key of `secrets` whose value also appears in `text`, without the
/// values: for tests that prove diagnostics never carry a secret.
#[cfg(test)]
pub(crate) fn leaked_secrets(
    secrets: &BTreeMap<String, String>,
    diags: &Diagnostics,
) -> Vec<String> {
    let text = format!("{diags:?}");
    secrets
        .iter()
        .filter(|(_, v)| text.contains(v.as_str()))
        .map(|(k, _)| k.clone())
        .collect()
}

/// One error diagnostic at an attribute.
pub(crate) fn error_at(path: AttributePath, summary: &str, detail: String) -> Diagnostics {
    Diagnostic::error(summary, detail).at(path).into()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Drives resources the way the tfplug server does: values in, values out, with
    //! Terraform's proposed-state merge and tfplug's schema-driven planning.

    use std::sync::Arc;

    use tfplug::schema::Attribute;
    use tfplug::{AnyResource, Context, Diagnostics, Nesting, PlannedChange, Schema, Value};

    use crate::client::SlipwayClient;
    use crate::run_labels::RunLabels;
    use crate::runtime::memory::MemoryRuntime;

    /// The private state Terraform would keep with each object, by object id.
    static PRIVATE: std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());

    /// A context holding the private state Terraform keeps with `state`'s object.
    fn context_for(state: &Value) -> Context {
        let private = state
            .get("id")
            .as_str()
            .and_then(|id| PRIVATE.lock().unwrap().get(id).cloned())
            .unwrap_or_default();
        Context::background().with_private(private)
    }

    /// Keeps what an operation left in the private state of `state`'s object.
    fn keep_private(ctx: &Context, state: &Value) {
        if let Some(id) = state.get("id").as_str() {
            PRIVATE.lock().unwrap().insert(id.to_owned(), ctx.private());
        }
    }

    /// A scratch directory removed on drop (the provider's dependencies stay free of
    /// test-only crates).
    pub struct ScratchDir(pub std::path::PathBuf);

    impl ScratchDir {
        pub fn new() -> ScratchDir {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("slipway-provider-test-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            ScratchDir(dir)
        }

        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub fn client(runtime: Arc<MemoryRuntime>) -> SlipwayClient {
        SlipwayClient {
            runtime,
            labels: RunLabels::manual("tester".into()),
        }
    }

    /// A value of the schema's type from JSON; missing attributes are null.
    pub fn value(schema: &Schema, json: serde_json::Value) -> Value {
        tfplug::convert::to_value(&json, &schema.value_type()).unwrap()
    }

    /// What Terraform proposes: the configuration, with the prior value of every
    /// computed attribute the configuration leaves null; nested attributes likewise
    /// (list elements pair by index).
    pub fn propose(attributes: &[Attribute], config: &Value, prior: &Value) -> Value {
        let (Value::Object(c), Value::Object(_)) = (config, prior) else {
            return config.clone();
        };
        let mut out = c.clone();
        for attribute in attributes {
            let configured = config.get(&attribute.name);
            let old = prior.get(&attribute.name);
            let merged = if configured.is_null() {
                if attribute.computed {
                    old.clone()
                } else {
                    Value::Null
                }
            } else {
                match (attribute.nested_attributes(), configured) {
                    (Some((Nesting::Single, nested)), _) => propose(nested, configured, old),
                    (Some((Nesting::List, nested)), Value::List(elements)) => Value::List(
                        elements
                            .iter()
                            .enumerate()
                            .map(|(i, e)| {
                                let p = old
                                    .as_elements()
                                    .and_then(|p| p.get(i))
                                    .unwrap_or(&Value::Null);
                                propose(nested, e, p)
                            })
                            .collect(),
                    ),
                    _ => configured.clone(),
                }
            };
            out.insert(attribute.name.clone(), merged);
        }
        Value::Object(out)
    }

    /// Plans like the server: proposal, schema planning, then `modify_plan`.
    pub async fn plan(
        resource: &dyn AnyResource<SlipwayClient>,
        client: &SlipwayClient,
        config: &Value,
        prior: &Value,
    ) -> Result<PlannedChange, Diagnostics> {
        let schema = resource.schema();
        let mut diags = Diagnostics::new();
        tfplug::plan::validate(&schema.block, config, &Default::default(), &mut diags);
        diags.extend(resource.validate(config).await);
        if diags.has_errors() {
            return Err(diags);
        }
        // Terraform proposes nested optional+computed attributes from the prior state
        // only where the configuration leaves them null, exactly like `propose`.
        let proposed = propose(&schema.block.attributes, config, prior);
        let planned = tfplug::plan::plan(&schema.block, config, prior, &proposed);
        let requires_replace = tfplug::plan::requires_replace(&schema.block, prior, &planned);
        let mut change = PlannedChange {
            config: config.clone(),
            prior: prior.clone(),
            planned,
            requires_replace,
        };
        let diags = resource
            .modify_plan(&context_for(prior), Some(client), &mut change)
            .await;
        if diags.has_errors() {
            return Err(diags);
        }
        Ok(change)
    }

    /// Plans and applies like `terraform apply`: create, update or (for a null
    /// configuration) delete. Returns the new state.
    pub async fn apply(
        resource: &dyn AnyResource<SlipwayClient>,
        client: &SlipwayClient,
        config: &Value,
        prior: &Value,
    ) -> Result<Value, Diagnostics> {
        let ctx = context_for(prior);
        if config.is_null() {
            resource.delete(&ctx, client, prior).await?;
            return Ok(Value::Null);
        }
        let change = plan(resource, client, config, prior).await?;
        if !change.requires_replace.is_empty() {
            resource.delete(&ctx, client, prior).await?;
            let change = plan(resource, client, config, &Value::Null).await?;
            let ctx = Context::background();
            let state = resource.create(&ctx, client, &change.planned).await?;
            keep_private(&ctx, &state);
            return Ok(state);
        }
        let state = if prior.is_null() {
            resource.create(&ctx, client, &change.planned).await?
        } else if change.planned.same_as(prior) {
            prior.clone()
        } else {
            resource
                .update(&ctx, client, prior, &change.planned)
                .await?
        };
        assert_consistent(&change.planned, &state);
        keep_private(&ctx, &state);
        Ok(state)
    }

    /// Terraform's check after apply: every known planned value must be what the
    /// provider returned.
    pub fn assert_consistent(planned: &Value, state: &Value) {
        match (planned, state) {
            (Value::Unknown, _) => {}
            (Value::Object(p), Value::Object(s)) | (Value::Map(p), Value::Map(s)) => {
                assert_eq!(
                    p.keys().collect::<Vec<_>>(),
                    s.keys().collect::<Vec<_>>(),
                    "planned {planned:?} vs {state:?}"
                );
                for (k, v) in p {
                    assert_consistent(v, &s[k]);
                }
            }
            (Value::List(p), Value::List(s)) => {
                assert_eq!(p.len(), s.len(), "planned {planned:?} vs {state:?}");
                for (a, b) in p.iter().zip(s) {
                    assert_consistent(a, b);
                }
            }
            _ => assert!(
                planned.same_as(state),
                "inconsistent result after apply: planned {planned:?}, got {state:?}"
            ),
        }
    }

    /// Plans destroying `state`, as Terraform 1.3 and later ask (a null proposed state).
    pub async fn plan_destroy(
        resource: &dyn AnyResource<SlipwayClient>,
        client: &SlipwayClient,
        state: &Value,
    ) -> Result<(), Diagnostics> {
        let mut change = PlannedChange {
            config: Value::Null,
            prior: state.clone(),
            planned: Value::Null,
            requires_replace: Vec::new(),
        };
        let diags = resource
            .modify_plan(&context_for(state), Some(client), &mut change)
            .await;
        if diags.has_errors() {
            return Err(diags);
        }
        Ok(())
    }

    /// True when a plan from `state` with `config` changes nothing.
    pub async fn plan_is_empty(
        resource: &dyn AnyResource<SlipwayClient>,
        client: &SlipwayClient,
        config: &Value,
        state: &Value,
    ) -> bool {
        let change = plan(resource, client, config, state).await.unwrap();
        change.requires_replace.is_empty() && change.planned.same_as(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "30", "s", "5 minutes", "-1s", "1.5s", "10d"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("like \"30s\""), "{bad}: {err}");
        }
        for d in [1, 59, 60, 61, 3600, 5400, 3661] {
            let d = Duration::from_secs(d);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration_text(Some("1m"), Duration::from_secs(60)), "1m");
        assert_eq!(duration_text(Some("1m"), Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn ids_are_readable_and_distinct() {
        let a = new_id("web");
        let b = new_id("web");
        assert!(a.starts_with("web-") && a.len() == "web-".len() + 8, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn unset_stays_unset_and_set_stays_set() {
        assert_eq!(map_or_null(&None, BTreeMap::new()), None);
        assert_eq!(
            map_or_null(&Some(BTreeMap::new()), BTreeMap::new()),
            Some(BTreeMap::new())
        );
        let m: BTreeMap<String, String> = [("A".to_owned(), "1".to_owned())].into();
        assert_eq!(map_or_null(&None, m.clone()), Some(m));
    }
}
