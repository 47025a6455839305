//! The `slipway` provider: its configuration block, and the client every resource
//! receives.
//!
//! The configuration chooses a runtime (`local`, the default, or `kubernetes`) and the
//! production policy. Every setting can also come from an environment variable, so a
//! configuration can stay empty and the agent or a CI job can set it all; an explicit
//! setting in the `provider` block wins over the variable.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use slipway_provenance::VerifyingKey;
use tfplug::schema::{Attribute, Block, Schema};
use tfplug::{
    async_trait, validator, AnyDataSource, AnyResource, AttributePath, Context, Diagnostic,
    Diagnostics, Provider,
};

use crate::provenance::{Policy, RunProvenance};
use crate::runtime::Runtime;

pub use crate::client::SlipwayClient;

/// `runtime`: which runtime to use.
pub const ENV_RUNTIME: &str = "SLIPWAY_RUNTIME";
/// `home`: the local runtime's home directory.
pub const ENV_HOME: &str = "SLIPWAY_HOME";
/// `production_requires_signed_provenance`: `true` or `false`.
pub const ENV_PRODUCTION_REQUIRES_SIGNED: &str = "SLIPWAY_PRODUCTION_REQUIRES_SIGNED_PROVENANCE";
/// `agent_public_key`: base64 of the agent's 32-byte Ed25519 public key.
pub const ENV_AGENT_PUBLIC_KEY: &str = "SLIPWAY_AGENT_PUBLIC_KEY";
/// `agent_public_key_file`: a file holding that text (`slipway-agent keygen` writes it).
pub const ENV_AGENT_PUBLIC_KEY_FILE: &str = "SLIPWAY_AGENT_PUBLIC_KEY_FILE";
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

/// The `provider "slipway"` block.
#[derive(Debug, Default, Deserialize)]
pub struct ProviderConfig {
    pub runtime: Option<String>,
    pub home: Option<String>,
    pub production_requires_signed_provenance: Option<bool>,
    pub agent_public_key: Option<String>,
    pub agent_public_key_file: Option<String>,
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

        let (required, key) = self.gate_settings(
            config.production_requires_signed_provenance,
            config.agent_public_key,
            config.agent_public_key_file,
            &mut diags,
        );
        if required && key.is_none() && !diags.has_errors() {
            diags.push(
                Diagnostic::error(
                    "Missing agent public key",
                    format!("production_requires_signed_provenance is on, so the provider must verify slipway-agent's signature: set `agent_public_key` (or {ENV_AGENT_PUBLIC_KEY}) to the agent's public key, or `agent_public_key_file` (or {ENV_AGENT_PUBLIC_KEY_FILE}) to the slipway-agent.pub file that `slipway-agent keygen` wrote."),
                )
                .at(AttributePath::root("agent_public_key")),
            );
        }
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
        let provenance = RunProvenance::from_lookup(|name| (self.env)(name), key.as_ref());
        tracing::info!(
            runtime = runtime.kind().name(),
            production_requires_signed_provenance = required,
            provenance = %provenance.describe(),
            "configured the Slipway provider"
        );
        Ok(SlipwayClient {
            runtime,
            policy: Policy {
                production_requires_signed_provenance: required,
                agent_public_key: key,
            },
            provenance,
        })
    }

    /// The production gate's settings. The operator's (the `SLIPWAY_*` variables of the
    /// process that runs Terraform) are a floor: a configuration, which a pull request
    /// can change, may turn the gate on but never off, and may not bring a key other
    /// than the operator's.
    fn gate_settings(
        &self,
        configured_required: Option<bool>,
        configured_key: Option<String>,
        configured_key_file: Option<String>,
        diags: &mut Diagnostics,
    ) -> (bool, Option<VerifyingKey>) {
        let operator_required = match self
            .setting(None, ENV_PRODUCTION_REQUIRES_SIGNED)
            .as_deref()
        {
            None => None,
            Some("false") | Some("0") => Some(false),
            Some("true") | Some("1") => Some(true),
            Some(other) => {
                diags.push(
                    Diagnostic::error(
                        "Invalid policy setting",
                        format!(
                            "{ENV_PRODUCTION_REQUIRES_SIGNED} is {other:?}; use true or false."
                        ),
                    )
                    .at(AttributePath::root("production_requires_signed_provenance")),
                );
                None
            }
        };
        if operator_required == Some(true) && configured_required == Some(false) {
            diags.push(
                Diagnostic::error(
                    "The production gate cannot be turned off here",
                    format!("The operator requires signed provenance for PRODUCTION ({ENV_PRODUCTION_REQUIRES_SIGNED}=true); a Terraform configuration can turn the gate on but never off. Remove `production_requires_signed_provenance = false` from the provider block."),
                )
                .at(AttributePath::root("production_requires_signed_provenance")),
            );
        }
        let required = operator_required.unwrap_or(false) || configured_required.unwrap_or(false);

        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let operator_key = self.agent_key(
            self.setting(None, ENV_AGENT_PUBLIC_KEY),
            self.setting(None, ENV_AGENT_PUBLIC_KEY_FILE),
        );
        let configured_key =
            self.agent_key(non_empty(configured_key), non_empty(configured_key_file));
        let key = match (operator_key, configured_key) {
            (Err(d), _) | (_, Err(d)) => {
                diags.push(d);
                None
            }
            (Ok(Some(operator)), Ok(Some(configured))) if operator != configured => {
                diags.push(
                    Diagnostic::error(
                        "The agent's public key cannot be replaced here",
                        format!("The operator set slipway-agent's public key ({ENV_AGENT_PUBLIC_KEY} or {ENV_AGENT_PUBLIC_KEY_FILE}), and this provider block names a different one; a Terraform configuration cannot bring its own key. Remove `agent_public_key` and `agent_public_key_file` from the provider block."),
                    )
                    .at(AttributePath::root("agent_public_key")),
                );
                None
            }
            (Ok(operator), Ok(configured)) => operator.or(configured),
        };
        (required, key)
    }

    /// Reads a key from its text or from a file holding it, whichever is given.
    fn agent_key(
        &self,
        text: Option<String>,
        file: Option<String>,
    ) -> Result<Option<VerifyingKey>, Diagnostic> {
        if let Some(text) = text {
            return slipway_provenance::parse_verifying_key(&text)
                .map(Some)
                .map_err(|e| {
                    Diagnostic::error(
                        "Invalid agent public key",
                        format!("agent_public_key ({ENV_AGENT_PUBLIC_KEY}): {e}. Use the contents of the slipway-agent.pub file that `slipway-agent keygen` wrote."),
                    )
                    .at(AttributePath::root("agent_public_key"))
                });
        }
        if let Some(path) = file {
            // `slipway-agent keygen` writes slipway-agent.key (the secret signing key) and
            // slipway-agent.pub side by side; the secret one must stay with the agent.
            if path.ends_with(".key") {
                return Err(Diagnostic::error(
                    "Invalid agent public key file",
                    format!("agent_public_key_file ({ENV_AGENT_PUBLIC_KEY_FILE}) is {path:?}, which looks like slipway-agent's private signing key. Use the public key, the slipway-agent.pub file written next to it; the .key file must stay with the agent."),
                )
                .at(AttributePath::root("agent_public_key_file")));
            }
            return slipway_provenance::load_verifying_key(std::path::Path::new(&path))
                .map(Some)
                .map_err(|e| {
                    Diagnostic::error(
                        "Invalid agent public key file",
                        format!("agent_public_key_file ({ENV_AGENT_PUBLIC_KEY_FILE}): {e}. Use the slipway-agent.pub file that `slipway-agent keygen` wrote."),
                    )
                    .at(AttributePath::root("agent_public_key_file"))
                });
        }
        Ok(None)
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
                        .description(format!("When true, PRODUCTION environments and their applications change only in runs whose provenance slipway-agent signed: production changes come through a merge. Defaults to ${ENV_PRODUCTION_REQUIRES_SIGNED}, then false.")),
                )
                .attribute(
                    Attribute::string("agent_public_key")
                        .optional()
                        .description(format!("slipway-agent's Ed25519 public key (base64 of its 32 bytes, the contents of slipway-agent.pub). Defaults to ${ENV_AGENT_PUBLIC_KEY}.")),
                )
                .attribute(
                    Attribute::string("agent_public_key_file")
                        .optional()
                        .description(format!("A file holding agent_public_key. Defaults to ${ENV_AGENT_PUBLIC_KEY_FILE}.")),
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
    use crate::provenance::Trust;
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

    fn public_key() -> String {
        let key = slipway_provenance::SigningKey::from_bytes(&[9u8; 32]);
        slipway_provenance::encode_verifying_key(&key.verifying_key())
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
        assert!(!client.policy.production_requires_signed_provenance);
        assert_eq!(client.provenance.trust, Trust::Manual);

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

    #[tokio::test]
    async fn policy_settings_come_from_the_block_or_the_environment() {
        let key = public_key();
        let (p, _) = provider(&[
            ("HOME", "/h"),
            (ENV_PRODUCTION_REQUIRES_SIGNED, "true"),
            (ENV_AGENT_PUBLIC_KEY, key.as_str()),
        ]);
        let client = p.build_client(ProviderConfig::default()).await.unwrap();
        assert!(client.policy.production_requires_signed_provenance);
        assert!(client.policy.agent_public_key.is_some());

        let (p, _) = provider(&[("HOME", "/h")]);
        let err = p
            .build_client(ProviderConfig {
                production_requires_signed_provenance: Some(true),
                ..Default::default()
            })
            .await
            .err()
            .unwrap();
        assert_eq!(
            err.0[0].attribute,
            Some(AttributePath::root("agent_public_key"))
        );

        let err = p
            .build_client(ProviderConfig {
                agent_public_key: Some("bm90IGEga2V5".into()),
                ..Default::default()
            })
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("agent_public_key"), "{err}");

        let dir = crate::resources::testing::ScratchDir::new();
        let file = dir.path().join("slipway-agent.pub");
        std::fs::write(&file, format!("{key}\n")).unwrap();
        let client = p
            .build_client(ProviderConfig {
                production_requires_signed_provenance: Some(true),
                agent_public_key_file: Some(file.display().to_string()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(client.policy.agent_public_key.is_some());

        // The private half is refused by name, before it is read.
        let secret = dir.path().join("slipway-agent.key");
        std::fs::write(&secret, format!("{key}\n")).unwrap();
        let err = p
            .build_client(ProviderConfig {
                agent_public_key_file: Some(secret.display().to_string()),
                ..Default::default()
            })
            .await
            .err()
            .unwrap();
        assert_eq!(
            err.0[0].attribute,
            Some(AttributePath::root("agent_public_key_file"))
        );
        assert!(err.to_string().contains("slipway-agent.pub"), "{err}");

        // A file that cannot be read says which file and what to use.
        let err = p
            .build_client(ProviderConfig {
                agent_public_key_file: Some("/no/such/slipway-agent.pub".into()),
                ..Default::default()
            })
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("/no/such/slipway-agent.pub")
                && err.to_string().contains("slipway-agent keygen"),
            "{err}"
        );
    }

    /// An attacker's pull request can edit the provider block, not the environment the
    /// operator runs Terraform in: the block may tighten the gate, never loosen it.
    #[tokio::test]
    async fn a_provider_block_cannot_loosen_the_operators_gate() {
        let key = public_key();
        let (p, _) = provider(&[
            ("HOME", "/h"),
            (ENV_PRODUCTION_REQUIRES_SIGNED, "true"),
            (ENV_AGENT_PUBLIC_KEY, key.as_str()),
        ]);
        let err = p
            .build_client(ProviderConfig {
                production_requires_signed_provenance: Some(false),
                ..Default::default()
            })
            .await
            .err()
            .unwrap();
        assert_eq!(
            err.0[0].attribute,
            Some(AttributePath::root("production_requires_signed_provenance"))
        );
        assert!(err.to_string().contains("never off"), "{err}");

        // The attacker's own key.
        let other = slipway_provenance::encode_verifying_key(
            &slipway_provenance::SigningKey::from_bytes(&[7; 32]).verifying_key(),
        );
        let err = p
            .build_client(ProviderConfig {
                agent_public_key: Some(other),
                ..Default::default()
            })
            .await
            .err()
            .unwrap();
        assert_eq!(
            err.0[0].attribute,
            Some(AttributePath::root("agent_public_key"))
        );
        assert!(
            err.to_string().contains("cannot bring its own key"),
            "{err}"
        );

        // Repeating the operator's settings is fine; so is tightening without them.
        let client = p
            .build_client(ProviderConfig {
                production_requires_signed_provenance: Some(true),
                agent_public_key: Some(key.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(client.policy.production_requires_signed_provenance);
        let (p, _) = provider(&[("HOME", "/h"), (ENV_AGENT_PUBLIC_KEY, key.as_str())]);
        let client = p
            .build_client(ProviderConfig {
                production_requires_signed_provenance: Some(true),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(client.policy.production_requires_signed_provenance);
        assert!(client.policy.agent_public_key.is_some());
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
