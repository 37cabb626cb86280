-- AAF schema, PostgreSQL flavour: the same tables, columns and rules as the SQLite schema
-- (migrations/sqlite, after 0002), plus tenant isolation by row-level security.
--
-- Roles: whoever runs this migration owns the tables (the "owner"; e.g. the database's
-- administrator). The server works as the role `aaf_app` (created here, NOLOGIN, no
-- superuser, no BYPASSRLS, not an owner): it either logs in as a LOGIN role that is a member
-- of aaf_app, or logs in as the owner and switches with `SET ROLE aaf_app` (docs/postgres.md).
--
-- Tenant isolation: every tenant table has ROW LEVEL SECURITY enabled and FORCEd, with a
-- policy for aaf_app on `org_id = current_setting('app.org_id', true)` (`id` for orgs). The
-- server sets `app.org_id` per transaction (`set_config(..., true)`); a query that forgets its
-- own org filter still sees only that organisation, and with no org set it sees nothing.
-- The few lookups that must cross organisations (a credential's organisation by its hash, an
-- organisation by name, the list of chains, purging expired nonces) are SECURITY DEFINER
-- functions owned by the owner, who has a policy of its own.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aaf_app') THEN
        CREATE ROLE aaf_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    -- Created concurrently by a migration of another database of the cluster.
    NULL;
END
$$;

-- The owner may switch to aaf_app (a superuser always may).
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT aaf_app TO %I', current_user);
    END IF;
END
$$;

CREATE TABLE orgs (
    id          TEXT NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    plan        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE users (
    id          TEXT NOT NULL PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'approver', 'auditor', 'viewer')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    deleted_at  TEXT
);
CREATE UNIQUE INDEX users_org_name ON users (org_id, name) WHERE deleted_at IS NULL;

CREATE TABLE api_tokens (
    id          TEXT NOT NULL PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    user_id     TEXT REFERENCES users (id),
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX api_tokens_org ON api_tokens (org_id);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE agents (
    id          TEXT NOT NULL PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    risk_score  DOUBLE PRECISION NOT NULL,
    public_key  TEXT,
    created_at  TEXT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE agent_keys (
    id            TEXT NOT NULL PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES orgs (id),
    agent_id      TEXT NOT NULL REFERENCES agents (id),
    key_hash      TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    revoked_at    TEXT,
    last_used_at  TEXT,
    tools         TEXT,
    created_by    TEXT
);
CREATE INDEX agent_keys_agent ON agent_keys (agent_id);

CREATE TABLE signature_nonces (
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    nonce       TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, agent_id, nonce)
);
CREATE INDEX signature_nonces_expiry ON signature_nonces (expires_at);

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

-- One hash chain per org_id; "system" holds events of no authenticated organisation.
CREATE TABLE audit_events (
    org_id     TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    ts         TEXT NOT NULL,
    agent_id   TEXT,
    action_id  TEXT,
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (org_id, seq)
);

-- The last event of each chain. Writers lock the row (SELECT ... FOR UPDATE) so that nodes
-- appending to the same chain take turns.
CREATE TABLE audit_heads (
    org_id  TEXT NOT NULL PRIMARY KEY,
    seq     BIGINT NOT NULL,
    hash    TEXT NOT NULL
);

CREATE FUNCTION aaf_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION aaf_audit_append_only();

-- Privileges of the server's role: audit events can only be read and appended. It may read
-- which migrations were applied (sqlx creates _sqlx_migrations before this script runs), so a
-- node that logs in as a non-owner can check that the schema is current.
GRANT USAGE ON SCHEMA public TO aaf_app;
GRANT SELECT ON _sqlx_migrations TO aaf_app;
GRANT SELECT, INSERT ON orgs, audit_events TO aaf_app;
GRANT SELECT, INSERT, UPDATE ON users, api_tokens, agents, agent_keys, actions, audit_heads TO aaf_app;
GRANT SELECT, INSERT, DELETE ON signature_nonces TO aaf_app;

-- Row-level security.
DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['orgs', 'users', 'api_tokens', 'agents', 'agent_keys',
                             'signature_nonces', 'actions', 'audit_events', 'audit_heads']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I TO aaf_app USING (%I = current_setting(''app.org_id'', true)) '
            'WITH CHECK (%I = current_setting(''app.org_id'', true))',
            t,
            CASE WHEN t = 'orgs' THEN 'id' ELSE 'org_id' END,
            CASE WHEN t = 'orgs' THEN 'id' ELSE 'org_id' END);
        -- The owner (migrations, operator tools, the SECURITY DEFINER functions below).
        EXECUTE format('CREATE POLICY owner_access ON %I TO %I USING (true) WITH CHECK (true)',
                       t, current_user);
    END LOOP;
END
$$;

-- Cross-organisation lookups for the server, as narrow as they can be.

-- The organisation of a token or agent key, by the SHA-256 of the secret.
CREATE FUNCTION aaf_credential_org(p_hash TEXT) RETURNS TEXT
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT org_id FROM api_tokens WHERE token_hash = p_hash
    UNION ALL
    SELECT org_id FROM agent_keys WHERE key_hash = p_hash
    LIMIT 1
$$;

-- An organisation's id by its name (start-up finds the default organisation).
CREATE FUNCTION aaf_org_id_by_name(p_name TEXT) RETURNS TEXT
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT id FROM orgs WHERE name = p_name
$$;

-- Every organisation's id, oldest first.
CREATE FUNCTION aaf_org_ids() RETURNS SETOF TEXT
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT id FROM orgs ORDER BY created_at, id
$$;

-- Every audit chain (organisations and "system") with events or a head.
CREATE FUNCTION aaf_chain_ids() RETURNS SETOF TEXT
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT org_id FROM audit_heads
    UNION
    SELECT DISTINCT org_id FROM audit_events
$$;

-- Forgets signature nonces that expired before p_before; returns how many.
CREATE FUNCTION aaf_purge_nonces(p_before TEXT) RETURNS BIGINT
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
    WITH gone AS (DELETE FROM signature_nonces WHERE expires_at < p_before RETURNING 1)
    SELECT count(*) FROM gone
$$;

REVOKE ALL ON FUNCTION aaf_credential_org(TEXT), aaf_org_id_by_name(TEXT), aaf_org_ids(),
    aaf_chain_ids(), aaf_purge_nonces(TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aaf_credential_org(TEXT), aaf_org_id_by_name(TEXT), aaf_org_ids(),
    aaf_chain_ids(), aaf_purge_nonces(TEXT) TO aaf_app;
