//! Operating `slipway-agent`: what it reports to GitHub (against a recording fake
//! GitHub, checking the exact requests), retries of failed reports, GitHub App tokens,
//! `/metrics`, `/readyz`, the job log over HTTP, and SIGTERM with a running job.
//!
//! Real agent binary, real git, real Terraform (1.4 or later, for `terraform_data`).

use std::time::Duration;

use serde_json::Value;
use slipway_tests::agent_support::{
    deliver, http, merged_pull_request, terraform_with_terraform_data, wait_for, Agent,
    AgentOptions, Origin, API_TOKEN, GITHUB_REPO, WEBHOOK_SECRET,
};
use slipway_tests::fake_github::{Auth, FakeGitHub, RateLimit, Recorded};

const GITHUB_TOKEN: &str = "ghp_e2eTokenForTheFakeGitHub0001";
const PUBLIC_URL: &str = "https://slipway.example.com";

fn outcome(r: &Value) -> &str {
    r["outcome"].as_str().unwrap_or("")
}

/// A `[github]` table using a token stored in a file under `dir`.
fn github_token_config(dir: &std::path::Path, fake: &FakeGitHub, extra: &str) -> String {
    slipway_tests::agent_support::github_token_config(dir, &fake.api_url, GITHUB_TOKEN, extra)
}

/// `METHOD path` of each request, with the repository part shortened to `R`.
fn shape(requests: &[Recorded]) -> Vec<String> {
    let prefix = format!("/api/v3/repos/{GITHUB_REPO}");
    requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path.replace(&prefix, "R")))
        .collect()
}

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_merge_is_reported_to_github_and_shows_in_metrics_and_the_job_log() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeGitHub::start(Auth::Token(GITHUB_TOKEN.into()));
    let origin = Origin::new(tmp.path());
    let options = AgentOptions {
        public_url: Some(format!("{PUBLIC_URL}/")),
        extra_config: github_token_config(tmp.path(), &fake, "comment_on_pull_request = true"),
        json_logs: true,
        ..AgentOptions::default()
    };
    let mut agent = Agent::new(tmp.path(), &origin, &tf, options);
    let addr = agent.start();
    assert_eq!(http(addr, "GET", "/readyz", &[], b"").status, 200);

    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(7, &sha, "octocat");
    let r = deliver(
        addr,
        "pull_request",
        "d-report-1",
        &body,
        Some(WEBHOOK_SECRET),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let record = agent.wait_for_record("the merge to be applied", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    let job = record["job_id"].as_i64().unwrap();
    fake.wait_for("the whole report", Duration::from_secs(60), |r| {
        r.len() >= 8
    });
    std::thread::sleep(Duration::from_millis(800));
    let requests = fake.requests();

    // The exact requests, in order.
    let statuses = format!("POST R/statuses/{sha}");
    assert_eq!(
        shape(&requests),
        [
            "POST R/deployments".to_owned(),
            format!("POST R/deployments/{}/statuses", 1001),
            statuses.clone(),
            format!("POST R/deployments/{}/statuses", 1001),
            statuses.clone(),
            format!("POST R/deployments/{}/statuses", 1001),
            statuses,
            "POST R/issues/7/comments".to_owned(),
        ]
    );
    for r in &requests {
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {GITHUB_TOKEN}").as_str())
        );
    }
    let log_url = format!("{PUBLIC_URL}/api/v1/jobs/{job}/log");
    let deployment = &requests[0].body;
    assert_eq!(deployment["ref"], sha.as_str());
    assert_eq!(deployment["environment"], "infra");
    assert_eq!(deployment["auto_merge"], false);
    assert_eq!(deployment["required_contexts"], serde_json::json!([]));
    assert_eq!(deployment["payload"]["job_id"], job);
    let dep_states: Vec<&str> = [1, 3, 5]
        .iter()
        .map(|&i| requests[i].body["state"].as_str().unwrap())
        .collect();
    assert_eq!(dep_states, ["queued", "in_progress", "success"]);
    for i in [1, 3, 5] {
        assert_eq!(requests[i].body["log_url"], log_url.as_str());
        assert_eq!(requests[i].body["environment"], "infra");
    }
    let commit_states: Vec<(&str, &str)> = [2, 4, 6]
        .iter()
        .map(|&i| {
            (
                requests[i].body["state"].as_str().unwrap(),
                requests[i].body["description"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        commit_states,
        [
            ("pending", "Queued"),
            ("pending", "Running terraform plan and apply"),
            ("success", "Applied: 1 to add, 0 to change, 0 to destroy"),
        ]
    );
    for i in [2, 4, 6] {
        assert_eq!(requests[i].body["context"], "slipway/infra");
        assert_eq!(requests[i].body["target_url"], log_url.as_str());
    }
    let comment = requests[7].body["body"].as_str().unwrap();
    assert!(comment.contains(&sha[..7]), "{comment}");
    assert!(
        comment.contains("- add `terraform_data.release`"),
        "{comment}"
    );
    assert!(comment.contains(&log_url), "{comment}");
    let deployments = fake.deployments();
    assert_eq!(deployments.len(), 1);
    assert_eq!(
        deployments[&1001].2,
        ["queued", "in_progress", "success"],
        "deployment statuses"
    );

    // The job log, behind the API token.
    let path = format!("/api/v1/jobs/{job}/log");
    assert_eq!(http(addr, "GET", &path, &[], b"").status, 401);
    let bad = http(addr, "GET", &path, &[("Authorization", "Bearer nope")], b"");
    assert_eq!(bad.status, 401);
    let auth = format!("Bearer {API_TOKEN}");
    let log = http(addr, "GET", &path, &[("Authorization", &auth)], b"");
    assert_eq!(log.status, 200);
    assert!(log.body.contains("$ terraform apply"), "{}", log.body);
    assert!(!log.body.contains(WEBHOOK_SECRET) && !log.body.contains(GITHUB_TOKEN));
    let missing = http(
        addr,
        "GET",
        "/api/v1/jobs/999/log",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("job 999 has no log"),
        "{}",
        missing.body
    );
    // A bad id is named, but only to a caller with a token.
    assert_eq!(
        http(addr, "GET", "/api/v1/jobs/x1/log", &[], b"").status,
        401
    );
    let bad_id = http(
        addr,
        "GET",
        "/api/v1/jobs/x1/log",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(bad_id.status, 400, "{}", bad_id.body);
    assert!(
        bad_id.body.contains("job id `x1` is not a number"),
        "{}",
        bad_id.body
    );

    // A scrape after the run, as Prometheus asks for it.
    let openmetrics = [(
        "Accept",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    )];
    let scrape = http(addr, "GET", "/metrics", &openmetrics, b"");
    assert_eq!(scrape.status, 200);
    let text = scrape.body;
    // Any other client gets the text format 0.0.4: HELP and TYPE for every family, a
    // counter named by its `_total` sample, no `# EOF`.
    let plain = http(addr, "GET", "/metrics", &[("Accept", "*/*")], b"").body;
    assert!(!plain.contains("# EOF"), "{plain}");
    assert!(
        plain.contains("# TYPE slipway_jobs_total counter"),
        "{plain}"
    );
    assert!(plain.contains("# HELP slipway_jobs_total "), "{plain}");
    for family in plain.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(plain.contains(&format!("# HELP {name} ")), "{plain}");
    }
    assert_eq!(
        metric(&plain, "slipway_jobs_total{outcome=\"succeeded\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "slipway_jobs_total{outcome=\"succeeded\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "slipway_job_duration_seconds_count{outcome=\"succeeded\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "slipway_webhook_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "slipway_queue_jobs{state=\"queued\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "slipway_queue_jobs{state=\"running\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "slipway_github_reports_total{result=\"sent\"}"),
        Some(8.0)
    );
    let deployed = metric(
        &text,
        &format!(
            "slipway_last_deployed_timestamp_seconds{{repository=\"hello\",root=\"infra\",commit=\"{sha}\"}}"
        ),
    )
    .unwrap_or_else(|| panic!("no last deployed commit in\n{text}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - deployed).abs() < 600.0, "{deployed} vs {now}");
    assert!(text.ends_with("# EOF\n"));

    // Logs were JSON lines, with the job's fields, and no secret.
    let logs = agent.log_text();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
    let finished = lines
        .iter()
        .find(|l| l["message"] == "job finished")
        .expect("a `job finished` line");
    assert_eq!(finished["job"], job);
    assert_eq!(finished["outcome"], "succeeded");
    for secret in [GITHUB_TOKEN, WEBHOOK_SECRET, API_TOKEN] {
        assert!(!logs.contains(secret));
    }
}

#[test]
fn failed_reports_are_retried_and_never_repeat_the_deployment() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeGitHub::start(Auth::Token(GITHUB_TOKEN.into()));
    // GitHub has a bad minute: the deployment's creation and two commit statuses fail
    // with 5xx, one with a rate limit; a comment is refused for good (422).
    fake.fail_next("/deployments", 1, 500);
    fake.fail_next("/statuses/", 2, 502);
    fake.fail_next("/comments", 1, 422);
    let origin = Origin::new(tmp.path());
    let options = AgentOptions {
        extra_config: github_token_config(tmp.path(), &fake, "comment_on_pull_request = true"),
        ..AgentOptions::default()
    };
    let mut agent = Agent::new(tmp.path(), &origin, &tf, options);
    let addr = agent.start();
    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(9, &sha, "octocat");
    assert_eq!(
        deliver(addr, "pull_request", "d-retry", &body, Some(WEBHOOK_SECRET)).status,
        202
    );
    agent.wait_for_record("the merge to be applied", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    fake.wait_for("the comment attempt", Duration::from_secs(60), |r| {
        r.iter().any(|r| r.path.ends_with("/comments"))
    });
    std::thread::sleep(Duration::from_secs(2));
    let requests = fake.requests();
    let failed: Vec<u16> = requests
        .iter()
        .filter(|r| r.status >= 400)
        .map(|r| r.status)
        .collect();
    assert_eq!(failed, [500, 502, 502, 422], "{:#?}", shape(&requests));

    // One deployment was created (the failed attempt created none), with every status.
    let deployments = fake.deployments();
    assert_eq!(deployments.len(), 1, "{deployments:?}");
    let (_, (environment, deployed_sha, states)) = deployments.into_iter().next().unwrap();
    assert_eq!(
        (environment.as_str(), deployed_sha.as_str()),
        ("infra", sha.as_str())
    );
    assert_eq!(states, ["queued", "in_progress", "success"]);
    let ok_commit_states: Vec<&str> = requests
        .iter()
        .filter(|r| r.path.contains("/statuses/") && r.status == 201)
        .map(|r| r.body["state"].as_str().unwrap())
        .collect();
    assert_eq!(ok_commit_states, ["pending", "pending", "success"]);
    // The refused comment was not retried.
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.path.ends_with("/comments"))
            .count(),
        1
    );

    // The deployment itself ran once and is recorded once.
    let applies = std::fs::read_to_string(&agent.provenance_log).unwrap();
    assert_eq!(applies.matches("--- apply").count(), 1);
    let log = agent.audit();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(outcome(&log[0]), "succeeded");

    // Each failure was logged; the tokens were not.
    let text = agent.log_text();
    assert_eq!(
        text.matches("GitHub report failed; will retry").count(),
        3,
        "{text}"
    );
    assert!(text.contains("GitHub report given up"), "{text}");
    assert!(text.contains("422"), "{text}");
    assert!(!text.contains(GITHUB_TOKEN));
    let metrics = http(addr, "GET", "/metrics", &[], b"").body;
    assert_eq!(
        metric(&metrics, "slipway_github_reports_total{result=\"retried\"}"),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "slipway_github_reports_total{result=\"abandoned\"}"
        ),
        Some(1.0)
    );

    // A restart reports nothing twice.
    let before = fake.requests().len();
    assert!(agent.terminate().success());
    agent.start();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fake.requests().len(), before);
}

#[test]
fn a_github_app_gets_installation_tokens_and_renews_them() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("app.pem");
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Tokens that expire 30 s after issue are within the client's 30 s renewal margin
    // at once: every later call must first fetch a new token.
    let fake = FakeGitHub::start(Auth::App {
        app_id: 4242,
        installation_id: 77,
        token_ttl: Duration::from_secs(30),
    });
    let origin = Origin::new(tmp.path());
    // The agent fetches over HTTP from the fake, which wants an installation token.
    let git_base = fake.serve_git(tmp.path());
    let options = AgentOptions {
        repository_url: Some(format!("{git_base}/origin.git")),
        extra_config: format!(
            "[github]\napi_url = \"{}\"\napp_id = 4242\ninstallation_id = 77\napp_key = {{ file = \"{}\" }}\nretry_initial_ms = 200\n",
            fake.api_url,
            key.display()
        ),
        ..AgentOptions::default()
    };
    let mut agent = Agent::new(tmp.path(), &origin, &tf, options);
    let check = agent.cli(&["check-config"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let addr = agent.start();
    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(3, &sha, "octocat");
    assert_eq!(
        deliver(addr, "pull_request", "d-app", &body, Some(WEBHOOK_SECRET)).status,
        202
    );
    agent.wait_for_record("the merge to be applied", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    fake.wait_for("the whole report", Duration::from_secs(60), |r| {
        r.iter()
            .filter(|r| !r.path.contains("access_tokens"))
            .count()
            >= 7
    });
    let requests = fake.requests();
    // Every API call was accepted with a token the App was issued.
    for r in fake.api_requests() {
        assert_eq!(r.status, 201, "{r:?}");
        let auth = r.authorization.unwrap();
        assert!(auth.starts_with("Bearer ghs_fake"), "{auth}");
    }
    let token_requests: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.path == "/api/v3/app/installations/77/access_tokens")
        .collect();
    assert!(
        token_requests.len() >= 2,
        "the token was not renewed: {:#?}",
        shape(&requests)
    );
    for claims in fake.jwt_claims() {
        assert_eq!(claims["iss"].as_u64(), Some(4242), "{claims}");
    }
    // Every API request, the installation token requests included, says what it
    // accepts and which API version it was written for.
    for r in requests.iter().filter(|r| !r.path.starts_with("/git/")) {
        assert_eq!(
            (r.accept.as_deref(), r.api_version.as_deref()),
            (Some("application/vnd.github+json"), Some("2022-11-28")),
            "{} {}",
            r.method,
            r.path
        );
    }
    // git fetched over HTTP with an installation token as the password; the fake
    // refuses anything else, so the fetch could not have succeeded without it.
    let git: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.path.starts_with("/git/"))
        .collect();
    let authorized: Vec<&&Recorded> = git
        .iter()
        .filter(|r| {
            r.status == 200
                && r.authorization
                    .as_deref()
                    .is_some_and(|a| a.starts_with("Basic "))
        })
        .collect();
    assert!(
        authorized
            .iter()
            .any(|r| r.path.ends_with("/git-upload-pack")),
        "no authenticated fetch: {:#?}",
        shape(&requests)
    );
    assert!(
        git.iter().all(|r| r.status == 200 || r.status == 401),
        "{:#?}",
        shape(&requests)
    );
    // The private key never reaches the log.
    let pem = std::fs::read_to_string(&key).unwrap();
    let key_line = pem.lines().nth(1).unwrap();
    assert!(!agent.log_text().contains(key_line));
}

#[test]
fn sigterm_lets_a_short_job_finish_and_answers_not_ready_meanwhile() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let fake = FakeGitHub::start(Auth::Token(GITHUB_TOKEN.into()));
    let options = AgentOptions {
        slow_apply_secs: 5,
        shutdown_grace_secs: 120,
        extra_config: github_token_config(tmp.path(), &fake, ""),
        ..AgentOptions::default()
    };
    let mut agent = Agent::new(tmp.path(), &origin, &tf, options);
    let addr = agent.start();
    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(4, &sha, "octocat");
    assert_eq!(
        deliver(addr, "pull_request", "d-term", &body, Some(WEBHOOK_SECRET)).status,
        202
    );
    wait_for(
        "terraform apply to finish",
        Duration::from_secs(240),
        || agent.applied_marker.exists().then_some(()),
    );
    agent.send_sigterm();
    // While the job finishes, the agent still answers, but is not ready for work.
    wait_for("/readyz to say 503", Duration::from_secs(10), || {
        (http(addr, "GET", "/readyz", &[], b"").status == 503).then_some(())
    });
    assert!(agent.is_running(), "the agent did not wait for its job");
    let status = agent.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "exit {status}: {}", agent.log_text());
    let log = agent.audit();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(outcome(&log[0]), "succeeded");
    assert_eq!(log[0]["commit_sha"], sha.as_str());
    // GitHub heard the outcome before the agent exited, not at its next start.
    let states: Vec<String> = fake.deployments().into_values().flat_map(|d| d.2).collect();
    assert_eq!(
        states,
        ["queued", "in_progress", "success"],
        "{:#?}",
        shape(&fake.requests())
    );
    let last_commit_status = fake
        .requests()
        .into_iter()
        .rfind(|r| r.path.contains("/statuses/"))
        .map(|r| r.body["state"].clone());
    assert_eq!(last_commit_status, Some(Value::from("success")));
    // Logs to a file carry no colour codes.
    assert!(!agent.log_text().contains('\u{1b}'), "{}", agent.log_text());
}

#[test]
fn sigterm_past_the_grace_period_interrupts_the_job_which_runs_again_after_restart() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let origin = Origin::new(tmp.path());
    let options = AgentOptions {
        shutdown_grace_secs: 2,
        ..AgentOptions::default()
    };
    let mut agent = Agent::new(tmp.path(), &origin, &tf, options);
    // The wrapper holds `apply` open after it completes, as a stuck provider would.
    std::fs::write(&agent.hold_file, "").unwrap();
    let addr = agent.start();
    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(5, &sha, "octocat");
    assert_eq!(
        deliver(addr, "pull_request", "d-grace", &body, Some(WEBHOOK_SECRET)).status,
        202
    );
    wait_for("terraform apply to hang", Duration::from_secs(240), || {
        agent.applied_marker.exists().then_some(())
    });
    let clock = std::time::Instant::now();
    agent.send_sigterm();
    let status = agent.wait_exit(Duration::from_secs(60));
    let took = clock.elapsed();
    assert!(status.success(), "exit {status}: {}", agent.log_text());
    assert!(
        took >= Duration::from_secs(2),
        "stopped before the grace period: {took:?}"
    );
    assert!(
        agent.audit().is_empty(),
        "an interrupted job must not be recorded as finished"
    );
    assert!(agent.log_text().contains("interrupting the running job"));

    // After the restart the job is recorded as interrupted and runs again.
    std::fs::remove_file(&agent.hold_file).unwrap();
    agent.start();
    let done = agent.wait_for_record("the job to run again", |r| outcome(r) == "succeeded");
    assert_eq!(done["commit_sha"], sha.as_str());
    let outcomes: Vec<String> = agent
        .audit()
        .iter()
        .map(|r| outcome(r).to_owned())
        .collect();
    assert_eq!(outcomes, ["interrupted", "succeeded"]);
}

#[test]
fn rate_limits_are_waited_out_and_a_lost_answer_creates_no_second_deployment() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeGitHub::start(Auth::Token(GITHUB_TOKEN.into()));
    // GitHub creates the deployment but the answer never arrives; then a secondary
    // rate limit (429, retry-after: 3) on the first commit status, and the primary one
    // (403, x-ratelimit-remaining: 0 until x-ratelimit-reset) on the comment. Every
    // request sent inside a limit's window is refused again, and recorded.
    fake.drop_answer_next("/deployments", 1);
    fake.rate_limit_next(
        "/statuses/",
        RateLimit::Secondary {
            retry_after_secs: 3,
        },
    );
    fake.rate_limit_next("/comments", RateLimit::Primary { reset_in_secs: 3 });
    let origin = Origin::new(tmp.path());
    let options = AgentOptions {
        extra_config: github_token_config(tmp.path(), &fake, "comment_on_pull_request = true"),
        ..AgentOptions::default()
    };
    let mut agent = Agent::new(tmp.path(), &origin, &tf, options);
    let addr = agent.start();
    let sha = origin.merge_release("feature-1", "v1");
    let body = merged_pull_request(11, &sha, "octocat");
    assert_eq!(
        deliver(
            addr,
            "pull_request",
            "d-limits",
            &body,
            Some(WEBHOOK_SECRET)
        )
        .status,
        202
    );
    agent.wait_for_record("the merge to be applied", |r| {
        r["commit_sha"] == sha.as_str() && outcome(r) == "succeeded"
    });
    fake.wait_for("the comment", Duration::from_secs(90), |r| {
        r.iter()
            .any(|r| r.path.ends_with("/comments") && r.status == 201)
    });
    let requests = fake.requests();
    let shapes = shape(&requests);

    // One deployment: after the lost answer the agent looked it up (by sha and
    // environment; the job id in its payload) and used it.
    let deployments = fake.deployments();
    assert_eq!(deployments.len(), 1, "{shapes:#?}");
    let (id, (environment, deployed_sha, states)) = deployments.into_iter().next().unwrap();
    assert_eq!(
        (environment.as_str(), deployed_sha.as_str()),
        ("infra", sha.as_str())
    );
    assert_eq!(states, ["queued", "in_progress", "success"], "{shapes:#?}");
    assert!(requests[0].answer_dropped, "{shapes:#?}");
    let lookup = &requests[1];
    assert_eq!(lookup.method, "GET", "{shapes:#?}");
    let query = lookup.query.as_deref().unwrap_or("");
    assert!(
        query.contains(&format!("sha={sha}")) && query.contains("environment=infra"),
        "{query}"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/deployments"))
            .count(),
        1,
        "{shapes:#?}"
    );
    assert!(
        requests[2]
            .path
            .ends_with(&format!("/deployments/{id}/statuses")),
        "{shapes:#?}"
    );

    // Each rate limit was answered once: nothing was sent again inside its window.
    let limited: Vec<u16> = requests
        .iter()
        .filter(|r| r.status == 429 || r.status == 403)
        .map(|r| r.status)
        .collect();
    assert_eq!(limited, [429, 403], "{shapes:#?}");
    // And not given up: every status and the comment went through.
    let commit_states: Vec<&str> = requests
        .iter()
        .filter(|r| r.path.contains("/statuses/") && r.status == 201)
        .map(|r| r.body["state"].as_str().unwrap())
        .collect();
    assert_eq!(commit_states, ["pending", "pending", "success"]);
    for r in &requests {
        assert_eq!(
            (r.accept.as_deref(), r.api_version.as_deref()),
            (Some("application/vnd.github+json"), Some("2022-11-28")),
            "{} {}",
            r.method,
            r.path
        );
    }
    let text = agent.log_text();
    assert_eq!(text.matches("GitHub rate limit").count(), 2, "{text}");
    assert!(!text.contains("given up"), "{text}");
}

#[test]
fn a_failed_plan_is_reported_with_terraforms_error_summary() {
    let tf = terraform_with_terraform_data();
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeGitHub::start(Auth::Token(GITHUB_TOKEN.into()));
    let origin = Origin::new(tmp.path());
    let options = AgentOptions {
        extra_config: github_token_config(tmp.path(), &fake, ""),
        ..AgentOptions::default()
    };
    let mut agent = Agent::new(tmp.path(), &origin, &tf, options);
    // A variable the configuration does not declare makes Terraform print a warning
    // box before the error.
    let text = std::fs::read_to_string(&agent.config).unwrap();
    std::fs::write(
        &agent.config,
        text.replace(
            "path = \"infra\"\n",
            "path = \"infra\"\nvariables = { undeclared = \"x\" }\n",
        ),
    )
    .unwrap();
    let addr = agent.start();
    let broken = origin.main_tf("v1").replace("\"v1\"", "var.missing");
    let sha = origin.merge("broken", &[("infra/main.tf", broken)]);
    let body = merged_pull_request(12, &sha, "octocat");
    assert_eq!(
        deliver(
            addr,
            "pull_request",
            "d-broken",
            &body,
            Some(WEBHOOK_SECRET)
        )
        .status,
        202
    );
    let record = agent.wait_for_record("the failed plan", |r| r["commit_sha"] == sha.as_str());
    assert_eq!(outcome(&record), "failed", "{record:#?}");
    fake.wait_for("the failure status", Duration::from_secs(60), |r| {
        r.iter()
            .any(|r| r.body["state"] == "failure" && r.path.contains("/statuses/"))
    });
    let status = fake
        .requests()
        .into_iter()
        .find(|r| r.body["state"] == "failure" && r.path.contains("/statuses/"))
        .unwrap();
    assert_eq!(
        status.body["description"],
        "Failed: terraform plan failed: Error: Reference to undeclared input variable",
        "{:#?}",
        record["error"]
    );
    // The warning was there, in the job's log, before the error.
    let log = std::fs::read_to_string(
        agent
            .data_dir
            .join(format!("jobs/{}/output.log", record["job_id"])),
    )
    .unwrap();
    let (warning, error) = (log.find("Warning:"), log.find("Error:"));
    assert!(warning.is_some() && warning < error, "{log}");
}
