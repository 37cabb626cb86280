# Exfiltration chain (issue 17, "Session-aware policies"): once a session has read customer
# records, an outbound write to a host the session has not talked to before is denied.
#
# `input.session` holds the earlier actions of the same session (`context.session_id`, or the
# MCP session of a call through the gateway), newest first; see docs/policies.md.
package aaf.examples.exfiltration_chain

import rego.v1

# Hosts that hold customer records.
customer_hosts := {"crm.example.com", "customers.example.com"}

# Methods that send data out.
writes := {"POST", "PUT", "PATCH"}

# The host of an http(s) URL, lowercased; undefined for anything else (no scheme, userinfo),
# which counts as a host outside the allowlist. String functions only: no regex to compile
# at every evaluation.
url_host(url) := lower(host) if {
	parts := split(url, "/")
	lower(parts[0]) in {"http:", "https:"}
	parts[1] == ""
	not contains(parts[2], "@")
	host := split(split(split(parts[2], ":")[0], "?")[0], "#")[0]
	host != ""
}

# An earlier action of the session read customer records (and was not denied).
read_customer_records if {
	some earlier in input.session
	earlier.host in customer_hosts
	earlier.decision != "deny"
}

# Hosts the session already talked to.
seen_hosts contains earlier.host if {
	some earlier in input.session
	earlier.decision != "deny"
	is_string(earlier.host)
}

new_host if not url_host(input.params.url) in seen_hosts

decision := {
	"action": "deny",
	"risk_level": "critical",
	"reason": "exfiltration chain: an outbound write to a new host after reading customer records in the same session",
} if {
	input.operation in writes
	is_string(input.params.url)
	read_customer_records
	new_host
}
