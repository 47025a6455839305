//! The kubernetes runtime against the fake API server, through a kubeconfig as a user
//! would configure it: environments and applications created, rolled out, drifted,
//! refused, conflicted and deleted. `real_cluster_lifecycle` runs the same lifecycle on a
//! real cluster when `SLIPWAY_TEST_KUBECONFIG` names a kubeconfig.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{json, Value};
use slipway_provider::runtime::kubernetes::mapping::IngressSettings;
use slipway_provider::runtime::kubernetes::pod_security::PodSecurity;
use slipway_provider::runtime::kubernetes::KubernetesRuntime;
use slipway_provider::runtime::{
    ApplicationSpec, ChangeRecord, EnvironmentSpec, HealthCheck, HealthProbe, Mode, Phase,
    PortSpec, Protocol, ResourceLimits, RolloutCause, Runtime, RuntimeError,
};
use slipway_tests::fake_kube::{FakeKube, Options, RolloutMode, Timing};

/// Generous: the machine is shared; the waits end as soon as the condition holds.
const TIMEOUT: Duration = Duration::from_secs(60);

struct Harness {
    fake: FakeKube,
    runtime: KubernetesRuntime,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn harness_with(options: Options) -> Harness {
    let fake = FakeKube::start_with(options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&path).unwrap();
    let runtime = KubernetesRuntime::from_kubeconfig(Some(&path), Some("fake")).unwrap();
    let client = client_for(&fake.kubeconfig()).await;
    Harness {
        fake,
        runtime,
        client,
        _dir: dir,
    }
}

async fn harness() -> Harness {
    harness_with(Options::default()).await
}

async fn client_for(kubeconfig: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn change(sha: &str) -> ChangeRecord {
    ChangeRecord {
        commit_sha: sha.into(),
        repository: "acme/infra".into(),
        pull_request: Some(7),
        actor: "alice".into(),
        trigger: "webhook".into(),
        job_id: format!("job-{sha}"),
        changed_at: "2025-01-01T00:00:00Z".into(),
        verified: true,
    }
}

fn environment(name: &str) -> EnvironmentSpec {
    EnvironmentSpec {
        id: format!("{name}-0000abcd"),
        name: name.into(),
        mode: Mode::Staging,
        variables: BTreeMap::from([("REGION".into(), "eu-west".into())]),
        secrets: BTreeMap::from([("SHARED_TOKEN".into(), "env-secret-value".into())]),
    }
}

fn application(env: &EnvironmentSpec, name: &str, image: &str, replicas: u32) -> ApplicationSpec {
    ApplicationSpec {
        id: format!("{name}-1234abcd"),
        environment_id: env.id.clone(),
        name: name.into(),
        image: Some(image.into()),
        command: None,
        args: vec![],
        working_dir: None,
        replicas,
        ports: vec![PortSpec {
            name: "http".into(),
            port: 8080,
            protocol: Protocol::Tcp,
            public: true,
        }],
        variables: BTreeMap::from([("LOG_LEVEL".into(), "info".into())]),
        secrets: BTreeMap::from([("DB_PASSWORD".into(), "app-secret-value".into())]),
        healthcheck: Some(HealthCheck {
            probe: HealthProbe::Http {
                path: "/healthz".into(),
                port: 8080,
            },
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        }),
        resources: ResourceLimits {
            cpu: Some("250m".into()),
            memory: Some("128Mi".into()),
        },
    }
}

fn annotations(o: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(o["metadata"]["annotations"].clone()).unwrap_or_default()
}

fn labels(o: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(o["metadata"]["labels"].clone()).unwrap_or_default()
}

fn managers_of(o: &Value) -> Vec<(String, String)> {
    o["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_owned(),
                m["operation"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn owns(o: &Value, manager: &str, pointer: &str) -> bool {
    o["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .any(|m| m["manager"] == json!(manager) && m["fieldsV1"].pointer(pointer).is_some())
}

/// Waits until `check` holds, polling; fails after [`TIMEOUT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn create_environment_and_application_then_read_and_find_them() {
    let h = harness().await;
    let env_spec = environment("dev");
    let env = h
        .runtime
        .apply_environment(env_spec.clone(), change("c1"))
        .await
        .unwrap();
    assert_eq!(env.spec, env_spec);
    assert_eq!(env.change, change("c1"));

    let ns = h.fake.object("", "namespaces", "", "dev").unwrap();
    let ns_labels = labels(&ns);
    assert_eq!(ns_labels["app.kubernetes.io/managed-by"], "slipway");
    assert_eq!(ns_labels["slipway.dev/environment-id"], env_spec.id);
    assert_eq!(ns_labels["slipway.dev/mode"], "staging");
    assert_eq!(annotations(&ns)["slipway.dev/commit-sha"], "c1");

    let app_spec = application(&env_spec, "web", "nginx:1.27", 2);
    let app = h
        .runtime
        .apply_application(app_spec.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(app.spec, app_spec);
    assert_eq!(app.phase, Phase::Running);
    assert_eq!(app.ready_replicas, 2);
    assert_eq!(
        app.endpoints["http"],
        "http://web.dev.svc.cluster.local:8080"
    );

    // Every object: labelled, annotated with provenance, written by server-side apply.
    for (group, plural, name) in [
        ("apps", "deployments", "web"),
        ("", "services", "web"),
        ("", "secrets", "web-secrets"),
    ] {
        let o = h.fake.object(group, plural, "dev", name).unwrap();
        assert_eq!(
            labels(&o)["slipway.dev/application-id"],
            app_spec.id,
            "{plural}"
        );
        let a = annotations(&o);
        assert_eq!(a["slipway.dev/commit-sha"], "c1", "{plural}");
        assert_eq!(a["slipway.dev/repository"], "acme/infra", "{plural}");
        assert_eq!(a["slipway.dev/pull-request"], "7", "{plural}");
        assert_eq!(a["slipway.dev/job-id"], "job-c1", "{plural}");
        assert!(
            managers_of(&o).contains(&("slipway".to_owned(), "Apply".to_owned())),
            "{plural}: {:?}",
            managers_of(&o)
        );
    }
    // The secret value reaches the pods only through the Secret.
    let d = h.fake.object("apps", "deployments", "dev", "web").unwrap();
    assert!(!d.to_string().contains("app-secret-value"));
    assert_eq!(
        d.pointer("/spec/selector/matchLabels"),
        Some(
            &json!({"app.kubernetes.io/managed-by": "slipway", "slipway.dev/application-id": app_spec.id})
        )
    );

    let read = h
        .runtime
        .get_application(&app_spec.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.spec, app_spec);
    assert_eq!(read.change, change("c1"));
    let found = h
        .runtime
        .find_application(&env_spec.id, "web")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.spec.id, app_spec.id);
    assert!(h
        .runtime
        .find_application(&env_spec.id, "nope")
        .await
        .unwrap()
        .is_none());
    assert!(h
        .runtime
        .get_application("nope-00000000")
        .await
        .unwrap()
        .is_none());
    let env_read = h
        .runtime
        .get_environment(&env_spec.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(env_read.spec, env_spec);
    assert_eq!(
        h.runtime
            .find_environment("dev")
            .await
            .unwrap()
            .unwrap()
            .spec
            .id,
        env_spec.id
    );
    // Someone else's namespace is no Slipway environment.
    assert!(h
        .runtime
        .find_environment("kube-system")
        .await
        .unwrap()
        .is_none());

    // Applying the same spec again changes nothing but the provenance, and keeps the
    // Deployment's generation (no rollout).
    let generation = d["metadata"]["generation"].clone();
    h.runtime
        .apply_application(app_spec.clone(), change("c2"), TIMEOUT)
        .await
        .unwrap();
    let d2 = h.fake.object("apps", "deployments", "dev", "web").unwrap();
    assert_eq!(d2["metadata"]["generation"], generation);
    assert_eq!(annotations(&d2)["slipway.dev/commit-sha"], "c2");
    // The pods still run what c1 deployed, and say so.
    assert_eq!(
        d2["spec"]["template"]["metadata"]["annotations"]["slipway.dev/commit-sha"],
        json!("c1")
    );
    let template_labels = &d2["spec"]["template"]["metadata"]["labels"];
    assert_eq!(template_labels["app.kubernetes.io/name"], json!("web"));
    assert_eq!(
        template_labels["app.kubernetes.io/instance"],
        json!(app_spec.id)
    );
    assert_eq!(template_labels["app.kubernetes.io/part-of"], json!("dev"));
    assert_eq!(
        template_labels["app.kubernetes.io/managed-by"],
        json!("slipway")
    );
}

/// A plan's refresh reads every application at once: that costs one LIST of
/// Deployments and one of Secrets, however many applications there are; the next
/// round of reads lists again, so it sees what changed meanwhile.
#[tokio::test]
async fn reading_many_applications_costs_two_lists() {
    let h = harness().await;
    let env = environment("many");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        let spec = application(&env, &format!("app{i}"), "web:1", 1);
        h.runtime
            .apply_application(spec.clone(), change("c1"), TIMEOUT)
            .await
            .unwrap();
        ids.push(spec.id);
    }
    // Every application read at once, and the (LIST, GET) requests that cost.
    let read_all = || async {
        let before = h.fake.requests();
        let reads = ids.iter().map(|id| h.runtime.get_application(id));
        let apps = futures::future::join_all(reads).await;
        let after = h.fake.requests();
        let delta = |verb: &str| after.get(verb).unwrap_or(&0) - before.get(verb).unwrap_or(&0);
        let apps: Vec<_> = apps
            .into_iter()
            .map(|app| app.unwrap().expect("found"))
            .collect();
        (apps, (delta("list"), delta("get")))
    };
    h.runtime.begin_reads().await;
    let (apps, requests) = read_all().await;
    for (id, app) in ids.iter().zip(&apps) {
        assert_eq!(&app.spec.id, id);
        assert_eq!(
            app.spec.secrets.len(),
            1,
            "its Secret came with the snapshot"
        );
    }
    assert_eq!(requests, (2, 0));

    // Scaled out of band (`kubectl scale`) between two runs: the next run's round of
    // reads (the platform begins one at each client's greeting) sees it, for one more
    // pair of LISTs.
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), "many");
    let kubectl = PatchParams {
        field_manager: Some("kubectl".into()),
        ..PatchParams::default()
    };
    deployments
        .patch(
            "app1",
            &kubectl,
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    h.runtime.begin_reads().await;
    let (apps, requests) = read_all().await;
    assert_eq!(apps[1].spec.replicas, 4, "the next run reads the change");
    assert_eq!(requests, (2, 0));

    // A write drops the snapshot: the next read sees it at once.
    let mut scaled = application(&env, "app0", "web:1", 3);
    scaled.id = ids[0].clone();
    h.runtime
        .apply_application(scaled, change("c2"), TIMEOUT)
        .await
        .unwrap();
    let app = h.runtime.get_application(&ids[0]).await.unwrap().unwrap();
    assert_eq!(app.spec.replicas, 3);
}

#[tokio::test]
async fn update_rolls_out_and_readers_see_it_progress() {
    let h = harness_with(Options {
        timing: Timing {
            step: Duration::from_millis(150),
            ..Timing::default()
        },
        ..Options::default()
    })
    .await;
    let env = environment("stage");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let v1 = application(&env, "api", "api:1", 3);
    h.runtime
        .apply_application(v1.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();

    h.fake.set_rollout_mode("stage", "api", RolloutMode::Slow);
    let mut v2 = v1.clone();
    v2.image = Some("api:2".into());
    v2.variables.insert("FEATURE".into(), "on".into());
    v2.ports.push(PortSpec {
        name: "admin".into(),
        port: 9000,
        protocol: Protocol::Tcp,
        public: false,
    });
    let runtime = std::sync::Arc::new(h.runtime);
    let applying = {
        let runtime = runtime.clone();
        let v2 = v2.clone();
        tokio::spawn(async move { runtime.apply_application(v2, change("c2"), TIMEOUT).await })
    };
    let id = v1.id.clone();
    eventually("a reader to see the rollout in progress", || {
        let runtime = runtime.clone();
        let id = id.clone();
        async move {
            let app = runtime.get_application(&id).await.unwrap().unwrap();
            app.phase == Phase::Progressing && app.spec.image.as_deref() == Some("api:2")
        }
    })
    .await;
    let app = applying.await.unwrap().unwrap();
    assert_eq!(app.phase, Phase::Running);
    assert_eq!(app.spec, v2);
    assert_eq!(app.ready_replicas, 3);
    let d = h
        .fake
        .object("apps", "deployments", "stage", "api")
        .unwrap();
    assert_eq!(d["metadata"]["generation"], json!(2));
    assert_eq!(d["status"]["observedGeneration"], json!(2));

    // Removing a variable and a port removes them from the Deployment: server-side
    // apply drops the fields Slipway stops sending.
    let app = runtime
        .apply_application(v1.clone(), change("c3"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(app.spec, v1);
    let d = h
        .fake
        .object("apps", "deployments", "stage", "api")
        .unwrap();
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["ports"].as_array().unwrap().len(), 1);
    assert!(!container["env"].to_string().contains("FEATURE"));
}

#[tokio::test]
async fn changing_a_secret_rolls_the_pods() {
    let h = harness().await;
    let env = environment("sec");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let mut app = application(&env, "web", "nginx:1", 1);
    h.runtime
        .apply_application(app.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();
    let before = h.fake.object("apps", "deployments", "sec", "web").unwrap();
    app.secrets
        .insert("DB_PASSWORD".into(), "rotated-value".into());
    let applied = h
        .runtime
        .apply_application(app.clone(), change("c2"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(applied.spec.secrets["DB_PASSWORD"], "rotated-value");
    let after = h.fake.object("apps", "deployments", "sec", "web").unwrap();
    assert_ne!(
        before["spec"]["template"]["metadata"]["annotations"],
        after["spec"]["template"]["metadata"]["annotations"]
    );
    assert!(!after.to_string().contains("rotated-value"));
}

#[tokio::test]
async fn a_failed_rollout_is_an_error_naming_the_condition() {
    let h = harness().await;
    let env = environment("prod");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let v1 = application(&env, "web", "web:1", 2);
    h.runtime
        .apply_application(v1.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();

    h.fake.set_rollout_mode("prod", "web", RolloutMode::Fail);
    let mut v2 = v1.clone();
    v2.image = Some("web:broken".into());
    let err = h
        .runtime
        .apply_application(v2, change("c2"), TIMEOUT)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            RuntimeError::RolloutFailed {
                cause: RolloutCause::Other,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(message.contains("Progressing is False"), "{message}");
    assert!(message.contains("ProgressDeadlineExceeded"), "{message}");
    assert!(message.contains("prod/web"), "{message}");
    assert!(!message.contains("app-secret-value"));

    let app = h.runtime.get_application(&v1.id).await.unwrap().unwrap();
    assert_eq!(app.phase, Phase::Failed);
    assert!(app.message.unwrap().contains("ProgressDeadlineExceeded"));
    // The old replicas keep serving.
    assert_eq!(app.ready_replicas, 0, "no updated replica is available");
    let d = h.fake.object("apps", "deployments", "prod", "web").unwrap();
    assert_eq!(d["status"]["availableReplicas"], json!(2));
}

#[tokio::test]
async fn a_rollout_that_outlives_the_timeout_says_what_it_waits_for() {
    let h = harness_with(Options {
        timing: Timing {
            step: Duration::from_secs(30),
            ..Timing::default()
        },
        ..Options::default()
    })
    .await;
    let env = environment("slow");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let err = h
        .runtime
        .apply_application(
            application(&env, "web", "web:1", 1),
            change("c1"),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, RuntimeError::RolloutFailed { .. }), "{err:?}");
    assert!(message.contains("did not finish within"), "{message}");
    assert!(message.contains("observe"), "{message}");
}

#[tokio::test]
async fn drift_made_outside_terraform_shows_in_a_read_and_the_next_apply_reverts_it() {
    let h = harness().await;
    let env = environment("drift");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let spec = application(&env, "web", "nginx:1", 2);
    h.runtime
        .apply_application(spec.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();

    // `kubectl scale`, in effect.
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), "drift");
    let params = PatchParams {
        field_manager: Some("kubectl".into()),
        ..PatchParams::default()
    };
    deployments
        .patch(
            "web",
            &params,
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    let runtime = &h.runtime;
    eventually("the scaled Deployment to roll out", || async {
        let app = runtime.get_application(&spec.id).await.unwrap().unwrap();
        app.ready_replicas == 5
    })
    .await;
    let app = runtime.get_application(&spec.id).await.unwrap().unwrap();
    assert_eq!(app.spec.replicas, 5);
    assert_ne!(app.spec, spec);
    let d = h
        .fake
        .object("apps", "deployments", "drift", "web")
        .unwrap();
    assert!(owns(&d, "kubectl", "/f:spec/f:replicas"));

    // Slipway forces what it owns back.
    let app = runtime
        .apply_application(spec.clone(), change("c2"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(app.spec, spec);
    assert_eq!(app.ready_replicas, 2);
    let d = h
        .fake
        .object("apps", "deployments", "drift", "web")
        .unwrap();
    assert!(owns(&d, "slipway", "/f:spec/f:replicas"));
    assert!(!owns(&d, "kubectl", "/f:spec/f:replicas"));

    // A deleted Deployment reads as gone, so Terraform plans to create it.
    deployments
        .delete("web", &Default::default())
        .await
        .unwrap();
    assert!(runtime.get_application(&spec.id).await.unwrap().is_none());
}

#[tokio::test]
async fn another_managers_apply_conflicts_until_forced_and_slipway_takes_its_fields_back() {
    let h = harness().await;
    let env = environment("conf");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let spec = application(&env, "web", "nginx:1", 2);
    h.runtime
        .apply_application(spec.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();

    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), "conf");
    let theirs = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 7}
    });
    let err = deployments
        .patch("web", &PatchParams::apply("helm"), &Patch::Apply(&theirs))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "Conflict");
            assert!(
                status.message.contains("conflict with \"slipway\""),
                "{}",
                status.message
            );
            assert!(
                status.message.contains(".spec.replicas"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 409, got {other:?}"),
    }
    deployments
        .patch(
            "web",
            &PatchParams::apply("helm").force(),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap();
    let d = h.fake.object("apps", "deployments", "conf", "web").unwrap();
    assert_eq!(d["spec"]["replicas"], json!(7));
    assert!(owns(&d, "helm", "/f:spec/f:replicas"));
    // helm's apply did not remove Slipway's other fields.
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("nginx:1")
    );

    let app = h
        .runtime
        .apply_application(spec.clone(), change("c2"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(app.spec.replicas, 2);
    let d = h.fake.object("apps", "deployments", "conf", "web").unwrap();
    assert!(owns(&d, "slipway", "/f:spec/f:replicas"));
    assert!(!owns(&d, "helm", "/f:spec/f:replicas"));
}

#[tokio::test]
async fn objects_without_slipway_labels_are_never_adopted_or_deleted() {
    let h = harness().await;
    // A namespace someone made by hand.
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "legacy"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let before = h.fake.object("", "namespaces", "", "legacy").unwrap();
    let err = h
        .runtime
        .apply_environment(environment("legacy"), change("c1"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");
    assert!(message.contains("Namespace legacy"), "{message}");
    assert!(message.contains("not managed by Slipway"), "{message}");
    assert!(
        message.contains("terraform import slipway_environment"),
        "{message}"
    );
    let after = h.fake.object("", "namespaces", "", "legacy").unwrap();
    assert_eq!(before, after, "the namespace must be untouched");

    // A Deployment someone made by hand, in a Slipway environment.
    let env = environment("mixed");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), "mixed");
    let theirs: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "theirs:1"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let before = h
        .fake
        .object("apps", "deployments", "mixed", "web")
        .unwrap();
    let err = h
        .runtime
        .apply_application(application(&env, "web", "ours:1", 1), change("c1"), TIMEOUT)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("Deployment mixed/web"), "{message}");
    assert!(message.contains("not managed by Slipway"), "{message}");
    assert!(
        message.contains("terraform import slipway_application"),
        "{message}"
    );
    assert_eq!(
        h.fake
            .object("apps", "deployments", "mixed", "web")
            .unwrap(),
        before
    );
    // Nothing else of the application was written either.
    assert!(h
        .fake
        .object("", "secrets", "mixed", "web-secrets")
        .is_none());
    assert!(h.fake.object("", "services", "mixed", "web").is_none());
    // It is no Slipway application, and an environment with it can still go once the
    // Slipway applications are gone (the namespace's deletion takes it).
    assert!(h
        .runtime
        .find_application(&env.id, "web")
        .await
        .unwrap()
        .is_none());

    // Another Slipway application's object is refused, naming its id.
    let first = application(&env, "api", "api:1", 1);
    h.runtime
        .apply_application(first.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();
    let mut second = application(&env, "api", "api:1", 1);
    second.id = "api-99999999".into();
    let message = h
        .runtime
        .apply_application(second, change("c1"), TIMEOUT)
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains(&format!("id {}", first.id)), "{message}");
    assert!(message.contains("terraform import"), "{message}");
}

#[tokio::test]
async fn delete_waits_for_the_namespace_to_finish_terminating() {
    let h = harness_with(Options {
        timing: Timing {
            namespace_termination: Duration::from_millis(800),
            ..Timing::default()
        },
        ..Options::default()
    })
    .await;
    let env = environment("gone");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let app = application(&env, "web", "nginx:1", 1);
    h.runtime
        .apply_application(app.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();

    let err = h
        .runtime
        .delete_environment(&env.id, change("c2"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("delete them first"), "{err}");

    h.runtime
        .delete_application(&app.id, change("c2"), TIMEOUT)
        .await
        .unwrap();
    for (group, plural, name) in [
        ("apps", "deployments", "web"),
        ("", "services", "web"),
        ("", "secrets", "web-secrets"),
    ] {
        assert!(
            h.fake.object(group, plural, "gone", name).is_none(),
            "{plural} left behind"
        );
    }
    assert!(h.runtime.get_application(&app.id).await.unwrap().is_none());

    h.runtime
        .delete_environment(&env.id, change("c2"), TIMEOUT)
        .await
        .unwrap();
    assert!(h.fake.object("", "namespaces", "", "gone").is_none());
    assert!(h
        .fake
        .object("", "configmaps", "gone", "slipway-environment")
        .is_none());
    assert!(h.runtime.get_environment(&env.id).await.unwrap().is_none());
    let err = h
        .runtime
        .delete_environment(&env.id, change("c3"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn applying_into_a_terminating_namespace_says_to_wait() {
    let h = harness_with(Options {
        timing: Timing {
            namespace_termination: Duration::from_secs(120),
            ..Timing::default()
        },
        ..Options::default()
    })
    .await;
    let env = environment("ending");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    namespaces
        .delete("ending", &Default::default())
        .await
        .unwrap();
    let err = h
        .runtime
        .apply_application(
            application(&env, "web", "nginx:1", 1),
            change("c1"),
            TIMEOUT,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("being deleted"), "{err}");
    let err = h
        .runtime
        .apply_environment(env.clone(), change("c2"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("being deleted"), "{err}");
}

#[tokio::test]
async fn a_wrong_kubeconfig_or_context_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = KubernetesRuntime::from_kubeconfig(Some(&missing), None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("kubeconfig") && err.contains("nope"), "{err}");

    let fake = FakeKube::start().await.unwrap();
    let path = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&path).unwrap();
    let err = KubernetesRuntime::from_kubeconfig(Some(&path), Some("prod"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("\"prod\"") && err.contains("fake"), "{err}");

    // A refused token is reported as such.
    let bad = fake.kubeconfig().replace(fake.token(), "wrong-token");
    std::fs::write(&path, bad).unwrap();
    let runtime = KubernetesRuntime::from_kubeconfig(Some(&path), None).unwrap();
    let err = runtime.get_environment("x").await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("401"), "{err}");

    // The server's certificate is verified: another cluster's CA does not do.
    let other = FakeKube::start().await.unwrap();
    let foreign = fake
        .kubeconfig()
        .replace(&b64(fake.ca_pem()), &b64(other.ca_pem()));
    assert_ne!(foreign, fake.kubeconfig());
    std::fs::write(&path, foreign).unwrap();
    let runtime = KubernetesRuntime::from_kubeconfig(Some(&path), None).unwrap();
    let err = runtime.get_environment("x").await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable(_)), "{err:?}");
    // (Asynchronously: the fake serves from this test's runtime.)
    let out = tokio::process::Command::new(kubectl_on_path())
        .args(["get", "ns"])
        .env("KUBECONFIG", &path)
        .env("HOME", dir.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("certificate signed by unknown authority"),
        "{stderr}"
    );
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The lifecycle against a real cluster. Run with
/// `SLIPWAY_TEST_KUBECONFIG=~/.kube/config cargo test -p slipway-tests --test kubernetes_runtime -- --ignored`;
/// it uses the namespace `slipway-test-<random>` and removes it.
#[tokio::test]
#[ignore = "needs a real cluster: set SLIPWAY_TEST_KUBECONFIG"]
async fn real_cluster_lifecycle() {
    let Ok(path) = std::env::var("SLIPWAY_TEST_KUBECONFIG") else {
        eprintln!("SLIPWAY_TEST_KUBECONFIG is not set; skipping");
        return;
    };
    let runtime =
        KubernetesRuntime::from_kubeconfig(Some(std::path::Path::new(&path)), None).unwrap();
    let suffix = format!("{:08x}", std::process::id());
    let mut env = environment(&format!("slipway-test-{suffix}"));
    env.id = format!("{}-{suffix}", env.name);
    runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let mut app = application(&env, "web", "registry.k8s.io/pause:3.10", 1);
    app.healthcheck = None;
    let timeout = Duration::from_secs(300);
    let result = runtime
        .apply_application(app.clone(), change("c1"), timeout)
        .await;
    let read = runtime.get_application(&app.id).await;
    let deleted = runtime
        .delete_application(&app.id, change("c2"), timeout)
        .await;
    let env_deleted = runtime
        .delete_environment(&env.id, change("c2"), timeout)
        .await;
    let applied = result.unwrap();
    assert_eq!(applied.phase, Phase::Running);
    assert_eq!(read.unwrap().unwrap().spec.image, app.image);
    deleted.unwrap();
    env_deleted.unwrap();
}

/// The ClusterRole in deploy/kubernetes/slipway-agent.yaml as (group, resource, verb).
fn shipped_cluster_role() -> std::collections::BTreeSet<(String, String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/slipway-agent.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let role = documents
        .iter()
        .find(|d| d["kind"] == json!("ClusterRole"))
        .expect("the manifest has a ClusterRole");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut granted = std::collections::BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    granted
}

/// Every code path of the runtime that talks to the API server, once: environments and
/// applications (with an Ingress) created, read, found, updated, a public port made
/// private, a failed rollout, deleted.
#[tokio::test]
async fn the_shipped_cluster_role_grants_exactly_what_the_runtime_uses() {
    let fake = FakeKube::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&path).unwrap();
    let runtime = KubernetesRuntime::from_kubeconfig(Some(&path), Some("fake"))
        .unwrap()
        .with_ingress(IngressSettings {
            class: "nginx".into(),
            domain: "apps.example.com".into(),
        });
    let env = environment("rbac");
    runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    runtime
        .apply_environment(env.clone(), change("c2"))
        .await
        .unwrap();
    runtime.get_environment(&env.id).await.unwrap().unwrap();
    runtime.find_environment("rbac").await.unwrap().unwrap();
    let mut app = application(&env, "web", "nginx:1.27", 2);
    runtime
        .apply_application(app.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();
    runtime.get_application(&app.id).await.unwrap().unwrap();
    runtime
        .find_application(&env.id, "web")
        .await
        .unwrap()
        .unwrap();
    app.ports[0].public = false;
    runtime
        .apply_application(app.clone(), change("c2"), TIMEOUT)
        .await
        .unwrap();
    fake.set_rollout_mode("rbac", "web", RolloutMode::Fail);
    app.image = Some("nginx:broken".into());
    runtime
        .apply_application(app.clone(), change("c3"), TIMEOUT)
        .await
        .unwrap_err();
    runtime
        .delete_application(&app.id, change("c4"), TIMEOUT)
        .await
        .unwrap();
    runtime
        .delete_environment(&env.id, change("c4"), TIMEOUT)
        .await
        .unwrap();

    // Every request names the client.
    let agents = fake.user_agents();
    assert!(
        !agents.is_empty()
            && agents
                .iter()
                .all(|a| a.starts_with("terraform-provider-slipway/")),
        "{agents:?}"
    );

    let used: std::collections::BTreeSet<(String, String, String)> = fake
        .access()
        .into_iter()
        .map(|a| (a.group, a.resource, a.verb))
        .collect();
    let granted = shipped_cluster_role();
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "deploy/kubernetes/slipway-agent.yaml's ClusterRole must grant exactly what the runtime uses.\nmissing (a real cluster answers 403): {missing:?}\nunused (not minimal): {unused:?}"
    );
}

/// A Service name may be 63 characters long, so an application name may be too: every
/// object it becomes (Deployment, Service, `<name>-secrets`, container, labels) is valid.
#[tokio::test]
async fn a_63_character_application_name_works() {
    let h = harness().await;
    let env = environment("long");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let name = format!("w{}", "e".repeat(62));
    let app = h
        .runtime
        .apply_application(
            application(&env, &name, "nginx:1", 1),
            change("c1"),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(app.phase, Phase::Running);
    assert!(h.fake.object("", "services", "long", &name).is_some());
    assert!(h
        .runtime
        .get_application(&app.spec.id)
        .await
        .unwrap()
        .is_some());
}

/// A Deployment deleted out of band reads as gone, so Terraform plans a create with a
/// new id: that create takes over the Service and Secret the old one left behind. An
/// application whose Deployment still exists keeps its objects, and the conflict names
/// an id that reads (so `terraform import` with it works).
#[tokio::test]
async fn a_deployment_deleted_out_of_band_is_re_created_over_its_leftovers() {
    let h = harness().await;
    let env = environment("oob");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let old = application(&env, "web", "nginx:1", 1);
    h.runtime
        .apply_application(old.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), "oob");
    deployments
        .delete("web", &Default::default())
        .await
        .unwrap();
    assert!(h.runtime.get_application(&old.id).await.unwrap().is_none());
    assert!(h.fake.object("", "services", "oob", "web").is_some());

    let mut new = old.clone();
    new.id = "web-99990000".into();
    let app = h
        .runtime
        .apply_application(new.clone(), change("c2"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(app.phase, Phase::Running);
    for (plural, name) in [("services", "web"), ("secrets", "web-secrets")] {
        let o = h.fake.object("", plural, "oob", name).unwrap();
        assert_eq!(
            annotations(&o)["slipway.dev/application-id"],
            new.id,
            "{plural}"
        );
        assert_eq!(labels(&o)["slipway.dev/application-id"], new.id, "{plural}");
    }
    let service = h.fake.object("", "services", "oob", "web").unwrap();
    assert_eq!(
        service["spec"]["selector"]["slipway.dev/application-id"],
        json!(new.id)
    );

    // A live application's objects are not leftovers.
    let mut other = old.clone();
    other.id = "web-77770000".into();
    let err = h
        .runtime
        .apply_application(other, change("c3"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "terraform import slipway_application.<name> {}",
            new.id
        )),
        "{msg}"
    );
    assert!(h.runtime.get_application(&new.id).await.unwrap().is_some());
}

/// The fake answers like a real API server where a client notices: a dry run validates
/// and defaults but stores nothing, and a strategic merge patch merges maps as a real
/// server does (lists by key: `fake_kube::strategic`'s tests).
#[tokio::test]
async fn the_fake_honours_dry_run_and_strategic_merge_patches() {
    let h = harness().await;
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "dry"}})).unwrap();
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let created = namespaces.create(&dry, &ns).await.unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("dry"));
    assert!(h.fake.object("", "namespaces", "", "dry").is_none());
    let bad: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "Not_Valid"}})).unwrap();
    let err = namespaces.create(&dry, &bad).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );

    let apply = PatchParams {
        dry_run: true,
        ..PatchParams::apply("someone")
    };
    namespaces
        .patch(
            "dry",
            &apply,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dry"}}),
            ),
        )
        .await
        .unwrap();
    assert!(h.fake.object("", "namespaces", "", "dry").is_none());

    namespaces
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    let default = h.fake.object("", "namespaces", "", "default").unwrap();
    assert_eq!(labels(&default).get("a").map(String::as_str), Some("b"));
    assert_eq!(
        labels(&default)
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("default")
    );
}

/// `kubectl` from PATH (CI installs Debian's `kubernetes-client` when there is none).
fn kubectl_on_path() -> std::path::PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
        .expect("no kubectl on PATH: install one (Debian: apt-get install kubernetes-client)")
}

/// kubectl against the harness's fake, with a home of its own so that its discovery
/// cache stays in the test's directory.
fn kubectl_command(h: &Harness) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(kubectl_on_path());
    command
        .env("KUBECONFIG", h._dir.path().join("kubeconfig"))
        .env("HOME", h._dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs kubectl to the end: (success, stdout, stderr).
async fn kubectl(h: &Harness, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = kubectl_command(h)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .await
        .unwrap();
    drop(input);
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .expect("kubectl finished")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A stock `kubectl` works against the fake as against a cluster, on what the runtime
/// created for an application with a 63-character name: it verifies the fake's TLS
/// certificate with the kubeconfig's CA, resolves short names from discovery, reads
/// `/openapi/v3` and so leaves field validation to the server (which refuses unknown
/// fields), merges client-side `apply` patches, diffs, and watches a rollout.
#[tokio::test]
async fn a_real_kubectl_gets_applies_diffs_and_watches_what_the_runtime_made() {
    let h = harness().await;
    let env = environment("kubectl");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let name = format!("k{}", "8".repeat(62));
    h.runtime
        .apply_application(
            application(&env, &name, "nginx:1", 2),
            change("c1"),
            TIMEOUT,
        )
        .await
        .unwrap();

    let (ok, out, err) = kubectl(
        &h,
        &["get", "deploy,svc,cm,secret", "-n", "kubectl", "-o", "name"],
        None,
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains(&format!("deployment.apps/{name}\n")), "{out}");
    assert!(out.contains(&format!("service/{name}\n")), "{out}");
    let (ok, out, err) = kubectl(
        &h,
        &["get", "ns", "kubectl", "-o", "jsonpath={.metadata.name}"],
        None,
    )
    .await;
    assert!(ok && out == "kubectl", "{out}{err}");
    let (ok, out, err) = kubectl(
        &h,
        &[
            "get",
            "deploy",
            &name,
            "-n",
            "kubectl",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        None,
    )
    .await;
    assert!(ok && out == "2", "{out}{err}");
    // Printed as a cluster prints it (server-side tables), with what the controllers
    // made and recorded.
    let (ok, out, err) = kubectl(&h, &["get", "deploy,rs,pods", "-n", "kubectl"], None).await;
    assert!(ok, "{err}");
    assert!(out.contains("UP-TO-DATE") && out.contains("2/2"), "{out}");
    assert_eq!(out.matches("Running").count(), 2, "{out}");
    let (ok, out, err) = kubectl(&h, &["describe", "deploy", &name, "-n", "kubectl"], None).await;
    assert!(ok && out.contains("ScalingReplicaSet"), "{out}{err}");

    // Client-side apply: a create, then a strategic merge patch; diff before and after.
    let notes = |value: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n  namespace: kubectl\ndata:\n  owner: {value}\n")
    };
    let (ok, out, err) = kubectl(&h, &["diff", "-f", "-"], Some(&notes("ops"))).await;
    assert!(
        !ok && out.contains("+  owner: ops"),
        "diff of a new object: {out}{err}"
    );
    let (ok, out, err) = kubectl(&h, &["apply", "-f", "-"], Some(&notes("ops"))).await;
    assert!(ok && out.contains("configmap/notes created"), "{out}{err}");
    let (ok, out, err) = kubectl(&h, &["diff", "-f", "-"], Some(&notes("ops"))).await;
    assert!(ok && out.is_empty(), "nothing to diff: {out}{err}");
    let (ok, out, err) = kubectl(&h, &["diff", "-f", "-"], Some(&notes("web"))).await;
    assert!(
        !ok && out.contains("-  owner: ops") && out.contains("+  owner: web"),
        "{out}{err}"
    );
    assert!(
        !out.contains("resourceVersion"),
        "a dry run changes no resourceVersion: {out}"
    );
    let (ok, out, err) = kubectl(&h, &["apply", "-f", "-"], Some(&notes("web"))).await;
    assert!(
        ok && out.contains("configmap/notes configured"),
        "{out}{err}"
    );
    let stored = h.fake.object("", "configmaps", "kubectl", "notes").unwrap();
    assert_eq!(stored["data"], json!({"owner": "web"}));

    // kubectl leaves validation to the server, which refuses an unknown field.
    let typo = format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: kubectl\nspec:\n  replicass: 3\n");
    let (ok, out, err) = kubectl(&h, &["apply", "-f", "-"], Some(&typo)).await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("strict decoding error: unknown field \"spec.replicass\""),
        "{err}"
    );
    let (ok, _, err) = kubectl(
        &h,
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "ops",
            "-f",
            "-",
        ],
        Some(&typo),
    )
    .await;
    assert!(
        !ok && err.contains(".spec.replicass: field not declared in schema"),
        "{err}"
    );
    let (ok, _, err) = kubectl(
        &h,
        &[
            "patch",
            "cm",
            "notes",
            "-n",
            "kubectl",
            "--type",
            "json",
            "-p",
            r#"[{"op":"remove","path":"/data/owner"}]"#,
        ],
        None,
    )
    .await;
    assert!(
        !ok && err.contains("the fake serves no JSON patch"),
        "{err}"
    );

    // A watch sees the rollout of the next apply.
    let mut watch = kubectl_command(&h)
        .args(["get", "deploy", &name, "-n", "kubectl", "--watch", "-o"])
        .arg("jsonpath={.metadata.generation}/{.status.observedGeneration}/{.status.updatedReplicas}{\"\\n\"}")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap());
    let mut seen = Vec::new();
    let mut read_until = async |want: &str, seen: &mut Vec<String>| {
        use tokio::io::AsyncBufReadExt;
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(TIMEOUT, lines.read_line(&mut line))
                .await
                .unwrap_or_else(|_| panic!("the watch never showed {want}: {seen:?}"))
                .unwrap();
            assert!(n > 0, "the watch ended before {want}: {seen:?}");
            seen.push(line.trim().to_owned());
            if line.trim() == want {
                return;
            }
        }
    };
    read_until("1/1/2", &mut seen).await;
    h.runtime
        .apply_application(
            application(&env, &name, "nginx:2", 2),
            change("c2"),
            TIMEOUT,
        )
        .await
        .unwrap();
    read_until("2/2/2", &mut seen).await;
    watch.kill().await.unwrap();
}

/// By default the namespaces enforce the `restricted` Pod Security Standard and the
/// pods meet it, so the fake's admission (the standard's checks) lets them run; a lower
/// level labels the namespace so and drops what that level does not need.
#[tokio::test]
async fn pods_pass_the_restricted_pod_security_standard_by_default() {
    let h = harness().await;
    let env = environment("pss");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let ns = h.fake.object("", "namespaces", "", "pss").unwrap();
    for mode in ["enforce", "warn", "audit"] {
        assert_eq!(
            labels(&ns)
                .get(&format!("pod-security.kubernetes.io/{mode}"))
                .map(String::as_str),
            Some("restricted"),
            "{ns}"
        );
    }
    h.runtime
        .apply_application(
            application(&env, "web", "nginx:1", 2),
            change("c1"),
            TIMEOUT,
        )
        .await
        .unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(h.client.clone(), "pss");
    let list = pods.list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    for pod in &list.items {
        let status = pod.status.clone().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let spec = pod.spec.clone().unwrap();
        let sc = spec.security_context.unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        let c = spec.containers[0].security_context.clone().unwrap();
        assert_eq!(c.allow_privilege_escalation, Some(false));
    }

    // Baseline: for images that must run as root.
    let baseline = runtime_at(&h, PodSecurity::Baseline);
    let env = environment("rooted");
    baseline
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let ns = h.fake.object("", "namespaces", "", "rooted").unwrap();
    assert_eq!(
        labels(&ns)
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("baseline")
    );
    baseline
        .apply_application(
            application(&env, "db", "postgres:16", 1),
            change("c1"),
            TIMEOUT,
        )
        .await
        .unwrap();
    let d = h
        .fake
        .object("apps", "deployments", "rooted", "db")
        .unwrap();
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"],
        json!({"seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert!(
        pod["containers"][0].get("securityContext").is_none(),
        "{pod}"
    );
}

/// `spec` with `image`, applied by `runtime` with a timeout of an hour, which must fail
/// with `cause` rather than a timeout: the message.
async fn stuck_apply(
    runtime: &KubernetesRuntime,
    spec: &ApplicationSpec,
    image: &str,
    sha: &str,
    cause: RolloutCause,
) -> String {
    let mut next = spec.clone();
    next.image = Some(image.into());
    match runtime
        .apply_application(next, change(sha), Duration::from_secs(3600))
        .await
    {
        Err(RuntimeError::RolloutFailed {
            message: m,
            cause: c,
        }) => {
            assert_eq!(c, cause, "{m}");
            assert!(!m.contains("did not finish within"), "{m}");
            m
        }
        other => panic!("{other:?}"),
    }
}

/// A second runtime on the harness's cluster, at another Pod Security level.
fn runtime_at(h: &Harness, level: PodSecurity) -> KubernetesRuntime {
    KubernetesRuntime::from_kubeconfig(Some(&h._dir.path().join("kubeconfig")), None)
        .unwrap()
        .with_pod_security(level)
}

/// A rollout that cannot finish fails as soon as the cluster shows why, naming the
/// cause, instead of waiting out the (here generous) timeout: an image that cannot be
/// pulled, a container that crash-loops, and pods that the namespace's Pod Security
/// admission refuses (the ReplicaSet's `FailedCreate`, with the admission's message).
#[tokio::test]
async fn a_stuck_rollout_fails_at_once_naming_its_cause() {
    let h = harness().await;
    let env = environment("stuck");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let v1 = application(&env, "web", "web:1", 2);
    h.runtime
        .apply_application(v1.clone(), change("c1"), TIMEOUT)
        .await
        .unwrap();
    h.fake.make_image_unpullable("web:typo");
    let m = stuck_apply(&h.runtime, &v1, "web:typo", "c2", RolloutCause::Image).await;
    assert!(
        m.contains("ImagePullBackOff") && m.contains("web:typo"),
        "{m}"
    );
    assert!(m.contains("stuck/web"), "{m}");
    // The old replicas keep serving.
    let d = h
        .fake
        .object("apps", "deployments", "stuck", "web")
        .unwrap();
    assert_eq!(d["status"]["availableReplicas"], json!(2));

    h.fake
        .set_rollout_mode("stuck", "web", RolloutMode::CrashLoop);
    let m = stuck_apply(&h.runtime, &v1, "web:3", "c3", RolloutCause::Program).await;
    assert!(
        m.contains("CrashLoopBackOff") && m.contains("--previous"),
        "{m}"
    );
    h.fake.set_rollout_mode("stuck", "web", RolloutMode::Normal);

    // The namespace enforces `restricted`; a runtime set to `baseline` writes pods that
    // run as the image's user, which admission refuses.
    let baseline = runtime_at(&h, PodSecurity::Baseline);
    let m = stuck_apply(&baseline, &v1, "web:4", "c4", RolloutCause::Admission).await;
    assert!(m.contains("FailedCreate"), "{m}");
    assert!(
        m.contains("violates PodSecurity \"restricted:latest\"")
            && m.contains("runAsNonRoot != true"),
        "{m}"
    );
    assert!(m.contains("pod_security"), "{m}");
    let app = h.runtime.get_application(&v1.id).await.unwrap().unwrap();
    assert_eq!(app.phase, Phase::Failed);

    // What a cluster records, for `kubectl describe`.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(h.client.clone(), "stuck");
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for reason in [
        "FailedCreate",
        "SuccessfulCreate",
        "ScalingReplicaSet",
        "BackOff",
    ] {
        assert!(reasons.iter().any(|r| r == reason), "{reason}: {reasons:?}");
    }

    // Fixed, it rolls out.
    h.runtime
        .apply_application(application(&env, "web", "web:5", 2), change("c5"), TIMEOUT)
        .await
        .unwrap();
}

/// Under the default `restricted` level, an image that runs as root cannot start: the
/// apply fails at once and says how to run it (`pod_security = "baseline"`), which
/// then works.
#[tokio::test]
async fn a_root_image_fails_under_restricted_and_runs_under_baseline() {
    let h = harness().await;
    h.fake.make_image_root("postgres:16");
    let env = environment("data");
    h.runtime
        .apply_environment(env.clone(), change("c1"))
        .await
        .unwrap();
    let db = application(&env, "db", "postgres:16", 1);
    let m = stuck_apply(
        &h.runtime,
        &db,
        "postgres:16",
        "c1",
        RolloutCause::Admission,
    )
    .await;
    assert!(m.contains("CreateContainerConfigError"), "{m}");
    assert!(
        m.contains("runs as root") && m.contains("\"baseline\""),
        "{m}"
    );

    let baseline = runtime_at(&h, PodSecurity::Baseline);
    baseline
        .apply_environment(env.clone(), change("c2"))
        .await
        .unwrap();
    let app = baseline
        .apply_application(db, change("c2"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(app.phase, Phase::Running);
}
