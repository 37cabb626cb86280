//! Network classification for SSRF protection: which IP addresses and host names are not
//! public Internet destinations.
//!
//! The rules follow the OWASP Server-Side Request Forgery Prevention Cheat Sheet: parse the
//! destination with a real URL parser (never with string prefixes or regexes), then check the
//! resulting IP address against every non-global range of the IANA special-purpose address
//! registries (RFC 6890 and its updates) and the host name against names that only resolve
//! inside a private network.
//!
//! - [`classify_ip`] says which reserved range an IPv4 or IPv6 address is in, including IPv4
//!   addresses embedded in IPv6 (IPv4-mapped, IPv4-compatible, NAT64, 6to4).
//! - [`is_internal_hostname`] recognises names such as `localhost`, `*.internal` or
//!   `metadata.google.internal`.
//! - [`parse_host`] turns a URL or a bare `host[:port]` into the host the WHATWG URL standard
//!   sees, so `2130706433`, `0x7f.1` and `０Ｘ７ｆ.1` all become `127.0.0.1`.
//! - [`is_private_network`] combines the three; it is the `is_private_network` Rego built-in.
//!
//! Nothing here does I/O: a host name that resolves to a private address is only caught by a
//! DNS-time check such as the one in the HTTP connector.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// How an IPv6 address carries the IPv4 address it was classified by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ipv4Embedding {
    /// IPv4-mapped IPv6 `::ffff:0:0/96` (RFC 4291 §2.5.5.2): the IPv4 address is the last 32 bits.
    Mapped,
    /// Deprecated IPv4-compatible IPv6 `::/96` (RFC 4291 §2.5.5.1): the last 32 bits.
    Compatible,
    /// NAT64 well-known prefix `64:ff9b::/96` (RFC 6052 §2.1): the last 32 bits.
    Nat64,
    /// NAT64 local-use prefix `64:ff9b:1::/48` (RFC 8215), read in the /96 format of RFC 6052
    /// §2.2 (the last 32 bits).
    Nat64LocalUse,
    /// 6to4 `2002::/16` (RFC 3056 §2): the IPv4 address is bits 16..48.
    SixToFour,
}

impl Ipv4Embedding {
    /// The IPv6 prefix of this embedding, e.g. `::ffff:0:0/96`.
    pub fn network(self) -> IpNet {
        IpNet::V6(match self {
            Ipv4Embedding::Mapped => IPV4_MAPPED,
            Ipv4Embedding::Compatible => IPV4_COMPATIBLE,
            Ipv4Embedding::Nat64 => NAT64_WELL_KNOWN,
            Ipv4Embedding::Nat64LocalUse => NAT64_LOCAL_USE,
            Ipv4Embedding::SixToFour => SIX_TO_FOUR,
        })
    }

    /// A short human label, e.g. `"IPv4-mapped IPv6"`.
    pub fn name(self) -> &'static str {
        match self {
            Ipv4Embedding::Mapped => "IPv4-mapped IPv6",
            Ipv4Embedding::Compatible => "deprecated IPv4-compatible IPv6",
            Ipv4Embedding::Nat64 => "NAT64 well-known prefix",
            Ipv4Embedding::Nat64LocalUse => "NAT64 local-use prefix",
            Ipv4Embedding::SixToFour => "6to4",
        }
    }

    /// The standard that defines the embedding, e.g. `"RFC 4291"`.
    pub fn source(self) -> &'static str {
        match self {
            Ipv4Embedding::Mapped | Ipv4Embedding::Compatible => "RFC 4291",
            Ipv4Embedding::Nat64 => "RFC 6052",
            Ipv4Embedding::Nat64LocalUse => "RFC 8215",
            Ipv4Embedding::SixToFour => "RFC 3056",
        }
    }
}

impl fmt::Display for Ipv4Embedding {
    /// Formats as `name (prefix, source)`, e.g. `IPv4-mapped IPv6 (::ffff:0:0/96, RFC 4291)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written out because `Ipv6Addr`'s `Display` prints `::ffff:0:0` as `::ffff:0.0.0.0`.
        let prefix = match self {
            Ipv4Embedding::Mapped => "::ffff:0:0/96",
            Ipv4Embedding::Compatible => "::/96",
            Ipv4Embedding::Nat64 => "64:ff9b::/96",
            Ipv4Embedding::Nat64LocalUse => "64:ff9b:1::/48",
            Ipv4Embedding::SixToFour => "2002::/16",
        };
        write!(f, "{} ({prefix}, {})", self.name(), self.source())
    }
}

/// The reserved (not globally routable) range an address belongs to: the answer of
/// [`classify_ip`].
///
/// `Display` gives a short label for error messages and audit records, e.g.
/// `loopback (127.0.0.0/8, RFC 1122)`, or for an IPv4 address embedded in IPv6
/// `loopback (127.0.0.0/8, RFC 1122) embedded in IPv4-mapped IPv6 (::ffff:0:0/96, RFC 4291)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockedRange {
    /// What the range is for, e.g. `"loopback"` or `"private-use"`.
    pub name: &'static str,
    /// The range itself. For an embedded address this is the IPv4 range of the embedded address.
    pub network: IpNet,
    /// The standard that reserves the range, e.g. `"RFC 1918"`.
    pub source: &'static str,
    /// Set when the address is IPv6 and was classified by the IPv4 address it embeds.
    pub embedded_in: Option<Ipv4Embedding>,
}

impl fmt::Display for BlockedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.network, self.source)?;
        if let Some(embedding) = self.embedded_in {
            write!(f, " embedded in {embedding}")?;
        }
        Ok(())
    }
}

/// One row of the range tables below.
struct Reserved<N> {
    network: N,
    name: &'static str,
    source: &'static str,
}

const fn v4(
    a: u8,
    b: u8,
    c: u8,
    d: u8,
    prefix: u8,
    name: &'static str,
    source: &'static str,
) -> Reserved<Ipv4Net> {
    Reserved {
        network: Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix),
        name,
        source,
    }
}

const fn v6(
    segments: [u16; 8],
    prefix: u8,
    name: &'static str,
    source: &'static str,
) -> Reserved<Ipv6Net> {
    let [a, b, c, d, e, f, g, h] = segments;
    Reserved {
        network: Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix),
        name,
        source,
    }
}

/// IPv4 ranges that are not public Internet destinations, from the IANA IPv4 Special-Purpose
/// Address Registry (RFC 6890 and updates) plus multicast, reserved and one cloud platform
/// address. First match wins, so `255.255.255.255/32` comes before `240.0.0.0/4`.
const IPV4_RESERVED: &[Reserved<Ipv4Net>] = &[
    v4(0, 0, 0, 0, 8, "\"this network\" / unspecified", "RFC 1122"),
    v4(10, 0, 0, 0, 8, "private-use", "RFC 1918"),
    v4(
        100,
        64,
        0,
        0,
        10,
        "shared address space (carrier-grade NAT)",
        "RFC 6598",
    ),
    v4(127, 0, 0, 0, 8, "loopback", "RFC 1122"),
    v4(
        169,
        254,
        0,
        0,
        16,
        "link-local (cloud metadata)",
        "RFC 3927",
    ),
    v4(172, 16, 0, 0, 12, "private-use", "RFC 1918"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments", "RFC 6890"),
    v4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)", "RFC 5737"),
    v4(192, 88, 99, 0, 24, "6to4 relay anycast", "RFC 7526"),
    v4(192, 168, 0, 0, 16, "private-use", "RFC 1918"),
    v4(198, 18, 0, 0, 15, "benchmarking", "RFC 2544"),
    v4(
        198,
        51,
        100,
        0,
        24,
        "documentation (TEST-NET-2)",
        "RFC 5737",
    ),
    v4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)", "RFC 5737"),
    v4(224, 0, 0, 0, 4, "multicast", "RFC 5771"),
    v4(255, 255, 255, 255, 32, "limited broadcast", "RFC 919"),
    v4(240, 0, 0, 0, 4, "reserved for future use", "RFC 1112"),
    // A public address that every Azure VM reaches as its platform endpoint (DHCP, DNS,
    // health probes, the WireServer agent API): an SSRF target like 169.254.169.254.
    v4(
        168,
        63,
        129,
        16,
        32,
        "Azure platform endpoint (WireServer)",
        "Microsoft Azure documentation",
    ),
];

const IPV4_MAPPED: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);
const IPV4_COMPATIBLE: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96);
const NAT64_WELL_KNOWN: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
const NAT64_LOCAL_USE: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48);
const SIX_TO_FOUR: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16);

/// IPv6 ranges that are not public Internet destinations, from the IANA IPv6 Special-Purpose
/// Address Registry (RFC 6890 and updates) and the IPv6 Address Space registry (RFC 4291).
/// Checked after the IPv4-embedding prefixes; first match wins, so the specific ranges come
/// before the "reserved by IETF" blocks that contain them. Together the rows cover everything
/// outside global unicast `2000::/3`.
const IPV6_RESERVED: &[Reserved<Ipv6Net>] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", "RFC 4291"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", "RFC 4291"),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", "RFC 6666"),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation",
        "RFC 3849",
    ),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo", "RFC 4380"),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments",
        "RFC 2928",
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "documentation",
        "RFC 9637",
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "segment routing (SRv6) SIDs",
        "RFC 9602",
    ),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local", "RFC 4193"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local", "RFC 4291"),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "site-local (deprecated)",
        "RFC 3879",
    ),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", "RFC 4291"),
    // Everything else outside global unicast 2000::/3 is unassigned ("reserved by IETF").
    v6([0, 0, 0, 0, 0, 0, 0, 0], 7, "reserved by IETF", "RFC 4291"),
    v6(
        [0x200, 0, 0, 0, 0, 0, 0, 0],
        7,
        "reserved by IETF",
        "RFC 4291",
    ),
    v6(
        [0x400, 0, 0, 0, 0, 0, 0, 0],
        6,
        "reserved by IETF",
        "RFC 4291",
    ),
    v6(
        [0x800, 0, 0, 0, 0, 0, 0, 0],
        5,
        "reserved by IETF",
        "RFC 4291",
    ),
    v6(
        [0x1000, 0, 0, 0, 0, 0, 0, 0],
        4,
        "reserved by IETF",
        "RFC 4291",
    ),
    v6(
        [0x4000, 0, 0, 0, 0, 0, 0, 0],
        2,
        "reserved by IETF",
        "RFC 4291",
    ),
    v6(
        [0x8000, 0, 0, 0, 0, 0, 0, 0],
        1,
        "reserved by IETF",
        "RFC 4291",
    ),
];

/// Says whether `ip` is a public Internet destination and, if not, which reserved range it
/// is in.
///
/// Returns `None` for a globally routable unicast address and `Some(range)` otherwise.
///
/// IPv4 ranges blocked (IANA IPv4 Special-Purpose Address Registry, RFC 6890): `0.0.0.0/8`,
/// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16` (RFC 1918), `100.64.0.0/10` (RFC 6598),
/// `127.0.0.0/8` (RFC 1122), `169.254.0.0/16` (RFC 3927, cloud metadata `169.254.169.254`),
/// `192.0.0.0/24` (RFC 6890, includes `192.0.0.192`), `192.0.2.0/24`, `198.51.100.0/24`,
/// `203.0.113.0/24` (RFC 5737), `192.88.99.0/24` (RFC 7526), `198.18.0.0/15` (RFC 2544),
/// `224.0.0.0/4` (RFC 5771), `240.0.0.0/4` (RFC 1112), `255.255.255.255/32` (RFC 919), and
/// the Azure platform endpoint `168.63.129.16/32`.
///
/// IPv6 ranges blocked: `::/128`, `::1/128`, `fe80::/10` (RFC 4291), `fec0::/10` (RFC 3879),
/// `fc00::/7` (RFC 4193), `ff00::/8` (RFC 4291), `2001:db8::/32` (RFC 3849), `3fff::/20`
/// (RFC 9637), `100::/64` (RFC 6666), `2001::/23` (RFC 2928, includes Teredo `2001::/32`,
/// RFC 4380), `5f00::/16` (RFC 9602), and every other block outside global unicast
/// `2000::/3` (RFC 4291 §2.4).
///
/// IPv6 addresses that embed an IPv4 address are classified by the embedded address
/// (`embedded_in` is then set): IPv4-mapped `::ffff:0:0/96` (RFC 4291), NAT64 `64:ff9b::/96`
/// (RFC 6052) and 6to4 `2002::/16` (RFC 3056) are allowed when the embedded address is
/// public. The deprecated IPv4-compatible `::/96` (RFC 4291 §2.5.5.1, e.g. `::7f00:1`, which
/// is how `[::127.0.0.1]` parses) and the NAT64 local-use prefix `64:ff9b:1::/48`
/// (RFC 8215, not globally reachable) are always blocked.
pub fn classify_ip(ip: IpAddr) -> Option<BlockedRange> {
    match ip {
        IpAddr::V4(ip) => classify_ipv4(ip),
        IpAddr::V6(ip) => classify_ipv6(ip),
    }
}

fn classify_ipv4(ip: Ipv4Addr) -> Option<BlockedRange> {
    IPV4_RESERVED
        .iter()
        .find(|range| range.network.contains(&ip))
        .map(|range| BlockedRange {
            name: range.name,
            network: IpNet::V4(range.network),
            source: range.source,
            embedded_in: None,
        })
}

/// The IPv4 address in bits `offset..offset + 32` of `ip`.
fn ipv4_at(ip: Ipv6Addr, offset: u32) -> Ipv4Addr {
    let bits = u128::from(ip);
    // Truncation to the 32 bits at `offset` is the point of this cast.
    Ipv4Addr::from((bits >> (96 - offset)) as u32)
}

fn classify_embedded(ip: Ipv6Addr, embedding: Ipv4Embedding) -> Option<BlockedRange> {
    let offset = match embedding {
        Ipv4Embedding::SixToFour => 16,
        Ipv4Embedding::Mapped
        | Ipv4Embedding::Compatible
        | Ipv4Embedding::Nat64
        | Ipv4Embedding::Nat64LocalUse => 96,
    };
    classify_ipv4(ipv4_at(ip, offset)).map(|range| BlockedRange {
        embedded_in: Some(embedding),
        ..range
    })
}

fn classify_ipv6(ip: Ipv6Addr) -> Option<BlockedRange> {
    if IPV4_MAPPED.contains(&ip) {
        return classify_embedded(ip, Ipv4Embedding::Mapped);
    }
    if NAT64_WELL_KNOWN.contains(&ip) {
        return classify_embedded(ip, Ipv4Embedding::Nat64);
    }
    if SIX_TO_FOUR.contains(&ip) {
        return classify_embedded(ip, Ipv4Embedding::SixToFour);
    }
    if NAT64_LOCAL_USE.contains(&ip) {
        return classify_embedded(ip, Ipv4Embedding::Nat64LocalUse).or(Some(BlockedRange {
            name: "NAT64 local-use prefix, not globally reachable",
            network: IpNet::V6(NAT64_LOCAL_USE),
            source: "RFC 8215",
            embedded_in: None,
        }));
    }
    // `::` and `::1` are inside `::/96` but are not IPv4-compatible addresses.
    if IPV4_COMPATIBLE.contains(&ip) && u128::from(ip) > 1 {
        return classify_embedded(ip, Ipv4Embedding::Compatible).or(Some(BlockedRange {
            name: "deprecated IPv4-compatible IPv6",
            network: IpNet::V6(IPV4_COMPATIBLE),
            source: "RFC 4291",
            embedded_in: None,
        }));
    }
    IPV6_RESERVED
        .iter()
        .find(|range| range.network.contains(&ip))
        .map(|range| BlockedRange {
            name: range.name,
            network: IpNet::V6(range.network),
            source: range.source,
            embedded_in: None,
        })
}

/// Top-level domains and suffixes that only resolve inside a private network, matched as the
/// whole name or as its last labels (`x.internal` matches `internal`).
///
/// Sources: RFC 6761 (`localhost`, `test`, `invalid`), RFC 6762 (`local`, and Appendix G's
/// list of names used privately: `intranet`, `internal`, `private`, `corp`, `home`, `lan`),
/// RFC 8375 (`home.arpa`), ICANN's 2024 reservation of `internal` for private use, the
/// de-facto `localdomain`, and Kubernetes' `svc` (`*.svc.cluster.local` is covered by `local`).
pub const INTERNAL_SUFFIXES: &[&str] = &[
    "localhost",
    "local",
    "internal",
    "localdomain",
    "home.arpa",
    "lan",
    "intranet",
    "corp",
    "home",
    "private",
    "test",
    "invalid",
    "svc",
];

/// Host names of cloud instance metadata services and other platform endpoints that
/// [`INTERNAL_SUFFIXES`] and the single-label rule do not already cover, or that are listed
/// here so that the reason is written down.
///
/// `metadata.google.internal` (Google Cloud), `metadata.tencentyun.com` (Tencent Cloud; a
/// public name that resolves to a link-local address), `instance-data` and
/// `instance-data.ec2.internal` (AWS EC2), `metadata` (Google Cloud short name),
/// `kubernetes.default` (the Kubernetes API server through the resolver search list).
pub const METADATA_HOSTNAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.tencentyun.com",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata",
    "kubernetes.default",
];

/// Says whether a DNS host name names a host inside a private network, without resolving it.
///
/// `host` is expected in the form the `url` crate produces (lowercase, IDNA-normalised);
/// ASCII case is ignored anyway and trailing dots (`localhost.`) are removed first.
///
/// Returns `true` for:
/// - an empty name and a single-label name (no dot after trimming), e.g. `localhost`,
///   `metadata`, `ip6-localhost`, `instance-data`, because resolvers complete them with the
///   local search domains;
/// - a name equal to, or ending in `.` followed by, one of [`INTERNAL_SUFFIXES`], e.g.
///   `a.localhost`, `printer.local`, `metadata.google.internal`, `router.home.arpa`;
/// - one of [`METADATA_HOSTNAMES`], e.g. `metadata.tencentyun.com`;
/// - an IP address literal (with or without `[]`) for which [`classify_ip`] returns `Some`.
///
/// Any other name is `false`: whether it resolves to a private address is only known after
/// DNS, which this function does not do (OWASP SSRF Prevention Cheat Sheet: re-check every
/// resolved address).
pub fn is_internal_hostname(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return classify_ip(ip).is_some();
    }
    if host.is_empty() || !host.contains('.') {
        return true;
    }
    if METADATA_HOSTNAMES.contains(&host.as_str()) {
        return true;
    }
    INTERNAL_SUFFIXES.iter().any(|suffix| {
        host == *suffix
            || host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.ends_with('.'))
    })
}

/// Schemes for which the WHATWG URL standard parses the host as a "special" host (IPv4
/// numbers in any notation, IDNA), so the host of `Url::parse` can be used as it is.
const SPECIAL_SCHEMES: &[&str] = &["http", "https", "ws", "wss", "ftp", "file"];

/// Extracts the host from a URL or a bare host, normalised as the WHATWG URL standard does.
///
/// `input` is either an absolute URL (`https://user@example.com:8443/x`, `http:127.0.0.1/`)
/// or a bare host with an optional port and path (`example.com`, `example.com:443`,
/// `[::1]:8080`, `2130706433`). A bare host is parsed as `http://<input>/`, so every IPv4
/// notation the standard accepts becomes a [`Host::Ipv4`]: decimal `2130706433`, octal
/// `0177.0.0.1`, hex `0x7f000001`, short forms `127.1` and `0`, full-width digits,
/// percent-encoded hosts. For a URL of a non-special scheme (`gopher://0x7f.1/`), whose host
/// the standard leaves opaque, the host text is parsed again as an `http` host for the same
/// reason.
///
/// Returns `None` when there is no host (`file:///etc/passwd`) or the input is not a valid URL
/// or host (`http://0x100000000/`, `http://a b/`, an empty string). Input that has a scheme
/// (`http:`, or anything with `://`) but fails to parse is never retried as a bare host.
pub fn parse_host(input: &str) -> Option<Host<String>> {
    match Url::parse(input) {
        Ok(url) if SPECIAL_SCHEMES.contains(&url.scheme()) => {
            url.host().map(|host| host.to_owned())
        }
        Ok(url) if input.contains("://") => url.host_str().and_then(parse_bare_host),
        // An invalid URL is not retried as a bare host: `http://a b/` must not become the
        // host `http`.
        Err(_) if input.contains("://") || has_special_scheme(input) => None,
        // `localhost:8080` and `example.com:443` parse as a URL whose scheme is the host
        // name: treat them, and anything else without a scheme, as bare hosts.
        _ => parse_bare_host(input),
    }
}

/// Whether `input` starts with `<special scheme>:`, ignoring ASCII case and leading spaces.
fn has_special_scheme(input: &str) -> bool {
    let input = input.trim_start();
    SPECIAL_SCHEMES.iter().any(|scheme| {
        input
            .get(..scheme.len() + 1)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(&format!("{scheme}:")))
    })
}

fn parse_bare_host(input: &str) -> Option<Host<String>> {
    Url::parse(&format!("http://{input}/"))
        .ok()?
        .host()
        .map(|host| host.to_owned())
}

/// The `is_private_network(url_or_host)` Rego built-in: says whether a URL or bare host names
/// a destination inside a private network, judged from the text alone.
///
/// `url_or_host` is parsed with [`parse_host`]. Returns `true` when the host is an IP address
/// for which [`classify_ip`] returns `Some`, or a name for which [`is_internal_hostname`]
/// returns `true`. It fails closed: input that cannot be parsed as a URL or host, or that has
/// no host (`file:///etc/passwd`), also returns `true`.
///
/// It does no DNS, so `public-name-that-resolves-to.10.0.0.1.example` returns `false`; the HTTP
/// connector checks resolved addresses separately (OWASP SSRF Prevention Cheat Sheet).
pub fn is_private_network(url_or_host: &str) -> bool {
    match parse_host(url_or_host) {
        None => true,
        Some(Host::Ipv4(ip)) => classify_ip(IpAddr::V4(ip)).is_some(),
        Some(Host::Ipv6(ip)) => classify_ip(IpAddr::V6(ip)).is_some(),
        Some(Host::Domain(name)) => is_internal_hostname(&name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// `(address, expected label or None for public)`.
    fn check_classify(cases: &[(&str, Option<&str>)]) {
        for (address, expected) in cases {
            let got = classify_ip(ip(address)).map(|range| range.to_string());
            assert_eq!(got.as_deref(), *expected, "classify_ip({address})");
        }
    }

    #[test]
    fn classifies_ipv4_special_purpose_ranges() {
        check_classify(&[
            ("0.0.0.0", Some("\"this network\" / unspecified (0.0.0.0/8, RFC 1122)")),
            ("0.255.255.255", Some("\"this network\" / unspecified (0.0.0.0/8, RFC 1122)")),
            ("10.0.0.1", Some("private-use (10.0.0.0/8, RFC 1918)")),
            ("10.255.255.255", Some("private-use (10.0.0.0/8, RFC 1918)")),
            ("100.64.0.0", Some("shared address space (carrier-grade NAT) (100.64.0.0/10, RFC 6598)")),
            ("100.100.100.200", Some("shared address space (carrier-grade NAT) (100.64.0.0/10, RFC 6598)")),
            ("100.127.255.255", Some("shared address space (carrier-grade NAT) (100.64.0.0/10, RFC 6598)")),
            ("127.0.0.1", Some("loopback (127.0.0.0/8, RFC 1122)")),
            ("127.127.127.127", Some("loopback (127.0.0.0/8, RFC 1122)")),
            ("169.254.169.254", Some("link-local (cloud metadata) (169.254.0.0/16, RFC 3927)")),
            ("169.254.170.2", Some("link-local (cloud metadata) (169.254.0.0/16, RFC 3927)")),
            ("172.16.0.1", Some("private-use (172.16.0.0/12, RFC 1918)")),
            ("172.31.255.255", Some("private-use (172.16.0.0/12, RFC 1918)")),
            ("192.0.0.192", Some("IETF protocol assignments (192.0.0.0/24, RFC 6890)")),
            ("192.0.2.1", Some("documentation (TEST-NET-1) (192.0.2.0/24, RFC 5737)")),
            ("192.88.99.1", Some("6to4 relay anycast (192.88.99.0/24, RFC 7526)")),
            ("192.168.0.1", Some("private-use (192.168.0.0/16, RFC 1918)")),
            ("198.18.0.1", Some("benchmarking (198.18.0.0/15, RFC 2544)")),
            ("198.19.255.255", Some("benchmarking (198.18.0.0/15, RFC 2544)")),
            ("198.51.100.7", Some("documentation (TEST-NET-2) (198.51.100.0/24, RFC 5737)")),
            ("203.0.113.9", Some("documentation (TEST-NET-3) (203.0.113.0/24, RFC 5737)")),
            ("224.0.0.251", Some("multicast (224.0.0.0/4, RFC 5771)")),
            ("239.255.255.255", Some("multicast (224.0.0.0/4, RFC 5771)")),
            ("240.0.0.1", Some("reserved for future use (240.0.0.0/4, RFC 1112)")),
            ("255.255.255.254", Some("reserved for future use (240.0.0.0/4, RFC 1112)")),
            ("255.255.255.255", Some("limited broadcast (255.255.255.255/32, RFC 919)")),
            ("168.63.129.16", Some("Azure platform endpoint (WireServer) (168.63.129.16/32, Microsoft Azure documentation)")),
            // Public neighbours of the ranges above.
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("9.255.255.255", None),
            ("11.0.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("126.255.255.255", None),
            ("128.0.0.0", None),
            ("169.253.255.255", None),
            ("169.255.0.0", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.0.1.0", None),
            ("192.0.3.0", None),
            ("192.167.255.255", None),
            ("192.169.0.0", None),
            ("198.17.255.255", None),
            ("198.20.0.0", None),
            ("223.255.255.255", None),
            ("168.63.129.15", None),
            ("93.184.216.34", None),
        ]);
    }

    #[test]
    fn classifies_ipv6_special_purpose_ranges() {
        check_classify(&[
            ("::", Some("unspecified (::/128, RFC 4291)")),
            ("::1", Some("loopback (::1/128, RFC 4291)")),
            ("0000::1", Some("loopback (::1/128, RFC 4291)")),
            ("fe80::1", Some("link-local (fe80::/10, RFC 4291)")),
            ("febf:ffff::1", Some("link-local (fe80::/10, RFC 4291)")),
            (
                "fec0::1",
                Some("site-local (deprecated) (fec0::/10, RFC 3879)"),
            ),
            ("fc00::1", Some("unique local (fc00::/7, RFC 4193)")),
            ("fd00:ec2::254", Some("unique local (fc00::/7, RFC 4193)")),
            ("ff02::1", Some("multicast (ff00::/8, RFC 4291)")),
            (
                "2001:db8::1",
                Some("documentation (2001:db8::/32, RFC 3849)"),
            ),
            ("3fff::1", Some("documentation (3fff::/20, RFC 9637)")),
            ("100::1", Some("discard-only (100::/64, RFC 6666)")),
            ("2001::1", Some("Teredo (2001::/32, RFC 4380)")),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                Some("Teredo (2001::/32, RFC 4380)"),
            ),
            (
                "2001:1::1",
                Some("IETF protocol assignments (2001::/23, RFC 2928)"),
            ),
            (
                "2001:1ff::1",
                Some("IETF protocol assignments (2001::/23, RFC 2928)"),
            ),
            (
                "5f00::1",
                Some("segment routing (SRv6) SIDs (5f00::/16, RFC 9602)"),
            ),
            (
                "::ffff:0:1.2.3.4",
                Some("reserved by IETF (::/7, RFC 4291)"),
            ),
            ("1::1", Some("reserved by IETF (::/7, RFC 4291)")),
            ("100:0:0:1::1", Some("reserved by IETF (::/7, RFC 4291)")),
            ("4000::1", Some("reserved by IETF (4000::/2, RFC 4291)")),
            ("8000::1", Some("reserved by IETF (8000::/1, RFC 4291)")),
            ("fe00::1", Some("reserved by IETF (8000::/1, RFC 4291)")),
            // Global unicast.
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:80b::200e", None),
            ("2001:200::1", None),
            ("3ffe::1", None),
        ]);
    }

    #[test]
    fn classifies_ipv6_by_the_embedded_ipv4_address() {
        check_classify(&[
            // IPv4-mapped (RFC 4291 §2.5.5.2).
            ("::ffff:127.0.0.1", Some("loopback (127.0.0.0/8, RFC 1122) embedded in IPv4-mapped IPv6 (::ffff:0:0/96, RFC 4291)")),
            ("::ffff:7f00:1", Some("loopback (127.0.0.0/8, RFC 1122) embedded in IPv4-mapped IPv6 (::ffff:0:0/96, RFC 4291)")),
            ("0:0:0:0:0:ffff:a9fe:a9fe", Some("link-local (cloud metadata) (169.254.0.0/16, RFC 3927) embedded in IPv4-mapped IPv6 (::ffff:0:0/96, RFC 4291)")),
            ("::ffff:0.0.0.0", Some("\"this network\" / unspecified (0.0.0.0/8, RFC 1122) embedded in IPv4-mapped IPv6 (::ffff:0:0/96, RFC 4291)")),
            ("::ffff:8.8.8.8", None),
            // IPv4-compatible (RFC 4291 §2.5.5.1): always blocked.
            ("::127.0.0.1", Some("loopback (127.0.0.0/8, RFC 1122) embedded in deprecated IPv4-compatible IPv6 (::/96, RFC 4291)")),
            ("::7f00:1", Some("loopback (127.0.0.0/8, RFC 1122) embedded in deprecated IPv4-compatible IPv6 (::/96, RFC 4291)")),
            ("::a9fe:a9fe", Some("link-local (cloud metadata) (169.254.0.0/16, RFC 3927) embedded in deprecated IPv4-compatible IPv6 (::/96, RFC 4291)")),
            ("::8.8.8.8", Some("deprecated IPv4-compatible IPv6 (::/96, RFC 4291)")),
            ("::2", Some("\"this network\" / unspecified (0.0.0.0/8, RFC 1122) embedded in deprecated IPv4-compatible IPv6 (::/96, RFC 4291)")),
            // NAT64 (RFC 6052, RFC 8215).
            ("64:ff9b::7f00:1", Some("loopback (127.0.0.0/8, RFC 1122) embedded in NAT64 well-known prefix (64:ff9b::/96, RFC 6052)")),
            ("64:ff9b::10.0.0.1", Some("private-use (10.0.0.0/8, RFC 1918) embedded in NAT64 well-known prefix (64:ff9b::/96, RFC 6052)")),
            ("64:ff9b::169.254.169.254", Some("link-local (cloud metadata) (169.254.0.0/16, RFC 3927) embedded in NAT64 well-known prefix (64:ff9b::/96, RFC 6052)")),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b:1::a9fe:a9fe", Some("link-local (cloud metadata) (169.254.0.0/16, RFC 3927) embedded in NAT64 local-use prefix (64:ff9b:1::/48, RFC 8215)")),
            ("64:ff9b:1::8.8.8.8", Some("NAT64 local-use prefix, not globally reachable (64:ff9b:1::/48, RFC 8215)")),
            ("64:ff9b:0:1::1", Some("reserved by IETF (::/7, RFC 4291)")),
            // 6to4 (RFC 3056): bits 16..48.
            ("2002:7f00:1::", Some("loopback (127.0.0.0/8, RFC 1122) embedded in 6to4 (2002::/16, RFC 3056)")),
            ("2002:a9fe:a9fe::1", Some("link-local (cloud metadata) (169.254.0.0/16, RFC 3927) embedded in 6to4 (2002::/16, RFC 3056)")),
            ("2002:c0a8:1:1::1", Some("private-use (192.168.0.0/16, RFC 1918) embedded in 6to4 (2002::/16, RFC 3056)")),
            ("2002:808:808::1", None),
        ]);
    }

    #[test]
    fn blocked_range_fields_name_the_range_and_the_embedding() {
        let range = classify_ip(ip("::ffff:10.1.2.3")).unwrap();
        assert_eq!(range.name, "private-use");
        assert_eq!(range.network, "10.0.0.0/8".parse::<IpNet>().unwrap());
        assert_eq!(range.source, "RFC 1918");
        assert_eq!(range.embedded_in, Some(Ipv4Embedding::Mapped));
        for embedding in [
            Ipv4Embedding::Mapped,
            Ipv4Embedding::Compatible,
            Ipv4Embedding::Nat64,
            Ipv4Embedding::Nat64LocalUse,
            Ipv4Embedding::SixToFour,
        ] {
            // The written-out prefix in `Display` is the network.
            let text = embedding.to_string();
            let prefix = text.split(['(', ',']).nth(1).unwrap();
            assert_eq!(
                prefix.parse::<IpNet>().unwrap(),
                embedding.network(),
                "{text}"
            );
        }
    }

    #[test]
    fn internal_hostnames() {
        let internal = [
            "localhost",
            "localhost.",
            "LOCALHOST",
            "ip6-localhost",
            "ip6-loopback",
            "metadata",
            "instance-data",
            "intranet",
            "",
            ".",
            "com",
            "a.localhost",
            "foo.bar.localhost.",
            "printer.local",
            "metadata.google.internal",
            "metadata.google.internal.",
            "instance-data.ec2.internal",
            "metadata.tencentyun.com",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "host.localdomain",
            "localhost.localdomain",
            "router.home.arpa",
            "nas.lan",
            "wiki.intranet",
            "dc1.corp",
            "box.home",
            "db.private",
            "x.test",
            "x.invalid",
            "127.0.0.1",
            "[::1]",
            "::ffff:169.254.169.254",
        ];
        for host in internal {
            assert!(is_internal_hostname(host), "{host:?} must be internal");
        }
        let public = [
            "example.com",
            "example.com.",
            "api.openai.com",
            "localhost.example.com",
            "notlocalhost.com",
            "mylocal.com",
            "internal.example.com",
            "metadata.google.com",
            "home.example",
            "arpa.net",
            "xn--bcher-kva.example",
            "8.8.8.8",
            "[2606:4700:4700::1111]",
        ];
        for host in public {
            assert!(!is_internal_hostname(host), "{host:?} must not be internal");
        }
    }

    /// `(input, expected host as the url crate prints it)`.
    fn check_parse_host(cases: &[(&str, Option<&str>)]) {
        for (input, expected) in cases {
            let got = parse_host(input).map(|host| host.to_string());
            assert_eq!(got.as_deref(), *expected, "parse_host({input:?})");
        }
    }

    #[test]
    fn parse_host_normalises_every_whatwg_ipv4_notation() {
        check_parse_host(&[
            ("127.0.0.1", Some("127.0.0.1")),
            ("2130706433", Some("127.0.0.1")),
            ("0177.0.0.1", Some("127.0.0.1")),
            ("0x7f000001", Some("127.0.0.1")),
            ("0x7f.1", Some("127.0.0.1")),
            ("127.1", Some("127.0.0.1")),
            ("0", Some("0.0.0.0")),
            ("0x.0x.0", Some("0.0.0.0")),
            ("017700000001", Some("127.0.0.1")),
            ("0xa9fea9fe", Some("169.254.169.254")),
            ("0xA9.0xFE.0xA9.0xFE", Some("169.254.169.254")),
            ("0251.0376.0251.0376", Some("169.254.169.254")),
            ("0251.254.169.254", Some("169.254.169.254")),
            ("2852039166", Some("169.254.169.254")),
            ("3232235521", Some("192.168.0.1")),
            ("192.0x00A80001", Some("192.168.0.1")),
            ("%30%78%63%30%2e%30%32%35%30.01", Some("192.168.0.1")),
            ("０Ｘｃ０．０２５０．０１", Some("192.168.0.1")),
            ("①②⑦.⓪.⓪.①", Some("127.0.0.1")),
            ("127.0.0.1.", Some("127.0.0.1")),
            ("ⓔⓧⓐⓜⓟⓛⓔ.ⓒⓞⓜ", Some("example.com")),
            ("EXAMPLE.com", Some("example.com")),
            ("bücher.example", Some("xn--bcher-kva.example")),
            ("example.com:443", Some("example.com")),
            ("localhost:8080", Some("localhost")),
            ("127.0.0.1:22", Some("127.0.0.1")),
            ("[::1]", Some("[::1]")),
            ("[::1]:8080", Some("[::1]")),
            ("[0:0:0:0:0:ffff:127.0.0.1]", Some("[::ffff:7f00:1]")),
            ("[::127.0.0.1]", Some("[::7f00:1]")),
            ("user:pass@10.0.0.1:80", Some("10.0.0.1")),
            ("example.com/path?q=1", Some("example.com")),
            // Full URLs.
            ("http://127.1/", Some("127.0.0.1")),
            ("https://0x.0x.0", Some("0.0.0.0")),
            ("http:127.0.0.1/", Some("127.0.0.1")),
            ("HTTP://EXAMPLE.COM/a", Some("example.com")),
            ("http://example.com@127.0.0.1", Some("127.0.0.1")),
            ("http://127.0.0.1#example.com", Some("127.0.0.1")),
            (
                "http://127.88.23.245:22/?@google.com:80/",
                Some("127.88.23.245"),
            ),
            (
                "http://google.com:80+&@127.88.23.245:22/#+@google.com:80/",
                Some("127.88.23.245"),
            ),
            ("http://[::ffff:a9fe:a9fe]", Some("[::ffff:a9fe:a9fe]")),
            ("ws://0x7f.1/socket", Some("127.0.0.1")),
            ("gopher://localhost:25/_MAIL", Some("localhost")),
            ("gopher://0x7f.1:6379/_INFO", Some("127.0.0.1")),
            ("ldap://2130706433/", Some("127.0.0.1")),
            // No host or not a host.
            ("file:///etc/passwd", None),
            ("mailto:a@example.com", Some("example.com")),
            ("http://0x100000000/", None),
            ("http://425.510.425.510", None),
            ("http://7147006462", None),
            ("http://0x41414141A9FEA9FE", None),
            ("http://o177.0.0.1/", None),
            ("http://example.com.127.0.0.1", None),
            ("http://a b/", None),
            ("HTTP://a b/", None),
            ("http:", None),
            ("gopher://a b/", None),
            ("", None),
            ("http://", None),
        ]);
    }

    #[test]
    fn is_private_network_over_urls_and_hosts() {
        let private = [
            "http://localhost:80",
            "http://127.0.0.1:22",
            "http://0.0.0.0:80",
            "http://0/",
            "http://127.1",
            "http://[::]:80/",
            "http://[0000::1]:80/",
            "http://[::ffff:127.0.0.1]",
            "http://ip6-localhost",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f000001",
            "http://017700000001",
            "http://0xa9fea9fe",
            "http://[::ffff:a9fe:a9fe]",
            "http://[fd00:ec2::254]",
            "http://192.0x00A80001",
            "http://０Ｘｃ０．０２５０．０１",
            "https://0x.0x.0",
            "http://[::127.0.0.1]",
            "http://①②⑦.⓪.⓪.⓪",
            "http:127.0.0.1/",
            "http://example.com@127.0.0.1",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://metadata/computeMetadata/v1/",
            "http://instance-data",
            "http://192.0.0.192/latest/meta-data/",
            "http://100.100.100.200/latest/meta-data/",
            "http://metadata.tencentyun.com/latest/meta-data/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "localhost",
            "10.1.2.3",
            "10.1.2.3:8080",
            "[fe80::1]",
            "gopher://127.0.0.1:6379/_INFO",
            // Unparseable or hostless input fails closed.
            "",
            "http://",
            "file:///etc/passwd",
            "http://425.510.425.510",
            "http://example.com.127.0.0.1",
        ];
        for input in private {
            assert!(is_private_network(input), "{input:?} must be private");
        }
        let public = [
            "https://example.com/",
            "example.com",
            "api.github.com:443",
            "http://8.8.8.8/",
            "http://[2606:4700:4700::1111]/",
            "http://[::ffff:8.8.8.8]/",
            "http://[64:ff9b::808:808]/",
            "ⓔⓧⓐⓜⓟⓛⓔ.ⓒⓞⓜ",
            // No DNS: these are only caught when the connector resolves them.
            "localtest.me",
            "company.127.0.0.1.nip.io",
        ];
        for input in public {
            assert!(!is_private_network(input), "{input:?} must be public");
        }
    }
}
