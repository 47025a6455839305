//! A small provider built on tfplug, used by the end-to-end tests to prove the
//! protocol library against the real `terraform` binary.
//!
//! `tfplugdemo_server` stores each "server" as a JSON file in a directory; it uses
//! nested attributes, a sensitive value, a default, `RequiresReplace`, computed
//! attributes and import. The `tfplugdemo_server` data source finds one by name.
//! `tfplugdemo_application_shape` and `tfplugdemo_environment_shape` are Slipway's
//! schemas with nothing behind them, for the benchmarks ([`shapes`]).

#[path = "tfplugdemo/shapes.rs"]
mod shapes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use tfplug::schema::{Attribute, Block, NestedBlock, Nesting, Schema};
use tfplug::{
    async_trait, validator, AnyDataSource, AnyResource, Context, DataSource, Diagnostic,
    Diagnostics, Provider, Resource, Type,
};

fn main() -> ExitCode {
    tfplug::serve(
        DemoProvider,
        tfplug::ServeOptions::new("registry.terraform.io/slipway/tfplugdemo"),
    )
}

struct DemoProvider;

#[derive(Deserialize)]
struct DemoConfig {
    directory: Option<String>,
}

/// Where the objects live.
pub struct Store {
    directory: PathBuf,
}

#[async_trait]
impl Provider for DemoProvider {
    type Config = DemoConfig;
    type Client = Store;

    fn type_name(&self) -> &str {
        "tfplugdemo"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new().attribute(
                Attribute::string("directory")
                    .optional()
                    .description("Where objects are stored. Defaults to $TFPLUGDEMO_DIR."),
            ),
        )
    }

    async fn configure(&self, _ctx: &Context, config: DemoConfig) -> Result<Store, Diagnostics> {
        let directory = config
            .directory
            .or_else(|| std::env::var("TFPLUGDEMO_DIR").ok())
            .ok_or_else(|| {
                Diagnostic::error(
                    "Missing directory",
                    "Set `directory` in the provider block or TFPLUGDEMO_DIR in the environment.",
                )
                .at(tfplug::AttributePath::root("directory"))
            })?;
        std::fs::create_dir_all(&directory).map_err(|e| {
            Diagnostic::error("Cannot create directory", format!("{directory}: {e}"))
        })?;
        Ok(Store {
            directory: PathBuf::from(directory),
        })
    }

    fn resources(&self) -> Vec<std::sync::Arc<dyn AnyResource<Store>>> {
        vec![
            tfplug::resource(ServerResource),
            tfplug::resource(shapes::application()),
            tfplug::resource(shapes::environment()),
        ]
    }

    fn data_sources(&self) -> Vec<std::sync::Arc<dyn AnyDataSource<Store>>> {
        vec![tfplug::data_source(ServerLookup)]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Port {
    port: i64,
    protocol: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Settings {
    region: Option<String>,
    debug: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Alias {
    target: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Label {
    key: String,
    value: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Server {
    id: Option<String>,
    name: String,
    size: Option<i64>,
    password: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    ports: Option<Vec<Port>>,
    /// A single nested attribute with a default inside.
    settings: Option<Settings>,
    /// A map of nested objects (resource only; see the data source's schema).
    #[serde(skip_serializing_if = "Option::is_none")]
    aliases: Option<BTreeMap<String, Alias>>,
    /// A nested block, as a set: Terraform sends an absent block as an empty set.
    label: Option<Vec<Label>>,
    /// Changes with every write: a computed attribute that is unknown in plans.
    revision: Option<i64>,
}

impl Store {
    fn path(&self, id: &str) -> PathBuf {
        self.directory.join(format!("{id}.json"))
    }

    fn load(&self, id: &str) -> Result<Option<Server>, Diagnostics> {
        load_file(&self.path(id))
    }

    fn save(&self, server: &Server) -> Result<(), Diagnostics> {
        let id = server.id.as_deref().unwrap_or_default();
        let json = serde_json::to_vec_pretty(server)
            .map_err(|e| Diagnostic::error("Cannot encode", e.to_string()))?;
        std::fs::write(self.path(id), json)
            .map_err(|e| Diagnostic::error("Cannot write object", e.to_string()).into())
    }

    fn all(&self) -> Result<Vec<Server>, Diagnostics> {
        let entries = std::fs::read_dir(&self.directory)
            .map_err(|e| Diagnostic::error("Cannot list objects", e.to_string()))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if let Some(server) = load_file(&entry.path())? {
                out.push(server);
            }
        }
        Ok(out)
    }
}

fn load_file(path: &Path) -> Result<Option<Server>, Diagnostics> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Diagnostic::error("Corrupt object", e.to_string()).into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Diagnostic::error("Cannot read object", e.to_string()).into()),
    }
}

struct ServerResource;

fn server_block(for_data_source: bool) -> Block {
    if for_data_source {
        // A data source finds a server by name; everything else is read.
        return Block::new()
            .attribute(Attribute::string("name").required())
            .attribute(Attribute::string("id").computed())
            .attribute(Attribute::number("size").computed())
            .attribute(Attribute::string("password").computed().sensitive())
            .attribute(Attribute::string_map("tags").computed())
            .attribute(
                Attribute::nested(
                    "ports",
                    Nesting::List,
                    vec![
                        Attribute::number("port").computed(),
                        Attribute::string("protocol").computed(),
                    ],
                )
                .computed(),
            )
            .attribute(
                Attribute::nested(
                    "settings",
                    Nesting::Single,
                    vec![
                        Attribute::string("region").computed(),
                        Attribute::bool("debug").computed(),
                    ],
                )
                .computed(),
            )
            // Terraform 1.0's plan renderer crashes on unknown map- or set-nested
            // attributes (a data source read during apply is all unknown), so the
            // data source leaves out `aliases` and types `label` as a plain set of
            // objects, which holds the same values.
            .attribute(
                Attribute::new(
                    "label",
                    Type::set(Type::object([
                        ("key", Type::String),
                        ("value", Type::String),
                    ])),
                )
                .computed(),
            )
            .attribute(Attribute::number("revision").computed());
    }
    Block::new()
        .attribute(
            Attribute::string("id")
                .computed()
                .use_state_for_unknown()
                .description("Identifier, derived from the name at creation."),
        )
        .attribute(
            Attribute::string("name")
                .required()
                .requires_replace()
                .validator(validator::dns_label()),
        )
        .attribute(
            Attribute::number("size")
                .default(1)
                .validator(validator::int_between(1, 64)),
        )
        .attribute(Attribute::string("password").optional().sensitive())
        .attribute(Attribute::string_map("tags").optional())
        .attribute(
            Attribute::nested(
                "ports",
                Nesting::List,
                vec![
                    Attribute::number("port")
                        .required()
                        .validator(validator::int_between(1, 65535)),
                    Attribute::string("protocol")
                        .default("tcp")
                        .validator(validator::one_of(&["tcp", "udp"])),
                ],
            )
            .optional(),
        )
        .attribute(
            Attribute::nested(
                "settings",
                Nesting::Single,
                vec![
                    Attribute::string("region").default("eu-west"),
                    Attribute::bool("debug").optional(),
                ],
            )
            .optional(),
        )
        .attribute(
            Attribute::nested(
                "aliases",
                Nesting::Map,
                vec![Attribute::string("target")
                    .required()
                    .validator(validator::dns_label())],
            )
            .optional(),
        )
        .block(NestedBlock::new(
            "label",
            Nesting::Set,
            Block::new()
                .attribute(Attribute::string("key").required())
                .attribute(Attribute::string("value").optional()),
        ))
        .attribute(
            Attribute::number("revision")
                .computed()
                .description("Counts writes; unknown in any plan that changes the server."),
        )
}

fn unique_id(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{name}-{nanos:x}")
}

#[async_trait]
impl Resource for ServerResource {
    type Client = Store;
    type State = Server;

    fn type_name(&self) -> &str {
        "tfplugdemo_server"
    }

    fn schema(&self) -> Schema {
        Schema::new(server_block(false))
    }

    async fn create(
        &self,
        _ctx: &Context,
        store: &Store,
        mut planned: Server,
    ) -> Result<Server, Diagnostics> {
        planned.id = Some(unique_id(&planned.name));
        planned.revision = Some(1);
        store.save(&planned)?;
        Ok(planned)
    }

    async fn read(
        &self,
        _ctx: &Context,
        store: &Store,
        current: Server,
    ) -> Result<Option<Server>, Diagnostics> {
        store.load(current.id.as_deref().unwrap_or_default())
    }

    async fn update(
        &self,
        _ctx: &Context,
        store: &Store,
        prior: Server,
        mut planned: Server,
    ) -> Result<Server, Diagnostics> {
        planned.id = prior.id;
        planned.revision = Some(prior.revision.unwrap_or(0) + 1);
        store.save(&planned)?;
        Ok(planned)
    }

    async fn delete(
        &self,
        _ctx: &Context,
        store: &Store,
        prior: Server,
    ) -> Result<(), Diagnostics> {
        let path = store.path(prior.id.as_deref().unwrap_or_default());
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Diagnostic::error("Cannot delete object", e.to_string()).into()),
        }
    }

    async fn import(&self, _ctx: &Context, store: &Store, id: &str) -> Result<Server, Diagnostics> {
        store.load(id)?.ok_or_else(|| {
            Diagnostic::error(
                "Cannot import",
                format!("No tfplugdemo_server has id {id:?}."),
            )
            .into()
        })
    }
}

struct ServerLookup;

#[async_trait]
impl DataSource for ServerLookup {
    type Client = Store;
    type State = Server;

    fn type_name(&self) -> &str {
        "tfplugdemo_server"
    }

    fn schema(&self) -> Schema {
        Schema::new(server_block(true))
    }

    async fn read(
        &self,
        _ctx: &Context,
        store: &Store,
        config: Server,
    ) -> Result<Server, Diagnostics> {
        store
            .all()?
            .into_iter()
            .find(|s| s.name == config.name)
            .map(|found| Server {
                aliases: None,
                ..found
            })
            .ok_or_else(|| {
                Diagnostic::error(
                    "Not found",
                    format!("No tfplugdemo_server is named {:?}.", config.name),
                )
                .at(tfplug::AttributePath::root("name"))
                .into()
            })
    }
}
