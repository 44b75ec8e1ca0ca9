//! The pod network across nodes, flannel's job in k3s, built into the agent. Each node holds a
//! /24 of the cluster CIDR (node IPAM); this module makes the other nodes' /24s reachable:
//!
//! - `vxlan` (the default, as k3s): one VXLAN device per node (`kaji.vxlan`, VNI 1, UDP 8472,
//!   on the underlay interface, MTU = underlay MTU - 50) holding the .0 of the node's /24. The
//!   node publishes flannel's annotations (`backend-type`, `backend-data` with its `VtepMAC`,
//!   `public-ip`) on its Node; every node watches Nodes and programs, per other node, a route to
//!   its /24 via its .0 (onlink, on the VXLAN device), a permanent neighbour entry (.0 -> MAC)
//!   and an FDB entry (MAC -> public IP), as flannel's vxlan backend does.
//! - `host-gw`: a route to each other node's /24 via its public IP (nodes on one L2 segment).
//! - `none`: no cross-node network (the CNI bridge masquerades, as before).
//!
//! Pods keep their IP across nodes: the CNI bridge does not masquerade; an nftables table of
//! the node masquerades pod traffic leaving the pod network only ([`plan::masquerade_ruleset`]).
//! Start at [`setup`] (before containerd: it decides the pods' MTU) and [`Network::run`].

pub mod ip;
pub mod plan;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kaji_runtime::informer::Informer;
use kube::api::{Api, Patch, PatchParams};
use plan::Peer;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub const KUBE_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";
/// What VXLAN encapsulation costs (outer IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// How often the programmed entries are checked again without a Node change (a failed
/// command is retried then).
const RESYNC: Duration = Duration::from_secs(30);

/// `--flannel-backend` (k3s's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Vxlan,
    HostGw,
    None,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
            Backend::None => "none",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            "none" => Ok(Backend::None),
            other => Err(format!(
                "unsupported flannel backend {other:?} (vxlan, host-gw or none)"
            )),
        }
    }
}

/// The node's pod-network settings (flags of `kaji server` and `kaji agent`).
#[derive(Clone, Debug)]
pub struct FlannelOptions {
    pub backend: Backend,
    /// The underlay interface (`--flannel-iface`); default: the one holding the node IP.
    pub iface: Option<String>,
    /// The VXLAN device (at most 15 bytes).
    pub vxlan_device: String,
    pub vxlan_port: u16,
    pub vni: u32,
    /// The masquerade table (ip family).
    pub nft_table: String,
}

impl Default for FlannelOptions {
    fn default() -> Self {
        FlannelOptions {
            backend: Backend::Vxlan,
            iface: None,
            vxlan_device: "kaji.vxlan".into(),
            vxlan_port: 8472,
            vni: 1,
            nft_table: "kaji-flannel".into(),
        }
    }
}

/// The node's pod network once set up; [`Network::run`] keeps the peers programmed.
#[derive(Debug)]
pub struct Network {
    opts: FlannelOptions,
    node_name: String,
    pod_cidr: String,
    /// The underlay interface.
    iface: String,
    /// The MTU pods get (the CNI conflist's `mtu`).
    pub pod_mtu: u32,
}

/// Sets the node's side up: the VXLAN device (vxlan), flannel's annotations on the Node, the
/// masquerade table. None with `--flannel-backend none`.
pub async fn setup(
    client: &kube::Client,
    opts: &FlannelOptions,
    node_name: &str,
    node_ip: &str,
    pod_cidr: &str,
) -> Result<Option<Network>> {
    if opts.backend == Backend::None {
        return Ok(None);
    }
    if opts.vxlan_device.is_empty() || opts.vxlan_device.len() > 15 {
        bail!(
            "VXLAN device name {:?} is not a valid interface name (1-15 bytes)",
            opts.vxlan_device
        );
    }
    let public_ip: Ipv4Addr = node_ip
        .parse()
        .with_context(|| format!("the node IP {node_ip:?} is not an IPv4 address"))?;
    let (gateway, _) = plan::parse_cidr(pod_cidr)
        .with_context(|| format!("the podCIDR {pod_cidr:?} is not a CIDR"))?;
    let (iface, underlay_mtu) = match &opts.iface {
        Some(i) => (i.clone(), ip::mtu(i).await?),
        None => ip::link_with_address(public_ip).await?,
    };
    // Pods' packets are routed between the bridge and the overlay (the bridge plugin turns this
    // on only with the first pod).
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("enabling ip_forward")?;
    let (pod_mtu, data) = match opts.backend {
        Backend::Vxlan => {
            let mtu = underlay_mtu.saturating_sub(VXLAN_OVERHEAD);
            let mac = ip::ensure_vxlan(
                &opts.vxlan_device,
                opts.vni,
                opts.vxlan_port,
                &iface,
                public_ip,
                mtu,
                gateway,
            )
            .await?;
            ip::flush_routes(&opts.vxlan_device).await?;
            (
                mtu,
                serde_json::json!({"VNIs": opts.vni, "VtepMAC": mac}).to_string(),
            )
        }
        _ => {
            ip::flush_host_gw_routes(&iface).await?;
            (underlay_mtu, "null".to_string())
        }
    };
    let patch = serde_json::json!({"metadata": {"annotations": {
        BACKEND_TYPE: opts.backend.name(),
        BACKEND_DATA: data,
        PUBLIC_IP: public_ip.to_string(),
        KUBE_SUBNET_MANAGER: "true",
    }}});
    Api::<Node>::all(client.clone())
        .patch(node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("publishing the node's flannel annotations")?;
    ip::nft_apply(&plan::masquerade_ruleset(
        &opts.nft_table,
        pod_cidr,
        &[pod_cidr.to_string()],
    ))
    .await
    .context("loading the masquerade table")?;
    tracing::info!(backend = opts.backend.name(), %iface, %public_ip, pod_mtu, "pod network ready");
    Ok(Some(Network {
        opts: opts.clone(),
        node_name: node_name.to_string(),
        pod_cidr: pod_cidr.to_string(),
        iface,
        pod_mtu,
    }))
}

impl Network {
    /// Keeps the other nodes' entries in line with the Nodes (added, changed, deleted); never
    /// returns.
    pub async fn run(self, nodes: Arc<Informer<Node>>) -> Result<()> {
        let mut changes = Box::pin(nodes.subscribe());
        nodes.ready().await;
        let mut applied: BTreeMap<String, Peer> = BTreeMap::new();
        let mut applied_cidrs: Option<Vec<String>> = None;
        loop {
            let state = nodes.state();
            let desired = plan::peers(&state, &self.node_name, self.opts.backend);
            for (name, old) in applied.clone() {
                if desired.get(&name) != Some(&old) {
                    self.del_peer(&old).await;
                    applied.remove(&name);
                    tracing::info!(node = %name, pod_cidr = %old.pod_cidr, "pod network: peer removed");
                }
            }
            for (name, peer) in desired {
                if applied.get(&name) == Some(&peer) {
                    continue;
                }
                match self.add_peer(&peer).await {
                    Ok(()) => {
                        tracing::info!(node = %name, pod_cidr = %peer.pod_cidr, public_ip = %peer.public_ip, "pod network: peer programmed");
                        applied.insert(name, peer);
                    }
                    Err(e) => {
                        tracing::warn!(node = %name, error = %format!("{e:#}"), "pod network: programming a peer")
                    }
                }
            }
            let cidrs = plan::pod_cidrs(&state);
            if applied_cidrs.as_ref() != Some(&cidrs) {
                let rules = plan::masquerade_ruleset(&self.opts.nft_table, &self.pod_cidr, &cidrs);
                match ip::nft_apply(&rules).await {
                    Ok(()) => applied_cidrs = Some(cidrs),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "pod network: the masquerade table")
                    }
                }
            }
            tokio::select! {
                c = changes.next() => if c.is_none() {
                    // Only a dropped informer ends the stream; the entries stay as they are
                    // (the agent must not stop over it).
                    tracing::warn!("pod network: the Node informer ended; peers are no longer updated");
                    std::future::pending::<()>().await;
                },
                () = tokio::time::sleep(RESYNC) => {
                    // Entries someone removed by hand come back.
                    applied.clear();
                }
            }
            // A burst of changes (heartbeats of many nodes) makes one pass.
            while let Some(Some(_)) = futures::FutureExt::now_or_never(changes.next()) {}
        }
    }

    async fn add_peer(&self, peer: &Peer) -> Result<()> {
        match self.opts.backend {
            Backend::Vxlan => ip::add_vxlan_peer(&self.opts.vxlan_device, peer).await,
            _ => ip::add_host_gw_peer(&self.iface, peer).await,
        }
    }

    async fn del_peer(&self, peer: &Peer) {
        match self.opts.backend {
            Backend::Vxlan => ip::del_vxlan_peer(&self.opts.vxlan_device, peer).await,
            _ => ip::del_host_gw_peer(&self.iface, peer).await,
        }
    }
}
