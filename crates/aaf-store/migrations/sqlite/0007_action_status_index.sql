-- Listing actions by status (the approvals sweeper every second, GET /v1/approvals) must not
-- read every action of the organisation. With the index of 0004 on (org_id, status,
-- expires_at), SQLite's planner preferred actions_org_created to avoid sorting by
-- created_at and then filtered every row of the organisation by status: the sweeper's cost
-- grew with the table. This index answers
--   WHERE org_id = ? AND status = ? AND decision = ? ORDER BY created_at, id
-- in order from its first matching entry, and replaces the index of 0004.
DROP INDEX actions_org_status;
CREATE INDEX actions_org_status_decision ON actions (org_id, status, decision, created_at, id);
