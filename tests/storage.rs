//! Dynamic provisioning with k3s's local-path provisioner, seen with stock kubectl:
//! - the default StorageClass `local-path` and the DefaultStorageClass admission; a claim is
//!   provisioned when its pod is scheduled (a hostPath volume under `<data-dir>/storage` on the
//!   node, with upstream's annotations and events), keeps its data across pods, stays Terminating
//!   while a pod uses it (pvc-protection), and its volume and directory go once it is deleted
//!   (real containers);
//! - PersistentVolume, PersistentVolumeClaim and StorageClass defaults and validation (upstream's
//!   422 causes), and the pv-protection finalizer (no node needed).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use support::node::Node;
use support::{Cluster, wait_for};

const T: Duration = Duration::from_secs(60);

fn claim(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 1Gi}}}}\n{extra}---\n"
    )
}

fn claim_pod(name: &str, claim: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: busybox:latest\n    command: [\"sh\", \"-c\", {command:?}]\n    volumeMounts:\n    - {{name: data, mountPath: /data}}\n  volumes:\n  - name: data\n    persistentVolumeClaim: {{claimName: {claim}}}\n"
    )
}

fn get(c: &Cluster, args: &[&str]) -> String {
    String::from_utf8_lossy(&c.kubectl(args).stdout).into_owned()
}

fn events(c: &Cluster, name: &str) -> String {
    get(
        c,
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "jsonpath={range .items[*]}{.type} {.reason} {.message}{\"\\n\"}{end}",
        ],
    )
}

fn wait_event(c: &Cluster, name: &str, want: &str) -> String {
    wait_for(&format!("an event on {name} with {want:?}"), T, || {
        let e = events(c, name);
        e.contains(want).then_some(e)
    })
}

fn gone(c: &Cluster, args: &[&str]) -> bool {
    String::from_utf8_lossy(&c.kubectl(args).stderr).contains("NotFound")
}

#[test]
fn default_class_provisions_keeps_data_and_removes_the_directory() {
    let n = Node::start("storage-lp");
    let c = &n.cluster;
    let started = Instant::now();
    // k3s's default class.
    let class = c.json(&["get", "storageclass", "local-path"]);
    assert_eq!(class["provisioner"], "rancher.io/local-path");
    assert_eq!(class["reclaimPolicy"], "Delete");
    assert_eq!(class["volumeBindingMode"], "WaitForFirstConsumer");
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
    let row = c.ok(&["get", "storageclass", "--no-headers"]);
    assert!(row.starts_with("local-path (default)"), "{row}");

    // A claim without a class gets the default one and waits for its first consumer.
    n.apply(&claim("data", ""));
    let pvc = c.json(&["get", "pvc", "data"]);
    assert_eq!(pvc["spec"]["storageClassName"], "local-path");
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(
        pvc["metadata"]["finalizers"],
        serde_json::json!(["kubernetes.io/pvc-protection"])
    );
    wait_event(
        c,
        "data",
        "Normal WaitForFirstConsumer waiting for first consumer to be created before binding",
    );
    assert_eq!(
        get(c, &["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]),
        "Pending"
    );

    // Its pod is scheduled: the scheduler picks the node, the provisioner makes the volume on it,
    // the binder binds it and the pod runs with the data written.
    n.apply(&claim_pod(
        "writer",
        "data",
        "echo kept > /data/file; sleep 3600",
    ));
    n.wait_running("writer");
    let uid = get(c, &["get", "pvc", "data", "-o", "jsonpath={.metadata.uid}"]);
    let volume = format!("pvc-{uid}");
    assert_eq!(
        get(
            c,
            &[
                "get",
                "pvc",
                "data",
                "-o",
                "jsonpath={.status.phase} {.spec.volumeName}"
            ]
        ),
        format!("Bound {volume}")
    );
    let pvc = c.json(&["get", "pvc", "data"]);
    let ann = &pvc["metadata"]["annotations"];
    assert_eq!(ann["volume.kubernetes.io/selected-node"], "kaji-test-node");
    assert_eq!(
        ann["volume.kubernetes.io/storage-provisioner"],
        "rancher.io/local-path"
    );
    assert_eq!(
        ann["volume.beta.kubernetes.io/storage-provisioner"],
        "rancher.io/local-path"
    );
    let pv = c.json(&["get", "pv", &volume]);
    let dir = std::path::absolute(c.data_dir())
        .unwrap()
        .join("storage")
        .join(format!("{volume}_default_data"));
    assert_eq!(
        pv["spec"]["hostPath"]["path"],
        dir.to_string_lossy().as_ref()
    );
    assert_eq!(pv["spec"]["hostPath"]["type"], "DirectoryOrCreate");
    assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["storageClassName"], "local-path");
    assert_eq!(pv["spec"]["claimRef"]["uid"], uid.as_str());
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        serde_json::json!({"key": "kubernetes.io/hostname", "operator": "In", "values": ["kaji-test-node"]})
    );
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "rancher.io/local-path"
    );
    let finalizers = pv["metadata"]["finalizers"].to_string();
    assert!(
        finalizers.contains("kubernetes.io/pv-protection")
            && finalizers.contains("external-provisioner.volume.kubernetes.io/finalizer"),
        "{finalizers}"
    );
    let ev = events(c, "data");
    assert!(
        ev.contains(
            "Normal Provisioning External provisioner is provisioning volume for claim \"default/data\""
        ) && ev.contains(&format!("Normal ProvisioningSucceeded Successfully provisioned volume {volume}")),
        "{ev}"
    );
    // The directory is on the node, writable by anyone (as local-path's `mkdir -m 0777`).
    let file = dir.join("file");
    wait_for("the pod's file on the node", T, || {
        (std::fs::read_to_string(&file).ok()? == "kept\n").then_some(())
    });
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o777
    );

    // The data outlives the pod.
    c.ok(&["delete", "pod", "writer", "--timeout=60s"]);
    n.apply(&claim_pod("reader", "data", "sleep 3600"));
    n.wait_running("reader");
    assert_eq!(
        c.ok(&["exec", "reader", "-c", "main", "--", "cat", "/data/file"]),
        "kept\n"
    );

    // pvc-protection: deleting a claim a pod uses leaves it Terminating, still mounted.
    c.ok(&["delete", "pvc", "data", "--wait=false"]);
    let row = wait_for("the claim to show Terminating", T, || {
        let r = get(c, &["get", "pvc", "data", "--no-headers"]);
        r.contains("Terminating").then_some(r)
    });
    assert!(row.contains(&volume), "{row}");
    // It stays so while the pod runs (observed for 3 s, long past the protection controller's
    // reaction to the deletion).
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            !gone(c, &["get", "pvc", "data"]),
            "the claim went while its pod used it"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        c.ok(&["exec", "reader", "-c", "main", "--", "cat", "/data/file"]),
        "kept\n"
    );

    // Once the pod is gone the claim goes, the volume (reclaim Delete) goes and so does its
    // directory on the node.
    c.ok(&["delete", "pod", "reader", "--timeout=60s"]);
    wait_for("the claim to be deleted", T, || {
        gone(c, &["get", "pvc", "data"]).then_some(())
    });
    wait_for("the volume to be deleted", T, || {
        gone(c, &["get", "pv", &volume]).then_some(())
    });
    assert!(
        !dir.exists(),
        "the volume's directory {} is still there",
        dir.display()
    );
    eprintln!(
        "default_class_provisions_keeps_data_and_removes_the_directory: {:?}",
        started.elapsed()
    );
}

/// The 422 causes of a refused create or update, as kubectl prints them.
fn refused(c: &Cluster, args: &[&str], manifest: &str) -> String {
    let out = c.kubectl_with(support::KUBECTL_NEW, args, Some(manifest));
    assert!(
        !out.status.success(),
        "kubectl {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn volume_claim_and_class_defaults_validation_and_pv_protection() {
    let c = Cluster::start("storage-validation");
    let create = ["create", "-f", "-"];
    // PersistentVolumeClaims.
    let err = refused(
        &c,
        &create,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: bad}\nspec: {volumeMode: Disk}\n",
    );
    for want in [
        "The PersistentVolumeClaim \"bad\" is invalid",
        "spec.accessModes: Required value: at least 1 access mode is required",
        "spec.resources[storage]: Required value",
        "spec.volumeMode: Unsupported value: \"Disk\": supported values: \"Block\", \"Filesystem\"",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    let err = refused(
        &c,
        &create,
        &claim("zero", "").replace("storage: 1Gi", "storage: \"0\""),
    );
    assert!(
        err.contains("spec.resources[storage]: Invalid value: \"0\": must be greater than zero"),
        "{err}"
    );
    // An explicit empty class stays empty (no default), and the spec is immutable afterwards.
    c.apply(
        support::KUBECTL_NEW,
        &claim("classless", "  storageClassName: \"\"\n"),
    );
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "pvc",
                "classless",
                "-o",
                "jsonpath={.spec.storageClassName}|{.status.phase}"
            ]
        ),
        "|Pending"
    );
    let err = refused(
        &c,
        &[
            "patch",
            "pvc",
            "classless",
            "-p",
            "{\"spec\":{\"accessModes\":[\"ReadWriteMany\"]}}",
        ],
        "",
    );
    assert!(
        err.contains("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"),
        "{err}"
    );

    // PersistentVolumes.
    let err = refused(
        &c,
        &create,
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: bad}\nspec:\n  local: {path: /a/../b}\n  persistentVolumeReclaimPolicy: Keep\n",
    );
    for want in [
        "The PersistentVolume \"bad\" is invalid",
        "spec.accessModes: Required value",
        "spec.capacity: Required value",
        "spec.persistentVolumeReclaimPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Recycle\", \"Retain\"",
        "spec.local.path: Invalid value: \"/a/../b\": must not contain '..'",
        "spec.nodeAffinity: Required value: Local volume requires node affinity",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    let err = refused(
        &c,
        &create,
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: bad}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce]}\n",
    );
    assert!(
        err.contains("spec: Required value: must specify a volume type"),
        "{err}"
    );
    // Defaults, the pv-protection finalizer, an immutable source; an unbound volume goes at once.
    c.apply(
        support::KUBECTL_NEW,
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: static}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  storageClassName: manual\n  hostPath: {path: /tmp/kaji-storage-test-static}\n",
    );
    let pv = c.json(&["get", "pv", "static"]);
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
    assert_eq!(
        pv["metadata"]["finalizers"],
        serde_json::json!(["kubernetes.io/pv-protection"])
    );
    let err = refused(
        &c,
        &[
            "patch",
            "pv",
            "static",
            "-p",
            "{\"spec\":{\"hostPath\":{\"path\":\"/tmp/elsewhere\"}}}",
        ],
        "",
    );
    assert!(err.contains("spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"), "{err}");
    c.ok(&["delete", "pv", "static", "--timeout=30s"]);
    assert!(gone(&c, &["get", "pv", "static"]));

    // StorageClasses.
    let err = refused(
        &c,
        &create,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: bad}\nprovisioner: \"\"\nreclaimPolicy: Recycle\nvolumeBindingMode: Later\n",
    );
    for want in [
        "The StorageClass \"bad\" is invalid",
        "provisioner: Required value",
        "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
        "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    c.apply(
        support::KUBECTL_NEW,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: fast}\nprovisioner: example.com/fast\n",
    );
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "sc",
                "fast",
                "-o",
                "jsonpath={.reclaimPolicy} {.volumeBindingMode}"
            ]
        ),
        "Delete Immediate"
    );
    let err = refused(
        &c,
        &[
            "patch",
            "sc",
            "fast",
            "-p",
            "{\"provisioner\":\"example.com/slow\"}",
        ],
        "",
    );
    assert!(
        err.contains("provisioner: Forbidden: updates to provisioner are forbidden."),
        "{err}"
    );
}

/// On hollow nodes (simulated, no disks) the provisioner serves claims too, without the node's
/// directory step: a claim of a pod is provisioned on the pod's node, protected while the pod
/// exists, and its volume goes with it.
#[test]
fn provisions_for_pods_on_hollow_nodes() {
    let c = Cluster::start_with("storage-hollow", &["--hollow-nodes", "2"]);
    wait_for("two hollow nodes", T, || {
        (get(&c, &["get", "nodes", "--no-headers"]).lines().count() == 2).then_some(())
    });
    let manifest = [claim("data", ""), claim_pod("app", "data", "sleep 3600")].concat();
    c.apply(support::KUBECTL_NEW, &manifest);
    let node = wait_for("the pod to run", T, || {
        let s = get(
            &c,
            &[
                "get",
                "pod",
                "app",
                "-o",
                "jsonpath={.status.phase} {.spec.nodeName}",
            ],
        );
        s.strip_prefix("Running ").map(str::to_string)
    });
    let volume = wait_for("the claim to be bound", T, || {
        let s = get(
            &c,
            &[
                "get",
                "pvc",
                "data",
                "-o",
                "jsonpath={.status.phase} {.spec.volumeName}",
            ],
        );
        s.strip_prefix("Bound ").map(str::to_string)
    });
    let pv = c.json(&["get", "pv", &volume]);
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        serde_json::json!([node])
    );
    assert_eq!(
        pv["metadata"]["finalizers"],
        serde_json::json!(["kubernetes.io/pv-protection"])
    );
    c.ok(&["delete", "pvc", "data", "--wait=false"]);
    wait_for("the claim to show Terminating", T, || {
        get(&c, &["get", "pvc", "data", "--no-headers"])
            .contains("Terminating")
            .then_some(())
    });
    c.ok(&["delete", "pod", "app", "--timeout=60s"]);
    wait_for("the claim to be deleted", T, || {
        gone(&c, &["get", "pvc", "data"]).then_some(())
    });
    wait_for("the volume to be deleted", T, || {
        gone(&c, &["get", "pv", &volume]).then_some(())
    });
}
