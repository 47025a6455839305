//! The `tfplugin6.Provider` gRPC service: every RPC Terraform calls, answered from a
//! [`Provider`] implementation.
//!
//! Each RPC decodes its values with the schema's type, runs the provider's code in its
//! own task (so a panic becomes a diagnostic instead of a crashed plugin, and
//! `StopProvider` can abort it), and encodes the result. Failures are diagnostics in the
//! response, never gRPC errors, because only diagnostics reach the user intact.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::plan;
use crate::proto::tfplugin6 as pb;
use crate::provider::{AnyDataSource, AnyResource, Context, PlannedChange, Provider};
use crate::schema::Schema;
use crate::value::{Type, Value};
use crate::wire;
use crate::write_only;

/// The gRPC service for one provider. Cheap to clone.
pub struct ProviderService<P: Provider> {
    inner: Arc<Inner<P>>,
}

impl<P: Provider> Clone for ProviderService<P> {
    fn clone(&self) -> Self {
        ProviderService {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<P: Provider> {
    provider: P,
    provider_schema: Arc<TypedSchema>,
    resources: HashMap<String, ResourceEntry<P::Client>>,
    data_sources: HashMap<String, DataSourceEntry<P::Client>>,
    client: RwLock<Option<Arc<P::Client>>>,
    /// Cancelled by `StopProvider`; replaced afterwards so later calls run normally.
    stop: Mutex<CancellationToken>,
}

type Outcome<T> = Result<T, Diagnostics>;

/// A schema and the value type it implies, both built once at start. Every call decodes
/// and encodes its values with that type; building it (and cloning the schema, with
/// its validators) on each call was most of tfplug's own work per call.
struct TypedSchema {
    schema: Schema,
    ty: Type,
}

impl TypedSchema {
    fn new(schema: Schema) -> Arc<TypedSchema> {
        Arc::new(TypedSchema {
            ty: schema.value_type(),
            schema,
        })
    }
}

impl std::ops::Deref for TypedSchema {
    type Target = Schema;
    fn deref(&self) -> &Schema {
        &self.schema
    }
}

/// A resource with its schema, read once at start.
type ResourceEntry<C> = (Arc<dyn AnyResource<C>>, Arc<TypedSchema>);
/// A data source with its schema, read once at start.
type DataSourceEntry<C> = (Arc<dyn AnyDataSource<C>>, Arc<TypedSchema>);

impl<P: Provider> ProviderService<P> {
    /// Builds the service, reading every schema once: Terraform asks for them often.
    pub fn new(provider: P) -> ProviderService<P> {
        let resources = provider
            .resources()
            .into_iter()
            .map(|r| {
                (
                    r.type_name().to_owned(),
                    (r.clone(), TypedSchema::new(r.schema())),
                )
            })
            .collect();
        let data_sources = provider
            .data_sources()
            .into_iter()
            .map(|d| {
                (
                    d.type_name().to_owned(),
                    (d.clone(), TypedSchema::new(d.schema())),
                )
            })
            .collect();
        ProviderService {
            inner: Arc::new(Inner {
                provider_schema: TypedSchema::new(provider.schema()),
                provider,
                resources,
                data_sources,
                client: RwLock::new(None),
                stop: Mutex::new(CancellationToken::new()),
            }),
        }
    }

    /// Runs `work` in its own task: a panic becomes an error diagnostic, and a
    /// `StopProvider` aborts it.
    async fn run<T, F, Fut>(&self, work: F) -> Outcome<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner<P>>, Context) -> Fut,
        Fut: Future<Output = Outcome<T>> + Send + 'static,
    {
        self.run_with_private(Vec::new(), work).await.0
    }

    /// Like [`Self::run`], for an operation on a resource's private state: starts with
    /// `private` and returns what the operation left there.
    async fn run_with_private<T, F, Fut>(&self, private: Vec<u8>, work: F) -> (Outcome<T>, Vec<u8>)
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner<P>>, Context) -> Fut,
        Fut: Future<Output = Outcome<T>> + Send + 'static,
    {
        let token = self.inner.stop_token();
        let ctx = Context::new(token.clone()).with_private(private);
        let kept = ctx.clone();
        let outcome = self.supervise(token, work(self.inner.clone(), ctx)).await;
        (outcome, kept.private())
    }

    /// Runs `work` on a task of its own: a panic becomes a diagnostic, and a stop
    /// request aborts it.
    async fn supervise<T, Fut>(&self, token: CancellationToken, work: Fut) -> Outcome<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Outcome<T>> + Send + 'static,
    {
        let mut task = tokio::spawn(work);
        tokio::select! {
            joined = &mut task => match joined {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => Err(Diagnostic::error(
                    "Provider internal error",
                    "The provider hit an internal error and could not finish this operation. \
                     Its log (TF_LOG=DEBUG) has the details; please report it.",
                ).into()),
                Err(_) => Err(stopped()),
            },
            _ = token.cancelled() => {
                task.abort();
                Err(stopped())
            }
        }
    }
}

fn stopped() -> Diagnostics {
    Diagnostic::error(
        "Operation stopped",
        "Terraform asked the provider to stop, so this operation was interrupted.",
    )
    .into()
}

impl<P: Provider> Inner<P> {
    fn stop_token(&self) -> CancellationToken {
        lock(&self.stop).clone()
    }

    fn client(&self) -> Option<Arc<P::Client>> {
        self.client.read().ok().and_then(|c| c.clone())
    }

    fn configured_client(&self) -> Outcome<Arc<P::Client>> {
        self.client().ok_or_else(|| {
            Diagnostic::error(
                "Provider not configured",
                "Terraform called the provider before configuring it. This is a bug in Terraform or the provider.",
            )
            .into()
        })
    }

    fn resource(&self, type_name: &str) -> Outcome<ResourceEntry<P::Client>> {
        self.resources.get(type_name).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = self.resources.keys().map(String::as_str).collect();
            known.sort();
            Diagnostic::error(
                "Unknown resource type",
                format!(
                    "This provider has no resource type {type_name:?}. It has: {}.",
                    known.join(", ")
                ),
            )
            .into()
        })
    }

    fn data_source(&self, type_name: &str) -> Outcome<DataSourceEntry<P::Client>> {
        self.data_sources.get(type_name).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = self.data_sources.keys().map(String::as_str).collect();
            known.sort();
            Diagnostic::error(
                "Unknown data source",
                format!(
                    "This provider has no data source {type_name:?}. It has: {}.",
                    known.join(", ")
                ),
            )
            .into()
        })
    }
}

/// Locks a mutex even if a panicking task poisoned it: the data (a token) stays valid.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn decode(schema: &TypedSchema, value: Option<&pb::DynamicValue>, what: &str) -> Outcome<Value> {
    wire::decode_dynamic(&schema.ty, value, what).map_err(Diagnostics::from)
}

fn encode(schema: &TypedSchema, value: &Value) -> Outcome<pb::DynamicValue> {
    wire::encode_dynamic(&schema.ty, value).map_err(Diagnostics::from)
}

/// Whether Terraform keeps write-only attributes out of plans and state (1.11+).
fn write_only_allowed(capabilities: Option<&pb::ClientCapabilities>) -> bool {
    capabilities.is_some_and(|c| c.write_only_attributes_allowed)
}

/// Splits an outcome into its value and the diagnostics to send.
fn split<T>(outcome: Outcome<(T, Diagnostics)>) -> (Option<T>, Vec<pb::Diagnostic>) {
    match outcome {
        Ok((value, diags)) => (Some(value), wire::diagnostics(&diags)),
        Err(diags) => (None, wire::diagnostics(&diags)),
    }
}

fn capabilities() -> pb::ServerCapabilities {
    pb::ServerCapabilities {
        // Terraform 1.3 and later then plan a destroy through the provider too (a null
        // proposed state), so `modify_plan` can refuse one at `terraform plan`; 1.0
        // ignores the flag. The schema must still be fetched: Terraform then behaves
        // the same in 1.0 and 1.11.
        plan_destroy: true,
        get_provider_schema_optional: false,
        move_resource_state: false,
    }
}

#[tonic::async_trait]
impl<P: Provider> pb::provider_server::Provider for ProviderService<P> {
    async fn get_metadata(
        &self,
        _request: Request<pb::get_metadata::Request>,
    ) -> Result<Response<pb::get_metadata::Response>, Status> {
        let inner = &self.inner;
        Ok(Response::new(pb::get_metadata::Response {
            server_capabilities: Some(capabilities()),
            resources: inner
                .resources
                .keys()
                .map(|name| pb::get_metadata::ResourceMetadata {
                    type_name: name.clone(),
                })
                .collect(),
            data_sources: inner
                .data_sources
                .keys()
                .map(|name| pb::get_metadata::DataSourceMetadata {
                    type_name: name.clone(),
                })
                .collect(),
            ..Default::default()
        }))
    }

    async fn get_provider_schema(
        &self,
        _request: Request<pb::get_provider_schema::Request>,
    ) -> Result<Response<pb::get_provider_schema::Response>, Status> {
        let inner = &self.inner;
        Ok(Response::new(pb::get_provider_schema::Response {
            provider: Some(wire::schema(&inner.provider_schema)),
            resource_schemas: inner
                .resources
                .iter()
                .map(|(name, (_, schema))| (name.clone(), wire::schema(schema)))
                .collect(),
            data_source_schemas: inner
                .data_sources
                .iter()
                .map(|(name, (_, schema))| (name.clone(), wire::schema(schema)))
                .collect(),
            server_capabilities: Some(capabilities()),
            ..Default::default()
        }))
    }

    async fn validate_provider_config(
        &self,
        request: Request<pb::validate_provider_config::Request>,
    ) -> Result<Response<pb::validate_provider_config::Response>, Status> {
        let request = request.into_inner();
        let outcome = self
            .run(move |inner, _ctx| async move {
                let schema = &inner.provider_schema;
                let config = decode(schema, request.config.as_ref(), "provider configuration")?;
                let mut diags = Diagnostics::new();
                plan::validate(&schema.block, &config, &Default::default(), &mut diags);
                diags.extend(inner.provider.validate(&config).await);
                Ok(((), diags))
            })
            .await;
        let (_, diagnostics) = split(outcome);
        Ok(Response::new(pb::validate_provider_config::Response {
            diagnostics,
        }))
    }

    async fn validate_resource_config(
        &self,
        request: Request<pb::validate_resource_config::Request>,
    ) -> Result<Response<pb::validate_resource_config::Response>, Status> {
        let request = request.into_inner();
        let outcome = self
            .run(move |inner, _ctx| async move {
                let (resource, schema) = inner.resource(&request.type_name)?;
                let config = decode(&schema, request.config.as_ref(), "configuration")?;
                let mut diags = Diagnostics::new();
                plan::validate(&schema.block, &config, &Default::default(), &mut diags);
                diags.extend(resource.validate(&config).await);
                Ok(((), diags))
            })
            .await;
        let (_, diagnostics) = split(outcome);
        Ok(Response::new(pb::validate_resource_config::Response {
            diagnostics,
        }))
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<pb::validate_data_resource_config::Request>,
    ) -> Result<Response<pb::validate_data_resource_config::Response>, Status> {
        let request = request.into_inner();
        let outcome = self
            .run(move |inner, _ctx| async move {
                let (data_source, schema) = inner.data_source(&request.type_name)?;
                let config = decode(&schema, request.config.as_ref(), "configuration")?;
                let mut diags = Diagnostics::new();
                plan::validate(&schema.block, &config, &Default::default(), &mut diags);
                diags.extend(data_source.validate(&config).await);
                Ok(((), diags))
            })
            .await;
        let (_, diagnostics) = split(outcome);
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics,
        }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<pb::upgrade_resource_state::Request>,
    ) -> Result<Response<pb::upgrade_resource_state::Response>, Status> {
        let request = request.into_inner();
        let outcome = self
            .run(move |inner, _ctx| async move {
                let (resource, schema) = inner.resource(&request.type_name)?;
                let raw = request.raw_state.unwrap_or_default();
                if raw.json.is_empty() {
                    if raw.flatmap.is_empty() {
                        return Ok((encode(&schema, &Value::Null)?, Diagnostics::new()));
                    }
                    return Err(Diagnostic::error(
                        "Unsupported state format",
                        "The stored state is in the legacy flatmap format, which this provider never wrote. Remove the resource from the state (terraform state rm) and import it again.",
                    )
                    .into());
                }
                let mut json: serde_json::Value = serde_json::from_slice(&raw.json).map_err(|e| {
                    Diagnostic::error("Stored state is not valid JSON", e.to_string())
                })?;
                if request.version > schema.version {
                    return Err(Diagnostic::error(
                        "State written by a newer provider",
                        format!(
                            "The state of this {} was written with schema version {}, but this provider knows only up to version {}. Upgrade the provider.",
                            request.type_name, request.version, schema.version
                        ),
                    )
                    .into());
                }
                if request.version < schema.version {
                    json = resource.upgrade_state(request.version, json)?;
                }
                let value = crate::codec::value_from_json(&schema.ty, &json).map_err(|e| {
                    Diagnostic::error(
                        "Stored state does not match the schema",
                        format!("The state of this {} cannot be read: {e}.", request.type_name),
                    )
                })?;
                Ok((encode(&schema, &value)?, Diagnostics::new()))
            })
            .await;
        let (upgraded_state, diagnostics) = split(outcome);
        Ok(Response::new(pb::upgrade_resource_state::Response {
            upgraded_state,
            diagnostics,
        }))
    }

    async fn configure_provider(
        &self,
        request: Request<pb::configure_provider::Request>,
    ) -> Result<Response<pb::configure_provider::Response>, Status> {
        let request = request.into_inner();
        let outcome = self
            .run(move |inner, ctx| async move {
                let config = decode(
                    &inner.provider_schema,
                    request.config.as_ref(),
                    "provider configuration",
                )?;
                let config: P::Config = convert::from_value(&config)?;
                let client = inner.provider.configure(&ctx, config).await?;
                if let Ok(mut slot) = inner.client.write() {
                    *slot = Some(Arc::new(client));
                }
                Ok(((), Diagnostics::new()))
            })
            .await;
        let (_, diagnostics) = split(outcome);
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics,
        }))
    }

    async fn read_resource(
        &self,
        request: Request<pb::read_resource::Request>,
    ) -> Result<Response<pb::read_resource::Response>, Status> {
        let request = request.into_inner();
        let private = request.private.clone();
        let (outcome, private) = self
            .run_with_private(private, move |inner, ctx| async move {
                let (resource, schema) = inner.resource(&request.type_name)?;
                let current = decode(&schema, request.current_state.as_ref(), "current state")?;
                if current.is_null() {
                    return Ok((encode(&schema, &Value::Null)?, Diagnostics::new()));
                }
                let client = inner.configured_client()?;
                let mut new_state = resource.read(&ctx, &client, &current).await?;
                if write_only_allowed(request.client_capabilities.as_ref()) {
                    write_only::hide(&schema.block, &mut new_state);
                }
                Ok((encode(&schema, &new_state)?, Diagnostics::new()))
            })
            .await;
        let (new_state, diagnostics) = split(outcome);
        Ok(Response::new(pb::read_resource::Response {
            new_state,
            diagnostics,
            private,
            ..Default::default()
        }))
    }

    async fn plan_resource_change(
        &self,
        request: Request<pb::plan_resource_change::Request>,
    ) -> Result<Response<pb::plan_resource_change::Response>, Status> {
        let request = request.into_inner();
        let prior_private = request.prior_private.clone();
        let (outcome, planned_private) = self
            .run_with_private(prior_private, move |inner, ctx| async move {
                let (resource, schema) = inner.resource(&request.type_name)?;
                let prior = decode(&schema, request.prior_state.as_ref(), "prior state")?;
                let proposed = decode(
                    &schema,
                    request.proposed_new_state.as_ref(),
                    "proposed state",
                )?;
                let config = decode(&schema, request.config.as_ref(), "configuration")?;
                let planned = plan::plan(&schema.block, &config, &prior, &proposed);
                let requires_replace = plan::requires_replace(&schema.block, &prior, &planned);
                let mut change = PlannedChange {
                    config,
                    prior,
                    planned,
                    requires_replace,
                };
                let client = inner.client();
                let diags = resource
                    .modify_plan(&ctx, client.as_deref(), &mut change)
                    .await;
                if diags.has_errors() {
                    return Err(diags);
                }
                if write_only_allowed(request.client_capabilities.as_ref()) {
                    write_only::hide(&schema.block, &mut change.planned);
                }
                let planned = encode(&schema, &change.planned)?;
                Ok(((planned, change.requires_replace), diags))
            })
            .await;
        let (planned, diagnostics) = split(outcome);
        let (planned_state, requires_replace) = match planned {
            Some((state, paths)) => (
                Some(state),
                paths.iter().map(wire::attribute_path).collect(),
            ),
            None => (None, Vec::new()),
        };
        Ok(Response::new(pb::plan_resource_change::Response {
            planned_state,
            requires_replace,
            planned_private,
            diagnostics,
            ..Default::default()
        }))
    }

    async fn apply_resource_change(
        &self,
        request: Request<pb::apply_resource_change::Request>,
    ) -> Result<Response<pb::apply_resource_change::Response>, Status> {
        let request = request.into_inner();
        let planned_private = request.planned_private.clone();
        let type_name = request.type_name.clone();
        let prior_raw = request.prior_state.clone();
        let (outcome, private) = self
            .run_with_private(planned_private, move |inner, ctx| async move {
                let (resource, schema) = inner.resource(&request.type_name)?;
                let prior = decode(&schema, request.prior_state.as_ref(), "prior state")?;
                let mut planned = decode(&schema, request.planned_state.as_ref(), "planned state")?;
                let config = decode(&schema, request.config.as_ref(), "configuration")?;
                let unplanned = write_only::reveal(&schema.block, &config, &mut planned);
                let client = inner.configured_client()?;
                let mut new_state = if planned.is_null() {
                    resource.delete(&ctx, &client, &prior).await?;
                    Value::Null
                } else if prior.is_null() {
                    resource.create(&ctx, &client, &planned).await?
                } else {
                    resource.update(&ctx, &client, &prior, &planned).await?
                };
                unplanned.hide(&mut new_state);
                Ok((encode(&schema, &new_state)?, Diagnostics::new()))
            })
            .await;
        let (new_state, diagnostics) = split(outcome);
        // A failed update or delete leaves the object as it was: keep the prior state
        // so Terraform does not forget an object that still exists.
        let new_state = match new_state {
            Some(state) => Some(state),
            None => match self.inner.resource(&type_name) {
                Ok(_) => prior_raw,
                Err(_) => None,
            },
        };
        Ok(Response::new(pb::apply_resource_change::Response {
            new_state,
            private,
            diagnostics,
            ..Default::default()
        }))
    }

    async fn import_resource_state(
        &self,
        request: Request<pb::import_resource_state::Request>,
    ) -> Result<Response<pb::import_resource_state::Response>, Status> {
        let request = request.into_inner();
        let outcome = self
            .run(move |inner, ctx| async move {
                let (resource, schema) = inner.resource(&request.type_name)?;
                let client = inner.configured_client()?;
                let mut state = resource.import(&ctx, &client, &request.id).await?;
                if write_only_allowed(request.client_capabilities.as_ref()) {
                    write_only::hide(&schema.block, &mut state);
                }
                let imported = pb::import_resource_state::ImportedResource {
                    type_name: request.type_name.clone(),
                    state: Some(encode(&schema, &state)?),
                    private: ctx.private(),
                };
                Ok((imported, Diagnostics::new()))
            })
            .await;
        let (imported, diagnostics) = split(outcome);
        Ok(Response::new(pb::import_resource_state::Response {
            imported_resources: imported.into_iter().collect(),
            diagnostics,
            ..Default::default()
        }))
    }

    async fn move_resource_state(
        &self,
        _request: Request<pb::move_resource_state::Request>,
    ) -> Result<Response<pb::move_resource_state::Response>, Status> {
        Ok(Response::new(pb::move_resource_state::Response {
            diagnostics: wire::diagnostics(
                &Diagnostic::error(
                    "Moving resource state is not supported",
                    "This provider cannot take over state from another resource type. Remove the old resource from the state and import the object instead.",
                )
                .into(),
            ),
            ..Default::default()
        }))
    }

    async fn read_data_source(
        &self,
        request: Request<pb::read_data_source::Request>,
    ) -> Result<Response<pb::read_data_source::Response>, Status> {
        let request = request.into_inner();
        let outcome = self
            .run(move |inner, ctx| async move {
                let (data_source, schema) = inner.data_source(&request.type_name)?;
                let config = decode(&schema, request.config.as_ref(), "configuration")?;
                let client = inner.configured_client()?;
                let state = data_source.read(&ctx, &client, &config).await?;
                Ok((encode(&schema, &state)?, Diagnostics::new()))
            })
            .await;
        let (state, diagnostics) = split(outcome);
        Ok(Response::new(pb::read_data_source::Response {
            state,
            diagnostics,
            ..Default::default()
        }))
    }

    async fn validate_ephemeral_resource_config(
        &self,
        request: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> Result<Response<pb::validate_ephemeral_resource_config::Response>, Status> {
        Ok(Response::new(
            pb::validate_ephemeral_resource_config::Response {
                diagnostics: no_ephemeral(&request.into_inner().type_name),
            },
        ))
    }

    async fn open_ephemeral_resource(
        &self,
        request: Request<pb::open_ephemeral_resource::Request>,
    ) -> Result<Response<pb::open_ephemeral_resource::Response>, Status> {
        Ok(Response::new(pb::open_ephemeral_resource::Response {
            diagnostics: no_ephemeral(&request.into_inner().type_name),
            ..Default::default()
        }))
    }

    async fn renew_ephemeral_resource(
        &self,
        request: Request<pb::renew_ephemeral_resource::Request>,
    ) -> Result<Response<pb::renew_ephemeral_resource::Response>, Status> {
        Ok(Response::new(pb::renew_ephemeral_resource::Response {
            diagnostics: no_ephemeral(&request.into_inner().type_name),
            ..Default::default()
        }))
    }

    async fn close_ephemeral_resource(
        &self,
        request: Request<pb::close_ephemeral_resource::Request>,
    ) -> Result<Response<pb::close_ephemeral_resource::Response>, Status> {
        Ok(Response::new(pb::close_ephemeral_resource::Response {
            diagnostics: no_ephemeral(&request.into_inner().type_name),
        }))
    }

    async fn get_functions(
        &self,
        _request: Request<pb::get_functions::Request>,
    ) -> Result<Response<pb::get_functions::Response>, Status> {
        Ok(Response::new(pb::get_functions::Response::default()))
    }

    async fn call_function(
        &self,
        request: Request<pb::call_function::Request>,
    ) -> Result<Response<pb::call_function::Response>, Status> {
        Ok(Response::new(pb::call_function::Response {
            error: Some(pb::FunctionError {
                text: format!(
                    "This provider has no function {:?}.",
                    request.into_inner().name
                ),
                function_argument: None,
            }),
            ..Default::default()
        }))
    }

    async fn stop_provider(
        &self,
        _request: Request<pb::stop_provider::Request>,
    ) -> Result<Response<pb::stop_provider::Response>, Status> {
        let mut token = lock(&self.inner.stop);
        token.cancel();
        *token = CancellationToken::new();
        tracing::info!("Terraform asked the provider to stop; operations in flight were cancelled");
        Ok(Response::new(pb::stop_provider::Response::default()))
    }
}

fn no_ephemeral(type_name: &str) -> Vec<pb::Diagnostic> {
    wire::diagnostics(
        &Diagnostic::error(
            "Unknown ephemeral resource type",
            format!("This provider has no ephemeral resource type {type_name:?}."),
        )
        .into(),
    )
}
