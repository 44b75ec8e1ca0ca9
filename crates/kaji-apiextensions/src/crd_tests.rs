use serde_json::{Value, json};

use super::*;

/// Seed 004's CRD (tests/seeds/004-hoges-crd.yaml) as JSON.
fn hoge() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "hoges.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {"fuga": {"type": "string"}}}}}}}],
            "scope": "Namespaced",
            "names": {"plural": "hoges", "singular": "hoge", "kind": "Hoge", "shortNames": ["hg"]},
        }
    })
}

fn errors(crd: &Value) -> Vec<String> {
    validate(crd).iter().map(ToString::to_string).collect()
}

fn with(mut crd: Value, ptr: &str, v: Value) -> Value {
    let (parent, key) = ptr.rsplit_once('/').unwrap();
    crd.pointer_mut(parent).unwrap()[key] = v;
    crd
}

fn schema_errors(schema: Value) -> Vec<String> {
    errors(&with(
        hoge(),
        "/spec/versions/0/schema/openAPIV3Schema",
        schema,
    ))
}

const S: &str = "spec.versions[0].schema.openAPIV3Schema";

#[test]
fn seed_004_is_valid() {
    assert_eq!(errors(&hoge()), Vec::<String>::new());
    let mut crd = hoge();
    set_defaults(&mut crd);
    assert_eq!(crd["spec"]["names"]["listKind"], "HogeList");
    assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
    assert_eq!(storage_version(&crd), Some("v1"));
}

#[test]
fn name_group_scope_names() {
    assert_eq!(
        errors(&with(
            hoge(),
            "/metadata/name",
            json!("hoge.stable.example.com")
        )),
        vec![
            r#"metadata.name: Invalid value: "hoge.stable.example.com": must be spec.names.plural+"."+spec.group"#
        ]
    );
    let crd = with(
        with(hoge(), "/spec/group", json!("example")),
        "/metadata/name",
        json!("hoges.example"),
    );
    assert_eq!(
        errors(&crd),
        vec![r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#]
    );
    assert_eq!(
        errors(&with(hoge(), "/spec/scope", json!("Global"))),
        vec![
            r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#
        ]
    );
    let crd = with(
        hoge(),
        "/spec/names",
        json!({"plural": "hoges", "kind": "Hoge", "listKind": "Hoge", "shortNames": ["H_g"]}),
    );
    let got = errors(&crd);
    assert!(
        got.iter().any(|e| e
            .starts_with(r#"spec.names.shortNames[0]: Invalid value: "H_g": a DNS-1035 label"#)),
        "{got:?}"
    );
    assert!(
        got.contains(
            &r#"spec.names.listKind: Invalid value: "Hoge": kind and listKind may not be the same"#
                .to_string()
        )
    );
    // singular is defaulted from kind.
    assert!(!got.iter().any(|e| e.contains("singular")));
}

#[test]
fn versions() {
    let v = hoge()["spec"]["versions"][0].clone();
    let mut v2 = v.clone();
    v2["name"] = json!("v2");
    assert_eq!(
        errors(&with(
            hoge(),
            "/spec/versions",
            json!([v.clone(), v2.clone()])
        )),
        vec![
            r#"spec.versions: Invalid value: "object": must have exactly one version marked as storage version"#
        ]
    );
    v2["storage"] = json!(false);
    assert!(errors(&with(hoge(), "/spec/versions", json!([v.clone(), v2]))).is_empty());
    assert_eq!(
        errors(&with(
            hoge(),
            "/spec/versions",
            json!([v.clone(), v.clone()])
        )),
        vec![
            r#"spec.versions: Invalid value: "object": must contain unique version names"#,
            r#"spec.versions: Invalid value: "object": must have exactly one version marked as storage version"#,
        ]
    );
    assert_eq!(
        errors(&with(hoge(), "/spec/versions", json!([]))),
        vec![
            r#"spec.versions: Invalid value: "object": must have exactly one version marked as storage version"#
        ]
    );
    let mut no_schema = v.clone();
    no_schema.as_object_mut().unwrap().remove("schema");
    assert_eq!(
        errors(&with(hoge(), "/spec/versions", json!([no_schema]))),
        vec![format!("{S}: Required value: schemas are required")]
    );
}

#[test]
fn structural_rules() {
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}})
        ),
        vec![format!(
            "{S}.properties[spec].type: Required value: must not be empty for specified object fields"
        )]
    );
    assert_eq!(
        schema_errors(json!({"type": "object", "properties": {"spec": {"type": "array"}}})),
        vec![format!(
            "{S}.properties[spec].items: Required value: must be specified"
        )]
    );
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}})
        ),
        vec![format!(
            "{S}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
        )]
    );
    assert!(schema_errors(json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}}}})).is_empty());
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}}})
        ),
        vec![format!(
            "{S}.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
        )]
    );
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"spec": {"type": "object", "anyOf": [{"type": "object", "description": "x"}]}}})
        ),
        vec![
            format!(
                "{S}.properties[spec].anyOf[0].description: Forbidden: must be empty to be structural"
            ),
            format!(
                "{S}.properties[spec].anyOf[0].type: Forbidden: must be empty to be structural"
            ),
        ]
    );
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"spec": {"type": "object", "anyOf": [{"properties": {"x": {}}}]}}})
        ),
        vec![format!(
            "{S}.properties[spec].properties[x]: Required value: because it is defined in {S}.properties[spec].anyOf[0].properties[x]"
        )]
    );
    // x-kubernetes-int-or-string's anyOf pattern is allowed; a typeless field is not.
    assert!(schema_errors(json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}}})).is_empty());
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"s": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}})
        ),
        vec![format!(
            "{S}.properties[s].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
        )]
    );
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"e": {"type": "object", "x-kubernetes-embedded-resource": true}}})
        ),
        vec![format!(
            "{S}.properties[e].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
        )]
    );
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "("}}})
        ),
        vec![format!(
            "{S}.properties[s].pattern: Invalid value: \"(\": must be a valid regular expression, but isn't: error: unclosed group"
        )]
    );
}

#[test]
fn list_types_in_schemas() {
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map",
            "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}})
        ),
        vec![format!(
            "{S}.properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
        )]
    );
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}})
        ),
        vec![format!(
            "{S}.properties[l].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
        )]
    );
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"l": {"type": "string", "x-kubernetes-list-type": "bag"}}})
        ),
        vec![
            format!(
                "{S}.properties[l].type: Invalid value: \"string\": must be array if x-kubernetes-list-type is specified"
            ),
            format!(
                "{S}.properties[l].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\""
            ),
        ]
    );
}

#[test]
fn defaults_in_schemas() {
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"r": {"type": "integer", "default": "one"}}}}})
        ),
        vec![format!(
            "{S}.properties[spec].properties[r].default: Invalid value: \"string\": {S}.properties[spec].properties[r].default in body must be of type integer: \"string\""
        )]
    );
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"spec": {"type": "object", "default": {"x": 1}, "properties": {"r": {"type": "integer"}}}}})
        ),
        vec![format!(
            "{S}.properties[spec].default: Invalid value: \"object\": must not have unknown fields"
        )]
    );
    assert!(schema_errors(json!({"type": "object", "properties": {"spec": {"type": "object", "default": {"r": 1}, "properties": {"r": {"type": "integer", "minimum": 1}}}}})).is_empty());
    assert_eq!(
        schema_errors(
            json!({"type": "object", "properties": {"metadata": {"type": "object", "default": {"name": "x"}}}})
        ),
        vec![format!(
            "{S}.properties[metadata].default: Forbidden: must not be set in top-level metadata"
        )]
    );
}

#[test]
fn rules_must_compile() {
    let got = schema_errors(
        json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a =="}],
        "properties": {"a": {"type": "string"}}}),
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with(&format!("{S}.x-kubernetes-validations[0].rule: Invalid value: \"self.a ==\": compilation failed: ERROR: <input>:1:")), "{got:?}");
}

#[test]
fn subresources_columns_selectable_fields() {
    let mut v = hoge()["spec"]["versions"][0].clone();
    v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["replicas"] =
        json!({"type": "integer"});
    v["subresources"] = json!({"status": {}, "scale": {"specReplicasPath": "spec.replicas", "statusReplicasPath": ".spec.replicas"}});
    v["additionalPrinterColumns"] = json!([{"name": "Fuga", "type": "text", "jsonPath": ".spec.fuga"}, {"name": "R", "type": "integer", "jsonPath": "spec.replicas"}]);
    v["selectableFields"] = json!([{"jsonPath": ".spec.fuga"}, {"jsonPath": ".spec.nope"}, {"jsonPath": ".spec"}, {"jsonPath": ".spec.fuga"}]);
    assert_eq!(
        errors(&with(hoge(), "/spec/versions", json!([v]))),
        vec![
            r#"spec.versions[0].subresources.scale.specReplicasPath: Invalid value: "spec.replicas": must be a simple json path starting with ."#,
            r#"spec.versions[0].subresources.scale.statusReplicasPath: Invalid value: ".spec.replicas": should be a json path under .status"#,
            r#"spec.versions[0].additionalPrinterColumns[0].type: Invalid value: "text": must be one of boolean,date,integer,number,string"#,
            r#"spec.versions[0].additionalPrinterColumns[1].JSONPath: Invalid value: "spec.replicas": must be a simple json path starting with ."#,
            r#"spec.versions[0].selectableFields[1].jsonPath: Invalid value: ".spec.nope": is an invalid path: does not refer to a valid field"#,
            r#"spec.versions[0].selectableFields[2].jsonPath: Invalid value: ".spec": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed."#,
            r#"spec.versions[0].selectableFields[3].jsonPath: Duplicate value: ".spec.fuga""#,
        ]
    );
}

#[test]
fn conversion_and_stored_versions() {
    let crd = with(hoge(), "/spec/conversion", json!({"strategy": "Webhook"}));
    assert_eq!(
        errors(&crd),
        vec![
            "spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook",
            "spec.conversion.conversionReviewVersions: Required value",
        ]
    );
    let crd = with(
        hoge(),
        "/spec/conversion",
        json!({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
        "clientConfig": {"service": {"namespace": "default", "name": "conv", "path": "/convert"}}}}),
    );
    assert!(errors(&crd).is_empty());
    let crd = with(
        hoge(),
        "/spec/conversion",
        json!({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v9"],
        "clientConfig": {"url": "http://example.com/convert"}}}),
    );
    assert_eq!(
        errors(&crd),
        vec![
            r#"spec.conversion.webhookClientConfig.url: Invalid value: "http://example.com/convert": 'https' is the only allowed URL scheme; "http" is not allowed"#,
            r#"spec.conversion.conversionReviewVersions: Invalid value: []string{"v9"}: must include at least one of v1, v1beta1"#,
        ]
    );
    let mut crd = hoge();
    crd["status"] = json!({"storedVersions": ["v1", "v0"]});
    assert_eq!(
        errors(&crd),
        vec![r#"status.storedVersions[1]: Invalid value: "v0": must appear in spec.versions"#]
    );
}

#[test]
fn update_rules() {
    let mut old = hoge();
    old["status"] = json!({"conditions": [{"type": "Established", "status": "True"}]});
    let new = with(
        with(hoge(), "/spec/scope", json!("Cluster")),
        "/spec/names/kind",
        json!("Fuga"),
    );
    let got: Vec<String> = validate_update(&new, &old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        vec![
            r#"spec.scope: Invalid value: "Cluster": field is immutable"#,
            r#"spec.names.kind: Invalid value: "Fuga": field is immutable"#,
        ]
    );
    let new = with(
        with(hoge(), "/spec/group", json!("other.example.com")),
        "/metadata/name",
        json!("hoges.other.example.com"),
    );
    let got: Vec<String> = validate_update(&new, &hoge())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        vec![r#"spec.group: Invalid value: "other.example.com": field is immutable"#]
    );
}
