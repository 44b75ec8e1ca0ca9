//! The HorizontalPodAutoscaler controller (autoscaling/v2), as upstream's
//! pkg/controller/podautoscaler: every sync period (15 s, `Settings::sync_period`) each HPA
//! reads its target's `/scale` (Deployments, ReplicaSets, StatefulSets, ReplicationControllers),
//! the pods of the scale's selector and their usage from `metrics.k8s.io` (Resource metrics:
//! cpu and memory, Utilization of requests or AverageValue), proposes a replica count
//! (`replica_calculator`), stabilizes and rate-limits it (`normalize`: fixed rules without
//! `behavior`, its policies with), writes `/scale` when it changed (event SuccessfulRescale) and
//! the status: currentReplicas, desiredReplicas, currentMetrics, lastScaleTime and the
//! conditions AbleToScale, ScalingActive and ScalingLimited with upstream's reasons.
//!
//! A broken HPA (missing target, no metrics, missing requests) is looked at again each sync
//! period, with a Warning event (aggregated by the recorder), never in a hot loop.

pub mod normalize;
pub mod replica_calculator;

use crate::Options;
use futures::future::BoxFuture;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kaji_api::selector::LabelSelector;
use kaji_runtime::controller;
use kaji_runtime::events::{Recorder, reference};
use kaji_runtime::informer::{Factory, Informer};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use normalize::{History, Policy, PolicyType, Rules, Select};
use replica_calculator::{Params, PodInfo, PodMetric};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const COMPONENT: &str = "horizontal-pod-autoscaler";

/// The controller's settings, upstream's `--horizontal-pod-autoscaler-*` flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often each HPA is synced (`--horizontal-pod-autoscaler-sync-period`, 15 s).
    pub sync_period: Duration,
    /// The scale-down stabilization window of HPAs without `behavior.scaleDown`
    /// (`--horizontal-pod-autoscaler-downscale-stabilization`, 5 min).
    pub downscale_stabilization: Duration,
    /// No rescale while |1 - usage/target| is at most this (`--horizontal-pod-autoscaler-tolerance`, 0.1).
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (5 min).
    pub cpu_initialization_period: Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (30 s).
    pub initial_readiness_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sync_period: Duration::from_secs(15),
            downscale_stabilization: Duration::from_secs(300),
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
        }
    }
}

struct Context {
    client: Client,
    hpas: Arc<Informer<HorizontalPodAutoscaler>>,
    pods: Arc<Informer<Pod>>,
    recorder: Recorder,
    settings: Settings,
    /// Recommendations and scale events per HPA (namespace/name).
    history: Mutex<HashMap<String, History>>,
    /// When each HPA was last synced, at which generation: changes of its own (its status
    /// writes) do not sync it again before the sync period, as upstream's rate-limited queue.
    last_sync: Mutex<HashMap<String, (std::time::Instant, i64)>>,
}

pub fn run(f: &Factory, opts: Options) -> BoxFuture<'static, anyhow::Result<()>> {
    let hpas = f.informer::<HorizontalPodAutoscaler>();
    let ctx = Arc::new(Context {
        client: f.client(),
        hpas: hpas.clone(),
        pods: f.informer::<Pod>(),
        recorder: Recorder::new(f.client(), COMPONENT),
        settings: opts.horizontal_pod_autoscaler.clone(),
        history: Mutex::new(HashMap::new()),
        last_sync: Mutex::new(HashMap::new()),
    });
    controller::run(
        COMPONENT,
        f,
        controller::for_informer(&hpas),
        reconcile,
        ctx,
    )
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The REST path of a scale target's `/scale`, or upstream's RESTMapper error.
fn scale_path(ns: &str, target: &Value) -> Result<String, String> {
    let api_version = target["apiVersion"].as_str().unwrap_or_default();
    let kind = target["kind"].as_str().unwrap_or_default();
    let name = target["name"].as_str().unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let plural = match (group, kind) {
        ("apps", "Deployment") | ("extensions", "Deployment") => "deployments",
        ("apps", "ReplicaSet") | ("extensions", "ReplicaSet") => "replicasets",
        ("apps", "StatefulSet") => "statefulsets",
        ("", "ReplicationController") => "replicationcontrollers",
        _ => {
            return Err(format!(
                "no matches for kind \"{kind}\" in group \"{group}\""
            ));
        }
    };
    let prefix = if group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{group}/v1")
    };
    Ok(format!("{prefix}/namespaces/{ns}/{plural}/{name}/scale"))
}

async fn request(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let mut req = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(
            body.map(|b| serde_json::to_vec(b).unwrap_or_default())
                .unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
    client.request::<Value>(req).await.map_err(|e| match e {
        kube::Error::Api(s) => s.message,
        other => other.to_string(),
    })
}

/// Go's duration text (`15s`, `1m0.5s`, `250ms`) in milliseconds (0 if it does not parse).
fn parse_go_duration(s: &str) -> i64 {
    kaji_api::duration::parse_go(s).map_or(0, |n| n / 1_000_000)
}

fn rfc3339_ms(v: &Value) -> Option<i64> {
    v.as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Pod usage of `resource` in milli-units from the metrics API (upstream's metrics client: the
/// sum over a pod's containers).
async fn pod_metrics(
    client: &Client,
    ns: &str,
    selector: &str,
    resource: &str,
) -> Result<HashMap<String, PodMetric>, String> {
    let sel: String = url_escape(selector);
    let list = request(client, "GET", &format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector={sel}"), None)
        .await
        .map_err(|e| format!("unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: {e}"))?;
    let mut out = HashMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let Some(name) = item.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let mut sum = 0i64;
        let mut found = false;
        for c in item["containers"].as_array().into_iter().flatten() {
            if let Some(q) = c
                .pointer(&format!("/usage/{resource}"))
                .and_then(Value::as_str)
                && let Some(v) = kaji_api::quantity::milli_value(q)
            {
                sum += i64::try_from(v).unwrap_or(i64::MAX);
                found = true;
            }
        }
        if !found {
            continue;
        }
        out.insert(
            name.to_string(),
            PodMetric {
                value_milli: sum,
                timestamp_ms: rfc3339_ms(&item["timestamp"]).unwrap_or(0),
                window_ms: parse_go_duration(item["window"].as_str().unwrap_or("0s")),
            },
        );
    }
    Ok(out)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn pod_info(pod: &Pod, resource: &str) -> PodInfo {
    let status = pod.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                c.status == "True",
                c.last_transition_time
                    .as_ref()
                    .map_or(0, |t| t.0.as_millisecond()),
            )
        });
    let name = pod.name_any();
    let mut request = Ok(0i64);
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let q = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource));
        match q.and_then(|q| kaji_api::quantity::milli_value(&q.0)) {
            Some(v) => {
                if let Ok(sum) = &mut request {
                    *sum += i64::try_from(v).unwrap_or(i64::MAX);
                }
            }
            None => {
                request = Err(format!(
                    "missing request for {resource} in container {} of Pod {name}",
                    c.name
                ));
                break;
            }
        }
    }
    PodInfo {
        name,
        phase: status.phase.unwrap_or_default(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready,
        start_time_ms: status.start_time.map(|t| t.0.as_millisecond()),
        request_milli: request,
    }
}

/// One metric's outcome: (replicas, metric name for messages, status), or
/// (condition reason, error).
type MetricResult = Result<(i32, String, Value), (&'static str, String)>;

async fn compute_metric(
    ctx: &Context,
    ns: &str,
    selector: &str,
    pods: &[Arc<Pod>],
    spec: &Value,
    current: i32,
) -> MetricResult {
    let ty = spec["type"].as_str().unwrap_or_default();
    if ty != "Resource" {
        let reason = match ty {
            "Pods" => "FailedGetPodsMetric",
            "Object" => "FailedGetObjectMetric",
            "External" => "FailedGetExternalMetric",
            "ContainerResource" => "FailedGetContainerResourceMetric",
            _ => "InvalidMetricSourceType",
        };
        return Err((
            reason,
            format!(
                "unable to get metric of type {ty}: the custom and external metrics APIs are not served (Kaji serves metrics.k8s.io only)"
            ),
        ));
    }
    let resource = spec
        .pointer("/resource/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let target = spec
        .pointer("/resource/target")
        .cloned()
        .unwrap_or(json!({}));
    let s = &ctx.settings;
    let params = Params {
        tolerance: s.tolerance,
        cpu_initialization_period_ms: s.cpu_initialization_period.as_millis() as i64,
        initial_readiness_delay_ms: s.initial_readiness_delay.as_millis() as i64,
        now_ms: now_ms(),
        cpu: resource == "cpu",
    };
    let infos: Vec<PodInfo> = pods.iter().map(|p| pod_info(p, resource)).collect();
    let fail = |e: String, what: &str| {
        (
            "FailedGetResourceMetric",
            format!("failed to get {resource} {what}: {e}"),
        )
    };
    if let Some(avg) = target.get("averageValue").and_then(Value::as_str) {
        let target_milli = kaji_api::quantity::milli_value(avg)
            .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let metrics = pod_metrics(&ctx.client, ns, selector, resource)
            .await
            .map_err(|e| fail(e, "usage"))?;
        let (replicas, usage) = replica_calculator::raw_resource_replicas(
            current,
            target_milli,
            resource,
            &infos,
            metrics,
            &params,
        )
        .map_err(|e| fail(e, "usage"))?;
        let status = json!({"type": "Resource", "resource": {"name": resource, "current": {"averageValue": milli_quantity(usage)}}});
        return Ok((replicas, format!("{resource} resource"), status));
    }
    let Some(utilization) = target.get("averageUtilization").and_then(Value::as_i64) else {
        return Err((
            "FailedGetResourceMetric",
            "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into(),
        ));
    };
    let metrics = pod_metrics(&ctx.client, ns, selector, resource)
        .await
        .map_err(|e| fail(e, "utilization"))?;
    let (replicas, percent, raw) = replica_calculator::resource_replicas(
        current,
        utilization as i32,
        resource,
        &infos,
        metrics,
        &params,
    )
    .map_err(|e| fail(e, "utilization"))?;
    let status = json!({"type": "Resource", "resource": {"name": resource, "current": {"averageUtilization": percent, "averageValue": milli_quantity(raw)}}});
    Ok((
        replicas,
        format!("{resource} resource utilization (percentage of request)"),
        status,
    ))
}

/// `resource.NewMilliQuantity(v, DecimalSI)` printed canonically: `250m`, `2`, `128974848`, `2k`.
pub fn milli_quantity(milli: i64) -> String {
    if milli == 0 {
        return "0".into();
    }
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let mut v = milli / 1000;
    let mut suffix = "";
    for s in ["k", "M", "G", "T", "P", "E"] {
        if v % 1000 != 0 {
            break;
        }
        v /= 1000;
        suffix = s;
    }
    format!("{v}{suffix}")
}

fn rules(spec: Option<&Value>, default: Rules) -> Rules {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        return default;
    };
    let select = match spec["selectPolicy"].as_str() {
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        _ => Select::Max,
    };
    let policies: Vec<Policy> = spec["policies"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| Policy {
                    kind: if p["type"] == "Pods" {
                        PolicyType::Pods
                    } else {
                        PolicyType::Percent
                    },
                    value: p["value"].as_i64().unwrap_or(0) as i32,
                    period_seconds: p["periodSeconds"].as_i64().unwrap_or(15) as i32,
                })
                .collect()
        })
        .unwrap_or_else(|| default.policies.clone());
    Rules {
        stabilization_window_seconds: spec["stabilizationWindowSeconds"]
            .as_i64()
            .map_or(default.stabilization_window_seconds, |w| w as i32),
        select,
        policies,
    }
}

/// Upstream setConditionInList: the transition time moves only when the status changes.
fn set_condition(
    conditions: &mut Vec<Value>,
    (ty, status, reason, message): (&str, &str, &str, String),
) {
    let now = now_rfc3339();
    match conditions.iter_mut().find(|c| c["type"] == ty) {
        Some(c) => {
            if c["status"] != status {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => conditions.push(json!({"type": ty, "status": status, "lastTransitionTime": now, "reason": reason, "message": message})),
    }
}

async fn reconcile(
    hpa: Arc<HorizontalPodAutoscaler>,
    ctx: Arc<Context>,
) -> Result<Action, controller::Error> {
    let requeue = Action::requeue(ctx.settings.sync_period);
    if hpa.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = hpa.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", hpa.name_any());
    let generation = hpa.metadata.generation.unwrap_or(0);
    {
        let mut last = ctx
            .last_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, g)) = last.get(&key)
            && *g == generation
            && at.elapsed() < ctx.settings.sync_period
        {
            return Ok(Action::requeue(ctx.settings.sync_period - at.elapsed()));
        }
        last.insert(key.clone(), (std::time::Instant::now(), generation));
        // Forget HPAs that are gone (their recommendations and scale events with them).
        let live = ctx.hpas.store().state().len();
        if last.len() > 2 * live + 16 {
            let keep: std::collections::HashSet<String> = ctx
                .hpas
                .store()
                .state()
                .iter()
                .map(|h| format!("{}/{}", h.namespace().unwrap_or_default(), h.name_any()))
                .collect();
            last.retain(|k, _| keep.contains(k));
            ctx.history
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|k, _| keep.contains(k));
        }
    }
    let obj = serde_json::to_value(&*hpa).map_err(|e| anyhow::anyhow!(e))?;
    let spec = &obj["spec"];
    let old_status = obj.get("status").cloned().unwrap_or(json!({}));
    let mut conditions: Vec<Value> = old_status["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let reference = reference(hpa.as_ref());
    let min = spec["minReplicas"].as_i64().unwrap_or(1) as i32;
    let max = spec["maxReplicas"].as_i64().unwrap_or(1) as i32;
    let mut status = json!({
        "currentReplicas": old_status["currentReplicas"].as_i64().unwrap_or(0),
        "desiredReplicas": old_status["desiredReplicas"].as_i64().unwrap_or(0),
    });
    if let Some(t) = old_status.get("lastScaleTime").filter(|t| !t.is_null()) {
        status["lastScaleTime"] = t.clone();
    }
    if let Some(m) = old_status.get("currentMetrics").filter(|m| !m.is_null()) {
        status["currentMetrics"] = m.clone();
    }

    // The target's scale.
    let scale = match scale_path(&ns, &spec["scaleTargetRef"]) {
        Ok(path) => request(&ctx.client, "GET", &path, None)
            .await
            .map(|s| (path, s)),
        Err(e) => Err(e),
    };
    let (scale_path, scale) = match scale {
        Ok(s) => s,
        Err(e) => {
            ctx.recorder.warning(&reference, "FailedGetScale", &e).await;
            set_condition(
                &mut conditions,
                (
                    "AbleToScale",
                    "False",
                    "FailedGetScale",
                    format!("the HPA controller was unable to get the target's current scale: {e}"),
                ),
            );
            status["conditions"] = json!(conditions);
            write_status(&ctx, &hpa, &old_status, status).await?;
            return Ok(requeue);
        }
    };
    let current = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0) as i32;
    status["currentReplicas"] = json!(current);
    set_condition(
        &mut conditions,
        (
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale".into(),
        ),
    );

    let mut desired;
    let mut rescale_reason = String::new();
    if current == 0 && min != 0 {
        // Autoscaling is disabled for this resource.
        desired = 0;
        set_condition(
            &mut conditions,
            (
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero".into(),
            ),
        );
    } else if current > max {
        rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
    } else if current < min {
        rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
    } else {
        let selector = scale
            .pointer("/status/selector")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if selector.is_empty() {
            ctx.recorder
                .warning(&reference, "SelectorRequired", "selector is required")
                .await;
            set_condition(
                &mut conditions,
                (
                    "ScalingActive",
                    "False",
                    "InvalidSelector",
                    "the HPA target's scale is missing a selector".into(),
                ),
            );
            status["conditions"] = json!(conditions);
            write_status(&ctx, &hpa, &old_status, status).await?;
            return Ok(requeue);
        }
        let parsed = match LabelSelector::parse(&selector) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!(
                    "couldn't convert selector into a corresponding internal selector object: {e}"
                );
                ctx.recorder
                    .warning(&reference, "InvalidSelector", &msg)
                    .await;
                set_condition(
                    &mut conditions,
                    ("ScalingActive", "False", "InvalidSelector", msg),
                );
                status["conditions"] = json!(conditions);
                write_status(&ctx, &hpa, &old_status, status).await?;
                return Ok(requeue);
            }
        };
        let pods: Vec<Arc<Pod>> = ctx
            .pods
            .in_namespace(&ns)
            .into_iter()
            .filter(|p| {
                parsed.matches_with(|k| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(k))
                        .map(String::as_str)
                })
            })
            .collect();
        // computeReplicasForMetrics: the largest proposal of the valid metrics.
        let mut metric_specs: Vec<Value> = spec["metrics"].as_array().cloned().unwrap_or_default();
        if metric_specs.is_empty() {
            // Upstream's default target (an autoscaling/v1 object without one).
            metric_specs.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}));
        }
        let (mut best, mut best_name) = (0, String::new());
        let mut statuses = Vec::new();
        let mut first_error: Option<(&'static str, String)> = None;
        let mut invalid = 0;
        for m in &metric_specs {
            match compute_metric(&ctx, &ns, &selector, &pods, m, current).await {
                Ok((replicas, name, st)) => {
                    statuses.push(st);
                    if replicas > best || best_name.is_empty() {
                        (best, best_name) = (replicas.max(best), name);
                    }
                }
                Err((reason, e)) => {
                    invalid += 1;
                    ctx.recorder.warning(&reference, reason, &e).await;
                    set_condition(
                        &mut conditions,
                        (
                            "ScalingActive",
                            "False",
                            reason,
                            format!("the HPA was unable to compute the replica count: {e}"),
                        ),
                    );
                    first_error.get_or_insert((reason, e));
                }
            }
        }
        if !statuses.is_empty() {
            status["currentMetrics"] = json!(statuses);
        }
        if invalid > 0 && (invalid == metric_specs.len() || best < current) {
            // Upstream: no scaling when every metric failed, nor down when one did.
            if let Some((_, e)) = &first_error {
                let msg = format!(
                    "invalid metrics ({invalid} invalid out of {}), first error is: {e}",
                    metric_specs.len()
                );
                ctx.recorder
                    .warning(&reference, "FailedComputeMetricsReplicas", &msg)
                    .await;
            }
            status["desiredReplicas"] = json!(current);
            status["conditions"] = json!(conditions);
            write_status(&ctx, &hpa, &old_status, status).await?;
            return Ok(requeue);
        }
        if invalid == 0 {
            set_condition(
                &mut conditions,
                (
                    "ScalingActive",
                    "True",
                    "ValidMetricFound",
                    format!(
                        "the HPA was able to successfully calculate a replica count from {best_name}"
                    ),
                ),
            );
        }
        desired = best;
        if desired > current {
            rescale_reason = format!("{best_name} above target");
        } else if desired < current {
            rescale_reason = "All metrics below target".into();
        }
        let now = now_ms();
        let behavior = spec.get("behavior").filter(|b| b.is_object());
        let normalized = {
            let mut history = ctx
                .history
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let h = history.entry(key.clone()).or_default();
            match behavior {
                None => normalize::without_behavior(
                    h,
                    now,
                    ctx.settings.downscale_stabilization,
                    current,
                    desired,
                    min,
                    max,
                ),
                Some(b) => {
                    let up = rules(b.get("scaleUp"), Rules::default_up());
                    let down = rules(
                        b.get("scaleDown"),
                        Rules::default_down(ctx.settings.downscale_stabilization),
                    );
                    normalize::with_behavior(h, now, &up, &down, current, desired, min, max)
                }
            }
        };
        set_condition(&mut conditions, normalized.able_to_scale);
        set_condition(&mut conditions, normalized.scaling_limited);
        desired = normalized.replicas;
    }

    let rescale = desired != current;
    if rescale {
        let mut new_scale = scale.clone();
        new_scale["spec"]["replicas"] = json!(desired);
        if let Err(e) = request(&ctx.client, "PUT", &scale_path, Some(&new_scale)).await {
            ctx.recorder
                .warning(
                    &reference,
                    "FailedRescale",
                    &format!("New size: {desired}; reason: {rescale_reason}; error: {e}"),
                )
                .await;
            set_condition(
                &mut conditions,
                (
                    "AbleToScale",
                    "False",
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {e}"),
                ),
            );
            status["conditions"] = json!(conditions);
            write_status(&ctx, &hpa, &old_status, status).await?;
            return Err(anyhow::anyhow!("updating the scale of {key}: {e}").into());
        }
        set_condition(
            &mut conditions,
            (
                "AbleToScale",
                "True",
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
            ),
        );
        ctx.recorder
            .normal(
                &reference,
                "SuccessfulRescale",
                &format!("New size: {desired}; reason: {rescale_reason}"),
            )
            .await;
        tracing::info!(hpa = %key, from = current, to = desired, reason = %rescale_reason, "rescaled");
        if let Some(b) = spec.get("behavior").filter(|b| b.is_object()) {
            let up = rules(b.get("scaleUp"), Rules::default_up());
            let down = rules(
                b.get("scaleDown"),
                Rules::default_down(ctx.settings.downscale_stabilization),
            );
            let longest = up
                .policies
                .iter()
                .chain(down.policies.iter())
                .map(|p| p.period_seconds)
                .max()
                .unwrap_or(15);
            let mut history = ctx
                .history
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            normalize::store_scale_event(
                history.entry(key.clone()).or_default(),
                now_ms(),
                longest,
                current,
                desired,
            );
        }
        status["lastScaleTime"] = json!(now_rfc3339());
    }
    status["desiredReplicas"] = json!(desired);
    status["conditions"] = json!(conditions);
    write_status(&ctx, &hpa, &old_status, status).await?;
    Ok(requeue)
}

/// Writes the status when it changed (upstream updateStatusIfNeeded).
async fn write_status(
    ctx: &Context,
    hpa: &HorizontalPodAutoscaler,
    old: &Value,
    mut new: Value,
) -> Result<(), controller::Error> {
    if new.get("currentMetrics").is_none() {
        new["currentMetrics"] = Value::Null;
    }
    let unchanged = [
        "currentReplicas",
        "desiredReplicas",
        "lastScaleTime",
        "conditions",
    ]
    .iter()
    .all(|k| old.get(*k) == new.get(*k))
        && old.get("currentMetrics").cloned().unwrap_or(Value::Null) == new["currentMetrics"];
    if unchanged {
        return Ok(());
    }
    let api: Api<HorizontalPodAutoscaler> =
        Api::namespaced(ctx.client.clone(), &hpa.namespace().unwrap_or_default());
    api.patch_status(
        &hpa.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": new})),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_paths_and_quantities() {
        assert_eq!(
            scale_path(
                "ns",
                &json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"})
            )
            .unwrap(),
            "/apis/apps/v1/namespaces/ns/deployments/d/scale"
        );
        assert_eq!(
            scale_path(
                "ns",
                &json!({"apiVersion": "apps/v1", "kind": "Foo", "name": "d"})
            )
            .unwrap_err(),
            "no matches for kind \"Foo\" in group \"apps\""
        );
        assert_eq!(milli_quantity(250), "250m");
        assert_eq!(milli_quantity(2000), "2");
        assert_eq!(milli_quantity(128_974_848_000), "128974848");
        assert_eq!(parse_go_duration("1m0.5s"), 60_500);
        assert_eq!(parse_go_duration("2.001s"), 2001);
    }
}
