//! Pull request opened → preview URL posted, with the real agent, real git, real
//! Terraform, the Slipway provider on its local runtime and the recording fake GitHub,
//! beside a baseline measured in the same run: the same root applied by hand
//! (`terraform init`, `workspace new`, `apply`) on the same runtime. Then N pull
//! requests opened at once (20 by default) against one preview alone: the time per
//! preview, and the peak resident memory of the platform (the runtime daemon) and of
//! the agent while their previews come up, sampled every 20 ms.
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench -p slipway-tests --bench preview`
//! (`SLIPWAY_BENCH_PREVIEWS=N`, default 20). The figures: BENCHMARKS.md.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_tests::agent_support::*;
use slipway_tests::preview_support::*;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The pid of the platform daemon of `home` (the process the watchdog runs, which
/// holds the platform and the runtime), from its pid file.
fn daemon_pid(home: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(home.join("daemon.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The pid of the agent running with configuration `config`.
fn agent_pid(config: &std::path::Path) -> Option<u32> {
    let config = config.display().to_string();
    find_process(|cmdline| {
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.first()
            .is_some_and(|a| String::from_utf8_lossy(a).ends_with("slipway-agent"))
            && args.contains(&config.as_bytes())
            && args.contains(&b"run".as_slice())
    })
}

fn find_process(pred: impl Fn(&[u8]) -> bool) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if pred(&cmdline) {
            return Some(pid);
        }
    }
    None
}

/// The resident memory of `pid` now, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The highest resident memory of each of `pids` while a phase runs, sampled every
/// 20 ms on a thread of its own.
struct PeakRss {
    stop: Arc<AtomicBool>,
    peaks: Vec<Arc<AtomicU64>>,
    thread: std::thread::JoinHandle<()>,
}

impl PeakRss {
    fn start(pids: &[u32]) -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks: Vec<Arc<AtomicU64>> = pids.iter().map(|_| Arc::default()).collect();
        let (pids, stop_c, peaks_c) = (pids.to_vec(), stop.clone(), peaks.clone());
        let thread = std::thread::spawn(move || loop {
            for (pid, peak) in pids.iter().zip(&peaks_c) {
                if let Some(kib) = rss_kib(*pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
            }
            if stop_c.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        });
        PeakRss {
            stop,
            peaks,
            thread,
        }
    }

    /// The peaks, in MB, in the order of the pids.
    fn finish(self) -> Vec<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peaks
            .iter()
            .map(|p| p.load(Ordering::Relaxed) as f64 / 1024.0)
            .collect()
    }
}

/// Opens pull requests `numbers` at once (each pushed first) and waits until every
/// preview's URL is posted; how long from the first delivery to the last URL.
fn open_at_once(s: &PreviewSetup, addr: std::net::SocketAddr, numbers: &[u64]) -> Duration {
    let opened: Vec<_> = numbers
        .iter()
        .map(|n| (*n, s.push(*n, &format!("many-{n}"))))
        .collect();
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
        let url = s.posted_url(*number, &c.0);
        assert!(answers(&url).is_some(), "{url} does not answer");
    }
    clock.elapsed()
}

fn main() {
    let runs = 3;
    let n: u64 = std::env::var("SLIPWAY_BENCH_PREVIEWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut s = preview_setup("true", "", "");
    // Room for every preview of the run (the default cap is 10 per repository).
    let config = std::fs::read_to_string(&s.agent.config).unwrap();
    let config = config.replacen(
        &format!("github = \"{GITHUB_REPO}\"\n"),
        &format!("github = \"{GITHUB_REPO}\"\nmax_previews = {}\n", n + 2),
        1,
    );
    std::fs::write(&s.agent.config, config).unwrap();
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

    // One preview alone (the baseline), then N opened at once, with both processes'
    // peak memory during each.
    let pids = [
        daemon_pid(s.home.path()).expect("the platform daemon's pid"),
        agent_pid(&s.agent.config).expect("the agent's pid"),
    ];
    let sampler = PeakRss::start(&pids);
    let alone = open_at_once(&s, addr, &[300]);
    let one = sampler.finish();
    let numbers: Vec<u64> = (0..n).map(|i| 400 + i).collect();
    let sampler = PeakRss::start(&pids);
    let all = open_at_once(&s, addr, &numbers);
    let many = sampler.finish();
    let per = all.as_secs_f64() / n as f64;
    println!(
        "one preview alone: URL posted after {:.2} s; platform daemon peak RSS {:.1} MB, agent peak RSS {:.1} MB",
        alone.as_secs_f64(),
        one[0],
        one[1],
    );
    println!(
        "{n} pull requests opened at once: every URL posted after {:.2} s, {per:.2} s per preview ({:.2}x one alone; one root, so its worker runs them one after another); platform daemon peak RSS {:.1} MB ({:.2}x), agent peak RSS {:.1} MB ({:.2}x), with {} previews up",
        all.as_secs_f64(),
        per / alone.as_secs_f64(),
        many[0],
        many[0] / one[0],
        many[1],
        many[1] / one[1],
        n + 1,
    );
    drop(s);
}
