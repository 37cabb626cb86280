# Unit tests of the financial pack: `aaf policy test policies/packs`.
#
# The tests name the rule under test in full (`data.aaf.packs.financial.decision`), as AAF
# evaluates it, rather than through `import data.aaf.packs.financial`: with an import, regorus
# evaluates every rule of the package for each test.
package aaf.packs.financial_test

import rego.v1

call(method, url, body) := {"action": {"tool": "http_proxy", "operation": method, "params": {"url": url, "body": body}}}

charge(body) := call("POST", "https://api.stripe.com/v1/charges", body)

with_params(inp, c) := d if {
	d := data.aaf.packs.financial.decision with input as inp with data.packs.financial as c
}

denied_with(inp, text) if {
	d := data.aaf.packs.financial.decision with input as inp
	d.action == "deny"
	contains(d.reason, text)
}

# --- Defaults: no data (Stripe, amounts in cents) --------------------------------------

test_no_data_stripe_amounts_within_the_threshold_abstain if {
	every amount in [0, 1, 5000, 10000] {
		not data.aaf.packs.financial.decision with input as charge({"amount": amount, "currency": "usd"})
	}
	not data.aaf.packs.financial.decision with input as charge({"amount": 5000}) with data.packs as {}
}

test_no_data_stripe_amounts_above_the_threshold_need_approval if {
	every amount in [10001, 50000, 1000000, 10000.5] {
		d := data.aaf.packs.financial.decision with input as charge({"amount": amount})
		d.action == "require_approval"
		d.risk_level == "high"
		contains(d.reason, "exceeds the approval threshold 10000")
		not d.approvals_required
	}
}

test_no_data_stripe_amounts_above_the_maximum_and_negative_amounts_are_denied if {
	denied_with(charge({"amount": 1000001}), "exceeds max_amount 1000000")
	denied_with(charge({"amount": 99999999999}), "exceeds max_amount")
	denied_with(charge({"amount": -1}), "negative amount -1")
	denied_with(charge({"amount": -0.01}), "negative amount")
}

test_missing_or_non_numeric_amounts_are_denied if {
	denied_with(charge({"currency": "usd"}), "params.body.amount is missing")
	denied_with(charge({"amount": "50000"}), "params.body.amount is not a number")
	denied_with(charge({"amount": null}), "params.body.amount is not a number")
	denied_with(charge({"amount": {"value": 5}}), "params.body.amount is not a number")
	denied_with(charge([{"amount": 5}]), "neither an object nor a form-encoded string")
	denied_with(charge(5000), "neither an object nor a form-encoded string")
	denied_with(charge(null), "neither an object nor a form-encoded string")
	denied_with({"action": {"tool": "http_proxy", "operation": "POST", "params": {"url": "https://api.stripe.com/v1/customers"}}}, "cannot be read")
}

test_form_encoded_bodies_are_read if {
	not data.aaf.packs.financial.decision with input as charge("amount=5000&currency=usd")
	data.aaf.packs.financial.decision.action == "require_approval" with input as charge("currency=usd&amount=50000")
	data.aaf.packs.financial.decision.action == "require_approval" with input as charge("%61mount=50000")
	denied_with(charge("amount=2000000"), "exceeds max_amount")
	denied_with(charge("amount=-5"), "negative amount")
	denied_with(charge("currency=usd"), "has no amount field")
	denied_with(charge("amount=5000&amount=50000000"), "has amount more than once")
	denied_with(charge("amount=5e9"), "not a plain decimal number")
	denied_with(charge("amount=+5"), "not a plain decimal number")
	denied_with(charge("amount="), "not a plain decimal number")

	# JSON text in a string could be read as JSON or as a form, with different amounts.
	denied_with(charge("{\"amount\": 50000}"), "JSON text in a string")
	denied_with(charge("{\"amount\": 99999999, \"x\": \"&amount=5&\"}"), "JSON text in a string")
	denied_with(charge("5000"), "JSON text in a string")

	# "#" is data in a body, not a fragment: the amount after it is still seen.
	denied_with(charge("memo=a#&amount=99999999"), "exceeds max_amount")

	# Control characters would be dropped by the decoder but not by the API's parser.
	denied_with(charge("amo\nunt=5&amount=5"), "control characters")

	# ";" separates pairs for some servers.
	denied_with(charge("x=1;amount=99999999&amount=5"), "\";\"")
}

test_an_amount_hidden_in_a_json_body_string_is_denied if {
	# Sent with Content-Type: application/x-www-form-urlencoded, this JSON text is a form
	# whose amount is 99999999.
	denied_with(charge({"amount": 5, "memo": "&amount=99999999&"}), "read as a form, has its own amount field")
	denied_with(charge({"amount": 5, "memo": "x;amount=99999999"}), "read as a form")
	denied_with(charge({"amount": 5, "meta": {"note": "#&amount=99999999"}}), "read as a form")

	# Ordinary strings with "&" and "=" are fine.
	not data.aaf.packs.financial.decision with input as charge({"amount": 5, "return_url": "https://shop.example/?a=1&b=2"})
}

test_an_amount_in_the_url_query_is_denied if {
	denied_with(call("POST", "https://api.stripe.com/v1/charges?amount=99999999", {"amount": 5}), "also in the URL's query string")
	denied_with(call("POST", "https://api.stripe.com/v1/charges?%61mount=1", {"amount": 5}), "also in the URL's query string")
	not data.aaf.packs.financial.decision with input as call("POST", "https://api.stripe.com/v1/charges?expand[]=customer#amount=9", {"amount": 5})
}

test_other_hosts_methods_and_tools_abstain if {
	not data.aaf.packs.financial.decision with input as call("GET", "https://api.stripe.com/v1/charges", null)
	not data.aaf.packs.financial.decision with input as call("DELETE", "https://api.stripe.com/v1/customers/cus_1", null)
	not data.aaf.packs.financial.decision with input as call("POST", "https://api.example.com/v1/charges", {"amount": 99999999})
	not data.aaf.packs.financial.decision with input as call("POST", "https://files.stripe.com/v1/files", {})
	not data.aaf.packs.financial.decision with input as call("POST", "https://api.stripe.com.evil.io/v1/charges", {"amount": 99999999})
	not data.aaf.packs.financial.decision with input as {"action": {"tool": "payments", "operation": "POST", "params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": 99999999}}}}
	not data.aaf.packs.financial.decision with input as {}
	not data.aaf.packs.financial.decision with input as {"action": {"tool": "http_proxy", "operation": "POST", "params": {"url": 7}}}
}

test_hosts_are_normalised_as_the_connector_reads_them if {
	every url in [
		"https://API.Stripe.COM/v1/charges",
		"HTTPS://api.stripe.com:443/v1/charges",
		"https://api.stripe.com:8443/v1/charges",
		"https://api.stripe.com./v1/charges",
		"http://api.stripe.com/v1/charges",
		" https://api.stripe.com/v1/charges",
		"https://api.str\tipe.com/v1/charges",
		"https://api.stri\r\npe.com/v1/charges\r\n",
		"\u0001\u001f https://api.stripe.com/v1/charges \u0000",
		"https://api.stripe.com\\@evil.io/v1/charges",
		"https://api.stripe.com?x=1",
	] {
		d := data.aaf.packs.financial.decision with input as call("POST", url, {"amount": 50000})
		d.action == "require_approval"
	}
	data.aaf.packs.financial.decision.action == "require_approval" with input as {"action": {"tool": "http", "operation": "POST", "params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": 50000}}}}
}

test_unreadable_hosts_that_may_be_a_payment_api_are_denied if {
	every url in [
		"https://user@api.stripe.com/v1/charges",
		"https://api.stripe.com@evil.io/v1/charges",
		"https:api.stripe.com/v1/charges",
		"https://api.%73tripe.com/v1/charges",
		"https://ａｐｉ.ｓｔｒｉｐｅ.ｃｏｍ/v1/charges",
	] {
		denied_with(call("POST", url, {"amount": 5}), "cannot read the host")
	}

	# Not with a method no configured API covers, nor for URLs with no hint of one.
	not data.aaf.packs.financial.decision with input as call("GET", "https://user@api.stripe.com/v1/charges", null)
	not data.aaf.packs.financial.decision with input as call("POST", "https://[2001:db8::1]/v1/charges", {"amount": 99999999})
}

# --- Configured APIs -----------------------------------------------------------------

test_configured_apis_replace_the_default if {
	c := {"apis": {"api.paypal.com": {"approval_threshold": 500, "max_amount": 5000}}}
	not with_params(charge({"amount": 99999999}), c)
	paypal := call("POST", "https://api.paypal.com/v2/payments", {"amount": 600})
	with_params(paypal, c).action == "require_approval"
	not with_params(charge({"amount": 99999999}), {"apis": {}})
}

test_amount_field_methods_and_approvals_required if {
	c := {"apis": {"Payments.Example.COM": {
		"amount_field": "value",
		"approval_threshold": 100,
		"max_amount": 1000,
		"approvals_required": 2,
		"methods": ["post", "PUT"],
	}}}
	url := "https://payments.example.com/transfers"
	d := with_params(call("PUT", url, {"value": 101}), c)
	d.action == "require_approval"
	d.approvals_required == 2
	d.risk_level == "high"
	not with_params(call("POST", url, {"value": 100}), c)
	with_params(call("POST", url, {"value": 1001}), c).action == "deny"
	with_params(call("POST", url, {"amount": 5}), c).action == "deny"
	not with_params(call("PATCH", url, {"value": 1001}), c)
}

test_api_defaults_threshold_zero_and_no_maximum if {
	c := {"apis": {"api.example.com": {}}}
	url := "https://api.example.com/pay"
	not with_params(call("POST", url, {"amount": 0}), c)
	with_params(call("POST", url, {"amount": 1}), c).action == "require_approval"
	with_params(call("POST", url, {"amount": 1e15}), c).action == "require_approval"
	with_params(call("POST", url, {}), c).action == "deny"
}

test_never_allows if {
	every inp in [charge({"amount": 1}), charge({"amount": 50000}), charge({}), {}] {
		not data.aaf.packs.financial.decision.action == "allow" with input as inp
	}
}

# --- Invalid parameters fail closed --------------------------------------------------

test_invalid_parameters_deny_every_action_and_name_the_parameter if {
	unrelated := {"action": {"tool": "knowledge_base", "operation": "search", "params": {}}}
	every case in [
		[[], "data.packs.financial must be an object"],
		[{"limits": {}}, "unknown parameter \"limits\""],
		[{"apis": ["api.stripe.com"]}, "apis must be an object keyed by host name"],
		[{"apis": {"https://api.stripe.com": {}}}, "is not a host name"],
		[{"apis": {"api.stripe.com:443": {}}}, "is not a host name"],
		[{"apis": {"10.0.0.1": {}}}, "is not a host name"],
		[{"apis": {"stripe": {}}}, "is not a host name"],
		[{"apis": {"api.stripe.com": 10000}}, "apis.api.stripe.com must be an object"],
		[{"apis": {"api.stripe.com": {"max_ammount": 5}}}, "unknown field \"max_ammount\""],
		[{"apis": {"api.stripe.com": {"amount_field": ""}}}, "amount_field must be a non-empty string"],
		[{"apis": {"api.stripe.com": {"amount_field": ["amount"]}}}, "amount_field must be a non-empty string"],
		[{"apis": {"api.stripe.com": {"approval_threshold": "10000"}}}, "approval_threshold must be a number >= 0"],
		[{"apis": {"api.stripe.com": {"approval_threshold": -1}}}, "approval_threshold must be a number >= 0"],
		[{"apis": {"api.stripe.com": {"max_amount": null}}}, "max_amount must be a number >= 0"],
		[{"apis": {"api.stripe.com": {"approvals_required": 0}}}, "approvals_required must be a whole number from 1 to 10"],
		[{"apis": {"api.stripe.com": {"approvals_required": 11}}}, "approvals_required must be"],
		[{"apis": {"api.stripe.com": {"approvals_required": 1.5}}}, "approvals_required must be"],
		[{"apis": {"api.stripe.com": {"approvals_required": "2"}}}, "approvals_required must be"],
		[{"apis": {"api.stripe.com": {"methods": "POST"}}}, "methods must be a list of strings"],
		[{"apis": {"api.stripe.com": {"methods": [1]}}}, "methods must be a list of strings"],
		[{"apis": {"api.stripe.com": {}, "API.STRIPE.COM": {"max_amount": 1}}}, "listed more than once"],
	] {
		every inp in [unrelated, charge({"amount": 1})] {
			d := with_params(inp, case[0])
			d.action == "deny"
			contains(d.reason, "invalid parameters in data.packs.financial")
			contains(d.reason, case[1])
		}
	}
}
