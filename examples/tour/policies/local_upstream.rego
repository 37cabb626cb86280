# The README tour's addition to the starter policy (starter.rego here is a link to
# policies/starter.rego): a charge sent through the HTTP connector to the tour's local
# upstream (examples/tour/upstream.py, plain HTTP on 127.0.0.1) needs a human approval, as
# writes to the starter's allowlisted hosts do. It declares the starter's package, so it adds
# one rule to the starter's `decision` (Rego merges a package's rules across files); every
# other action is decided by the starter policy alone.
#
# The connector still refuses 127.0.0.1 unless the server runs with
# AAF_CONNECTORS__HTTP__ALLOW_PRIVATE_CIDRS='["127.0.0.1/32"]' (docs/ssrf.md), as the tour
# starts it.
package aaf.starter

import rego.v1

# The tour upstream's charges endpoint, on the IPv4 loopback address, any port.
tour_upstream_charge(url) if regex.match(`^http://127\.0\.0\.1:[0-9]{1,5}/v1/charges$`, url)

decision = {"action": "require_approval", "risk_level": "high", "reason": "write calls need a human approval"} if {
	input.action.tool in http_tools
	input.action.operation == "POST"
	tour_upstream_charge(input.action.params.url)
}
