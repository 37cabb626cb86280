# AAF starter policy.
#
# This file is bundled into the `aaf` binary and used when the policy directory
# (`./policies` by default) does not exist. Copy it into your own policy directory
# and edit it there.
#
# It is default deny: an action that no rule allows is denied. Two allow rules
# show safe patterns:
#   1. an HTTP GET through the `http_proxy` connector, only over https and only
#      to hosts on an explicit allowlist (the connector still blocks private and
#      internal addresses whatever this policy says);
#   2. a decision-only tool that the agent runs itself (`knowledge_base.search`).
# Writes to the same hosts need a human approval.
package aaf.starter

import rego.v1

default decision := {"action": "deny", "reason": "no rule of the starter policy allows this action"}

# Hosts agents may call through the HTTP connector. Exact host names only.
allowed_hosts := {"api.github.com", "api.stripe.com"}

# The host of an https URL, lowercased; undefined for anything else (http://, userinfo,
# IP literals in brackets, ...), so such URLs never match an allow rule.
https_host(url) := lower(m[0][1]) if {
	m := regex.find_all_string_submatch_n(`^https://([A-Za-z0-9.-]+)(?::443)?(?:[/?#]|$)`, url, 1)
	count(m) == 1
}

http_tools := {"http_proxy", "http"}

# 1. Safe allow: read-only HTTP calls to allowlisted hosts.
decision = {"action": "allow", "reason": "read-only call to an allowlisted host"} if {
	input.action.tool in http_tools
	input.action.operation in {"GET", "HEAD"}
	https_host(input.action.params.url) in allowed_hosts
	not is_private_network(input.action.params.url)
}

# Writes to allowlisted hosts wait for a human.
decision = {"action": "require_approval", "risk_level": "high", "reason": "write calls need a human approval"} if {
	input.action.tool in http_tools
	input.action.operation in {"POST", "PUT", "PATCH", "DELETE"}
	https_host(input.action.params.url) in allowed_hosts
}

# 2. Safe allow: a decision-only tool; AAF records the decision and the agent runs it.
decision = "allow" if {
	input.action.tool == "knowledge_base"
	input.action.operation == "search"
}
