//! The v2 document as gnostic's `openapi.v2.Document` protobuf (github.com/google/gnostic,
//! openapiv2/OpenAPIv2.proto), which kubectl asks for with
//! `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`. Hand-written: the wire
//! format is varints and length-delimited fields, and only the messages below are needed.
//! Any-typed values (vendor extensions, defaults, enums) carry their value as YAML text; we write
//! JSON, which is YAML, and which kubectl's YAML parser reads back unchanged.

use serde_json::{Map, Value};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// A protobuf message under construction.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// A proto3 string: omitted when empty.
    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn string_value(&mut self, field: u32, v: Option<&Value>) {
        if let Some(s) = v.and_then(Value::as_str) {
            self.string(field, s);
        }
    }

    fn strings(&mut self, field: u32, v: Option<&Value>) {
        for s in v.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                // repeated strings keep empty entries
                self.bytes(field, s.as_bytes());
            }
        }
    }

    fn bool(&mut self, field: u32, v: Option<&Value>) {
        if v.and_then(Value::as_bool) == Some(true) {
            self.key(field, VARINT);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: Option<&Value>) {
        if let Some(i) = v.and_then(Value::as_i64).filter(|i| *i != 0) {
            self.key(field, VARINT);
            // two's complement, as protobuf encodes negative int64
            self.varint(i as u64);
        }
    }

    fn double(&mut self, field: u32, v: Option<&Value>) {
        if let Some(f) = v.and_then(Value::as_f64).filter(|f| *f != 0.0) {
            self.key(field, FIXED64);
            self.0.extend_from_slice(&f.to_le_bytes());
        }
    }

    fn message(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }
}

/// Encodes a Swagger 2.0 JSON document (as [`crate::v2`] writes it) as `openapi.v2.Document`.
pub fn v2_protobuf(doc: &Value) -> Vec<u8> {
    let mut m = Msg::default();
    m.string_value(1, doc.get("swagger"));
    if let Some(info) = doc.get("info") {
        let mut i = Msg::default();
        i.string_value(1, info.get("title"));
        i.string_value(2, info.get("version"));
        i.string_value(3, info.get("description"));
        vendor_extensions(&mut i, 7, info);
        m.message(2, i);
    }
    m.string_value(3, doc.get("host"));
    m.string_value(4, doc.get("basePath"));
    m.strings(5, doc.get("schemes"));
    m.strings(6, doc.get("consumes"));
    m.strings(7, doc.get("produces"));
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        let mut p = Msg::default();
        for (name, item) in paths {
            if name.starts_with("x-") {
                continue;
            }
            let mut named = Msg::default();
            named.string(1, name);
            named.message(2, path_item(item));
            p.message(2, named);
        }
        m.message(8, p);
    }
    if let Some(defs) = doc.get("definitions").and_then(Value::as_object) {
        m.message(9, named_schemas(defs));
    }
    for requirement in doc
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut r = Msg::default();
        for (name, scopes) in requirement.as_object().into_iter().flatten() {
            let mut named = Msg::default();
            named.string(1, name);
            let mut array = Msg::default();
            array.strings(1, Some(scopes));
            named.message(2, array);
            r.message(1, named);
        }
        m.message(12, r);
    }
    if let Some(defs) = doc.get("securityDefinitions").and_then(Value::as_object) {
        let mut s = Msg::default();
        for (name, def) in defs {
            if def.get("type").and_then(Value::as_str) != Some("apiKey") {
                continue; // the only kind of security definition the documents use
            }
            let mut api_key = Msg::default();
            api_key.string_value(1, def.get("type"));
            api_key.string_value(2, def.get("name"));
            api_key.string_value(3, def.get("in"));
            api_key.string_value(4, def.get("description"));
            let mut item = Msg::default();
            item.message(2, api_key);
            let mut named = Msg::default();
            named.string(1, name);
            named.message(2, item);
            s.message(1, named);
        }
        m.message(13, s);
    }
    vendor_extensions(&mut m, 16, doc);
    m.0
}

/// `NamedAny` entries for every `x-` key of `obj`.
fn vendor_extensions(m: &mut Msg, field: u32, obj: &Value) {
    for (k, v) in obj.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            let mut named = Msg::default();
            named.string(1, k);
            named.message(2, any(v));
            m.message(field, named);
        }
    }
}

/// `Any { yaml }`.
fn any(v: &Value) -> Msg {
    let mut a = Msg::default();
    a.bytes(2, v.to_string().as_bytes());
    a
}

fn path_item(item: &Value) -> Msg {
    let mut m = Msg::default();
    m.string_value(1, item.get("$ref"));
    for (field, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(op) = item.get(method) {
            m.message(field, operation(op));
        }
    }
    for p in item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(9, parameters_item(p));
    }
    vendor_extensions(&mut m, 10, item);
    m
}

fn operation(op: &Value) -> Msg {
    let mut m = Msg::default();
    m.strings(1, op.get("tags"));
    m.string_value(2, op.get("summary"));
    m.string_value(3, op.get("description"));
    m.string_value(5, op.get("operationId"));
    m.strings(6, op.get("produces"));
    m.strings(7, op.get("consumes"));
    for p in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(8, parameters_item(p));
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        let mut r = Msg::default();
        for (code, response) in responses {
            if code.starts_with("x-") {
                continue;
            }
            let mut value = Msg::default();
            if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
                let mut j = Msg::default();
                j.string(1, reference);
                value.message(2, j);
            } else {
                value.message(1, response_message(response));
            }
            let mut named = Msg::default();
            named.string(1, code);
            named.message(2, value);
            r.message(1, named);
        }
        vendor_extensions(&mut r, 2, &Value::Object(responses.clone()));
        m.message(9, r);
    }
    m.strings(10, op.get("schemes"));
    m.bool(11, op.get("deprecated"));
    vendor_extensions(&mut m, 13, op);
    m
}

fn response_message(response: &Value) -> Msg {
    let mut m = Msg::default();
    m.string_value(1, response.get("description"));
    if let Some(schema) = response.get("schema") {
        let mut item = Msg::default();
        item.message(1, schema_message(schema));
        m.message(2, item);
    }
    vendor_extensions(&mut m, 5, response);
    m
}

/// `ParametersItem`: a `Parameter` (body or non-body), or a `JsonReference`.
fn parameters_item(p: &Value) -> Msg {
    let mut item = Msg::default();
    if let Some(reference) = p.get("$ref").and_then(Value::as_str) {
        let mut j = Msg::default();
        j.string(1, reference);
        item.message(2, j);
        return item;
    }
    let location = p.get("in").and_then(Value::as_str).unwrap_or_default();
    let mut parameter = Msg::default();
    if location == "body" {
        let mut b = Msg::default();
        b.string_value(1, p.get("description"));
        b.string_value(2, p.get("name"));
        b.string_value(3, p.get("in"));
        b.bool(4, p.get("required"));
        if let Some(schema) = p.get("schema") {
            b.message(5, schema_message(schema));
        }
        vendor_extensions(&mut b, 6, p);
        parameter.message(1, b);
    } else {
        // Header (1) and path (4) sub-schemas lack allow_empty_value, so their later fields sit
        // one number lower than form-data (2) and query (3) ones.
        let (which, shift) = match location {
            "header" => (1, 0),
            "formData" => (2, 1),
            "path" => (4, 0),
            _ => (3, 1),
        };
        let mut s = Msg::default();
        s.bool(1, p.get("required"));
        s.string_value(2, p.get("in"));
        s.string_value(3, p.get("description"));
        s.string_value(4, p.get("name"));
        if shift == 1 {
            s.bool(5, p.get("allowEmptyValue"));
        }
        s.string_value(5 + shift, p.get("type"));
        s.string_value(6 + shift, p.get("format"));
        s.string_value(8 + shift, p.get("collectionFormat"));
        if let Some(default) = p.get("default") {
            s.message(9 + shift, any(default));
        }
        s.double(10 + shift, p.get("maximum"));
        s.bool(11 + shift, p.get("exclusiveMaximum"));
        s.double(12 + shift, p.get("minimum"));
        s.bool(13 + shift, p.get("exclusiveMinimum"));
        s.int64(14 + shift, p.get("maxLength"));
        s.int64(15 + shift, p.get("minLength"));
        s.string_value(16 + shift, p.get("pattern"));
        s.int64(17 + shift, p.get("maxItems"));
        s.int64(18 + shift, p.get("minItems"));
        s.bool(19 + shift, p.get("uniqueItems"));
        for e in p
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            s.message(20 + shift, any(e));
        }
        s.double(21 + shift, p.get("multipleOf"));
        vendor_extensions(&mut s, 22 + shift, p);
        let mut non_body = Msg::default();
        non_body.message(which, s);
        parameter.message(2, non_body);
    }
    item.message(1, parameter);
    item
}

/// `Definitions` / `Properties`: both are `repeated NamedSchema additional_properties = 1`.
fn named_schemas(schemas: &Map<String, Value>) -> Msg {
    let mut m = Msg::default();
    for (name, schema) in schemas {
        let mut named = Msg::default();
        named.string(1, name);
        named.message(2, schema_message(schema));
        m.message(1, named);
    }
    m
}

fn schema_message(s: &Value) -> Msg {
    let mut m = Msg::default();
    m.string_value(1, s.get("$ref"));
    m.string_value(2, s.get("format"));
    m.string_value(3, s.get("title"));
    m.string_value(4, s.get("description"));
    if let Some(default) = s.get("default") {
        m.message(5, any(default));
    }
    m.double(6, s.get("multipleOf"));
    m.double(7, s.get("maximum"));
    m.bool(8, s.get("exclusiveMaximum"));
    m.double(9, s.get("minimum"));
    m.bool(10, s.get("exclusiveMinimum"));
    m.int64(11, s.get("maxLength"));
    m.int64(12, s.get("minLength"));
    m.string_value(13, s.get("pattern"));
    m.int64(14, s.get("maxItems"));
    m.int64(15, s.get("minItems"));
    m.bool(16, s.get("uniqueItems"));
    m.int64(17, s.get("maxProperties"));
    m.int64(18, s.get("minProperties"));
    m.strings(19, s.get("required"));
    for e in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(20, any(e));
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut a = Msg::default();
            // a oneof member is written even when false
            a.key(2, VARINT);
            a.varint(u64::from(*b));
            m.message(21, a);
        }
        Some(schema @ Value::Object(_)) => {
            let mut a = Msg::default();
            a.message(1, schema_message(schema));
            m.message(21, a);
        }
        _ => {}
    }
    match s.get("type") {
        Some(Value::String(t)) => {
            let mut t_item = Msg::default();
            t_item.bytes(1, t.as_bytes());
            m.message(22, t_item);
        }
        Some(types @ Value::Array(_)) => {
            let mut t_item = Msg::default();
            t_item.strings(1, Some(types));
            m.message(22, t_item);
        }
        _ => {}
    }
    match s.get("items") {
        Some(schema @ Value::Object(_)) => {
            let mut items = Msg::default();
            items.message(1, schema_message(schema));
            m.message(23, items);
        }
        Some(Value::Array(schemas)) => {
            let mut items = Msg::default();
            for schema in schemas {
                items.message(1, schema_message(schema));
            }
            m.message(23, items);
        }
        _ => {}
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, schema_message(sub));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        m.message(25, named_schemas(props));
    }
    m.string_value(26, s.get("discriminator"));
    m.bool(27, s.get("readOnly"));
    if let Some(example) = s.get("example") {
        m.message(30, any(example));
    }
    vendor_extensions(&mut m, 31, s);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::resources;

    /// A field of a decoded message: varint, fixed64 or length-delimited bytes.
    #[derive(Debug)]
    enum Field<'a> {
        Varint(u64),
        Fixed64(u64),
        Bytes(&'a [u8]),
    }

    fn varint(b: &[u8], pos: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[*pos];
            *pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn decode(b: &[u8]) -> Vec<(u32, Field<'_>)> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < b.len() {
            let key = varint(b, &mut pos);
            let field = u32::try_from(key >> 3).unwrap();
            match key & 7 {
                0 => out.push((field, Field::Varint(varint(b, &mut pos)))),
                1 => {
                    let v = u64::from_le_bytes(b[pos..pos + 8].try_into().unwrap());
                    pos += 8;
                    out.push((field, Field::Fixed64(v)));
                }
                2 => {
                    let len = usize::try_from(varint(b, &mut pos)).unwrap();
                    out.push((field, Field::Bytes(&b[pos..pos + len])));
                    pos += len;
                }
                wire => panic!("unexpected wire type {wire}"),
            }
        }
        assert_eq!(pos, b.len());
        out
    }

    fn all(b: &[u8], field: u32) -> Vec<&[u8]> {
        decode(b)
            .into_iter()
            .filter(|(f, _)| *f == field)
            .filter_map(|(_, v)| match v {
                Field::Bytes(bytes) => Some(bytes),
                _ => None,
            })
            .collect()
    }

    fn one(b: &[u8], field: u32) -> &[u8] {
        let found = all(b, field);
        assert_eq!(found.len(), 1, "field {field}");
        found[0]
    }

    fn text(b: &[u8], field: u32) -> &str {
        std::str::from_utf8(one(b, field)).unwrap()
    }

    /// The value of the `NamedX` entry called `name` among the repeated `field` of `b`.
    fn named<'a>(b: &'a [u8], field: u32, name: &str) -> &'a [u8] {
        all(b, field)
            .into_iter()
            .find(|entry| text(entry, 1) == name)
            .map(|entry| one(entry, 2))
            .unwrap_or_else(|| panic!("no entry {name}"))
    }

    #[test]
    fn the_protobuf_document_round_trips() {
        let doc = crate::v2(&resources());
        let bytes = v2_protobuf(&doc);
        assert_eq!(text(&bytes, 1), "2.0");
        assert_eq!(text(one(&bytes, 2), 2), crate::KUBERNETES_VERSION);

        // definitions -> PodSpec -> properties -> containers
        let pod_spec = named(one(&bytes, 9), 1, "io.k8s.api.core.v1.PodSpec");
        let containers = named(one(pod_spec, 25), 1, "containers");
        assert_eq!(text(one(containers, 22), 1), "array");
        let merge_key = named(containers, 31, "x-kubernetes-patch-merge-key");
        assert_eq!(text(merge_key, 2), "\"name\"");
        let item = one(one(containers, 23), 1);
        assert_eq!(text(item, 1), "#/definitions/io.k8s.api.core.v1.Container");
        let required = all(pod_spec, 19);
        assert_eq!(required, vec![b"containers".as_slice()]);

        // the GVK extension of a definition is a list, readable as YAML (JSON)
        let deployment = named(one(&bytes, 9), 1, "io.k8s.api.apps.v1.Deployment");
        let gvk = named(deployment, 31, "x-kubernetes-group-version-kind");
        let gvk: serde_json::Value = serde_json::from_str(text(gvk, 2)).unwrap();
        assert_eq!(
            gvk,
            serde_json::json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );

        // paths -> deployment item -> patch: a GVK map and the fieldValidation query parameter
        let item = named(
            one(&bytes, 8),
            2,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        );
        let patch = one(item, 8);
        let gvk = named(patch, 13, "x-kubernetes-group-version-kind");
        let gvk: serde_json::Value = serde_json::from_str(text(gvk, 2)).unwrap();
        assert_eq!(gvk["kind"], "Deployment");
        let query_names: Vec<&str> = all(patch, 8)
            .into_iter()
            .filter_map(|p| all(one(p, 1), 2).first().copied())
            .map(|non_body| text(one(non_body, 3), 4))
            .collect();
        assert!(query_names.contains(&"fieldValidation"), "{query_names:?}");
        let body = one(one(all(patch, 8)[0], 1), 1);
        assert_eq!(text(body, 3), "body");
        assert!(
            decode(body)
                .iter()
                .any(|(f, v)| *f == 4 && matches!(v, Field::Varint(1)))
        );
        // path-level parameters are path sub-schemas
        let name_param = one(one(one(all(item, 9)[0], 1), 2), 4);
        assert_eq!(text(name_param, 4), "name");
        assert_eq!(text(name_param, 5), "string");
    }

    #[test]
    fn scalars_and_oneofs_use_the_right_wire_types() {
        let schema = serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "maximum": 1.5,
            "minLength": 3,
            "enum": ["a"]
        });
        let m = schema_message(&schema).0;
        let fields = decode(&m);
        assert!(
            fields.iter().any(
                |(f, v)| *f == 7 && matches!(v, Field::Fixed64(x) if f64::from_bits(*x) == 1.5)
            )
        );
        assert!(
            fields
                .iter()
                .any(|(f, v)| *f == 12 && matches!(v, Field::Varint(3)))
        );
        assert_eq!(
            decode(one(&m, 21)).len(),
            1,
            "additionalProperties: false is still written"
        );
        assert_eq!(text(one(&m, 20), 2), "\"a\"");
    }
}
