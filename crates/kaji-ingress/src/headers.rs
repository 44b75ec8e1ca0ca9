//! Header rewriting between client and backend, as pure functions: hop-by-hop headers
//! (RFC 9110 §7.6.1) dropped, and the `X-Forwarded-*` / `X-Real-IP` headers set as ingress-nginx
//! does (`X-Forwarded-For` appended to, the others replaced).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// What the ingress knows about the client's connection.
#[derive(Clone, Debug)]
pub struct Forwarded<'a> {
    pub client_ip: IpAddr,
    /// The request's Host (header or authority), as the client sent it.
    pub host: Option<&'a str>,
    /// `http` or `https`.
    pub proto: &'a str,
    /// The port the client connected to.
    pub port: u16,
}

/// Sets the forwarding headers on a request about to go to a backend.
pub fn set_forwarded_headers(headers: &mut HeaderMap, f: &Forwarded<'_>) {
    let client_ip = f.client_ip.to_canonical();
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let xff = if prior.is_empty() {
        client_ip.to_string()
    } else {
        format!("{}, {client_ip}", prior.join(", "))
    };
    set_or_remove(headers, X_FORWARDED_FOR, Some(&xff));
    set_or_remove(headers, X_REAL_IP, Some(&client_ip.to_string()));
    set_or_remove(headers, X_FORWARDED_HOST, f.host);
    set_or_remove(headers, X_FORWARDED_PROTO, Some(f.proto));
    set_or_remove(headers, X_FORWARDED_PORT, Some(&f.port.to_string()));
}

/// Replaces a header; removes it when there is no (valid) value, so a client cannot spoof it.
fn set_or_remove(headers: &mut HeaderMap, name: HeaderName, value: Option<&str>) {
    match value.and_then(|v| HeaderValue::from_str(v).ok()) {
        Some(v) => {
            headers.insert(name, v);
        }
        None => {
            headers.remove(name);
        }
    }
}

/// The `Upgrade` header of a request (or 101 response) that asks for a protocol switch:
/// `Connection` lists `upgrade` and `Upgrade` is present.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    connection_lists(headers, "upgrade")
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Drops hop-by-hop headers (the fixed list and whatever `Connection` names). With `upgrade`,
/// keeps the protocol switch: `Connection: upgrade` and `Upgrade: <upgrade>`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<&HeaderValue>) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    if let Some(proto) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(ip: &str) -> Forwarded<'static> {
        Forwarded {
            client_ip: ip.parse().expect("ip"),
            host: Some("example.com:8443"),
            proto: "https",
            port: 8443,
        }
    }

    #[test]
    fn sets_all_forwarded_headers() {
        let mut h = HeaderMap::new();
        set_forwarded_headers(&mut h, &fwd("192.0.2.7"));
        assert_eq!(h[&X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(h[&X_REAL_IP], "192.0.2.7");
        assert_eq!(h[&X_FORWARDED_HOST], "example.com:8443");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_PORT], "8443");
    }

    #[test]
    fn appends_to_x_forwarded_for_and_replaces_the_rest() {
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        h.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("10.0.0.2, 10.0.0.3"),
        );
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("gopher"));
        h.insert(&X_REAL_IP, HeaderValue::from_static("6.6.6.6"));
        set_forwarded_headers(&mut h, &fwd("::ffff:192.0.2.7"));
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(
            h[&X_FORWARDED_FOR],
            "10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7"
        );
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_REAL_IP], "192.0.2.7");
    }

    #[test]
    fn ipv6_client_and_missing_host() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_HOST, HeaderValue::from_static("spoofed"));
        let f = Forwarded {
            host: None,
            ..fwd("2001:db8::1")
        };
        set_forwarded_headers(&mut h, &f);
        assert_eq!(h[&X_FORWARDED_FOR], "2001:db8::1");
        assert!(h.get(&X_FORWARDED_HOST).is_none());
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::HOST, HeaderValue::from_static("example.com"));
        remove_hop_by_hop(&mut h, None);
        assert_eq!(h.len(), 1);
        assert_eq!(h[header::HOST], "example.com");
    }

    #[test]
    fn upgrade_is_detected_and_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let up = upgrade_protocol(&h);
        assert_eq!(up.as_ref().map(|v| v.as_bytes()), Some(&b"websocket"[..]));
        remove_hop_by_hop(&mut h, up.as_ref());
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");

        let mut plain = HeaderMap::new();
        plain.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(upgrade_protocol(&plain).is_none());
    }
}
