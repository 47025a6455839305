//! `secrets` and `secrets_version`, as both resources plan and keep them.
//!
//! `secrets` is write-only: Terraform 1.11 and later keep it out of plans and state
//! altogether (tfplug nulls it, `tfplug::write_only`). What tells a plan that a secret
//! changed is the runtime's digest of each value, kept in the resource's private state
//! (never shown in a plan, where a digest would let anyone who reads plan output test
//! guesses of a weak secret): the plan digests the configured values and compares, the
//! runtime reports its digests on every read (so a secret changed out of band shows
//! too), and an import learns them, so that it plans nothing when the configuration
//! holds the same secrets. A change shows as `secrets_version` going up. Older
//! Terraform keeps `secrets` in the state as a sensitive attribute; the digests work
//! the same.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tfplug::schema::Attribute;
use tfplug::{Context, PlannedChange, Value};

use crate::resources::variable_names::names_validator;
use crate::runtime::secrets::{as_digests, digests};

/// The `secrets` attribute of a resource: what `description` says they are.
pub(crate) fn attribute(description: &str) -> Attribute {
    Attribute::string_map("secrets")
        .optional()
        .sensitive()
        .write_only()
        .validator(names_validator())
        .description(format!("{description} Write-only: never shown, logged, or kept in the state (Terraform 1.11 and later; older Terraform keeps them in the state as sensitive values)."))
}

/// The `secrets_version` attribute.
pub(crate) fn version_attribute() -> Attribute {
    Attribute::number("secrets_version")
        .computed()
        .description("1 when created, one more each time an apply changed the secrets: a plan shows it change when a secret did, since the secrets themselves are never shown.")
}

/// What the private state holds.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Private {
    /// The runtime's digest of each secret, by name.
    secrets: BTreeMap<String, String>,
}

/// The digests the private state holds, if it holds any.
fn stored(ctx: &Context) -> Option<BTreeMap<String, String>> {
    serde_json::from_slice::<Private>(&ctx.private())
        .ok()
        .map(|p| p.secrets)
}

/// Keeps the digests of what the runtime `read` back (values or digests) for `owner`.
pub(crate) fn remember(ctx: &Context, owner: &str, read: &BTreeMap<String, String>) {
    let private = Private {
        secrets: as_digests(owner, read),
    };
    // A map of strings always serialises; the sorted map makes the bytes the same for
    // the same digests, which a refresh must leave untouched.
    if let Ok(bytes) = serde_json::to_vec(&private) {
        ctx.set_private(bytes);
    }
}

/// The digests of the configured secrets, when the object's id and every value are
/// known.
fn configured_digests(id: Option<&str>, secrets: &Value) -> Option<BTreeMap<String, String>> {
    if secrets.is_null() {
        return Some(BTreeMap::new());
    }
    if !secrets.is_wholly_known() {
        return None;
    }
    let values: BTreeMap<String, String> = secrets
        .as_object()?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    Some(digests(id?, &values))
}

/// Plans `secrets_version`: 1 on create; the prior version while the configured
/// secrets are those the runtime has; else unknown (it goes up at apply).
pub(crate) fn plan_version(ctx: &Context, change: &mut PlannedChange) {
    let prior_version = change.prior.get("secrets_version").clone();
    let version = if change.prior.is_null() {
        Value::from(1)
    } else {
        let wanted = configured_digests(
            change.planned.get("id").as_str(),
            change.config.get("secrets"),
        );
        // Without private state (written by an older provider, before its first
        // refresh), the prior state's own secrets (Terraform before 1.11) say.
        let had = stored(ctx).or_else(|| {
            let id = change.prior.get("id").as_str()?;
            configured_digests(Some(id), change.prior.get("secrets"))
        });
        match (wanted, had) {
            (Some(wanted), Some(had)) if wanted == had && !prior_version.is_null() => prior_version,
            _ => Value::Unknown,
        }
    };
    if let Some(attributes) = change.planned.as_object_mut() {
        attributes.insert("secrets_version".into(), version);
    }
}

/// The version after an apply: what the plan said, or one more than before when the
/// plan left it to the apply.
pub(crate) fn applied_version(planned: Option<i64>, prior: Option<i64>) -> Option<i64> {
    planned.or(Some(prior.unwrap_or(0) + 1))
}

/// Whether a plan changes anything. `secrets` aside: Terraform 1.11 plans them null
/// whatever they are, and `secrets_version` stands for them in both versions.
pub(crate) fn plan_changes(change: &PlannedChange) -> bool {
    let without = |v: &Value| {
        let mut v = v.clone();
        if let Some(attributes) = v.as_object_mut() {
            attributes.remove("secrets");
        }
        v
    };
    change.prior.is_null()
        || !change.requires_replace.is_empty()
        || !without(&change.planned).same_as(&without(&change.prior))
}
