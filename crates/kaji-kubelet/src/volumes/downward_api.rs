//! downwardAPI files (a volume of their own, or a projected source), as upstream's
//! `downwardapi.CollectData`: `fieldRef` reads the pod's metadata (name, namespace, uid, one
//! label or annotation, or all of them as sorted `key="value"` lines, Go's `%q` quoting);
//! `resourceFieldRef` reads a container's requests or limits, a missing limit being the node's
//! allocatable, divided by `divisor` and rounded up, computed exactly as upstream's quantities.
//! Every item is tried; the errors are reported together, as upstream's aggregate error.

use super::atomic_writer::Payload;
use crate::resources::{Amounts, amounts, find_container};
use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kaji_api::quantity::{ceil_div, milli_value, value};
use std::collections::BTreeMap;

/// The pod's and node's facts the downward API exposes besides the pod object (its IPs, and the
/// node's capacity for when the API does not answer).
pub struct PodFacts<'a> {
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    pub node_cpu: &'a str,
    pub node_memory: &'a str,
}

/// The node's allocatable resources, in upstream's units: millicores and bytes.
pub type Allocatable = Amounts;

impl Amounts {
    /// From the node's status as upstream's `GetNodeAllocatable` (the Node object), falling back
    /// to what the agent measured when the API does not answer.
    pub async fn read(client: &kube::Client, pod: &Pod, facts: &PodFacts<'_>) -> Allocatable {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let from_api = match node {
            Some(n) => kube::Api::<Node>::all(client.clone())
                .get_opt(&n)
                .await
                .ok()
                .flatten()
                .and_then(|n| n.status)
                .and_then(|s| s.allocatable),
            None => None,
        };
        let a = Amounts::of(from_api.as_ref());
        Allocatable {
            cpu_milli: a.cpu_milli.or_else(|| milli_value(facts.node_cpu)),
            memory: a.memory.or_else(|| value(facts.node_memory)),
            ephemeral_storage: a.ephemeral_storage,
        }
    }
}

/// Whether any item needs the node's allocatable resources.
pub fn needs_allocatable(items: &[DownwardAPIVolumeFile]) -> bool {
    items.iter().any(|i| i.resource_field_ref.is_some())
}

/// The files of `items`: path -> (content, mode).
pub fn collect(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    allocatable: &Allocatable,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    let mut errors = Vec::new();
    for it in items {
        let mode = it.mode.map_or(default_mode, |m| m as u32 & 0o7777);
        let value = if let Some(f) = &it.field_ref {
            field_value(pod, &f.field_path)
        } else if let Some(r) = &it.resource_field_ref {
            let name = r.container_name.clone().unwrap_or_default();
            match find_container(pod, &name) {
                Some(c) => resource_value(
                    c,
                    &r.resource,
                    r.divisor.as_ref().map(|q| q.0.as_str()),
                    allocatable,
                ),
                None => Err(format!("container {name} not found")),
            }
        } else {
            Ok(String::new())
        };
        match value {
            Ok(v) => {
                out.insert(it.path.clone(), (v.into_bytes(), mode));
            }
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(out),
        1 => Err(errors.remove(0)),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

/// A `fieldRef` as a downward API volume file (upstream `ExtractFieldPathAsString`, which knows
/// metadata only: the API refuses other paths for volumes).
pub fn field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);
    if let Some((base, key)) = split_subscript(path) {
        return match base {
            "metadata.annotations" => Ok(annotations.get(key).cloned().unwrap_or_default()),
            "metadata.labels" => Ok(labels.get(key).cloned().unwrap_or_default()),
            _ => Err(format!("fieldPath {path:?} does not support subscript")),
        };
    }
    match path {
        "metadata.annotations" => Ok(format_map(annotations)),
        "metadata.labels" => Ok(format_map(labels)),
        "metadata.name" => Ok(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(meta.uid.clone().unwrap_or_default()),
        other => Err(format!("unsupported fieldPath: {other}")),
    }
}

/// `metadata.labels['key']` -> ("metadata.labels", "key").
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let s = path.strip_suffix("']")?;
    let (base, key) = s.split_once("['")?;
    (!base.is_empty()).then_some((base, key))
}

/// Upstream's `fieldpath.FormatMap`: one `key="value"` line per entry, keys sorted, no final
/// newline.
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote`: a double-quoted string with Go escapes for quotes, backslashes and
/// characters that are not printable (control characters and spaces other than ' ').
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            ' ' => out.push(' '),
            c if (c as u32) < 0x80 && (c.is_ascii_control()) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || c.is_whitespace() || is_format_char(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Unicode format characters (category Cf) that Go does not print as they are.
fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB)
}

/// A container resource as upstream's `ExtractResourceValueByContainerNameAndNodeAllocatable`:
/// cpu as ceil(millicores / divisor millicores), the others as ceil(bytes / divisor bytes).
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    allocatable: &Allocatable,
) -> Result<String, String> {
    let divisor = divisor.filter(|d| milli_value(d).is_some_and(|v| v != 0));
    let (limits, requests) = amounts(c);
    let cpu = |v: Option<i128>| {
        let d = divisor.and_then(milli_value).unwrap_or(1000);
        ceil_div(v.unwrap_or(0), d)
    };
    let bytes = |v: Option<i128>| {
        let d = divisor.and_then(value).unwrap_or(1);
        ceil_div(v.unwrap_or(0), d.max(1))
    };
    // A missing (or zero) limit is the node's allocatable amount.
    let limit = |v: Option<i128>, alloc: Option<i128>| v.filter(|v| *v != 0).or(alloc);
    let value = match resource {
        "limits.cpu" => cpu(limit(limits.cpu_milli, allocatable.cpu_milli)),
        "limits.memory" => bytes(limit(limits.memory, allocatable.memory)),
        "limits.ephemeral-storage" => bytes(limit(
            limits.ephemeral_storage,
            allocatable.ephemeral_storage,
        )),
        "requests.cpu" => cpu(requests.cpu_milli),
        "requests.memory" => bytes(requests.memory),
        "requests.ephemeral-storage" => bytes(requests.ephemeral_storage),
        other => {
            // Huge pages: `requests.hugepages-2Mi`, `limits.hugepages-1Gi`.
            let r = c.resources.as_ref();
            let get = |m: Option<&BTreeMap<String, Quantity>>, k: &str| {
                m.and_then(|m| m.get(k)).and_then(|q| value(&q.0))
            };
            let limits = r.and_then(|r| r.limits.as_ref());
            let requests = r.and_then(|r| r.requests.as_ref());
            match (other.split_once('.'), other.contains(".hugepages-")) {
                (Some(("requests", name)), true) => {
                    bytes(get(requests, name).or(get(limits, name)))
                }
                (Some(("limits", name)), true) => bytes(get(limits, name)),
                _ => return Err(format!("unsupported container resource : {other}")),
            }
        }
    };
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    #[test]
    fn labels_are_quoted_as_go_does() {
        let mut m = BTreeMap::new();
        m.insert("b".to_string(), "two words".to_string());
        m.insert("a".to_string(), "say \"hi\"\n\u{a0}é".to_string());
        assert_eq!(
            format_map(&m),
            "a=\"say \\\"hi\\\"\\n\\u00a0é\"\nb=\"two words\""
        );
        assert_eq!(format_map(&BTreeMap::new()), "");
    }

    fn container(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        let list = |l: &[(&str, &str)]| {
            (!l.is_empty()).then(|| {
                l.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: list(limits),
                requests: list(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn resources_round_up_and_default_to_allocatable() {
        let alloc = Allocatable {
            cpu_milli: Some(2000),
            memory: Some(8 << 30),
            ephemeral_storage: Some(100 << 30),
        };
        let c = container(
            &[("cpu", "1250m"), ("memory", "64Mi")],
            &[("memory", "32Mi")],
        );
        let v = |r: &str, d: Option<&str>| resource_value(&c, r, d, &alloc).unwrap();
        assert_eq!(v("limits.cpu", None), "2");
        assert_eq!(v("limits.cpu", Some("1m")), "1250");
        assert_eq!(v("limits.memory", Some("1Mi")), "64");
        assert_eq!(v("requests.memory", Some("1Mi")), "32");
        assert_eq!(v("requests.cpu", Some("1m")), "1250");
        assert_eq!(v("limits.ephemeral-storage", Some("1Gi")), "100");
        let none = container(&[], &[]);
        let v = |r: &str, d: Option<&str>| resource_value(&none, r, d, &alloc).unwrap();
        assert_eq!(v("limits.cpu", None), "2");
        assert_eq!(v("limits.memory", Some("1Gi")), "8");
        assert_eq!(v("requests.memory", None), "0");
        assert!(resource_value(&none, "limits.gpu", None, &alloc).is_err());
    }
}
