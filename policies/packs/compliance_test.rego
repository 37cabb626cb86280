# Unit tests of the compliance pack: `aaf policy test policies/packs`.
#
# The tests name the rule under test in full (`data.aaf.packs.compliance.decision`), as AAF
# evaluates it, rather than through `import data.aaf.packs.compliance`: with an import, regorus
# evaluates every rule of the package for each test.
package aaf.packs.compliance_test

import rego.v1

# Test values: a Luhn-valid Visa test number, a Luhn-valid American Express test number,
# and a Social Security number the SSA could issue (not an advertising number).
visa := "4111 1111 1111 1111"

amex := "378282246310005"

ssn := "536-22-1234"

act(tool, params, context) := {"action": {"tool": tool, "operation": "run", "params": params, "context": context}}

post(body) := {"action": {
	"tool": "http_proxy",
	"operation": "POST",
	"params": {"url": "https://api.example.com/v1/things", "body": body},
	"context": {"user_id": "u-1", "purpose": "test"},
}}

with_params(inp, c) := d if {
	d := data.aaf.packs.compliance.decision with input as inp with data.packs.compliance as c
}

# --- Defaults: no data at all --------------------------------------------------------

test_no_data_abstains_on_clean_actions if {
	not data.aaf.packs.compliance.decision with input as post({"name": "Ada", "amount": 5000, "order": "123456789"})
	not data.aaf.packs.compliance.decision with input as act("knowledge_base", {"q": "refund policy"}, {})
	not data.aaf.packs.compliance.decision with input as {}
	not data.aaf.packs.compliance.decision with input as post({"name": "Ada"}) with data.packs as {}
}

test_no_data_card_numbers_are_denied_anywhere_in_params if {
	every inp in [
		post({"card": visa}),
		post({"customer": {"cards": [{"number": "4111-1111-1111-1111"}]}}),
		post({"note": sprintf("charge %s please", [amex])}),
		post({"card": 4111111111111111}),
		post({sprintf("%s", [visa]): "as a key"}),
		{"action": {"tool": "http_proxy", "operation": "GET", "params": {"url": "https://api.example.com/?pan=4111111111111111"}}},
		{"action": {"tool": "http_proxy", "operation": "GET", "params": {"url": "https://api.example.com/", "headers": {"X-Card": visa}}}},
	] {
		d := data.aaf.packs.compliance.decision with input as inp
		d.action == "deny"
		d.risk_level == "high"
		contains(d.reason, "payment card number")
		contains(d.reason, "PCI DSS")
	}
}

test_no_data_ssn_needs_approval if {
	d := data.aaf.packs.compliance.decision with input as post({"applicant": {"ssn": ssn}})
	d.action == "require_approval"
	d.risk_level == "high"
	contains(d.reason, "Social Security number")
	data.aaf.packs.compliance.decision.action == "require_approval" with input as act("crm", {"note": "SSN 536 22 1234"}, {})
}

test_lookalikes_are_not_reported if {
	# A 16-digit number failing the Luhn check, an SSA advertising number, an invalid area.
	every body in [{"n": "4111 1111 1111 1112"}, {"n": "123-45-6789"}, {"n": "666-12-3456"}, {"n": "078-05-1120"}, {"phone": "+1 415 555 0100"}] {
		not data.aaf.packs.compliance.decision with input as post(body)
	}
}

test_only_params_are_scanned if {
	not data.aaf.packs.compliance.decision with input as act("crm", {"q": "x"}, {"purpose": sprintf("customer %s", [ssn])})
}

# --- Outcomes are configurable -------------------------------------------------------

test_on_pii_and_on_credit_card_are_configurable if {
	with_params(post({"ssn": ssn}), {"on_pii": "deny"}).action == "deny"
	c := {"on_credit_card": "require_approval"}
	d := with_params(post({"card": visa}), c)
	d.action == "require_approval"
	contains(d.reason, "payment card number")
	contains(d.reason, "personal data")
}

test_a_card_number_is_pii_so_the_stricter_outcome_wins if {
	d := with_params(post({"card": visa}), {"on_pii": "deny", "on_credit_card": "require_approval"})
	d.action == "deny"
	contains(d.reason, "personal data")
}

test_exempt_tools_skip_pii_but_never_cards if {
	c := {"exempt_tools": ["hr_system"]}
	not with_params(act("hr_system", {"ssn": ssn}, {}), c)
	with_params(act("crm", {"ssn": ssn}, {}), c).action == "require_approval"
	d := with_params(act("hr_system", {"card": visa}, {}), c)
	d.action == "deny"
	contains(d.reason, "payment card number")
	not contains(d.reason, "personal data")
}

# --- Audit requirements: required_context ---------------------------------------------

test_missing_context_is_denied_and_listed if {
	c := {"required_context": ["user_id", "purpose", "ticket"]}
	d := with_params(act("crm", {}, {"user_id": "u-1", "purpose": "  "}), c)
	d.action == "deny"
	d.reason == "compliance pack: context is missing required fields: purpose, ticket"
}

test_absent_null_and_blank_context_fields_are_missing if {
	c := {"required_context": ["a", "b", "c", "d"]}
	d := with_params(act("crm", {}, {"a": "", "b": null, "c": "\t\n"}), c)
	contains(d.reason, "missing required fields: a, b, c, d")
	e := with_params({"action": {"tool": "crm"}}, c)
	contains(e.reason, "missing required fields: a, b, c, d")
	f := with_params({}, c)
	f.action == "deny"
	g := with_params({"action": {"tool": "crm", "context": "not an object"}}, c)
	g.action == "deny"
}

test_present_context_abstains if {
	c := {"required_context": ["user_id", "ticket", "count", "flag"]}
	not with_params(act("crm", {}, {"user_id": "u-1", "ticket": "OPS-1", "count": 0, "flag": false}), c)
}

test_on_missing_context_can_require_approval if {
	c := {"required_context": ["ticket"], "on_missing_context": "require_approval"}
	d := with_params(act("crm", {"ssn": ssn}, {}), c)
	d.action == "require_approval"
	contains(d.reason, "context is missing required fields: ticket")
	contains(d.reason, "personal data")
}

test_deny_wins_over_approval_and_names_its_reason if {
	c := {"required_context": ["ticket"]}
	d := with_params(act("crm", {"ssn": ssn}, {}), c)
	d.action == "deny"
	contains(d.reason, "ticket")
	not contains(d.reason, "personal data")
}

# --- The pack never allows -----------------------------------------------------------

test_never_allows if {
	every inp in [post({"card": visa}), post({"ssn": ssn}), post({}), {}] {
		not data.aaf.packs.compliance.decision.action == "allow" with input as inp
		not data.aaf.packs.compliance.decision.action == "allow" with input as inp with data.packs.compliance as {"required_context": ["x"]}
	}
}

# --- Invalid parameters fail closed --------------------------------------------------

test_invalid_parameters_deny_and_name_the_parameter if {
	clean := act("crm", {"q": "x"}, {"ticket": "OPS-1"})
	every case in [
		["not an object", "data.packs.compliance must be an object"],
		[{"on_pii": "allow"}, "on_pii must be \"deny\" or \"require_approval\""],
		[{"on_pii": true}, "on_pii must be"],
		[{"on_credit_card": "block"}, "on_credit_card must be"],
		[{"on_missing_context": null}, "on_missing_context must be"],
		[{"exempt_tools": "crm"}, "exempt_tools must be a list of strings"],
		[{"required_context": "ticket"}, "required_context must be a list of strings"],
		[{"required_context": [1]}, "required_context must be a list of strings"],
		[{"required_context": [""]}, "required_context must not contain empty field names"],
		[{"on_cards": "deny"}, "unknown parameter \"on_cards\""],
	] {
		d := with_params(clean, case[0])
		d.action == "deny"
		contains(d.reason, "invalid parameters in data.packs.compliance")
		contains(d.reason, case[1])
	}
}
