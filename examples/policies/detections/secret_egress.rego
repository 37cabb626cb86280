# Secret egress (issue 17, "Detectors"): a secret found in an action's params (an API key, a
# token, a private key, ...) may only go to the hosts it belongs to.
#
# `input.detections` lists what the detectors found in the params and context:
# `[{detector, kind, path, confidence}]`, `path` an RFC 6901 JSON pointer from the action
# (`/params/body/note`); see docs/detection.md.
package aaf.examples.secret_egress

import rego.v1

# Hosts secrets may be sent to.
secret_hosts := {"api.stripe.com", "api.github.com"}

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

# The detectors that found a secret in the params (confident ones).
secrets_in_params contains d.detector if {
	some d in input.detections
	d.kind == "secret"
	startswith(d.path, "/params/")
	d.confidence >= 0.5
}

decision := {
	"action": "deny",
	"risk_level": "critical",
	"reason": sprintf("a secret (%s) may not be sent outside the allowlisted hosts", [concat(", ", sort(secrets_in_params))]),
} if {
	count(secrets_in_params) > 0
	not url_host(input.params.url) in secret_hosts
}
