//! The `slipway_environment` data source: an environment by name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tfplug::schema::{Attribute, Block, Schema};
use tfplug::{async_trait, validator, AttributePath, Context, DataSource, Diagnostic, Diagnostics};

use super::{provenance_attribute, ProvenanceState};
use crate::client::SlipwayClient;
use crate::resources::runtime_error;

/// What the data source shows. Secrets are not exposed; only the resource holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentInfo {
    pub name: String,
    pub id: Option<String>,
    pub mode: Option<String>,
    pub variables: Option<BTreeMap<String, String>>,
    pub provenance: Option<ProvenanceState>,
}

/// `data "slipway_environment"`.
pub struct EnvironmentLookup;

#[async_trait]
impl DataSource for EnvironmentLookup {
    type Client = SlipwayClient;
    type State = EnvironmentInfo;

    fn type_name(&self) -> &str {
        "slipway_environment"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new()
                .description(
                    "An environment, looked up by name, with the provenance of its last change.",
                )
                .attribute(
                    Attribute::string("name")
                        .required()
                        .validator(validator::dns_label()),
                )
                .attribute(Attribute::string("id").computed())
                .attribute(Attribute::string("mode").computed())
                .attribute(Attribute::string_map("variables").computed())
                .attribute(provenance_attribute()),
        )
    }

    async fn read(
        &self,
        _ctx: &Context,
        client: &SlipwayClient,
        config: EnvironmentInfo,
    ) -> Result<EnvironmentInfo, Diagnostics> {
        let environment = client
            .runtime
            .find_environment(&config.name)
            .await
            .map_err(|e| runtime_error("look up the environment", e))?
            .ok_or_else(|| {
                Diagnostic::error(
                    "No such environment",
                    format!(
                        "name: no environment is named {:?} on the {} runtime. Check the name; if this configuration creates the environment, refer to the slipway_environment resource instead, or add it to this data source's depends_on so that it is read after the apply.",
                        config.name,
                        client.runtime.kind()
                    ),
                )
                .at(AttributePath::root("name"))
            })?;
        Ok(EnvironmentInfo {
            name: environment.spec.name,
            id: Some(environment.spec.id),
            mode: Some(environment.spec.mode.as_str().to_owned()),
            variables: Some(environment.spec.variables),
            provenance: Some(environment.change.into()),
        })
    }
}
