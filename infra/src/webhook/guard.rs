//! The SSRF guard: a webhook URL may only make the server call public addresses unless an
//! operator allows more.
//!
//! A URL is checked when a task is published (so a bad one is a 4xx at once) and again right
//! before every delivery, against the addresses its host resolves to then; the delivery then
//! connects to exactly those checked addresses, so a DNS answer that changes in between (DNS
//! rebinding) cannot send the request inside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::Url;

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("webhook_url: not a URL: {0}")]
    NotAUrl(String),
    #[error("webhook_url: only http and https URLs are allowed")]
    Scheme,
    #[error("webhook_url: credentials in the URL are not allowed")]
    Credentials,
    #[error("webhook_url: longer than 2048 characters")]
    TooLong,
    #[error(
        "webhook_url: {host} resolves to {ip}, a loopback, private or otherwise internal address"
    )]
    Internal { host: String, ip: IpAddr },
    #[error("webhook_url: {0} does not resolve")]
    Unresolvable(String),
}

/// What an operator allows beyond public addresses.
#[derive(Debug, Clone, Default)]
pub struct WebhookPolicy {
    /// Allow loopback, private, link-local and other internal addresses (tests, trusted
    /// networks).
    pub allow_internal: bool,
}

impl WebhookPolicy {
    /// Checks the form of `raw` (scheme, no credentials, length).
    pub fn parse(&self, raw: &str) -> Result<Url, Refused> {
        if raw.len() > 2048 {
            return Err(Refused::TooLong);
        }
        let url = Url::parse(raw).map_err(|e| Refused::NotAUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Credentials);
        }
        if url.host_str().is_none() {
            return Err(Refused::NotAUrl("no host".into()));
        }
        Ok(url)
    }

    /// Resolves `url`'s host and returns the addresses a delivery may connect to, or why not.
    pub async fn resolve(&self, url: &Url) -> Result<Vec<SocketAddr>, Refused> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let lookup = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((lookup.as_str(), port))
            .await
            .map_err(|_| Refused::Unresolvable(host.clone()))?
            .collect();
        if addrs.is_empty() {
            return Err(Refused::Unresolvable(host));
        }
        if !self.allow_internal
            && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(Refused::Internal { host, ip: bad.ip() });
        }
        Ok(addrs)
    }

    /// [`Self::parse`] then [`Self::resolve`].
    pub async fn check(&self, raw: &str) -> Result<(Url, Vec<SocketAddr>), Refused> {
        let url = self.parse(raw)?;
        let addrs = self.resolve(&url).await?;
        Ok((url, addrs))
    }
}

/// Whether `ip` is a public unicast address a server may call on a user's behalf.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Carrier-grade NAT 100.64.0.0/10, benchmarking 198.18.0.0/15, reserved 240.0.0.0/4,
        // IETF protocol assignments 192.0.0.0/24.
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
        || (a == 192 && b == 0 && ip.octets()[2] == 0))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, documentation 2001:db8::/32,
        // NAT64 64:ff9b::/96 (it reaches IPv4 space, possibly internal).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn loopback_and_private_urls_are_refused_by_default() {
        let policy = WebhookPolicy::default();
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://[::1]/hook",
            "http://10.0.0.7/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://0x7f000001/hook",
        ] {
            assert!(
                matches!(policy.check(url).await, Err(Refused::Internal { .. })),
                "{url}"
            );
        }
        let open = WebhookPolicy {
            allow_internal: true,
        };
        assert!(open.check("http://127.0.0.1:9000/hook").await.is_ok());
    }

    #[test]
    fn only_plain_http_urls_without_credentials() {
        let policy = WebhookPolicy::default();
        assert_eq!(policy.parse("ftp://example.edu/x"), Err(Refused::Scheme));
        assert_eq!(policy.parse("file:///etc/passwd"), Err(Refused::Scheme));
        assert_eq!(
            policy.parse("https://user:pw@example.edu/x"),
            Err(Refused::Credentials)
        );
        assert!(matches!(
            policy.parse("not a url"),
            Err(Refused::NotAUrl(_))
        ));
        assert_eq!(
            policy.parse(&format!("https://example.edu/{}", "x".repeat(2048))),
            Err(Refused::TooLong)
        );
        assert!(policy.parse("https://hooks.example.edu/t?x=1").is_ok());
    }
}
