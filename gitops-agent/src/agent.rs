//! The long-running service (`slipway-agent run`): resolves secrets, recovers jobs a
//! previous process left running, starts one worker per root, the GitHub reporter, the
//! poller and the HTTP server, and writes the bound address to `<data_dir>/agent.addr` so scripts (and the
//! tests) can find a port chosen by the OS.

use std::sync::Arc;

use anyhow::Context as _;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::config::{Config, Secret};
use crate::db::Db;
use crate::git::GitAccess;
use crate::github::GitHub;
use crate::metrics::Metrics;
use crate::queue::IntakeWriter;
use crate::report::Reporter;
use crate::runner::Runner;
use crate::state::AppState;

/// The resolved secrets.
pub struct ResolvedSecrets {
    pub webhook_secret: Option<Secret>,
    pub api_token: Option<Secret>,
    pub git_token: Option<Secret>,
    pub signing_key: ed25519_dalek::SigningKey,
    pub signing_key_text: Secret,
}

/// Reads every configured secret; an error names the key.
pub fn resolve_secrets(config: &Config) -> anyhow::Result<ResolvedSecrets> {
    let s = &config.secrets;
    let opt = |source: &Option<crate::config::SecretSource>,
               key: &str|
     -> anyhow::Result<Option<Secret>> {
        source
            .as_ref()
            .map(|src| src.resolve(key))
            .transpose()
            .map_err(Into::into)
    };
    let signing_key_text = opt(&s.signing_key, "secrets.signing_key")?
        .context("configuration key `secrets.signing_key` is required")?;
    let signing_key = slipway_provenance::parse_signing_key(signing_key_text.expose())
        .map_err(|e| anyhow::anyhow!("configuration key `secrets.signing_key`: {e}"))?;
    Ok(ResolvedSecrets {
        webhook_secret: opt(&s.webhook_secret, "secrets.webhook_secret")?,
        api_token: opt(&s.api_token, "secrets.api_token")?,
        git_token: opt(&s.git_token, "secrets.git_token")?,
        signing_key,
        signing_key_text,
    })
}

/// The platform `/mcp` reaches, when the MCP server is on.
pub fn mcp_platform(config: &Config) -> Option<Arc<crate::mcp::Platform>> {
    if !config.mcp.enabled {
        return None;
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let target = crate::mcp::Target::resolve(
        config
            .mcp
            .platform_endpoint
            .clone()
            .or_else(|| env("SLIPWAY_ENDPOINT")),
        config
            .mcp
            .platform_ca_file
            .clone()
            .or_else(|| env("SLIPWAY_CA_FILE").map(Into::into)),
        &|name| std::env::var(name).ok(),
    );
    match target {
        Ok(target) => Some(Arc::new(crate::mcp::Platform::new(target))),
        // No platform to reach (no endpoint, no home directory): the agent's own work
        // goes on; only /mcp is off, and says so once.
        Err(e) => {
            tracing::warn!(error = %e, "the MCP server at /mcp is off: it has no platform to reach; set [mcp] platform_endpoint or SLIPWAY_HOME");
            None
        }
    }
}

/// Runs the agent until SIGINT or SIGTERM, then shuts down as [`shut_down`] says.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let secrets = resolve_secrets(&config)?;
    if secrets.webhook_secret.is_none() {
        tracing::warn!("secrets.webhook_secret is not set: POST /webhooks/github answers 404");
    }
    let github = config.github.as_ref().map(GitHub::connect).transpose()?;
    slipway_platform::store::create_private_dir(&config.data_dir)
        .with_context(|| format!("create data_dir {}", config.data_dir.display()))?;
    // Opening a shared store connects over the network: off the async threads.
    let (location, key) = (config.database.clone(), secrets.signing_key.clone());
    let (db, recovered) = tokio::task::spawn_blocking(move || {
        let db = Db::open_at(&location)?;
        let recovered = crate::queue::recover_interrupted(db.store(), &key)?;
        Ok::<_, crate::db::DbError>((db, recovered))
    })
    .await
    .context("open the agent's database")??;
    for job in &recovered {
        tracing::warn!(job = job.id, commit = %job.commit_sha, "job was interrupted by the previous agent process; queued again");
    }
    crate::job_credential::clean(&config.data_dir).with_context(|| {
        format!(
            "clean the job credentials in {}",
            crate::job_credential::credentials_dir(&config.data_dir).display()
        )
    })?;
    let removed = crate::work_dirs::clean_work_root(&config).with_context(|| {
        format!(
            "clean the work trees under {}",
            crate::work_dirs::work_root(&config).display()
        )
    })?;
    if removed > 0 {
        tracing::info!(removed, "removed work trees a previous agent process left");
    }

    let notify = Arc::new(Notify::new());
    let writer = IntakeWriter::spawn(&db, notify.clone())?;
    let drift_writer = writer.clone();
    // Every secret value is removed from stored output; the GitHub token's too.
    let mut redact = vec![secrets.signing_key_text.clone()];
    redact.extend(
        [
            &secrets.webhook_secret,
            &secrets.api_token,
            &secrets.git_token,
        ]
        .into_iter()
        .flatten()
        .cloned(),
    );
    if let Some(crate::config::GithubAuth::Token(source)) = config.github.as_ref().map(|g| &g.auth)
    {
        redact.push(source.resolve("github.token")?);
    }
    let secret_env_vars = config
        .secret_sources()
        .into_iter()
        .filter_map(|(_, src)| src.env.clone())
        .collect();
    let metrics = Arc::new(Metrics::new());
    let runner = Arc::new(Runner {
        config: config.clone(),
        db: db.clone(),
        key: secrets.signing_key.clone(),
        secrets: redact,
        secret_env_vars,
        git: Arc::new(GitAccess::new(
            &config.data_dir,
            secrets.git_token.clone(),
            github.clone(),
        )),
        github: github.clone(),
        slots: Arc::new(Semaphore::new(config.max_parallel)),
        notify,
        metrics: metrics.clone(),
        stopping: std::sync::atomic::AtomicBool::new(false),
        abort: tokio::sync::watch::Sender::new(false),
    });
    runner.spawn_workers();
    if config
        .repositories
        .iter()
        .any(|r| r.roots.iter().any(|root| root.drift.is_some()))
    {
        tokio::spawn(crate::drift::run(runner.clone(), drift_writer));
    }
    let reporter = match github {
        Some(github) => {
            let reporter =
                Arc::new(Reporter::new(config.clone(), &db, github, metrics.clone()).await?);
            tokio::spawn(reporter.clone().run());
            Some(reporter)
        }
        None => None,
    };

    let authority = Arc::new(crate::identities::open(
        &config,
        Some(secrets.signing_key.verifying_key()),
    )?);
    let state = Arc::new(AppState {
        config: config.clone(),
        db,
        writer,
        webhook_secret: secrets.webhook_secret,
        api_token: secrets.api_token,
        authority,
        runner: runner.clone(),
        metrics,
    });
    if config.poller_enabled {
        tokio::spawn(crate::poller::run(state.clone()));
    }
    if config
        .repositories
        .iter()
        .any(|r| r.roots.iter().any(|root| root.preview.is_some()))
    {
        tokio::spawn(crate::preview_sweep::run(state.clone()));
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "configuration key `server.listen`: cannot listen on {}",
                config.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let addr_file = config.data_dir.join("agent.addr");
    std::fs::write(&addr_file, addr.to_string())
        .with_context(|| format!("write {}", addr_file.display()))?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "slipway-agent listening");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = crate::http::server::Limits::default().within_fd_limit();
    tracing::info!(
        max_connections = limits.max_connections,
        max_per_peer = limits.max_per_peer,
        "HTTP limits"
    );
    let server = tokio::spawn(crate::http::server::serve(
        listener,
        crate::http::router(state, mcp_platform(&config)),
        limits,
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(5),
    ));
    shutdown_signal().await;
    shut_down(&runner, config.shutdown_grace).await;
    if let Some(reporter) = &reporter {
        // What the stopped jobs ended with reaches GitHub now, not at the next start.
        reporter.flush(REPORT_FLUSH).await;
    }
    let _ = stop_tx.send(());
    if tokio::time::timeout(Duration::from_secs(6), server)
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after 5 s; closing them");
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long a graceful stop waits for GitHub to take the last reports.
const REPORT_FLUSH: Duration = Duration::from_secs(15);

/// The orderly stop after SIGTERM or SIGINT: no new job starts and `/readyz` answers
/// 503 at once; a running job may finish within the grace period (Terraform must not
/// be killed mid-apply by a routine restart). Past it, or on a second signal,
/// Terraform is interrupted with SIGINT (it saves its state) and the job is left to be
/// recorded as interrupted and re-run at the next start.
pub async fn shut_down(runner: &Runner, grace: Duration) {
    runner
        .stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "stopping: no new jobs; a running job may finish within the grace period (signal again to stop now)"
    );
    let finished = tokio::select! {
        _ = runner.drain() => true,
        _ = tokio::time::sleep(grace) => false,
        _ = shutdown_signal() => false,
    };
    if finished {
        tracing::info!("no job running; stopping");
        return;
    }
    tracing::warn!("interrupting the running job; it will run again after the restart");
    runner.abort_running();
    if tokio::time::timeout(Duration::from_secs(30), runner.drain())
        .await
        .is_err()
    {
        tracing::error!("a job did not stop within 30 s of being interrupted; exiting anyway");
    }
}
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
