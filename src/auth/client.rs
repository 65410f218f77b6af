//! The address a request comes from, as the attempt budgets count it.
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::request::Parts;
use http::HeaderName;

/// The client address of a request: with `proxy_header` (a trusted reverse proxy's,
/// such as `X-Forwarded-For`), the last address it lists — the one the proxy itself
/// saw, which the client cannot forge — otherwise the connection's peer. IPv6
/// addresses count per /64, since one host usually holds a whole /64.
pub fn client_address(parts: &Parts, proxy_header: Option<&HeaderName>) -> String {
    let from_proxy = proxy_header.and_then(|name| {
        parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|last| last.trim().parse::<IpAddr>().ok())
    });
    let peer = || {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
    };
    match from_proxy.or_else(peer) {
        Some(ip) => budget_key(ip),
        None => "unknown".to_string(),
    }
}

fn budget_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&'static str, &'static str)], peer: Option<&str>) -> Parts {
        let mut req = http::Request::builder();
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        if let Some(peer) = peer {
            parts
                .extensions
                .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        }
        parts
    }

    #[test]
    fn the_peer_counts_unless_a_trusted_proxy_names_the_client() {
        let xff = HeaderName::from_static("x-forwarded-for");
        let direct = parts(&[("x-forwarded-for", "9.9.9.9")], Some("10.0.0.7:5555"));
        assert_eq!(
            client_address(&direct, None),
            "10.0.0.7",
            "header not trusted"
        );
        let proxied = parts(
            &[("x-forwarded-for", "6.6.6.6, 203.0.113.9")],
            Some("10.0.0.1:5555"),
        );
        assert_eq!(client_address(&proxied, Some(&xff)), "203.0.113.9");
        let v6 = parts(&[], Some("[2001:db8:1:2:3:4:5:6]:443"));
        assert_eq!(client_address(&v6, None), "2001:db8:1:2::/64");
        assert_eq!(client_address(&parts(&[], None), None), "unknown");
    }
}
