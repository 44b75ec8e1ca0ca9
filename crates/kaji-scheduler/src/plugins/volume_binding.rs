//! VolumeBinding (upstream `plugins/volumebinding`): a pod's PersistentVolumeClaims decide
//! whether and where it may run, for statically provisioned volumes.
//!
//! - PreFilter: every claim of the pod (its `persistentVolumeClaim` volumes, and the generated
//!   `<pod>-<volume>` claims of `ephemeral` volumes) must exist, not be Lost and not be being
//!   deleted; otherwise the pod is unschedulable on every node with upstream's message
//!   (`persistentvolumeclaim "data" not found`, `persistentvolumeclaim "data" is being
//!   deleted`, ...). A claim is *bound* once it names its volume and carries
//!   `pv.kubernetes.io/bind-completed`. An unbound claim that the PersistentVolume controller
//!   binds on its own (its class binds Immediately, it has no class or an unknown one, or it
//!   names its volume) makes the pod wait for it: `pod has unbound immediate
//!   PersistentVolumeClaims`. A claim, volume or class that is added or changes retries such
//!   pods (see `informers`).
//! - Filter: a bound claim's volume must exist (`node(s) unavailable due to one or more pvc(s)
//!   bound to non-existent pv(s)`) and its `nodeAffinity.required` must match the node's labels,
//!   as local volumes have (`node(s) had volume node affinity conflict`). An unbound claim of a
//!   WaitForFirstConsumer class needs, for that node, an Available volume of its class that
//!   holds the request and has its access and volume modes, matches its selector and whose node
//!   affinity admits the node (the smallest wins; claims are served smallest first, each volume
//!   once). Failing that it needs a class that provisions (not `kubernetes.io/no-provisioner`)
//!   and whose `allowedTopologies` admit the node; otherwise `node(s) didn't find available
//!   persistent volumes to bind`. A claim that already has a `volume.kubernetes.io/selected-node`
//!   fits only that node.
//! - Reserve and PreBind ([`VolumeBinding::reserve`], [`VolumeBinding::bind_pod_volumes`]): for
//!   the chosen node the picked volumes are *assumed* bound to their claims in memory, so the next
//!   pods do not pick them too, then written in the binding task before the pod is bound: each
//!   volume's `claimRef` (with `pv.kubernetes.io/bound-by-controller`), and for a claim to
//!   provision its `volume.kubernetes.io/selected-node`. The binding then waits (at most 600 s,
//!   upstream's `bindTimeoutSeconds`) until the PersistentVolume controller has bound every claim;
//!   it fails, and the pod is retried, if a volume's claimRef is reset, the selected node is
//!   removed (the provisioner gave up) or the volume no longer fits the node.
//!
//! Not here: the CSIStorageCapacity check (upstream skips it too while no CSIDriver asks for
//! it), CSI migration of in-tree volumes, the alpha capacity scoring, and an assume cache for
//! claims (only volumes are assumed).

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{Code, CycleState, FilterPlugin, Snapshot, Status};
use crate::selector::{Labels, node_selector_term_matches};
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, TopologySelectorTerm,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kaji_runtime::volume::{
    ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE, claim_class,
    find_matching_volume, is_bound_to, requested_storage, volume_class,
};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const NAME: &str = "VolumeBinding";

pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const ERR_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const ERR_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// How long PreBind waits for the PersistentVolume controller (upstream `bindTimeoutSeconds`).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);
/// How often PreBind looks at the mirrored claims and volumes while it waits.
const BIND_POLL: Duration = Duration::from_millis(100);

/// The mirrored objects the plugin reads (fed by watches in `informers`).
#[derive(Clone)]
pub struct VolumeStores {
    pub claims: Store<PersistentVolumeClaim>,
    pub volumes: Store<PersistentVolume>,
    pub classes: Store<StorageClass>,
}

impl VolumeStores {
    /// Stores that nothing feeds: no claim exists (benchmarks, tests of other plugins).
    pub fn empty() -> VolumeStores {
        VolumeStores {
            claims: reflector::store().0,
            volumes: reflector::store().0,
            classes: reflector::store().0,
        }
    }
}

pub struct VolumeBinding {
    stores: VolumeStores,
    /// Volumes picked for a claim whose claimRef is being written (upstream's assume cache),
    /// by name: the picked copy, with the resourceVersion it was read at. A newer version in
    /// the store replaces it.
    assumed: Mutex<HashMap<String, Arc<PersistentVolume>>>,
}

/// A pod's claims as PreFilter sorts them (upstream `PodVolumeClaims`).
#[derive(Debug, Default)]
struct PodVolumeClaims {
    bound: Vec<Arc<PersistentVolumeClaim>>,
    /// Unbound claims of a WaitForFirstConsumer class: the scheduler picks their volumes.
    delayed: Vec<Arc<PersistentVolumeClaim>>,
    /// The volumes of each class the delayed claims ask for, sorted by name.
    volumes_by_class: HashMap<String, Vec<Arc<PersistentVolume>>>,
}

/// What the pod needs written before it is bound to the chosen node.
#[derive(Debug, Default)]
pub struct PodVolumes {
    pub node: String,
    node_labels: Labels,
    /// Volumes to bind to claims: the volume as it is to be written (claimRef set), and the claim.
    pub static_bindings: Vec<(Arc<PersistentVolume>, Arc<PersistentVolumeClaim>)>,
    /// Claims to provision, as they are to be written (selected node set).
    pub provisions: Vec<PersistentVolumeClaim>,
}

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn claim_key(c: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or_default(),
        c.metadata.name.as_deref().unwrap_or_default()
    )
}

fn name_of<K: kube::Resource>(o: &K) -> &str {
    o.meta().name.as_deref().unwrap_or_default()
}

fn claim_volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

/// Bound and the binding completed by the controller (upstream `isPVCFullyBound`).
fn fully_bound(c: &PersistentVolumeClaim) -> bool {
    !claim_volume_name(c).is_empty() && annotation(&c.metadata, ANN_BIND_COMPLETED).is_some()
}

/// Upstream `CheckNodeAffinity`: the volume's required node affinity against the node's labels
/// (only the labels: `matchFields` see a node without a name, as upstream's).
fn node_affinity_matches(v: &PersistentVolume, labels: &Labels) -> bool {
    let Some(required) = v
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| node_selector_term_matches(t, labels, ""))
}

/// Upstream `MatchTopologySelectorTerms`: no terms admit every node; a term with no
/// expressions admits none.
fn topology_matches(terms: Option<&[TopologySelectorTerm]>, labels: &Labels) -> bool {
    let terms = terms.unwrap_or_default();
    terms.is_empty()
        || terms.iter().any(|t| {
            let exprs = t.match_label_expressions.as_deref().unwrap_or_default();
            !exprs.is_empty()
                && exprs
                    .iter()
                    .all(|e| labels.get(&e.key).is_some_and(|v| e.values.contains(v)))
        })
}

/// Upstream `GetBindVolumeToClaim`: the volume with its claimRef pointing at the claim, and
/// whether anything changed.
fn bind_volume_to_claim(
    v: &PersistentVolume,
    c: &PersistentVolumeClaim,
) -> (PersistentVolume, bool) {
    let mut next = v.clone();
    let mut dirty = false;
    let by_controller = !is_bound_to(v, c);
    let r = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let same = r.is_some_and(|r| {
        r.name.as_deref() == c.metadata.name.as_deref()
            && r.namespace.as_deref() == c.metadata.namespace.as_deref()
            && r.uid.as_deref().unwrap_or_default() == c.metadata.uid.as_deref().unwrap_or_default()
    });
    if !same {
        next.spec.get_or_insert_with(Default::default).claim_ref = Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: c.metadata.namespace.clone(),
            name: c.metadata.name.clone(),
            uid: c.metadata.uid.clone(),
            resource_version: c.metadata.resource_version.clone(),
            ..ObjectReference::default()
        });
        dirty = true;
    }
    if by_controller && annotation(&next.metadata, ANN_BOUND_BY_CONTROLLER).is_none() {
        next.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        dirty = true;
    }
    (next, dirty)
}

/// Whether resourceVersion `a` is newer than `b` (both as the API server's counters).
fn newer(a: Option<&str>, b: Option<&str>) -> bool {
    match (
        a.and_then(|s| s.parse::<u64>().ok()),
        b.and_then(|s| s.parse::<u64>().ok()),
    ) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

fn error_status(msg: String) -> Status {
    Status {
        code: Code::Error,
        reasons: vec![msg],
        plugin: "",
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

impl VolumeBinding {
    pub fn new(stores: VolumeStores) -> VolumeBinding {
        VolumeBinding {
            stores,
            assumed: Mutex::default(),
        }
    }

    fn assumed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PersistentVolume>>> {
        self.assumed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The volume as the scheduler sees it: the assumed copy while the store has not moved on.
    fn current(&self, v: Arc<PersistentVolume>) -> Arc<PersistentVolume> {
        let mut assumed = self.assumed();
        match assumed.get(name_of(v.as_ref())) {
            Some(a) if a.metadata.resource_version == v.metadata.resource_version => a.clone(),
            Some(_) => {
                assumed.remove(name_of(v.as_ref()));
                v
            }
            None => v,
        }
    }

    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.stores
            .claims
            .get(&ObjectRef::new(name).within(namespace))
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.stores.classes.get(&ObjectRef::new(name))
    }

    /// Upstream `podHasPVCs` then `GetPodVolumeClaims`: None if the pod has no claims.
    fn pod_volume_claims(&self, pod: &PodInfo) -> Result<Option<PodVolumeClaims>, Status> {
        let volumes = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or_default();
        let mut claims = Vec::new();
        for vol in volumes {
            let (name, ephemeral) = if let Some(c) = &vol.persistent_volume_claim {
                (c.claim_name.clone(), false)
            } else if vol.ephemeral.is_some() {
                (format!("{}-{}", pod.name, vol.name), true)
            } else {
                continue;
            };
            let Some(c) = self.claim(&pod.namespace, &name) else {
                return Err(Status::unresolvable(if ephemeral {
                    format!(
                        "waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}"
                    )
                } else {
                    format!("persistentvolumeclaim {name:?} not found")
                }));
            };
            if c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
                return Err(Status::unresolvable(format!(
                    "persistentvolumeclaim {name:?} bound to non-existent persistentvolume {:?}",
                    claim_volume_name(&c)
                )));
            }
            if c.metadata.deletion_timestamp.is_some() {
                return Err(Status::unresolvable(format!(
                    "persistentvolumeclaim {name:?} is being deleted"
                )));
            }
            if ephemeral {
                let owned = c.metadata.owner_references.iter().flatten().any(|o| {
                    o.controller == Some(true) && Some(o.uid.as_str()) == Some(pod.uid.as_str())
                });
                if !owned {
                    return Err(Status::unresolvable(format!(
                        "PVC {}/{name} was not created for pod {}/{} (pod is not owner)",
                        pod.namespace, pod.namespace, pod.name
                    )));
                }
            }
            claims.push(c);
        }
        if claims.is_empty() {
            return Ok(None);
        }
        let mut out = PodVolumeClaims::default();
        let mut immediate = false;
        for c in claims {
            if fully_bound(&c) {
                out.bound.push(c);
                continue;
            }
            let delayed = self.delay_binding(&c)?;
            if delayed && claim_volume_name(&c).is_empty() {
                out.delayed.push(c);
            } else {
                immediate = true;
            }
        }
        if immediate {
            return Err(Status::unresolvable(ERR_UNBOUND_IMMEDIATE));
        }
        for c in &out.delayed {
            let class = claim_class(c);
            if out.volumes_by_class.contains_key(class) {
                continue;
            }
            let mut vols: Vec<Arc<PersistentVolume>> = self
                .stores
                .volumes
                .state()
                .into_iter()
                .filter(|v| volume_class(v) == class)
                .map(|v| self.current(v))
                .collect();
            vols.sort_by(|a, b| name_of(a.as_ref()).cmp(name_of(b.as_ref())));
            out.volumes_by_class.insert(class.to_string(), vols);
        }
        Ok(Some(out))
    }

    /// Upstream `IsDelayBindingMode`: the claim's class exists and is WaitForFirstConsumer.
    fn delay_binding(&self, c: &PersistentVolumeClaim) -> Result<bool, Status> {
        let class = claim_class(c);
        if class.is_empty() {
            return Ok(false);
        }
        let Some(sc) = self.class(class) else {
            return Ok(false);
        };
        match sc.volume_binding_mode.as_deref() {
            None => Err(error_status(format!(
                "VolumeBindingMode not set for StorageClass {class:?}"
            ))),
            Some(mode) => Ok(mode == "WaitForFirstConsumer"),
        }
    }

    /// Upstream `FindPodVolumes`: what binding the pod's claims on this node takes, or why the
    /// node does not do.
    fn find_pod_volumes(
        &self,
        claims: &PodVolumeClaims,
        node: &NodeInfo,
    ) -> Result<PodVolumes, Status> {
        let mut out = PodVolumes {
            node: node.name.clone(),
            node_labels: node.labels.clone(),
            ..PodVolumes::default()
        };
        let (mut bound_ok, mut pvs_found, mut unbound_ok) = (true, true, true);
        for c in &claims.bound {
            match self
                .stores
                .volumes
                .get(&ObjectRef::new(claim_volume_name(c)))
            {
                None => {
                    pvs_found = false;
                    break;
                }
                Some(v) if !node_affinity_matches(&v, &node.labels) => {
                    bound_ok = false;
                    break;
                }
                Some(_) => {}
            }
        }
        'unbound: {
            if claims.delayed.is_empty() {
                break 'unbound;
            }
            let mut to_match = Vec::new();
            let mut to_provision = Vec::new();
            for c in &claims.delayed {
                match annotation(&c.metadata, ANN_SELECTED_NODE) {
                    Some(n) if n != node.name => {
                        unbound_ok = false;
                        break 'unbound;
                    }
                    Some(_) => to_provision.push(c.clone()),
                    None => to_match.push(c.clone()),
                }
            }
            if !to_match.is_empty() {
                // Smallest requests first, so each gets the smallest volume that fits.
                to_match.sort_by_key(|c| requested_storage(c));
                let mut chosen = HashSet::new();
                for c in to_match {
                    let vols = claims
                        .volumes_by_class
                        .get(claim_class(&c))
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let admits = |v: &PersistentVolume| node_affinity_matches(v, &node.labels);
                    match find_matching_volume(&c, vols, Some(&admits), &chosen, true) {
                        Some(v) => {
                            chosen.insert(name_of(v.as_ref()).to_string());
                            out.static_bindings.push((v, c));
                        }
                        None => {
                            unbound_ok = false;
                            to_provision.push(c);
                        }
                    }
                }
            }
            if !to_provision.is_empty() {
                unbound_ok = true;
                for c in to_provision {
                    let class = claim_class(&c);
                    if class.is_empty() {
                        return Err(error_status(format!(
                            "no class for claim {:?}",
                            claim_key(&c)
                        )));
                    }
                    let Some(sc) = self.class(class) else {
                        return Err(error_status(format!(
                            "failed to find storage class {class:?}"
                        )));
                    };
                    if sc.provisioner.is_empty()
                        || sc.provisioner == NO_PROVISIONER
                        || !topology_matches(sc.allowed_topologies.as_deref(), &node.labels)
                    {
                        unbound_ok = false;
                        out.provisions.clear();
                        break;
                    }
                    let mut next = (*c).clone();
                    next.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(ANN_SELECTED_NODE.into(), node.name.clone());
                    out.provisions.push(next);
                }
            }
        }
        let reasons: Vec<String> = [
            (!bound_ok, ERR_NODE_CONFLICT),
            (!unbound_ok, ERR_BIND_CONFLICT),
            (!pvs_found, ERR_PV_NOT_EXIST),
        ]
        .into_iter()
        .filter(|(failed, _)| *failed)
        .map(|(_, r)| r.to_string())
        .collect();
        if reasons.is_empty() {
            Ok(out)
        } else {
            Err(Status {
                code: Code::UnschedulableAndUnresolvable,
                reasons,
                plugin: "",
            })
        }
    }

    /// Reserve: the volume work the pod needs on the chosen node (None: every claim is bound,
    /// or it has none), with the picked volumes assumed bound until the store shows them.
    pub fn reserve(&self, pod: &PodInfo, node: &NodeInfo) -> Result<Option<PodVolumes>, String> {
        let claims = match self.pod_volume_claims(pod) {
            Ok(Some(c)) if !c.delayed.is_empty() => c,
            Ok(_) => return Ok(None),
            Err(st) => return Err(st.reasons.join(", ")),
        };
        let mut vols = self
            .find_pod_volumes(&claims, node)
            .map_err(|st| st.reasons.join(", "))?;
        let mut assumed = self.assumed();
        // Forget assumptions the store has caught up with.
        assumed.retain(|name, a| {
            self.stores
                .volumes
                .get(&ObjectRef::new(name))
                .is_some_and(|v| v.metadata.resource_version == a.metadata.resource_version)
        });
        for (v, c) in &mut vols.static_bindings {
            let (next, dirty) = bind_volume_to_claim(v, c);
            if dirty {
                let next = Arc::new(next);
                assumed.insert(name_of(next.as_ref()).to_string(), next.clone());
                *v = next;
            }
        }
        Ok(Some(vols))
    }

    /// Unreserve: drops the assumptions of a reservation that will not be bound.
    pub fn unreserve(&self, vols: &PodVolumes) {
        let mut assumed = self.assumed();
        for (v, _) in &vols.static_bindings {
            let name = name_of(v.as_ref());
            if assumed
                .get(name)
                .is_some_and(|a| a.metadata.resource_version == v.metadata.resource_version)
            {
                assumed.remove(name);
            }
        }
    }

    /// PreBind: writes the volumes' claimRefs and the claims' selected node, then waits until the
    /// PersistentVolume controller has bound every claim (`pod_exists` false stops the wait).
    pub async fn bind_pod_volumes(
        &self,
        client: &kube::Client,
        vols: &mut PodVolumes,
        pod_exists: impl Fn() -> bool,
    ) -> Result<(), String> {
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        for (v, _) in &mut vols.static_bindings {
            let written = pvs
                .replace(name_of(v.as_ref()), &PostParams::default(), v)
                .await
                .map_err(|e| api_message(&e))?;
            *v = Arc::new(written);
        }
        for c in &mut vols.provisions {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(
                client.clone(),
                c.metadata.namespace.as_deref().unwrap_or_default(),
            );
            *c = api
                .replace(name_of(c), &PostParams::default(), c)
                .await
                .map_err(|e| api_message(&e))?;
        }
        let deadline = Instant::now() + BIND_TIMEOUT;
        loop {
            if !pod_exists() {
                return Err("binding volumes: pod does not exist any more".into());
            }
            match self.check_bindings(vols) {
                Ok(true) => return Ok(()),
                Ok(false) if Instant::now() < deadline => tokio::time::sleep(BIND_POLL).await,
                Ok(false) => return Err("binding volumes: context deadline exceeded".into()),
                Err(e) => return Err(format!("binding volumes: {e}")),
            }
        }
    }

    /// Upstream `checkBindings`: true once every claim is fully bound; an error if the binding
    /// was undone and scheduling must be retried.
    fn check_bindings(&self, vols: &PodVolumes) -> Result<bool, String> {
        let node = &vols.node;
        for (v, c) in &vols.static_bindings {
            let name = name_of(v.as_ref());
            let Some(cur) = self.stores.volumes.get(&ObjectRef::new(name)) else {
                return Err(format!(
                    "failed to check binding: could not find v1/PersistentVolume {name:?}"
                ));
            };
            let Some(claim) = self.claim(
                c.metadata.namespace.as_deref().unwrap_or_default(),
                name_of(c.as_ref()),
            ) else {
                return Err(format!(
                    "failed to check binding: could not find v1/PersistentVolumeClaim {:?}",
                    claim_key(c)
                ));
            };
            // Our write has not reached the store yet.
            if newer(
                v.metadata.resource_version.as_deref(),
                cur.metadata.resource_version.as_deref(),
            ) {
                return Ok(false);
            }
            if !node_affinity_matches(&cur, &vols.node_labels) {
                return Err(format!(
                    "pv {name:?} node affinity doesn't match node {node:?}: no matching NodeSelectorTerms"
                ));
            }
            let reset = cur
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .is_none_or(|r| r.uid.as_deref().unwrap_or_default().is_empty());
            if reset {
                return Err(format!("ClaimRef got reset for pv {name:?}"));
            }
            if !fully_bound(&claim) {
                return Ok(false);
            }
        }
        for c in &vols.provisions {
            let Some(cur) = self.claim(
                c.metadata.namespace.as_deref().unwrap_or_default(),
                name_of(c),
            ) else {
                return Err(format!(
                    "failed to check provisioning pvc: could not find v1/PersistentVolumeClaim {:?}",
                    claim_key(c)
                ));
            };
            if newer(
                c.metadata.resource_version.as_deref(),
                cur.metadata.resource_version.as_deref(),
            ) {
                return Ok(false);
            }
            match annotation(&cur.metadata, ANN_SELECTED_NODE) {
                None if cur.metadata.annotations.is_none() => {
                    return Err(format!(
                        "selectedNode annotation reset for PVC {:?}",
                        name_of(cur.as_ref())
                    ));
                }
                Some(n) if n == node => {}
                _ => {
                    return Err(format!(
                        "provisioning failed for PVC {:?}",
                        name_of(cur.as_ref())
                    ));
                }
            }
            let volume = claim_volume_name(&cur);
            if !volume.is_empty() {
                let Some(v) = self.stores.volumes.get(&ObjectRef::new(volume)) else {
                    return Ok(false);
                };
                if !node_affinity_matches(&v, &vols.node_labels) {
                    return Err(format!(
                        "pv {volume:?} node affinity doesn't match node {node:?}: no matching NodeSelectorTerms"
                    ));
                }
            }
            if !fully_bound(&cur) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, _: &Snapshot<'_>, state: &mut CycleState) -> Status {
        match self.pod_volume_claims(pod) {
            Ok(claims) => {
                state.write(NAME, claims);
                Status::success()
            }
            Err(st) => st,
        }
    }

    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(Some(claims)) = state.read::<Option<PodVolumeClaims>>(NAME) else {
            return Status::success();
        };
        match self.find_pod_volumes(claims, node) {
            Ok(_) => Status::success(),
            Err(st) => st,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::runtime::watcher::Event;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    fn obj<K: DeserializeOwned>(v: Value) -> K {
        serde_json::from_value(v).expect("object")
    }

    struct World {
        claims: reflector::store::Writer<PersistentVolumeClaim>,
        volumes: reflector::store::Writer<PersistentVolume>,
        classes: reflector::store::Writer<StorageClass>,
        plugin: VolumeBinding,
        cache: Cache,
    }

    impl World {
        fn new(nodes: &[&str]) -> World {
            let (c, claims) = reflector::store();
            let (v, volumes) = reflector::store();
            let (s, classes) = reflector::store();
            let mut cache = Cache::default();
            for n in nodes {
                cache.set_node(Arc::new(obj::<Node>(
                    json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}}),
                )));
            }
            World {
                claims,
                volumes,
                classes,
                plugin: VolumeBinding::new(VolumeStores {
                    claims: c,
                    volumes: v,
                    classes: s,
                }),
                cache,
            }
        }

        fn claim(&mut self, v: Value) {
            self.claims.apply_watcher_event(&Event::Apply(obj(v)));
        }
        fn volume(&mut self, v: Value) {
            self.volumes.apply_watcher_event(&Event::Apply(obj(v)));
        }
        fn class(&mut self, name: &str, mode: &str, provisioner: &str) {
            self.classes.apply_watcher_event(&Event::Apply(obj(json!({
                "metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode
            }))));
        }

        /// PreFilter then Filter on each node: the prefilter failure, or each node's reasons.
        fn run(&self, pod: &PodInfo) -> Result<Vec<(String, Vec<String>)>, Status> {
            let snap = Snapshot {
                cache: &self.cache,
                default_spread_selector: None,
            };
            let mut state = CycleState::default();
            let st = self.plugin.pre_filter(pod, &snap, &mut state);
            if !st.is_success() {
                return Err(st);
            }
            Ok(self
                .cache
                .node_infos()
                .map(|n| (n.name.clone(), self.plugin.filter(&state, pod, n).reasons))
                .collect())
        }
    }

    fn pod_with_claims(claims: &[&str]) -> PodInfo {
        let vols: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": format!("v-{c}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        let p: Pod = obj(
            json!({"metadata": {"name": "p", "namespace": "default", "uid": "pod-uid"},
            "spec": {"containers": [], "volumes": vols}}),
        );
        PodInfo::new(Arc::new(p), 0)
    }

    fn claim(name: &str, class: Option<&str>, size: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "resourceVersion": "5"},
            "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
            "status": {"phase": "Pending"}})
    }

    fn bound_claim(name: &str, volume: &str) -> Value {
        let mut c = claim(name, None, "1Gi");
        c["metadata"]["annotations"] = json!({ANN_BIND_COMPLETED: "yes"});
        c["spec"]["volumeName"] = json!(volume);
        c["status"]["phase"] = json!("Bound");
        c
    }

    fn local_volume(name: &str, class: &str, size: &str, node: &str) -> Value {
        json!({"metadata": {"name": name, "resourceVersion": "7"},
            "spec": {"storageClassName": class, "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "local": {"path": "/mnt/disk"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Available"}})
    }

    #[test]
    fn pods_without_claims_are_not_concerned() {
        let w = World::new(&["a"]);
        let p = pod_with_claims(&[]);
        assert_eq!(w.run(&p).unwrap(), vec![("a".to_string(), vec![])]);
    }

    #[test]
    fn missing_deleted_lost_and_unbound_immediate_claims_fail_prefilter() {
        let mut w = World::new(&["a"]);
        let p = pod_with_claims(&["data"]);
        let st = w.run(&p).unwrap_err();
        assert_eq!(st.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(st.reasons, ["persistentvolumeclaim \"data\" not found"]);

        // No class: the binder's job.
        w.claim(claim("data", None, "1Gi"));
        assert_eq!(w.run(&p).unwrap_err().reasons, [ERR_UNBOUND_IMMEDIATE]);
        // An Immediate class, and an unknown class, likewise.
        w.class("fast", "Immediate", "example.com/fast");
        w.claim(claim("data", Some("fast"), "1Gi"));
        assert_eq!(w.run(&p).unwrap_err().reasons, [ERR_UNBOUND_IMMEDIATE]);
        w.claim(claim("data", Some("nosuch"), "1Gi"));
        assert_eq!(w.run(&p).unwrap_err().reasons, [ERR_UNBOUND_IMMEDIATE]);
        // Bound but without bind-completed is not bound yet.
        let mut half = bound_claim("data", "pv1");
        half["metadata"]["annotations"] = json!({});
        w.claim(half);
        assert_eq!(w.run(&p).unwrap_err().reasons, [ERR_UNBOUND_IMMEDIATE]);

        let mut lost = bound_claim("data", "pv1");
        lost["status"]["phase"] = json!("Lost");
        w.claim(lost);
        assert_eq!(
            w.run(&p).unwrap_err().reasons,
            ["persistentvolumeclaim \"data\" bound to non-existent persistentvolume \"pv1\""]
        );
        let mut deleting = bound_claim("data", "pv1");
        deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        deleting["metadata"]["finalizers"] = json!(["kubernetes.io/pvc-protection"]);
        w.claim(deleting);
        assert_eq!(
            w.run(&p).unwrap_err().reasons,
            ["persistentvolumeclaim \"data\" is being deleted"]
        );
    }

    #[test]
    fn ephemeral_volume_claims() {
        let w = World::new(&["a"]);
        let p: Pod = obj(
            json!({"metadata": {"name": "p", "namespace": "default", "uid": "pod-uid"},
            "spec": {"containers": [], "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}}),
        );
        let st = w.run(&PodInfo::new(Arc::new(p), 0)).unwrap_err();
        assert_eq!(
            st.reasons,
            [
                "waiting for ephemeral volume controller to create the persistentvolumeclaim \"p-scratch\""
            ]
        );
    }

    #[test]
    fn bound_local_volume_fits_only_its_node() {
        let mut w = World::new(&["a", "b", "c"]);
        w.claim(bound_claim("data", "local-b"));
        let p = pod_with_claims(&["data"]);
        let no_pv = vec![ERR_PV_NOT_EXIST.to_string()];
        assert_eq!(
            w.run(&p).unwrap(),
            vec![
                ("a".to_string(), no_pv.clone()),
                ("b".to_string(), no_pv.clone()),
                ("c".to_string(), no_pv)
            ]
        );
        w.volume(local_volume("local-b", "", "1Gi", "b"));
        let conflict = vec![ERR_NODE_CONFLICT.to_string()];
        assert_eq!(
            w.run(&p).unwrap(),
            vec![
                ("a".to_string(), conflict.clone()),
                ("b".to_string(), vec![]),
                ("c".to_string(), conflict)
            ]
        );
        // Every claim is bound: nothing to do at PreBind.
        let b = w.cache.node("b").unwrap();
        assert!(w.plugin.reserve(&p, b).unwrap().is_none());
        // A volume without node affinity (hostPath) fits everywhere.
        w.volume(json!({"metadata": {"name": "local-b"}, "spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/tmp/x"}}}));
        assert!(w.run(&p).unwrap().iter().all(|(_, r)| r.is_empty()));
    }

    #[test]
    fn wait_for_first_consumer_claims_pick_a_volume_per_node() {
        let mut w = World::new(&["a", "b", "c"]);
        w.class("local", "WaitForFirstConsumer", NO_PROVISIONER);
        w.claim(claim("small", Some("local"), "1Gi"));
        w.claim(claim("big", Some("local"), "5Gi"));
        w.volume(local_volume("a-10g", "local", "10Gi", "a"));
        w.volume(local_volume("a-2g", "local", "2Gi", "a"));
        w.volume(local_volume("b-1g", "local", "1Gi", "b"));
        w.volume(local_volume("b-other", "other", "100Gi", "b"));
        let p = pod_with_claims(&["big", "small"]);
        let r = w.run(&p).unwrap();
        let conflict = vec![ERR_BIND_CONFLICT.to_string()];
        assert_eq!(
            r,
            vec![
                ("a".to_string(), vec![]),
                ("b".to_string(), conflict.clone()),
                ("c".to_string(), conflict.clone())
            ]
        );
        // Reserve on a: the small claim takes the smallest volume that holds it, the big one the rest.
        let a = w.cache.node("a").unwrap();
        let vols = w.plugin.reserve(&p, a).unwrap().expect("bindings");
        let picked: Vec<(&str, &str)> = vols
            .static_bindings
            .iter()
            .map(|(v, c)| (name_of(v.as_ref()), name_of(c.as_ref())))
            .collect();
        assert_eq!(picked, [("a-2g", "small"), ("a-10g", "big")]);
        let (v, _) = &vols.static_bindings[0];
        let r = v.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
        assert_eq!(r.uid.as_deref(), Some("uid-small"));
        assert_eq!(r.kind.as_deref(), Some("PersistentVolumeClaim"));
        assert_eq!(
            annotation(&v.metadata, ANN_BOUND_BY_CONTROLLER),
            Some("yes")
        );

        // Another pod's claim now sees those volumes as taken.
        w.claim(claim("other", Some("local"), "1Gi"));
        let q = pod_with_claims(&["other"]);
        let r = w.run(&q).unwrap();
        assert_eq!(r[0], ("a".to_string(), conflict.clone()));
        assert_eq!(r[1], ("b".to_string(), vec![]));
        // Until the reservation is given up.
        w.plugin.unreserve(&vols);
        assert_eq!(w.run(&q).unwrap()[0], ("a".to_string(), vec![]));
    }

    #[test]
    fn pre_bound_volume_and_selected_node() {
        let mut w = World::new(&["a", "b"]);
        w.class("local", "WaitForFirstConsumer", NO_PROVISIONER);
        w.claim(claim("data", Some("local"), "1Gi"));
        // A volume pre-bound to the claim (even if smaller and not Available) is the one.
        let mut pre = local_volume("pre", "local", "1Gi", "b");
        pre["spec"]["claimRef"] = json!({"namespace": "default", "name": "data"});
        pre["status"]["phase"] = json!("Pending");
        w.volume(pre);
        w.volume(local_volume("free-a", "local", "1Gi", "a"));
        let p = pod_with_claims(&["data"]);
        let r = w.run(&p).unwrap();
        assert_eq!(r[0].1, [ERR_BIND_CONFLICT]);
        assert!(r[1].1.is_empty());

        // A class that provisions: any node its topology admits; selected-node pins it.
        w.class("dyn", "WaitForFirstConsumer", "example.com/csi");
        w.claim(claim("data", Some("dyn"), "1Gi"));
        assert!(w.run(&p).unwrap().iter().all(|(_, r)| r.is_empty()));
        let vols = w
            .plugin
            .reserve(&p, w.cache.node("b").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            annotation(&vols.provisions[0].metadata, ANN_SELECTED_NODE),
            Some("b")
        );
        let mut selected = claim("data", Some("dyn"), "1Gi");
        selected["metadata"]["annotations"] = json!({ANN_SELECTED_NODE: "b"});
        w.claim(selected);
        let r = w.run(&p).unwrap();
        assert_eq!(r[0].1, [ERR_BIND_CONFLICT]);
        assert!(r[1].1.is_empty());
    }

    #[test]
    fn allowed_topologies() {
        let labels: Labels = [("zone".to_string(), "z1".to_string())].into();
        let t: Vec<TopologySelectorTerm> =
            obj(json!([{"matchLabelExpressions": [{"key": "zone", "values": ["z1", "z2"]}]}]));
        assert!(topology_matches(Some(&t), &labels));
        let t: Vec<TopologySelectorTerm> =
            obj(json!([{"matchLabelExpressions": [{"key": "zone", "values": ["z3"]}]}]));
        assert!(!topology_matches(Some(&t), &labels));
        assert!(topology_matches(None, &labels));
    }

    #[test]
    fn check_bindings_waits_for_the_controller() {
        let mut w = World::new(&["a"]);
        w.class("local", "WaitForFirstConsumer", NO_PROVISIONER);
        w.claim(claim("data", Some("local"), "1Gi"));
        w.volume(local_volume("pv-a", "local", "1Gi", "a"));
        let p = pod_with_claims(&["data"]);
        let mut vols = w
            .plugin
            .reserve(&p, w.cache.node("a").unwrap())
            .unwrap()
            .unwrap();
        // As the API server returned it after the write.
        let mut written: Value = serde_json::to_value(vols.static_bindings[0].0.as_ref()).unwrap();
        written["metadata"]["resourceVersion"] = json!("9");
        vols.static_bindings[0].0 = Arc::new(obj(written.clone()));
        // The store has not seen the write yet: wait.
        assert_eq!(w.plugin.check_bindings(&vols), Ok(false));
        w.volume(written.clone());
        assert_eq!(w.plugin.check_bindings(&vols), Ok(false));
        // The controller binds the claim.
        let mut done = bound_claim("data", "pv-a");
        done["spec"]["storageClassName"] = json!("local");
        w.claim(done);
        assert_eq!(w.plugin.check_bindings(&vols), Ok(true));
        // The controller reset the claimRef: retry scheduling.
        written["metadata"]["resourceVersion"] = json!("10");
        written["spec"]["claimRef"] = Value::Null;
        w.volume(written);
        assert_eq!(
            w.plugin.check_bindings(&vols),
            Err("ClaimRef got reset for pv \"pv-a\"".to_string())
        );
    }
}
