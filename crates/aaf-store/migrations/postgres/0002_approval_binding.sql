-- What binds a human approval to one exact action (the approvals workflow): the action's
-- digest, SHA-256 over the RFC 8785 canonical JSON of (org, agent, tool, operation, params,
-- context), and the approval deadline. Both are NULL for actions that need no approval.
-- (Same as migrations/sqlite/0003.)
ALTER TABLE actions ADD COLUMN digest TEXT;
ALTER TABLE actions ADD COLUMN expires_at TEXT;
