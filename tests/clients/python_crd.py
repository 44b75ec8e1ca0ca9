"""Custom resources with the official Python client against Kaji: a CRD created with
ApiextensionsV1Api, then its objects through the dynamic client (discovery-driven, as operators
written in Python use it) and CustomObjectsApi: create, get, list with a label selector, merge
patch, the status subresource, watch, delete, and the CRD's deletion taking its objects along.

Run by tests/clients.rs as `python3 python_crd.py <kubeconfig> <namespace>`; prints `OK` at the
end and exits non-zero (with a traceback) on the first failure.
"""
import sys
import threading
import time

from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

GROUP = "pyclient.example.com"


def wait_for(what, fn, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def crd():
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "shortNames": ["gdg"]},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}, "color": {"type": "string"}}},
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                }}},
            }],
        },
    }


def established(ext):
    got = ext.read_custom_resource_definition(f"gadgets.{GROUP}")
    conds = (got.status.conditions or []) if got.status else []
    return any(c.type == "Established" and c.status == "True" for c in conds)


def main():
    kubeconfig, ns = sys.argv[1], sys.argv[2]
    api_client = config.new_client_from_config(config_file=kubeconfig)
    ext = client.ApiextensionsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    except ApiException as e:
        assert e.status == 409, e.body

    ext.create_custom_resource_definition(crd())
    wait_for("the CRD to be Established", lambda: established(ext))

    # The dynamic client finds the kind through discovery.
    dyn = dynamic.DynamicClient(api_client)
    gadgets = wait_for("Gadget in discovery", lambda: _resource(dyn))
    assert gadgets.namespaced and gadgets.name == "gadgets", gadgets

    events = []
    started = threading.Event()

    def watcher():
        w = watch.Watch()
        custom = client.CustomObjectsApi(api_client)
        started.set()
        for ev in w.stream(custom.list_namespaced_custom_object, GROUP, "v1", ns, "gadgets", timeout_seconds=20):
            events.append((ev["type"], ev["object"]["metadata"]["name"]))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watcher)
    t.start()
    started.wait()
    time.sleep(0.3)

    body = {"apiVersion": f"{GROUP}/v1", "kind": "Gadget",
            "metadata": {"name": "g1", "labels": {"from": "python"}}, "spec": {"size": 3, "color": "red"}}
    created = gadgets.create(body=body, namespace=ns)
    assert created.metadata.uid and created.spec.size == 3, created
    try:
        gadgets.create(body=body, namespace=ns)
        raise AssertionError("a second create of g1 succeeded")
    except ApiException as e:
        assert e.status == 409, e.body

    got = gadgets.get(name="g1", namespace=ns)
    assert got.spec.color == "red", got
    listed = gadgets.get(namespace=ns, label_selector="from=python")
    assert [i.metadata.name for i in listed.items] == ["g1"], listed
    assert gadgets.get(namespace=ns, label_selector="from=nowhere").items == []

    patched = gadgets.patch(name="g1", namespace=ns, body={"spec": {"size": 5}},
                            content_type="application/merge-patch+json")
    assert patched.spec.size == 5 and patched.spec.color == "red", patched
    # A status written on the main resource is ignored; the status subresource writes it.
    ignored = gadgets.patch(name="g1", namespace=ns, body={"status": {"phase": "Main"}},
                            content_type="application/merge-patch+json")
    assert not ignored.get("status") or ignored.status.get("phase") != "Main", ignored
    custom = client.CustomObjectsApi(api_client)
    st = custom.patch_namespaced_custom_object_status(GROUP, "v1", ns, "gadgets", "g1", {"status": {"phase": "Ready"}})
    assert st["status"]["phase"] == "Ready", st

    gadgets.delete(name="g1", namespace=ns)
    t.join(timeout=25)
    kinds = [e[0] for e in events]
    assert kinds[:1] == ["ADDED"] and "MODIFIED" in kinds and kinds[-1] == "DELETED", events

    # Deleting the CRD takes its objects and its kind along.
    gadgets.create(body={**body, "metadata": {"name": "g2"}}, namespace=ns)
    ext.delete_custom_resource_definition(f"gadgets.{GROUP}")

    def gone():
        try:
            ext.read_custom_resource_definition(f"gadgets.{GROUP}")
            return False
        except ApiException as e:
            return e.status == 404

    wait_for("the CRD to be gone", gone)
    try:
        custom.get_namespaced_custom_object(GROUP, "v1", ns, "gadgets", "g2")
        raise AssertionError("g2 is still served after its CRD was deleted")
    except ApiException as e:
        assert e.status == 404, e.body
    print("OK")


def _resource(dyn):
    try:
        dyn.resources.invalidate_cache()
        return dyn.resources.get(api_version=f"{GROUP}/v1", kind="Gadget")
    except Exception:
        return None


if __name__ == "__main__":
    main()
