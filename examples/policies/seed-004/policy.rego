# Seed 004 ("Policy Engine"): the policy structure example, as written in the
# product document (Rego v0 syntax). `is_private_network` is an AAF built-in.
package aaf.policy

# Default to allow if no rules match
default decision = "allow"

# Deny requests to private networks
decision = "deny" {
  input.action.tool == "http_proxy"
  is_private_network(input.action.params.url)
}

# Require approval for financial operations
decision = "require_approval" {
  input.action.tool == "http_proxy"
  contains(input.action.params.url, "stripe.com")
  input.action.params.body.amount > 10000
}
