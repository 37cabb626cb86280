-- Behavioural profiles of agents (risk scoring): what each agent usually does, learned from
-- its own actions; same table as migrations/sqlite/0013, with the server role's privileges
-- (no DELETE: rows are never deleted) and row-level security.
-- `profile` is JSON whose shape belongs to aaf_core; `folded_at` and `folded_id` are the
-- `created_at` and `id` of the last action folded into it (both NULL before the first), the
-- watermark every write compares and sets, so that nodes folding the same agent's actions
-- concurrently never fold one twice.
CREATE TABLE agent_profiles (
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    agent_id    TEXT NOT NULL,
    profile     TEXT NOT NULL,
    folded_at   TEXT,
    folded_id   TEXT,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, agent_id),
    CHECK ((folded_at IS NULL AND folded_id IS NULL)
           OR (folded_at IS NOT NULL AND folded_id IS NOT NULL))
);

GRANT SELECT, INSERT, UPDATE ON agent_profiles TO aaf_app;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['agent_profiles']
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
