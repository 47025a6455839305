//! The command line: `run`, `deploy`, `audit list|show|export|verify`,
//! `token create|list|revoke`, `keygen` and `check-config`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use slipway_provenance::Trigger;

use crate::approvals;
use crate::audit;
use crate::config::Config;
use crate::deploy::DeployRequest;
use crate::queue::{Intake, IntakeOutcome};

/// Slipway's GitOps agent: applies every merge to the tracked branch with Terraform,
/// durably, and records who changed what, when, how and from which commit.
#[derive(Debug, Parser)]
#[command(
    name = "slipway-agent",
    version,
    propagate_version = true,
    after_help = "Start with `slipway-agent keygen`, write a configuration (see deploy/slipway-agent.toml), check it with `slipway-agent check-config`, then `slipway-agent run`.\nLogs go to stderr; SLIPWAY_LOG sets the level (e.g. `info,slipway_agent=debug`)."
)]
pub struct Cli {
    /// The agent's TOML configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "SLIPWAY_CONFIG",
        default_value = "slipway-agent.toml"
    )]
    pub config: PathBuf,
    /// Log format on stderr: `text` for people, `json` (one object per line) for log
    /// collectors.
    #[arg(long, global = true, env = "SLIPWAY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: the webhook and API server, the poller, the job workers and the
    /// GitHub reporter.
    ///
    /// HTTP: POST /webhooks/github, POST /api/v1/deploy (admin tokens), GET
    /// /api/v1/jobs/ID/log (any token; both with `Authorization: Bearer <token>`, from
    /// `slipway-agent token create` or `secrets.api_token`), GET /healthz, /readyz
    /// and /metrics.
    ///
    /// On SIGTERM or SIGINT it takes no new work and lets a running job finish within
    /// `shutdown_grace_secs` (90 by default); past that, or on a second signal, it
    /// interrupts Terraform (SIGINT, so state is saved) and the job runs again after
    /// the restart.
    Run,
    /// Queue a deployment by hand (trigger `manual`).
    ///
    /// Writes straight into the agent's durable queue, so it works whether or not the
    /// agent is running; a running agent picks the job up within a second.
    Deploy {
        /// The repository's configured `name`.
        #[arg(long)]
        repository: String,
        /// Deploy only this root (repeatable); every root of the repository by default.
        #[arg(long = "root")]
        roots: Vec<String>,
        /// The full commit SHA; the tracked branch's tip on the remote by default.
        #[arg(long)]
        commit: Option<String>,
        /// Who is deploying, for the audit log; `$USER` by default.
        #[arg(long, env = "USER")]
        actor: Option<String>,
    },
    /// Approve a merge job that waits for an approval (`awaiting_approval`).
    ///
    /// Authenticates with the platform token in SLIPWAY_TOKEN, which must belong to an
    /// identity with the approver role that did not author the change. The job runs
    /// next (a running agent picks it up within a second); a refusal is recorded in
    /// the audit log too.
    Approve {
        /// The job's id (from `slipway-agent audit list`, the agent's log, or GitHub).
        job: i64,
    },
    /// Read and check the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Create, list and revoke the named tokens that call the API.
    ///
    /// Each token belongs to an identity with a role: `admin` (may deploy),
    /// `developer` and `agent` (an AI coding agent; DEVELOPMENT and PREVIEW), `viewer`
    /// (reads only). The identity's name is the audit log's "who". Tokens are kept
    /// only as SHA-256 digests in `<data_dir>/platform.db` (mode 0600).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Write a new Ed25519 signing key pair for provenance and the audit log.
    ///
    /// Writes `<out>/slipway-agent.key` (base64 of the 32-byte seed, mode 0600) and
    /// `<out>/slipway-agent.pub` (base64 of the 32-byte public key, for the provider).
    Keygen {
        /// Directory to write the key pair into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Check the configuration file and its secrets, then exit.
    CheckConfig,
    /// Serve MCP (Model Context Protocol) on stdin/stdout for an AI coding agent.
    ///
    /// Acts as the platform token in SLIPWAY_TOKEN (never as the local user): the
    /// platform decides what it may do and records it. Reaches the embedded platform of
    /// this machine's Slipway home (SLIPWAY_HOME) unless --endpoint names a team's.
    /// Needs no configuration file. See docs/mcp.md.
    Mcp {
        /// A team's platform over TLS (`https://host:port`).
        #[arg(long, env = "SLIPWAY_ENDPOINT")]
        endpoint: Option<String>,
        /// A PEM file with the CA that signed the endpoint's certificate.
        #[arg(long, env = "SLIPWAY_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an identity and print its token on stdout, this once.
    Create {
        /// The identity's name, as the audit log shows it (e.g. `alice`,
        /// `claude-code@alice`): letters, digits, `.`, `_`, `-`, `@`.
        #[arg(long)]
        name: String,
        /// admin, developer, agent, viewer or approver.
        #[arg(long, value_parser = parse_role)]
        role: slipway_platform::Role,
    },
    /// Every identity with its role and dates (never a token).
    List,
    /// Revoke an identity: its token stops working at once.
    Revoke {
        /// The identity's name.
        name: String,
    },
}

fn parse_role(text: &str) -> Result<slipway_platform::Role, String> {
    text.parse()
        .map_err(|e: slipway_platform::identity::UnknownRole| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// One line per record, oldest first.
    List {
        /// Show only the newest N records.
        #[arg(long)]
        last: Option<usize>,
    },
    /// Every field of one record.
    Show {
        /// The record's sequence number (the first column of `audit list`).
        seq: i64,
    },
    /// The whole log, with hashes and signatures.
    Export {
        /// Write JSON (the only format; the flag makes scripts explicit).
        #[arg(long, required = true)]
        json: bool,
    },
    /// Check the hash chain and signatures; exit 1 naming each record edited, deleted
    /// or reordered.
    Verify,
}

/// Runs the parsed command; returns the process exit code.
pub fn main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Keygen { out, force } => keygen(&out, force),
        Command::Mcp { endpoint, ca_file } => {
            let target =
                crate::mcp::Target::resolve(endpoint, ca_file, &|name| std::env::var(name).ok())?;
            let platform = std::sync::Arc::new(crate::mcp::Platform::new(target));
            let token = std::env::var("SLIPWAY_TOKEN").ok();
            let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
            runtime.block_on(crate::mcp::serve_stdio(platform, token.as_deref()))?;
            Ok(0)
        }
        Command::Run => {
            let config = Config::load(&cli.config)?;
            let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
            runtime.block_on(crate::agent::run(config))?;
            Ok(0)
        }
        Command::CheckConfig => {
            let config = Config::load(&cli.config)?;
            crate::agent::resolve_secrets(&config)?;
            if let Some(github) = &config.github {
                // Reads the token or App key, and checks that the key is an RSA key.
                let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
                runtime.block_on(async { crate::github::GitHub::connect(github).map(|_| ()) })?;
            }
            let roots: usize = config.repositories.iter().map(|r| r.roots.len()).sum();
            println!(
                "{}: ok ({} repositories, {} roots)",
                cli.config.display(),
                config.repositories.len(),
                roots
            );
            Ok(0)
        }
        Command::Deploy {
            repository,
            roots,
            commit,
            actor,
        } => {
            let config = Config::load(&cli.config)?;
            let secrets = crate::agent::resolve_secrets(&config)?;
            let request = DeployRequest {
                repository,
                roots,
                commit,
                actor,
            };
            // Asking an HTTP(S) remote for its tip may need the GitHub App's token.
            let http_remote = config
                .repository(&request.repository)
                .is_some_and(|r| crate::git::is_http(&r.url));
            let git_token = match (&secrets.git_token, &config.github, &request.commit) {
                (None, Some(github), None) if http_remote => {
                    let runtime =
                        tokio::runtime::Runtime::new().context("start the async runtime")?;
                    runtime.block_on(async {
                        let client = crate::github::GitHub::connect(github)?;
                        client.git_token().await.map_err(anyhow::Error::from)
                    })?
                }
                _ => secrets.git_token.clone(),
            };
            let jobs =
                crate::deploy::resolve(&config, &request, Trigger::Manual, git_token.as_ref())?;
            let commit = jobs.commit_sha.clone();
            let db = crate::db::Db::open_at(&config.database)?;
            let outcome = crate::queue::intake(db.store(), &[Intake::Jobs(jobs)])?;
            if let Some(IntakeOutcome::Enqueued(ids)) = outcome.first() {
                println!("queued commit {commit} as job(s) {ids:?}");
            }
            Ok(0)
        }
        Command::Token { command } => {
            let config = Config::load(&cli.config)?;
            match command {
                TokenCommand::Create { name, role } => {
                    crate::identities::create(&config, &name, role)
                }
                TokenCommand::List => crate::identities::list(&config),
                TokenCommand::Revoke { name } => crate::identities::revoke(&config, &name),
            }
        }
        Command::Approve { job } => {
            let config = Config::load(&cli.config)?;
            let token = std::env::var("SLIPWAY_TOKEN").ok();
            approve(&config, job, token.as_deref())
        }
        Command::Audit { command } => {
            let config = Config::load(&cli.config)?;
            let db = crate::db::Db::open_existing_at(&config.database)?;
            let tx = db.store().begin(crate::store::Access::Read)?;
            audit_command(&config, &*tx, command)
        }
    }
}

fn audit_command(
    config: &Config,
    tx: &dyn crate::store::AgentTx,
    command: AuditCommand,
) -> anyhow::Result<i32> {
    let mut stdout = std::io::stdout().lock();
    match command {
        AuditCommand::List { last } => {
            let records = audit::list(tx)?;
            let skip = last.map_or(0, |n| records.len().saturating_sub(n));
            writeln!(
                stdout,
                "{:>5}  {:<24}  {:<11}  {:<8}  {:<30}  {:<12}  PR",
                "SEQ", "ENDED (UTC)", "OUTCOME", "TRIGGER", "REPOSITORY/ROOT", "COMMIT"
            )?;
            for r in records.iter().skip(skip).map(|s| &s.record) {
                writeln!(
                    stdout,
                    "{:>5}  {:<24}  {:<11}  {:<8}  {:<30}  {:<12}  {}",
                    r.seq,
                    r.ended_at,
                    r.outcome,
                    r.trigger,
                    format!("{}/{}", r.repository, r.root),
                    r.commit_sha.get(..12).unwrap_or(&r.commit_sha),
                    r.pull_request.map_or("-".into(), |n| format!("#{n}"))
                )?;
            }
            Ok(0)
        }
        AuditCommand::Show { seq } => {
            match audit::get(tx, seq)? {
                Some(record) => {
                    writeln!(stdout, "{}", serde_json::to_string_pretty(&record)?)?;
                    if let Some(job) = record.record.job_id {
                        let log = crate::work_dirs::output_log(config, job);
                        if log.exists() {
                            writeln!(stdout, "terraform output (redacted): {}", log.display())?;
                        }
                    }
                    Ok(0)
                }
                None => {
                    eprintln!("no audit record {seq}; `slipway-agent audit list` shows the sequence numbers");
                    Ok(1)
                }
            }
        }
        AuditCommand::Export { .. } => {
            let records = audit::list(tx)?;
            serde_json::to_writer_pretty(&mut stdout, &records)?;
            writeln!(stdout)?;
            Ok(0)
        }
        AuditCommand::Verify => {
            let key = match crate::agent::resolve_secrets(config) {
                Ok(s) => Some(s.signing_key.verifying_key()),
                Err(e) => {
                    eprintln!(
                        "warning: signatures not checked ({e}); checking the hash chain only"
                    );
                    None
                }
            };
            let v = audit::verify(tx, key.as_ref())?;
            if v.problems.is_empty() {
                writeln!(
                    stdout,
                    "audit log OK: {} records, hash chain intact{}, head {}",
                    v.records,
                    if v.signatures_checked {
                        ", signatures valid"
                    } else {
                        ""
                    },
                    v.head.as_deref().unwrap_or("(empty)")
                )?;
                Ok(0)
            } else {
                for p in &v.problems {
                    writeln!(stdout, "TAMPERED {p}")?;
                }
                writeln!(
                    stdout,
                    "audit log FAILED verification: {} problem(s) in {} records",
                    v.problems.len(),
                    v.records
                )?;
                Ok(1)
            }
        }
    }
}

/// `slipway-agent approve JOB`: `token` (SLIPWAY_TOKEN) names the approver.
fn approve(config: &Config, id: i64, token: Option<&str>) -> anyhow::Result<i32> {
    let secrets = crate::agent::resolve_secrets(config)?;
    let authority = crate::identities::open(config, None)?;
    let caller = authority
        .authenticate(token, crate::db::now_ms())
        .map_err(|e| anyhow::anyhow!("SLIPWAY_TOKEN: {e}"))?;
    let slipway_platform::Caller::Identity(identity) = caller else {
        anyhow::bail!("SLIPWAY_TOKEN: a job credential cannot approve; use an approver's token");
    };
    let approver = approvals::Approver {
        name: identity.name,
        role: identity.role,
        login: None,
        via: approvals::Via::Cli,
    };
    let db = crate::db::Db::open_existing_at(&config.database)?;
    match approvals::approve(
        db.store(),
        &secrets.signing_key,
        &config.approvals,
        id,
        &approver,
    ) {
        Ok(job) => {
            println!(
                "approved job {id} ({}/{} at {}) as {}; it runs next",
                job.repository, job.root, job.commit_sha, approver.name
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(1)
        }
    }
}

fn keygen(out: &Path, force: bool) -> anyhow::Result<i32> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let key_path = out.join("slipway-agent.key");
    let pub_path = out.join("slipway-agent.pub");
    if !force && (key_path.exists() || pub_path.exists()) {
        anyhow::bail!(
            "{} or {} already exists; pass --force to replace it",
            key_path.display(),
            pub_path.display()
        );
    }
    let key = slipway_provenance::generate_signing_key()?;
    write_private(&key_path, &slipway_provenance::encode_signing_key(&key))?;
    std::fs::write(
        &pub_path,
        format!(
            "{}\n",
            slipway_provenance::encode_verifying_key(&key.verifying_key())
        ),
    )
    .with_context(|| format!("write {}", pub_path.display()))?;
    println!(
        "wrote {} (keep it secret) and {}",
        key_path.display(),
        pub_path.display()
    );
    Ok(0)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    file.write_all(format!("{text}\n").as_bytes())?;
    Ok(())
}
