//! Create, read, update, delete and import: the calls to the runtime, and what is left
//! behind when a rollout fails (nothing after a failed create; the previous version
//! after a failed update).

use std::time::Duration;

use slipway_platform::{Action, Target};
use tfplug::{Context, Diagnostic, Diagnostics};

use super::plan::apply_time_checks;
use super::root;
use super::state::{steady_status, ApplicationState};
use crate::client::SlipwayClient;
use crate::resources::secrets::applied_version;
use crate::resources::{error_at, new_id, runtime_error};
use crate::runtime::{Phase, RolloutCause, RuntimeError};

const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_UPDATE_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_DELETE_TIMEOUT: Duration = Duration::from_secs(300);

pub(super) async fn create(
    ctx: &Context,
    client: &SlipwayClient,
    planned: ApplicationState,
) -> Result<ApplicationState, Diagnostics> {
    let runtime = &client.runtime;
    apply_time_checks(client, &planned)?;
    if runtime
        .get_environment(&planned.environment_id)
        .await
        .map_err(|e| runtime_error("read the application's environment", e))?
        .is_none()
    {
        return Err(error_at(
            root("environment_id"),
            "No such environment",
            format!("environment_id: no environment has the id {:?}; it may have been deleted outside Terraform. Use the id of a slipway_environment.", planned.environment_id),
        ));
    }
    if let Some(existing) = runtime
        .find_application(&planned.environment_id, &planned.name)
        .await
        .map_err(|e| runtime_error("look up the application", e))?
    {
        return Err(error_at(
            root("name"),
            "Application already exists",
            format!(
                "An application named {:?} already exists in this environment (id {}). Choose another name, or bring it under Terraform with `terraform import slipway_application.<name> {}`.",
                planned.name, existing.spec.id, existing.spec.id
            ),
        ));
    }
    let timeout = planned.timeout(|t| t.create.as_deref(), "create", DEFAULT_CREATE_TIMEOUT)?;
    let id = new_id(&planned.name);
    let spec = planned.to_spec(id.clone())?;
    let record = client.labels.record();
    match runtime
        .apply_application(spec, record.clone(), timeout)
        .await
    {
        Ok(app) if app.phase != Phase::Failed => {
            tracing::info!(id = %id, name = %planned.name, "created application");
            let status = steady_status(planned.replicas());
            Ok(ApplicationState::from_runtime(
                ctx,
                app,
                Some(&planned),
                Some(status),
            ))
        }
        outcome => {
            let error = match outcome {
                Err(e) => e,
                Ok(app) => failed_phase(app.message),
            };
            // Terraform does not record a failed create, so leave nothing behind
            // that would make the next attempt conflict with it.
            let cleaned = match runtime
                .delete_application(&id, record, DEFAULT_DELETE_TIMEOUT)
                .await
            {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {
                    "The application was removed again; fix the problem and apply once more."
                }
                Err(_) => "",
            };
            Err(rollout_failed(
                "create the application",
                error,
                planned.healthcheck.is_some(),
                cleaned,
            ))
        }
    }
}

pub(super) async fn read(
    ctx: &Context,
    client: &SlipwayClient,
    current: ApplicationState,
) -> Result<Option<ApplicationState>, Diagnostics> {
    let app = client
        .runtime
        .get_application(current.id()?)
        .await
        .map_err(|e| runtime_error("read the application", e))?;
    Ok(app.map(|app| ApplicationState::from_runtime(ctx, app, Some(&current), None)))
}

pub(super) async fn update(
    ctx: &Context,
    client: &SlipwayClient,
    prior: ApplicationState,
    planned: ApplicationState,
) -> Result<ApplicationState, Diagnostics> {
    let runtime = &client.runtime;
    apply_time_checks(client, &planned)?;
    let id = prior.id()?.to_owned();
    let timeout = planned.timeout(|t| t.update.as_deref(), "update", DEFAULT_UPDATE_TIMEOUT)?;
    let spec = planned.to_spec(id.clone())?;
    let record = client.labels.record();
    let error = match runtime
        .apply_application(spec, record.clone(), timeout)
        .await
    {
        Ok(app) if app.phase != Phase::Failed => {
            tracing::info!(id = %id, name = %planned.name, "updated application");
            let status = steady_status(planned.replicas());
            let state = ApplicationState::from_runtime(ctx, app, Some(&planned), Some(status));
            return Ok(ApplicationState {
                secrets_version: applied_version(planned.secrets_version, prior.secrets_version),
                ..state
            });
        }
        Ok(app) => failed_phase(app.message),
        Err(e) => e,
    };
    // Terraform keeps the prior state after a failed update; put the runtime back
    // to that too, so the next plan shows the change again instead of a spec that
    // never became healthy.
    let mut note = "";
    if matches!(error, RuntimeError::RolloutFailed { .. }) {
        if let Ok(mut previous) = prior.to_spec(id.clone()) {
            // Terraform 1.11 keeps no secret values in the state: the previous version
            // comes back with the secrets of this plan.
            if prior.secrets.is_none() {
                previous.secrets = planned.secrets.clone().unwrap_or_default();
            }
            let restore_timeout = prior
                .timeout(|t| t.update.as_deref(), "update", DEFAULT_UPDATE_TIMEOUT)
                .unwrap_or(DEFAULT_UPDATE_TIMEOUT);
            if runtime
                .apply_application(previous, record, restore_timeout)
                .await
                .is_ok()
            {
                note = "The previous version was restored and keeps running.";
            }
        }
    }
    Err(rollout_failed(
        "update the application",
        error,
        planned.healthcheck.is_some(),
        note,
    ))
}

pub(super) async fn delete(
    _ctx: &Context,
    client: &SlipwayClient,
    prior: ApplicationState,
) -> Result<(), Diagnostics> {
    let timeout = prior.timeout(|t| t.delete.as_deref(), "delete", DEFAULT_DELETE_TIMEOUT)?;
    match client
        .runtime
        .delete_application(prior.id()?, client.labels.record(), timeout)
        .await
    {
        Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
        Err(e) => Err(runtime_error("delete the application", e).into()),
    }
}

pub(super) async fn import(
    ctx: &Context,
    client: &SlipwayClient,
    id: &str,
) -> Result<ApplicationState, Diagnostics> {
    let runtime = &client.runtime;
    let fail = |e| runtime_error("import the application", e);
    let mut found = runtime.get_application(id).await.map_err(fail)?;
    // Accept `ENVIRONMENT_NAME/APPLICATION_NAME` too: it is what people know.
    if found.is_none() {
        if let Some((environment, name)) = id.split_once('/') {
            if let Some(env) = runtime.find_environment(environment).await.map_err(fail)? {
                found = runtime
                    .find_application(&env.spec.id, name)
                    .await
                    .map_err(fail)?;
            }
        }
    }
    if let Some(app) = &found {
        // Importing brings the application under this caller's state: the policy
        // treats it as a change of its environment's mode.
        ask_platform(
            client,
            &app.spec.environment_id,
            &app.spec.name,
            Action::Import,
        )
        .await?;
    }
    found
        .map(|app| ApplicationState::from_runtime(ctx, app, None, None))
        .ok_or_else(|| {
            Diagnostic::error(
                "Cannot import: no such application",
                format!("No application has the id {id:?} on the {} runtime (an `environment/application` pair of names works too). The data source slipway_application shows an application's id.", runtime.kind()),
            )
            .into()
        })
}

/// The platform's decision on `action` for application `name` in its environment, asked
/// at plan (and at import), so that a refusal shows before anything is written. The
/// platform decides again on the write itself: a saved plan applied later, or from
/// elsewhere, gets no further than the caller's identity allows.
pub(super) async fn ask_platform(
    client: &SlipwayClient,
    environment_id: &str,
    name: &str,
    action: Action,
) -> Result<(), Diagnostics> {
    let environment = client
        .runtime
        .get_environment(environment_id)
        .await
        .map_err(|e| runtime_error("read the application's environment", e))?;
    if let Some(environment) = environment {
        let target = Target {
            environment: environment.spec.name.clone(),
            mode: environment.spec.mode,
        };
        let object = format!("application {}/{name}", environment.spec.name);
        client
            .runtime
            .authorize(action, &target, &object)
            .await
            .map_err(|e| runtime_error("plan this change", e).at(root("environment_id")))?;
    }
    Ok(())
}

/// A rollout that ended in a failed phase, as the error it is.
fn failed_phase(message: Option<String>) -> RuntimeError {
    RuntimeError::rollout(
        RolloutCause::Other,
        message.unwrap_or_else(|| "the rollout failed".to_owned()),
    )
}

/// A rollout failure as a diagnostic at the attribute the runtime blames
/// ([`RolloutCause::attribute`]). The runtime's message names the failing check and
/// redacts secrets.
fn rollout_failed(
    action: &str,
    error: RuntimeError,
    has_healthcheck: bool,
    note: &str,
) -> Diagnostics {
    let attribute = match &error {
        RuntimeError::RolloutFailed { cause, .. } => cause.attribute(has_healthcheck),
        _ => None,
    };
    let mut d = runtime_error(action, error);
    if !note.is_empty() {
        d.detail = format!("{} {note}", d.detail);
    }
    match attribute {
        Some(attribute) => d.at(root(attribute)).into(),
        None => d.into(),
    }
}
