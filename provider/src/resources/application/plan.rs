//! The plan of an application: what Terraform is told will be there, and the checks
//! that make a refusal show at `terraform plan` rather than halfway through an apply.
//!
//! Plans stay empty when nothing changed: `status` is the steady outcome of a rollout,
//! `endpoints` keep their prior value while the ports do not change, and "unset" is
//! planned as what the runtime will hold, so that an import matches either spelling.

use std::collections::BTreeMap;

use slipway_platform::Action;
use tfplug::{Context, Diagnostic, Diagnostics, PlannedChange, Value};

use super::crud::ask_platform;
use super::root;
use super::state::{steady_status, ApplicationState};
use crate::client::SlipwayClient;
use crate::runtime::{Planned, PlannedApplication, Runtime};

/// `modify_plan` of `slipway_application`.
pub(super) async fn modify_plan(
    ctx: &Context,
    client: Option<&SlipwayClient>,
    change: &mut PlannedChange,
) -> Diagnostics {
    if change.planned.is_null() {
        // A destroy (Terraform 1.3 and later plan it): refused at plan when the
        // platform would refuse it.
        let prior = &change.prior;
        if let (Some(client), Some(environment_id), Some(name)) = (
            client,
            prior.get("environment_id").as_str(),
            prior.get("name").as_str(),
        ) {
            if let Err(d) = ask_platform(client, environment_id, name, Action::Delete).await {
                return d;
            }
        }
        return Diagnostics::new();
    }
    // Nested attributes are optional *and computed* only to keep Terraform 1.0 from
    // crashing on a null nested attribute (its planner dereferences the null
    // configuration unless the attribute is computed). They are never really
    // computed: unset in the configuration means unset.
    if let Some(attributes) = change.planned.as_object_mut() {
        for name in NESTED {
            if change.config.get(name).is_null() {
                attributes.insert(name.into(), Value::Null);
            }
        }
        unset_as_empty(&change.config, attributes);
    }
    crate::resources::secrets::plan_version(ctx, change);
    if !crate::resources::secrets::plan_changes(change) {
        return Diagnostics::new();
    }
    let planned = &change.planned;
    let mut diags = Diagnostics::new();
    if let Some(client) = client {
        diags.extend(runtime_rules(
            client.runtime.as_ref(),
            &planned_application(planned),
        ));
        if let (Some(environment_id), Some(name)) = (
            planned.get("environment_id").as_str(),
            planned.get("name").as_str(),
        ) {
            let action = if change.prior.is_null() {
                Action::Create
            } else {
                Action::Update
            };
            if let Err(d) = ask_platform(client, environment_id, name, action).await {
                diags.extend(d);
            }
        }
    }
    if diags.has_errors() {
        return diags;
    }
    let Some(attributes) = change.planned.as_object_mut() else {
        return diags;
    };
    // A rollout that succeeds leaves the application running (or stopped at zero
    // replicas), so say so now instead of "known after apply".
    if let Some(replicas) = attributes.get("replicas").and_then(Value::as_i64) {
        attributes.insert("status".into(), Value::from(steady_status(replicas)));
    }
    // Endpoints follow the ports: while those stay, the endpoints do too.
    let prior_endpoints = change.prior.get("endpoints");
    if change.requires_replace.is_empty()
        && !change.prior.is_null()
        && prior_endpoints.is_wholly_known()
        && !prior_endpoints.is_null()
        && attributes
            .get("ports")
            .is_some_and(|p| p.is_wholly_known() && p.same_as(change.prior.get("ports")))
    {
        attributes.insert("endpoints".into(), prior_endpoints.clone());
    }
    diags
}

/// Plans what the runtime will hold for attributes the configuration leaves unset:
/// empty lists and maps, no resource limits, the `/` of an http check. The state then
/// says the same whether the configuration wrote `args = []` (or `path = "/"`) or
/// nothing, and so does an import, which knows only what the runtime has: the first
/// plan after `terraform import` is empty. These attributes are optional *and
/// computed* for this. `secrets` cannot be (it is write-only): unset stays null.
fn unset_as_empty(config: &Value, attributes: &mut BTreeMap<String, Value>) {
    let unset = |name: &str| config.get(name).is_null();
    for name in ["args", "ports"] {
        if unset(name) {
            attributes.insert(name.into(), Value::List(Vec::new()));
        }
    }
    if unset("variables") {
        attributes.insert("variables".into(), Value::Map(BTreeMap::new()));
    }
    if unset("resources") {
        attributes.insert(
            "resources".into(),
            Value::object([("cpu", Value::Null), ("memory", Value::Null)]),
        );
    }
    let check = config.get("healthcheck");
    if let Some(planned) = attributes
        .get_mut("healthcheck")
        .and_then(Value::as_object_mut)
    {
        if check.get("path").is_null() {
            let path = match check.get("type") {
                Value::Unknown => Value::Unknown,
                kind if kind.as_str() == Some("http") => Value::from("/"),
                _ => Value::Null,
            };
            planned.insert("path".into(), path);
        }
    }
}

/// The nested attributes; see `modify_plan` for why they are marked computed.
const NESTED: [&str; 4] = ["ports", "healthcheck", "resources", "timeouts"];

fn planned_string(value: &Value) -> Planned<'_> {
    match value {
        Value::Unknown => Planned::Unknown,
        Value::Null => Planned::Null,
        other => other
            .as_str()
            .map(Planned::Known)
            .unwrap_or(Planned::Unknown),
    }
}

/// What the plan knows of the application, for the runtime's own rules.
fn planned_application(planned: &Value) -> PlannedApplication<'_> {
    let keys = |a: &str| {
        planned
            .get(a)
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    };
    PlannedApplication {
        name: planned.get("name").as_str(),
        image: planned_string(planned.get("image")),
        command: planned_string(planned.get("command")),
        working_dir: planned_string(planned.get("working_dir")),
        replicas: planned.get("replicas").as_i64(),
        variables: keys("variables"),
        secrets: keys("secrets"),
    }
}

/// The runtime's own rules ([`Runtime::check_application`]), as errors at the attribute
/// and key to fix.
fn runtime_rules(runtime: &dyn Runtime, planned: &PlannedApplication<'_>) -> Diagnostics {
    let mut diags = Diagnostics::new();
    for problem in runtime.check_application(planned) {
        let path = match problem.key {
            Some(key) => root(problem.attribute).key(key),
            None => root(problem.attribute),
        };
        diags.push(Diagnostic::error(problem.summary, problem.detail).at(path));
    }
    diags
}

/// The runtime's own rules again at apply: a saved plan may be applied with another
/// runtime configured.
pub(super) fn apply_time_checks(
    client: &SlipwayClient,
    planned: &ApplicationState,
) -> Result<(), Diagnostics> {
    let application = PlannedApplication {
        name: Some(&planned.name),
        image: Planned::of_option(&planned.image),
        command: Planned::of_option(&planned.command),
        working_dir: Planned::of_option(&planned.working_dir),
        replicas: Some(planned.replicas()),
        variables: planned
            .variables
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect(),
        secrets: planned
            .secrets
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect(),
    };
    let checks = runtime_rules(client.runtime.as_ref(), &application);
    if checks.has_errors() {
        return Err(checks);
    }
    Ok(())
}
