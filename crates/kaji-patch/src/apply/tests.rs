use super::*;
use crate::schema::testdefs;
use serde_json::json;

const T0: &str = "2024-01-01T00:00:00Z";
const T1: &str = "2024-01-01T00:01:00Z";

fn apply(
    live: Option<&Value>,
    cfg: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApplyError> {
    server_side_apply(
        live,
        cfg,
        manager,
        force,
        &testdefs::defs(),
        "test.Deployment",
        T1,
    )
}

fn update(old: Option<&Value>, new: &Value, manager: &str) -> Value {
    let mut new = new.clone();
    update_managed_fields(
        old,
        &mut new,
        manager,
        "Update",
        "apps/v1",
        None,
        T0,
        &testdefs::defs(),
        "test.Deployment",
    )
    .unwrap();
    new
}

fn deployment(replicas: i64, labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "labels": labels},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "nginx", "image": "nginx:1", "ports": [{"containerPort": 80}]}]}}}})
}

fn entries(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_string(),
                        e["operation"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn fields_of(obj: &Value, manager: &str) -> FieldSet {
    let e = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .unwrap();
    FieldSet::from_fields_v1(&e["fieldsV1"]).unwrap()
}

fn f(n: &str) -> PathElement {
    PathElement::Field(n.to_string())
}

#[test]
fn apply_creates_with_managed_fields() {
    let cfg = deployment(1, json!({"app": "web"}));
    let out = apply(None, &cfg, "mgr", false).unwrap();
    let mf = &out["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "mgr");
    assert_eq!(mf["operation"], "Apply");
    assert_eq!(mf["apiVersion"], "apps/v1");
    assert_eq!(mf["time"], T1);
    assert_eq!(mf["fieldsType"], "FieldsV1");
    assert_eq!(
        mf["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}})
    );
    let mut without = out.clone();
    without["metadata"]
        .as_object_mut()
        .unwrap()
        .shift_remove("managedFields");
    assert_eq!(without, cfg);
}

#[test]
fn reapply_prunes_fields_no_longer_applied() {
    let live = apply(
        None,
        &deployment(1, json!({"a": "1", "b": "2"})),
        "mgr",
        false,
    )
    .unwrap();
    let out = apply(Some(&live), &deployment(1, json!({"a": "1"})), "mgr", false).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
    assert!(!fields_of(&out, "mgr").has(&[f("metadata"), f("labels"), f("b")]));
}

#[test]
fn pruning_keeps_fields_another_manager_owns() {
    let live = apply(
        None,
        &deployment(1, json!({"a": "1", "b": "2"})),
        "one",
        false,
    )
    .unwrap();
    let cfg_two = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"b": "2"}}});
    let live = apply(Some(&live), &cfg_two, "two", false).unwrap();
    assert!(fields_of(&live, "two").has(&[f("metadata"), f("labels"), f("b")]));
    let out = apply(Some(&live), &deployment(1, json!({"a": "1"})), "one", false).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
}

#[test]
fn conflict_with_client_side_apply() {
    let created = update(
        None,
        &deployment(1, json!({"app": "web"})),
        "kubectl-client-side-apply",
    );
    assert_eq!(
        entries(&created),
        [(
            "kubectl-client-side-apply".to_string(),
            "Update".to_string()
        )]
    );
    let e = apply(
        Some(&created),
        &deployment(3, json!({"app": "web"})),
        "kubectl",
        false,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let ApplyError::Conflicts(c) = e else {
        panic!()
    };
    assert_eq!(c[0].manager, "kubectl-client-side-apply");
    assert_eq!(c[0].path, ".spec.replicas");

    // The same values conflict with nobody; the fields become shared.
    let out = apply(
        Some(&created),
        &deployment(1, json!({"app": "web"})),
        "kubectl",
        false,
    )
    .unwrap();
    assert!(fields_of(&out, "kubectl").has(&[f("spec"), f("replicas")]));
    assert!(fields_of(&out, "kubectl-client-side-apply").has(&[f("spec"), f("replicas")]));
}

#[test]
fn force_takes_ownership() {
    let created = update(
        None,
        &deployment(1, json!({"app": "web"})),
        "kubectl-client-side-apply",
    );
    let out = apply(
        Some(&created),
        &deployment(3, json!({"app": "web"})),
        "kubectl",
        true,
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert!(fields_of(&out, "kubectl").has(&[f("spec"), f("replicas")]));
    assert!(!fields_of(&out, "kubectl-client-side-apply").has(&[f("spec"), f("replicas")]));
    assert_eq!(
        entries(&out),
        [
            ("kubectl".to_string(), "Apply".to_string()),
            (
                "kubectl-client-side-apply".to_string(),
                "Update".to_string()
            )
        ]
    );
}

#[test]
fn scale_takes_replicas_from_the_applier() {
    let live = apply(
        None,
        &deployment(1, json!({"app": "web"})),
        "kubectl",
        false,
    )
    .unwrap();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let scaled = update(Some(&live), &scaled, "kubectl-scale");
    assert!(!fields_of(&scaled, "kubectl").has(&[f("spec"), f("replicas")]));
    assert_eq!(
        fields_of(&scaled, "kubectl-scale").paths(),
        vec![vec![f("spec"), f("replicas")]]
    );
    let e = apply(
        Some(&scaled),
        &deployment(1, json!({"app": "web"})),
        "kubectl",
        false,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
    );
    // Applying without replicas leaves the scaled value alone.
    let mut cfg = deployment(1, json!({"app": "web"}));
    cfg["spec"]
        .as_object_mut()
        .unwrap()
        .shift_remove("replicas");
    let out = apply(Some(&scaled), &cfg, "kubectl", false).unwrap();
    assert_eq!(out["spec"]["replicas"], 5);
}

#[test]
fn apply_merges_keyed_lists_with_live_items() {
    let live = update(
        None,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "s:1"}]}}}}),
        "other",
    );
    let out = apply(
        Some(&live),
        &deployment(1, json!({"app": "web"})),
        "mgr",
        false,
    )
    .unwrap();
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sidecar", "nginx"]);
}

#[test]
fn multiple_conflicts_message() {
    let created = update(
        None,
        &deployment(1, json!({"app": "web"})),
        "kubectl-client-side-apply",
    );
    let mut cfg = deployment(3, json!({"app": "api"}));
    cfg["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let e = apply(Some(&created), &cfg, "kubectl", false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Apply failed with 3 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .metadata.labels.app\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
}

#[test]
fn update_records_changes_and_strips_metadata() {
    let created = update(
        None,
        &deployment(1, json!({"app": "web"})),
        "kubectl-create",
    );
    let set = fields_of(&created, "kubectl-create");
    assert!(set.has(&[f("spec"), f("replicas")]));
    assert!(!set.has(&[f("metadata"), f("name")]));
    assert!(!set.has(&[f("apiVersion")]));
    assert_eq!(created["metadata"]["managedFields"][0]["time"], T0);

    // A write that changes nothing keeps the entry as it was.
    let again = update(Some(&created), &created, "kubectl-create");
    assert_eq!(
        again["metadata"]["managedFields"],
        created["metadata"]["managedFields"]
    );

    // Removing a field takes it from every manager.
    let mut edited = created.clone();
    edited["metadata"]["labels"] = json!({});
    let edited = update(Some(&created), &edited, "editor");
    assert!(!fields_of(&edited, "kubectl-create").has(&[f("metadata"), f("labels"), f("app")]));
}

#[test]
fn an_update_rewrites_only_the_managers_it_touches() {
    let created = update(None, &deployment(1, json!({"app": "web"})), "creator");
    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(3);
    let scaled = update(Some(&created), &scaled, "scaler");
    // The creator lost replicas: its entry is encoded again, without it.
    assert!(!fields_of(&scaled, "creator").has(&[f("spec"), f("replicas")]));
    assert!(fields_of(&scaled, "scaler").has(&[f("spec"), f("replicas")]));
    // A label change by a third manager leaves the scaler's entry as it was, byte for byte,
    // and the creator's entry loses only the label.
    let mut labelled = scaled.clone();
    labelled["metadata"]["labels"]["app"] = json!("api");
    let labelled = update(Some(&scaled), &labelled, "labeller");
    let entry = |obj: &Value, name: &str| {
        obj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["manager"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(entry(&labelled, "scaler"), entry(&scaled, "scaler"));
    let creator = fields_of(&labelled, "creator");
    assert!(!creator.has(&[f("metadata"), f("labels"), f("app")]));
    assert!(creator.has(&[f("spec"), f("template"), f("spec"), f("containers")]));
    // The scaler writing the replicas it owns again keeps its entry and time.
    let mut again = labelled.clone();
    again["spec"]["replicas"] = json!(5);
    let again = update(Some(&labelled), &again, "scaler");
    assert_eq!(
        entry(&again, "scaler")["fieldsV1"],
        entry(&labelled, "scaler")["fieldsV1"]
    );
}

#[test]
fn field_sets_intersect_and_contain() {
    let mut a = FieldSet::new();
    a.insert(&[f("spec"), f("replicas")]);
    a.insert(&[f("metadata"), f("labels"), f("app")]);
    let mut b = FieldSet::new();
    b.insert(&[f("spec"), f("paused")]);
    assert!(!a.intersects(&b) && !b.intersects(&a));
    assert!(!a.contains_all(&b));
    b.insert(&[f("metadata"), f("labels"), f("app")]);
    assert!(a.intersects(&b) && b.intersects(&a));
    let mut c = FieldSet::new();
    c.insert(&[f("metadata"), f("labels"), f("app")]);
    assert!(a.contains_all(&c) && b.contains_all(&c) && !c.contains_all(&a));
    assert!(a.contains_all(&FieldSet::new()) && !FieldSet::new().intersects(&a));
    // A member is not its subtree: ".spec" as a leaf does not contain ".spec.replicas".
    let mut leaf = FieldSet::new();
    leaf.insert(&[f("spec")]);
    assert!(!leaf.contains_all(&a) && !leaf.intersects(&a));
}

#[test]
fn user_supplied_managed_fields_win() {
    let created = update(
        None,
        &deployment(1, json!({"app": "web"})),
        "kubectl-create",
    );
    let mut cleared = created.clone();
    cleared["metadata"]["managedFields"] = json!([]);
    let out = update(Some(&created), &cleared, "someone");
    assert!(out["metadata"].get("managedFields").is_none());
}

#[test]
fn first_apply_to_unmanaged_object() {
    let live = deployment(1, json!({"app": "web"}));
    let e = apply(
        Some(&live),
        &deployment(2, json!({"app": "web"})),
        "mgr",
        false,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn invalid_configurations() {
    let mut cfg = deployment(1, json!({}));
    cfg["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
    let e = apply(None, &cfg, "mgr", false).unwrap_err();
    assert!(
        matches!(e, ApplyError::Invalid(ref m) if m.contains("duplicate entries for key [name=\"a\"]")),
        "{e}"
    );
    let mut cfg = deployment(1, json!({}));
    cfg["metadata"]["managedFields"] = json!([{"manager": "x"}]);
    assert!(matches!(
        apply(None, &cfg, "mgr", false),
        Err(ApplyError::Invalid(_))
    ));
}
