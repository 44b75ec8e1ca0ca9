//! CRI configurations from a pod spec, as upstream's kuberuntime_sandbox.go and
//! kuberuntime_container.go generate them: labels that find the pod again after a restart,
//! DNS, log paths, port mappings, cgroup parent, mounts, environment and resources.

use super::Shared;
use crate::cri::{self, api};
use crate::resources::{linux_resources, qos_class};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The cgroup parent of a pod, as the kubelet's cgroupfs driver names it.
pub fn cgroup_parent(pod: &Pod) -> String {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    match qos_class(pod) {
        "Guaranteed" => format!("/kubepods/pod{uid}"),
        "Burstable" => format!("/kubepods/burstable/pod{uid}"),
        _ => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// Removes a pod's (empty) cgroup directories, which the runtime leaves behind. A cgroup whose
/// last task just exited can refuse removal for a moment, so this tries again for about a
/// second; rmdir never removes a cgroup that still has tasks.
pub async fn remove_pod_cgroups(pod_cgroup: &str) {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let rel = pod_cgroup.trim_start_matches('/');
    let mut dirs: Vec<PathBuf> = vec![Path::new("/sys/fs/cgroup").join(rel)];
    for e in rd.flatten() {
        dirs.push(e.path().join(rel));
    }
    dirs.retain(|d| d.is_dir());
    for _ in 0..20 {
        dirs.retain(|d| {
            // Children first (containers' leftover cgroups), then the pod's.
            if let Ok(rd) = std::fs::read_dir(d) {
                for c in rd.flatten() {
                    if c.path().is_dir() {
                        let _ = std::fs::remove_dir(c.path());
                    }
                }
            }
            std::fs::remove_dir(d).is_err() && d.exists()
        });
        if dirs.is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tracing::warn!(cgroups = ?dirs, "pod cgroups left behind");
}

pub fn sandbox_config(shared: &Shared, pod: &Pod, attempt: u32) -> api::PodSandboxConfig {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let name = meta.name.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = meta
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert(cri::POD_NAME_LABEL.into(), name.clone());
    labels.insert(cri::POD_NAMESPACE_LABEL.into(), ns.clone());
    labels.insert(cri::POD_UID_LABEL.into(), uid.clone());
    let annotations: HashMap<String, String> = meta
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let host_network = spec.host_network == Some(true);
    let mut hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
    hostname.truncate(63);
    let dns_config = dns_config(
        shared,
        &ns,
        spec.dns_policy.as_deref(),
        host_network,
        spec.dns_config.as_ref(),
    );
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| api::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => api::Protocol::Udp as i32,
                Some("SCTP") => api::Protocol::Sctp as i32,
                _ => api::Protocol::Tcp as i32,
            },
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name,
            uid: uid.clone(),
            namespace: ns.clone(),
            attempt,
        }),
        hostname: if host_network {
            String::new()
        } else {
            hostname
        },
        log_directory: shared
            .log_dir(&ns, meta.name.as_deref().unwrap_or_default(), &uid)
            .to_string_lossy()
            .into_owned(),
        dns_config: Some(dns_config),
        port_mappings,
        labels,
        annotations,
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(pod),
            security_context: Some(super::security::sandbox(pod, namespace_options(&spec))),
            sysctls: super::security::sysctls(pod),
            ..Default::default()
        }),
        windows: None,
    }
}

/// The namespaces of the pod's sandbox and containers (upstream's namespacesForPod): the node's
/// network and IPC with hostNetwork/hostIPC, else the pod's; the node's PID namespace with
/// hostPID, the pod's with shareProcessNamespace, else each container its own.
fn namespace_options(spec: &PodSpec) -> api::NamespaceOption {
    let mode = |host: Option<bool>| {
        if host == Some(true) {
            api::NamespaceMode::Node as i32
        } else {
            api::NamespaceMode::Pod as i32
        }
    };
    api::NamespaceOption {
        network: mode(spec.host_network),
        pid: if spec.host_pid == Some(true) {
            api::NamespaceMode::Node as i32
        } else if spec.share_process_namespace == Some(true) {
            api::NamespaceMode::Pod as i32
        } else {
            api::NamespaceMode::Container as i32
        },
        ipc: mode(spec.host_ipc),
        ..Default::default()
    }
}

/// Pod DNS, as upstream's dnsConfigurer: ClusterFirst points at the cluster DNS service with
/// the namespace's search path and ndots:5; Default (and host network with ClusterFirst) uses
/// the node's resolv.conf; None uses only `dnsConfig`.
fn dns_config(
    shared: &Shared,
    ns: &str,
    policy: Option<&str>,
    host_network: bool,
    extra: Option<&k8s_openapi::api::core::v1::PodDNSConfig>,
) -> api::DnsConfig {
    let d = &shared.cluster_domain;
    let mut cfg = match policy.unwrap_or("ClusterFirst") {
        "ClusterFirst" if !host_network => api::DnsConfig {
            servers: vec![shared.cluster_dns.clone()],
            searches: vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()],
            options: vec!["ndots:5".into()],
        },
        "ClusterFirstWithHostNet" => api::DnsConfig {
            servers: vec![shared.cluster_dns.clone()],
            searches: vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()],
            options: vec!["ndots:5".into()],
        },
        "None" => api::DnsConfig::default(),
        _ => host_resolv_conf(),
    };
    if let Some(extra) = extra {
        cfg.servers
            .extend(extra.nameservers.clone().unwrap_or_default());
        cfg.searches
            .extend(extra.searches.clone().unwrap_or_default());
        for o in extra.options.clone().unwrap_or_default() {
            let opt = match o.value {
                Some(v) => format!("{}:{v}", o.name.unwrap_or_default()),
                None => o.name.unwrap_or_default(),
            };
            cfg.options
                .retain(|x| x.split(':').next() != opt.split(':').next());
            cfg.options.push(opt);
        }
    }
    cfg
}

fn host_resolv_conf() -> api::DnsConfig {
    let mut cfg = api::DnsConfig::default();
    for line in std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
    {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("nameserver") => cfg.servers.extend(parts.next().map(str::to_string)),
            Some("search") => cfg.searches = parts.map(str::to_string).collect(),
            Some("options") => cfg.options = parts.map(str::to_string).collect(),
            _ => {}
        }
    }
    cfg
}

/// The kubelet-managed /etc/hosts of a pod (upstream's managedHostsFileContent): the
/// localhost lines, the pod's IP with its hostname (and the FQDN
/// `<hostname>.<subdomain>.<namespace>.svc.<cluster domain>` when the pod has a subdomain), then
/// the pod's hostAliases under one header. A host-network pod gets the node's /etc/hosts under
/// upstream's host-network header, plus its hostAliases.
pub fn hosts_file(pod: &Pod, pod_ip: &str, cluster_domain: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut name = spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    // upstream truncatePodHostnameIfNeeded: 63 characters, without a trailing '-' or '.'.
    if name.len() > 63 {
        name.truncate(63);
        while name.ends_with(['-', '.']) {
            name.pop();
        }
    }
    let aliases = spec.host_aliases.clone().unwrap_or_default();
    if spec.host_network == Some(true) {
        // A host-network pod sees the node's hosts file, under its own header, plus its aliases.
        let node = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        return format!(
            "# Kubernetes-managed hosts file (host network).\n{node}{}",
            host_aliases(&aliases)
        );
    }
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if !pod_ip.is_empty() {
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                s.push_str(&format!(
                    "{pod_ip}\t{name}.{sub}.{ns}.svc.{cluster_domain}\t{name}\n"
                ));
            }
            None => s.push_str(&format!("{pod_ip}\t{name}\n")),
        }
    }
    s.push_str(&host_aliases(&aliases));
    s
}

/// upstream hostsEntriesFromHostAliases: one line per alias IP under one header.
fn host_aliases(aliases: &[k8s_openapi::api::core::v1::HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n# Entries added by HostAliases.\n");
    for ha in aliases {
        s.push_str(&format!(
            "{}\t{}\n",
            ha.ip,
            ha.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    s
}

/// Everything a container config needs beyond the spec.
pub struct ContainerInputs<'a> {
    pub image_ref: &'a str,
    pub env: Vec<(String, String)>,
    pub volumes: &'a HashMap<String, PathBuf>,
    pub hosts_file: Option<&'a Path>,
    /// The file mounted at the container's terminationMessagePath.
    pub termination_log: Option<&'a Path>,
    pub attempt: u32,
}

/// The default terminationMessagePath (the API server defaults it too).
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Annotations that carry the termination message settings to the container's status, as
/// upstream's io.kubernetes.container.terminationMessage{Path,Policy}.
pub const TERMINATION_MESSAGE_PATH_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePolicy";

/// The container's terminationMessagePath (empty: none).
pub fn termination_message_path(c: &Container) -> String {
    c.termination_message_path
        .clone()
        .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.into())
}

/// The host path a volume mount's subPath (or subPathExpr, expanded with the container's
/// environment) resolves to, refused as upstream's makeMounts refuses it: an unset variable,
/// an absolute path, a `..` component, or a path that escapes the volume through a symlink.
/// The directory is created when missing.
pub fn sub_path(
    base: &Path,
    vm: &k8s_openapi::api::core::v1::VolumeMount,
    env: &[(String, String)],
) -> Result<Option<PathBuf>, String> {
    let mut sub = vm.sub_path.clone().unwrap_or_default();
    if let Some(expr) = vm.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
        let mut missing = std::collections::BTreeSet::new();
        let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let referenced = super::env::references(expr);
        for r in referenced {
            if vars.get(r.as_str()).is_none_or(|v| v.is_empty()) {
                missing.insert(r);
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "missing value for {}",
                missing.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        sub = super::env::expand(expr, env);
    }
    if sub.is_empty() {
        return Ok(None);
    }
    if sub.starts_with('/') {
        return Err(format!(
            "error SubPath `{sub}` must not be an absolute path"
        ));
    }
    if sub.split(['/', '\\']).any(|p| p == "..") {
        return Err(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        ));
    }
    let path = base.join(&sub);
    if std::fs::symlink_metadata(&path).is_err() {
        std::fs::create_dir_all(&path).map_err(|e| {
            format!(
                "failed to create subPath directory for volumeMount {:?} of container: {e}",
                vm.name
            )
        })?;
    }
    // A subPath must stay inside its volume (upstream's safe subpath mounts).
    if let (Ok(real), Ok(root)) = (path.canonicalize(), base.canonicalize())
        && !real.starts_with(&root)
    {
        return Err(format!(
            "failed to prepare subPath for volumeMount {:?} of container: subpath {:?} not within volume path {:?}",
            vm.name,
            real.display(),
            root.display()
        ));
    }
    Ok(Some(path))
}

/// Volumes that are always mounted read-only, as upstream does since CVE-2017-1002102:
/// configMap, secret, downwardAPI and projected; and claims or hostPaths the pod marks read-only.
fn read_only_volume(spec: &PodSpec, name: &str) -> bool {
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .is_some_and(|v| {
            v.config_map.is_some()
                || v.secret.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
                || v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.read_only == Some(true))
        })
}

pub fn container_config(
    pod: &Pod,
    c: &Container,
    inputs: ContainerInputs,
) -> Result<api::ContainerConfig, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let mut labels = HashMap::new();
    labels.insert(
        cri::POD_NAME_LABEL.to_string(),
        meta.name.clone().unwrap_or_default(),
    );
    labels.insert(
        cri::POD_NAMESPACE_LABEL.to_string(),
        meta.namespace.clone().unwrap_or_default(),
    );
    labels.insert(
        cri::POD_UID_LABEL.to_string(),
        meta.uid.clone().unwrap_or_default(),
    );
    labels.insert(cri::CONTAINER_NAME_LABEL.to_string(), c.name.clone());
    let mut annotations = HashMap::new();
    annotations.insert(
        cri::RESTART_COUNT_ANNOTATION.to_string(),
        inputs.attempt.to_string(),
    );
    annotations.insert(
        cri::CONTAINER_HASH_ANNOTATION.to_string(),
        container_hash(c),
    );
    let mut mounts = Vec::new();
    for vm in c.volume_mounts.clone().unwrap_or_default() {
        let Some(base) = inputs.volumes.get(&vm.name) else {
            return Err(format!(
                "cannot find volume \"{}\" to mount into container \"{}\"",
                vm.name, c.name
            ));
        };
        let host_path = sub_path(base, &vm, &inputs.env)?.unwrap_or_else(|| base.clone());
        mounts.push(api::Mount {
            container_path: vm.mount_path.clone(),
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: vm.read_only == Some(true) || read_only_volume(&spec, &vm.name),
            ..Default::default()
        });
    }
    let mounts_etc_hosts = mounts.iter().any(|m| m.container_path == "/etc/hosts");
    if let Some(h) = inputs.hosts_file
        && !mounts_etc_hosts
    {
        mounts.push(api::Mount {
            container_path: "/etc/hosts".into(),
            host_path: h.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    let tm_path = termination_message_path(c);
    if let Some(t) = inputs.termination_log
        && !tm_path.is_empty()
        && !mounts.iter().any(|m| m.container_path == tm_path)
    {
        mounts.push(api::Mount {
            container_path: tm_path.clone(),
            host_path: t.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    annotations.insert(TERMINATION_MESSAGE_PATH_ANNOTATION.to_string(), tm_path);
    annotations.insert(
        TERMINATION_MESSAGE_POLICY_ANNOTATION.to_string(),
        c.termination_message_policy
            .clone()
            .unwrap_or_else(|| "File".into()),
    );
    let expand = |v: &Vec<String>| {
        v.iter()
            .map(|s| super::env::expand(s, &inputs.env))
            .collect::<Vec<_>>()
    };
    Ok(api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: c.name.clone(),
            attempt: inputs.attempt,
        }),
        image: Some(api::ImageSpec {
            image: inputs.image_ref.to_string(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: expand(&c.command.clone().unwrap_or_default()),
        args: expand(&c.args.clone().unwrap_or_default()),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: inputs
            .env
            .iter()
            .map(|(k, v)| api::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", c.name, inputs.attempt),
        stdin: c.stdin == Some(true),
        stdin_once: c.stdin_once == Some(true),
        tty: c.tty == Some(true),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(linux_resources(c)),
            security_context: Some(super::security::container(pod, c, namespace_options(&spec))),
        }),
        ..Default::default()
    })
}

/// A hash of the container spec (upstream: io.kubernetes.container.hash), to notice changes.
pub fn container_hash(c: &Container) -> String {
    let bytes = serde_json::to_vec(c).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    d.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}
