//! The typed, async API a provider author implements: [`Provider`], [`Resource`] and
//! [`DataSource`].
//!
//! Resources and data sources work with their own serde structs (`State`); the server
//! converts between those and Terraform's values. Each operation gets a [`Context`]
//! whose cancellation fires when Terraform asks the provider to stop (Ctrl-C).
//!
//! A provider's configured client (an API handle, a runtime connection) is produced by
//! [`Provider::configure`] and handed to every resource operation that needs it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use crate::schema::Schema;
use crate::value::Value;

/// What an operation knows about the call it serves.
#[derive(Clone, Debug)]
pub struct Context {
    cancel: CancellationToken,
    private: Arc<Mutex<Vec<u8>>>,
}

impl Context {
    pub(crate) fn new(cancel: CancellationToken) -> Context {
        Context {
            cancel,
            private: Arc::default(),
        }
    }

    /// This context with the resource's private state as Terraform sent it.
    pub fn with_private(self, private: Vec<u8>) -> Context {
        self.set_private(private);
        self
    }

    /// The resource's private state: bytes Terraform keeps with the object (in the
    /// state file, never in a plan's output) and hands back on every call, for what a
    /// provider must remember but not show. Empty when there is none.
    pub fn private(&self) -> Vec<u8> {
        self.private.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Replaces the private state that goes back to Terraform (plan, apply, read and
    /// import keep what the operation sets).
    pub fn set_private(&self, private: Vec<u8>) {
        if let Ok(mut slot) = self.private.lock() {
            *slot = private;
        }
    }

    /// A context that is never cancelled, for tests and tools.
    pub fn background() -> Context {
        Context::new(CancellationToken::new())
    }

    /// True once Terraform has asked the provider to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when Terraform asks the provider to stop; `select!` on it in long waits.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}

/// A Terraform provider.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The provider's configuration block, as a serde struct.
    type Config: DeserializeOwned + Send;
    /// What `configure` produces and every resource operation receives.
    type Client: Send + Sync + 'static;

    /// The provider's type name: the prefix of its resource type names (`slipway`).
    fn type_name(&self) -> &str;

    /// The schema of the `provider` block.
    fn schema(&self) -> Schema;

    /// Extra checks of the provider configuration, beyond the schema's validators.
    /// Values may still be unknown here.
    async fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    /// Builds the client from the configuration. Called once per Terraform run.
    async fn configure(
        &self,
        ctx: &Context,
        config: Self::Config,
    ) -> Result<Self::Client, Diagnostics>;

    /// Every resource this provider offers.
    fn resources(&self) -> Vec<Arc<dyn AnyResource<Self::Client>>>;

    /// Every data source this provider offers.
    fn data_sources(&self) -> Vec<Arc<dyn AnyDataSource<Self::Client>>>;
}

/// A change being planned, for [`Resource::modify_plan`] to adjust.
#[derive(Debug, Clone)]
pub struct PlannedChange {
    /// The configuration as written (may hold unknowns).
    pub config: Value,
    /// The state before the change; null on create.
    pub prior: Value,
    /// The planned new state after defaults and computed attributes; null on destroy.
    pub planned: Value,
    /// Attributes whose change forces replacement.
    pub requires_replace: Vec<AttributePath>,
}

/// A managed resource with its state as a serde struct.
///
/// Computed attributes that are not known until apply reach `create` and `update` as
/// `None`, so declare them as `Option` fields.
#[async_trait]
pub trait Resource: Send + Sync + 'static {
    type Client: Send + Sync + 'static;
    type State: Serialize + DeserializeOwned + Send + Sync;

    /// The full resource type name, e.g. `slipway_application`.
    fn type_name(&self) -> &str;

    fn schema(&self) -> Schema;

    /// Checks beyond the schema's validators; values may be unknown.
    async fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    /// Adjusts a plan after the schema-driven planning. `client` is `None` when the
    /// provider is not configured yet.
    async fn modify_plan(
        &self,
        _ctx: &Context,
        _client: Option<&Self::Client>,
        _change: &mut PlannedChange,
    ) -> Diagnostics {
        Diagnostics::new()
    }

    async fn create(
        &self,
        ctx: &Context,
        client: &Self::Client,
        planned: Self::State,
    ) -> Result<Self::State, Diagnostics>;

    /// Reads the real object; `None` when it no longer exists (Terraform then plans to
    /// create it again).
    async fn read(
        &self,
        ctx: &Context,
        client: &Self::Client,
        current: Self::State,
    ) -> Result<Option<Self::State>, Diagnostics>;

    async fn update(
        &self,
        ctx: &Context,
        client: &Self::Client,
        prior: Self::State,
        planned: Self::State,
    ) -> Result<Self::State, Diagnostics>;

    async fn delete(
        &self,
        ctx: &Context,
        client: &Self::Client,
        prior: Self::State,
    ) -> Result<(), Diagnostics>;

    /// The state of an existing object for `terraform import`; Terraform reads it right
    /// after, so only what identifies the object must be filled in.
    async fn import(
        &self,
        _ctx: &Context,
        _client: &Self::Client,
        _id: &str,
    ) -> Result<Self::State, Diagnostics> {
        Err(Diagnostic::error(
            "Import not supported",
            format!("{} cannot be imported.", self.type_name()),
        )
        .into())
    }

    /// Moves stored state written under schema version `from_version` (as JSON) to the
    /// current version's shape. Called only for older versions.
    fn upgrade_state(
        &self,
        from_version: i64,
        _state: serde_json::Value,
    ) -> Result<serde_json::Value, Diagnostics> {
        Err(Diagnostic::error(
            "Unsupported state version",
            format!(
                "{} has no upgrade from schema version {from_version}; use a provider version that wrote this state.",
                self.type_name()
            ),
        )
        .into())
    }
}

/// A data source with its state as a serde struct.
#[async_trait]
pub trait DataSource: Send + Sync + 'static {
    type Client: Send + Sync + 'static;
    type State: Serialize + DeserializeOwned + Send + Sync;

    /// The full data source type name, e.g. `slipway_application`.
    fn type_name(&self) -> &str;

    fn schema(&self) -> Schema;

    async fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    /// Reads the data from the configured arguments.
    async fn read(
        &self,
        ctx: &Context,
        client: &Self::Client,
        config: Self::State,
    ) -> Result<Self::State, Diagnostics>;
}

/// A resource of any state type, as the server sees it: values in, values out.
/// Implemented for every [`Resource`]; wrap one with [`resource`].
#[async_trait]
pub trait AnyResource<C>: Send + Sync {
    fn type_name(&self) -> &str;
    fn schema(&self) -> Schema;
    async fn validate(&self, config: &Value) -> Diagnostics;
    async fn modify_plan(
        &self,
        ctx: &Context,
        client: Option<&C>,
        change: &mut PlannedChange,
    ) -> Diagnostics;
    async fn create(
        &self,
        ctx: &Context,
        client: &C,
        planned: &Value,
    ) -> Result<Value, Diagnostics>;
    async fn read(&self, ctx: &Context, client: &C, current: &Value) -> Result<Value, Diagnostics>;
    async fn update(
        &self,
        ctx: &Context,
        client: &C,
        prior: &Value,
        planned: &Value,
    ) -> Result<Value, Diagnostics>;
    async fn delete(&self, ctx: &Context, client: &C, prior: &Value) -> Result<(), Diagnostics>;
    async fn import(&self, ctx: &Context, client: &C, id: &str) -> Result<Value, Diagnostics>;
    fn upgrade_state(
        &self,
        from_version: i64,
        state: serde_json::Value,
    ) -> Result<serde_json::Value, Diagnostics>;
}

/// Wraps a typed resource for [`Provider::resources`].
pub fn resource<R: Resource>(r: R) -> Arc<dyn AnyResource<R::Client>> {
    Arc::new(TypedResource(r))
}

/// Wraps a typed data source for [`Provider::data_sources`].
pub fn data_source<D: DataSource>(d: D) -> Arc<dyn AnyDataSource<D::Client>> {
    Arc::new(TypedDataSource(d))
}

struct TypedResource<R>(R);

fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, Diagnostics> {
    crate::convert::from_value(value).map_err(Diagnostics::from)
}

fn encode<T: Serialize>(data: &T, schema: &Schema) -> Result<Value, Diagnostics> {
    crate::convert::to_value(data, &schema.value_type()).map_err(Diagnostics::from)
}

#[async_trait]
impl<R: Resource> AnyResource<R::Client> for TypedResource<R> {
    fn type_name(&self) -> &str {
        self.0.type_name()
    }
    fn schema(&self) -> Schema {
        self.0.schema()
    }
    async fn validate(&self, config: &Value) -> Diagnostics {
        self.0.validate(config).await
    }
    async fn modify_plan(
        &self,
        ctx: &Context,
        client: Option<&R::Client>,
        change: &mut PlannedChange,
    ) -> Diagnostics {
        self.0.modify_plan(ctx, client, change).await
    }
    async fn create(
        &self,
        ctx: &Context,
        client: &R::Client,
        planned: &Value,
    ) -> Result<Value, Diagnostics> {
        let state = self.0.create(ctx, client, decode(planned)?).await?;
        encode(&state, &self.0.schema())
    }
    async fn read(
        &self,
        ctx: &Context,
        client: &R::Client,
        current: &Value,
    ) -> Result<Value, Diagnostics> {
        match self.0.read(ctx, client, decode(current)?).await? {
            Some(state) => encode(&state, &self.0.schema()),
            None => Ok(Value::Null),
        }
    }
    async fn update(
        &self,
        ctx: &Context,
        client: &R::Client,
        prior: &Value,
        planned: &Value,
    ) -> Result<Value, Diagnostics> {
        let state = self
            .0
            .update(ctx, client, decode(prior)?, decode(planned)?)
            .await?;
        encode(&state, &self.0.schema())
    }
    async fn delete(
        &self,
        ctx: &Context,
        client: &R::Client,
        prior: &Value,
    ) -> Result<(), Diagnostics> {
        self.0.delete(ctx, client, decode(prior)?).await
    }
    async fn import(
        &self,
        ctx: &Context,
        client: &R::Client,
        id: &str,
    ) -> Result<Value, Diagnostics> {
        let state = self.0.import(ctx, client, id).await?;
        encode(&state, &self.0.schema())
    }
    fn upgrade_state(
        &self,
        from_version: i64,
        state: serde_json::Value,
    ) -> Result<serde_json::Value, Diagnostics> {
        self.0.upgrade_state(from_version, state)
    }
}

/// A data source of any state type, as the server sees it.
#[async_trait]
pub trait AnyDataSource<C>: Send + Sync {
    fn type_name(&self) -> &str;
    fn schema(&self) -> Schema;
    async fn validate(&self, config: &Value) -> Diagnostics;
    async fn read(&self, ctx: &Context, client: &C, config: &Value) -> Result<Value, Diagnostics>;
}

struct TypedDataSource<D>(D);

#[async_trait]
impl<D: DataSource> AnyDataSource<D::Client> for TypedDataSource<D> {
    fn type_name(&self) -> &str {
        self.0.type_name()
    }
    fn schema(&self) -> Schema {
        self.0.schema()
    }
    async fn validate(&self, config: &Value) -> Diagnostics {
        self.0.validate(config).await
    }
    async fn read(
        &self,
        ctx: &Context,
        client: &D::Client,
        config: &Value,
    ) -> Result<Value, Diagnostics> {
        let state = self.0.read(ctx, client, decode(config)?).await?;
        encode(&state, &self.0.schema())
    }
}
