//! The `slipway` provider: its configuration block, and the client every resource
//! receives.
//!
//! The configuration chooses a runtime (`local`, the default, or `kubernetes`) and how
//! to reach the platform. Every setting can also come from an environment variable, so
//! a configuration can stay empty and the agent or a CI job can set it all; an explicit
//! setting in the `provider` block wins over the variable.
//!
//! Who may change what is never the provider's to decide: the platform decides every
//! change from the caller's identity and its own configuration. The provider's former
//! production gate settings ([`IGNORED_GATE_SETTINGS`]) still parse, so that old
//! configurations keep working, and each one set is a warning that changes nothing.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use tfplug::schema::{Attribute, Block, Schema};
use tfplug::{
    async_trait, validator, AnyDataSource, AnyResource, AttributePath, Context, Diagnostic,
    Diagnostics, Provider,
};

use crate::run_labels::RunLabels;
use crate::runtime::Runtime;

pub use crate::client::SlipwayClient;

/// `runtime`: which runtime to use.
pub const ENV_RUNTIME: &str = "SLIPWAY_RUNTIME";
/// `home`: the local runtime's home directory.
pub const ENV_HOME: &str = "SLIPWAY_HOME";
/// The variable that once turned the provider's own production gate on; ignored, with
/// a warning, since the platform decides.
pub const ENV_PRODUCTION_REQUIRES_SIGNED: &str = "SLIPWAY_PRODUCTION_REQUIRES_SIGNED_PROVENANCE";
/// The provider block's former production gate: PRODUCTION policy lives in the
/// platform's configuration, so each of these is ignored, and a warning when set.
/// (Their variables `SLIPWAY_AGENT_PUBLIC_KEY` and `SLIPWAY_AGENT_PUBLIC_KEY_FILE` are
/// the embedded platform's own setting, the key of the agent's job credentials, which
/// the daemon reads from the environment it starts in: the provider says nothing of
/// them.)
pub const IGNORED_GATE_SETTINGS: [&str; 3] = [
    "production_requires_signed_provenance",
    "agent_public_key",
    "agent_public_key_file",
];
/// Where the platform's policy is described, for the warnings.
const POLICY_DOCS: &str = "docs/index.md, \"Who may change what: the platform's policy\"";
/// The provider block's former Kubernetes settings, now the platform's own flags
/// (`runtime serve --backend kubernetes`): the attribute, and the flag it became.
pub const PLATFORM_KUBE_SETTINGS: [(&str, &str); 5] = [
    ("kubeconfig", "--kubeconfig"),
    ("kube_context", "--kube-context"),
    ("ingress_class", "--ingress-class"),
    ("ingress_domain", "--ingress-domain"),
    ("pod_security", "--pod-security"),
];

/// The runtimes a configuration may name.
pub const RUNTIMES: [&str; 2] = ["local", "kubernetes"];

/// The `provider "slipway"` block (without [`IGNORED_GATE_SETTINGS`], which only
/// [`SlipwayProvider::ignored_gate_settings`] looks at).
#[derive(Debug, Default, Deserialize)]
pub struct ProviderConfig {
    pub runtime: Option<String>,
    pub home: Option<String>,
    pub kubeconfig: Option<String>,
    pub kube_context: Option<String>,
    pub ingress_class: Option<String>,
    pub ingress_domain: Option<String>,
    pub pod_security: Option<String>,
    /// A team's platform (`https://host:port`) instead of a local daemon.
    pub endpoint: Option<String>,
    /// The platform's named token; never shown.
    pub token: Option<Sensitive>,
    /// The CA that signed the endpoint's certificate.
    pub ca_file: Option<String>,
}

pub use crate::runtime::Sensitive;

/// Which runtime to open, resolved from the configuration and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeChoice {
    Local {
        home: PathBuf,
        /// How to reach the platform and who this run is to it.
        platform: crate::runtime::local::client::PlatformAccess,
    },
    /// A platform whose backend is Kubernetes, reached as [`RuntimeChoice::Local`]'s
    /// is but never started by the provider: the platform, not Terraform, holds the
    /// cluster's credentials (`runtime serve --backend kubernetes`).
    Kubernetes {
        home: PathBuf,
        platform: crate::runtime::local::client::PlatformAccess,
    },
}

/// What opening a runtime produces.
pub type OpenedRuntime = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Arc<dyn Runtime>, Diagnostic>> + Send>,
>;

/// Opens the runtime a configuration chose (the local one may start its daemon).
pub type RuntimeOpener = Arc<dyn Fn(RuntimeChoice) -> OpenedRuntime + Send + Sync>;

/// Reads one environment variable (injected so tests need not touch the process
/// environment).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The Slipway provider.
pub struct SlipwayProvider {
    open: RuntimeOpener,
    env: EnvLookup,
}

impl Default for SlipwayProvider {
    fn default() -> Self {
        SlipwayProvider::new()
    }
}

impl SlipwayProvider {
    /// The provider as Terraform runs it: real runtimes, the process environment.
    pub fn new() -> SlipwayProvider {
        SlipwayProvider {
            open: Arc::new(|choice| Box::pin(open_runtime(choice))),
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }

    /// A provider whose runtimes come from `open` and whose environment variables come
    /// from `env`: for tests.
    pub fn with(open: RuntimeOpener, env: EnvLookup) -> SlipwayProvider {
        SlipwayProvider { open, env }
    }

    fn setting(&self, configured: Option<String>, variable: &str) -> Option<String> {
        configured
            .filter(|s| !s.is_empty())
            .or_else(|| (self.env)(variable).filter(|s| !s.is_empty()))
    }

    /// Builds the client: everything `configure` does, on an injected environment.
    pub async fn build_client(&self, config: ProviderConfig) -> Result<SlipwayClient, Diagnostics> {
        let mut diags = Diagnostics::new();

        let runtime_name = self
            .setting(config.runtime, ENV_RUNTIME)
            .unwrap_or_else(|| "local".to_owned());
        for (attribute, flag) in PLATFORM_KUBE_SETTINGS {
            let set = match attribute {
                "kubeconfig" => config.kubeconfig.is_some(),
                "kube_context" => config.kube_context.is_some(),
                "ingress_class" => config.ingress_class.is_some(),
                "ingress_domain" => config.ingress_domain.is_some(),
                _ => config.pod_security.is_some(),
            };
            if set {
                diags.push(
                    Diagnostic::error(
                        "A platform setting in the provider block",
                        format!("{attribute}: the Slipway platform, not Terraform, reaches the cluster and decides how, so a configuration cannot choose its credentials or loosen its settings. Remove `{attribute}` from the provider block, and start the platform with `terraform-provider-slipway runtime serve --backend kubernetes {flag} ...`."),
                    )
                    .at(AttributePath::root(attribute)),
                );
            }
        }
        let home = self
            .setting(config.home, ENV_HOME)
            .map(PathBuf::from)
            .or_else(|| default_home(&*self.env));
        let platform = crate::runtime::local::client::PlatformAccess {
            endpoint: self.setting(config.endpoint, crate::runtime::local::client::ENV_ENDPOINT),
            ca_file: self
                .setting(config.ca_file, crate::runtime::local::client::ENV_CA_FILE)
                .map(PathBuf::from),
            job_credential_file: self
                .setting(None, crate::runtime::local::client::ENV_JOB_CREDENTIAL_FILE)
                .map(PathBuf::from),
            token: self
                .setting(
                    config.token.map(|t| t.0),
                    crate::runtime::local::client::ENV_TOKEN,
                )
                .map(Sensitive),
        };
        let no_home = || {
            Diagnostic::error(
                "No home directory for the local runtime",
                format!("Set `home` in the provider block or {ENV_HOME} in the environment: neither is set and there is no user data directory ($XDG_DATA_HOME or $HOME)."),
            )
            .at(AttributePath::root("home"))
        };
        let choice = match runtime_name.as_str() {
            "local" | "kubernetes" => match home {
                Some(home) if runtime_name == "local" => {
                    Some(RuntimeChoice::Local { home, platform })
                }
                Some(home) => Some(RuntimeChoice::Kubernetes { home, platform }),
                None => {
                    diags.push(no_home());
                    None
                }
            },
            other => {
                diags.push(
                    Diagnostic::error(
                        "Unknown runtime",
                        format!("{other:?} is not a Slipway runtime; use \"local\" (the default) or \"kubernetes\" (set in `runtime` or {ENV_RUNTIME})."),
                    )
                    .at(AttributePath::root("runtime")),
                );
                None
            }
        };

        if diags.has_errors() {
            return Err(diags);
        }
        let Some(choice) = choice else {
            return Err(diags);
        };
        // Point at the setting the problem is about; `runtime` when no other one is.
        let runtime = (self.open)(choice).await.map_err(|d| match d.attribute {
            Some(_) => d,
            None => d.at(AttributePath::root("runtime")),
        })?;
        let labels = RunLabels::from_lookup(|name| (self.env)(name));
        tracing::info!(
            runtime = runtime.kind().name(),
            labels = %labels.describe(),
            "configured the Slipway provider"
        );
        Ok(SlipwayClient { runtime, labels })
    }

    /// A warning for each of the former production gate's settings that is set: in the
    /// provider block (`config`, at its attribute; an unknown value counts as set), or
    /// the variable that turned the gate on. They change nothing: the platform decides,
    /// from its own configuration, which no Terraform configuration reaches.
    pub fn ignored_gate_settings(&self, config: &tfplug::Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        for attribute in IGNORED_GATE_SETTINGS {
            if !config.get(attribute).is_null() {
                diags.push(
                    Diagnostic::warning(
                        format!("`{attribute}` is ignored"),
                        format!("Ignored: PRODUCTION policy lives in the platform's configuration now (see {POLICY_DOCS}); the platform refuses a change the caller's identity or job credential does not allow, whatever the provider block says. Remove `{attribute}` from the provider block."),
                    )
                    .at(AttributePath::root(attribute)),
                );
            }
        }
        if self.setting(None, ENV_PRODUCTION_REQUIRES_SIGNED).is_some() {
            diags.push(Diagnostic::warning(
                format!("{ENV_PRODUCTION_REQUIRES_SIGNED} is ignored"),
                format!("Ignored: PRODUCTION policy lives in the platform's configuration now (see {POLICY_DOCS}), and the platform refuses unauthorised PRODUCTION changes without it. Remove {ENV_PRODUCTION_REQUIRES_SIGNED} from the environment that runs Terraform."),
            ));
        }
        diags
    }
}

/// The local runtime's home when neither `home` nor `SLIPWAY_HOME` is set: the user's
/// data directory (`$XDG_DATA_HOME/slipway`, else `~/.local/share/slipway`, or
/// `~/Library/Application Support/slipway` on macOS).
pub fn default_home(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(xdg) = env("XDG_DATA_HOME").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(xdg).join("slipway"));
    }
    let home = PathBuf::from(env("HOME").filter(|s| !s.is_empty())?);
    if cfg!(target_os = "macos") {
        Some(home.join("Library/Application Support/slipway"))
    } else {
        Some(home.join(".local/share/slipway"))
    }
}

/// Opens a real runtime: connects to the local runtime's daemon (starting it when none
/// answers), or reads the kubeconfig (the cluster is contacted on first use).
async fn open_runtime(choice: RuntimeChoice) -> Result<Arc<dyn Runtime>, Diagnostic> {
    use crate::runtime::local::{Home, LocalRuntime};
    use crate::runtime::RuntimeError;
    match choice {
        RuntimeChoice::Local { home, platform } => {
            let runtime = LocalRuntime::connect_or_spawn_as(&Home::new(home), &platform)
                .await
                .map_err(|e| {
                    Diagnostic::error(
                        "Cannot start the local runtime",
                        format!("{e}. Check `home` (or SLIPWAY_HOME): the directory must be writable, and its path short."),
                    )
                    .at(AttributePath::root("home"))
                })?;
            Ok(Arc::new(runtime))
        }
        RuntimeChoice::Kubernetes { home, platform } => {
            let home = Home::new(home);
            let where_ = platform
                .endpoint
                .clone()
                .unwrap_or_else(|| home.socket().display().to_string());
            let start = format!("start it with `terraform-provider-slipway runtime --home {} serve --backend kubernetes --kubeconfig FILE` (see deploy/systemd/slipway-platform.service), or set `endpoint` to a team's platform", home.root().display());
            let runtime = LocalRuntime::connect_as(&home, &platform).await.map_err(|e| match e {
                RuntimeError::Unavailable(_) => Diagnostic::error(
                    "No Slipway platform for Kubernetes",
                    format!("{e}. The provider reaches Kubernetes only through a platform, which holds the cluster's credentials: {start}."),
                )
                .at(AttributePath::root(if platform.endpoint.is_some() { "endpoint" } else { "home" })),
                e => Diagnostic::error("Cannot use the Slipway platform", e.to_string()),
            })?;
            if runtime.kind() != crate::runtime::RuntimeKind::Kubernetes {
                return Err(Diagnostic::error(
                    "The platform does not run Kubernetes",
                    format!("runtime is \"kubernetes\", and the platform at {where_} runs the {} runtime: {start}, or set `runtime = \"local\"`.", runtime.kind()),
                )
                .at(AttributePath::root("runtime")));
            }
            Ok(Arc::new(runtime))
        }
    }
}

#[async_trait]
impl Provider for SlipwayProvider {
    type Config = ProviderConfig;
    type Client = SlipwayClient;

    fn type_name(&self) -> &str {
        "slipway"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new()
                .description("Slipway: environments and applications on a local or Kubernetes runtime.")
                .attribute(
                    Attribute::string("runtime")
                        .optional()
                        .validator(validator::one_of(&RUNTIMES))
                        .description(format!("Where applications run: \"local\" (the default; processes on this machine, supervised by the Slipway daemon) or \"kubernetes\". Defaults to ${ENV_RUNTIME}, then \"local\".")),
                )
                .attribute(
                    Attribute::string("home")
                        .optional()
                        .description(format!("The local runtime's home directory (state, logs, the daemon's socket). Defaults to ${ENV_HOME}, then the user's data directory.")),
                )
                .attribute(
                    Attribute::string("endpoint")
                        .optional()
                        .description(format!("A team's Slipway platform, `https://host:port`, instead of a local daemon; a token (or the job's credential) is then required. Defaults to ${}.", crate::runtime::local::client::ENV_ENDPOINT)),
                )
                .attribute(
                    Attribute::string("token")
                        .optional()
                        .sensitive()
                        .description(format!("A named token of the platform (`runtime token create`): who this run is to it. Defaults to ${}. slipway-agent's job credential, when present, wins.", crate::runtime::local::client::ENV_TOKEN)),
                )
                .attribute(
                    Attribute::string("ca_file")
                        .optional()
                        .description(format!("A PEM file with the CA that signed the endpoint's certificate. Defaults to ${}.", crate::runtime::local::client::ENV_CA_FILE)),
                )
                .attribute(
                    Attribute::bool("production_requires_signed_provenance")
                        .optional()
                        .deprecated()
                        .description("Ignored: PRODUCTION policy lives in the platform's configuration now, and the platform refuses unauthorised PRODUCTION changes itself. Setting it is a warning; remove it.")
                )
                .attribute(
                    Attribute::string("agent_public_key")
                        .optional()
                        .deprecated()
                        .description("Ignored: the platform checks slipway-agent's job credentials with the key in its own configuration (`engine_public_key_file` in platform.toml). Setting it is a warning; remove it.")
                )
                .attribute(
                    Attribute::string("agent_public_key_file")
                        .optional()
                        .deprecated()
                        .description("Ignored, as agent_public_key. Setting it is a warning; remove it.")
                )
                .attribute(
                    Attribute::string("kubeconfig")
                        .optional()
                        .deprecated()
                        .description("Removed: the Slipway platform's own setting now (`runtime serve --backend kubernetes --kubeconfig`), since only the platform reaches the cluster. Setting it is an error.")
                )
                .attribute(
                    Attribute::string("kube_context")
                        .optional()
                        .deprecated()
                        .description("Removed: the Slipway platform's own setting now (`runtime serve --backend kubernetes --kube-context`), since only the platform reaches the cluster. Setting it is an error.")
                )
                .attribute(
                    Attribute::string("ingress_class")
                        .optional()
                        .deprecated()
                        .description("Removed: the Slipway platform's own setting now (`runtime serve --backend kubernetes --ingress-class`), since only the platform reaches the cluster. Setting it is an error.")
                )
                .attribute(
                    Attribute::string("ingress_domain")
                        .optional()
                        .deprecated()
                        .description("Removed: the Slipway platform's own setting now (`runtime serve --backend kubernetes --ingress-domain`), since only the platform reaches the cluster. Setting it is an error.")
                )
                .attribute(
                    Attribute::string("pod_security")
                        .optional()
                        .deprecated()
                        .description("Removed: the Slipway platform's own setting now (`runtime serve --backend kubernetes --pod-security`), since only the platform reaches the cluster. Setting it is an error.")
                ),
        )
    }

    async fn validate(&self, config: &tfplug::Value) -> Diagnostics {
        self.ignored_gate_settings(config)
    }

    async fn configure(
        &self,
        _ctx: &Context,
        config: ProviderConfig,
    ) -> Result<SlipwayClient, Diagnostics> {
        self.build_client(config).await
    }

    fn resources(&self) -> Vec<Arc<dyn AnyResource<SlipwayClient>>> {
        vec![
            tfplug::resource(crate::resources::environment::EnvironmentResource),
            tfplug::resource(crate::resources::application::ApplicationResource),
        ]
    }

    fn data_sources(&self) -> Vec<Arc<dyn AnyDataSource<SlipwayClient>>> {
        vec![
            tfplug::data_source(crate::data_sources::environment::EnvironmentLookup),
            tfplug::data_source(crate::data_sources::application::ApplicationLookup),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::memory::MemoryRuntime;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    fn provider(env: &[(&str, &str)]) -> (SlipwayProvider, Arc<Mutex<Vec<RuntimeChoice>>>) {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let opened = Arc::new(Mutex::new(Vec::new()));
        let seen = opened.clone();
        let open: RuntimeOpener = Arc::new(move |choice: RuntimeChoice| {
            seen.lock().unwrap().push(choice);
            Box::pin(async { Ok(Arc::new(MemoryRuntime::new()) as Arc<dyn Runtime>) })
        });
        (
            SlipwayProvider::with(open, Arc::new(move |name| env.get(name).cloned())),
            opened,
        )
    }

    #[tokio::test]
    async fn local_is_the_default_with_home_from_the_environment() {
        let (p, opened) = provider(&[("SLIPWAY_HOME", "/srv/slipway"), ("HOME", "/home/u")]);
        let client = p.build_client(ProviderConfig::default()).await.unwrap();
        assert_eq!(
            opened.lock().unwrap()[0],
            RuntimeChoice::Local {
                home: "/srv/slipway".into(),
                platform: Default::default(),
            }
        );
        assert_eq!(client.labels.record().trigger, "terraform-apply");

        let (p, opened) = provider(&[("HOME", "/home/u")]);
        p.build_client(ProviderConfig::default()).await.unwrap();
        let first = opened.lock().unwrap()[0].clone();
        let RuntimeChoice::Local { home, .. } = first else {
            panic!("expected local");
        };
        assert!(home.starts_with("/home/u"), "{}", home.display());

        let (p, opened) = provider(&[("SLIPWAY_HOME", "/env")]);
        p.build_client(ProviderConfig {
            home: Some("/explicit".into()),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(
            opened.lock().unwrap()[0],
            RuntimeChoice::Local {
                home: "/explicit".into(),
                platform: Default::default(),
            }
        );

        // The platform to reach, and who this run is to it: the block wins over the
        // environment, a job credential over a token, and the token is never printed.
        let (p, opened) = provider(&[
            ("HOME", "/h"),
            ("SLIPWAY_ENDPOINT", "https://env:7443"),
            ("SLIPWAY_TOKEN", "slw_from_env"),
        ]);
        p.build_client(ProviderConfig {
            endpoint: Some("https://platform.example:7443".into()),
            token: Some(Sensitive("slw_from_block".into())),
            ca_file: Some("/etc/slipway/ca.pem".into()),
            ..Default::default()
        })
        .await
        .unwrap();
        let RuntimeChoice::Local { platform, .. } = opened.lock().unwrap()[0].clone() else {
            panic!("expected local");
        };
        assert_eq!(
            platform.endpoint.as_deref(),
            Some("https://platform.example:7443")
        );
        assert_eq!(platform.token, Some(Sensitive("slw_from_block".into())));
        assert_eq!(platform.ca_file, Some(PathBuf::from("/etc/slipway/ca.pem")));
        assert!(!format!("{platform:?}").contains("slw_from_block"));
    }

    #[tokio::test]
    async fn kubernetes_is_reached_through_a_platform_and_unknown_runtimes_are_refused() {
        let (p, opened) = provider(&[
            ("SLIPWAY_RUNTIME", "kubernetes"),
            ("SLIPWAY_HOME", "/srv/slipway"),
        ]);
        p.build_client(ProviderConfig::default()).await.unwrap();
        assert_eq!(
            opened.lock().unwrap()[0],
            RuntimeChoice::Kubernetes {
                home: "/srv/slipway".into(),
                platform: crate::runtime::local::client::PlatformAccess::default(),
            }
        );

        // The cluster's settings are the platform's: each one in the block is an error at
        // its attribute that names the platform's flag, and nothing is opened.
        for (attribute, flag) in PLATFORM_KUBE_SETTINGS {
            let mut config = ProviderConfig::default();
            let value = Some("x".to_owned());
            match attribute {
                "kubeconfig" => config.kubeconfig = value,
                "kube_context" => config.kube_context = value,
                "ingress_class" => config.ingress_class = value,
                "ingress_domain" => config.ingress_domain = value,
                _ => config.pod_security = value,
            }
            let (p, opened) = provider(&[("SLIPWAY_RUNTIME", "kubernetes"), ("HOME", "/h")]);
            let err = p.build_client(config).await.err().unwrap();
            assert_eq!(err.0[0].attribute, Some(AttributePath::root(attribute)));
            assert!(err.0[0].detail.contains(flag), "{}", err.0[0].detail);
            assert!(opened.lock().unwrap().is_empty());
        }

        // No platform answers: the provider never starts one for Kubernetes, and says how.
        let dir = crate::resources::testing::ScratchDir::new();
        let err = open_runtime(RuntimeChoice::Kubernetes {
            home: dir.path().to_owned(),
            platform: crate::runtime::local::client::PlatformAccess::default(),
        })
        .await
        .err()
        .unwrap();
        assert_eq!(err.attribute, Some(AttributePath::root("home")));
        assert!(
            err.detail.contains("serve --backend kubernetes"),
            "{}",
            err.detail
        );
        assert!(!dir.path().join("runtime.sock").exists());

        // Errors from opening a runtime without an attribute of their own point at
        // `runtime`.
        let failing: RuntimeOpener =
            Arc::new(|_| Box::pin(async { Err(Diagnostic::error("Cannot use it", "broken")) }));
        let p = SlipwayProvider::with(failing, Arc::new(|_: &str| Some("/h".to_owned())));
        let err = p
            .build_client(ProviderConfig::default())
            .await
            .err()
            .unwrap();
        assert_eq!(err.0[0].attribute, Some(AttributePath::root("runtime")));

        let (p, _) = provider(&[("SLIPWAY_RUNTIME", "nomad"), ("HOME", "/h")]);
        let err = p
            .build_client(ProviderConfig::default())
            .await
            .err()
            .unwrap();
        assert_eq!(err.0[0].attribute, Some(AttributePath::root("runtime")));
        assert!(err.to_string().contains("\"nomad\""), "{err}");
    }

    /// The former production gate's settings still parse, and each one set is a
    /// warning at its attribute; nothing else changes: the client is the same, and
    /// has nothing that could gate a change (the platform decides). An attacker's
    /// `production_requires_signed_provenance = false` or own key is ignored alike.
    #[tokio::test]
    async fn the_former_gate_settings_are_ignored_with_a_warning() {
        let p = SlipwayProvider::new();
        let schema = p.schema();
        let config = tfplug::convert::to_value(
            &serde_json::json!({
                "home": "/h",
                "production_requires_signed_provenance": false,
                "agent_public_key": "YXR0YWNrZXIncyBvd24ga2V5IGlzIG5vdCBjaGVja2Vk",
                "agent_public_key_file": "/tmp/slipway-agent.key",
            }),
            &schema.block.value_type(),
        )
        .unwrap();
        let (p, opened) = provider(&[("HOME", "/h")]);
        let warnings = p.validate(&config).await;
        assert!(!warnings.has_errors(), "{warnings:?}");
        let at: Vec<_> = warnings.0.iter().map(|d| d.attribute.clone()).collect();
        assert_eq!(
            at,
            IGNORED_GATE_SETTINGS.map(|a| Some(AttributePath::root(a)))
        );
        for (d, attribute) in warnings.0.iter().zip(IGNORED_GATE_SETTINGS) {
            assert_eq!(d.severity, tfplug::Severity::Warning);
            assert!(
                d.detail.contains("platform's configuration"),
                "{}",
                d.detail
            );
            assert!(
                d.detail.contains(&format!("Remove `{attribute}`")),
                "{}",
                d.detail
            );
        }
        // Configuring with them set works as without them.
        let decoded: ProviderConfig = tfplug::convert::from_value(&config).unwrap();
        let client = p.build_client(decoded).await.unwrap();
        assert_eq!(opened.lock().unwrap().len(), 1);
        assert_eq!(client.labels.record().trigger, "terraform-apply");

        // Unset (or an empty block): no warning.
        let empty =
            tfplug::convert::to_value(&serde_json::json!({}), &schema.block.value_type()).unwrap();
        assert!(p.validate(&empty).await.0.is_empty());

        // The old variable is a warning too; the agent's key variables are the embedded
        // platform's own setting and say nothing here.
        let (p, _) = provider(&[
            ("HOME", "/h"),
            (ENV_PRODUCTION_REQUIRES_SIGNED, "true"),
            (
                "SLIPWAY_AGENT_PUBLIC_KEY_FILE",
                "/etc/slipway/slipway-agent.pub",
            ),
        ]);
        let warnings = p.validate(&empty).await;
        assert_eq!(warnings.0.len(), 1, "{warnings:?}");
        assert_eq!(warnings.0[0].severity, tfplug::Severity::Warning);
        assert!(
            warnings.0[0]
                .detail
                .contains(ENV_PRODUCTION_REQUIRES_SIGNED),
            "{}",
            warnings.0[0].detail
        );
        assert!(p.build_client(ProviderConfig::default()).await.is_ok());
    }

    #[test]
    fn schema_lists_both_resources_and_data_sources() {
        let p = SlipwayProvider::new();
        let mut names: Vec<String> = p
            .resources()
            .iter()
            .map(|r| r.type_name().to_owned())
            .collect();
        names.extend(
            p.data_sources()
                .iter()
                .map(|d| format!("data.{}", d.type_name())),
        );
        names.sort();
        assert_eq!(
            names,
            [
                "data.slipway_application",
                "data.slipway_environment",
                "slipway_application",
                "slipway_environment"
            ]
        );
    }
}
