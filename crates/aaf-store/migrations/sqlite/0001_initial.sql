-- AAF schema, SQLite flavour.
--
-- Portability: every tenant table carries org_id so that the PostgreSQL flavour can enforce
-- row-level security on it; types are TEXT, INTEGER and REAL only; JSON is stored as TEXT;
-- timestamps are RFC 3339 UTC strings; ids are UUID strings (v7 unless the caller chose one).

CREATE TABLE orgs (
    id          TEXT NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    plan        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- Human and admin API tokens. Only a hash of the secret is stored.
CREATE TABLE api_tokens (
    id          TEXT NOT NULL PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX api_tokens_org ON api_tokens (org_id);

CREATE TABLE agents (
    id          TEXT NOT NULL PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    risk_score  REAL NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (org_id, name)
);

-- Agent API keys. Only a hash of the key is stored.
CREATE TABLE agent_keys (
    id            TEXT NOT NULL PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES orgs (id),
    agent_id      TEXT NOT NULL REFERENCES agents (id),
    key_hash      TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    revoked_at    TEXT,
    last_used_at  TEXT
);
CREATE INDEX agent_keys_agent ON agent_keys (agent_id);

CREATE TABLE actions (
    id          TEXT NOT NULL PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    tool        TEXT NOT NULL,
    operation   TEXT NOT NULL,
    params      TEXT NOT NULL,
    context     TEXT NOT NULL,
    decision    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    risk_level  TEXT,
    status      TEXT NOT NULL,
    policies    TEXT NOT NULL,
    result      TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX actions_org_created ON actions (org_id, created_at);

-- The hash-chained audit log, one chain per org_id (docs/audit.md). The reserved chain
-- "system" holds events of no authenticated organisation, so there is no foreign key to orgs.
CREATE TABLE audit_events (
    org_id     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    ts         TEXT NOT NULL,
    agent_id   TEXT,
    action_id  TEXT,
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (org_id, seq)
);

-- The last event of each chain, so that deleting the newest events is detected.
CREATE TABLE audit_heads (
    org_id  TEXT NOT NULL PRIMARY KEY,
    seq     INTEGER NOT NULL,
    hash    TEXT NOT NULL
);

-- Audit events are append-only. These triggers stop mistakes, not an attacker with the
-- database file: the hash chain is what detects tampering.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
