-- Identity and access (issue: roles, agent key lifecycle, signed agent requests).
--
-- People are `users` with one role each (admin, approver, auditor, viewer); API tokens belong
-- to a user and take its role. Agent keys may be limited to some tools. Agents may have an
-- Ed25519 public key, in which case their requests must be signed (RFC 9421) and each
-- signature nonce may be used once (`signature_nonces`).

CREATE TABLE users (
    id          TEXT NOT NULL PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'approver', 'auditor', 'viewer')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    deleted_at  TEXT
);
-- A name is unique among the organisation's current users.
CREATE UNIQUE INDEX users_org_name ON users (org_id, name) WHERE deleted_at IS NULL;

-- Every existing token becomes a user of its own (same id, name and role).
INSERT INTO users (id, org_id, name, role, created_at, updated_at)
    SELECT id, org_id, name, role, created_at, created_at FROM api_tokens;

ALTER TABLE api_tokens ADD COLUMN user_id TEXT REFERENCES users (id);
UPDATE api_tokens SET user_id = id;
-- The role is the user's; a token has none of its own.
ALTER TABLE api_tokens DROP COLUMN role;
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- JSON array of tool names the key may submit; NULL = every tool.
ALTER TABLE agent_keys ADD COLUMN tools TEXT;
-- Who created the key (a user id), for the record.
ALTER TABLE agent_keys ADD COLUMN created_by TEXT;

-- Base64 (standard, padded) of the agent's raw 32-byte Ed25519 public key; NULL = the agent
-- authenticates with its API key alone.
ALTER TABLE agents ADD COLUMN public_key TEXT;

-- Nonces of accepted signed requests, kept until the signature window has passed.
CREATE TABLE signature_nonces (
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    nonce       TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, agent_id, nonce)
);
CREATE INDEX signature_nonces_expiry ON signature_nonces (expires_at);
