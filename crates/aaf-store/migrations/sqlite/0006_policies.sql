-- Managed policies, data documents and policy packs of an organisation (docs/policies.md,
-- "Managed policies"), with every version kept; the organisation's policy generation; the
-- policy set revisions decisions were made under; shadow-mode results.
--
-- One table holds the three kinds of versioned objects: `policy` (key: its id; body: Rego),
-- `data` (key: the document's path; body: JSON) and `pack` (key: the pack's name; body:
-- "enabled" or "disabled"). `active_version` is the version in force (rollback moves it);
-- `latest_version` the newest.
CREATE TABLE policy_objects (
    org_id          TEXT NOT NULL REFERENCES orgs (id),
    kind            TEXT NOT NULL CHECK (kind IN ('policy', 'data', 'pack')),
    key             TEXT NOT NULL,
    name            TEXT NOT NULL,
    active_version  INTEGER NOT NULL,
    latest_version  INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    created_by      TEXT,
    disabled_at     TEXT,
    PRIMARY KEY (org_id, kind, key)
);
CREATE UNIQUE INDEX policy_objects_live_name ON policy_objects (org_id, kind, name)
    WHERE disabled_at IS NULL;

CREATE TABLE policy_object_versions (
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    version     INTEGER NOT NULL,
    body        TEXT NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('enforce', 'shadow')),
    sha256      TEXT NOT NULL,
    author      TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, kind, key, version)
);

-- Bumped by every change of an organisation's policy objects, as a compare-and-set: two
-- concurrent changes cannot both commit, and nodes poll it to rebuild their engines.
CREATE TABLE policy_state (
    org_id      TEXT NOT NULL PRIMARY KEY REFERENCES orgs (id),
    generation  INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);

-- What a revision was built from (sources and data), so any decision can be replayed.
CREATE TABLE policy_revisions (
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    revision    TEXT NOT NULL,
    bundle      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, revision)
);

CREATE TABLE shadow_results (
    org_id          TEXT NOT NULL REFERENCES orgs (id),
    policy_key      TEXT NOT NULL,
    policy_version  INTEGER NOT NULL,
    action_id       TEXT NOT NULL,
    enforced        TEXT NOT NULL,
    shadow          TEXT NOT NULL,
    differs         INTEGER NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX shadow_results_policy ON shadow_results (org_id, policy_key, created_at);
