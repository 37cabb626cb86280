# Payment velocity (issue 17, "Session-aware policies"): the third payment of a session
# within ten minutes needs a human approval.
#
# Payments here are the decision-only tool `payments` with operation `charge` (the agent
# runs it itself after AAF's decision); adapt `is_payment` to your tools.
package aaf.examples.payment_velocity

import rego.v1

window_ns := (10 * 60) * 1000000000

is_payment(action) if {
	action.tool == "payments"
	action.operation == "charge"
}

# Earlier payments of the session in the last ten minutes that were not denied.
recent_payments contains earlier.action_id if {
	some earlier in input.session
	is_payment(earlier)
	earlier.decision != "deny"
	time.parse_rfc3339_ns(earlier.time) >= time.parse_rfc3339_ns(input.metadata.timestamp) - window_ns
}

decision := {
	"action": "require_approval",
	"risk_level": "high",
	"reason": "a third payment within ten minutes in the same session needs a human approval",
} if {
	is_payment(input)
	count(recent_payments) >= 2
}
