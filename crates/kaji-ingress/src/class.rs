//! Which Ingresses are ours (upstream: `spec.ingressClassName`, the legacy
//! `kubernetes.io/ingress.class` annotation, and the default IngressClass for the rest), and the
//! IngressClass this controller creates at start.

use anyhow::Context;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, PostParams};

/// `spec.controller` of Kaji's IngressClass.
pub const CONTROLLER_NAME: &str = "kaji.io/ingress";
/// Marks the IngressClass that classless Ingresses get.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The pre-IngressClass way of choosing a controller, still honoured.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether `class` (our IngressClass as currently stored, if any) is marked default.
pub fn is_default_class(class: Option<&IngressClass>) -> bool {
    class
        .and_then(|c| c.metadata.annotations.as_ref())
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Whether this controller serves `ing`: its `spec.ingressClassName` is ours; or it has none and
/// the legacy annotation names ours; or it has neither and our class is the default.
pub fn serves(ing: &Ingress, class_name: &str, our_class_is_default: bool) -> bool {
    if let Some(c) = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        return c == class_name;
    }
    if let Some(c) = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
    {
        return c == class_name;
    }
    our_class_is_default
}

/// The IngressClass this controller creates when it is missing.
pub fn desired_class(class_name: &str) -> IngressClass {
    let mut class = IngressClass::default();
    class.metadata.name = Some(class_name.to_string());
    class.metadata.annotations = Some(
        [(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())]
            .into_iter()
            .collect(),
    );
    class.spec = Some(k8s_openapi::api::networking::v1::IngressClassSpec {
        controller: Some(CONTROLLER_NAME.to_string()),
        parameters: None,
    });
    class
}

/// Creates our IngressClass unless it exists; an existing one (perhaps edited by the user, e.g.
/// no longer default) is left alone.
pub async fn ensure_class(client: &kube::Client, class_name: &str) -> anyhow::Result<()> {
    let api: Api<IngressClass> = Api::all(client.clone());
    if api
        .get_opt(class_name)
        .await
        .with_context(|| format!("reading IngressClass {class_name}"))?
        .is_some()
    {
        return Ok(());
    }
    match api
        .create(&PostParams::default(), &desired_class(class_name))
        .await
    {
        Ok(_) => {
            tracing::info!(class = class_name, "created IngressClass");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating IngressClass {class_name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ing(class: Option<&str>, annotation: Option<&str>) -> Ingress {
        let mut v = json!({"metadata": {"name": "i", "namespace": "n"}, "spec": {}});
        if let Some(c) = class {
            v["spec"]["ingressClassName"] = json!(c);
        }
        if let Some(a) = annotation {
            v["metadata"]["annotations"] = json!({LEGACY_CLASS_ANNOTATION: a});
        }
        serde_json::from_value(v).expect("ingress")
    }

    #[test]
    fn class_name_decides_when_set() {
        assert!(serves(&ing(Some("kaji"), None), "kaji", false));
        assert!(!serves(&ing(Some("nginx"), None), "kaji", true));
        // The field wins over the annotation.
        assert!(!serves(&ing(Some("nginx"), Some("kaji")), "kaji", true));
    }

    #[test]
    fn legacy_annotation_counts() {
        assert!(serves(&ing(None, Some("kaji")), "kaji", false));
        assert!(!serves(&ing(None, Some("nginx")), "kaji", true));
    }

    #[test]
    fn classless_only_while_default() {
        assert!(serves(&ing(None, None), "kaji", true));
        assert!(!serves(&ing(None, None), "kaji", false));
    }

    #[test]
    fn default_annotation() {
        let class = desired_class("kaji");
        assert!(is_default_class(Some(&class)));
        assert_eq!(
            class.spec.as_ref().and_then(|s| s.controller.as_deref()),
            Some(CONTROLLER_NAME)
        );
        let mut edited = class.clone();
        edited.metadata.annotations = Some(
            [(DEFAULT_CLASS_ANNOTATION.to_string(), "false".to_string())]
                .into_iter()
                .collect(),
        );
        assert!(!is_default_class(Some(&edited)));
        assert!(!is_default_class(None));
    }
}
