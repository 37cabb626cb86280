-- Webhooks of an organisation and their deliveries (docs/approvals.md, "Webhooks").
--
-- The signing secret is kept as is: it must be usable to compute HMAC-SHA256 signatures.
-- Deliveries are written in the same transaction as the approval transition they announce
-- (an outbox), then sent and retried by every node's delivery worker; `version` makes each
-- attempt's claim a compare-and-set, so one node sends each attempt.
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
    attempts          INTEGER NOT NULL,
    next_attempt_at   TEXT NOT NULL,
    last_status_code  INTEGER,
    last_error        TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    version           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (org_id, status, next_attempt_at);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (org_id, webhook_id, created_at);
