//! Pull request opened → preview URL posted, with the real agent, real git, real
//! Terraform, the Slipway provider on its local runtime and the recording fake GitHub,
//! beside a baseline measured in the same run: the same root applied by hand
//! (`terraform init`, `workspace new`, `apply`) on the same runtime. Then N pull
//! requests opened at once: the time until every URL is posted, per preview, and the
//! platform daemon's resident memory with N previews up.
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench -p slipway-tests --bench preview`
//! (`SLIPWAY_BENCH_PREVIEWS=N`, default 10).

use std::time::{Duration, Instant};

use slipway_tests::agent_support::*;
use slipway_tests::preview_support::*;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The resident memory of the process listening on the runtime's socket: the daemon
/// is the one whose command line names `runtime` and whose environment has this home.
fn daemon_rss_kib(home: &std::path::Path) -> Option<u64> {
    let wanted = format!("SLIPWAY_HOME={}", home.display());
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let has_home = env.split(|b| *b == 0).any(|v| v == wanted.as_bytes());
        let is_daemon = String::from_utf8_lossy(&cmdline).contains("daemon");
        if has_home && is_daemon {
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            return status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok());
        }
    }
    None
}

fn main() {
    let runs = 3;
    let mut s = preview_setup("true", "", "");
    let addr = s.agent.start();

    // The agent: opened → the comment with the URL (and the URL answering).
    let mut agent_times = Vec::new();
    for i in 0..runs {
        let number = 100 + i;
        let commits = s.push(number, &format!("bench-{number}"));
        let event = pull_request_event(
            "opened",
            number,
            &format!("feature-{number}"),
            (&commits.0, &commits.1, &commits.2),
        );
        let clock = Instant::now();
        assert_eq!(send(addr, &event, &format!("bench-{number}")).status, 202);
        let url = s.posted_url(number, &commits.0);
        agent_times.push(clock.elapsed());
        assert!(answers(&url).is_some(), "{url} does not answer");
        let closed = pull_request_event(
            "closed",
            number,
            &format!("feature-{number}"),
            (&commits.0, &commits.1, &commits.2),
        );
        assert_eq!(
            send(addr, &closed, &format!("bench-close-{number}")).status,
            202
        );
        s.agent.wait_for_record("the teardown", |r| {
            r["kind"] == "preview-destroy"
                && r["pull_request"] == number
                && r["outcome"] == "succeeded"
        });
    }

    // The baseline: the same root by hand, on the same runtime.
    let tf = terraform_with_terraform_data();
    let baseline: Vec<Duration> = (0..runs)
        .map(|i| s.apply_by_hand(&tf, &format!("hand-{i}")))
        .collect();
    let (a, b) = (median(agent_times.clone()), median(baseline.clone()));
    println!(
        "PR opened -> preview URL posted: median {:.2} s over {runs} ({:?}); baseline terraform init+workspace+apply by hand: median {:.2} s ({:?}); ratio {:.2}",
        a.as_secs_f64(),
        agent_times.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>(),
        b.as_secs_f64(),
        baseline.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>(),
        a.as_secs_f64() / b.as_secs_f64()
    );

    // N pull requests opened at once.
    let n: u64 = std::env::var("SLIPWAY_BENCH_PREVIEWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let before = daemon_rss_kib(s.home.path());
    let mut opened = Vec::new();
    for i in 0..n {
        let number = 200 + i;
        let commits = s.push(number, &format!("many-{number}"));
        opened.push((number, commits));
    }
    let clock = Instant::now();
    for (number, c) in &opened {
        let event = pull_request_event(
            "opened",
            *number,
            &format!("feature-{number}"),
            (&c.0, &c.1, &c.2),
        );
        assert_eq!(send(addr, &event, &format!("many-{number}")).status, 202);
    }
    for (number, c) in &opened {
        s.posted_url(*number, &c.0);
    }
    let all = clock.elapsed();
    let after = daemon_rss_kib(s.home.path());
    println!(
        "{n} pull requests opened at once: every URL posted after {:.2} s ({:.2} s per preview: one root, so its worker runs them one after another); platform daemon RSS {} KiB before, {} KiB with {n} previews up",
        all.as_secs_f64(),
        all.as_secs_f64() / n as f64,
        before.map_or("?".into(), |k| k.to_string()),
        after.map_or("?".into(), |k| k.to_string()),
    );
    drop(s);
}
