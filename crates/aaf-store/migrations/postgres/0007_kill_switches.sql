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
    kill_switch_generation  BIGINT NOT NULL,
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

GRANT SELECT, INSERT, UPDATE ON kill_switches, runtime_state, agent_snapshots TO aaf_app;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['kill_switches', 'agent_snapshots']
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
