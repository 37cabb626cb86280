-- Kill switches, the kill-switch generation of each organisation, and the snapshots taken
-- when an agent is isolated; same tables as migrations/sqlite/0008, with the server role's
-- privileges and row-level security (runtime_state holds only counters and is read across
-- organisations by every node's refresher, so it has none, like policy_state).
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

CREATE TABLE runtime_state (
    org_id                  TEXT NOT NULL PRIMARY KEY REFERENCES orgs (id),
    generation  BIGINT NOT NULL,
    updated_at              TEXT NOT NULL
);

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
    limit_count  BIGINT NOT NULL CHECK (limit_count BETWEEN 1 AND 1000000),
    period       TEXT NOT NULL CHECK (period IN ('second', 'minute', 'hour')),
    burst        BIGINT NOT NULL CHECK (burst BETWEEN 1 AND 1000000),
    created_at   TEXT NOT NULL,
    created_by   TEXT,
    deleted_at   TEXT,
    deleted_by   TEXT
);
CREATE INDEX rate_limits_org ON rate_limits (org_id, deleted_at, created_at);

-- The shared GCRA counters of several nodes: the theoretical arrival time of each counter,
-- in microseconds of the database's clock (one clock for every node). SQLite's single node
-- counts in memory.
CREATE TABLE rate_limit_counters (
    org_id  TEXT NOT NULL REFERENCES orgs (id),
    key     TEXT NOT NULL,
    tat_us  BIGINT NOT NULL,
    PRIMARY KEY (org_id, key)
);

GRANT SELECT, INSERT, UPDATE ON kill_switches, runtime_state, agent_snapshots, rate_limits,
    rate_limit_counters TO aaf_app;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['kill_switches', 'agent_snapshots', 'rate_limits',
                             'rate_limit_counters']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I TO aaf_app USING (org_id = current_setting(''app.org_id'', true)) '
            'WITH CHECK (org_id = current_setting(''app.org_id'', true))', t);
        EXECUTE format('CREATE POLICY owner_access ON %I TO %I USING (true) WITH CHECK (true)',
                       t, current_user);
    END LOOP;
END
$$;
