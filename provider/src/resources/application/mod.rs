//! `slipway_application`: a program (local runtime) or container image (Kubernetes)
//! run as replicas in an environment, with ports, variables, secrets, a health check
//! and resource limits.
//!
//! - [`state`]: the resource's state, and how it becomes a runtime spec and back;
//! - [`validation`]: what the configuration alone shows is wrong;
//! - [`plan`]: what a plan promises, and the checks that refuse at plan;
//! - [`crud`]: the runtime calls, and what a failed rollout leaves behind.
//!
//! Reads report what really runs, so replicas scaled or applications deleted outside
//! Terraform show up in the next plan.

mod crud;
mod plan;
mod state;
mod validation;

use tfplug::schema::{Attribute, Block, Nesting, Schema};
use tfplug::{
    async_trait, validator, AttributePath, Context, Diagnostics, PlannedChange, Resource, Value,
};

pub use state::{ApplicationState, HealthcheckState, PortState, ResourcesState, TimeoutsState};
use validation::{cpu_validator, memory_validator, port_attribute};

use super::duration_validator;
use crate::client::SlipwayClient;
use crate::resources::variable_names::names_validator;

fn root(name: &str) -> AttributePath {
    AttributePath::root(name)
}

/// `slipway_application`.
pub struct ApplicationResource;

#[async_trait]
impl Resource for ApplicationResource {
    type Client = SlipwayClient;
    type State = ApplicationState;

    fn type_name(&self) -> &str {
        "slipway_application"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new()
                .description("An application: replicas of a program (local runtime) or container image (Kubernetes) in an environment.")
                .attribute(Attribute::string("id").computed().use_state_for_unknown().description("The application's id; import with it."))
                .attribute(Attribute::string("environment_id").required().requires_replace().description("The id of the slipway_environment it runs in. Changing it replaces the application."))
                .attribute(Attribute::string("name").required().validator(validator::dns_label()).description("A DNS label, unique within the environment."))
                .attribute(Attribute::string("image").optional().description("The container image, for the kubernetes runtime."))
                .attribute(Attribute::string("command").optional().description("The program to run, for the local runtime: an absolute path, a path relative to working_dir, or a name on PATH."))
                .attribute(Attribute::string_list("args").optional().computed().description("The command's arguments."))
                .attribute(Attribute::string("working_dir").optional().description("The directory the command runs in."))
                .attribute(
                    Attribute::number("replicas")
                        .default(1)
                        .validator(validator::int_between(0, i64::from(i32::MAX)))
                        .description("How many copies run; 0 means stopped. Defaults to 1."),
                )
                .attribute(
                    Attribute::nested(
                        "ports",
                        Nesting::List,
                        vec![
                            Attribute::string("name").required().validator(validator::dns_label()),
                            port_attribute("port").description("The port the application listens on. The local runtime gives each replica a free port in PORT and PORT_<NAME> instead, and sends health checks naming this number there."),
                            Attribute::string("protocol").default("tcp").validator(validator::one_of(&["tcp", "udp"])),
                            Attribute::bool("public").default(false).description("Public ports get an endpoint, balanced over healthy replicas."),
                        ],
                    )
                    .optional()
                    .computed()
                    .description("The ports the application listens on."),
                )
                .attribute(Attribute::string_map("variables").optional().computed().validator(names_validator()).description("Environment variables, on top of the environment's."))
                .attribute(super::secrets::attribute("Secret environment variables, on top of the environment's."))
                .attribute(super::secrets::version_attribute())
                .attribute(
                    Attribute::nested(
                        "healthcheck",
                        Nesting::Single,
                        vec![
                            Attribute::string("type")
                                .required()
                                .validator(validator::one_of(&["http", "tcp", "exec"]))
                                .description("http: GET path on port answers 2xx or 3xx; tcp: port accepts a connection; exec: command exits 0."),
                            Attribute::string("path").optional().computed().description("http: the path to GET; defaults to /."),
                            Attribute::number("port")
                                .optional()
                                .validator(validator::int_between(1, 65535))
                                .description("http and tcp: the port to check."),
                            Attribute::string_list("command").optional().description("exec: the command to run."),
                            Attribute::string("interval").default("10s").validator(duration_validator()),
                            Attribute::string("timeout").default("5s").validator(duration_validator()),
                            Attribute::number("healthy_threshold").default(1).validator(validator::int_between(1, 100)),
                            Attribute::number("unhealthy_threshold").default(3).validator(validator::int_between(1, 100)),
                        ],
                    )
                    .optional()
                    .computed()
                    .description("How to tell that a replica is healthy: an http, tcp or exec check."),
                )
                .attribute(
                    Attribute::nested(
                        "resources",
                        Nesting::Single,
                        vec![
                            Attribute::string("cpu").optional().validator(cpu_validator()),
                            Attribute::string("memory").optional().validator(memory_validator()),
                        ],
                    )
                    .optional()
                    .computed()
                    .description("Resource limits per replica."),
                )
                .attribute(
                    Attribute::nested(
                        "timeouts",
                        Nesting::Single,
                        vec![
                            Attribute::string("create").optional().validator(duration_validator()),
                            Attribute::string("update").optional().validator(duration_validator()),
                            Attribute::string("delete").optional().validator(duration_validator()),
                        ],
                    )
                    .optional()
                    .computed()
                    .description("How long a rollout may take: create and update default to 10m, delete to 5m."),
                )
                .attribute(Attribute::string_map("endpoints").computed().description("The URL of each public port, by port name."))
                .attribute(Attribute::string("status").computed().description("running, stopped (0 replicas), progressing or failed.")),
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        validation::validate(config)
    }

    async fn modify_plan(
        &self,
        ctx: &Context,
        client: Option<&SlipwayClient>,
        change: &mut PlannedChange,
    ) -> Diagnostics {
        plan::modify_plan(ctx, client, change).await
    }

    async fn create(
        &self,
        ctx: &Context,
        client: &SlipwayClient,
        planned: ApplicationState,
    ) -> Result<ApplicationState, Diagnostics> {
        crud::create(ctx, client, planned).await
    }

    async fn read(
        &self,
        ctx: &Context,
        client: &SlipwayClient,
        current: ApplicationState,
    ) -> Result<Option<ApplicationState>, Diagnostics> {
        crud::read(ctx, client, current).await
    }

    async fn update(
        &self,
        ctx: &Context,
        client: &SlipwayClient,
        prior: ApplicationState,
        planned: ApplicationState,
    ) -> Result<ApplicationState, Diagnostics> {
        crud::update(ctx, client, prior, planned).await
    }

    async fn delete(
        &self,
        ctx: &Context,
        client: &SlipwayClient,
        prior: ApplicationState,
    ) -> Result<(), Diagnostics> {
        crud::delete(ctx, client, prior).await
    }

    async fn import(
        &self,
        ctx: &Context,
        client: &SlipwayClient,
        id: &str,
    ) -> Result<ApplicationState, Diagnostics> {
        crud::import(ctx, client, id).await
    }
}

#[cfg(test)]
mod tests;
