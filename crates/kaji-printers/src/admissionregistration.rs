//! admissionregistration.k8s.io: webhook configurations and admission policies (and bindings).

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::selectors::selector_string;
use crate::value::{age, get, is_set, len_at, name, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    Some(match kind {
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => WEBHOOK_CONFIGURATION,
        "ValidatingAdmissionPolicy" => VALIDATING_POLICY,
        "MutatingAdmissionPolicy" => MUTATING_POLICY,
        "ValidatingAdmissionPolicyBinding" | "MutatingAdmissionPolicyBinding" => POLICY_BINDING,
        _ => return None,
    })
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    Some(match kind {
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            vec![name(obj), len_at(obj, &["webhooks"]).into(), age(obj, now)]
        }
        "ValidatingAdmissionPolicy" => policy(obj, "validations", now),
        "MutatingAdmissionPolicy" => policy(obj, "mutations", now),
        "ValidatingAdmissionPolicyBinding" | "MutatingAdmissionPolicyBinding" => binding(obj, now),
        _ => return None,
    })
}

const WEBHOOK_CONFIGURATION: &[Column] = &[
    Column::NAME,
    Column::new(
        "Webhooks",
        "integer",
        "Webhooks indicates the number of webhooks registered in this configuration",
    ),
    Column::AGE,
];

const PARAM_KIND: Column = Column::new(
    "ParamKind",
    "string",
    "ParamKind specifies the kind of resources used to parameterize this policy",
);

const VALIDATING_POLICY: &[Column] = &[
    Column::NAME,
    Column::new(
        "Validations",
        "integer",
        "Validations indicates the number of validation rules defined in this configuration",
    ),
    PARAM_KIND,
    Column::AGE,
];

const MUTATING_POLICY: &[Column] = &[
    Column::NAME,
    Column::new(
        "Mutations",
        "integer",
        "Mutation indicates the number of mutations rules defined in this configuration",
    ),
    PARAM_KIND,
    Column::AGE,
];

const POLICY_BINDING: &[Column] = &[
    Column::NAME,
    Column::new(
        "PolicyName",
        "string",
        "PolicyName indicates the policy definition which the policy binding binded to",
    ),
    Column::new(
        "ParamRef",
        "string",
        "ParamRef indicates the param resource which sets the configration param",
    ),
    Column::AGE,
];

fn policy(obj: &Value, rules: &str, now: Timestamp) -> Vec<Value> {
    let param_kind = if is_set(obj, &["spec", "paramKind"]) {
        format!(
            "{}/{}",
            str_at(obj, &["spec", "paramKind", "apiVersion"]),
            str_at(obj, &["spec", "paramKind", "kind"])
        )
    } else {
        "<unset>".to_owned()
    };
    vec![
        name(obj),
        len_at(obj, &["spec", rules]).into(),
        param_kind.into(),
        age(obj, now),
    ]
}

fn binding(obj: &Value, now: Timestamp) -> Vec<Value> {
    let param = match get(obj, &["spec", "paramRef"]).filter(|p| !p.is_null()) {
        None => "<unset>".to_owned(),
        Some(p) => match (str_at(p, &["name"]), str_at(p, &["namespace"])) {
            ("", _) if is_set(p, &["selector"]) => {
                selector_string(get(p, &["selector"])).unwrap_or_else(|()| "<unset>".to_owned())
            }
            ("", _) => "<unset>".to_owned(),
            (param_name, "") => format!("*/{param_name}"),
            (param_name, namespace) => format!("{namespace}/{param_name}"),
        },
    };
    vec![
        name(obj),
        str_at(obj, &["spec", "policyName"]).into(),
        param.into(),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    const G: &str = "admissionregistration.k8s.io";

    #[test]
    fn webhooks_and_policies() {
        assert_eq!(
            headers(G, "ValidatingWebhookConfiguration"),
            ["Name", "Webhooks", "Age"]
        );
        let w = json!({"metadata": {"name": "cert-manager-webhook"}, "webhooks": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(
            cells(G, "MutatingWebhookConfiguration", &w),
            [json!("cert-manager-webhook"), json!(2), json!("<unknown>")]
        );

        assert_eq!(
            headers(G, "ValidatingAdmissionPolicy"),
            ["Name", "Validations", "ParamKind", "Age"]
        );
        let p = json!({"metadata": {"name": "replicas"}, "spec": {"validations": [{"expression": "true"}],
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}}});
        assert_eq!(
            cells(G, "ValidatingAdmissionPolicy", &p)[1..3],
            [json!(1), json!("v1/ConfigMap")]
        );

        assert_eq!(
            headers(G, "ValidatingAdmissionPolicyBinding"),
            ["Name", "PolicyName", "ParamRef", "Age"]
        );
        let b = json!({"metadata": {"name": "b"}, "spec": {"policyName": "replicas", "paramRef": {"name": "limits"}}});
        assert_eq!(
            cells(G, "ValidatingAdmissionPolicyBinding", &b)[1..3],
            [json!("replicas"), json!("*/limits")]
        );
        let sel = json!({"spec": {"paramRef": {"selector": {"matchLabels": {"env": "prod"}}}}});
        assert_eq!(
            cells(G, "ValidatingAdmissionPolicyBinding", &sel)[2],
            json!("env=prod")
        );
    }
}
