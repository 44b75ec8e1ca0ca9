//! flowcontrol.apiserver.k8s.io: FlowSchema, PriorityLevelConfiguration.

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::value::{age, arr_at, get, is_set, name, opt_int, str_at};

pub(crate) fn columns(kind: &str) -> Option<&'static [Column]> {
    Some(match kind {
        "FlowSchema" => FLOW_SCHEMA,
        "PriorityLevelConfiguration" => PRIORITY_LEVEL,
        _ => return None,
    })
}

pub(crate) fn row(kind: &str, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    Some(match kind {
        "FlowSchema" => flow_schema(obj, now),
        "PriorityLevelConfiguration" => priority_level(obj, now),
        _ => return None,
    })
}

const FLOW_SCHEMA: &[Column] = &[
    Column::NAME,
    Column::new(
        "PriorityLevel",
        "string",
        "`name` is the name of the priority level configuration being referenced Required.",
    ),
    Column::new(
        "MatchingPrecedence",
        "string",
        "`matchingPrecedence` is used to choose among the FlowSchemas that match a given request. The chosen FlowSchema is among those with the numerically lowest (which we take to be logically highest) MatchingPrecedence.  Each MatchingPrecedence value must be ranged in [1,10000]. Note that if the precedence is not specified, it will be set to 1000 as default.",
    ),
    Column::new(
        "DistinguisherMethod",
        "string",
        "`distinguisherMethod` defines how to compute the flow distinguisher for requests that match this schema. `nil` specifies that the distinguisher is disabled and thus will always be the empty string.",
    ),
    Column::AGE,
    Column::new(
        "MissingPL",
        "string",
        "references a broken or non-existent PriorityLevelConfiguration",
    ),
];

fn flow_schema(obj: &Value, now: Timestamp) -> Vec<Value> {
    let distinguisher = if is_set(obj, &["spec", "distinguisherMethod"]) {
        str_at(obj, &["spec", "distinguisherMethod", "type"]).to_owned()
    } else {
        "<none>".to_owned()
    };
    let missing = arr_at(obj, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Dangling")
        .map_or("?", |c| str_at(c, &["status"]));
    vec![
        name(obj),
        str_at(obj, &["spec", "priorityLevelConfiguration", "name"]).into(),
        opt_int(obj, &["spec", "matchingPrecedence"])
            .unwrap_or(1000)
            .into(),
        distinguisher.into(),
        age(obj, now),
        missing.into(),
    ]
}

const PRIORITY_LEVEL: &[Column] = &[
    Column::NAME,
    Column::new(
        "Type",
        "string",
        "`type` indicates whether this priority level is subject to limitation on request execution.  A value of `\"Exempt\"` means that requests of this priority level are not subject to a limit (and thus are never queued) and do not detract from the capacity made available to other priority levels.  A value of `\"Limited\"` means that (a) requests of this priority level _are_ subject to limits and (b) some of the server's limited capacity is made available exclusively to this priority level. Required.",
    ),
    Column::new(
        "NominalConcurrencyShares",
        "string",
        "`nominalConcurrencyShares` (NCS) contributes to the computation of the NominalConcurrencyLimit (NominalCL) of this level.",
    ),
    Column::new(
        "Queues",
        "string",
        "`queues` is the number of queues for this priority level. The queues exist independently at each apiserver. The value must be positive.  Setting it to 1 effectively precludes shufflesharding and thus makes the distinguisher method of associated flow schemas irrelevant.  This field has a default value of 64.",
    ),
    Column::new(
        "HandSize",
        "string",
        "`handSize` is a small positive number that configures the shuffle sharding of requests into queues.  When enqueuing a request at this priority level the request's flow identifier (a string pair) is hashed and the hash value is used to shuffle the list of queues and deal a hand of the size specified here.  The request is put into one of the shortest queues in that hand. `handSize` must be no larger than `queues`, and should be significantly smaller (so that a few heavy flows do not saturate most of the queues).  See the user-facing documentation for more extensive guidance on setting this field.  This field has a default value of 8.",
    ),
    Column::new(
        "QueueLengthLimit",
        "string",
        "`queueLengthLimit` is the maximum number of requests allowed to be waiting in a given queue of this priority level at a time; excess requests are rejected.  This value must be positive.  If not specified, it will be defaulted to 50.",
    ),
    Column::AGE,
];

fn priority_level(obj: &Value, now: Timestamp) -> Vec<Value> {
    let none = || Value::from("<none>");
    let (mut shares, mut queues, mut hand_size, mut queue_length) =
        (none(), none(), none(), none());
    if let Some(limited) = get(obj, &["spec", "limited"]).filter(|l| !l.is_null()) {
        // Defaults as upstream applies them on read.
        shares = opt_int(limited, &["nominalConcurrencyShares"])
            .unwrap_or(30)
            .into();
        if let Some(queuing) = get(limited, &["limitResponse", "queuing"]).filter(|q| !q.is_null())
        {
            queues = opt_int(queuing, &["queues"]).unwrap_or(64).into();
            hand_size = opt_int(queuing, &["handSize"]).unwrap_or(8).into();
            queue_length = opt_int(queuing, &["queueLengthLimit"]).unwrap_or(50).into();
        }
    }
    vec![
        name(obj),
        str_at(obj, &["spec", "type"]).into(),
        shares,
        queues,
        hand_size,
        queue_length,
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cells, headers};
    use serde_json::json;

    const G: &str = "flowcontrol.apiserver.k8s.io";

    #[test]
    fn flow_schema() {
        assert_eq!(
            headers(G, "FlowSchema"),
            [
                "Name",
                "PriorityLevel",
                "MatchingPrecedence",
                "DistinguisherMethod",
                "Age",
                "MissingPL"
            ]
        );
        let fs = json!({"metadata": {"name": "system-leader-election"},
            "spec": {"priorityLevelConfiguration": {"name": "leader-election"}, "matchingPrecedence": 100,
                     "distinguisherMethod": {"type": "ByUser"}},
            "status": {"conditions": [{"type": "Dangling", "status": "False"}]}});
        assert_eq!(
            cells(G, "FlowSchema", &fs),
            [
                json!("system-leader-election"),
                json!("leader-election"),
                json!(100),
                json!("ByUser"),
                json!("<unknown>"),
                json!("False")
            ]
        );
        assert_eq!(
            cells(G, "FlowSchema", &json!({}))[3..6],
            [json!("<none>"), json!("<unknown>"), json!("?")]
        );
    }

    #[test]
    fn priority_level() {
        assert_eq!(
            headers(G, "PriorityLevelConfiguration"),
            [
                "Name",
                "Type",
                "NominalConcurrencyShares",
                "Queues",
                "HandSize",
                "QueueLengthLimit",
                "Age"
            ]
        );
        let pl = json!({"metadata": {"name": "workload-low"}, "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 100, "limitResponse": {"type": "Queue", "queuing": {"queues": 128, "handSize": 6, "queueLengthLimit": 50}}}}});
        assert_eq!(
            cells(G, "PriorityLevelConfiguration", &pl)[1..6],
            [
                json!("Limited"),
                json!(100),
                json!(128),
                json!(6),
                json!(50)
            ]
        );
        let exempt = json!({"metadata": {"name": "exempt"}, "spec": {"type": "Exempt"}});
        assert_eq!(
            cells(G, "PriorityLevelConfiguration", &exempt)[1..6],
            [
                json!("Exempt"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }
}
