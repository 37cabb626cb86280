-- The transparency log over each audit chain (docs/audit.md, "Transparency log"): the
-- RFC 6962 / RFC 9162 Merkle tree of every chain, built in the background from the chain's
-- events, and the signed checkpoints of it.
--
-- `audit_tree_hashes` holds each tree's stored hashes in the layout of Go's sumdb/tlog
-- (aaf_core::evidence::merkle): the hash of every complete subtree, by dense index, as 64
-- lowercase hex characters. Written once, never changed: two nodes building the same tree
-- write the same rows, and a row already there is kept (INSERT ... ON CONFLICT DO NOTHING).
-- No foreign key to orgs: the reserved chain "system" has a tree too.
-- WITHOUT ROWID: the rows are stored in the primary key's B-tree, one insert each.
CREATE TABLE audit_tree_hashes (
    org_id  TEXT NOT NULL,
    idx     INTEGER NOT NULL,
    hash    TEXT NOT NULL,
    PRIMARY KEY (org_id, idx)
) WITHOUT ROWID;

-- How far each tree is built: `size` leaves (the events with seq 1..=size), `last_hash` the
-- chain hash of the event at seq `size`, from which the builder goes on. Only ever grows.
CREATE TABLE audit_trees (
    org_id      TEXT NOT NULL PRIMARY KEY,
    size        INTEGER NOT NULL,
    last_hash   TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Signed checkpoints (C2SP tlog-checkpoint as a C2SP signed note): one per chain and tree
-- size, `root_hash` in hex, `note` the signed note's text as published.
CREATE TABLE audit_checkpoints (
    org_id      TEXT NOT NULL,
    tree_size   INTEGER NOT NULL,
    root_hash   TEXT NOT NULL,
    note        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, tree_size)
);

-- Like the events, stored hashes and checkpoints are append-only (against mistakes; the
-- exported checkpoints are what detect an attacker with the database file).
CREATE TRIGGER audit_tree_hashes_no_update BEFORE UPDATE ON audit_tree_hashes
BEGIN
    SELECT RAISE(ABORT, 'audit tree hashes are append-only');
END;
CREATE TRIGGER audit_tree_hashes_no_delete BEFORE DELETE ON audit_tree_hashes
BEGIN
    SELECT RAISE(ABORT, 'audit tree hashes are append-only');
END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;

-- The events of one action, for its proof pack (GET /v1/proof-pack/{action_id}).
CREATE INDEX audit_events_action ON audit_events (org_id, action_id) WHERE action_id IS NOT NULL;

-- How far each decision-log sink (evidence.decision_log.sinks, by the SHA-256 of its
-- configuration) has exported each chain's action.decided events: the last seq written.
CREATE TABLE decision_log_cursors (
    sink        TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (sink, org_id)
);
