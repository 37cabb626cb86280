# Seed 000 ("Security Best Practices"): default deny with explicit allow rules.
#
# Rego v0 syntax, as in the product document. One change from the document:
# the document's helper
#
#     allowed_domains[url] {
#         startswith(url, "https://api.trusted.com/")
#     }
#
# is unsafe Rego: `url` is only bound by the rule head, so OPA (and AAF) reject
# the module with "var url is unsafe". It is rewritten below as a function,
# `allowed_url(url)`, which is safe and means what the document intended: the
# URL starts with an allowlisted https prefix.
package aaf.policies

import future.keywords.in

default decision = {"action": "deny", "reason": "No matching allow rule"}

# Explicitly allow specific operations
decision = {"action": "allow"} {
	input.tool == "http_proxy"
	input.operation == "GET"
	allowed_url(input.params.url)
}

# URL prefixes agents may GET. The trailing slash matters: without it,
# "https://api.trusted.com.evil.example/" would match too.
allowed_prefixes := ["https://api.trusted.com/"]

allowed_url(url) {
	some prefix in allowed_prefixes
	startswith(url, prefix)
}
