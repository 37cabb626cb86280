-- The MCP gateway (docs/mcp.md): upstream MCP servers registered over the API, and the
-- pinned definitions of their tools (rug-pull protection); same tables as
-- migrations/sqlite/0010, with the server role's privileges and row-level security.

-- An upstream MCP server of an organisation: its transport and settings as JSON (secrets
-- only as `${secret:NAME}` references). Deleted ones are kept (`deleted_at`); at most one
-- live server per name.
CREATE TABLE mcp_servers (
    id          TEXT NOT NULL PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    transport   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT,
    updated_at  TEXT NOT NULL,
    deleted_at  TEXT
);
CREATE UNIQUE INDEX mcp_servers_live_name ON mcp_servers (org_id, name)
    WHERE deleted_at IS NULL;

-- The definition of each upstream tool as first seen (or last accepted by an admin), by its
-- SHA-256 (`hash`), and a changed definition seen since, until an admin accepts it
-- (`pending_*`). `server` is the server's name (servers of the configuration file included).
CREATE TABLE mcp_tool_pins (
    org_id              TEXT NOT NULL REFERENCES orgs (id),
    server              TEXT NOT NULL,
    tool                TEXT NOT NULL,
    hash                TEXT NOT NULL,
    definition          TEXT NOT NULL,
    pending_hash        TEXT,
    pending_definition  TEXT,
    first_seen_at       TEXT NOT NULL,
    accepted_at         TEXT NOT NULL,
    accepted_by         TEXT,
    changed_at          TEXT,
    PRIMARY KEY (org_id, server, tool),
    CHECK ((pending_hash IS NULL) = (pending_definition IS NULL))
);

GRANT SELECT, INSERT, UPDATE ON mcp_servers, mcp_tool_pins TO aaf_app;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['mcp_servers', 'mcp_tool_pins']
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
