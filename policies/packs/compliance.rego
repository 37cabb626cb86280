# AAF policy pack "compliance": personal data and payment card numbers in action
# parameters, and audit context every action must carry.
#
# Documentation: docs/policy-packs.md#compliance. Tests: compliance_test.rego.
#
# What it decides:
#   * A payment card number (PAN) anywhere in `params` (`has_credit_card`): `on_credit_card`
#     (default "deny"). PCI DSS requires card numbers to be protected wherever they are
#     stored, processed or transmitted; an agent should not move them through tools.
#     Applies to every tool, including `exempt_tools`.
#   * Personal data anywhere in `params` (`has_pii`: a US Social Security number or a card
#     number): `on_pii` (default "require_approval"). Tools in `exempt_tools` skip this rule.
#     A card number is PII too, so it triggers both rules; the stricter outcome wins.
#   * Audit requirements: every field of `required_context` must be present in the action's
#     `context` and not null or blank; otherwise `on_missing_context` (default "deny"),
#     with a reason listing the missing fields.
#   * Invalid parameters deny every action, with a reason naming the parameter.
#
# When nothing fires, the pack abstains: it never allows an action by itself.
#
# Parameters: `data.packs.compliance` (`PUT /v1/data/packs/compliance`), all optional:
#   on_pii              "deny" | "require_approval", default "require_approval"
#   on_credit_card      "deny" | "require_approval", default "deny"
#   exempt_tools        list of tool names skipped by the PII rule, default []
#   required_context    list of context field names, default [] (no requirement)
#   on_missing_context  "deny" | "require_approval", default "deny"
#
# Detection is pattern matching on plain text (see docs/policies.md, "Built-in functions"):
# encoded data (base64, percent-encoding, encryption) is not seen. No time, randomness,
# network or `input.metadata` is used, so decisions can be cached.
package aaf.packs.compliance

import rego.v1

# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------

# The parameter object, or {} when unset (also when `data.packs` does not exist).
conf := c if {
	c := data.packs.compliance
	is_object(c)
} else := {}

known_parameters := {"on_pii", "on_credit_card", "exempt_tools", "required_context", "on_missing_context"}

outcomes := {"deny", "require_approval"}

on_pii := object.get(conf, "on_pii", "require_approval")

on_credit_card := object.get(conf, "on_credit_card", "deny")

on_missing_context := object.get(conf, "on_missing_context", "deny")

exempt_tools := object.get(conf, "exempt_tools", [])

required_context := object.get(conf, "required_context", [])

as_list(v) := v if {
	is_array(v)
} else := []

string_list(v) if {
	is_array(v)
	every x in v {
		is_string(x)
	}
}

# ---------------------------------------------------------------------------------------
# Parameter validation (fail closed: any error denies every action)
# ---------------------------------------------------------------------------------------

config_errors contains "data.packs.compliance must be an object" if {
	c := data.packs.compliance
	not is_object(c)
}

config_errors contains sprintf("unknown parameter %q", [k]) if {
	some k, _ in conf
	not k in known_parameters
}

config_errors contains sprintf("%s must be \"deny\" or \"require_approval\"", [name]) if {
	some name in ["on_pii", "on_credit_card", "on_missing_context"]
	not object.get(conf, name, "deny") in outcomes
}

config_errors contains sprintf("%s must be a list of strings", [name]) if {
	some name in ["exempt_tools", "required_context"]
	not string_list(object.get(conf, name, []))
}

config_errors contains "required_context must not contain empty field names" if {
	some f in as_list(required_context)
	f == ""
}

# ---------------------------------------------------------------------------------------
# The action
# ---------------------------------------------------------------------------------------

# The action's fields, each read on its own (the pack never binds the whole input or
# input.action, so that AAF's decision cache stays on for sets that include it).
params := p if {
	p := input.action.params
} else := {}

context := c if {
	c := input.action.context
	is_object(c)
} else := {}

# The exempt tools as a set (a constant rule: evaluated once per revision).
exempt_tool_set := {t | some t in as_list(exempt_tools); is_string(t)}

# The required context fields that are strings (a constant rule, like the one above).
required_fields := [f | some f in as_list(required_context); is_string(f)]

# ---------------------------------------------------------------------------------------
# Findings: {"action", "reason"} for every check that fires. One rule, the union of one set
# comprehension per check, rather than one `findings contains` rule per check: a decision
# evaluates one rule instead of three (docs/performance.md).
# ---------------------------------------------------------------------------------------

findings := {f |
	has_credit_card(params)
	f := {
		"action": on_credit_card,
		"reason": "params contain a payment card number (PCI DSS: card numbers must not pass through agents' tools)",
	}
} | {f |
	# Tools on exempt_tools are exempt from this check only.
	not input.action.tool in exempt_tool_set
	has_pii(params)
	f := {
		"action": on_pii,
		"reason": "params contain personal data (a US Social Security number or a payment card number)",
	}
} | {f |
	# No field required (the default): missing_context is not evaluated at all.
	count(required_fields) > 0
	count(missing_context) > 0
	f := {
		"action": on_missing_context,
		"reason": sprintf("context is missing required fields: %s", [concat(", ", missing_context)]),
	}
}

# A required field is missing when absent, null, or a string that is empty or blank.
missing_context := sort({f |
	some f in required_fields
	not context_present(f)
})

context_present(f) if {
	v := context[f]
	v != null
	not blank(v)
}

blank(v) if {
	is_string(v)
	trim_space(v) == ""
}

reasons(outcome) := concat("; ", sort({f.reason | some f in findings; f.action == outcome}))

# ---------------------------------------------------------------------------------------
# The decision: one else chain, so exactly one outcome applies; undefined (abstain) when
# no rule fires.
# ---------------------------------------------------------------------------------------

decision := {
	"action": "deny",
	"risk_level": "high",
	"reason": sprintf("compliance pack: invalid parameters in data.packs.compliance: %s", [concat("; ", sort(config_errors))]),
} if {
	count(config_errors) > 0
} else := {
	"action": "deny",
	"risk_level": "high",
	"reason": sprintf("compliance pack: %s", [reasons("deny")]),
} if {
	some f in findings
	f.action == "deny"
} else := {
	"action": "require_approval",
	"risk_level": "high",
	"reason": sprintf("compliance pack: %s", [reasons("require_approval")]),
} if {
	some f in findings
	f.action == "require_approval"
}
