//! Policy per environment mode: who may change an environment of each mode.
//!
//! The [`Policy`] comes from the platform's own configuration. A Terraform
//! configuration, a pull request, a request body or an AI agent can ask for a change,
//! and [`Policy::decide`] says yes or no; none of them can change the policy.
//!
//! The default is the one in the design:
//!
//! | mode | may change it |
//! |---|---|
//! | DEVELOPMENT | admins, developers, agents; merge and preview jobs |
//! | PREVIEW | admins, developers, agents; merge and preview jobs |
//! | STAGING | merge jobs whose credential carries an approval (an approver's, never the job's own actor) |
//! | PRODUCTION | merge jobs of a tracked branch only |
//!
//! Reading is open to every authenticated caller: secrets are write-only, so a read
//! never carries one. Creating, updating, deleting and importing are changes. Moving an
//! environment from one mode to another must be allowed in both modes, so the stricter
//! one decides.

use std::fmt;

use crate::caller::Caller;
use crate::credential::JobKind;
use crate::identity::Role;
use crate::mode::Mode;

/// What a caller wants to do to an environment (or to something in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Create,
    Update,
    Delete,
    /// `terraform import`: brings what exists under a caller's state.
    Import,
    /// Move the environment from its current mode (the target's) to another.
    ChangeMode {
        to: Mode,
    },
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "change",
            Action::Delete => "delete",
            Action::Import => "import",
            Action::ChangeMode { .. } => "change the mode of",
        }
    }
}

/// The environment an action is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub environment: String,
    /// Its current mode; for [`Action::Create`], the mode it is created with.
    pub mode: Mode,
}

/// Who may change the environments of one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeRule {
    /// Named identities with one of these roles.
    pub roles: Vec<Role>,
    /// Jobs of these kinds, when their credential names the mode and environment.
    pub job_kinds: Vec<JobKind>,
    /// Whether a job's credential must also carry an approval
    /// ([`crate::JobClaims::approved_by`]): the GitOps engine held the merge until an
    /// identity with the approver role, not its author, approved it.
    pub approval: bool,
}

/// The platform's policy: one rule per mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    development: ModeRule,
    preview: ModeRule,
    staging: ModeRule,
    production: ModeRule,
}

impl Default for Policy {
    fn default() -> Policy {
        let open = ModeRule {
            roles: vec![Role::Admin, Role::Developer, Role::Agent],
            job_kinds: vec![JobKind::Merge, JobKind::Preview],
            approval: false,
        };
        let merge_only = ModeRule {
            roles: vec![],
            job_kinds: vec![JobKind::Merge],
            approval: false,
        };
        Policy {
            development: open.clone(),
            preview: open,
            staging: ModeRule {
                approval: true,
                ..merge_only.clone()
            },
            production: merge_only,
        }
    }
}

impl Policy {
    /// The rule for one mode.
    pub fn rule(&self, mode: Mode) -> &ModeRule {
        match mode {
            Mode::Development => &self.development,
            Mode::Preview => &self.preview,
            Mode::Staging => &self.staging,
            Mode::Production => &self.production,
        }
    }

    /// Replaces the rule for one mode (the platform's configuration does this; nothing
    /// that a caller sends can reach it).
    pub fn with_rule(mut self, mode: Mode, rule: ModeRule) -> Policy {
        *match mode {
            Mode::Development => &mut self.development,
            Mode::Preview => &mut self.preview,
            Mode::Staging => &mut self.staging,
            Mode::Production => &mut self.production,
        } = rule;
        self
    }

    /// Whether `caller` may do `action` to `target`.
    pub fn decide(&self, caller: &Caller, action: Action, target: &Target) -> Decision {
        self.decide_with(caller, action, target, Approval::AsClaimed)
    }

    /// [`Policy::decide`], with a job's approval taken as its credential says or, for
    /// the plan-time answer on a merge that is yet to be approved, as given.
    pub fn decide_with(
        &self,
        caller: &Caller,
        action: Action,
        target: &Target,
        approval: Approval,
    ) -> Decision {
        if action == Action::Read {
            return Ok(());
        }
        let refuse = |reason| Refusal {
            who: caller.who(),
            action,
            target: target.clone(),
            reason,
        };
        // Every mode the action touches must allow it: the stricter one decides.
        let modes: &[Mode] = match action {
            Action::ChangeMode { to } => &[target.mode, to],
            _ => &[target.mode],
        };
        for &mode in modes {
            let rule = self.rule(mode);
            match caller {
                Caller::Identity(identity) => {
                    if identity.role == Role::Viewer {
                        return Err(refuse(RefusalReason::ViewerReadsOnly));
                    }
                    if !rule.roles.contains(&identity.role) {
                        return Err(refuse(RefusalReason::ModeClosedToRole {
                            mode,
                            role: identity.role,
                        }));
                    }
                }
                Caller::Job(claims) => {
                    if claims.kind.is_read_only() {
                        return Err(refuse(RefusalReason::ReadOnlyJob { kind: claims.kind }));
                    }
                    if !rule.job_kinds.contains(&claims.kind) {
                        return Err(refuse(RefusalReason::ModeClosedToJobKind {
                            mode,
                            kind: claims.kind,
                        }));
                    }
                    if !claims.may_change(&target.environment, mode) {
                        return Err(refuse(RefusalReason::OutsideCredential {
                            mode,
                            root: claims.root.clone(),
                        }));
                    }
                    // The credential's approval was checked when it was verified (an
                    // approver's name, never the job's own actor).
                    if rule.approval
                        && approval == Approval::AsClaimed
                        && claims.approved_by.is_none()
                    {
                        return Err(refuse(RefusalReason::NotApproved {
                            mode,
                            root: claims.root.clone(),
                        }));
                    }
                }
            }
        }
        Ok(())
    }
}

/// How a job's approval counts in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// As the credential says (`approved_by`): every change.
    AsClaimed,
    /// Taken as given: the answer at `terraform plan` for a pull request's merge, which
    /// is approved before it runs ([`crate::Authority::authorize_at_plan`]).
    Assumed,
}

/// `Ok(())` when allowed.
pub type Decision = Result<(), Refusal>;

/// Why the policy said no: the enum is for code (and the audit log), the `Display` for
/// people, and says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    ViewerReadsOnly,
    ReadOnlyJob {
        kind: JobKind,
    },
    ModeClosedToRole {
        mode: Mode,
        role: Role,
    },
    ModeClosedToJobKind {
        mode: Mode,
        kind: JobKind,
    },
    /// The job's credential does not name this environment or mode.
    OutsideCredential {
        mode: Mode,
        root: String,
    },
    /// The mode's rule needs an approval, and the job's credential carries none.
    NotApproved {
        mode: Mode,
        root: String,
    },
}

impl RefusalReason {
    /// A short, stable name for the audit log and for code that reacts to refusals.
    pub fn code(&self) -> &'static str {
        match self {
            RefusalReason::ViewerReadsOnly => "viewer-reads-only",
            RefusalReason::ReadOnlyJob { .. } => "read-only-job",
            RefusalReason::ModeClosedToRole { .. } => "mode-closed-to-role",
            RefusalReason::ModeClosedToJobKind { .. } => "mode-closed-to-job-kind",
            RefusalReason::OutsideCredential { .. } => "outside-job-credential",
            RefusalReason::NotApproved { .. } => "approval-required",
        }
    }
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub who: String,
    pub action: Action,
    pub target: Target,
    pub reason: RefusalReason,
}

impl std::error::Error for Refusal {}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} may not {} environment `{}` ({}): ",
            self.who,
            self.action.verb(),
            self.target.environment,
            self.target.mode
        )?;
        match &self.reason {
            RefusalReason::ViewerReadsOnly => {
                f.write_str("a viewer token reads only. Ask an admin for a developer token")
            }
            RefusalReason::ReadOnlyJob { kind } => write!(
                f,
                "a {} job can only read. Merge the pull request to apply the change",
                kind.as_str()
            ),
            RefusalReason::ModeClosedToRole { mode, role } => {
                write!(f, "{mode} environments are closed to the {role} role. ")?;
                f.write_str(fix_for(*mode))
            }
            RefusalReason::ModeClosedToJobKind { mode, kind } => {
                write!(
                    f,
                    "{mode} environments are closed to {} jobs. ",
                    kind.as_str()
                )?;
                f.write_str(fix_for(*mode))
            }
            RefusalReason::OutsideCredential { mode, root } => write!(
                f,
                "the job's credential for root `{root}` does not cover this {mode} \
                 environment. Name it in that root's `environments` in the agent's \
                 configuration, or change it from the root that owns it"
            ),
            RefusalReason::NotApproved { mode, root } => write!(
                f,
                "{mode} changes need an approval, and this job of root `{root}` was not \
                 approved. Set `require_approval = true` on the root in the agent's \
                 configuration: its merge jobs then wait until an approver runs \
                 `slipway-agent approve JOB`"
            ),
        }
    }
}

/// What to do instead, for a mode that was closed to the caller.
fn fix_for(mode: Mode) -> &'static str {
    match mode {
        Mode::Production => "Production changes come through a merge: open a pull request",
        Mode::Staging => {
            "Staging changes come through a merge (or an approved request): open a pull request"
        }
        Mode::Development | Mode::Preview => {
            "Use a developer or agent token, or ask an admin to open this mode in the platform's policy"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::tests::merge_claims;
    use crate::credential::JobClaims;
    use crate::identity::Identity;

    fn person(role: Role) -> Caller {
        Caller::Identity(Identity {
            name: format!("{role}-1"),
            role,
        })
    }

    fn target(environment: &str, mode: Mode) -> Target {
        Target {
            environment: environment.into(),
            mode,
        }
    }

    fn job(f: impl FnOnce(&mut JobClaims)) -> Caller {
        let mut claims = merge_claims();
        f(&mut claims);
        Caller::Job(claims)
    }

    #[test]
    fn developers_and_agents_change_development_and_preview_only() {
        let policy = Policy::default();
        for role in [Role::Developer, Role::Agent] {
            for mode in [Mode::Development, Mode::Preview] {
                for action in [
                    Action::Create,
                    Action::Update,
                    Action::Delete,
                    Action::Import,
                ] {
                    policy
                        .decide(&person(role), action, &target("e", mode))
                        .unwrap();
                }
            }
            for mode in [Mode::Staging, Mode::Production] {
                let refusal = policy
                    .decide(&person(role), Action::Update, &target("e", mode))
                    .unwrap_err();
                assert_eq!(refusal.reason.code(), "mode-closed-to-role");
            }
        }
    }

    #[test]
    fn production_refusal_says_what_to_do() {
        let refusal = Policy::default()
            .decide(
                &person(Role::Admin),
                Action::Update,
                &target("prod", Mode::Production),
            )
            .unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "admin-1 may not change environment `prod` (PRODUCTION): PRODUCTION environments \
             are closed to the admin role. Production changes come through a merge: open a pull request"
        );
    }

    #[test]
    fn viewers_only_read() {
        let policy = Policy::default();
        for mode in Mode::ALL {
            policy
                .decide(&person(Role::Viewer), Action::Read, &target("e", mode))
                .unwrap();
            let refusal = policy
                .decide(&person(Role::Viewer), Action::Create, &target("e", mode))
                .unwrap_err();
            assert_eq!(refusal.reason, RefusalReason::ViewerReadsOnly);
        }
    }

    #[test]
    fn a_developer_cannot_import_a_production_application() {
        let refusal = Policy::default()
            .decide(
                &person(Role::Developer),
                Action::Import,
                &target("prod", Mode::Production),
            )
            .unwrap_err();
        assert!(
            refusal.to_string().contains("open a pull request"),
            "{refusal}"
        );
    }

    #[test]
    fn moving_a_preview_to_production_needs_the_production_rule() {
        let policy = Policy::default();
        let promote = Action::ChangeMode {
            to: Mode::Production,
        };
        let refusal = policy
            .decide(
                &person(Role::Developer),
                promote,
                &target("pr-7", Mode::Preview),
            )
            .unwrap_err();
        assert_eq!(
            refusal.reason,
            RefusalReason::ModeClosedToRole {
                mode: Mode::Production,
                role: Role::Developer
            }
        );
        // And demoting production to get around the rule is refused the same way.
        let demote = Action::ChangeMode {
            to: Mode::Development,
        };
        assert!(policy
            .decide(
                &person(Role::Developer),
                demote,
                &target("prod", Mode::Production)
            )
            .is_err());
    }

    #[test]
    fn a_merge_job_changes_only_what_its_credential_names() {
        let policy = Policy::default();
        let merge = job(|_| {});
        policy
            .decide(&merge, Action::Update, &target("prod", Mode::Production))
            .unwrap();
        let refusal = policy
            .decide(
                &merge,
                Action::Update,
                &target("payments", Mode::Production),
            )
            .unwrap_err();
        assert_eq!(refusal.reason.code(), "outside-job-credential");
    }

    #[test]
    fn a_staging_jobs_credential_does_not_reach_production() {
        let staging_job = job(|c| {
            c.root = "staging".into();
            c.modes = vec![Mode::Staging];
            c.environments = vec![];
        });
        let refusal = Policy::default()
            .decide(
                &staging_job,
                Action::Update,
                &target("prod", Mode::Production),
            )
            .unwrap_err();
        assert_eq!(
            refusal.reason,
            RefusalReason::OutsideCredential {
                mode: Mode::Production,
                root: "staging".into()
            }
        );
    }

    #[test]
    fn preview_and_plan_jobs_never_reach_production() {
        let policy = Policy::default();
        let preview = job(|c| c.kind = JobKind::Preview);
        let refusal = policy
            .decide(&preview, Action::Create, &target("prod", Mode::Production))
            .unwrap_err();
        assert_eq!(refusal.reason.code(), "mode-closed-to-job-kind");
        let plan = job(|c| {
            c.kind = JobKind::PullRequestPlan;
            c.modes.clear();
        });
        policy
            .decide(&plan, Action::Read, &target("prod", Mode::Production))
            .unwrap();
        for mode in Mode::ALL {
            let refusal = policy
                .decide(&plan, Action::Update, &target("e", mode))
                .unwrap_err();
            assert_eq!(refusal.reason.code(), "read-only-job");
        }
    }

    #[test]
    fn staging_needs_an_approved_merge_job_and_approvers_change_nothing() {
        let policy = Policy::default();
        let staging = |c: &mut JobClaims| {
            c.root = "staging".into();
            c.modes = vec![Mode::Staging];
            c.environments = vec![];
        };
        let unapproved = job(staging);
        let refusal = policy
            .decide(&unapproved, Action::Update, &target("s", Mode::Staging))
            .unwrap_err();
        assert_eq!(refusal.reason.code(), "approval-required");
        assert!(
            refusal.to_string().contains("slipway-agent approve"),
            "{refusal}"
        );
        let approved = job(|c| {
            staging(c);
            c.approved_by = Some("bob".into());
        });
        policy
            .decide(&approved, Action::Update, &target("s", Mode::Staging))
            .unwrap();
        // An approval opens STAGING only: PRODUCTION stays the merge rule's.
        assert!(policy
            .decide(&approved, Action::Update, &target("p", Mode::Production))
            .is_err());
        // Production merges need no approval.
        policy
            .decide(
                &job(|_| {}),
                Action::Update,
                &target("prod", Mode::Production),
            )
            .unwrap();
        for mode in Mode::ALL {
            assert!(policy
                .decide(&person(Role::Approver), Action::Update, &target("e", mode))
                .is_err());
        }
    }

    #[test]
    fn the_operator_can_change_a_rule() {
        let policy = Policy::default().with_rule(
            Mode::Staging,
            ModeRule {
                roles: vec![Role::Admin],
                job_kinds: vec![JobKind::Merge],
                approval: false,
            },
        );
        policy
            .decide(
                &person(Role::Admin),
                Action::Update,
                &target("s", Mode::Staging),
            )
            .unwrap();
        assert!(policy
            .decide(
                &person(Role::Admin),
                Action::Update,
                &target("p", Mode::Production)
            )
            .is_err());
    }
}
