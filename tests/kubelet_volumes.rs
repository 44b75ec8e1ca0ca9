//! End-to-end tests of pod volumes on the real node agent, seen as a user sees them with stock
//! kubectl: files read with `kubectl exec ... cat`, mounts with busybox's `mount` and `df`,
//! `kubectl get pv,pvc`, and the events `kubectl describe` shows.
//! - downwardAPI and projected volumes: metadata and resource files, modes, labels and
//!   annotations following `kubectl label` / `kubectl annotate`, a changed ConfigMap;
//! - emptyDir (disk and `medium: Memory` tmpfs with its size) removed with the pod, and hostPath
//!   types with upstream's type-check failures;
//! - PersistentVolumes bound to claims by the binder (smallest fit, class, selector, pre-binding),
//!   a pod waiting for its claim, data kept across pods, Retain and Delete reclaim.
//!
//! Host paths live under the test's data directory, which is removed with the test.

mod support;

use std::path::Path;
use std::time::Duration;
use support::node::Node;
use support::wait_for;

fn exec(n: &Node, pod: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", pod, "-c", "main", "--"];
    args.extend_from_slice(cmd);
    n.cluster.ok(&args)
}

/// Polls `kubectl exec` until its output satisfies `ok`; returns that output.
fn wait_exec(n: &Node, pod: &str, cmd: &[&str], what: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut args = vec!["exec", pod, "-c", "main", "--"];
    args.extend_from_slice(cmd);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = n.cluster.kubectl(&args);
        let last = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && ok(&last) {
            return last;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; last output: {last:?}, stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cat(n: &Node, pod: &str, path: &str) -> String {
    exec(n, pod, &["cat", path])
}

/// The events about an object (`kubectl get events`, as `kubectl describe` lists them).
fn events(n: &Node, name: &str) -> String {
    n.cluster.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "jsonpath={range .items[*]}{.type} {.reason} {.message}{\"\\n\"}{end}",
    ])
}

fn wait_event(n: &Node, name: &str, want: &str) -> String {
    wait_for(
        &format!("an event on {name} with {want:?}"),
        Duration::from_secs(30),
        || {
            let e = events(n, name);
            e.contains(want).then_some(e)
        },
    )
}

fn get(n: &Node, args: &[&str]) -> String {
    String::from_utf8_lossy(&n.cluster.kubectl(args).stdout).into_owned()
}

fn wait_get(n: &Node, args: &[&str], want: &str) -> String {
    wait_for(
        &format!("kubectl get {args:?} to show {want:?}"),
        Duration::from_secs(30),
        || {
            let out = get(n, args);
            (out == want).then_some(out)
        },
    )
}

/// `ls -lL` of one file in the pod: its mode string ("-r--------").
fn mode(n: &Node, pod: &str, path: &str) -> String {
    exec(n, pod, &["ls", "-lL", path])
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn downward_api_and_projected_volumes() {
    let n = Node::start("vol-downward");
    let started = std::time::Instant::now();
    n.apply(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: app-cfg
data:
  greeting: hello
  unused: not-projected
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
stringData:
  token: s3cret
---
apiVersion: v1
kind: Pod
metadata:
  name: info
  labels:
    app: demo
    tier: web
  annotations:
    note: first
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
    resources:
      limits: {cpu: 250m, memory: 64Mi}
      requests: {cpu: 100m, memory: 32Mi}
    volumeMounts:
    - {name: podinfo, mountPath: /etc/podinfo}
    - {name: all, mountPath: /etc/all}
  - name: side
    image: busybox:latest
    command: ["sleep", "3600"]
  volumes:
  - name: podinfo
    downwardAPI:
      defaultMode: 0400
      items:
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: namespace, fieldRef: {fieldPath: metadata.namespace}}
      - {path: uid, fieldRef: {fieldPath: metadata.uid}}
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
      - {path: tier, fieldRef: {fieldPath: "metadata.labels['tier']"}}
      - {path: cpu_limit, resourceFieldRef: {containerName: main, resource: limits.cpu, divisor: 1m}}
      - {path: cpu_limit_cores, resourceFieldRef: {containerName: main, resource: limits.cpu}}
      - {path: mem_request, resourceFieldRef: {containerName: main, resource: requests.memory, divisor: 1Mi}}
      - {path: side_mem_limit, resourceFieldRef: {containerName: side, resource: limits.memory, divisor: 1Mi}}
      - {path: side_cpu_limit, resourceFieldRef: {containerName: side, resource: limits.cpu}}
      - {path: sub/name, mode: 0644, fieldRef: {fieldPath: metadata.name}}
  - name: all
    projected:
      defaultMode: 0440
      sources:
      - configMap:
          name: app-cfg
          items: [{key: greeting, path: config/greeting}]
      - secret:
          name: app-secret
      - downwardAPI:
          items:
          - {path: labels, fieldRef: {fieldPath: metadata.labels}}
          - {path: cpu_request, resourceFieldRef: {containerName: main, resource: requests.cpu, divisor: 1m}}
"#,
    );
    n.wait_running("info");
    let uid = n.jsonpath("info", "{.metadata.uid}");
    assert_eq!(cat(&n, "info", "/etc/podinfo/name"), "info");
    assert_eq!(cat(&n, "info", "/etc/podinfo/namespace"), "default");
    assert_eq!(cat(&n, "info", "/etc/podinfo/uid"), uid);
    assert_eq!(
        cat(&n, "info", "/etc/podinfo/labels"),
        "app=\"demo\"\ntier=\"web\""
    );
    let annotations = cat(&n, "info", "/etc/podinfo/annotations");
    assert!(annotations.contains("note=\"first\""), "{annotations}");
    assert_eq!(cat(&n, "info", "/etc/podinfo/tier"), "web");
    assert_eq!(cat(&n, "info", "/etc/podinfo/cpu_limit"), "250");
    assert_eq!(cat(&n, "info", "/etc/podinfo/cpu_limit_cores"), "1");
    assert_eq!(cat(&n, "info", "/etc/podinfo/mem_request"), "32");
    // A container without limits sees the node's allocatable resources.
    let alloc = n.cluster.ok(&[
        "get",
        "node",
        "kaji-test-node",
        "-o",
        "jsonpath={.status.allocatable.cpu} {.status.allocatable.memory}",
    ]);
    let (cpu, mem) = alloc.split_once(' ').expect("allocatable cpu and memory");
    let mem_kib: u64 = mem.trim_end_matches("Ki").parse().expect("memory in Ki");
    assert_eq!(cat(&n, "info", "/etc/podinfo/side_cpu_limit"), cpu);
    assert_eq!(
        cat(&n, "info", "/etc/podinfo/side_mem_limit"),
        mem_kib.div_ceil(1024).to_string()
    );
    // defaultMode and a per-item mode.
    assert_eq!(mode(&n, "info", "/etc/podinfo/name"), "-r--------");
    assert_eq!(mode(&n, "info", "/etc/podinfo/sub/name"), "-rw-r--r--");
    // The projected volume: the three sources in one directory.
    assert_eq!(cat(&n, "info", "/etc/all/config/greeting"), "hello");
    assert_eq!(cat(&n, "info", "/etc/all/token"), "s3cret");
    assert_eq!(cat(&n, "info", "/etc/all/cpu_request"), "100");
    assert_eq!(
        cat(&n, "info", "/etc/all/labels"),
        "app=\"demo\"\ntier=\"web\""
    );
    let listing = exec(&n, "info", &["ls", "/etc/all"]);
    let names: Vec<&str> = listing.split_whitespace().collect();
    assert_eq!(
        names,
        ["config", "cpu_request", "labels", "token"],
        "{listing}"
    );
    assert_eq!(mode(&n, "info", "/etc/all/token"), "-r--r-----");
    // Labels and annotations follow the pod.
    n.cluster.ok(&[
        "label",
        "pod",
        "info",
        "tier=db",
        "extra=yes",
        "--overwrite",
    ]);
    n.cluster
        .ok(&["annotate", "pod", "info", "note=second", "--overwrite"]);
    wait_exec(
        &n,
        "info",
        &["cat", "/etc/podinfo/labels"],
        "the labels file to follow kubectl label",
        |s| s == "app=\"demo\"\nextra=\"yes\"\ntier=\"db\"",
    );
    wait_exec(
        &n,
        "info",
        &["cat", "/etc/podinfo/annotations"],
        "the annotations file to follow kubectl annotate",
        |s| s.contains("note=\"second\"") && !s.contains("note=\"first\""),
    );
    assert_eq!(cat(&n, "info", "/etc/podinfo/tier"), "db");
    assert_eq!(
        cat(&n, "info", "/etc/all/labels"),
        "app=\"demo\"\nextra=\"yes\"\ntier=\"db\""
    );
    // A changed ConfigMap reaches the projected file within the kubelet's resync.
    n.cluster.ok(&[
        "patch",
        "configmap",
        "app-cfg",
        "-p",
        r#"{"data":{"greeting":"hola"}}"#,
    ]);
    wait_exec(
        &n,
        "info",
        &["cat", "/etc/all/config/greeting"],
        "the projected ConfigMap file to change",
        |s| s == "hola",
    );
    // A missing key is a FailedMount, worded as upstream.
    n.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: bad-key
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
    volumeMounts:
    - {name: all, mountPath: /etc/all}
  volumes:
  - name: all
    projected:
      sources:
      - configMap:
          name: app-cfg
          items: [{key: nope, path: nope}]
"#,
    );
    wait_event(
        &n,
        "bad-key",
        "Warning FailedMount MountVolume.SetUp failed for volume \"all\" : configmap references non-existent config key: nope",
    );
    assert_eq!(n.jsonpath("bad-key", "{.status.phase}"), "Pending");
    eprintln!(
        "downward_api_and_projected_volumes: {:?}",
        started.elapsed()
    );
}

fn host_mounts() -> String {
    std::fs::read_to_string("/proc/self/mounts").unwrap_or_default()
}

#[test]
fn empty_dir_memory_and_host_path_types() {
    let n = Node::start("vol-hostpath");
    let started = std::time::Instant::now();
    let data = n.cluster.data_dir().join("host");
    std::fs::create_dir_all(data.join("existing")).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(data.join("agent.sock")).unwrap();
    let d = data.to_string_lossy().into_owned();
    n.apply(
        &r#"apiVersion: v1
kind: Pod
metadata:
  name: scratch
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
    volumeMounts:
    - {name: mem, mountPath: /cache}
    - {name: disk, mountPath: /work}
    - {name: file, mountPath: /host-file}
    - {name: dir, mountPath: /host-dir}
    - {name: sock, mountPath: /host.sock}
    - {name: devnull, mountPath: /host-null}
  volumes:
  - name: mem
    emptyDir: {medium: Memory, sizeLimit: 64Mi}
  - name: disk
    emptyDir: {}
  - name: file
    hostPath: {path: DATA/created.txt, type: FileOrCreate}
  - name: dir
    hostPath: {path: DATA/existing, type: Directory}
  - name: sock
    hostPath: {path: DATA/agent.sock, type: Socket}
  - name: devnull
    hostPath: {path: /dev/null, type: CharDevice}
"#
        .replace("DATA", &d),
    );
    n.wait_running("scratch");
    let uid = n.jsonpath("scratch", "{.metadata.uid}");
    // medium: Memory is a tmpfs of sizeLimit, world-writable with the sticky bit.
    let mounts = exec(&n, "scratch", &["busybox", "mount"]);
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs on /cache type tmpfs")),
        "{mounts}"
    );
    let df = exec(&n, "scratch", &["busybox", "df", "-k", "/cache"]);
    let size = df
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    assert_eq!(size, "65536", "{df}");
    assert!(
        !mounts.lines().any(|l| l.contains(" on /work type tmpfs")),
        "{mounts}"
    );
    assert!(exec(&n, "scratch", &["ls", "-ld", "/cache"]).starts_with("drwxrwxrwt"));
    assert!(exec(&n, "scratch", &["ls", "-ld", "/work"]).starts_with("drwxrwxrwx"));
    exec(
        &n,
        "scratch",
        &[
            "sh",
            "-c",
            "echo m > /cache/m && echo w > /work/w && echo h > /host-dir/from-pod",
        ],
    );
    assert_eq!(cat(&n, "scratch", "/cache/m"), "m\n");
    // hostPath: FileOrCreate made an empty 0644 file; Directory, Socket and CharDevice mounted.
    let created = std::fs::metadata(data.join("created.txt")).expect("FileOrCreate made the file");
    assert!(created.is_file() && created.len() == 0);
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&created.permissions()) & 0o777,
        0o644
    );
    assert_eq!(
        std::fs::read_to_string(data.join("existing/from-pod")).unwrap(),
        "h\n"
    );
    assert!(exec(&n, "scratch", &["ls", "-l", "/host.sock"]).starts_with('s'));
    assert!(exec(&n, "scratch", &["ls", "-l", "/host-null"]).starts_with('c'));
    // On the node: the tmpfs is mounted under the pod's volume directory.
    let volumes = n.cluster.data_dir().join("agent/volumes").join(&uid);
    let mem_dir = volumes.join("kubernetes.io~empty-dir/mem");
    assert!(
        host_mounts().contains(&format!("{} tmpfs", mem_dir.display())),
        "no tmpfs at {}",
        mem_dir.display()
    );
    assert_eq!(
        std::fs::read_to_string(volumes.join("kubernetes.io~empty-dir/disk/w")).unwrap(),
        "w\n"
    );

    // Type checks that fail: FailedMount, and the pod stays ContainerCreating.
    n.apply(
        &r#"apiVersion: v1
kind: Pod
metadata:
  name: missing-dir
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
    volumeMounts:
    - {name: d, mountPath: /d}
  volumes:
  - name: d
    hostPath: {path: DATA/later, type: Directory}
---
apiVersion: v1
kind: Pod
metadata:
  name: dir-not-file
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    command: ["sleep", "3600"]
    volumeMounts:
    - {name: f, mountPath: /f}
  volumes:
  - name: f
    hostPath: {path: DATA/existing, type: File}
"#
        .replace("DATA", &d),
    );
    wait_event(
        &n,
        "missing-dir",
        &format!(
            "Warning FailedMount MountVolume.SetUp failed for volume \"d\" : hostPath type check failed: {d}/later is not a directory"
        ),
    );
    wait_event(
        &n,
        "dir-not-file",
        &format!(
            "Warning FailedMount MountVolume.SetUp failed for volume \"f\" : hostPath type check failed: {d}/existing is not a file"
        ),
    );
    wait_for(
        "missing-dir to show ContainerCreating",
        Duration::from_secs(30),
        || {
            (n.jsonpath(
                "missing-dir",
                "{.status.phase} {.status.containerStatuses[0].state.waiting.reason}",
            ) == "Pending ContainerCreating")
                .then_some(())
        },
    );
    // Once the directory exists, the kubelet's retry mounts it.
    std::fs::create_dir_all(data.join("later")).unwrap();
    n.wait_running("missing-dir");

    // Deleting the pod unmounts the tmpfs and removes both emptyDirs.
    n.cluster.ok(&["delete", "pod", "scratch", "--timeout=60s"]);
    wait_for(
        "the pod's volumes to be removed from the node",
        Duration::from_secs(30),
        || (!volumes.exists()).then_some(()),
    );
    assert!(
        !host_mounts().contains(&mem_dir.display().to_string()),
        "the tmpfs is still mounted"
    );
    // Host paths are the node's: they stay.
    assert!(data.join("existing/from-pod").exists());
    eprintln!(
        "empty_dir_memory_and_host_path_types: {:?}",
        started.elapsed()
    );
}

/// The `kubectl get pv,pvc` line of one object, split in columns.
fn row(n: &Node, kind_name: &str) -> String {
    get(n, &["get", "pv,pvc", "--no-headers"])
        .lines()
        .find(|l| l.split_whitespace().next() == Some(kind_name))
        .unwrap_or_default()
        .to_string()
}

fn pv(name: &str, size: &str, modes: &str, extra: &str, source: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {name}\n{extra}spec:\n  capacity: {{storage: {size}}}\n  accessModes: [{modes}]\n{source}---\n"
    )
}

fn host_path_pv(name: &str, size: &str, path: &Path, spec_extra: &str) -> String {
    pv(
        name,
        size,
        "ReadWriteOnce",
        "",
        &format!(
            "  hostPath: {{path: {}, type: DirectoryOrCreate}}\n{spec_extra}",
            path.display()
        ),
    )
}

fn pvc(name: &str, size: &str, spec_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n{spec_extra}---\n"
    )
}

fn claim_pod(name: &str, claims: &[(&str, &str)], command: &str) -> String {
    let mounts: String = claims
        .iter()
        .map(|(claim, path)| format!("    - {{name: {claim}, mountPath: {path}}}\n"))
        .collect();
    let volumes: String = claims
        .iter()
        .map(|(claim, _)| {
            format!("  - name: {claim}\n    persistentVolumeClaim: {{claimName: {claim}}}\n")
        })
        .collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: busybox:latest\n    command: [\"sh\", \"-c\", {command:?}]\n    volumeMounts:\n{mounts}  volumes:\n{volumes}"
    )
}

#[test]
fn persistent_volumes_bind_and_keep_data() {
    let n = Node::start("vol-pv");
    let started = std::time::Instant::now();
    let data = n.cluster.data_dir().join("pv");
    assert!(
        data.to_string_lossy().contains("/tmp/"),
        "the Delete reclaim check needs the data directory under /tmp (upstream's hostPath deleter)"
    );
    std::fs::create_dir_all(data.join("local")).unwrap();
    std::fs::create_dir_all(data.join("delete-me")).unwrap();
    std::fs::write(data.join("delete-me/old"), "old").unwrap();
    // A claim with nothing to bind to waits, Pending, with upstream's event. (`storageClassName:
    // ""`: without it the claim would get the default class, local-path, as on k3s.)
    n.apply(&pvc("waiting", "3Gi", "  storageClassName: \"\"\n"));
    wait_event(
        &n,
        "waiting",
        "Normal FailedBinding no persistent volumes available for this claim and no storage class is set",
    );
    assert_eq!(
        get(
            &n,
            &["get", "pvc", "waiting", "-o", "jsonpath={.status.phase}"]
        ),
        "Pending"
    );
    // Volumes: the binder picks the smallest that fits, with the claim's class and selector.
    let manifest = [
        host_path_pv("pv-small", "1Gi", &data.join("small"), ""),
        host_path_pv("pv-big", "5Gi", &data.join("big"), ""),
        host_path_pv("pv-fast", "1Gi", &data.join("fast"), "  storageClassName: fast\n"),
        host_path_pv(
            "pv-delete",
            "1Gi",
            &data.join("delete-me"),
            "  persistentVolumeReclaimPolicy: Delete\n  storageClassName: scratch\n",
        ),
        host_path_pv(
            "pv-outside-tmp",
            "1Gi",
            Path::new("/var/lib/kaji-test-never-created"),
            "  persistentVolumeReclaimPolicy: Delete\n  storageClassName: outside\n",
        ),
        host_path_pv(
            "pv-named",
            "2Gi",
            &data.join("named"),
            "  storageClassName: named\n",
        ),
        host_path_pv(
            "pv-prebound",
            "2Gi",
            &data.join("prebound"),
            "  storageClassName: other\n  claimRef: {namespace: default, name: prebound}\n",
        ),
        pv(
            "pv-local",
            "2Gi",
            "ReadWriteOnce",
            "  labels: {tier: gold}\n",
            &format!(
                "  storageClassName: local\n  local: {{path: {}}}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions:\n        - {{key: kubernetes.io/hostname, operator: In, values: [kaji-test-node]}}\n",
                data.join("local").display()
            ),
        ),
    ]
    .concat();
    n.apply(&manifest);
    // The binder makes free volumes Available (pv-big may already serve the waiting claim).
    for v in [
        "pv-small",
        "pv-fast",
        "pv-delete",
        "pv-outside-tmp",
        "pv-named",
        "pv-prebound",
        "pv-local",
    ] {
        wait_get(
            &n,
            &["get", "pv", v, "-o", "jsonpath={.status.phase}"],
            "Available",
        );
    }
    n.apply(
        &[
            pvc("data", "500Mi", "  storageClassName: \"\"\n"),
            pvc("quick", "1Gi", "  storageClassName: fast\n"),
            pvc(
                "gold",
                "1Gi",
                "  storageClassName: local\n  selector: {matchLabels: {tier: gold}}\n",
            ),
            pvc("scratch", "1Gi", "  storageClassName: scratch\n"),
            pvc("outside", "1Gi", "  storageClassName: outside\n"),
            pvc(
                "named",
                "1Gi",
                "  storageClassName: named\n  volumeName: pv-named\n",
            ),
            // Pre-bound by the volume's claimRef: bound although class and selector differ, as
            // upstream (nothing else can match it).
            pvc(
                "prebound",
                "1Gi",
                "  storageClassName: \"\"\n  selector: {matchLabels: {never: matches}}\n",
            ),
        ]
        .concat(),
    );
    for (claim, volume) in [
        ("waiting", "pv-big"),
        ("data", "pv-small"),
        ("quick", "pv-fast"),
        ("gold", "pv-local"),
        ("scratch", "pv-delete"),
        ("outside", "pv-outside-tmp"),
        ("named", "pv-named"),
        ("prebound", "pv-prebound"),
    ] {
        wait_get(
            &n,
            &[
                "get",
                "pvc",
                claim,
                "-o",
                "jsonpath={.status.phase} {.spec.volumeName}",
            ],
            &format!("Bound {volume}"),
        );
        wait_get(
            &n,
            &[
                "get",
                "pv",
                volume,
                "-o",
                "jsonpath={.status.phase} {.spec.claimRef.namespace}/{.spec.claimRef.name}",
            ],
            &format!("Bound default/{claim}"),
        );
    }
    // What kubectl shows: STATUS Bound and CLAIM on the volume, VOLUME, CAPACITY and ACCESS
    // MODES on the claim.
    let pv_row = row(&n, "persistentvolume/pv-small");
    let cols: Vec<&str> = pv_row.split_whitespace().collect();
    assert_eq!(
        cols[..6],
        [
            "persistentvolume/pv-small",
            "1Gi",
            "RWO",
            "Retain",
            "Bound",
            "default/data"
        ],
        "{pv_row}"
    );
    let pvc_row = row(&n, "persistentvolumeclaim/data");
    let cols: Vec<&str> = pvc_row.split_whitespace().collect();
    assert_eq!(
        cols[..5],
        [
            "persistentvolumeclaim/data",
            "Bound",
            "pv-small",
            "1Gi",
            "RWO"
        ],
        "{pvc_row}"
    );
    // Upstream's annotations: the claim bound by the controller, the binding complete; the
    // pre-bound volume was not bound by the controller, the other volumes were.
    let ann = |kind: &str, name: &str, key: &str| {
        n.cluster.json(&["get", kind, name])["metadata"]["annotations"][key]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(ann("pvc", "data", "pv.kubernetes.io/bind-completed"), "yes");
    assert_eq!(
        ann("pvc", "data", "pv.kubernetes.io/bound-by-controller"),
        "yes"
    );
    assert_eq!(
        ann("pv", "pv-small", "pv.kubernetes.io/bound-by-controller"),
        "yes"
    );
    assert_eq!(
        ann("pv", "pv-prebound", "pv.kubernetes.io/bound-by-controller"),
        ""
    );
    assert_eq!(
        ann("pvc", "prebound", "pv.kubernetes.io/bound-by-controller"),
        "yes"
    );
    assert_eq!(
        ann("pvc", "named", "pv.kubernetes.io/bound-by-controller"),
        ""
    );
    assert_eq!(
        ann("pvc", "named", "pv.kubernetes.io/bind-completed"),
        "yes"
    );
    assert_eq!(
        get(
            &n,
            &[
                "get",
                "pv",
                "pv-small",
                "-o",
                "jsonpath={.spec.claimRef.uid}"
            ]
        ),
        get(
            &n,
            &["get", "pvc", "data", "-o", "jsonpath={.metadata.uid}"]
        )
    );

    // Data written through the claims (hostPath and local volumes) outlives the pod.
    n.apply(&claim_pod(
        "writer",
        &[("data", "/data"), ("gold", "/gold")],
        "echo kept > /data/file; echo gold > /gold/file; sleep 3600",
    ));
    n.wait_running("writer");
    wait_exec(
        &n,
        "writer",
        &["cat", "/data/file"],
        "the writer's file",
        |s| s == "kept\n",
    );
    assert_eq!(
        std::fs::read_to_string(data.join("local/file")).unwrap(),
        "gold\n"
    );
    n.cluster.ok(&["delete", "pod", "writer", "--timeout=60s"]);
    n.apply(&claim_pod("reader", &[("data", "/data")], "sleep 3600"));
    n.wait_running("reader");
    assert_eq!(cat(&n, "reader", "/data/file"), "kept\n");
    assert_eq!(
        std::fs::read_to_string(data.join("small/file")).unwrap(),
        "kept\n"
    );

    // A pod whose claim is not bound waits unscheduled (the scheduler's VolumeBinding), then
    // runs once a volume binds the claim.
    n.apply(&[pvc("later", "1Gi", "  storageClassName: manual\n")].concat());
    wait_event(
        &n,
        "later",
        "Warning ProvisioningFailed storageclass.storage.k8s.io \"manual\" not found",
    );
    n.apply(&claim_pod("patient", &[("later", "/later")], "sleep 3600"));
    wait_event(
        &n,
        "patient",
        "Warning FailedScheduling 0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
    );
    assert_eq!(n.jsonpath("patient", "{.status.phase} {.spec.nodeName}"), "Pending ");
    n.apply(&host_path_pv(
        "pv-manual",
        "1Gi",
        &data.join("manual"),
        "  storageClassName: manual\n",
    ));
    n.wait_running("patient");
    assert_eq!(
        get(
            &n,
            &["get", "pvc", "later", "-o", "jsonpath={.spec.volumeName}"]
        ),
        "pv-manual"
    );

    // Reclaim: Retain keeps the volume (Released) and its data; Delete removes a /tmp hostPath
    // and the volume; a Delete volume outside /tmp fails as upstream's hostPath deleter.
    n.cluster.ok(&["delete", "pod", "reader", "--timeout=60s"]);
    n.cluster.ok(&[
        "delete",
        "pvc",
        "data",
        "scratch",
        "outside",
        "--timeout=60s",
    ]);
    wait_get(
        &n,
        &["get", "pv", "pv-small", "-o", "jsonpath={.status.phase}"],
        "Released",
    );
    assert!(data.join("small/file").exists(), "Retain kept the data");
    wait_for("pv-delete to be deleted", Duration::from_secs(30), || {
        let out = n.cluster.kubectl(&["get", "pv", "pv-delete"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("not found")
            .then_some(())
    });
    assert!(
        !data.join("delete-me").exists(),
        "Delete removed the directory"
    );
    wait_get(
        &n,
        &[
            "get",
            "pv",
            "pv-outside-tmp",
            "-o",
            "jsonpath={.status.phase}",
        ],
        "Failed",
    );
    wait_event(
        &n,
        "pv-outside-tmp",
        "Warning VolumeFailedDelete host_path deleter only supports /tmp/.+ but received provided /var/lib/kaji-test-never-created",
    );
    assert!(!Path::new("/var/lib/kaji-test-never-created").exists());
    let released = row(&n, "persistentvolume/pv-small");
    assert!(
        released.contains("Released") && released.contains("default/data"),
        "{released}"
    );
    eprintln!(
        "persistent_volumes_bind_and_keep_data: {:?}",
        started.elapsed()
    );
}
