# Unit tests of the session examples: `aaf policy test examples/policies/session`.
package aaf.examples.session_test

import rego.v1

import data.aaf.examples.exfiltration_chain
import data.aaf.examples.payment_velocity

now := "2026-12-05T10:00:00.000000Z"

read_crm := {"action_id": "a1", "tool": "crm", "operation": "GET", "decision": "allow", "status": "allowed", "host": "crm.example.com", "detections": ["email"], "time": "2026-12-05T09:59:00.000000Z"}

post(url, session) := {
	"tool": "http_proxy",
	"operation": "POST",
	"params": {"url": url},
	"session": session,
	"metadata": {"timestamp": now},
}

test_post_to_a_new_host_after_reading_customers_is_denied if {
	d := exfiltration_chain.decision with input as post("https://paste.example.net/upload", [read_crm])
	d.action == "deny"
}

test_post_to_a_host_seen_in_the_session_is_not_concerned if {
	seen := {"action_id": "a0", "tool": "http_proxy", "operation": "GET", "decision": "allow", "status": "executed", "host": "api.partner.example", "detections": [], "time": "2026-12-05T09:58:00.000000Z"}
	not exfiltration_chain.decision with input as post("https://api.partner.example/v1/orders", [read_crm, seen])
}

test_post_without_a_customer_read_is_not_concerned if {
	not exfiltration_chain.decision with input as post("https://paste.example.net/upload", [])
}

test_a_denied_customer_read_does_not_count if {
	denied := object.union(read_crm, {"decision": "deny"})
	not exfiltration_chain.decision with input as post("https://paste.example.net/upload", [denied])
}

test_a_url_with_userinfo_is_a_new_host if {
	d := exfiltration_chain.decision with input as post("https://crm.example.com@paste.example.net/", [read_crm])
	d.action == "deny"
}

test_reads_are_not_concerned if {
	get := object.union(post("https://paste.example.net/", [read_crm]), {"operation": "GET"})
	not exfiltration_chain.decision with input as get
}

charge(minutes_ago) := {"action_id": sprintf("p%d", [minutes_ago]), "tool": "payments", "operation": "charge", "decision": "allow", "status": "allowed", "host": null, "detections": [], "time": time.format([time.parse_rfc3339_ns(now) - ((minutes_ago * 60) * 1000000000), "UTC", "2006-01-02T15:04:05.000000Z07:00"])}

pay(session) := {"tool": "payments", "operation": "charge", "params": {"amount": 100}, "session": session, "metadata": {"timestamp": now}}

test_the_third_payment_in_ten_minutes_needs_approval if {
	d := payment_velocity.decision with input as pay([charge(1), charge(9)])
	d.action == "require_approval"
}

test_the_second_payment_is_not_concerned if {
	not payment_velocity.decision with input as pay([charge(1)])
}

test_payments_older_than_ten_minutes_do_not_count if {
	not payment_velocity.decision with input as pay([charge(1), charge(11)])
}

test_denied_payments_do_not_count if {
	denied := object.union(charge(2), {"decision": "deny"})
	not payment_velocity.decision with input as pay([charge(1), denied])
}
