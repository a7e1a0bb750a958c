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

/// Whether `ip` is a public unicast address a server may call on a user's behalf: outside
/// every block of the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890) that
/// the registry does not mark globally reachable, and outside multicast.
///
/// IPv6 is judged by an allow-list: only global unicast space (`2000::/3`) can be public, so
/// every form that embeds an IPv4 address outside it (IPv4-compatible `::a.b.c.d`, IPv4-mapped
/// `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`), discard `100::/64`, site-local
/// `fec0::/10`, unique local and link-local space are refused without a list of their own.
/// Inside `2000::/3`, Teredo `2001::/32` and 6to4 `2002::/16` are refused whole: both tunnel
/// to IPv4 addresses that may be internal. NAT64 `64:ff9b::/96` is the one form judged by the
/// IPv4 address it embeds, so DNS64 networks still reach public IPv4 hosts.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// An address block: the first address and the prefix length.
type Block<A> = (A, u8);

/// IPv4 special-purpose blocks not globally reachable (IANA registry, checked 2026), and
/// multicast `224.0.0.0/4` (not unicast at all).
const V4_NOT_GLOBAL: &[Block<Ipv4Addr>] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network" (RFC 791)
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private (RFC 1918)
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // shared address space, carrier-grade NAT (RFC 6598)
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback (RFC 1122)
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link local, cloud metadata (RFC 3927)
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private (RFC 1918)
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments (RFC 6890)
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation TEST-NET-1 (RFC 5737)
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // deprecated 6to4 relay anycast (RFC 7526)
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private (RFC 1918)
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking (RFC 2544)
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation TEST-NET-2 (RFC 5737)
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation TEST-NET-3 (RFC 5737)
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast (RFC 5771)
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, and limited broadcast 255.255.255.255
];

/// Blocks inside [`V4_NOT_GLOBAL`] that the registry marks globally reachable.
const V4_GLOBAL: &[Block<Ipv4Addr>] = &[
    (Ipv4Addr::new(192, 0, 0, 9), 32), // Port Control Protocol anycast (RFC 7723)
    (Ipv4Addr::new(192, 0, 0, 10), 32), // TURN anycast (RFC 8155)
];

/// The IPv6 blocks inside global unicast `2000::/3` that are not globally reachable.
const V6_NOT_GLOBAL: &[Block<Ipv6Addr>] = &[
    // IETF protocol assignments (RFC 2928); holds Teredo 2001::/32 (RFC 4380), benchmarking
    // 2001:2::/48 (RFC 5180) and deprecated ORCHID 2001:10::/28 (RFC 4843).
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation (RFC 3849)
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),     // 6to4 (RFC 3056)
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),     // documentation (RFC 9637)
];

/// Blocks inside [`V6_NOT_GLOBAL`] that the registry marks globally reachable.
const V6_GLOBAL: &[Block<Ipv6Addr>] = &[
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 1), 128), // Port Control Protocol anycast (RFC 7723)
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 2), 128), // TURN anycast (RFC 8155)
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 3), 128), // DNS-SD service registration (RFC 9665)
    (Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 0), 32),  // AMT (RFC 7450)
    (Ipv6Addr::new(0x2001, 4, 0x112, 0, 0, 0, 0, 0), 48), // AS112-v6 (RFC 7535)
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28), // ORCHIDv2 (RFC 7343)
    (Ipv6Addr::new(0x2001, 0x30, 0, 0, 0, 0, 0, 0), 28), // drone remote ID tags (RFC 9374)
];

/// NAT64's well-known prefix `64:ff9b::/96` (RFC 6052): the last 32 bits are an IPv4 address.
const NAT64: Block<Ipv6Addr> = (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// Global unicast space `2000::/3`: every other IPv6 address is special or unallocated.
const GLOBAL_UNICAST: Block<Ipv6Addr> = (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

fn in_v4(ip: Ipv4Addr, blocks: &[Block<Ipv4Addr>]) -> bool {
    let ip = u32::from(ip);
    blocks.iter().any(|&(net, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        ip & mask == u32::from(net) & mask
    })
}

fn in_v6(ip: Ipv6Addr, blocks: &[Block<Ipv6Addr>]) -> bool {
    let ip = u128::from(ip);
    blocks.iter().any(|&(net, len)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        ip & mask == u128::from(net) & mask
    })
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !in_v4(ip, V4_NOT_GLOBAL) || in_v4(ip, V4_GLOBAL)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if in_v6(ip, &[NAT64]) {
        let [.., a, b, c, d] = ip.octets();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    in_v6(ip, &[GLOBAL_UNICAST]) && (!in_v6(ip, V6_NOT_GLOBAL) || in_v6(ip, V6_GLOBAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn assert_refused(addresses: &[&str]) {
        for a in addresses {
            assert!(!is_public(a.parse().unwrap()), "{a} must be refused");
        }
    }

    #[track_caller]
    fn assert_public(addresses: &[&str]) {
        for a in addresses {
            assert!(is_public(a.parse().unwrap()), "{a} must be allowed");
        }
    }

    /// Every block of the IANA IPv4 special-purpose registry: its edges inside, its
    /// neighbours outside (where they are public), and the globally reachable exceptions.
    #[test]
    fn ipv4_special_purpose_blocks_are_refused_and_their_neighbours_allowed() {
        let blocks: &[(&[&str], &[&str])] = &[
            (&["0.0.0.0", "0.255.255.255"], &["1.0.0.0"]),
            (
                &["10.0.0.0", "10.255.255.255"],
                &["9.255.255.255", "11.0.0.0"],
            ),
            (
                &["100.64.0.0", "100.127.255.255"],
                &["100.63.255.255", "100.128.0.0"],
            ),
            (
                &["127.0.0.1", "127.255.255.255"],
                &["126.255.255.255", "128.0.0.0"],
            ),
            (
                &["169.254.0.0", "169.254.169.254"],
                &["169.253.255.255", "169.255.0.0"],
            ),
            (
                &["172.16.0.0", "172.31.255.255"],
                &["172.15.255.255", "172.32.0.0"],
            ),
            (
                &["192.0.0.0", "192.0.0.8", "192.0.0.170", "192.0.0.255"],
                &["191.255.255.255", "192.0.1.0", "192.0.0.9", "192.0.0.10"],
            ),
            (&["192.0.2.0", "192.0.2.255"], &["192.0.3.0"]),
            (
                &["192.88.99.0", "192.88.99.2"],
                &["192.88.98.255", "192.88.100.0"],
            ),
            (
                &["192.168.0.0", "192.168.255.255"],
                &["192.167.255.255", "192.169.0.0"],
            ),
            (
                &["198.18.0.0", "198.19.255.255"],
                &["198.17.255.255", "198.20.0.0"],
            ),
            (
                &["198.51.100.0", "198.51.100.255"],
                &["198.51.99.255", "198.51.101.0"],
            ),
            (
                &["203.0.113.0", "203.0.113.255"],
                &["203.0.112.255", "203.0.114.0"],
            ),
            (&["224.0.0.1", "239.255.255.255"], &["223.255.255.255"]),
            (&["240.0.0.0", "255.255.255.254", "255.255.255.255"], &[]),
            // Globally reachable in the registry: AS112, AMT, AS112 direct delegation.
            (&[], &["192.31.196.1", "192.52.193.1", "192.175.48.1"]),
        ];
        for (inside, outside) in blocks {
            assert_refused(inside);
            assert_public(outside);
        }
        assert_public(&["8.8.8.8", "1.1.1.1"]);
    }

    /// IPv6 forms that embed an IPv4 address, the special blocks outside global unicast, and
    /// every block of the IANA IPv6 special-purpose registry inside it.
    #[test]
    fn ipv6_special_purpose_blocks_and_embedded_ipv4_are_refused() {
        let blocks: &[(&[&str], &[&str])] = &[
            (&["::", "::1"], &[]),
            // IPv4-compatible (deprecated), even of a public address.
            (&["::127.0.0.1", "::a9fe:a9fe", "::8.8.8.8"], &[]),
            // IPv4-mapped and IPv4-translated.
            (
                &["::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:8.8.8.8"],
                &[],
            ),
            (&["::ffff:0:7f00:1", "::ffff:0:808:808"], &[]),
            // NAT64: judged by the IPv4 address inside; its local-use block is refused.
            (
                &[
                    "64:ff9b::7f00:1",
                    "64:ff9b::a00:1",
                    "64:ff9b::a9fe:a9fe",
                    "64:ff9b:1::1",
                ],
                &["64:ff9b::808:808"],
            ),
            // Discard-only and dummy prefixes.
            (&["100::1", "100::ffff:ffff:ffff:ffff", "100:0:0:1::1"], &[]),
            // IETF protocol assignments 2001::/23 with Teredo, benchmarking and ORCHID.
            (
                &[
                    "2001::1",
                    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                    "2001:1::4",
                    "2001:2::1",
                    "2001:10::1",
                    "2001:1ff:ffff:ffff::1",
                ],
                &["2001:200::1", "2000:ffff:ffff::1"],
            ),
            // ... and its globally reachable exceptions.
            (
                &[],
                &[
                    "2001:1::1",
                    "2001:1::2",
                    "2001:1::3",
                    "2001:3::1",
                    "2001:4:112::1",
                    "2001:20::1",
                    "2001:2f:ffff::1",
                    "2001:30::1",
                ],
            ),
            (
                &["2001:db8::1", "2001:db8:ffff::1"],
                &["2001:db7:ffff::1", "2001:db9::1"],
            ),
            // 6to4, which tunnels to any IPv4 address, internal ones included.
            (
                &[
                    "2002::1",
                    "2002:7f00:1::",
                    "2002:a9fe:a9fe::",
                    "2002:c0a8:101::1",
                    "2002:808:808::1",
                ],
                &["2001:ffff::1", "2003::1"],
            ),
            (
                &["3fff::1", "3fff:fff:ffff::1"],
                &["3ffe:ffff::1", "3fff:1000::1"],
            ),
            // Outside global unicast: unique local, link-local, site-local, multicast,
            // SRv6 SIDs and unallocated space.
            (
                &[
                    "fc00::1", "fdff::1", "fe80::1", "febf::1", "fec0::1", "feff::1",
                ],
                &[],
            ),
            (
                &["ff02::1", "ff0e::1", "5f00::1", "4000::1", "1fff:ffff::1"],
                &[],
            ),
            // AS112 direct delegation is globally reachable.
            (&[], &["2620:4f:8000::1"]),
        ];
        for (inside, outside) in blocks {
            assert_refused(inside);
            assert_public(outside);
        }
        assert_public(&["2606:4700:4700::1111", "2a00:1450:4001::1"]);
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
            "http://[::127.0.0.1]/hook",
            "http://[::a9fe:a9fe]/hook",
            "http://[::ffff:0:7f00:1]/hook",
            "http://[2002:7f00:1::]/hook",
            "http://[2002:a9fe:a9fe::]/hook",
            "http://[2002:c0a8:101::1]/hook",
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",
            "http://[fec0::1]/hook",
            "http://[100::1]/hook",
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
