# AAF policy pack "financial": amount limits and approval thresholds per payment API.
#
# Documentation: docs/policy-packs.md#financial. Tests: financial_test.rego.
#
# Scope: HTTP connector calls (tools `http_proxy` and `http`) whose URL host is a key of
# `apis` and whose method is in that API's `methods`. For such a call the pack reads the
# amount from `params.body[amount_field]` (a JSON object body, or a form-encoded string body
# such as "amount=5000&currency=usd"; JSON text in a string is refused, as the API could
# read it as JSON or as a form) and:
#   * denies when the amount is missing, repeated, not a number, also in the URL's query
#     string, or ambiguous (a JSON body whose text also reads as a form with an amount):
#     it cannot check a limit it cannot read (fail closed);
#   * denies a negative amount;
#   * denies an amount above `max_amount`;
#   * requires a human approval for an amount above `approval_threshold` (risk "high",
#     `approvals_required` approvers when configured);
#   * abstains otherwise: the pack only restricts, other policies must allow the call.
# A call whose host the pack cannot read unambiguously (userinfo, percent-encoding,
# non-ASCII, ...) is denied when it may be a configured API; other actions: abstain.
# Invalid parameters deny every action, with a reason naming the parameter.
#
# Amounts are compared as plain numbers in the API's own unit, with no currency
# conversion. Stripe amounts are in the currency's smallest unit (cents for USD, so the
# default threshold 10000 is $100.00 and the default maximum 1000000 is $10,000.00; yen
# are zero-decimal, so 10000 is ¥10,000).
#
# Parameters: `data.packs.financial` (`PUT /v1/data/packs/financial`), all optional:
#   apis   object keyed by host name, default
#          {"api.stripe.com": {"approval_threshold": 10000, "max_amount": 1000000}}
#          Each value, all fields optional:
#            amount_field        key of params.body holding the amount, default "amount"
#            approval_threshold  number >= 0, default 0 (every positive amount needs approval)
#            max_amount          number >= 0, default none (no hard limit)
#            approvals_required  whole number 1 to 10, default: AAF's default (1)
#            methods             list of HTTP methods, default ["POST"]
#
# No time, randomness, network or `input.metadata` is used, so decisions can be cached.
package aaf.packs.financial

import rego.v1

# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------

# The parameter object, or {} when unset (also when `data.packs` does not exist).
conf := c if {
	c := data.packs.financial
	is_object(c)
} else := {}

known_parameters := {"apis"}

known_api_fields := {"amount_field", "approval_threshold", "max_amount", "approvals_required", "methods"}

default_apis := {"api.stripe.com": {"approval_threshold": 10000, "max_amount": 1000000}}

# Setting `apis` replaces the default entirely (it is not merged with it).
apis := object.get(conf, "apis", default_apis)

# The configured APIs as [lowercased host, settings with defaults filled in, methods
# covered] triples, well-typed entries only (validation below reports the rest and stops
# the pack before these are used). A constant rule: found once per revision, not in every
# decision.
api_entries := [[lower(h), api_settings(s), api_methods(s)] |
	is_object(apis)
	some h, s in apis
	is_object(s)
]

api_hosts := {e[0] | some e in api_entries}

# ---------------------------------------------------------------------------------------
# Parameter validation (fail closed: any error denies every action)
# ---------------------------------------------------------------------------------------

config_errors contains "data.packs.financial must be an object" if {
	c := data.packs.financial
	not is_object(c)
}

config_errors contains sprintf("unknown parameter %q", [k]) if {
	some k, _ in conf
	not k in known_parameters
}

config_errors contains "apis must be an object keyed by host name" if {
	not is_object(apis)
}

config_errors contains sprintf("apis: %q is not a host name (letters, digits, dots, hyphens, at least two labels; no IP address, port or scheme)", [h]) if {
	is_object(apis)
	some h, _ in apis
	not valid_host(lower(h))
}

config_errors contains sprintf("apis: host %q is listed more than once (host names are case-insensitive)", [h]) if {
	some h in api_hosts
	count([e | some e in api_entries; e[0] == h]) > 1
}

config_errors contains sprintf("apis.%s must be an object", [h]) if {
	is_object(apis)
	some h, s in apis
	not is_object(s)
}

config_errors contains sprintf("apis.%s: unknown field %q", [h, k]) if {
	is_object(apis)
	some h, s in apis
	is_object(s)
	some k, _ in s
	not k in known_api_fields
}

config_errors contains sprintf("apis.%s.amount_field must be a non-empty string", [h]) if {
	is_object(apis)
	some h, s in apis
	is_object(s)
	f := object.get(s, "amount_field", "amount")
	not non_empty_string(f)
}

config_errors contains sprintf("apis.%s.%s must be a number >= 0", [h, k]) if {
	is_object(apis)
	some h, s in apis
	is_object(s)
	some k in ["approval_threshold", "max_amount"]
	v := object.get(s, k, 0)
	not non_negative_number(v)
}

config_errors contains sprintf("apis.%s.approvals_required must be a whole number from 1 to 10", [h]) if {
	is_object(apis)
	some h, s in apis
	is_object(s)
	v := object.get(s, "approvals_required", 1)
	not approvals_count(v)
}

config_errors contains sprintf("apis.%s.methods must be a list of strings", [h]) if {
	is_object(apis)
	some h, s in apis
	is_object(s)
	v := object.get(s, "methods", ["POST"])
	not string_list(v)
}

valid_host(h) if {
	count(h) <= 253
	regex.match(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$`, h)
	not regex.match(`^(0x[0-9a-f]*|[0-9]+)$`, last_label(h))
}

last_label(name) := labels[count(labels) - 1] if {
	labels := split(name, ".")
}

non_empty_string(v) if {
	is_string(v)
	v != ""
}

non_negative_number(v) if {
	is_number(v)
	v >= 0
}

approvals_count(v) if {
	is_number(v)
	floor(v) == v
	v >= 1
	v <= 10
}

string_list(v) if {
	is_array(v)
	every x in v {
		is_string(x)
	}
}

# ---------------------------------------------------------------------------------------
# The action
# ---------------------------------------------------------------------------------------

# The action's fields, each read on its own (the pack never binds the whole input or
# input.action, so that AAF's decision cache stays on for sets that include it).
operation := o if {
	o := input.action.operation
} else := null

is_http if input.action.tool in {"http_proxy", "http"}

# `params.url` as the HTTP connector's parser (the WHATWG URL standard) reads it: leading
# and trailing spaces and control characters are ignored, tabs and newlines removed
# anywhere. Undefined when params is not an object or its url is not a string.
url := regex.replace(regex.replace(raw_url, `^[\x00-\x20]+|[\x00-\x20]+$`, ""), `[\t\n\r]`, "") if {
	p := input.action.params
	is_object(p)
	raw_url := p.url
	is_string(raw_url)
}

# The host: lowercased, without port or trailing dots. Undefined for any URL whose host is
# not plainly written (userinfo, "[IPv6]", percent-encoding, non-ASCII, no "//", ...).
# The authority ends at "/", "?", "#" or "\" ("\" is "/" in http(s) URLs).
url_host := trim_right(lower(m[0][1]), ".") if {
	m := regex.find_all_string_submatch_n(`^[A-Za-z][A-Za-z0-9+.\-]*://([A-Za-z0-9.\-]+)(?::[0-9]{1,5})?(?:[/?#\\]|$)`, url, 1)
	count(m) == 1
}

# A call with a configured method to a URL whose host cannot be read, but which may still
# reach a configured API: the URL names one, or uses percent-encoding or non-ASCII
# characters, which URL parsers decode or map (`api.%73tripe.com`, full-width letters)
# into a plain host name. (The host test comes first: the usual call, whose host reads
# plainly, fails it at once.)
host_uncertain if {
	not url_host
	is_string(url)
	operation in all_methods
	some h in api_hosts
	contains(lower(url), h)
} else if {
	not url_host
	is_string(url)
	operation in all_methods
	regex.match(`%|[^\x00-\x7f]`, url)
}

# The settings of the API this call goes to, when its method is one of the API's methods.
# (A host listed twice is a configuration error; `api` is then undefined, never in conflict.)
api := matches[0] if {
	matches := [s |
		is_http
		some e in api_entries
		e[0] == url_host
		s := e[1]
		operation in e[2]
	]
	count(matches) == 1
}

# An API's settings with the defaults filled in: amount_field, approval_threshold,
# approval_terms ({"approvals_required": n} when set, else {}), and max_amount when set
# (absent: no hard limit).
api_settings(s) := object.union(
	{
		"amount_field": object.get(s, "amount_field", "amount"),
		"approval_threshold": object.get(s, "approval_threshold", 0),
		"approval_terms": object.filter(s, ["approvals_required"]),
	},
	object.filter(s, ["max_amount"]),
)

# The methods an API's settings cover, upper case.
api_methods(s) := {upper(m) | some m in as_list(object.get(s, "methods", ["POST"])); is_string(m)}

# The methods any configured API covers.
all_methods := {m | some e in api_entries; some m in e[2]}

as_list(v) := v if {
	is_array(v)
} else := []

# `params.body`, or null when params is not an object or has no body.
body := object.get(p, "body", null) if {
	p := input.action.params
	is_object(p)
} else := null

# Query string of the URL (without the fragment), decoded as a form.
query := urlquery.decode_object(m[0][1]) if {
	m := regex.find_all_string_submatch_n(`\?([^#]*)`, url, 1)
	count(m) == 1
}

# A form-encoded string body (application/x-www-form-urlencoded), decoded as a server
# would: "#" is an ordinary character in a body (encoded so that the decoder does not
# treat it as a URL fragment). Bodies a server might split differently are not read:
# control characters (dropped by the decoder, and the line breaks of multipart bodies)
# and ";" (a pair separator for some servers).
form := urlquery.decode_object(replace(body, "#", "%23")) if {
	is_string(body)
	not regex.match(`[\x00-\x1f;]`, body)
}

form_values := object.get(form, api.amount_field, [])

# A JSON object body as a form-reading server would see it. The connector sends an object
# body as JSON text, but keeps the agent's Content-Type header: with a form content type,
# `{"amount":5,"memo":"&amount=99999999"}` is a form whose amount is 99999999. ";" is read
# as "&" too (some servers split pairs on it).
json_as_form := urlquery.decode_object(replace(replace(json.marshal(body), "#", "%23"), ";", "&")) if {
	is_object(body)
}

numeric_text(s) if regex.match(`^-?[0-9]+(\.[0-9]+)?$`, s)

# The amount, when it can be read unambiguously.
amount := body[api.amount_field] if {
	is_object(body)
	is_number(body[api.amount_field])
} else := to_number(form_values[0]) if {
	count(form_values) == 1
	numeric_text(form_values[0])
}

# Why the amount cannot be checked; undefined when `amount` is defined and unambiguous.
amount_problem := sprintf("%q is also in the URL's query string; send it in the body only", [api.amount_field]) if {
	api.amount_field in object.keys(query)
} else := sprintf("params.body's JSON text, read as a form, has its own %s field (inside a string value?)", [api.amount_field]) if {
	api.amount_field in object.keys(json_as_form)
} else := sprintf("params.body.%s is missing", [api.amount_field]) if {
	is_object(body)
	not api.amount_field in object.keys(body)
} else := sprintf("params.body.%s is not a number", [api.amount_field]) if {
	is_object(body)
	not amount
} else := "params.body is JSON text in a string; send JSON bodies as objects" if {
	is_string(body)
	json.is_valid(body)
} else := "params.body contains control characters or \";\" and cannot be read as a form" if {
	is_string(body)
	not form
} else := sprintf("params.body (form-encoded) has no %s field", [api.amount_field]) if {
	is_string(body)
	count(form_values) == 0
} else := sprintf("params.body (form-encoded) has %s more than once", [api.amount_field]) if {
	is_string(body)
	count(form_values) > 1
} else := sprintf("params.body (form-encoded) %s is not a plain decimal number", [api.amount_field]) if {
	is_string(body)
	not amount
} else := sprintf("params.body is missing or is neither an object nor a form-encoded string, so %s cannot be read", [api.amount_field]) if {
	not is_object(body)
	not is_string(body)
}

# Whether the parameters are invalid. It depends on the data document only, so AAF
# evaluates it once per revision (docs/policies.md#constant-rules); while it is undefined,
# the rule index skips this pack for every action that is not an HTTP call.
config_invalid if count(config_errors) > 0

# ---------------------------------------------------------------------------------------
# The decision: one else chain, so exactly one outcome applies; undefined (abstain) for
# actions outside the pack's scope and for amounts within the limits. Every branch but the
# first starts with the HTTP tools guard (implied by `is_http` and `api` anyway), so that
# the rule index can skip the pack for other tools (docs/policies.md#rule-index).
# ---------------------------------------------------------------------------------------

decision := {
	"action": "deny",
	"risk_level": "high",
	"reason": sprintf("financial pack: invalid parameters in data.packs.financial: %s", [concat("; ", sort(config_errors))]),
} if {
	config_invalid
} else := {
	"action": "deny",
	"risk_level": "high",
	"reason": "financial pack: cannot read the host of params.url unambiguously, and it may be a payment API",
} if {
	input.action.tool in {"http_proxy", "http"}
	is_http
	host_uncertain
} else := {
	"action": "deny",
	"risk_level": "high",
	"reason": sprintf("financial pack: %s %s: %s (the amount limit cannot be checked)", [operation, url_host, problem]),
} if {
	input.action.tool in {"http_proxy", "http"}
	api
	problem := amount_problem
} else := {
	"action": "deny",
	"risk_level": "high",
	"reason": sprintf("financial pack: %s %s: negative amount %v", [operation, url_host, amount]),
} if {
	input.action.tool in {"http_proxy", "http"}
	api
	amount < 0
} else := {
	"action": "deny",
	"risk_level": "high",
	"reason": sprintf("financial pack: %s %s: amount %v exceeds max_amount %v", [operation, url_host, amount, api.max_amount]),
} if {
	input.action.tool in {"http_proxy", "http"}
	api
	amount > api.max_amount
} else := object.union(
	{
		"action": "require_approval",
		"risk_level": "high",
		"reason": sprintf("financial pack: %s %s: amount %v exceeds the approval threshold %v", [operation, url_host, amount, api.approval_threshold]),
	},
	api.approval_terms,
) if {
	input.action.tool in {"http_proxy", "http"}
	api
	amount > api.approval_threshold
}
