//! The local runtime end to end, without Terraform: a real daemon (this test binary,
//! re-executed by `connect_or_spawn` exactly as the provider binary is), real replica
//! processes of `slipway-demo-app`, real sockets.
//!
//! The contract every runtime keeps is in `runtime_conformance.rs`; this file is what
//! only the local runtime does (rolling updates behind its proxy, restarts, logs).
//!
//! It runs on `slipway_tests::runner` (`harness = false`): the binary must be able to
//! run as the daemon when started with the daemon argument, which libtest's `main`
//! cannot. Filter tests by passing a substring of their names.

use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_provider::runtime::local::{Home, LocalRuntime};
use slipway_provider::runtime::{Phase, RolloutCause, Runtime, RuntimeError};
use support::{alive, change, demo, environment};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

const APPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Generous: the machine may be busy with other builds.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

struct Fixture {
    dir: tempfile::TempDir,
    runtime: LocalRuntime,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("slw")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let runtime = LocalRuntime::connect_or_spawn(&Home::new(dir.path()))
            .await
            .expect("daemon starts");
        Fixture { dir, runtime }
    }

    fn home(&self) -> Home {
        Home::new(self.dir.path())
    }

    async fn reconnect(&mut self) {
        self.runtime = LocalRuntime::connect_or_spawn(&self.home())
            .await
            .expect("daemon starts again");
    }

    async fn stop(&self) {
        self.runtime
            .shutdown(Duration::from_secs(60))
            .await
            .expect("daemon stops");
    }
}

impl Drop for Fixture {
    /// A failed test still stops its daemon (which stops its replicas).
    fn drop(&mut self) {
        support::stop_daemon(&self.home());
    }
}

fn endpoint_port(app: &slipway_provider::runtime::Application) -> u16 {
    let url = app.endpoints.get("http").expect("an http endpoint");
    url.rsplit(':').next().unwrap().parse().expect("a port")
}

/// One HTTP request with `Connection: close`; the body on 200, else why not.
async fn get(port: u16, path: &str) -> Result<String, String> {
    let run = async {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| format!("write: {e}"))?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if !out.starts_with("HTTP/1.1 200") {
            return Err(format!("answer: {out:?}"));
        }
        Ok(out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn replica_pids(runtime: &LocalRuntime, app_id: &str) -> Vec<u32> {
    let status = runtime.status().await.expect("status");
    status
        .applications
        .iter()
        .filter(|a| a.id == app_id)
        .flat_map(|a| a.replicas.iter().map(|r| r.pid))
        .filter(|pid| *pid != 0)
        .collect()
}

async fn replica_ports(runtime: &LocalRuntime, app_id: &str) -> Vec<u16> {
    let status = runtime.status().await.expect("status");
    status
        .applications
        .iter()
        .filter(|a| a.id == app_id)
        .flat_map(|a| {
            a.replicas
                .iter()
                .flat_map(|r| r.ports.values().map(|p| *p as u16))
        })
        .collect()
}

async fn refuses(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_err()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// Two replicas behind one endpoint; variables reach them; concurrent clients share one
/// daemon.
async fn deploys_two_replicas_behind_one_endpoint() {
    let f = Fixture::start().await;
    let home = f.home();
    let (a, b) = tokio::join!(
        LocalRuntime::connect_or_spawn(&home),
        LocalRuntime::connect_or_spawn(&home)
    );
    let pid = f.runtime.info().await.unwrap().pid;
    assert_eq!(
        a.unwrap().info().await.unwrap().pid,
        pid,
        "one daemon per home"
    );
    assert_eq!(
        b.unwrap().info().await.unwrap().pid,
        pid,
        "one daemon per home"
    );

    f.runtime
        .apply_environment(environment("env-1", "dev"), change(""))
        .await
        .unwrap();
    let app = f
        .runtime
        .apply_application(
            demo("app-1", "env-1", "web", 2, "v1"),
            change(""),
            APPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(app.phase, Phase::Running);
    assert_eq!(app.ready_replicas, 2);
    // The platform stamps who made the change from the caller, not from the request:
    // here the socket's peer, the local user.
    assert!(
        app.change.actor.starts_with("local:"),
        "{}",
        app.change.actor
    );
    assert_ne!(app.change.actor, "tester");
    let port = endpoint_port(&app);
    assert_eq!(get(port, "/").await.unwrap(), "v1");
    assert_eq!(get(port, "/env/GREETING").await.unwrap(), "hello from dev");
    assert_eq!(get(port, "/env/SLIPWAY_APPLICATION").await.unwrap(), "web");
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..10 {
        pids.insert(get(port, "/pid").await.unwrap());
    }
    assert_eq!(
        pids.len(),
        2,
        "the proxy balances over both replicas: {pids:?}"
    );

    // A change of the environment's variables rolls its applications.
    let mut env = environment("env-1", "dev");
    env.variables
        .insert("GREETING".into(), "hello again".into());
    f.runtime.apply_environment(env, change("")).await.unwrap();
    wait_until(
        "the replicas see the environment's new variables",
        || async move {
            let mut all = true;
            for _ in 0..4 {
                all &= get(port, "/env/GREETING").await.as_deref() == Ok("hello again");
            }
            all
        },
    )
    .await;
    let rt = f.runtime.clone();
    wait_until(
        "the application is running after the environment change",
        || {
            let rt = rt.clone();
            async move {
                let a = rt.get_application("app-1").await.unwrap().unwrap();
                a.phase == Phase::Running && a.ready_replicas == 2
            }
        },
    )
    .await;

    let found = f
        .runtime
        .find_application("env-1", "web")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.spec.id, "app-1");
    assert_eq!(found.endpoints, app.endpoints);
    let env = f.runtime.find_environment("dev").await.unwrap().unwrap();
    assert_eq!(env.spec.id, "env-1");
    let err = f
        .runtime
        .delete_environment("env-1", change(""), APPLY_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::Conflict(_)) && err.to_string().contains("web"),
        "{err}"
    );
    f.stop().await;
}

/// A rolling update under load: no request fails, and the new version answers after.
async fn rolling_update_drops_no_request() {
    let f = Fixture::start().await;
    f.runtime
        .apply_environment(environment("env-1", "dev"), change(""))
        .await
        .unwrap();
    let app = f
        .runtime
        .apply_application(
            demo("app-1", "env-1", "web", 2, "v1"),
            change(""),
            APPLY_TIMEOUT,
        )
        .await
        .unwrap();
    let port = endpoint_port(&app);
    let old_pids = replica_pids(&f.runtime, "app-1").await;
    assert_eq!(old_pids.len(), 2);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let versions = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failures, versions) =
            (stop.clone(), ok.clone(), failures.clone(), versions.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match get(port, "/").await {
                    Ok(v) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        let mut seen = versions.lock().unwrap();
                        if seen.last() != Some(&v) {
                            seen.push(v);
                        }
                    }
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        }));
    }
    let updated = f
        .runtime
        .apply_application(
            demo("app-1", "env-1", "web", 2, "v2"),
            change(""),
            APPLY_TIMEOUT,
        )
        .await
        .unwrap();
    let before = ok.load(Ordering::Relaxed);
    wait_until("the load loop made more requests after the update", || {
        let ok = ok.clone();
        async move { ok.load(Ordering::Relaxed) > before + 50 }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rollout: {:?}",
        failures.len(),
        ok.load(Ordering::Relaxed) + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(
        versions.lock().unwrap().iter().any(|v| v == "v1"),
        "the load loop ran during the rollout"
    );
    assert_eq!(updated.phase, Phase::Running);
    assert_eq!(updated.ready_replicas, 2);
    assert_eq!(
        endpoint_port(&updated),
        port,
        "the endpoint survives the update"
    );
    for _ in 0..6 {
        assert_eq!(get(port, "/").await.unwrap(), "v2");
    }
    for pid in old_pids {
        wait_until("the old replicas are gone", || async move { !alive(pid) }).await;
    }
    // Scaling alone keeps the running replicas.
    let running = replica_pids(&f.runtime, "app-1").await;
    let scaled = f
        .runtime
        .apply_application(
            demo("app-1", "env-1", "web", 3, "v2"),
            change(""),
            APPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(scaled.ready_replicas, 3);
    let after = replica_pids(&f.runtime, "app-1").await;
    assert!(
        running.iter().all(|p| after.contains(p)),
        "{running:?} kept in {after:?}"
    );
    f.stop().await;
}

/// A replica killed with SIGKILL is restarted, and the endpoint keeps answering.
async fn a_killed_replica_is_restarted() {
    let f = Fixture::start().await;
    f.runtime
        .apply_environment(environment("env-1", "dev"), change(""))
        .await
        .unwrap();
    let app = f
        .runtime
        .apply_application(
            demo("app-1", "env-1", "web", 2, "v1"),
            change(""),
            APPLY_TIMEOUT,
        )
        .await
        .unwrap();
    let port = endpoint_port(&app);
    let pids = replica_pids(&f.runtime, "app-1").await;
    let victim = pids[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // A request that reached the replica as it died fails (the proxy cannot replay
    // it); once the process is gone, the proxy skips it even before its health check
    // notices.
    wait_until(
        "the killed replica is gone",
        || async move { !alive(victim) },
    )
    .await;
    for _ in 0..6 {
        assert_eq!(
            get(port, "/").await.unwrap(),
            "v1",
            "the other replica serves"
        );
    }
    let rt = f.runtime.clone();
    wait_until("the killed replica runs again, healthy", || {
        let rt = rt.clone();
        async move {
            let status = rt.status().await.unwrap();
            let app = &status.applications[0];
            let restarted = app
                .replicas
                .iter()
                .any(|r| r.restarts >= 1 && r.pid != 0 && r.pid != victim && r.state == "healthy");
            restarted && app.ready_replicas == 2
        }
    })
    .await;
    let status = f.runtime.status().await.unwrap();
    let replica = status.applications[0]
        .replicas
        .iter()
        .find(|r| r.restarts >= 1)
        .unwrap();
    assert!(replica.restarts >= 1);
    let logs = f.runtime.logs("dev/web", 50).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.line.contains("killed by signal SIGKILL")),
        "the restart is in the replica log: {logs:?}"
    );
    assert_eq!(get(port, "/").await.unwrap(), "v1");
    f.stop().await;
}

/// Stopping and restarting the daemon brings every application back, at the same
/// endpoints, with nothing lost.
async fn a_restarted_daemon_brings_everything_back() {
    let mut f = Fixture::start().await;
    f.runtime
        .apply_environment(environment("env-1", "dev"), change(""))
        .await
        .unwrap();
    f.runtime
        .apply_environment(environment("env-2", "staging"), change(""))
        .await
        .unwrap();
    let web = f
        .runtime
        .apply_application(
            demo("app-1", "env-1", "web", 2, "v1"),
            change(""),
            APPLY_TIMEOUT,
        )
        .await
        .unwrap();
    let api = f
        .runtime
        .apply_application(
            demo("app-2", "env-2", "api", 1, "v7"),
            change(""),
            APPLY_TIMEOUT,
        )
        .await
        .unwrap();
    let pids = [
        replica_pids(&f.runtime, "app-1").await,
        replica_pids(&f.runtime, "app-2").await,
    ]
    .concat();
    let old_daemon = f.runtime.info().await.unwrap().pid;

    f.stop().await;
    assert!(!alive(old_daemon));
    for pid in &pids {
        assert!(!alive(*pid), "a stopped daemon stops its replicas");
    }
    assert!(refuses(endpoint_port(&web)).await);

    f.reconnect().await;
    assert_ne!(f.runtime.info().await.unwrap().pid, old_daemon);
    for (app, version) in [(&web, "v1"), (&api, "v7")] {
        let rt = f.runtime.clone();
        let id = app.spec.id.clone();
        wait_until("the application runs again", || {
            let rt = rt.clone();
            let id = id.clone();
            async move {
                let a = rt.get_application(&id).await.unwrap().unwrap();
                a.phase == Phase::Running && a.ready_replicas == a.spec.replicas
            }
        })
        .await;
        let again = f
            .runtime
            .get_application(&app.spec.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.spec, app.spec, "the spec survives");
        assert_eq!(again.change, app.change, "the provenance survives");
        assert_eq!(again.endpoints, app.endpoints, "the endpoint survives");
        assert_eq!(get(endpoint_port(app), "/").await.unwrap(), version);
    }
    let env = f.runtime.get_environment("env-2").await.unwrap().unwrap();
    assert_eq!(env.spec.name, "staging");
    assert_eq!(
        get(endpoint_port(&api), "/env/GREETING").await.unwrap(),
        "hello from staging"
    );

    // A daemon killed hard: its watchdog starts it again at once, and the new daemon
    // adopts the replicas that still run (the same processes) at the same endpoints,
    // replacing only the one that stopped answering (SIGSTOP: its HTTP check times out).
    let web_pids = replica_pids(&f.runtime, "app-1").await;
    let api_pids = replica_pids(&f.runtime, "app-2").await;
    let (hung, healthy_web) = (web_pids[0], web_pids[1]);
    let daemon = f.runtime.info().await.unwrap().pid;
    for (pid, signal) in [
        (hung, nix::sys::signal::Signal::SIGSTOP),
        (daemon, nix::sys::signal::Signal::SIGKILL),
    ] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
    }
    wait_until(
        "the killed daemon is gone",
        || async move { !alive(daemon) },
    )
    .await;
    f.reconnect().await;
    assert_ne!(f.runtime.info().await.unwrap().pid, daemon);
    let rt = f.runtime.clone();
    wait_until("web and api run again, the hung replica replaced", || {
        let rt = rt.clone();
        async move {
            let web = rt.get_application("app-1").await.unwrap().unwrap();
            let api = rt.get_application("app-2").await.unwrap().unwrap();
            let pids = replica_pids(&rt, "app-1").await;
            web.phase == Phase::Running
                && web.ready_replicas == 2
                && api.ready_replicas == 1
                && pids.len() == 2
                && !pids.contains(&hung)
        }
    })
    .await;
    let web_now = replica_pids(&f.runtime, "app-1").await;
    assert!(
        web_now.contains(&healthy_web),
        "the healthy replica is adopted, not replaced: {web_now:?}"
    );
    assert_eq!(
        replica_pids(&f.runtime, "app-2").await,
        api_pids,
        "api's replica is adopted"
    );
    assert!(!alive(hung), "the hung replica was stopped");
    assert_eq!(get(endpoint_port(&web), "/").await.unwrap(), "v1");
    assert_eq!(
        get(endpoint_port(&api), "/env/GREETING").await.unwrap(),
        "hello from staging"
    );
    f.stop().await;
    for pid in web_now.iter().chain(&api_pids) {
        assert!(!alive(*pid), "a stopped daemon stops adopted replicas too");
    }
}

/// A replica runs as the daemon's user, yet cannot read the runtime's home (its state
/// with every secret, the platform's key and database): the Landlock sandbox. It keeps
/// its own working directory, the rest of the machine, and a temporary directory.
async fn a_replica_cannot_read_the_runtime_home() {
    let f = Fixture::start().await;
    f.runtime
        .apply_environment(environment("env-1", "dev"), change(""))
        .await
        .unwrap();
    let home = f.home().root().to_path_buf();
    let script = r#"
for f in "$@"; do
  if cat "$f" > /dev/null 2>&1; then echo "LEAKED $f"; else echo "DENIED $f"; fi
done
ls "$(dirname "$1")" > /dev/null 2>&1 && echo LISTED-HOME
echo mine > ./own-file && cat ./own-file > /dev/null && echo WROTE-OWN
cat /etc/passwd > /dev/null && echo READ-ETC
t=$(mktemp) && echo hello > "$t" && echo WROTE-TMP
echo DONE
exec sleep 1000
"#;
    let mut spec = demo("app-1", "env-1", "snoop", 1, "v1");
    spec.command = Some("/bin/sh".into());
    spec.args = ["-c", script, "sh"]
        .into_iter()
        .map(str::to_owned)
        .chain(
            ["state.json", "platform.key", "platform.db"]
                .iter()
                .map(|name| home.join(name).display().to_string()),
        )
        .collect();
    spec.ports = Vec::new();
    spec.healthcheck = None;
    f.runtime
        .apply_application(spec, change(""), APPLY_TIMEOUT)
        .await
        .unwrap();
    let runtime = &f.runtime;
    let read = || async move {
        let lines: Vec<String> = runtime
            .logs("snoop", 50)
            .await
            .unwrap()
            .into_iter()
            // `<time> stdout <line>`: the line alone.
            .filter_map(|l| {
                l.line
                    .split_once(" stdout ")
                    .map(|(_, line)| line.to_owned())
            })
            .collect();
        lines
    };
    wait_until("the replica is done snooping", || async move {
        read().await.iter().any(|l| l == "DONE")
    })
    .await;
    let lines = read().await;
    assert!(!lines.iter().any(|l| l.starts_with("LEAKED")), "{lines:?}");
    for name in ["state.json", "platform.key", "platform.db"] {
        let denied = format!("DENIED {}", home.join(name).display());
        assert!(lines.contains(&denied), "{denied}: {lines:?}");
    }
    for done in ["WROTE-OWN", "READ-ETC", "WROTE-TMP"] {
        assert!(lines.iter().any(|l| l == done), "{done}: {lines:?}");
    }
    f.stop().await;
}

/// Deleting leaves no process and no listening port.
async fn delete_leaves_nothing_behind() {
    let f = Fixture::start().await;
    f.runtime
        .apply_environment(environment("env-1", "dev"), change(""))
        .await
        .unwrap();
    let app = f
        .runtime
        .apply_application(
            demo("app-1", "env-1", "web", 2, "v1"),
            change(""),
            APPLY_TIMEOUT,
        )
        .await
        .unwrap();
    let pids = replica_pids(&f.runtime, "app-1").await;
    let mut ports = replica_ports(&f.runtime, "app-1").await;
    ports.push(endpoint_port(&app));
    assert_eq!(pids.len(), 2);
    assert_eq!(ports.len(), 3);
    f.runtime
        .delete_application("app-1", change(""), APPLY_TIMEOUT)
        .await
        .unwrap();
    for pid in pids {
        assert!(!alive(pid), "replica {pid} still runs after delete");
    }
    for port in ports {
        wait_until(
            "nothing listens on the application's ports",
            || async move { refuses(port).await },
        )
        .await;
    }
    assert!(f.runtime.get_application("app-1").await.unwrap().is_none());
    assert!(f.runtime.status().await.unwrap().applications.is_empty());
    // Deleting again is not an error; then the environment can go.
    f.runtime
        .delete_application("app-1", change(""), APPLY_TIMEOUT)
        .await
        .unwrap();
    f.runtime
        .delete_environment("env-1", change(""), APPLY_TIMEOUT)
        .await
        .unwrap();
    assert!(f.runtime.get_environment("env-1").await.unwrap().is_none());
    f.stop().await;
}

/// A program that does not exist fails the apply with a message that says so.
async fn a_missing_command_fails_the_apply() {
    let f = Fixture::start().await;
    f.runtime
        .apply_environment(environment("env-1", "dev"), change(""))
        .await
        .unwrap();
    let mut spec = demo("app-1", "env-1", "web", 1, "v1");
    spec.command = Some("/nonexistent/slipway-no-such-program".into());
    let err = f
        .runtime
        .apply_application(spec, change(""), APPLY_TIMEOUT)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            RuntimeError::RolloutFailed {
                cause: RolloutCause::Program,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        message.contains("cannot start `/nonexistent/slipway-no-such-program`")
            && message.contains("No such file or directory")
            && message.contains("Last log lines"),
        "{message}"
    );
    let app = f.runtime.get_application("app-1").await.unwrap().unwrap();
    assert_eq!(app.phase, Phase::Failed);
    assert!(app.message.unwrap().contains("cannot start"));
    assert!(replica_pids(&f.runtime, "app-1").await.is_empty());

    // Invalid specs are refused up front, naming the field.
    let mut spec = demo("app-2", "env-1", "api", 1, "v1");
    spec.command = None;
    let err = f
        .runtime
        .apply_application(spec, change(""), APPLY_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::Invalid(_)) && err.to_string().contains("`command`"),
        "{err}"
    );
    f.stop().await;
}

/// A health check that never passes fails the apply, naming the check, with the
/// replica's last log lines, secrets redacted; the old version keeps serving.
async fn a_failing_health_check_fails_the_apply() {
    let f = Fixture::start().await;
    let mut env = environment("env-1", "dev");
    env.secrets
        .insert("DB_PASSWORD".into(), "hunter2-very-secret".into());
    f.runtime.apply_environment(env, change("")).await.unwrap();
    let good = f
        .runtime
        .apply_application(
            demo("app-1", "env-1", "web", 1, "v1"),
            change(""),
            APPLY_TIMEOUT,
        )
        .await
        .unwrap();
    let port = endpoint_port(&good);
    assert_eq!(
        get(port, "/env/DB_PASSWORD").await.unwrap(),
        "hunter2-very-secret",
        "secrets reach the replica"
    );

    // The new version prints a secret (its version) and never passes its check.
    let mut bad = demo("app-1", "env-1", "web", 1, "v2");
    bad.variables.remove("APP_VERSION");
    bad.secrets
        .insert("APP_VERSION".into(), "s3cr3t-version-string".into());
    bad.variables.insert("DEMO_UNHEALTHY".into(), "1".into());
    let err = f
        .runtime
        .apply_application(bad, change(""), Duration::from_secs(4))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            RuntimeError::RolloutFailed {
                cause: RolloutCause::Health,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        message.contains("health check http GET /healthz on port")
            && message.contains("HTTP status 500")
            && message.contains("Last log lines")
            && message.contains("listening on 127.0.0.1"),
        "{message}"
    );
    assert!(!message.contains("s3cr3t-version-string"), "{message}");
    assert!(message.contains("[REDACTED]"), "{message}");
    assert_eq!(
        get(port, "/").await.unwrap(),
        "v1",
        "the old version keeps serving"
    );

    // No secret lands in any log file.
    let mut files = vec![f.home().daemon_log()];
    for dir in std::fs::read_dir(f.home().logs_dir()).unwrap().flatten() {
        for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
            files.push(file.path());
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains("s3cr3t-version-string") && !text.contains("hunter2-very-secret"),
            "a secret in {}",
            file.display()
        );
    }
    let logs = f.runtime.logs("web", 20).await.unwrap();
    assert!(
        logs.iter().any(|l| l.line.contains("[REDACTED]")),
        "{logs:?}"
    );
    f.stop().await;
}

fn main() -> ExitCode {
    // Started by `connect_or_spawn` as the daemon: be the daemon.
    if let Some(code) = slipway_provider::runtime::local::run_from_args() {
        return code;
    }
    slipway_tests::runner::run(slipway_tests::trials![
        deploys_two_replicas_behind_one_endpoint,
        rolling_update_drops_no_request,
        a_killed_replica_is_restarted,
        a_restarted_daemon_brings_everything_back,
        delete_leaves_nothing_behind,
        a_replica_cannot_read_the_runtime_home,
        a_missing_command_fails_the_apply,
        a_failing_health_check_fails_the_apply,
    ])
}
