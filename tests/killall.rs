//! `kaji killall` end to end: a real node with a running pod, its server crashed (SIGKILL), then
//! `kaji killall --data-dir D` leaves no process, shim, container, mount, bridge, nftables table
//! or DNS address of that node, leaves another cluster on the machine running, has nothing to do
//! the second time, and `kaji server` starts again from the same data dir and re-runs the pod;
//! killall of a live server stops the server as well.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::node::Node;
use support::{Cluster, wait_for};

/// `(pid, ppid, command line)` of every process.
fn processes() -> Vec<(i32, i32, String)> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
            if rest.next()? == "Z" {
                return None;
            }
            let ppid = rest.next()?.parse().ok()?;
            let cmd = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            Some((pid, ppid, cmd))
        })
        .collect()
}

/// Processes that name the data dir (kaji, containerd, the shims: `-address D/.../containerd.sock`)
/// and every descendant of those (the containers).
fn processes_of(dir: &Path) -> BTreeSet<i32> {
    let procs = processes();
    let dir = dir.to_string_lossy();
    let mut found: BTreeSet<i32> = procs
        .iter()
        .filter(|(_, _, cmd)| cmd.contains(&*dir))
        .map(|(pid, _, _)| *pid)
        .collect();
    loop {
        let more: Vec<i32> = procs
            .iter()
            .filter(|(pid, ppid, _)| found.contains(ppid) && !found.contains(pid))
            .map(|(pid, _, _)| *pid)
            .collect();
        if more.is_empty() {
            return found;
        }
        found.extend(more);
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dir = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&*dir))
        .map(String::from)
        .collect()
}

fn killall(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kaji"))
        .arg("killall")
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("running kaji killall");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kaji killall failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn nft_table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", table])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn on_lo(ip: &str) -> bool {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "lo"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {ip}/"))
}

/// Waits until the pod runs in a container other than `old`; returns its ID.
fn new_container(node: &Node, old: &str) -> String {
    wait_for(
        "the pod in a new container",
        Duration::from_secs(90),
        || {
            let s = node.jsonpath(
                "sleeper",
                "{.status.phase} {.status.containerStatuses[0].containerID}",
            );
            let (phase, id) = s.split_once(' ').unwrap_or((&s, ""));
            (phase == "Running" && !id.is_empty() && id != old).then(|| id.to_string())
        },
    )
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: sleeper
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
    volumeMounts:
    - name: scratch
      mountPath: /scratch
  volumes:
  - name: scratch
    emptyDir:
      medium: Memory
"#;

#[test]
fn killall_stops_one_node_and_nothing_else() {
    // Another cluster on the machine: killall of the node's data dir must leave it running.
    let other = Cluster::start("killall-other");
    let mut node = Node::start("killall");
    let dir = node.cluster.data_dir().to_path_buf();
    let bridge = node
        .proxy_table
        .strip_prefix("kaji-proxy-")
        .expect("the harness names the table after the bridge")
        .to_string();
    node.apply(POD);
    node.wait_running("sleeper");
    let container_id = node.jsonpath("sleeper", "{.status.containerStatuses[0].containerID}");

    // What the node has on the machine: kaji, containerd, shims and containers; mounts (rootfs,
    // shm, the tmpfs emptyDir); the bridge; the proxy's table; the DNS address.
    let procs = processes_of(&dir);
    let all = processes();
    let cmd = |pid: &i32| {
        all.iter()
            .find(|p| p.0 == *pid)
            .map(|p| p.2.clone())
            .unwrap_or_default()
    };
    assert!(
        procs.iter().any(|p| cmd(p).contains("containerd-shim")),
        "no shim of the node: {procs:?}"
    );
    assert!(
        procs.iter().any(|p| cmd(p).starts_with("sleep 3600")),
        "no container process"
    );
    assert!(
        !mounts_under(&dir).is_empty(),
        "no mounts under the data dir"
    );
    assert!(
        Path::new("/sys/class/net").join(&bridge).exists(),
        "no bridge {bridge}"
    );
    wait_for("the proxy's table", Duration::from_secs(30), || {
        nft_table_exists(&node.proxy_table).then_some(())
    });
    assert!(
        on_lo(&node.cluster_dns),
        "no DNS address {} on lo",
        node.cluster_dns
    );

    // The server crashes; pods keep running under their shims (by design).
    node.cluster.kill();
    assert!(
        processes_of(&dir)
            .iter()
            .any(|p| cmd(p).starts_with("sleep 3600")),
        "the container died with the server"
    );

    let said = killall(&dir);
    println!("kaji killall:\n{said}");
    for what in [
        "containerd",
        "containerd shim",
        "unmount",
        &format!("bridge {bridge}"),
        &node.proxy_table,
        &node.cluster_dns,
    ] {
        assert!(
            said.contains(what),
            "killall did not report {what:?}:\n{said}"
        );
    }
    let left = processes_of(&dir);
    assert!(
        left.is_empty(),
        "processes left: {:?}",
        left.iter().map(|p| (p, cmd(p))).collect::<Vec<_>>()
    );
    // The containers, reparented when their shims died, must be gone too.
    let still: Vec<_> = processes()
        .into_iter()
        .filter(|(pid, _, c)| procs.contains(pid) && *c == cmd(pid))
        .collect();
    assert!(
        still.is_empty(),
        "processes of the node still there: {still:?}"
    );
    assert_eq!(
        mounts_under(&dir),
        Vec::<String>::new(),
        "mounts left under {}",
        dir.display()
    );
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} is still there"
    );
    assert!(
        !nft_table_exists(&node.proxy_table),
        "table {} is still there",
        node.proxy_table
    );
    assert!(
        !on_lo(&node.cluster_dns),
        "{} is still on lo",
        node.cluster_dns
    );
    other.ok(&["get", "namespaces"]);

    // Idempotent: nothing left to do, still a success.
    let again = killall(&dir);
    assert!(
        again.contains("nothing to stop or remove"),
        "second run:\n{again}"
    );

    // The state stays: the server starts again and runs the pod in a new container.
    node.cluster.spawn();
    let container_id = new_container(&node, &container_id);

    // killall of a running server stops it too (SIGTERM), and the rest as before.
    let said = killall(&dir);
    println!("kaji killall of a live server:\n{said}");
    assert!(
        said.contains("stopping kaji server (pid"),
        "killall of a live server:\n{said}"
    );
    assert!(
        said.contains("containerd shim"),
        "killall of a live server:\n{said}"
    );
    let left = processes_of(&dir);
    assert!(
        left.is_empty(),
        "processes left after killall of a live server: {left:?}"
    );
    assert_eq!(
        mounts_under(&dir),
        Vec::<String>::new(),
        "mounts left under {}",
        dir.display()
    );
    other.ok(&["get", "namespaces"]);

    // Up again for the harness, which deletes the pod and cleans up on drop.
    node.cluster.kill();
    node.cluster.spawn();
    new_container(&node, &container_id);
}
