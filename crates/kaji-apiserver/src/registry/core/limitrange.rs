//! LimitRanges: upstream's defaulting of `Container` items (`default` from `max`,
//! `defaultRequest` from `default` or `min`) and validation (`pkg/apis/core/validation`
//! ValidateLimitRange): one item per type, no defaults on `Pod` items, a `PersistentVolumeClaim`
//! item needs a storage min or max, and per resource min <= defaultRequest <= default <= max and a
//! ratio of at least 1 and at most max/min, each a 422 cause as upstream words it.

use crate::registry::{Strategy, info};
use kaji_api::quantity::milli_value;
use kaji_api::{FieldError, ResourceInfo};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

pub struct LimitRangeStrategy;

static INFO: ResourceInfo = info("", "v1", "LimitRange", "limitranges", "limitrange", true, &["limits"], &[]);

fn map(item: &Value, key: &str) -> Map<String, Value> {
    item.get(key).and_then(Value::as_object).cloned().unwrap_or_default()
}

fn q(m: &Map<String, Value>, k: &str) -> Option<(String, i128)> {
    let s = m.get(k)?.as_str()?;
    Some((s.to_string(), milli_value(s)?))
}

impl Strategy for LimitRangeStrategy {
    fn info(&self) -> &ResourceInfo {
        &INFO
    }
    fn default(&self, obj: &mut Value) {
        let Some(items) = obj.pointer_mut("/spec/limits").and_then(Value::as_array_mut) else { return };
        for item in items {
            if item.get("type").and_then(Value::as_str) != Some("Container") {
                continue;
            }
            let (max, min) = (map(item, "max"), map(item, "min"));
            let mut default = map(item, "default");
            for (k, v) in &max {
                default.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let mut request = map(item, "defaultRequest");
            for (k, v) in &default {
                request.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in &min {
                request.entry(k.clone()).or_insert_with(|| v.clone());
            }
            if !default.is_empty() {
                item["default"] = Value::Object(default);
            }
            if !request.is_empty() {
                item["defaultRequest"] = Value::Object(request);
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut types = BTreeSet::new();
        let items = obj.pointer("/spec/limits").and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, item) in items.iter().enumerate() {
            let path = format!("spec.limits[{i}]");
            let ty = item.get("type").and_then(Value::as_str).unwrap_or_default();
            if !types.insert(ty.to_string()) {
                errs.push(FieldError::duplicate(format!("{path}.type"), &json!(ty)));
            }
            let (max, min, default, request, ratio) =
                (map(item, "max"), map(item, "min"), map(item, "default"), map(item, "defaultRequest"), map(item, "maxLimitRequestRatio"));
            for (key, m) in [("max", &max), ("min", &min), ("default", &default), ("defaultRequest", &request), ("maxLimitRequestRatio", &ratio)] {
                for (k, v) in m {
                    if v.as_str().and_then(milli_value).is_none() {
                        errs.push(FieldError::invalid(format!("{path}.{key}[{k}]"), v, "must be a valid quantity"));
                    }
                }
            }
            if ty == "Pod" {
                if !default.is_empty() {
                    errs.push(FieldError::forbidden(format!("{path}.default"), "may not be specified when `type` is 'Pod'"));
                }
                if !request.is_empty() {
                    errs.push(FieldError::forbidden(format!("{path}.defaultRequest"), "may not be specified when `type` is 'Pod'"));
                }
            }
            if ty == "PersistentVolumeClaim" && !min.contains_key("storage") && !max.contains_key("storage") {
                errs.push(FieldError::required(
                    format!("{path}.limits"),
                    "either minimum or maximum storage value is required, but neither was provided",
                ));
            }
            let keys: BTreeSet<&String> = max.keys().chain(min.keys()).chain(default.keys()).chain(request.keys()).chain(ratio.keys()).collect();
            for k in keys {
                let (mx, mn, df, rq, rt) = (q(&max, k), q(&min, k), q(&default, k), q(&request, k), q(&ratio, k));
                if let (Some(mn), Some(mx)) = (&mn, &mx)
                    && mn.1 > mx.1
                {
                    errs.push(FieldError::invalid(format!("{path}.min[{k}]"), &json!(mn.0), &format!("min value {} is greater than max value {}", mn.0, mx.0)));
                }
                if let (Some(rq), Some(mn)) = (&rq, &mn)
                    && mn.1 > rq.1
                {
                    errs.push(FieldError::invalid(format!("{path}.defaultRequest[{k}]"), &json!(rq.0), &format!("min value {} is greater than default request value {}", mn.0, rq.0)));
                }
                if let (Some(rq), Some(mx)) = (&rq, &mx)
                    && rq.1 > mx.1
                {
                    errs.push(FieldError::invalid(format!("{path}.defaultRequest[{k}]"), &json!(rq.0), &format!("default request value {} is greater than max value {}", rq.0, mx.0)));
                }
                if let (Some(rq), Some(df)) = (&rq, &df)
                    && rq.1 > df.1
                {
                    errs.push(FieldError::invalid(format!("{path}.defaultRequest[{k}]"), &json!(rq.0), &format!("default request value {} is greater than default limit value {}", rq.0, df.0)));
                }
                if let (Some(df), Some(mn)) = (&df, &mn)
                    && mn.1 > df.1
                {
                    errs.push(FieldError::invalid(format!("{path}.default[{k}]"), &json!(mn.0), &format!("min value {} is greater than default value {}", mn.0, df.0)));
                }
                if let (Some(df), Some(mx)) = (&df, &mx)
                    && df.1 > mx.1
                {
                    errs.push(FieldError::invalid(format!("{path}.default[{k}]"), &json!(mx.0), &format!("default value {} is greater than max value {}", df.0, mx.0)));
                }
                if let Some(rt) = &rt {
                    if rt.1 < 1000 {
                        errs.push(FieldError::invalid(format!("{path}.maxLimitRequestRatio[{k}]"), &json!(rt.0), &format!("ratio {} is less than 1", rt.0)));
                    }
                    if let (Some(mn), Some(mx)) = (&mn, &mx)
                        && mn.1 > 0
                    {
                        let limit = mx.1 as f64 / mn.1 as f64;
                        if rt.1 as f64 / 1000.0 > limit {
                            errs.push(FieldError::invalid(format!("{path}.maxLimitRequestRatio[{k}]"), &json!(rt.0), &format!("ratio {} is greater than max/min = {limit:.6}", rt.0)));
                        }
                    }
                }
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_max_and_refuses_defaults_above_max() {
        let s = LimitRangeStrategy;
        let mut lr = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "1Mi"}}]}});
        s.default(&mut lr);
        assert_eq!(lr.pointer("/spec/limits/0/default/cpu"), Some(&json!("1")));
        assert_eq!(lr.pointer("/spec/limits/0/defaultRequest/cpu"), Some(&json!("1")));
        assert_eq!(lr.pointer("/spec/limits/0/defaultRequest/memory"), Some(&json!("1Mi")));
        assert!(s.validate(&lr).is_empty());
        let bad = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "default": {"cpu": "2"}}]}});
        let errs = s.validate(&bad);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "spec.limits[0].default[cpu]");
        assert!(errs[0].detail.contains("default value 2 is greater than max value 1"), "{errs:?}");
    }
}
