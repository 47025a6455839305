//! The `slipway_application` data source: an application by environment and name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tfplug::schema::{Attribute, Block, Schema};
use tfplug::{async_trait, validator, AttributePath, Context, DataSource, Diagnostic, Diagnostics};

use super::{provenance_attribute, ProvenanceState};
use crate::client::SlipwayClient;
use crate::resources::runtime_error;
use crate::runtime::Phase;

/// What the data source shows. Variables and secrets are not exposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationInfo {
    pub environment_id: String,
    pub name: String,
    pub id: Option<String>,
    pub image: Option<String>,
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    pub replicas: Option<u32>,
    pub ready_replicas: Option<u32>,
    pub endpoints: Option<BTreeMap<String, String>>,
    pub status: Option<String>,
    pub message: Option<String>,
    pub provenance: Option<ProvenanceState>,
}

/// `data "slipway_application"`.
pub struct ApplicationLookup;

#[async_trait]
impl DataSource for ApplicationLookup {
    type Client = SlipwayClient;
    type State = ApplicationInfo;

    fn type_name(&self) -> &str {
        "slipway_application"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new()
                .description("An application, looked up by name in an environment, with the provenance of what is running now.")
                .attribute(Attribute::string("environment_id").required())
                .attribute(Attribute::string("name").required().validator(validator::dns_label()))
                .attribute(Attribute::string("id").computed())
                .attribute(Attribute::string("image").computed())
                .attribute(Attribute::string("command").computed())
                .attribute(Attribute::string_list("args").computed())
                .attribute(Attribute::number("replicas").computed())
                .attribute(Attribute::number("ready_replicas").computed().description("Replicas running the current version and healthy."))
                .attribute(Attribute::string_map("endpoints").computed())
                .attribute(Attribute::string("status").computed())
                .attribute(Attribute::string("message").computed().description("Why the last rollout failed, if it did."))
                .attribute(provenance_attribute()),
        )
    }

    async fn read(
        &self,
        _ctx: &Context,
        client: &SlipwayClient,
        config: ApplicationInfo,
    ) -> Result<ApplicationInfo, Diagnostics> {
        let environment = client
            .runtime
            .get_environment(&config.environment_id)
            .await
            .map_err(|e| runtime_error("look up the application's environment", e))?
            .ok_or_else(|| {
                Diagnostic::error(
                    "No such environment",
                    format!(
                        "environment_id: no environment has the id {:?} on the {} runtime. Use the id attribute of a slipway_environment resource or data source.",
                        config.environment_id,
                        client.runtime.kind()
                    ),
                )
                .at(AttributePath::root("environment_id"))
            })?;
        let app = client
            .runtime
            .find_application(&config.environment_id, &config.name)
            .await
            .map_err(|e| runtime_error("look up the application", e))?
            .ok_or_else(|| {
                Diagnostic::error(
                    "No such application",
                    format!(
                        "name: environment {:?} has no application named {:?}. Check the name; if this configuration creates the application, add the slipway_application resource to this data source's depends_on so that it is read after the apply.",
                        environment.spec.name, config.name
                    ),
                )
                .at(AttributePath::root("name"))
            })?;
        let status = match app.phase {
            Phase::Running => "running",
            Phase::Progressing => "progressing",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        };
        Ok(ApplicationInfo {
            environment_id: app.spec.environment_id,
            name: app.spec.name,
            id: Some(app.spec.id),
            image: app.spec.image,
            command: app.spec.command,
            args: Some(app.spec.args),
            replicas: Some(app.spec.replicas),
            ready_replicas: Some(app.ready_replicas),
            endpoints: Some(app.endpoints),
            status: Some(status.to_owned()),
            message: app.message,
            provenance: Some(app.change.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tfplug::{Context, Value};

    use super::*;
    use crate::data_sources::environment::EnvironmentLookup;
    use crate::resources::application::ApplicationResource;
    use crate::resources::environment::EnvironmentResource;
    use crate::resources::testing::{apply, value};
    use crate::run_labels::RunLabels;
    use crate::runtime::memory::MemoryRuntime;
    use tfplug::Resource as _;

    #[tokio::test]
    async fn look_up_by_name_with_provenance() {
        let runtime = Arc::new(MemoryRuntime::new());
        let env_lookup = [
            (slipway_provenance::ENV_COMMIT_SHA, "abc123"),
            (slipway_provenance::ENV_REPOSITORY, "acme/infra"),
            (slipway_provenance::ENV_PULL_REQUEST, "5"),
            (slipway_provenance::ENV_ACTOR, "octocat"),
            (slipway_provenance::ENV_TRIGGER, "webhook"),
            (slipway_provenance::ENV_JOB_ID, "77"),
        ];
        let client = SlipwayClient {
            runtime: runtime.clone(),
            labels: RunLabels::from_lookup(|n| {
                env_lookup
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| (*v).to_owned())
            }),
        };
        let envs = tfplug::resource(EnvironmentResource);
        let env_state = apply(
            &*envs,
            &client,
            &value(
                &EnvironmentResource.schema(),
                json!({"name": "dev", "secrets": {"S": "x"}}),
            ),
            &Value::Null,
        )
        .await
        .unwrap();
        let env_id = env_state.get("id").as_str().unwrap().to_owned();
        let apps = tfplug::resource(ApplicationResource);
        apply(
            &*apps,
            &client,
            &value(
                &ApplicationResource.schema(),
                json!({"environment_id": env_id, "name": "web", "image": "nginx", "ports": [{"name": "http", "port": 80, "public": true}]}),
            ),
            &Value::Null,
        )
        .await
        .unwrap();

        let ctx = Context::background();
        let ds = tfplug::data_source(EnvironmentLookup);
        let found = ds
            .read(
                &ctx,
                &client,
                &value(&EnvironmentLookup.schema(), json!({"name": "dev"})),
            )
            .await
            .unwrap();
        assert_eq!(found.get("id"), &Value::from(env_id.as_str()));
        let p = found.get("provenance");
        assert_eq!(p.get("commit_sha"), &Value::from("abc123"));
        assert_eq!(p.get("trigger"), &Value::from("webhook"));
        assert_eq!(p.get("actor"), &Value::from("octocat"));
        assert_eq!(p.get("pull_request"), &Value::from(5));
        assert_eq!(p.get("verified"), &Value::from(false));
        assert!(!p.get("changed_at").as_str().unwrap().is_empty());

        let ds = tfplug::data_source(ApplicationLookup);
        let found = ds
            .read(
                &ctx,
                &client,
                &value(
                    &ApplicationLookup.schema(),
                    json!({"environment_id": env_id, "name": "web"}),
                ),
            )
            .await
            .unwrap();
        assert_eq!(found.get("status"), &Value::from("running"));
        assert_eq!(
            found.get("endpoints").get("http"),
            &Value::from("http://127.0.0.1:80")
        );
        assert_eq!(
            found.get("provenance").get("repository"),
            &Value::from("acme/infra")
        );

        let err = ds
            .read(
                &ctx,
                &client,
                &value(
                    &ApplicationLookup.schema(),
                    json!({"environment_id": env_id, "name": "nope"}),
                ),
            )
            .await
            .unwrap_err();
        assert_eq!(err.0[0].attribute, Some(AttributePath::root("name")));
        assert!(err.to_string().contains("depends_on"), "{err}");

        let err = ds
            .read(
                &ctx,
                &client,
                &value(
                    &ApplicationLookup.schema(),
                    json!({"environment_id": "gone-00000000", "name": "web"}),
                ),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.0[0].attribute,
            Some(AttributePath::root("environment_id"))
        );
        assert!(err.to_string().contains("\"gone-00000000\""), "{err}");

        let ds = tfplug::data_source(EnvironmentLookup);
        let err = ds
            .read(
                &ctx,
                &client,
                &value(&EnvironmentLookup.schema(), json!({"name": "nope"})),
            )
            .await
            .unwrap_err();
        assert_eq!(err.0[0].attribute, Some(AttributePath::root("name")));
        assert!(err.to_string().contains("depends_on"), "{err}");
    }
}
