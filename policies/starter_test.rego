# Unit tests of the starter policy: `aaf policy test policies` (as `opa test` would run them).
package aaf.starter_test

import rego.v1

import data.aaf.starter

http(operation, url) := {"action": {"tool": "http_proxy", "operation": operation, "params": {"url": url}}}

test_get_to_an_allowlisted_host_is_allowed if {
	starter.decision.action == "allow" with input as http("GET", "https://api.github.com/repos/x/y")
}

test_get_to_another_host_is_denied if {
	starter.decision.action == "deny" with input as http("GET", "https://evil.example/")
}

test_plain_http_is_denied if {
	starter.decision.action == "deny" with input as http("GET", "http://api.github.com/")
}

test_lookalike_host_is_denied if {
	starter.decision.action == "deny" with input as http("GET", "https://api.github.com.evil.example/")
}

test_userinfo_trick_is_denied if {
	starter.decision.action == "deny" with input as http("GET", "https://api.github.com@evil.example/")
}

test_writes_need_approval if {
	d := starter.decision with input as http("POST", "https://api.stripe.com/v1/charges")
	d.action == "require_approval"
	d.risk_level == "high"
}

test_knowledge_base_search_is_allowed if {
	starter.decision == "allow" with input as {"action": {"tool": "knowledge_base", "operation": "search"}}
}

test_anything_else_is_denied if {
	starter.decision.action == "deny" with input as {"action": {"tool": "shell", "operation": "exec"}}
}
