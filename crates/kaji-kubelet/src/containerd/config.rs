//! The files a managed containerd runs from: its `config.toml` and the CNI conflist. Pure text
//! generation; modelled on k3s's template
//! (<https://github.com/k3s-io/k3s/blob/master/pkg/agent/templates/templates_linux.go>), with the
//! settings ../shared/NOTES-RUNTIME.md found necessary on a machine without systemd.

use super::{Layout, toml_str};
use crate::images::PAUSE_IMAGE;
use serde_json::json;

/// containerd's `config.toml` (version 2 schema, containerd 1.6+).
pub fn config_toml(
    layout: &Layout,
    cni_bin_dir: &str,
    stream_port: u16,
    registry_auth: &str,
) -> String {
    let s = |p: &std::path::Path| toml_str(&p.to_string_lossy());
    format!(
        r#"# Written by Kaji at every start; edits are overwritten.
version = 2
root = {root}
state = {state}
# Kaji runs containerd as its child: it must not raise its own OOM score.
oom_score = 0
# Snapshotters that cannot work here only add noise to the log.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "{stream_port}"
  enable_selinux = false
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  sandbox_image = {pause}
  # Without CAP_SYS_RESOURCE runc cannot lower oom_score_adj; every sandbox would fail.
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  disable_snapshot_annotations = true
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  # cgroupfs: the systemd cgroup driver needs systemd as PID 1.
  SystemdCgroup = false
  # runc's state beside ours rather than the shared /run/containerd/runc.
  Root = {runc_root}

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = {cni_bin}
  conf_dir = {cni_conf}

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = {certs_d}
{registry_auth}"#,
        root = s(&layout.root),
        state = s(&layout.state),
        socket = s(&layout.socket),
        ttrpc = toml_str(&format!("{}.ttrpc", layout.socket.display())),
        opt = s(&layout.opt),
        pause = toml_str(PAUSE_IMAGE),
        runc_root = s(&layout.runc_root),
        cni_bin = toml_str(cni_bin_dir),
        cni_conf = s(&layout.cni_conf_dir),
        certs_d = s(&layout.certs_d),
    )
}

/// The pod network: a bridge with host-local IPAM on the node's pod CIDR, and portmap for
/// hostPort. IPAM state lives under the state dir so that cleanup knows this instance's pods.
/// `ip_masq` false leaves masquerading to the node's pod network (pod IPs kept across nodes);
/// `mtu` is the pods' MTU (below the underlay's when a VXLAN overlay carries them).
pub fn cni_conflist(
    layout: &Layout,
    network_name: &str,
    bridge_name: &str,
    pod_cidr: &str,
    ip_masq: bool,
    mtu: Option<u32>,
) -> String {
    let mut conf = json!({
        "cniVersion": "1.0.0",
        "name": network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge_name,
                "isGateway": true,
                "ipMasq": ip_masq,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": layout.cni_ipam_dir.to_string_lossy(),
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    if let Some(mtu) = mtu {
        conf["plugins"][0]["mtu"] = json!(mtu);
    }
    serde_json::to_string_pretty(&conf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn config_names_our_paths_and_required_settings() {
        let layout = Layout::new(Path::new("/d/c"));
        let text = config_toml(&layout, "/usr/lib/cni", 40123, "");
        for want in [
            "root = \"/d/c/root\"",
            "address = \"/d/c/containerd.sock\"",
            "restrict_oom_score_adj = true",
            "SystemdCgroup = false",
            "snapshotter = \"overlayfs\"",
            "stream_server_port = \"40123\"",
            "sandbox_image = \"kaji.io/pause:3.10\"",
            "config_path = \"/d/c/certs.d\"",
            "path = \"/d/c/opt\"",
            "conf_dir = \"/d/c/cni/conf\"",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }

    #[test]
    fn conflist_is_a_bridge_on_the_pod_cidr() {
        let layout = Layout::new(Path::new("/d/c"));
        let v: serde_json::Value = serde_json::from_str(&cni_conflist(
            &layout,
            "kaji",
            "kaji0",
            "10.42.0.0/24",
            true,
            None,
        ))
        .unwrap();
        assert_eq!(v["plugins"][0]["bridge"], "kaji0");
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.42.0.0/24"
        );
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/d/c/cni/networks");
        assert_eq!(v["plugins"][1]["type"], "portmap");
    }

    #[test]
    fn conflist_over_an_overlay_keeps_pod_ips_and_lowers_the_mtu() {
        let layout = Layout::new(Path::new("/d/c"));
        let v: serde_json::Value = serde_json::from_str(&cni_conflist(
            &layout,
            "kaji",
            "kaji0",
            "10.42.0.0/24",
            false,
            Some(1450),
        ))
        .unwrap();
        assert_eq!(v["plugins"][0]["ipMasq"], false);
        assert_eq!(v["plugins"][0]["mtu"], 1450);
    }
}
