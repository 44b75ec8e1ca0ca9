//! Services: defaults (type, ports, families), validation, ClusterIP and NodePort allocation at
//! create time, clusterIP immutable once set.

use crate::allocator::AllocError;
use crate::registry::{Ctx, Strategy, default_key, info, str_at};
use kaji_api::{ApiError, FieldError, ResourceInfo, validation};
use serde_json::{Value, json};
use std::net::Ipv4Addr;

pub struct ServiceStrategy;

static INFO: ResourceInfo = ResourceInfo {
    categories: &["all"],
    ..info("", "v1", "Service", "services", "service", true, &["svc"], &["status", "proxy"])
};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

fn svc_type(obj: &Value) -> &str {
    str_at(obj, "/spec/type").unwrap_or("ClusterIP")
}

fn needs_node_ports(obj: &Value) -> bool {
    match svc_type(obj) {
        "NodePort" => true,
        "LoadBalancer" => obj.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false),
        _ => false,
    }
}

fn needs_cluster_ip(obj: &Value) -> bool {
    svc_type(obj) != "ExternalName" && str_at(obj, "/spec/clusterIP") != Some("None")
}

impl Strategy for ServiceStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn has_status(&self) -> bool {
        true
    }
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::dns1035_label(name)
    }
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
        default_key(spec, "type", json!("ClusterIP"));
        default_key(spec, "sessionAffinity", json!("None"));
        let ty = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
        if ty != "ExternalName" {
            default_key(spec, "ipFamilies", json!(["IPv4"]));
            default_key(spec, "ipFamilyPolicy", json!("SingleStack"));
            default_key(spec, "internalTrafficPolicy", json!("Cluster"));
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            default_key(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        if ty == "LoadBalancer" {
            default_key(spec, "allocateLoadBalancerNodePorts", json!(true));
        }
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                default_key(p, "protocol", json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    default_key(p, "targetPort", port);
                }
            }
        }
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // An update that leaves out what was allocated keeps it (upstream patchAllocatedValues).
        if needs_cluster_ip(new) && str_at(new, "/spec/clusterIP").is_none_or(str::is_empty)
            && let Some(ip) = str_at(old, "/spec/clusterIP").filter(|ip| *ip != "None")
        {
            let ip = ip.to_string();
            new["spec"]["clusterIP"] = json!(ip);
            new["spec"]["clusterIPs"] = json!([ip]);
        }
        if needs_node_ports(new) {
            let old_ports: Vec<Value> = old.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
            if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if p.get("nodePort").is_some_and(|n| !n.is_null()) {
                        continue;
                    }
                    let same = old_ports.iter().find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"));
                    if let Some(np) = same.and_then(|o| o.get("nodePort")).filter(|n| !n.is_null()) {
                        p["nodePort"] = np.clone();
                    }
                }
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let ty = svc_type(obj);
        if !TYPES.contains(&ty) {
            errs.push(FieldError::not_supported("spec.type", ty, TYPES));
        }
        let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
        let headless = str_at(obj, "/spec/clusterIP") == Some("None");
        if ty == "ExternalName" {
            if str_at(obj, "/spec/externalName").is_none_or(str::is_empty) {
                errs.push(FieldError::required("spec.externalName", ""));
            }
        } else if ports.is_none_or(Vec::is_empty) && !headless {
            errs.push(FieldError::required("spec.ports", ""));
        }
        let many = ports.is_some_and(|p| p.len() > 1);
        let mut names: Vec<&str> = Vec::new();
        for (i, p) in ports.into_iter().flatten().enumerate() {
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            if many && name.is_empty() {
                errs.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
            }
            if !name.is_empty() {
                if names.contains(&name) {
                    errs.push(FieldError::duplicate(format!("spec.ports[{i}].name"), &json!(name)));
                }
                names.push(name);
            }
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&port) {
                errs.push(FieldError::invalid(format!("spec.ports[{i}].port"), p.get("port").unwrap_or(&json!(0)), "must be between 1 and 65535, inclusive"));
            }
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            if !["TCP", "UDP", "SCTP"].contains(&proto) {
                errs.push(FieldError::not_supported(format!("spec.ports[{i}].protocol"), proto, &["SCTP", "TCP", "UDP"]));
            }
            if p.get("nodePort").and_then(Value::as_i64).is_some() && !needs_node_ports(obj) {
                errs.push(FieldError::forbidden(format!("spec.ports[{i}].nodePort"), "may not be used when `type` is 'ClusterIP'"));
            }
        }
        if let Some(ip) = str_at(obj, "/spec/clusterIP")
            && !ip.is_empty()
            && ip != "None"
            && ip.parse::<Ipv4Addr>().is_err()
        {
            errs.push(FieldError::invalid("spec.clusterIPs[0]", &json!(ip), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let (a, b) = (str_at(new, "/spec/clusterIP"), str_at(old, "/spec/clusterIP"));
        if needs_cluster_ip(old) && needs_cluster_ip(new) && b.is_some_and(|b| !b.is_empty()) && a != b {
            errs.push(FieldError::invalid("spec.clusterIPs[0]", &json!(a.unwrap_or_default()), "may not change once set"));
        }
        if b == Some("None") && a != b && svc_type(new) != "ExternalName" {
            errs.push(FieldError::invalid("spec.clusterIPs[0]", &json!(a.unwrap_or_default()), "may not change once set"));
        }
        errs
    }
    fn allocate(&self, ctx: &Ctx<'_>, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        let name = str_at(obj, "/metadata/name").unwrap_or_default().to_string();
        let mut taken_ip: Option<Ipv4Addr> = None;
        let mut taken_ports: Vec<u16> = Vec::new();
        let undo = |ip: Option<Ipv4Addr>, ports: &[u16]| {
            if let Some(ip) = ip {
                ctx.allocators.release_ip(ip);
            }
            for p in ports {
                ctx.allocators.release_port(*p);
            }
        };
        let old_ip = old.and_then(|o| str_at(o, "/spec/clusterIP")).and_then(|s| s.parse::<Ipv4Addr>().ok());
        if needs_cluster_ip(obj) {
            let want = str_at(obj, "/spec/clusterIP").filter(|s| !s.is_empty()).and_then(|s| s.parse::<Ipv4Addr>().ok());
            if want.is_none() || want != old_ip {
                match ctx.allocators.allocate_ip(want) {
                    Ok(ip) => {
                        taken_ip = Some(ip);
                        obj["spec"]["clusterIP"] = json!(ip.to_string());
                        obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
                    }
                    Err(e) => {
                        let shown = want.map(|w| w.to_string()).unwrap_or_default();
                        let why = match e {
                            AllocError::InUse => format!("failed to allocate IP {shown}: provided IP is already allocated"),
                            AllocError::OutOfRange(m) => format!("failed to allocate IP {shown}: {m}"),
                            AllocError::Full => "failed to allocate a serviceIP: range is full".to_string(),
                        };
                        return Err(ApiError::invalid("", "Service", &name, vec![FieldError::invalid("spec.clusterIPs", &json!([shown]), &why)]));
                    }
                }
            } else if let Some(ip) = want {
                obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
        }
        if needs_node_ports(obj) {
            let old_ports: Vec<u16> = old
                .filter(|o| needs_node_ports(o))
                .and_then(|o| o.pointer("/spec/ports").and_then(Value::as_array))
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_u64).map(|n| n as u16))
                .collect();
            let count = obj.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len);
            for i in 0..count {
                let want = obj["spec"]["ports"][i].get("nodePort").and_then(Value::as_u64).map(|n| n as u16);
                if want.is_some_and(|w| old_ports.contains(&w)) {
                    continue;
                }
                match ctx.allocators.allocate_port(want) {
                    Ok(p) => {
                        taken_ports.push(p);
                        obj["spec"]["ports"][i]["nodePort"] = json!(p);
                    }
                    Err(e) => {
                        undo(taken_ip, &taken_ports);
                        let why = match e {
                            AllocError::InUse => "provided port is already allocated".to_string(),
                            AllocError::OutOfRange(m) => m,
                            AllocError::Full => "range is full".to_string(),
                        };
                        let field = format!("spec.ports[{i}].nodePort");
                        return Err(ApiError::invalid("", "Service", &name, vec![FieldError::invalid(field, &json!(want.unwrap_or(0)), &why)]));
                    }
                }
            }
        }
        Ok(())
    }
    fn release(&self, ctx: &Ctx<'_>, obj: &Value, keep: Option<&Value>) {
        let ip_of = |o: &Value| str_at(o, "/spec/clusterIP").and_then(|s| s.parse::<Ipv4Addr>().ok());
        let ports_of = |o: &Value| -> Vec<u16> {
            o.pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_u64).map(|n| n as u16))
                .collect()
        };
        let keep_ip = keep.and_then(ip_of);
        let keep_ports = keep.map(ports_of).unwrap_or_default();
        if let Some(ip) = ip_of(obj)
            && Some(ip) != keep_ip
        {
            ctx.allocators.release_ip(ip);
        }
        for p in ports_of(obj) {
            if !keep_ports.contains(&p) {
                ctx.allocators.release_port(p);
            }
        }
    }
}
