-- The transparency log over each audit chain (docs/audit.md, "Transparency log"); same
-- tables as migrations/sqlite/0014, with the server role's privileges (stored hashes and
-- checkpoints: read and append only) and row-level security.
CREATE TABLE audit_tree_hashes (
    org_id  TEXT NOT NULL,
    idx     BIGINT NOT NULL,
    hash    TEXT NOT NULL,
    PRIMARY KEY (org_id, idx)
);

CREATE TABLE audit_trees (
    org_id      TEXT NOT NULL PRIMARY KEY,
    size        BIGINT NOT NULL,
    last_hash   TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
    org_id      TEXT NOT NULL,
    tree_size   BIGINT NOT NULL,
    root_hash   TEXT NOT NULL,
    note        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, tree_size)
);

CREATE TRIGGER audit_tree_hashes_append_only BEFORE UPDATE OR DELETE ON audit_tree_hashes
    FOR EACH ROW EXECUTE FUNCTION aaf_audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION aaf_audit_append_only();

GRANT SELECT, INSERT ON audit_tree_hashes, audit_checkpoints TO aaf_app;
GRANT SELECT, INSERT, UPDATE ON audit_trees TO aaf_app;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['audit_tree_hashes', 'audit_trees', 'audit_checkpoints']
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

-- Every chain's head (organisations and "system"): what the tree builder of each node polls.
CREATE FUNCTION aaf_chain_heads() RETURNS TABLE (org_id TEXT, seq BIGINT)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT org_id, seq FROM audit_heads
$$;
REVOKE ALL ON FUNCTION aaf_chain_heads() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aaf_chain_heads() TO aaf_app;

-- The events of one action, for its proof pack (GET /v1/proof-pack/{action_id}).
CREATE INDEX audit_events_action ON audit_events (org_id, action_id) WHERE action_id IS NOT NULL;

-- How far each decision-log sink has exported each chain's action.decided events.
CREATE TABLE decision_log_cursors (
    sink        TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (sink, org_id)
);
GRANT SELECT, INSERT, UPDATE ON decision_log_cursors TO aaf_app;
ALTER TABLE decision_log_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE decision_log_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON decision_log_cursors TO aaf_app
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));
DO $$
BEGIN
    EXECUTE format('CREATE POLICY owner_access ON decision_log_cursors TO %I USING (true) WITH CHECK (true)',
                   current_user);
END
$$;
