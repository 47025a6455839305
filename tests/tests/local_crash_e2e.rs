//! The local runtime after a `kill -9` of its daemon, on every Terraform version found:
//! the real provider, its watchdog and daemon, `python3 -m http.server` as a replica.
//!
//! Proves: the public endpoint keeps answering while no daemon runs (the watchdog keeps
//! the listening socket, so connections wait instead of being refused) and after, with
//! nobody running Terraform; the watchdog starts the daemon again at once; the new
//! daemon adopts the replicas (same pids) and their output still reaches the logs;
//! `terraform plan` is empty; an adopted replica, even from a double-forked process in
//! a session of its own, still cannot use the socket; `runtime stop` ends the replicas,
//! the daemon and the watchdog.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use slipway_tests::local_harness::{alive, body, get, real_python, wait_for, Harness, HEADER};
use slipway_tests::terraform::{self, provider_binary, TerraformBinary};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_killed_daemon_comes_back_and_adopts_its_replicas_on_every_terraform() {
    let python = real_python();
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        killed_daemon(&tf, &python);
    }
}

/// The pid of the one replica of `name`, once it is healthy.
fn replica_pid(h: &Harness, name: &str) -> Option<u32> {
    let status = h.status().ok()?;
    let app = status.applications.iter().find(|a| a.name == name)?;
    match app.replicas.as_slice() {
        [one] if one.state == "healthy" && one.pid != 0 => Some(one.pid),
        _ => None,
    }
}

fn runtime_cli(h: &Harness, args: &[&str]) -> String {
    let out = Command::new(provider_binary())
        .arg("runtime")
        .args(args)
        .env("SLIPWAY_HOME", h.home.path())
        .output()
        .expect("run the runtime CLI");
    assert!(out.status.success(), "runtime {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config(python: &str, site: &Path, probe: &Path, probe_script: &str) -> String {
    format!(
        r#"{HEADER}
resource "slipway_environment" "dev" {{
  name = "dev"
  mode = "DEVELOPMENT"
}}
resource "slipway_application" "web" {{
  environment_id = slipway_environment.dev.id
  name           = "web"
  command        = {python:?}
  args           = ["-m", "http.server", "$PORT", "--bind", "127.0.0.1"]
  working_dir    = {site:?}
  ports          = [{{ name = "http", port = 8000, public = true }}]
  healthcheck    = {{ type = "http", path = "/", port = 8000, interval = "1s" }}
}}
resource "slipway_application" "probe" {{
  environment_id = slipway_environment.dev.id
  name           = "probe"
  command        = "/bin/sh"
  args           = ["-c", {probe_script:?}]
  working_dir    = {probe:?}
}}
output "web_endpoint" {{
  value = slipway_application.web.endpoints["http"]
}}
"#
    )
}

fn killed_daemon(tf: &TerraformBinary, python: &str) {
    let v = tf.version.clone();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "served by python\n").unwrap();
    let probe = tempfile::tempdir().unwrap();
    let h = Harness::new(tf);
    // A replica that tries the socket whenever the test drops a `go` file: directly,
    // and from a double-forked process in a session of its own.
    let status = format!(
        "{} runtime --home {} status",
        provider_binary().display(),
        h.home.path().display()
    );
    let script = format!(
        "while :; do if [ -e go ]; then rm -f go; \
         {status} > direct.txt 2>&1; echo exit=$? >> direct.txt; \
         (setsid sh -c '{status} > forked.txt 2>&1; echo exit=$? >> forked.txt' &); \
         fi; sleep 0.2; done"
    );
    h.ws.write_config(&config(python, site.path(), probe.path(), &script));
    h.ws.apply().success();
    let web = h.output("web_endpoint");
    assert_eq!(body(&web), "served by python", "terraform {v}");
    let web_pid = replica_pid(&h, "web").expect("web runs");
    let probe_pid = replica_pid(&h, "probe").expect("probe runs");
    let watchdog = h.pid_in("watchdog.pid").expect("watchdog.pid");
    let daemon = h.pid_in("daemon.pid").expect("daemon.pid");
    assert!(alive(watchdog) && alive(daemon), "terraform {v}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Nobody runs Terraform: every request is answered, none refused, from the moment
    // the daemon died (connections wait in the kept socket's backlog meanwhile).
    for _ in 0..5 {
        assert_eq!(
            get(&web).ok(),
            Some((200, "served by python".to_owned())),
            "terraform {v}: the endpoint answers with the daemon killed"
        );
    }
    wait_for("the watchdog's new daemon", WAIT, || {
        h.pid_in("daemon.pid").is_some_and(|p| p != daemon) && h.status().is_ok()
    });
    assert!(!alive(daemon), "terraform {v}: the killed daemon is gone");
    assert_eq!(h.pid_in("watchdog.pid"), Some(watchdog));
    wait_for("the replicas are adopted and healthy", WAIT, || {
        replica_pid(&h, "web").is_some() && replica_pid(&h, "probe").is_some()
    });
    assert_eq!(
        replica_pid(&h, "web"),
        Some(web_pid),
        "terraform {v}: web's replica was adopted, not replaced"
    );
    assert_eq!(replica_pid(&h, "probe"), Some(probe_pid), "terraform {v}");
    assert_eq!(body(&web), "served by python");
    h.assert_plan_empty("the daemon was killed and came back");

    // The adopted replica's output still reaches its log (the watchdog kept the pipe).
    let marker = format!("after-adoption-{}", std::process::id());
    let _ = get(&format!("{web}/{marker}"));
    wait_for("the adopted replica's log line", WAIT, || {
        runtime_cli(&h, &["logs", "dev/web"]).contains(&marker)
    });
    assert!(
        runtime_cli(&h, &["logs", "dev/web"]).contains("adopted after a daemon restart"),
        "terraform {v}: the log says the replica was adopted"
    );

    // An adopted replica (now below the watchdog, not the new daemon) is refused.
    std::fs::write(probe.path().join("go"), "").unwrap();
    for name in ["direct.txt", "forked.txt"] {
        let path = probe.path().join(name);
        wait_for(&format!("the probe to write {name}"), WAIT, || {
            std::fs::read_to_string(&path).is_ok_and(|t| t.contains("exit="))
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("cannot call the platform without a token") && !text.contains("exit=0"),
            "terraform {v}: the adopted replica's {name}: {text}"
        );
    }

    // A clean stop ends everything, the watchdog too.
    h.stop_daemon();
    wait_for("the watchdog exits", WAIT, || !alive(watchdog));
    for pid in [web_pid, probe_pid] {
        wait_for("the replicas stop", WAIT, || !alive(pid));
    }
    assert!(
        h.pid_in("watchdog.pid").is_none(),
        "terraform {v}: watchdog.pid is removed"
    );
}

/// A daemon of another build (an older provider's) is handed over to the provider
/// Terraform runs: the replicas keep running, adopted by the new daemon.
#[test]
fn a_daemon_of_another_build_is_handed_over_on_every_terraform() {
    for tf in terraform::required() {
        eprintln!("--- terraform {}", tf.version);
        handed_over(&tf);
    }
}

/// Points the workspace's Terraform at the provider in `dir`.
fn use_provider_from(h: &Harness, dir: &Path) {
    std::fs::write(
        h.ws.path().join("terraform.rc"),
        format!(
            "provider_installation {{\n  dev_overrides {{\n    \"{}\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
            slipway_tests::local_harness::SOURCE,
            dir.display()
        ),
    )
    .unwrap();
}

fn handed_over(tf: &TerraformBinary) {
    let v = tf.version.clone();
    let h = Harness::with_config(
        tf,
        r#"
resource "slipway_environment" "dev" {
  name = "dev"
  mode = "DEVELOPMENT"
}
resource "slipway_application" "web" {
  environment_id = slipway_environment.dev.id
  name           = "web"
  command        = var.demo_app
  ports          = [{ name = "http", port = 8080, public = true }]
  healthcheck    = { type = "tcp", port = 8080, interval = "1s" }
}
output "web_endpoint" {
  value = slipway_application.web.endpoints["http"]
}
"#,
    );
    // Another build of the provider: the same binary with bytes appended (the loader
    // ignores them; its size and time differ).
    let other = tempfile::tempdir().unwrap();
    let copy = other.path().join("terraform-provider-slipway");
    std::fs::copy(provider_binary(), &copy).unwrap();
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&copy)
            .unwrap();
        file.write_all(b"\0another build").unwrap();
    }
    use_provider_from(&h, other.path());
    h.ws.apply().success();
    let web = h.output("web_endpoint");
    let pid = replica_pid(&h, "web").expect("web runs");
    let old = h.pid_in("daemon.pid").expect("daemon.pid");
    let exe = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    assert_eq!(
        exe(old),
        Some(copy.clone()),
        "terraform {v}: the other build's daemon"
    );

    // The provider of this build hands the runtime over to itself at its first call.
    use_provider_from(&h, provider_binary().parent().unwrap());
    h.assert_plan_empty("a daemon of another build");
    let new = h.pid_in("daemon.pid").expect("daemon.pid");
    assert_ne!(new, old, "terraform {v}: the daemon was handed over");
    assert!(!alive(old));
    assert_eq!(
        exe(new).map(|p| p.canonicalize().unwrap()),
        Some(provider_binary().canonicalize().unwrap()),
        "terraform {v}: the new daemon is this build"
    );
    wait_for("web is adopted and healthy", WAIT, || {
        replica_pid(&h, "web").is_some()
    });
    assert_eq!(
        replica_pid(&h, "web"),
        Some(pid),
        "terraform {v}: the replica was adopted, not restarted"
    );
    assert_eq!(
        body(&format!("{web}/pid")),
        pid.to_string(),
        "terraform {v}: the endpoint reaches the adopted replica"
    );
    // The same build is kept: no further hand-over.
    h.assert_plan_empty("the hand-over");
    assert_eq!(h.pid_in("daemon.pid"), Some(new), "terraform {v}");
}
