//! What every [`AgentStore`] must do, whatever keeps the rows: each operation's
//! meaning pinned by one check. The SQLite store runs them below; the PostgreSQL store
//! runs [`all`] against a server of its own in `tests/tests/agent_postgres.rs` (this
//! module is public there through the `conformance` feature, for tests only).

use std::collections::BTreeMap;

use slipway_provenance::Trigger;

use crate::approvals::Review;
use crate::audit::{self, Outcome, PlanSummary};
use crate::db::DbError;
use crate::job_kind::{JobKind, JobState};
use crate::previews::PreviewKey;
use crate::queue::{Delivery, NewJobs};
use crate::store::{Access, AgentStore, JobQuery, ReportProgress};

fn jobs(commit: &str, kind: JobKind, trigger: Trigger) -> NewJobs {
    let mut jobs = NewJobs::merge(
        None,
        "acme/infra".into(),
        "main".into(),
        commit.into(),
        trigger,
        Some(7),
        Some("octocat".into()),
        vec!["prod".into()],
    );
    jobs.kind = kind;
    jobs.head_sha = Some(format!("head-of-{commit}"));
    jobs.authors = vec!["mona".into()];
    jobs
}

/// Runs every check against `store`, which must be empty.
pub fn all(store: &dyn AgentStore) {
    a_transaction_not_committed_leaves_nothing(store);
    deliveries_are_recorded_once(store);
    jobs_move_through_their_states(store);
    the_audit_log_keeps_its_order_and_finds_a_jobs_end(store);
    reviews_and_approvals_are_kept(store);
    github_reports_resume_where_they_stopped(store);
}

fn a_transaction_not_committed_leaves_nothing(store: &dyn AgentStore) {
    {
        let tx = store.begin(Access::Write).unwrap();
        tx.insert_job(
            &jobs("c0", JobKind::Merge, Trigger::Webhook),
            "prod",
            None,
            "t0",
        )
        .unwrap();
        // Dropped: rolled back.
    }
    let failed: Result<(), DbError> = store.write(|tx| {
        tx.set_last_deployed("acme/infra", "prod", "c0")?;
        Err(DbError::Corrupt("the caller changed its mind".into()))
    });
    assert!(failed.is_err());
    store
        .read(|tx| {
            assert_eq!(tx.job_counts()?.queued, 0);
            assert_eq!(tx.last_deployed("acme/infra", "prod")?, None);
            tx.ping()
        })
        .unwrap();
}

fn deliveries_are_recorded_once(store: &dyn AgentStore) {
    let d = Delivery {
        id: "d-1".into(),
        event: "push".into(),
    };
    store
        .write(|tx| {
            assert!(tx.record_delivery(&d, "enqueued", "t1")?);
            assert!(!tx.record_delivery(&d, "enqueued", "t2")?);
            Ok::<_, DbError>(())
        })
        .unwrap();
}

fn jobs_move_through_their_states(store: &dyn AgentStore) {
    let (a, b, drift, remedy) = store
        .write(|tx| {
            let a = tx.insert_job(
                &jobs("c1", JobKind::Merge, Trigger::Webhook),
                "prod",
                Some("d-1"),
                "t1",
            )?;
            let b = tx.insert_job(
                &jobs("c2", JobKind::Merge, Trigger::Webhook),
                "prod",
                None,
                "t2",
            )?;
            let drift = tx.insert_job(
                &jobs("c2", JobKind::Drift, Trigger::Drift),
                "prod",
                None,
                "t3",
            )?;
            let remedy = tx.insert_job(
                &jobs("c1", JobKind::Merge, Trigger::DriftRemediation),
                "prod",
                None,
                "t4",
            )?;
            Ok::<_, DbError>((a, b, drift, remedy))
        })
        .unwrap();
    assert!(a < b && b < drift && drift < remedy);
    store
        .write(|tx| {
            let job = tx.job(a)?.unwrap();
            assert_eq!(
                (
                    job.commit_sha.as_str(),
                    job.delivery_id.as_deref(),
                    job.pull_request
                ),
                ("c1", Some("d-1"), Some(7))
            );
            assert_eq!(
                (job.kind, job.trigger, job.attempts),
                (JobKind::Merge, Trigger::Webhook, 0)
            );
            assert_eq!(job.head_sha.as_deref(), Some("head-of-c1"));
            assert_eq!(tx.job(9_999)?, None);

            let queued = tx.jobs(&JobQuery::of_root(JobState::Queued, "acme/infra", "prod"))?;
            assert_eq!(
                queued.iter().map(|j| j.id).collect::<Vec<_>>(),
                [a, b, drift, remedy]
            );
            let merges = tx.jobs(&JobQuery {
                kind: Some(JobKind::Merge),
                ..JobQuery::of_root(JobState::Queued, "acme/infra", "prod")
            })?;
            assert_eq!(merges.len(), 3);
            assert!(tx
                .jobs(&JobQuery::of_root(JobState::Queued, "acme/infra", "other"))?
                .is_empty());
            // Remediations re-apply an old commit: not the newest merge of the root.
            assert_eq!(
                tx.newest_merge_commit("acme/infra", "prod")?.as_deref(),
                Some("c2")
            );

            let activity = tx.root_activity(
                "acme/infra",
                "prod",
                &[JobKind::Merge],
                &[JobState::Queued, JobState::Running],
            )?;
            assert_eq!(
                (activity.pending, activity.last_enqueued_at.as_deref()),
                (3, Some("t4"))
            );

            // A job leaves a state only from the states it is allowed to.
            assert!(!tx.set_job_state(a, &[JobState::Running], JobState::AwaitingApproval)?);
            tx.start_job(b, "t5", &["c1".to_owned()])?;
            let started = tx.job(b)?.unwrap();
            assert_eq!(
                (started.attempts, started.covered.clone()),
                (1, vec!["c1".to_owned()])
            );
            assert_eq!(started.started_at.as_deref(), Some("t5"));
            tx.cover_commits(a, &["c0".to_owned(), "c1".to_owned()])?;
            assert_eq!(
                tx.job(a)?.unwrap().covered,
                vec!["c0".to_owned(), "c1".to_owned()]
            );
            assert_eq!(
                tx.job_status(a)?.unwrap().state,
                JobState::Queued,
                "covering commits leaves the state as it was"
            );
            assert!(tx.supersede_job(a, b)?);
            assert!(
                !tx.supersede_job(a, b)?,
                "a done job is not superseded twice"
            );
            assert!(!tx.supersede_job(b, a)?, "a running job is not superseded");
            let status = tx.job_status(a)?.unwrap();
            assert_eq!(
                (status.state, status.outcome, status.superseded_by),
                (JobState::Done, Some(Outcome::Superseded), Some(b))
            );
            assert!(tx.set_job_state(b, &[JobState::Running], JobState::AwaitingApproval)?);
            assert!(tx.set_job_state(b, &[JobState::AwaitingApproval], JobState::Running)?);
            tx.requeue_interrupted(b)?;
            assert!(tx.job(b)?.unwrap().interrupted);
            tx.start_job(b, "t6", &["c1".to_owned()])?;
            assert_eq!(tx.job(b)?.unwrap().attempts, 2);
            tx.end_job(b, "succeeded")?;
            let counts = tx.job_counts()?;
            assert_eq!((counts.queued, counts.running, counts.done), (2, 0, 2));

            let merged = tx.merges_of_commit("acme/infra", "c2")?;
            assert_eq!(merged.len(), 1, "the drift check of c2 is not a merge");
            assert_eq!(merged[0].pull_request, Some(7));
            assert_eq!(merged[0].head_sha.as_deref(), Some("head-of-c2"));
            assert_eq!(merged[0].authors, ["mona"]);

            tx.set_last_deployed("acme/infra", "prod", "c1")?;
            tx.set_last_deployed("acme/infra", "prod", "c2")?;
            assert_eq!(
                tx.last_deployed("acme/infra", "prod")?.as_deref(),
                Some("c2")
            );

            // A teardown job of a preview is pending until it is done.
            let pr = PreviewKey::PullRequest(7);
            assert!(!tx.preview_job_pending("acme/infra", "prod", &pr, JobKind::PreviewDestroy)?);
            let teardown = tx.insert_job(
                &jobs("c2", JobKind::PreviewDestroy, Trigger::Webhook),
                "prod",
                None,
                "t7",
            )?;
            assert!(tx.preview_job_pending("acme/infra", "prod", &pr, JobKind::PreviewDestroy)?);
            tx.end_job(teardown, "succeeded")?;
            assert!(!tx.preview_job_pending("acme/infra", "prod", &pr, JobKind::PreviewDestroy)?);
            Ok::<_, DbError>(())
        })
        .unwrap();
}

fn the_audit_log_keeps_its_order_and_finds_a_jobs_end(store: &dyn AgentStore) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let (job, plan) = store
        .write(|tx| {
            let id = tx.insert_job(
                &jobs("c9", JobKind::PullRequestPlan, Trigger::PullRequest),
                "prod",
                None,
                "t1",
            )?;
            let job = tx.job(id)?.unwrap();
            let plan = PlanSummary {
                add: 2,
                ..Default::default()
            };
            let mut failed = job.audit_record(Outcome::Failed, "t1".into());
            failed.error = Some("boom".into());
            audit::append(tx, &key, failed)?;
            let mut ok = job.audit_record(Outcome::Succeeded, "t2".into());
            ok.plan_summary = Some(plan.clone());
            ok.ended_at = "t3".into();
            audit::append(tx, &key, ok)?;
            Ok::<_, DbError>((job, plan))
        })
        .unwrap();
    store
        .read(|tx| {
            let rows = tx.audit_rows()?;
            assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
            assert_eq!(rows[1].prev_hash, rows[0].hash);
            assert_eq!(tx.audit_head()?, Some((2, rows[1].hash.clone())));
            let newest = tx.end_record(job.id, None)?.unwrap();
            assert_eq!(
                (newest.ended_at.as_str(), newest.plan_summary),
                ("t3", Some(plan.clone()))
            );
            let failed = tx.end_record(job.id, Some("failed"))?.unwrap();
            assert_eq!(failed.error.as_deref(), Some("boom"));
            assert_eq!(tx.end_record(job.id, Some("skipped"))?, None);
            assert_eq!(
                tx.last_pull_request_plan("acme/infra", "prod", 7)?,
                Some((job.id, Some(plan)))
            );
            assert!(audit::verify(tx, Some(&key.verifying_key()))?
                .problems
                .is_empty());
            Ok(())
        })
        .unwrap();
    // Each root's newest drift check that planned, and only that one.
    store
        .write(|tx| {
            for (adds, outcome) in [
                (1, Outcome::Succeeded),
                (0, Outcome::Succeeded),
                (5, Outcome::Failed),
            ] {
                let id = tx.insert_job(
                    &jobs("c9", JobKind::Drift, Trigger::Drift),
                    "prod",
                    None,
                    "t4",
                )?;
                let mut check = tx.job(id)?.unwrap().audit_record(outcome, "t4".into());
                check.plan_summary = Some(PlanSummary {
                    add: adds,
                    ..Default::default()
                });
                audit::append(tx, &key, check)?;
            }
            let checks = tx.last_drift_checks()?;
            assert_eq!(checks.len(), 1, "{checks:?}");
            assert_eq!(checks[0].plan_summary.as_ref().map(|p| p.add), Some(0));
            Ok::<_, DbError>(())
        })
        .unwrap();
}

fn reviews_and_approvals_are_kept(store: &dyn AgentStore) {
    let review = |id: i64, login: &str| Review {
        repository: "acme/infra".into(),
        pull_request: 7,
        review_id: id,
        login: login.into(),
        commit_sha: "h".into(),
        pull_request_author: None,
    };
    store
        .write(|tx| {
            tx.insert_review(&review(2, "bob"), "t1")?;
            tx.insert_review(&review(1, "carol"), "t1")?;
            tx.insert_review(&review(2, "someone-else"), "t2")?;
            let kept = tx.reviews_of("acme/infra", 7)?;
            assert_eq!(
                kept.iter()
                    .map(|r| (r.review_id, r.login.as_str()))
                    .collect::<Vec<_>>(),
                [(1, "carol"), (2, "bob")]
            );
            assert!(tx.reviews_of("acme/infra", 8)?.is_empty());
            assert_eq!(tx.approver_of(1)?, None);
            tx.insert_approval(1, "bob", "cli", "t3")?;
            assert_eq!(tx.approver_of(1)?.as_deref(), Some("bob"));
            Ok::<_, DbError>(())
        })
        .unwrap();
}

fn github_reports_resume_where_they_stopped(store: &dyn AgentStore) {
    store
        .write(|tx| {
            let from = tx.report_start_point()?;
            let id = tx.insert_job(
                &jobs("c5", JobKind::Preview, Trigger::PullRequest),
                "prod",
                None,
                "t1",
            )?;
            assert_eq!(
                tx.report_start_point()?,
                from,
                "fixed the first time it is asked"
            );
            let due = tx.due_reports(id, 1_000, 10)?;
            assert_eq!(
                due.iter()
                    .map(|d| (d.job.id, d.steps_done))
                    .collect::<Vec<_>>(),
                [(id, 0)]
            );
            let mut progress = ReportProgress {
                job_id: id,
                steps_done: 2,
                deployment_id: Some(41),
                failures: 1,
                next_attempt_at: 5_000,
                last_error: Some("502".into()),
                complete: false,
            };
            tx.save_report(&progress)?;
            assert!(
                tx.due_reports(id, 1_000, 10)?.is_empty(),
                "waiting for its retry"
            );
            let due = tx.due_reports(id, 5_000, 10)?;
            assert_eq!(
                (due[0].steps_done, due[0].deployment_id, due[0].failures),
                (2, Some(41), 1)
            );
            assert_eq!(
                tx.preview_deployment("acme/infra", "prod", Some(7))?,
                Some(41)
            );
            progress.complete = true;
            tx.save_report(&progress)?;
            assert!(tx.due_reports(id, i64::MAX, 10)?.is_empty());

            assert!(!tx.note_deployment_attempt(id)?);
            assert!(tx.note_deployment_attempt(id)?);

            assert_eq!(
                tx.pull_request_comment("acme/infra", Some(7), "prod", "plan")?,
                None
            );
            tx.set_pull_request_comment("acme/infra", Some(7), "prod", "plan", 10)?;
            tx.set_pull_request_comment("acme/infra", Some(7), "prod", "plan", 11)?;
            assert_eq!(
                tx.pull_request_comment("acme/infra", Some(7), "prod", "plan")?,
                Some(11)
            );
            assert_eq!(
                tx.pull_request_comment("acme/infra", Some(7), "prod", "preview")?,
                None
            );

            let urls = BTreeMap::from([("url".to_owned(), "http://x".to_owned())]);
            let pr = PreviewKey::PullRequest(7);
            tx.mark_preview_active("acme/infra", "prod", &pr, "c5", 1, 100, None)?;
            tx.preview_applied("acme/infra", "prod", &pr, &urls, 2, 200)?;
            let p = tx.preview("acme/infra", "prod", &pr)?.unwrap();
            assert_eq!((p.urls, p.expires_at_ms, p.active), (urls, 200, true));
            tx.preview_destroyed("acme/infra", "prod", &pr, 3)?;
            assert!(tx.active_previews()?.is_empty());
            Ok::<_, DbError>(())
        })
        .unwrap();
}

#[test]
fn the_sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("agent.db")).unwrap();
    all(&store);
}
