# Unit tests of the security pack: `aaf policy test policies/packs`.
#
# The tests name the rule under test in full (`data.aaf.packs.security.decision`), as AAF
# evaluates it, rather than through `import data.aaf.packs.security`: with an import, regorus
# evaluates every rule of the package for each test.
package aaf.packs.security_test

import rego.v1

http(method, url) := {"action": {"tool": "http_proxy", "operation": method, "params": {"url": url}}}

get(url) := http("GET", url)

tool(name, op) := {"action": {"tool": name, "operation": op, "params": {}}}

conf := {"allowed_domains": ["api.github.com", "*.example.com", "hooks.slack.com"]}

# The decision for one input under `conf`.
with_conf(inp) := d if {
	d := data.aaf.packs.security.decision with input as inp with data.packs.security as conf
}

# The decision for one input under parameters `c`.
with_params(inp, c) := d if {
	d := data.aaf.packs.security.decision with input as inp with data.packs.security as c
}

denied_with(inp, c, text) if {
	d := with_params(inp, c)
	d.action == "deny"
	contains(d.reason, text)
}

# --- Defaults: no data at all --------------------------------------------------------

test_no_data_denies_every_http_call_and_says_why if {
	d := data.aaf.packs.security.decision with input as get("https://api.github.com/repos/a/b")
	d.action == "deny"
	contains(d.reason, "no domain is allowlisted")
	contains(d.reason, "allowed_domains")

	# The same with an empty `data.packs` document.
	e := data.aaf.packs.security.decision with input as get("https://api.github.com/") with data.packs as {}
	e.reason == d.reason

	every url in ["http://169.254.169.254/latest/meta-data/", "https://127.0.0.1/", "https://10.0.0.1/"] {
		data.aaf.packs.security.decision.action == "deny" with input as get(url)
	}
}

test_no_data_denies_other_tools if {
	d := data.aaf.packs.security.decision with input as tool("shell", "exec")
	d.action == "deny"
	contains(d.reason, "default deny")
}

test_empty_input_is_denied if {
	data.aaf.packs.security.decision.action == "deny" with input as {}
	data.aaf.packs.security.decision.action == "deny" with input as {"action": "not an object"}
}

# --- Allow, approval, method deny ----------------------------------------------------

test_get_and_head_to_allowlisted_hosts_are_allowed if {
	d := with_conf(get("https://api.github.com/repos/a/b?page=2#top"))
	d.action == "allow"
	d.risk_level == "low"
	with_conf(http("HEAD", "https://api.github.com")).action == "allow"
	with_conf(http("GET", "https://hooks.slack.com/services/x")).action == "allow"

	# `http` is an alias of `http_proxy`.
	with_conf({"action": {"tool": "http", "operation": "GET", "params": {"url": "https://api.github.com/"}}}).action == "allow"
	with_conf({"action": {"tool": "http", "operation": "GET", "params": {"url": "https://10.0.0.1/"}}}).action == "deny"
}

test_writes_need_approval if {
	every m in ["POST", "PUT", "PATCH", "DELETE"] {
		d := with_conf(http(m, "https://api.github.com/repos/a/b/issues"))
		d.action == "require_approval"
		d.risk_level == "medium"
	}
}

test_other_methods_are_denied if {
	every m in ["TRACE", "OPTIONS", "CONNECT", "get", ""] {
		d := with_conf(http(m, "https://api.github.com/"))
		d.action == "deny"
		contains(d.reason, "neither allowed_methods nor approval_methods")
	}
	with_conf({"action": {"tool": "http_proxy", "params": {"url": "https://api.github.com/"}}}).action == "deny"
}

test_method_lists_are_configurable_and_case_insensitive if {
	c := {"allowed_domains": ["api.github.com"], "allowed_methods": ["get", "post"], "approval_methods": ["delete"]}
	with_params(http("POST", "https://api.github.com/x"), c).action == "allow"
	with_params(http("DELETE", "https://api.github.com/x"), c).action == "require_approval"
	with_params(http("PUT", "https://api.github.com/x"), c).action == "deny"

	# allowed_methods is checked first: POST is allowed although approval_methods has it.
	d := {"allowed_domains": ["api.github.com"], "allowed_methods": ["GET", "POST"]}
	with_params(http("POST", "https://api.github.com/x"), d).action == "allow"
}

# --- Host matching -------------------------------------------------------------------

test_uppercase_hosts_and_default_ports_are_normalised if {
	with_conf(get("HTTPS://API.GitHub.COM/x")).action == "allow"
	with_conf(get("https://api.github.com:443/x")).action == "allow"
	with_params(get("https://api.github.com/"), {"allowed_domains": ["API.GITHUB.COM"]}).action == "allow"
}

test_wildcards_match_subdomains_only if {
	with_conf(get("https://a.example.com/")).action == "allow"
	with_conf(get("https://a.b.example.com/")).action == "allow"
	denied_with(get("https://example.com/"), conf, "not on allowed_domains")
	denied_with(get("https://evilexample.com/"), conf, "not on allowed_domains")
	denied_with(get("https://example.com.evil.io/"), conf, "not on allowed_domains")
}

test_lookalike_hosts_are_denied if {
	denied_with(get("https://api.github.com.evil.io/"), conf, "not on allowed_domains")
	denied_with(get("https://evil.io/api.github.com"), conf, "not on allowed_domains")
	denied_with(get("https://evil.io/?u=https://api.github.com/"), conf, "not on allowed_domains")
	denied_with(get("https://api.github.com./"), conf, "not a plain DNS host name")
	denied_with(get("https://api..github.com/"), conf, "not a plain DNS host name")
	denied_with(get("https://-api.github.com/"), conf, "not a plain DNS host name")
}

# --- SSRF: OWASP SSRF Prevention Cheat Sheet cases ------------------------------------

test_plain_http_is_denied_unless_allowed if {
	denied_with(get("http://api.github.com/"), conf, "plain http is not allowed")
	c := object.union(conf, {"allow_http": true})
	with_params(get("http://api.github.com/"), c).action == "allow"
	with_params(get("http://api.github.com:80/"), c).action == "allow"
	denied_with(get("http://api.github.com:443/"), c, "port 443 is not allowed for http")
}

test_other_schemes_are_denied if {
	c := object.union(conf, {"allow_http": true})
	every url in ["ftp://api.github.com/", "gopher://api.github.com:70/_x", "ws://api.github.com/", "file://api.github.com/etc/passwd"] {
		denied_with(get(url), c, "is not allowed; only https")
	}
	denied_with(get("file:///etc/passwd"), c, "is not allowed; only https")
	denied_with(get("javascript:alert(1)"), c, "not an absolute URL")
}

test_credentials_in_the_url_are_denied if {
	every url in [
		"https://user@api.github.com/",
		"https://user:pass@api.github.com/",
		"https://api.github.com@evil.io/",
		"https://api.github.com:443@evil.io/",
		"https://@api.github.com/",
	] {
		denied_with(get(url), conf, "userinfo")
	}
}

test_ip_literals_are_denied if {
	c := {"allowed_domains": ["api.github.com"], "allow_http": true}
	every url in [
		"http://169.254.169.254/latest/meta-data/",
		"https://127.0.0.1/",
		"https://10.0.0.1/",
		"https://10.0.0.1:443/",
		"https://8.8.8.8/",
		"https://2130706433/",
		"https://0x7f000001/",
		"https://0X7F.1/",
		"https://0177.0.0.1/",
		"https://127.1/",
		"https://127.0.0.1./",
		"https://[::1]/",
		"https://[::ffff:127.0.0.1]:443/",
		"https://[fd00:ec2::254]/",
	] {
		denied_with(get(url), c, "IP address literal")
	}
}

test_internal_names_are_denied_even_when_allowlisted if {
	c := {"allowed_domains": ["metadata.google.internal", "printer.local", "db.svc.cluster.local", "localhost.localdomain"]}
	every url in ["https://metadata.google.internal/computeMetadata/v1/", "https://printer.local/", "https://db.svc.cluster.local/", "https://localhost.localdomain/"] {
		denied_with(get(url), c, "private, internal or reserved")
	}
	denied_with(get("https://localhost/"), conf, "private, internal or reserved")
	denied_with(get("https://metadata/"), conf, "private, internal or reserved")
}

test_odd_url_forms_are_denied if {
	denied_with(get("https://api.github.com\\@evil.io/"), conf, "backslash")
	denied_with(get(" https://api.github.com/"), conf, "whitespace")
	denied_with(get("https://api.git\thub.com/"), conf, "control character")
	denied_with(get("https://api.github.com/\n"), conf, "control character")
	denied_with(get("https:api.github.com/"), conf, "not an absolute URL")
	denied_with(get("https:/api.github.com/"), conf, "not an absolute URL")
	denied_with(get("//api.github.com/"), conf, "not an absolute URL")
	denied_with(get("api.github.com"), conf, "not an absolute URL")
	denied_with(get("https://api.git%68ub.com/"), conf, "not a plain DNS host name")
	denied_with(get("https://ａｐｉ.github.com/"), conf, "not a plain DNS host name")
	denied_with(get("https:///api.github.com/"), conf, "not a plain DNS host name")
	denied_with(get("https://api.github.com:/"), conf, "not a plain DNS host name")
	denied_with(get("https://api.github.com:99999999/"), conf, "not a plain DNS host name")
	denied_with(get("https://api_github.com/"), conf, "not a plain DNS host name")

	# Missing or non-string URL.
	denied_with({"action": {"tool": "http_proxy", "operation": "GET", "params": {}}}, conf, "params.url is missing")
	denied_with({"action": {"tool": "http_proxy", "operation": "GET", "params": {"url": 42}}}, conf, "params.url is missing or is not a string")
	denied_with({"action": {"tool": "http_proxy", "operation": "GET"}}, conf, "params.url is missing")
}

test_ports_other_than_the_default_need_allowed_ports if {
	denied_with(get("https://api.github.com:8443/"), conf, "port 8443 is not allowed for https")
	denied_with(get("https://api.github.com:0/"), conf, "port 0 is not allowed")
	c := object.union(conf, {"allowed_ports": [8443]})
	with_params(get("https://api.github.com:8443/"), c).action == "allow"
	with_params(get("https://api.github.com:08443/"), c).action == "allow"
	denied_with(get("https://api.github.com:8444/"), c, "port 8444")
}

# --- Non-HTTP tools ------------------------------------------------------------------

test_allowed_tools_by_tool_or_operation if {
	c := {"allowed_tools": ["knowledge_base", "calendar.read"]}
	with_params(tool("knowledge_base", "search"), c).action == "allow"
	with_params(tool("knowledge_base", "delete"), c).action == "allow"
	with_params(tool("calendar", "read"), c).reason == "security pack: calendar.read is on allowed_tools"
	with_params(tool("knowledge_base", "search"), c).reason == "security pack: knowledge_base is on allowed_tools"
	denied_with(tool("calendar", "write"), c, "not on allowed_tools")
	denied_with(tool("shell", "exec"), c, "not on allowed_tools")
	denied_with({"action": {"tool": "calendar"}}, c, "not on allowed_tools")

	# HTTP tools on allowed_tools still go through every URL check.
	h := {"allowed_tools": ["http_proxy", "http_proxy.GET", "http"]}
	denied_with(get("https://10.0.0.1/"), h, "IP address literal")
	denied_with(get("https://api.github.com/"), h, "no domain is allowlisted")
}

# --- Invalid parameters fail closed --------------------------------------------------

test_invalid_parameters_deny_and_name_the_parameter if {
	good := get("https://api.github.com/")
	denied_with(good, "api.github.com", "data.packs.security must be an object")
	denied_with(good, {"allowed_domains": "api.github.com"}, "allowed_domains must be a list of strings")
	denied_with(good, {"allowed_domains": ["api.github.com", 7]}, "allowed_domains must be a list of strings")
	denied_with(good, {"allowed_domains": ["api.github.com"], "allow_http": "true"}, "allow_http must be true or false")
	denied_with(good, {"allowed_domains": ["api.github.com"], "allowed_methods": "GET"}, "allowed_methods must be a list of strings")
	denied_with(good, {"allowed_domains": ["api.github.com"], "approval_methods": [null]}, "approval_methods must be a list of strings")
	denied_with(good, {"allowed_domains": ["api.github.com"], "allowed_tools": {"a": 1}}, "allowed_tools must be a list of strings")
	denied_with(good, {"allowed_domains": ["api.github.com"], "allowed_ports": ["8443"]}, "allowed_ports must be a list of port numbers")
	denied_with(good, {"allowed_domains": ["api.github.com"], "allowed_ports": [0]}, "allowed_ports must be a list of port numbers")
	denied_with(good, {"allowed_domains": ["api.github.com"], "allowed_ports": [443.5]}, "allowed_ports must be a list of port numbers")
	denied_with(good, {"allowed_domain": ["api.github.com"]}, "unknown parameter \"allowed_domain\"")

	# Non-HTTP tools too: the whole pack stops on invalid parameters.
	denied_with(tool("knowledge_base", "search"), {"allowed_tools": ["knowledge_base"], "allow_http": 1}, "allow_http must be true or false")
}

test_invalid_domain_patterns_are_rejected if {
	good := get("https://api.github.com/")
	every bad in ["*", "*.com", "com", "https://api.github.com", "api.github.com:443", "api.github.com/", "10.0.0.1", "api.github.com.", "*.*.example.com", "", "user@api.github.com"] {
		denied_with(good, {"allowed_domains": ["api.github.com", bad]}, "allowed_domains: ")
	}
}
