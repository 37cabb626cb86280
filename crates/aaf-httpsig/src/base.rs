//! Component values and the signature base (RFC 9421 §2).

use http::{HeaderMap, HeaderName, Method, Uri};
use sfv::{KeyRef, ListSerializer, StringRef};

use crate::SigError;

/// The request a signature base is built from.
///
/// `target_uri` is the absolute target URI (RFC 9110 §7.1), `scheme://authority/path?query`,
/// `http` or `https`, without userinfo or fragment. The derived components `@authority`,
/// `@scheme`, `@path`, `@query` and `@request-target` are computed from it; `@target-uri` is
/// the string itself, byte for byte. A server reconstructs it with [`crate::target_uri`].
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The request method (`@method`, RFC 9421 §2.2.1).
    pub method: &'a Method,
    /// The absolute target URI (`@target-uri`, RFC 9421 §2.2.2).
    pub target_uri: &'a str,
    /// The request's header fields (HTTP field components, RFC 9421 §2.1).
    pub headers: &'a HeaderMap,
}

/// One signature parameter (RFC 9421 §2.3), in the order it is serialised.
///
/// Times are Unix seconds. String values must be RFC 8941 Strings: printable ASCII (0x20 to
/// 0x7E); `"` and `\` are escaped when serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureParam {
    /// `created`: when the signature was made, Unix seconds.
    Created(i64),
    /// `expires`: after this time the signature is not valid, Unix seconds.
    Expires(i64),
    /// `nonce`: a value the verifier may refuse to see twice.
    Nonce(String),
    /// `alg`: the signature algorithm; only `ed25519` is accepted.
    Alg(String),
    /// `keyid`: names the key that verifies the signature.
    KeyId(String),
    /// `tag`: an application-specific tag.
    Tag(String),
}

impl SignatureParam {
    /// The parameter's name as it appears in `Signature-Input` (`created`, `keyid`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            SignatureParam::Created(_) => "created",
            SignatureParam::Expires(_) => "expires",
            SignatureParam::Nonce(_) => "nonce",
            SignatureParam::Alg(_) => "alg",
            SignatureParam::KeyId(_) => "keyid",
            SignatureParam::Tag(_) => "tag",
        }
    }
}

/// The derived components this crate computes (RFC 9421 §2.2), for requests.
pub const DERIVED_COMPONENTS: [&str; 7] = [
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@request-target",
    "@path",
    "@query",
];

/// The target URI, parsed and checked once.
struct Target<'a> {
    raw: &'a str,
    scheme: String,
    authority: String,
    path: String,
    query: Option<String>,
}

fn parse_target(target_uri: &str) -> Result<Target<'_>, SigError> {
    let bad = |reason: &str| SigError::malformed("@target-uri", reason);
    let uri: Uri = target_uri
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| bad("not an absolute URI (no scheme)"))?
        .to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad("scheme must be http or https"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| bad("not an absolute URI (no authority)"))?
        .as_str();
    if authority.contains('@') {
        return Err(bad("userinfo is not allowed"));
    }
    if authority.is_empty() {
        return Err(bad("empty authority"));
    }
    let path = match uri.path() {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    Ok(Target {
        raw: target_uri,
        authority: normalize_authority(&scheme, authority),
        scheme,
        path,
        query: uri.query().map(str::to_owned),
    })
}

/// Lowercases the authority and drops the scheme's default port (RFC 9110 §4.2.3).
fn normalize_authority(scheme: &str, authority: &str) -> String {
    let lower = authority.to_ascii_lowercase();
    let default_port = match scheme {
        "http" => Some(":80"),
        "https" => Some(":443"),
        _ => None,
    };
    match default_port.and_then(|p| lower.strip_suffix(p)) {
        // `[::1]:443` strips to `[::1]`; a bare IPv6 literal cannot end in `:443`
        // because it is bracketed.
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => lower,
    }
}

/// Builds a target URI from a server's view of a request: `scheme://authority` followed by
/// `path_and_query` (RFC 9110 §7.1).
///
/// The scheme and authority are lowercased and the scheme's default port (`:80` for `http`,
/// `:443` for `https`) is dropped (RFC 9110 §4.2.3); an empty `path_and_query` becomes `/`,
/// and one without a leading `/` gets one. `path_and_query` is otherwise kept as received: it
/// must be the request's origin-form target (`/v1/actions?x=1`), not decoded.
///
/// A server takes `scheme` and `authority` from its configured public base URL (preferred:
/// behind a proxy the request's own `Host` and scheme are those of the last hop), or else from
/// the connection's scheme and the `Host` header. Signers must sign the same string, so they
/// should sign the URL as they send it, with a lowercase host and no default port.
///
/// ```
/// assert_eq!(
///     aaf_httpsig::target_uri("HTTPS", "AAF.example.com:443", "/v1/actions?dry=1"),
///     "https://aaf.example.com/v1/actions?dry=1"
/// );
/// ```
pub fn target_uri(scheme: &str, authority: &str, path_and_query: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    let authority = normalize_authority(&scheme, authority);
    let path = if path_and_query.is_empty() {
        "/".to_owned()
    } else if path_and_query.starts_with('/') {
        path_and_query.to_owned()
    } else {
        format!("/{path_and_query}")
    };
    format!("{scheme}://{authority}{path}")
}

/// Checks a component identifier's name (RFC 9421 §2): a supported derived component, or a
/// lowercase HTTP field name.
pub(crate) fn check_component_name(name: &str) -> Result<(), SigError> {
    if name.starts_with('@') {
        if name == "@signature-params" {
            return Err(SigError::malformed(
                "signature-input",
                "`@signature-params` cannot be a covered component (RFC 9421 §2.3)",
            ));
        }
        if !DERIVED_COMPONENTS.contains(&name) {
            return Err(SigError::UnsupportedComponent(name.to_owned()));
        }
        return Ok(());
    }
    if name.is_empty() {
        return Err(SigError::malformed(
            "signature-input",
            "empty component name",
        ));
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(SigError::malformed(
            "signature-input",
            format!("component name `{name}` must be lowercase (RFC 9421 §2.1)"),
        ));
    }
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        SigError::malformed(
            "signature-input",
            format!("component name `{name}` is not a field name"),
        )
    })?;
    Ok(())
}

fn field_value(name: &str, headers: &HeaderMap) -> Result<String, SigError> {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return Err(SigError::ComponentUnavailable(name.to_owned()));
    }
    let mut parts = Vec::new();
    for value in values {
        let text = value
            .to_str()
            .map_err(|_| SigError::malformed(name, "field value is not visible ASCII"))?;
        // RFC 9421 §2.1: strip leading and trailing whitespace from each field line value.
        parts.push(text.trim_matches(|c| c == ' ' || c == '\t'));
    }
    // RFC 9421 §2.1: several field lines are joined with a comma and a space.
    Ok(parts.join(", "))
}

fn component_value_parsed(
    name: &str,
    method: &Method,
    target: &Target<'_>,
    headers: &HeaderMap,
) -> Result<String, SigError> {
    check_component_name(name)?;
    Ok(match name {
        // RFC 9421 §2.2.1: the method as sent; methods are case-sensitive.
        "@method" => method.as_str().to_owned(),
        // §2.2.2: the full target URI.
        "@target-uri" => target.raw.to_owned(),
        // §2.2.3: the authority, normalised per RFC 9110 §4.2.3.
        "@authority" => target.authority.clone(),
        // §2.2.4: the scheme, lowercase.
        "@scheme" => target.scheme.clone(),
        // §2.2.5: the request target; origin-form for the requests this crate handles.
        "@request-target" => match &target.query {
            Some(q) => format!("{}?{q}", target.path),
            None => target.path.clone(),
        },
        // §2.2.6: the absolute path, `/` when empty.
        "@path" => target.path.clone(),
        // §2.2.7: `?` and the query, or `?` alone when there is none.
        "@query" => format!("?{}", target.query.as_deref().unwrap_or("")),
        _ => field_value(name, headers)?,
    })
}

/// The value of one covered component of a request (RFC 9421 §2.1 and §2.2).
///
/// `component` is a derived component from [`DERIVED_COMPONENTS`] or a lowercase field name.
/// A field's value is each field line's value with surrounding spaces and tabs stripped, joined
/// with `", "`.
///
/// # Errors
/// [`SigError::UnsupportedComponent`] for other derived components,
/// [`SigError::ComponentUnavailable`] when the field is absent, [`SigError::Malformed`] for an
/// invalid name, a field value that is not visible ASCII or a bad target URI.
pub fn component_value(component: &str, request: &RequestParts<'_>) -> Result<String, SigError> {
    let target = parse_target(request.target_uri)?;
    component_value_parsed(component, request.method, &target, request.headers)
}

/// The `@signature-params` value: the covered components as an RFC 8941 Inner List of Strings,
/// with the parameters in the given order (RFC 9421 §2.3). This is also the value of the label's
/// member in `Signature-Input` (RFC 9421 §4.1).
///
/// ```
/// use aaf_httpsig::{signature_params_value, SignatureParam};
/// let v = signature_params_value(
///     &["@method", "@target-uri"],
///     &[SignatureParam::Created(1618884473), SignatureParam::KeyId("k1".into())],
/// ).unwrap();
/// assert_eq!(v, r#"("@method" "@target-uri");created=1618884473;keyid="k1""#);
/// ```
///
/// # Errors
/// [`SigError::Malformed`] when a component name or string parameter is not a valid RFC 8941
/// String, an integer is out of RFC 8941 range (±999,999,999,999,999), or a parameter is
/// repeated.
pub fn signature_params_value<S: AsRef<str>>(
    covered: &[S],
    params: &[SignatureParam],
) -> Result<String, SigError> {
    let mut ser = ListSerializer::new();
    {
        let mut inner = ser.inner_list();
        for component in covered {
            let s = StringRef::from_str(component.as_ref()).map_err(|e| {
                SigError::malformed("signature-input", format!("component name: {e}"))
            })?;
            let _ = inner.bare_item(s);
        }
        let mut p = inner.finish();
        let mut seen: Vec<&'static str> = Vec::with_capacity(params.len());
        for param in params {
            let name = param.name();
            if seen.contains(&name) {
                return Err(SigError::malformed(
                    name,
                    "signature parameter given more than once",
                ));
            }
            seen.push(name);
            let key =
                KeyRef::from_str(name).map_err(|e| SigError::malformed(name, e.to_string()))?;
            p = match param {
                SignatureParam::Created(t) | SignatureParam::Expires(t) => {
                    let i = sfv::Integer::try_from(*t)
                        .map_err(|e| SigError::malformed(name, e.to_string()))?;
                    p.parameter(key, i)
                }
                SignatureParam::Nonce(s)
                | SignatureParam::Alg(s)
                | SignatureParam::KeyId(s)
                | SignatureParam::Tag(s) => {
                    let v = StringRef::from_str(s)
                        .map_err(|e| SigError::malformed(name, e.to_string()))?;
                    p.parameter(key, v)
                }
            };
        }
    }
    ser.finish()
        .ok_or_else(|| SigError::malformed("signature-input", "empty serialisation"))
}

/// The signature base of a request (RFC 9421 §2.5).
///
/// One line per covered component, `"<name>": <value>`, in the given order, then
/// `"@signature-params": <signature_params_value>`; lines are separated by `\n` and the last has
/// no trailing newline. The result is what the Ed25519 key signs, as ASCII bytes.
///
/// # Errors
/// [`SigError::Malformed`] for a repeated component (RFC 9421 §2.5) and everything
/// [`component_value`] and [`signature_params_value`] refuse.
pub fn signature_base<S: AsRef<str>>(
    request: &RequestParts<'_>,
    covered: &[S],
    params: &[SignatureParam],
) -> Result<String, SigError> {
    let target = parse_target(request.target_uri)?;
    let mut base = String::new();
    for (i, component) in covered.iter().enumerate() {
        let name = component.as_ref();
        if covered[..i].iter().any(|c| c.as_ref() == name) {
            return Err(SigError::malformed(
                "signature-input",
                format!("component `{name}` is covered more than once"),
            ));
        }
        let value = component_value_parsed(name, request.method, &target, request.headers)?;
        base.push('"');
        base.push_str(name);
        base.push_str("\": ");
        base.push_str(&value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&signature_params_value(covered, params)?);
    Ok(base)
}
