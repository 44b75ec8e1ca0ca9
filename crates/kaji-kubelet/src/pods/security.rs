//! Pod and container security contexts as CRI settings, as upstream's
//! determineEffectiveSecurityContext (pkg/kubelet/kuberuntime/security_context.go) and
//! verifyRunAsNonRoot (security_context_others.go): the container's fields override the pod's,
//! supplemental groups carry fsGroup, procMount Default masks upstream's default paths, and a
//! `runAsNonRoot` container refuses to start as root.

use crate::cri::api;
use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, SeccompProfile, SecurityContext,
};

/// upstream securitycontext.defaultMaskedPaths.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// upstream securitycontext.defaultReadonlyPaths.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn pod_sc(pod: &Pod) -> PodSecurityContext {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default()
}

/// The CRI seccomp profile of a pod-level or container-level `seccompProfile` (none: the
/// runtime runs the container unconfined, as upstream with the kubelet's seccompDefault off).
fn seccomp(p: Option<&SeccompProfile>) -> Option<api::SecurityProfile> {
    let p = p?;
    let t = match p.type_.as_str() {
        "RuntimeDefault" => api::security_profile::ProfileType::RuntimeDefault,
        "Localhost" => api::security_profile::ProfileType::Localhost,
        _ => api::security_profile::ProfileType::Unconfined,
    };
    Some(api::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: p.localhost_profile.clone().unwrap_or_default(),
    })
}

/// Supplemental groups: the pod's, then fsGroup (upstream's order).
fn supplemental_groups(psc: &PodSecurityContext) -> Vec<i64> {
    let mut groups = psc.supplemental_groups.clone().unwrap_or_default();
    if let Some(g) = psc.fs_group
        && !groups.contains(&g)
    {
        groups.push(g);
    }
    groups
}

/// Whether any container of the pod (init containers included) is privileged.
fn has_privileged(pod: &Pod) -> bool {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .any(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false)
        })
}

/// The sandbox's security context (upstream determinePodSandboxSecurityContext).
pub fn sandbox(pod: &Pod, namespaces: api::NamespaceOption) -> api::LinuxSandboxSecurityContext {
    let psc = pod_sc(pod);
    api::LinuxSandboxSecurityContext {
        namespace_options: Some(namespaces),
        run_as_user: psc.run_as_user.map(|value| api::Int64Value { value }),
        run_as_group: psc.run_as_group.map(|value| api::Int64Value { value }),
        supplemental_groups: supplemental_groups(&psc),
        privileged: has_privileged(pod),
        seccomp: seccomp(psc.seccomp_profile.as_ref()),
        ..Default::default()
    }
}

/// The pod's sysctls for the sandbox.
pub fn sysctls(pod: &Pod) -> std::collections::HashMap<String, String> {
    pod_sc(pod)
        .sysctls
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect()
}

/// The container's effective security context: its own fields over the pod's.
pub fn effective(pod: &Pod, c: &Container) -> SecurityContext {
    let psc = pod_sc(pod);
    let mut sc = c.security_context.clone().unwrap_or_default();
    sc.run_as_user = sc.run_as_user.or(psc.run_as_user);
    sc.run_as_group = sc.run_as_group.or(psc.run_as_group);
    sc.run_as_non_root = sc.run_as_non_root.or(psc.run_as_non_root);
    sc.seccomp_profile = sc.seccomp_profile.or(psc.seccomp_profile);
    sc.se_linux_options = sc.se_linux_options.or(psc.se_linux_options);
    sc
}

/// The container's CRI security context.
pub fn container(
    pod: &Pod,
    c: &Container,
    namespaces: api::NamespaceOption,
) -> api::LinuxContainerSecurityContext {
    let sc = effective(pod, c);
    let privileged = sc.privileged == Some(true);
    let capabilities = sc.capabilities.as_ref().map(|caps| api::Capability {
        add_capabilities: caps.add.clone().unwrap_or_default(),
        drop_capabilities: caps.drop.clone().unwrap_or_default(),
        ..Default::default()
    });
    // procMount Unmasked (and privileged containers) get no masked or read-only /proc paths.
    let unmasked = privileged || sc.proc_mount.as_deref() == Some("Unmasked");
    let paths = |p: &[&str]| {
        if unmasked {
            Vec::new()
        } else {
            p.iter().map(|s| (*s).to_string()).collect()
        }
    };
    api::LinuxContainerSecurityContext {
        capabilities,
        privileged,
        namespace_options: Some(namespaces),
        run_as_user: sc.run_as_user.map(|value| api::Int64Value { value }),
        run_as_group: sc.run_as_group.map(|value| api::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem == Some(true),
        supplemental_groups: supplemental_groups(&pod_sc(pod)),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: paths(MASKED_PATHS),
        readonly_paths: paths(READONLY_PATHS),
        seccomp: seccomp(sc.seccomp_profile.as_ref()),
        ..Default::default()
    }
}

/// upstream format.Pod: `name_namespace(uid)`.
fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default()
    )
}

/// upstream verifyRunAsNonRoot: with runAsNonRoot, the container must not run as uid 0, either
/// by its runAsUser or by the image's user (`image_uid`/`image_user` from the image status; an
/// image with neither runs as root).
pub fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    image_uid: Option<i64>,
    image_user: &str,
) -> Result<(), String> {
    let sc = effective(pod, c);
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    let who = pod_ref(pod);
    if let Some(uid) = sc.run_as_user {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {who:?}, container: {})",
                c.name
            ));
        }
        return Ok(());
    }
    match image_uid {
        Some(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {who:?}, container: {})",
            c.name
        )),
        Some(_) => Ok(()),
        None if !image_user.is_empty() => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({image_user}), cannot verify user is non-root (pod: {who:?}, container: {})",
            c.name
        )),
        None => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {who:?}, container: {})",
            c.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn container_fields_override_the_pods() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000,
                    "supplementalGroups": [4000], "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}]},
                "containers": [{"name": "c", "securityContext": {"runAsUser": 1001,
                    "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"}}}]
            }
        }));
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        let sc = container(&p, &c, api::NamespaceOption::default());
        assert_eq!(sc.run_as_user.map(|v| v.value), Some(1001));
        assert_eq!(sc.run_as_group.map(|v| v.value), Some(3000));
        assert_eq!(sc.supplemental_groups, vec![4000, 2000]);
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        assert_eq!(sc.masked_paths.len(), MASKED_PATHS.len());
        assert_eq!(
            sc.capabilities.unwrap().drop_capabilities,
            vec!["ALL".to_string()]
        );
        assert_eq!(
            sc.seccomp.map(|s| s.profile_type),
            Some(api::security_profile::ProfileType::RuntimeDefault as i32)
        );
        let sb = sandbox(&p, api::NamespaceOption::default());
        assert_eq!(sb.run_as_user.map(|v| v.value), Some(1000));
        assert_eq!(sysctls(&p).len(), 1);
    }

    #[test]
    fn run_as_non_root() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c"}]}
        }));
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        assert_eq!(
            verify_run_as_non_root(&p, &c, Some(0), "").unwrap_err(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u)\", container: c)"
        );
        assert!(verify_run_as_non_root(&p, &c, None, "").is_err());
        assert!(verify_run_as_non_root(&p, &c, Some(1000), "").is_ok());
        assert!(
            verify_run_as_non_root(&p, &c, None, "nobody")
                .unwrap_err()
                .contains("non-numeric user (nobody)")
        );
    }
}
