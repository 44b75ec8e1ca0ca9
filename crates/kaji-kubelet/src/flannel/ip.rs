//! The kernel side, through iproute2 (`ip`, `bridge`) and `nft`: the VXLAN device, routes,
//! neighbour and FDB entries, and the masquerade table.

use super::plan::Peer;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Routes of the host-gw backend carry this protocol number, so that they can be told apart
/// from everyone else's (`ip route flush proto 75`).
pub const ROUTE_PROTO: &str = "75";

/// Runs `prog args` (with `input` on stdin); its stdout, or an error with its stderr.
pub async fn run(prog: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {prog}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn ip(args: &[&str]) -> Result<String> {
    run("ip", args, None).await
}

/// The link holding `addr` and its MTU.
pub async fn link_with_address(addr: Ipv4Addr) -> Result<(String, u32)> {
    let text = ip(&["-j", "-4", "addr", "show"]).await?;
    let links: Vec<Value> = serde_json::from_str(&text).context("parsing `ip -j addr`")?;
    let want = addr.to_string();
    links
        .iter()
        .find(|l| {
            l["addr_info"]
                .as_array()
                .is_some_and(|a| a.iter().any(|i| i["local"].as_str() == Some(&want)))
        })
        .and_then(|l| Some((l["ifname"].as_str()?.to_string(), l["mtu"].as_u64()? as u32)))
        .with_context(|| format!("no interface holds the node address {addr}"))
}

/// `ip -d link show <name>` as JSON; None when there is no such link.
pub async fn link(name: &str) -> Option<Value> {
    let text = ip(&["-j", "-d", "link", "show", "dev", name]).await.ok()?;
    let mut v: Vec<Value> = serde_json::from_str(&text).ok()?;
    (!v.is_empty()).then(|| v.swap_remove(0))
}

/// The MTU of an interface.
pub async fn mtu(name: &str) -> Result<u32> {
    link(name)
        .await
        .and_then(|l| l["mtu"].as_u64())
        .map(|m| m as u32)
        .with_context(|| format!("no interface {name}"))
}

/// Makes the VXLAN device `name` (VNI `vni`, UDP `port`, on `dev` from `local`, no learning: the
/// FDB is programmed) with `mtu`, up, holding `gateway/32`; keeps an existing one that matches
/// (its MAC, which the other nodes know, stays). Returns its MAC.
#[allow(clippy::too_many_arguments)]
pub async fn ensure_vxlan(
    name: &str,
    vni: u32,
    port: u16,
    dev: &str,
    local: Ipv4Addr,
    mtu: u32,
    gateway: Ipv4Addr,
) -> Result<String> {
    if let Some(l) = link(name).await {
        let d = &l["linkinfo"]["info_data"];
        let matches = l["linkinfo"]["info_kind"] == "vxlan"
            && d["id"].as_u64() == Some(u64::from(vni))
            && d["port"].as_u64() == Some(u64::from(port))
            && d["local"].as_str() == Some(&local.to_string())
            && d["link"].as_str() == Some(dev);
        if !matches {
            tracing::info!(device = name, "replacing a VXLAN device of other settings");
            ip(&["link", "del", "dev", name]).await?;
        }
    }
    if link(name).await.is_none() {
        let (vni, port, local) = (vni.to_string(), port.to_string(), local.to_string());
        ip(&[
            "link",
            "add",
            name,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "dev",
            dev,
            "dstport",
            &port,
            "nolearning",
        ])
        .await?;
    }
    ip(&["link", "set", "dev", name, "mtu", &mtu.to_string(), "up"]).await?;
    // The node's own gateway address only: a stale one (another podCIDR) goes.
    ip(&["addr", "flush", "dev", name]).await?;
    ip(&["addr", "add", &format!("{gateway}/32"), "dev", name]).await?;
    let mac = link(name)
        .await
        .and_then(|l| l["address"].as_str().map(str::to_string))
        .with_context(|| format!("reading the MAC of {name}"))?;
    Ok(mac)
}

/// Programs the way to `peer`'s pods through the VXLAN device: a route via its gateway (onlink),
/// the gateway's neighbour entry (its VTEP MAC) and the FDB entry (that MAC lives at its public IP).
pub async fn add_vxlan_peer(device: &str, peer: &Peer) -> Result<()> {
    let mac = peer
        .vtep_mac
        .as_deref()
        .context("a VXLAN peer without a VTEP MAC")?;
    let (gw, public) = (peer.gateway.to_string(), peer.public_ip.to_string());
    run(
        "bridge",
        &[
            "fdb",
            "replace",
            mac,
            "dev",
            device,
            "dst",
            &public,
            "self",
            "permanent",
        ],
        None,
    )
    .await?;
    ip(&[
        "neigh",
        "replace",
        &gw,
        "lladdr",
        mac,
        "dev",
        device,
        "nud",
        "permanent",
    ])
    .await?;
    ip(&[
        "route",
        "replace",
        &peer.pod_cidr,
        "via",
        &gw,
        "dev",
        device,
        "onlink",
    ])
    .await?;
    Ok(())
}

/// Removes what [`add_vxlan_peer`] programmed (what is already gone is no error).
pub async fn del_vxlan_peer(device: &str, peer: &Peer) {
    let gw = peer.gateway.to_string();
    let _ = ip(&["route", "del", &peer.pod_cidr, "via", &gw, "dev", device]).await;
    let _ = ip(&["neigh", "del", &gw, "dev", device]).await;
    if let Some(mac) = &peer.vtep_mac {
        let public = peer.public_ip.to_string();
        let _ = run(
            "bridge",
            &["fdb", "del", mac, "dev", device, "dst", &public, "self"],
            None,
        )
        .await;
    }
}

/// host-gw: a plain route to the peer's pods via its public IP on the shared segment.
pub async fn add_host_gw_peer(dev: &str, peer: &Peer) -> Result<()> {
    let via = peer.public_ip.to_string();
    ip(&[
        "route",
        "replace",
        &peer.pod_cidr,
        "via",
        &via,
        "dev",
        dev,
        "proto",
        ROUTE_PROTO,
    ])
    .await?;
    Ok(())
}

pub async fn del_host_gw_peer(dev: &str, peer: &Peer) {
    let via = peer.public_ip.to_string();
    let _ = ip(&[
        "route",
        "del",
        &peer.pod_cidr,
        "via",
        &via,
        "dev",
        dev,
        "proto",
        ROUTE_PROTO,
    ])
    .await;
}

/// Removes every route a host-gw node put on `dev` (from an earlier run or a killed agent).
pub async fn flush_host_gw_routes(dev: &str) -> Result<()> {
    ip(&["route", "flush", "dev", dev, "proto", ROUTE_PROTO]).await?;
    Ok(())
}

/// Removes the routes on the VXLAN device (stale peers of an earlier run).
pub async fn flush_routes(dev: &str) -> Result<()> {
    ip(&["route", "flush", "dev", dev]).await?;
    ip(&["neigh", "flush", "dev", dev, "nud", "all"]).await?;
    Ok(())
}

/// Loads an nft ruleset (`nft -f -`).
pub async fn nft_apply(ruleset: &str) -> Result<()> {
    run("nft", &["-f", "-"], Some(ruleset)).await?;
    Ok(())
}

/// Deletes the masquerade table and the VXLAN device (for `kaji killall`); what is already gone
/// is no error. Returns what was removed.
pub async fn remove(device: Option<&str>, table: Option<&str>) -> Vec<String> {
    let mut removed = Vec::new();
    if let Some(d) = device
        && link(d).await.is_some()
        && ip(&["link", "del", "dev", d]).await.is_ok()
    {
        removed.push(format!("VXLAN device {d}"));
    }
    if let Some(t) = table
        && run("nft", &["delete", "table", "ip", t], None)
            .await
            .is_ok()
    {
        removed.push(format!("nftables table ip {t}"));
    }
    removed
}
