//! Which queued job runs, and whether it runs: pure decisions over the commit graph.
//!
//! The rule is git's truth: what the tracked branch points to now is what must be
//! deployed. So a job's commit must be reachable from the branch tip as just fetched
//! (or be the tip); a commit a force push removed is skipped, however it was asked for
//! (an old delivery sent again, a stale API call). An older commit than the deployed one
//! is skipped as a late or repeated delivery only while the branch is not there: after
//! `git reset --hard main~1 && git push -f` the tip is that older commit, and it runs.
//!
//! Nothing here touches git or the database: the runner passes the fetched tip and a
//! [`Graph`] (the repository cache), which keeps every rule unit-testable.

use crate::queue::Job;

/// What the decisions need to know of the commit graph.
pub trait Graph {
    /// Why the repository could not answer.
    type Error;
    /// Whether the repository holds commit `sha`.
    fn has_commit(&self, sha: &str) -> bool;
    /// Whether `ancestor` is `descendant` or one of its ancestors.
    fn is_ancestor_or_same(&self, ancestor: &str, descendant: &str) -> Result<bool, Self::Error>;
}

/// Why a job does not run Terraform. Its text is the audit record's `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The commit is not reachable from the branch tip as just fetched.
    NotOnBranch { branch: String, tip: String },
    /// The commit is what the root already runs.
    AlreadyDeployed,
    /// The commit is older than the deployed one and the branch is elsewhere.
    Behind { last: String, tip: String },
    /// The commit changes none of the root's trigger paths since `base` (the deployed
    /// commit, or the commit's parent).
    NoChange {
        paths: Vec<String>,
        base: Option<String>,
    },
    /// A drift remediation ([`crate::drift`]) of a commit that is no longer the one
    /// deployed: what is deployed now is checked on its own.
    RemediationMoot { deployed: Option<String> },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NotOnBranch { branch, tip } => write!(
                f,
                "the commit is not on branch {branch} (its tip is {tip} as just fetched): a force push removed it; nothing was run"
            ),
            SkipReason::AlreadyDeployed => {
                f.write_str("the commit is already deployed: a repeated delivery")
            }
            SkipReason::Behind { last, tip } => write!(
                f,
                "the commit is an ancestor of the deployed commit {last} and branch tip {tip} is elsewhere: a late or repeated delivery"
            ),
            SkipReason::NoChange { paths, base } => write!(
                f,
                "no change under {} since {}",
                paths.join(", "),
                base.as_deref().unwrap_or("the commit's parent")
            ),
            SkipReason::RemediationMoot { deployed } => write!(
                f,
                "the drift remediation is moot: the root's deployed commit is {} now",
                deployed.as_deref().unwrap_or("none")
            ),
        }
    }
}

/// Whether `sha` is the tip or reachable from it.
pub fn on_branch<G: Graph>(graph: &G, sha: &str, tip: &str) -> Result<bool, G::Error> {
    if sha == tip {
        return Ok(true);
    }
    Ok(graph.has_commit(sha) && graph.is_ancestor_or_same(sha, tip)?)
}

/// What to do with a root's queued jobs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// The job to run: the newest one no other runnable job's commit descends from.
    pub target: Option<Job>,
    /// Runnable jobs whose commits the target carries.
    pub superseded: Vec<Job>,
    /// Jobs whose commit is not on the branch, each recorded as skipped.
    pub off_branch: Vec<Job>,
}

/// Collapses a root's queued jobs (oldest first) against the branch tip: jobs whose
/// commit the branch no longer holds are set aside, and the rest collapse into the
/// newest commit that no other of them descends from.
pub fn select<G: Graph>(queued: Vec<Job>, tip: &str, graph: &G) -> Result<Selection, G::Error> {
    let mut runnable = Vec::new();
    let mut off_branch = Vec::new();
    for job in queued {
        if on_branch(graph, &job.commit_sha, tip)? {
            runnable.push(job);
        } else {
            off_branch.push(job);
        }
    }
    let mut target: Option<&Job> = None;
    for job in &runnable {
        let mut dominated = false;
        for other in &runnable {
            if other.commit_sha != job.commit_sha
                && graph.is_ancestor_or_same(&job.commit_sha, &other.commit_sha)?
            {
                dominated = true;
                break;
            }
        }
        if !dominated && target.is_none_or(|t| job.id > t.id) {
            target = Some(job);
        }
    }
    let target = target.cloned();
    let superseded = match &target {
        Some(t) => runnable.into_iter().filter(|j| j.id != t.id).collect(),
        None => Vec::new(),
    };
    Ok(Selection {
        target,
        superseded,
        off_branch,
    })
}

/// The merge jobs a worker selects from: the queued ones and, when there is at least
/// one, those held for approval ([`crate::approvals`]), oldest first. So a newer merge
/// supersedes a waiting one (its commit carries the waiting one's), and an older merge
/// that arrives late is superseded by the waiting one, which then waits again; with
/// nothing queued, the waiting jobs are left alone.
pub fn candidates(queued: Vec<Job>, waiting: Vec<Job>) -> Vec<Job> {
    if queued.is_empty() {
        return Vec::new();
    }
    let mut all = queued;
    for w in waiting {
        if !all.iter().any(|j| j.id == w.id) {
            all.push(w);
        }
    }
    all.sort_by_key(|j| j.id);
    all
}

/// Whether a job runs, before looking at which paths it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run, comparing paths against `base` (the deployed commit, when the repository
    /// holds it; else the commit's parent).
    Run {
        base: Option<String>,
    },
    Skip(SkipReason),
}

/// Decides on `sha` for a root whose last deployed commit is `last`, with the branch
/// at `tip` as just fetched.
pub fn decide<G: Graph>(
    graph: &G,
    sha: &str,
    branch: &str,
    tip: &str,
    last: Option<&str>,
) -> Result<Verdict, G::Error> {
    if !on_branch(graph, sha, tip)? {
        return Ok(Verdict::Skip(SkipReason::NotOnBranch {
            branch: branch.to_owned(),
            tip: tip.to_owned(),
        }));
    }
    let Some(last) = last else {
        return Ok(Verdict::Run { base: None });
    };
    if last == sha {
        return Ok(Verdict::Skip(SkipReason::AlreadyDeployed));
    }
    let known = graph.has_commit(last);
    if sha != tip && known && graph.is_ancestor_or_same(sha, last)? {
        return Ok(Verdict::Skip(SkipReason::Behind {
            last: last.to_owned(),
            tip: tip.to_owned(),
        }));
    }
    // A rollback runs too: the paths compared are those between what is deployed and
    // the commit, in whichever direction.
    Ok(Verdict::Run {
        base: known.then(|| last.to_owned()),
    })
}

/// Whether a drift remediation ([`crate::drift`]) of `sha` runs, for a root whose deployed commit is
/// `last`, with the branch at `tip` as just fetched: only while `sha` is still the
/// deployed commit and on the branch. (Unlike a merge, it runs although the commit is
/// deployed and changes none of the root's paths: applying it again is the point.)
pub fn remediation_verdict<G: Graph>(
    graph: &G,
    sha: &str,
    branch: &str,
    tip: &str,
    last: Option<&str>,
) -> Result<Verdict, G::Error> {
    // Whether it is on the branch, as for a merge of a root with nothing deployed.
    if let skip @ Verdict::Skip(_) = decide(graph, sha, branch, tip, None)? {
        return Ok(skip);
    }
    if last != Some(sha) {
        return Ok(Verdict::Skip(SkipReason::RemediationMoot {
            deployed: last.map(str::to_owned),
        }));
    }
    Ok(Verdict::Run { base: None })
}

/// Whether the poller should queue the branch tip for a root: not when the root's
/// newest job is for the tip already (it ran, failed, or waits), nor when the tip is
/// what the root runs. So a rollback by force push, which moves the tip to a commit
/// that had a job long ago, is queued again; a tip is never queued twice in a row.
pub fn tip_needs_job(
    tip: &str,
    newest_job_commit: Option<&str>,
    last_deployed: Option<&str>,
) -> bool {
    newest_job_commit != Some(tip) && last_deployed != Some(tip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A commit graph: commit → parents.
    struct Fake(HashMap<&'static str, Vec<&'static str>>);

    impl Graph for Fake {
        type Error = std::convert::Infallible;
        fn has_commit(&self, sha: &str) -> bool {
            self.0.contains_key(sha)
        }
        fn is_ancestor_or_same(&self, a: &str, d: &str) -> Result<bool, Self::Error> {
            if a == d {
                return Ok(true);
            }
            let parents = self.0.get(d).cloned().unwrap_or_default();
            for p in parents {
                if self.is_ancestor_or_same(a, p)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }

    /// a ← b ← c on main; b ← x was main's tip before a force push to c.
    fn graph() -> Fake {
        Fake(HashMap::from([
            ("a", vec![]),
            ("b", vec!["a"]),
            ("c", vec!["b"]),
            ("x", vec!["b"]),
        ]))
    }

    #[test]
    fn a_remediation_runs_only_while_its_commit_is_deployed_and_on_the_branch() {
        let g = graph();
        // Deployed and behind the tip (the newer commit touches other roots): runs.
        assert_eq!(
            remediation_verdict(&g, "b", "main", "c", Some("b")),
            Ok(Verdict::Run { base: None })
        );
        assert_eq!(
            remediation_verdict(&g, "b", "main", "c", Some("c")),
            Ok(Verdict::Skip(SkipReason::RemediationMoot {
                deployed: Some("c".into())
            }))
        );
        assert!(matches!(
            remediation_verdict(&g, "x", "main", "c", Some("x")),
            Ok(Verdict::Skip(SkipReason::NotOnBranch { .. }))
        ));
    }

    fn job(id: i64, sha: &str) -> Job {
        Job {
            id,
            repository: "r".into(),
            root: "prod".into(),
            branch: "main".into(),
            commit_sha: sha.into(),
            trigger: slipway_provenance::Trigger::Webhook,
            delivery_id: None,
            pull_request: None,
            actor: None,
            enqueued_at: String::new(),
            covered: Vec::new(),
            started_at: None,
            attempts: 0,
            interrupted: false,
            kind: crate::job_kind::JobKind::Merge,
            head_sha: None,
            base_sha: None,
        }
    }

    fn ids(jobs: &[Job]) -> Vec<i64> {
        jobs.iter().map(|j| j.id).collect()
    }

    #[test]
    fn a_newer_merge_supersedes_one_waiting_for_approval() {
        let g = graph();
        // b waits for an approval; c is merged: c runs, b is superseded by it.
        let s = select(candidates(vec![job(3, "c")], vec![job(2, "b")]), "c", &g).unwrap();
        assert_eq!(s.target.map(|t| t.id), Some(3));
        assert_eq!(ids(&s.superseded), [2]);
        // A late delivery of a, older than the waiting b: b stays the target (and
        // waits again), a is superseded.
        let s = select(candidates(vec![job(4, "a")], vec![job(2, "b")]), "c", &g).unwrap();
        assert_eq!(s.target.map(|t| t.id), Some(2));
        assert_eq!(ids(&s.superseded), [4]);
        // Nothing queued: the waiting job is not selected again (it would only wait).
        assert!(candidates(vec![], vec![job(2, "b")]).is_empty());
        // A waiting job that a force push removed is set aside like any other.
        let s = select(candidates(vec![job(5, "c")], vec![job(2, "x")]), "c", &g).unwrap();
        assert_eq!(s.target.map(|t| t.id), Some(5));
        assert_eq!(ids(&s.off_branch), [2]);
    }

    #[test]
    fn a_rollback_to_an_older_commit_runs_while_the_branch_is_there() {
        let g = graph();
        // Deployed c, then main was reset to b: b is the tip, so it runs.
        assert_eq!(
            decide(&g, "b", "main", "b", Some("c")).unwrap(),
            Verdict::Run {
                base: Some("c".into())
            }
        );
        // The same commit while main is at c is a late delivery.
        assert!(matches!(
            decide(&g, "b", "main", "c", Some("c")).unwrap(),
            Verdict::Skip(SkipReason::Behind { .. })
        ));
        assert_eq!(
            decide(&g, "c", "main", "c", Some("c")).unwrap(),
            Verdict::Skip(SkipReason::AlreadyDeployed)
        );
        assert_eq!(
            decide(&g, "c", "main", "c", Some("b")).unwrap(),
            Verdict::Run {
                base: Some("b".into())
            }
        );
        assert_eq!(
            decide(&g, "a", "main", "c", None).unwrap(),
            Verdict::Run { base: None }
        );
    }

    #[test]
    fn a_commit_the_branch_no_longer_holds_never_runs() {
        let g = graph();
        let not_on_branch = Verdict::Skip(SkipReason::NotOnBranch {
            branch: "main".into(),
            tip: "c".into(),
        });
        // x was force-pushed away: skipped even though it is newer than the deployed b.
        assert_eq!(
            decide(&g, "x", "main", "c", Some("b")).unwrap(),
            not_on_branch
        );
        assert_eq!(decide(&g, "x", "main", "c", None).unwrap(), not_on_branch);
        // A commit the repository does not even hold.
        assert!(matches!(
            decide(&g, "zz", "main", "c", Some("b")).unwrap(),
            Verdict::Skip(SkipReason::NotOnBranch { .. })
        ));
        let text = SkipReason::NotOnBranch {
            branch: "main".into(),
            tip: "c".into(),
        }
        .to_string();
        assert!(text.contains("not on branch main"), "{text}");
    }

    #[test]
    fn queued_jobs_collapse_into_the_newest_commit_on_the_branch() {
        let g = graph();
        let s = select(vec![job(1, "a"), job(2, "b"), job(3, "c")], "c", &g).unwrap();
        assert_eq!(s.target.map(|t| t.id), Some(3));
        assert_eq!(ids(&s.superseded), [1, 2]);
        assert!(s.off_branch.is_empty());

        // x (queued before the force push) would dominate b, but main is at c now: x is
        // set aside and the rollback target is the tip's job.
        let s = select(vec![job(4, "x"), job(5, "b")], "b", &g).unwrap();
        assert_eq!(s.target.map(|t| t.id), Some(5));
        assert!(s.superseded.is_empty());
        assert_eq!(ids(&s.off_branch), [4]);

        // Repeated deliveries of one commit: the newest job runs, the rest ride along.
        let s = select(vec![job(6, "b"), job(7, "b")], "c", &g).unwrap();
        assert_eq!(s.target.map(|t| t.id), Some(7));
        assert_eq!(ids(&s.superseded), [6]);

        let s = select(vec![job(8, "x")], "c", &g).unwrap();
        assert_eq!(s.target, None);
        assert_eq!(ids(&s.off_branch), [8]);
    }

    #[test]
    fn the_poller_queues_a_tip_that_moved_back() {
        // Rolled back from c to b: b had a job long ago, but the newest is for c.
        assert!(tip_needs_job("b", Some("c"), Some("c")));
        // A tip whose job ran (or failed, or waits) is not queued again.
        assert!(!tip_needs_job("c", Some("c"), Some("b")));
        // A late delivery of b made the newest job b's while c is deployed and the tip.
        assert!(!tip_needs_job("c", Some("b"), Some("c")));
        assert!(tip_needs_job("a", None, None));
    }
}
