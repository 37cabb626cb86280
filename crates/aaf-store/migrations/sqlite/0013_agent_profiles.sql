-- Behavioural profiles of agents (risk scoring): what each agent usually does, learned from
-- its own actions. `profile` is JSON whose shape belongs to aaf_core; `folded_at` and
-- `folded_id` are the `created_at` and `id` of the last action folded into it (both NULL
-- before the first), the watermark every write compares and sets, so that nodes folding the
-- same agent's actions concurrently never fold one twice. Rows are never deleted.
CREATE TABLE agent_profiles (
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    agent_id    TEXT NOT NULL,
    profile     TEXT NOT NULL,
    folded_at   TEXT,
    folded_id   TEXT,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, agent_id),
    CHECK ((folded_at IS NULL AND folded_id IS NULL)
           OR (folded_at IS NOT NULL AND folded_id IS NOT NULL))
);
