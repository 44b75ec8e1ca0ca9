//! End-to-end test of ServiceLB (k3s's built-in LoadBalancer, run in the controller manager):
//! LoadBalancer Services get their nodes' addresses as EXTERNAL-IP; a second one on a port
//! already held stays `<pending>` with a Warning event, and gets addresses once the port is
//! free; a Service that stops being a LoadBalancer loses them. Driven by stock kubectl against
//! two hollow nodes (InternalIPs 10.240.0.1 and 10.240.0.2).
mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Cluster, KUBECTL_NEW, wait_for};

const NODE_IPS: &str = "10.240.0.1,10.240.0.2";
const WAIT: Duration = Duration::from_secs(60);

/// The EXTERNAL-IP column of `kubectl get svc <name>`.
fn external_ip(c: &Cluster, name: &str) -> String {
    let out = c.ok(&["get", "svc", name, "--no-headers"]);
    out.split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .to_string()
}

fn lb_service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n  selector: {{app: web}}\n  ports:\n  - port: {port}\n    targetPort: 80\n"
    )
}

#[test]
fn load_balancers_get_node_addresses_and_ports_are_not_shared() {
    let c = Cluster::start_with("servicelb", &["--hollow-nodes", "2"]);
    c.ok(&["create", "deployment", "web", "--image=nginx"]);
    c.ok(&[
        "expose",
        "deployment",
        "web",
        "--type=LoadBalancer",
        "--port=80",
    ]);
    wait_for("web's EXTERNAL-IP", WAIT, || {
        (external_ip(&c, "web") == NODE_IPS).then_some(())
    });
    let svc = c.json(&["get", "svc", "web"]);
    let ingress = &svc["status"]["loadBalancer"]["ingress"];
    assert_eq!(
        ingress,
        &serde_json::json!([
            {"ip": "10.240.0.1", "ipMode": "VIP"},
            {"ip": "10.240.0.2", "ipMode": "VIP"},
        ]),
        "{svc}"
    );

    // Port 80 is web's: the newer Service stays pending, with k3s's reason.
    c.apply(KUBECTL_NEW, &lb_service("web2", 80));
    let event = wait_for("the UnAvailableLoadBalancer event of web2", WAIT, || {
        let events = c.json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web2",
        ]);
        events["items"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "UnAvailableLoadBalancer")
            .cloned()
    });
    assert_eq!(event["type"], "Warning", "{event}");
    assert_eq!(event["involvedObject"]["kind"], "Service", "{event}");
    let message = event["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("There are no available nodes for LoadBalancer")
            && message.contains("80/TCP")
            && message.contains("default/web"),
        "{message}"
    );
    assert_eq!(external_ip(&c, "web2"), "<pending>");
    let described = c.ok(&["describe", "svc", "web2"]);
    assert!(described.contains("UnAvailableLoadBalancer"), "{described}");
    // A port nobody holds is fine.
    c.apply(KUBECTL_NEW, &lb_service("web3", 8080));
    wait_for("web3's EXTERNAL-IP", WAIT, || {
        (external_ip(&c, "web3") == NODE_IPS).then_some(())
    });
    assert_eq!(external_ip(&c, "web2"), "<pending>", "still pending");
    let events = c.ok(&["get", "events"]);
    assert!(events.contains("UpdatedLoadBalancer"), "{events}");

    // The holder goes: the port is free for web2.
    c.ok(&["delete", "svc", "web"]);
    wait_for("web2's EXTERNAL-IP once web is gone", WAIT, || {
        (external_ip(&c, "web2") == NODE_IPS).then_some(())
    });

    // No longer a LoadBalancer: no ingress.
    c.ok(&[
        "patch",
        "svc",
        "web2",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    wait_for("web2's ingress to go", WAIT, || {
        let s: Value = c.json(&["get", "svc", "web2"]);
        let gone = s["status"]["loadBalancer"]["ingress"]
            .as_array()
            .is_none_or(Vec::is_empty);
        (gone && external_ip(&c, "web2") == "<none>").then_some(())
    });
}
