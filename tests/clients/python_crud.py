"""CRUD, watch and optimistic concurrency with the official Python client against Kaji.

Run by tests/clients.rs as `python3 python_crud.py <kubeconfig> <namespace>`; prints `OK` at the
end and exits non-zero (with a traceback) on the first failure.
"""
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def expect_status(fn, status, reason):
    try:
        fn()
    except ApiException as e:
        assert e.status == status, f"expected {status}, got {e.status}: {e.body}"
        assert f'"reason":"{reason}"' in e.body.replace(" ", ""), e.body
        return
    raise AssertionError(f"expected HTTP {status} {reason}, the call succeeded")


def configmaps(core, ns):
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"from": "python"}), data={"a": "1"})
    created = core.create_namespaced_config_map(ns, cm)
    assert created.metadata.uid and created.metadata.resource_version, created.metadata
    expect_status(lambda: core.create_namespaced_config_map(ns, cm), 409, "AlreadyExists")

    got = core.read_namespaced_config_map("py-cm", ns)
    assert got.data == {"a": "1"}, got.data
    listed = core.list_namespaced_config_map(ns, label_selector="from=python")
    assert [i.metadata.name for i in listed.items] == ["py-cm"], listed.items

    got.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("py-cm", ns, got)
    assert replaced.data == {"a": "1", "b": "2"}, replaced.data
    assert replaced.metadata.resource_version != got.metadata.resource_version

    # `got` still carries the old resourceVersion: the server refuses it.
    got.data["c"] = "3"
    expect_status(lambda: core.replace_namespaced_config_map("py-cm", ns, got), 409, "Conflict")

    patched = core.patch_namespaced_config_map("py-cm", ns, {"data": {"c": "3"}})
    assert patched.data == {"a": "1", "b": "2", "c": "3"}, patched.data

    core.delete_namespaced_config_map("py-cm", ns)
    expect_status(lambda: core.read_namespaced_config_map("py-cm", ns), 404, "NotFound")


def deployments(apps, ns):
    labels = {"app": "py"}
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-deploy"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(ns, dep)
    assert created.metadata.generation == 1, created.metadata
    # Defaults were applied by the server.
    assert created.spec.strategy.type == "RollingUpdate", created.spec.strategy
    assert created.spec.template.spec.restart_policy == "Always"
    expect_status(lambda: apps.create_namespaced_deployment(ns, dep), 409, "AlreadyExists")

    stale = apps.read_namespaced_deployment("py-deploy", ns)
    # The deployment controller writes too: read-modify-write again on a conflict, as clients do.
    for _ in range(20):
        fresh = apps.read_namespaced_deployment("py-deploy", ns)
        fresh.spec.replicas = 3
        try:
            updated = apps.replace_namespaced_deployment("py-deploy", ns, fresh)
            break
        except ApiException as e:
            if e.status != 409:
                raise
    else:
        raise AssertionError("replace kept conflicting")
    assert updated.spec.replicas == 3 and updated.metadata.generation == 2, (updated.spec.replicas, updated.metadata.generation)
    stale.spec.replicas = 5
    expect_status(lambda: apps.replace_namespaced_deployment("py-deploy", ns, stale), 409, "Conflict")

    scale = apps.read_namespaced_deployment_scale("py-deploy", ns)
    assert scale.spec.replicas == 3, scale
    apps.patch_namespaced_deployment_scale("py-deploy", ns, {"spec": {"replicas": 2}})
    assert apps.read_namespaced_deployment("py-deploy", ns).spec.replicas == 2

    listed = apps.list_namespaced_deployment(ns)
    assert [d.metadata.name for d in listed.items] == ["py-deploy"]
    apps.delete_namespaced_deployment("py-deploy", ns)
    expect_status(lambda: apps.read_namespaced_deployment("py-deploy", ns), 404, "NotFound")


def watching(core, ns):
    start_rv = core.list_namespaced_config_map(ns).metadata.resource_version
    seen = []
    ready = threading.Event()
    done = threading.Event()

    def run():
        w = watch.Watch()
        ready.set()
        for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=start_rv, timeout_seconds=20):
            if ev["object"].metadata.name != "py-watched":
                continue  # e.g. kube-root-ca.crt, published by a controller
            seen.append((ev["type"], ev["object"].metadata.name, ev["object"].data))
            if ev["type"] == "DELETED":
                w.stop()
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait(5)
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-watched"), data={"v": "1"}))
    core.patch_namespaced_config_map("py-watched", ns, {"data": {"v": "2"}})
    core.delete_namespaced_config_map("py-watched", ns)
    assert done.wait(20), f"the watch did not see the deletion; saw {seen}"
    kinds = [(t, n) for (t, n, _) in seen]
    assert kinds == [("ADDED", "py-watched"), ("MODIFIED", "py-watched"), ("DELETED", "py-watched")], seen
    assert seen[1][2] == {"v": "2"}, seen


def main():
    kubeconfig, ns = sys.argv[1], sys.argv[2]
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    version = client.VersionApi().get_code()
    assert version.git_version.startswith("v1.33"), version
    configmaps(core, ns)
    deployments(apps, ns)
    watching(core, ns)
    print("OK")


if __name__ == "__main__":
    main()
