# Risk review (issue 17, "Behavioural baselines and risk scores"): an action that departs
# from what its agent usually does waits for a human, and one that departs far is denied.
#
# `input.risk` is the action's behavioural risk score: `{score, factors, learning,
# baseline_actions}`, `score` in [0, 1], `factors` `[{name, contribution, detail}]`
# (`new_tool`, `new_host`, `rate_above_usual`, `unusual_hour`, `detected_secret`, ...);
# see docs/detection.md, "Risk scores". While the agent's profile is still learning, only
# the detectors' findings raise the score.
package aaf.examples.risk_review

import rego.v1

# At or above this score a human looks first.
review_at := 0.6

# At or above this score the action is denied.
deny_at := 0.9

factor_names := concat(", ", [f.name | some f in input.risk.factors])

decision := {
	"action": "deny",
	"risk_level": "critical",
	"reason": sprintf("risk score %v (%s)", [input.risk.score, factor_names]),
} if {
	input.risk.score >= deny_at
}

decision := {
	"action": "require_approval",
	"risk_level": "high",
	"reason": sprintf("risk score %v (%s): unusual for this agent", [input.risk.score, factor_names]),
} if {
	input.risk.score >= review_at
	input.risk.score < deny_at
}
