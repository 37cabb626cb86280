-- Encryption at rest and payload commitments (docs/encryption.md, issue 18 section 3).

-- Each organisation's data keys (and the "system" chain's), wrapped by the master key, which
-- is never stored here. One active key per organisation seals new writes; a retired key still
-- opens what it sealed; a destroyed key (wrapped = NULL) opens nothing: crypto-shredding.
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

-- The action's own key, wrapped by its organisation's data key ("enc1.<data key>.<...>"); it
-- seals params, context, result and signals. NULL: written in clear, or destroyed
-- (data_key_destroyed_at says when).
ALTER TABLE actions ADD COLUMN data_key TEXT;
ALTER TABLE actions ADD COLUMN data_key_destroyed_at TEXT;

-- Events of format 2 hash a commitment to their payload (data = {"payload_sha256": ...}); the
-- payload itself (salt and data, sealed) is stored here, and may be removed by retention or
-- shredding, which records why in payload_removed.
ALTER TABLE audit_events ADD COLUMN payload TEXT;
ALTER TABLE audit_events ADD COLUMN payload_removed TEXT;

-- Still append-only, except that a stored payload may be removed, with its reason.
DROP TRIGGER IF EXISTS audit_events_no_update;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
WHEN NEW.org_id IS NOT OLD.org_id OR NEW.seq IS NOT OLD.seq OR NEW.ts IS NOT OLD.ts
    OR NEW.agent_id IS NOT OLD.agent_id OR NEW.action_id IS NOT OLD.action_id
    OR NEW.type IS NOT OLD.type OR NEW.data IS NOT OLD.data
    OR NEW.prev_hash IS NOT OLD.prev_hash OR NEW.hash IS NOT OLD.hash
    OR OLD.payload IS NULL OR NEW.payload IS NOT NULL OR NEW.payload_removed IS NULL
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only (only a payload may be removed, with its reason)');
END;

-- Retention (docs/retention.md): each organisation's days per event class and legal hold.
CREATE TABLE retention_rules (
    org_id      TEXT NOT NULL PRIMARY KEY,
    rules       TEXT NOT NULL,
    legal_hold  TEXT,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT
);
