-- Kill switches, the kill-switch generation of each organisation, and the snapshots taken
-- when an agent is isolated (docs/runtime-protection.md).
--
-- A kill switch is in force while `released_at` is NULL and `expires_at` (if any) has not
-- passed. Every engagement and release also advances the organisation's
-- `generation` in the same transaction: every node polls the generations (one
-- read for all organisations) and reloads the switches of an organisation whose generation
-- moved, so a change through any node or any tool reaches every node.
CREATE TABLE kill_switches (
    id           TEXT NOT NULL PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs (id),
    scope        TEXT NOT NULL CHECK (scope IN ('org', 'agent', 'tool', 'agent_tool')),
    agent_id     TEXT,
    tool         TEXT,
    reason       TEXT NOT NULL,
    source       TEXT NOT NULL CHECK (source IN ('manual', 'isolation', 'circuit_breaker')),
    created_at   TEXT NOT NULL,
    created_by   TEXT,
    expires_at   TEXT,
    released_at  TEXT,
    released_by  TEXT,
    CHECK ((scope IN ('agent', 'agent_tool')) = (agent_id IS NOT NULL)),
    CHECK ((scope IN ('tool', 'agent_tool')) = (tool IS NOT NULL))
);
CREATE INDEX kill_switches_org_live ON kill_switches (org_id, released_at, created_at);

-- The runtime generation of each organisation: advanced with every change of its kill
-- switches or rate limits. Counters only, read across organisations by every node's
-- refresher.
CREATE TABLE runtime_state (
    org_id                  TEXT NOT NULL PRIMARY KEY REFERENCES orgs (id),
    generation  INTEGER NOT NULL,
    updated_at              TEXT NOT NULL
);

-- What an isolated agent had done recently, kept for forensics (`snapshot` is JSON).
CREATE TABLE agent_snapshots (
    id              TEXT NOT NULL PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES orgs (id),
    agent_id        TEXT NOT NULL,
    kill_switch_id  TEXT NOT NULL REFERENCES kill_switches (id),
    created_at      TEXT NOT NULL,
    created_by      TEXT,
    sha256          TEXT NOT NULL,
    snapshot        TEXT NOT NULL
);
CREATE INDEX agent_snapshots_agent ON agent_snapshots (org_id, agent_id, created_at);

-- Rate limits of an organisation (docs/runtime-protection.md, "Rate limits"): `limit_count`
-- actions per `period` (the window) with bursts of `burst`; a scope without its target applies to each
-- agent or tool separately. Deleted ones are kept (`deleted_at`).
CREATE TABLE rate_limits (
    id           TEXT NOT NULL PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs (id),
    scope        TEXT NOT NULL CHECK (scope IN ('org', 'agent', 'tool', 'agent_tool')),
    agent_id     TEXT,
    tool         TEXT,
    limit_count  INTEGER NOT NULL CHECK (limit_count BETWEEN 1 AND 1000000),
    period       TEXT NOT NULL CHECK (period IN ('second', 'minute', 'hour')),
    burst        INTEGER NOT NULL CHECK (burst BETWEEN 1 AND 1000000),
    created_at   TEXT NOT NULL,
    created_by   TEXT,
    deleted_at   TEXT,
    deleted_by   TEXT
);
CREATE INDEX rate_limits_org ON rate_limits (org_id, deleted_at, created_at);
