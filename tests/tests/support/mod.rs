//! What the test binaries that drive the local runtime's daemon directly share
//! (`local_runtime.rs`, `runtime_conformance.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use slipway_provider::runtime::local::Home;
use slipway_provider::runtime::{
    ApplicationSpec, ChangeRecord, EnvironmentSpec, HealthCheck, HealthProbe, Mode, PortSpec,
    Protocol, ResourceLimits,
};

/// Whether a process is alive (a zombie is not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

/// Stops the daemon serving `home`, if one runs, and waits up to 10 s for it to go
/// (it stops its replicas first): for a test's `Drop`, so that a failed test leaves no
/// process behind.
pub fn stop_daemon(home: &Home) {
    let Ok(pid) = std::fs::read_to_string(home.pid_file()) else {
        return;
    };
    let Ok(pid) = pid.trim().parse::<i32>() else {
        return;
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    for _ in 0..400 {
        if !alive(pid as u32) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A change by a tester, from commit `sha` (empty for none).
pub fn change(sha: &str) -> ChangeRecord {
    ChangeRecord {
        commit_sha: sha.into(),
        actor: "tester".into(),
        trigger: "terraform-apply".into(),
        changed_at: "2026-01-01T00:00:00Z".into(),
        ..ChangeRecord::default()
    }
}

/// A DEVELOPMENT environment with one variable.
pub fn environment(id: &str, name: &str) -> EnvironmentSpec {
    EnvironmentSpec {
        id: id.into(),
        name: name.into(),
        mode: Mode::Development,
        variables: [("GREETING".to_string(), format!("hello from {name}"))].into(),
        secrets: BTreeMap::new(),
    }
}

/// The demo app (a real HTTP program of this crate) with a public port `http` and an
/// http health check, at `version` (it answers with it).
pub fn demo(id: &str, env_id: &str, name: &str, replicas: u32, version: &str) -> ApplicationSpec {
    ApplicationSpec {
        id: id.into(),
        environment_id: env_id.into(),
        name: name.into(),
        image: None,
        command: Some(env!("CARGO_BIN_EXE_slipway-demo-app").into()),
        args: vec![],
        working_dir: None,
        replicas,
        ports: vec![PortSpec {
            name: "http".into(),
            port: 8080,
            protocol: Protocol::Tcp,
            public: true,
        }],
        variables: [("APP_VERSION".to_string(), version.to_string())].into(),
        secrets: BTreeMap::new(),
        healthcheck: Some(HealthCheck {
            probe: HealthProbe::Http {
                path: "/healthz".into(),
                port: 8080,
            },
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(2),
            healthy_threshold: 1,
            unhealthy_threshold: 2,
        }),
        resources: ResourceLimits::default(),
    }
}
