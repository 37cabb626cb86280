-- The MCP gateway (docs/mcp.md): upstream MCP servers registered over the API, and the
-- pinned definitions of their tools (rug-pull protection).

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
