-- What policies see of an agent's recent activity, budgets and circuit breakers
-- (docs/runtime-protection.md, "Usage", "Budgets", "Circuit breakers").

-- A rate limit either refuses what is over it (`enforce`) or counts and leaves the decision
-- to the policies (`policy`: `input.usage.rate_limit_exceeded`).
ALTER TABLE rate_limits ADD COLUMN mode TEXT NOT NULL DEFAULT 'enforce'
    CHECK (mode IN ('enforce', 'policy'));

-- `input.usage` counts an agent's recent actions; isolation snapshots read them too.
CREATE INDEX actions_org_agent_created ON actions (org_id, agent_id, created_at);

-- Budgets of an organisation or of one of its agents: at most `limit_amount` tokens or
-- micro-units of a currency (`unit`) per day, per month (UTC) or in total. Deleted ones are
-- kept (`deleted_at`).
CREATE TABLE budgets (
    id            TEXT NOT NULL PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES orgs (id),
    agent_id      TEXT,
    unit          TEXT NOT NULL,
    period        TEXT NOT NULL CHECK (period IN ('day', 'month', 'total')),
    limit_amount  BIGINT NOT NULL CHECK (limit_amount >= 1),
    created_at    TEXT NOT NULL,
    created_by    TEXT,
    updated_at    TEXT NOT NULL,
    deleted_at    TEXT,
    deleted_by    TEXT
);
CREATE INDEX budgets_org ON budgets (org_id, deleted_at, created_at);

-- What each budget has spent in each of its windows (`day`: 2026-12-05, `month`: 2026-12,
-- `total`): settled usage plus what is reserved by actions not yet settled. A reservation
-- is one conditional UPDATE of this row, so concurrent actions on any node never take more
-- than the limit.
CREATE TABLE budget_spend (
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    budget_id   TEXT NOT NULL REFERENCES budgets (id),
    window_key  TEXT NOT NULL,
    spent       BIGINT NOT NULL CHECK (spent >= 0),
    PRIMARY KEY (budget_id, window_key)
);

-- What one action reserved of one budget, and what it turned out to use (`actual`, NULL
-- until settled).
CREATE TABLE budget_charges (
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    action_id   TEXT NOT NULL,
    budget_id   TEXT NOT NULL REFERENCES budgets (id),
    window_key  TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    unit        TEXT NOT NULL,
    reserved    BIGINT NOT NULL CHECK (reserved >= 0),
    actual      BIGINT CHECK (actual >= 0),
    created_at  TEXT NOT NULL,
    settled_at  TEXT,
    PRIMARY KEY (action_id, budget_id)
);
CREATE INDEX budget_charges_agent ON budget_charges (org_id, agent_id, created_at);

-- The circuit breakers of an organisation (JSON), when it sets its own; otherwise the
-- configuration's `runtime.circuit_breakers` apply.
CREATE TABLE circuit_breakers (
    org_id      TEXT NOT NULL PRIMARY KEY REFERENCES orgs (id),
    config      TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT
);

GRANT SELECT, INSERT, UPDATE ON budgets, budget_spend, budget_charges, circuit_breakers TO aaf_app;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['budgets', 'budget_spend', 'budget_charges', 'circuit_breakers']
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
