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
    ..info(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        &["status", "proxy"],
    )
};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

fn svc_type(obj: &Value) -> &str {
    str_at(obj, "/spec/type").unwrap_or("ClusterIP")
}

fn needs_node_ports(obj: &Value) -> bool {
    match svc_type(obj) {
        "NodePort" => true,
        "LoadBalancer" => {
            obj.pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false)
        }
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
        let accessible = externally_accessible(obj);
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
            return;
        };
        default_key(spec, "type", json!("ClusterIP"));
        default_key(spec, "sessionAffinity", json!("None"));
        let ty = spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if ty != "ExternalName" {
            default_key(spec, "ipFamilies", json!(["IPv4"]));
            default_key(spec, "ipFamilyPolicy", json!("SingleStack"));
            default_key(spec, "internalTrafficPolicy", json!("Cluster"));
        }
        if accessible {
            default_key(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        if ty == "LoadBalancer" {
            default_key(spec, "allocateLoadBalancerNodePorts", json!(true));
        }
        // Upstream SetDefaults_Service: ClientIP affinity without a timeout gets 3 hours.
        if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP")
            && spec
                .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
                .is_none_or(Value::is_null)
        {
            spec["sessionAffinityConfig"] =
                json!({"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_AFFINITY_SECONDS}});
        }
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                default_key(p, "protocol", json!("TCP"));
                // A missing, zero or empty targetPort is the port itself.
                let unset = p
                    .get("targetPort")
                    .is_none_or(|t| t.is_null() || *t == json!(0) || *t == json!(""));
                if unset && let Some(port) = p.get("port").cloned() {
                    p["targetPort"] = port;
                }
            }
        }
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        drop_type_dependent_fields(new, old);
        // An update that leaves out what was allocated keeps it (upstream patchAllocatedValues).
        if needs_cluster_ip(new)
            && str_at(new, "/spec/clusterIP").is_none_or(str::is_empty)
            && let Some(ip) = str_at(old, "/spec/clusterIP").filter(|ip| *ip != "None")
        {
            let ip = ip.to_string();
            new["spec"]["clusterIP"] = json!(ip);
            new["spec"]["clusterIPs"] = json!([ip]);
        }
        if needs_node_ports(new) {
            let old_ports: Vec<Value> = old
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if p.get("nodePort").is_some_and(|n| !n.is_null()) {
                        continue;
                    }
                    let same = old_ports.iter().find(|o| {
                        o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol")
                    });
                    if let Some(np) = same
                        .and_then(|o| o.get("nodePort"))
                        .filter(|n| !n.is_null())
                    {
                        p["nodePort"] = np.clone();
                    }
                }
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_service(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let (a, b) = (
            str_at(new, "/spec/clusterIP"),
            str_at(old, "/spec/clusterIP"),
        );
        if needs_cluster_ip(old)
            && needs_cluster_ip(new)
            && b.is_some_and(|b| !b.is_empty())
            && a != b
        {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                &json!(a.unwrap_or_default()),
                "may not change once set",
            ));
        }
        if b == Some("None") && a != b && svc_type(new) != "ExternalName" {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                &json!(a.unwrap_or_default()),
                "may not change once set",
            ));
        }
        errs
    }
    fn allocate(
        &self,
        ctx: &Ctx<'_>,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let name = str_at(obj, "/metadata/name")
            .unwrap_or_default()
            .to_string();
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
        let old_ip = old
            .and_then(|o| str_at(o, "/spec/clusterIP"))
            .and_then(|s| s.parse::<Ipv4Addr>().ok());
        if needs_cluster_ip(obj) {
            let want = str_at(obj, "/spec/clusterIP")
                .filter(|s| !s.is_empty())
                .and_then(|s| s.parse::<Ipv4Addr>().ok());
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
                            AllocError::InUse => format!(
                                "failed to allocate IP {shown}: provided IP is already allocated"
                            ),
                            AllocError::OutOfRange(m) => {
                                format!("failed to allocate IP {shown}: {m}")
                            }
                            AllocError::Full => {
                                "failed to allocate a serviceIP: range is full".to_string()
                            }
                        };
                        return Err(ApiError::invalid(
                            "",
                            "Service",
                            &name,
                            vec![FieldError::invalid(
                                "spec.clusterIPs",
                                &json!([shown]),
                                &why,
                            )],
                        ));
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
            let count = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            for i in 0..count {
                let want = obj["spec"]["ports"][i]
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .map(|n| n as u16);
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
                        return Err(ApiError::invalid(
                            "",
                            "Service",
                            &name,
                            vec![FieldError::invalid(field, &json!(want.unwrap_or(0)), &why)],
                        ));
                    }
                }
            }
        }
        Ok(())
    }
    fn release(&self, ctx: &Ctx<'_>, obj: &Value, keep: Option<&Value>) {
        let ip_of =
            |o: &Value| str_at(o, "/spec/clusterIP").and_then(|s| s.parse::<Ipv4Addr>().ok());
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

/// Upstream's DefaultClientIPServiceAffinitySeconds (3 hours) and its ceiling (a day).
const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i64 = 10800;
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;

/// Upstream's ExternallyAccessible: reachable from outside through node ports, a load balancer
/// or external IPs (where `externalTrafficPolicy` applies).
fn externally_accessible(obj: &Value) -> bool {
    match svc_type(obj) {
        "NodePort" | "LoadBalancer" => true,
        "ClusterIP" => obj
            .pointer("/spec/externalIPs")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty()),
        _ => false,
    }
}

/// Upstream's dropTypeDependentFields: on a type change, fields the old type needed (and that
/// may have been filled in for it) go, unless the user changed them in the same request (then
/// validation has its say). A Service that is no longer a LoadBalancer loses its ingress status.
fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let same = |ptr: &str, new: &Value| new.pointer(ptr) == old.pointer(ptr);
    let remove = |new: &mut Value, key: &str| {
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove(key);
        }
    };
    if svc_type(old) != "ExternalName" && svc_type(new) == "ExternalName" {
        if same("/spec/clusterIP", new) && same("/spec/clusterIPs", new) {
            remove(new, "clusterIP");
            remove(new, "clusterIPs");
        }
        if same("/spec/ipFamilies", new) {
            remove(new, "ipFamilies");
        }
        if same("/spec/ipFamilyPolicy", new) {
            remove(new, "ipFamilyPolicy");
        }
    }
    let node_ports = |o: &Value| -> Vec<Value> {
        o.pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| p.get("nodePort").cloned().unwrap_or(Value::Null))
            .collect()
    };
    if needs_node_ports(old)
        && !needs_node_ports(new)
        && node_ports(old) == node_ports(new)
        && let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut)
    {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            p.remove("nodePort");
        }
    }
    if svc_type(old) == "LoadBalancer" && svc_type(new) != "LoadBalancer" {
        if same("/spec/allocateLoadBalancerNodePorts", new) {
            remove(new, "allocateLoadBalancerNodePorts");
        }
        if same("/spec/loadBalancerClass", new) {
            remove(new, "loadBalancerClass");
        }
    }
    if externally_accessible(old)
        && !externally_accessible(new)
        && same("/spec/externalTrafficPolicy", new)
    {
        remove(new, "externalTrafficPolicy");
    }
    if svc_type(new) != "LoadBalancer" && new.get("status").is_some() {
        new["status"]["loadBalancer"] = json!({});
    }
}

/// Upstream's IsValidPortName (IANA_SVC_NAME): the messages for a named port.
fn port_name_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Upstream's IsValidIP plus ValidateNonSpecialIP, for `spec.externalIPs[i]`.
fn external_ip_errors(field: &str, ip: &str) -> Vec<FieldError> {
    let value = json!(ip);
    let Ok(parsed) = ip.parse::<std::net::IpAddr>() else {
        return vec![FieldError::invalid(
            field,
            &value,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )];
    };
    let mut errs = Vec::new();
    if parsed.is_unspecified() {
        errs.push(FieldError::invalid(
            field,
            &value,
            &format!("may not be unspecified ({ip})"),
        ));
    }
    if parsed.is_loopback() {
        errs.push(FieldError::invalid(
            field,
            &value,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let (link_local, link_local_multicast) = match parsed {
        std::net::IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            ((s[0] & 0xffc0) == 0xfe80, (s[0] & 0xff0f) == 0xff02)
        }
    };
    if link_local {
        errs.push(FieldError::invalid(
            field,
            &value,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_multicast {
        errs.push(FieldError::invalid(
            field,
            &value,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// Upstream's ValidateService (pkg/apis/core/validation), in its order, for what Kaji serves.
fn validate_service(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ty = svc_type(obj);
    let ports: &[Value] = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let cluster_ip = str_at(obj, "/spec/clusterIP");
    let headless = cluster_ip == Some("None");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                &json!("None"),
                &format!("may not be set to 'None' for {ty} services"),
            ));
        }
        "ExternalName" => {
            // The name (a CNAME) may end with a dot to say it is fully qualified.
            let cname = str_at(obj, "/spec/externalName").unwrap_or_default();
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            }
            for m in validation::dns1123_subdomain(cname)
                .into_iter()
                .filter(|_| !cname.is_empty())
            {
                errs.push(FieldError::invalid("spec.externalName", &json!(cname), &m));
            }
        }
        _ => {}
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
        } else if !name.is_empty() {
            for m in validation::dns1123_label(name) {
                errs.push(FieldError::invalid(
                    format!("spec.ports[{i}].name"),
                    &json!(name),
                    &m,
                ));
            }
            if names.contains(&name) {
                errs.push(FieldError::duplicate(
                    format!("spec.ports[{i}].name"),
                    &json!(name),
                ));
            } else {
                names.push(name);
            }
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid(
                format!("spec.ports[{i}].port"),
                p.get("port").unwrap_or(&json!(0)),
                "must be between 1 and 65535, inclusive",
            ));
        }
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            errs.push(FieldError::not_supported(
                format!("spec.ports[{i}].protocol"),
                proto,
                &["SCTP", "TCP", "UDP"],
            ));
        }
        let field = format!("spec.ports[{i}].targetPort");
        match p.get("targetPort") {
            Some(Value::String(s)) => {
                for m in port_name_errors(s) {
                    errs.push(FieldError::invalid(&field, &json!(s), &m));
                }
            }
            Some(Value::Number(n)) if !n.as_i64().is_some_and(|n| (1..=65535).contains(&n)) => {
                errs.push(FieldError::invalid(
                    &field,
                    &json!(n),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            _ => {}
        }
    }
    let affinity = str_at(obj, "/spec/sessionAffinity").unwrap_or("None");
    if !["ClientIP", "None"].contains(&affinity) {
        errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            affinity,
            &["ClientIP", "None"],
        ));
    }
    let config = obj
        .pointer("/spec/sessionAffinityConfig")
        .filter(|c| !c.is_null());
    if affinity == "ClientIP" {
        let when = "when session affinity type is ClientIP";
        match (
            config,
            config
                .and_then(|c| c.get("clientIP"))
                .filter(|c| !c.is_null()),
        ) {
            (None, _) => errs.push(FieldError::required("spec.sessionAffinityConfig", when)),
            (Some(_), None) => errs.push(FieldError::required(
                "spec.sessionAffinityConfig.clientIP",
                when,
            )),
            (Some(_), Some(client)) => {
                match client.get("timeoutSeconds").filter(|t| !t.is_null()) {
                    None => errs.push(FieldError::required(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        when,
                    )),
                    Some(t)
                        if !t
                            .as_i64()
                            .is_some_and(|t| (1..=MAX_CLIENT_IP_AFFINITY_SECONDS).contains(&t)) =>
                    {
                        errs.push(FieldError::invalid(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        t,
                        &format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
                    ));
                    }
                    Some(_) => {}
                }
            }
        }
    } else if affinity == "None" && config.is_some() {
        errs.push(FieldError::forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        ));
    }
    if let Some(ip) = cluster_ip
        && !ip.is_empty()
        && ip != "None"
        && ip.parse::<Ipv4Addr>().is_err()
    {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            &json!(ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    for (i, ip) in obj
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        errs.extend(external_ip_errors(
            &format!("spec.externalIPs[{i}]"),
            ip.as_str().unwrap_or_default(),
        ));
    }
    if !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", ty, TYPES));
    }
    let node_port = |p: &Value| {
        p.get("nodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
    };
    if ty == "ClusterIP" {
        for (i, _) in ports
            .iter()
            .enumerate()
            .filter(|(_, p)| node_port(p).is_some())
        {
            errs.push(FieldError::forbidden(
                format!("spec.ports[{i}].nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    // Node ports and ports are unique per protocol.
    let mut seen_node_ports: Vec<(&str, i64)> = Vec::new();
    let mut seen_ports: Vec<(&str, i64)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if let Some(np) = node_port(p) {
            if seen_node_ports.contains(&(proto, np)) {
                errs.push(FieldError::duplicate(
                    format!("spec.ports[{i}].nodePort"),
                    &json!(np),
                ));
            }
            seen_node_ports.push((proto, np));
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if seen_ports.contains(&(proto, port)) {
            errs.push(duplicate_port(i, proto, port));
        }
        seen_ports.push((proto, port));
    }
    if obj
        .pointer("/spec/loadBalancerSourceRanges")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty())
        && ty != "LoadBalancer"
    {
        errs.push(FieldError::forbidden(
            "spec.LoadBalancerSourceRanges",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if obj
        .pointer("/spec/allocateLoadBalancerNodePorts")
        .is_some_and(|v| !v.is_null())
        && ty != "LoadBalancer"
    {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    let etp = str_at(obj, "/spec/externalTrafficPolicy").unwrap_or_default();
    if !externally_accessible(obj) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                &json!(etp),
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !["Cluster", "Local"].contains(&etp) {
        errs.push(FieldError::not_supported(
            "spec.externalTrafficPolicy",
            etp,
            &["Cluster", "Local"],
        ));
    }
    errs
}

/// Upstream reports a repeated (port, protocol) with the Go value of its map key, a ServicePort
/// holding only those two, e.g. `spec.ports[1]: Duplicate value: core.ServicePort{...}`.
fn duplicate_port(index: usize, protocol: &str, port: i64) -> FieldError {
    FieldError {
        reason: "FieldValueDuplicate",
        field: format!("spec.ports[{index}]"),
        detail: format!(
            "Duplicate value: core.ServicePort{{Name:\"\", Protocol:{protocol:?}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field errors of a Service with this spec, defaulted as the API server does, each as
    /// `field: detail`.
    fn errors(spec: Value) -> Vec<String> {
        let mut obj = json!({"metadata": {"name": "s"}, "spec": spec});
        ServiceStrategy.default(&mut obj);
        ServiceStrategy
            .validate(&obj)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_plain_service_is_valid() {
        assert_eq!(
            errors(json!({"ports": [{"port": 80, "targetPort": "http"}]})),
            Vec::<String>::new()
        );
        let two = json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80, "protocol": "UDP"}]});
        assert_eq!(errors(two), Vec::<String>::new());
    }

    #[test]
    fn duplicate_ports_and_names_as_upstream() {
        let e = errors(json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 80}]}));
        assert_eq!(
            e,
            [
                "spec.ports[1].name: Duplicate value: \"a\"",
                "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
            ]
        );
        let e = errors(
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30080}]}),
        );
        assert_eq!(e, ["spec.ports[1].nodePort: Duplicate value: 30080"]);
        let e = errors(json!({"ports": [{"port": 80}, {"port": 81}]}));
        assert_eq!(
            e,
            [
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value"
            ]
        );
        let e = errors(json!({"ports": [{"name": "Web", "port": 80}]}));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(
                "spec.ports[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn target_ports_are_numbers_or_iana_names() {
        let e = errors(json!({"ports": [{"port": 80, "targetPort": "8080"}]}));
        assert_eq!(
            e,
            [
                "spec.ports[0].targetPort: Invalid value: \"8080\": must contain at least one letter (a-z)"
            ]
        );
        let e = errors(json!({"ports": [{"port": 80, "targetPort": "http--web-server-x"}]}));
        assert_eq!(
            e,
            [
                "spec.ports[0].targetPort: Invalid value: \"http--web-server-x\": must be no more than 15 characters",
                "spec.ports[0].targetPort: Invalid value: \"http--web-server-x\": must not contain consecutive hyphens",
            ]
        );
        let e = errors(json!({"ports": [{"port": 80, "targetPort": 70000}]}));
        assert_eq!(
            e,
            [
                "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"
            ]
        );
        // Zero is "unset": defaulted to the port, as upstream.
        assert_eq!(
            errors(json!({"ports": [{"port": 80, "targetPort": 0}]})),
            Vec::<String>::new()
        );
    }

    #[test]
    fn external_names_are_dns_subdomains() {
        assert_eq!(
            errors(json!({"type": "ExternalName", "externalName": "db.example.com."})),
            Vec::<String>::new()
        );
        let e = errors(json!({"type": "ExternalName", "externalName": "Not_A_Name"}));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("spec.externalName: Invalid value: \"Not_A_Name\": a lowercase RFC 1123 subdomain must consist of"), "{e:?}");
        assert_eq!(
            errors(json!({"type": "ExternalName"})),
            ["spec.externalName: Required value"]
        );
    }

    #[test]
    fn external_ips_must_be_usable_ips() {
        let e = errors(
            json!({"ports": [{"port": 80}], "externalIPs": ["1.2.3.4", "nope", "127.0.0.1", "169.254.1.1"]}),
        );
        assert_eq!(
            e,
            [
                "spec.externalIPs[1]: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "spec.externalIPs[2]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                "spec.externalIPs[3]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)",
            ]
        );
    }

    #[test]
    fn session_affinity_timeouts() {
        let mut obj = json!({"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}});
        ServiceStrategy.default(&mut obj);
        assert_eq!(
            obj["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        let at = |t: i64| {
            errors(
                json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": t}}, "ports": [{"port": 80}]}),
            )
        };
        assert_eq!(at(1), Vec::<String>::new());
        assert_eq!(at(86400), Vec::<String>::new());
        let msg = "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: {}: must be greater than 0 and less than 86400";
        assert_eq!(at(0), [msg.replace("{}", "0")]);
        assert_eq!(at(86401), [msg.replace("{}", "86401")]);
        let e = errors(
            json!({"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}, "ports": [{"port": 80}]}),
        );
        assert_eq!(
            e,
            [
                "spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"
            ]
        );
    }

    #[test]
    fn external_traffic_policy_and_node_ports_by_type() {
        let e = errors(json!({"externalTrafficPolicy": "Local", "ports": [{"port": 80}]}));
        assert_eq!(
            e,
            [
                "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services"
            ]
        );
        // External IPs make a ClusterIP service externally accessible (defaulted to Cluster).
        assert_eq!(
            errors(json!({"externalIPs": ["1.2.3.4"], "ports": [{"port": 80}]})),
            Vec::<String>::new()
        );
        let e = errors(
            json!({"type": "NodePort", "externalTrafficPolicy": "Sometimes", "ports": [{"port": 80}]}),
        );
        assert_eq!(
            e,
            [
                "spec.externalTrafficPolicy: Unsupported value: \"Sometimes\": supported values: \"Cluster\", \"Local\""
            ]
        );
        let e = errors(json!({"ports": [{"port": 80, "nodePort": 30001}]}));
        assert_eq!(
            e,
            ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
    }

    #[test]
    fn a_type_change_drops_what_only_the_old_type_needed() {
        let old = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.9", "externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": true,
            "ports": [{"port": 80, "nodePort": 30080}]}, "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}});
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        ServiceStrategy.default(&mut new);
        ServiceStrategy.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["ports"][0].get("nodePort"), None, "{new}");
        assert_eq!(new["spec"].get("externalTrafficPolicy"), None, "{new}");
        assert_eq!(
            new["spec"].get("allocateLoadBalancerNodePorts"),
            None,
            "{new}"
        );
        assert_eq!(new["status"]["loadBalancer"], json!({}));
        assert_eq!(new["spec"]["clusterIP"], "10.43.0.9");
        assert_eq!(ServiceStrategy.validate_update(&new, &old), Vec::new());
    }
}
