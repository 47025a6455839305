//! The long-running service (`slipway-agent run`): resolves secrets, recovers jobs a
//! previous process left running, starts one worker per root, the poller and the HTTP
//! server, and writes the bound address to `<data_dir>/agent.addr` so scripts (and the
//! tests) can find a port chosen by the OS.

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{Notify, Semaphore};

use crate::config::{Config, Secret};
use crate::queue::IntakeWriter;
use crate::runner::{GitLocks, Runner};

/// State shared by the HTTP handlers.
pub struct AppState {
    pub config: Arc<Config>,
    pub writer: IntakeWriter,
    pub webhook_secret: Option<Secret>,
    pub api_token: Option<Secret>,
    pub git_token: Option<Secret>,
}

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

/// The HTTP routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/webhooks/github", post(crate::webhook::receive))
        .route("/api/v1/deploy", post(crate::api::deploy))
        .route("/healthz", get(crate::api::health))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let secrets = resolve_secrets(&config)?;
    if secrets.webhook_secret.is_none() {
        tracing::warn!("secrets.webhook_secret is not set: POST /webhooks/github answers 404");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data_dir {}", config.data_dir.display()))?;
    let db_path = config.database_path();
    let mut conn = crate::db::open(&db_path)?;
    let recovered = crate::queue::recover_interrupted(&mut conn, &secrets.signing_key)?;
    for job in &recovered {
        tracing::warn!(job = job.id, commit = %job.commit_sha, "job was interrupted by the previous agent process; queued again");
    }
    drop(conn);

    let notify = Arc::new(Notify::new());
    let writer = IntakeWriter::spawn(db_path, notify.clone())?;
    let git_locks = Arc::new(GitLocks::default());
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
    let s = &config.secrets;
    let secret_env_vars = [
        &s.webhook_secret,
        &s.api_token,
        &s.signing_key,
        &s.git_token,
    ]
    .into_iter()
    .flatten()
    .filter_map(|src| src.env.clone())
    .collect();
    let runner = Arc::new(Runner {
        config: config.clone(),
        key: secrets.signing_key.clone(),
        secrets: redact,
        secret_env_vars,
        git_token: secrets.git_token.clone(),
        git_locks: git_locks.clone(),
        slots: Arc::new(Semaphore::new(config.max_parallel)),
        notify,
        stopping: std::sync::atomic::AtomicBool::new(false),
    });
    runner.spawn_workers();

    let state = Arc::new(AppState {
        config: config.clone(),
        writer,
        webhook_secret: secrets.webhook_secret,
        api_token: secrets.api_token,
        git_token: secrets.git_token,
    });
    if config.poller_enabled {
        tokio::spawn(crate::poller::run(state.clone(), git_locks));
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
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    // Terraform must not be killed mid-apply by an orderly stop: let running jobs
    // finish (each is bounded by job_timeout_secs). A second signal stops at once; the
    // job is then recorded as interrupted at the next start and runs again.
    tracing::info!(
        "stopping: no new jobs; waiting for running jobs to finish (signal again to stop now)"
    );
    tokio::select! {
        _ = runner.drain() => tracing::info!("all running jobs finished; stopped"),
        _ = shutdown_signal() => tracing::warn!("stopped with jobs running; they will be recorded as interrupted and run again at the next start"),
    }
    Ok(())
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
