//! The HTTP client of streamable-HTTP MCP upstreams, under the HTTP connector's SSRF guard.
//!
//! rmcp's streamable-HTTP client is built on reqwest 0.13 while the HTTP connector is on
//! reqwest 0.12, so this module builds a second client that follows the same rules
//! ([`super::http`], OWASP SSRF Prevention Cheat Sheet): the URL passes the connector's
//! pre-flight destination checks before a client is made; every name is resolved by the
//! connector's own checking resolver (a blocked address fails the lookup, and the connection
//! goes only to the checked addresses: no DNS rebinding); redirects are never followed;
//! proxies from the environment are ignored; TLS is rustls (ring) with certificate
//! verification always on, TLS 1.2 at least, the built-in roots plus `ca_file`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::http::HttpConnector;
use super::ConnectorError;

/// Makes rustls with the ring provider the process's default TLS provider (once; later calls
/// do nothing), as the other reqwest 0.13 clients in the process (rmcp's own, used by the
/// `aaf mcp stdio` bridge) need one. AAF's own clients name their provider themselves.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err: another thread installed one first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The last lookup the guard refused, kept because rmcp's errors do not carry their sources
/// (so the refusal cannot be found in the error's chain as for the HTTP connector).
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<std::sync::Mutex<Option<String>>>);

impl Refusals {
    /// The last refusal's reason, taken.
    pub fn take(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn keep(&self, reason: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
    }
}

/// Adapts the connector's (reqwest 0.12) checking resolver to reqwest 0.13.
struct Guard {
    inner: Arc<dyn reqwest::dns::Resolve>,
    refusals: Refusals,
}

impl reqwest013::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest013::dns::Name) -> reqwest013::dns::Resolving {
        match reqwest::dns::Name::from_str(name.as_str()) {
            Ok(name) => {
                let lookup = self.inner.resolve(name);
                let refusals = self.refusals.clone();
                Box::pin(async move {
                    let result = lookup.await;
                    if let Err(e) = &result {
                        if let Some(reason) = super::http::ssrf_refusal(e.as_ref()) {
                            refusals.keep(reason);
                        }
                    }
                    result
                })
            }
            Err(e) => {
                let message = format!("{:?} is not a host name: {e}", name.as_str());
                Box::pin(async move { Err(message.into()) })
            }
        }
    }
}

/// A reqwest 0.13 client for `url` with every rule of the HTTP connector, and where the
/// guard's refusals while it connects are kept.
///
/// # Errors
///
/// [`ConnectorError::Ssrf`] when `url` fails the destination checks that need no DNS (its
/// scheme, userinfo, an internal host name or reserved IP literal, `allowed_domains`);
/// [`ConnectorError::InvalidRequest`] when it is not an absolute URL or the client cannot be
/// built. A name that resolves to a reserved address fails when the client connects.
pub fn client(
    connector: &HttpConnector,
    url: &str,
) -> Result<(reqwest013::Client, Refusals), ConnectorError> {
    connector.check_destination(url)?;
    let tls = tls_config(connector.ca_pem())?;
    let refusals = Refusals::default();
    let client = reqwest013::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .redirect(reqwest013::redirect::Policy::none())
        .referer(false)
        .dns_resolver(Arc::new(Guard {
            inner: connector.checking_resolver(),
            refusals: refusals.clone(),
        }))
        .connect_timeout(Duration::from_millis(connector.connect_timeout_ms()))
        .user_agent(concat!("aaf/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConnectorError::InvalidRequest(format!("cannot build the MCP client: {e}")))?;
    Ok((client, refusals))
}

/// rustls with the ring provider, TLS 1.2 and 1.3, the webpki roots and `ca_pem`.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, ConnectorError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = ca_pem {
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate.map_err(|e| {
                ConnectorError::InvalidRequest(format!("connectors.http.ca_file: {e}"))
            })?;
            roots.add(certificate).map_err(|e| {
                ConnectorError::InvalidRequest(format!("connectors.http.ca_file: {e}"))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ConnectorError::InvalidRequest(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
