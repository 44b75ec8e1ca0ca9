#!/usr/bin/env python3
"""Generates src/schema.rs: the protobuf message table kaji-protobuf decodes with.

Reads each package's generated.proto (field numbers and wire types) and its Go types (JSON
names, `omitempty`, pointers, `,inline`) from bare git mirrors of kubernetes/api,
kubernetes/apimachinery and kubernetes/apiextensions-apiserver at release-1.33:

    python3 scripts/gen_schema.py > src/schema.rs

Override the mirrors with API_GIT, APIMACHINERY_GIT, APIEXTENSIONS_GIT and the ref with K8S_REF.
"""
import os
import re
import subprocess
import sys

REF = os.environ.get("K8S_REF", "release-1.33")
API = os.environ.get("API_GIT", "/work/.mirror/kubernetes+api/repo")
MACHINERY = os.environ.get("APIMACHINERY_GIT", "/work/.mirror/kubernetes+apimachinery/repo")
EXTENSIONS = os.environ.get("APIEXTENSIONS_GIT", "/work/.mirror/kubernetes+apiextensions-apiserver/repo")

# (git dir, directory, API group or None when the package serves no kinds of its own)
PACKAGES = [
    (MACHINERY, "pkg/apis/meta/v1", "meta.k8s.io"),
    (MACHINERY, "pkg/runtime", None),
    (MACHINERY, "pkg/runtime/schema", None),
    (MACHINERY, "pkg/util/intstr", None),
    (MACHINERY, "pkg/api/resource", None),
    (API, "core/v1", ""),
    (API, "admissionregistration/v1", "admissionregistration.k8s.io"),
    (API, "apps/v1", "apps"),
    (API, "authentication/v1", "authentication.k8s.io"),
    (API, "authorization/v1", "authorization.k8s.io"),
    (API, "autoscaling/v1", "autoscaling"),
    (API, "autoscaling/v2", "autoscaling"),
    (API, "batch/v1", "batch"),
    (API, "certificates/v1", "certificates.k8s.io"),
    (API, "coordination/v1", "coordination.k8s.io"),
    (API, "discovery/v1", "discovery.k8s.io"),
    (API, "events/v1", "events.k8s.io"),
    (API, "flowcontrol/v1", "flowcontrol.apiserver.k8s.io"),
    (API, "networking/v1", "networking.k8s.io"),
    (API, "node/v1", "node.k8s.io"),
    (API, "policy/v1", "policy"),
    (API, "rbac/v1", "rbac.authorization.k8s.io"),
    (API, "scheduling/v1", "scheduling.k8s.io"),
    (API, "storage/v1", "storage.k8s.io"),
    (EXTENSIONS, "pkg/apis/apiextensions/v1", "apiextensions.k8s.io"),
]

SCALARS = {
    "string": "Str", "bytes": "Bytes", "bool": "Bool", "int32": "Int32", "int64": "Int64",
    "uint32": "Uint32", "uint64": "Uint64", "double": "Double", "float": "Float",
}


def git(gitdir, *args):
    return subprocess.run(["git", "--git-dir", gitdir, *args], check=True, capture_output=True, text=True).stdout


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def parse_proto(text):
    """Returns (package, {message: [(label, type, name, number, map_value_type)]})."""
    text = strip_comments(text)
    package = re.search(r"^package\s+([\w.]+)\s*;", text, re.M).group(1)
    messages = {}
    for m in re.finditer(r"^message\s+(\w+)\s*\{(.*?)^\}", text, re.M | re.S):
        fields = []
        for line in m.group(2).splitlines():
            line = line.strip()
            f = re.match(r"(optional|repeated|required)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)", line)
            if f:
                fields.append((f.group(1), f.group(2), f.group(3), int(f.group(4)), None))
                continue
            f = re.match(r"map<\s*(\w+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)", line)
            if f:
                if f.group(1) != "string":
                    sys.exit(f"map key {f.group(1)} in {m.group(1)} is not supported")
                fields.append(("map", f.group(2), f.group(3), int(f.group(4)), f.group(2)))
            elif line and not line.startswith("option") and line != "}":
                sys.exit(f"unparsed line in message {m.group(1)}: {line}")
        messages[m.group(1)] = fields
    return package, messages


def parse_go(sources):
    """Returns ({struct: {proto number: (json name, pointer, omitempty, inline)}}, {slice type names})."""
    structs, slices = {}, set()
    for text in sources:
        for s in re.finditer(r"^type\s+(\w+)\s+\[\]", text, re.M):
            slices.add(s.group(1))
        for s in re.finditer(r"^type\s+(\w+)\s+struct\s*\{(.*?)^\}", text, re.M | re.S):
            fields = structs.setdefault(s.group(1), {})
            for line in s.group(2).splitlines():
                tag = re.search(r"`(.*)`", line)
                if not tag or "protobuf:" not in tag.group(1):
                    continue
                num = re.search(r'protobuf:"\w+,(\d+),', tag.group(1))
                if not num:
                    continue
                decl = line[: line.index("`")].split()
                go_name, go_type = (decl[0], decl[1]) if len(decl) >= 2 else (decl[0].split(".")[-1], decl[0])
                j = re.search(r'json:"([^"]*)"', tag.group(1))
                opts = j.group(1).split(",") if j else [go_name]
                json_name = opts[0] or go_name
                inline = "inline" in opts[1:]
                fields[int(num.group(1))] = (json_name, go_type.startswith("*"), "omitempty" in opts[1:], inline, opts[0] == "-")
    return structs, slices


def main():
    messages = {}  # full name -> (package, short name, fields)
    groups = []
    for gitdir, directory, group in PACKAGES:
        proto = git(gitdir, "show", f"{REF}:{directory}/generated.proto")
        package, msgs = parse_proto(proto)
        names = git(gitdir, "ls-tree", "--name-only", f"{REF}:{directory}").split()
        go = [git(gitdir, "show", f"{REF}:{directory}/{n}") for n in names
              if n.endswith(".go") and not n.endswith("_test.go") and not n.startswith(("generated", "zz_generated"))]
        structs, slices = parse_go(go)
        if group is not None:
            groups.append((group, directory.rstrip("/").split("/")[-1], package))
        for name, fields in msgs.items():
            go_fields = structs.get(name, {})
            out = []
            for label, typ, pname, num, _ in fields:
                json_name, pointer, omitempty, inline, skip = go_fields.get(num, (pname, True, False, False, False))
                if skip:
                    json_name = pname
                if typ in SCALARS:
                    kind = f"Kind::{SCALARS[typ]}"
                    full = None
                else:
                    full = typ[1:] if typ.startswith(".") else f"{package}.{typ}"
                    kind = f'Kind::Message("{full}")'
                if label == "map":
                    shape = "Shape::Map"
                elif label == "repeated":
                    shape = "Shape::Repeated"
                else:
                    shape = "Shape::Single"
                # Go's encoding/json drops a zero value of a non-pointer scalar with omitempty.
                omit_zero = typ in SCALARS and label in ("optional", "required") and omitempty and not pointer
                out.append((num, json_name, kind, shape, omit_zero, inline, full))
            array = name in slices and len(fields) == 1 and fields[0][2] == "items"
            messages[f"{package}.{name}"] = (out, array)

    for name, (fields, _) in messages.items():
        for f in fields:
            if f[6] is not None and f[6] not in messages:
                sys.exit(f"{name}.{f[1]} refers to unknown message {f[6]}")

    w = sys.stdout.write
    w("// @generated by scripts/gen_schema.py from the generated.proto files and Go types of\n")
    w(f"// kubernetes/api, kubernetes/apimachinery and kubernetes/apiextensions-apiserver at {REF}. Do not edit.\n\n")
    w("use crate::table::{Field, Kind, Message, Shape};\n\n")
    w("/// API group -> (version, protobuf package), for finding the message of a kind.\n")
    w("pub(crate) static GROUPS: &[(&str, &str, &str)] = &[\n")
    for group, version, package in groups:
        w(f'    ("{group}", "{version}", "{package}"),\n')
    w("];\n\n")
    w("/// Every message, sorted by full name.\n")
    w("pub(crate) static MESSAGES: &[Message] = &[\n")
    for name in sorted(messages):
        fields, array = messages[name]
        w(f'    Message {{ name: "{name}", array: {str(array).lower()}, fields: &[\n')
        for num, json_name, kind, shape, omit_zero, inline, _ in sorted(fields):
            w(f'        Field {{ number: {num}, json: "{json_name}", kind: {kind}, shape: {shape}, omit_zero: {str(omit_zero).lower()}, inline: {str(inline).lower()} }},\n')
        w("    ] },\n")
    w("];\n")


if __name__ == "__main__":
    main()
