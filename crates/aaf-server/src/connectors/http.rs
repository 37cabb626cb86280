//! The HTTP connector: the `http_proxy` tool (alias `http`), which sends an agent's HTTP(S)
//! request once the decision path allowed it, with SSRF protection that no configuration can
//! switch off.
//!
//! The protection follows the OWASP Server-Side Request Forgery Prevention Cheat Sheet:
//!
//! 1. The URL is parsed once with the `url` crate (the WHATWG URL standard, as browsers do), so
//!    `http://2130706433/`, `http://0x7f.1/` and `http://[::ffff:127.0.0.1]/` are seen as the
//!    loopback addresses they are.
//! 2. Only `http` and `https`; no userinfo (`user:pass@`); a host is required.
//! 3. An IP literal host is refused when [`aaf_core::net::classify_ip`] puts it in a reserved
//!    range (RFC 1918, 6598, 1122, 3927, 4193, 4291, ...), unless it is inside
//!    `connectors.http.allow_private_cidrs`.
//! 4. A host name is refused when [`aaf_core::net::is_internal_hostname`] says it is internal
//!    (`localhost`, `*.internal`, `metadata.google.internal`, single labels, ...).
//! 5. When `connectors.http.allowed_domains` is not empty, any other host is refused.
//! 6. DNS is resolved once, by a resolver installed in the HTTP client: every resolved address
//!    is checked like an IP literal, one blocked address fails the whole lookup, and the
//!    connection goes to the checked addresses, so a DNS rebinding between check and connect is
//!    impossible. Proxies from the environment are ignored, since a proxy would resolve the
//!    name itself.
//! 7. Redirects are not followed by the client: this connector follows at most
//!    `connectors.http.max_redirects` of them itself and runs steps 2 to 6 again for every
//!    `Location`.
//!
//! Request headers that describe the connection (RFC 9110 §7.6.1 hop-by-hop headers, `Host`,
//! `Content-Length`) or carry ambient credentials (`Cookie`) are not forwarded; response
//! `Set-Cookie` headers are not returned. TLS is rustls with certificate verification always
//! on and TLS 1.2 as the minimum.

use std::collections::{BTreeMap, HashSet};
use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aaf_core::action::AllowedAction;
use aaf_core::net::{classify_ip, is_internal_hostname, BlockedRange};
use bytes::Bytes;
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::{Host, Url};

/// The tool name agents use for this connector.
pub const TOOL_NAME: &str = "http_proxy";

/// A second accepted tool name for this connector.
pub const TOOL_ALIAS: &str = "http";

/// The methods [`HttpConnector::execute`] accepts, exactly as written (upper case).
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Request headers an agent may not set; they are dropped silently.
///
/// The hop-by-hop headers of RFC 9110 §7.6.1 (`Connection`, `Keep-Alive`, `Proxy-Connection`,
/// `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) and `Proxy-Authenticate` /
/// `Proxy-Authorization`, which describe the agent's connection and not the upstream one;
/// `Host` and `Content-Length`, which the client derives from the URL and the body (a forged
/// `Host` is a classic virtual-host SSRF); and `Cookie`, an ambient credential. Headers named
/// in the agent's `Connection` header are dropped too.
pub const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "cookie",
    "content-length",
];

/// Response headers that are not returned to the agent: cookies are ambient credentials of
/// the firewall's client, not data for the agent.
pub const DROPPED_RESPONSE_HEADERS: &[&str] = &["set-cookie", "set-cookie2"];

/// Request headers describing a request body (Fetch standard, "request-body-header name"),
/// removed when a redirect turns the request into a `GET` without a body.
const REQUEST_BODY_HEADERS: &[&str] = &[
    "content-encoding",
    "content-language",
    "content-location",
    "content-type",
];

/// The `connectors.http` configuration section.
///
/// Unknown keys are an error; missing keys take the defaults of [`Default`]. Whatever it says,
/// the SSRF rules of this module apply: only `allow_private_cidrs` exempts addresses from the
/// reserved-range block, and no setting disables certificate verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConnectorConfig {
    /// Hosts requests may go to: an exact host name or IP address (`api.example.com`,
    /// `203.0.114.7`, `[2001:4860::1]`), or `*.example.com` for every subdomain of
    /// `example.com` but not `example.com` itself. Names are compared after IDNA
    /// normalisation, ignoring case and a trailing dot. Empty (the default): any public host.
    pub allowed_domains: Vec<String>,
    /// Networks exempt from the reserved-range block, e.g. `10.20.0.0/16` for an internal API
    /// or `127.0.0.1/32` for a local upstream in tests. Empty by default. Host names that are
    /// internal by name (`localhost`, `*.internal`, ...) stay blocked.
    pub allow_private_cidrs: Vec<IpNet>,
    /// A PEM file of extra CA certificates trusted in addition to the bundled Mozilla roots
    /// (webpki-roots). Unreadable or certificate-less files make [`HttpConnector::new`] fail.
    pub ca_file: Option<PathBuf>,
    /// Time allowed to establish a TCP (and TLS) connection, in milliseconds. Default 5000.
    pub connect_timeout_ms: u64,
    /// Total time for a request, redirects and reading the body included, in milliseconds.
    /// Default 30000. A request's `timeout_ms` parameter may lower it, never raise it.
    pub timeout_ms: u64,
    /// Largest response body returned, in bytes. Default 1 MiB (1048576). Longer bodies are cut
    /// at this size and the outcome says `truncated: true`.
    pub max_response_bytes: usize,
    /// Redirects followed per request. Default 5. One more is an error.
    pub max_redirects: u8,
    /// Static host entries, like `/etc/hosts`: a name (lowercase, no trailing dot) to the
    /// addresses it resolves to, consulted before DNS. The addresses are checked like any DNS
    /// answer, so an entry cannot open a way to a blocked range. Empty by default.
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
    /// Whether names not in `hosts` are resolved with the operating system's resolver.
    /// Default true. False: only `hosts` entries resolve (an air-gapped or pinned deployment;
    /// also how the tests avoid DNS traffic).
    pub system_dns: bool,
    /// Credentials AAF adds to agents' requests, per destination (docs/credentials.md): the
    /// operator, not the agent, holds them. Empty by default.
    pub credentials: Vec<CredentialRule>,
    /// The configuration section named in refusal messages (`connectors.http`, or
    /// `webhooks` for webhook targets). Not a configuration key.
    #[serde(skip, default = "default_section")]
    pub section: String,
}

/// One entry of `connectors.http.credentials`: headers AAF adds to agents' requests to a
/// destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRule {
    /// The destination: an exact host name or IP address, or `*.example.com` for every
    /// subdomain (as in `allowed_domains`).
    pub host: String,
    /// Header name to value; values refer to secrets as `${secret:name}`
    /// (`Authorization = "Bearer ${secret:stripe}"`).
    pub headers: BTreeMap<String, String>,
    /// The organisations (ids) whose agents' requests get them. Empty (the default): every
    /// organisation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orgs: Vec<String>,
}

/// Headers a credential rule may not set: they describe the connection or the body, which
/// the client derives (RFC 9110 section 7.6.1).
const NOT_CREDENTIAL_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A checked credential rule.
#[derive(Debug)]
struct Credential {
    host: AllowedHost,
    headers: Vec<(HeaderName, String)>,
    orgs: Vec<String>,
}

impl Credential {
    fn parse(index: usize, rule: &CredentialRule) -> Result<Credential, String> {
        let field = format!("connectors.http.credentials[{index}]");
        let host = AllowedHost::parse(&rule.host).map_err(|e| format!("{field}.host: {e}"))?;
        if rule.headers.is_empty() {
            return Err(format!("{field}.headers must name at least one header"));
        }
        let mut headers = Vec::new();
        for (name, value) in &rule.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{field}.headers: {name:?} is not a header name"))?;
            if NOT_CREDENTIAL_HEADERS.contains(&header.as_str()) {
                return Err(format!(
                    "{field}.headers.{name} describes the connection and cannot be set"
                ));
            }
            if value.bytes().any(|b| b.is_ascii_control()) {
                return Err(format!("{field}.headers.{name} holds control characters"));
            }
            crate::secrets::references(value)
                .map_err(|e| format!("{field}.headers.{name}: {e}"))?;
            headers.push((header, value.clone()));
        }
        Ok(Credential {
            host,
            headers,
            orgs: rule.orgs.clone(),
        })
    }

    fn applies(&self, url: &Url, org_id: &str) -> bool {
        let host_matches = match url.host() {
            Some(Host::Domain(name)) => self
                .host
                .matches_name(&name.trim_end_matches('.').to_ascii_lowercase()),
            Some(Host::Ipv4(ip)) => self.host == AllowedHost::Ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.host == AllowedHost::Ip(IpAddr::V6(ip)),
            None => false,
        };
        host_matches && (self.orgs.is_empty() || self.orgs.iter().any(|o| o == org_id))
    }
}

/// The credentials an action's request carries: the organisation, and what was added (to
/// mask in the answer).
struct Injection<'a> {
    org_id: &'a str,
    used: Vec<crate::secrets::Secret>,
}

fn default_section() -> String {
    "connectors.http".to_owned()
}

impl Default for HttpConnectorConfig {
    fn default() -> Self {
        HttpConnectorConfig {
            allowed_domains: Vec::new(),
            allow_private_cidrs: Vec::new(),
            ca_file: None,
            connect_timeout_ms: 5_000,
            timeout_ms: 30_000,
            max_response_bytes: 1_048_576,
            max_redirects: 5,
            hosts: BTreeMap::new(),
            system_dns: true,
            credentials: Vec::new(),
            section: default_section(),
        }
    }
}

/// Why an HTTP action could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// The destination is not allowed: a scheme other than `http`/`https`, userinfo, a
    /// reserved address, an internal host name, a host outside `allowed_domains`, a name that
    /// resolves to a reserved address, or a redirect to any of these.
    #[error("ssrf: {0}")]
    Ssrf(String),
    /// The action's method or parameters are malformed (the message names the field), or the
    /// `connectors.http` configuration is invalid (from [`HttpConnector::new`]).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The upstream could not be reached or answered badly: DNS failure, connection refused,
    /// TLS error, too many redirects, a broken redirect `Location`.
    #[error("upstream error: {0}")]
    Upstream(String),
    /// The connect timeout or the total timeout, in milliseconds, ran out.
    #[error("upstream timed out after {0} ms")]
    Timeout(u64),
    /// The connector refuses the action for a reason of its own, given in full with its
    /// prefix (e.g. `mcp_tool_changed: ...`).
    #[error("{0}")]
    Refused(String),
}

/// The upstream's answer, as returned to the agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpOutcome {
    /// The HTTP status code of the final response (after redirects).
    pub status: u16,
    /// Response headers, lowercase name to value; repeated headers joined with `", "`, values
    /// that are not UTF-8 decoded lossily, `set-cookie` left out.
    pub headers: Map<String, Value>,
    /// The body: parsed JSON when the content type is JSON (`application/json` or
    /// `*/*+json`) and the complete body parses, otherwise the body as a string (invalid UTF-8
    /// replaced by U+FFFD). An empty string for `HEAD`.
    pub body: Value,
    /// Whether the body was cut at `max_response_bytes`.
    pub truncated: bool,
}

/// An entry of `allowed_domains`, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedHost {
    /// The exact host name, lowercase, IDNA-normalised, without a trailing dot.
    Name(String),
    /// Subdomains of a name; stored with the leading dot (`.example.com`).
    Subdomains(String),
    /// An IP address literal.
    Ip(IpAddr),
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<AllowedHost, String> {
        let invalid = |why: &str| {
            format!(
                "connectors.http.allowed_domains entry {entry:?} {why}; expected a host name such as \
                 api.example.com, *.example.com or an IP address"
            )
        };
        let text = entry.trim().trim_end_matches('.');
        let (wildcard, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if name.is_empty() || name.contains(['*', '/', '@', '?', '#']) {
            return Err(invalid("is not a host name"));
        }
        let unbracketed = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return if wildcard {
                Err(invalid("puts a wildcard on an IP address"))
            } else {
                Ok(AllowedHost::Ip(ip))
            };
        }
        match Host::parse(name) {
            Ok(Host::Domain(domain)) => {
                let domain = domain.trim_end_matches('.').to_owned();
                if !domain.contains('.') && wildcard {
                    return Err(invalid("puts a wildcard on a top-level domain"));
                }
                Ok(if wildcard {
                    AllowedHost::Subdomains(format!(".{domain}"))
                } else {
                    AllowedHost::Name(domain)
                })
            }
            Ok(Host::Ipv4(ip)) if !wildcard => Ok(AllowedHost::Ip(IpAddr::V4(ip))),
            Ok(Host::Ipv6(ip)) if !wildcard => Ok(AllowedHost::Ip(IpAddr::V6(ip))),
            Ok(_) => Err(invalid("puts a wildcard on an IP address")),
            Err(error) => Err(invalid(&format!("is not a host name ({error})"))),
        }
    }

    fn matches_name(&self, name: &str) -> bool {
        match self {
            AllowedHost::Name(allowed) => allowed == name,
            AllowedHost::Subdomains(suffix) => {
                name.len() > suffix.len() && name.ends_with(suffix.as_str())
            }
            AllowedHost::Ip(_) => false,
        }
    }
}

/// The destination rules, shared by the pre-flight URL check and the DNS resolver.
#[derive(Debug)]
struct DestinationRules {
    allowed_hosts: Vec<AllowedHost>,
    allow_private_cidrs: Vec<IpNet>,
    /// The configuration section named in messages.
    section: String,
}

impl DestinationRules {
    /// How to exempt an intended internal destination.
    fn exempt_hint(&self) -> String {
        format!(
            " ({}.allow_private_cidrs can exempt an intended internal destination)",
            self.section
        )
    }

    /// The reserved range `ip` is in, unless `allow_private_cidrs` exempts it. An
    /// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is exempt when its IPv4 address is.
    fn blocked_range(&self, ip: IpAddr) -> Option<BlockedRange> {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let exempt = self
            .allow_private_cidrs
            .iter()
            .any(|net| net.contains(&ip) || mapped.is_some_and(|v4| net.contains(&v4)));
        if exempt {
            None
        } else {
            classify_ip(ip)
        }
    }

    /// Checks everything that can be checked without DNS (steps 2 to 5 of the module doc).
    fn check_url(&self, url: &Url) -> Result<(), String> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "scheme {scheme:?} is not allowed, only http and https"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "credentials in the url (user:password@) are not allowed; send them in a header"
                    .to_owned(),
            );
        }
        match url.host() {
            None => Err("the url has no host".to_owned()),
            Some(Host::Ipv4(ip)) => self.check_ip_host(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip_host(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if is_internal_hostname(&name) {
                    return Err(format!("host {name} is an internal host name"));
                }
                if !self.allowed_hosts.is_empty()
                    && !self
                        .allowed_hosts
                        .iter()
                        .any(|allowed| allowed.matches_name(&name))
                {
                    return Err(format!(
                        "host {name} is not in {}.allowed_domains",
                        self.section
                    ));
                }
                Ok(())
            }
        }
    }

    fn check_ip_host(&self, ip: IpAddr) -> Result<(), String> {
        if let Some(range) = self.blocked_range(ip) {
            return Err(format!(
                "{ip} is in a blocked range: {range}{}",
                self.exempt_hint()
            ));
        }
        if !self.allowed_hosts.is_empty() && !self.allowed_hosts.contains(&AllowedHost::Ip(ip)) {
            return Err(format!(
                "host {ip} is not in {}.allowed_domains",
                self.section
            ));
        }
        Ok(())
    }
}

/// Why the checking resolver failed; found again in the `reqwest::Error` source chain.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    /// A resolved address (or the name itself) is blocked.
    #[error("{0}")]
    Blocked(String),
    /// The lookup itself failed or found nothing.
    #[error("dns lookup of {host} failed: {reason}")]
    Failed { host: String, reason: String },
}

/// The configured resolver: `connectors.http.hosts` first, then (when `system_dns` is on) the
/// operating system's resolver (`getaddrinfo` through `tokio::net::lookup_host`).
struct ConfiguredResolver {
    hosts: BTreeMap<String, Vec<IpAddr>>,
    system_dns: bool,
}

impl Resolve for ConfiguredResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        if let Some(ips) = self.hosts.get(&host) {
            let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
            return Box::pin(async move { Ok(Box::new(addrs.into_iter()) as Addrs) });
        }
        if !self.system_dns {
            return Box::pin(async move {
                Err(format!(
                    "{host} is not in connectors.http.hosts and connectors.http.system_dns is off"
                )
                .into())
            });
        }
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Wraps a resolver and checks every address it returns (DNS pinning: the client connects
/// only to addresses returned from here, and looks each name up once per connection).
struct CheckingResolver {
    inner: Arc<dyn Resolve>,
    rules: Arc<DestinationRules>,
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        if is_internal_hostname(&host) {
            let error = LookupError::Blocked(format!("host {host} is an internal host name"));
            return Box::pin(async move { Err(error.into()) });
        }
        let rules = Arc::clone(&self.rules);
        let lookup = self.inner.resolve(name);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match lookup.await {
                Ok(addrs) => addrs.collect(),
                Err(error) => {
                    return Err(LookupError::Failed {
                        host,
                        reason: error.to_string(),
                    }
                    .into())
                }
            };
            if addrs.is_empty() {
                return Err(LookupError::Failed {
                    host,
                    reason: "no addresses".to_owned(),
                }
                .into());
            }
            // The message names the range, not the address: the agent should not learn what
            // internal names resolve to.
            for addr in &addrs {
                if let Some(range) = rules.blocked_range(addr.ip()) {
                    return Err(LookupError::Blocked(format!(
                        "host {host} resolves to an address in a blocked range: {range}{}",
                        rules.exempt_hint()
                    ))
                    .into());
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A request after parameter validation.
struct PreparedRequest {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
    timeout_ms: Option<u64>,
}

/// Sends `http_proxy` actions: an HTTP client with the SSRF rules of this module. Cheap to
/// clone (the client and rules are shared).
#[derive(Clone)]
pub struct HttpConnector {
    client: reqwest::Client,
    rules: Arc<DestinationRules>,
    /// The checking resolver the client uses, for the other clients that must follow the same
    /// rules ([`crate::connectors::guarded`]).
    resolver: Arc<dyn Resolve>,
    /// The PEM of `ca_file`, when set.
    ca_pem: Option<Arc<Vec<u8>>>,
    /// `credentials`, checked.
    credentials: Arc<Vec<Credential>>,
    /// Where credentials' secrets are read ([`HttpConnector::with_secrets`]); none: a
    /// request a credential rule applies to is refused.
    secrets: Option<Arc<dyn crate::secrets::SecretStore>>,
    connect_timeout_ms: u64,
    timeout_ms: u64,
    max_response_bytes: usize,
    max_redirects: u8,
}

impl fmt::Debug for HttpConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConnector")
            .field("rules", &self.rules)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_redirects", &self.max_redirects)
            .finish_non_exhaustive()
    }
}

impl HttpConnector {
    /// Builds the connector from its configuration, resolving names with `connectors.http.hosts`
    /// and, when `system_dns` is on, the operating system resolver.
    ///
    /// Errors with [`ConnectorError::InvalidRequest`] naming the `connectors.http` key when an
    /// `allowed_domains` entry is not a host name or `*.` pattern, a timeout is zero, or
    /// `ca_file` cannot be read or holds no PEM certificate.
    pub fn new(config: &HttpConnectorConfig) -> Result<HttpConnector, ConnectorError> {
        let resolver = ConfiguredResolver {
            hosts: config
                .hosts
                .iter()
                .map(|(name, ips)| (name.trim_end_matches('.').to_ascii_lowercase(), ips.clone()))
                .collect(),
            system_dns: config.system_dns,
        };
        HttpConnector::with_resolver(config, Arc::new(resolver))
    }

    /// Like [`HttpConnector::new`], with another DNS resolver (tests, a custom DNS client).
    ///
    /// The resolver's answers are checked exactly like the system resolver's: every address
    /// must pass the reserved-range check, so a resolver cannot open a way around the SSRF rules.
    pub fn with_resolver(
        config: &HttpConnectorConfig,
        resolver: Arc<dyn Resolve>,
    ) -> Result<HttpConnector, ConnectorError> {
        let config_error = ConnectorError::InvalidRequest;
        if config.connect_timeout_ms == 0 {
            return Err(config_error(
                "connectors.http.connect_timeout_ms must be at least 1".to_owned(),
            ));
        }
        if config.timeout_ms == 0 {
            return Err(config_error(
                "connectors.http.timeout_ms must be at least 1".to_owned(),
            ));
        }
        let allowed_hosts = config
            .allowed_domains
            .iter()
            .map(|entry| AllowedHost::parse(entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(config_error)?;
        let rules = Arc::new(DestinationRules {
            allowed_hosts,
            allow_private_cidrs: config.allow_private_cidrs.clone(),
            section: config.section.clone(),
        });

        let checking = Arc::new(CheckingResolver {
            #[cfg(test)]
            inner: Arc::new(tests::TripwireResolver(resolver)),
            #[cfg(not(test))]
            inner: resolver,
            rules: Arc::clone(&rules),
        });
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(true)
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .dns_resolver(Arc::clone(&checking))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .user_agent(concat!("aaf/", env!("CARGO_PKG_VERSION")));
        let mut ca_pem = None;
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|error| {
                config_error(format!(
                    "connectors.http.ca_file {}: cannot read it: {error}",
                    path.display()
                ))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                config_error(format!(
                    "connectors.http.ca_file {}: not a PEM certificate file: {error}",
                    path.display()
                ))
            })?;
            if certificates.is_empty() {
                return Err(config_error(format!(
                    "connectors.http.ca_file {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                )));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
            ca_pem = Some(Arc::new(pem));
        }
        let client = builder.build().map_err(|error| {
            config_error(format!(
                "connectors.http: cannot build the http client: {}",
                error_chain(&error)
            ))
        })?;
        let credentials = config
            .credentials
            .iter()
            .enumerate()
            .map(|(i, rule)| Credential::parse(i, rule))
            .collect::<Result<Vec<_>, _>>()
            .map_err(config_error)?;
        Ok(HttpConnector {
            client,
            rules,
            resolver: checking,
            ca_pem,
            credentials: Arc::new(credentials),
            secrets: None,
            connect_timeout_ms: config.connect_timeout_ms,
            timeout_ms: config.timeout_ms,
            max_response_bytes: config.max_response_bytes,
            max_redirects: config.max_redirects,
        })
    }

    /// The connector with `secrets` as where its credential rules' secrets are read.
    #[must_use]
    pub fn with_secrets(mut self, secrets: Arc<dyn crate::secrets::SecretStore>) -> HttpConnector {
        self.secrets = Some(secrets);
        self
    }

    /// [`HttpConnector::preflight`] for an action of the organisation: also refuses a request
    /// that sets a header a credential rule adds for its destination (the agent may not
    /// supply, or override, a credential AAF holds).
    ///
    /// # Errors
    ///
    /// As [`HttpConnector::preflight`], and [`ConnectorError::Refused`] (`credentials: ...`).
    pub fn preflight_as(
        &self,
        org_id: &str,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<(), ConnectorError> {
        let request = prepare(method, params)?;
        self.rules
            .check_url(&request.url)
            .map_err(ConnectorError::Ssrf)?;
        self.check_agent_headers(org_id, &request.url, &request.headers)
    }

    /// Refuses agent headers that credential rules for `url` add.
    fn check_agent_headers(
        &self,
        org_id: &str,
        url: &Url,
        headers: &HeaderMap,
    ) -> Result<(), ConnectorError> {
        for credential in self.credentials.iter().filter(|c| c.applies(url, org_id)) {
            if let Some((name, _)) = credential
                .headers
                .iter()
                .find(|(name, _)| headers.contains_key(name))
            {
                return Err(ConnectorError::Refused(format!(
                    "credentials: the {name} header of requests to {} is set by AAF (connectors.http.credentials); the agent may not send it",
                    url.host_str().unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    /// Adds the credentials of the rules for `url` to `headers` (replacing nothing: an agent
    /// header of the same name was refused before); the secrets used are kept to mask.
    fn inject(
        &self,
        injection: &mut Injection<'_>,
        url: &Url,
        headers: &mut HeaderMap,
    ) -> Result<(), ConnectorError> {
        for credential in self
            .credentials
            .iter()
            .filter(|c| c.applies(url, injection.org_id))
        {
            let Some(store) = &self.secrets else {
                return Err(ConnectorError::Refused(
                    "credentials: no secret store is configured".to_owned(),
                ));
            };
            for (name, template) in &credential.headers {
                let (value, used) = crate::secrets::expand(template, store.as_ref())
                    .map_err(|e| ConnectorError::Refused(format!("credentials: {e}")))?;
                let mut value = HeaderValue::from_str(value.as_str()).map_err(|_| {
                    ConnectorError::Refused(format!(
                        "credentials: the {name} header's value is not a valid header value"
                    ))
                })?;
                value.set_sensitive(true);
                headers.insert(name.clone(), value);
                injection.used.extend(used);
            }
        }
        Ok(())
    }

    /// [`HttpConnector::execute`] for an action of the organisation, with the credentials
    /// that `connectors.http.credentials` adds for each destination (the first and every
    /// redirect's, each hop getting only its own host's) and the answer masked of every
    /// secret they used.
    ///
    /// # Errors
    ///
    /// As [`HttpConnector::execute`], and [`ConnectorError::Refused`] (`credentials: ...`)
    /// when the agent set a credential header or a secret cannot be read.
    pub async fn execute_as(
        &self,
        org_id: &str,
        action: &AllowedAction,
    ) -> Result<HttpOutcome, ConnectorError> {
        let request = action.request();
        if request.tool != TOOL_NAME && request.tool != TOOL_ALIAS {
            return Err(ConnectorError::InvalidRequest(format!(
                "tool {:?} is not handled by the http connector ({TOOL_NAME}, {TOOL_ALIAS})",
                request.tool
            )));
        }
        let mut injection = Injection {
            org_id,
            used: Vec::new(),
        };
        let mut outcome = self
            .execute_request(&request.operation, &request.params, Some(&mut injection))
            .await?;
        let masker = crate::secrets::Masker::new(injection.used);
        masker.mask_json(&mut outcome.body);
        let mut headers = Value::Object(std::mem::take(&mut outcome.headers));
        masker.mask_json(&mut headers);
        if let Value::Object(headers) = headers {
            outcome.headers = headers;
        }
        Ok(outcome)
    }

    /// The resolver of this connector's client: every address it returns passed the
    /// reserved-range check (steps 4 and 6 of the module doc).
    pub(crate) fn checking_resolver(&self) -> Arc<dyn Resolve> {
        Arc::clone(&self.resolver)
    }

    /// The PEM certificates of `ca_file`, trusted besides the built-in roots.
    pub(crate) fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref().map(Vec::as_slice)
    }

    /// The connect timeout, in milliseconds.
    pub(crate) fn connect_timeout_ms(&self) -> u64 {
        self.connect_timeout_ms
    }

    /// Parses `url` and runs every destination check that needs no DNS: scheme, userinfo,
    /// host, reserved-range IP literal, internal host name, `allowed_domains`.
    ///
    /// Returns the parsed URL. Errors with [`ConnectorError::InvalidRequest`] when `url` is not
    /// an absolute URL and [`ConnectorError::Ssrf`] when a check fails. Names that resolve to
    /// reserved addresses are only caught by [`HttpConnector::execute`].
    pub fn check_destination(&self, url: &str) -> Result<Url, ConnectorError> {
        let url = parse_url(url)?;
        self.rules.check_url(&url).map_err(ConnectorError::Ssrf)?;
        Ok(url)
    }

    /// Checks an action before it is allowed, without any I/O: the method and parameters as
    /// [`HttpConnector::execute`] would read them, then every destination check that needs no
    /// DNS (as [`HttpConnector::check_destination`]).
    ///
    /// Lets the decision path turn a policy's allow into a deny before anything runs. Errors
    /// with [`ConnectorError::InvalidRequest`] or [`ConnectorError::Ssrf`]; a name that only
    /// resolves to a reserved address passes here and is refused by `execute`.
    pub fn preflight(
        &self,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<(), ConnectorError> {
        let request = prepare(method, params)?;
        self.rules
            .check_url(&request.url)
            .map_err(ConnectorError::Ssrf)
    }

    /// Carries out an allowed `http_proxy` (or `http`) action and returns the upstream's answer.
    ///
    /// The action's `operation` is the method: `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`
    /// or `OPTIONS`, upper case exactly (a policy that matched `"DELETE"` must not be bypassed
    /// by `"delete"`). Its `params` object holds:
    ///
    /// - `url` (string, required): an absolute `http` or `https` URL;
    /// - `headers` (object of strings, optional): request headers, minus
    ///   [`DROPPED_REQUEST_HEADERS`] and headers named in `Connection`;
    /// - `body` (any JSON, optional): a string is sent as it is (with `content-type:
    ///   text/plain; charset=utf-8` unless a content type is given), `null` means no body, any
    ///   other value is sent as JSON (with `content-type: application/json` unless given);
    /// - `timeout_ms` (positive integer, optional): lowers the configured total timeout.
    ///
    /// Other keys are ignored. Redirects (301, 302, 303, 307, 308 with a `Location`) are
    /// followed up to `max_redirects`, each target checked like the first URL; 303, and 301 or
    /// 302 after a `POST`, continue as a `GET` without body, as browsers do (Fetch standard);
    /// `Authorization` is dropped when a redirect leaves the origin.
    ///
    /// Errors: [`ConnectorError::InvalidRequest`] naming the bad tool, method or parameter,
    /// [`ConnectorError::Ssrf`] for a refused destination (before any connection to it),
    /// [`ConnectorError::Timeout`] when the connect or total timeout runs out, and
    /// [`ConnectorError::Upstream`] for DNS, connection, TLS and protocol failures and for
    /// too many redirects. An upstream's 4xx or 5xx answer is an `Ok` outcome.
    pub async fn execute(&self, action: &AllowedAction) -> Result<HttpOutcome, ConnectorError> {
        let request = action.request();
        if request.tool != TOOL_NAME && request.tool != TOOL_ALIAS {
            return Err(ConnectorError::InvalidRequest(format!(
                "tool {:?} is not handled by the http connector ({TOOL_NAME}, {TOOL_ALIAS})",
                request.tool
            )));
        }
        self.execute_request(&request.operation, &request.params, None)
            .await
    }

    /// POSTs `body` (sent as it is) with `headers` to `url` under every rule of this
    /// connector: for webhook deliveries, which are not agent actions. Errors as
    /// [`HttpConnector::execute`].
    pub async fn post(
        &self,
        url: &str,
        headers: Map<String, Value>,
        body: String,
    ) -> Result<HttpOutcome, ConnectorError> {
        let mut params = Map::new();
        params.insert("url".to_owned(), Value::String(url.to_owned()));
        params.insert("headers".to_owned(), Value::Object(headers));
        params.insert("body".to_owned(), Value::String(body));
        self.execute_request("POST", &params, None).await
    }

    /// [`HttpConnector::execute`] on a method and parameter object.
    async fn execute_request(
        &self,
        method: &str,
        params: &Map<String, Value>,
        injection: Option<&mut Injection<'_>>,
    ) -> Result<HttpOutcome, ConnectorError> {
        let request = prepare(method, params)?;
        self.rules
            .check_url(&request.url)
            .map_err(ConnectorError::Ssrf)?;
        if let Some(injection) = &injection {
            self.check_agent_headers(injection.org_id, &request.url, &request.headers)?;
        }
        let total_ms = request
            .timeout_ms
            .map_or(self.timeout_ms, |requested| requested.min(self.timeout_ms));
        match tokio::time::timeout(
            Duration::from_millis(total_ms),
            self.send(request, total_ms, injection),
        )
        .await
        {
            Ok(result) => result,
            Err(_elapsed) => Err(ConnectorError::Timeout(total_ms)),
        }
    }

    /// Sends the request and follows redirects by hand.
    async fn send(
        &self,
        request: PreparedRequest,
        total_ms: u64,
        mut injection: Option<&mut Injection<'_>>,
    ) -> Result<HttpOutcome, ConnectorError> {
        let PreparedRequest {
            mut method,
            mut url,
            mut headers,
            mut body,
            ..
        } = request;
        let mut redirects: u8 = 0;
        loop {
            // Each hop gets the credentials of its own destination, and no other's.
            let mut hop_headers = headers.clone();
            if let Some(injection) = injection.as_deref_mut() {
                self.check_agent_headers(injection.org_id, &url, &headers)?;
                self.inject(injection, &url, &mut hop_headers)?;
            }
            let mut builder = self
                .client
                .request(method.clone(), url.clone())
                .headers(hop_headers);
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            #[cfg(test)]
            tests::tripwire(match url.host() {
                Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                Some(Host::Domain(_)) | None => None,
            });
            let response = builder
                .send()
                .await
                .map_err(|error| self.map_error(&error, total_ms))?;
            let status = response.status();
            let location = response.headers().get(LOCATION).cloned();
            let (true, Some(location)) = (is_redirect(status), location) else {
                return self
                    .read_outcome(response, method == Method::HEAD, total_ms)
                    .await;
            };
            drop(response);
            if redirects >= self.max_redirects {
                return Err(ConnectorError::Upstream(format!(
                    "too many redirects (connectors.http.max_redirects is {})",
                    self.max_redirects
                )));
            }
            redirects += 1;
            let location = location.to_str().map_err(|_| {
                ConnectorError::Upstream("redirect location is not valid text".to_owned())
            })?;
            let next = url.join(location).map_err(|error| {
                ConnectorError::Upstream(format!(
                    "redirect location {location:?} is not a valid url: {error}"
                ))
            })?;
            self.rules.check_url(&next).map_err(|reason| {
                ConnectorError::Ssrf(format!("redirect to {next} refused: {reason}"))
            })?;
            let becomes_get = (status == StatusCode::SEE_OTHER
                && method != Method::GET
                && method != Method::HEAD)
                || ((status == StatusCode::MOVED_PERMANENTLY || status == StatusCode::FOUND)
                    && method == Method::POST);
            if becomes_get {
                method = Method::GET;
                body = None;
                for name in REQUEST_BODY_HEADERS {
                    headers.remove(*name);
                }
            }
            if next.origin() != url.origin() {
                headers.remove(AUTHORIZATION);
            }
            url = next;
        }
    }

    async fn read_outcome(
        &self,
        mut response: reqwest::Response,
        head: bool,
        total_ms: u64,
    ) -> Result<HttpOutcome, ConnectorError> {
        let status = response.status().as_u16();
        let headers = response_headers(response.headers());
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(is_json_media_type);
        let mut bytes: Vec<u8> = Vec::new();
        let mut truncated = false;
        if !head {
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|error| self.map_error(&error, total_ms))?
            {
                let room = self.max_response_bytes.saturating_sub(bytes.len());
                if chunk.len() > room {
                    bytes.extend(chunk.iter().take(room));
                    truncated = true;
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
        }
        // A JSON body is kept as JSON only when every number in it has an exact RFC 8785
        // form; otherwise (an integer beyond 2^53-1, which the audit hash cannot tell from
        // its neighbours and which would keep the outcome from being recorded) as its text.
        let body = match (is_json && !truncated)
            .then(|| serde_json::from_slice::<Value>(&bytes).ok())
            .flatten()
            .filter(|json| aaf_core::canonical::find_inexact_number(json, "").is_none())
        {
            Some(json) => json,
            None => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        };
        Ok(HttpOutcome {
            status,
            headers,
            body,
            truncated,
        })
    }

    /// Maps a client error, finding the checking resolver's verdict in its source chain.
    fn map_error(&self, error: &reqwest::Error, total_ms: u64) -> ConnectorError {
        let mut source: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(current) = source {
            if let Some(lookup) = current.downcast_ref::<LookupError>() {
                return match lookup {
                    LookupError::Blocked(reason) => ConnectorError::Ssrf(reason.clone()),
                    LookupError::Failed { .. } => ConnectorError::Upstream(lookup.to_string()),
                };
            }
            source = current.source();
        }
        if error.is_timeout() {
            return ConnectorError::Timeout(if error.is_connect() {
                self.connect_timeout_ms
            } else {
                total_ms
            });
        }
        ConnectorError::Upstream(error_chain(error))
    }
}

/// `error: source: source ...`, without repeating a message its source already carries.
/// The checking resolver's refusal found in an error's source chain (from any client that
/// uses the resolver, e.g. [`crate::connectors::guarded`]'s), or `None`.
pub(crate) fn ssrf_refusal(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut source = Some(error);
    while let Some(current) = source {
        if let Some(LookupError::Blocked(reason)) = current.downcast_ref::<LookupError>() {
            return Some(reason.clone());
        }
        source = current.source();
    }
    None
}

/// An error and its sources, as one line (repeated messages left out).
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(current) = source {
        let message = current.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = current.source();
    }
    text
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// `application/json`, `text/json` and any `*/*+json` (RFC 6839), parameters ignored.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

fn response_headers(headers: &HeaderMap) -> Map<String, Value> {
    let mut out = Map::new();
    for name in headers.keys() {
        let name = name.as_str();
        if DROPPED_RESPONSE_HEADERS.contains(&name) {
            continue;
        }
        let joined = headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        out.insert(name.to_owned(), Value::String(joined));
    }
    out
}

fn parse_url(url: &str) -> Result<Url, ConnectorError> {
    Url::parse(url).map_err(|error| {
        ConnectorError::InvalidRequest(format!("params.url is not a valid absolute url: {error}"))
    })
}

/// Validates the method and parameters (see [`HttpConnector::execute`]); no I/O.
fn prepare(method: &str, params: &Map<String, Value>) -> Result<PreparedRequest, ConnectorError> {
    let invalid = ConnectorError::InvalidRequest;
    if !METHODS.contains(&method) {
        return Err(invalid(format!(
            "method {method:?} is not supported; use one of {}",
            METHODS.join(", ")
        )));
    }
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| invalid(format!("method {method:?} is not valid")))?;

    let url = match params.get("url") {
        Some(Value::String(url)) => parse_url(url)?,
        Some(_) => return Err(invalid("params.url must be a string".to_owned())),
        None => return Err(invalid("params.url is required".to_owned())),
    };

    let mut headers = HeaderMap::new();
    match params.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(given)) => {
            let mut dropped: HashSet<String> = DROPPED_REQUEST_HEADERS
                .iter()
                .map(|name| (*name).to_owned())
                .collect();
            for (name, value) in given {
                let Value::String(value) = value else {
                    return Err(invalid(format!("params.headers.{name} must be a string")));
                };
                if name.eq_ignore_ascii_case("connection") {
                    dropped.extend(
                        value
                            .split(',')
                            .map(|token| token.trim().to_ascii_lowercase()),
                    );
                }
            }
            for (name, value) in given {
                let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    invalid(format!(
                        "params.headers: {name:?} is not a valid header name"
                    ))
                })?;
                let header_value = HeaderValue::from_str(value.as_str().unwrap_or_default())
                    .map_err(|_| {
                        invalid(format!("params.headers.{name} is not a valid header value"))
                    })?;
                if !dropped.contains(header_name.as_str()) {
                    headers.append(header_name, header_value);
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                "params.headers must be an object of strings".to_owned(),
            ))
        }
    }

    let body = match params.get("body") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
            Some(Bytes::from(text.clone()))
        }
        Some(json) => {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            let encoded = serde_json::to_vec(json).map_err(|error| {
                invalid(format!("params.body cannot be encoded as json: {error}"))
            })?;
            Some(Bytes::from(encoded))
        }
    };

    let timeout_ms = match params.get("timeout_ms") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().filter(|ms| *ms > 0).ok_or_else(|| {
            invalid("params.timeout_ms must be a positive integer (milliseconds)".to_owned())
        })?),
    };

    Ok(PreparedRequest {
        method,
        url,
        headers,
        body,
        timeout_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{Path, Query};
    use axum::response::IntoResponse;
    use axum::routing::{any, get};
    use axum::{Json, Router};
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Stops the test run before a connection to an IP literal other than loopback, so that a
    /// bug in the checks under test cannot send traffic off this machine. Called by the
    /// connector, in test builds only, with the URL's address before each request.
    pub(super) fn tripwire(addresses: impl IntoIterator<Item = IpAddr>) {
        for ip in addresses {
            assert!(
                is_loopback(ip),
                "tripwire: a test was about to connect to {ip}, which is not loopback"
            );
        }
    }

    /// Puts [`tripwire`] in front of a test's resolver. The connector installs it in test
    /// builds, inside the checking resolver, so that a broken check cannot let a test connect
    /// off loopback.
    pub(super) struct TripwireResolver(pub(super) Arc<dyn Resolve>);

    impl Resolve for TripwireResolver {
        fn resolve(&self, name: Name) -> Resolving {
            let lookup = self.0.resolve(name);
            Box::pin(async move {
                let addrs: Vec<SocketAddr> = lookup.await?.collect();
                if !addrs.iter().all(|addr| is_loopback(addr.ip())) {
                    // Only a bug in the checks lets such an answer through; fail closed.
                    return Err(format!("tripwire: a test resolver answered {addrs:?}").into());
                }
                Ok(Box::new(addrs.into_iter()) as Addrs)
            })
        }
    }

    fn is_loopback(ip: IpAddr) -> bool {
        ip.is_loopback()
            || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
    }

    /// Answers every name with fixed addresses, as wildcard DNS (nip.io, localtest.me) or a
    /// rebinding server would; counts the lookups.
    struct StaticResolver {
        addresses: Vec<IpAddr>,
        lookups: AtomicUsize,
    }

    impl StaticResolver {
        fn new(addresses: &[&str]) -> Arc<StaticResolver> {
            Arc::new(StaticResolver {
                addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
                lookups: AtomicUsize::new(0),
            })
        }
    }

    impl Resolve for StaticResolver {
        fn resolve(&self, _name: Name) -> Resolving {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let addrs: Vec<SocketAddr> = self
                .addresses
                .iter()
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect();
            Box::pin(async move { Ok(Box::new(addrs.into_iter()) as Addrs) })
        }
    }

    struct FailingResolver;

    impl Resolve for FailingResolver {
        fn resolve(&self, _name: Name) -> Resolving {
            Box::pin(async move { Err("no such host (test)".into()) })
        }
    }

    async fn echo(
        method: axum::http::Method,
        headers: axum::http::HeaderMap,
        body: Bytes,
    ) -> Json<Value> {
        let headers: Map<String, Value> = headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), json!(value.to_str().unwrap())))
            .collect();
        Json(json!({
            "method": method.as_str(),
            "headers": headers,
            "body": String::from_utf8(body.to_vec()).unwrap(),
        }))
    }

    /// Answers `status` (default 302) with `Location: to`, or without `Location` when `to`
    /// is absent.
    async fn redirect(Query(query): Query<HashMap<String, String>>) -> axum::response::Response {
        let status =
            StatusCode::from_u16(query.get("status").map_or(302, |s| s.parse().unwrap())).unwrap();
        match query.get("to") {
            Some(to) => (status, [(LOCATION, to.clone())]).into_response(),
            None => status.into_response(),
        }
    }

    async fn chain(Path(n): Path<u32>) -> axum::response::Response {
        if n == 0 {
            "end of chain".into_response()
        } else {
            (StatusCode::FOUND, [(LOCATION, format!("/chain/{}", n - 1))]).into_response()
        }
    }

    /// A real HTTP upstream on 127.0.0.1, port chosen by the system.
    async fn upstream() -> SocketAddr {
        let app = Router::new()
            .route(
                "/json",
                get(|| async {
                    (
                        [("x-upstream", "yes"), ("set-cookie", "session=secret")],
                        Json(json!({"hello": "world", "n": 1})),
                    )
                }),
            )
            .route("/text", get(|| async { "plain text" }))
            .route("/echo", any(echo))
            .route("/big", get(|| async { "x".repeat(10_000) }))
            .route(
                "/big-json",
                get(|| async { Json(json!({"data": "y".repeat(10_000)})) }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route("/redirect", any(redirect))
            .route("/chain/{n}", any(chain));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    /// A connector whose resolver answers every name with 127.0.0.1, so that no test does DNS.
    fn loopback_connector(config: &HttpConnectorConfig) -> HttpConnector {
        HttpConnector::with_resolver(config, StaticResolver::new(&["127.0.0.1"])).unwrap()
    }

    fn loopback_allowed() -> HttpConnectorConfig {
        HttpConnectorConfig {
            allow_private_cidrs: vec!["127.0.0.1/32".parse().unwrap()],
            ..HttpConnectorConfig::default()
        }
    }

    fn params(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    async fn get_url(connector: &HttpConnector, url: &str) -> Result<HttpOutcome, ConnectorError> {
        connector
            .execute_request("GET", &params(json!({"url": url})), None)
            .await
    }

    fn assert_ssrf(result: Result<HttpOutcome, ConnectorError>, contains: &str) {
        match result {
            Err(ConnectorError::Ssrf(reason)) => {
                assert!(reason.contains(contains), "{reason:?} lacks {contains:?}")
            }
            other => panic!("expected ssrf containing {contains:?}, got {other:?}"),
        }
    }

    /// Reads `rel` from the shared third-party test data (`aaf_testdata::read`).
    fn read_testdata(rel: &str) -> Option<String> {
        aaf_testdata::read(rel)
    }

    /// Every payload of `shared/testdata/security/ssrf_payloads.txt` is refused before a
    /// connection is made, even when every name resolves to an address of the attacker's
    /// choosing (here 127.0.0.1, as nip.io and localtest.me do).
    #[tokio::test]
    async fn every_ssrf_payload_is_refused() {
        let Some(contents) = read_testdata("security/ssrf_payloads.txt") else {
            return;
        };
        let resolver = StaticResolver::new(&["127.0.0.1"]);
        let config = HttpConnectorConfig {
            connect_timeout_ms: 500,
            timeout_ms: 2_000,
            ..HttpConnectorConfig::default()
        };
        let connector = HttpConnector::with_resolver(&config, resolver.clone()).unwrap();
        let mut checked = 0;
        let mut by_dns = 0;
        for line in contents.lines() {
            let line = line.trim_end();
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let payload = line.split(" -> ").next().unwrap();
            let url = if payload.contains(':') {
                payload.to_owned()
            } else {
                format!("http://{payload}/")
            };
            // A payload that passes the static checks must have a host name, which the DNS
            // check then refuses; an IP literal passing them would mean a real connection.
            if let Ok(parsed) = connector.check_destination(&url) {
                assert!(
                    matches!(parsed.host(), Some(Host::Domain(_))),
                    "payload {payload:?} passes the static checks with host {:?}",
                    parsed.host()
                );
                by_dns += 1;
            }
            let lookups_before = resolver.lookups.load(Ordering::SeqCst);
            match connector
                .execute_request("GET", &params(json!({"url": url})), None)
                .await
            {
                Err(ConnectorError::Ssrf(reason)) => {
                    println!("refused {payload:?}: ssrf: {reason}")
                }
                Err(ConnectorError::InvalidRequest(reason)) => {
                    println!("refused {payload:?}: invalid request: {reason}")
                }
                other => panic!("payload {payload:?} was not refused: {other:?}"),
            }
            assert!(resolver.lookups.load(Ordering::SeqCst) <= lookups_before + 1);
            checked += 1;
        }
        println!("ssrf payloads checked: {checked} ({by_dns} refused only after resolution)");
        // The file holds 80 payload lines; fewer means the file or this parser changed.
        assert!(
            checked >= 80,
            "only {checked} payloads found in ssrf_payloads.txt"
        );
        assert!(
            by_dns >= 10,
            "expected the wildcard-dns payloads to reach the resolver"
        );
    }

    /// Our own notations on top of the payload file, refused with empty configuration.
    #[tokio::test]
    async fn more_notations_are_refused() {
        let connector = HttpConnector::with_resolver(
            &HttpConnectorConfig::default(),
            StaticResolver::new(&["127.0.0.1"]),
        )
        .unwrap();
        for url in [
            "http://127.0.0.1./",
            "http://localhost./",
            "http://LOCALHOST/",
            "http://sub.localhost/",
            "http://metadata.google.internal./computeMetadata/v1/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b:1::1]/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://[2002:7f00:1::]/",
            "http://[fe80::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://[2001:db8::1]/",
            "http://[2001::1]/",
            "http://[100::1]/",
            "http://[::1]:8080/",
            "http://%31%32%37.0.0.1/",
            "http://0x7f.0x0.0x0.0x1/",
            "http://127.000.000.001/",
            "http://0000000177.1/",
            "http://4294967295/",
            "http://100.64.0.1/",
            "http://198.18.0.1/",
            "http://224.0.0.1/",
            "http://168.63.129.16/",
            "https://public.example.com/",
            "ws://example.com/",
            "wss://example.com/",
            "ftp://example.com/",
            "data:text/plain,hello",
            "javascript:alert(1)",
            "view-source:http://127.0.0.1/",
            "HTTP://user@example.com/",
            "http://:pass@example.com/",
            "http:///example.com",
        ] {
            match get_url(&connector, url).await {
                Err(ConnectorError::Ssrf(_) | ConnectorError::InvalidRequest(_)) => {}
                other => panic!("{url:?} was not refused: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn get_returns_status_json_body_and_headers() {
        let address = upstream().await;
        let connector = loopback_connector(&loopback_allowed());
        let outcome = get_url(&connector, &format!("http://{address}/json"))
            .await
            .unwrap();
        assert_eq!(outcome.status, 200);
        assert_eq!(outcome.body, json!({"hello": "world", "n": 1}));
        assert!(!outcome.truncated);
        assert_eq!(outcome.headers["x-upstream"], json!("yes"));
        assert_eq!(outcome.headers["content-type"], json!("application/json"));
        assert!(
            !outcome.headers.contains_key("set-cookie"),
            "{:?}",
            outcome.headers
        );

        let outcome = get_url(&connector, &format!("http://{address}/text"))
            .await
            .unwrap();
        assert_eq!(outcome.body, json!("plain text"));

        let outcome = get_url(&connector, &format!("http://{address}/missing"))
            .await
            .unwrap();
        assert_eq!(outcome.status, 404);

        let outcome = connector
            .execute_request(
                "HEAD",
                &params(json!({"url": format!("http://{address}/text")})),
                None,
            )
            .await
            .unwrap();
        assert_eq!(outcome.status, 200);
        assert_eq!(outcome.body, json!(""));
    }

    #[tokio::test]
    async fn post_sends_json_and_filters_headers() {
        let address = upstream().await;
        let connector = loopback_connector(&loopback_allowed());
        let outcome = connector
            .execute_request(
                "POST",
                &params(json!({
                    "url": format!("http://{address}/echo"),
                    "headers": {
                        "Host": "evil.example",
                        "Cookie": "session=stolen",
                        "Content-Length": "999",
                        "Transfer-Encoding": "chunked",
                        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                        "Connection": "close, X-Hop",
                        "X-Hop": "dropped",
                        "Upgrade": "websocket",
                        "X-Custom": "kept",
                        "Authorization": "Bearer token",
                    },
                    "body": {"a": 1, "b": [true, null]},
                })),
                None,
            )
            .await
            .unwrap();
        assert_eq!(outcome.status, 200);
        let echoed = &outcome.body;
        assert_eq!(echoed["method"], json!("POST"));
        assert_eq!(echoed["body"], json!(r#"{"a":1,"b":[true,null]}"#));
        let received = echoed["headers"].as_object().unwrap();
        assert_eq!(received["host"], json!(address.to_string()));
        assert_eq!(received["content-type"], json!("application/json"));
        assert_eq!(received["content-length"], json!("23"));
        assert_eq!(received["x-custom"], json!("kept"));
        assert_eq!(received["authorization"], json!("Bearer token"));
        for name in [
            "cookie",
            "x-hop",
            "proxy-authorization",
            "upgrade",
            "transfer-encoding",
        ] {
            assert!(
                !received.contains_key(name),
                "{name} was forwarded: {received:?}"
            );
        }

        let outcome = connector
            .execute_request(
                "PUT",
                &params(json!({
                    "url": format!("http://{address}/echo"),
                    "headers": {"Content-Type": "text/csv"},
                    "body": "a,b\n1,2\n",
                })),
                None,
            )
            .await
            .unwrap();
        assert_eq!(outcome.body["method"], json!("PUT"));
        assert_eq!(outcome.body["body"], json!("a,b\n1,2\n"));
        assert_eq!(outcome.body["headers"]["content-type"], json!("text/csv"));

        let outcome = connector
            .execute_request(
                "PATCH",
                &params(json!({"url": format!("http://{address}/echo"), "body": "x"})),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            outcome.body["headers"]["content-type"],
            json!("text/plain; charset=utf-8")
        );
    }

    #[tokio::test]
    async fn large_bodies_are_truncated() {
        let address = upstream().await;
        let config = HttpConnectorConfig {
            max_response_bytes: 1_000,
            ..loopback_allowed()
        };
        let connector = loopback_connector(&config);
        let outcome = get_url(&connector, &format!("http://{address}/big"))
            .await
            .unwrap();
        assert!(outcome.truncated);
        assert_eq!(outcome.body, json!("x".repeat(1_000)));
        // A cut JSON body cannot parse, so it comes back as text.
        let outcome = get_url(&connector, &format!("http://{address}/big-json"))
            .await
            .unwrap();
        assert!(outcome.truncated);
        assert_eq!(outcome.body.as_str().unwrap().len(), 1_000);

        let outcome = get_url(&connector, &format!("http://{address}/json"))
            .await
            .unwrap();
        assert!(!outcome.truncated);
    }

    #[tokio::test]
    async fn timeouts_can_be_lowered_never_raised() {
        let address = upstream().await;
        let connector = loopback_connector(&HttpConnectorConfig {
            timeout_ms: 400,
            ..loopback_allowed()
        });
        let url = format!("http://{address}/slow");
        let lowered = connector
            .execute_request("GET", &params(json!({"url": url, "timeout_ms": 100})), None)
            .await;
        assert_eq!(lowered, Err(ConnectorError::Timeout(100)));
        let raised = connector
            .execute_request(
                "GET",
                &params(json!({"url": url, "timeout_ms": 60_000})),
                None,
            )
            .await;
        assert_eq!(raised, Err(ConnectorError::Timeout(400)));
        assert_eq!(
            raised.unwrap_err().to_string(),
            "upstream timed out after 400 ms"
        );
    }

    #[tokio::test]
    async fn redirects_are_followed_and_rechecked() {
        let address = upstream().await;
        let connector = loopback_connector(&loopback_allowed());
        let base = format!("http://{address}");

        let outcome = get_url(&connector, &format!("{base}/redirect?to=/json"))
            .await
            .unwrap();
        assert_eq!(outcome.body, json!({"hello": "world", "n": 1}));

        for target in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://0xa9fea9fe/",
            "http://2852039166/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://localhost/",
            "http://127.0.0.2/",
            "file:///etc/passwd",
            "gopher://127.0.0.1:6379/_INFO",
            "http://user:pass@example.com/",
        ] {
            for status in [301, 302, 303, 307, 308] {
                let url = format!("{base}/redirect?status={status}&to={}", urlencode(target));
                assert_ssrf(get_url(&connector, &url).await, "redirect to");
            }
        }

        let chain = loopback_connector(&HttpConnectorConfig {
            max_redirects: 2,
            ..loopback_allowed()
        });
        let outcome = get_url(&chain, &format!("{base}/chain/2")).await.unwrap();
        assert_eq!(outcome.body, json!("end of chain"));
        assert_eq!(
            get_url(&chain, &format!("{base}/chain/3")).await,
            Err(ConnectorError::Upstream(
                "too many redirects (connectors.http.max_redirects is 2)".to_owned()
            ))
        );
        // A 3xx without Location is an answer, not a redirect.
        let outcome = get_url(&chain, &format!("{base}/redirect?status=302"))
            .await
            .unwrap();
        assert_eq!(outcome.status, 302);
    }

    #[tokio::test]
    async fn redirect_methods_follow_the_fetch_standard() {
        let address = upstream().await;
        let connector = loopback_connector(&loopback_allowed());
        let base = format!("http://{address}");
        for (status, method, expect_method, expect_body) in [
            (303, "POST", "GET", ""),
            (303, "PUT", "GET", ""),
            (302, "POST", "GET", ""),
            (301, "POST", "GET", ""),
            (307, "POST", "POST", "{\"k\":\"v\"}"),
            (308, "PUT", "PUT", "{\"k\":\"v\"}"),
            (302, "PUT", "PUT", "{\"k\":\"v\"}"),
        ] {
            let outcome = connector
                .execute_request(
                    method,
                    &params(json!({
                        "url": format!("{base}/redirect?status={status}&to=/echo"),
                        "body": {"k": "v"},
                    })),
                    None,
                )
                .await
                .unwrap();
            assert_eq!(
                outcome.body["method"],
                json!(expect_method),
                "{status} {method}"
            );
            assert_eq!(
                outcome.body["body"],
                json!(expect_body),
                "{status} {method}"
            );
            let has_content_type = outcome.body["headers"].get("content-type").is_some();
            assert_eq!(
                has_content_type,
                !expect_body.is_empty(),
                "{status} {method}: {outcome:?}"
            );
        }
    }

    #[tokio::test]
    async fn allowed_domains_restrict_hosts_and_redirects() {
        let address = upstream().await;
        let port = address.port();
        let resolver = StaticResolver::new(&["127.0.0.1"]);
        let config = HttpConnectorConfig {
            allowed_domains: vec!["*.example.com".to_owned(), "127.0.0.1".to_owned()],
            ..loopback_allowed()
        };
        let connector = HttpConnector::with_resolver(&config, resolver).unwrap();

        // A subdomain resolves (to the loopback upstream, exempted by allow_private_cidrs) and
        // is reached with its own Host header.
        let outcome = get_url(&connector, &format!("http://api.example.com:{port}/echo"))
            .await
            .unwrap();
        assert_eq!(
            outcome.body["headers"]["host"],
            json!(format!("api.example.com:{port}"))
        );
        let outcome = get_url(&connector, &format!("http://API.Example.COM.:{port}/echo"))
            .await
            .unwrap();
        assert_eq!(outcome.status, 200);
        let outcome = get_url(&connector, &format!("http://127.0.0.1:{port}/json"))
            .await
            .unwrap();
        assert_eq!(outcome.status, 200);

        for refused in [
            format!("http://example.com:{port}/"),
            format!("http://evil.com:{port}/"),
            format!("http://example.com.evil.com:{port}/"),
            format!("http://evilexample.com:{port}/"),
            format!("http://127.0.0.2:{port}/"),
        ] {
            match get_url(&connector, &refused).await {
                Err(ConnectorError::Ssrf(reason)) => assert!(
                    reason.contains("not in connectors.http.allowed_domains")
                        || reason.contains("blocked range"),
                    "{refused}: {reason}"
                ),
                other => panic!("{refused} was not refused: {other:?}"),
            }
        }
        assert_ssrf(
            get_url(&connector, &format!("http://evil.com:{port}/")).await,
            "host evil.com is not in connectors.http.allowed_domains",
        );

        let redirect = format!(
            "http://127.0.0.1:{port}/redirect?to={}",
            urlencode("http://example.org/")
        );
        assert_ssrf(
            get_url(&connector, &redirect).await,
            "redirect to http://example.org/ refused: host example.org is not in connectors.http.allowed_domains",
        );
        let redirect = format!(
            "http://127.0.0.1:{port}/redirect?to={}",
            urlencode(&format!("http://www.example.com:{port}/json"))
        );
        assert_eq!(get_url(&connector, &redirect).await.unwrap().status, 200);
    }

    #[tokio::test]
    async fn authorization_is_dropped_when_a_redirect_leaves_the_origin() {
        let address = upstream().await;
        let port = address.port();
        let connector =
            HttpConnector::with_resolver(&loopback_allowed(), StaticResolver::new(&["127.0.0.1"]))
                .unwrap();
        let headers = json!({"Authorization": "Bearer secret", "X-Other": "1"});

        let same_origin = format!("http://127.0.0.1:{port}/redirect?to=/echo");
        let outcome = connector
            .execute_request(
                "GET",
                &params(json!({"url": same_origin, "headers": headers})),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            outcome.body["headers"]["authorization"],
            json!("Bearer secret")
        );

        let other_origin = format!(
            "http://127.0.0.1:{port}/redirect?to={}",
            urlencode(&format!("http://api.example.com:{port}/echo"))
        );
        let outcome = connector
            .execute_request(
                "GET",
                &params(json!({"url": other_origin, "headers": headers})),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            outcome.body["headers"]["host"],
            json!(format!("api.example.com:{port}"))
        );
        assert!(
            outcome.body["headers"].get("authorization").is_none(),
            "{outcome:?}"
        );
        assert_eq!(outcome.body["headers"]["x-other"], json!("1"));
    }

    #[tokio::test]
    async fn private_upstream_is_refused_without_allow_private_cidrs() {
        let address = upstream().await;
        let connector = loopback_connector(&HttpConnectorConfig::default());
        assert_ssrf(
            get_url(&connector, &format!("http://{address}/json")).await,
            "127.0.0.1 is in a blocked range: loopback (127.0.0.0/8, RFC 1122)",
        );
        // The exemption is exactly the configured network.
        let connector = loopback_connector(&loopback_allowed());
        assert_ssrf(
            get_url(
                &connector,
                &format!("http://127.0.0.2:{}/json", address.port()),
            )
            .await,
            "127.0.0.2 is in a blocked range",
        );
        // An IPv4-mapped form of an exempt address is exempt too.
        let outcome = get_url(
            &connector,
            &format!("http://[::ffff:127.0.0.1]:{}/json", address.port()),
        )
        .await;
        assert!(
            matches!(outcome, Ok(_) | Err(ConnectorError::Upstream(_))),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn names_resolving_to_blocked_addresses_are_refused() {
        let address = upstream().await;
        let port = address.port();
        // Every resolved address is checked: one blocked address fails the whole lookup, even
        // when another one is exempt.
        let rebinding = StaticResolver::new(&["127.0.0.1", "127.0.0.2"]);
        let connector = HttpConnector::with_resolver(&loopback_allowed(), rebinding).unwrap();
        assert_ssrf(
            get_url(
                &connector,
                &format!("http://rebind.example.com:{port}/json"),
            )
            .await,
            "host rebind.example.com resolves to an address in a blocked range: loopback",
        );
        // Off-loopback answers are checked on the resolver alone, so that nothing could
        // connect to them even if the check were broken.
        let rules = Arc::new(DestinationRules {
            allowed_hosts: Vec::new(),
            allow_private_cidrs: Vec::new(),
            section: default_section(),
        });
        for (resolved, label) in [
            (
                &["169.254.169.254"][..],
                "resolves to an address in a blocked range: link-local",
            ),
            (
                &["::ffff:169.254.169.254"],
                "link-local (cloud metadata) (169.254.0.0/16, RFC 3927) embedded in IPv4-mapped",
            ),
            (&["fd00:ec2::254"], "unique local"),
            (&["10.0.0.1"], "private-use (10.0.0.0/8, RFC 1918)"),
            (&["64:ff9b::a9fe:a9fe"], "NAT64"),
            (
                &["93.184.216.34", "100.100.100.200"],
                "shared address space",
            ),
            (
                &["2606:4700::6810:84e5", "fe80::1"],
                "link-local (fe80::/10, RFC 4291)",
            ),
        ] {
            let resolver = CheckingResolver {
                inner: StaticResolver::new(resolved),
                rules: Arc::clone(&rules),
            };
            let name: Name = "innocent.example.com".parse().unwrap();
            match resolver.resolve(name).await {
                Err(error) => match error.downcast_ref::<LookupError>() {
                    Some(LookupError::Blocked(reason)) => {
                        assert!(reason.contains(label), "{reason} lacks {label}")
                    }
                    other => panic!("{resolved:?}: expected a blocked lookup, got {other:?}"),
                },
                Ok(_) => panic!("{resolved:?} passed the resolver"),
            }
        }
        // Public answers are passed on unchanged.
        let resolver = CheckingResolver {
            inner: StaticResolver::new(&["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]),
            rules,
        };
        match resolver.resolve("example.com".parse().unwrap()).await {
            Ok(addrs) => assert_eq!(
                addrs.map(|a| a.ip().to_string()).collect::<Vec<_>>(),
                ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
            ),
            Err(error) => panic!("public answer refused: {error}"),
        }
        // A failed lookup is an upstream error.
        let connector = HttpConnector::with_resolver(
            &HttpConnectorConfig::default(),
            Arc::new(FailingResolver),
        )
        .unwrap();
        match get_url(&connector, "https://nowhere.example.com/").await {
            Err(ConnectorError::Upstream(reason)) => {
                assert!(
                    reason
                        .contains("dns lookup of nowhere.example.com failed: no such host (test)"),
                    "{reason}"
                )
            }
            other => panic!("expected an upstream error, got {other:?}"),
        }
        // With the system resolver of `new`, `localhost` is refused by name, before any lookup.
        let connector = HttpConnector::new(&loopback_allowed()).unwrap();
        assert_ssrf(
            get_url(&connector, &format!("http://localhost:{port}/")).await,
            "internal host name",
        );
    }

    #[tokio::test]
    async fn schemes_and_userinfo_are_refused() {
        let connector = loopback_connector(&loopback_allowed());
        assert_ssrf(
            get_url(&connector, "ftp://127.0.0.1/").await,
            "scheme \"ftp\" is not allowed",
        );
        assert_ssrf(
            get_url(&connector, "file:///etc/passwd").await,
            "scheme \"file\" is not allowed",
        );
        assert_ssrf(
            get_url(&connector, "http://user:pw@127.0.0.1/").await,
            "credentials in the url",
        );
        assert_ssrf(
            get_url(&connector, "http://user@127.0.0.1/").await,
            "credentials in the url",
        );
    }

    #[tokio::test]
    async fn bad_parameters_name_the_field() {
        let connector = loopback_connector(&HttpConnectorConfig::default());
        let cases = [
            ("GET", json!({}), "params.url is required"),
            ("GET", json!({"url": 5}), "params.url must be a string"),
            (
                "GET",
                json!({"url": "example.com"}),
                "params.url is not a valid absolute url",
            ),
            (
                "GET",
                json!({"url": "https://example.com", "headers": []}),
                "params.headers must be an object",
            ),
            (
                "GET",
                json!({"url": "https://example.com", "headers": {"a": 1}}),
                "params.headers.a must be a string",
            ),
            (
                "GET",
                json!({"url": "https://example.com", "headers": {"bad name": "x"}}),
                "not a valid header name",
            ),
            (
                "GET",
                json!({"url": "https://example.com", "headers": {"x": "a\r\nInjected: 1"}}),
                "params.headers.x is not a valid header value",
            ),
            (
                "GET",
                json!({"url": "https://example.com", "timeout_ms": 0}),
                "params.timeout_ms must be a positive integer",
            ),
            (
                "GET",
                json!({"url": "https://example.com", "timeout_ms": -5}),
                "params.timeout_ms",
            ),
            (
                "GET",
                json!({"url": "https://example.com", "timeout_ms": "100"}),
                "params.timeout_ms",
            ),
            (
                "GET",
                json!({"url": "https://example.com", "timeout_ms": 1.5}),
                "params.timeout_ms",
            ),
            (
                "get",
                json!({"url": "https://example.com"}),
                "method \"get\" is not supported",
            ),
            (
                "TRACE",
                json!({"url": "https://example.com"}),
                "method \"TRACE\" is not supported",
            ),
            (
                "CONNECT",
                json!({"url": "https://example.com"}),
                "method \"CONNECT\"",
            ),
            ("", json!({"url": "https://example.com"}), "method \"\""),
        ];
        for (method, given, expected) in cases {
            match connector
                .execute_request(method, &params(given.clone()), None)
                .await
            {
                Err(ConnectorError::InvalidRequest(reason)) => {
                    assert!(reason.contains(expected), "{given}: {reason}")
                }
                other => panic!("{method} {given}: expected invalid request, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn execute_runs_allowed_actions_of_the_http_tools_only() {
        use aaf_core::action::{ActionRequest, Decision, PolicyOutcome, Verdict};
        let address = upstream().await;
        let connector = loopback_connector(&loopback_allowed());
        let allow = Decision::combine(vec![PolicyOutcome {
            policy: "test".to_owned(),
            decision: Some(Verdict::Allow),
            reason: None,
            risk_level: None,
            approvals_required: None,
            approval_timeout_seconds: None,
            eval_time_us: 0,
        }]);
        let action = |tool: &str| {
            let request = ActionRequest {
                tool: tool.to_owned(),
                operation: "GET".to_owned(),
                params: params(json!({"url": format!("http://{address}/json")})),
                context: Map::new(),
            };
            AllowedAction::from_decision("a1", request, &allow).unwrap()
        };
        for tool in [TOOL_NAME, TOOL_ALIAS] {
            let outcome = connector.execute(&action(tool)).await.unwrap();
            assert_eq!(outcome.body, json!({"hello": "world", "n": 1}));
        }
        match connector.execute(&action("shell")).await {
            Err(ConnectorError::InvalidRequest(reason)) => {
                assert!(reason.contains("tool \"shell\""), "{reason}")
            }
            other => panic!("expected invalid request, got {other:?}"),
        }
    }

    #[test]
    fn preflight_checks_method_params_and_destination_without_io() {
        let connector = loopback_connector(&HttpConnectorConfig::default());
        let check = |method: &str, given: Value| connector.preflight(method, &params(given));
        assert_eq!(check("GET", json!({"url": "https://example.com/"})), Ok(()));
        // Names are resolved and checked by `execute` only.
        assert_eq!(check("GET", json!({"url": "http://localtest.me/"})), Ok(()));
        assert!(matches!(
            check("GET", json!({"url": "http://169.254.169.254/"})),
            Err(ConnectorError::Ssrf(_))
        ));
        assert!(matches!(
            check("POST", json!({"url": "http://0x7f.1/"})),
            Err(ConnectorError::Ssrf(_))
        ));
        assert!(matches!(
            check("GET", json!({"url": "ftp://example.com/"})),
            Err(ConnectorError::Ssrf(_))
        ));
        assert!(matches!(
            check("DELETE", json!({"url": 1})),
            Err(ConnectorError::InvalidRequest(_))
        ));
        assert!(matches!(
            check("delete", json!({"url": "https://example.com/"})),
            Err(ConnectorError::InvalidRequest(_))
        ));
        let connector = loopback_connector(&HttpConnectorConfig {
            allowed_domains: vec!["api.example.com".to_owned()],
            ..HttpConnectorConfig::default()
        });
        assert_eq!(
            connector.preflight("GET", &params(json!({"url": "https://api.example.com/v1"}))),
            Ok(())
        );
        assert_eq!(
            connector.preflight("GET", &params(json!({"url": "https://www.example.com/v1"}))),
            Err(ConnectorError::Ssrf(
                "host www.example.com is not in connectors.http.allowed_domains".to_owned()
            ))
        );
        assert_eq!(
            connector
                .check_destination("https://API.example.com./x")
                .map(|url| url.to_string()),
            Ok("https://api.example.com./x".to_owned())
        );
    }

    #[test]
    fn configuration_defaults_and_validation() {
        let config: HttpConnectorConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(config, HttpConnectorConfig::default());
        assert_eq!(config.connect_timeout_ms, 5_000);
        assert_eq!(config.timeout_ms, 30_000);
        assert_eq!(config.max_response_bytes, 1_048_576);
        assert_eq!(config.max_redirects, 5);
        assert!(
            config.allowed_domains.is_empty()
                && config.allow_private_cidrs.is_empty()
                && config.ca_file.is_none()
        );

        let config: HttpConnectorConfig = serde_json::from_value(
            json!({"allow_private_cidrs": ["10.0.0.0/8", "fd00::/8"], "max_redirects": 0}),
        )
        .unwrap();
        assert_eq!(config.allow_private_cidrs.len(), 2);
        assert!(
            serde_json::from_value::<HttpConnectorConfig>(json!({"verify_tls": false})).is_err()
        );
        assert!(serde_json::from_value::<HttpConnectorConfig>(
            json!({"allow_private_cidrs": ["10.0.0.0/33"]})
        )
        .is_err());

        for bad in [
            "",
            "*",
            "*.com",
            "a.*.example.com",
            "https://example.com",
            "example.com/path",
            "example.com:443",
            "*.127.0.0.1",
            "user@example.com",
            "exa mple.com",
        ] {
            let config = HttpConnectorConfig {
                allowed_domains: vec![bad.to_owned()],
                ..HttpConnectorConfig::default()
            };
            match HttpConnector::new(&config) {
                Err(ConnectorError::InvalidRequest(reason)) => {
                    assert!(
                        reason.contains("connectors.http.allowed_domains entry"),
                        "{bad:?}: {reason}"
                    )
                }
                other => panic!("{bad:?} accepted: {other:?}"),
            }
        }
        for good in [
            "example.com",
            "*.example.com",
            "EXAMPLE.com.",
            "bücher.example",
            "10.0.0.1",
            "[::1]",
            "::1",
        ] {
            let config = HttpConnectorConfig {
                allowed_domains: vec![good.to_owned()],
                ..HttpConnectorConfig::default()
            };
            assert!(HttpConnector::new(&config).is_ok(), "{good:?}");
        }
        assert_eq!(
            AllowedHost::parse("bücher.example"),
            Ok(AllowedHost::Name("xn--bcher-kva.example".to_owned()))
        );
        assert_eq!(
            AllowedHost::parse("*.Example.COM."),
            Ok(AllowedHost::Subdomains(".example.com".to_owned()))
        );

        for (config, expected) in [
            (
                HttpConnectorConfig {
                    timeout_ms: 0,
                    ..HttpConnectorConfig::default()
                },
                "connectors.http.timeout_ms",
            ),
            (
                HttpConnectorConfig {
                    connect_timeout_ms: 0,
                    ..HttpConnectorConfig::default()
                },
                "connectors.http.connect_timeout_ms",
            ),
            (
                HttpConnectorConfig {
                    ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
                    ..HttpConnectorConfig::default()
                },
                "connectors.http.ca_file /nonexistent/ca.pem: cannot read it",
            ),
        ] {
            match HttpConnector::new(&config) {
                Err(ConnectorError::InvalidRequest(reason)) => {
                    assert!(reason.contains(expected), "{reason}")
                }
                other => panic!("expected {expected:?}, got {other:?}"),
            }
        }
        let not_pem = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_pem.path(), "not a certificate").unwrap();
        let config = HttpConnectorConfig {
            ca_file: Some(not_pem.path().to_owned()),
            ..HttpConnectorConfig::default()
        };
        match HttpConnector::new(&config) {
            Err(ConnectorError::InvalidRequest(reason)) => {
                assert!(reason.contains("holds no PEM certificate"), "{reason}")
            }
            other => panic!("expected a ca_file error, got {other:?}"),
        }
    }

    #[test]
    fn response_headers_are_lowercase_joined_and_without_cookies() {
        let mut headers = HeaderMap::new();
        headers.append("X-Multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        headers.append("Set-Cookie", HeaderValue::from_static("s=1"));
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-binary", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let map = response_headers(&headers);
        assert_eq!(map["x-multi"], json!("a, b"));
        assert_eq!(map["x-binary"], json!("caf\u{fffd}"));
        assert!(!map.contains_key("set-cookie"));
        assert!(is_json_media_type(
            "application/problem+json; charset=utf-8"
        ));
        assert!(is_json_media_type("Application/JSON"));
        assert!(!is_json_media_type("text/html"));
    }

    fn urlencode(text: &str) -> String {
        url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }
}
