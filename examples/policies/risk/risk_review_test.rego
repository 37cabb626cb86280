# Unit tests of the risk-review example: `aaf policy test examples/policies/risk`.
package aaf.examples.risk_review_test

import rego.v1

import data.aaf.examples.risk_review

new_host := {"name": "new_host", "contribution": 0.6, "detail": "upload.example.net: not among the 3 hosts of 250 actions"}

secret := {"name": "detected_secret", "contribution": 0.57, "detail": "1 finding(s) of kind secret, highest confidence 0.95"}

scored(score, factors) := {"tool": "http_proxy", "operation": "POST", "risk": {"score": score, "factors": factors, "learning": false, "baseline_actions": 250}}

test_a_usual_action_is_not_concerned if {
	not risk_review.decision with input as scored(0, [])
}

test_a_new_host_waits_for_a_human if {
	d := risk_review.decision with input as scored(0.6, [new_host])
	d.action == "require_approval"
	d.reason == "risk score 0.6 (new_host): unusual for this agent"
}

test_a_new_host_receiving_a_secret_is_denied if {
	d := risk_review.decision with input as scored(0.914, [new_host, secret])
	d.action == "deny"
	d.reason == "risk score 0.914 (new_host, detected_secret)"
}

test_a_low_score_is_not_concerned if {
	not risk_review.decision with input as scored(0.3, [{"name": "new_operation", "contribution": 0.3, "detail": ""}])
}
