-- Listing actions by status (the approvals sweeper every second, GET /v1/approvals) reads
-- the few matching actions in order from this index instead of filtering the organisation's
-- actions by status; it replaces the index of 0003 (SQLite: migration 0007).
DROP INDEX actions_org_status;
CREATE INDEX actions_org_status_decision ON actions (org_id, status, decision, created_at, id);
