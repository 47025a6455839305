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
/// `kubeconfig`: the kubeconfig file for the kubernetes runtime.
pub const ENV_KUBECONFIG: &str = "SLIPWAY_KUBECONFIG";
/// `kube_context`: the kubeconfig context to use.
pub const ENV_KUBE_CONTEXT: &str = "SLIPWAY_KUBE_CONTEXT";
/// `ingress_class`: the Ingress class that exposes public ports on Kubernetes.
pub const ENV_INGRESS_CLASS: &str = "SLIPWAY_INGRESS_CLASS";
/// `ingress_domain`: the domain under which public ports get host names on Kubernetes.
pub const ENV_INGRESS_DOMAIN: &str = "SLIPWAY_INGRESS_DOMAIN";
/// `pod_security`: the Pod Security Standard level on Kubernetes.
pub const ENV_POD_SECURITY: &str = "SLIPWAY_POD_SECURITY";

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
    Kubernetes {
        /// `None`: `$KUBECONFIG`, `~/.kube/config`, or the pod's service account
        /// inside a cluster.
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
        /// Ingress class and domain, when public ports are exposed through an Ingress.
        ingress: Option<(String, String)>,
        pod_security: crate::runtime::kubernetes::pod_security::PodSecurity,
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
        let choice = match runtime_name.as_str() {
            "local" => {
                let home = self
                    .setting(config.home, ENV_HOME)
                    .map(PathBuf::from)
                    .or_else(|| default_home(&*self.env));
                let platform = crate::runtime::local::client::PlatformAccess {
                    endpoint: self
                        .setting(config.endpoint, crate::runtime::local::client::ENV_ENDPOINT),
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
                match home {
                    Some(home) => Some(RuntimeChoice::Local { home, platform }),
                    None => {
                        diags.push(
                            Diagnostic::error(
                                "No home directory for the local runtime",
                                format!("Set `home` in the provider block or {ENV_HOME} in the environment: neither is set and there is no user data directory ($XDG_DATA_HOME or $HOME)."),
                            )
                            .at(AttributePath::root("home")),
                        );
                        None
                    }
                }
            }
            "kubernetes" => {
                let class = self.setting(config.ingress_class, ENV_INGRESS_CLASS);
                let domain = self.setting(config.ingress_domain, ENV_INGRESS_DOMAIN);
                let ingress = match (class, domain) {
                    (Some(class), Some(domain)) => Some((class, domain)),
                    (None, None) => None,
                    (class, _) => {
                        let missing = if class.is_none() {
                            "ingress_class"
                        } else {
                            "ingress_domain"
                        };
                        diags.push(
                            Diagnostic::error(
                                "Incomplete ingress settings",
                                format!("{missing}: public ports are exposed through an Ingress only with both `ingress_class` and `ingress_domain`; set {missing} too, or neither."),
                            )
                            .at(AttributePath::root(missing)),
                        );
                        None
                    }
                };
                use crate::runtime::kubernetes::pod_security::{PodSecurity, LEVELS};
                let pod_security = match self.setting(config.pod_security, ENV_POD_SECURITY) {
                    None => PodSecurity::default(),
                    Some(level) => PodSecurity::parse(&level).unwrap_or_else(|| {
                        diags.push(
                            Diagnostic::error(
                                "Unknown Pod Security level",
                                format!("pod_security: {level:?} is not a Pod Security Standard level; use one of {} (or leave it unset for \"restricted\").", LEVELS.map(|l| format!("{l:?}")).join(", ")),
                            )
                            .at(AttributePath::root("pod_security")),
                        );
                        PodSecurity::default()
                    }),
                };
                Some(RuntimeChoice::Kubernetes {
                    kubeconfig: self
                        .setting(config.kubeconfig, ENV_KUBECONFIG)
                        .map(PathBuf::from),
                    context: self.setting(config.kube_context, ENV_KUBE_CONTEXT),
                    ingress,
                    pod_security,
                })
            }
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
    use crate::runtime::kubernetes::KubernetesRuntime;
    use crate::runtime::local::{Home, LocalRuntime};
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
        RuntimeChoice::Kubernetes {
            kubeconfig,
            context,
            ingress,
            pod_security,
        } => {
            let in_cluster = kubeconfig.is_none()
                && context.is_none()
                && std::env::var_os("KUBECONFIG").is_none()
                && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
            let runtime = if in_cluster {
                KubernetesRuntime::in_cluster()
            } else {
                KubernetesRuntime::from_kubeconfig(kubeconfig.as_deref(), context.as_deref())
            }
            .map_err(|e| {
                Diagnostic::error("Cannot use the kubernetes runtime", e.to_string())
                    .at(AttributePath::root(e.setting.attribute()))
            })?;
            let runtime = match ingress {
                Some((class, domain)) => {
                    runtime.with_ingress(crate::runtime::kubernetes::mapping::IngressSettings {
                        class,
                        domain,
                    })
                }
                None => runtime,
            };
            Ok(Arc::new(runtime.with_pod_security(pod_security)))
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
                        .description(format!("kubernetes runtime: the kubeconfig file. Defaults to ${ENV_KUBECONFIG}, then $KUBECONFIG or ~/.kube/config, or the pod's service account inside a cluster.")),
                )
                .attribute(
                    Attribute::string("kube_context")
                        .optional()
                        .description(format!("kubernetes runtime: the kubeconfig context. Defaults to ${ENV_KUBE_CONTEXT}, then the current context.")),
                )
                .attribute(
                    Attribute::string("ingress_class")
                        .optional()
                        .description(format!("kubernetes runtime: expose public ports through Ingresses of this class (with ingress_domain). Defaults to ${ENV_INGRESS_CLASS}.")),
                )
                .attribute(
                    Attribute::string("ingress_domain")
                        .optional()
                        .description(format!("kubernetes runtime: public ports get host names under this domain. Defaults to ${ENV_INGRESS_DOMAIN}.")),
                )
                .attribute(
                    Attribute::string("pod_security")
                        .optional()
                        .description(format!("kubernetes runtime: the Pod Security Standard level the environments' namespaces enforce and the pods meet: \"restricted\" (the default), \"baseline\" (for images that must run as root) or \"privileged\". Defaults to ${ENV_POD_SECURITY}, then \"restricted\".")),
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
    use crate::runtime::kubernetes::pod_security::PodSecurity;
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
    async fn kubernetes_settings_and_unknown_runtimes() {
        let (p, opened) = provider(&[
            ("SLIPWAY_RUNTIME", "kubernetes"),
            (ENV_KUBE_CONTEXT, "staging"),
            (ENV_INGRESS_CLASS, "nginx"),
            (ENV_INGRESS_DOMAIN, "apps.example.com"),
            (ENV_POD_SECURITY, "baseline"),
        ]);
        p.build_client(ProviderConfig {
            kubeconfig: Some("/etc/kube/config".into()),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(
            opened.lock().unwrap()[0],
            RuntimeChoice::Kubernetes {
                kubeconfig: Some("/etc/kube/config".into()),
                context: Some("staging".into()),
                ingress: Some(("nginx".into(), "apps.example.com".into())),
                pod_security: PodSecurity::Baseline,
            }
        );
        let (p, _) = provider(&[("SLIPWAY_RUNTIME", "kubernetes")]);
        let err = p
            .build_client(ProviderConfig {
                pod_security: Some("strict".into()),
                ..Default::default()
            })
            .await
            .err()
            .unwrap();
        let text = format!("{err:?}");
        assert!(
            text.contains("Attribute(\"pod_security\")") && text.contains("baseline"),
            "{text}"
        );
        let (p, _) = provider(&[
            ("SLIPWAY_RUNTIME", "kubernetes"),
            (ENV_INGRESS_CLASS, "nginx"),
        ]);
        let err = p
            .build_client(ProviderConfig::default())
            .await
            .err()
            .unwrap();
        assert_eq!(
            err.0[0].attribute,
            Some(AttributePath::root("ingress_domain"))
        );

        // A kubeconfig that does not exist is a clear error, not a hang.
        let err = open_runtime(RuntimeChoice::Kubernetes {
            kubeconfig: Some("/definitely/not/a/kubeconfig".into()),
            context: None,
            ingress: None,
            pod_security: PodSecurity::default(),
        })
        .await
        .err()
        .unwrap();
        assert!(
            err.detail.contains("/definitely/not/a/kubeconfig"),
            "{}",
            err.detail
        );
        assert_eq!(err.attribute, Some(AttributePath::root("kubeconfig")));

        // A context the kubeconfig does not have names `kube_context` and the contexts
        // it has.
        let dir = crate::resources::testing::ScratchDir::new();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: dev\n  context:\n    cluster: c\n    user: u\ncurrent-context: dev\n",
        )
        .unwrap();
        let err = open_runtime(RuntimeChoice::Kubernetes {
            kubeconfig: Some(kubeconfig.clone()),
            context: Some("prod".into()),
            ingress: None,
            pod_security: PodSecurity::default(),
        })
        .await
        .err()
        .unwrap();
        assert_eq!(err.attribute, Some(AttributePath::root("kube_context")));
        assert!(
            err.detail.contains("\"prod\"") && err.detail.contains("(it has: dev)"),
            "{}",
            err.detail
        );
        assert!(err.detail.contains("Set `kube_context`"), "{}", err.detail);
        open_runtime(RuntimeChoice::Kubernetes {
            kubeconfig: Some(kubeconfig),
            context: Some("dev".into()),
            ingress: None,
            pod_security: PodSecurity::default(),
        })
        .await
        .unwrap();

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
