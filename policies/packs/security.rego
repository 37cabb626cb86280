# AAF policy pack "security": SSRF protection, a domain allowlist, default deny.
#
# Documentation: docs/policy-packs.md#security. Tests: security_test.rego.
#
# What it decides:
#   * HTTP connector calls (tools `http_proxy` and `http`): the URL in `params.url` must be
#     https (plain http only with `allow_http`), without userinfo (`user@host`), on a host
#     name (never an IP literal) that is not private or internal (`is_private_network`), on
#     the scheme's default port or one of `allowed_ports`, and on `allowed_domains`. A call
#     that passes is allowed when its method is in `allowed_methods`, needs a human approval
#     when it is in `approval_methods`, and is denied otherwise.
#   * Any other tool is denied unless `"tool"` or `"tool.operation"` is in `allowed_tools`.
#   * Invalid parameters deny every action, with a reason naming the parameter.
#
# This pack never abstains: it is a default-deny pack. Following OWASP's SSRF Prevention
# Cheat Sheet, it accepts only what it can read unambiguously and denies the rest (odd URL
# forms are denied, not interpreted). The HTTP connector independently refuses private
# addresses, after DNS resolution too (docs/ssrf.md); this pack is an earlier, explainable
# layer, not a replacement.
#
# Parameters: the organisation's data document `data.packs.security`
# (`PUT /v1/data/packs/security`). Every parameter is optional:
#   allow_http        boolean, default false
#   allowed_domains   list of host names or "*.suffix" patterns, default [] (deny all HTTP)
#   allowed_methods   list of HTTP methods, default ["GET", "HEAD"]
#   approval_methods  list of HTTP methods, default ["POST", "PUT", "PATCH", "DELETE"]
#   allowed_ports     list of port numbers besides the scheme's default, default []
#   allowed_tools     list of "tool" or "tool.operation" names, default []
#
# No time, randomness, network or `input.metadata` is used, so decisions can be cached.
package aaf.packs.security

import rego.v1

# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------

# The parameter object, or {} when the organisation has not set one (or `data.packs` does
# not exist at all). A value that is not an object is reported in `config_errors`.
conf := c if {
	c := data.packs.security
	is_object(c)
} else := {}

known_parameters := {
	"allow_http",
	"allowed_domains",
	"allowed_methods",
	"approval_methods",
	"allowed_ports",
	"allowed_tools",
}

allow_http := object.get(conf, "allow_http", false)

allowed_domains := object.get(conf, "allowed_domains", [])

allowed_methods := object.get(conf, "allowed_methods", ["GET", "HEAD"])

approval_methods := object.get(conf, "approval_methods", ["POST", "PUT", "PATCH", "DELETE"])

allowed_ports := object.get(conf, "allowed_ports", [])

allowed_tools := object.get(conf, "allowed_tools", [])

# Normalised views. They only read well-typed entries, so they never fail; wrong types are
# reported by `config_errors`, which stops the pack before these are used.
domain_patterns := {lower(d) | some d in as_list(allowed_domains); is_string(d)}

allowed_method_set := {upper(m) | some m in as_list(allowed_methods); is_string(m)}

approval_method_set := {upper(m) | some m in as_list(approval_methods); is_string(m)}

allowed_port_set := {p | some p in as_list(allowed_ports); is_number(p)}

allowed_tool_set := {t | some t in as_list(allowed_tools); is_string(t)}

as_list(v) := v if {
	is_array(v)
} else := []

string_list(v) if {
	is_array(v)
	every x in v {
		is_string(x)
	}
}

# ---------------------------------------------------------------------------------------
# Parameter validation (fail closed: any error denies every action)
# ---------------------------------------------------------------------------------------

config_errors contains "data.packs.security must be an object" if {
	c := data.packs.security
	not is_object(c)
}

config_errors contains sprintf("unknown parameter %q", [k]) if {
	some k, _ in conf
	not k in known_parameters
}

config_errors contains "allow_http must be true or false" if {
	not is_boolean(allow_http)
}

config_errors contains sprintf("%s must be a list of strings", [name]) if {
	some name in ["allowed_domains", "allowed_methods", "approval_methods", "allowed_tools"]
	not string_list(object.get(conf, name, []))
}

config_errors contains sprintf("allowed_domains: %q is not a host name or \"*.\" pattern of at least two labels (no IP address, scheme, port, path or trailing dot)", [d]) if {
	some d in as_list(allowed_domains)
	is_string(d)
	not valid_domain_pattern(lower(d))
}

config_errors contains "allowed_ports must be a list of port numbers (whole numbers 1 to 65535)" if {
	not valid_port_list(allowed_ports)
}

# "api.example.com" or "*.example.com": letters, digits and hyphens, at least two labels,
# no trailing dot, and not an IP address (last label not numeric).
valid_domain_pattern(d) if {
	regex.match(`^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$`, d)
	not numeric_label(last_label(d))
}

valid_port_list(v) if {
	is_array(v)
	every p in v {
		is_number(p)
		floor(p) == p
		p >= 1
		p <= 65535
	}
}

# ---------------------------------------------------------------------------------------
# The action
# ---------------------------------------------------------------------------------------

# The action's fields, each read on its own (the pack never binds the whole input or
# input.action, so that AAF's decision cache stays on for sets that include it).
tool := t if {
	t := input.action.tool
} else := null

operation := o if {
	o := input.action.operation
} else := null

http_tools := {"http_proxy", "http"}

is_http if input.action.tool in http_tools

# ---------------------------------------------------------------------------------------
# URL parsing: strict on purpose. Only `scheme://authority[/?#...]` with a plain
# authority is read; everything else is denied with a reason rather than interpreted.
# ---------------------------------------------------------------------------------------

# `params.url`, or null when params is not an object or has no url.
url := object.get(p, "url", null) if {
	p := input.action.params
	is_object(p)
} else := null

# The URL's scheme, lowercased, and its authority, when the URL reads as
# `scheme://authority...`. The authority ends at the first "/", "?", "#" or "\" (the WHATWG
# URL standard treats "\" as "/" in http(s) URLs). One rule for both (and one for the host
# and port below) rather than one rule per part: a decision evaluates fewer rules.
url_parts := {"scheme": lower(m[0][1]), "authority": m[0][2]} if {
	is_string(url)
	m := regex.find_all_string_submatch_n(`^([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#\\]*)`, url, 1)
	count(m) == 1
}

# The authority's host, lowercased (host names are case-insensitive), and its decimal port
# as written ("" when none; leading zeros dropped, as the URL standard does), when the host
# is letters, digits, dots and hyphens. Userinfo, "[IPv6]", percent-encoding and non-ASCII
# never match.
host_port := {"host": lower(m[0][1]), "port": m[0][2]} if {
	m := regex.find_all_string_submatch_n(`^([A-Za-z0-9.\-]+)(?::0*([0-9]{1,5}))?$`, url_parts.authority, 1)
	count(m) == 1
}

port := to_number(host_port.port) if host_port.port != ""

default_ports := {"https": 443, "http": 80}

# One rule with `else` branches rather than one rule per case: the first case that holds
# decides, and a decision evaluates one rule instead of three (the same holds below).
port_ok if {
	not port
} else if {
	port == default_ports[url_parts.scheme]
} else if {
	port in allowed_port_set
}

# A DNS host name: labels of letters, digits and hyphens, no empty label, no trailing dot.
plain_host if {
	count(host_port.host) <= 253
	regex.match(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`, host_port.host)
}

# An IP literal: "[...]" (IPv6), or a host whose last label is a number, which the URL
# standard parses as IPv4 in any notation (127.0.0.1, 127.1, 2130706433, 0x7f000001, ...).
ip_literal if {
	startswith(url_parts.authority, "[")
} else if {
	# numeric_label(last_label(...)), written out: a function call costs more than the
	# two built-ins it makes (docs/performance.md).
	labels := split(trim_suffix(host_port.host, "."), ".")
	regex.match(`^(0[xX][0-9A-Fa-f]*|[0-9]+)$`, labels[count(labels) - 1])
}

last_label(name) := labels[count(labels) - 1] if {
	labels := split(name, ".")
}

numeric_label(label) if regex.match(`^(0[xX][0-9A-Fa-f]*|[0-9]+)$`, label)

scheme_ok if {
	url_parts.scheme == "https"
} else if {
	url_parts.scheme == "http"
	allow_http == true
}

private_target if {
	is_string(host_port.host)
	is_private_network(host_port.host)
} else if {
	is_string(url)
	is_private_network(url)
}

# "api.example.com" matches itself; "*.example.com" matches any name ending in
# ".example.com" (not "example.com" itself: list it too if needed).
domain_allowed if {
	host_port.host in domain_patterns
} else if {
	some d in domain_patterns
	startswith(d, "*.")
	endswith(host_port.host, substring(d, 1, -1))
}

# The first reason to refuse an HTTP call, in this order; undefined when the URL passes.
http_problem := "params.url is missing or is not a string" if {
	not is_string(url)
} else := "params.url contains a backslash, whitespace or a control character" if {
	regex.match(`[\s\x00-\x1f\x7f\\]`, url)
} else := "params.url is not an absolute URL of the form scheme://host/path" if {
	not url_parts
} else := "plain http is not allowed; use https, or set allow_http to true" if {
	url_parts.scheme == "http"
	not scheme_ok
} else := sprintf("URL scheme %q is not allowed; only https (and http with allow_http)", [url_parts.scheme]) if {
	not scheme_ok
} else := "URLs with userinfo (user@host) are not allowed; send credentials in a header" if {
	contains(url_parts.authority, "@")
} else := sprintf("the URL's host %q is an IP address literal; use an allowlisted host name", [url_parts.authority]) if {
	ip_literal
} else := sprintf("the URL's host %q is not a plain DNS host name (letters, digits, dots, hyphens, no trailing dot)", [url_parts.authority]) if {
	not plain_host
} else := sprintf("port %v is not allowed for %s; add it to allowed_ports", [port, url_parts.scheme]) if {
	not port_ok
} else := sprintf("host %q is a private, internal or reserved address (SSRF protection)", [host_port.host]) if {
	private_target
} else := "no domain is allowlisted: set allowed_domains in data.packs.security; until then every HTTP call is denied" if {
	count(domain_patterns) == 0
} else := sprintf("host %q is not on allowed_domains", [host_port.host]) if {
	not domain_allowed
}

# ---------------------------------------------------------------------------------------
# Non-HTTP tools
# ---------------------------------------------------------------------------------------

# The allowed_tools entry that allows this action: "tool" or "tool.operation".
tool_entry := tool if {
	tool in allowed_tool_set
} else := entry if {
	is_string(tool)
	is_string(operation)
	entry := concat(".", [tool, operation])
	entry in allowed_tool_set
}

# ---------------------------------------------------------------------------------------
# The decision: one else chain, so exactly one outcome applies.
# ---------------------------------------------------------------------------------------

decision := {
	"action": "deny",
	"risk_level": "high",
	"reason": sprintf("security pack: invalid parameters in data.packs.security: %s", [concat("; ", sort(config_errors))]),
} if {
	count(config_errors) > 0
} else := {
	"action": "deny",
	"risk_level": "high",
	"reason": sprintf("security pack: %s", [problem]),
} if {
	is_http
	problem := http_problem
} else := {
	"action": "allow",
	"risk_level": "low",
	"reason": sprintf("security pack: %s to allowlisted host %s", [operation, host_port.host]),
} if {
	is_http
	operation in allowed_method_set
} else := {
	"action": "require_approval",
	"risk_level": "medium",
	"reason": sprintf("security pack: %s to allowlisted host %s needs a human approval", [operation, host_port.host]),
} if {
	is_http
	operation in approval_method_set
} else := {
	"action": "deny",
	"risk_level": "high",
	"reason": sprintf("security pack: HTTP method %v is in neither allowed_methods nor approval_methods", [operation]),
} if {
	is_http
} else := {
	"action": "allow",
	"risk_level": "low",
	"reason": sprintf("security pack: %s is on allowed_tools", [entry]),
} if {
	# With no allowed_tools (the default), tool_entry is not evaluated at all.
	count(allowed_tool_set) > 0
	entry := tool_entry
} else := {
	"action": "deny",
	"risk_level": "high",
	"reason": sprintf("security pack: default deny: tool %v (operation %v) is not on allowed_tools", [tool, operation]),
}
