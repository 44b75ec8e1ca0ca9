#!/usr/bin/env python3
"""Regenerate src/patch_facts.rs: the upstream patch/list extensions of the built-in types.

Sources, later ones overriding earlier ones per (definition, property, fact):
  1. api/openapi-spec/swagger.json of a Kubernetes source tree (1.20 is enough for old fields),
  2. k8s-openapi's generated DeepMerge impls (list-type / map-keys as of v1_33),
  3. the Go struct tags and +listType/+listMapKey markers of k8s.io/api at release-1.33.

usage: gen_patch_facts.py SWAGGER_JSON K8S_OPENAPI_V1_33_DIR K8S_API_GIT_DIR > src/patch_facts.rs && cargo fmt -p kaji-openapi
"""
import json
import os
import re
import subprocess
import sys

# Only the groups Kaji serves (plus meta and apiextensions) end up in the table.
PREFIXES = tuple(
    "io.k8s.api.%s." % g
    for g in ["core", "apps", "batch", "autoscaling", "networking", "policy", "rbac",
              "storage", "coordination", "discovery", "events", "scheduling"]
) + ("io.k8s.apimachinery.", "io.k8s.apiextensions-apiserver.")

facts = {}  # (def, prop) -> dict(strategy, key, list_type, map_keys)


def put(defn, prop, **kw):
    if not defn.startswith(PREFIXES):
        return
    f = facts.setdefault((defn, prop), {})
    for k, v in kw.items():
        if v:
            f[k] = v


def from_swagger(path):
    doc = json.load(open(path))
    for name, s in doc["definitions"].items():
        for prop, ps in (s.get("properties") or {}).items():
            put(name, prop,
                strategy=ps.get("x-kubernetes-patch-strategy"),
                key=ps.get("x-kubernetes-patch-merge-key"),
                list_type=ps.get("x-kubernetes-list-type"),
                map_keys=tuple(ps.get("x-kubernetes-list-map-keys") or ()))


def from_deep_merge(root):
    name_re = re.compile(r'fn schema_name\(\).*?\n\s*"([^"]+)"\.into\(\)', re.S)
    for dirpath, _, files in os.walk(root):
        for fn in files:
            if not fn.endswith(".rs"):
                continue
            text = open(os.path.join(dirpath, fn)).read()
            m = name_re.search(text)
            if not m or "merge_strategies::list::" not in text:
                continue
            defn = m.group(1)
            props = re.findall(r'^\s{16}"([\w$-]+)": ', text, re.M)
            by_flat = {p.replace("-", "").lower(): p for p in props}
            starts = list(re.finditer(r'merge_strategies::list::(map|set|atomic)\(\s*&mut self\.(?:r#)?(\w+),', text))
            for i, block in enumerate(starts):
                kind, field = block.group(1), block.group(2)
                end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
                body = text[block.end():end]
                prop = by_flat.get(field.replace("_", "").lower())
                if prop is None:
                    print("warning: %s: no property for %s" % (defn, field), file=sys.stderr)
                    continue
                keys = ()
                if kind == "map":
                    keys = tuple(by_flat_key(k) for k in re.findall(r'lhs\.(?:r#)?(\w+) == rhs', body.split("|current_item")[0]))
                put(defn, prop, list_type=kind, map_keys=keys)


def by_flat_key(rust_name):
    # map keys are simple field names; camelCase them the way the Go json tags are spelt
    parts = rust_name.split("_")
    name = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    return {"containerPort": "containerPort"}.get(name, name)


def from_go_types(git_dir, branch):
    files = subprocess.check_output(
        ["git", "-C", git_dir, "ls-tree", "-r", "--name-only", branch], text=True).split()
    for path in files:
        m = re.match(r'^(\w+)/(v\w+)/types\.go$', path)
        if not m:
            continue
        group, version = m.groups()
        text = subprocess.check_output(["git", "-C", git_dir, "show", "%s:%s" % (branch, path)], text=True)
        struct = None
        markers = []
        for line in text.splitlines():
            s = line.strip()
            sm = re.match(r'^type (\w+) struct \{', line)
            if sm:
                struct, markers = sm.group(1), []
                continue
            if line.startswith("}"):
                struct = None
                continue
            if struct is None:
                continue
            if s.startswith("//"):
                mk = re.match(r'//\s*\+(listType|listMapKey|patchStrategy|patchMergeKey)=(\S+)', s)
                if mk:
                    markers.append(mk.groups())
                continue
            fm = re.match(r'^(\w+)\s+[^`]*`([^`]*)`', s)
            if not fm:
                if not s:
                    markers = []
                continue
            tags = dict(re.findall(r'(\w+):"([^"]*)"', fm.group(2)))
            json_name = tags.get("json", "").split(",")[0]
            mk = markers
            markers = []
            if not json_name or json_name == "-":
                continue
            list_type = next((v for k, v in mk if k == "listType"), None)
            map_keys = tuple(v for k, v in mk if k == "listMapKey")
            put("io.k8s.api.%s.%s.%s" % (group, version, struct), json_name,
                strategy=tags.get("patchStrategy"), key=tags.get("patchMergeKey"),
                list_type=list_type, map_keys=map_keys)


def main():
    swagger, deep_merge_root, api_git = sys.argv[1:4]
    from_swagger(swagger)
    from_deep_merge(deep_merge_root)
    from_go_types(api_git, "release-1.33")
    out = sys.stdout
    out.write("// @generated by scripts/gen_patch_facts.py -- do not edit by hand.\n")
    out.write("//! Upstream patch and list extensions of the built-in types' properties: strategic merge\n")
    out.write("//! patch strategy and merge key, and the server-side-apply list type and map keys.\n\n")
    out.write("/// (definition, property, x-kubernetes-patch-strategy, x-kubernetes-patch-merge-key,\n")
    out.write("/// x-kubernetes-list-type, x-kubernetes-list-map-keys); \"\" where upstream has none.\n")
    out.write("pub(crate) type PatchFact = (&'static str, &'static str, &'static str, &'static str, &'static str, &'static [&'static str]);\n\n")
    out.write("pub(crate) static PATCH_FACTS: &[PatchFact] = &[\n")
    for (defn, prop) in sorted(facts):
        f = facts[(defn, prop)]
        if not f:
            continue
        keys = ", ".join('"%s"' % k for k in f.get("map_keys", ()))
        out.write('    ("%s", "%s", "%s", "%s", "%s", &[%s]),\n' % (
            defn, prop, f.get("strategy", ""), f.get("key", ""), f.get("list_type", ""), keys))
    out.write("];\n")


main()
