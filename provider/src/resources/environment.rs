//! `slipway_environment`: a named group of applications with a mode (DEVELOPMENT,
//! PREVIEW, STAGING, PRODUCTION) and variables and secrets its applications share.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tfplug::schema::{Attribute, Block, Schema};
use tfplug::{
    async_trait, validator, AttributePath, Context, Diagnostic, Diagnostics, PlannedChange,
    Resource,
};

use super::{error_at, map_or_null, new_id, runtime_error};
use crate::client::SlipwayClient;
use crate::resources::variable_names::names_validator;
use crate::runtime::{Environment, EnvironmentSpec, Mode, RuntimeError};
use slipway_platform::{Action, Target};

/// How long deleting an environment may take.
const DELETE_TIMEOUT: Duration = Duration::from_secs(300);

/// The resource's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentState {
    pub id: Option<String>,
    pub name: String,
    pub mode: Option<String>,
    pub variables: Option<BTreeMap<String, String>>,
    pub secrets: Option<BTreeMap<String, String>>,
    pub secrets_version: Option<i64>,
}

impl EnvironmentState {
    fn mode(&self) -> Mode {
        self.mode
            .as_deref()
            .and_then(|m| m.parse::<Mode>().ok())
            .unwrap_or_default()
    }

    fn spec(&self, id: String) -> EnvironmentSpec {
        EnvironmentSpec {
            id,
            name: self.name.clone(),
            mode: self.mode(),
            variables: self.variables.clone().unwrap_or_default(),
            secrets: self.secrets.clone().unwrap_or_default(),
        }
    }

    /// The state for what the runtime has, keeping unset maps unset.
    fn from_runtime(
        ctx: &Context,
        environment: Environment,
        had: Option<&EnvironmentState>,
    ) -> EnvironmentState {
        let spec = environment.spec;
        super::secrets::remember(ctx, &spec.id, &spec.secrets);
        let known = had.and_then(|h| h.secrets.clone());
        // The runtime gives digests, not values: keep the values the state knows.
        let secrets = crate::runtime::secrets::reconcile(
            &spec.id,
            known.as_ref().unwrap_or(&BTreeMap::new()),
            &spec.secrets,
        );
        EnvironmentState {
            name: spec.name,
            mode: Some(spec.mode.as_str().to_owned()),
            variables: map_or_null(&had.and_then(|h| h.variables.clone()), spec.variables),
            secrets: map_or_null(&known, secrets),
            secrets_version: had.and_then(|h| h.secrets_version).or(Some(1)),
            id: Some(spec.id),
        }
    }

    fn id(&self) -> Result<&str, Diagnostics> {
        self.id.as_deref().ok_or_else(|| {
            Diagnostic::error(
                "Environment has no id",
                "The state of this slipway_environment has no id. Remove it from the state (terraform state rm) and import it by id.",
            )
            .into()
        })
    }
}

/// `slipway_environment`.
pub struct EnvironmentResource;

#[async_trait]
impl Resource for EnvironmentResource {
    type Client = SlipwayClient;
    type State = EnvironmentState;

    fn type_name(&self) -> &str {
        "slipway_environment"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new()
                .description("An environment: a group of applications sharing a mode, variables and secrets.")
                .attribute(
                    Attribute::string("id")
                        .computed()
                        .use_state_for_unknown()
                        .description("The environment's id; import with it."),
                )
                .attribute(
                    Attribute::string("name")
                        .required()
                        .requires_replace()
                        .validator(validator::dns_label())
                        .description("A DNS label, unique per runtime. Changing it replaces the environment."),
                )
                .attribute(
                    Attribute::string("mode")
                        .default("DEVELOPMENT")
                        .validator(validator::one_of(&Mode::NAMES))
                        .description("DEVELOPMENT (the default), PREVIEW, STAGING or PRODUCTION. The provider's policy may accept PRODUCTION changes only through a merge."),
                )
                .attribute(
                    Attribute::string_map("variables")
                        .optional()
                        .validator(names_validator())
                        .description("Environment variables every application in the environment gets."),
                )
                .attribute(super::secrets::attribute(
                    "Secret environment variables every application gets.",
                ))
                .attribute(super::secrets::version_attribute()),
        )
    }

    async fn modify_plan(
        &self,
        ctx: &Context,
        client: Option<&SlipwayClient>,
        change: &mut PlannedChange,
    ) -> Diagnostics {
        if !change.planned.is_null() {
            super::secrets::plan_version(ctx, change);
        }
        let Some(client) = client else {
            return Diagnostics::new();
        };
        let mode_of =
            |v: &tfplug::Value| v.get("mode").as_str().and_then(|m| m.parse::<Mode>().ok());
        // A destroy (planned null; Terraform 1.3 and later ask): the platform is asked
        // at plan like for any other change, and decides again at apply (the only
        // time older Terraform asks).
        if change.planned.is_null() {
            if change.prior.is_null() {
                return Diagnostics::new();
            }
            let name = change.prior.get("name").as_str().unwrap_or_default();
            let Some(mode) = mode_of(&change.prior) else {
                return Diagnostics::new();
            };
            return ask_platform(client, Action::Delete, name, mode, None).await;
        }
        // A plan that changes nothing asks nothing: `terraform plan` on an unchanged
        // production environment must succeed anywhere.
        if !super::secrets::plan_changes(change) {
            return Diagnostics::new();
        }
        let name = change
            .planned
            .get("name")
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Some(planned_mode) = mode_of(&change.planned) else {
            return Diagnostics::new();
        };
        let (action, mode) = match mode_of(&change.prior) {
            None => (Action::Create, planned_mode),
            Some(prior) if prior != planned_mode => {
                (Action::ChangeMode { to: planned_mode }, prior)
            }
            Some(prior) => (Action::Update, prior),
        };
        let environment = change
            .prior
            .get("name")
            .as_str()
            .map_or(name.clone(), str::to_owned);
        ask_platform(
            client,
            action,
            &environment,
            mode,
            Some(AttributePath::root("mode")),
        )
        .await
    }

    async fn create(
        &self,
        ctx: &Context,
        client: &SlipwayClient,
        planned: EnvironmentState,
    ) -> Result<EnvironmentState, Diagnostics> {
        if let Some(existing) = client
            .runtime
            .find_environment(&planned.name)
            .await
            .map_err(|e| runtime_error("look up the environment", e))?
        {
            return Err(error_at(
                AttributePath::root("name"),
                "Environment already exists",
                format!(
                    "An environment named {:?} already exists (id {}). Choose another name, or bring it under Terraform with `terraform import slipway_environment.<name> {}`.",
                    planned.name, existing.spec.id, existing.spec.id
                ),
            ));
        }
        let id = new_id(&planned.name);
        let environment = client
            .runtime
            .apply_environment(planned.spec(id), client.labels.record())
            .await
            .map_err(|e| runtime_error("create the environment", e))?;
        tracing::info!(id = %environment.spec.id, name = %planned.name, "created environment");
        Ok(EnvironmentState::from_runtime(
            ctx,
            environment,
            Some(&planned),
        ))
    }

    async fn read(
        &self,
        ctx: &Context,
        client: &SlipwayClient,
        current: EnvironmentState,
    ) -> Result<Option<EnvironmentState>, Diagnostics> {
        let environment = client
            .runtime
            .get_environment(current.id()?)
            .await
            .map_err(|e| runtime_error("read the environment", e))?;
        Ok(environment.map(|e| EnvironmentState::from_runtime(ctx, e, Some(&current))))
    }

    async fn update(
        &self,
        ctx: &Context,
        client: &SlipwayClient,
        prior: EnvironmentState,
        planned: EnvironmentState,
    ) -> Result<EnvironmentState, Diagnostics> {
        let id = prior.id()?.to_owned();
        let environment = client
            .runtime
            .apply_environment(planned.spec(id), client.labels.record())
            .await
            .map_err(|e| runtime_error("update the environment", e))?;
        Ok(EnvironmentState {
            secrets_version: super::secrets::applied_version(
                planned.secrets_version,
                prior.secrets_version,
            ),
            ..EnvironmentState::from_runtime(ctx, environment, Some(&planned))
        })
    }

    async fn delete(
        &self,
        _ctx: &Context,
        client: &SlipwayClient,
        prior: EnvironmentState,
    ) -> Result<(), Diagnostics> {
        match client
            .runtime
            .delete_environment(prior.id()?, client.labels.record(), DELETE_TIMEOUT)
            .await
        {
            Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
            Err(e) => Err(runtime_error("delete the environment", e).into()),
        }
    }

    async fn import(
        &self,
        ctx: &Context,
        client: &SlipwayClient,
        id: &str,
    ) -> Result<EnvironmentState, Diagnostics> {
        let runtime = &client.runtime;
        let found = match runtime
            .get_environment(id)
            .await
            .map_err(|e| runtime_error("import the environment", e))?
        {
            Some(e) => Some(e),
            // Accept the name too: it is what people know.
            None => runtime
                .find_environment(id)
                .await
                .map_err(|e| runtime_error("import the environment", e))?,
        };
        if let Some(env) = &found {
            // Importing brings the environment under this caller's state: the policy
            // treats it as a change of that environment's mode.
            let d = ask_platform(client, Action::Import, &env.spec.name, env.spec.mode, None).await;
            if d.has_errors() {
                return Err(d);
            }
        }
        found
            .map(|e| EnvironmentState::from_runtime(ctx, e, None))
            .ok_or_else(|| {
                Diagnostic::error(
                    "Cannot import: no such environment",
                    format!("No environment has the id or name {id:?} on the {} runtime. The data source slipway_environment shows an environment's id.", runtime.kind()),
                )
                .into()
            })
    }
}

/// The platform's decision on a planned change, as diagnostics (empty when allowed).
async fn ask_platform(
    client: &SlipwayClient,
    action: Action,
    environment: &str,
    mode: Mode,
    at: Option<AttributePath>,
) -> Diagnostics {
    let target = Target {
        environment: environment.to_owned(),
        mode,
    };
    let object = format!("environment {environment}");
    match client.runtime.authorize(action, &target, &object).await {
        Ok(()) => Diagnostics::new(),
        Err(e) => {
            let d = runtime_error("plan this change", e);
            match at {
                Some(path) => d.at(path).into(),
                None => d.into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tfplug::{AnyResource, Context, Value};

    use super::*;
    use crate::resources::leaked_secrets;
    use crate::resources::testing::{apply, client, plan, plan_destroy, plan_is_empty, value};
    use crate::runtime::memory::MemoryRuntime;

    fn resource() -> Arc<dyn AnyResource<SlipwayClient>> {
        tfplug::resource(EnvironmentResource)
    }

    fn config(json: serde_json::Value) -> Value {
        value(&EnvironmentResource.schema(), json)
    }

    #[tokio::test]
    async fn lifecycle_create_read_update_import_delete() {
        let runtime = Arc::new(MemoryRuntime::new());
        let client = client(runtime.clone());
        let r = resource();
        let ctx = Context::background();

        let cfg = config(
            json!({"name": "dev", "variables": {"LOG": "debug"}, "secrets": {"TOKEN": "s3cret"}}),
        );
        let change = plan(&*r, &client, &cfg, &Value::Null).await.unwrap();
        assert_eq!(change.planned.get("mode"), &Value::from("DEVELOPMENT"));
        assert!(change.planned.get("id").is_unknown());
        let state = apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
        let id = state.get("id").as_str().unwrap().to_owned();
        assert!(id.starts_with("dev-"), "{id}");
        let env = stored(&runtime, &id).await.unwrap();
        assert_eq!(env.spec.secrets["TOKEN"], "s3cret");
        assert_eq!(env.change.trigger, "terraform-apply");
        assert_eq!(env.change.actor, "tester");

        // Read is stable, and so is the plan after it.
        let read = r.read(&ctx, &client, &state).await.unwrap();
        assert_eq!(read, state);
        assert!(plan_is_empty(&*r, &client, &cfg, &read).await);

        // Update in place.
        let cfg2 = config(json!({"name": "dev", "mode": "STAGING", "variables": {"LOG": "info"}}));
        let change = plan(&*r, &client, &cfg2, &state).await.unwrap();
        assert!(change.requires_replace.is_empty());
        let state2 = apply(&*r, &client, &cfg2, &state).await.unwrap();
        assert_eq!(state2.get("id"), state.get("id"));
        assert_eq!(state2.get("mode"), &Value::from("STAGING"));
        assert!(state2.get("secrets").is_null());
        assert!(plan_is_empty(&*r, &client, &cfg2, &state2).await);

        // Renaming replaces.
        let cfg3 = config(json!({"name": "dev2"}));
        let change = plan(&*r, &client, &cfg3, &state2).await.unwrap();
        assert_eq!(change.requires_replace, vec![AttributePath::root("name")]);

        // Import by id and by name gives the same state.
        let imported = r.import(&ctx, &client, &id).await.unwrap();
        let imported = r.read(&ctx, &client, &imported).await.unwrap();
        // An import cannot know how often the secrets changed: it starts counting again.
        let mut counted_again = state2.clone();
        if let Some(attributes) = counted_again.as_object_mut() {
            attributes.insert("secrets_version".into(), Value::from(1));
        }
        assert_eq!(imported, counted_again);
        assert!(plan_is_empty(&*r, &client, &cfg2, &imported).await);
        let by_name = r.import(&ctx, &client, "dev").await.unwrap();
        assert_eq!(by_name.get("id"), state.get("id"));
        let err = r.import(&ctx, &client, "nope").await.unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");

        // Delete; a second delete (already gone) is fine, and read then drops it.
        r.delete(&ctx, &client, &state2).await.unwrap();
        r.delete(&ctx, &client, &state2).await.unwrap();
        assert!(r.read(&ctx, &client, &state2).await.unwrap().is_null());
    }

    #[tokio::test]
    async fn bad_input_names_the_attribute_and_duplicates_are_refused() {
        let runtime = Arc::new(MemoryRuntime::new());
        let client = client(runtime.clone());
        let r = resource();
        let err = plan(
            &*r,
            &client,
            &config(json!({"name": "Not_A_Label"})),
            &Value::Null,
        )
        .await
        .unwrap_err();
        assert_eq!(err.0[0].attribute, Some(AttributePath::root("name")));
        let err = plan(
            &*r,
            &client,
            &config(json!({"name": "a", "mode": "PROD"})),
            &Value::Null,
        )
        .await
        .unwrap_err();
        assert_eq!(err.0[0].attribute, Some(AttributePath::root("mode")));
        assert!(err.to_string().contains("PRODUCTION"), "{err}");
        for (attribute, name) in [
            ("variables", "A=B"),
            ("variables", "BAD NAME"),
            ("secrets", "1ABC"),
            ("variables", "SLIPWAY_REPLICA"),
        ] {
            let cfg = config(json!({"name": "a", attribute: {name: "hidden-value"}}));
            let err = plan(&*r, &client, &cfg, &Value::Null).await.unwrap_err();
            assert_eq!(
                err.0[0].attribute,
                Some(AttributePath::root(attribute).key(name)),
                "{err}"
            );
            assert_eq!(err.0[0].summary, "Invalid variable name");
            assert!(err.0[0].detail.contains(name), "{err}");
            let secrets = [(name.to_owned(), "hidden-value".to_owned())].into();
            assert!(leaked_secrets(&secrets, &err).is_empty());
        }

        let cfg = config(json!({"name": "dup", "secrets": {"K": "hidden-value"}}));
        apply(&*r, &client, &cfg, &Value::Null).await.unwrap();
        let err = apply(&*r, &client, &cfg, &Value::Null).await.unwrap_err();
        assert_eq!(err.0[0].attribute, Some(AttributePath::root("name")));
        assert!(err.to_string().contains("terraform import"), "{err}");
        let secrets = [("K".to_owned(), "hidden-value".to_owned())].into();
        assert!(leaked_secrets(&secrets, &err).is_empty());
    }

    /// The platform's refusal at plan fails the plan at `mode`: creating, changing,
    /// leaving and destroying a PRODUCTION environment all ask it (leaving as the
    /// stricter mode's change); an unchanged plan asks nothing.
    #[tokio::test]
    async fn the_platforms_refusal_fails_the_plan_at_mode() {
        let runtime = Arc::new(MemoryRuntime::new());
        let client = client(runtime.clone());
        let r = resource();
        let prod = config(json!({"name": "prod", "mode": "PRODUCTION"}));
        let state = apply(&*r, &client, &prod, &Value::Null).await.unwrap();
        runtime.refuse_at_plan(Mode::Production);
        let asked = runtime.asked().len();
        assert!(plan_is_empty(&*r, &client, &prod, &state).await);
        assert_eq!(runtime.asked().len(), asked, "an unchanged plan asked");

        let changed =
            config(json!({"name": "prod", "mode": "PRODUCTION", "variables": {"A": "1"}}));
        let demoted = config(json!({"name": "prod", "mode": "DEVELOPMENT"}));
        let created = config(json!({"name": "prod2", "mode": "PRODUCTION"}));
        for (what, err) in [
            (
                "update",
                plan(&*r, &client, &changed, &state).await.unwrap_err(),
            ),
            (
                "leave",
                plan(&*r, &client, &demoted, &state).await.unwrap_err(),
            ),
            (
                "create",
                plan(&*r, &client, &created, &Value::Null)
                    .await
                    .unwrap_err(),
            ),
        ] {
            assert_eq!(
                err.0[0].attribute,
                Some(AttributePath::root("mode")),
                "{what}"
            );
            assert!(
                err.0[0]
                    .summary
                    .contains("refused by the platform's policy"),
                "{what}: {err}"
            );
        }
        let err = plan_destroy(&*r, &client, &state).await.unwrap_err();
        assert!(
            err.to_string().contains("refused by the platform's policy"),
            "{err}"
        );
        // A DEVELOPMENT environment is not refused.
        let dev = config(json!({"name": "dev"}));
        assert!(plan(&*r, &client, &dev, &Value::Null).await.is_ok());
    }

    async fn stored(runtime: &MemoryRuntime, id: &str) -> Option<Environment> {
        use crate::runtime::Runtime;
        runtime.get_environment(id).await.unwrap()
    }
}
