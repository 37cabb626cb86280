-- Encryption at rest and payload commitments: same as migrations/sqlite/0015, with the
-- server role's privileges and row-level security (docs/encryption.md).
CREATE TABLE data_keys (
    org_id         TEXT NOT NULL,
    id             TEXT NOT NULL,
    wrapped        TEXT,
    master_key_id  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    retired_at     TEXT,
    destroyed_at   TEXT,
    PRIMARY KEY (org_id, id)
);
CREATE UNIQUE INDEX data_keys_active ON data_keys (org_id) WHERE retired_at IS NULL;
GRANT SELECT, INSERT, UPDATE ON data_keys TO aaf_app;
ALTER TABLE data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON data_keys TO aaf_app
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));
DO $$
BEGIN
    EXECUTE format('CREATE POLICY owner_access ON data_keys TO %I USING (true) WITH CHECK (true)',
                   current_user);
END
$$;

ALTER TABLE actions ADD COLUMN data_key TEXT;
ALTER TABLE actions ADD COLUMN data_key_destroyed_at TEXT;

ALTER TABLE audit_events ADD COLUMN payload TEXT;
ALTER TABLE audit_events ADD COLUMN payload_removed TEXT;

-- Still append-only, except that a stored payload may be removed, with its reason.
CREATE FUNCTION aaf_audit_payload_removal_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.org_id IS DISTINCT FROM OLD.org_id OR NEW.seq IS DISTINCT FROM OLD.seq
        OR NEW.ts IS DISTINCT FROM OLD.ts OR NEW.agent_id IS DISTINCT FROM OLD.agent_id
        OR NEW.action_id IS DISTINCT FROM OLD.action_id OR NEW.type IS DISTINCT FROM OLD.type
        OR NEW.data IS DISTINCT FROM OLD.data OR NEW.prev_hash IS DISTINCT FROM OLD.prev_hash
        OR NEW.hash IS DISTINCT FROM OLD.hash OR OLD.payload IS NULL
        OR NEW.payload IS NOT NULL OR NEW.payload_removed IS NULL THEN
        RAISE EXCEPTION 'audit events are append-only (only a payload may be removed, with its reason)';
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER audit_events_append_only ON audit_events;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION aaf_audit_append_only();
CREATE TRIGGER audit_events_payload_removal_only BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION aaf_audit_payload_removal_only();
GRANT UPDATE (payload, payload_removed) ON audit_events TO aaf_app;

-- Retention (docs/retention.md): each organisation's days per event class and legal hold.
CREATE TABLE retention_rules (
    org_id      TEXT NOT NULL PRIMARY KEY,
    rules       TEXT NOT NULL,
    legal_hold  TEXT,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT
);
GRANT SELECT, INSERT, UPDATE ON retention_rules TO aaf_app;
ALTER TABLE retention_rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE retention_rules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON retention_rules TO aaf_app
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));
DO $$
BEGIN
    EXECUTE format('CREATE POLICY owner_access ON retention_rules TO %I USING (true) WITH CHECK (true)',
                   current_user);
END
$$;
