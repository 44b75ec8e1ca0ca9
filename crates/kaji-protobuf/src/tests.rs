//! Hand-encoded messages, checked against the JSON upstream gives the same objects.

use super::*;
use serde_json::json;

/// A tiny protobuf encoder for building test bodies.
#[derive(Default)]
struct Msg(Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    fn new() -> Self {
        Msg::default()
    }
    fn int(mut self, field: u32, v: i64) -> Self {
        varint(&mut self.0, u64::from(field) << 3);
        varint(&mut self.0, v as u64);
        self
    }
    fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        varint(&mut self.0, u64::from(field) << 3 | 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }
    fn entry(self, field: u32, key: &str, value: Msg) -> Self {
        self.msg(field, Msg::new().str(1, key).msg(2, value))
    }
    fn str_entry(self, field: u32, key: &str, value: &[u8]) -> Self {
        self.msg(field, Msg::new().str(1, key).bytes(2, value))
    }
}

/// `k8s\0` + runtime.Unknown around `raw`.
fn envelope(api_version: &str, kind: &str, raw: Msg) -> Vec<u8> {
    let unknown = Msg::new().msg(1, Msg::new().str(1, api_version).str(2, kind)).msg(2, raw).str(3, "").str(4, "");
    let mut body = MAGIC.to_vec();
    body.extend(unknown.0);
    body
}

/// ObjectMeta as Go's gogo-protobuf writes it: every non-pointer field, even when empty.
fn object_meta(name: &str, namespace: &str) -> Msg {
    Msg::new()
        .str(1, name)
        .str(2, "")
        .str(3, namespace)
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .int(7, 0)
        .msg(8, Msg::new())
}

#[test]
fn deployment() {
    let labels = |m: Msg| m.str_entry(11, "app", b"web");
    let container = Msg::new()
        .str(1, "nginx")
        .str(2, "nginx:1.16")
        .msg(8, Msg::new())
        .str(13, "/dev/termination-log")
        .str(14, "IfNotPresent")
        .str(5, "");
    let template = Msg::new()
        .msg(1, labels(Msg::new().msg(8, Msg::new())))
        .msg(2, Msg::new().msg(2, container).str(3, "Always").str(6, "ClusterFirst"));
    let spec = Msg::new()
        .int(1, 2)
        .msg(2, Msg::new().str_entry(1, "app", b"web"))
        .msg(3, template)
        .msg(4, Msg::new().str(1, "RollingUpdate").msg(2, Msg::new().msg(1, Msg::new().int(1, 1).str(3, "25%")).msg(2, Msg::new().int(1, 1).str(3, "25%"))))
        .int(5, 0)
        .int(7, 0);
    let raw = Msg::new().msg(1, labels(object_meta("web", "default"))).msg(2, spec).msg(3, Msg::new());
    let got = decode(&envelope("apps/v1", "Deployment", raw)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.16",
                            "resources": {},
                            "terminationMessagePath": "/dev/termination-log",
                            "imagePullPolicy": "IfNotPresent",
                        }],
                        "restartPolicy": "Always",
                        "dnsPolicy": "ClusterFirst",
                    },
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            },
            "status": {},
        })
    );
    // Keys keep the order upstream's JSON has: apiVersion and kind first.
    let keys: Vec<_> = got.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec", "status"]);
}

#[test]
fn replicas_zero_is_kept() {
    let raw = Msg::new().msg(1, object_meta("web", "")).msg(2, Msg::new().int(1, 0).int(5, 0));
    let got = decode(&envelope("apps/v1", "Deployment", raw)).unwrap();
    assert_eq!(got["spec"], json!({"replicas": 0}));
}

#[test]
fn secret_with_bytes() {
    let raw = Msg::new()
        .msg(1, object_meta("s", ""))
        .str_entry(2, "a", b"b")
        .str_entry(2, "bin", &[0, 255, 1])
        .str(3, "Opaque");
    let got = decode(&envelope("v1", "Secret", raw)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "Yg==", "bin": "AP8B"}, "type": "Opaque"})
    );
}

#[test]
fn configmap_maps() {
    let raw = Msg::new().msg(1, object_meta("c", "")).str_entry(2, "x", b"y").str_entry(3, "b", b"\x01").msg(2, Msg::new().str(1, "empty"));
    let got = decode(&envelope("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(got["data"], json!({"x": "y", "empty": ""}));
    assert_eq!(got["binaryData"], json!({"b": "AQ=="}));
}

#[test]
fn int_or_string_and_quantity() {
    let port = |target: Msg| Msg::new().str(1, "tcp").str(2, "TCP").int(3, 80).msg(4, target).int(5, 0);
    let spec = Msg::new().msg(1, port(Msg::new().int(1, 0).int(2, 8080).str(3, ""))).msg(1, port(Msg::new().int(1, 1).str(3, "http")));
    let got = decode(&envelope("v1", "Service", Msg::new().msg(1, object_meta("s1", "")).msg(2, spec))).unwrap();
    assert_eq!(got["spec"]["ports"][0], json!({"name": "tcp", "protocol": "TCP", "port": 80, "targetPort": 8080}));
    assert_eq!(got["spec"]["ports"][1]["targetPort"], json!("http"));

    let limits = Msg::new().entry(1, "cpu", Msg::new().str(1, "500m")).entry(1, "memory", Msg::new().str(1, "1Gi"));
    let container = Msg::new().str(1, "c").msg(8, limits);
    let got = decode(&envelope("v1", "Pod", Msg::new().msg(2, Msg::new().msg(2, container)))).unwrap();
    assert_eq!(got["spec"]["containers"][0]["resources"], json!({"limits": {"cpu": "500m", "memory": "1Gi"}}));
}

#[test]
fn times() {
    let meta = Msg::new().str(1, "e").msg(8, Msg::new().int(1, 1_700_000_000).int(2, 5));
    let raw = Msg::new().msg(1, meta).msg(2, Msg::new().int(1, 1_700_000_000).int(2, 123_456_789)).str(4, "r");
    let got = decode(&envelope("events.k8s.io/v1", "Event", raw)).unwrap();
    assert_eq!(got["metadata"]["creationTimestamp"], json!("2023-11-14T22:13:20Z"));
    assert_eq!(got["eventTime"], json!("2023-11-14T22:13:20.123456Z"));
    // An empty Time is Go's zero time (null): left out.
    assert!(decode(&envelope("v1", "Namespace", Msg::new().msg(1, object_meta("n1", "")))).unwrap()["metadata"].get("creationTimestamp").is_none());
}

#[test]
fn durations_print_as_go_does() {
    use crate::special::go_duration;
    for (ns, s) in [(0, "0s"), (1_500, "1.5µs"), (100_000_000, "100ms"), (3_600_000_000_000, "1h0m0s"), (61_500_000_000, "1m1.5s"), (-2_000_000_000, "-2s")] {
        assert_eq!(go_duration(ns), s);
    }
}

#[test]
fn managed_fields_and_raw_extension() {
    let entry = Msg::new().str(1, "kubectl-create").str(2, "Update").str(3, "apps/v1").msg(4, Msg::new().int(1, 1_700_000_000)).str(6, "FieldsV1").msg(7, Msg::new().bytes(1, br#"{"f:spec":{}}"#));
    let meta = Msg::new().str(1, "r").msg(17, entry);
    let raw = Msg::new().msg(1, meta).msg(2, Msg::new().bytes(1, br#"{"spec":{"a":1}}"#)).int(3, 4);
    let got = decode(&envelope("apps/v1", "ControllerRevision", raw)).unwrap();
    assert_eq!(
        got["metadata"]["managedFields"],
        json!([{"manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1", "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}])
    );
    assert_eq!(got["data"], json!({"spec": {"a": 1}}));
    assert_eq!(got["revision"], json!(4));
}

#[test]
fn inline_fields_and_delete_options() {
    let volume = Msg::new().str(1, "v").msg(2, Msg::new().msg(2, Msg::new().str(1, "")));
    let got = decode(&envelope("v1", "Pod", Msg::new().msg(2, Msg::new().msg(1, volume)))).unwrap();
    assert_eq!(got["spec"]["volumes"], json!([{"name": "v", "emptyDir": {}}]));

    let opts = Msg::new().int(1, 0).msg(2, Msg::new().str(1, "uid-1")).str(4, "Foreground");
    let got = decode(&envelope("v1", "DeleteOptions", opts)).unwrap();
    assert_eq!(got, json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": "uid-1"}, "propagationPolicy": "Foreground"}));

    let eviction = Msg::new().msg(1, object_meta("p", "default")).msg(2, Msg::new().int(1, 30));
    let got = decode(&envelope("policy/v1", "Eviction", eviction)).unwrap();
    assert_eq!(got["deleteOptions"], json!({"gracePeriodSeconds": 30}));
}

#[test]
fn custom_resource_definition_schema() {
    let string_prop = Msg::new().str(5, "string");
    let props = Msg::new()
        .str(5, "object")
        .entry(29, "name", string_prop)
        .msg(30, Msg::new().int(1, 1))
        .int(38, 1)
        .msg(8, Msg::new().bytes(1, b"{\"a\":1}"))
        .str(3, "#/x");
    let version = Msg::new().str(1, "v1").int(2, 1).int(3, 1).msg(4, Msg::new().msg(1, props));
    let spec = Msg::new().str(1, "example.com").msg(3, Msg::new().str(1, "widgets").str(4, "Widget")).str(4, "Namespaced").msg(7, version);
    let got = decode(&envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", Msg::new().msg(1, object_meta("widgets.example.com", "")).msg(2, spec))).unwrap();
    let schema = &got["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    // serde_json's maps compare without regard to order.
    assert_eq!(
        *schema,
        json!({"type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": true, "x-kubernetes-preserve-unknown-fields": true, "default": {"a": 1}, "$ref": "#/x"})
    );
}

#[test]
fn malformed_input_errors_without_panicking() {
    assert!(decode(b"").is_err());
    assert!(decode(b"{\"kind\":\"Pod\"}").is_err());
    assert!(decode(&envelope("example.com/v1", "Widget", Msg::new())).is_err());
    // A string where a message belongs, a truncated field, a varint for a map entry.
    assert!(decode(&envelope("v1", "Pod", Msg::new().int(1, 5))).is_err());
    let mut truncated = envelope("v1", "Pod", Msg::new().msg(1, object_meta("p", "")));
    truncated.truncate(truncated.len() - 3);
    assert!(decode(&truncated).is_err());
    // Deep nesting is refused, not a stack overflow.
    let mut deep = Msg::new().str(5, "object");
    for _ in 0..200 {
        deep = Msg::new().msg(28, deep);
    }
    let crd = Msg::new().msg(2, Msg::new().msg(7, Msg::new().msg(4, Msg::new().msg(1, deep))));
    assert!(decode(&envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd)).is_err());
    // Every prefix of a valid body decodes or errors, never panics.
    let body = envelope("v1", "Secret", Msg::new().msg(1, object_meta("s", "")).str_entry(2, "a", b"b"));
    for n in 0..body.len() {
        let _ = decode(&body[..n]);
    }
}
