-- The approvals workflow (docs/approvals.md); same tables as migrations/sqlite/0004, with
-- the server role's privileges and row-level security.
ALTER TABLE actions ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE actions ADD COLUMN approvals_required BIGINT;
CREATE INDEX actions_org_status ON actions (org_id, status, expires_at);

CREATE TABLE approval_votes (
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    action_id   TEXT NOT NULL REFERENCES actions (id),
    user_id     TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    vote        TEXT NOT NULL CHECK (vote IN ('approve', 'reject')),
    comment     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, action_id, user_id)
);

CREATE TABLE org_settings (
    org_id                    TEXT NOT NULL PRIMARY KEY REFERENCES orgs (id),
    four_eyes                 BIGINT NOT NULL,
    approval_timeout_seconds  BIGINT,
    updated_at                TEXT NOT NULL
);

-- Votes are never changed or removed; settings are upserted.
GRANT SELECT, INSERT ON approval_votes TO aaf_app;
GRANT SELECT, INSERT, UPDATE ON org_settings TO aaf_app;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['approval_votes', 'org_settings']
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
