# Unit tests of the tour's policy set: `aaf policy test examples/tour/policies`.
package aaf.tour_test

import rego.v1

import data.aaf.starter

http(operation, url) := {"action": {"tool": "http_proxy", "operation": operation, "params": {"url": url}}}

test_a_charge_to_the_tour_upstream_needs_approval if {
	starter.decision.action == "require_approval" with input as http("POST", "http://127.0.0.1:8701/v1/charges")
}

test_other_paths_and_methods_of_the_tour_upstream_are_denied if {
	starter.decision.action == "deny" with input as http("GET", "http://127.0.0.1:8701/v1/charges")
	starter.decision.action == "deny" with input as http("POST", "http://127.0.0.1:8701/v1/refunds")
	starter.decision.action == "deny" with input as http("POST", "http://127.0.0.1:8701/v1/charges?x=1")
}

test_other_loopback_hosts_are_denied if {
	starter.decision.action == "deny" with input as http("POST", "http://localhost:8701/v1/charges")
	starter.decision.action == "deny" with input as http("POST", "http://127.0.0.2:8701/v1/charges")
	starter.decision.action == "deny" with input as http("POST", "http://127.0.0.1.evil.example:8701/v1/charges")
	starter.decision.action == "deny" with input as http("POST", "http://evil.example@127.0.0.1:8701/v1/charges")
}

test_the_starter_rules_still_apply if {
	starter.decision.action == "require_approval" with input as http("POST", "https://api.stripe.com/v1/charges")
	starter.decision == "allow" with input as {"action": {"tool": "knowledge_base", "operation": "search"}}
	starter.decision.action == "deny" with input as {"action": {"tool": "shell", "operation": "exec"}}
}
