//! The default ClusterRoles and ClusterRoleBindings (upstream's
//! plugin/pkg/auth/authorizer/rbac/bootstrappolicy, 1.33), created at start and reconciled as
//! upstream's `rbac/bootstrap-roles` PostStartHook: an object whose
//! `rbac.authorization.k8s.io/autoupdate` annotation is not "false" gets back the rules,
//! labels, aggregation selectors and subjects it lacks (a binding whose roleRef changed is
//! recreated). Beside upstream's, metrics-server's `system:aggregated-metrics-reader`
//! (aggregated into view, edit and admin), since the metrics API is built in here as k3s
//! ships metrics-server.
//!
//! The policy is a table ([`POLICY`]), one line per role, rule or binding:
//! - `role NAME [+L]... [~L]...`: a ClusterRole; `+L` labels it
//!   `rbac.authorization.k8s.io/L: "true"`, `~L` aggregates the ClusterRoles so labelled;
//! - `controller NAME`: ClusterRole `system:controller:NAME`, bound to the ServiceAccount
//!   kube-system/NAME as upstream and, because Kaji runs every controller under one identity
//!   (no `--use-service-account-credentials`), to User `system:kube-controller-manager`;
//! - `  VERBS GROUPS RESOURCES [NAMES]`: a rule (comma lists; `core` is the "" group; verbs
//!   `R` = get,list,watch, `W` = create,update,patch,delete,deletecollection, `RW`, `RU` =
//!   R + update); `  VERBS url URLS`: a non-resource rule; `  events`: upstream's eventsRule;
//! - `bind ROLE SUBJECT...`: ClusterRoleBinding ROLE of ClusterRole ROLE to `group:G`,
//!   `user:U` or `sa:NS/NAME`.

use super::rbac::{GROUP, PolicyRule, covers};
use crate::ApiServer;
use crate::registry::store::{Part, Store, WriteOptions};
use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const AUTOUPDATE: &str = "rbac.authorization.k8s.io/autoupdate";
pub const BOOTSTRAPPING: &str = "kubernetes.io/bootstrapping";

const POLICY: &str = r#"
role cluster-admin
  * * *
  * url *
role system:discovery
  get url /livez,/readyz,/healthz,/version,/version/,/openapi,/openapi/*,/api,/api/*,/apis,/apis/*
role system:monitoring
  get url /metrics,/metrics/slis,/livez,/readyz,/healthz,/livez/*,/readyz/*,/healthz/*
role system:basic-user
  create authorization.k8s.io selfsubjectaccessreviews,selfsubjectrulesreviews
  create authentication.k8s.io selfsubjectreviews
role system:public-info-viewer
  get url /livez,/readyz,/healthz,/version,/version/
role admin ~aggregate-to-admin
role edit +aggregate-to-admin ~aggregate-to-edit
role view +aggregate-to-edit ~aggregate-to-view
role system:aggregate-to-admin +aggregate-to-admin
  create authorization.k8s.io localsubjectaccessreviews
  RW rbac.authorization.k8s.io roles,rolebindings
role system:aggregate-to-edit +aggregate-to-edit
  R core pods/attach,pods/proxy,pods/exec,pods/portforward,secrets,services/proxy
  impersonate core serviceaccounts
  W core pods,pods/attach,pods/proxy,pods/exec,pods/portforward
  create core pods/eviction
  W core replicationcontrollers,replicationcontrollers/scale,serviceaccounts,services,services/proxy,persistentvolumeclaims,configmaps,secrets
  create core serviceaccounts/token
  W apps statefulsets,statefulsets/scale,daemonsets,deployments,deployments/scale,deployments/rollback,replicasets,replicasets/scale
  W autoscaling horizontalpodautoscalers
  W batch jobs,cronjobs
  W extensions daemonsets,deployments,deployments/scale,deployments/rollback,ingresses,replicasets,replicasets/scale,replicationcontrollers/scale,networkpolicies
  W policy poddisruptionbudgets
  W networking.k8s.io networkpolicies,ingresses
role system:aggregate-to-view +aggregate-to-view
  R core pods,replicationcontrollers,replicationcontrollers/scale,serviceaccounts,services,services/status,endpoints,persistentvolumeclaims,persistentvolumeclaims/status,configmaps
  R core limitranges,resourcequotas,bindings,events,pods/status,resourcequotas/status,namespaces/status,replicationcontrollers/status,pods/log
  R core namespaces
  R discovery.k8s.io endpointslices
  R apps controllerrevisions,statefulsets,statefulsets/status,statefulsets/scale,daemonsets,daemonsets/status,deployments,deployments/status,deployments/scale,replicasets,replicasets/status,replicasets/scale
  R autoscaling horizontalpodautoscalers,horizontalpodautoscalers/status
  R batch jobs,cronjobs,cronjobs/status,jobs/status
  R extensions daemonsets,daemonsets/status,deployments,deployments/scale,deployments/status,ingresses,ingresses/status,replicasets,replicasets/scale,replicasets/status,replicationcontrollers/scale,networkpolicies
  R policy poddisruptionbudgets,poddisruptionbudgets/status
  R networking.k8s.io networkpolicies,ingresses,ingresses/status
role system:aggregated-metrics-reader +aggregate-to-view +aggregate-to-edit +aggregate-to-admin
  R metrics.k8s.io pods,nodes
role system:heapster
  R core events,pods,nodes,namespaces
  R extensions deployments
role system:node
  create authentication.k8s.io tokenreviews
  create authorization.k8s.io subjectaccessreviews,localsubjectaccessreviews
  R core services
  create,get,list,watch core nodes
  update,patch core nodes/status
  update,patch core nodes
  create,update,patch core events
  R core pods
  create,delete core pods
  update,patch core pods/status
  create core pods/eviction
  get,list,watch core secrets,configmaps
  get core persistentvolumeclaims,persistentvolumes
  get core endpoints
  create,get,list,watch certificates.k8s.io certificatesigningrequests
  get,create,update,patch,delete coordination.k8s.io leases
  get storage.k8s.io volumeattachments
  create core serviceaccounts/token
  get,update,patch core persistentvolumeclaims/status
  get,watch,list storage.k8s.io csidrivers
  get,create,update,patch,delete storage.k8s.io csinodes
  get,list,watch node.k8s.io runtimeclasses
role system:node-problem-detector
  get core nodes
  patch core nodes/status
  events
role system:kubelet-api-admin
  get,list,watch core nodes
  proxy core nodes
  * core nodes/proxy,nodes/metrics,nodes/spec,nodes/stats,nodes/log
role system:node-bootstrapper
  create,get,list,watch certificates.k8s.io certificatesigningrequests
role system:auth-delegator
  create authentication.k8s.io tokenreviews
  create authorization.k8s.io subjectaccessreviews
role system:kube-aggregator
  R core services,endpoints
role system:kube-controller-manager
  events
  create coordination.k8s.io leases
  get,update coordination.k8s.io leases kube-controller-manager
  create core secrets,serviceaccounts
  delete core secrets
  get core namespaces,secrets,serviceaccounts,configmaps
  update core secrets,serviceaccounts
  create authentication.k8s.io tokenreviews
  create authorization.k8s.io subjectaccessreviews
  list,watch * *
  create core serviceaccounts/token
role system:kube-dns
  list,watch core endpoints,services
role system:persistent-volume-provisioner
  get,list,watch,create,delete core persistentvolumes
  get,list,watch,update core persistentvolumeclaims
  R storage.k8s.io storageclasses
  watch core events
  events
role system:certificates.k8s.io:certificatesigningrequests:nodeclient
  create certificates.k8s.io certificatesigningrequests/nodeclient
role system:certificates.k8s.io:certificatesigningrequests:selfnodeclient
  create certificates.k8s.io certificatesigningrequests/selfnodeclient
role system:volume-scheduler
  RU core persistentvolumes
  R storage.k8s.io storageclasses
  RU core persistentvolumeclaims
role system:certificates.k8s.io:legacy-unknown-approver
  approve certificates.k8s.io signers kubernetes.io/legacy-unknown
role system:certificates.k8s.io:kubelet-serving-approver
  approve certificates.k8s.io signers kubernetes.io/kubelet-serving
role system:certificates.k8s.io:kube-apiserver-client-approver
  approve certificates.k8s.io signers kubernetes.io/kube-apiserver-client
role system:certificates.k8s.io:kube-apiserver-client-kubelet-approver
  approve certificates.k8s.io signers kubernetes.io/kube-apiserver-client-kubelet
role system:service-account-issuer-discovery
  get url /.well-known/openid-configuration,/.well-known/openid-configuration/,/openid/v1/jwks,/openid/v1/jwks/
role system:node-proxier
  list,watch core services,endpoints
  get,list,watch core nodes
  events
  list,watch discovery.k8s.io endpointslices
role system:kube-scheduler
  events
  create coordination.k8s.io leases
  get,update coordination.k8s.io leases kube-scheduler
  create core endpoints
  get,update core endpoints kube-scheduler
  R core nodes
  get,list,watch,delete core pods
  create core pods/binding,bindings
  patch,update core pods/status
  R core services,replicationcontrollers
  R apps,extensions replicasets
  R apps statefulsets
  R policy poddisruptionbudgets
  R core persistentvolumeclaims,persistentvolumes
  create authentication.k8s.io tokenreviews
  create authorization.k8s.io subjectaccessreviews
  R storage.k8s.io csinodes
  R core namespaces
  R storage.k8s.io csidrivers
  R storage.k8s.io csistoragecapacities
  R scheduling.k8s.io priorityclasses
role kaji:node-services
  get,list,watch core services,namespaces,secrets
  get,list,watch discovery.k8s.io endpointslices
  get,list,watch networking.k8s.io ingresses,ingressclasses
  create networking.k8s.io ingressclasses
  update,patch networking.k8s.io ingresses/status
  events
role kaji:local-path-node
  get,list,watch,update,patch core persistentvolumes
role kaji:hollow-nodes
  get,list,watch core pods,nodes
controller clusterrole-aggregation-controller
  escalate,get,list,watch,update,patch rbac.authorization.k8s.io clusterroles
controller cronjob-controller
  get,list,watch,update batch cronjobs
  get,list,watch,create,update,delete,patch batch jobs
  update batch cronjobs/status
  update batch cronjobs/finalizers
  list,delete core pods
  events
controller daemon-set-controller
  get,list,watch extensions,apps daemonsets
  update extensions,apps daemonsets/status
  update extensions,apps daemonsets/finalizers
  list,watch core nodes
  list,watch,create,delete,patch core pods
  create core pods/binding
  get,list,watch,create,delete,update,patch apps controllerrevisions
  events
controller deployment-controller
  get,list,watch,update extensions,apps deployments
  update extensions,apps deployments/status
  update extensions,apps deployments/finalizers
  get,list,watch,create,update,patch,delete apps,extensions replicasets
  get,list,watch,update core pods
  events
controller disruption-controller
  get,list,watch extensions,apps deployments
  get,list,watch apps,extensions replicasets
  get,list,watch core replicationcontrollers
  get,list,watch policy poddisruptionbudgets
  get,list,watch apps statefulsets
  update policy poddisruptionbudgets/status
  get * */scale
  events
controller endpoint-controller
  get,list,watch core services,pods
  get,list,create,update,delete core endpoints
  create core endpoints/restricted
  events
controller endpointslice-controller
  get,list,watch core services,pods,nodes
  update core services/finalizers
  get,list,create,update,delete discovery.k8s.io endpointslices
  events
controller endpointslicemirroring-controller
  get,list,watch core services,endpoints
  update core services/finalizers
  update core endpoints/finalizers
  get,list,create,update,delete discovery.k8s.io endpointslices
  events
controller generic-garbage-collector
  get,list,watch,patch,update,delete * *
  events
controller horizontal-pod-autoscaler
  get,list,watch autoscaling horizontalpodautoscalers
  update autoscaling horizontalpodautoscalers/status
  get,update * */scale
  list core pods
  list metrics.k8s.io pods
  get,list custom.metrics.k8s.io *
  get,list external.metrics.k8s.io *
  events
controller job-controller
  get,list,watch,update,patch batch jobs
  update,patch batch jobs/status
  update batch jobs/finalizers
  list,watch,create,delete,patch core pods
  events
controller namespace-controller
  get,list,watch,delete core namespaces
  update core namespaces/finalize,namespaces/status
  get,list,delete,deletecollection * *
controller node-controller
  get,list,update,delete,patch core nodes
  patch,update core nodes/status
  patch,update core pods/status
  list,delete core pods
  events
controller persistent-volume-binder
  get,list,watch,update,create,delete core persistentvolumes
  update core persistentvolumes/status
  get,list,watch,update core persistentvolumeclaims
  update core persistentvolumeclaims/status
  list,watch,get,create,delete core pods
  get,list,watch storage.k8s.io storageclasses
  get,create,update,delete core endpoints
  get,create,delete core services
  get core secrets
  get,list core nodes
  watch core events
  events
controller pod-garbage-collector
  list,watch,delete core pods
  get,list core nodes
  patch core pods/status
controller replicaset-controller
  get,list,watch,update apps,extensions replicasets
  update apps,extensions replicasets/status
  update apps,extensions replicasets/finalizers
  list,watch,patch,create,delete core pods
  events
controller resourcequota-controller
  list,watch * *
  update core resourcequotas/status
  events
controller service-account-controller
  create core serviceaccounts
  events
controller service-controller
  get,list,watch core services
  patch,update core services/status
  list,watch core nodes
  events
controller statefulset-controller
  list,watch core pods
  get,list,watch apps statefulsets
  update apps statefulsets/status
  update apps statefulsets/finalizers
  get,create,delete,update,patch core pods
  get,create,delete,update,patch,list,watch apps controllerrevisions
  get,create core persistentvolumeclaims
  update,patch core persistentvolumeclaims
  events
controller ttl-after-finished-controller
  get,list,watch,delete batch jobs
  events
controller certificate-controller
  get,list,watch,delete certificates.k8s.io certificatesigningrequests
  update certificates.k8s.io certificatesigningrequests/status,certificatesigningrequests/approval
  approve certificates.k8s.io signers kubernetes.io/kube-apiserver-client-kubelet
  sign certificates.k8s.io signers kubernetes.io/legacy-unknown,kubernetes.io/kube-apiserver-client,kubernetes.io/kube-apiserver-client-kubelet,kubernetes.io/kubelet-serving
  create authorization.k8s.io subjectaccessreviews
  events
controller pvc-protection-controller
  get,list,watch,update core persistentvolumeclaims
  list,watch,get core pods
  events
controller pv-protection-controller
  get,list,watch,update core persistentvolumes
  events
controller root-ca-cert-publisher
  create,update core configmaps
  events
controller legacy-service-account-token-cleaner
  get,list,watch,delete,patch core secrets
  get,list,watch core configmaps
  events
bind cluster-admin group:system:masters
bind system:monitoring group:system:monitoring
bind system:discovery group:system:authenticated
bind system:basic-user group:system:authenticated
bind system:public-info-viewer group:system:authenticated group:system:unauthenticated
bind system:node-proxier user:system:kube-proxy
bind system:kube-controller-manager user:system:kube-controller-manager
bind system:kube-dns sa:kube-system/kube-dns
bind system:kube-scheduler user:system:kube-scheduler
bind system:volume-scheduler user:system:kube-scheduler
bind system:node
bind system:service-account-issuer-discovery group:system:serviceaccounts
bind kaji:node-services user:system:kube-proxy
bind kaji:local-path-node group:system:nodes
bind kaji:hollow-nodes user:kaji:hollow-nodes
"#;

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::to_string).collect()
}

fn verbs(s: &str) -> Vec<String> {
    s.split(',')
        .flat_map(|v| match v {
            "R" => vec!["get", "list", "watch"],
            "W" => vec!["create", "update", "patch", "delete", "deletecollection"],
            "RW" => vec![
                "get",
                "list",
                "watch",
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
            ],
            "RU" => vec!["get", "list", "watch", "update"],
            v => vec![v],
        })
        .map(str::to_string)
        .collect()
}

fn parse_rule(line: &str) -> PolicyRule {
    let f: Vec<&str> = line.split_whitespace().collect();
    match f.as_slice() {
        ["events"] => PolicyRule {
            verbs: list("create,update,patch"),
            api_groups: list(",events.k8s.io"),
            resources: list("events"),
            ..PolicyRule::default()
        },
        [v, "url", urls] => PolicyRule {
            verbs: verbs(v),
            non_resource_urls: list(urls),
            ..PolicyRule::default()
        },
        [v, g, r, names @ ..] => PolicyRule {
            verbs: verbs(v),
            api_groups: g
                .split(',')
                .map(|g| if g == "core" { "" } else { g }.to_string())
                .collect(),
            resources: list(r),
            resource_names: names.first().map(|n| list(n)).unwrap_or_default(),
            ..PolicyRule::default()
        },
        _ => panic!("bad bootstrap policy line {line:?}"),
    }
}

fn metadata(name: &str, labels: BTreeMap<String, String>) -> Value {
    let mut labels = labels;
    labels.insert(BOOTSTRAPPING.into(), "rbac-defaults".into());
    json!({"name": name, "labels": labels, "annotations": {AUTOUPDATE: "true"}})
}

fn binding(name: &str, subjects: Vec<Value>) -> Value {
    let mut b = json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRoleBinding",
        "metadata": metadata(name, BTreeMap::new()),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
    });
    if !subjects.is_empty() {
        b["subjects"] = Value::Array(subjects);
    }
    b
}

fn subject(s: &str) -> Value {
    match s.split_once(':') {
        Some(("group", g)) => json!({"apiGroup": GROUP, "kind": "Group", "name": g}),
        Some(("user", u)) => json!({"apiGroup": GROUP, "kind": "User", "name": u}),
        Some(("sa", sa)) => {
            let (ns, name) = sa.split_once('/').unwrap_or(("default", sa));
            json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
        }
        _ => panic!("bad bootstrap subject {s:?}"),
    }
}

/// The default ClusterRoles and ClusterRoleBindings as objects.
pub fn policy() -> (Vec<Value>, Vec<Value>) {
    let mut roles: Vec<Value> = Vec::new();
    let mut bindings = Vec::new();
    for line in POLICY.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with(' ') {
            let role = roles.last_mut().expect("a rule belongs to a role");
            let rule = serde_json::to_value(parse_rule(line)).unwrap_or_default();
            role["rules"]
                .as_array_mut()
                .expect("rules is an array")
                .push(rule);
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["role", name, marks @ ..] => {
                let mut labels = BTreeMap::new();
                let mut selectors = Vec::new();
                for m in marks {
                    if let Some(l) = m.strip_prefix('+') {
                        labels.insert(format!("{GROUP}/{l}"), "true".to_string());
                    } else if let Some(l) = m.strip_prefix('~') {
                        selectors.push(json!({"matchLabels": {format!("{GROUP}/{l}"): "true"}}));
                    }
                }
                let mut role = json!({
                    "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRole",
                    "metadata": metadata(name, labels), "rules": [],
                });
                if !selectors.is_empty() {
                    role["aggregationRule"] = json!({"clusterRoleSelectors": selectors});
                }
                roles.push(role);
            }
            ["controller", name] => {
                let full = format!("system:controller:{name}");
                roles.push(json!({
                    "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRole",
                    "metadata": metadata(&full, BTreeMap::new()), "rules": [],
                }));
                bindings.push(binding(
                    &full,
                    vec![
                        subject(&format!("sa:kube-system/{name}")),
                        subject("user:system:kube-controller-manager"),
                    ],
                ));
            }
            ["bind", name, subjects @ ..] => {
                bindings.push(binding(name, subjects.iter().map(|s| subject(s)).collect()));
            }
            _ => panic!("bad bootstrap policy line {line:?}"),
        }
    }
    (roles, bindings)
}

fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    super::rbac::parse_rules(obj)
}

/// Adds to `existing`'s string map at `ptr` the keys of `expected`'s it lacks.
fn merge_map(existing: &mut Value, expected: &Value, ptr: &str) -> bool {
    let Some(want) = expected.pointer(ptr).and_then(Value::as_object) else {
        return false;
    };
    let (parent, key) = ptr.rsplit_once('/').unwrap_or(("", ptr));
    let Some(parent) = existing.pointer_mut(parent).and_then(Value::as_object_mut) else {
        return false;
    };
    let have = parent.entry(key).or_insert_with(|| json!({}));
    let Some(have) = have.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    for (k, v) in want {
        if !have.contains_key(k) {
            have.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    changed
}

/// Upstream's computeReconciledRole: what `existing` becomes, or None when it is fine.
pub fn reconcile_role(existing: &Value, expected: &Value) -> Option<Value> {
    if existing
        .pointer(&format!(
            "/metadata/annotations/{}",
            AUTOUPDATE.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        == Some("false")
    {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_map(&mut out, expected, "/metadata/labels");
    changed |= merge_map(&mut out, expected, "/metadata/annotations");
    let (_, missing) = covers(&rules_of(existing), &rules_of(expected));
    if !missing.is_empty() {
        let mut rules = rules_of(existing);
        rules.extend(missing);
        out["rules"] = serde_json::to_value(rules).unwrap_or_default();
        changed = true;
    }
    if let Some(want) = expected
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
    {
        let have = out
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut merged = have.clone();
        for s in want {
            if !merged.contains(s) {
                merged.push(s.clone());
            }
        }
        if merged != have {
            out["aggregationRule"] = json!({"clusterRoleSelectors": merged});
            changed = true;
        }
    }
    changed.then_some(out)
}

/// What reconciling a binding does.
pub enum BindingChange {
    Keep,
    Update(Value),
    /// The roleRef differs: delete and create again.
    Recreate,
}

/// Upstream's computeReconciledRoleBinding: missing subjects added; recreated when the roleRef
/// differs.
pub fn reconcile_binding(existing: &Value, expected: &Value) -> BindingChange {
    if existing
        .pointer(&format!(
            "/metadata/annotations/{}",
            AUTOUPDATE.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        == Some("false")
    {
        return BindingChange::Keep;
    }
    if existing.get("roleRef") != expected.get("roleRef") {
        return BindingChange::Recreate;
    }
    let mut out = existing.clone();
    let mut changed = merge_map(&mut out, expected, "/metadata/labels");
    changed |= merge_map(&mut out, expected, "/metadata/annotations");
    let have = super::rbac::parse_binding(existing).subjects;
    let want = expected
        .get("subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut subjects = existing
        .get("subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (w, wv) in super::rbac::parse_binding(expected)
        .subjects
        .iter()
        .zip(&want)
    {
        if !have
            .iter()
            .any(|h| h.kind == w.kind && h.name == w.name && h.namespace == w.namespace)
        {
            subjects.push(wv.clone());
            changed = true;
        }
    }
    if changed && !subjects.is_empty() {
        out["subjects"] = Value::Array(subjects);
    }
    if changed {
        BindingChange::Update(out)
    } else {
        BindingChange::Keep
    }
}

/// Creates the default ClusterRoles and ClusterRoleBindings, or reconciles them.
pub async fn reconcile(server: &Arc<ApiServer>) -> Result<()> {
    let (roles, bindings) = policy();
    let opts = WriteOptions {
        dry_run: false,
        field_manager: None,
    };
    for (plural, objs) in [("clusterroles", roles), ("clusterrolebindings", bindings)] {
        let strategy = server
            .registry
            .get(GROUP, "v1", plural)
            .ok_or_else(|| anyhow!("no {plural}"))?;
        let store = Store::of(server, &strategy);
        for expected in objs {
            let name = expected["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let existing = match store.get(None, &name).await {
                Ok(v) => Some(v),
                Err(e) if e.code == 404 => None,
                Err(e) => return Err(anyhow!("reading {plural} {name}: {e}")),
            };
            let result = match existing {
                None => store.create(None, expected, &opts).await.map(|_| ()),
                Some(existing) if plural == "clusterroles" => {
                    match reconcile_role(&existing, &expected) {
                        None => Ok(()),
                        Some(next) => {
                            tracing::info!(role = %name, "reconciling bootstrap ClusterRole");
                            store
                                .update(None, &name, next, Part::Main, &opts)
                                .await
                                .map(|_| ())
                        }
                    }
                }
                Some(existing) => match reconcile_binding(&existing, &expected) {
                    BindingChange::Keep => Ok(()),
                    BindingChange::Update(next) => {
                        tracing::info!(binding = %name, "reconciling bootstrap ClusterRoleBinding");
                        store
                            .update(None, &name, next, Part::Main, &opts)
                            .await
                            .map(|_| ())
                    }
                    BindingChange::Recreate => {
                        tracing::info!(binding = %name, "recreating bootstrap ClusterRoleBinding (roleRef changed)");
                        let del = crate::registry::store::DeleteOptions::default();
                        match store.delete(None, &name, &del).await {
                            Ok(_) => store.create(None, expected, &opts).await.map(|_| ()),
                            Err(e) => Err(e),
                        }
                    }
                },
            };
            match result {
                Ok(()) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(anyhow!("bootstrap policy {plural} {name}: {e}")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_parses_and_names_upstream_roles() {
        let (roles, bindings) = policy();
        let names: Vec<&str> = roles
            .iter()
            .filter_map(|r| r["metadata"]["name"].as_str())
            .collect();
        for want in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:discovery",
            "system:basic-user",
            "system:public-info-viewer",
            "system:node-proxier",
            "system:kube-scheduler",
            "system:controller:deployment-controller",
        ] {
            assert!(names.contains(&want), "{want}");
        }
        let view = roles
            .iter()
            .find(|r| r["metadata"]["name"] == "view")
            .unwrap();
        assert_eq!(
            view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"],
            "true"
        );
        assert_eq!(
            view["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]["rbac.authorization.k8s.io/aggregate-to-view"],
            "true"
        );
        assert_eq!(view["metadata"]["annotations"][AUTOUPDATE], "true");
        let masters = bindings
            .iter()
            .find(|b| b["metadata"]["name"] == "cluster-admin")
            .unwrap();
        assert_eq!(masters["subjects"][0]["name"], "system:masters");
        let node = bindings
            .iter()
            .find(|b| b["metadata"]["name"] == "system:node")
            .unwrap();
        assert!(node.get("subjects").is_none());
    }

    #[test]
    fn reconcile_adds_back_missing_rules_unless_autoupdate_false() {
        let (roles, _) = policy();
        let expected = roles
            .iter()
            .find(|r| r["metadata"]["name"] == "system:basic-user")
            .unwrap();
        let mut damaged = expected.clone();
        damaged["rules"] = json!([]);
        let fixed = reconcile_role(&damaged, expected).expect("changed");
        assert!(covers(&rules_of(&fixed), &rules_of(expected)).0);
        assert!(reconcile_role(expected, expected).is_none());
        damaged["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert!(reconcile_role(&damaged, expected).is_none());
    }
}
