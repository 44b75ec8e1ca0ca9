use serde_json::{Value, json};

use super::Structural;

fn messages(errs: &[kaji_api::FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

fn check(schema: Value, obj: Value) -> Vec<String> {
    messages(&Structural::new(&schema).validate(&obj))
}

fn spec_schema(props: Value) -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}})
}

/// Seed 004's CRD schema (hoges.stable.example.com).
fn hoge() -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"fuga": {"type": "string"}}}}})
}

#[test]
fn seed_004_object_is_valid_and_unknown_fields_pruned() {
    let s = Structural::new(&hoge());
    let mut obj = json!({"apiVersion": "stable.example.com/v1", "kind": "Hoge",
        "metadata": {"name": "test-hoge", "bogus": 1}, "spec": {"fuga": "hugahuga", "extra": true}, "other": 1});
    assert!(s.validate(&obj).is_empty());
    let pruned = s.prune(&mut obj);
    assert_eq!(pruned, vec!["metadata.bogus", "spec.extra", "other"]);
    assert_eq!(
        obj,
        json!({"apiVersion": "stable.example.com/v1", "kind": "Hoge",
        "metadata": {"name": "test-hoge"}, "spec": {"fuga": "hugahuga"}})
    );
    assert_eq!(
        messages(&s.validate(&json!({"spec": {"fuga": 3}}))),
        vec![
            r#"spec.fuga: Invalid value: "integer": spec.fuga in body must be of type string: "integer""#
        ]
    );
}

#[test]
fn types_and_reasons() {
    let schema = spec_schema(
        json!({"replicas": {"type": "integer"}, "ratio": {"type": "number"},
        "on": {"type": "boolean"}, "list": {"type": "array", "items": {"type": "string"}}}),
    );
    let errs = Structural::new(&schema)
        .validate(&json!({"spec": {"replicas": "3", "ratio": 1, "on": "yes", "list": [1]}}));
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
            r#"spec.on: Invalid value: "string": spec.on in body must be of type boolean: "string""#,
            r#"spec.list[0]: Invalid value: "integer": spec.list[0] in body must be of type string: "integer""#,
        ]
    );
    assert!(errs.iter().all(|e| e.reason == "FieldValueTypeInvalid"));
    // 2.0 is an integer, as in Go's JSON numbers.
    assert!(check(schema.clone(), json!({"spec": {"replicas": 2.0}})).is_empty());
    assert_eq!(
        check(schema, json!({"spec": {"replicas": 2.5}})),
        vec![
            r#"spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number""#
        ]
    );
}

#[test]
fn null_and_nullable() {
    let schema =
        spec_schema(json!({"a": {"type": "string"}, "b": {"type": "string", "nullable": true}}));
    assert_eq!(
        check(schema.clone(), json!({"spec": {"a": null, "b": null}})),
        vec![r#"spec.a: Invalid value: "null": spec.a in body must be of type string: "null""#]
    );
    // Defaulting drops non-nullable nulls without a default and keeps nullable ones.
    let mut obj = json!({"spec": {"a": null, "b": null}});
    Structural::new(&schema).default(&mut obj);
    assert_eq!(obj, json!({"spec": {"b": null}}));
}

#[test]
fn bounds_lengths_patterns_enums() {
    let schema = spec_schema(json!({
        "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
        "excl": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 5, "exclusiveMaximum": true},
        "name": {"type": "string", "minLength": 3, "maxLength": 5, "pattern": "^a+$"},
        "color": {"type": "string", "enum": ["red", "blue"]},
        "num": {"type": "integer", "enum": [1, 2]},
        "step": {"type": "integer", "multipleOf": 5},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 1, "minProperties": 1},
    }));
    let got = check(
        schema.clone(),
        json!({"spec": {"replicas": 0, "excl": 5, "name": "abbbbb", "color": "green",
        "num": 3, "step": 7, "tags": ["a", "b", "c"], "labels": {"a": "x", "b": "y"}}}),
    );
    assert_eq!(
        got,
        vec![
            "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
            "spec.excl: Invalid value: 5: spec.excl in body should be less than 5",
            "spec.name: Too long: may not be more than 5 bytes",
            "spec.name: Invalid value: \"abbbbb\": spec.name in body should match '^a+$'",
            "spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\"",
            "spec.num: Unsupported value: 3: supported values: \"1\", \"2\"",
            "spec.step: Invalid value: 7: spec.step in body should be a multiple of 5",
            "spec.tags: Too many: 3: must have at most 2 items",
            "spec.labels: Invalid value: 2: spec.labels in body should have at most 1 properties",
        ]
    );
    let got = check(
        schema.clone(),
        json!({"spec": {"replicas": 11, "excl": 0, "name": "aa", "tags": [], "labels": {}}}),
    );
    assert_eq!(
        got,
        vec![
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            "spec.excl: Invalid value: 0: spec.excl in body should be greater than 0",
            "spec.name: Invalid value: \"aa\": spec.name in body should be at least 3 chars long",
            "spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items",
            "spec.labels: Invalid value: 0: spec.labels in body should have at least 1 properties",
        ]
    );
    assert!(
        check(
            schema,
            json!({"spec": {"replicas": 5, "name": "aaa", "color": "red", "num": 2, "step": 10}})
        )
        .is_empty()
    );
}

#[test]
fn required_and_nested_paths() {
    let schema = spec_schema(
        json!({"items": {"type": "array", "items": {"type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}}),
    );
    let mut schema = schema;
    schema["properties"]["spec"]["required"] = json!(["items"]);
    assert_eq!(
        check(schema.clone(), json!({"spec": {}})),
        vec!["spec.items: Required value"]
    );
    assert_eq!(
        check(
            schema,
            json!({"spec": {"items": [{"name": "a"}, {"name": "b"}, {"port": "x"}]}})
        ),
        vec![
            "spec.items[2].name: Required value",
            r#"spec.items[2].port: Invalid value: "string": spec.items[2].port in body must be of type integer: "string""#,
        ]
    );
}

#[test]
fn formats() {
    let schema = spec_schema(
        json!({"id": {"type": "string", "format": "uuid"}, "at": {"type": "string", "format": "date-time"},
        "n": {"type": "string", "format": "int32"}, "ip": {"type": "string", "format": "ipv4"}}),
    );
    assert_eq!(
        check(
            schema.clone(),
            json!({"spec": {"id": "nope", "at": "yesterday", "n": "x", "ip": "1.2.3"}})
        ),
        vec![
            r#"spec.id: Invalid value: "nope": spec.id in body must be of type uuid: "nope""#,
            r#"spec.at: Invalid value: "yesterday": spec.at in body must be of type date-time: "yesterday""#,
            r#"spec.ip: Invalid value: "1.2.3": spec.ip in body must be of type ipv4: "1.2.3""#,
        ]
    );
    assert!(check(schema, json!({"spec": {"id": "123e4567-e89b-12d3-a456-426614174000", "at": "2024-01-02T03:04:05Z", "ip": "1.2.3.4"}})).is_empty());
}

#[test]
fn int_or_string_and_preserve_unknown() {
    let schema = spec_schema(json!({"port": {"x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"known": {"type": "string"}}}}));
    let s = Structural::new(&schema);
    assert!(s.validate(&json!({"spec": {"port": 80}})).is_empty());
    assert!(s.validate(&json!({"spec": {"port": "http"}})).is_empty());
    let errs = messages(&s.validate(&json!({"spec": {"port": true}})));
    assert_eq!(
        errs[0],
        r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
    );
    let mut obj = json!({"spec": {"free": {"known": "a", "anything": {"deep": 1}}, "gone": 1}});
    assert_eq!(s.prune(&mut obj), vec!["spec.gone"]);
    assert_eq!(
        obj,
        json!({"spec": {"free": {"known": "a", "anything": {"deep": 1}}}})
    );
}

#[test]
fn value_validations() {
    let schema = spec_schema(json!({
        "a": {"type": "string", "anyOf": [{"pattern": "^x"}, {"pattern": "^y"}]},
        "b": {"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 10}]},
        "c": {"type": "string", "not": {"enum": ["bad"]}},
        "d": {"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 3}]},
    }));
    assert!(
        check(
            schema.clone(),
            json!({"spec": {"a": "xa", "b": 20, "c": "ok", "d": 2}})
        )
        .is_empty()
    );
    let got = check(
        schema,
        json!({"spec": {"a": "z", "b": 5, "c": "bad", "d": 4}}),
    );
    assert_eq!(
        got,
        vec![
            r#"<nil>: Invalid value: "": "spec.a" must validate at least one schema (anyOf)"#,
            r#"spec.a: Invalid value: "z": spec.a in body should match '^x'"#,
            r#"<nil>: Invalid value: "": "spec.b" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
            r#"<nil>: Invalid value: "": "spec.c" must not validate the schema (not)"#,
            "spec.d: Invalid value: 4: spec.d in body should be less than or equal to 3",
            r#"<nil>: Invalid value: "": "spec.d" must validate all the schemas (allOf)"#,
        ]
    );
}

#[test]
fn list_type_set_and_map() {
    let schema = spec_schema(json!({
        "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
    }));
    let got = check(
        schema.clone(),
        json!({"spec": {"set": ["a", "b", "a", "a"],
        "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]}}),
    );
    assert_eq!(
        got,
        vec![
            r#"spec.set[2]: Duplicate value: "a""#,
            r#"spec.ports[1]: Duplicate value: map[string]interface {}{"name":"http"}"#,
        ]
    );
    assert!(
        check(
            schema,
            json!({"spec": {"set": ["a", "b"], "ports": [{"name": "a"}, {"name": "b"}]}})
        )
        .is_empty()
    );
}

#[test]
fn embedded_resources() {
    let schema = spec_schema(
        json!({"template": {"type": "object", "x-kubernetes-embedded-resource": true,
        "x-kubernetes-preserve-unknown-fields": true}}),
    );
    let s = Structural::new(&schema);
    assert_eq!(
        messages(
            &s.validate(&json!({"spec": {"template": {"metadata": {"labels": {"a": "-bad"}}}}}))
        ),
        vec![
            "spec.template.apiVersion: Required value: must not be empty",
            "spec.template.kind: Required value: must not be empty",
            "spec.template.metadata.labels[a]: Invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ]
    );
    assert!(
        s.validate(&json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "spec": {}}}}))
            .is_empty()
    );
    // Pruning keeps type meta, prunes metadata to ObjectMeta inside embedded resources.
    let schema = spec_schema(
        json!({"template": {"type": "object", "x-kubernetes-embedded-resource": true,
        "properties": {"spec": {"type": "object"}}}}),
    );
    let mut obj = json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "junk": 1}, "spec": {}, "status": {}}}});
    assert_eq!(
        Structural::new(&schema).prune(&mut obj),
        vec!["spec.template.metadata.junk", "spec.template.status"]
    );
    assert_eq!(
        obj,
        json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {}}}})
    );
}

#[test]
fn prune_paths_in_lists_and_maps() {
    let schema = spec_schema(json!({
        "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
        "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }));
    let mut obj = json!({"spec": {"list": [{"a": "x", "b": 1}], "map": {"k": {"a": "y", "c": 2}}}});
    assert_eq!(
        Structural::new(&schema).prune(&mut obj),
        vec!["spec.list[0].b", "spec.map[k].c"]
    );
    assert_eq!(
        obj,
        json!({"spec": {"list": [{"a": "x"}], "map": {"k": {"a": "y"}}}})
    );
}

#[test]
fn defaulting() {
    let schema = spec_schema(json!({
        "replicas": {"type": "integer", "default": 1},
        "mode": {"type": "string", "default": "fast"},
        "nested": {"type": "object", "default": {}, "properties": {"x": {"type": "integer", "default": 7}}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "integer", "default": 80}}}},
        "map": {"type": "object", "additionalProperties": {"type": "string", "default": "v"}},
    }));
    let s = Structural::new(&schema);
    let mut obj = json!({"spec": {"mode": null, "list": [{}, {"p": 1}], "map": {"a": null}}});
    s.default(&mut obj);
    assert_eq!(
        obj,
        json!({"spec": {"mode": "fast", "list": [{"p": 80}, {"p": 1}], "map": {"a": "v"}, "replicas": 1, "nested": {"x": 7}}})
    );
    // Absent parents are not created: no spec, no defaults inside it.
    let mut obj = json!({"metadata": {"name": "a"}});
    s.default(&mut obj);
    assert_eq!(obj, json!({"metadata": {"name": "a"}}));
}

#[test]
fn ratcheting_on_update() {
    let schema = spec_schema(
        json!({"name": {"type": "string", "maxLength": 3}, "other": {"type": "string"}}),
    );
    let s = Structural::new(&schema);
    let old = json!({"spec": {"name": "toolong", "other": "a"}});
    // The invalid value was already there: unchanged, it is accepted.
    assert!(
        s.validate_update(&json!({"spec": {"name": "toolong", "other": "b"}}), &old)
            .is_empty()
    );
    assert_eq!(
        messages(&s.validate_update(&json!({"spec": {"name": "toolonger", "other": "b"}}), &old)),
        vec!["spec.name: Too long: may not be more than 3 bytes"]
    );
}

#[test]
fn cel_rules_and_transition_rules() {
    let mut schema = spec_schema(
        json!({"min": {"type": "integer"}, "max": {"type": "integer"},
        "immutable": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]}}),
    );
    schema["properties"]["spec"]["x-kubernetes-validations"] = json!([
        {"rule": "self.min <= self.max", "message": "min must not exceed max"},
        {"rule": "self.max < 100"},
        {"rule": "self.min >= 0", "messageExpression": "'min is ' + string(self.min)", "reason": "FieldValueForbidden", "fieldPath": ".min"},
    ]);
    let s = Structural::new(&schema);
    assert!(
        s.validate(&json!({"spec": {"min": 1, "max": 2, "immutable": "a"}}))
            .is_empty()
    );
    assert_eq!(
        messages(&s.validate(&json!({"spec": {"min": -3, "max": -5}}))),
        vec![
            r#"spec: Invalid value: "object": min must not exceed max"#,
            "spec.min: Forbidden: min is -3",
        ]
    );
    assert_eq!(
        messages(&s.validate(&json!({"spec": {"min": 1, "max": 200}}))),
        vec![r#"spec: Invalid value: "object": failed rule: self.max < 100"#]
    );
    // A runtime error names the rule, as upstream.
    let s2 = Structural::new(&spec_schema(
        json!({"m": {"type": "object", "additionalProperties": {"type": "string"},
        "x-kubernetes-validations": [{"rule": "self.missing == 'x'"}]}}),
    ));
    assert_eq!(
        messages(&s2.validate(&json!({"spec": {"m": {"a": "b"}}}))),
        vec![
            r#"spec.m: Invalid value: "object": no such key: missing evaluating rule: self.missing == 'x'"#
        ]
    );
    let old = json!({"spec": {"min": 1, "max": 2, "immutable": "a"}});
    assert!(
        s.validate_update(
            &json!({"spec": {"min": 1, "max": 3, "immutable": "a"}}),
            &old
        )
        .is_empty()
    );
    assert_eq!(
        messages(&s.validate_update(
            &json!({"spec": {"min": 1, "max": 2, "immutable": "b"}}),
            &old
        )),
        vec![r#"spec.immutable: Invalid value: "string": is immutable"#]
    );
}

/// Validation of a 50-field object is cheap: the schema (and its patterns) compile once.
#[test]
fn fifty_fields_are_cheap() {
    let mut props = serde_json::Map::new();
    let mut spec = serde_json::Map::new();
    for i in 0..50 {
        props.insert(
            format!("f{i}"),
            json!({"type": "string", "pattern": "^[a-z0-9-]+$", "maxLength": 63}),
        );
        spec.insert(format!("f{i}"), json!(format!("value-{i}")));
    }
    let s = Structural::new(&spec_schema(Value::Object(props)));
    let obj = json!({"spec": Value::Object(spec)});
    let start = std::time::Instant::now();
    for _ in 0..1000 {
        assert!(s.validate(&obj).is_empty());
    }
    let per_call = start.elapsed() / 1000;
    eprintln!("validate of a 50-field object: {per_call:?}");
    // Debug builds: well under a millisecond per object (measured ~40µs).
    assert!(
        per_call < std::time::Duration::from_millis(2),
        "validate took {per_call:?}"
    );
}

/// Odd input gives errors, never a panic.
#[test]
fn odd_input_does_not_panic() {
    let strings = [
        "",
        "é",
        "ééééééééééééééééééééééééé",
        "2014-12-15Tééééééééééé",
        "<>",
        "<",
        "a@",
        "::",
        "/",
        "rgb(",
        "#",
        "1h1",
        ".",
    ];
    let formats = [
        "uuid",
        "date-time",
        "date",
        "byte",
        "email",
        "uri",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "duration",
        "hexcolor",
        "rgbcolor",
        "ssn",
        "bsonobjectid",
        "uuid4",
    ];
    for f in formats {
        let s = Structural::new(
            &json!({"type": "object", "properties": {"x": {"type": "string", "format": f}}}),
        );
        for v in strings {
            let _ = s.validate(&json!({"x": v}));
        }
    }
    for schema in [
        json!(null),
        json!([]),
        json!({"type": 3}),
        json!({"properties": []}),
        json!({"items": [{}]}),
        json!({"pattern": "("}),
    ] {
        let s = Structural::new(&schema);
        let mut obj = json!({"a": [1, {"b": null}], "metadata": "x"});
        let _ = s.validate(&obj);
        let _ = s.validate_update(&obj, &json!(null));
        let _ = s.prune(&mut obj);
        s.default(&mut obj);
    }
    for crd in [
        json!(null),
        json!([]),
        json!({"spec": "x"}),
        json!({"spec": {"versions": [null, 1, {"schema": []}], "names": 3, "conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"url": "é"}}}}}),
    ] {
        let _ = crate::crd::validate(&crd);
        let _ = crate::crd::validate_update(&crd, &json!({}));
    }
}
