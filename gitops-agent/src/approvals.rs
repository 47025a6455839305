//! Approvals: the merge jobs of a root that requires approval wait, as
//! `awaiting_approval`, until an identity with the approver role approves them.
//!
//! Whether a root requires approval is the agent's configuration alone
//! (`require_approval`, or `[approvals] modes`): nothing in the repository, so a pull
//! request that edits the root cannot drop it. And the platform holds the line too: a
//! STAGING change needs a job credential that carries its approver
//! ([`slipway_platform::JobClaims::approved_by`]), which the agent mints only for an
//! approved job.
//!
//! An approval comes from `slipway-agent approve JOB` or `POST /api/v1/jobs/ID/approve`
//! (a platform token of the approver role), or from a GitHub pull request review in
//! state `approved` by a login that `[approvals] github_logins` maps to such an
//! identity. A review usually comes before the merge: it is kept, and applied when the
//! pull request's merge job reaches its approval, if it reviewed the head that was
//! merged. Who authored the change (the pull request's author, the commit's GitHub
//! author, whoever asked for a manual deploy) may not approve it: refused, with the
//! reason in the audit log. An approval is for one job, so one commit: a newer merge
//! supersedes a waiting job ([`crate::selection::candidates`]) and waits for its own.

use ed25519_dalek::SigningKey;
use slipway_platform::{Role, Store};

use crate::audit::{self, Outcome};
use crate::config::ApprovalSettings;
use crate::db::{self, DbError};
use crate::job_kind::{JobKind, JobState};
use crate::queue::{Delivery, Job};
pub use crate::records::Review;
use crate::store::{AgentStore, AgentTx, JobQuery};

/// How an approval arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cli,
    Api,
    GithubReview,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Api => "api",
            Via::GithubReview => "github-review",
        }
    }
}

/// Who asks to approve: an identity, authenticated by its token (CLI, API) or by the
/// configured mapping of its GitHub login (a review).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    pub name: String,
    pub role: Role,
    /// The GitHub login of a review.
    pub login: Option<String>,
    pub via: Via,
}

/// Why an approval was refused. Each is recorded in the audit log; the job waits on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("`{who}` ({role}) may not approve: approving takes an identity with the approver role (`slipway-agent token create --name NAME --role approver`)")]
    NotApprover { who: String, role: Role },
    #[error("`{who}` authored this change (authors: {authors}) and may not approve it: an approver who did not write it must")]
    OwnChange { who: String, authors: String },
    #[error("GitHub user `{login}` is not a configured approver: map the login to an identity with the approver role in `[approvals] github_logins` of the agent's configuration")]
    UnmappedLogin { login: String },
    #[error("GitHub user `{login}` maps to identity `{identity}`, which does not exist or was revoked: create it with `slipway-agent token create --name {identity} --role approver`")]
    UnknownIdentity { login: String, identity: String },
    #[error("the review by `{login}` approved commit {reviewed}, but the pull request was merged at head {merged}: review the merged head")]
    StaleReview {
        login: String,
        reviewed: String,
        merged: String,
    },
}

impl Refusal {
    /// A short, stable name for the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotApprover { .. } => "not-an-approver",
            Refusal::OwnChange { .. } => "own-change",
            Refusal::UnmappedLogin { .. } => "unmapped-login",
            Refusal::UnknownIdentity { .. } => "unknown-identity",
            Refusal::StaleReview { .. } => "stale-review",
        }
    }
}

/// Whether `approver` may approve a change authored by `authors` (GitHub logins and
/// identity names): the approver role, and none of the approver's names (identity,
/// GitHub login, logins mapped to it) among the authors or the identities their
/// logins map to.
pub fn check(
    settings: &ApprovalSettings,
    approver: &Approver,
    authors: &[String],
) -> Result<(), Refusal> {
    if approver.role != Role::Approver {
        return Err(Refusal::NotApprover {
            who: approver.name.clone(),
            role: approver.role,
        });
    }
    let mut theirs: Vec<&str> = vec![approver.name.as_str()];
    theirs.extend(approver.login.as_deref());
    theirs.extend(
        settings
            .github_logins
            .iter()
            .filter(|(_, identity)| **identity == approver.name)
            .map(|(login, _)| login.as_str()),
    );
    let authored = authors.iter().any(|author| {
        let mapped = settings.identity_of_login(author);
        theirs
            .iter()
            .any(|name| name.eq_ignore_ascii_case(author) || mapped == Some(name))
    });
    if authored {
        return Err(Refusal::OwnChange {
            who: approver.name.clone(),
            authors: authors.join(", "),
        });
    }
    Ok(())
}

/// Why `approve` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("job {0} does not exist: `slipway-agent audit list` shows job ids")]
    NoSuchJob(i64),
    #[error("job {id} is not waiting for an approval (it is {state}): only a merge job of a root that requires approval waits")]
    NotWaiting { id: i64, state: String },
    #[error("approval of job {job} refused: {refusal}")]
    Refused { job: i64, refusal: Refusal },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the platform's identities: {0}")]
    Identities(#[from] slipway_platform::StoreError),
}

/// The merge jobs of one root held for approval, oldest first.
pub fn waiting_for_root(
    tx: &dyn AgentTx,
    repository: &str,
    root: &str,
) -> Result<Vec<Job>, DbError> {
    tx.jobs(&JobQuery::of_root(
        JobState::AwaitingApproval,
        repository,
        root,
    ))
}

/// Holds a running job until it is approved.
pub fn hold(tx: &dyn AgentTx, job: &Job) -> Result<(), DbError> {
    tx.set_job_state(job.id, &[JobState::Running], JobState::AwaitingApproval)?;
    Ok(())
}

/// Who authored the change `job` deploys: the authors stored with every merge job of
/// the repository for one of the commits it carries (a pull request's author, the
/// commit's GitHub author, whoever asked for a manual deploy).
pub fn authors_of(tx: &dyn AgentTx, job: &Job) -> Result<Vec<String>, DbError> {
    let mut authors: Vec<String> = Vec::new();
    for commit in job.all_commits() {
        for merge in tx.merges_of_commit(&job.repository, &commit)? {
            for author in merge.authors {
                if !authors.iter().any(|a| a.eq_ignore_ascii_case(&author)) {
                    authors.push(author);
                }
            }
        }
    }
    Ok(authors)
}

fn record(
    tx: &dyn AgentTx,
    key: &SigningKey,
    job: &Job,
    outcome: Outcome,
    approver: &Approver,
    refusal: Option<&Refusal>,
) -> Result<(), DbError> {
    let mut record = job.audit_record(outcome, db::now());
    match refusal {
        None => record.approved_by = Some(approver.name.clone()),
        Some(refusal) => {
            let login = approver
                .login
                .as_deref()
                .map(|l| format!(" (GitHub `{l}`)"))
                .unwrap_or_default();
            record.error = Some(format!(
                "{}: approval by `{}`{login} via {} refused: {refusal}",
                refusal.code(),
                approver.name,
                approver.via.as_str()
            ));
        }
    }
    audit::append(tx, key, record)?;
    Ok(())
}

/// Decides `approver`'s approval of `job` inside `tx`: records the approval (or the
/// refusal) in the audit log, and on approval stores it.
fn decide(
    tx: &dyn AgentTx,
    key: &SigningKey,
    settings: &ApprovalSettings,
    job: &Job,
    approver: &Approver,
    extra_authors: &[String],
) -> Result<Result<(), Refusal>, DbError> {
    let mut authors = authors_of(tx, job)?;
    authors.extend(extra_authors.iter().cloned());
    match check(settings, approver, &authors) {
        Ok(()) => {
            tx.insert_approval(job.id, &approver.name, approver.via.as_str(), &db::now())?;
            record(tx, key, job, Outcome::Approved, approver, None)?;
            Ok(Ok(()))
        }
        Err(refusal) => {
            record(
                tx,
                key,
                job,
                Outcome::ApprovalRefused,
                approver,
                Some(&refusal),
            )?;
            Ok(Err(refusal))
        }
    }
}

/// Approves job `id` for `approver` (CLI, API): the job goes back to the queue and
/// runs with a credential that names its approver. A refusal is recorded too.
pub fn approve(
    store: &dyn AgentStore,
    key: &SigningKey,
    settings: &ApprovalSettings,
    id: i64,
    approver: &Approver,
) -> Result<Job, ApproveError> {
    let (job, decided) = store.write(|tx| {
        let job = tx.job(id)?.ok_or(ApproveError::NoSuchJob(id))?;
        let state = tx.job_status(id)?.ok_or(ApproveError::NoSuchJob(id))?.state;
        if state != JobState::AwaitingApproval {
            return Err(ApproveError::NotWaiting {
                id,
                state: state.as_str().to_owned(),
            });
        }
        // A refusal is recorded too: the transaction commits either way.
        let decided = decide(tx, key, settings, &job, approver, &[])?;
        if decided.is_ok() {
            tx.set_job_state(id, &[JobState::AwaitingApproval], JobState::Queued)?;
        }
        Ok((job, decided))
    })?;
    decided.map_err(|refusal| ApproveError::Refused { job: id, refusal })?;
    Ok(job)
}

/// The approver a reviewer's login stands for, as the platform knows it now.
fn reviewer(
    settings: &ApprovalSettings,
    platform: &dyn Store,
    login: &str,
) -> Result<Result<Approver, Refusal>, slipway_platform::StoreError> {
    let Some(identity) = settings.identity_of_login(login) else {
        return Ok(Err(Refusal::UnmappedLogin {
            login: login.to_owned(),
        }));
    };
    let live = platform
        .list_identities()?
        .into_iter()
        .find(|r| r.revoked_at_ms.is_none() && r.identity.name == identity);
    Ok(match live {
        Some(record) => Ok(Approver {
            name: record.identity.name,
            role: record.identity.role,
            login: Some(login.to_owned()),
            via: Via::GithubReview,
        }),
        None => Err(Refusal::UnknownIdentity {
            login: login.to_owned(),
            identity: identity.to_owned(),
        }),
    })
}

/// The head each merged pull request of `job`'s commits had, by number.
fn merged_heads(tx: &dyn AgentTx, job: &Job) -> Result<Vec<(u64, Option<String>)>, DbError> {
    let mut out: Vec<(u64, Option<String>)> = Vec::new();
    for commit in job.all_commits() {
        for merge in tx.merges_of_commit(&job.repository, &commit)? {
            if let Some(number) = merge.pull_request {
                let head = (number, merge.head_sha);
                if !out.contains(&head) {
                    out.push(head);
                }
            }
        }
    }
    Ok(out)
}

/// Decides `review` for `job` (a merge of one of the reviewed pull requests).
fn decide_review(
    tx: &dyn AgentTx,
    key: &SigningKey,
    settings: &ApprovalSettings,
    platform: &dyn Store,
    job: &Job,
    review: &Review,
    merged_head: Option<&str>,
) -> Result<bool, ApproveError> {
    let approver = match reviewer(settings, platform, &review.login)? {
        Ok(approver) => approver,
        Err(refusal) => {
            let who = Approver {
                name: review.login.clone(),
                role: Role::Viewer,
                login: Some(review.login.clone()),
                via: Via::GithubReview,
            };
            record(tx, key, job, Outcome::ApprovalRefused, &who, Some(&refusal))?;
            return Ok(false);
        }
    };
    if let Some(merged) = merged_head.filter(|m| !m.eq_ignore_ascii_case(&review.commit_sha)) {
        let refusal = Refusal::StaleReview {
            login: review.login.clone(),
            reviewed: review.commit_sha.clone(),
            merged: merged.to_owned(),
        };
        record(
            tx,
            key,
            job,
            Outcome::ApprovalRefused,
            &approver,
            Some(&refusal),
        )?;
        return Ok(false);
    }
    let authors: Vec<String> = review.pull_request_author.iter().cloned().collect();
    Ok(decide(tx, key, settings, job, &approver, &authors)?.is_ok())
}

/// What became of a review's delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewOutcome {
    /// The delivery id was seen before.
    Duplicate,
    /// Kept for the pull request's merge; the jobs it approved now, by id.
    Stored { approved: Vec<i64> },
}

/// Stores a review (once per delivery) and applies it to the pull request's merge
/// jobs that wait for approval now.
pub fn receive_review(
    store: &dyn AgentStore,
    key: &SigningKey,
    settings: &ApprovalSettings,
    platform: &dyn Store,
    delivery: &Delivery,
    review: &Review,
) -> Result<ReviewOutcome, ApproveError> {
    store.write(|tx| {
        if !tx.record_delivery(delivery, "review", &db::now())? {
            return Ok(ReviewOutcome::Duplicate);
        }
        tx.insert_review(review, &db::now())?;
        let waiting = tx.jobs(&JobQuery {
            state: JobState::AwaitingApproval,
            repository: Some(&review.repository),
            root: None,
            kind: Some(JobKind::Merge),
        })?;
        let mut approved = Vec::new();
        for job in waiting {
            let heads = merged_heads(tx, &job)?;
            let Some((_, head)) = heads.iter().find(|(n, _)| *n == review.pull_request) else {
                continue;
            };
            if decide_review(tx, key, settings, platform, &job, review, head.as_deref())? {
                tx.set_job_state(job.id, &[JobState::AwaitingApproval], JobState::Queued)?;
                approved.push(job.id);
            }
        }
        Ok(ReviewOutcome::Stored { approved })
    })
}

/// At a job's approval: its approver when it has one already, or when a kept review
/// of one of its pull requests approves it now (refusals are recorded).
pub fn at_gate(
    store: &dyn AgentStore,
    key: &SigningKey,
    settings: &ApprovalSettings,
    platform: &dyn Store,
    job: &Job,
) -> Result<Option<String>, ApproveError> {
    if let Some(approver) = store.read(|tx| tx.approver_of(job.id))? {
        return Ok(Some(approver));
    }
    store.write(|tx| {
        for (number, head) in merged_heads(tx, job)? {
            for kept in tx.reviews_of(&job.repository, number)? {
                let review = Review {
                    repository: job.repository.clone(),
                    pull_request: number,
                    review_id: kept.review_id,
                    login: kept.login,
                    commit_sha: kept.commit_sha,
                    pull_request_author: None,
                };
                if decide_review(tx, key, settings, platform, job, &review, head.as_deref())? {
                    return Ok(tx.approver_of(job.id)?);
                }
            }
        }
        Ok(None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{self, intake, Intake, NewJobs};
    use rusqlite::Connection;
    use slipway_platform::Mode;
    use slipway_provenance::Trigger;

    fn settings() -> ApprovalSettings {
        ApprovalSettings {
            modes: vec![Mode::Staging],
            github_logins: std::collections::BTreeMap::from([
                ("bob-gh".into(), "bob".into()),
                ("alice-gh".into(), "alice".into()),
            ]),
        }
    }

    fn person(name: &str, role: Role) -> Approver {
        Approver {
            name: name.into(),
            role,
            login: None,
            via: Via::Cli,
        }
    }

    #[test]
    fn an_approver_who_did_not_write_the_change_approves() {
        let s = settings();
        assert!(s.holds(&[Mode::Staging, Mode::Production]));
        assert!(!s.holds(&[Mode::Production]));
        assert_eq!(s.identity_of_login("bob-gh"), Some("bob"));
        check(&s, &person("bob", Role::Approver), &["alice-gh".into()]).unwrap();
        // The author, by identity name, by login, or by a login mapped to them.
        for authors in [vec!["bob".to_owned()], vec!["BOB-gh".to_owned()]] {
            let refusal = check(&s, &person("bob", Role::Approver), &authors).unwrap_err();
            assert_eq!(refusal.code(), "own-change", "{authors:?}");
            assert!(refusal.to_string().contains("may not approve"), "{refusal}");
        }
        let review = Approver {
            login: Some("alice-gh".into()),
            via: Via::GithubReview,
            ..person("alice", Role::Approver)
        };
        assert_eq!(
            check(&s, &review, &["alice-gh".into()]).unwrap_err().code(),
            "own-change"
        );
        // Another role may not approve at all.
        for role in [Role::Admin, Role::Developer, Role::Agent, Role::Viewer] {
            assert_eq!(
                check(&s, &person("carol", role), &[]).unwrap_err().code(),
                "not-an-approver"
            );
        }
    }

    fn merge(conn: &dyn AgentStore, commit: &str, authors: &[&str], pr: Option<u64>) -> Job {
        let mut jobs = NewJobs::merge(
            None,
            "hello".into(),
            "main".into(),
            commit.into(),
            Trigger::Webhook,
            pr,
            Some("merger".into()),
            vec!["staging".into()],
        );
        jobs.authors = authors.iter().map(|a| a.to_string()).collect();
        jobs.head_sha = pr.map(|_| "h".repeat(40));
        intake(conn, &[Intake::Jobs(jobs)]).unwrap();
        let job = conn
            .read(|tx| queue::queued_for_root(tx, "hello", "staging"))
            .unwrap()
            .pop()
            .unwrap();
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let job = queue::start(conn, &key, &job, &[]).unwrap();
        conn.write(|tx| hold(tx, &job)).unwrap();
        job
    }

    #[test]
    fn a_waiting_job_is_refused_to_its_author_and_queued_by_an_approver() {
        let dir = tempfile::tempdir().unwrap();
        let db = db::Db::open(&dir.path().join("q.db")).unwrap();
        let conn = db.store();
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let s = settings();
        let job = merge(conn, &"a".repeat(40), &["alice-gh"], None);
        assert_eq!(
            conn.read(|tx| waiting_for_root(tx, "hello", "staging"))
                .unwrap()
                .len(),
            1
        );
        let refused = approve(conn, &key, &s, job.id, &person("alice", Role::Approver));
        assert!(
            matches!(&refused, Err(ApproveError::Refused { refusal, .. }) if refusal.code() == "own-change"),
            "{refused:?}"
        );
        assert_eq!(conn.read(|tx| tx.approver_of(job.id)).unwrap(), None);
        approve(conn, &key, &s, job.id, &person("bob", Role::Approver)).unwrap();
        assert_eq!(
            conn.read(|tx| tx.approver_of(job.id)).unwrap().as_deref(),
            Some("bob")
        );
        assert!(conn
            .read(|tx| waiting_for_root(tx, "hello", "staging"))
            .unwrap()
            .is_empty());
        assert_eq!(
            conn.read(|tx| queue::queued_for_root(tx, "hello", "staging"))
                .unwrap()
                .len(),
            1
        );
        // Not waiting any more: a second approval is refused as such.
        assert!(matches!(
            approve(conn, &key, &s, job.id, &person("bob", Role::Approver)),
            Err(ApproveError::NotWaiting { .. })
        ));
        assert!(matches!(
            approve(conn, &key, &s, 999, &person("bob", Role::Approver)),
            Err(ApproveError::NoSuchJob(999))
        ));
        let log = conn.read(audit::list).unwrap();
        let outcomes: Vec<_> = log.iter().map(|r| r.record.outcome.as_str()).collect();
        assert_eq!(outcomes, ["approval-refused", "approved"]);
        assert!(log[0]
            .record
            .error
            .as_deref()
            .unwrap()
            .contains("own-change"));
        assert_eq!(log[1].record.approved_by.as_deref(), Some("bob"));
    }

    #[test]
    fn a_database_made_before_approvals_learns_the_state_and_keeps_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE jobs (
                id INTEGER PRIMARY KEY AUTOINCREMENT, repository TEXT NOT NULL,
                root TEXT NOT NULL, branch TEXT NOT NULL, commit_sha TEXT NOT NULL,
                trigger TEXT NOT NULL, delivery_id TEXT, pull_request INTEGER, actor TEXT,
                enqueued_at TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done')),
                covered TEXT NOT NULL DEFAULT '[]', superseded_by INTEGER, started_at TEXT,
                attempts INTEGER NOT NULL DEFAULT 0, interrupted INTEGER NOT NULL DEFAULT 0,
                outcome TEXT);
             INSERT INTO jobs (repository, root, branch, commit_sha, trigger, enqueued_at, state)
               VALUES ('hello', 'staging', 'main', 'abc', 'webhook', 'then', 'running');",
        )
        .unwrap();
        drop(old);
        let db = db::Db::open(&path).unwrap();
        let conn = db.store();
        let job = conn.read(|tx| tx.job(1)).unwrap().unwrap();
        assert_eq!(
            (job.commit_sha.as_str(), job.kind),
            ("abc", crate::job_kind::JobKind::Merge)
        );
        conn.write(|tx| hold(tx, &job)).unwrap();
        assert_eq!(
            conn.read(|tx| waiting_for_root(tx, "hello", "staging"))
                .unwrap()
                .len(),
            1
        );
        assert!(Connection::open(&path)
            .unwrap()
            .execute("UPDATE jobs SET state = 'bogus' WHERE id = 1", [])
            .is_err());
        // A new job continues the ids.
        let next = merge(conn, &"d".repeat(40), &[], None);
        assert_eq!(next.id, 2);
    }

    #[test]
    fn a_kept_review_of_the_merged_head_approves_at_the_gate() {
        let dir = tempfile::tempdir().unwrap();
        let db = db::Db::open(&dir.path().join("q.db")).unwrap();
        let conn = db.store();
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let s = settings();
        let store = slipway_platform::SqliteStore::in_memory().unwrap();
        let authority =
            slipway_platform::Authority::new(store, slipway_platform::Policy::default(), None);
        authority.create_identity("bob", Role::Approver, 1).unwrap();
        authority
            .create_identity("alice", Role::Approver, 1)
            .unwrap();
        let review = |id: i64, login: &str, commit: &str| Review {
            repository: "hello".into(),
            pull_request: 7,
            review_id: id,
            login: login.into(),
            commit_sha: commit.into(),
            pull_request_author: Some("alice-gh".into()),
        };
        let delivery = |id: &str| Delivery {
            id: id.into(),
            event: "pull_request_review".into(),
        };
        let store = authority.store();
        // Before the merge: kept, nothing to approve yet.
        for (d, r) in [
            ("d1", review(1, "alice-gh", &"h".repeat(40))),
            ("d2", review(2, "mallory", &"h".repeat(40))),
            ("d3", review(3, "bob-gh", &"0".repeat(40))),
        ] {
            assert_eq!(
                receive_review(conn, &key, &s, store, &delivery(d), &r).unwrap(),
                ReviewOutcome::Stored { approved: vec![] }
            );
        }
        assert_eq!(
            receive_review(conn, &key, &s, store, &delivery("d1"), &review(1, "x", "y")).unwrap(),
            ReviewOutcome::Duplicate
        );
        let job = merge(conn, &"c".repeat(40), &["alice-gh"], Some(7));
        // The author's review, an unmapped login and a stale head: all refused.
        assert_eq!(at_gate(conn, &key, &s, store, &job).unwrap(), None);
        let codes: Vec<String> = conn
            .read(audit::list)
            .unwrap()
            .iter()
            .map(|r| r.record.error.clone().unwrap_or_default())
            .collect();
        for code in ["own-change", "unmapped-login", "stale-review"] {
            assert!(
                codes.iter().any(|c| c.starts_with(code)),
                "{code}: {codes:?}"
            );
        }
        // Bob reviews the merged head while the job waits: approved and queued.
        let out = receive_review(
            conn,
            &key,
            &s,
            store,
            &delivery("d4"),
            &review(4, "Bob-GH", &"h".repeat(40)),
        )
        .unwrap();
        assert_eq!(
            out,
            ReviewOutcome::Stored {
                approved: vec![job.id]
            }
        );
        assert_eq!(
            at_gate(conn, &key, &s, store, &job).unwrap().as_deref(),
            Some("bob")
        );
    }
}
