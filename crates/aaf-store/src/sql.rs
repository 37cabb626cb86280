//! SQL shared by the SQLite and PostgreSQL backends, so that both filter and check exactly
//! the same way (every statement on a tenant table names its `org_id`).
//!
//! Placeholders are `$1`, `$2`, ... numbered in order of first appearance: PostgreSQL's own
//! syntax, and in SQLite a named parameter whose index is its first appearance, so one
//! positional list of values serves both. A `_LOCKED` variant adds PostgreSQL's
//! `FOR UPDATE` (SQLite's write transactions are exclusive already).

macro_rules! shared {
    ($($(#[$doc:meta])+ $name:ident = $sql:expr;)*) => {
        $(
            $(#[$doc])+
            pub(crate) const $name: &str = $sql;
        )*
        /// Every shared statement by name (for the placeholder test).
        #[cfg(test)]
        const ALL: &[(&str, &str)] = &[$((stringify!($name), $name)),*];
    };
}

macro_rules! current_role {
    () => {
        "SELECT role FROM users WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
    };
}
macro_rules! other_admins {
    () => {
        "SELECT id FROM users WHERE org_id = $1 AND role = 'admin' AND deleted_at IS NULL \
         AND id <> $2"
    };
}
macro_rules! action_select {
    () => {
        "id, org_id, agent_id, tool, operation, params, context, decision, reason, risk_level, \
         status, policies, result, created_at, updated_at, digest, expires_at, \
         approvals_required, version, signals, data_key"
    };
}
macro_rules! delivery_select {
    () => {
        "id, org_id, webhook_id, event, action_id, payload, status, attempts, next_attempt_at, \
         last_status_code, last_error, created_at, updated_at, version"
    };
}
macro_rules! policy_object_select {
    () => {
        "SELECT o.org_id, o.kind, o.key, o.name, o.active_version, o.latest_version, \
           o.created_at, o.updated_at, o.created_by, o.disabled_at, v.body, v.mode, v.sha256 \
         FROM policy_objects o JOIN policy_object_versions v ON v.org_id = o.org_id \
           AND v.kind = o.kind AND v.key = o.key AND v.version = o.active_version "
    };
}
macro_rules! key_revoked_at {
    () => {
        "SELECT revoked_at FROM agent_keys WHERE org_id = $1 AND agent_id = $2 AND id = $3"
    };
}

macro_rules! put_agent_profile {
    () => {
        "INSERT INTO agent_profiles (org_id, agent_id, profile, folded_at, folded_id, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, agent_id) DO UPDATE SET \
           profile = excluded.profile, folded_at = excluded.folded_at, \
           folded_id = excluded.folded_id, updated_at = excluded.updated_at "
    };
}

macro_rules! mcp_server_select {
    () => {
        "SELECT id, org_id, name, transport, created_at, created_by, updated_at FROM mcp_servers "
    };
}
macro_rules! mcp_tool_pin_select {
    () => {
        "SELECT org_id, server, tool, hash, definition, pending_hash, pending_definition, \
           first_seen_at, accepted_at, accepted_by, changed_at FROM mcp_tool_pins "
    };
}

shared! {
    /// `(org_id, user_id)` → the role of a current user.
    CURRENT_ROLE = current_role!();
    /// [`CURRENT_ROLE`], row locked (PostgreSQL).
    CURRENT_ROLE_LOCKED = concat!(current_role!(), " FOR UPDATE");
    /// `(org_id, user_id)` → ids of the other current admins.
    OTHER_ADMINS = other_admins!();
    /// [`OTHER_ADMINS`], rows locked (PostgreSQL).
    OTHER_ADMINS_LOCKED = concat!(other_admins!(), " FOR UPDATE");
    /// `(org_id, agent_id, key_id)` → the key's `revoked_at`.
    KEY_REVOKED_AT = key_revoked_at!();
    /// [`KEY_REVOKED_AT`], row locked (PostgreSQL).
    KEY_REVOKED_AT_LOCKED = concat!(key_revoked_at!(), " FOR UPDATE");
    /// `(id, name, plan, created_at)`.
    INSERT_ORG = "INSERT INTO orgs (id, name, plan, created_at) VALUES ($1, $2, $3, $4)";
    /// `(id, org_id, name, role, created_at, updated_at)`.
    INSERT_USER = "INSERT INTO users (id, org_id, name, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)";
    /// `(role, now, org_id, user_id)`.
    SET_USER_ROLE = "UPDATE users SET role = $1, updated_at = $2 \
         WHERE org_id = $3 AND id = $4 AND deleted_at IS NULL";
    /// `(now, org_id, user_id)`.
    DELETE_USER = "UPDATE users SET deleted_at = $1, updated_at = $1 \
         WHERE org_id = $2 AND id = $3 AND deleted_at IS NULL";
    /// `(now, org_id, user_id)`.
    REVOKE_USER_TOKENS = "UPDATE api_tokens SET revoked_at = $1 \
         WHERE org_id = $2 AND user_id = $3 AND revoked_at IS NULL";
    /// `(id, org_id, user_id, name, token_hash, prefix, created_at)`; inserts nothing unless
    /// the user is a current user of the organisation.
    INSERT_TOKEN = "INSERT INTO api_tokens (id, org_id, user_id, name, token_hash, prefix, created_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS \
           (SELECT 1 FROM users WHERE org_id = $2 AND id = $3 AND deleted_at IS NULL)";
    /// `(id, org_id, name, risk_score, public_key, created_at)`.
    INSERT_AGENT = "INSERT INTO agents (id, org_id, name, risk_score, public_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)";
    /// `(id, org_id, agent_id, key_hash, prefix, created_at, expires_at, tools, created_by)`;
    /// inserts nothing unless the agent is the organisation's.
    INSERT_AGENT_KEY = "INSERT INTO agent_keys (id, org_id, agent_id, key_hash, prefix, created_at, \
                                 expires_at, tools, created_by) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS \
           (SELECT 1 FROM agents WHERE org_id = $2 AND id = $3)";
    /// `(expires_at, org_id, agent_id, key_id)`: the earlier of the two expiries.
    SHORTEN_AGENT_KEY = "UPDATE agent_keys SET expires_at = \
           CASE WHEN expires_at IS NULL OR expires_at > $1 THEN $1 ELSE expires_at END \
         WHERE org_id = $2 AND agent_id = $3 AND id = $4 AND revoked_at IS NULL";
    /// `(now, org_id, agent_id, key_id)`.
    REVOKE_AGENT_KEY = "UPDATE agent_keys SET revoked_at = $1 \
         WHERE org_id = $2 AND agent_id = $3 AND id = $4";
    /// `(org_id, agent_id, nonce, expires_at)`.
    USE_NONCE = "INSERT INTO signature_nonces (org_id, agent_id, nonce, expires_at) \
         VALUES ($1, $2, $3, $4)";
    /// `(now, org_id, key_id)`.
    TOUCH_AGENT_KEY = "UPDATE agent_keys SET last_used_at = $1 WHERE org_id = $2 AND id = $3";
    /// `(token_hash)` → the live token of a current user, with the user and organisation.
    FIND_TOKEN = "SELECT t.token_hash, t.id AS token_id, u.id AS user_id, u.name AS user_name, u.role, \
                o.id AS org_id, o.name AS org_name, o.plan AS org_plan, \
                o.created_at AS org_created_at \
         FROM api_tokens t \
         JOIN users u ON u.id = t.user_id AND u.org_id = t.org_id \
         JOIN orgs o ON o.id = t.org_id \
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.deleted_at IS NULL";
    /// `(key_hash)` → the key (revoked and expired included), its agent and organisation.
    FIND_AGENT_KEY = "SELECT k.key_hash, k.id AS key_id, k.expires_at, k.revoked_at, k.tools, \
                a.id AS agent_id, a.org_id AS agent_org_id, a.name AS agent_name, \
                a.risk_score AS agent_risk_score, a.public_key AS agent_public_key, \
                a.created_at AS agent_created_at, \
                o.id AS org_id, o.name AS org_name, o.plan AS org_plan, \
                o.created_at AS org_created_at \
         FROM agent_keys k \
         JOIN agents a ON a.id = k.agent_id AND a.org_id = k.org_id \
         JOIN orgs o ON o.id = a.org_id \
         WHERE k.key_hash = $1";
    /// `(org_id)` → current users, oldest first.
    LIST_USERS = "SELECT id, org_id, name, role, created_at, updated_at FROM users \
         WHERE org_id = $1 AND deleted_at IS NULL ORDER BY created_at, id";
    /// `(org_id, id)` → a current user.
    GET_USER = "SELECT id, org_id, name, role, created_at, updated_at FROM users \
         WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL";
    /// `(org_id, agent_id)` → the agent's keys without hashes, oldest first.
    LIST_AGENT_KEYS = "SELECT id, org_id, agent_id, prefix, created_at, expires_at, revoked_at, \
                last_used_at, tools, created_by FROM agent_keys \
         WHERE org_id = $1 AND agent_id = $2 ORDER BY created_at, id";
    /// `(org_id)` → agents, oldest first.
    LIST_AGENTS = "SELECT id, org_id, name, risk_score, public_key, created_at FROM agents \
         WHERE org_id = $1 ORDER BY created_at, name";
    /// `(org_id, id)` → an agent.
    GET_AGENT = "SELECT id, org_id, name, risk_score, public_key, created_at FROM agents \
         WHERE org_id = $1 AND id = $2";
    /// `(org_id)` → how many agents.
    COUNT_AGENTS = "SELECT COUNT(*) FROM agents WHERE org_id = $1";
    /// `(org_id)` → how many current users.
    COUNT_USERS = "SELECT COUNT(*) FROM users WHERE org_id = $1 AND deleted_at IS NULL";
    /// `(org_id)` → `(decision, status, n)` rows.
    COUNT_ACTIONS = "SELECT decision, status, COUNT(*) AS n FROM actions WHERE org_id = $1 \
         GROUP BY decision, status";
    /// `(org_id, id)` → an action.
    GET_ACTION = concat!("SELECT ", action_select!(), " FROM actions WHERE org_id = $1 AND id = $2");
    /// `(status, result, reason, updated_at, params, context, org_id, id, expected_version)`:
    /// sets status, result, updated_at and (unless NULL) reason, params and context, and adds
    /// 1 to the version, if the action's version is `expected_version` (or that is NULL).
    UPDATE_ACTION = "UPDATE actions SET status = $1, result = $2, reason = COALESCE($3, reason), \
         updated_at = $4, params = COALESCE($5, params), context = COALESCE($6, context), \
         version = version + 1 \
         WHERE org_id = $7 AND id = $8 AND ($9 IS NULL OR version = $9)";
    /// `(org_id, id)` → the action's version, if it exists.
    ACTION_VERSION = "SELECT version FROM actions WHERE org_id = $1 AND id = $2";
    /// `(org_id, action_id, user_id, user_name, vote, comment, created_at)`; inserts nothing
    /// unless the action is the organisation's.
    INSERT_APPROVAL_VOTE = "INSERT INTO approval_votes \
           (org_id, action_id, user_id, user_name, vote, comment, created_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS \
           (SELECT 1 FROM actions WHERE org_id = $1 AND id = $2)";
    /// `(org_id, action_id)` → the answers, oldest first.
    LIST_APPROVAL_VOTES = "SELECT org_id, action_id, user_id, user_name, vote, comment, created_at \
         FROM approval_votes WHERE org_id = $1 AND action_id = $2 ORDER BY created_at, user_id";
    /// `(org_id, four_eyes, approval_timeout_seconds, updated_at, outbound_detection)`:
    /// insert or replace.
    UPSERT_ORG_SETTINGS = "INSERT INTO org_settings (org_id, four_eyes, approval_timeout_seconds, updated_at, \
           outbound_detection) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id) DO UPDATE SET \
           four_eyes = excluded.four_eyes, \
           approval_timeout_seconds = excluded.approval_timeout_seconds, \
           updated_at = excluded.updated_at, \
           outbound_detection = excluded.outbound_detection";
    /// `(org_id)` → the organisation's settings row.
    GET_ORG_SETTINGS = "SELECT org_id, four_eyes, approval_timeout_seconds, updated_at, \
           outbound_detection FROM org_settings WHERE org_id = $1";
    /// `(org_id, status, decision, expires_at_or_before or NULL, updated_before or NULL,
    /// limit)` → matching actions, oldest first, read through the index
    /// `actions_org_status_decision` (migration 0007 / 0006 for PostgreSQL).
    LIST_ACTIONS = concat!("SELECT ", action_select!(), " FROM actions \
         WHERE org_id = $1 AND status = $2 AND decision = $3 \
           AND ($4 IS NULL OR expires_at <= $4) AND ($5 IS NULL OR updated_at < $5) \
         ORDER BY created_at, id LIMIT $6");
    /// `(org_id, status, decision)` → how many actions match, counted in the index
    /// `actions_org_status_decision` (the pending approvals of the metrics).
    COUNT_ACTIONS_WITH_STATUS = "SELECT COUNT(*) FROM actions \
         WHERE org_id = $1 AND status = $2 AND decision = $3";
    /// `(id, org_id, url, events, format, secret, created_at, created_by)`.
    INSERT_WEBHOOK = "INSERT INTO webhooks (id, org_id, url, events, format, secret, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    /// `(now, org_id, id)`.
    DISABLE_WEBHOOK = "UPDATE webhooks SET disabled_at = $1 \
         WHERE org_id = $2 AND id = $3 AND disabled_at IS NULL";
    /// `(org_id)` → the organisation's webhooks, oldest first.
    LIST_WEBHOOKS = "SELECT id, org_id, url, events, format, secret, created_at, created_by, disabled_at \
         FROM webhooks WHERE org_id = $1 ORDER BY created_at, id";
    /// `(id, org_id, webhook_id, event, action_id, payload, status, attempts, next_attempt_at,
    /// created_at, updated_at)`; inserts nothing unless the webhook is the organisation's.
    INSERT_DELIVERY = "INSERT INTO webhook_deliveries (id, org_id, webhook_id, event, action_id, payload, \
           status, attempts, next_attempt_at, created_at, updated_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 WHERE EXISTS \
           (SELECT 1 FROM webhooks WHERE org_id = $2 AND id = $3)";
    /// `(status, attempts, next_attempt_at, last_status_code, last_error, updated_at, org_id,
    /// id, expected_version)`.
    UPDATE_DELIVERY = "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, \
           last_status_code = $4, last_error = $5, updated_at = $6, version = version + 1 \
         WHERE org_id = $7 AND id = $8 AND version = $9";
    /// `(org_id, webhook_id, limit)` → the webhook's deliveries, newest first.
    LIST_DELIVERIES = concat!("SELECT ", delivery_select!(), " FROM webhook_deliveries \
         WHERE org_id = $1 AND webhook_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3");
    /// `(org_id, now, limit)` → pending deliveries due at or before `now`, oldest first.
    DUE_DELIVERIES = concat!("SELECT ", delivery_select!(), " FROM webhook_deliveries \
         WHERE org_id = $1 AND status = 'pending' AND next_attempt_at <= $2 \
         ORDER BY next_attempt_at, id LIMIT $3");
    /// `(org_id, kind, key, name, active_version, latest_version, created_at, updated_at,
    /// created_by)`.
    INSERT_POLICY_OBJECT = "INSERT INTO policy_objects (org_id, kind, key, name, active_version, \
           latest_version, created_at, updated_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    /// `(name, latest_version, active_version, updated_at, org_id, kind, key,
    /// expected_latest)`: a new version of a live object, if its latest is still the one read.
    UPDATE_POLICY_OBJECT = "UPDATE policy_objects SET name = $1, latest_version = $2, \
           active_version = $3, updated_at = $4 \
         WHERE org_id = $5 AND kind = $6 AND key = $7 AND latest_version = $8 \
           AND disabled_at IS NULL";
    /// `(org_id, kind, key, version, body, mode, sha256, author, created_at)`.
    INSERT_POLICY_OBJECT_VERSION = "INSERT INTO policy_object_versions (org_id, kind, key, version, \
           body, mode, sha256, author, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    /// `(version, updated_at, org_id, kind, key)`: puts an existing version in force.
    ACTIVATE_POLICY_OBJECT_VERSION = "UPDATE policy_objects SET active_version = $1, updated_at = $2 \
         WHERE org_id = $3 AND kind = $4 AND key = $5 AND disabled_at IS NULL \
           AND $1 >= 1 AND $1 <= latest_version";
    /// `(now, org_id, kind, key)`.
    DISABLE_POLICY_OBJECT = "UPDATE policy_objects SET disabled_at = $1, updated_at = $1 \
         WHERE org_id = $2 AND kind = $3 AND key = $4 AND disabled_at IS NULL";
    /// `(org_id, kind or NULL)` → live and disabled objects with their active version.
    LIST_POLICY_OBJECTS = concat!(policy_object_select!(),
        "WHERE o.org_id = $1 AND ($2 IS NULL OR o.kind = $2) ORDER BY o.kind, o.name, o.key");
    /// `(org_id, kind, key)` → the object with its active version.
    GET_POLICY_OBJECT = concat!(policy_object_select!(),
        "WHERE o.org_id = $1 AND o.kind = $2 AND o.key = $3");
    /// `(org_id, kind, key)` → every version, oldest first.
    LIST_POLICY_OBJECT_VERSIONS = "SELECT org_id, kind, key, version, body, mode, sha256, author, \
           created_at FROM policy_object_versions \
         WHERE org_id = $1 AND kind = $2 AND key = $3 ORDER BY version";
    /// `(org_id, now)`: the first change of an organisation's policy objects.
    INSERT_POLICY_GENERATION = "INSERT INTO policy_state (org_id, generation, updated_at) \
         VALUES ($1, 1, $2)";
    /// `(now, org_id, expected)`: a later change, if no other came first.
    BUMP_POLICY_GENERATION = "UPDATE policy_state SET generation = generation + 1, updated_at = $1 \
         WHERE org_id = $2 AND generation = $3";
    /// `(org_id)` → the organisation's policy generation.
    POLICY_GENERATION = "SELECT generation FROM policy_state WHERE org_id = $1";
    /// `()` → every organisation's policy generation.
    POLICY_GENERATIONS = "SELECT org_id, generation FROM policy_state";
    /// `(id, org_id, scope, agent_id, tool, reason, source, created_at, created_by,
    /// expires_at)`.
    INSERT_KILL_SWITCH = "INSERT INTO kill_switches (id, org_id, scope, agent_id, tool, reason, \
           source, created_at, created_by, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    /// `(now, by, org_id, id)`: releases a switch not released yet.
    RELEASE_KILL_SWITCH = "UPDATE kill_switches SET released_at = $1, released_by = $2 \
         WHERE org_id = $3 AND id = $4 AND released_at IS NULL";
    /// `(org_id, now)`: advances the organisation's kill-switch generation (the first
    /// change creates it at 1).
    BUMP_RUNTIME_GENERATION = "INSERT INTO runtime_state (org_id, generation, updated_at) \
         VALUES ($1, 1, $2) ON CONFLICT (org_id) DO UPDATE \
         SET generation = runtime_state.generation + 1, \
             updated_at = excluded.updated_at";
    /// `()` → every organisation's kill-switch generation.
    RUNTIME_GENERATIONS = "SELECT org_id, generation FROM runtime_state";
    /// `(org_id)` → the organisation's kill-switch generation.
    RUNTIME_GENERATION = "SELECT generation FROM runtime_state WHERE org_id = $1";
    /// `(org_id, unreleased_only (0/1), limit)` → the organisation's kill switches, newest
    /// first.
    LIST_KILL_SWITCHES = "SELECT id, org_id, scope, agent_id, tool, reason, source, created_at, \
           created_by, expires_at, released_at, released_by FROM kill_switches \
         WHERE org_id = $1 AND ($2 = 0 OR released_at IS NULL) \
         ORDER BY created_at DESC, id DESC LIMIT $3";
    /// `(now, org_id, agent_id)`: revokes every live key of the agent.
    REVOKE_ALL_AGENT_KEYS = "UPDATE agent_keys SET revoked_at = $1 \
         WHERE org_id = $2 AND agent_id = $3 AND revoked_at IS NULL";
    /// `(id, org_id, scope, agent_id, tool, limit_count, period, burst, created_at,
    /// created_by, mode)`.
    INSERT_RATE_LIMIT = "INSERT INTO rate_limits (id, org_id, scope, agent_id, tool, limit_count, \
           period, burst, created_at, created_by, mode) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
    /// `(now, by, org_id, id)`: deletes a live limit.
    DELETE_RATE_LIMIT = "UPDATE rate_limits SET deleted_at = $1, deleted_by = $2 \
         WHERE org_id = $3 AND id = $4 AND deleted_at IS NULL";
    /// `(org_id)` → the organisation's live rate limits, oldest first.
    LIST_RATE_LIMITS = "SELECT id, org_id, scope, agent_id, tool, limit_count, period, burst, \
           mode, created_at, created_by FROM rate_limits WHERE org_id = $1 AND deleted_at IS NULL \
         ORDER BY created_at, id";
    /// `(minute_ago, five_minutes_ago, org_id, agent_id, hour_ago)` → per tool: the agent's
    /// actions since `minute_ago` and since `hour_ago`, and its denials since
    /// `five_minutes_ago` (`input.usage`).
    AGENT_USAGE = "SELECT tool, \
           SUM(CASE WHEN created_at >= $1 THEN 1 ELSE 0 END) AS last_minute, \
           SUM(CASE WHEN created_at >= $2 AND status = 'denied' THEN 1 ELSE 0 END) AS denials, \
           COUNT(*) AS last_hour \
         FROM actions WHERE org_id = $3 AND agent_id = $4 AND created_at >= $5 GROUP BY tool";
    /// `(org_id, agent_id, since, limit)` → the agent's actions created at or after `since`,
    /// newest first, at most `limit` (the index on `(org_id, agent_id, created_at)`).
    AGENT_ACTIONS_SINCE = concat!("SELECT ", action_select!(), " FROM actions \
         WHERE org_id = $1 AND agent_id = $2 AND created_at >= $3 \
         ORDER BY created_at DESC, id DESC LIMIT $4");
    /// `(org_id, agent_id, after_created_at, after_id, limit)` → the agent's actions strictly
    /// after `(after_created_at, after_id)`, oldest first (by `created_at`, then `id`), at
    /// most `limit`. `created_at >= $3` bounds the range on the index on `(org_id, agent_id,
    /// created_at)`; the rest drops the ties at or before `after_id`.
    AGENT_ACTIONS_AFTER = concat!("SELECT ", action_select!(), " FROM actions \
         WHERE org_id = $1 AND agent_id = $2 AND created_at >= $3 \
           AND (created_at > $3 OR id > $4) \
         ORDER BY created_at, id LIMIT $5");
    /// `(org_id, agent_id, limit)` → the agent's first actions, oldest first (by
    /// `created_at`, then `id`), at most `limit` (the index on `(org_id, agent_id,
    /// created_at)`).
    AGENT_ACTIONS_FIRST = concat!("SELECT ", action_select!(), " FROM actions \
         WHERE org_id = $1 AND agent_id = $2 \
         ORDER BY created_at, id LIMIT $3");
    /// `(org_id, agent_id)` → the agent's behavioural profile.
    GET_AGENT_PROFILE = "SELECT org_id, agent_id, profile, folded_at, folded_id, updated_at \
         FROM agent_profiles WHERE org_id = $1 AND agent_id = $2";
    /// `(org_id, agent_id, profile, folded_at, folded_id, updated_at, expected_at,
    /// expected_id)`: writes the profile unless a stored one's watermark is not `(expected_at,
    /// expected_id)` (SQLite's `IS`: NULL matches NULL); then it changes nothing.
    PUT_AGENT_PROFILE_SQLITE = concat!(put_agent_profile!(),
        "WHERE agent_profiles.folded_at IS $7 AND agent_profiles.folded_id IS $8");
    /// [`PUT_AGENT_PROFILE_SQLITE`] for PostgreSQL (whose `IS` takes only NULL, TRUE, ...).
    PUT_AGENT_PROFILE_PG = concat!(put_agent_profile!(),
        "WHERE agent_profiles.folded_at IS NOT DISTINCT FROM $7 \
           AND agent_profiles.folded_id IS NOT DISTINCT FROM $8");
    /// `(id, org_id, agent_id, unit, period, limit_amount, created_at, created_by,
    /// updated_at)`.
    INSERT_BUDGET = "INSERT INTO budgets (id, org_id, agent_id, unit, period, limit_amount, \
           created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    /// `(limit_amount, now, org_id, id)`: changes a live budget's limit.
    UPDATE_BUDGET = "UPDATE budgets SET limit_amount = $1, updated_at = $2 \
         WHERE org_id = $3 AND id = $4 AND deleted_at IS NULL";
    /// `(now, by, org_id, id)`: deletes a live budget.
    DELETE_BUDGET = "UPDATE budgets SET deleted_at = $1, deleted_by = $2 \
         WHERE org_id = $3 AND id = $4 AND deleted_at IS NULL";
    /// `(org_id)` → the organisation's live budgets, oldest first.
    LIST_BUDGETS = "SELECT id, org_id, agent_id, unit, period, limit_amount, created_at, \
           updated_at FROM budgets WHERE org_id = $1 AND deleted_at IS NULL \
         ORDER BY created_at, id";
    /// `(org_id, budget_id, window_key)` → what the budget has spent in the window.
    BUDGET_SPENT = "SELECT spent FROM budget_spend \
         WHERE org_id = $1 AND budget_id = $2 AND window_key = $3";
    /// `(org_id, budget_id, window_key)`: the window's row, at 0, unless it exists.
    BUDGET_WINDOW = "INSERT INTO budget_spend (org_id, budget_id, window_key, spent) \
         VALUES ($1, $2, $3, 0) ON CONFLICT (budget_id, window_key) DO NOTHING";
    /// `(amount, org_id, budget_id, window_key, limit)` → the new total, only when the
    /// window is not exhausted and the amount fits: one statement, so concurrent
    /// reservations on any node are serialised by the row's lock and never pass the limit.
    BUDGET_RESERVE = "UPDATE budget_spend SET spent = spent + $1 \
         WHERE org_id = $2 AND budget_id = $3 AND window_key = $4 \
           AND spent < $5 AND spent + $1 <= $5 RETURNING spent";
    /// `(org_id, action_id, budget_id, window_key, agent_id, unit, reserved, created_at)`.
    INSERT_BUDGET_CHARGE = "INSERT INTO budget_charges (org_id, action_id, budget_id, \
           window_key, agent_id, unit, reserved, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    /// `(org_id, action_id)` → the action's unsettled charges.
    UNSETTLED_CHARGES = "SELECT budget_id, window_key, unit, reserved FROM budget_charges \
         WHERE org_id = $1 AND action_id = $2 AND actual IS NULL ORDER BY budget_id";
    /// `(delta, org_id, budget_id, window_key)`: moves a window's spend by `delta` (a
    /// settlement), never below 0.
    BUDGET_ADJUST = "UPDATE budget_spend \
         SET spent = CASE WHEN spent + $1 < 0 THEN 0 ELSE spent + $1 END \
         WHERE org_id = $2 AND budget_id = $3 AND window_key = $4";
    /// `(actual, now, org_id, action_id, budget_id)`: settles one charge.
    SETTLE_CHARGE = "UPDATE budget_charges SET actual = $1, settled_at = $2 \
         WHERE org_id = $3 AND action_id = $4 AND budget_id = $5 AND actual IS NULL";
    /// `(org_id, agent_id, unit, since)` → what the agent's actions charged in `unit` since
    /// then (settled usage, or the reservation while unsettled).
    AGENT_SPEND_SINCE = "SELECT CAST(COALESCE(SUM(COALESCE(actual, reserved)), 0) AS BIGINT) \
           AS spent \
         FROM budget_charges WHERE org_id = $1 AND agent_id = $2 AND unit = $3 \
           AND created_at >= $4";
    /// `(org_id, config, updated_at, updated_by)`: sets the organisation's circuit breakers.
    SET_CIRCUIT_BREAKERS = "INSERT INTO circuit_breakers (org_id, config, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (org_id) DO UPDATE \
         SET config = excluded.config, updated_at = excluded.updated_at, \
             updated_by = excluded.updated_by";
    /// `(org_id)` → the organisation's circuit breakers (JSON), if it set its own.
    GET_CIRCUIT_BREAKERS = "SELECT config FROM circuit_breakers WHERE org_id = $1";
    /// `(id, org_id, name, transport, created_at, created_by, updated_at)`.
    INSERT_MCP_SERVER = "INSERT INTO mcp_servers (id, org_id, name, transport, created_at, \
           created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    /// `(transport, now, org_id, name)`: changes a live server's transport.
    UPDATE_MCP_SERVER = "UPDATE mcp_servers SET transport = $1, updated_at = $2 \
         WHERE org_id = $3 AND name = $4 AND deleted_at IS NULL";
    /// `(now, org_id, name)`: deletes a live server (kept, marked deleted).
    DELETE_MCP_SERVER = "UPDATE mcp_servers SET deleted_at = $1, updated_at = $1 \
         WHERE org_id = $2 AND name = $3 AND deleted_at IS NULL";
    /// `(org_id)` → the organisation's live servers, by name.
    LIST_MCP_SERVERS = concat!(mcp_server_select!(),
        "WHERE org_id = $1 AND deleted_at IS NULL ORDER BY name");
    /// `(org_id, name)` → the organisation's live server of this name.
    GET_MCP_SERVER = concat!(mcp_server_select!(),
        "WHERE org_id = $1 AND name = $2 AND deleted_at IS NULL");
    /// `(org_id, server, tool, hash, definition, pending_hash, pending_definition,
    /// first_seen_at, accepted_at, accepted_by, changed_at)`; a tool pinned before keeps its
    /// pin (the first sight wins).
    PIN_MCP_TOOL = "INSERT INTO mcp_tool_pins (org_id, server, tool, hash, definition, \
           pending_hash, pending_definition, first_seen_at, accepted_at, accepted_by, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (org_id, server, tool) DO NOTHING";
    /// `(hash, definition, now, org_id, server, tool)`: records a changed definition as
    /// pending, unless it is the accepted one or already the pending one.
    FLAG_MCP_TOOL_CHANGE = "UPDATE mcp_tool_pins \
         SET pending_hash = $1, pending_definition = $2, changed_at = $3 \
         WHERE org_id = $4 AND server = $5 AND tool = $6 AND hash <> $1 \
           AND (pending_hash IS NULL OR pending_hash <> $1)";
    /// `(now, by, org_id, server, tool, hash)`: makes the pending definition the accepted
    /// one, if its hash is `hash`.
    ACCEPT_MCP_TOOL = "UPDATE mcp_tool_pins \
         SET hash = pending_hash, definition = pending_definition, pending_hash = NULL, \
             pending_definition = NULL, accepted_at = $1, accepted_by = $2 \
         WHERE org_id = $3 AND server = $4 AND tool = $5 AND pending_hash = $6";
    /// `(org_id, server, tool)` → the pin's pending hash (NULL: nothing pending), if the
    /// tool has a pin.
    MCP_TOOL_PENDING_HASH = "SELECT pending_hash FROM mcp_tool_pins \
         WHERE org_id = $1 AND server = $2 AND tool = $3";
    /// `(org_id, server or NULL)` → the organisation's pins (of one server), by server and
    /// tool.
    LIST_MCP_TOOL_PINS = concat!(mcp_tool_pin_select!(),
        "WHERE org_id = $1 AND ($2 IS NULL OR server = $2) ORDER BY server, tool");
    /// `(org_id, server, tool)` → the tool's pin.
    GET_MCP_TOOL_PIN = concat!(mcp_tool_pin_select!(),
        "WHERE org_id = $1 AND server = $2 AND tool = $3");
    /// `(id, org_id, agent_id, kill_switch_id, created_at, created_by, sha256, snapshot)`.
    INSERT_AGENT_SNAPSHOT = "INSERT INTO agent_snapshots (id, org_id, agent_id, kill_switch_id, \
           created_at, created_by, sha256, snapshot) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    /// `(org_id, agent_id)` → the agent's snapshots, newest first.
    LIST_AGENT_SNAPSHOTS = "SELECT id, org_id, agent_id, kill_switch_id, created_at, created_by, \
           sha256, snapshot FROM agent_snapshots WHERE org_id = $1 AND agent_id = $2 \
         ORDER BY created_at DESC, id DESC";
    /// `(org_id, window, agent_id, limit)` → the agent's actions among the organisation's
    /// latest `window`, newest first (read through `actions_org_created`; no index by agent,
    /// which every decision would pay for).
    AGENT_RECENT_ACTIONS = concat!("SELECT ", action_select!(), " FROM (SELECT ", action_select!(),
        " FROM actions WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2) AS recent \
         WHERE agent_id = $3 ORDER BY created_at DESC, id DESC LIMIT $4");
    /// `(org_id, window, agent_id, limit)` → the agent's audit events among the
    /// organisation's latest `window`, newest first.
    AGENT_RECENT_EVENTS = "SELECT org_id, seq, ts, agent_id, action_id, type, data, prev_hash, hash, \
         payload, payload_removed FROM (SELECT org_id, seq, ts, agent_id, action_id, type, data, \
           prev_hash, hash, payload, payload_removed FROM audit_events WHERE org_id = $1 ORDER BY seq DESC LIMIT $2) AS recent \
         WHERE agent_id = $3 ORDER BY seq DESC LIMIT $4";
    /// `(org_id, revision, bundle, created_at)`; a revision stored before is kept.
    INSERT_POLICY_REVISION = "INSERT INTO policy_revisions (org_id, revision, bundle, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, revision) DO NOTHING";
    /// `(org_id, revision)` → what the revision was built from.
    GET_POLICY_REVISION = "SELECT org_id, revision, bundle, created_at FROM policy_revisions \
         WHERE org_id = $1 AND revision = $2";
    /// `(org_id, policy_key, policy_version, action_id, enforced, shadow, differs,
    /// created_at)`.
    INSERT_SHADOW_RESULT = "INSERT INTO shadow_results (org_id, policy_key, policy_version, \
           action_id, enforced, shadow, differs, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    /// `(org_id, policy_key)` → counts by (enforced, shadow) outcome.
    SHADOW_COUNTS = "SELECT enforced, shadow, COUNT(*) AS n FROM shadow_results \
         WHERE org_id = $1 AND policy_key = $2 GROUP BY enforced, shadow ORDER BY enforced, shadow";
    /// `(org_id, policy_key, limit)` → the latest results where the shadow policy differed.
    SHADOW_SAMPLES = "SELECT org_id, policy_key, policy_version, action_id, enforced, shadow, \
           differs, created_at FROM shadow_results \
         WHERE org_id = $1 AND policy_key = $2 AND differs = 1 \
         ORDER BY created_at DESC LIMIT $3";
    /// `(org_id)` → the organisation's data keys (docs/encryption.md), oldest first.
    LIST_DATA_KEYS = "SELECT org_id, id, wrapped, master_key_id, created_at, retired_at, \
           destroyed_at FROM data_keys WHERE org_id = $1 ORDER BY created_at, id";
    /// `(org_id, id, wrapped, master_key_id, created_at)`: a new active data key (a second
    /// active key of the organisation is a unique violation).
    INSERT_DATA_KEY = "INSERT INTO data_keys (org_id, id, wrapped, master_key_id, created_at) \
         VALUES ($1, $2, $3, $4, $5)";
    /// `(now, org_id)`: retires the organisation's active data key.
    RETIRE_DATA_KEY = "UPDATE data_keys SET retired_at = $1 \
         WHERE org_id = $2 AND retired_at IS NULL";
    /// `(now, org_id, keep)`: destroys every data key of the organisation but `keep`.
    DESTROY_DATA_KEYS = "UPDATE data_keys SET wrapped = NULL, destroyed_at = $1, \
           retired_at = COALESCE(retired_at, $1) \
         WHERE org_id = $2 AND id <> $3 AND destroyed_at IS NULL";
    /// `(org_id, id)` → the action's wrapped key and when it was destroyed.
    ACTION_DATA_KEY = "SELECT data_key, data_key_destroyed_at FROM actions \
         WHERE org_id = $1 AND id = $2";
    /// `(org_id, id)` → the action's wrapped key.
    ACTION_DATA_KEY_ONLY = "SELECT data_key FROM actions WHERE org_id = $1 AND id = $2";
    /// `(now, org_id, id)`: destroys the action's key.
    DESTROY_ACTION_KEY = "UPDATE actions SET data_key = NULL, data_key_destroyed_at = $1 \
         WHERE org_id = $2 AND id = $3 AND data_key IS NOT NULL";
    /// `(reason, org_id, action_id)`: removes the stored payloads of the action's events.
    REMOVE_ACTION_PAYLOADS = "UPDATE audit_events SET payload = NULL, payload_removed = $1 \
         WHERE org_id = $2 AND action_id = $3 AND payload IS NOT NULL";
    /// `(org_id)` → the organisation's retention rules.
    GET_RETENTION = "SELECT rules, legal_hold FROM retention_rules WHERE org_id = $1";
    /// `(org_id, rules, legal_hold, now, by)`.
    UPSERT_RETENTION = "INSERT INTO retention_rules (org_id, rules, legal_hold, updated_at, \
           updated_by) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id) DO UPDATE SET \
           rules = excluded.rules, legal_hold = excluded.legal_hold, \
           updated_at = excluded.updated_at, updated_by = excluded.updated_by";
    /// `(org_id, type, before, limit)` → seqs of events of the type recorded before `before`
    /// whose payload is still stored, oldest first.
    RETENTION_CANDIDATES = "SELECT seq FROM audit_events WHERE org_id = $1 AND type = $2 \
         AND ts < $3 AND payload IS NOT NULL ORDER BY seq LIMIT $4";
    /// `(reason, org_id, seq)`: removes one event's stored payload.
    REMOVE_PAYLOAD = "UPDATE audit_events SET payload = NULL, payload_removed = $1 \
         WHERE org_id = $2 AND seq = $3 AND payload IS NOT NULL";
    /// `(org_id, after_seq, limit)` → a page of the chain.
    LIST_AUDIT = "SELECT org_id, seq, ts, agent_id, action_id, type, data, prev_hash, hash, \
         payload, payload_removed FROM audit_events WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
}

#[cfg(test)]
mod tests {
    use super::ALL;

    /// SQLite numbers `$n` parameters by first appearance, so the numbers must first appear
    /// in order (`$1`, `$2`, ...) for one positional list of values to serve both backends.
    #[test]
    fn placeholders_first_appear_in_order() {
        for (name, sql) in ALL {
            let mut seen: Vec<u32> = Vec::new();
            let bytes = sql.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'$' {
                    let digits: String = sql[i + 1..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    if let Ok(n) = digits.parse::<u32>() {
                        if !seen.contains(&n) {
                            seen.push(n);
                        }
                    }
                    i += 1 + digits.len();
                } else {
                    i += 1;
                }
            }
            let expected: Vec<u32> = (1..=u32::try_from(seen.len()).unwrap()).collect();
            assert_eq!(seen, expected, "{name}: placeholders out of order");
        }
    }

    /// The SQLite query plan of `sql`, one line per step, on a database migrated to the
    /// latest schema (empty tables: the planner then goes by the indexes alone).
    fn sqlite_plan(sql: &str) -> String {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            conn.execute_batch(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        // Plans do not depend on the values (no statistics, no constant folding of `$n`).
        let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
        let rows = stmt
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows.join("\n")
    }

    /// The statements the background workers run every second read only their matching
    /// rows from an index on the organisation and status: none filters every action or
    /// delivery of the organisation, whose tables grow with every request.
    #[test]
    fn periodic_listings_read_only_their_rows_from_an_index() {
        for (sql, search) in [
            (
                super::LIST_ACTIONS,
                "USING INDEX actions_org_status_decision (org_id=? AND status=? AND decision=?)",
            ),
            (
                super::COUNT_ACTIONS_WITH_STATUS,
                "USING COVERING INDEX actions_org_status_decision (org_id=? AND status=? AND decision=?)",
            ),
            (
                super::DUE_DELIVERIES,
                "USING INDEX webhook_deliveries_due (org_id=? AND status=? AND next_attempt_at<?)",
            ),
        ] {
            let plan = sqlite_plan(sql);
            assert!(plan.contains(search), "{sql}\nplan:\n{plan}");
        }
        // Listed actions come in index order, not sorted afterwards.
        assert!(!sqlite_plan(super::LIST_ACTIONS).contains("TEMP B-TREE"));
    }

    /// An agent's actions after a watermark (profiles fold them in order) are a range of
    /// the index on `(org_id, agent_id, created_at)`, in its order: only actions sharing one
    /// `created_at` are sorted (by id), never the agent's whole history.
    #[test]
    fn an_agents_actions_in_order_are_a_range_of_its_index() {
        for (sql, search) in [
            (
                super::AGENT_ACTIONS_AFTER,
                "USING INDEX actions_org_agent_created (org_id=? AND agent_id=? AND created_at>?)",
            ),
            (
                super::AGENT_ACTIONS_FIRST,
                "USING INDEX actions_org_agent_created (org_id=? AND agent_id=?)",
            ),
        ] {
            let plan = sqlite_plan(sql);
            assert!(plan.contains(search), "{sql}\nplan:\n{plan}");
            assert!(
                !plan.contains("USE TEMP B-TREE FOR ORDER BY"),
                "{sql}\nplan:\n{plan}"
            );
        }
    }
}
