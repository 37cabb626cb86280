//! Role-based access control: the permission of every endpoint, in one table.
//!
//! [`PERMISSIONS`] is the only place that says who may call what; the authentication
//! extractors ([`crate::auth`]) look the request's route up in it and refuse (403) a caller
//! whose kind or role is not listed. A route without a row is refused to everyone (fail
//! closed), and a test checks that the table, the router (through the OpenAPI document) and
//! `docs/security.md` list the same endpoints.
//!
//! Objects are always looked up within the caller's organisation, so an id of another
//! organisation's object answers 404 exactly like an id that does not exist: ids cannot be
//! probed across tenants. The role check comes first, so a caller without the role learns
//! nothing about ids either (403 whatever the id).

use aaf_core::identity::Role;
use axum::http::Method;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Anyone, without credentials.
    Public,
    /// An agent with its API key (and signature, for agents with a public key).
    Agent,
    /// A user with this role, with a personal access token.
    User(Role),
}

impl Caller {
    /// The column name used in `docs/security.md`.
    pub fn label(self) -> &'static str {
        match self {
            Caller::Public => "public",
            Caller::Agent => "agent",
            Caller::User(role) => role.as_str(),
        }
    }
}

/// One endpoint's permission.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// The route as registered in the router (`{id}` for path parameters).
    pub path: &'static str,
    /// Who may call it; everyone else gets 403 (or 401 without valid credentials).
    pub allow: &'static [Caller],
    /// What the endpoint is for, and object scoping notes.
    pub summary: &'static str,
}

const ADMIN: Caller = Caller::User(Role::Admin);
const APPROVER: Caller = Caller::User(Role::Approver);
const AUDITOR: Caller = Caller::User(Role::Auditor);
const VIEWER: Caller = Caller::User(Role::Viewer);
const ALL_USERS: &[Caller] = &[ADMIN, APPROVER, AUDITOR, VIEWER];

/// Every endpoint and who may call it. Keep `docs/security.md` in step (a test compares).
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        method: "GET",
        path: "/healthz",
        allow: &[Caller::Public],
        summary: "liveness and basic facts",
    },
    Permission {
        method: "GET",
        path: "/.well-known/oauth-protected-resource/mcp",
        allow: &[Caller::Public],
        summary: "the MCP endpoint's protected-resource metadata (RFC 9728)",
    },
    Permission {
        method: "GET",
        path: "/v1/openapi.json",
        allow: &[Caller::Public],
        summary: "the OpenAPI 3.1 document",
    },
    Permission {
        method: "GET",
        path: "/metrics",
        allow: &[ADMIN, AUDITOR],
        summary: "Prometheus metrics (with `metrics.token` set: that token only, not users)",
    },
    Permission {
        method: "GET",
        path: "/v1/whoami",
        allow: &[ADMIN, APPROVER, AUDITOR, VIEWER, Caller::Agent],
        summary: "the authenticated caller: user and role, or agent and key",
    },
    Permission {
        method: "GET",
        path: "/v1/stats",
        allow: ALL_USERS,
        summary: "counts of agents, users and actions by decision (own organisation)",
    },
    Permission {
        method: "POST",
        path: "/v1/users",
        allow: &[ADMIN],
        summary: "create a user with a role; returns a personal access token once",
    },
    Permission {
        method: "GET",
        path: "/v1/users",
        allow: &[ADMIN],
        summary: "list the organisation's users",
    },
    Permission {
        method: "GET",
        path: "/v1/users/{id}",
        allow: &[ADMIN],
        summary: "one user (404 for another organisation's)",
    },
    Permission {
        method: "PATCH",
        path: "/v1/users/{id}",
        allow: &[ADMIN],
        summary: "change a user's role (the last admin cannot be demoted)",
    },
    Permission {
        method: "DELETE",
        path: "/v1/users/{id}",
        allow: &[ADMIN],
        summary: "delete a user; their tokens stop working at once",
    },
    Permission {
        method: "POST",
        path: "/v1/agents",
        allow: &[ADMIN],
        summary:
            "register an agent (optionally with an Ed25519 public key); returns its first key once",
    },
    Permission {
        method: "GET",
        path: "/v1/agents",
        allow: ALL_USERS,
        summary: "list the organisation's agents",
    },
    Permission {
        method: "GET",
        path: "/v1/agents/{id}",
        allow: ALL_USERS,
        summary: "one agent (404 for another organisation's)",
    },
    Permission {
        method: "POST",
        path: "/v1/agents/{id}/keys",
        allow: &[ADMIN],
        summary: "create another key, optionally limited to tools and with an expiry",
    },
    Permission {
        method: "GET",
        path: "/v1/agents/{id}/keys",
        allow: &[ADMIN, AUDITOR],
        summary:
            "list an agent's keys: prefix, expiry, revocation, last use, tools (never secrets)",
    },
    Permission {
        method: "POST",
        path: "/v1/agents/{id}/keys/rotate",
        allow: &[ADMIN],
        summary: "new key; the old one keeps working for the grace period",
    },
    Permission {
        method: "POST",
        path: "/v1/agents/{id}/keys/{key_id}/revoke",
        allow: &[ADMIN],
        summary: "revoke a key at once",
    },
    Permission {
        method: "POST",
        path: "/v1/actions",
        allow: &[Caller::Agent],
        summary: "submit an action for a decision (and execution through a connector)",
    },
    Permission {
        method: "POST",
        path: "/v1/actions/dry-run",
        allow: &[Caller::Agent],
        summary: "the decision an action would get, without storing or running anything",
    },
    Permission {
        method: "GET",
        path: "/v1/actions/{id}",
        allow: &[ADMIN, APPROVER, AUDITOR, Caller::Agent],
        summary: "one action and its status (an agent sees only its own; 404 otherwise)",
    },
    Permission {
        method: "POST",
        path: "/v1/actions/{id}/cancel",
        allow: &[Caller::Agent],
        summary: "withdraw the agent's own action while it waits for approval",
    },
    Permission {
        method: "POST",
        path: "/v1/actions/{id}/result",
        allow: &[Caller::Agent],
        summary: "report, once, the outcome of the agent's own approved action it ran itself",
    },
    Permission {
        method: "GET",
        path: "/v1/approvals",
        allow: &[ADMIN, APPROVER],
        summary: "the approval queue: pending actions, digest, policies, time left, answers",
    },
    Permission {
        method: "POST",
        path: "/v1/approvals/{id}/approve",
        allow: &[ADMIN, APPROVER],
        summary: "approve a pending action (never its own requester under four eyes)",
    },
    Permission {
        method: "POST",
        path: "/v1/approvals/{id}/reject",
        allow: &[ADMIN, APPROVER],
        summary: "reject a pending action",
    },
    Permission {
        method: "POST",
        path: "/v1/kill-switches",
        allow: &[ADMIN, APPROVER],
        summary: "engage a kill switch (organisation, agent, tool or agent's tool); approvers may stop agents but not release them",
    },
    Permission {
        method: "GET",
        path: "/v1/kill-switches",
        allow: ALL_USERS,
        summary: "list the organisation's kill switches",
    },
    Permission {
        method: "DELETE",
        path: "/v1/kill-switches/{id}",
        allow: &[ADMIN],
        summary: "release a kill switch (404 for another organisation's)",
    },
    Permission {
        method: "POST",
        path: "/v1/agents/{id}/isolate",
        allow: &[ADMIN],
        summary: "isolate an agent: its kill switch, every key revoked, a forensic snapshot kept",
    },
    Permission {
        method: "GET",
        path: "/v1/agents/{id}/snapshots",
        allow: &[ADMIN, AUDITOR],
        summary: "the forensic snapshots of an isolated agent",
    },
    Permission {
        method: "POST",
        path: "/v1/rate-limits",
        allow: &[ADMIN],
        summary: "create a rate limit (organisation, agent, tool or agent's tool; one or each)",
    },
    Permission {
        method: "GET",
        path: "/v1/rate-limits",
        allow: ALL_USERS,
        summary: "list the organisation's rate limits and the configuration's",
    },
    Permission {
        method: "DELETE",
        path: "/v1/rate-limits/{id}",
        allow: &[ADMIN],
        summary: "delete a rate limit (404 for another organisation's)",
    },
    Permission {
        method: "POST",
        path: "/mcp",
        allow: &[Caller::Agent],
        summary: "the MCP endpoint (streamable HTTP): JSON-RPC messages of the agent's session",
    },
    Permission {
        method: "GET",
        path: "/mcp",
        allow: &[Caller::Agent],
        summary: "the MCP endpoint: the server-sent event stream of the agent's session",
    },
    Permission {
        method: "DELETE",
        path: "/mcp",
        allow: &[Caller::Agent],
        summary: "the MCP endpoint: ends the agent's session",
    },
    Permission {
        method: "POST",
        path: "/v1/mcp/servers",
        allow: &[ADMIN],
        summary: "register an upstream MCP server for the organisation (stdio only with mcp.allow_api_stdio)",
    },
    Permission {
        method: "GET",
        path: "/v1/mcp/servers",
        allow: ALL_USERS,
        summary: "the MCP servers the organisation's agents may use (no credential values)",
    },
    Permission {
        method: "GET",
        path: "/v1/mcp/servers/{name}",
        allow: ALL_USERS,
        summary: "one MCP server (no credential values)",
    },
    Permission {
        method: "PUT",
        path: "/v1/mcp/servers/{name}",
        allow: &[ADMIN],
        summary: "replace a registered MCP server's settings",
    },
    Permission {
        method: "DELETE",
        path: "/v1/mcp/servers/{name}",
        allow: &[ADMIN],
        summary: "delete a registered MCP server",
    },
    Permission {
        method: "GET",
        path: "/v1/mcp/servers/{name}/tools",
        allow: ALL_USERS,
        summary: "the pinned definitions of a server's tools and changed ones waiting",
    },
    Permission {
        method: "POST",
        path: "/v1/mcp/servers/{name}/tools/{tool}/accept",
        allow: &[ADMIN],
        summary: "accept a tool's changed definition (rug-pull protection)",
    },
    Permission {
        method: "POST",
        path: "/v1/budgets",
        allow: &[ADMIN],
        summary: "create a token or cost budget (organisation or one agent; day, month or total)",
    },
    Permission {
        method: "GET",
        path: "/v1/budgets",
        allow: ALL_USERS,
        summary: "list the organisation's budgets with what each has spent",
    },
    Permission {
        method: "GET",
        path: "/v1/budgets/{id}",
        allow: ALL_USERS,
        summary: "one budget with what it has spent (404 for another organisation's)",
    },
    Permission {
        method: "PATCH",
        path: "/v1/budgets/{id}",
        allow: &[ADMIN],
        summary: "change a budget's limit",
    },
    Permission {
        method: "DELETE",
        path: "/v1/budgets/{id}",
        allow: &[ADMIN],
        summary: "delete a budget",
    },
    Permission {
        method: "GET",
        path: "/v1/circuit-breakers",
        allow: ALL_USERS,
        summary: "the circuit breakers in force for the organisation",
    },
    Permission {
        method: "PUT",
        path: "/v1/circuit-breakers",
        allow: &[ADMIN],
        summary: "set the organisation's circuit breakers",
    },
    Permission {
        method: "POST",
        path: "/v1/webhooks",
        allow: &[ADMIN],
        summary: "register a webhook for approval events (SSRF-guarded URL); secret shown once",
    },
    Permission {
        method: "GET",
        path: "/v1/webhooks",
        allow: &[ADMIN, AUDITOR],
        summary: "list the organisation's webhooks (never their secrets)",
    },
    Permission {
        method: "DELETE",
        path: "/v1/webhooks/{id}",
        allow: &[ADMIN],
        summary: "disable a webhook; its delivery log is kept",
    },
    Permission {
        method: "GET",
        path: "/v1/webhooks/{id}/deliveries",
        allow: &[ADMIN, AUDITOR],
        summary: "a webhook's deliveries: attempts, status codes, errors",
    },
    Permission {
        method: "GET",
        path: "/v1/settings",
        allow: ALL_USERS,
        summary: "the organisation's approval settings (four eyes, approval timeout)",
    },
    Permission {
        method: "PATCH",
        path: "/v1/settings",
        allow: &[ADMIN],
        summary: "change the organisation's approval settings",
    },
    Permission {
        method: "POST",
        path: "/v1/policies",
        allow: &[ADMIN],
        summary: "create a managed policy (validated; 422 with line:col)",
    },
    Permission {
        method: "GET",
        path: "/v1/policies",
        allow: ALL_USERS,
        summary: "list managed policies",
    },
    Permission {
        method: "GET",
        path: "/v1/policies/{id}",
        allow: ALL_USERS,
        summary: "read a managed policy",
    },
    Permission {
        method: "PUT",
        path: "/v1/policies/{id}",
        allow: &[ADMIN],
        summary: "write a new version of a policy",
    },
    Permission {
        method: "DELETE",
        path: "/v1/policies/{id}",
        allow: &[ADMIN],
        summary: "disable a policy (history kept)",
    },
    Permission {
        method: "GET",
        path: "/v1/policies/{id}/versions",
        allow: ALL_USERS,
        summary: "list a policy's versions",
    },
    Permission {
        method: "POST",
        path: "/v1/policies/{id}/rollback",
        allow: &[ADMIN],
        summary: "put an earlier version back in force",
    },
    Permission {
        method: "GET",
        path: "/v1/policies/{id}/shadow-report",
        allow: ALL_USERS,
        summary: "where a shadow policy would have differed",
    },
    Permission {
        method: "GET",
        path: "/v1/data",
        allow: ALL_USERS,
        summary: "list data documents",
    },
    Permission {
        method: "GET",
        path: "/v1/data/{path}",
        allow: ALL_USERS,
        summary: "read a data document",
    },
    Permission {
        method: "PUT",
        path: "/v1/data/{path}",
        allow: &[ADMIN],
        summary: "write a data document (a new version)",
    },
    Permission {
        method: "GET",
        path: "/v1/policy-packs",
        allow: ALL_USERS,
        summary: "list the built-in policy packs",
    },
    Permission {
        method: "POST",
        path: "/v1/policy-packs/{name}/enable",
        allow: &[ADMIN],
        summary: "enable a policy pack",
    },
    Permission {
        method: "POST",
        path: "/v1/policy-packs/{name}/disable",
        allow: &[ADMIN],
        summary: "disable a policy pack",
    },
    Permission {
        method: "POST",
        path: "/v1/playground",
        allow: ALL_USERS,
        summary: "evaluate unsaved Rego against an input (stores nothing)",
    },
    Permission {
        method: "GET",
        path: "/v1/policy-revisions/{revision}",
        allow: ALL_USERS,
        summary: "the sources and data of a policy set revision",
    },
    Permission {
        method: "GET",
        path: "/v1/audit",
        allow: &[ADMIN, APPROVER, AUDITOR],
        summary: "read the organisation's audit chain",
    },
    Permission {
        method: "GET",
        path: "/v1/audit/checkpoint",
        allow: &[ADMIN, APPROVER, AUDITOR],
        summary: "the latest signed checkpoint of the organisation's audit chain",
    },
    Permission {
        method: "POST",
        path: "/v1/audit/checkpoint",
        allow: &[ADMIN, AUDITOR],
        summary: "bring the audit tree up to date and sign a checkpoint now",
    },
    Permission {
        method: "GET",
        path: "/v1/audit/proof/inclusion",
        allow: &[ADMIN, APPROVER, AUDITOR],
        summary: "the inclusion proof of an audit event in a tree size",
    },
    Permission {
        method: "GET",
        path: "/v1/audit/proof/consistency",
        allow: &[ADMIN, APPROVER, AUDITOR],
        summary: "the consistency proof between two tree sizes",
    },
    Permission {
        method: "GET",
        path: "/v1/proof-pack/{action_id}",
        allow: &[ADMIN, APPROVER, AUDITOR],
        summary: "the proof pack (zip) of an action; approvers only for actions they answered",
    },
    Permission {
        method: "GET",
        path: "/v1/evidence",
        allow: &[ADMIN, AUDITOR],
        summary: "the evidence pack (zip) of a period, or of one agent over a period",
    },
    Permission {
        method: "GET",
        path: "/v1/encryption",
        allow: &[ADMIN, AUDITOR],
        summary: "whether data is encrypted at rest, and the organisation's data keys",
    },
    Permission {
        method: "POST",
        path: "/v1/encryption/rotate",
        allow: &[ADMIN],
        summary: "rotate the organisation's data key",
    },
    Permission {
        method: "POST",
        path: "/v1/encryption/shred",
        allow: &[ADMIN],
        summary: "crypto-shred one action, or everything the organisation sealed so far",
    },
    Permission {
        method: "GET",
        path: "/v1/retention",
        allow: &[ADMIN, AUDITOR],
        summary: "the organisation's retention rules and legal hold",
    },
    Permission {
        method: "PUT",
        path: "/v1/retention",
        allow: &[ADMIN],
        summary: "set the organisation's retention rules and legal hold",
    },
    Permission {
        method: "POST",
        path: "/v1/retention/run",
        allow: &[ADMIN],
        summary: "apply the organisation's retention rules now",
    },
    Permission {
        method: "GET",
        path: "/v1/compliance/report",
        allow: &[ADMIN, AUDITOR],
        summary: "the compliance evidence report of a framework for a period (JSON or HTML)",
    },
    Permission {
        method: "GET",
        path: "/v1/alerts",
        allow: &[ADMIN, APPROVER, AUDITOR],
        summary: "list the organisation's alerts (filters: status, rule, agent)",
    },
    Permission {
        method: "GET",
        path: "/v1/alerts/{id}",
        allow: &[ADMIN, APPROVER, AUDITOR],
        summary: "one alert (404 for another organisation's)",
    },
    Permission {
        method: "POST",
        path: "/v1/alerts/{id}/ack",
        allow: &[ADMIN, APPROVER],
        summary: "acknowledge an open alert; approvers, who may stop agents, may triage too",
    },
    Permission {
        method: "POST",
        path: "/v1/alerts/{id}/resolve",
        allow: &[ADMIN],
        summary: "resolve an alert: its rule counts afresh, the next hit raises a new alert",
    },
];

/// The permission of a route (`path` as registered, e.g. `/v1/agents/{id}`), if any.
///
/// `path` is the router's matched path; a wildcard segment (`{*path}`) is looked up as the
/// OpenAPI document writes it (`{path}`).
pub fn permission_for(method: &Method, path: &str) -> Option<&'static Permission> {
    let path: std::borrow::Cow<'_, str> = if path.contains("{*") {
        path.replace("{*", "{").into()
    } else {
        path.into()
    };
    PERMISSIONS
        .iter()
        .find(|p| p.path == path && p.method == method.as_str())
}

/// Whether `caller` may call the endpoint.
pub fn allows(permission: &Permission, caller: Caller) -> bool {
    permission.allow.contains(&caller)
}

/// The table as Markdown, as it appears in `docs/security.md` (one row per endpoint, one
/// column per kind of caller, `yes` or `-`).
pub fn markdown_table() -> String {
    let columns = [
        Caller::Public,
        ADMIN,
        APPROVER,
        AUDITOR,
        VIEWER,
        Caller::Agent,
    ];
    let mut out = String::from("| endpoint |");
    for c in columns {
        out.push_str(&format!(" {} |", c.label()));
    }
    out.push_str(" what |\n|---|");
    for _ in columns {
        out.push_str("---|");
    }
    out.push_str("---|\n");
    for p in PERMISSIONS {
        out.push_str(&format!("| `{} {}` |", p.method, p.path));
        for c in columns {
            let cell = if p.allow.contains(&Caller::Public) || p.allow.contains(&c) {
                "yes"
            } else {
                "-"
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push_str(&format!(" {} |\n", p.summary));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once_and_public_routes_are_only_public() {
        let mut seen = std::collections::HashSet::new();
        for p in PERMISSIONS {
            assert!(
                seen.insert((p.method, p.path)),
                "{} {} is listed twice",
                p.method,
                p.path
            );
            assert!(!p.allow.is_empty(), "{} {} allows nobody", p.method, p.path);
            if p.allow.contains(&Caller::Public) {
                assert_eq!(p.allow.len(), 1, "{} {}", p.method, p.path);
            }
        }
        assert!(permission_for(&Method::GET, "/v1/agents/{id}").is_some());
        assert!(permission_for(&Method::PUT, "/v1/agents/{id}").is_none());
        // A wildcard route is looked up in its OpenAPI form.
        assert!(
            permission_for(&Method::PUT, "/v1/data/{*path}").is_some_and(|p| p.allow == [ADMIN])
        );
    }

    #[test]
    fn agents_cannot_manage_or_approve_and_viewers_cannot_read_audit() {
        let audit = permission_for(&Method::GET, "/v1/audit");
        assert!(audit.is_some_and(|p| !allows(p, VIEWER) && !allows(p, Caller::Agent)));
        for p in PERMISSIONS.iter().filter(|p| p.method != "GET") {
            if p.path.starts_with("/v1/actions") || p.path == "/mcp" {
                // The agents' doors: the REST API and the MCP endpoint.
                assert_eq!(p.allow, &[Caller::Agent]);
            } else if p.path.starts_with("/v1/approvals") {
                // Approving is for people: approvers and admins, never agents.
                assert_eq!(p.allow, &[ADMIN, APPROVER], "{} {}", p.method, p.path);
            } else if p.method == "POST" && p.path == "/v1/kill-switches" {
                // Stopping an agent is for the people watching them; releasing is admins'.
                assert_eq!(p.allow, &[ADMIN, APPROVER], "{} {}", p.method, p.path);
            } else if p.method == "POST" && p.path == "/v1/alerts/{id}/ack" {
                // Acknowledging is triage, for the same people; resolving is admins'.
                assert_eq!(p.allow, &[ADMIN, APPROVER], "{} {}", p.method, p.path);
            } else if p.method == "POST" && p.path == "/v1/audit/checkpoint" {
                // Signing a checkpoint of the log now adds evidence and changes nothing:
                // auditors may, as admins.
                assert_eq!(p.allow, &[ADMIN, AUDITOR], "{} {}", p.method, p.path);
            } else if p.path == "/v1/playground" {
                // Evaluates unsaved Rego and stores nothing: every person may use it.
                assert_eq!(p.allow, ALL_USERS);
            } else {
                assert!(!allows(p, Caller::Agent), "{} {}", p.method, p.path);
                assert_eq!(p.allow, &[ADMIN], "{} {}", p.method, p.path);
            }
        }
    }
}
