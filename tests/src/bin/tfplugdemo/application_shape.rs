//! `tfplugdemo_application_shape`: `slipway_application`'s schema, with nothing behind
//! it. Create keeps what was planned (its id is its name), read returns the state as it
//! is, and no plan is modified, so a plan of it costs what Terraform and tfplug spend on
//! a resource of that schema and nothing else: the floor under `slipway_application`'s
//! plan, which the `local_plan` bench prints beside it, separating what the schema costs
//! Terraform from what Slipway's provider and runtime add.

use slipway_provider::resources::application::{ApplicationResource, ApplicationState};
use tfplug::schema::Schema;
use tfplug::{async_trait, Context, Diagnostics, Resource};

use super::Store;

pub struct ApplicationShape;

/// What an apply leaves: the plan, with an id and no write-only value.
fn applied(mut planned: ApplicationState) -> ApplicationState {
    planned.id = Some(planned.name.clone());
    planned.secrets = None;
    planned
}

#[async_trait]
impl Resource for ApplicationShape {
    type Client = Store;
    type State = ApplicationState;

    fn type_name(&self) -> &str {
        "tfplugdemo_application_shape"
    }

    fn schema(&self) -> Schema {
        ApplicationResource.schema()
    }

    async fn create(
        &self,
        _ctx: &Context,
        _store: &Store,
        planned: ApplicationState,
    ) -> Result<ApplicationState, Diagnostics> {
        Ok(applied(planned))
    }

    async fn read(
        &self,
        _ctx: &Context,
        _store: &Store,
        current: ApplicationState,
    ) -> Result<Option<ApplicationState>, Diagnostics> {
        Ok(Some(current))
    }

    async fn update(
        &self,
        _ctx: &Context,
        _store: &Store,
        _prior: ApplicationState,
        planned: ApplicationState,
    ) -> Result<ApplicationState, Diagnostics> {
        Ok(applied(planned))
    }

    async fn delete(
        &self,
        _ctx: &Context,
        _store: &Store,
        _prior: ApplicationState,
    ) -> Result<(), Diagnostics> {
        Ok(())
    }
}
