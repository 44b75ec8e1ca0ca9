//! What one sync of a pod should do, decided apart from doing it: upstream's `computePodActions`
//! (pkg/kubelet/kuberuntime/kuberuntime_manager.go). [`compute_pod_actions`] is a pure function
//! of the pod, what the runtime has for it ([`RuntimePod`]), the probe results and the crash-loop
//! back-off; the worker observes, calls it, and executes the [`PodActions`] it returns.

use super::backoff::{Backoff, cri_time};
use super::container::container_hash;
use super::probe::Kind;
use crate::cri::{self, api};
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// What the runtime has for the pod.
#[derive(Clone, Debug, Default)]
pub struct RuntimePod {
    /// The ready sandbox, if any.
    pub sandbox: Option<api::PodSandbox>,
    /// Every sandbox of the pod, ready or not.
    pub sandboxes: Vec<api::PodSandbox>,
    pub pod_ip: Option<String>,
    /// CRI statuses by container name, newest first (all sandboxes).
    pub instances: HashMap<String, Vec<api::ContainerStatus>>,
    pub containers: Vec<api::Container>,
}

impl RuntimePod {
    /// The newest instance of container `name` in the ready sandbox.
    pub fn current(&self, name: &str) -> Option<&api::ContainerStatus> {
        let sandbox = self.sandbox.as_ref()?;
        self.instances.get(name)?.iter().find(|s| {
            self.containers
                .iter()
                .any(|c| c.id == s.id && c.pod_sandbox_id == sandbox.id)
        })
    }

    /// When the newest exited instance of container `name` (in any sandbox) finished: the start
    /// of its crash-loop back-off window (upstream's doBackOff).
    pub fn last_finished(&self, name: &str) -> Option<SystemTime> {
        self.instances
            .get(name)?
            .iter()
            .find(|s| s.state == api::ContainerState::ContainerExited as i32)
            .map(|s| cri_time(s.finished_at))
    }

    /// The attempt of the ready sandbox, else of the sandbox to create next.
    pub fn sandbox_attempt(&self) -> u32 {
        if let Some(m) = self.sandbox.as_ref().and_then(|s| s.metadata.as_ref()) {
            return m.attempt;
        }
        self.sandboxes
            .first()
            .and_then(|s| s.metadata.as_ref())
            .map_or(0, |m| m.attempt + 1)
    }
}

/// Everything the decision depends on besides the runtime's view.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a RuntimePod,
    /// The worker already saw the pod reach Succeeded or Failed.
    pub terminal: bool,
    /// Probe results by (container id, kind); absent means no result yet.
    pub probes: &'a HashMap<(String, Kind), bool>,
    /// Crash-loop back-off by container name.
    pub crash_backoff: &'a HashMap<String, Backoff>,
    pub now: SystemTime,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SandboxAction {
    /// The ready sandbox stays.
    Keep,
    /// No sandbox is ready: stop the old ones (`stop`), then create one.
    Create { stop: Vec<String> },
    /// The sandbox died under restartPolicy Never: nothing of the pod runs again.
    GiveUp,
}

/// Why a running container is killed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KillReason {
    /// Its spec (hash) differs from the one it was created with (an image update).
    SpecChanged,
    Liveness,
    Startup,
}

impl KillReason {
    /// The Killing event's message. (Upstream leaves out "will be restarted" when the policy
    /// does not restart the container; this agent has always said it.)
    pub fn message(self, container: &str) -> String {
        match self {
            KillReason::SpecChanged => {
                format!("Container {container} definition changed, will be restarted")
            }
            KillReason::Liveness => {
                format!("Container {container} failed liveness probe, will be restarted")
            }
            KillReason::Startup => {
                format!("Container {container} failed startup probe, will be restarted")
            }
        }
    }
}

/// What to do with one container.
#[derive(Clone, Debug, PartialEq)]
pub enum ContainerAction {
    /// No instance in the current sandbox (or none that ever ran): create and start one.
    Start,
    /// Exited and due to run again: move its back-off on (for the exit at `finished`), start it.
    Restart { finished: SystemTime },
    /// Exited, within its crash-loop back-off: wait `remaining` (CrashLoopBackOff).
    BackOff {
        delay: Duration,
        remaining: Duration,
    },
    /// Running but failing or outdated: kill it with `grace` seconds, then, when `restart`, run
    /// it again (under the back-off, timed from the kill).
    Kill {
        id: String,
        reason: KillReason,
        grace: i64,
        restart: bool,
    },
    /// Created but never started (a failed start): remove it, so that the next sync starts it.
    Remove { id: String },
}

/// What one sync does, in order: kill the pod, or settle the sandbox, then the next init
/// container, then the app containers.
#[derive(Clone, Debug, PartialEq)]
pub struct PodActions {
    /// The pod is done (Succeeded or Failed): stop everything, start nothing.
    pub kill_pod: bool,
    pub sandbox: SandboxAction,
    /// The attempt of the sandbox the containers run in (the next one when it is created).
    pub sandbox_attempt: u32,
    /// Init containers that completed, in order (their waiting reasons are cleared).
    pub init_succeeded: Vec<String>,
    /// The init container to act on next, one at a time, in order.
    pub next_init: Option<(String, ContainerAction)>,
    /// An init container failed under restartPolicy Never: the pod fails.
    pub init_failed: bool,
    /// Whether every init container completed (app containers are acted on only then).
    pub init_done: bool,
    /// Sidecars (init containers with restartPolicy Always) to restart or kill, in spec order.
    pub sidecars: Vec<(String, ContainerAction)>,
    /// App containers to act on, in spec order.
    pub containers: Vec<(String, ContainerAction)>,
    /// IDs of exited app containers, whose probes stop.
    pub exited: Vec<String>,
}

impl PodActions {
    fn new(sandbox: SandboxAction, sandbox_attempt: u32) -> PodActions {
        PodActions {
            kill_pod: false,
            sandbox,
            sandbox_attempt,
            init_succeeded: Vec::new(),
            next_init: None,
            init_failed: false,
            init_done: false,
            sidecars: Vec::new(),
            containers: Vec::new(),
            exited: Vec::new(),
        }
    }
}

/// Whether an init container is a sidecar (a restartable init container: restartPolicy Always),
/// which keeps running beside the app containers.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's restart policy (Always when unset).
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The pod's terminationGracePeriodSeconds (30 when unset).
pub fn grace_period(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
}

/// Whether the pod's status already says Succeeded or Failed.
pub fn phase_is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// An exited container that is to run again: at once, or after its crash-loop back-off, timed
/// from the finishedAt of its newest exited instance (upstream's doBackOff).
pub fn restart_action(
    runtime: &RuntimePod,
    name: &str,
    crash_backoff: &HashMap<String, Backoff>,
    now: SystemTime,
) -> ContainerAction {
    let Some(finished) = runtime.last_finished(name) else {
        return ContainerAction::Start;
    };
    let b = crash_backoff.get(name).cloned().unwrap_or_default();
    if b.in_backoff_since_at(finished, now) {
        ContainerAction::BackOff {
            delay: b.delay,
            remaining: b.remaining_since_at(finished, now),
        }
    } else {
        ContainerAction::Restart { finished }
    }
}

/// Upstream's computePodActions, for this worker's way of syncing: a pod already done is killed;
/// without a ready sandbox one is created (but not under restartPolicy Never once one existed);
/// init containers run one at a time, in order, and a failed one is restarted under the back-off
/// or, with Never, fails the pod; then each app container is started, restarted after an exit
/// as the restart policy says (under the back-off), killed and restarted when its liveness or
/// startup probe failed or its spec changed, or removed when it was created but never started.
pub fn compute_pod_actions(inp: &Inputs) -> PodActions {
    let (pod, rt) = (inp.pod, inp.runtime);
    let attempt = rt.sandbox_attempt();
    if inp.terminal || phase_is_terminal(pod) {
        let mut a = PodActions::new(SandboxAction::Keep, attempt);
        a.kill_pod = true;
        return a;
    }
    let policy = restart_policy(pod);
    if rt.sandbox.is_none() {
        let action = if policy == "Never" && !rt.sandboxes.is_empty() {
            SandboxAction::GiveUp
        } else {
            SandboxAction::Create {
                stop: rt.sandboxes.iter().map(|s| s.id.clone()).collect(),
            }
        };
        return PodActions::new(action, attempt);
    }
    let mut a = PodActions::new(SandboxAction::Keep, attempt);
    let spec = pod.spec.clone().unwrap_or_default();
    let exited = |s: &api::ContainerStatus| s.state == api::ContainerState::ContainerExited as i32;
    let running =
        |s: &api::ContainerStatus| s.state == api::ContainerState::ContainerRunning as i32;
    a.init_done = true;
    for c in spec.init_containers.iter().flatten() {
        if is_sidecar(c) {
            // upstream computeInitContainerActions for restartable init containers: started
            // once, then the next init container may run when it counts as started (running,
            // its startup probe passed); an exit restarts it whatever the pod's policy.
            match rt.current(&c.name) {
                Some(s) if running(s) => {
                    if let Some(k) = kill_action(inp, c, s, "Always") {
                        a.sidecars.push((c.name.clone(), k));
                    }
                    let started = c.startup_probe.is_none()
                        || inp.probes.get(&(s.id.clone(), Kind::Startup)) == Some(&true);
                    if started {
                        continue;
                    }
                    a.init_done = false;
                    break;
                }
                Some(s) if exited(s) => {
                    a.exited.push(s.id.clone());
                    a.sidecars.push((
                        c.name.clone(),
                        restart_action(rt, &c.name, inp.crash_backoff, inp.now),
                    ));
                    continue;
                }
                Some(s) if s.state == api::ContainerState::ContainerCreated as i32 => {
                    a.sidecars
                        .push((c.name.clone(), ContainerAction::Remove { id: s.id.clone() }));
                    a.init_done = false;
                    break;
                }
                _ => {
                    a.init_done = false;
                    a.next_init = Some((c.name.clone(), ContainerAction::Start));
                    break;
                }
            }
        }
        let action = match rt.current(&c.name) {
            Some(s) if exited(s) && s.exit_code == 0 => {
                a.init_succeeded.push(c.name.clone());
                continue;
            }
            Some(s) if running(s) => None,
            Some(s) if exited(s) => {
                if policy == "Never" {
                    a.init_failed = true;
                    None
                } else {
                    Some(restart_action(rt, &c.name, inp.crash_backoff, inp.now))
                }
            }
            _ => Some(ContainerAction::Start),
        };
        a.init_done = false;
        a.next_init = action.map(|x| (c.name.clone(), x));
        break;
    }
    if !a.init_done || a.init_failed {
        // Sidecars are restarted while initialization goes on, but not once the pod failed.
        if a.init_failed {
            a.sidecars.clear();
        }
        return a;
    }
    for c in &spec.containers {
        let action = match rt.current(&c.name) {
            Some(s) if running(s) => kill_action(inp, c, s, policy),
            Some(s) if exited(s) => {
                a.exited.push(s.id.clone());
                let restart = match policy {
                    "Always" => true,
                    "OnFailure" => s.exit_code != 0,
                    _ => false,
                };
                restart.then(|| restart_action(rt, &c.name, inp.crash_backoff, inp.now))
            }
            Some(s) if s.state == api::ContainerState::ContainerCreated as i32 => {
                Some(ContainerAction::Remove { id: s.id.clone() })
            }
            Some(_) => None,
            None => Some(ContainerAction::Start),
        };
        if let Some(action) = action {
            a.containers.push((c.name.clone(), action));
        }
    }
    a
}

/// A running app container that must be killed: its spec changed (restarted whatever the
/// policy), or its liveness probe (or, when it has one, its startup probe) failed (restarted
/// unless the policy is Never; the probe's own terminationGracePeriodSeconds wins over the
/// pod's).
fn kill_action(
    inp: &Inputs,
    c: &Container,
    s: &api::ContainerStatus,
    policy: &str,
) -> Option<ContainerAction> {
    let failed = |k: Kind| inp.probes.get(&(s.id.clone(), k)) == Some(&false);
    let changed = s
        .annotations
        .get(cri::CONTAINER_HASH_ANNOTATION)
        .is_some_and(|h| *h != container_hash(c));
    let (reason, probe) = if changed {
        (KillReason::SpecChanged, None)
    } else if failed(Kind::Liveness) {
        (KillReason::Liveness, c.liveness_probe.as_ref())
    } else if c.startup_probe.is_some() && failed(Kind::Startup) {
        (KillReason::Startup, c.startup_probe.as_ref())
    } else {
        return None;
    };
    let grace = probe
        .and_then(|p| p.termination_grace_period_seconds)
        .unwrap_or_else(|| grace_period(inp.pod));
    Some(ContainerAction::Kill {
        id: s.id.clone(),
        reason,
        grace,
        restart: changed || policy != "Never",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn nanos(t: SystemTime) -> i64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
    }

    /// A pod with init containers `init` and app containers `app`, restart policy `policy`.
    fn pod(policy: &str, init: &[&str], app: &[&str]) -> Pod {
        let named = |names: &[&str]| {
            names
                .iter()
                .map(|n| json!({"name": n, "image": "busybox"}))
                .collect::<Vec<_>>()
        };
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "initContainers": named(init),
                     "containers": named(app)},
        }))
        .unwrap()
    }

    fn sandbox(id: &str, ready: bool, attempt: u32) -> api::PodSandbox {
        api::PodSandbox {
            id: id.into(),
            state: if ready {
                api::PodSandboxState::SandboxReady as i32
            } else {
                api::PodSandboxState::SandboxNotready as i32
            },
            metadata: Some(api::PodSandboxMetadata {
                attempt,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The runtime's view: sandboxes (the ready one is current) and container instances as
    /// (name, id, sandbox id, state, exit code, finished at).
    struct Rt(RuntimePod);

    impl Rt {
        fn new(sandboxes: Vec<api::PodSandbox>) -> Rt {
            Rt(RuntimePod {
                sandbox: sandboxes
                    .iter()
                    .find(|s| s.state == api::PodSandboxState::SandboxReady as i32)
                    .cloned(),
                sandboxes,
                ..Default::default()
            })
        }
        fn ready() -> Rt {
            Rt::new(vec![sandbox("s1", true, 0)])
        }
        fn with(
            mut self,
            name: &str,
            id: &str,
            state: api::ContainerState,
            exit_code: i32,
            finished: Option<SystemTime>,
        ) -> Rt {
            let sandbox = self
                .0
                .sandbox
                .as_ref()
                .map_or("s0".into(), |s| s.id.clone());
            self.0.containers.push(api::Container {
                id: id.into(),
                pod_sandbox_id: sandbox,
                state: state as i32,
                ..Default::default()
            });
            self.0.instances.entry(name.into()).or_default().insert(
                0,
                api::ContainerStatus {
                    id: id.into(),
                    state: state as i32,
                    exit_code,
                    finished_at: finished.map_or(0, nanos),
                    ..Default::default()
                },
            );
            self
        }
        fn running(self, name: &str, id: &str) -> Rt {
            self.with(name, id, api::ContainerState::ContainerRunning, 0, None)
        }
        fn exited(self, name: &str, id: &str, code: i32, finished: SystemTime) -> Rt {
            self.with(
                name,
                id,
                api::ContainerState::ContainerExited,
                code,
                Some(finished),
            )
        }
    }

    struct Case {
        pod: Pod,
        rt: RuntimePod,
        terminal: bool,
        probes: HashMap<(String, Kind), bool>,
        backoff: HashMap<String, Backoff>,
    }

    impl Case {
        fn new(pod: Pod, rt: Rt) -> Case {
            Case {
                pod,
                rt: rt.0,
                terminal: false,
                probes: HashMap::new(),
                backoff: HashMap::new(),
            }
        }
        fn actions(&self) -> PodActions {
            compute_pod_actions(&Inputs {
                pod: &self.pod,
                runtime: &self.rt,
                terminal: self.terminal,
                probes: &self.probes,
                crash_backoff: &self.backoff,
                now: at(100),
            })
        }
    }

    fn start(names: &[&str]) -> Vec<(String, ContainerAction)> {
        names
            .iter()
            .map(|n| (n.to_string(), ContainerAction::Start))
            .collect()
    }

    #[test]
    fn a_fresh_pod_gets_a_sandbox_then_its_containers() {
        let p = pod("Always", &[], &["a", "b"]);
        let a = Case::new(p.clone(), Rt::new(vec![])).actions();
        assert_eq!(a.sandbox, SandboxAction::Create { stop: vec![] });
        assert_eq!(a.sandbox_attempt, 0);
        assert!(a.containers.is_empty() && a.next_init.is_none() && !a.kill_pod);
        // Once the sandbox is there, every app container starts.
        let a = Case::new(p, Rt::ready()).actions();
        assert_eq!(a.sandbox, SandboxAction::Keep);
        assert!(a.init_done);
        assert_eq!(a.containers, start(&["a", "b"]));
    }

    #[test]
    fn a_dead_sandbox_is_replaced_with_the_next_attempt() {
        let rt = Rt::new(vec![sandbox("s1", false, 2)]).exited("a", "c1", 0, at(50));
        let a = Case::new(pod("Always", &[], &["a"]), rt).actions();
        assert_eq!(
            a.sandbox,
            SandboxAction::Create {
                stop: vec!["s1".into()]
            }
        );
        assert_eq!(a.sandbox_attempt, 3);
        assert!(a.containers.is_empty());
        // Under OnFailure too; under Never the pod is done.
        let rt = || Rt::new(vec![sandbox("s1", false, 0)]);
        let a = Case::new(pod("OnFailure", &[], &["a"]), rt()).actions();
        assert!(matches!(a.sandbox, SandboxAction::Create { .. }));
        let a = Case::new(pod("Never", &[], &["a"]), rt()).actions();
        assert_eq!(a.sandbox, SandboxAction::GiveUp);
        // The ready sandbox's own attempt is kept.
        let rt = Rt::new(vec![sandbox("s2", true, 1), sandbox("s1", false, 0)]);
        let a = Case::new(pod("Never", &[], &["a"]), rt).actions();
        assert_eq!((a.sandbox, a.sandbox_attempt), (SandboxAction::Keep, 1));
    }

    #[test]
    fn init_containers_run_one_at_a_time_in_order() {
        let p = pod("Always", &["i1", "i2"], &["a"]);
        let a = Case::new(p.clone(), Rt::ready()).actions();
        assert_eq!(a.next_init, Some(("i1".into(), ContainerAction::Start)));
        assert!(!a.init_done && a.containers.is_empty());
        // i1 running: wait for it.
        let a = Case::new(p.clone(), Rt::ready().running("i1", "c1")).actions();
        assert_eq!(a.next_init, None);
        assert!(!a.init_done && a.containers.is_empty());
        // i1 done: i2 next.
        let rt = || Rt::ready().exited("i1", "c1", 0, at(50));
        let a = Case::new(p.clone(), rt()).actions();
        assert_eq!(a.init_succeeded, vec!["i1".to_string()]);
        assert_eq!(a.next_init, Some(("i2".into(), ContainerAction::Start)));
        // Both done: the app containers start.
        let a = Case::new(p, rt().exited("i2", "c2", 0, at(60))).actions();
        assert!(a.init_done);
        assert_eq!(a.init_succeeded, vec!["i1".to_string(), "i2".to_string()]);
        assert_eq!(a.next_init, None);
        assert_eq!(a.containers, start(&["a"]));
    }

    #[test]
    fn a_failed_init_container_restarts_unless_the_policy_is_never() {
        let rt = || Rt::ready().exited("i1", "c1", 1, at(95));
        for policy in ["Always", "OnFailure"] {
            let a = Case::new(pod(policy, &["i1"], &["a"]), rt()).actions();
            assert!(!a.init_failed && !a.init_done, "{policy}");
            assert_eq!(
                a.next_init,
                Some(("i1".into(), ContainerAction::Restart { finished: at(95) })),
                "{policy}"
            );
            assert!(a.containers.is_empty());
        }
        let a = Case::new(pod("Never", &["i1"], &["a"]), rt()).actions();
        assert!(a.init_failed);
        assert_eq!(a.next_init, None);
        assert!(a.containers.is_empty());
        // Within its back-off (10 s from the exit at 95, now is 100): CrashLoopBackOff.
        let mut case = Case::new(pod("OnFailure", &["i1"], &["a"]), rt());
        case.backoff.insert(
            "i1".into(),
            Backoff {
                delay: Duration::from_secs(10),
                last: Some(at(80)),
            },
        );
        assert_eq!(
            case.actions().next_init,
            Some((
                "i1".into(),
                ContainerAction::BackOff {
                    delay: Duration::from_secs(10),
                    remaining: Duration::from_secs(5)
                }
            ))
        );
    }

    #[test]
    fn exited_containers_follow_the_restart_policy() {
        let rt = || {
            Rt::ready()
                .exited("ok", "c1", 0, at(90))
                .exited("bad", "c2", 2, at(91))
        };
        let restart = |name: &str, t| (name.to_string(), ContainerAction::Restart { finished: t });
        let want = [
            (
                "Always",
                vec![restart("ok", at(90)), restart("bad", at(91))],
            ),
            ("OnFailure", vec![restart("bad", at(91))]),
            ("Never", vec![]),
        ];
        for (policy, containers) in want {
            let a = Case::new(pod(policy, &[], &["ok", "bad"]), rt()).actions();
            assert_eq!(a.containers, containers, "{policy}");
            // Their probes stop in every case.
            assert_eq!(a.exited, vec!["c1".to_string(), "c2".to_string()]);
        }
    }

    #[test]
    fn a_crash_loop_waits_out_its_back_off() {
        let mut case = Case::new(
            pod("Always", &[], &["a"]),
            Rt::ready().exited("a", "c1", 1, at(90)),
        );
        case.backoff.insert(
            "a".into(),
            Backoff {
                delay: Duration::from_secs(20),
                last: Some(at(70)),
            },
        );
        assert_eq!(
            case.actions().containers,
            vec![(
                "a".to_string(),
                ContainerAction::BackOff {
                    delay: Duration::from_secs(20),
                    remaining: Duration::from_secs(10)
                }
            )]
        );
        // Past the window: restarted.
        case.backoff.get_mut("a").unwrap().delay = Duration::from_secs(10);
        assert_eq!(
            case.actions().containers,
            vec![(
                "a".to_string(),
                ContainerAction::Restart { finished: at(90) }
            )]
        );
    }

    #[test]
    fn failed_liveness_and_startup_probes_kill_and_restart() {
        let mut p = pod("Always", &[], &["a"]);
        let c = &mut p.spec.as_mut().unwrap().containers[0];
        c.liveness_probe = Some(Default::default());
        c.startup_probe = Some(k8s_openapi::api::core::v1::Probe {
            termination_grace_period_seconds: Some(3),
            ..Default::default()
        });
        let case = |p: &Pod, kind: Kind, ok: bool| {
            let mut case = Case::new(p.clone(), Rt::ready().running("a", "c1"));
            case.probes.insert(("c1".into(), kind), ok);
            case.actions().containers
        };
        let kill = |reason, grace, restart| {
            vec![(
                "a".to_string(),
                ContainerAction::Kill {
                    id: "c1".into(),
                    reason,
                    grace,
                    restart,
                },
            )]
        };
        assert_eq!(case(&p, Kind::Liveness, true), vec![]);
        assert_eq!(case(&p, Kind::Readiness, false), vec![]);
        assert_eq!(
            case(&p, Kind::Liveness, false),
            kill(KillReason::Liveness, 30, true)
        );
        // The startup probe's own grace period wins.
        assert_eq!(
            case(&p, Kind::Startup, false),
            kill(KillReason::Startup, 3, true)
        );
        // Killed but not restarted under Never.
        p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        assert_eq!(
            case(&p, Kind::Liveness, false),
            kill(KillReason::Liveness, 30, false)
        );
        assert_eq!(
            KillReason::Liveness.message("a"),
            "Container a failed liveness probe, will be restarted"
        );
    }

    #[test]
    fn a_changed_spec_hash_restarts_the_container_whatever_the_policy() {
        let p = pod("Never", &[], &["a"]);
        let mut rt = Rt::ready().running("a", "c1").0;
        let set_hash = |rt: &mut RuntimePod, h: String| {
            rt.instances.get_mut("a").unwrap()[0]
                .annotations
                .insert(cri::CONTAINER_HASH_ANNOTATION.into(), h);
        };
        let case = |rt: &RuntimePod| {
            let mut c = Case::new(p.clone(), Rt::ready());
            c.rt = rt.clone();
            c.actions().containers
        };
        // The hash it was created with: nothing to do; without one (not known): nothing either.
        assert_eq!(case(&rt), vec![]);
        set_hash(
            &mut rt,
            container_hash(&p.spec.as_ref().unwrap().containers[0]),
        );
        assert_eq!(case(&rt), vec![]);
        set_hash(&mut rt, "0badf00d".into());
        assert_eq!(
            case(&rt),
            vec![(
                "a".to_string(),
                ContainerAction::Kill {
                    id: "c1".into(),
                    reason: KillReason::SpecChanged,
                    grace: 30,
                    restart: true
                }
            )]
        );
    }

    #[test]
    fn created_but_never_started_is_removed() {
        let rt = Rt::ready().with("a", "c1", api::ContainerState::ContainerCreated, 0, None);
        let a = Case::new(pod("Always", &[], &["a"]), rt).actions();
        assert_eq!(
            a.containers,
            vec![("a".to_string(), ContainerAction::Remove { id: "c1".into() })]
        );
    }

    #[test]
    fn a_finished_pod_is_killed_and_nothing_starts() {
        let mut p = pod("OnFailure", &[], &["a"]);
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let a = Case::new(p, Rt::ready().exited("a", "c1", 0, at(90))).actions();
        assert!(a.kill_pod);
        assert_eq!(a.sandbox, SandboxAction::Keep);
        assert!(a.containers.is_empty() && a.next_init.is_none());
        // Also when the worker saw it finish before the API did; and with no sandbox left.
        let mut case = Case::new(pod("Always", &[], &["a"]), Rt::new(vec![]));
        case.terminal = true;
        let a = case.actions();
        assert!(a.kill_pod && a.sandbox == SandboxAction::Keep);
        // All exited 0 under OnFailure, phase not yet written: nothing to start.
        let a = Case::new(
            pod("OnFailure", &[], &["a"]),
            Rt::ready().exited("a", "c1", 0, at(90)),
        )
        .actions();
        assert!(!a.kill_pod && a.containers.is_empty());
    }
}
