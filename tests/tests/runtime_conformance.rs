//! One contract, every runtime: what the resources rely on of [`Runtime`], checked
//! against the memory runtime, the local runtime (a real daemon running the demo app)
//! and the Kubernetes runtime (on the fake API server), both directly and through the
//! platform (`runtime serve --backend kubernetes`, reached as the provider reaches it).
//!
//! What differs between runtimes is only what an application runs (a program here, an
//! image on Kubernetes: [`Subject::application`]); everything else is the same
//! assertion for all three. Runtime-specific behaviour (rolling updates through the
//! proxy, server-side apply, Pod Security) stays in `provider/tests/local_runtime.rs`
//! and `tests/kubernetes_runtime.rs`.
//!
//! It has its own `main` because this test binary doubles as the local runtime's
//! daemon, which the local runtime starts by re-running the current program.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use slipway_provider::runtime::kubernetes::KubernetesRuntime;
use slipway_provider::runtime::local::{Home, LocalRuntime};
use slipway_provider::runtime::memory::MemoryRuntime;
use slipway_provider::runtime::{ApplicationSpec, Phase, Runtime, RuntimeError};
use slipway_tests::fake_kube::FakeKube;
use slipway_tests::runner::Trial;

mod support;
use support::{change, demo, environment};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A runtime under test, and how to make an application it can run.
struct Subject {
    runtime: Arc<dyn Runtime>,
    /// An application of `replicas` with one public TCP port named `http`.
    application: fn(environment_id: &str, id: &str, name: &str, replicas: u32) -> ApplicationSpec,
}

/// The demo app, a real HTTP program: for the local runtime (and the memory runtime).
fn program(environment_id: &str, id: &str, name: &str, replicas: u32) -> ApplicationSpec {
    demo(id, environment_id, name, replicas, "v1")
}

/// An image: for Kubernetes.
fn image(environment_id: &str, id: &str, name: &str, replicas: u32) -> ApplicationSpec {
    ApplicationSpec {
        image: Some("nginx:1.27".into()),
        command: None,
        healthcheck: None,
        ..program(environment_id, id, name, replicas)
    }
}

/// A contract check, on a runtime it is given.
type Check = fn(Arc<Subject>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The contract, in order.
const CHECKS: [(&str, Check); 5] = [
    ("environments_apply_read_find_and_delete", |s| {
        Box::pin(async move { environments_apply_read_find_and_delete(&s).await })
    }),
    ("applications_apply_read_find_scale_and_delete", |s| {
        Box::pin(async move { applications_apply_read_find_scale_and_delete(&s).await })
    }),
    ("names_are_unique_within_an_environment", |s| {
        Box::pin(async move { names_are_unique_within_an_environment(&s).await })
    }),
    (
        "an_environment_keeps_its_applications_until_they_are_deleted",
        |s| {
            Box::pin(async move {
                an_environment_keeps_its_applications_until_they_are_deleted(&s).await
            })
        },
    ),
    ("unknown_ids_are_nothing_and_say_so", |s| {
        Box::pin(async move { unknown_ids_are_nothing_and_say_so(&s).await })
    }),
];

async fn environments_apply_read_find_and_delete(s: &Subject) {
    let r = &s.runtime;
    let spec = environment("env-c1", "conf-one");
    let applied = r
        .apply_environment(spec.clone(), change("c1"))
        .await
        .unwrap();
    assert_eq!(applied.spec, spec);
    let read = r
        .get_environment("env-c1")
        .await
        .unwrap()
        .expect("it exists");
    assert_eq!(read.spec, spec);
    // Who changed it is the runtime's record (the platform stamps it from the caller,
    // never from the request), and a read gives back the same record.
    assert_eq!(read.change, applied.change, "the change record is stored");
    assert!(!read.change.actor.is_empty(), "{:?}", read.change);
    let found = r
        .find_environment("conf-one")
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.spec.id, "env-c1");

    let mut next = spec.clone();
    next.variables.insert("LOG_LEVEL".into(), "debug".into());
    let updated = r
        .apply_environment(next.clone(), change("c2"))
        .await
        .unwrap();
    let read = r.get_environment("env-c1").await.unwrap().unwrap();
    assert_eq!(read.spec.variables, next.variables);
    assert_eq!(read.change, updated.change);

    r.delete_environment("env-c1", change("c3"), TIMEOUT)
        .await
        .unwrap();
    assert!(r.get_environment("env-c1").await.unwrap().is_none());
    assert!(r.find_environment("conf-one").await.unwrap().is_none());
}

async fn applications_apply_read_find_scale_and_delete(s: &Subject) {
    let r = &s.runtime;
    r.apply_environment(environment("env-c2", "conf-two"), change("c1"))
        .await
        .unwrap();
    let spec = (s.application)("env-c2", "app-c2", "web", 1);
    let applied = r
        .apply_application(spec.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(applied.phase, Phase::Running, "{:?}", applied.message);
    assert_eq!(applied.ready_replicas, 1);
    assert!(
        applied.endpoints.contains_key("http"),
        "{:?}",
        applied.endpoints
    );

    let read = r
        .get_application("app-c2")
        .await
        .unwrap()
        .expect("it exists");
    assert_eq!(read.spec, spec, "a read gives back the spec applied");
    assert_eq!(read.change, applied.change);
    assert_eq!(read.endpoints, applied.endpoints, "endpoints are stable");
    let found = r
        .find_application("env-c2", "web")
        .await
        .unwrap()
        .expect("found by name");
    assert_eq!(found.spec.id, "app-c2");
    assert!(r
        .find_application("env-c2", "other")
        .await
        .unwrap()
        .is_none());

    let mut stopped = spec.clone();
    stopped.replicas = 0;
    let applied = r
        .apply_application(stopped, change("c2"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(applied.phase, Phase::Stopped);
    assert_eq!(applied.ready_replicas, 0);
    let read = r.get_application("app-c2").await.unwrap().unwrap();
    assert_eq!((read.phase, read.spec.replicas), (Phase::Stopped, 0));
    assert_eq!(read.change, applied.change);

    r.delete_application("app-c2", change("c3"), TIMEOUT)
        .await
        .unwrap();
    assert!(r.get_application("app-c2").await.unwrap().is_none());
    assert!(r.find_application("env-c2", "web").await.unwrap().is_none());
    r.delete_environment("env-c2", change("c3"), TIMEOUT)
        .await
        .unwrap();
}

async fn names_are_unique_within_an_environment(s: &Subject) {
    let r = &s.runtime;
    r.apply_environment(environment("env-c3", "conf-three"), change("c1"))
        .await
        .unwrap();
    let first = (s.application)("env-c3", "app-c3a", "api", 0);
    r.apply_application(first, change("c1"), TIMEOUT)
        .await
        .unwrap();
    let twin = (s.application)("env-c3", "app-c3b", "api", 0);
    let err = r
        .apply_application(twin, change("c1"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");
    assert!(
        err.to_string().contains("app-c3a"),
        "names the owner: {err}"
    );
    r.delete_application("app-c3a", change("c2"), TIMEOUT)
        .await
        .unwrap();
    r.delete_environment("env-c3", change("c2"), TIMEOUT)
        .await
        .unwrap();
}

async fn an_environment_keeps_its_applications_until_they_are_deleted(s: &Subject) {
    let r = &s.runtime;
    r.apply_environment(environment("env-c4", "conf-four"), change("c1"))
        .await
        .unwrap();
    r.apply_application(
        (s.application)("env-c4", "app-c4", "worker", 0),
        change("c1"),
        TIMEOUT,
    )
    .await
    .unwrap();
    let err = r
        .delete_environment("env-c4", change("c2"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");
    assert!(
        err.to_string().contains("worker"),
        "names what is left: {err}"
    );
    assert!(r.get_application("app-c4").await.unwrap().is_some());
    r.delete_application("app-c4", change("c2"), TIMEOUT)
        .await
        .unwrap();
    r.delete_environment("env-c4", change("c2"), TIMEOUT)
        .await
        .unwrap();
}

async fn unknown_ids_are_nothing_and_say_so(s: &Subject) {
    let r = &s.runtime;
    assert!(r.get_environment("env-none").await.unwrap().is_none());
    assert!(r.get_application("app-none").await.unwrap().is_none());
    let err = r
        .apply_application(
            (s.application)("env-none", "app-none", "web", 1),
            change("c1"),
            TIMEOUT,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("env-none"), "{err}");
}

/// The runtimes the contract is checked on.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Memory,
    Local,
    Kubernetes,
    /// The Kubernetes runtime behind a platform: this binary's `runtime serve`.
    KubernetesPlatform,
}

/// What a runtime under test needs kept while it runs: its home (with a daemon, which
/// is stopped however the check ends) or its API server.
#[derive(Default)]
struct Keep {
    home: Option<tempfile::TempDir>,
    /// A platform in the foreground (`runtime serve`), stopped with SIGTERM.
    platform: Option<std::process::Child>,
    _fake: Option<FakeKube>,
}

impl Drop for Keep {
    fn drop(&mut self) {
        if let Some(mut platform) = self.platform.take() {
            let pid = nix::unistd::Pid::from_raw(platform.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = platform.wait();
        }
        if let Some(dir) = &self.home {
            support::stop_daemon(&Home::new(dir.path()));
        }
    }
}

/// A fresh runtime of `kind`, for one check.
async fn subject(kind: Kind) -> (Arc<Subject>, Keep) {
    let mut keep = Keep::default();
    let (runtime, application): (Arc<dyn Runtime>, _) = match kind {
        Kind::Memory => (Arc::new(MemoryRuntime::new()), program as _),
        Kind::Local => {
            let dir = tempfile::Builder::new()
                .prefix("slwc")
                .tempdir_in("/tmp")
                .unwrap();
            let runtime = LocalRuntime::connect_or_spawn(&Home::new(dir.path()))
                .await
                .unwrap();
            keep.home = Some(dir);
            (Arc::new(runtime), program as _)
        }
        Kind::Kubernetes => {
            let fake = FakeKube::start().await.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let kubeconfig = dir.path().join("kubeconfig");
            fake.write_kubeconfig(&kubeconfig).unwrap();
            let runtime = KubernetesRuntime::from_kubeconfig(Some(&kubeconfig), None).unwrap();
            keep._fake = Some(fake);
            (Arc::new(runtime), image as _)
        }
        Kind::KubernetesPlatform => {
            let fake = FakeKube::start().await.unwrap();
            let dir = tempfile::Builder::new()
                .prefix("slwk")
                .tempdir_in("/tmp")
                .unwrap();
            let kubeconfig = dir.path().join("kubeconfig");
            fake.write_kubeconfig(&kubeconfig).unwrap();
            keep._fake = Some(fake);
            keep.platform = Some(
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["runtime", "--home"])
                    .arg(dir.path())
                    .args(["serve", "--backend", "kubernetes", "--kubeconfig"])
                    .arg(&kubeconfig)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let home = Home::new(dir.path());
            keep.home = Some(dir);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let runtime = loop {
                match LocalRuntime::connect(&home).await {
                    Ok(runtime) => break runtime,
                    Err(e) if std::time::Instant::now() > deadline => {
                        panic!("the platform did not answer: {e}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            assert_eq!(
                runtime.kind(),
                slipway_provider::runtime::RuntimeKind::Kubernetes
            );
            (Arc::new(runtime), image as _)
        }
    };
    let subject = Subject {
        runtime,
        application,
    };
    (Arc::new(subject), keep)
}

fn main() -> ExitCode {
    // This binary is also the local runtime's daemon.
    if let Some(code) = slipway_provider::runtime::local::run_from_args() {
        return code;
    }
    let mut trials = Vec::new();
    for kind in [
        Kind::Memory,
        Kind::Local,
        Kind::Kubernetes,
        Kind::KubernetesPlatform,
    ] {
        for (check_name, check) in CHECKS {
            let name = format!("{}::{check_name}", format!("{kind:?}").to_lowercase());
            trials.push(Trial::new(name, move || async move {
                let (subject, keep) = subject(kind).await;
                check(subject).await;
                drop(keep);
            }));
        }
    }
    slipway_tests::runner::run(trials)
}
