//! Benchmarks of the real `slipway-agent` binary, each figure printed beside a
//! baseline measured in the same run (never a fixed threshold):
//!
//! 1. webhook acknowledgement: 2,000 signed merged-pull-request deliveries over 64
//!    concurrent connections — p50/p99 latency and throughput, checked that every
//!    delivery became a stored job; baseline: the same requests without a signature,
//!    which the agent refuses before doing any work;
//! 2. webhook to the job's first `terraform` command starting (a wrapper records the
//!    moment it is exec'd); baseline: spawning `terraform version` directly;
//! 3. a full agent run (webhook → fetch → checkout → plan, with the root's kept
//!    `init` → apply → audit) against a bare `terraform init` + `apply` of the same
//!    commit; the agent is restarted to run Terraform directly (not the wrapper of 2),
//!    as the baseline does, and its audit record is polled every millisecond;
//! 4. a `/metrics` scrape against `/healthz` (both read the queue from the database).
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench -p slipway-agent --bench agent`. Needs `git`
//! and Terraform >= 1.4 (`SLIPWAY_BENCH_TERRAFORM=/path` to choose one).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "bench-webhook-secret";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .env("HOME", dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn terraform() -> PathBuf {
    if let Ok(p) = std::env::var("SLIPWAY_BENCH_TERRAFORM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("terraform");
        let is_elf = std::fs::read(&candidate)
            .map(|b| b.starts_with(b"\x7fELF"))
            .unwrap_or(false);
        if !is_elf {
            continue;
        }
        let out = Command::new(&candidate).arg("version").output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            let v = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("Terraform v")
                .to_owned();
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (1, 4) {
                return candidate;
            }
        }
    }
    panic!("no terraform >= 1.4 on PATH; set SLIPWAY_BENCH_TERRAFORM");
}

fn main_tf(state: &Path, release: &str) -> String {
    format!(
        "terraform {{\n  backend \"local\" {{\n    path = \"{}\"\n  }}\n}}\n\nresource \"terraform_data\" \"release\" {{\n  input = \"{release}\"\n}}\n",
        state.display()
    )
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("hmac");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn merged_payload(number: u64, sha: &str) -> Vec<u8> {
    // GitHub's real payload (vendored in tests/fixtures), so the bench parses what
    // GitHub sends, not a trimmed stand-in.
    let fixture =
        include_str!("../../tests/fixtures/github-webhooks/pull_request/closed.payload.json");
    let mut p: serde_json::Value = serde_json::from_str(fixture).expect("fixture JSON");
    p["number"] = number.into();
    p["pull_request"]["number"] = number.into();
    p["pull_request"]["merged"] = true.into();
    p["pull_request"]["merge_commit_sha"] = sha.into();
    p["pull_request"]["base"]["ref"] = "main".into();
    p["pull_request"]["merged_by"] = serde_json::json!({"login": "bench"});
    serde_json::to_vec(&p).expect("json")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Setup {
    _tmp: tempfile::TempDir,
    clone: PathBuf,
    state: PathBuf,
    data: PathBuf,
    config: PathBuf,
    exec_log: PathBuf,
    terraform: PathBuf,
    keys: PathBuf,
    origin: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    let origin = dir.join("origin.git");
    let clone = dir.join("clone");
    let state = dir.join("state.tfstate");
    git(
        &dir,
        &[
            "init",
            "-q",
            "--bare",
            "--initial-branch=main",
            origin.to_str().unwrap_or_default(),
        ],
    );
    git(
        &dir,
        &[
            "clone",
            "-q",
            origin.to_str().unwrap_or_default(),
            clone.to_str().unwrap_or_default(),
        ],
    );
    git(&clone, &["checkout", "-q", "-B", "main"]);
    std::fs::create_dir_all(clone.join("infra")).expect("mkdir");
    std::fs::write(clone.join("infra/main.tf"), main_tf(&state, "v0")).expect("write");
    git(&clone, &["add", "-A"]);
    git(&clone, &["commit", "-q", "-m", "initial"]);
    git(&clone, &["push", "-q", "origin", "main"]);
    let agent = env!("CARGO_BIN_EXE_slipway-agent");
    let keys = dir.join("keys");
    let out = Command::new(agent)
        .args(["keygen", "--out", keys.to_str().unwrap_or_default()])
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let terraform = terraform();
    let exec_log = dir.join("exec.log");
    let wrapper = dir.join("tf.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ -e \"{log}\" ] || date +%s%N > \"{log}\"\nexec \"{tf}\" \"$@\"\n",
            log = exec_log.display(),
            tf = terraform.display()
        ),
    )
    .expect("write wrapper");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let data = dir.join("data");
    let config = dir.join("agent.toml");
    write_config(&config, &data, &wrapper, &keys, &origin);
    Setup {
        _tmp: tmp,
        clone,
        state,
        data,
        config,
        exec_log,
        terraform,
        keys,
        origin,
    }
}

/// The agent's configuration, running `terraform` (the real binary or the wrapper
/// that records when it is started).
fn write_config(config: &Path, data: &Path, terraform: &Path, keys: &Path, origin: &Path) {
    std::fs::write(
        config,
        format!(
            "data_dir = \"{}\"\nterraform = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[poller]\nenabled = false\n[secrets]\nwebhook_secret = {{ env = \"BENCH_SECRET\" }}\nsigning_key = {{ file = \"{}\" }}\n[[repository]]\nname = \"hello\"\ngithub = \"Codertocat/Hello-World\"\nurl = \"{}\"\n[[repository.root]]\nname = \"infra\"\npath = \"infra\"\n",
            data.display(),
            terraform.display(),
            keys.join("slipway-agent.key").display(),
            origin.display()
        ),
    )
    .expect("write config");
}

/// The agent process, killed when dropped (also when the bench panics).
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the agent on the bench's configuration; returns it and its address.
fn start_agent(s: &Setup) -> (Agent, String) {
    let _ = std::fs::remove_file(s.data.join("agent.addr"));
    let child = Command::new(env!("CARGO_BIN_EXE_slipway-agent"))
        .args(["--config", s.config.to_str().unwrap_or_default(), "run"])
        .env("BENCH_SECRET", SECRET)
        // `SLIPWAY_BENCH_AGENT_LOG=debug` shows each step's timestamps on stderr.
        .env(
            "SLIPWAY_LOG",
            std::env::var("SLIPWAY_BENCH_AGENT_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start agent");
    // The file is written after it is created: wait for its whole line.
    let read_addr = || {
        std::fs::read_to_string(s.data.join("agent.addr"))
            .ok()
            .filter(|text| {
                text.ends_with('\n') || text.trim().parse::<std::net::SocketAddr>().is_ok()
            })
            .map(|text| text.trim().to_owned())
    };
    wait_until("agent.addr", || read_addr().is_some());
    (Agent(child), read_addr().unwrap_or_default())
}

fn merge(s: &Setup, i: u32) -> String {
    std::fs::write(
        s.clone.join("infra/main.tf"),
        main_tf(&s.state, &format!("v{i}")),
    )
    .expect("write");
    git(&s.clone, &["commit", "-q", "-am", &format!("release v{i}")]);
    git(&s.clone, &["push", "-q", "origin", "main"]);
    git(&s.clone, &["rev-parse", "HEAD"])
}

/// Whether `sha`'s job has its `succeeded` audit record, read from the agent's
/// database on a kept connection (polled every millisecond by [`wait_fast`], so the
/// poll adds well under a millisecond to the agent's figure).
struct Outcomes(Option<rusqlite::Connection>);

impl Outcomes {
    fn succeeded(&mut self, s: &Setup, sha: &str) -> bool {
        if self.0.is_none() {
            self.0 = rusqlite::Connection::open(s.data.join("slipway.db")).ok();
        }
        let Some(conn) = &self.0 else {
            return false;
        };
        conn.query_row(
            "SELECT COUNT(*) FROM audit WHERE commit_sha = ?1 AND outcome = 'succeeded'",
            [sha],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .unwrap_or(false)
    }
}

fn succeeded(s: &Setup, sha: &str) -> bool {
    Outcomes(None).succeeded(s, sha)
}

fn wait_fast(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn fire(
    client: &reqwest::Client,
    url: &str,
    total: usize,
    concurrency: usize,
    signed: bool,
    sha: &str,
    base: usize,
) -> (Vec<Duration>, Duration, usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, sha) =
            (client.clone(), url.to_owned(), next.clone(), sha.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut ok = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let body = merged_payload(1000 + i as u64, &sha);
                let mut req = client
                    .post(&url)
                    .header("X-GitHub-Event", "pull_request")
                    .header("X-GitHub-Delivery", format!("bench-{}", base + i))
                    .header("Content-Type", "application/json");
                if signed {
                    req = req.header("X-Hub-Signature-256", sign(&body));
                }
                let t = Instant::now();
                let resp = req.body(body).send().await.expect("send");
                let status = resp.status().as_u16();
                let _ = resp.bytes().await;
                lat.push(t.elapsed());
                if (signed && status == 202) || (!signed && status == 401) {
                    ok += 1;
                }
            }
            (lat, ok)
        }));
    }
    let mut all = Vec::new();
    let mut ok = 0;
    for t in tasks {
        let (l, o) = t.await.expect("task");
        all.extend(l);
        ok += o;
    }
    let wall = start.elapsed();
    all.sort();
    (all, wall, ok)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let s = setup();
    let (agent, addr) = start_agent(&s);
    let mut url = format!("http://{addr}/webhooks/github");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");

    // 1. Acknowledgement latency and throughput.
    let sha = merge(&s, 1);
    let total = 2000;
    let (_w, _, _) = runtime.block_on(fire(&client, &url, 200, 64, false, &sha, 1_000_000)); // warm-up
    let (base_lat, base_wall, base_ok) =
        runtime.block_on(fire(&client, &url, total, 64, false, &sha, 2_000_000));
    let (lat, wall, ok) = runtime.block_on(fire(&client, &url, total, 64, true, &sha, 0));
    let db = slipway_agent::db::Db::open(&s.data.join("slipway.db")).expect("db");
    // What was stored, read from the file itself.
    let conn = rusqlite::Connection::open(s.data.join("slipway.db")).expect("db");
    let stored: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM deliveries WHERE delivery_id LIKE 'bench-%'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(-1);
    let jobs: i64 = conn
        .query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0))
        .unwrap_or(-1);
    println!("== webhook acknowledgement: {total} signed deliveries, 64 concurrent connections");
    println!("   stored & acknowledged (202): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.0} deliveries/s", ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)), ms(*lat.last().unwrap_or(&Duration::ZERO)), total as f64 / wall.as_secs_f64());
    println!("   baseline (unsigned, refused 401 before any work): p50 {:.2} ms, p99 {:.2} ms, {:.0} requests/s", ms(percentile(&base_lat, 0.5)), ms(percentile(&base_lat, 0.99)), total as f64 / base_wall.as_secs_f64());
    println!(
        "   ratio p50 {:.2}x, p99 {:.2}x, throughput {:.2}x of baseline",
        ms(percentile(&lat, 0.5)) / ms(percentile(&base_lat, 0.5)),
        ms(percentile(&lat, 0.99)) / ms(percentile(&base_lat, 0.99)),
        (total as f64 / wall.as_secs_f64()) / (total as f64 / base_wall.as_secs_f64())
    );
    println!("   accepted {ok}/{total} (baseline refused {base_ok}/{total}); deliveries stored {stored}, jobs stored {jobs}: {}", if ok == total && stored == total as i64 && jobs == total as i64 { "none lost" } else { "LOST SOME" });
    let drained = || {
        wait_until("the queue to drain", || {
            db.store()
                .read(|tx| tx.job_counts())
                .map(|c| c.queued == 0 && c.running == 0)
                .unwrap_or(false)
        })
    };
    wait_until("the burst's job to finish", || succeeded(&s, &sha));
    drained();

    // 1b. The same burst once the commit is deployed: the runner only records each
    // job as a repeated delivery (no Terraform beside the webhook handler on the two
    // cores), as during the baseline's burst.
    let (base_lat, base_wall, _) =
        runtime.block_on(fire(&client, &url, total, 64, false, &sha, 4_000_000));
    let (lat, wall, ok) = runtime.block_on(fire(&client, &url, total, 64, true, &sha, 3_000_000));
    println!("== the same, with the commit already deployed (no Terraform runs during the burst)");
    println!("   stored & acknowledged (202): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.0} deliveries/s; accepted {ok}/{total}", ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)), ms(*lat.last().unwrap_or(&Duration::ZERO)), total as f64 / wall.as_secs_f64());
    println!(
        "   baseline (401): p50 {:.2} ms, p99 {:.2} ms, {:.0} requests/s",
        ms(percentile(&base_lat, 0.5)),
        ms(percentile(&base_lat, 0.99)),
        total as f64 / base_wall.as_secs_f64()
    );
    println!(
        "   ratio p50 {:.2}x, p99 {:.2}x, throughput {:.2}x of baseline",
        ms(percentile(&lat, 0.5)) / ms(percentile(&base_lat, 0.5)),
        ms(percentile(&lat, 0.99)) / ms(percentile(&base_lat, 0.99)),
        (total as f64 / wall.as_secs_f64()) / (total as f64 / base_wall.as_secs_f64())
    );
    drained();

    // 2. Webhook -> terraform start, through the wrapper that records the moment.
    let runs = 5;
    let full_runs: u32 = 11;
    let deliver = |url: &str, n: u32, sha: &str| {
        let body = merged_payload(5000 + u64::from(n), sha);
        let sig = sign(&body);
        runtime.block_on(async {
            client
                .post(url)
                .header("X-GitHub-Event", "pull_request")
                .header("X-GitHub-Delivery", format!("run-{n}"))
                .header("X-Hub-Signature-256", sig)
                .body(body)
                .send()
                .await
                .expect("send");
        });
    };
    let mut to_start = Vec::new();
    for i in 0..runs {
        let sha = merge(&s, 10 + i);
        let _ = std::fs::remove_file(&s.exec_log);
        let sent_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        deliver(&url, i, &sha);
        wait_until("the merge", || succeeded(&s, &sha));
        let started: u128 = std::fs::read_to_string(&s.exec_log)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            .unwrap_or(0);
        to_start.push(Duration::from_nanos(started.saturating_sub(sent_ns) as u64));
    }
    // 3. The full run, with the agent running Terraform itself as the baseline does:
    // the wrapper's shell and `date` (a few ms per command) are not the agent's.
    drop(agent);
    write_config(&s.config, &s.data, &s.terraform, &s.keys, &s.origin);
    let (_agent, new_addr) = start_agent(&s);
    url = format!("http://{new_addr}/webhooks/github");
    // Baselines: spawning terraform; a bare init + apply of the same configuration.
    let mut spawn = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let _ = Command::new(&s.terraform)
            .args(["version", "-json"])
            .env("CHECKPOINT_DISABLE", "1")
            .output();
        spawn.push(t.elapsed());
    }
    // Each agent run next to a bare `init` + `apply` of the same configuration, one
    // after the other, so that both see the same machine.
    let bare_dir = tempfile::tempdir().expect("tempdir");
    let bare_state = bare_dir.path().join("bare.tfstate");
    let bare_run = |i: u32| -> (Duration, Duration) {
        let work = bare_dir.path().join(format!("w{i}"));
        std::fs::create_dir_all(&work).expect("mkdir");
        std::fs::write(
            work.join("main.tf"),
            main_tf(&bare_state, &format!("v{}", 10 + i)),
        )
        .expect("write");
        let t = Instant::now();
        let run = |args: &[&str]| {
            let st = Command::new(&s.terraform)
                .args(args)
                .current_dir(&work)
                .env("CHECKPOINT_DISABLE", "1")
                .env("TF_IN_AUTOMATION", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("terraform");
            assert!(st.success(), "terraform {args:?}");
        };
        run(&["init", "-input=false", "-no-color"]);
        let t_apply = Instant::now();
        run(&["apply", "-input=false", "-no-color", "-auto-approve"]);
        (t_apply.elapsed(), t.elapsed())
    };
    let mut outcomes = Outcomes(None);
    let mut full = Vec::new();
    let mut bare_apply = Vec::new();
    let mut bare_init_apply = Vec::new();
    // The first merge after the restart initialises the root afresh (the kept `init`
    // names the Terraform binary, which changed): not measured.
    for i in 0..=full_runs {
        let sha = merge(&s, 20 + i);
        let t0 = Instant::now();
        deliver(&url, 20 + i, &sha);
        wait_fast("the merge", || outcomes.succeeded(&s, &sha));
        if i > 0 {
            full.push(t0.elapsed());
            let (apply, init_apply) = bare_run(i);
            bare_apply.push(apply);
            bare_init_apply.push(init_apply);
        }
    }
    // Each agent run over the bare run beside it: what the machine did in between
    // cancels out.
    let mut pair_ratios: Vec<f64> = full
        .iter()
        .zip(&bare_init_apply)
        .map(|(agent, bare)| agent.as_secs_f64() / bare.as_secs_f64())
        .collect();
    pair_ratios.sort_by(f64::total_cmp);
    for v in [
        &mut to_start,
        &mut full,
        &mut spawn,
        &mut bare_apply,
        &mut bare_init_apply,
    ] {
        v.sort();
    }
    let med = |v: &Vec<Duration>| ms(percentile(v, 0.5));
    println!("== webhook sent -> terraform started ({runs} merges, median)");
    println!("   {:.1} ms (includes storing the job, git fetch and checkout); baseline: spawning `terraform version` once: {:.1} ms; ratio {:.2}x", med(&to_start), med(&spawn), med(&to_start) / med(&spawn));
    println!("== full agent run vs bare terraform on the same commit ({full_runs} merges, each beside a bare run; median)");
    println!("   agent (webhook -> audit record): {:.0} ms", med(&full));
    println!(
        "   bare `terraform apply -auto-approve` (already initialised): {:.0} ms -> ratio {:.2}x",
        med(&bare_apply),
        med(&full) / med(&bare_apply)
    );
    println!(
        "   bare `terraform init` + `apply` (fresh checkout): {:.0} ms -> ratio {:.2}x",
        med(&bare_init_apply),
        med(&full) / med(&bare_init_apply)
    );
    println!(
        "   each run over the bare run beside it: median {:.2}x (range {:.2}x to {:.2}x)",
        pair_ratios[pair_ratios.len() / 2],
        pair_ratios[0],
        pair_ratios[pair_ratios.len() - 1]
    );

    // 4. A Prometheus scrape against `/healthz`, which reads the same queue counts.
    let base = format!("http://{new_addr}");
    let time_gets = |path: &str| -> Vec<Duration> {
        let mut times = Vec::new();
        for i in 0..220 {
            let t = Instant::now();
            let ok = runtime.block_on(async {
                let r = client
                    .get(format!("{base}{path}"))
                    .send()
                    .await
                    .expect("get");
                let status = r.status().is_success();
                let _ = r.bytes().await;
                status
            });
            assert!(ok, "GET {path}");
            if i >= 20 {
                times.push(t.elapsed());
            }
        }
        times.sort();
        times
    };
    let health = time_gets("/healthz");
    let scrape = time_gets("/metrics");
    println!(
        "== GET /metrics (after {} jobs) vs GET /healthz, 200 sequential requests each",
        jobs + total as i64 + i64::from(runs + full_runs + 1)
    );
    println!(
        "   /metrics p50 {:.2} ms, p99 {:.2} ms; /healthz p50 {:.2} ms, p99 {:.2} ms; ratio p50 {:.2}x",
        ms(percentile(&scrape, 0.5)),
        ms(percentile(&scrape, 0.99)),
        ms(percentile(&health, 0.5)),
        ms(percentile(&health, 0.99)),
        ms(percentile(&scrape, 0.5)) / ms(percentile(&health, 0.5))
    );
}
