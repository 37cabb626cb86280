# Unit tests of seed 004's policy: `aaf policy test examples/policies/seed-004`.
package aaf.policy_test

import rego.v1

import data.aaf.policy

charge(amount) := {"action": {
	"tool": "http_proxy",
	"operation": "POST",
	"params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": amount}},
}}

test_stripe_charge_over_10000_requires_approval if {
	policy.decision == "require_approval" with input as charge(50000)
}

test_stripe_charge_of_10000_is_allowed if {
	policy.decision == "allow" with input as charge(10000)
}

test_private_network_is_denied if {
	policy.decision == "deny" with input as {"action": {"tool": "http_proxy", "params": {"url": "http://169.254.169.254/latest/meta-data"}}}
}

test_other_tools_are_allowed_by_default if {
	policy.decision == "allow" with input as {"action": {"tool": "knowledge_base", "params": {}}}
}
