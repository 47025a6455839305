//! `terraform-provider-slipway runtime …`: a small CLI for people to see what the local
//! runtime runs, read replica logs, and stop the daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use super::client::LocalRuntime;
use super::home::Home;
use super::proto as pb;
use crate::kubernetes::mapping::IngressSettings;
use crate::kubernetes::pod_security::PodSecurity;
use crate::kubernetes::{Connection, KubernetesRuntime};
use crate::{Runtime as _, RuntimeError};

/// The commands, for the provider binary's `--help`.
pub const SUMMARY: &str = "The same binary is the local runtime's command line:\n  \
terraform-provider-slipway runtime status            applications, replicas and endpoints\n  \
terraform-provider-slipway runtime logs APPLICATION  a replica's last log lines (secrets redacted)\n  \
terraform-provider-slipway runtime stop              stop every replica and the daemon\n  \
terraform-provider-slipway runtime serve             run the platform in the foreground (systemd)\n  \
terraform-provider-slipway runtime serve --backend kubernetes --kubeconfig FILE  the platform for a cluster\n  \
terraform-provider-slipway runtime audit list|verify  the platform's audit log, and checking it\n  \
terraform-provider-slipway runtime token create|list|revoke  the platform's named tokens\n  \
terraform-provider-slipway runtime --help            all options (--home DIR, logs -n LINES)";

#[derive(Debug, Parser)]
#[command(
    name = "terraform-provider-slipway runtime",
    about = "Inspect and stop Slipway's local runtime daemon"
)]
struct Cli {
    /// The Slipway home directory (default: $SLIPWAY_HOME, else the user's data directory).
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists applications with their endpoints and replicas.
    Status,
    /// Prints the last lines of an application's replica logs (secrets redacted).
    Logs {
        /// An application: `environment/name`, a name unique across environments, or an id.
        application: String,
        /// How many lines per replica log.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: u32,
    },
    /// Stops every replica gracefully and stops the daemon. The desired state is kept:
    /// the next Terraform run starts the daemon again and brings everything back.
    Stop,
    /// Runs the daemon (the platform) in the foreground until SIGTERM, for a
    /// supervisor such as systemd; fails when another daemon already serves the home.
    Serve(ServeArgs),
    /// The platform's audit log: every change and every refusal, from every path.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The embedded platform's named tokens (people, AI agents, CI), each with a role.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// What `runtime serve` runs the applications on. These are the platform's own
/// settings: a Terraform configuration reaches the platform, never the cluster.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// `local`: this machine's processes; `kubernetes`: a cluster that only this platform
    /// reaches (with the settings below), so that every change there goes through its
    /// identities, policy and audit log.
    #[arg(long, value_enum, default_value_t = BackendName::Local)]
    backend: BackendName,
    /// kubernetes: the kubeconfig file (default: $KUBECONFIG or ~/.kube/config, or the
    /// pod's service account inside a cluster).
    #[arg(long, env = "SLIPWAY_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// kubernetes: the kubeconfig context (default: its current context).
    #[arg(long, env = "SLIPWAY_KUBE_CONTEXT")]
    kube_context: Option<String>,
    /// kubernetes: expose public ports through Ingresses of this class (with
    /// --ingress-domain).
    #[arg(long, env = "SLIPWAY_INGRESS_CLASS", requires = "ingress_domain")]
    ingress_class: Option<String>,
    /// kubernetes: public ports get host names under this domain (with --ingress-class).
    #[arg(long, env = "SLIPWAY_INGRESS_DOMAIN", requires = "ingress_class")]
    ingress_domain: Option<String>,
    /// kubernetes: the Pod Security Standard level the namespaces enforce and the pods
    /// meet: restricted, baseline (for images that must run as root) or privileged.
    #[arg(long, env = "SLIPWAY_POD_SECURITY", default_value = "restricted", value_parser = pod_security)]
    pod_security: PodSecurity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendName {
    Local,
    Kubernetes,
}

fn pod_security(level: &str) -> Result<PodSecurity, String> {
    PodSecurity::parse(level).ok_or_else(|| {
        format!(
            "{level:?} is not a Pod Security Standard level; use one of {}",
            crate::kubernetes::pod_security::LEVELS.join(", ")
        )
    })
}

impl ServeArgs {
    /// The cluster connection these flags describe.
    fn connection(&self) -> Connection {
        Connection {
            kubeconfig: self.kubeconfig.clone(),
            context: self.kube_context.clone(),
            ingress: match (&self.ingress_class, &self.ingress_domain) {
                (Some(class), Some(domain)) => Some(IngressSettings {
                    class: class.clone(),
                    domain: domain.clone(),
                }),
                _ => None,
            },
            pod_security: self.pod_security,
        }
    }
}

/// `runtime serve`: the platform, on the backend its flags choose.
async fn serve(home: Home, args: &ServeArgs) -> ExitCode {
    match args.backend {
        BackendName::Local => super::serve(home, true).await,
        BackendName::Kubernetes => match KubernetesRuntime::connect(&args.connection()) {
            Ok(runtime) => super::serve_owning(home, std::sync::Arc::new(runtime)).await,
            Err(e) => {
                eprintln!("error: {}: {e}", e.setting.flag());
                ExitCode::from(2)
            }
        },
    }
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Creates an identity and prints its token (alone on stdout), shown this once.
    Create {
        /// Who it is for: `alice`, `claude-code@alice`, `ci`.
        #[arg(long)]
        name: String,
        /// admin, developer, agent (an AI coding agent), viewer (reads only) or approver
        /// (approves held STAGING merges).
        #[arg(long)]
        role: slipway_platform::Role,
    },
    /// Lists identities: names, roles, dates; never a token.
    List,
    /// Revokes an identity: its token stops working at once.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Prints every record, oldest first (one JSON object per line with --json).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Checks every record's hash, link and signature, and the newest against the
    /// signed checkpoint; exits 1 and names each record at fault when one fails.
    Verify,
}

/// Runs the CLI on `args` (without the program name and `runtime`).
pub async fn run(args: Vec<std::ffi::OsString>) -> ExitCode {
    let argv = std::iter::once(std::ffi::OsString::from("runtime")).chain(args);
    // Usage lines read `terraform-provider-slipway runtime ...`, as a person types it.
    let command =
        <Cli as clap::CommandFactory>::command().bin_name("terraform-provider-slipway runtime");
    let parsed = command
        .try_get_matches_from(argv)
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let root = match cli.home.map(Ok).unwrap_or_else(Home::default_root) {
        Ok(root) => root,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let home = Home::new(root);
    if let Command::Serve(args) = &cli.command {
        return serve(home, args).await;
    }
    if let Command::Token { command } = &cli.command {
        // Tokens live in the platform's database, which needs no running daemon.
        return tokens(&home, command);
    }
    let runtime = match LocalRuntime::connect(&home).await {
        Ok(runtime) => runtime,
        Err(e @ (RuntimeError::Unauthenticated(_) | RuntimeError::Invalid(_))) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        Err(_) => {
            println!(
                "The local runtime daemon is not running (home {}).",
                home.root().display()
            );
            return match cli.command {
                Command::Stop | Command::Status => ExitCode::SUCCESS,
                Command::Logs { .. }
                | Command::Audit { .. }
                | Command::Token { .. }
                | Command::Serve(_) => ExitCode::FAILURE,
            };
        }
    };
    let result = match cli.command {
        Command::Status => status(&runtime).await,
        Command::Logs { application, lines } => logs(&runtime, &application, lines).await,
        Command::Audit {
            command: AuditCommand::List { json },
        } => audit_list(&runtime, json).await,
        Command::Audit {
            command: AuditCommand::Verify,
        } => audit_verify(&runtime).await,
        Command::Token { .. } | Command::Serve(_) => Ok(()),
        Command::Stop => runtime
            .shutdown(Duration::from_secs(60))
            .await
            .map(|()| println!("The local runtime daemon stopped.")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn phase(p: i32) -> &'static str {
    match pb::Phase::try_from(p) {
        Ok(pb::Phase::Running) => "running",
        Ok(pb::Phase::Progressing) => "progressing",
        Ok(pb::Phase::Stopped) => "stopped",
        Ok(pb::Phase::Failed) | Err(_) => "failed",
    }
}

async fn status(runtime: &LocalRuntime) -> Result<(), crate::RuntimeError> {
    let info = runtime.info().await?;
    if super::client::backend_of(&info) == crate::RuntimeKind::Kubernetes {
        println!(
            "Slipway platform pid {} (version {}), home {}, backend kubernetes",
            info.pid, info.version, info.home
        );
        let environments = runtime.list_environments().await?;
        println!("{} environment(s) on the cluster; its applications: `kubectl get deployments -A -l app.kubernetes.io/managed-by=slipway`", environments.len());
        return Ok(());
    }
    let status = runtime.status().await?;
    println!(
        "Local runtime daemon pid {} (version {}), home {}",
        info.pid, info.version, info.home
    );
    println!(
        "{} environment(s), {} application(s)",
        status.environments,
        status.applications.len()
    );
    for app in &status.applications {
        println!(
            "\n{}/{}  {}  {}/{} ready  (id {}, generation {})",
            app.environment,
            app.name,
            phase(app.phase),
            app.ready_replicas,
            app.desired_replicas,
            app.id,
            app.generation
        );
        for (name, url) in &app.endpoints {
            println!("  endpoint {name}: {url}");
        }
        if let Some(message) = &app.message {
            println!("  {}", message.replace('\n', "\n  "));
        }
        for r in &app.replicas {
            let ports: Vec<String> = r.ports.iter().map(|(n, p)| format!("{n}={p}")).collect();
            println!(
                "  replica {:<8} {:<10} pid {:<8} restarts {:<3} ports {}{}",
                r.id,
                r.state,
                r.pid,
                r.restarts,
                ports.join(","),
                r.last_error
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

async fn logs(
    runtime: &LocalRuntime,
    application: &str,
    lines: u32,
) -> Result<(), crate::RuntimeError> {
    for line in runtime.logs(application, lines).await? {
        println!("[{}] {}", line.replica, line.line);
    }
    Ok(())
}

async fn audit_list(runtime: &LocalRuntime, json: bool) -> Result<(), crate::RuntimeError> {
    let audit = runtime.audit().await?;
    for record in &audit.records {
        if json {
            println!("{record}");
            continue;
        }
        let Ok(r) = serde_json::from_str::<serde_json::Value>(record) else {
            println!("{record}");
            continue;
        };
        let text = |k: &str| r[k].as_str().unwrap_or("").to_owned();
        let at = r["at_ms"].as_i64().unwrap_or(0);
        let fields: Vec<&str> = r["fields"]
            .as_array()
            .map(|f| f.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        println!(
            "{:>5} {} {:<9} {:<24} {:<16} {:<11} {} ({}){}{}{}",
            r["seq"],
            at,
            text("outcome"),
            text("who"),
            match r["tool"].as_str() {
                Some(tool) => format!("{}:{tool}", text("how")),
                None => text("how"),
            },
            text("action"),
            text("object"),
            text("mode"),
            if fields.is_empty() {
                String::new()
            } else {
                format!(" fields {}", fields.join(","))
            },
            r["commit"]
                .as_str()
                .map(|c| format!(" commit {c}"))
                .unwrap_or_default(),
            r["reason"]
                .as_str()
                .map(|c| format!("\n      {c}"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

async fn audit_verify(runtime: &LocalRuntime) -> Result<(), crate::RuntimeError> {
    let audit = runtime.audit().await?;
    println!(
        "{} record(s); the newest checked against {}",
        audit.records.len(),
        audit.head_checked_against
    );
    if audit.problems.is_empty() {
        println!("The audit log verifies.");
        return Ok(());
    }
    for problem in &audit.problems {
        println!("  {problem}");
    }
    Err(crate::RuntimeError::Invalid(format!(
        "the audit log does not verify: {} problem(s)",
        audit.problems.len()
    )))
}

fn tokens(home: &Home, command: &TokenCommand) -> ExitCode {
    use slipway_platform::tokens;
    if let Err(e) = home.create() {
        eprintln!("error: cannot create {}: {e}", home.root().display());
        return ExitCode::FAILURE;
    }
    let db = home.platform_db();
    let (mut out, mut note) = (std::io::stdout().lock(), std::io::stderr().lock());
    let result = match command {
        TokenCommand::Create { name, role } => {
            tokens::create(&db, name, *role, &mut out, &mut note)
        }
        TokenCommand::List => tokens::list(&db, &mut out),
        TokenCommand::Revoke { name } => tokens::revoke(&db, name, &mut note),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
