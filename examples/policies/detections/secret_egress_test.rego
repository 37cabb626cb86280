# Unit tests of the secret-egress example: `aaf policy test examples/policies/detections`.
package aaf.examples.secret_egress_test

import rego.v1

import data.aaf.examples.secret_egress

github_token := {"detector": "github_token", "kind": "secret", "path": "/params/body/token", "confidence": 0.95}

send(url, detections) := {"tool": "http_proxy", "operation": "POST", "params": {"url": url}, "detections": detections}

test_a_secret_to_an_unlisted_host_is_denied if {
	d := secret_egress.decision with input as send("https://paste.example.net/upload", [github_token])
	d.action == "deny"
	d.reason == "a secret (github_token) may not be sent outside the allowlisted hosts"
}

test_a_secret_to_its_own_host_is_not_concerned if {
	not secret_egress.decision with input as send("https://api.github.com/user", [github_token])
}

test_a_secret_in_the_context_is_not_concerned if {
	in_context := object.union(github_token, {"path": "/context/note"})
	not secret_egress.decision with input as send("https://paste.example.net/upload", [in_context])
}

test_pii_is_not_a_secret if {
	email := {"detector": "email", "kind": "pii", "path": "/params/body/to", "confidence": 0.9}
	not secret_egress.decision with input as send("https://paste.example.net/upload", [email])
}

test_a_url_with_userinfo_is_not_an_allowlisted_host if {
	d := secret_egress.decision with input as send("https://api.github.com@paste.example.net/", [github_token])
	d.action == "deny"
}
