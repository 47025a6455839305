//! The platform at the local runtime's door: who is calling, may they, and the record.
//!
//! The daemon is the embedded platform: the only holder of the runtime (the replicas,
//! their secrets, the state). Every call goes through [`Gate::caller`], and every
//! change through [`Gate::decide`] and then [`Gate::record`], which use the platform
//! crate's [`Authority`] (identities, job credentials, the policy from the platform's
//! own configuration) and [`AuditLog`]. What the request says about who sent it is
//! never believed: the stored [`ChangeRecord`] is stamped here from the caller.
//!
//! Without a bearer value the caller is the socket's peer. The socket is the user's
//! alone (0600), so the peer is the local user, who is this embedded platform's admin,
//! unless the peer is a process the runtime started (a replica, or anything a replica
//! started: the daemon is their child subreaper, so they cannot escape by
//! double-forking). Those are refused: an application's code can do no more than the
//! token it was given, and it is given none. After a daemon crash the replicas it
//! started are not below the new daemon but below the watchdog (the subreaper that
//! inherits them, [`super::watchdog`]): what descends from the watchdog, from a known
//! replica, or is in a replica's process group is refused too. The peer is judged
//! once per connection, when it is accepted ([`Gate::peer_of`], [`super::peer`]): the
//! kernel's record of who connected never changes, and judging it while the
//! connecting process still lives is what makes the verdict sound.

use std::path::Path;

use slipway_platform::audit::{self, Entry, Outcome};
use slipway_platform::job_ending::{JobOutcome, SignedEnding};
use slipway_platform::{
    now_ms, Action, AuditLog, Authority, Caller, Identity, JobKind, PlatformConfig, Role,
    SqliteStore, Store as _, Target,
};
use tonic::{Request, Status};

use super::home::Home;
use super::peer::{Peer, RuntimeProcesses};
use crate::{ChangeRecord, Mode};

/// Why the gate could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Config(#[from] slipway_platform::config::ConfigError),
    #[error(transparent)]
    Store(#[from] slipway_platform::StoreError),
    #[error("the platform's signing key {path}: {message}")]
    Key { path: String, message: String },
}

/// The operator's variables that name the GitOps engine's key when `platform.toml`
/// does not (read from the environment the daemon starts in, which a Terraform
/// configuration cannot set).
pub const ENV_ENGINE_KEY: &str = "SLIPWAY_AGENT_PUBLIC_KEY";
pub const ENV_ENGINE_KEY_FILE: &str = "SLIPWAY_AGENT_PUBLIC_KEY_FILE";

/// A change the caller asks for.
pub struct Attempt<'a> {
    pub caller: &'a Caller,
    /// `terraform-apply`, `cli`, ...: what the client says; a job's is its kind's.
    pub how: &'a str,
    pub action: Action,
    pub target: Target,
    /// `environment prod`, `application prod/web`.
    pub object: String,
    /// The fields that change (names only).
    pub fields: Vec<String>,
    /// The MCP tool the call came through ([`tool_of`]), for the audit log only.
    pub tool: Option<&'a str>,
}

/// The metadata key in which a client acting for an MCP tool names it.
pub const TOOL_METADATA: &str = "slipway-tool";

/// The tool `request` says it comes through: recorded, never decided on. A name that
/// could forge a field of the record is refused.
pub fn tool_of<T>(request: &Request<T>) -> Result<Option<String>, Status> {
    let Some(value) = request.metadata().get(TOOL_METADATA) else {
        return Ok(None);
    };
    let name = value.to_str().unwrap_or_default();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(Some(name.to_owned()))
    } else {
        Err(Status::invalid_argument(format!(
            "`{TOOL_METADATA}` metadata: use 1 to 64 lowercase letters, digits, `_` or `-`"
        )))
    }
}

pub struct Gate {
    /// The TCP endpoint the configuration asks for, if any.
    pub listen: Option<slipway_platform::config::Listen>,
    authority: Authority<SqliteStore>,
    audit: AuditLog,
    /// The daemon's own pid: peers below it in the process tree are its replicas.
    daemon_pid: u32,
    /// The watchdog's, whose other descendants are replicas an earlier daemon started.
    watchdog_pid: Option<u32>,
    uid: u32,
    /// `local:<user>`, the local user's identity (looked up once: without `USER` in
    /// the environment that is a read of /etc/passwd).
    local_name: String,
}

impl Gate {
    /// Opens the platform's database, configuration and signing key in `home`.
    /// `watchdog`: the pid of the watchdog this daemon runs under, if any.
    pub fn open(
        home: &Home,
        env: &dyn Fn(&str) -> Option<String>,
        watchdog: Option<u32>,
    ) -> Result<Gate, GateError> {
        let mut config = PlatformConfig::load(&home.platform_config())?;
        if config.engine_key.is_none() {
            config.engine_key = engine_key_from_env(env)?;
        }
        let store = SqliteStore::open(&home.platform_db())?;
        let key = signing_key(&home.platform_key())?;
        let checkpoint = config
            .audit_checkpoint
            .clone()
            .unwrap_or_else(|| home.audit_checkpoint());
        Ok(Gate {
            listen: config.listen,
            authority: Authority::new(store, config.policy, config.engine_key),
            audit: AuditLog::new(key, Some(checkpoint)),
            daemon_pid: std::process::id(),
            watchdog_pid: watchdog,
            uid: nix::unistd::getuid().as_raw(),
            local_name: format!("local:{}", slipway_platform::identity::local_user()),
        })
    }

    /// Who sent `request`; a refusal is UNAUTHENTICATED, names what to send, and is
    /// recorded in the audit log (a bad or replayed credential, a replica trying).
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        self.identify(request)
            .inspect_err(|status| self.record_unauthenticated(status))
    }

    fn identify<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if let Some(header) = header {
            let bearer = slipway_platform::authority::bearer(Some(header));
            return self
                .authority
                .authenticate(bearer, now_ms())
                .map_err(|e| Status::unauthenticated(e.to_string()));
        }
        // Judged when the connection was accepted (`peer_of`); TCP connections carry
        // no verdict, so they need a bearer.
        match request.extensions().get::<Peer>() {
            Some(Peer::LocalUser) => Ok(Caller::Identity(Identity {
                name: self.local_name.clone(),
                role: Role::Admin,
            })),
            Some(Peer::Refused(refusal)) => Err(Status::unauthenticated(refusal.message())),
            None => Err(Status::unauthenticated(
                super::peer::Refusal::Unknown.message(),
            )),
        }
    }

    /// The verdict on the peer of a connection just accepted on the socket, for every
    /// call on it: the local user, unless the connecting process is the daemon, the
    /// watchdog, a replica (`replicas`: their pids, each the leader of its process
    /// group), in a replica's group, or below one of them in the process tree.
    pub fn peer_of(
        &self,
        stream: &tokio::net::UnixStream,
        replicas: &std::collections::BTreeSet<u32>,
    ) -> Peer {
        // The watchdog's pid counts only while it is still this daemon's parent: once
        // it is gone, its pid may be another program's.
        let watchdog = self
            .watchdog_pid
            .filter(|w| i64::from(*w) == i64::from(nix::unistd::getppid().as_raw()));
        let runtime = RuntimeProcesses {
            daemon: self.daemon_pid,
            watchdog,
            replicas,
        };
        super::peer::identify(stream, self.uid, &runtime)
    }

    /// Whether `request` came over the socket without a bearer value (a caller the gate
    /// let in as the local user).
    pub fn is_socket_peer<T>(&self, request: &Request<T>) -> bool {
        request.metadata().get("authorization").is_none()
            && request.extensions().get::<Peer>() == Some(&Peer::LocalUser)
    }

    /// The policy's decision; a refusal is recorded and becomes PERMISSION_DENIED.
    pub fn decide(&self, attempt: &Attempt<'_>) -> Result<(), Status> {
        let decision = self
            .authority
            .authorize(attempt.caller, attempt.action, &attempt.target);
        self.refused_if(attempt, decision)
    }

    /// [`Gate::decide`] for `terraform plan`'s check of a change (the `Authorize`
    /// call), where a pull-request plan is answered as its merge would be
    /// (`Authority::authorize_at_plan`); it changes nothing.
    pub fn decide_at_plan(&self, attempt: &Attempt<'_>) -> Result<(), Status> {
        let decision =
            self.authority
                .authorize_at_plan(attempt.caller, attempt.action, &attempt.target);
        self.refused_if(attempt, decision)
    }

    fn refused_if(
        &self,
        attempt: &Attempt<'_>,
        decision: slipway_platform::policy::Decision,
    ) -> Result<(), Status> {
        match decision {
            Ok(()) => Ok(()),
            Err(refusal) => {
                let reason = format!("{}: {refusal}", refusal.reason.code());
                self.record(attempt, Outcome::Refused, Some(reason));
                Err(Status::permission_denied(refusal.to_string()))
            }
        }
    }

    fn record_unauthenticated(&self, status: &Status) {
        self.append(Entry {
            seq: 0,
            at_ms: now_ms(),
            who: "unauthenticated".into(),
            how: "grpc".into(),
            action: "authenticate".into(),
            object: "the platform API".into(),
            environment: String::new(),
            mode: String::new(),
            fields: Vec::new(),
            outcome: Outcome::Refused,
            reason: Some(format!("unauthenticated: {}", status.message())),
            repository: None,
            commit: None,
            job_id: None,
            actor: None,
            tool: None,
            approved_by: None,
        });
    }

    /// Records what became of an attempt.
    pub fn record(&self, attempt: &Attempt<'_>, outcome: Outcome, reason: Option<String>) {
        let job = match attempt.caller {
            Caller::Job(claims) => Some(claims),
            Caller::Identity(_) => None,
        };
        self.append(Entry {
            seq: 0,
            at_ms: now_ms(),
            who: attempt.caller.who(),
            how: how(attempt.caller, attempt.how),
            action: action_name(attempt.action).into(),
            object: attempt.object.clone(),
            environment: attempt.target.environment.clone(),
            mode: attempt.target.mode.as_str().into(),
            fields: attempt.fields.clone(),
            outcome,
            reason,
            repository: job.map(|c| c.repository.clone()),
            commit: job.map(|c| c.commit.clone()),
            job_id: job.map(|c| c.job_id.clone()),
            actor: job.map(|c| c.actor.clone()),
            tool: attempt.tool.map(str::to_owned).or_else(|| {
                job.and_then(|c| c.requested_by.as_ref())
                    .and_then(|r| r.tool.clone())
            }),
            approved_by: job.and_then(|c| c.approved_by.clone()),
        });
    }

    fn append(&self, entry: Entry) {
        // The change itself has happened (or been refused) by now; a record that cannot
        // be written is loud in the daemon's log rather than undoing it.
        if let Err(e) = self.audit.append(self.authority.store(), entry) {
            tracing::error!(error = %e, "cannot write the audit record");
        }
    }

    /// The record to store on the object: who and where from, as the caller proved.
    pub fn stamp(&self, caller: &Caller, requested: &ChangeRecord) -> ChangeRecord {
        let changed_at = slipway_provenance::now_timestamp();
        match caller {
            Caller::Job(claims) => ChangeRecord {
                commit_sha: claims.commit.clone(),
                repository: claims.repository.clone(),
                pull_request: requested.pull_request,
                actor: claims.actor.clone(),
                trigger: requested.trigger.clone(),
                job_id: claims.job_id.clone(),
                changed_at,
                verified: true,
            },
            Caller::Identity(identity) => ChangeRecord {
                actor: identity.name.clone(),
                trigger: requested.trigger.clone(),
                changed_at,
                ..ChangeRecord::default()
            },
        }
    }

    /// Ends the caller's job with the engine's signed ending, and records the job's
    /// end in the audit log (a refused ending too); only a job credential can.
    pub fn end_job(&self, caller: &Caller, sent: &SignedEnding) -> Result<(), Status> {
        let Caller::Job(claims) = caller else {
            return Err(Status::permission_denied(
                "only a job's own credential can end the job",
            ));
        };
        let ended = self.authority.end_job_with(claims, sent, now_ms());
        let (outcome, reason) = match &ended {
            Ok(ending) => (
                match ending.outcome {
                    JobOutcome::Failed | JobOutcome::Interrupted => Outcome::Failed,
                    JobOutcome::Succeeded | JobOutcome::Skipped => Outcome::Applied,
                },
                ending.summary(),
            ),
            Err(e) => (Outcome::Refused, format!("job-ending-refused: {e}")),
        };
        self.append(Entry {
            seq: 0,
            at_ms: now_ms(),
            who: caller.who(),
            how: how(caller, ""),
            action: "end-job".into(),
            object: format!("root {}/{}", claims.repository, claims.root),
            environment: String::new(),
            mode: String::new(),
            fields: Vec::new(),
            outcome,
            reason: Some(reason),
            repository: Some(claims.repository.clone()),
            commit: Some(claims.commit.clone()),
            job_id: Some(claims.job_id.clone()),
            actor: Some(claims.actor.clone()),
            tool: claims.requested_by.as_ref().and_then(|r| r.tool.clone()),
            approved_by: claims.approved_by.clone(),
        });
        match ended {
            Ok(_) => Ok(()),
            Err(slipway_platform::AuthError::Ending(e)) => {
                Err(Status::permission_denied(e.to_string()))
            }
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }

    /// Who the caller is, its role (`job` for a job credential), and the modes the
    /// policy lets it create and change environments in.
    pub fn who_am_i(&self, caller: &Caller) -> (String, String, Vec<Mode>) {
        let role = match caller {
            Caller::Identity(identity) => identity.role.as_str(),
            Caller::Job(_) => "job",
        };
        let may_change = Mode::ALL
            .into_iter()
            .filter(|&mode| {
                // A job may change only the environments its credential names (any
                // when it names none): ask about one of them.
                let environment = match caller {
                    Caller::Job(claims) => claims.environments.first().cloned().unwrap_or_default(),
                    Caller::Identity(_) => String::new(),
                };
                let target = Target { environment, mode };
                [Action::Create, Action::Update]
                    .into_iter()
                    .all(|action| self.authority.authorize(caller, action, &target).is_ok())
            })
            .collect();
        (caller.who(), role.to_owned(), may_change)
    }

    /// Only the local admin (or an admin token) may stop the whole runtime.
    pub fn may_shut_down(&self, caller: &Caller) -> Result<(), Status> {
        match caller {
            Caller::Identity(identity) if identity.role == Role::Admin => Ok(()),
            _ => Err(Status::permission_denied(
                "only an admin may stop the local runtime (it stops every application)",
            )),
        }
    }

    /// The audit log with what verifying it found.
    pub fn audit(&self) -> Result<(Vec<audit::Stored>, audit::Verification), Status> {
        let records = self
            .authority
            .store()
            .audit_records()
            .map_err(|e| Status::internal(e.to_string()))?;
        let checkpoint = self
            .audit
            .checkpoint_path()
            .map(audit::read_checkpoint)
            .transpose()
            .map_err(|e| Status::internal(e.to_string()))?
            .flatten();
        let verification =
            audit::verify(&records, &self.audit.verifying_key(), checkpoint.as_ref());
        Ok((records, verification))
    }
}

/// The audit's `how`: a job's is its kind (and, for a preview's teardown, why the
/// engine tears it down: `pr-closed` or `ttl`), which only the signed claims say.
fn how(caller: &Caller, said: &str) -> String {
    match caller {
        Caller::Job(claims) => match (claims.kind, claims.teardown, &claims.requested_by) {
            // Why a preview is being torn down (the pull request closed, its time to
            // live ran out) says more than who once asked for it.
            (JobKind::Preview, Some(teardown), _) => teardown.as_str().into(),
            // A job a named identity asked for (a branch preview over MCP): how they
            // asked.
            (_, _, Some(requested)) => requested.how.clone(),
            // The deployed commit applied again because a drift check found drift.
            (JobKind::Merge, ..) if claims.drift_remediation => "drift-remediation".into(),
            (JobKind::Merge, ..) => "git-merge".into(),
            (JobKind::Preview, None, None) => "pr-preview".into(),
            (JobKind::PullRequestPlan, ..) => "pr-plan".into(),
            (JobKind::Drift, ..) => "drift".into(),
        },
        Caller::Identity(_) if said.is_empty() => "terraform-apply".into(),
        Caller::Identity(_) => said.into(),
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Read => "read",
        Action::Create => "create",
        Action::Update => "update",
        Action::Delete => "delete",
        Action::Import => "import",
        Action::ChangeMode { .. } => "change-mode",
    }
}

/// What an environment write does, against what the runtime has.
pub fn environment_action(prior: Option<Mode>, mode: Mode) -> (Action, Mode) {
    match prior {
        None => (Action::Create, mode),
        Some(prior) if prior != mode => (Action::ChangeMode { to: mode }, prior),
        Some(prior) => (Action::Update, prior),
    }
}

fn engine_key_from_env(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<slipway_provenance::VerifyingKey>, GateError> {
    let invalid = |name: &str, e: &dyn std::fmt::Display| {
        GateError::Config(slipway_platform::config::ConfigError::Invalid {
            path: name.into(),
            message: format!("{e}; use the contents of slipway-agent.pub"),
        })
    };
    if let Some(text) = env(ENV_ENGINE_KEY).filter(|v| !v.is_empty()) {
        return slipway_provenance::parse_verifying_key(&text)
            .map(Some)
            .map_err(|e| invalid(ENV_ENGINE_KEY, &e));
    }
    if let Some(path) = env(ENV_ENGINE_KEY_FILE).filter(|v| !v.is_empty()) {
        return slipway_provenance::load_verifying_key(Path::new(&path))
            .map(Some)
            .map_err(|e| invalid(ENV_ENGINE_KEY_FILE, &e));
    }
    Ok(None)
}

/// The platform's own key (for its audit signatures), made on first start.
fn signing_key(path: &Path) -> Result<slipway_provenance::SigningKey, GateError> {
    let error = |message: String| GateError::Key {
        path: path.display().to_string(),
        message,
    };
    if path.exists() {
        return slipway_provenance::load_signing_key(path).map_err(|e| error(e.to_string()));
    }
    let key = slipway_provenance::generate_signing_key().map_err(|e| error(e.to_string()))?;
    slipway_platform::store::create_private_file(path).map_err(|e| error(e.to_string()))?;
    std::fs::write(path, slipway_provenance::encode_signing_key(&key))
        .map_err(|e| error(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_name_is_recorded_only_when_it_cannot_forge_a_field() {
        let with = |value: &str| {
            let mut request = Request::new(());
            request
                .metadata_mut()
                .insert(TOOL_METADATA, value.parse().unwrap());
            tool_of(&request)
        };
        assert_eq!(tool_of(&Request::new(())).unwrap(), None);
        assert_eq!(
            with("deploy_application").unwrap().as_deref(),
            Some("deploy_application")
        );
        for bad in ["", "Deploy", "a b", "x\"y", &"a".repeat(65)] {
            let status = with(bad).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn a_mode_change_is_decided_from_the_mode_the_environment_has() {
        assert_eq!(
            environment_action(None, Mode::Production),
            (Action::Create, Mode::Production)
        );
        assert_eq!(
            environment_action(Some(Mode::Production), Mode::Preview),
            (Action::ChangeMode { to: Mode::Preview }, Mode::Production)
        );
        assert_eq!(
            environment_action(Some(Mode::Staging), Mode::Staging),
            (Action::Update, Mode::Staging)
        );
    }
}
