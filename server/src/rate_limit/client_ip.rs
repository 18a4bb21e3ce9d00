//! The client address a limit is keyed on. Headers are trusted only as far as the configured
//! number of proxies: with `trusted_proxy_hops = 0` the TCP peer is the client.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// With N trusted hops, the client is the Nth `X-Forwarded-For` entry from the right (each
/// trusted proxy appended the address it saw).
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted_proxy_hops: u32) -> IpAddr {
    if trusted_proxy_hops == 0 {
        return peer.ip();
    }
    let entries: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let hops = trusted_proxy_hops as usize;
    if entries.len() >= hops {
        entries[entries.len() - hops]
    } else {
        entries.first().copied().unwrap_or(peer.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_only_with_trusted_hops() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "1.1.1.1, 2.2.2.2, 3.3.3.3".parse().unwrap(),
        );
        h.insert("x-real-ip", "9.9.9.9".parse().unwrap());
        assert_eq!(client_ip(peer, &h, 0), peer.ip());
        assert_eq!(client_ip(peer, &h, 1), "3.3.3.3".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(peer, &h, 2), "2.2.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(peer, &HeaderMap::new(), 1), peer.ip());
    }
}
