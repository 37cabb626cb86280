-- Webhooks and their deliveries; same tables as migrations/sqlite/0005, with the server
-- role's privileges and row-level security.
CREATE TABLE webhooks (
    id           TEXT NOT NULL PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs (id),
    url          TEXT NOT NULL,
    events       TEXT NOT NULL,
    format       TEXT NOT NULL CHECK (format IN ('json', 'slack')),
    secret       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    created_by   TEXT,
    disabled_at  TEXT
);
CREATE INDEX webhooks_org ON webhooks (org_id);

CREATE TABLE webhook_deliveries (
    id                TEXT NOT NULL PRIMARY KEY,
    org_id            TEXT NOT NULL REFERENCES orgs (id),
    webhook_id        TEXT NOT NULL REFERENCES webhooks (id),
    event             TEXT NOT NULL,
    action_id         TEXT,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts          BIGINT NOT NULL,
    next_attempt_at   TEXT NOT NULL,
    last_status_code  BIGINT,
    last_error        TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    version           BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (org_id, status, next_attempt_at);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (org_id, webhook_id, created_at);

GRANT SELECT, INSERT, UPDATE ON webhooks, webhook_deliveries TO aaf_app;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhooks', 'webhook_deliveries']
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
