//! `tfplugdemo_application_shape` and `tfplugdemo_environment_shape`:
//! `slipway_application`'s and `slipway_environment`'s schemas, with nothing behind
//! them. Create keeps what was planned (the id is the name), read returns the state as
//! it is, and no plan is modified, so a plan of them costs what Terraform and tfplug
//! spend on resources of these schemas and nothing else: the floor under Slipway's
//! plan, which the `local_plan` bench prints beside it, separating what the schema (and
//! the configuration's shape: 200 applications referring to one environment) costs
//! Terraform from what Slipway's provider and runtime add.

use serde::de::DeserializeOwned;
use serde::Serialize;
use slipway_provider::resources::application::{ApplicationResource, ApplicationState};
use slipway_provider::resources::environment::{EnvironmentResource, EnvironmentState};
use tfplug::schema::Schema;
use tfplug::{async_trait, Context, Diagnostics, Resource};

use super::Store;

/// A state that an apply of nothing fills in.
pub trait Applied: Serialize + DeserializeOwned + Send + Sync {
    /// What an apply leaves: the plan, with an id and no write-only value.
    fn applied(self) -> Self;
}

impl Applied for ApplicationState {
    fn applied(mut self) -> Self {
        self.id = Some(self.name.clone());
        self.secrets = None;
        self
    }
}

impl Applied for EnvironmentState {
    fn applied(mut self) -> Self {
        self.id = Some(self.name.clone());
        self.secrets = None;
        self
    }
}

/// `resource`'s schema under `type_name`, with nothing behind it.
pub struct Shape<R> {
    resource: R,
    type_name: &'static str,
}

pub fn application() -> Shape<ApplicationResource> {
    Shape {
        resource: ApplicationResource,
        type_name: "tfplugdemo_application_shape",
    }
}

pub fn environment() -> Shape<EnvironmentResource> {
    Shape {
        resource: EnvironmentResource,
        type_name: "tfplugdemo_environment_shape",
    }
}

#[async_trait]
impl<R> Resource for Shape<R>
where
    R: Resource + Send + Sync + 'static,
    R::State: Applied,
{
    type Client = Store;
    type State = R::State;

    fn type_name(&self) -> &str {
        self.type_name
    }

    fn schema(&self) -> Schema {
        self.resource.schema()
    }

    async fn create(
        &self,
        _ctx: &Context,
        _store: &Store,
        planned: R::State,
    ) -> Result<R::State, Diagnostics> {
        Ok(planned.applied())
    }

    async fn read(
        &self,
        _ctx: &Context,
        _store: &Store,
        current: R::State,
    ) -> Result<Option<R::State>, Diagnostics> {
        Ok(Some(current))
    }

    async fn update(
        &self,
        _ctx: &Context,
        _store: &Store,
        _prior: R::State,
        planned: R::State,
    ) -> Result<R::State, Diagnostics> {
        Ok(planned.applied())
    }

    async fn delete(
        &self,
        _ctx: &Context,
        _store: &Store,
        _prior: R::State,
    ) -> Result<(), Diagnostics> {
        Ok(())
    }
}
