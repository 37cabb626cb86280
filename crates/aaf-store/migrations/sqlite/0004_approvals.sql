-- The approvals workflow (docs/approvals.md).
--
-- actions.version counts the action's transitions: every change of an approval-requiring
-- action is a compare-and-set on it, so two approvers, an approver and the expiry sweeper,
-- or two nodes can never both move the same action (exactly one outcome).
-- actions.approvals_required: distinct approvals needed (NULL for actions needing none).
ALTER TABLE actions ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE actions ADD COLUMN approvals_required INTEGER;
CREATE INDEX actions_org_status ON actions (org_id, status, expires_at);

-- One row per approver's answer; the primary key stops an approver from counting twice.
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

-- Per-organisation approval settings; no row = the server's defaults.
CREATE TABLE org_settings (
    org_id                    TEXT NOT NULL PRIMARY KEY REFERENCES orgs (id),
    four_eyes                 INTEGER NOT NULL,
    approval_timeout_seconds  INTEGER,
    updated_at                TEXT NOT NULL
);
