//! Pod Security Standards: the level the runtime's namespaces enforce, and pods that
//! pass it.
//!
//! By default every environment's Namespace enforces `restricted` (labels
//! `pod-security.kubernetes.io/enforce`, `warn` and `audit`), and every pod sets what
//! `restricted` asks for: `runAsNonRoot`, `allowPrivilegeEscalation: false`, all
//! capabilities dropped and the runtime's default seccomp profile. Images that must run
//! as root need a lower level, chosen with the provider's `pod_security` setting:
//! `baseline` keeps the seccomp profile and lets the image's user and capabilities
//! stand; `privileged` sets nothing. A level is one setting for the namespace and the
//! pods together, so that Slipway never writes a pod its own namespace refuses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Namespace, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};

/// The `pod-security.kubernetes.io/*` labels' prefix.
pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// A Pod Security Standard level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodSecurity {
    #[default]
    Restricted,
    Baseline,
    Privileged,
}

/// The values the provider's `pod_security` setting takes.
pub const LEVELS: [&str; 3] = ["restricted", "baseline", "privileged"];

impl PodSecurity {
    pub fn parse(s: &str) -> Option<PodSecurity> {
        match s {
            "restricted" => Some(PodSecurity::Restricted),
            "baseline" => Some(PodSecurity::Baseline),
            "privileged" => Some(PodSecurity::Privileged),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurity::Restricted => "restricted",
            PodSecurity::Baseline => "baseline",
            PodSecurity::Privileged => "privileged",
        }
    }

    /// The Namespace labels: enforce, warn and audit at this level, for the latest
    /// version of the standard.
    pub fn namespace_labels(self) -> BTreeMap<String, String> {
        let level = self.as_str().to_owned();
        BTreeMap::from([
            (format!("{LABEL_PREFIX}enforce"), level.clone()),
            (
                format!("{LABEL_PREFIX}enforce-version"),
                "latest".to_owned(),
            ),
            (format!("{LABEL_PREFIX}warn"), level.clone()),
            (format!("{LABEL_PREFIX}audit"), level),
        ])
    }

    /// Labels `namespace` for this level.
    pub fn label(self, namespace: &mut Namespace) {
        namespace
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(self.namespace_labels());
    }

    /// Sets the pod's and its containers' security contexts for this level.
    pub fn secure(self, pod: &mut PodSpec) {
        let runtime_default = || {
            Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            })
        };
        match self {
            PodSecurity::Privileged => {}
            PodSecurity::Baseline => {
                pod.security_context = Some(PodSecurityContext {
                    seccomp_profile: runtime_default(),
                    ..PodSecurityContext::default()
                });
            }
            PodSecurity::Restricted => {
                pod.security_context = Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    seccomp_profile: runtime_default(),
                    ..PodSecurityContext::default()
                });
                for container in &mut pod.containers {
                    container.security_context = Some(SecurityContext {
                        allow_privilege_escalation: Some(false),
                        capabilities: Some(Capabilities {
                            drop: Some(vec!["ALL".to_owned()]),
                            ..Capabilities::default()
                        }),
                        ..SecurityContext::default()
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    fn pod() -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some("nginx".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }
    }

    #[test]
    fn restricted_pods_set_every_control_the_standard_checks() {
        let mut p = pod();
        PodSecurity::default().secure(&mut p);
        let sc = p.security_context.unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = p.containers[0].security_context.clone().unwrap();
        assert_eq!(c.allow_privilege_escalation, Some(false));
        assert_eq!(c.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
    }

    #[test]
    fn lower_levels_set_less_and_label_the_namespace_alike() {
        let mut p = pod();
        PodSecurity::Baseline.secure(&mut p);
        assert!(p.containers[0].security_context.is_none());
        assert!(p.security_context.unwrap().run_as_non_root.is_none());
        let mut p = pod();
        PodSecurity::Privileged.secure(&mut p);
        assert!(p.security_context.is_none());
        let labels = PodSecurity::Baseline.namespace_labels();
        assert_eq!(
            labels
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some("baseline")
        );
        assert_eq!(labels.len(), 4);
        for level in LEVELS {
            assert_eq!(PodSecurity::parse(level).unwrap().as_str(), level);
        }
        assert!(PodSecurity::parse("Restricted").is_none());
    }
}
