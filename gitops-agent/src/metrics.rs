//! The agent's metrics: counters and histograms kept by the code that observes them,
//! rendered for `GET /metrics` ([`crate::http::metrics`]) in the format the client
//! asks for with `Accept`: OpenMetrics text (what Prometheus asks for first) or the
//! plain text format 0.0.4 (any other client, `curl` included), each metric with its
//! HELP and TYPE ([`text_format`]).
//!
//! Counters and histograms are kept in memory by the code that observes them (jobs,
//! webhooks, GitHub reports). The queue depth and each root's last deployed commit are
//! read from the database at scrape time instead, so they are right even for jobs that
//! `slipway-agent deploy` queued from another process, and right after a restart.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::db::DbError;
use crate::store::AgentTx;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeployedLabels {
    repository: String,
    root: String,
    commit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RootLabels {
    repository: String,
    root: String,
}

/// Job durations: 0.5 s to about 68 min.
fn job_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 2.0, 14))
}

/// The agent's metrics.
pub struct Metrics {
    registry: Registry,
    jobs: Family<OutcomeLabel, Counter>,
    job_duration: Family<OutcomeLabel, Histogram, fn() -> Histogram>,
    webhook_duration: Histogram,
    github_reports: Family<ResultLabel, Counter>,
    queue: Family<StateLabel, Gauge>,
    last_deployed: Family<DeployedLabels, Gauge>,
    drift_checks: Family<ResultLabel, Counter>,
    drift_detected: Family<RootLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("slipway");
        let jobs = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "jobs",
            "Jobs finished, by outcome (succeeded, failed, skipped, superseded)",
            jobs.clone(),
        );
        let job_duration =
            Family::<OutcomeLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                job_histogram,
            );
        registry.register(
            "job_duration_seconds",
            "Time from a job's start to its recorded outcome",
            job_duration.clone(),
        );
        // Webhook answers: 0.5 ms to about 4 s.
        let webhook_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "webhook_duration_seconds",
            "Time to answer a GitHub webhook delivery (verified and stored)",
            webhook_duration.clone(),
        );
        let github_reports = Family::<ResultLabel, Counter>::default();
        registry.register(
            "github_reports",
            "Requests reporting to GitHub, by result (sent, retried, abandoned)",
            github_reports.clone(),
        );
        let queue = Family::<StateLabel, Gauge>::default();
        registry.register(
            "queue_jobs",
            "Jobs waiting (queued) or running now",
            queue.clone(),
        );
        let last_deployed = Family::<DeployedLabels, Gauge>::default();
        registry.register(
            "last_deployed_timestamp_seconds",
            "When each root's last deployed commit was applied (Unix time); the commit is a label",
            last_deployed.clone(),
        );
        let drift_checks = Family::<ResultLabel, Counter>::default();
        registry.register(
            "drift_checks",
            "Drift checks of deployed commits, by result (clean, drift, failed)",
            drift_checks.clone(),
        );
        let drift_detected = Family::<RootLabels, Gauge>::default();
        registry.register(
            "drift_detected",
            "1 when the last drift check of a root found changes to its deployed commit, 0 when it found none",
            drift_detected.clone(),
        );
        Metrics {
            drift_checks,
            drift_detected,
            registry,
            jobs,
            job_duration,
            webhook_duration,
            github_reports,
            queue,
            last_deployed,
        }
    }

    /// A job's recorded outcome and how long it took.
    pub fn job_finished(&self, outcome: &str, took: Duration) {
        let label = OutcomeLabel {
            outcome: outcome.to_owned(),
        };
        self.jobs.get_or_create(&label).inc();
        self.job_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// Jobs closed without running (superseded by a newer commit).
    pub fn jobs_closed(&self, outcome: &str, count: usize) {
        self.jobs
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc_by(count as u64);
    }

    pub fn webhook_answered(&self, took: Duration) {
        self.webhook_duration.observe(took.as_secs_f64());
    }

    /// One GitHub request: `sent`, `retried` or `abandoned`.
    pub fn github_report(&self, result: &str) {
        self.github_reports
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    /// A drift check's result: `clean`, `drift` or `failed` ([`crate::drift::Finding`]).
    pub fn drift_checked(&self, result: &str) {
        self.drift_checks
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    /// The text a scrape returns, after reading the database-backed gauges.
    pub fn render(&self, tx: &dyn AgentTx) -> Result<String, DbError> {
        let counts = tx.job_counts()?;
        for (state, value) in [("queued", counts.queued), ("running", counts.running)] {
            self.queue
                .get_or_create(&StateLabel {
                    state: state.to_owned(),
                })
                .set(value);
        }
        self.last_deployed.clear();
        for root in tx.deployed_roots()? {
            let when = root
                .deployed_at
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map_or(0, |t| t.timestamp());
            self.last_deployed
                .get_or_create(&DeployedLabels {
                    repository: root.repository,
                    root: root.root,
                    commit: root.commit_sha,
                })
                .set(when);
        }
        self.drift_detected.clear();
        for check in tx.last_drift_checks()? {
            let drifted = check.plan_summary.is_some_and(|p| p.has_changes());
            self.drift_detected
                .get_or_create(&RootLabels {
                    repository: check.repository,
                    root: check.root,
                })
                .set(i64::from(drifted));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| DbError::Corrupt(format!("encode metrics: {e}")))?;
        Ok(text)
    }
}

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            part.split(';').next().is_some_and(|media| {
                media
                    .trim()
                    .eq_ignore_ascii_case("application/openmetrics-text")
            })
        })
    })
}

/// OpenMetrics text turned into the text format 0.0.4: no `# EOF` or `# UNIT`, and a
/// counter family named by its `_total` sample, as 0.0.4 wants.
pub fn text_format(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let counters: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in lines {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(r) => out.push_str(&r),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_shows_jobs_queue_and_last_deploy() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("m.db")).unwrap();
        db.store()
            .write(|tx| tx.set_last_deployed("acme/infra", "prod", "abc123"))
            .unwrap();
        let m = Metrics::new();
        m.job_finished("succeeded", Duration::from_millis(1500));
        m.webhook_answered(Duration::from_millis(3));
        m.github_report("retried");
        let text = db.store().read(|tx| m.render(tx)).unwrap();
        assert!(
            text.contains("slipway_jobs_total{outcome=\"succeeded\"} 1"),
            "{text}"
        );
        assert!(text.contains("slipway_job_duration_seconds_count{outcome=\"succeeded\"} 1"));
        assert!(text.contains("slipway_webhook_duration_seconds_count 1"));
        assert!(text.contains("slipway_github_reports_total{result=\"retried\"} 1"));
        assert!(text.contains("slipway_queue_jobs{state=\"queued\"} 0"));
        assert!(text.contains(
            "slipway_last_deployed_timestamp_seconds{repository=\"acme/infra\",root=\"prod\",commit=\"abc123\"} 0"
        ));
        assert!(text.ends_with("# EOF\n"));

        // The same in text format 0.0.4: every sample's family has HELP and TYPE.
        let plain = text_format(&text);
        assert!(
            !plain.contains("# EOF") && !plain.contains("# UNIT"),
            "{plain}"
        );
        assert!(
            plain.contains("# TYPE slipway_jobs_total counter\n"),
            "{plain}"
        );
        assert!(
            plain.contains("# HELP slipway_jobs_total Jobs finished"),
            "{plain}"
        );
        assert!(plain.contains("# TYPE slipway_job_duration_seconds histogram\n"));
        let typed: Vec<&str> = plain
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for family in &typed {
            assert!(
                plain.contains(&format!("# HELP {family} ")),
                "no HELP for {family}: {plain}"
            );
        }
        for sample in plain.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap();
            assert!(
                typed.iter().any(|f| name == *f
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name == format!("{f}{s}"))),
                "sample {name} has no TYPE: {plain}"
            );
        }
        assert_eq!(typed.len(), 6, "{plain}");
    }

    #[test]
    fn the_format_follows_accept() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
